# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of every error class of the HTTP API (docs: /work/briefs/api-spec.md):
404/405/413/415/400/422, unknown models and versions, path traversal in model names,
CORS preflights, hostile raw requests. Every error must be the JSON error object with
security headers, and the server must keep answering afterwards."""

import json
import re
import socket
import time

import pytest

import aimedres_harness as h

PARK = "parkinsons_predictor"
ORIGIN = "https://ehr.example.org"
PREDICT = "/api/v1/models/%s/predict" % PARK


@pytest.fixture(scope="module")
def limits_server(demo_dir, tmp_path_factory):
    """MAX_BATCH_SIZE=3 and CORS for one origin."""
    srv = h.start_server(
        demo_dir,
        str(tmp_path_factory.mktemp("limits")),
        {"MAX_BATCH_SIZE": "3", "CORS_ALLOWED_ORIGINS": ORIGIN},
    )
    yield srv
    rc, killed = srv.stop()
    assert rc == 0 and not killed, srv.log_tail()


@pytest.fixture(scope="module")
def small_body_server(demo_dir, tmp_path_factory):
    """MAX_BODY_BYTES=4096."""
    srv = h.start_server(demo_dir, str(tmp_path_factory.mktemp("smallbody")), {"MAX_BODY_BYTES": "4096"})
    yield srv
    rc, killed = srv.stop()
    assert rc == 0 and not killed, srv.log_tail()


@pytest.fixture(scope="module")
def park(demo_manifests):
    return demo_manifests[PARK]


def post_raw_json(srv, path, text, ctype="application/json"):
    headers = {"Content-Type": ctype} if ctype is not None else {}
    data = text.encode("utf-8") if isinstance(text, str) else text
    return srv.post(path, data=data, headers=headers)


def allow_set(resp):
    allow = resp.headers.get("Allow")
    assert allow, "405 without an Allow header"
    return {m.strip().upper() for m in allow.split(",") if m.strip()}


def details_list(err):
    d = err.get("details")
    assert isinstance(d, list) and d, "details should list the problems: %r" % err
    for item in d:
        assert isinstance(item, dict), d
    return d


def find_problem(details, feature, problem, instance=None):
    for d in details:
        if d.get("feature") == feature and d.get("problem") == problem:
            if instance is None or d.get("instance") == instance:
                assert isinstance(d.get("message"), str) and d["message"], d
                return d
    raise AssertionError("no detail {feature: %r, problem: %r, instance: %r} in %s"
                         % (feature, problem, instance, json.dumps(details)[:1500]))


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("method,path", [
    ("GET", "/no/such/path"),
    ("GET", "/api/v1/nothing"),
    ("GET", "/api/v2/models/list"),
    ("GET", "/api/v1/models/%s/predict/extra" % PARK),
    ("POST", "/no/such/path"),
])
def test_unknown_path(module_server, method, path):
    r = module_server.request(method, path, json={} if method == "POST" else None)
    h.assert_error_body(r, 404, "not_found")


def test_method_not_allowed_health(module_server):
    for method in ("DELETE", "POST", "PUT"):
        r = module_server.request(method, "/health", data=b"{}", headers={"Content-Type": "application/json"})
        h.assert_error_body(r, 405, "method_not_allowed")
        allow = allow_set(r)
        assert "GET" in allow and method not in allow, allow


def test_options_and_405_name_the_same_methods(module_server):
    """OPTIONS and a 405 on the same path list the same Allow (HEAD wherever GET is)."""
    for path, methods in (("/health", {"GET", "HEAD", "OPTIONS"}),
                          ("/api/v1/models/x/predict", {"POST", "OPTIONS"}),
                          ("/api/v1/models/list", {"GET", "HEAD", "OPTIONS"})):
        o = module_server.request("OPTIONS", path)
        assert o.status_code in (200, 204), (path, o.status_code)
        r = module_server.request("PUT", path, data=b"{}", headers={"Content-Type": "application/json"})
        h.assert_error_body(r, 405, "method_not_allowed")
        assert allow_set(o) == allow_set(r) == methods, (path, o.headers.get("Allow"), r.headers.get("Allow"))
        if "HEAD" in methods:
            assert module_server.request("HEAD", path).status_code == 200, path


def test_method_not_allowed_predict(module_server):
    for method in ("GET", "PUT", "DELETE"):
        r = module_server.request(method, "/api/v1/models/x/predict")
        h.assert_error_body(r, 405, "method_not_allowed")
        assert allow_set(r) == {"POST", "OPTIONS"}, r.headers.get("Allow")


def test_method_not_allowed_list(module_server):
    r = module_server.post("/api/v1/models/list", json={})
    h.assert_error_body(r, 405, "method_not_allowed")
    assert "GET" in allow_set(r)


def requests_counted(srv, method, route, status):
    """http_requests_total for one (method, route, status) series; 0 when absent."""
    r = srv.get("/metrics")
    assert r.status_code == 200, r.text
    want = '{method="%s",route="%s",status="%d"} ' % (method, route, status)
    for line in r.text.splitlines():
        if line.startswith("http_requests_total" + want):
            return float(line.split()[-1])
    return 0.0


def test_options_asterisk_is_the_server_as_a_whole(module_server):
    """review19: OPTIONS * (RFC 9110 section 9.3.7) was answered 400 invalid_path."""
    with socket.create_connection(("127.0.0.1", module_server.port), timeout=10) as s:
        s.sendall(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        resp = h.read_raw_response(s, "OPTIONS")
    assert resp.status == 204, resp.status
    allow = {m.strip() for m in resp.headers["allow"].split(",")}
    assert allow == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, allow


def test_405_and_options_counted_under_their_route(limits_server):
    """A wrong method or a preflight on a known path is counted under that path's route
    pattern; only paths no route knows are "unmatched"."""
    route = "/api/v1/models/{name}/predict"
    before = requests_counted(limits_server, "DELETE", route, 405)
    h.assert_error_body(limits_server.request("DELETE", PREDICT), 405, "method_not_allowed")
    assert requests_counted(limits_server, "DELETE", route, 405) == before + 1
    assert requests_counted(limits_server, "DELETE", "unmatched", 405) == 0

    before = requests_counted(limits_server, "OPTIONS", route, 204)
    r = limits_server.request("OPTIONS", PREDICT, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204, r.text
    assert requests_counted(limits_server, "OPTIONS", route, 204) == before + 1

    before = requests_counted(limits_server, "GET", "unmatched", 404)
    h.assert_error_body(limits_server.get("/no/such/path"), 404, "not_found")
    assert requests_counted(limits_server, "GET", "unmatched", 404) == before + 1


# --------------------------------------------------------------------------- body limits
#
# An over-limit body is refused by the protocol layer before the request reaches the router:
# a declared Content-Length over MAX_BODY_BYTES at once, a chunked body as soon as its decoded
# size passes it. The answer is the usual JSON error and the connection closes. What we
# assert: the exact status and code, that nothing was buffered beyond the limit or recorded,
# and that the server keeps serving.


def assert_413(resp):
    status = getattr(resp, "status_code", None) or getattr(resp, "status", None)
    assert status == 413, status
    body = resp.json()
    assert body["error"]["code"] == "payload_too_large", body
    assert "MAX_BODY_BYTES" in body["error"]["message"], body


def test_body_too_large(small_body_server, park):
    body = json.dumps({"features": h.valid_features(park), "patient_id": "p" * 8192})
    assert len(body) > 8192
    before = len(small_body_server.prediction_ids())
    r = post_raw_json(small_body_server, PREDICT, body)
    assert_413(r)
    assert len(small_body_server.prediction_ids()) == before
    # Just under the limit is fine.
    ok = json.dumps({"features": h.valid_features(park)})
    assert len(ok) < 4096
    r = post_raw_json(small_body_server, PREDICT, ok)
    assert r.status_code == 200, r.text


def send_tolerant(sock, data):
    """sendall that tolerates the server closing early (it may answer 413 before reading all)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_body_too_large_declared_length(small_body_server):
    """A huge Content-Length must be refused up front, not buffered."""
    with socket.create_connection(("127.0.0.1", small_body_server.port), timeout=10) as s:
        send_tolerant(s, h.build_request("POST", PREDICT, headers={
            "Content-Type": "application/json", "Content-Length": "1073741824"}) + b'{"features":')
        t0 = time.monotonic()
        resp = h.read_raw_response(s, "POST")
        assert time.monotonic() - t0 < h.scaled(5)
    assert_413(resp)


def test_413_for_a_declared_length_keeps_the_request_id_and_cors(demo_dir, tmp_path):
    """review19: a 413 decided from Content-Length replaced the client's X-Request-ID with a new
    one, left out the CORS headers (a browser app saw a CORS failure, not the 413) and was
    logged as method UNKNOWN."""
    srv = h.start_server(demo_dir, str(tmp_path / "d"), {"MAX_BODY_BYTES": "4096", "CORS_ALLOWED_ORIGINS": ORIGIN})
    try:
        r = srv.post(PREDICT, data=b"x" * 5000, headers={"Content-Type": "application/json",
                                                           "X-Request-ID": "ehr-req-42", "Origin": ORIGIN})
        assert_413(r)
        assert r.headers["X-Request-ID"] == "ehr-req-42", r.headers
        assert r.headers.get("Access-Control-Allow-Origin") == ORIGIN, r.headers
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed
    line = [x for x in srv.log_records() if x.get("request_id") == "ehr-req-42"]
    assert line and line[0]["method"] == "POST" and line[0]["status"] == 413, line


def test_body_too_large_chunked(small_body_server):
    chunk = b'{"pad":"' + b"a" * 2000 + b'"}'
    body = b""
    for _ in range(5):
        body += b"%x\r\n%s\r\n" % (len(chunk), chunk)
    body += b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", small_body_server.port), timeout=10) as s:
        send_tolerant(s, h.build_request("POST", PREDICT, headers={
            "Content-Type": "application/json", "Transfer-Encoding": "chunked"}) + body)
        resp = h.read_raw_response(s, "POST")
    assert_413(resp)


def test_small_body_server_still_serves(small_body_server, park):
    assert small_body_server.get("/health").status_code == 200
    r = small_body_server.predict(PARK, {"features": h.valid_features(park)})
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- media type, JSON


@pytest.mark.parametrize("ctype", ["text/plain", None, "application/x-www-form-urlencoded", "application/jsonx"])
def test_unsupported_media_type(module_server, park, ctype):
    r = post_raw_json(module_server, PREDICT, json.dumps({"features": h.valid_features(park)}), ctype=ctype)
    h.assert_error_body(r, 415, "unsupported_media_type")


POSITION = re.compile(r"(line|column|col|position|offset|char)\D{0,4}\d+", re.IGNORECASE)


@pytest.mark.parametrize("text", [
    '{"features": {"a": 1',              # truncated
    '{"features": {}} trailing',         # trailing garbage
    '{"features": {"a": NaN}}',          # NaN literal
    '{"features": {"a": Infinity}}',     # Infinity literal
    '{"features": {"a": 1,}}',           # trailing comma
    "{'features': {}}",                  # single quotes
    "",                                  # empty body
    b'{"features": {"\xff\xfe": 1}}',    # invalid UTF-8
])
def test_invalid_json(module_server, text):
    r = post_raw_json(module_server, PREDICT, text)
    err = h.assert_error_body(r, 400, "invalid_json")
    if text:
        assert POSITION.search(err["message"]), "message does not name the position: %r" % err["message"]


def test_invalid_json_position_is_right(module_server):
    text = '{"features":\n  {"a": 1,, "b": 2}}'
    r = post_raw_json(module_server, PREDICT, text)
    err = h.assert_error_body(r, 400, "invalid_json")
    assert re.search(r"line\D{0,4}2\b", err["message"], re.IGNORECASE), err["message"]


# --------------------------------------------------------------------------- 422 body shape


@pytest.mark.parametrize("body", [
    "[1, 2]",
    '"features"',
    "null",
    "42",
    "{}",                                                    # neither features nor instances
    '{"patient_id": "P1"}',                                  # neither
    '{"features": {}, "instances": [{}]}',                   # both
    '{"instances": []}',                                     # empty batch
    '{"instances": {}}',                                     # instances not a list
    '{"features": [1, 2]}',                                  # features not an object
    '{"instances": [1]}',                                    # row not an object
])
def test_body_shape(module_server, body):
    r = post_raw_json(module_server, PREDICT, body)
    h.assert_error_body(r, 422, "validation_failed")


def test_patient_id_and_version_must_be_strings(module_server, park):
    feats = h.valid_features(park)
    for extra in ({"patient_id": 12345}, {"version": 1}, {"patient_id": ["a"]}, {"patient_id": ""}):
        body = {"features": feats}
        body.update(extra)
        r = module_server.predict(PARK, body)
        err = h.assert_error_body(r, 422, "validation_failed")
        assert err["details"][0]["field"] == next(iter(extra)), err
    # null means absent, as a null feature means missing (review19: EHR serialisers send it)
    for extra in ({"patient_id": None}, {"version": None}, {"patient_id": None, "version": None}):
        r = module_server.predict(PARK, dict(extra, features=feats))
        assert r.status_code == 200, r.text


def test_batch_limit(limits_server, park):
    r = limits_server.predict(PARK, {"instances": h.valid_instances(park, 4)})
    err = h.assert_error_body(r, 422, "validation_failed")
    assert "3" in err["message"] or "3" in json.dumps(err.get("details")), err
    r = limits_server.predict(PARK, {"instances": h.valid_instances(park, 3)})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 3


# --------------------------------------------------------------------------- 422 features


def test_missing_feature(module_server, park):
    f = h.first_feature(park, types=("number", "integer", "boolean"), required=True)
    assert f, "no required feature"
    feats = h.valid_features(park)
    del feats[f["name"]]
    r = module_server.predict(PARK, {"features": feats})
    err = h.assert_error_body(r, 422, "validation_failed")
    find_problem(details_list(err), f["name"], "missing")
    # null counts as absent: a required feature given as null is missing too.
    feats[f["name"]] = None
    r = module_server.predict(PARK, {"features": feats})
    err = h.assert_error_body(r, 422, "validation_failed")
    find_problem(details_list(err), f["name"], "missing")


def test_wrong_type(module_server, park):
    f = h.first_feature(park, types=("number",))
    feats = h.valid_features(park)
    feats[f["name"]] = "not-a-number-SECRETVALUE"
    r = module_server.predict(PARK, {"features": feats})
    err = h.assert_error_body(r, 422, "validation_failed")
    find_problem(details_list(err), f["name"], "wrong_type")
    assert "SECRETVALUE" not in r.text, "the submitted value is echoed back"
    for bad in ({"v": 1}, [1.0], True):
        feats[f["name"]] = bad
        r = module_server.predict(PARK, {"features": feats})
        err = h.assert_error_body(r, 422, "validation_failed")
        find_problem(details_list(err), f["name"], "wrong_type")


def test_wrong_type_integer(module_server, demo_manifests):
    for name, mf in demo_manifests.items():
        f = h.first_feature(mf, types=("integer",))
        if f is None:
            continue
        feats = h.valid_features(mf)
        feats[f["name"]] = feats[f["name"]] + 0.5
        r = module_server.predict(name, {"features": feats})
        err = h.assert_error_body(r, 422, "validation_failed")
        find_problem(details_list(err), f["name"], "wrong_type")
        return
    pytest.skip("no demo model has an integer feature")


def test_out_of_range(module_server, park):
    f = h.first_feature(park, types=("number", "integer"), ranged=True)
    assert f, "no ranged feature"
    span = f["max"] - f["min"]
    for v in (f["max"] + span + 1, f["min"] - span - 1):
        feats = h.valid_features(park)
        feats[f["name"]] = int(v) if f["type"] == "integer" else float(v)
        r = module_server.predict(PARK, {"features": feats})
        err = h.assert_error_body(r, 422, "validation_failed")
        find_problem(details_list(err), f["name"], "out_of_range")
    # The bounds themselves are valid (inclusive range).
    for v in (f["min"], f["max"]):
        feats = h.valid_features(park)
        feats[f["name"]] = v
        r = module_server.predict(PARK, {"features": feats})
        assert r.status_code == 200, r.text


def test_integer_beyond_int64_is_out_of_range(module_server, park):
    """An integer too big for int64 is still valid JSON: 422 naming the feature, not 400."""
    f = h.first_feature(park, types=("number", "integer"), ranged=True)
    assert f, "no ranged feature"
    for digits in ("123456789012345678901234567890", "-123456789012345678901234567890"):
        text = json.dumps({"features": h.valid_features(park)})
        text = text.replace('"%s": %s' % (f["name"], json.dumps(h.valid_features(park)[f["name"]])),
                            '"%s": %s' % (f["name"], digits))
        assert digits in text
        r = post_raw_json(module_server, PREDICT, text)
        err = h.assert_error_body(r, 422, "validation_failed")
        find_problem(details_list(err), f["name"], "out_of_range")


def test_unknown_feature(module_server, park):
    feats = h.valid_features(park)
    feats["no_such_feature"] = 1.0
    r = module_server.predict(PARK, {"features": feats})
    err = h.assert_error_body(r, 422, "validation_failed")
    find_problem(details_list(err), "no_such_feature", "unknown")


def test_problem_list_is_capped(module_server, park):
    """3000 unknown keys: every one is counted in the message, the first 100 are listed, and
    the answer stays small."""
    feats = h.valid_features(park)
    for i in range(3000):
        feats["extra_%04d" % i] = 1
    r = module_server.predict(PARK, {"features": feats})
    err = h.assert_error_body(r, 422, "validation_failed")
    assert "3000 feature problems" in err["message"] and "the first 100 are listed" in err["message"], err
    assert len(details_list(err)) == 100
    assert details_list(err)[0]["feature"] == "extra_0000"
    assert len(r.content) < 20000, len(r.content)


def test_every_problem_named(module_server, park):
    num = [f for f in park["features"] if f.get("type") == "number" and "min" in f and "max" in f]
    req = [f for f in park["features"] if f.get("required", True)]
    assert len(num) >= 2 and req
    missing = req[-1]["name"]
    wrong, out = num[0]["name"], num[1]["name"]
    assert missing not in (wrong, out)
    feats = h.valid_features(park)
    del feats[missing]
    feats[wrong] = "x"
    feats[out] = num[1]["max"] + (num[1]["max"] - num[1]["min"]) + 10
    feats["zz_unknown"] = 2
    r = module_server.predict(PARK, {"features": feats})
    err = h.assert_error_body(r, 422, "validation_failed")
    d = details_list(err)
    find_problem(d, missing, "missing")
    find_problem(d, wrong, "wrong_type")
    find_problem(d, out, "out_of_range")
    find_problem(d, "zz_unknown", "unknown")
    assert len(d) == 4, d


def test_batch_problem_instances(module_server, park):
    f = h.first_feature(park, types=("number",))
    rows = h.valid_instances(park, 4)
    del rows[1][f["name"]]
    rows[3][f["name"]] = "abc"
    r = module_server.predict(PARK, {"instances": rows})
    err = h.assert_error_body(r, 422, "validation_failed")
    d = details_list(err)
    find_problem(d, f["name"], "missing", instance=1)
    find_problem(d, f["name"], "wrong_type", instance=3)
    assert {x.get("instance") for x in d} == {1, 3}, d


# --------------------------------------------------------------------------- models and names


def test_predict_unknown_model(module_server, park):
    r = module_server.predict("no_such_model", {"features": h.valid_features(park)})
    h.assert_error_body(r, 404, "model_not_found")
    # review19: a mistyped model name is what is wrong, whatever the body (an empty object,
    # two rows forms, invalid JSON, no body): not an error about the body
    for body in (b"{}", b'{"features": {}, "instances": []}', b'{"features": 1e400}', b"{", b""):
        r = module_server.post(PREDICT.replace(PARK, "no_such_model"), data=body,
                               headers={"Content-Type": "application/json"})
        h.assert_error_body(r, 404, "model_not_found")
    # for a model that exists, the body's problem is reported
    h.assert_error_body(module_server.post(PREDICT, data=b"{}", headers={"Content-Type": "application/json"}),
                        422, "validation_failed")


def test_predict_unknown_version(module_server, park):
    for v in ("9.9.9", "../../../etc/passwd", "1.0.0/../1.0.0", "", "x" * 300):
        r = module_server.predict(PARK, {"features": h.valid_features(park), "version": v})
        assert r.status_code in (404, 422), (v, r.status_code, r.text)
        h.assert_error_body(r, r.status_code, "version_not_found" if r.status_code == 404 else "validation_failed")


@pytest.mark.parametrize("path", [
    "/api/v1/models/..%2f..%2fetc/predict",
    "/api/v1/models/%2e%2e/predict",
    "/api/v1/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd/predict",
    "/api/v1/models/..%5c..%5cetc/predict",
    "/api/v1/models/parkinsons_predictor%2f..%2fals_classifier/predict",
    "/api/v1/models/%252e%252e/predict",
])
def test_path_traversal_predict(module_server, park, path):
    body = json.dumps({"features": h.valid_features(park)})
    resp = module_server.raw(h.build_request("POST", path, body, {"Content-Type": "application/json",
                                                                  "Connection": "close"}), method_hint="POST")
    assert resp.status == 404, (path, resp.status, resp.body[:300])
    err = h.assert_error_body(resp, 404)
    assert err["code"] in ("model_not_found", "not_found"), err


@pytest.mark.parametrize("path", [
    "/api/v1/models/..%2f..%2fetc%2fpasswd",
    "/api/v1/models/%2e%2e",
    "/api/v1/models/../../etc/passwd",
    "/api/v1/models/%00",
])
def test_path_traversal_detail(module_server, path):
    resp = module_server.raw(h.build_request("GET", path, headers={"Connection": "close"}))
    assert resp.status in (400, 404), (path, resp.status, resp.body[:300])
    h.assert_error_body(resp, resp.status)


# --------------------------------------------------------------------------- CORS


def test_cors_preflight_allowed(limits_server):
    r = limits_server.request("OPTIONS", PREDICT, headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-request-id",
    })
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert r.headers.get("Access-Control-Allow-Origin") == ORIGIN
    assert "POST" in r.headers.get("Access-Control-Allow-Methods", "").upper()
    assert "content-type" in r.headers.get("Access-Control-Allow-Headers", "").lower()
    assert int(r.headers.get("Access-Control-Max-Age", "0")) > 0


def test_cors_origins_are_matched_as_browsers_send_them(demo_dir, tmp_path):
    """review19: CORS_ALLOWED_ORIGINS=https://EHR.example.org:443 passed config check but never
    matched, because browsers send the origin in lower case and without its default port."""
    srv = h.start_server(demo_dir, str(tmp_path / "d"),
                         {"CORS_ALLOWED_ORIGINS": "https://EHR.example.org:443, http://Portal.example.org:80"})
    try:
        for origin in ("https://ehr.example.org", "http://portal.example.org"):
            r = srv.request("OPTIONS", PREDICT, headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
            assert r.headers.get("Access-Control-Allow-Origin") == origin, (origin, r.headers)
        r = srv.request("OPTIONS", PREDICT, headers={"Origin": "https://ehr.example.org:8443",
                                                      "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in r.headers
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed


def test_cors_preflight_other_origin(limits_server):
    r = limits_server.request("OPTIONS", PREDICT, headers={
        "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "POST" in r.headers.get("Allow", "").upper()


def test_cors_preflight_not_configured(module_server):
    r = module_server.request("OPTIONS", PREDICT, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "POST" in r.headers.get("Allow", "").upper()


def test_cors_simple_requests(limits_server, park):
    r = limits_server.get("/health", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers.get("Access-Control-Allow-Origin") == ORIGIN
    assert "origin" in r.headers.get("Vary", "").lower()
    r = limits_server.predict(PARK, {"features": h.valid_features(park)}, headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers.get("Access-Control-Allow-Origin") == ORIGIN
    r = limits_server.get("/no/such/path", headers={"Origin": ORIGIN})
    h.assert_error_body(r, 404, "not_found")
    assert r.headers.get("Access-Control-Allow-Origin") == ORIGIN
    r = limits_server.get("/health", headers={"Origin": "https://evil.example.com"})
    assert r.status_code == 200
    assert "Access-Control-Allow-Origin" not in r.headers
    # An origin that merely starts with the allowed one is not allowed.
    r = limits_server.get("/health", headers={"Origin": ORIGIN + ".evil.com"})
    assert "Access-Control-Allow-Origin" not in r.headers


# --------------------------------------------------------------------------- hostile raw requests


def raw_survives(srv, data):
    """Sends raw bytes; returns the response or None if the server just closed."""
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            send_tolerant(s, data)
            try:
                return h.read_raw_response(s)
            except (ConnectionResetError, h.http.client.RemoteDisconnected, h.http.client.BadStatusLine):
                return None
    except ConnectionResetError:
        return None


def test_garbage_request_line(module_server):
    for data in (b"HELLO\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\x01\x02\r\n\r\n"):
        resp = raw_survives(module_server, data)
        assert resp is None or 400 <= resp.status < 500 or resp.status == 505, (data, resp and resp.status)
    assert module_server.get("/health").status_code == 200


def test_huge_header(module_server):
    data = h.build_request("GET", "/health", headers={"X-Big": "a" * 200000, "Connection": "close"})
    resp = raw_survives(module_server, data)
    assert resp is None or resp.status in (400, 413, 431), resp.status
    assert module_server.get("/health").status_code == 200


def test_bad_content_length(module_server):
    for cl in ("abc", "-1", "99999999999999999999999"):
        data = h.build_request("POST", PREDICT, b"{}", {"Content-Type": "application/json",
                                                        "Content-Length": cl, "Connection": "close"})
        resp = raw_survives(module_server, data)
        assert resp is None or 400 <= resp.status < 500, (cl, resp.status)
    assert module_server.get("/health").status_code == 200


def test_read_timeout(make_server):
    """A client that stops mid-request is cut off after READ_TIMEOUT; others are unaffected."""
    srv = make_server({"READ_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        t0 = time.monotonic()
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        took = time.monotonic() - t0
    assert took < 1 * 4 + 5, "slow client held the connection %.1f s with READ_TIMEOUT=1" % took
    assert data == b"" or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 400"), data[:200]
    # A fresh connection (the session's idle keep-alive one is closed by the same timeout).
    resp = srv.raw(h.build_request("GET", "/health", headers={"Connection": "close"}))
    assert resp.status == 200


# --------------------------------------------------------------------------- afterwards


def test_zz_still_serving(module_server, limits_server, park):
    for srv in (module_server, limits_server):
        assert srv.get("/health").status_code == 200
        r = srv.predict(PARK, {"features": h.valid_features(park)})
        assert r.status_code == 200, r.text
        assert srv.proc.poll() is None
