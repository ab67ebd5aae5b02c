# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of rollbacks and promotions that must not lie or go wrong (review28,
review28): a rollback after a promotion is answered 200 and audited (DEPLOYMENT_<EVENT> types past
32 characters); `rollback MODEL` goes to the stable version the last promotion replaced, never
to a version that failed its gates, and `--to` is audited and refused for a version that never
served as stable; a bad --to changes nothing (the canary runs on); a deployment whose version no
longer serves can not be rolled back over the current one; promote never goes backwards; a
direct deployment restored after a failed verification shows no traffic; a pause reason must
be a string; the CLI names an invalid --to."""

import json
import os
import time

import aimedres_harness as h
from test_rollouts import ALS, PARK, RELAXED, deploy, events, finished, record, train, wait_until

SECRET = "fix30-rollback-audit-secret-0123456789abcdef"
# promoted within seconds without traffic (one 100% stage that ends on time alone)
FAST = dict(shadow_duration="0s", canary_stages=[100], stage_duration="1s", check_interval="300ms",
            auto_promote=True, min_requests=0)
HELD = dict(shadow_duration="0s", canary_stages=[10, 50, 100], stage_duration="1h", check_interval="1s")


def audited_server(make_server, tmp_path):
    log = str(tmp_path / "audit" / "audit.log")
    srv = make_server({"SECRET_KEY": SECRET, "AUDIT_LOG_PATH": log})
    srv.audit_env = {"SECRET_KEY": SECRET, "AUDIT_LOG_PATH": log}
    return srv


def audit_records(srv, type_=None):
    args = ["audit", "events", "--limit", "1000"] + (["--type", type_] if type_ else [])
    r = h.run_cli(args, env=srv.audit_env)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def wait_audit(srv, type_, pred=lambda rec: True, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        found = [x for x in audit_records(srv, type_) if pred(x)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def promote_fast(srv, model, version, **extra):
    cfg = dict(FAST)
    cfg.update(extra)
    r = deploy(srv, model, version, **cfg)
    assert r.status_code == 201, r.text
    d = wait_until(srv, r.json()["deployment_id"], finished)
    assert d["status"] == "stable", (d["rollback_reason"], d["timeline"][-3:])
    return d


def serving(srv, model):
    return srv.get("/api/v1/models/" + model).json()["serving_version"]


def cli_env(srv):
    return {"PORT": str(srv.port), "HOST": "127.0.0.1"}


# ---------------------------------------------------------------- finding 1: audited, answered 200


def test_rollback_after_promotion_answers_200_and_is_audited(make_server, tmp_path):
    srv = audited_server(make_server, tmp_path)
    train(srv, PARK, "2.0.0", "--rounds", "101")
    # through the API: the deployment's own rollback
    d = promote_fast(srv, PARK, "2.0.0")
    r = srv.post("/api/v1/deployments/%s/rollback" % d["deployment_id"], json={"reason": "api test"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rolled_back" and serving(srv, PARK) == "1.0.0"
    recs = wait_audit(srv, "DEPLOYMENT_ROLLED_BACK_TO_PREVIOUS_STABLE",
                      lambda x: x["entity_id"] == d["deployment_id"])
    assert recs, audit_records(srv)
    det = recs[0]["detail"]
    assert det["from_version"] == "2.0.0" and det["to_version"] == "1.0.0" and det["reason"] == "api test"
    assert recs[0]["outcome"] == "success" and "stored" not in det

    # through the CLI: `aimedres rollback MODEL` after a second promotion
    d2 = promote_fast(srv, PARK, "2.0.0")
    r = h.run_cli(["rollback", PARK], env=cli_env(srv))
    assert r.returncode == 0, r.stderr
    assert "2.0.0 -> 1.0.0" in r.stdout and serving(srv, PARK) == "1.0.0"
    recs = wait_audit(srv, "DEPLOYMENT_ROLLED_BACK_TO_PREVIOUS_STABLE",
                      lambda x: x["entity_id"] == d2["deployment_id"])
    assert recs and recs[0]["detail"]["from_version"] == "2.0.0", audit_records(srv)
    # nothing is left waiting to be audited late
    assert "_late_audit" not in json.dumps(srv.get("/api/v1/deployments").json())
    srv.stop()
    v = h.run_cli(["audit", "verify"], env=srv.audit_env)
    assert v.returncode == 0, v.stdout + v.stderr


# ------------------------------------------- findings 2, 3: where a model rollback goes, and audit


def test_model_rollback_goes_to_the_recorded_previous_stable_never_a_failed_version(make_server, tmp_path):
    srv = audited_server(make_server, tmp_path)
    env = cli_env(srv)
    # 2.0.0 fails its gates; 3.0.0 is deployed directly with a short rollback window
    train(srv, PARK, "2.0.0", "--rounds", "2", "--param", "max_depth=1")
    r = deploy(srv, PARK, "2.0.0", shadow_duration="0s")
    assert wait_until(srv, r.json()["deployment_id"], finished)["status"] == "failed"
    train(srv, PARK, "3.0.0", "--rounds", "101")
    r = deploy(srv, PARK, "3.0.0", "direct", rollback_window="1s")
    d3 = wait_until(srv, r.json()["deployment_id"], finished)
    assert d3["status"] == "stable" and d3["previous_version"] == "1.0.0"
    time.sleep(1.5)
    rc, killed = srv.stop()
    assert rc == 0 and not killed
    srv.start()  # the window is over and nothing of it is in memory: only the store tells

    r = h.run_cli(["rollback", PARK], env=env)
    assert r.returncode == 0, r.stderr
    assert "3.0.0 -> 1.0.0" in r.stdout, r.stdout
    assert serving(srv, PARK) == "1.0.0"
    d = record(srv, d3["deployment_id"])
    assert d["status"] == "rolled_back" and d["traffic_percentage"] == 0
    # the record loaded from the store keeps what it said (gates, figures)
    assert d["validation_tests"] == d3["validation_tests"]
    assert d["performance_metrics"] == d3["performance_metrics"]
    assert "rolled_back_to_previous_stable" in events(d)
    assert wait_audit(srv, "DEPLOYMENT_ROLLED_BACK_TO_PREVIOUS_STABLE",
                      lambda x: x["entity_id"] == d3["deployment_id"]
                      and x["detail"]["to_version"] == "1.0.0")

    # no promotion in force made 1.0.0 stable: nothing to go back to, nothing changes
    r = h.run_cli(["rollback", PARK], env=env)
    assert r.returncode == 1 and "no recorded previous stable version" in r.stderr, r.stderr
    assert serving(srv, PARK) == "1.0.0"
    # 2.0.0 never served as stable (it failed its gates): refused, nothing changes
    resp = srv.post("/api/v1/models/%s/rollback" % PARK, json={"to": "2.0.0"})
    h.assert_error_body(resp, 409, "invalid_state")
    assert "never served as the stable version" in resp.json()["error"]["message"]
    assert serving(srv, PARK) == "1.0.0"

    # --to a version that did serve: done, and audited with actor, from and to
    r = h.run_cli(["rollback", PARK, "--to", "3.0.0"], env=env)
    assert r.returncode == 0, r.stderr
    assert "1.0.0 -> 3.0.0" in r.stdout and serving(srv, PARK) == "3.0.0"
    recs = wait_audit(srv, "DEPLOYMENT_MODEL_ROLLED_BACK",
                      lambda x: x["detail"]["from_version"] == "1.0.0" and x["detail"]["to_version"] == "3.0.0")
    assert recs, audit_records(srv)
    assert recs[0]["user"] == "api" and recs[0]["detail"]["actor"] == "api"


def test_rollback_to_a_version_other_than_the_previous_is_audited(make_server, tmp_path):
    srv = audited_server(make_server, tmp_path)
    train(srv, PARK, "2.0.0", "--rounds", "101")
    train(srv, PARK, "3.0.0", "--rounds", "101")
    a = promote_fast(srv, PARK, "2.0.0")
    b = promote_fast(srv, PARK, "3.0.0")
    assert b["previous_version"] == "2.0.0"
    r = h.run_cli(["rollback", PARK, "--to", "1.0.0"], env=cli_env(srv))
    assert r.returncode == 0, r.stderr
    assert "3.0.0 -> 1.0.0" in r.stdout and serving(srv, PARK) == "1.0.0"
    d = record(srv, b["deployment_id"])
    assert d["status"] == "rolled_back" and "rolled_back_to_version" in events(d)
    recs = wait_audit(srv, "DEPLOYMENT_ROLLED_BACK_TO_VERSION", lambda x: x["entity_id"] == b["deployment_id"])
    assert recs, audit_records(srv)
    assert recs[0]["detail"]["from_version"] == "3.0.0" and recs[0]["detail"]["to_version"] == "1.0.0"
    assert recs[0]["user"] == "api"

    # finding 8: 2.0.0's promotion (window still open, 1.0.0 still loaded for it) no longer
    # serves: its rollback is refused and changes nothing
    assert record(srv, a["deployment_id"])["status"] == "stable"
    resp = srv.post("/api/v1/deployments/%s/rollback" % a["deployment_id"], json={})
    h.assert_error_body(resp, 409, "invalid_state")
    assert "no longer serves" in resp.json()["error"]["message"]
    for action in ("promote", "pause"):
        resp = srv.post("/api/v1/deployments/%s/%s" % (a["deployment_id"], action), json={})
        h.assert_error_body(resp, 409, "invalid_state")
        assert "no longer serves" in resp.json()["error"]["message"], resp.text
    assert serving(srv, PARK) == "1.0.0"
    assert record(srv, a["deployment_id"])["status"] == "stable"


# ---------------------------------------------------------- finding 7: a bad target changes nothing


def test_a_bad_rollback_target_leaves_the_canary_running(make_server):
    srv = make_server()
    train(srv, PARK, "2.0.0", "--rounds", "101")
    train(srv, PARK, "4.0.0", "--rounds", "101")
    # 4.0.0's model file is damaged: registered, but it does not load
    vdir = os.path.join(srv.models_dir, PARK, "4.0.0")
    files = [f for f in os.listdir(vdir) if f not in ("manifest.json",)]
    assert files, os.listdir(vdir)
    for f in files:
        with open(os.path.join(vdir, f), "r+b") as fh:
            fh.seek(0)
            fh.write(b"garbage!")
    r = deploy(srv, PARK, "2.0.0", **HELD)
    dep = r.json()["deployment_id"]
    before = wait_until(srv, dep, lambda d: d["status"] == "deploying")
    assert before["traffic_percentage"] == 10
    resp = srv.post("/api/v1/models/%s/rollback" % PARK, json={"to": "9.9.9"})
    h.assert_error_body(resp, 404, "not_found")
    mid = record(srv, dep)
    assert mid["status"] == "deploying" and mid["active"] and mid["traffic_percentage"] == 10, mid["status"]
    resp = srv.post("/api/v1/models/%s/rollback" % PARK, json={"to": "4.0.0"})
    h.assert_error_body(resp, 422, "validation_failed")
    assert "does not load" in resp.json()["error"]["message"], resp.text
    after = record(srv, dep)
    assert after["status"] == "deploying" and after["active"] and after["traffic_percentage"] == 10
    assert events(after) == events(before)
    assert serving(srv, PARK) == "1.0.0"
    # a good --to still rolls the canary back: here to the stable version itself
    resp = srv.post("/api/v1/models/%s/rollback" % PARK, json={"to": "1.0.0"})
    assert resp.status_code == 200, resp.text
    assert record(srv, dep)["status"] == "rolled_back"


# ------------------------------------------------------------------ finding 12: promote goes forward


def test_promote_never_goes_backwards(make_server):
    srv = make_server()
    train(srv, ALS, "2.0.0", "--rounds", "101")
    r = deploy(srv, ALS, "2.0.0", **HELD)
    dep = r.json()["deployment_id"]
    before = wait_until(srv, dep, lambda d: d["status"] == "deploying")
    for to in (5, 10):
        resp = srv.post("/api/v1/deployments/%s/promote" % dep, json={"to": to})
        h.assert_error_body(resp, 409, "invalid_state")
        assert "forward only" in resp.json()["error"]["message"]
    resp = srv.post("/api/v1/deployments/%s/promote" % dep, json={"to": 30})
    h.assert_error_body(resp, 422, "validation_failed")
    after = record(srv, dep)
    assert after["traffic_percentage"] == 10 and after["current_stage"] == 0
    assert events(after) == events(before)
    resp = srv.post("/api/v1/deployments/%s/promote" % dep, json={"to": 50})
    assert resp.status_code == 200 and resp.json()["traffic_percentage"] == 50, resp.text


# --------------------------------------------------------------------------- findings 14, 15


def test_restored_direct_deployment_shows_no_traffic(make_server):
    srv = make_server({"ROLLOUT_FAULT_INJECT": "version=2.0.0,error_rate=1"})
    train(srv, PARK, "2.0.0", "--rounds", "101")
    r = deploy(srv, PARK, "2.0.0", "direct")
    d = wait_until(srv, r.json()["deployment_id"], finished)
    assert d["status"] == "rolled_back" and "verification failed" in d["rollback_reason"]
    assert d["traffic_percentage"] == 0
    assert serving(srv, PARK) == "1.0.0"


def test_a_reason_must_be_a_string_and_the_cli_names_a_bad_version(make_server):
    srv = make_server()
    train(srv, ALS, "2.0.0", "--rounds", "101")
    r = deploy(srv, ALS, "2.0.0", **HELD)
    dep = r.json()["deployment_id"]
    wait_until(srv, dep, lambda d: d["status"] == "deploying")
    resp = srv.post("/api/v1/deployments/%s/pause" % dep, json={"reason": 5})
    h.assert_error_body(resp, 422, "validation_failed")
    assert resp.json()["error"]["details"][0]["field"] == "reason", resp.text
    assert record(srv, dep)["status"] == "deploying"
    assert srv.post("/api/v1/deployments/%s/rollback" % dep, json={"reason": "done"}).status_code == 200

    r = h.run_cli(["rollback", ALS, "--to", "../x"], env=cli_env(srv))
    assert r.returncode == 2 and "invalid version '../x'" in r.stderr, r.stderr
    r = h.run_cli(["rollback", "../m"], env=cli_env(srv))
    assert r.returncode == 2 and "invalid model name" in r.stderr, r.stderr


# ------------------------------------------------------------- review36: gauges and a failed mode


def traffic(srv, model):
    """{version: value} of deployment_traffic_percent for model on /metrics."""
    prefix = 'deployment_traffic_percent{model="%s",version="' % model
    out = {}
    for line in srv.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            version, value = line[len(prefix):].split('"} ')
            out[version] = float(value)
    return out


def wait_traffic(srv, model, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while traffic(srv, model) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    return traffic(srv, model)


def test_traffic_gauge_follows_what_serves_through_rollbacks(make_server):
    """review36 #1: after `rollback` and `rollback --to`, deployment_traffic_percent named the
    wrong version (0 for the one serving everything, 100 for another)."""
    srv = make_server()
    env = cli_env(srv)
    # a model never deployed shows its stable version serving everything
    assert wait_traffic(srv, PARK, {"1.0.0": 100}) == {"1.0.0": 100}
    train(srv, ALS, "2.0.0", "--rounds", "101")
    r = deploy(srv, ALS, "2.0.0", "direct", **RELAXED)
    assert r.status_code == 201, r.text
    assert wait_until(srv, r.json()["deployment_id"], finished)["status"] == "stable"
    assert wait_traffic(srv, ALS, {"2.0.0": 100, "1.0.0": 0}) == {"2.0.0": 100, "1.0.0": 0}
    r = h.run_cli(["rollback", ALS], env=env)
    assert r.returncode == 0, r.stderr
    assert serving(srv, ALS) == "1.0.0"
    assert wait_traffic(srv, ALS, {"2.0.0": 0, "1.0.0": 100}) == {"2.0.0": 0, "1.0.0": 100}
    r = h.run_cli(["rollback", ALS, "--to", "2.0.0"], env=env)
    assert r.returncode == 0, r.stderr
    assert serving(srv, ALS) == "2.0.0"
    assert wait_traffic(srv, ALS, {"2.0.0": 100, "1.0.0": 0}) == {"2.0.0": 100, "1.0.0": 0}
    # a stable version set by another process (`model register --set-stable`) is followed
    # too, within the controller's refresh
    r = h.run_cli(["model", "register", "--set-stable",
                   os.path.join(srv.root, "models", ALS, "1.0.0")], env=h.demo_env(srv.root))
    assert r.returncode == 0, r.stderr
    assert wait_traffic(srv, ALS, {"2.0.0": 0, "1.0.0": 100}) == {"2.0.0": 0, "1.0.0": 100}


def test_a_deployment_failing_validation_keeps_its_mode(make_server):
    """review36 #2: the failed deployment's mode was "" (set_state copied the mode onto itself)."""
    srv = make_server()
    train(srv, PARK, "0.9.0", "--rounds", "2", "--param", "max_depth=1")
    r = deploy(srv, PARK, "0.9.0", shadow_duration="1s")
    d = wait_until(srv, r.json()["deployment_id"], finished, timeout=30)
    assert d["status"] == "failed" and d["mode"] == "shadow", (d["status"], d["mode"])
    failed = [e for e in d["timeline"] if e["event"] == "validation_failed"]
    assert failed and failed[0].get("mode") == "shadow", d["timeline"]


def test_a_version_csv_that_can_not_be_read_fails_validation_never_falls_back(make_server):
    """review36 (suspicion, confirmed with a link loop as root): when the version's own
    validation CSV exists but could not be read, the gates judged the version on the model's
    CSV, which can hold another version's holdout."""
    srv = make_server()
    train(srv, PARK, "2.0.0", "--rounds", "101")
    own = os.path.join(srv.data_dir, "baseline", "%s_2.0.0_validation.csv" % PARK)
    assert os.path.exists(own)
    os.remove(own)
    os.symlink(os.path.basename(own), own)  # a loop: it exists and can not be opened
    r = deploy(srv, PARK, "2.0.0", shadow_duration="0s", **RELAXED)
    assert r.status_code == 201, r.text
    d = wait_until(srv, r.json()["deployment_id"], finished, timeout=30)
    assert d["status"] == "failed", (d["status"], d["rollback_reason"])
    assert "validation data" in d["rollback_reason"] and own in d["rollback_reason"], d["rollback_reason"]
    assert serving(srv, PARK) == "1.0.0"
