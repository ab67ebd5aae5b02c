# SPDX-License-Identifier: Apache-2.0
"""End-to-end test of the rollback window across a restart (issue 3): after a promotion the
previous stable version stays loaded for instant rollback during rollback_window; a server
restarted inside that window loads it again, so `rollback` still switches every request back
to it, and once the window is over it is unloaded and rollback is refused, as without a
restart."""

import time

import aimedres_harness as h
from test_rollouts import ALS, PARK, deploy, events, finished, iso_s, record, train, wait_until

FAST = dict(shadow_duration="0s", canary_stages=[100], stage_duration="1s", check_interval="300ms",
            auto_promote=True, min_requests=0)  # no traffic: the stage ends on time alone
SHORT_WINDOW_S = 20


def test_rollback_after_restart_within_the_window(make_server):
    srv = make_server()
    train(srv, PARK, "2.0.0", "--rounds", "101")
    train(srv, ALS, "2.0.0", "--rounds", "101")
    a = deploy(srv, PARK, "2.0.0", rollback_window="1h", **FAST)
    b = deploy(srv, ALS, "2.0.0", rollback_window="%ds" % SHORT_WINDOW_S, **FAST)
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    pa, pb = a.json()["deployment_id"], b.json()["deployment_id"]
    da = wait_until(srv, pa, finished)
    db = wait_until(srv, pb, finished)
    assert da["status"] == "stable" and db["status"] == "stable", (da["rollback_reason"], db["rollback_reason"])
    assert da["previous_version_loaded"] is True and da["previous_version"] == "1.0.0"

    # SIGTERM, start again on the same data
    rc, killed = srv.stop()
    assert rc == 0 and not killed
    srv.returncode = None
    srv.start()

    d = record(srv, pa)
    assert d["status"] == "stable" and d["previous_version_loaded"] is True, d
    assert "rollback_window_resumed" in events(d)
    assert d["rollback_available_until"] == da["rollback_available_until"]  # the window did not move
    feats_p = h.valid_features(srv.manifest(PARK))
    assert srv.predict(PARK, {"features": feats_p, "patient_id": "p0"}).json()["version"] == "2.0.0"

    r = srv.post("/api/v1/deployments/%s/rollback" % pa, json={"reason": "regression seen after restart"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["status"] == "rolled_back" and d["rollback_triggered"] is True
    assert d["previous_version_loaded"] is False
    assert "rolled_back_to_previous_stable" in events(d)
    # every request, whatever the patient, is served by the previous version now
    seen = set()
    for i in range(40):
        resp = srv.predict(PARK, {"features": feats_p, "patient_id": "patient-%d" % i})
        assert resp.status_code == 200, resp.text
        seen.add(resp.json()["version"])
    assert seen == {"1.0.0"}
    assert srv.get("/api/v1/models/" + PARK).json()["serving_version"] == "1.0.0"

    # the other model's window ends: its previous version is unloaded, rollback refused
    d = record(srv, pb)
    assert d["previous_version_loaded"] is True, d
    until = iso_s(d["rollback_available_until"])
    assert until - time.time() < SHORT_WINDOW_S + 1
    time.sleep(max(0.0, until - time.time()))
    wait_until(srv, pb, lambda d: d["previous_version_loaded"] is False, timeout=10)
    h.assert_error_body(srv.post("/api/v1/deployments/%s/rollback" % pb, json={}), 409, "invalid_state")
    assert srv.get("/api/v1/models/" + ALS).json()["serving_version"] == "2.0.0"
