# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of the predict fast path (src/model/rowjson.c, predict4): a body of the
common single-row shape is decoded without a JSON tree, any other spelling of the same
content takes the jansson path. Both must answer the same predictions, store the same
outputs and pseudonym, and answer every error with the same status and body. The answer is
encoded without a tree too: its "predictions" text is what the store holds."""

import json
import re

import pytest

import aimedres_harness as h

PARK = "parkinsons_predictor"


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def escape_first_key_char(body, name):
    """The same JSON with the first character of key `name` written as a \\u escape: jansson
    decodes it to the same object, the fast path declines it."""
    quoted = '"%s"' % name
    assert quoted in body
    return body.replace(quoted, '"\\u%04x%s"' % (ord(name[0]), name[1:]), 1)


def post(srv, name, text):
    return srv.post("/api/v1/models/%s/predict" % name, data=text.encode(),
                    headers={"Content-Type": "application/json"})


def predictions_text(resp_text):
    """The raw text of the answer's "predictions" array (the answer is compact JSON)."""
    m = re.search(r'"predictions":(\[.*\]),"prediction"', resp_text)
    assert m, resp_text
    return m.group(1)


def test_fast_and_jansson_paths_agree(server, demo_manifests):
    for name, manifest in demo_manifests.items():
        feats = h.valid_features(manifest, 0.37)
        first = manifest["features"][0]["name"]
        fast = compact({"features": feats, "patient_id": "patient-0042"})
        slow = escape_first_key_char(fast, first)
        slow = slow.replace('"patient-0042"', '"\\u0070atient-0042"')  # same string, escaped
        spaced = json.dumps({"patient_id": "patient-0042", "features": feats}, indent=2)
        answers = []
        for text in (fast, slow, spaced):
            r = post(server, name, text)
            assert r.status_code == 200, r.text
            body = r.json()
            assert list(body) == ["prediction_id", "request_id", "model", "version", "predictions",
                                  "prediction", "latency_ms"], body
            assert body["prediction"] == body["predictions"][0]
            preds = predictions_text(r.text)
            row = server.prediction_row(body["prediction_id"])
            assert row is not None, "prediction not recorded"
            assert row["outputs_json"] == preds, "stored outputs differ from the answer"
            answers.append((preds, row["patient_pseudonym"]))
        assert answers[0] == answers[1] == answers[2], (name, answers)


def test_number_spellings_agree(server, demo_manifests):
    manifest = demo_manifests[PARK]
    feats = h.valid_features(manifest, 0.61)
    base = compact({"features": feats})
    r0 = post(server, PARK, base)
    assert r0.status_code == 200, r0.text
    f = h.first_feature(manifest, types=("number",), ranged=True)
    v = feats[f["name"]]
    for spelled in ("%.17g" % v, "%.17e" % v, "%.17E" % v, repr(float(v))):
        text = base.replace('"%s":%s' % (f["name"], json.dumps(v)), '"%s":%s' % (f["name"], spelled), 1)
        assert text != base or spelled == json.dumps(v)
        r = post(server, PARK, text)
        assert r.status_code == 200, r.text
        assert predictions_text(r.text) == predictions_text(r0.text), spelled


def problem_bodies(manifest):
    """(label, features) with one schema problem each, of the fast path's shape."""
    feats = h.valid_features(manifest)
    ranged = h.first_feature(manifest, types=("number", "integer"), ranged=True)
    required = h.first_feature(manifest, types=("number", "integer", "boolean"), required=True)
    out = []
    bad = dict(feats)
    bad[ranged["name"]] = ranged["max"] + 1000
    out.append(("out_of_range", bad))
    bad = dict(feats)
    del bad[required["name"]]
    out.append(("missing", bad))
    bad = dict(feats)
    bad["no_such_feature"] = 1
    out.append(("unknown", bad))
    bad = dict(feats)
    bad[ranged["name"]] = True
    out.append(("wrong_type", bad))
    bad = dict(feats)
    bad[ranged["name"]] = 1e300
    bad["another_unknown"] = 2.5
    out.append(("two_problems", bad))
    return out


def test_errors_identical_on_both_paths(server, demo_manifests):
    manifest = demo_manifests[PARK]
    for label, feats in problem_bodies(manifest):
        fast = compact({"features": feats})
        key = next(k for k in feats if k in {f["name"] for f in manifest["features"]})
        slow = escape_first_key_char(fast, key)
        a, b = post(server, PARK, fast), post(server, PARK, slow)
        assert a.status_code == b.status_code == 422, (label, a.text, b.text)
        assert a.json() == b.json(), label
        h.assert_error_body(a, 422, "validation_failed")


BODY_ERRORS = [
    ('{"features":{"a":1,"a":2}}', 400),      # duplicate key
    ('{"features":{"a":1e400}}', 400),         # real overflow
    ('{"features":{"a":01}}', 400),            # leading zero
    ('{"features":{"a":1}} x', 400),           # trailing garbage
]


@pytest.mark.parametrize("text,status", BODY_ERRORS)
def test_an_unknown_model_is_reported_before_body_errors(server, text, status):
    """review19: a mistyped model name is what is wrong (404), whatever the body; for a model
    that exists the body's own error is reported, on both decoding paths."""
    r = post(server, "no_such_model", text)
    h.assert_error_body(r, 404, "model_not_found")
    h.assert_error_body(post(server, PARK, text), status)
    for ok in ('{"features":{"a":99999999999999999999}}', '{"features":{"a":1}}'):
        h.assert_error_body(post(server, "no_such_model", ok), 404, "model_not_found")


def test_pinned_version_and_patient_checks(server, demo_manifests):
    feats = h.valid_features(demo_manifests[PARK])
    ok = post(server, PARK, compact({"features": feats, "version": "1.0.0"}))
    assert ok.status_code == 200 and ok.json()["version"] == "1.0.0", ok.text
    for extra, field in (({"version": "9.9.9"}, None), ({"version": "../x"}, "version"),
                         ({"patient_id": ""}, "patient_id"), ({"patient_id": "p" * 257}, "patient_id")):
        body = dict({"features": feats}, **extra)
        fast = compact(body)
        slow = escape_first_key_char(fast, "features")
        a, b = post(server, PARK, fast), post(server, PARK, slow)
        assert a.status_code == b.status_code and a.json() == b.json(), (extra, a.text, b.text)
        assert a.status_code in (404, 422), a.text
        if field:
            assert a.json()["error"]["details"][0]["field"] == field
