# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests that a rollout's evidence is true (review28 findings 4, 5, 6, 9, 10,
11): shadow agreement compares each version's decision under its own threshold; a request
pinned to a version is recorded and metered as arm "pinned"; late feedback labels on a
candidate's early-stage predictions still count; the live accuracy gate rolls back only on
statistical evidence (one-sided 95% Wilson upper bound below min_accuracy); a blue/green watch
compares green's latency with the stable version's recorded latency before the switch (and
without that reference it does not end); a fairness gate that can not be evaluated fails."""

import csv
import os
import re
import time

import aimedres_harness as h
from test_rollouts import ALS, COHORT, PARK, Traffic, deploy, events, finished, iso_s, record, train, wait_until


def _feedback(srv, items):
    """items: [(prediction_id, label)] posted in one batch; all must be stored."""
    r = srv.post("/api/v1/feedback", json={"feedback": [{"prediction_id": p, "label": l} for p, l in items]})
    assert r.status_code == 200, r.text
    return r.json()


def _predict_many(srv, model, n, tag):
    """n single-row predicts with patient ids tag0..; returns [(answer time, json)]."""
    feats = h.valid_features(srv.manifest(model))
    out = []
    for i in range(n):
        r = srv.predict(model, {"features": feats, "patient_id": "%s%d" % (tag, i)})
        assert r.status_code == 200, r.text
        out.append((time.time(), r.json()))
    return out


def _other(labels, label):
    return labels[1 - labels.index(label)]


def _validation_rows(srv, model):
    """The model's validation CSV as request rows (within the manifest's ranges)."""
    man = srv.manifest(model)
    feats = {f["name"]: f for f in man["features"]}
    rows = []
    with open(os.path.join(srv.data_dir, "baseline", model + "_validation.csv")) as f:
        for rec in csv.DictReader(f):
            row, ok = {}, True
            for name, feat in feats.items():
                if rec[name] == "":
                    ok = ok and not feat.get("required")
                    continue
                v = float(rec[name])
                lo, hi = feat.get("min"), feat.get("max")
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    ok = False
                t = feat.get("type", "number")
                row[name] = bool(v) if t == "boolean" else int(v) if t == "integer" else v
            if ok:
                rows.append(row)
    return rows


def _batch_predict(srv, model, rows, size=10):
    out = []
    for i in range(0, len(rows), size):
        r = srv.predict(model, {"instances": rows[i:i + size]})
        assert r.status_code == 200, r.text
        out.extend(r.json()["predictions"])
    return out


# ------------------------------------------------------------------------ finding 6: shadow agreement


def test_shadow_agreement_uses_each_versions_own_threshold(make_server):
    srv = make_server()
    # the same booster as the stable 1.0.0, deciding at 0.3 instead of 0.5
    train(srv, ALS, "5.0.0", "--threshold", "0.3")
    assert srv.manifest(ALS, "5.0.0")["threshold"] == 0.3
    rows = _validation_rows(srv, ALS)
    stable = _batch_predict(srv, ALS, rows)
    probs = [p["probabilities"]["als"] for p in stable]
    # served decisions: stable at 0.5 (what it answered), candidate at 0.3
    assert all((p >= 0.5) == (s["label"] == "als") for p, s in zip(probs, stable))
    want = sum((p >= 0.5) == (p >= 0.3) for p in probs) / len(probs)
    assert want < 0.99, "no validation row between the thresholds: the test would prove nothing (%g)" % want

    batches = (len(rows) + 9) // 10
    # min_requests = every batch: the shadow phase is judged once all of them were scored
    r = deploy(srv, ALS, "5.0.0", shadow_duration="1s", stage_duration="60s", check_interval="300ms",
               min_requests=batches, min_shadow_agreement=0.99)
    assert r.status_code == 201, r.text
    dep = r.json()["deployment_id"]
    wait_until(srv, dep, lambda d: d["status"] == "monitoring" or not d["active"], timeout=h.scaled(30))
    _batch_predict(srv, ALS, rows)  # scored again by stable, and by 5.0.0 in the shadow
    d = wait_until(srv, dep, finished, timeout=h.scaled(30))
    assert d["status"] == "rolled_back" and "shadow_agreement" in d["rollback_reason"], d["rollback_reason"]
    m = re.search(r"agreement ([0-9.]+) < 0\.9900", d["rollback_reason"])
    assert m and float(m.group(1)) < 0.99, d["rollback_reason"]
    d = wait_until(srv, dep, lambda d: d["performance_metrics"]["shadow"]["rows"] == len(rows),
                   timeout=h.scaled(10))
    sh = d["performance_metrics"]["shadow"]
    assert abs(sh["agreement"] - want) < 1e-6, (sh, want)
    assert srv.get("/api/v1/models/" + ALS).json()["serving_version"] == "1.0.0"


# --------------------------------------------------------------------------- finding 11: pinned arm


def test_pinned_requests_are_recorded_and_metered_as_pinned(make_server):
    srv = make_server()
    train(srv, PARK, "2.0.0", "--rounds", "101")
    r = deploy(srv, PARK, "2.0.0", shadow_duration="0s", canary_stages=[50, 100], stage_duration="60s",
               check_interval="300ms")
    dep = r.json()["deployment_id"]
    wait_until(srv, dep, lambda d: d["current_stage"] == 0, timeout=h.scaled(30))
    feats = h.valid_features(srv.manifest(PARK))
    pinned = {}
    for v in ("2.0.0", "1.0.0"):
        for i in range(3):
            a = srv.predict(PARK, {"features": feats, "version": v, "patient_id": "pin%d" % i})
            assert a.status_code == 200 and a.json()["version"] == v, a.text
            pinned[a.json()["prediction_id"]] = v
    routed = [a for _, a in _predict_many(srv, PARK, 40, "route")]
    for pid, v in pinned.items():
        row = srv.prediction_row(pid)
        assert row["arm"] == "pinned" and row["version"] == v, row
    # routed requests keep their arm
    arms = {(srv.prediction_row(a["prediction_id"])["arm"], a["version"]) for a in routed}
    assert arms == {("stable", "1.0.0"), ("canary", "2.0.0")}, arms
    metrics = srv.get("/metrics").text
    assert 'model="%s",version="2.0.0",arm="pinned"' % PARK in metrics
    assert 'model="%s",version="1.0.0",arm="pinned"' % PARK in metrics


# ---------------------------------------------------------------- findings 4 and 5: live accuracy


def test_late_labels_for_early_stage_predictions_still_count(make_server):
    """Labels that arrive once the next stage started still judge the candidate: the old check
    counted only the current stage's predictions and promoted it."""
    srv = make_server()
    train(srv, PARK, "2.0.0", "--rounds", "101")
    labels = h.class_labels(srv.manifest(PARK))
    r = deploy(srv, PARK, "2.0.0", shadow_duration="0s", canary_stages=[50, 100],
               stage_duration="%dms" % h.scaled(5000), check_interval="300ms", min_requests=5, min_labels=30,
               auto_promote=True)
    dep = r.json()["deployment_id"]
    wait_until(srv, dep, lambda d: d["current_stage"] == 0, timeout=h.scaled(30))
    early = _predict_many(srv, PARK, 120, "early")
    d = wait_until(srv, dep, lambda d: d["current_stage"] == 1 or not d["active"], timeout=h.scaled(30))
    assert d["active"] and d["current_stage"] == 1, d["status"]
    stage1 = iso_s(next(e["at"] for e in d["timeline"] if e["event"] == "stage_1_started"))
    cand = [a for t, a in early if a["version"] == "2.0.0" and t < stage1]
    assert len(cand) >= 36, len(cand)
    # the late truth: the candidate was right on 2 of 3 (0.67)
    items = [(a["prediction_id"], a["prediction"]["label"] if i % 3 else _other(labels, a["prediction"]["label"]))
             for i, a in enumerate(cand)]
    _feedback(srv, items)
    _predict_many(srv, PARK, 10, "late")  # the 100% stage has its min_requests
    d = wait_until(srv, dep, finished, timeout=h.scaled(30))
    assert d["status"] == "rolled_back", (d["status"], events(d)[-4:], d["performance_metrics"].get("last_check"))
    assert "canary_stage_100_accuracy" in d["rollback_reason"] and "upper bound" in d["rollback_reason"], \
        d["rollback_reason"]
    assert srv.get("/api/v1/models/" + PARK).json()["serving_version"] == "1.0.0"


def test_accuracy_gate_rolls_back_on_evidence_only(make_server):
    """30 labels at 0.833 (just under min_accuracy 0.85) are no evidence of a worse candidate:
    it goes on; labels at 0.67 are, and it is rolled back, the bound in the reason."""
    srv = make_server()
    train(srv, PARK, "2.0.0", "--rounds", "101")
    labels = h.class_labels(srv.manifest(PARK))
    r = deploy(srv, PARK, "2.0.0", shadow_duration="0s", canary_stages=[50, 100], stage_duration="120s",
               check_interval="300ms", min_requests=5, min_labels=30, min_accuracy=0.85, auto_promote=True)
    dep = r.json()["deployment_id"]
    wait_until(srv, dep, lambda d: d["current_stage"] == 0, timeout=h.scaled(30))
    cand = []
    i = 0
    while len(cand) < 60:
        cand += [a for _, a in _predict_many(srv, PARK, 20, "a%d-" % i) if a["version"] == "2.0.0"]
        i += 1
        assert i < 30
    first, second = cand[:30], cand[30:60]
    # 25 of 30 right: raw 0.8333 < 0.85, upper bound 0.9164
    _feedback(srv, [(a["prediction_id"], a["prediction"]["label"] if k >= 5 else
                     _other(labels, a["prediction"]["label"])) for k, a in enumerate(first)])
    d = wait_until(srv, dep, lambda d: (d["performance_metrics"].get("last_check") or {}).get("labels") == 30,
                   timeout=h.scaled(10))
    time.sleep(1.0)  # three more check intervals
    d = record(srv, dep)
    assert d["active"] and d["status"] == "deploying", (d["status"], d["rollback_reason"])
    acc = d["performance_metrics"]["last_check"]["accuracy"]
    assert acc["passed"] is True and abs(acc["score"] - 25 / 30) < 1e-6, acc
    assert abs(acc["upper_bound_95"] - 0.916438) < 1e-5, acc
    # 15 of the next 30 right: 40 of 60 in all (0.67), upper bound 0.76 < 0.85
    _feedback(srv, [(a["prediction_id"], a["prediction"]["label"] if k % 2 else
                     _other(labels, a["prediction"]["label"])) for k, a in enumerate(second)])
    d = wait_until(srv, dep, finished, timeout=h.scaled(15))
    assert d["status"] == "rolled_back", d["status"]
    assert d["rollback_reason"].startswith("gate canary_stage_50_accuracy failed: accuracy 0.6667 (40 of 60 labels)"), \
        d["rollback_reason"]
    assert "one-sided 95% upper bound 0.7" in d["rollback_reason"], d["rollback_reason"]
    t = [x for x in d["validation_tests"] if x["test_name"] == "canary_stage_50_accuracy"][-1]
    assert t["passed"] is False and t["labels"] == 60 and t["upper_bound_95"] < 0.85, t


# -------------------------------------------------------------------- finding 9: blue/green latency


def test_blue_green_watch_compares_latency_with_the_stable_reference(make_server):
    fault = h.scale_fault_delay("delay_ms=40")
    srv = make_server(dict(h.SLOW_BUILD_SERVER_ENV, ROLLOUT_FAULT_INJECT="version=2.0.0," + fault))
    train(srv, PARK, "2.0.0", "--rounds", "101")
    with Traffic(srv, PARK, patients=100000):
        time.sleep(h.scaled(1.5))  # the stable version's recorded latency before the switch
        r = deploy(srv, PARK, "2.0.0", "blue-green", stage_duration="%dms" % h.scaled(6000),
                   check_interval="300ms", min_requests=10, max_performance_degradation=1)
        d = wait_until(srv, r.json()["deployment_id"], finished, timeout=h.scaled(60))
    assert d["status"] == "rolled_back", (d["status"], d["performance_metrics"].get("last_check"))
    assert "blue_green_watch_p95_latency_ratio" in d["rollback_reason"], d["rollback_reason"]
    ref = d["performance_metrics"]["last_check"]["stable_p95_reference"]
    assert ref["p95_ms"] is not None and ref["p95_ms"] < h.fault_delay_s(fault) * 1000, ref
    assert srv.get("/api/v1/models/" + PARK).json()["serving_version"] == "1.0.0"


def test_blue_green_without_a_stable_reference_is_not_promoted_on_time(make_server):
    srv = make_server()
    train(srv, PARK, "2.0.0", "--rounds", "101")
    r = deploy(srv, PARK, "2.0.0", "blue-green", stage_duration="1s", check_interval="300ms", min_requests=10)
    dep = r.json()["deployment_id"]
    wait_until(srv, dep, lambda d: d["mode"] == "canary" and d["traffic_percentage"] == 100,
               timeout=h.scaled(30))
    _predict_many(srv, PARK, 15, "green")  # green has its evidence; stable served nothing before
    d = wait_until(srv, dep, lambda d: any("no stable p95 latency reference" in (e.get("reason") or "")
                                           for e in d["timeline"]) or not d["active"], timeout=h.scaled(30))
    assert d["active"] and d["awaiting_evidence"], (d["status"], events(d))
    ext = [e for e in d["timeline"] if e["event"] == "extended_awaiting_evidence"][-1]
    assert ext["reason"].startswith("blue/green watch has no stable p95 latency reference: 0 of the 10"), ext
    time.sleep(1.0)
    d = record(srv, dep)
    assert d["active"] and d["status"] == "monitoring", d["status"]
    ref = d["performance_metrics"]["last_check"]["stable_p95_reference"]
    assert ref["p95_ms"] is None and ref["source"].startswith("none"), ref
    # an operator may still promote by hand
    r = srv.post("/api/v1/deployments/%s/promote" % dep, json={"reason": "latency reviewed by hand"})
    assert r.status_code == 200 and r.json()["status"] == "stable", r.text


# ------------------------------------------------------------------- finding 10: fairness evaluable


def test_fairness_gate_that_cannot_be_evaluated_fails(make_server, tmp_path):
    srv = make_server()
    train(srv, ALS, "3.0.0")  # a good candidate, trained on the whole cohort
    csv_name, label, classes = COHORT[ALS]
    with open(os.path.join(srv.data_dir, "cohorts", csv_name)) as f:
        lines = f.readlines()
    small = tmp_path / "small.csv"
    small.write_text("".join(lines[:61]))  # 60 rows: a validation set of about 12
    r = h.run_cli(["model", "train", "--data", str(small), "--label", label, "--class-labels", classes,
                   "--name", ALS, "--version", "4.0.0"], env=h.demo_env(srv.root))
    assert r.returncode == 0, r.stderr
    with open(os.path.join(srv.data_dir, "baseline", ALS + "_validation.csv")) as f:
        assert len(f.readlines()) - 1 < 20
    r = deploy(srv, ALS, "4.0.0", shadow_duration="1s", min_accuracy=0, min_auc=0, min_f1_score=0,
               max_performance_degradation=1)
    assert r.status_code == 201, r.text
    d = wait_until(srv, r.json()["deployment_id"], finished, timeout=h.scaled(30))
    assert d["status"] == "failed", (d["status"], d["rollback_reason"])
    assert d["rollback_reason"].startswith("gate demographic_parity_difference failed: can not be evaluated"), \
        d["rollback_reason"]
    assert "sensitive column 'sex'" in d["rollback_reason"], d["rollback_reason"]
    t = {x["test_name"]: x for x in d["validation_tests"]}
    for g in ("demographic_parity_difference", "equal_opportunity_difference"):
        assert t[g]["passed"] is False and t[g]["score"] is None and t[g]["evaluable"] is False, t[g]
    # the good 3.0.0 is judged on its own validation rows, not on the 12 the last training left
    with open(os.path.join(srv.data_dir, "baseline", ALS + "_3.0.0_validation.csv")) as f:
        assert len(f.readlines()) - 1 > 200
    r = deploy(srv, ALS, "3.0.0", shadow_duration="60s")
    assert r.status_code == 201, r.text
    d = wait_until(srv, r.json()["deployment_id"], lambda d: d["status"] != "validating" and
                   d["status"] != "pending", timeout=h.scaled(30))
    assert "validation_passed" in events(d), (d["status"], d["rollback_reason"])
    t = {x["test_name"]: x for x in d["validation_tests"]}
    assert t["min_accuracy"]["score"] > 0.85 and t["demographic_parity_difference"]["score"] is not None, t
