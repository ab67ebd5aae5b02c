# SPDX-License-Identifier: Apache-2.0
"""Review 29's findings 2, 3, 4, 5 and 7 on `aimedres backup`, `restore` and `dr-drill`:
- the drill's server talks to nobody outside (production's SIEM, Alertmanager, webhook);
- every failure, early ones included (no key file, bad settings), prints one JSON document
  {"ok": false, "error": ...} on stdout when stdout is not a terminal, and dr-drill --report R
  writes the failure report to R;
- BACKUP_KEY_COMMAND output is a key only as 64 hex digits or base64 of 32 bytes, and an
  incremental backup whose latest used the same key id but does not authenticate with this
  key fails instead of silently making a full;
- a drill killed with SIGKILL leaves a decrypted work directory that the next drill removes;
- --dest must be absolute, like BACKUP_PATH."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import aimedres_harness as h
import backup_helpers as bh

template, inst = bh.install_fixtures("backup-failures-template")
out = bh.out


def port_in_range(lo=23000, hi=23999):
    """A free loopback port in [lo, hi] (this suite's helper range)."""
    for port in range(lo + os.getpid() % 500, hi + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return s, port
        except OSError:
            s.close()
    raise RuntimeError("no free port in %d-%d" % (lo, hi))


class TcpSink:
    """A TCP listener on loopback that keeps every byte any client sends (a syslog or HTTP
    receiver that never answers)."""

    def __init__(self):
        self.sock, self.port = port_in_range()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.data = bytearray()
        self.connections = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        c.settimeout(0.5)
        with c:
            while not self.stopping:
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not d:
                    return
                with self.lock:
                    self.data += d

    def received(self):
        with self.lock:
            return self.connections, bytes(self.data)

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(2)


# --------------------------------------------------------------------------- finding 2


def test_drill_server_sends_nothing_to_production_siem_or_alerting(inst, tmp_path):
    sink = TcpSink()
    try:
        outside = {
            "SIEM_INTEGRATION_ENABLED": "true",
            "SYSLOG_SERVER": "127.0.0.1:%d" % sink.port,
            "SYSLOG_PROTOCOL": "tcp",
            "ALERTMANAGER_URL": "http://127.0.0.1:%d/" % sink.port,
            "ALERT_WEBHOOK_URL": "http://127.0.0.1:%d/hook" % sink.port,
        }
        # production's env file (which the drill backs up and its server reads) sends to the
        # SIEM; the drill runs with the same settings in its environment too
        with open(inst.env_file, "a") as f:
            for k, v in outside.items():
                f.write("%s=%s\n" % (k, v))
        report = tmp_path / "drill.json"
        work = tmp_path / "work"
        work.mkdir()
        r = inst.run(["dr-drill", "--report", str(report), "--env-file", inst.env_file, "--work-dir", str(work)],
                     timeout=180, **outside)
        assert r.returncode == 0, out(r)
        rep = json.load(open(report))
        assert all(s["ok"] for s in rep["steps"]), rep["steps"]
        time.sleep(1.0)  # a forwarder connects within its first batch (well under a second)
        assert sink.received() == (0, b""), "the drill's server talked to production's SIEM: %r" % (
            sink.received()[1][:300],)
        # the same settings do reach the listener from a real server: the check above can fail
        srv = h.Server(inst.prod, extra_env=dict(outside, AUDIT_LOG_PATH=inst.audit_log,
                                                 SECRET_KEY=bh.SECRET_VALUE))
        srv.start()
        try:
            deadline = time.monotonic() + h.scaled(15)
            while time.monotonic() < deadline and b"MODEL_INFERENCE" not in sink.received()[1]:
                time.sleep(0.1)
        finally:
            srv.stop()
        assert b"MODEL_INFERENCE" in sink.received()[1], "positive control: production forwards its log"
    finally:
        sink.stop()


# --------------------------------------------------------------------------- finding 5


def one_failure_document(r):
    """r failed and printed exactly one JSON document on stdout: {"ok": false, "error": ...}."""
    assert r.returncode != 0, out(r)
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        raise AssertionError("stdout is not one JSON document\n" + out(r))
    assert doc.get("ok") is False and isinstance(doc.get("error"), str) and doc["error"], doc
    return doc


def drill_report_check(inst, tmp_path, extra, args=()):
    """dr-drill --report R over an old success in R: R holds the failure afterwards."""
    report = tmp_path / "drill-latest.json"
    report.write_text(json.dumps({"ok": True, "old": "success"}))
    r = inst.run(["dr-drill", "--report", str(report), "--work-dir", str(tmp_path)] + list(args), **extra)
    doc = one_failure_document(r)
    written = json.loads(report.read_text())
    assert written.get("ok") is False and "old" not in written, written
    assert written["error"] == doc["error"], (written, doc)
    return doc


EARLY = [
    ["backup", "full"],
    ["backup"],
    ["backup", "verify", "--all"],
    ["backup", "verify"],
    ["backup", "prune"],
    ["backup", "check"],
    ["restore", "latest", "--yes"],
]


def test_missing_key_file_fails_with_one_json_document(inst, tmp_path):
    inst.backup("full")
    extra = {"BACKUP_ENCRYPTION_KEY_FILE": str(tmp_path / "missing.key")}
    for args in EARLY:
        r = inst.run(args, **extra)
        doc = one_failure_document(r)
        assert r.returncode == 1, out(r)
        if args[-1] != "check":  # check reports it as a failed integrity check in its own report
            assert "missing.key" in doc["error"], (args, doc)
    doc = drill_report_check(inst, tmp_path, extra)
    assert "missing.key" in doc["error"], doc


def test_bad_settings_fail_with_one_json_document(inst, tmp_path):
    extra = {"BACKUP_THREADS": "many", "BACKUP_PATH": "relative/backups"}
    for args in EARLY:
        r = inst.run(args, **extra)
        doc = one_failure_document(r)
        assert "BACKUP_THREADS" in doc["error"] or "BACKUP_PATH" in doc["error"], (args, doc)
    doc = drill_report_check(inst, tmp_path, extra)
    assert "BACKUP_THREADS" in doc["error"], doc


def test_usage_and_unknown_id_fail_with_one_json_document(inst, tmp_path):
    inst.backup("full")
    for args in (["restore", "20990101T000000Z", "--yes"], ["backup", "verify", "20990101T000000Z"],
                 ["restore", "latest"], ["backup", "verify", "--env-file", str(tmp_path / "none.env")]):
        r = inst.run(args)
        assert r.returncode == 2, out(r)
        one_failure_document(r)
    # an empty repository has no latest: 2, and the drill's report says so
    empty = tmp_path / "empty"
    empty.mkdir()
    doc = drill_report_check(inst, tmp_path, {"BACKUP_PATH": str(empty)}, ["--use-latest"])
    assert "latest" in doc["error"], doc


def test_failure_document_says_what_stderr_said(inst, tmp_path):
    """review36: usage failures put the reason in the document, not "usage error (see --help)"."""
    inst.backup("full")
    cases = [
        (["restore", "latest"], "without confirmation"),
        (["restore"], "which backup"),
        (["restore", "latest", "--bogus"], "--bogus"),
        (["backup", "full", "--bogus"], "--bogus"),
        (["backup", "full", "-Zq"], "value: -Z (see --help)"),  # inside a cluster: the option, not "full"
        (["dr-drill", "--use-latest", "--full"], "exclude each other"),
    ]
    for args, want in cases:
        r = inst.run(args)
        assert r.returncode == 2, (args, out(r))
        doc = one_failure_document(r)
        assert want in doc["error"] and "usage error" not in doc["error"], (args, doc)
    # the drill's missing repository is a missing repository, not an empty one
    r = inst.run(["dr-drill", "--use-latest", "--work-dir", str(tmp_path)],
                 BACKUP_PATH=str(tmp_path / "not-mounted"))
    assert r.returncode == 1, out(r)
    assert "mounted" in r.stderr and "no latest backup" not in r.stderr, out(r)


def test_failed_drill_step_is_in_the_report_and_on_stdout(inst, tmp_path):
    """A drill that runs and fails (no backup to use) writes its own report, ok false with error."""
    os.makedirs(inst.backups, exist_ok=True)
    inst.backup("full")
    os.remove(os.path.join(inst.backups, "latest"))
    os.symlink("20990101T000000Z", os.path.join(inst.backups, "latest"))  # damaged latest
    report = tmp_path / "r.json"
    report.write_text('{"ok": true}')
    r = inst.run(["dr-drill", "--use-latest", "--report", str(report), "--work-dir", str(tmp_path)])
    doc = one_failure_document(r)
    assert json.loads(report.read_text()) == doc
    # review34: a bad option after --report fails into that report too
    for bad in (["--timeout", "0"], ["--bogus"]):
        report.write_text('{"ok": true}')
        r = inst.run(["dr-drill", "--report", str(report)] + bad)
        assert r.returncode == 2, out(r)
        assert json.loads(report.read_text())["ok"] is False, (bad, report.read_text())


# --------------------------------------------------------------------------- finding 7


def test_dest_must_be_absolute(inst, tmp_path):
    for args in (["backup", "full", "--dest", "rel/dir"], ["backup", "list", "--dest", "rel/dir"],
                 ["backup", "check", "--dest", "rel/dir"]):
        r = subprocess.run([h.require_binary()] + args, env=h.base_env(inst.env()), cwd=str(tmp_path),
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 2, out(r)
        assert "--dest=rel/dir must be an absolute path" in r.stderr, out(r)
        assert "--dest=rel/dir must be an absolute path" in one_failure_document(r)["error"]
        assert not (tmp_path / "rel").exists()
    # BACKUP_PATH says the same
    r = inst.run(["backup", "full"], BACKUP_PATH="rel/dir")
    assert r.returncode == 1 and "BACKUP_PATH=rel/dir must be an absolute path" in r.stderr, out(r)


# --------------------------------------------------------------------------- finding 3


def backup_ids(inst):
    return sorted(n for n in os.listdir(inst.backups) if n[:1].isdigit())


def test_key_command_output_must_be_hex_or_base64(inst, tmp_path):
    first = inst.backup("full")
    hexkey = open(inst.key).read().strip()
    b64 = __import__("base64").b64encode(bytes.fromhex(hexkey)).decode()
    keyfile_off = {"BACKUP_ENCRYPTION_KEY_FILE": None}
    # 31 characters and a newline, exit 0: an error message, not a key
    msg = "kms: AccessDeniedException 4031"
    r = inst.run(["backup"], BACKUP_KEY_COMMAND="echo '%s'" % msg, **keyfile_off)
    assert r.returncode == 1, out(r)
    assert "64 hex digits or the base64 of 32 bytes" in r.stderr, out(r)
    assert "AccessDenied" not in r.stderr + r.stdout, out(r)  # the output may be a key: never echoed
    assert one_failure_document(r)
    assert backup_ids(inst) == [first["id"]] and inst.latest() == first["id"]
    for bad in ("printf ' %s'" % hexkey, "printf '%s\\n\\n'" % hexkey, "printf '%s'" % hexkey[:-1],
                "printf '%s'" % b64.rstrip("=")):
        r = inst.run(["backup", "verify"], BACKUP_KEY_COMMAND=bad, **keyfile_off)
        assert r.returncode == 1 and "64 hex digits" in r.stderr, (bad, out(r))
    # the forms a key command may print: the same key as the file, so incrementals continue
    for good in ("echo %s" % hexkey, "printf '%s'" % hexkey, "echo %s" % b64, "printf '%s\\r\\n'" % b64):
        r = inst.run(["backup", "--json"], BACKUP_KEY_COMMAND=good, **keyfile_off)
        assert r.returncode == 0, (good, out(r))
        assert json.loads(r.stdout)["type"] == "incremental", (good, r.stdout)


def test_key_file_of_text_is_taken_with_a_warning(inst, tmp_path):
    # a passphrase written into a key file was always taken as 32 raw bytes: backups made with
    # it must stay restorable, so it is still taken, with a warning that never echoes it
    bad = tmp_path / "text.key"
    bad.write_bytes(b"correct horse battery staple 123")
    os.chmod(bad, 0o600)
    r = inst.run(["backup", "full", "--json"], BACKUP_ENCRYPTION_KEY_FILE=str(bad))
    assert r.returncode == 0 and "printable text" in r.stderr and "horse" not in r.stderr, out(r)
    short = tmp_path / "short.key"
    short.write_bytes(b"kms: AccessDenied\n")
    os.chmod(short, 0o600)
    r = inst.run(["backup", "full"], BACKUP_ENCRYPTION_KEY_FILE=str(short))
    assert r.returncode == 1 and "AccessDenied" not in r.stderr, out(r)
    raw = tmp_path / "raw.key"
    raw.write_bytes(bytes(range(200, 232)))  # 32 raw bytes: still a key
    os.chmod(raw, 0o600)
    r = inst.run(["backup", "full", "--json"], BACKUP_ENCRYPTION_KEY_FILE=str(raw))
    assert r.returncode == 0, out(r)


def test_incremental_under_the_same_key_id_with_another_key_fails(inst, tmp_path):
    for key_id in (None, "kms-key-1"):
        ids = {"BACKUP_ENCRYPTION_KEY_ID": key_id}
        first = inst.backup("full", **ids)
        other = tmp_path / ("other-%s.key" % key_id)
        r = inst.run(["backup", "keygen", str(other)])
        assert r.returncode == 0, out(r)
        wrong = dict(ids, BACKUP_ENCRYPTION_KEY_FILE=str(other))
        before = backup_ids(inst)
        for args in (["backup"], ["backup", "incremental"]):
            r = inst.run(args, **wrong)
            assert r.returncode == 1, out(r)
            assert "key mismatch" in r.stderr and first["id"] in r.stderr and "backup full" in r.stderr, out(r)
            assert "key mismatch" in one_failure_document(r)["error"]
            assert backup_ids(inst) == before and inst.latest() == first["id"]
        # the drill's incremental fails the same way
        r = inst.run(["dr-drill", "--work-dir", str(tmp_path)], **wrong)
        assert r.returncode == 1 and "key mismatch" in r.stdout, out(r)
        # starting over with the new key on purpose still works
        r = inst.run(["backup", "full", "--json"], **wrong)
        assert r.returncode == 0, out(r)
        assert json.loads(r.stdout)["type"] == "full"
        inst.extra["BACKUP_ENCRYPTION_KEY_FILE"] = str(other)  # the new key from now on
    # rotation to a new key id: the incremental becomes a full, as before
    r = inst.run(["backup", "--json"], BACKUP_ENCRYPTION_KEY_FILE=inst.key, BACKUP_ENCRYPTION_KEY_ID="kms-key-2")
    assert r.returncode == 0, out(r)
    s = json.loads(r.stdout)
    assert s["type"] == "full" and any("cannot be used as parent" in n for n in s["notes"]), s


# --------------------------------------------------------------------------- finding 4


def drill_dirs(work):
    return sorted(n for n in os.listdir(work) if n.startswith("aimedres-drill-"))


def test_drill_killed_with_sigkill_leaves_a_dir_the_next_drill_removes(inst, tmp_path):
    import fcntl
    inst.backup("full")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen([h.require_binary(), "dr-drill", "--use-latest", "--work-dir", str(work)],
                            env=h.base_env(inst.env()), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # kill it once the restore has put decrypted production data into its work dir
        deadline = time.monotonic() + h.scaled(60)
        left = None
        while time.monotonic() < deadline and proc.poll() is None:
            dirs = drill_dirs(work)
            if dirs and os.path.exists(os.path.join(work, dirs[0], "server.log")):
                left = os.path.join(work, dirs[0])
                break
            time.sleep(0.02)
        assert left, "the drill never started its server"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert os.path.isdir(left) and os.path.exists(os.path.join(left, os.path.basename(inst.db))), os.listdir(left)
    # the drill server goes with it (PR_SET_PDEATHSIG); give it a moment
    time.sleep(h.scaled(1))
    # around it: a running drill's dir (its lock held), a kept one, an old unlocked one, a young one
    live = work / "aimedres-drill-live"
    live.mkdir()
    lock = open(live / ".drill.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    kept = work / "aimedres-drill-kept"
    kept.mkdir()
    (kept / ".drill.lock").write_text("")
    (kept / ".drill.kept").write_text("")
    old = work / "aimedres-drill-old"
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    young = work / "aimedres-drill-young"
    young.mkdir()
    other = work / "not-a-drill"
    other.mkdir()
    try:
        report = tmp_path / "r.json"
        r = inst.run(["dr-drill", "--use-latest", "--report", str(report), "--work-dir", str(work)],
                     LOG_LEVEL="INFO", timeout=180)
        assert r.returncode == 0, out(r)
        assert not os.path.exists(left) and not old.exists(), "the killed drill's decrypted copy is still there"
        rep = json.load(open(report))
        assert rep["stale_work_dirs_removed"] == 2, rep
        assert "removed work directories left by drills that were killed" in r.stderr, out(r)
        assert live.exists() and kept.exists() and young.exists() and other.exists()
        assert sorted(os.listdir(work)) == ["aimedres-drill-kept", "aimedres-drill-live", "aimedres-drill-young",
                                            "not-a-drill"]
    finally:
        lock.close()


def test_a_starting_drill_is_never_taken_for_a_dead_one(inst, tmp_path):
    """review34: a drill created its lock file and only then locked it; a second drill
    starting in that gap found the file unlocked and removed the first one's directory. Here
    the first drill's first flock is held back 3 s (strace's syscall injection) while a second
    drill runs: both succeed and the second removes nothing."""
    import shutil
    if not shutil.which("strace"):
        pytest.fail("strace is missing (scripts/install-deps.sh installs it)")
    inst.backup("full")
    work = tmp_path / "work"
    work.mkdir()
    first = subprocess.Popen(["strace", "-f", "-o", "/dev/null", "-e", "trace=flock",
                              "-e", "inject=flock:delay_enter=3000000:when=1", h.require_binary(),
                              "dr-drill", "--use-latest", "--work-dir", str(work)],
                             env=h.base_env(inst.env(ASAN_OPTIONS="detect_leaks=0")), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + h.scaled(30)
        while not drill_dirs(work) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        assert drill_dirs(work), "the first drill made no work directory"
        report = tmp_path / "second.json"
        r = inst.run(["dr-drill", "--use-latest", "--report", str(report), "--work-dir", str(work)], timeout=180)
        assert r.returncode == 0, out(r)
        assert json.load(open(report))["stale_work_dirs_removed"] == 0
        so, se = first.communicate(timeout=h.scaled(180))
        assert first.returncode == 0, (so[-2000:], se[-2000:])
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
