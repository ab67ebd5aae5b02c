# SPDX-License-Identifier: Apache-2.0
"""End-to-end lifecycle tests: a new model version trained and made stable by another
process (plus SIGHUP) while predictions run, without one failed request; SIGTERM while
requests are in flight (every one answered 200 and durable, exit 0); registration of a
tampered artifact refused with nothing changed."""

import hashlib
import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time

import pytest
import requests

import aimedres_harness as h

PARK = "parkinsons_predictor"
PREDICT = "/api/v1/models/%s/predict" % PARK


# --------------------------------------------------------------------------- (a) hot reload


class Load:
    """n threads POSTing single-row predicts until stopped (hard cap max_s)."""

    def __init__(self, srv, body, n=4, max_s=20.0):
        self.srv, self.body, self.n, self.max_s = srv, json.dumps(body), n, h.scaled(max_s)
        self.stop = threading.Event()
        self.results = []  # (t_start, t_end, status, version or error text)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]
        self.t0 = time.monotonic()

    def run(self):
        s = requests.Session()
        s.trust_env = False
        local = []
        while not self.stop.is_set() and time.monotonic() - self.t0 < self.max_s:
            t = time.monotonic()
            try:
                r = s.post(self.srv.url(PREDICT), data=self.body,
                           headers={"Content-Type": "application/json"}, timeout=h.scaled(10))
                ver = r.json().get("version") if r.status_code == 200 else r.text[:300]
                local.append((t, time.monotonic(), r.status_code, ver))
            except Exception as e:  # noqa: BLE001 - any failure is a finding
                local.append((t, time.monotonic(), None, repr(e)))
        s.close()
        with self.lock:
            self.results.extend(local)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        self.results.sort()
        return self.results


def current_version(srv, body):
    r = srv.post(PREDICT, data=json.dumps(body), headers={"Content-Type": "application/json"},
                timeout=h.scaled(10))
    assert r.status_code == 200, r.text
    return r.json()["version"]


def train_new_version(srv, version, timeout=120):  # run_cli scales the timeout
    """Trains `version` of the Parkinson's model from the demo cohort in another process and
    makes it stable (train --set-stable, or train then register --set-stable)."""
    manifest = srv.manifest(PARK)
    label = manifest["label"]
    cohort = os.path.join(srv.data_dir, "cohorts", "parkinsons.csv")
    assert os.path.exists(cohort), "demo cohort missing: %s" % cohort
    env = srv.env
    help_text = h.run_cli(["model", "train", "--help"], env=env, timeout=30)
    assert help_text.returncode == 0, help_text.stderr
    args = ["model", "train", "--data", cohort, "--label", label, "--name", PARK, "--version", version,
            "--class-labels", ",".join(manifest["class_labels"]), "--synthetic", "--seed", "7", "--rounds", "30"]
    set_stable_in_train = "--set-stable" in help_text.stdout + help_text.stderr
    if set_stable_in_train:
        args.append("--set-stable")
    t0 = time.monotonic()
    r = h.run_cli(args, env=env, timeout=timeout)
    assert r.returncode == 0, "model train failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    if not set_stable_in_train:
        vdir = os.path.join(srv.models_dir, PARK, version)
        r = h.run_cli(["model", "register", vdir, "--set-stable"], env=env, timeout=timeout)
        assert r.returncode == 0, "model register failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    return time.monotonic() - t0


def test_hot_reload_under_load(server):
    mf = server.manifest(PARK)
    body = {"features": h.valid_features(mf)}
    assert current_version(server, body) == "1.0.0"

    load = Load(server, body, n=4, max_s=20.0).start()
    try:
        time.sleep(0.7)
        train_s = train_new_version(server, "1.1.0")
        t_done = time.monotonic()
        server.send_signal(signal.SIGHUP)
        # Poll with a separate client until 1.1.0 serves (within a few seconds).
        switched = None
        while time.monotonic() - t_done < h.scaled(5.0):
            if current_version(server, body) == "1.1.0":
                switched = time.monotonic()
                break
            time.sleep(0.05)
        time.sleep(1.0)  # keep the load on after the switch, and another SIGHUP mid-load
        server.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    finally:
        results = load.finish()

    failures = [r for r in results if r[2] != 200]
    assert not failures, "%d of %d requests failed during reload, e.g. %s" % (len(failures), len(results), failures[:5])
    assert switched is not None, "1.1.0 not served within %.0f s after training (%.1f s) + SIGHUP" % (
        h.scaled(5.0), train_s)
    versions = [r[3] for r in results]
    assert "1.0.0" in versions and "1.1.0" in versions, set(versions)
    first_new = min(r[1] for r in results if r[3] == "1.1.0")
    late_old = [r for r in results if r[0] > first_new + 0.5 and r[3] != "1.1.0"]
    assert not late_old, "old version still answered after the switch: %s" % late_old[:5]
    assert len(results) > 50, "load generator made only %d requests" % len(results)

    detail = server.get("/api/v1/models/" + PARK).json()
    assert detail["serving_version"] == "1.1.0", detail
    vers = {v["version"]: v for v in detail["versions"]}
    assert set(vers) == {"1.0.0", "1.1.0"}, vers
    assert vers["1.1.0"]["stable"] is True and vers["1.0.0"]["stable"] is False, vers
    listed = {m["name"]: m for m in server.get("/api/v1/models/list").json()["models"]}
    assert listed[PARK]["version"] == "1.1.0"
    assert listed[PARK]["traffic"] == {"1.1.0": 100}
    # The old version stays reachable by pin.
    r = server.predict(PARK, dict(body, version="1.0.0"))
    assert r.status_code == 200 and r.json()["version"] == "1.0.0", r.text
    # The new version's manifest exists and was trained on the cohort (observed ranges).
    new_mf = server.manifest(PARK, "1.1.0")
    assert [f["name"] for f in new_mf["features"]] == [f["name"] for f in mf["features"]]
    assert new_mf["class_labels"] == mf["class_labels"]
    assert os.path.exists(os.path.join(server.data_dir, "baseline", PARK + "_validation.csv"))


def test_sighup_without_changes(server):
    mf = server.manifest(PARK)
    body = {"features": h.valid_features(mf)}
    load = Load(server, body, n=2, max_s=10.0).start()
    try:
        for _ in range(5):
            time.sleep(0.2)
            server.send_signal(signal.SIGHUP)
        time.sleep(0.3)
    finally:
        results = load.finish()
    bad = [r for r in results if r[2] != 200 or r[3] != "1.0.0"]
    assert not bad, bad[:5]
    r = server.get("/ready")
    assert r.status_code == 200 and r.json()["checks"]["models"]["loaded"] == 3, r.text


# --------------------------------------------------------------------------- (b) SIGTERM drain


def keepalive_conn(port):
    """A connection on which one GET /health has been answered (so the server accepted it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(30))
    s.sendall(h.build_request("GET", "/health"))
    resp = h.read_raw_response(s)
    assert resp.status == 200
    return s


def unread_by_client_port(port):
    """{client port: bytes the client sent that the server has not read yet} for the established
    loopback connections to `port`: the client socket's tx_queue (not yet delivered) plus the
    server socket's rx_queue (delivered, not read by the server), from /proc/net/tcp and tcp6."""
    out = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "01":  # ESTABLISHED
                continue
            local, remote = (int(x.rsplit(":", 1)[1], 16) for x in fields[1:3])
            tx, rx = (int(x, 16) for x in fields[4].split(":"))
            if local == port:
                out[remote] = out.get(remote, 0) + rx
            elif remote == port:
                out[local] = out.get(local, 0) + tx
    return out


def predict_request(rows):
    body = json.dumps({"instances": rows}).encode()
    return h.build_request("POST", PREDICT, body, {"Content-Type": "application/json"})


def test_sigterm_drain_in_flight(make_server):
    drain_s = h.scaled(30)  # the idle connections below must not hold the exit until this deadline
    srv = make_server({"SHUTDOWN_DRAIN_TIMEOUT": "%d" % drain_s})
    mf = srv.manifest(PARK)
    rows = h.valid_instances(mf, 256)
    req = predict_request(rows)
    n = 64
    stored_before = srv.prediction_ids()
    conns = [keepalive_conn(srv.port) for _ in range(n)]
    idle = [keepalive_conn(srv.port) for _ in range(8)]
    sent = [threading.Event() for _ in range(n)]
    results = [None] * n
    barrier = threading.Barrier(n + 1)

    def worker(i):
        s = conns[i]
        barrier.wait()
        try:
            s.sendall(req)
        except OSError as e:
            results[i] = ("send-failed", repr(e), None)
            sent[i].set()
            return
        sent[i].set()
        try:
            resp = h.read_raw_response(s, "POST")
            results[i] = ("response", resp.status, resp.body, time.monotonic())
        except h.http.client.IncompleteRead as e:
            results[i] = ("truncated-response", repr(e), None)
        except Exception as e:  # noqa: BLE001
            results[i] = ("no-response", repr(e), None)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    for e in sent:
        assert e.wait(h.scaled(10)), "could not send all requests"
    # The promise (docs/operations.md) is for requests fully received before SIGTERM; one the
    # server has not read yet may be closed unanswered and unrecorded. On a busy machine the
    # server may not have read a request sendall() has handed to the kernel, so note which
    # connections it had read completely, just before the signal (no sleep: SIGTERM must still
    # find requests in flight). At least one must be.
    ports = [c.getsockname()[1] for c in conns]
    deadline = time.monotonic() + h.scaled(10)
    while True:
        unread = unread_by_client_port(srv.port)
        read = [i for i, p in enumerate(ports) if unread.get(p) == 0]
        if read or time.monotonic() > deadline:
            break
    assert read, "the server read none of the %d requests within %.0f s" % (n, h.scaled(10))
    t_term = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=drain_s + h.scaled(10))
    rc = srv.wait(drain_s)
    t_exit = time.monotonic()
    for s in conns + idle:
        s.close()
    assert rc is not None, "server did not exit within %.0f s of SIGTERM\n%s" % (drain_s, srv.log_tail())
    assert rc == 0, "exit code %s after SIGTERM\n%s" % (rc, srv.log_tail())

    answered_before = sum(1 for r in results if r and r[0] == "response" and r[3] < t_term)
    bad = [(i, r[:2]) for i in read for r in [results[i]] if not r or r[0] != "response" or r[1] != 200]
    assert not bad, ("requests received before SIGTERM not answered 200 (%d answered before the signal): %s\n%s"
                     % (answered_before, bad[:8], srv.log_tail()))
    # the others: answered 200, or closed without an answer (never a non-200 answer)
    odd = [(i, r[:2]) for i, r in enumerate(results) if r and r[0] == "response" and r[1] != 200]
    assert not odd, odd[:8]
    ids = set()
    for r in results:
        if r and r[0] == "response":
            body = json.loads(r[2])
            assert len(body["predictions"]) == 256
            ids.add(body["prediction_id"])
    stored = srv.prediction_ids() - stored_before
    missing = ids - stored
    assert not missing, "%d answered predictions not in the store after shutdown" % len(missing)
    # and nothing unanswered was recorded
    assert stored == ids, "%d predictions recorded that were never answered" % len(stored - ids)
    answered_after = sum(1 for r in results if r and r[0] == "response" and r[3] >= t_term)
    print("drain: %d of %d read before SIGTERM, %d answered after it, %d closed unanswered"
          % (len(read), n, answered_after, n - len(ids)))
    # Idle keep-alive connections must not hold the drain until its deadline.
    assert t_exit - t_term < drain_s / 2, "exit took %.1f s (drain deadline %.0f s)" % (t_exit - t_term, drain_s)


def slow_canary_server(make_server, delay_ms, drain_s):
    """One worker, and a 100 % canary (2.0.0) whose predicts sleep delay_ms (ROLLOUT_FAULT_INJECT).
    These tests time the drain against sleeps, not latency gates against a slower build: the
    harness's scaling of the injected delay (LATENCY_SCALE) is undone."""
    fault = "version=2.0.0,delay_ms=%d" % round(delay_ms / h.LATENCY_SCALE)
    assert abs(h.fault_delay_s(fault) - delay_ms / 1000.0) < 0.01, (fault, h.LATENCY_SCALE)
    srv = make_server({"MAX_WORKERS": "1", "SHUTDOWN_DRAIN_TIMEOUT": "%d" % drain_s, "ROLLOUT_FAULT_INJECT": fault})
    manifest = srv.manifest(PARK)
    r = h.run_cli(["model", "train", "--data", os.path.join(srv.data_dir, "cohorts", "parkinsons.csv"),
                   "--label", manifest["label"], "--class-labels", ",".join(manifest["class_labels"]),
                   "--name", PARK, "--version", "2.0.0", "--rounds", "101"], env=h.demo_env(srv.root))
    assert r.returncode == 0, r.stderr
    r = srv.post("/api/v1/deployments", json={"model": PARK, "version": "2.0.0", "strategy": "canary", "config": {
        "shadow_duration": "0s", "canary_stages": [100], "stage_duration": "1h", "check_interval": "1h",
        "max_demographic_disparity": 0.5}})
    assert r.status_code == 201, r.text
    dep = r.json()["deployment_id"]
    deadline = time.monotonic() + h.scaled(60)
    while srv.get("/api/v1/deployments/" + dep).json()["traffic_percentage"] != 100:
        assert time.monotonic() < deadline, srv.get("/api/v1/deployments/" + dep).text
        time.sleep(0.1)
    return srv


def sender(req, results, sent=None):
    """send(name, sock): sends req whole (noting when in sent[name]), reads the answer into
    results[name]."""
    def send(name, sock):
        try:
            sock.sendall(req)
            if sent is not None:
                sent[name] = time.monotonic()
            resp = h.read_raw_response(sock, "POST")
            results[name] = (resp.status, json.loads(resp.body)["prediction_id"] if resp.status == 200 else resp.body)
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            results[name] = ("failed", repr(e))
    return send


def test_sigterm_drain_answers_requests_queued_behind_a_busy_worker(make_server):
    """review41 #2: the drain closed each worker's listener without accepting the connections
    already queued on it, and the kernel reset them: a predict sent whole before SIGTERM, on a
    new connection to a worker busy with a slow request, got "connection reset" and no answer.
    One worker; a 100 % canary whose predicts sleep 1.5 s (ROLLOUT_FAULT_INJECT) keeps it busy.
    Requests B (new connection) and C (an idle keep-alive connection) are sent whole while A is
    busy, then SIGTERM: all three are answered 200 and recorded."""
    srv = slow_canary_server(make_server, 1500, h.scaled(30))
    req = predict_request(h.valid_instances(srv.manifest(PARK), 1))
    before = srv.prediction_ids()
    idle = keepalive_conn(srv.port)
    results = {}
    send = sender(req, results)
    a = threading.Thread(target=send, args=("A", socket.create_connection(("127.0.0.1", srv.port))))
    a.start()
    time.sleep(0.4)  # A is in the worker, sleeping
    threads = [threading.Thread(target=send, args=("B", socket.create_connection(("127.0.0.1", srv.port)))),
               threading.Thread(target=send, args=("C", idle))]
    for t in threads:
        t.start()
    time.sleep(0.3)  # B and C are whole in their sockets (the worker reads nothing while busy)
    srv.send_signal(signal.SIGTERM)
    for t in [a] + threads:
        t.join(h.scaled(30))
    rc = srv.wait(h.scaled(30))
    assert rc == 0, srv.log_tail()
    assert {k: v[0] for k, v in results.items()} == {"A": 200, "B": 200, "C": 200}, (results, srv.log_tail())
    assert {v[1] for v in results.values()} <= srv.prediction_ids() - before


def drain_behind_a_busy_worker(srv, queued, gap_s, before_term_s):
    """Sends A, then `queued` requests on new connections `gap_s` apart while A keeps the one
    worker busy, SIGTERM `before_term_s` later. Returns (seconds from SIGTERM to exit, answers
    by name, predictions recorded and never answered). A request busy at the deadline may be
    recorded unanswered (the stop writes its queued record: "prediction stored but not
    answered" in the log); nothing taken in after the deadline may be."""
    req = predict_request(h.valid_instances(srv.manifest(PARK), 1))
    before = srv.prediction_ids()
    results = {}
    send = sender(req, results)
    threads = [threading.Thread(target=send, args=(n, socket.create_connection(("127.0.0.1", srv.port))))
               for n in ["A"] + ["Q%d" % i for i in range(queued)]]
    threads[0].start()
    time.sleep(0.3)  # A is in the worker, sleeping; the others wait in the accept queue
    for t in threads[1:]:
        t.start()
        time.sleep(gap_s)
    time.sleep(before_term_s)
    t_term = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait(h.scaled(30))
    took = time.monotonic() - t_term
    for t in threads:
        t.join(h.scaled(10))
    assert rc == 0, srv.log_tail()
    answered = {v[1] for v in results.values() if v[0] == 200}
    return took, results, (srv.prediction_ids() - before) - answered


def test_sigterm_drain_takes_nothing_in_after_its_deadline(make_server):
    """review43 #1: a worker busy past the drain deadline took in the connections queued behind
    it when the stop came, ran their predicts (recorded, never answered) and held the exit for
    each. Past the deadline nothing is taken in: exit soon after the busy request (3 s, deadline
    1 s), at most that one recorded unanswered."""
    srv = slow_canary_server(make_server, 3000, 1)
    took, results, unanswered = drain_behind_a_busy_worker(srv, 2, 0, 0.2)
    assert took < 3 + h.scaled(2.5), "exit %.1f s after SIGTERM (one busy request of 3 s, deadline 1 s)\n%s" % (took, srv.log_tail())
    assert len(unanswered) <= 1, ("recorded but never answered: %d" % len(unanswered), results)


def test_sigterm_drain_checks_its_deadline_before_each_request_it_takes_in(make_server):
    """review44 #2: a worker that came free before the deadline took in every queued connection
    and ran their predicts one after another in one go, past the deadline (exit 3.2 s late, one
    recorded without an answer). Each one taken in now checks the deadline first: the exit comes
    at most one request's time after it. One worker, predicts of 1.5 s, deadline 3 s, six
    requests queued behind a busy one."""
    srv = slow_canary_server(make_server, 1500, 3)
    took, results, unanswered = drain_behind_a_busy_worker(srv, 6, 0.05, 0.6)
    assert took < 3 + 1.5 + h.scaled(1.5), "exit %.1f s after SIGTERM (deadline 3 s, requests of 1.5 s)\n%s" % (
        took, srv.log_tail())
    assert results["A"][0] == 200, results
    assert len(unanswered) <= 1, ("recorded but never answered: %d" % len(unanswered), results)


def test_sigterm_drain_does_not_take_in_a_request_completed_after_it_began(make_server):
    """review46 #2: the drain read each connection only when its oldest-first walk reached it,
    so a body completed after SIGTERM, while the walk ran a slow request ahead of it, was read
    whole and taken in (recorded, answered) although it was still arriving when the drain
    began. The drain now reads every connection once, first, and nothing after that. One
    worker, predicts of 2 s: A busy; K whole and S half-sent before SIGTERM; the drain reads
    both when A ends (2 s), runs K (2 s to 4 s); S's rest comes at 3 s and is not taken in.
    The times count from A's request sent whole (flaky67 #2: counted from before A's thread
    started, a slow start put A's end, and so the drain's read, after S's rest). A run whose
    own steps up to SIGTERM took so long that the timeline no longer holds is run again on a
    new server, at most three times."""
    for attempt in range(3):
        if drain_while_a_body_arrives(slow_canary_server(make_server, 2000, h.scaled(30))):
            return
    raise AssertionError("three runs missed the timeline: SIGTERM came later than 1.5 s after A began")


def drain_while_a_body_arrives(srv):
    """One run of the test above: False when the timeline did not hold (nothing checked),
    True when it held and every check passed."""
    req = predict_request(h.valid_instances(srv.manifest(PARK), 1))
    before = srv.prediction_ids()
    results = {}
    sent = {}
    send = sender(req, results, sent)
    a = threading.Thread(target=send, args=("A", socket.create_connection(("127.0.0.1", srv.port))))
    a.start()
    deadline = time.monotonic() + h.scaled(10)
    while "A" not in sent and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = sent["A"]
    time.sleep(0.3)  # A is in the worker, sleeping
    k = threading.Thread(target=send, args=("K", socket.create_connection(("127.0.0.1", srv.port))))
    k.start()
    time.sleep(0.1)
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(req[: len(req) - 20])
    time.sleep(0.2)
    srv.send_signal(signal.SIGTERM)
    on_time = time.monotonic() - t0 < 1.5  # while A still runs, with K and S's half in their sockets
    time.sleep(max(0.0, 3.0 - (time.monotonic() - t0)))
    try:
        s.sendall(req[len(req) - 20:])
        status = h.read_raw_response(s, "POST").status
    except Exception:  # noqa: BLE001 - closed or reset is the documented outcome
        status = None
    finally:
        s.close()
    for t in (a, k):
        t.join(h.scaled(30))
    rc = srv.wait(h.scaled(30))
    if not on_time:
        srv.stop()
        return False
    assert rc == 0, srv.log_tail()
    assert results.get("A", [None])[0] == 200 and results.get("K", [None])[0] == 200, (results, srv.log_tail())
    assert status != 200, "a request completed after the drain began was taken in"
    answered = {v[1] for v in results.values() if v[0] == 200}
    assert srv.prediction_ids() - before == answered, "a request the drain did not take in was recorded"
    return True


def test_sigterm_drain_does_not_invite_a_body_it_will_not_read(make_server):
    """review48 #7: the drain answered a request waiting with `Expect: 100-continue` with
    "100 Continue", then never read the body it had invited (the client got a reset). While
    draining no 100 is sent: the connection closes without one. One worker busy with a 1.5 s
    predict; E sends its headers before SIGTERM; the drain reads it when A ends."""
    srv = slow_canary_server(make_server, 1500, h.scaled(30))
    req = predict_request(h.valid_instances(srv.manifest(PARK), 1))
    head, body = req.split(b"\r\n\r\n", 1)
    results = {}
    a = threading.Thread(target=sender(req, results), args=("A", socket.create_connection(("127.0.0.1", srv.port))))
    a.start()
    time.sleep(0.3)  # A is in the worker, sleeping
    e = socket.create_connection(("127.0.0.1", srv.port))
    e.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
    time.sleep(0.3)
    srv.send_signal(signal.SIGTERM)
    e.settimeout(h.scaled(20))
    got = b""
    try:
        while True:
            b = e.recv(4096)
            if not b:
                break
            got += b
    except OSError:
        pass
    finally:
        e.close()
    a.join(h.scaled(30))
    assert srv.wait(h.scaled(30)) == 0, srv.log_tail()
    assert results["A"][0] == 200, results
    assert b"100 Continue" not in got, got


def thread_in_sleep(pid, comm):
    """Whether the thread of pid named comm is in nanosleep or clock_nanosleep (x86_64 35, 230):
    the recorder is there only while SQLite's busy handler waits for another process's lock."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() != comm:
                    continue
            with open("/proc/%d/task/%s/syscall" % (pid, tid)) as f:
                return f.read().split()[0] in ("35", "230")
        except OSError:
            continue
    return False


def test_sigterm_drains_at_once_while_a_record_waits_for_the_store(make_server):
    """review67 #1: with another process holding the store's write lock, a prediction's record
    waits for it (up to 5 s). The main thread's model poll read the registry on the writer's
    connection, waited behind that record, and held up the SIGTERM with it: the server went on
    answering /ready 200 and taking connections until the recorder gave up. The registry reads
    now use the reader connection: the drain begins at once, and the record, once the lock is
    released, is stored and answered."""
    srv = make_server({"SHUTDOWN_DRAIN_TIMEOUT": "%d" % h.scaled(20), "MODEL_POLL_INTERVAL": "50ms"})
    rows = h.valid_instances(srv.manifest(PARK), 1)
    locker = sqlite3.connect(srv.db_path, timeout=h.scaled(10), isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")
    released = False
    try:
        conn, idle = keepalive_conn(srv.port), keepalive_conn(srv.port)
        conn.sendall(predict_request(rows))
        # the record is waiting in SQLite's busy handler (for up to 5 s)
        deadline = time.monotonic() + h.scaled(4)
        while not thread_in_sleep(srv.proc.pid, "aimedres-rec"):
            assert time.monotonic() < deadline, "the recorder never waited for the lock"
            time.sleep(0.01)
        time.sleep(0.2)  # several polls (every 50 ms) meanwhile: before the fix one blocked the main thread
        srv.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + h.scaled(20)
        while "draining" not in srv.log_text():
            assert time.monotonic() < deadline, srv.log_tail()
            time.sleep(0.02)
        log = srv.log_text()
        # the drain began while the record still waited: before the recorder gave up on the lock
        assert "database is locked" not in log[:log.index('"draining"')], srv.log_tail()
        # it stopped accepting, and the idle connection was closed, while the record still waits
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=h.scaled(5)).close()
        assert idle.recv(1) == b""
        locker.execute("COMMIT")
        released = True
        resp = h.read_raw_response(conn, "POST")
        assert resp.status == 200, resp.body
        assert srv.wait(h.scaled(30)) == 0, srv.log_tail()
        assert srv.prediction_row(resp.json()["prediction_id"]) is not None
    finally:
        if not released:
            locker.execute("COMMIT")
        locker.close()


def test_sigterm_drain_partial_request(make_server):
    """docs/operations.md: every request fully received before SIGTERM is answered; one still
    being received (headers sent, body not yet) is not processed: its connection is closed,
    nothing of it is recorded and nothing was acknowledged, so the client may retry it
    elsewhere. A complete request sent alongside still gets its 200, and the server exits 0
    promptly instead of waiting for the drain deadline."""
    drain_s = h.scaled(30)
    srv = make_server({"SHUTDOWN_DRAIN_TIMEOUT": "%d" % drain_s})
    mf = srv.manifest(PARK)
    partial_req = predict_request(h.valid_instances(mf, 32))
    full_req = predict_request(h.valid_instances(mf, 32))
    partial = [keepalive_conn(srv.port) for _ in range(3)]
    for s in partial:
        s.sendall(partial_req[: len(partial_req) // 2])
    full = keepalive_conn(srv.port)
    full.sendall(full_req)
    resp = h.read_raw_response(full, "POST")
    assert resp.status == 200, resp.body
    answered_id = json.loads(resp.body)["prediction_id"]
    before = srv.prediction_ids()
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait(drain_s)
    assert rc == 0, "exit code %s\n%s" % (rc, srv.log_tail())
    assert time.monotonic() - t0 < drain_s / 3, "drain waited for requests that never completed"
    for s in partial:
        try:
            s.sendall(partial_req[len(partial_req) // 2:])
            got = h.read_raw_response(s, "POST")
            status = got.status
        except Exception:  # noqa: BLE001 - closed or reset is the documented outcome
            status = None
        finally:
            s.close()
        assert status != 200, "a request received after SIGTERM was acknowledged"
    full.close()
    after = srv.prediction_ids()
    assert answered_id in after
    assert after == before, "a partially received request was recorded"


def test_sigterm_drain_answers_pipelined_requests(make_server):
    """review19: thousands of pipelined predicts on one connection, SIGTERM while they are
    being answered. A worker whose connection had its reading paused (a request busy, the
    input buffer full) and no listener left had no pending event and ended its thread, so
    the busy predict's answer (posted to it when its record was durable) was never sent:
    the store held N+1 predictions, the client got N answers and a reset. Every recorded
    prediction must have been answered."""
    for attempt in range(3):
        srv = make_server({"SHUTDOWN_DRAIN_TIMEOUT": "5"})
        mf = srv.manifest(PARK)
        one = predict_request(h.valid_instances(mf, 1))
        before = set(srv.prediction_ids())
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=h.scaled(20))
        got = [b""]

        def reader():
            try:
                while True:
                    b = s.recv(1 << 16)
                    if not b:
                        break
                    got[0] += b
            except OSError:
                pass

        th = threading.Thread(target=reader)
        th.start()
        s.sendall(one * 3000)
        time.sleep(0.02)
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(h.scaled(30))
        th.join(h.scaled(20))
        s.close()
        assert rc == 0, srv.log_tail()
        answered = got[0].count(b"HTTP/1.1 200")
        recorded = len(set(srv.prediction_ids()) - before)
        assert recorded == answered, "attempt %d: %d recorded, %d answered\n%s" % (
            attempt, recorded, answered, srv.log_tail())
        assert "drain deadline reached" not in srv.log_text(), srv.log_tail()


def test_sigterm_drain_deadline(make_server):
    """A client that never finishes its request does not keep the server up past the deadline."""
    srv = make_server({"SHUTDOWN_DRAIN_TIMEOUT": "2"})
    mf = srv.manifest(PARK)
    req = predict_request(h.valid_instances(mf, 8))
    s = keepalive_conn(srv.port)
    s.sendall(req[:-10])
    time.sleep(0.2)
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait(h.scaled(15))
    took = time.monotonic() - t0
    s.close()
    assert rc == 0, "exit code %s\n%s" % (rc, srv.log_tail())
    assert took < 2 + h.scaled(6), "drain deadline 2 s but exit took %.1f s" % took


# --------------------------------------------------------------------------- (c) registration refusal


def booster_file(vdir, manifest):
    name = manifest.get("booster_file")
    if name and os.path.exists(os.path.join(vdir, name)):
        return os.path.join(vdir, name)
    text = json.dumps(manifest)
    for fn in os.listdir(vdir):
        p = os.path.join(vdir, fn)
        if fn != "manifest.json" and os.path.isfile(p):
            if hashlib.sha256(open(p, "rb").read()).hexdigest() in text:
                return p
    raise AssertionError("cannot find the booster in %s" % vdir)


def copy_version(models_dir, dst, new_version):
    return h.copy_model_version(models_dir, PARK, dst, new_version)


def flip_digit(path):
    data = bytearray(open(path, "rb").read())
    mid = len(data) // 2
    for i in list(range(mid, len(data))) + list(range(0, mid)):
        if 0x31 <= data[i] <= 0x38:  # '1'..'8' -> neighbour digit keeps a JSON booster valid JSON
            data[i] += 1
            break
    else:
        data[mid] ^= 0x01
    open(path, "wb").write(bytes(data))


def tree_listing(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            out.append((os.path.relpath(p, root), hashlib.sha256(open(p, "rb").read()).hexdigest()))
        for d in dirnames:
            out.append((os.path.relpath(os.path.join(dirpath, d), root) + "/", ""))
    return sorted(out)


def test_register_refuses_tampered_booster(demo_copy, tmp_path):
    env = h.demo_env(demo_copy)
    models = os.path.join(demo_copy, "models")
    before = h.run_cli(["model", "list"], env=env)
    assert before.returncode == 0, before.stderr
    assert PARK in before.stdout
    tree_before = tree_listing(models)

    bad, mf = copy_version(models, str(tmp_path / "bad"), "9.0.0")
    flip_digit(booster_file(bad, mf))
    r = h.run_cli(["model", "register", bad], env=env)
    assert r.returncode == 1, "exit %d\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    assert "sha256" in (r.stdout + r.stderr).lower(), r.stderr

    # A booster that does not load, with a manifest that matches its (new) sha256.
    broken, mf2 = copy_version(models, str(tmp_path / "broken"), "9.0.2")
    bpath = booster_file(broken, mf2)
    old_sha = hashlib.sha256(open(bpath, "rb").read()).hexdigest()
    data = open(bpath, "rb").read()
    open(bpath, "wb").write(data[: len(data) // 3])
    new_sha = hashlib.sha256(open(bpath, "rb").read()).hexdigest()
    mtext = open(os.path.join(broken, "manifest.json")).read()
    assert old_sha in mtext
    open(os.path.join(broken, "manifest.json"), "w").write(mtext.replace(old_sha, new_sha))
    r2 = h.run_cli(["model", "register", broken], env=env)
    assert r2.returncode == 1, "exit %d\n%s\n%s" % (r2.returncode, r2.stdout, r2.stderr)
    assert (r2.stderr + r2.stdout).strip()

    # An unsafe name is refused too.
    evil, mf3 = copy_version(models, str(tmp_path / "evil"), "9.0.3")
    mf3["name"] = "../evil"
    json.dump(mf3, open(os.path.join(evil, "manifest.json"), "w"))
    r3 = h.run_cli(["model", "register", evil], env=env)
    assert r3.returncode == 1, "exit %d\n%s\n%s" % (r3.returncode, r3.stdout, r3.stderr)

    after = h.run_cli(["model", "list"], env=env)
    assert after.returncode == 0
    assert after.stdout == before.stdout, "model list changed:\n%s\n---\n%s" % (before.stdout, after.stdout)
    assert tree_listing(models) == tree_before, "MODEL_STORAGE_PATH changed after refused registrations"
    assert not os.path.exists(os.path.join(os.path.dirname(models), "evil"))

    # Control: the untouched copy registers fine (so the refusals above are about the tampering).
    good, _ = copy_version(models, str(tmp_path / "good"), "9.0.1")
    r4 = h.run_cli(["model", "register", good], env=env)
    assert r4.returncode == 0, "exit %d\n%s\n%s" % (r4.returncode, r4.stdout, r4.stderr)
    listed = h.run_cli(["model", "list"], env=env)
    assert "9.0.1" in listed.stdout and "9.0.0" not in listed.stdout and "9.0.2" not in listed.stdout
    assert os.path.isdir(os.path.join(models, PARK, "9.0.1"))


def test_register_picked_up_by_running_server(server, tmp_path):
    """`model register --set-stable` from another process reaches a running server within ~1 s."""
    good, _ = copy_version(server.models_dir, str(tmp_path / "v"), "1.0.5")
    r = h.run_cli(["model", "register", good, "--set-stable"], env=server.env)
    assert r.returncode == 0, r.stderr
    mf = server.manifest(PARK)
    body = {"features": h.valid_features(mf)}
    deadline = time.monotonic() + h.scaled(5)
    while time.monotonic() < deadline:
        if current_version(server, body) == "1.0.5":
            break
        time.sleep(0.1)
    else:
        pytest.fail("registered stable version not served within %.0f s" % h.scaled(5))


def test_a_stopped_server_leaves_its_store_in_one_file(server):
    """review47 #1: the server closed its read-only second connection last, which can not
    checkpoint, so after a clean stop every record since the last checkpoint was in
    aimedres.db-wal alone (and an in-place restore then set that WAL aside apart from its
    database). Stopped, the store is one file that holds every acknowledged prediction."""
    mf = server.manifest(PARK)
    ids = []
    for _ in range(5):
        r = server.predict(PARK, {"features": h.valid_features(mf)})
        assert r.status_code == 200, r.text
        ids.append(r.json()["prediction_id"])
    rc, killed = server.stop()
    assert rc == 0 and not killed
    assert not os.path.exists(server.db_path + "-wal")
    # immutable: SQLite reads the database file alone, ignoring any WAL
    conn = sqlite3.connect("file:%s?immutable=1" % server.db_path, uri=True)
    try:
        found = {row[0] for row in conn.execute(
            "SELECT id FROM predictions WHERE id IN (%s)" % ",".join("?" * len(ids)), ids)}
    finally:
        conn.close()
    assert found == set(ids)


def test_second_server_on_same_database_refused(server):
    """A running server holds the data lock (<db>.lock, flock): a second server on the same
    database refuses to start, naming the reason, and the first keeps serving. Restore
    relies on the same lock."""
    r = h.run_cli(["serve", "--host", "127.0.0.1", "--port", str(h.free_port())], env=server.env, timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "already holds this database" in r.stderr, r.stderr
    assert os.path.exists(server.db_path + ".lock")
    assert server.get("/health").status_code == 200


def test_second_server_on_same_port_refused(server, demo_dir, tmp_path):
    """Listeners use SO_REUSEPORT, which would let a second aimedres (same user, another
    database) join the port and take part of the traffic: it must refuse to start, naming the
    port, while the first keeps answering every request."""
    other = str(tmp_path / "other")
    h.copy_demo(demo_dir, other)
    r = h.run_cli(["serve", "--host", "127.0.0.1", "--port", str(server.port)], env=h.demo_env(other), timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "cannot listen on 127.0.0.1:%d" % server.port in r.stderr, r.stderr
    assert "another process listens on it" in r.stderr, r.stderr
    # every connection still reaches the first server (a fresh connection per request)
    for _ in range(20):
        assert requests.get(server.url("/api/v1/models/als_classifier"), timeout=10).status_code == 200


def test_a_full_log_disk_loses_lines_but_never_glues_them(make_server, tmp_path):
    """review47 #6: with LOG_FILE on a full disk serving went on (right) and lines were lost
    silently; a short write left the head of a line without its newline, so the first line
    written after space returned was glued to it and neither parsed. Now the torn line is ended
    first, and stderr says once that lines are being lost."""
    import subprocess

    d = str(tmp_path / "logfs")
    os.makedirs(d)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True, text=True)
    assert r.returncode == 0, "mounting a tmpfs needs root (make test runs as root): " + r.stderr
    log = os.path.join(d, "server.jsonl")
    try:
        srv = make_server(extra_env={"LOG_FILE": log, "LOG_LEVEL": "INFO"})
        body = {"features": h.valid_features(srv.manifest(PARK))}
        assert srv.predict(PARK, body).status_code == 200
        filler = h.fill_fs(d, 512)
        for _ in range(30):  # their lines fill the log file's last page, then find no room
            assert srv.predict(PARK, body).status_code == 200
        os.unlink(filler)
        for _ in range(3):
            assert srv.predict(PARK, body).status_code == 200
        rc, killed = srv.stop()
        assert rc == 0 and not killed
        text = open(log).read()
        for n, line in enumerate(text.splitlines()):
            if line.strip() and not line.endswith("}"):
                continue  # a torn line: lost, but it ends where the next one starts
            if line.strip():
                json.loads(line)  # every whole line parses: none glued to a torn one
        assert text.count('"msg":"request"') >= 2
        assert "log lines are being lost" in srv.log_text(), srv.log_tail()
    finally:
        subprocess.run(["umount", "-l", d], capture_output=True)


def test_sighup_reopens_log_file(make_server, tmp_path):
    """logrotate moves LOG_FILE away and sends SIGHUP: the server writes to a new file of that
    name from then on (one JSON line per request), and nothing more to the moved one."""
    log = str(tmp_path / "aimedres.jsonl")
    srv = make_server(extra_env={"LOG_FILE": log})
    assert srv.get("/health").status_code == 200
    rotated = log + ".1"
    os.rename(log, rotated)
    srv.send_signal(signal.SIGHUP)
    # the new file exists as soon as it is opened, a moment before the server writes to it
    # (a line logged in between still goes to the moved file: nothing is lost); once the new
    # file has a line (the reload's), every later line goes there
    deadline = time.monotonic() + 10
    while not (os.path.exists(log) and os.path.getsize(log) > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(log), "no new log file after SIGHUP"
    assert os.path.getsize(log) > 0, "nothing written to the new log file after SIGHUP"
    size_rotated = os.path.getsize(rotated)
    assert srv.get("/api/v1").status_code == 200
    deadline = time.monotonic() + 10
    lines = []
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in open(log) if x.strip()]
        if any(x.get("route") == "/api/v1" for x in lines):
            break
        time.sleep(0.05)
    assert any(x.get("route") == "/api/v1" for x in lines), lines
    assert os.path.getsize(rotated) == size_rotated


# --------------------------------------------------------------------------- service manager


def notify_socket(tag):
    """An abstract AF_UNIX datagram socket for NOTIFY_SOCKET: (socket, its "@name")."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = "aimedres-test-%s-%d-%d" % (tag, os.getpid(), time.monotonic_ns())
    sock.bind("\0" + name)
    return sock, "@" + name


def serve_notifying(demo_copy, tmp_path, notify, port):
    """`aimedres serve` on demo_copy telling NOTIFY_SOCKET=notify: (process, its LOG_FILE)."""
    log = tmp_path / "serve.log"
    env = h.base_env(dict(h.demo_env(demo_copy), NOTIFY_SOCKET=notify, LOG_FILE=str(log)))
    proc = subprocess.Popen([h.require_binary(), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, log


def test_serve_tells_the_service_manager_ready_reloading_and_stopping(demo_copy, tmp_path):
    """The sd_notify protocol that deploy/systemd's Type=notify unit and dr-drill rely on: READY=1
    with the port it bound (serve --port 0) once it answers, RELOADING=1 then READY=1 around a
    SIGHUP, STOPPING=1 at SIGTERM; every message from the server's own pid."""
    sock, name = notify_socket("notify")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(h.scaled(60))
    proc, log = serve_notifying(demo_copy, tmp_path, name, 0)

    def receive():
        msg, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        creds = [d for lvl, typ, d in anc if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS]
        assert creds, "no sender credentials"
        pid = struct.unpack("3i", creds[0])[0]
        return pid, dict(line.split("=", 1) for line in msg.decode().split("\n"))

    try:
        pid, ready = receive()
        assert pid == proc.pid and ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid), ready
        port = int(ready["X_AIMEDRES_PORT"])
        assert port > 0 and ready["STATUS"] == "serving on 127.0.0.1:%d" % port, ready
        # READY means answering, on the port it names
        r = requests.get("http://127.0.0.1:%d/health" % port, timeout=h.scaled(10))
        assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGHUP)
        pid, reloading = receive()
        assert pid == proc.pid and reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0, reloading
        pid, again = receive()
        assert pid == proc.pid and again == ready, again  # the same READY=1, port included
        proc.send_signal(signal.SIGTERM)
        pid, stopping = receive()
        assert pid == proc.pid and stopping["STOPPING"] == "1", stopping
        assert proc.wait(timeout=h.scaled(30)) == 0
        assert "NOTIFY_SOCKET" not in log.read_text()  # no warning: every message was sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_serve_without_a_usable_notify_socket_still_serves(make_server):
    """A NOTIFY_SOCKET that names no socket is a warning, not a reason to refuse to start (the
    server may be run by hand from a shell a service manager started)."""
    srv = make_server(extra_env={"NOTIFY_SOCKET": "relative/notify.sock"})
    assert srv.get("/health").status_code == 200
    assert ("NOTIFY_SOCKET names no AF_UNIX socket ('/path' or '@name', at most 107 bytes): readiness is not "
            "reported") in srv.log_text()


def test_a_notify_listener_that_does_not_read_does_not_stop_the_server(demo_copy, tmp_path):
    """review68 #3: the readiness messages were sent blocking; once a listener that never reads
    had its queue full (10 datagrams), the next SIGHUP's message blocked the main loop for good
    and SIGTERM was never handled. They are sent without waiting now: a full queue is logged."""
    sock, name = notify_socket("noread")  # never read
    proc, log = serve_notifying(demo_copy, tmp_path, name, h.free_port())
    try:
        deadline = time.monotonic() + h.scaled(60)
        while '"listening"' not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        for i in range(1, 9):  # 1 + 2 per reload: past the queue of 10
            proc.send_signal(signal.SIGHUP)
            while log.read_text().count('"models reloaded"') < i:
                assert time.monotonic() < deadline, "reload %d not handled" % i
                time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=h.scaled(30)) == 0
        text = log.read_text()
        assert "the service manager's notify queue is full; sending the state again until it takes it" in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_a_ready_message_that_meets_a_full_queue_is_sent_again(demo_copy, tmp_path):
    """review69 #5: a READY=1 that met a full listener queue was dropped for good (a Type=notify
    unit would then time out). It is sent again until the listener takes it."""
    sock, name = notify_socket("full")
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.setblocking(False)
    queued = 0
    while True:  # fill the queue before the server starts
        try:
            filler.sendto(b"FILLER=1", "\0" + name[1:])
            queued += 1
        except BlockingIOError:
            break
    port = h.free_port()
    proc, log = serve_notifying(demo_copy, tmp_path, name, port)
    try:
        deadline = time.monotonic() + h.scaled(60)
        while "notify queue is full" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, "READY=1 never met the full queue"
            time.sleep(0.05)
        sock.settimeout(h.scaled(10))
        got = [sock.recv(4096) for _ in range(queued)]  # room again
        assert all(g == b"FILLER=1" for g in got), got
        ready = dict(line.split("=", 1) for line in sock.recv(4096).decode().split("\n"))
        assert ready["READY"] == "1" and ready["X_AIMEDRES_PORT"] == str(port), ready
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=h.scaled(30)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        filler.close()
