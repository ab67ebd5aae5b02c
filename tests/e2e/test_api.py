# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of the HTTP API's successful paths (docs: /work/briefs/api-spec.md):
discovery, health/readiness, model listing and detail, single and batch predictions,
version pinning, security headers, request ids, durability of predictions in the store
and the absence of patient ids and feature values from the logs."""

import contextlib
import datetime
import math
import os
import re
import time
import uuid

import pytest

import aimedres_harness as h

PARK = "parkinsons_predictor"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def parse_iso8601(s):
    assert isinstance(s, str) and re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", s), s
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def assert_uuid7(s):
    u = uuid.UUID(s)
    assert str(u) == s.lower(), s
    assert u.version == 7, "prediction_id %s is not a UUIDv7 (version %s)" % (s, u.version)
    assert u.variant == uuid.RFC_4122, s
    # The first 48 bits are the Unix time in ms: must be close to now.
    ms = int(s.replace("-", "")[:12], 16)
    now_ms = datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000
    assert abs(now_ms - ms) < 10 * 60 * 1000, "UUIDv7 timestamp %d far from now %d" % (ms, now_ms)


def assert_prediction_row(pred, manifest):
    labels = h.class_labels(manifest)
    if manifest.get("task") == "regression":
        assert isinstance(pred.get("value"), (int, float)), pred
        return
    assert pred.get("label") in labels, "label %r not in %r" % (pred.get("label"), labels)
    probs = pred.get("probabilities")
    assert isinstance(probs, dict) and set(probs) == set(labels), probs
    for p in probs.values():
        assert isinstance(p, (int, float)) and 0.0 <= p <= 1.0, probs
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-4), probs
    if manifest.get("task") == "multiclass":
        assert pred["label"] == max(probs, key=probs.get), pred
    elif manifest.get("task") == "binary":
        thr = manifest.get("threshold", 0.5)
        p1 = probs[labels[1]]
        assert pred["label"] == (labels[1] if p1 >= thr else labels[0]), (pred, thr)


# --------------------------------------------------------------------------- discovery


def test_root(module_server):
    r = module_server.get("/")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "aimedres"
    assert isinstance(body["version"], str) and body["version"]
    assert isinstance(body["links"], dict) and body["links"]
    h.assert_security_headers(r)


def test_api_index(module_server):
    r = module_server.get("/api/v1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "v1"
    eps = body["endpoints"]
    assert isinstance(eps, list) and eps
    for e in eps:
        assert set(("method", "path", "description")) <= set(e), e
    pairs = {(e["method"], e["path"]) for e in eps}
    assert ("GET", "/health") in pairs, pairs
    assert any(m == "POST" and p.startswith("/api/v1/models/") and p.endswith("/predict") for m, p in pairs), pairs
    assert ("GET", "/api/v1/models/list") in pairs, pairs


def test_health(module_server):
    r = module_server.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "healthy"
    parse_iso8601(body["timestamp"])
    assert isinstance(body["version"], str) and body["version"]
    h.assert_security_headers(r)


def test_ready(module_server):
    r = module_server.get("/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True
    checks = body["checks"]
    assert checks["database"]["status"] == "ok", checks
    assert checks["models"]["status"] == "ok", checks
    assert checks["models"]["loaded"] == 3, checks
    disk = checks["disk"]
    assert disk["status"] == "ok", disk
    assert isinstance(disk["free_bytes"], int) and disk["free_bytes"] > 0, disk
    assert 0 < disk["free_percent"] <= 100, disk
    parse_iso8601(body["timestamp"])


def test_ready_reports_a_model_that_fails_to_load(demo_dir, tmp_path):
    """A registered stable version whose booster no longer matches its manifest does not load:
    /ready names it (models "degraded") while the other models keep the replica in rotation,
    and the broken model answers 503 model_unavailable. review52 #4: failed[].error is the
    reason the log gives (the sha256 mismatch), not strerror ("Bad message"), and names the
    artifact relative to MODEL_STORAGE_PATH (/ready needs no credentials)."""
    root = str(tmp_path / "demo")
    h.copy_demo(demo_dir, root)
    booster = [f for f in os.listdir(os.path.join(root, "models", "als_classifier", "1.0.0"))
               if f.startswith("model.")][0]
    with open(os.path.join(root, "models", "als_classifier", "1.0.0", booster), "ab") as f:
        f.write(b" ")
    pd = os.path.join(root, "models", "parkinsons_predictor", "1.0.0")
    os.remove(os.path.join(pd, [f for f in os.listdir(pd) if f.startswith("model.")][0]))
    srv = h.Server(root).start()
    try:
        body = srv.get("/ready").json()
        assert body["ready"] is True, body
        models = body["checks"]["models"]
        assert models["status"] == "degraded" and models["loaded"] == 1, models
        assert [f["model"] for f in models["failed"]] == ["als_classifier", "parkinsons_predictor"], models
        err = models["failed"][0]["error"]
        assert err.startswith("booster sha256 mismatch: manifest says "), err
        err = models["failed"][1]["error"]
        assert err.startswith("cannot read booster parkinsons_predictor/1.0.0/model.") and root not in err, err
        m = h.read_manifest(os.path.join(demo_dir, "models"), "als_classifier")
        r = srv.post("/api/v1/models/als_classifier/predict", json={"features": h.valid_features(m)})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable", r.text
        # the log line of that request names the version and the reason (review67 #6)
        line = [x for x in srv.log_records() if x.get("msg") == "model unavailable"]
        assert line and line[-1]["model"] == "als_classifier" and line[-1]["version"] == "1.0.0", line
        assert line[-1]["error"] == models["failed"][0]["error"], line
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed


def test_ready_fails_while_the_store_cannot_be_written(make_server, demo_manifests):
    """review17: with the store unwritable (here another connection holds its write lock)
    every predict answered 503 while /ready stayed 200, so a balancer kept sending traffic.
    After a failed prediction batch /ready probes with a write; it is ready again as soon as
    one commits, without waiting for traffic that a balancer would no longer send."""
    import sqlite3

    srv = make_server()
    name, m = next(iter(demo_manifests.items()))
    body = {"features": h.valid_features(m)}
    assert srv.predict(name, body).status_code == 200
    locker = sqlite3.connect(srv.db_path, timeout=h.scaled(10), isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        h.assert_error_body(srv.predict(name, body, timeout=60), 503)
        t0 = time.monotonic()
        r = srv.get("/ready", timeout=60)
        assert time.monotonic() - t0 < 2, time.monotonic() - t0  # a probe, not a 5 s busy wait
        assert r.status_code == 503, r.text
        db = r.json()["checks"]["database"]
        assert db["status"] == "fail" and "writes_failing_since" in db, db
        parse_iso8601(db["writes_failing_since"])
    finally:
        locker.execute("COMMIT")
        locker.close()
    r = srv.get("/ready")
    assert r.status_code == 200 and r.json()["checks"]["database"]["status"] == "ok", r.text
    assert "writes_failing_since" not in r.json()["checks"]["database"]
    assert srv.predict(name, body).status_code == 200


@contextlib.contextmanager
def db_on_tmpfs(demo_dir, tmp_path, size):
    """A server on a copy of the demo whose database lives on a tmpfs of its own: (fs, server).
    The server must stop cleanly (exit 0) when the block ends without an error."""
    import shutil
    import subprocess

    fs = str(tmp_path / "dbfs")
    os.makedirs(fs)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", fs], capture_output=True, text=True)
    assert r.returncode == 0, "mounting a tmpfs needs root (make test runs as root): " + r.stderr
    srv = None
    try:
        root = h.copy_demo(demo_dir, str(tmp_path / "demo"))
        for f in os.listdir(root):
            if f.startswith("aimedres.db"):
                shutil.copy(os.path.join(root, f), fs)
        srv = h.Server(root, extra_env={"DATABASE_URL": "sqlite://%s/aimedres.db" % fs}).start()
        yield fs, srv
        rc, killed = srv.stop()
        srv = None
        assert rc == 0 and not killed
    finally:
        if srv:
            srv.stop()
        subprocess.run(["umount", "-l", fs], capture_output=True)


def test_ready_fails_while_the_database_disk_is_full(demo_dir, tmp_path):
    """review18: with the database on a full volume of its own every predict failed while
    /ready said ready (the model path's disk was fine, and a no-op write still commits).
    /ready now checks the database directory's free space too."""
    with db_on_tmpfs(demo_dir, tmp_path, "160m") as (fs, srv):
        m = h.read_manifest(os.path.join(demo_dir, "models"), "parkinsons_predictor")
        body = {"features": h.valid_features(m)}
        assert srv.get("/ready").status_code == 200
        assert srv.predict("parkinsons_predictor", body).status_code == 200
        st = os.statvfs(fs)
        with open(os.path.join(fs, "filler"), "wb") as f:
            f.write(b"\0" * (st.f_bavail * st.f_frsize - 8192))
        r = srv.get("/ready", timeout=30)
        assert r.status_code == 503, r.text
        db = r.json()["checks"]["database"]
        assert db["status"] == "fail" and db["disk"]["status"] == "fail", db
        os.unlink(os.path.join(fs, "filler"))
        r = srv.get("/ready")
        assert r.status_code == 200, r.text
        assert srv.predict("parkinsons_predictor", body).status_code == 200


def test_a_full_database_disk_is_logged_once_not_per_request(demo_dir, tmp_path):
    """review53 #7: with the database on a full volume each failed prediction logged three
    ERROR lines (the request's, the store's and the recorder's), thousands a second under load,
    on the condition where the log may share that disk. The store and the recorder now say it
    when it starts and when it ends; the request's own line stays (it names the request)."""
    with db_on_tmpfs(demo_dir, tmp_path, "32m") as (fs, srv):
        body = {"features": h.valid_features(h.read_manifest(os.path.join(demo_dir, "models"),
                                                             "parkinsons_predictor"))}
        filler = h.fill_fs(fs, 512)
        failed = 0
        for _ in range(300):  # the WAL may take a few more frames in place before it must grow
            failed += srv.predict("parkinsons_predictor", body).status_code == 503
            if failed >= 30:
                break
        assert failed >= 30, failed
        os.unlink(filler)
        deadline = time.monotonic() + 15
        while srv.predict("parkinsons_predictor", body).status_code != 200:
            assert time.monotonic() < deadline, srv.log_tail()
            time.sleep(0.2)
        recs = srv.log_records()
        said = [x for x in recs if x.get("msg", "").startswith("recorder: batch not written")]
        store = [x for x in recs if x.get("op") == "predictions_put"]
        again = [x for x in recs if x.get("msg") == "recorder: batches are written again"]
        # once per outage (the WAL's reused frames may end one early and start another)
        assert 1 <= len(said) <= 3 and len(store) <= len(said) and len(again) >= 1, (len(said), len(store))
        assert sum(x["failed_records"] for x in again) >= 30, again


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("path", ["/api/v1/models/list", "/api/v1/model/list"])
def test_models_list(module_server, demo_manifests, path):
    r = module_server.get(path)
    assert r.status_code == 200, r.text
    h.assert_security_headers(r)
    body = r.json()
    assert body["total"] == 3
    models = body["models"]
    assert sorted(m["name"] for m in models) == sorted(h.DEMO_MODELS)
    for m in models:
        mf = demo_manifests[m["name"]]
        assert m["version"] == "1.0.0"
        assert m["status"] == "serving"
        assert m["task"] == mf["task"]
        assert m["features"] == [f["name"] for f in mf["features"]]
        assert m["traffic"] == {"1.0.0": 100}


def test_model_detail(module_server, demo_manifests):
    for name, mf in demo_manifests.items():
        r = module_server.get("/api/v1/models/" + name)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["name"] == name
        assert body["serving_version"] == "1.0.0"
        assert body["task"] == mf["task"]
        assert body["class_labels"] == mf.get("class_labels"), body["class_labels"]
        assert isinstance(body["threshold"], (int, float))
        schema = body["schema"]
        assert [f["name"] for f in schema] == [f["name"] for f in mf["features"]]
        for got, want in zip(schema, mf["features"]):
            assert got["type"] == want["type"]
            if "min" in want:
                assert got["min"] == pytest.approx(want["min"])
            if "max" in want:
                assert got["max"] == pytest.approx(want["max"])
        assert isinstance(body["metrics"], dict) and body["metrics"], body["metrics"]
        versions = body["versions"]
        assert len(versions) == 1, versions
        v = versions[0]
        assert v["version"] == "1.0.0"
        assert v["stable"] is True and v["loaded"] is True
        assert HEX64.match(v["sha256"]), v
        assert v["sha256"] in json_strings(mf), "sha256 %s not the manifest's" % v["sha256"]
        parse_iso8601(v["registered_at"])


def json_strings(obj):
    if isinstance(obj, str):
        return {obj}
    out = set()
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list):
        for x in obj:
            out |= json_strings(x)
    return out


def test_model_detail_unknown(module_server):
    r = module_server.get("/api/v1/models/no_such_model")
    h.assert_error_body(r, 404, "model_not_found")


# --------------------------------------------------------------------------- predict


def test_predict_single_each_model(module_server, demo_manifests):
    for name, mf in demo_manifests.items():
        r = module_server.predict(name, {"features": h.valid_features(mf)})
        assert r.status_code == 200, r.text
        h.assert_security_headers(r)
        body = r.json()
        assert_uuid7(body["prediction_id"])
        assert body["model"] == name
        assert body["version"] == "1.0.0"
        assert body["request_id"] == r.headers["X-Request-ID"]
        assert isinstance(body["latency_ms"], (int, float)) and body["latency_ms"] >= 0
        preds = body["predictions"]
        assert len(preds) == 1
        assert_prediction_row(preds[0], mf)
        assert body["prediction"] == preds[0]


def test_predict_ids_unique_and_ordered(module_server, demo_manifests):
    mf = demo_manifests[PARK]
    ids = []
    for _ in range(5):
        r = module_server.predict(PARK, {"features": h.valid_features(mf)})
        assert r.status_code == 200, r.text
        ids.append(r.json()["prediction_id"])
    assert len(set(ids)) == 5
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids), "UUIDv7 time prefixes not ordered: %s" % ids


def test_predict_deterministic_and_input_sensitive(module_server, demo_manifests):
    mf = demo_manifests[PARK]
    a = module_server.predict(PARK, {"features": h.valid_features(mf, 0.5)}).json()["prediction"]
    b = module_server.predict(PARK, {"features": h.valid_features(mf, 0.5)}).json()["prediction"]
    assert a == b
    # Across the ranges the model must not answer the same probabilities for every row.
    rows = [h.valid_features(mf, f) for f in (0.05, 0.25, 0.5, 0.75, 0.95)]
    r = module_server.predict(PARK, {"instances": rows})
    assert r.status_code == 200, r.text
    probs = {tuple(sorted(p["probabilities"].items())) for p in r.json()["predictions"]}
    assert len(probs) > 1, "same answer for very different rows: %s" % probs


def test_predict_batch(module_server, demo_manifests):
    for name, mf in demo_manifests.items():
        rows = h.valid_instances(mf, 7)
        r = module_server.predict(name, {"instances": rows})
        assert r.status_code == 200, r.text
        body = r.json()
        assert_uuid7(body["prediction_id"])
        assert len(body["predictions"]) == 7
        for p in body["predictions"]:
            assert_prediction_row(p, mf)
        assert "prediction" not in body, "'prediction' is only for the features form"
        # Row i of a batch equals the single prediction of row i.
        single = module_server.predict(name, {"features": rows[3]}).json()["prediction"]
        assert single == body["predictions"][3]


def test_predict_optional_feature_absent_or_null(module_server, demo_manifests):
    for name, mf in demo_manifests.items():
        opt = [f for f in mf["features"] if not f.get("required", True)]
        if not opt:
            continue
        feats = h.valid_features(mf)
        del feats[opt[0]["name"]]
        r = module_server.predict(name, {"features": feats})
        assert r.status_code == 200, r.text
        feats[opt[0]["name"]] = None
        r = module_server.predict(name, {"features": feats})
        assert r.status_code == 200, r.text
        return
    pytest.skip("no demo model has an optional feature")


def test_predict_integral_real_for_integer(module_server, demo_manifests):
    for name, mf in demo_manifests.items():
        f = h.first_feature(mf, types=("integer",))
        if f is None:
            continue
        feats = h.valid_features(mf)
        feats[f["name"]] = float(feats[f["name"]])  # 3.0 for an integer feature is fine
        r = module_server.predict(name, {"features": feats})
        assert r.status_code == 200, r.text
        return
    pytest.skip("no demo model has an integer feature")


def test_predict_content_type_with_charset(module_server, demo_manifests):
    import json

    mf = demo_manifests[PARK]
    r = module_server.post(
        "/api/v1/models/%s/predict" % PARK,
        data=json.dumps({"features": h.valid_features(mf)}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200, r.text


def test_predict_with_patient_id(module_server, demo_manifests):
    mf = demo_manifests[PARK]
    r = module_server.predict(PARK, {"features": h.valid_features(mf), "patient_id": "P-0001"})
    assert r.status_code == 200, r.text
    assert "P-0001" not in r.text


def test_version_pin(module_server, demo_manifests):
    mf = demo_manifests[PARK]
    r = module_server.predict(PARK, {"features": h.valid_features(mf), "version": "1.0.0"})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "1.0.0"
    r = module_server.predict(PARK, {"features": h.valid_features(mf), "version": "9.9.9"})
    h.assert_error_body(r, 404, "version_not_found")


# --------------------------------------------------------------------------- headers


def test_security_headers_on_errors(module_server):
    responses = [
        module_server.get("/no/such/path"),
        module_server.get("/api/v1/models/no_such_model"),
        module_server.request("DELETE", "/health"),
        module_server.post("/api/v1/models/%s/predict" % PARK, data="{", headers={"Content-Type": "application/json"}),
        module_server.post("/api/v1/models/%s/predict" % PARK, data="x", headers={"Content-Type": "text/plain"}),
        module_server.predict(PARK, {"features": {}}),
    ]
    for r in responses:
        assert r.status_code >= 400, r.status_code
        h.assert_security_headers(r)


def test_request_id_echoed(module_server, demo_manifests):
    r = module_server.get("/health", headers={"X-Request-ID": "e2e-req-0001"})
    assert r.headers.get("X-Request-ID") == "e2e-req-0001"
    r = module_server.get("/no/such/path", headers={"X-Request-ID": "e2e-req-0002"})
    assert r.headers.get("X-Request-ID") == "e2e-req-0002"
    mf = demo_manifests[PARK]
    r = module_server.predict(PARK, {"features": h.valid_features(mf)}, headers={"X-Request-ID": "e2e-req-0003"})
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Request-ID") == "e2e-req-0003"
    assert r.json()["request_id"] == "e2e-req-0003"


def test_request_id_generated(module_server):
    a = module_server.get("/health").headers.get("X-Request-ID")
    b = module_server.get("/health").headers.get("X-Request-ID")
    assert a and b and a != b
    # An insane id (too long, or with characters that do not belong in a header/log) is replaced.
    long_id = "x" * 2000
    r = module_server.get("/health", headers={"X-Request-ID": long_id})
    assert r.status_code == 200
    assert r.headers.get("X-Request-ID") and r.headers["X-Request-ID"] != long_id
    bad = 'a"b\\c<script>'
    r = module_server.get("/health", headers={"X-Request-ID": bad})
    assert r.status_code == 200
    assert r.headers.get("X-Request-ID") and r.headers["X-Request-ID"] != bad
    # the documented bounds, 1-63 characters (docs/api.md): 63 is kept, 64 replaced
    for n, kept in ((1, True), (63, True), (64, False)):
        rid = ("r-" + "9" * n)[:n]
        assert (module_server.get("/health", headers={"X-Request-ID": rid}).headers["X-Request-ID"] == rid) == kept, n


# --------------------------------------------------------------------------- store and logs


def test_prediction_durable_without_inputs(server):
    mf = server.manifest(PARK)
    r = server.predict(PARK, {"features": h.valid_features(mf)})
    assert r.status_code == 200, r.text
    pid = r.json()["prediction_id"]
    row = server.prediction_row(pid)  # read right after the 200, while the server runs
    assert row is not None, "prediction %s not in the store after its 200" % pid
    assert row.get("model") in (None, PARK), row
    assert "inputs_json" in row, "predictions table has no inputs_json column: %s" % sorted(row)
    assert row["inputs_json"] is None, "inputs stored although STORE_PREDICTION_INPUTS is unset"
    rb = server.predict(PARK, {"instances": h.valid_instances(mf, 4)})
    assert rb.status_code == 200, rb.text
    row = server.prediction_row(rb.json()["prediction_id"])
    assert row is not None
    if "n_rows" in row:
        assert row["n_rows"] == 4


def test_prediction_inputs_stored_when_enabled(make_server):
    srv = make_server({"STORE_PREDICTION_INPUTS": "true"})
    mf = srv.manifest(PARK)
    r = srv.predict(PARK, {"features": h.valid_features(mf)})
    assert r.status_code == 200, r.text
    row = srv.prediction_row(r.json()["prediction_id"])
    assert row is not None
    assert row["inputs_json"], "inputs not stored with STORE_PREDICTION_INPUTS=true"


def distinctive_value(feat):
    """A valid value for a number feature whose decimal text contains '731946'."""
    lo, hi = feat["min"], feat["max"]
    for frac in (0.5, 0.3, 0.7, 0.1, 0.9):
        mid = lo + (hi - lo) * frac
        for digits in (2, 4, 0):
            v = float("%.*f" % (digits, mid) + ("731946" if digits else ".731946"))
            if lo <= v <= hi and "731946" in repr(v):
                return v
    return None


def test_logs_have_no_phi(server):
    mf = server.manifest(PARK)
    feats = h.valid_features(mf)
    marker = None
    for f in mf["features"]:
        if f.get("type") == "number" and "min" in f and "max" in f:
            v = distinctive_value(f)
            if v is not None:
                feats[f["name"]] = v
                marker = "731946"
                break
    assert marker, "could not build a distinctive feature value"
    secret = "PATIENT-SECRET-12345"
    r = server.predict(PARK, {"features": feats, "patient_id": secret}, headers={"X-Request-ID": "phi-check-1"})
    assert r.status_code == 200, r.text
    # Invalid requests too: their errors must not echo values into the log either.
    bad = dict(feats)
    bad[h.first_feature(mf, ranged=True)["name"]] = 1e12
    r2 = server.predict(PARK, {"features": bad, "patient_id": secret})
    h.assert_error_body(r2, 422, "validation_failed")
    assert secret not in r2.text and "1000000000000" not in r2.text
    # Wait for the request lines to be written, then stop the server to flush everything.
    rc, killed = server.stop()
    assert rc == 0 and not killed
    log = server.log_text()
    assert "phi-check-1" in log, "request line missing from the log:\n" + server.log_tail()
    assert secret not in log, "patient id found in the server log"
    assert marker not in log, "feature value found in the server log"
    # The store keeps a pseudonym at most, never the raw patient id.
    for suffix in ("", "-wal", "-journal"):
        p = server.db_path + suffix
        if os.path.exists(p):
            assert secret.encode() not in open(p, "rb").read(), "raw patient id stored in %s" % p


def test_log_lines(server):
    server.get("/health", headers={"X-Request-ID": "log-line-1"})
    server.get("/no/such/path", headers={"X-Request-ID": "log-line-2"})
    rc, killed = server.stop()
    assert rc == 0 and not killed
    recs = server.log_records()
    raw = [r["_raw"] for r in recs if "_raw" in r]
    assert not raw, "non-JSON log lines: %s" % raw[:5]
    listening = [r for r in recs if r.get("msg") == "listening"]
    assert listening and listening[0].get("port") == server.port, listening
    reqs = {r.get("request_id"): r for r in recs if r.get("msg") == "request"}
    a, b = reqs.get("log-line-1"), reqs.get("log-line-2")
    assert a and b, "request lines missing: %s" % list(reqs)[:10]
    assert a["method"] == "GET" and a["status"] == 200 and a["route"] == "/health", a
    assert b["status"] == 404, b
    assert isinstance(a["duration_ms"], (int, float)) and a["duration_ms"] >= 0


def test_a_stable_version_whose_directory_is_gone_is_unavailable_not_unknown(demo_dir, tmp_path):
    """review70 #1: a registered stable version whose directory is missing (the models volume
    not mounted) answered 404 "no model named" and counted no error, while /ready listed the
    model as failed. It is a model that does not load: 503 model_unavailable, logged.
    review70 #2: with MODEL_STORAGE_PATH spelled otherwise than at registration, its load
    error named the store's absolute path (in /ready, which needs no login, and in the log)."""
    import shutil

    root = str(tmp_path / "demo")
    h.copy_demo(demo_dir, root)
    # a stable version registered in this copy (the demo's own rows name the original's files)
    dst, _ = h.copy_model_version(os.path.join(root, "models"), "als_classifier",
                                  os.path.join(root, "staging", "als_classifier", "1.1.0"), "1.1.0")
    r = h.run_cli(["model", "register", dst, "--set-stable"], env=h.demo_env(root))
    assert r.returncode == 0, r.stdout + r.stderr
    shutil.rmtree(os.path.join(root, "models", "als_classifier", "1.1.0"))
    srv = h.Server(root, extra_env={"MODEL_STORAGE_PATH": os.path.join(root, "models") + "/"}).start()
    try:
        m = h.read_manifest(os.path.join(demo_dir, "models"), "als_classifier")
        r = srv.post("/api/v1/models/als_classifier/predict", json={"features": h.valid_features(m)})
        h.assert_error_body(r, 503, "model_unavailable")
        failed = srv.get("/ready").json()["checks"]["models"]["failed"]
        err = [f for f in failed if f["model"] == "als_classifier"][0]["error"]
        assert "als_classifier/1.1.0" in err and root not in err, err
        line = [x for x in srv.log_records() if x.get("msg") == "model unavailable"]
        assert line and line[-1]["version"] == "1.1.0" and line[-1]["error"] == err, line
        # a version it does not have is that, not an unknown model (review71 #3)
        r = srv.post("/api/v1/models/als_classifier/predict", json={"features": h.valid_features(m), "version": "9.9.9"})
        h.assert_error_body(r, 404, "version_not_found")
        r = srv.post("/api/v1/models/no_such_model/predict", json={"features": h.valid_features(m), "version": "9.9.9"})
        h.assert_error_body(r, 404, "model_not_found")
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed
