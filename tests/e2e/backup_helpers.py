# SPDX-License-Identifier: Apache-2.0
"""Helpers for tests/e2e/test_backup.py: an installation to back up (the demo models and
store from `aimedres demo init`, plus results, audit files and an env file with a secret),
running the backup commands against it, comparing trees, and damaging backups on purpose."""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess

import pytest

import aimedres_harness as h

SECRET_VALUE = "s3cr3t-value-that-must-never-appear-in-a-backup-0x5f2a"
RESULTS_MARKER = b"RESULTS-MARKER-plaintext-7c1e"


def out(r):
    """A finished command's exit status and output, for assertion messages."""
    return "exit %d\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout, r.stderr)


def install_fixtures(name):
    """The fixtures `template` (one Install per test module, made under a temporary
    directory called name) and `inst` (a cheap private copy of it per test). A module
    assigns both: `template, inst = bh.install_fixtures("...")`."""

    @pytest.fixture(scope="module")
    def template(demo_dir, tmp_path_factory):
        return Install.create(tmp_path_factory.mktemp(name) / "inst", demo_dir)

    @pytest.fixture
    def inst(template, tmp_path):
        return Install.clone(template, tmp_path / "inst")

    return template, inst


class Install:
    """A private installation: models/, aimedres.db, data/{baseline,results}/, a genuine
    audit log (written by the server), an env file with a secret, a backup key, BACKUP_PATH.
    env() gives the settings for the binary. Build one with Install.create, copy it with
    Install.clone (cheap: the template is made once per test session)."""

    def __init__(self, root):
        self.root = str(root)
        self.prod = os.path.join(self.root, "prod")
        self.models = os.path.join(self.prod, "models")
        self.db = os.path.join(self.prod, "aimedres.db")
        self.data = os.path.join(self.prod, "data")
        self.results = os.path.join(self.data, "results")
        self.audit_dir = os.path.join(self.root, "log")
        self.audit_log = os.path.join(self.audit_dir, "audit.log")
        self.backups = os.path.join(self.root, "backups")
        self.key = os.path.join(self.root, "backup.key")
        self.env_file = os.path.join(self.root, "aimedres.env")
        self.extra = {}

    @classmethod
    def create(cls, root, demo_dir):
        inst = cls(root)
        h.copy_demo(demo_dir, inst.prod)
        os.makedirs(os.path.join(inst.results, "2026-11"), exist_ok=True)
        with open(os.path.join(inst.results, "2026-11", "report.csv"), "wb") as f:
            f.write(b"model,accuracy\n" + RESULTS_MARKER + b",0.91\n" * 50)
        with open(os.path.join(inst.results, "export.json"), "w") as f:
            json.dump({"rows": list(range(1000))}, f)
        os.makedirs(inst.audit_dir, exist_ok=True)
        with open(os.path.join(inst.audit_dir, "server.log"), "wb") as f:
            f.write(b"not an audit file\n")
        with open(inst.env_file, "w") as f:
            f.write("# production settings\nSECRET_KEY=%s\nMAX_WORKERS=2\n" % SECRET_VALUE)
        r = inst.run(["backup", "keygen", inst.key])
        assert r.returncode == 0, r.stderr
        # a genuine audit trail: the server records each prediction in it
        srv = h.Server(inst.prod, extra_env={"AUDIT_LOG_PATH": inst.audit_log, "SECRET_KEY": SECRET_VALUE})
        srv.start()
        try:
            for name in h.DEMO_MODELS:
                m = h.read_manifest(inst.models, name)
                r = srv.predict(name, {"features": h.valid_features(m)})
                assert r.status_code == 200, r.text
        finally:
            rc, killed = srv.stop()
        assert rc == 0 and not killed, srv.log_tail()
        for leftover in os.listdir(inst.root):
            if leftover.startswith("server-"):
                os.remove(os.path.join(inst.root, leftover))
        return inst

    @classmethod
    def clone(cls, template, root):
        shutil.copytree(template.root, str(root), symlinks=True)
        return cls(root)

    def env(self, **extra):
        env = h.demo_env(self.prod)
        env.update({
            "BACKUP_PATH": self.backups,
            "BACKUP_ENCRYPTION_KEY_FILE": self.key,
            "AUDIT_LOG_PATH": self.audit_log,
            "SECRET_KEY": SECRET_VALUE,
            "LOG_LEVEL": "WARNING",
        })
        env.update(self.extra)
        env.update(extra)
        return env

    def run(self, args, timeout=120, input_text=None, **extra):
        return subprocess.run([h.require_binary()] + list(args), env=h.base_env(self.env(**extra)),
                              capture_output=True, text=True, timeout=timeout, input=input_text,
                              stdin=None if input_text is not None else subprocess.DEVNULL)

    def backup(self, kind="full", *more, **extra):
        r = self.run(["backup", kind, "--env-file", self.env_file, "--json"] + list(more), **extra)
        assert r.returncode == 0, "backup %s failed (%d)\n%s\n%s" % (kind, r.returncode, r.stdout, r.stderr)
        return json.loads(r.stdout)

    def backup_dir(self, bid):
        return os.path.join(self.backups, bid)

    def manifest(self, bid):
        with open(os.path.join(self.backup_dir(bid), "manifest.json")) as f:
            return json.load(f)

    def latest(self):
        return os.readlink(os.path.join(self.backups, "latest"))


def tree_digest(root, skip=()):
    """{relative path: sha256} of every regular file under root (missing root: {})."""
    out = {}
    if not os.path.isdir(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if rel in skip or name.startswith("."):
                continue
            with open(p, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def audit_digest(audit_dir):
    """The audit files a backup takes: audit.log* but not the writer's lock file."""
    return {k: v for k, v in tree_digest(audit_dir).items() if k.startswith("audit.log") and not k.endswith(".lock")}


def db_content(path):
    """Every row of every table (sorted), to compare databases logically."""
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(con.execute('SELECT * FROM "%s"' % t).fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def integrity(path):
    """PRAGMA integrity_check's first line, or the error when the check can not even run
    (damage to a page it must read first)."""
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        return "error: %s" % e
    finally:
        con.close()


def prediction_count(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT count(*) FROM predictions").fetchone()[0]
    finally:
        con.close()


def insert_predictions(db, n, start=0, con=None):
    own = con is None
    con = con or sqlite3.connect(db, timeout=30)
    try:
        for i in range(start, start + n):
            con.execute(
                "INSERT INTO predictions (id, created_ms, model, version, arm, request_id, patient_pseudonym, "
                "outputs_json, inputs_json, n_rows, latency_ms, status) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                ("e2e-%08d" % i, 1795741323000 + i, "alzheimer_classifier", "1.0.0", "stable", "r%d" % i, None,
                 '[{"label":"x"}]', None, 1, 1.5, 200))
            if not own:
                con.commit()  # a continuous writer: one transaction per row
        con.commit()
    finally:
        if own:
            con.close()


def stored_files(backup_dir):
    d = os.path.join(backup_dir, "data")
    return sorted(os.path.join(d, n) for n in os.listdir(d))


def largest_stored(backup_dir):
    return max(stored_files(backup_dir), key=os.path.getsize)


def all_bytes_under(root):
    data = bytearray()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                data += f.read()
    return bytes(data)


def copy_tree(src, dst):
    shutil.copytree(src, dst, symlinks=True)


# --------------------------------------------------------------------------- audit records (issue 5)
# A backup appends its BACKUP record to the live log after it read the audit files, so backup X
# holds the log up to just before its own record; a restore appends RESTORE to the restored log
# (and to the live log when that is another file). These helpers compare logs under exactly
# that rule: everything before the appended records byte for byte, the appended records by type.


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def records(data):
    """The audit records of a log's bytes (one JSON object a line)."""
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def appended_records(now, before):
    """now must be before plus whole records: returns those records."""
    assert now.startswith(before), "the log was rewritten, not appended to"
    assert before == b"" or before.endswith(b"\n")
    return records(now[len(before):])


def check_restored_audit(inst, target_audit_dir, bid, live_before_backup=None):
    """target_audit_dir (a restore --target) holds the audit files of backup bid:
    - every audit file but the active log equals the live one byte for byte;
    - the restored active log is a prefix P of the live log plus one RESTORE record (bid,
      success, log "restored") that the restore appended;
    - the live log after P starts with backup bid's own BACKUP record (the snapshot was taken
      before it) and holds nothing but BACKUP/RESTORE records of the CLI after P;
    - live_before_backup (the live log's bytes right before `backup` ran), when given, is P.
    Returns the RESTORE record."""
    name = os.path.basename(inst.audit_log)
    restored_files = audit_digest(target_audit_dir)  # the RESTORE append made a writer lock there
    assert set(tree_digest(target_audit_dir)) <= set(restored_files) | {name + ".lock"}
    live_files = audit_digest(inst.audit_dir)
    assert set(restored_files) == set(live_files), (restored_files, live_files)
    for rel, digest in restored_files.items():
        if rel != name:
            assert digest == live_files[rel], rel
    restored = read_bytes(os.path.join(target_audit_dir, name))
    lines = restored.splitlines(keepends=True)
    last = json.loads(lines[-1])
    assert last["type"] == "RESTORE" and last["entity_id"] == bid and last["outcome"] == "success", last
    assert last["detail"]["log"] == "restored" and last["entity_type"] == "backup", last
    snap = b"".join(lines[:-1])
    if live_before_backup is not None:
        assert snap == live_before_backup
    after = appended_records(read_bytes(inst.audit_log), snap)
    assert after and after[0]["type"] == "BACKUP" and after[0]["entity_id"] == bid, after[:1]
    assert all(r["type"] in ("BACKUP", "RESTORE") for r in after), [r["type"] for r in after]
    # the restored chain continues exactly where the snapshot ended
    prev = records(snap)
    if prev:
        assert last["seq"] == prev[-1]["seq"] + 1 and last["prev_hash"] == prev[-1]["hash"]
    return last


def audit_verify(inst, log_path=None):
    """`aimedres audit verify` on log_path (default the live log); returns the completed process.
    Note: it appends an AUDIT_VERIFY record to the log it verifies."""
    extra = {"AUDIT_LOG_PATH": log_path} if log_path else {}
    return inst.run(["audit", "verify", "--json"], **extra)
