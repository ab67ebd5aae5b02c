# SPDX-License-Identifier: Apache-2.0
"""End-to-end monitoring: a real Prometheus (Debian's prometheus package) scrapes a running
aimedres on its PROMETHEUS_PORT and evaluates test-speed copies of the shipped rules
(deploy/monitoring/rules/aimedres.yml: same expressions and thresholds, `for:` and rate windows
shortened by substitution); a real Alertmanager, configured from the shipped alertmanager.yml
(same route tree and inhibit rules, every receiver turned into a webhook to a recorder on
loopback), receives Prometheus' alerts and the alerts aimedres pushes itself (ALERTMANAGER_URL).

We inject honest faults and check each alert fires and then resolves in Prometheus
(/api/v1/alerts), in Alertmanager (/api/v2/alerts) and at the receivers the shipped routing
names: 5xx answers (a registered model version whose booster file was damaged on disk
answers 503 until it is restored), input drift (shifted inputs, then the model's validation
rows), an accuracy drop (contrary labels on POST /api/v1/feedback, then agreeing ones), low
data quality (a batch of wrong-type values, then valid rows), and the service going down (stop,
then restart the server). Every wait is bounded; the module runs in well under 90 s."""

import csv
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest
import requests
import yaml

import aimedres_harness as h

SRC = h.SRC
MON = os.path.join(SRC, "deploy", "monitoring")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
RATE_WINDOW = "5s"  # replaces every [5m]-style range in the shipped rules
FOR = "1s"  # replaces every `for:` of the shipped rules
MODEL = "alzheimer_classifier"  # drift and accuracy
# Rows in the server's drift window. PSI of an n-row sample of the training distribution over
# ~10 bins is about 9/n from sampling noise alone, so the window must be large enough that the
# in-distribution phase stays well under the 0.1 threshold (1000 rows: ~0.01).
DRIFT_WINDOW = 1000
ERR_MODEL = "als_classifier"  # the damaged version
BAD_VERSION = "9.9.9"
# Upper bounds on waits (not performance assertions): generous for a loaded 2-core runner.
# Every wait is multiplied by h.TIME_SCALE (> 1 for slower builds: scripts/test-sanitize.sh).
FIRE_TIMEOUT_S = 30.0
RESOLVE_TIMEOUT_S = 45.0

# A missing server is a failure, not a skip: scripts/install-deps.sh installs both.
assert os.access(PROMETHEUS, os.X_OK) and os.access(ALERTMANAGER, os.X_OK), \
    "needs Debian's prometheus and prometheus-alertmanager (scripts/install-deps.sh)"


# --------------------------------------------------------------------------- configs


def fast_rules(shipped_path):
    """The shipped rule file with test-speed timing: group intervals 1s, every `for:` FOR and
    every range selector RATE_WINDOW. Expressions, thresholds, labels, annotations unchanged."""
    with open(shipped_path) as f:
        doc = yaml.safe_load(f)
    n = 0
    for g in doc["groups"]:
        g["interval"] = "1s"
        for r in g["rules"]:
            if "for" in r:
                r["for"] = FOR
            r["expr"] = re.sub(r"\[\d+[smhd]\]", "[%s]" % RATE_WINDOW, r["expr"])
            n += 1
    assert n >= 9, "the shipped rule file has only %d rules" % n
    return doc


def am_config(shipped_path, hook_port):
    """The shipped Alertmanager config with each receiver replaced by a webhook to
    http://127.0.0.1:hook_port/<receiver name> and group timings of one second. The route
    tree (matchers, continue) and inhibit rules are the shipped ones."""
    with open(shipped_path) as f:
        doc = yaml.safe_load(f)
    doc["global"] = {"resolve_timeout": "5m"}
    doc.pop("templates", None)

    def fix(route):
        if "group_wait" in route or route is doc["route"]:
            route["group_wait"] = "1s"
        if "group_interval" in route or route is doc["route"]:
            route["group_interval"] = "1s"
        for sub in route.get("routes", []):
            fix(sub)

    fix(doc["route"])
    doc["receivers"] = [
        {"name": r["name"],
         "webhook_configs": [{"url": "http://127.0.0.1:%d/%s" % (hook_port, r["name"]), "send_resolved": True}]}
        for r in doc["receivers"]
    ]
    return doc


# --------------------------------------------------------------------------- webhook recorder


class Recorder:
    """Records every Alertmanager webhook notification: (receiver path, payload)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.notes = []
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(n, 1 << 20))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"_invalid": body[:200].decode("latin-1")}
                with rec.lock:
                    rec.notes.append((self.path.strip("/"), payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def alerts(self, receiver=None):
        """[(receiver, status, alert)] for every alert of every notification so far."""
        with self.lock:
            notes = list(self.notes)
        out = []
        for recv, p in notes:
            if receiver is not None and recv != receiver:
                continue
            for a in p.get("alerts", []):
                out.append((recv, a.get("status"), a))
        return out


# --------------------------------------------------------------------------- processes


def wait_for(what, fn, timeout, interval=0.25):
    """Polls fn until it returns a truthy value; fails naming `what` after timeout seconds
    (times h.TIME_SCALE)."""
    timeout = h.scaled(timeout)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (requests.RequestException, ValueError, KeyError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))


class Proc:
    def __init__(self, name, argv, log_path, ready_url):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     close_fds=True)
        deadline = time.monotonic() + h.scaled(20)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited %s at start:\n%s" % (name, self.proc.returncode, self.tail()))
            try:
                if requests.get(ready_url, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("%s not ready within %.0f s:\n%s" % (name, h.scaled(20), self.tail()))
            time.sleep(0.1)

    def tail(self, n=30):
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Stack:
    """aimedres + Prometheus + Alertmanager + the webhook recorder, all on loopback."""

    def __init__(self, make_server, tmp):
        self.tmp = tmp
        self.recorder = Recorder()
        self.am_port = h.free_port()
        self.prom_port = h.free_port()
        self.metrics_port = h.free_port()
        self.procs = []
        self.dead = []  # (exit status, log tail) of servers that died under a test
        self.servers = []  # every server started, for teardown

        am_dir = os.path.join(tmp, "alertmanager")
        os.makedirs(am_dir)
        am_cfg = os.path.join(am_dir, "alertmanager.yml")
        with open(am_cfg, "w") as f:
            yaml.safe_dump(am_config(os.path.join(MON, "alertmanager.yml"), self.recorder.port), f)
        chk = subprocess.run(["amtool", "check-config", am_cfg], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        self.am = Proc("alertmanager", [ALERTMANAGER, "--config.file=" + am_cfg, "--storage.path=" + am_dir,
                                        "--web.listen-address=127.0.0.1:%d" % self.am_port,
                                        "--cluster.listen-address=", "--log.level=warn"],
                       os.path.join(tmp, "alertmanager.log"), self.am_url("/-/ready"))
        self.procs.append(self.am)

        self.env = {
            "PROMETHEUS_PORT": str(self.metrics_port),
            "ALERTMANAGER_URL": "http://127.0.0.1:%d" % self.am_port,
            "MONITOR_INTERVAL": "1s",
            "DRIFT_WINDOW": str(DRIFT_WINDOW),
            "ACCURACY_WINDOW": "1h",
            "ALERT_ACCURACY_MIN_LABELS": "10",
        }
        self.server = make_server(self.env)
        self.servers.append(self.server)

        prom_dir = os.path.join(tmp, "prometheus")
        os.makedirs(os.path.join(prom_dir, "data"))
        rules = os.path.join(prom_dir, "aimedres-fast.yml")
        with open(rules, "w") as f:
            yaml.safe_dump(fast_rules(os.path.join(MON, "rules", "aimedres.yml")), f, sort_keys=False)
        with open(os.path.join(MON, "prometheus.yml")) as f:
            shipped = yaml.safe_load(f)
        web_job = [j for j in shipped["scrape_configs"] if j["job_name"] == "aimedres-web"][0]
        prom_cfg = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s",
                       "external_labels": shipped["global"].get("external_labels", {})},
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:%d" % self.am_port]}]}]},
            "rule_files": [rules],
            "scrape_configs": [{
                "job_name": "aimedres-web",  # the shipped job (ServiceDown matches on it)
                "metrics_path": web_job.get("metrics_path", "/metrics"),
                "static_configs": [{"targets": ["127.0.0.1:%d" % self.metrics_port],
                                    "labels": web_job["static_configs"][0].get("labels", {})}],
            }],
        }
        cfg = os.path.join(prom_dir, "prometheus.yml")
        with open(cfg, "w") as f:
            yaml.safe_dump(prom_cfg, f, sort_keys=False)
        chk = subprocess.run(["promtool", "check", "config", cfg], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        self.prom = Proc("prometheus", [PROMETHEUS, "--config.file=" + cfg,
                                        "--storage.tsdb.path=" + os.path.join(prom_dir, "data"),
                                        "--web.listen-address=127.0.0.1:%d" % self.prom_port,
                                        "--rules.alert.resend-delay=1s", "--log.level=warn"],
                         os.path.join(tmp, "prometheus.log"), self.prom_url("/-/ready"))
        self.procs.append(self.prom)
        self.http = requests.Session()
        self.http.trust_env = False

    def revive(self):
        """If an earlier test left the server dead (that test failed and the module fixture
        reports the exit status), starts a new one on the same data and ports so the
        remaining tests still say something."""
        old = self.server
        if old.proc.poll() is None:
            return
        self.dead.append((old.proc.returncode, old.log_tail()))
        new = h.Server(old.root, extra_env=self.env, port=old.port)
        new.log_path = old.log_path
        self.server = new.start()
        self.servers.append(new)

    def close(self):
        for p in reversed(self.procs):
            p.stop()
        self.recorder.close()

    def am_url(self, path):
        return "http://127.0.0.1:%d%s" % (self.am_port, path)

    def prom_url(self, path):
        return "http://127.0.0.1:%d%s" % (self.prom_port, path)

    # -- Prometheus

    def query(self, expr):
        r = self.http.get(self.prom_url("/api/v1/query"), params={"query": expr}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def prom_alerts(self, name, state="firing", **labels):
        """Prometheus' alerts named name in state, restricted to those carrying labels (so a
        check on one model is not held up by another model's alert of the same name)."""
        r = self.http.get(self.prom_url("/api/v1/alerts"), timeout=5)
        r.raise_for_status()
        return [a for a in r.json()["data"]["alerts"] if a["labels"].get("alertname") == name and a["state"] == state
                and all(a["labels"].get(k) == v for k, v in labels.items())]

    # -- Alertmanager

    def am_alerts(self, name, **labels):
        r = self.http.get(self.am_url("/api/v2/alerts"), params={"active": "true", "silenced": "false",
                                                                  "inhibited": "true"}, timeout=5)
        r.raise_for_status()
        out = []
        for a in r.json():
            lab = a["labels"]
            if lab.get("alertname") == name and all(lab.get(k) == v for k, v in labels.items()):
                out.append(a)
        return out


@pytest.fixture(scope="module")
def stack(demo_dir, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("promstack"))
    st = None
    problems = []
    try:
        st = Stack(lambda env: h.start_server(demo_dir, os.path.join(tmp, "srv"), env), tmp)
        wait_for("Prometheus to scrape aimedres (up == 1)",
                 lambda: [r for r in st.query('up{job="aimedres-web"}') if r["value"][1] == "1"], 15)
        yield st
    finally:
        if st is not None:
            st.close()
            for s in st.servers:
                if s.returncode is None and s.proc is not None:
                    rc, killed = s.stop()
                    if killed or rc != 0:
                        problems.append("aimedres exited %s after SIGTERM (killed=%s)\n%s" % (rc, killed, s.log_tail()))
            problems += ["aimedres died during a test with status %s\n%s" % d for d in st.dead]
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def st(stack):
    """The module's stack, with a live server."""
    stack.revive()
    return stack


# --------------------------------------------------------------------------- checks


def check_fires(st, name, origin_labels, receivers, timeout=FIRE_TIMEOUT_S):
    """The alert `name` fires in Prometheus (when origin is Prometheus), is active in
    Alertmanager with origin_labels, and a firing notification reaches each receiver."""
    if origin_labels.get("job"):
        # the same label filter as check_resolves, so a resolve check can never pass on labels
        # the firing alert did not carry
        wait_for("%s firing in Prometheus" % name, lambda: st.prom_alerts(name, **origin_labels), timeout)
    am = wait_for("%s active in Alertmanager %r" % (name, origin_labels), lambda: st.am_alerts(name, **origin_labels),
                  timeout)
    for recv in receivers:
        wait_for("a firing %s notification at receiver %s" % (name, recv),
                 lambda recv=recv: [a for r, s, a in st.recorder.alerts(recv)
                                    if s == "firing" and a["labels"].get("alertname") == name
                                    and all(a["labels"].get(k) == v for k, v in origin_labels.items())], timeout)
    return am


def check_resolves(st, name, origin_labels, receivers, timeout=RESOLVE_TIMEOUT_S):
    """The alert leaves Prometheus' firing list and Alertmanager's active list, and a
    resolved notification reaches each receiver."""
    if origin_labels.get("job"):
        wait_for("%s no longer firing or pending in Prometheus" % name,
                 lambda: not st.prom_alerts(name, **origin_labels)
                 and not st.prom_alerts(name, "pending", **origin_labels), timeout)
    wait_for("%s resolved in Alertmanager" % name, lambda: not st.am_alerts(name, **origin_labels), timeout)
    for recv in receivers:
        wait_for("a resolved %s notification at receiver %s" % (name, recv),
                 lambda recv=recv: [a for r, s, a in st.recorder.alerts(recv)
                                    if s == "resolved" and a["labels"].get("alertname") == name
                                    and all(a["labels"].get(k) == v for k, v in origin_labels.items())], timeout)


PROM = {"job": "aimedres-web"}  # alerts of our Prometheus rules carry the scrape job
SERVER = {"service": "aimedres"}  # alerts the server pushes itself carry service="aimedres"


def validation_rows(st, model):
    """(features dict, label) of the model's validation CSV rows with every feature present."""
    m = st.server.manifest(model)
    names = [f["name"] for f in m["features"]]
    types = {f["name"]: f.get("type", "number") for f in m["features"]}
    path = os.path.join(st.server.data_dir, "baseline", "%s_validation.csv" % model)
    rows = []
    with open(path) as f:
        for rec in csv.DictReader(f):
            if any(rec.get(n, "") == "" for n in names):
                continue
            feats = {}
            for n in names:
                v = float(rec[n])
                feats[n] = (v >= 0.5) if types[n] == "boolean" else (int(round(v)) if types[n] == "integer" else v)
            label = rec.get("label", rec.get(m.get("label", ""), ""))
            classes = h.class_labels(m)
            rows.append((feats, classes[int(float(label))] if classes and label != "" else label))
    assert len(rows) >= 50, "only %d complete validation rows for %s" % (len(rows), model)
    return rows


def send_rows(st, model, rows, batch=250):
    """Predicts rows in batches (MAX_BATCH_SIZE is 256 by default); every batch must succeed."""
    for i in range(0, len(rows), batch):
        r = st.server.predict(model, {"instances": rows[i:i + batch]})
        assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- tests


def test_prometheus_scrapes_our_metric_names(st):
    """Prometheus scrapes the metrics port, and the names the shipped rules use exist."""
    r = st.server.predict(MODEL, {"features": h.valid_features(st.server.manifest(MODEL))})
    assert r.status_code == 200, r.text
    targets = st.http.get(st.prom_url("/api/v1/targets"), timeout=5).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets if t["labels"]["job"] == "aimedres-web"] == ["up"], targets
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "host_cpu_usage_percent",
                 "host_memory_usage_percent", "host_disk_usage_percent", "http_requests_total",
                 "http_request_duration_seconds_bucket"):
        wait_for("%s in Prometheus" % name, lambda name=name: st.query(name), 10)
    wait_for("model_predictions_total of %s" % MODEL,
             lambda: st.query('model_predictions_total{model="%s"} > 0' % MODEL), 10)
    rules = st.http.get(st.prom_url("/api/v1/rules"), timeout=5).json()["data"]["groups"]
    assert sorted(g["name"] for g in rules) == ["aimedres_application", "aimedres_audit", "aimedres_backups",
                                                "aimedres_models",
                                               "aimedres_system"]
    bad = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r.get("health") not in ("ok", None)]
    assert not bad, bad


def test_high_error_rate_fires_and_resolves(st):
    """5xx: register a second version of a model, damage its booster on disk: every request
    pinned to it answers 503 model_unavailable. Restoring the file heals it."""
    srv = st.server
    stage, man = h.copy_model_version(srv.models_dir, ERR_MODEL, os.path.join(st.tmp, "stage-%s" % BAD_VERSION),
                                      BAD_VERSION)
    env = dict(h.demo_env(srv.root))
    r = h.run_cli(["model", "register", stage], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    booster = os.path.join(srv.models_dir, ERR_MODEL, BAD_VERSION, man["booster"]["file"])
    with open(booster, "rb") as f:
        good = f.read()
    with open(booster, "wb") as f:
        f.write(good[: len(good) // 2])  # truncated: sha256 mismatch, not parseable

    feats = h.valid_features(srv.manifest(ERR_MODEL))
    labels = dict(PROM)
    deadline = time.monotonic() + h.scaled(FIRE_TIMEOUT_S)
    fired = False
    while time.monotonic() < deadline and not fired:
        for _ in range(5):
            r = srv.predict(ERR_MODEL, {"features": feats, "version": BAD_VERSION})
            assert r.status_code == 503, (r.status_code, r.text)
            assert r.json()["error"]["code"] == "model_unavailable"
            assert srv.predict(ERR_MODEL, {"features": feats}).status_code == 200
        fired = bool(st.prom_alerts("HighErrorRate")) and bool(st.am_alerts("HighErrorRate", **labels))
        time.sleep(0.2)
    # critical + application: paged and on Slack (shipped routing), not the ML team.
    check_fires(st, "HighErrorRate", labels, ["pagerduty-critical", "slack-alerts"], timeout=5)
    assert not [a for r, s, a in st.recorder.alerts("ml-team-email") if a["labels"]["alertname"] == "HighErrorRate"]
    ratio = st.query('sum(rate(http_requests_total{status=~"5.."}[%s])) / sum(rate(http_requests_total[%s]))'
                     % (RATE_WINDOW, RATE_WINDOW))
    assert ratio and float(ratio[0]["value"][1]) > 0.01, ratio

    with open(booster, "wb") as f:  # the operator restores the file: the version loads
        f.write(good)
    r = srv.predict(ERR_MODEL, {"features": feats, "version": BAD_VERSION})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + h.scaled(RESOLVE_TIMEOUT_S)
    while time.monotonic() < deadline and (st.prom_alerts("HighErrorRate") or st.am_alerts("HighErrorRate", **labels)):
        srv.predict(ERR_MODEL, {"features": feats})
        time.sleep(0.2)
    check_resolves(st, "HighErrorRate", labels, ["pagerduty-critical", "slack-alerts"])


def test_data_drift_fires_and_resolves(st):
    """Drift: the model's inputs shift to the top of every feature range, then return to the
    validation distribution. Both our Prometheus rule and the server's own alert follow."""
    srv = st.server
    m = srv.manifest(MODEL)
    shifted = [h.valid_features(m, 0.97 + 0.03 * (i % 2)) for i in range(DRIFT_WINDOW)]
    send_rows(st, MODEL, shifted)
    score = wait_for("data_drift_score{model=%s} > 0.1 in Prometheus" % MODEL,
                     lambda: st.query('data_drift_score{model="%s"} > 0.1' % MODEL), FIRE_TIMEOUT_S)
    assert float(score[0]["value"][1]) > 0.1
    psi = st.query('max(feature_drift_psi{model="%s"})' % MODEL)
    assert psi and float(psi[0]["value"][1]) > 0.1, psi
    labels = dict(PROM, model=MODEL)
    # warning + model_performance: ML team and Slack, not paged.
    check_fires(st, "DataDriftDetected", labels, ["ml-team-email", "slack-alerts"])
    assert not [a for r, s, a in st.recorder.alerts("pagerduty-critical")
                if a["labels"]["alertname"] == "DataDriftDetected"]
    check_fires(st, "DataDriftDetected", dict(SERVER, model=MODEL, severity="warning",
                                              category="model_performance"), ["ml-team-email", "slack-alerts"])

    rows = [f for f, _ in validation_rows(st, MODEL)]
    send_rows(st, MODEL, (rows * (DRIFT_WINDOW // len(rows) + 1))[:DRIFT_WINDOW])
    wait_for("data_drift_score{model=%s} <= 0.1" % MODEL,
             lambda: st.query('data_drift_score{model="%s"} <= 0.1' % MODEL), RESOLVE_TIMEOUT_S)
    check_resolves(st, "DataDriftDetected", labels, ["ml-team-email", "slack-alerts"])
    check_resolves(st, "DataDriftDetected", dict(SERVER, model=MODEL), ["ml-team-email", "slack-alerts"])


def feedback(st, items):
    r = st.server.post("/api/v1/feedback", json={"feedback": items} if len(items) > 1 else items[0])
    assert r.status_code in (200, 201, 202), r.text
    return r


def test_accuracy_drop_fires_and_resolves(st):
    """Accuracy: 30 labels (the rule's minimum) that contradict every prediction push
    model_accuracy below 0.80; labels that agree bring it back."""
    srv = st.server
    m = srv.manifest(MODEL)
    classes = h.class_labels(m)
    rows = [f for f, _ in validation_rows(st, MODEL)][:40]

    def predict_rows(rs):
        out = []
        for feats in rs:
            r = srv.predict(MODEL, {"features": feats})
            assert r.status_code == 200, r.text
            body = r.json()
            out.append((body["prediction_id"], body["prediction"]["label"]))
        return out

    preds = predict_rows(rows[:30])
    assert all(lab in classes for _, lab in preds), preds
    feedback(st, [{"prediction_id": pid, "label": [c for c in classes if c != lab][0]} for pid, lab in preds])
    acc = wait_for("model_accuracy{model=%s} < 0.80 in Prometheus" % MODEL,
                   lambda: st.query('model_accuracy{model="%s"} < 0.80' % MODEL), FIRE_TIMEOUT_S)
    assert float(acc[0]["value"][1]) < 0.80
    labels = dict(PROM, model=MODEL)
    # critical + model_performance: paged, ML team, Slack.
    receivers = ["pagerduty-critical", "ml-team-email", "slack-alerts"]
    check_fires(st, "ModelAccuracyDrop", labels, receivers)
    # The server's own alert (AlertConfig: more than 0.05 below the holdout accuracy), pushed
    # to Alertmanager directly: critical is notified, its warning twin is inhibited by the
    # shipped inhibit rule (critical silences warning of the same alertname and model).
    own = dict(SERVER, model=MODEL, version="1.0.0")
    check_fires(st, "ModelAccuracyDrop", dict(own, severity="critical"), receivers)
    warn = wait_for("the server's warning ModelAccuracyDrop in Alertmanager",
                    lambda: st.am_alerts("ModelAccuracyDrop", severity="warning", **own), FIRE_TIMEOUT_S)
    assert warn[0]["status"]["state"] == "suppressed" and warn[0]["status"]["inhibitedBy"], warn[0]["status"]

    preds = predict_rows(rows[:40]) + predict_rows(rows[:40]) + predict_rows(rows[:40]) + predict_rows(rows[:40])
    feedback(st, [{"prediction_id": pid, "label": lab} for pid, lab in preds])  # 160 agree, 30 contradict
    wait_for("model_accuracy{model=%s} >= 0.80" % MODEL,
             lambda: st.query('model_accuracy{model="%s"} >= 0.80' % MODEL), RESOLVE_TIMEOUT_S)
    check_resolves(st, "ModelAccuracyDrop", labels, receivers)
    check_resolves(st, "ModelAccuracyDrop", dict(own, severity="critical"), receivers)


def test_inhibition_is_per_version(st):
    """The shipped inhibit rule: a critical alert of one model version silences the warning of
    the same alertname, instance, model and version, not a warning of another version."""
    now = time.time()

    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"

    base = dict(SERVER, alertname="ModelAccuracyDrop", instance="inhibit-probe:8000", model="inhibit_probe",
                category="model_performance")
    probes = [dict(base, severity="critical", version="1.1.0"), dict(base, severity="warning", version="1.1.0"),
              dict(base, severity="warning", version="1.0.0")]

    def push(ends):
        r = st.http.post(st.am_url("/api/v2/alerts"), json=[
            {"labels": lab, "startsAt": iso(now), "endsAt": iso(ends)} for lab in probes], timeout=5)
        assert r.status_code == 200, r.text

    push(now + 300)
    try:
        def states():
            got = {(a["labels"]["severity"], a["labels"]["version"]): a["status"]["state"]
                   for a in st.am_alerts("ModelAccuracyDrop", model="inhibit_probe")}
            return got if len(got) == 3 and got[("warning", "1.1.0")] == "suppressed" else None

        got = wait_for("the probe alerts in Alertmanager, the 1.1.0 warning inhibited", states, FIRE_TIMEOUT_S)
        assert got[("critical", "1.1.0")] == "active", got
        assert got[("warning", "1.0.0")] == "active", got  # another version's critical does not hide it
    finally:
        push(now + 1)  # resolve them


def test_data_quality_fires_and_resolves(st):
    """Data quality: a quarter of the window's rows arrive with every value of the wrong type
    (each request answers 422), then valid rows push them out of the window."""
    srv = st.server
    m = srv.manifest(MODEL)
    bad = [{f["name"]: "not-a-value" for f in m["features"]} for _ in range(DRIFT_WINDOW // 4)]
    r = srv.predict(MODEL, {"instances": bad})
    h.assert_error_body(r, 422, "validation_failed")
    q = wait_for("data_quality_score{model=%s} < 0.95 in Prometheus" % MODEL,
                 lambda: st.query('data_quality_score{model="%s"} < 0.95' % MODEL), FIRE_TIMEOUT_S)
    assert 0.5 < float(q[0]["value"][1]) < 0.95, q
    receivers = ["ml-team-email", "slack-alerts"]  # warning + data_quality: the ML team, not paged
    check_fires(st, "DataQualityLow", dict(PROM, model=MODEL), receivers)
    check_fires(st, "DataQualityLow", dict(SERVER, model=MODEL), receivers)
    assert not [a for r_, s_, a in st.recorder.alerts("pagerduty-critical")
                if a["labels"]["alertname"] == "DataQualityLow"]

    rows = [f for f, _ in validation_rows(st, MODEL)]
    send_rows(st, MODEL, (rows * (DRIFT_WINDOW // len(rows) + 1))[:DRIFT_WINDOW])
    wait_for("data_quality_score{model=%s} >= 0.95" % MODEL,
             lambda: st.query('data_quality_score{model="%s"} >= 0.95' % MODEL), RESOLVE_TIMEOUT_S)
    check_resolves(st, "DataQualityLow", dict(PROM, model=MODEL), receivers)
    check_resolves(st, "DataQualityLow", dict(SERVER, model=MODEL), receivers)


def test_service_down_fires_and_resolves(st):
    """The server stops (SIGTERM, exit 0): up == 0 and ServiceDown fires; a new server on
    the same data and ports brings it back."""
    old = st.server
    rc, killed = old.stop()
    assert rc == 0 and not killed, old.log_tail()
    check_fires(st, "ServiceDown", PROM, ["pagerduty-critical", "slack-alerts"])
    new = h.Server(old.root, extra_env=st.env, port=old.port)
    new.log_path = old.log_path
    new.start()
    st.server = new
    st.servers.append(new)
    try:
        check_resolves(st, "ServiceDown", PROM, ["pagerduty-critical", "slack-alerts"])
    finally:
        rc, killed = new.stop()
        assert rc == 0 and not killed, new.log_tail()
