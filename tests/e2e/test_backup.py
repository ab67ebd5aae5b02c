# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of `aimedres backup`, `restore` and `dr-drill` on a private copy of the
demo installation (models, SQLite store, results, audit files, env file):

- a full backup restores byte-identically, and no plaintext (secret, results) is stored;
- incremental chains store only changes and restore each point in time;
- each corruption (bit flip, manifest edit, a manifest copied from another backup,
  truncation, missing file, files swapped between backups, wrong key) is named by `backup verify` and refused by `restore`, which changes
  nothing;
- kill -9 in the middle of a backup leaves `latest` on the previous good backup;
- restore refuses while a server holds the data lock; asks on a terminal; needs --yes
  without one;
- a backup taken while a writer inserts rows continuously restores a consistent database;
- offsite copies, `backup check`, list and prune; the DR drill reports RTO and RPO."""

import fcntl
import hashlib
import json
import os
import pty
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

import aimedres_harness as h
import backup_helpers as bh


# one installation per module (demo copy, results, env file, key, a real audit log)
template, inst = bh.install_fixtures("backup-template")
out = bh.out


def restore(inst, bid, target, *more, **env):
    return inst.run(["restore", bid, "--target", str(target), "--yes", "--json"] + list(more), **env)


def assert_same_install(inst, target, bid, db_expected=None, audit_before=None):
    """target (a restore --target of backup bid) holds what the installation holds (or held:
    db_expected); its audit files are the live ones as of backup bid's snapshot (before its
    own BACKUP record) plus the RESTORE record of this restore (backup_helpers)."""
    assert bh.tree_digest(os.path.join(target, "models")) == bh.tree_digest(inst.models)
    assert bh.tree_digest(os.path.join(target, "data", "baseline")) == bh.tree_digest(
        os.path.join(inst.data, "baseline"))
    assert bh.tree_digest(os.path.join(target, "data", "results")) == bh.tree_digest(inst.results)
    bh.check_restored_audit(inst, os.path.join(target, "audit"), bid, audit_before)
    with open(os.path.join(target, "config", "aimedres.env")) as a, open(inst.env_file) as b:
        assert a.read() == b.read()
    db = os.path.join(target, "aimedres.db")
    assert bh.integrity(db) == "ok"
    assert bh.db_content(db) == (db_expected if db_expected is not None else bh.db_content(inst.db))


# --------------------------------------------------------------------------- round trips


def test_full_round_trip_is_byte_identical(inst, tmp_path):
    audit_files = bh.audit_digest(inst.audit_dir)
    log_before = bh.read_bytes(inst.audit_log)
    s = inst.backup("full")
    assert s["ok"] and s["type"] == "full" and s["verified"]
    assert s["stored_files"] == s["files"] and s["referenced_files"] == 0
    assert set(s["components"]) == {"db", "models", "config", "results", "audit"}
    # audit.log and the files beside it named audit.log*, not server.log nor the writer's lock
    assert s["components"]["audit"]["files"] == len(audit_files) and "audit.log" in audit_files
    # the BACKUP record (issue 5), appended after the backup read the log
    (rec,) = bh.appended_records(bh.read_bytes(inst.audit_log), log_before)
    assert rec["type"] == "BACKUP" and rec["entity_type"] == "backup" and rec["entity_id"] == s["id"], rec
    assert rec["outcome"] == "success" and rec["user"] and rec["action"] == "C", rec
    d = rec["detail"]
    assert d["type"] == "full" and sorted(d["components"]) == sorted(s["components"]) and not d["drill"], d
    assert d["total_bytes"] == s["total_bytes"] and d["stored_bytes"] == s["stored_bytes"], d
    assert d["files"] == s["files"], d
    assert inst.latest() == s["id"]
    m = inst.manifest(s["id"])
    assert m["encryption"]["scheme"] == "AES-256-GCM" and m["key_fingerprint"] and m["auth"]["mac"]
    for f in m["files"]:
        assert len(f["sha256"]) == 64 and len(f["nonce"]) == 24 and f["holder"] == s["id"]
    assert len({f["nonce"] for f in m["files"]}) == len(m["files"])  # a fresh nonce per file
    # nothing readable in the backup: the env file's secret and the results are encrypted
    blob = bh.all_bytes_under(inst.backups)
    assert bh.SECRET_VALUE.encode() not in blob
    assert bh.RESULTS_MARKER not in blob
    assert b"alzheimer_classifier" not in bh.all_bytes_under(os.path.join(inst.backup_dir(s["id"]), "data"))

    target = tmp_path / "restored"
    r = restore(inst, "latest", target)
    assert r.returncode == 0, out(r)
    rep = json.loads(r.stdout)
    assert rep["ok"] and rep["checks"]["database"]["integrity_check"] == "ok"
    assert rep["checks"]["models"]["status"] == "ok" and rep["checks"]["models"]["checked"] == 3
    assert rep["checks"]["registry"]["status"] == "ok"
    assert rep["checks"]["audit"]["status"] == "ok"
    assert rep["checks"]["audit"]["records"] == len(bh.records(log_before))  # the snapshot's
    # the database check is the backup's own integrity_check, bound to these bytes by sha256
    db = rep["checks"]["database"]
    assert db["method"] == "backup-time" and db["proof"]["sha256"] == m["db"]["integrity"]["sha256"], db
    assert m["db"]["integrity"]["result"] == "ok" and m["db"]["integrity"]["pragma"] == "integrity_check"
    assert db["proof"]["sha256"] == next(f["sha256"] for f in m["files"] if f["path"] == "db/aimedres.db")
    # the checks read the restored database without writing (or migrating) it: its bytes are
    # the snapshot's, and no -wal/-shm was left beside it
    with open(os.path.join(str(target), "aimedres.db"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == db["proof"]["sha256"]
    assert not [n for n in os.listdir(str(target)) if n.startswith("aimedres.db-")]
    assert_same_install(inst, str(target), s["id"], audit_before=log_before)
    # RESTORE in the live log too (a restore into another directory is recorded where it ran)
    live = bh.records(bh.read_bytes(inst.audit_log))
    assert [r["type"] for r in live[-2:]] == ["BACKUP", "RESTORE"]
    assert live[-1]["detail"]["log"] == "live" and live[-1]["detail"]["target"] == str(target), live[-1]
    assert live[-1]["detail"]["in_place"] is False and live[-1]["entity_id"] == s["id"]
    # both chains verify: the restored one with its RESTORE record, the live one
    r = bh.audit_verify(inst, str(target / "audit" / "audit.log"))
    assert r.returncode == 0, out(r)
    r = bh.audit_verify(inst)
    assert r.returncode == 0, out(r)
    # --full-db-check runs PRAGMA integrity_check on the restored file itself
    t2 = tmp_path / "restored-full-check"
    r = restore(inst, "latest", t2, "--full-db-check")
    assert r.returncode == 0, out(r)
    db = json.loads(r.stdout)["checks"]["database"]
    assert db["method"] == "restore" and db["integrity_check"] == "ok" and "proof" not in db, db
    # the verify command agrees
    r = inst.run(["backup", "verify", s["id"], "--json"])
    assert r.returncode == 0, out(r)


def test_incremental_chain(inst, tmp_path):
    full = inst.backup("full")
    # change: one new result, one model file rewritten, rows in the store
    with open(os.path.join(inst.results, "new.csv"), "w") as f:
        f.write("a,b\n1,2\n")
    bh.insert_predictions(inst.db, 25)
    state1 = (bh.tree_digest(inst.results), bh.db_content(inst.db))
    inc1 = inst.backup("incremental")
    assert inc1["type"] == "incremental" and inc1["parent"] == full["id"]
    assert 0 < inc1["stored_files"] < inc1["files"]
    assert inc1["stored_bytes"] < full["stored_bytes"]
    m1 = inst.manifest(inc1["id"])
    stored1 = {f["path"] for f in m1["files"] if f["holder"] == inc1["id"]}
    # the audit log changed too: it gained the full backup's BACKUP record
    assert stored1 == {"db/aimedres.db", "results/new.csv", "audit/audit.log"}, stored1
    assert all(f["holder"] == full["id"] for f in m1["files"] if f["path"] not in stored1)

    os.remove(os.path.join(inst.results, "export.json"))
    with open(os.path.join(inst.results, "new.csv"), "a") as f:
        f.write("3,4\n")
    bh.insert_predictions(inst.db, 5, start=100)
    inc2 = inst.backup("incremental")
    assert inc2["parent"] == inc1["id"]
    m2 = inst.manifest(inc2["id"])
    holders = {f["holder"] for f in m2["files"]}
    assert holders == {full["id"], inc2["id"]}, holders  # references point at the holder
    assert "results/export.json" not in {f["path"] for f in m2["files"]}

    t2 = tmp_path / "t2"
    r = restore(inst, inc2["id"], t2)
    assert r.returncode == 0, out(r)
    assert_same_install(inst, str(t2), inc2["id"])
    # each backup holds the BACKUP records of the earlier ones, not its own
    held = [(x["type"], x["entity_id"]) for x in bh.records(bh.read_bytes(t2 / "audit" / "audit.log"))]
    assert ("BACKUP", full["id"]) in held and ("BACKUP", inc1["id"]) in held
    assert ("BACKUP", inc2["id"]) not in held
    t1 = tmp_path / "t1"
    r = restore(inst, inc1["id"], t1)
    assert r.returncode == 0, out(r)
    assert bh.tree_digest(os.path.join(t1, "data", "results")) == state1[0]
    assert bh.db_content(os.path.join(t1, "aimedres.db")) == state1[1]
    r = inst.run(["backup", "verify", "--all", "--json"])
    assert r.returncode == 0, out(r)
    assert len(json.loads(r.stdout)["backups"]) == 3


# --------------------------------------------------------------------------- corruption


def corrupt_bit_flip(inst, bid, other):
    p = bh.largest_stored(inst.backup_dir(bid))
    with open(p, "r+b") as f:
        f.seek(os.path.getsize(p) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x04]))
    return "failed authentication"


def corrupt_manifest(inst, bid, other):
    p = os.path.join(inst.backup_dir(bid), "manifest.json")
    m = json.load(open(p))
    m["files"][0]["size"] += 1
    with open(p, "w") as f:
        json.dump(m, f)
    return "edited or damaged"


def corrupt_truncate(inst, bid, other):
    p = bh.largest_stored(inst.backup_dir(bid))
    os.truncate(p, os.path.getsize(p) - 10)
    return "truncated"


def corrupt_missing(inst, bid, other):
    os.remove(bh.stored_files(inst.backup_dir(bid))[0])
    return "missing"


def corrupt_swap(inst, bid, other):
    # data/000001 holds the same path in both backups (files are stored in path order)
    a = os.path.join(inst.backup_dir(bid), "data", "000001")
    b = os.path.join(inst.backup_dir(other), "data", "000001")
    tmp = a + ".tmp"
    os.rename(a, tmp)
    shutil.copyfile(b, a)
    os.rename(tmp, b)
    return "nonce differs"


def corrupt_manifest_copied(inst, bid, other):
    # a whole, authentic manifest of another backup: valid on its own, wrong for this directory
    shutil.copyfile(os.path.join(inst.backup_dir(other), "manifest.json"),
                    os.path.join(inst.backup_dir(bid), "manifest.json"))
    return "copied or moved from another backup"


CORRUPTIONS = {
    "bit_flip": corrupt_bit_flip,
    "manifest_edit": corrupt_manifest,
    "manifest_copied": corrupt_manifest_copied,
    "truncated": corrupt_truncate,
    "missing": corrupt_missing,
    "swapped": corrupt_swap,
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS) + ["wrong_key"])
def test_corruption_detected_and_refused(inst, tmp_path, kind):
    first = inst.backup("full")
    bh.insert_predictions(inst.db, 3)  # the second backup's snapshot differs
    second = inst.backup("full")
    env = {}
    if kind == "wrong_key":
        other_key = str(tmp_path / "other.key")
        assert inst.run(["backup", "keygen", other_key]).returncode == 0
        env["BACKUP_ENCRYPTION_KEY_FILE"] = other_key
        expect = "wrong key"
    else:
        expect = CORRUPTIONS[kind](inst, second["id"], first["id"])

    r = inst.run(["backup", "verify", second["id"], "--json"], **env)
    assert r.returncode == 1, out(r)
    rep = json.loads(r.stdout)["backups"][0]
    assert rep["ok"] is False
    if kind in ("manifest_edit", "manifest_copied", "wrong_key"):
        assert expect in rep["error"], rep
    else:
        assert rep["bad"] and rep["bad"][0]["path"] and rep["bad"][0]["stored"], rep  # names the bad file
        assert expect in rep["bad"][0]["error"], rep
    if kind == "swapped":  # both sides of the swap are caught
        r1 = inst.run(["backup", "verify", first["id"]])
        assert r1.returncode == 1, out(r1)

    target = tmp_path / "target"
    log_before = bh.read_bytes(inst.audit_log)
    r = restore(inst, second["id"], target, **env)
    assert r.returncode == 1, out(r)
    assert "refusing" in r.stderr or "damaged" in r.stderr or "wrong key" in r.stderr, out(r)
    # the refused restore is audited as a failure in the live log
    (rec,) = bh.appended_records(bh.read_bytes(inst.audit_log), log_before)
    assert rec["type"] == "RESTORE" and rec["outcome"] == "failure" and rec["entity_id"] == second["id"], rec
    assert rec["detail"]["error"] and rec["detail"]["log"] == "live", rec
    assert not os.path.exists(target / "aimedres.db")
    assert not os.path.exists(target / "models")
    left = [n for n in os.listdir(target)] if os.path.isdir(target) else []
    assert all(n.endswith(".lock") for n in left), left  # no staging leftovers

    # in place: nothing changes either
    before = bh.tree_digest(inst.prod)
    r = inst.run(["restore", second["id"], "--yes"], **env)
    assert r.returncode == 1, out(r)
    assert bh.tree_digest(inst.prod, skip=("aimedres.db.lock",)) == {
        k: v for k, v in before.items() if k != "aimedres.db.lock"}
    r = inst.run(["backup", "check"], **env)
    assert r.returncode == 1 and json.loads(r.stdout)["checks"]["integrity"]["ok"] is False, out(r)


def test_restore_post_checks_refuse_bad_data(inst, tmp_path):
    """A backup is byte-faithful, so data that was already bad is caught by the checks after
    decryption: an edited audit record breaks the chain, a model file no longer matches its
    manifest. Restore refuses (nothing written) and names the check."""
    with open(inst.audit_log, "r+") as f:
        lines = f.readlines()
        lines[1] = lines[1].replace('"success"', '"failure"')
        f.seek(0)
        f.writelines(lines)
    booster = os.path.join(inst.models, "als_classifier", "1.0.0", "model.json")
    with open(booster, "a") as f:
        f.write(" ")
    s = inst.backup("full")
    target = tmp_path / "t"
    r = restore(inst, s["id"], target)
    assert r.returncode == 1, out(r)
    rep = json.loads(r.stdout)
    assert rep["checks"]["audit"]["status"] == "fail", rep["checks"]
    assert rep["checks"]["models"]["status"] == "fail", rep["checks"]
    assert rep["checks"]["models"]["bad"][0]["model"] == "als_classifier"
    assert rep["checks"]["database"]["status"] == "ok"
    # stderr (what a terminal shows) names each failed check and why, not only a count
    assert "2 check(s) failed" in r.stderr and " audit {" in r.stderr and " models {" in r.stderr, out(r)
    assert "als_classifier" in r.stderr, out(r)
    assert not os.path.exists(target / "aimedres.db") and not os.path.exists(target / "models")
    # leaving the bad components out restores the rest
    r = restore(inst, s["id"], target, "--components", "db,config,results")
    assert r.returncode == 0, out(r)
    assert bh.integrity(str(target / "aimedres.db")) == "ok"


def test_backup_refuses_a_corrupt_or_missing_database(inst, tmp_path):
    """A live database that fails PRAGMA integrity_check (the backup checks its snapshot) or
    that does not exist gives no backup: exit 1 naming why, nothing published, `latest` still
    on the last good backup, which restores the database as it was."""
    good = inst.backup("full")
    good_db = bh.db_content(inst.db)
    bh.insert_predictions(inst.db, 3000)
    con = sqlite3.connect(inst.db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = os.path.getsize(inst.db)
    with open(inst.db, "r+b") as f:
        f.seek((size // 4096 - 3) * 4096 + 2000)
        f.write(b"\0" * 64)
    assert bh.integrity(inst.db) != "ok"
    def entries():  # backups, latest and any .partial; not the lock files
        return sorted(n for n in os.listdir(inst.backups) if not n.endswith(".lock"))
    before = entries()
    r = inst.run(["backup", "full", "--env-file", inst.env_file])
    assert r.returncode == 1, out(r)
    assert "fails PRAGMA integrity_check" in r.stderr and "nothing published" in r.stderr, out(r)
    assert entries() == before  # no new backup, no .partial left
    assert os.readlink(os.path.join(inst.backups, "latest")) in (good["id"], os.path.join(inst.backups, good["id"]))
    r = inst.run(["backup", "check"])
    assert r.returncode == 0, out(r)
    target = tmp_path / "t"
    r = restore(inst, "latest", target)
    assert r.returncode == 0, out(r)
    assert bh.db_content(str(target / "aimedres.db")) == good_db

    r = inst.run(["backup", "full"], DATABASE_URL="sqlite://%s" % (tmp_path / "typo" / "aimedres.db"))
    assert r.returncode == 1 and "does not exist" in r.stderr and "DATABASE_URL" in r.stderr, out(r)
    assert entries() == before


def test_symlinked_model_is_backed_up(inst, tmp_path):
    """A model directory that is a symbolic link (the server serves through it) is backed up
    with what it points at, so the restore holds every registered model."""
    elsewhere = str(tmp_path / "models-elsewhere")
    src = os.path.join(inst.models, "parkinsons_predictor")
    shutil.move(src, elsewhere)
    os.symlink(elsewhere, src)
    b = inst.backup("full")
    assert not any("symbolic" in n for n in b["notes"]), b["notes"]
    target = tmp_path / "t"
    r = restore(inst, b["id"], target)
    assert r.returncode == 0, out(r)
    restored = target / "models" / "parkinsons_predictor"
    assert restored.is_dir() and not restored.is_symlink()
    assert bh.tree_digest(str(restored)) == bh.tree_digest(elsewhere)


# --------------------------------------------------------------------------- crash safety


def test_kill9_mid_backup_keeps_previous_latest(inst, tmp_path):
    good = inst.backup("full")
    # a large incompressible result at the slowest zstd level makes the next backup take a while
    with open(os.path.join(inst.results, "big.bin"), "wb") as f:
        for _ in range(16):
            f.write(os.urandom(4 << 20))
    env = h.base_env(inst.env(BACKUP_COMPRESSION_LEVEL="19", BACKUP_THREADS="1"))
    proc = subprocess.Popen([h.require_binary(), "backup", "full"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    partial = None
    while time.monotonic() < deadline and proc.poll() is None:
        names = [n for n in os.listdir(inst.backups) if n.endswith(".partial")]
        if names:
            d = os.path.join(inst.backups, names[0], "data")
            if os.path.isdir(d) and sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d)) > (2 << 20):
                partial = names[0]
                break
        time.sleep(0.005)
    assert partial and proc.poll() is None, "the backup finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert inst.latest() == good["id"]
    complete = sorted(n for n in os.listdir(inst.backups) if not n.startswith(".") and n != "latest")
    assert complete == [good["id"]], complete  # the killed one does not look complete
    r = inst.run(["backup", "verify", "latest"])
    assert r.returncode == 0, out(r)
    # the next backup cleans up the partial directory and the plaintext snapshot
    s = inst.backup("incremental")
    assert s["ok"] and inst.latest() == s["id"]
    assert not [n for n in os.listdir(inst.backups) if n.endswith(".partial")]
    assert not [n for n in os.listdir(inst.prod) if "backup-snapshot" in n]


def slow_backup(inst, prefix=()):
    """Starts a backup that takes a while (a large incompressible file at zstd level 19) and
    returns the process once its snapshot exists and data is being written. Two threads: one
    compresses the large file, the other the rest, the database first; the snapshot stays
    until every stream is done."""
    with open(os.path.join(inst.results, "big.bin"), "wb") as f:
        for _ in range(16):
            f.write(os.urandom(4 << 20))
    env = h.base_env(inst.env(BACKUP_COMPRESSION_LEVEL="19", BACKUP_THREADS="2"))
    proc = subprocess.Popen(list(prefix) + [h.require_binary(), "backup", "full"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        snaps = [n for n in os.listdir(inst.prod) if "backup-snapshot" in n]
        parts = [n for n in os.listdir(inst.backups) if n.endswith(".partial")] if os.path.isdir(inst.backups) else []
        if snaps and parts:
            d = os.path.join(inst.backups, parts[0], "data")
            if os.path.isdir(d) and sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d)) > (1 << 20):
                return proc
        time.sleep(0.005)
    raise AssertionError("the backup finished before it could be interrupted")


def test_sigterm_mid_backup_removes_the_snapshot_and_the_partial(inst):
    """SIGTERM (systemd stop, a pod deleted) in the middle of a backup: the plaintext snapshot
    and the unfinished backup directory are removed before the process exits 128+15, and
    `latest` stays on the previous backup."""
    good = inst.backup("full")
    proc = slow_backup(inst)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err)
    assert b"interrupted by signal 15" in err, err
    assert not [n for n in os.listdir(inst.prod) if "backup-snapshot" in n]
    assert not [n for n in os.listdir(inst.backups) if n.endswith(".partial")]
    assert inst.latest() == good["id"]


def sigterm_once_published(inst, tmp_path, args):
    """Runs `aimedres ARGS` with an offsite directory and a large file (a long offsite copy),
    sends SIGTERM as soon as `latest` moves, and returns (process, stdout, the audit records it
    appended). The process must end 128+15."""
    good = inst.backup("full")
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    with open(os.path.join(inst.results, "big.bin"), "wb") as f:
        for _ in range(24):
            f.write(os.urandom(4 << 20))
    log_before = bh.read_bytes(inst.audit_log)
    env = h.base_env(inst.env(BACKUP_OFFSITE_DIR=str(offsite), BACKUP_COMPRESSION_LEVEL="1"))
    proc = subprocess.Popen([h.require_binary()] + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and inst.latest() == good["id"]:
        time.sleep(0.002)
    assert proc.poll() is None and inst.latest() != good["id"], "no window between publishing and the end"
    proc.send_signal(signal.SIGTERM)
    o, e = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, o, e)
    return o, bh.appended_records(bh.read_bytes(inst.audit_log), log_before)


def test_sigterm_after_publishing_still_writes_the_audit_record(inst, tmp_path):
    """Once a backup is published (latest moved), SIGTERM no longer cuts it short: the offsite
    copy stops early, the backup's BACKUP audit record is written and its report printed, and
    only then does the process exit 128+15. A copy of patient data never goes unrecorded."""
    o, recs = sigterm_once_published(inst, tmp_path, ["backup", "full", "--json"])
    s = json.loads(o)  # the report is printed
    assert s["id"] == inst.latest(), (s, inst.latest())
    assert [(r["type"], r["entity_id"]) for r in recs] == [("BACKUP", s["id"])], recs
    off = s["offsite"]  # stopped by the signal (or, if it came late, finished and verified)
    assert off.get("ok") or "interrupted by signal 15" in off.get("error", ""), off
    assert inst.run(["backup", "verify", "latest"]).returncode == 0


def test_sigterm_after_the_drills_backup_is_published_still_records_it(inst, tmp_path):
    """The drill's own backup is audited like `aimedres backup`: a SIGTERM once it is published
    waits for its BACKUP record, then the drill ends 128+15 leaving nothing of its own."""
    work = tmp_path / "work"
    work.mkdir()
    _, recs = sigterm_once_published(inst, tmp_path, ["dr-drill", "--full", "--work-dir", str(work)])
    assert ("BACKUP", inst.latest()) in [(r["type"], r["entity_id"]) for r in recs], recs
    assert os.listdir(work) == [], os.listdir(work)


def test_killed_backup_as_pid_1_does_not_block_the_next(inst):
    """In a container every backup is pid 1: the leftover snapshot of one killed there (SIGKILL
    after the grace period, an OOM kill) carries the same pid as the next run's. The next
    backup, pid 1 too, removes it (no run holds its lock) and succeeds."""
    pid1 = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"]
    proc = slow_backup(inst, pid1)
    left = [n for n in os.listdir(inst.prod) if "backup-snapshot" in n]
    assert left and left[0].split("backup-snapshot-")[1].startswith("1-"), left
    ns_pid = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()[0])
    proc.send_signal(signal.SIGKILL)  # unshare dies, and --kill-child takes the backup (pid 1 inside) with it
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists("/proc/%d" % ns_pid):
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % ns_pid), "the backup outlived its namespace"
    assert [n for n in os.listdir(inst.prod) if "backup-snapshot" in n] == left  # left behind
    os.remove(os.path.join(inst.results, "big.bin"))
    r = subprocess.run(pid1 + [h.require_binary(), "backup", "incremental", "--json"],
                       env=h.base_env(inst.env()), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, out(r)
    assert not [n for n in os.listdir(inst.prod) if "backup-snapshot" in n]


@pytest.mark.parametrize("path", ["db/aimedres.db", "results/export.csv"])
def test_damage_after_write_fails_the_read_back(inst, tmp_path, path):
    """Each stored file is read back from the disk (fsynced, dropped from the page cache) by
    its worker right after it was written, before the backup is published: a bit flipped on
    the disk between the write and the read-back (injected) fails the backup, names the file,
    and leaves `latest`, the repository and the database directory as they were."""
    with open(os.path.join(inst.results, "export.csv"), "w") as f:
        f.write("id,label\n" + "".join("%d,x\n" % i for i in range(50000)))
    good = inst.backup("full")
    r = inst.run(["backup", "full", "--json"], AIMEDRES_BACKUP_FAULT_INJECT="flip-after-write=" + path)
    assert r.returncode == 1, out(r)
    s = json.loads(r.stdout)
    assert not s["ok"] and "verification failed" in s["error"] and path in s["error"], s
    assert "failed authentication" in s["error"], s
    assert [b["path"] for b in s["bad"]] == [path], s
    assert inst.latest() == good["id"]
    assert sorted(n for n in os.listdir(inst.backups) if n not in (".write.lock", ".read.lock")) == \
        sorted([good["id"], "latest"])
    assert not [n for n in os.listdir(inst.prod) if "backup-snapshot" in n]
    # without the fault the same backup succeeds and records the read-back as done
    s = inst.backup("full")
    assert s["ok"] and s["verified"] and inst.latest() == s["id"]
    assert set(s["phases"]) >= {"snapshot", "streams", "integrity_wait", "verify", "publish"}, s


# --------------------------------------------------------------------------- locking, prompts


def test_restore_refused_while_server_holds_data(inst, tmp_path):
    s = inst.backup("full")
    before = bh.tree_digest(inst.models)
    lock_path = inst.db + ".lock"
    srv = None
    holder = None
    # a real server when it takes the data lock; otherwise hold the flock like it does
    try:
        srv = h.Server(inst.prod, extra_env={}, port=h.free_port())
        srv.start()
        held = True
        with open(lock_path, "a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(probe, fcntl.LOCK_UN)
                held = False
            except OSError:
                pass
        if not held:
            srv.stop()
            srv = None
            holder = open(lock_path, "a")
            fcntl.flock(holder, fcntl.LOCK_EX)
        r = inst.run(["restore", s["id"], "--yes"])
        assert r.returncode == 1, out(r)
        assert "running server" in r.stderr, out(r)
        assert bh.tree_digest(inst.models) == before
        assert not [n for n in os.listdir(inst.prod) if ".restore-" in n or "pre-restore" in n]
    finally:
        if srv:
            rc, killed = srv.stop()
            assert rc == 0 and not killed
        if holder:
            holder.close()
    # once the data is free, restoring in place works and keeps the old data aside
    r = inst.run(["restore", s["id"], "--yes", "--components", "db,models"])
    assert r.returncode == 0, out(r)
    assert os.path.isdir(inst.models + ".pre-restore-" + s["id"])
    assert bh.tree_digest(inst.models) == before


def test_restore_confirmation(inst, tmp_path):
    s = inst.backup("full")
    target = tmp_path / "t"
    r = inst.run(["restore", s["id"], "--target", str(target)])  # stdin is not a terminal
    assert r.returncode == 2 and "--yes" in r.stderr, out(r)  # usage (test_backup_exit_codes.py)
    assert not os.path.exists(target / "aimedres.db")
    for answer, rc in ((b"no\n", 1), (b"yes\n", 0)):
        master, slave = pty.openpty()
        proc = subprocess.Popen([h.require_binary(), "restore", s["id"], "--target", str(target)],
                                env=h.base_env(inst.env()), stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        os.close(slave)
        os.write(master, answer)
        o, e = proc.communicate(timeout=60)
        os.close(master)
        assert proc.returncode == rc, (o, e)
        assert b"Type 'yes'" in e
    assert bh.integrity(str(target / "aimedres.db")) == "ok"


def iec(n):
    """backup_format_bytes: binary units with IEC names, tenths truncated, whole when exact."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    u, unit = 0, 1
    while u < len(units) - 1 and n // unit >= 1024:
        unit, u = unit * 1024, u + 1
    whole, rest = divmod(n, unit)
    return "%d %s" % (whole, units[u]) if rest == 0 else "%d.%d %s" % (whole, rest * 10 // unit, units[u])


def run_on_terminal(inst, args, **extra):
    """Runs the binary with stderr on a pseudo-terminal (stdout a pipe); (rc, stdout, the
    terminal's text)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([h.require_binary()] + args, env=h.base_env(inst.env(**extra)), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []

    def read():
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not b:
                return
            chunks.append(b)

    reader = threading.Thread(target=read)
    reader.start()
    o, _ = proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(master)
    return proc.returncode, o.decode(), b"".join(chunks).decode()


PROGRESS_END = re.compile(r"(?P<label>(backup|verify|restore) \S+): (?P<done>[\d.]+ \S+) / (?P<total>[\d.]+ \S+) "
                          r"\((?P<pct>\d+)%\)  [\d.]+ \S+/s  in \S+$")


def test_progress_on_a_terminal_counts_every_pass(inst, tmp_path):
    """On a terminal the long steps draw bytes done / total, rate and ETA, and the last line
    is the data's size at 100 %: a backup counts both its passes (stored or, for an
    incremental's unchanged files, hashed; then read back or decrypted from the holder), so
    the bar is not at 100 % while it still verifies. Off a terminal nothing is drawn."""
    def last_line(term):
        lines = [ln.replace("\x1b[K", "") for ln in term.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        ends = [m for m in map(PROGRESS_END.match, lines) if m]
        assert ends, term
        return ends[-1]

    # the smallest file goes last; its read-back fails (a bit flipped on the disk after the
    # write): every other byte is done, and the bar must still not claim 100 %
    rc, o, term = run_on_terminal(inst, ["backup", "full", "--env-file", inst.env_file, "--json"],
                                  AIMEDRES_BACKUP_FAULT_INJECT="flip-after-write=config/aimedres.env")
    assert rc == 1 and "config/aimedres.env" in json.loads(o)["error"], (o, term)
    assert int(last_line(term).group("pct")) < 100, term

    steps = [("backup", ["backup", "full", "--env-file", inst.env_file, "--json"]),
             ("backup", ["backup", "incremental", "--env-file", inst.env_file, "--json"]),
             ("verify", ["backup", "verify", "--json"]),
             ("restore", ["restore", "latest", "--target", str(tmp_path / "t"), "--yes", "--json"])]
    for name, args in steps:
        rc, o, term = run_on_terminal(inst, args)
        assert rc == 0, (args, o, term)
        end = last_line(term)
        assert end.group("label").startswith(name), (args, term)
        assert end.group("pct") == "100" and end.group("done") == end.group("total"), (args, term)
        summary = json.loads(o)
        want = summary.get("total_bytes", summary.get("bytes"))
        if want is not None:
            assert end.group("total") == iec(want), (args, want, term)
        if summary.get("type") == "incremental" and name == "backup":
            # unchanged files are referenced (the audit log, which grew by the backup's record, is not)
            assert summary["referenced_files"] >= summary["files"] - 2, summary
    r = inst.run(["backup", "incremental", "--env-file", inst.env_file, "--json"])
    assert r.returncode == 0 and "\r" not in r.stderr and "ETA" not in r.stderr, out(r)


# --------------------------------------------------------------------------- live writes


def test_backup_while_writing_restores_consistent_db(inst, tmp_path):
    stop = threading.Event()
    written = [0]
    errors = []

    def writer():
        con = sqlite3.connect(inst.db, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        i = 0
        try:
            while not stop.is_set():
                bh.insert_predictions(inst.db, 1, start=10000 + i, con=con)
                i += 1
                written[0] = i
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            con.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        while written[0] < 50:
            time.sleep(0.01)
        sums = []
        for kind in ("full", "incremental", "incremental"):
            before = written[0]
            sums.append((before, inst.backup(kind)))
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    for i, (before, s) in enumerate(sums):
        target = tmp_path / ("r%d" % i)
        r = restore(inst, s["id"], target)
        assert r.returncode == 0, out(r)
        db = str(target / "aimedres.db")
        assert bh.integrity(db) == "ok"
        n = bh.prediction_count(db)
        assert n == s["db"]["predictions"]
        assert before <= n <= written[0]
        assert n == len(bh.db_content(db)["predictions"])


# --------------------------------------------------------------------------- offsite, check, list, prune


def test_offsite_check_list_prune(inst, tmp_path):
    offsite = str(tmp_path / "offsite")
    inst.extra["BACKUP_OFFSITE_DIR"] = offsite
    # a missing offsite directory is an unmounted volume, not a place to create a local copy
    r = inst.run(["backup", "full"])
    assert r.returncode == 1 and "offsite copy failed" in r.stderr and "mounted" in r.stderr, out(r)
    assert not os.path.exists(offsite)
    # readers do not create a repository either, and say there is none
    for args in (["backup", "list", "--dest", str(tmp_path / "nowhere")],
                 ["backup", "verify", "--dest", str(tmp_path / "nowhere")],
                 ["backup", "prune", "--dry-run", "--dest", str(tmp_path / "nowhere")]):
        r = inst.run(args)
        assert r.returncode == 1 and "mounted" in r.stderr, (args, out(r))
    assert not os.path.exists(tmp_path / "nowhere")
    shutil.rmtree(inst.backups)  # the refused run's backup is complete locally; start afresh
    os.mkdir(offsite)
    full = inst.backup("full")
    assert full["offsite"]["ok"] and full["offsite"]["verified"]
    inc = inst.backup("incremental")
    assert inc["offsite"]["copied"] == [inc["id"]]
    assert os.readlink(os.path.join(offsite, "latest")) == inc["id"]
    r = inst.run(["backup", "check"])
    assert r.returncode == 0, out(r)
    rep = json.loads(r.stdout)
    assert rep["ok"] and rep["latest"] == inc["id"]
    assert all(rep["checks"][k]["ok"] for k in ("freshness", "integrity", "offsite", "disk"))

    # restore from the offsite copy alone
    t = tmp_path / "from-offsite"
    r = inst.run(["restore", "latest", "--from", offsite, "--target", str(t), "--yes"])
    assert r.returncode == 0, out(r)
    assert_same_install(inst, str(t), inc["id"])

    # a damaged offsite copy fails the check, and only the offsite part
    victim = bh.largest_stored(os.path.join(offsite, full["id"]))
    with open(victim, "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    r = inst.run(["backup", "check"])
    assert r.returncode == 1, out(r)
    rep = json.loads(r.stdout)
    assert rep["checks"]["offsite"]["ok"] is False and rep["checks"]["integrity"]["ok"] is True
    # freshness and free space limits
    time.sleep(1.1)
    r = inst.run(["backup", "check"], BACKUP_MAX_AGE="1s", BACKUP_OFFSITE_DIR="")
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and rep["checks"]["freshness"]["ok"] is False, out(r)
    r = inst.run(["backup", "check"], BACKUP_MIN_FREE="1000000G", BACKUP_OFFSITE_DIR="")
    assert r.returncode == 1 and json.loads(r.stdout)["checks"]["disk"]["ok"] is False, out(r)

    r = inst.run(["backup", "list", "--json"])
    assert r.returncode == 0, out(r)
    lst = json.loads(r.stdout)["backups"]
    assert [b["id"] for b in lst] == [full["id"], inc["id"]]
    assert lst[1]["latest"] and lst[1]["manifest"] == "ok" and lst[1]["parent"] == full["id"]
    # prune keeps young backups and the parent of a kept incremental
    r = inst.run(["backup", "prune", "--json"], BACKUP_OFFSITE_DIR="")
    assert r.returncode == 0, out(r)
    rep = json.loads(r.stdout)["repositories"][0]
    assert sorted(rep["kept"]) == sorted([full["id"], inc["id"]]) and rep["deleted"] == []


def test_no_key_and_usage(inst, tmp_path):
    r = inst.run(["backup", "full"], BACKUP_ENCRYPTION_KEY_FILE="")
    assert r.returncode == 1 and "BACKUP_ENCRYPTION_KEY_FILE" in r.stderr, out(r)
    os.chmod(inst.key, 0o644)
    r = inst.run(["backup", "full"])
    assert r.returncode == 1 and "chmod 600" in r.stderr, out(r)
    os.chmod(inst.key, 0o600)
    assert not os.path.exists(os.path.join(inst.backups, "latest"))
    r = inst.run(["backup", "bogus"])
    assert r.returncode == 2, out(r)
    for args in (["backup", "--help"], ["restore", "--help"], ["dr-drill", "--help"]):
        r = inst.run(args)
        assert r.returncode == 0 and "usage" in r.stdout, out(r)
    r = inst.run(["restore"])
    assert r.returncode == 2


def test_prune_frees_a_full_repository(inst, tmp_path):
    """review47 #2: on a full repository prune freed nothing once backups held audit files
    (every production backup does): an expired backup still inside the audit retention is
    reduced to its audit files, and the reduction wrote its new manifest first, which found no
    room; the run stopped at that first error. Now the data nobody needs goes first when the
    manifest has no room, and one failure does not stop the others."""
    fs = str(tmp_path / "repofs")
    os.makedirs(fs)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", fs], capture_output=True, text=True)
    assert r.returncode == 0, "mounting a tmpfs needs root (make test runs as root): " + r.stderr
    try:
        repo = os.path.join(fs, "repo")
        ids = [inst.backup("full", BACKUP_PATH=repo)["id"] for _ in range(3)]
        st = os.statvfs(fs)
        with open(os.path.join(fs, "filler"), "wb") as f:  # the volume is full
            try:
                f.write(b"\0" * (st.f_bavail * st.f_frsize))
            except OSError:
                pass
        # review47 #9: the message names the repository, not only the file being stored
        r = inst.run(["backup", "full"], BACKUP_PATH=repo)
        assert r.returncode == 1 and "the repository is full (BACKUP_PATH %s)" % repo in r.stderr, out(r)
        env = h.base_env(inst.env(BACKUP_PATH=repo, BACKUP_KEEP_MIN="1", BACKUP_OFFSITE_DIR=""))
        env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if x)
        p = subprocess.run([*h.faketime("+100d"), h.require_binary(), "backup", "prune", "--json"], env=env,
                           capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, out(p)
        rep = json.loads(p.stdout)["repositories"][0]
        assert sorted(rep["reduced"]) == sorted(ids[:2]) and rep["kept"] == [ids[2]], rep
        assert rep["failed"] == [] and rep["freed_bytes"] > 0, rep
        assert os.statvfs(fs).f_bavail > 0
        # the reduced backups still hold their audit files, and verify says so
        r = inst.run(["backup", "verify", "--all", "--json"], BACKUP_PATH=repo)
        assert r.returncode == 0, out(r)
    finally:
        subprocess.run(["umount", "-l", fs], capture_output=True)


def test_a_backup_whose_latest_can_not_be_moved_is_not_left_listed(inst, tmp_path):
    """review47 #5: a backup renamed into place whose `latest` link could not then be moved
    (a full disk, out of inodes) was reported failed (exit 1, failure audit record) yet stayed
    in the repository, listed as a good backup. It now goes back to its partial name and is
    removed. strace makes the link's symlink() fail with ENOSPC (scripts/install-deps.sh)."""
    first = inst.backup("full")
    env = h.base_env(dict(inst.env(), **h.UNDER_PTRACE))
    r = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=symlink,symlinkat", "-e",
                        "inject=symlink,symlinkat:error=ENOSPC", h.require_binary(), "backup", "incremental",
                        "--json"], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 1, out(r)
    failed = json.loads(r.stdout)
    assert "not published" in failed["error"], failed
    assert not os.path.exists(os.path.join(inst.backups, failed["id"])), os.listdir(inst.backups)
    assert not [n for n in os.listdir(inst.backups) if n.endswith(".partial")], os.listdir(inst.backups)
    r = inst.run(["backup", "list", "--json"])
    assert r.returncode == 0, out(r)
    assert [b["id"] for b in json.loads(r.stdout)["backups"]] == [first["id"]], r.stdout
    assert inst.backup("incremental")["parent"] == first["id"]


def test_a_full_database_volume_is_named_by_backup_and_check(inst, tmp_path):
    """review47 #8, #9: a backup writes its database snapshot next to the database; on a full
    database volume it failed with "sqlite backup step: disk I/O error", and `backup check`
    looked only at BACKUP_PATH. The failure now says how much room there was, and check has a
    db_disk check."""
    inst.backup("full")
    r = inst.run(["backup", "check"])
    rep = json.loads(r.stdout)
    assert rep["checks"]["db_disk"]["ok"] is True, rep["checks"]["db_disk"]
    assert rep["checks"]["db_disk"]["needed_bytes"] == os.path.getsize(inst.db)
    fs = str(tmp_path / "dbfs")
    os.makedirs(fs)
    size = os.path.getsize(inst.db) + (1 << 20)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", fs], capture_output=True, text=True)
    assert r.returncode == 0, "mounting a tmpfs needs root (make test runs as root): " + r.stderr
    try:
        db = os.path.join(fs, "aimedres.db")
        shutil.copyfile(inst.db, db)
        st = os.statvfs(fs)
        with open(os.path.join(fs, "filler"), "wb") as f:
            try:
                f.write(b"\0" * (st.f_bavail * st.f_frsize))
            except OSError:
                pass
        r = inst.run(["backup", "check"], DATABASE_URL="sqlite://" + db)
        assert r.returncode == 1, out(r)
        dd = json.loads(r.stdout)["checks"]["db_disk"]
        assert dd["ok"] is False and fs in dd["message"] and "snapshot" in dd["message"], dd
        r = inst.run(["backup", "full"], DATABASE_URL="sqlite://" + db)
        assert r.returncode == 1, out(r)
        assert "the snapshot is written next to the database: %s has" % fs in r.stderr, out(r)
    finally:
        subprocess.run(["umount", "-l", fs], capture_output=True)


def test_check_waits_for_prune(inst, tmp_path):
    """`backup check` takes the repository's shared reader lock, like verify and restore: while
    a prune holds it exclusively (deleting backups) the check waits instead of reading a
    half-pruned repository, and goes on as soon as the prune is done. A backup (which only
    takes the write lock) does not block it."""
    s = inst.backup("full")
    with open(os.path.join(inst.backups, ".write.lock"), "a") as wl:
        fcntl.flock(wl, fcntl.LOCK_EX)  # a backup running: the check does not wait for it
        r = inst.run(["backup", "check"], timeout=60)
        assert r.returncode == 0, out(r)
    holder = open(os.path.join(inst.backups, ".read.lock"), "a")
    fcntl.flock(holder, fcntl.LOCK_EX)  # what prune takes before deleting anything
    try:
        proc = subprocess.Popen([h.require_binary(), "backup", "check"], env=h.base_env(inst.env()),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        time.sleep(1.5)
        assert proc.poll() is None, "backup check ran while a prune held the repository"
    finally:
        holder.close()  # the prune is done
    o, e = proc.communicate(timeout=60)
    assert proc.returncode == 0, (o, e)
    rep = json.loads(o)
    assert rep["ok"] and rep["latest"] == s["id"] and rep["checks"]["integrity"]["ok"], rep


def test_prune_waits_for_a_reader(inst):
    """A daily prune that meets a check or a verify reading the repository waits for it (up to
    10 minutes) instead of failing at once: failing every time they collide would let the
    repository grow until its disk is full."""
    inst.backup("full")
    holder = open(os.path.join(inst.backups, ".read.lock"), "a")
    fcntl.flock(holder, fcntl.LOCK_SH)  # what check, verify and restore take
    try:
        proc = subprocess.Popen([h.require_binary(), "backup", "prune", "--json"], env=h.base_env(inst.env()),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        time.sleep(3)  # longer than the 2 s a writer waits
        assert proc.poll() is None, proc.communicate()
    finally:
        holder.close()  # the reader is done
    o, e = proc.communicate(timeout=60)
    assert proc.returncode == 0, (o, e)
    assert b"waiting" in e, e  # it says why it does not answer at once
    # and while it waits it holds nothing: a backup that starts meanwhile runs
    holder = open(os.path.join(inst.backups, ".read.lock"), "a")
    fcntl.flock(holder, fcntl.LOCK_SH)
    try:
        proc = subprocess.Popen([h.require_binary(), "backup", "prune", "--json"], env=h.base_env(inst.env()),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        time.sleep(1)
        s = inst.backup("incremental")
        assert s["ok"], s
    finally:
        holder.close()
    o, e = proc.communicate(timeout=60)
    assert proc.returncode == 0, (o, e)


def test_restore_in_place_audit_record(inst, tmp_path):
    """In place, the restored log is the live log: the restore appends one RESTORE record to
    it (the log as of the backup's snapshot), the replaced log is kept aside, the chain
    verifies."""
    log_before = bh.read_bytes(inst.audit_log)
    s = inst.backup("full")
    replaced = bh.read_bytes(inst.audit_log)
    r = inst.run(["restore", s["id"], "--yes", "--json"])
    assert r.returncode == 0, out(r)
    (rec,) = bh.appended_records(bh.read_bytes(inst.audit_log), log_before)
    assert rec["type"] == "RESTORE" and rec["entity_id"] == s["id"] and rec["outcome"] == "success", rec
    assert rec["action"] == "U" and rec["detail"]["in_place"] is True and rec["detail"]["log"] == "restored"
    assert sorted(rec["detail"]["components"]) == sorted(["db", "models", "config", "results", "audit"])
    aside = os.path.join(inst.audit_dir, ".pre-restore-" + s["id"], "audit.log")
    assert bh.read_bytes(aside) == replaced
    r = bh.audit_verify(inst)
    assert r.returncode == 0, out(r)


def record_in_the_wal_alone(db, pid, tmp_path):
    """Adds a prediction record that is in db's WAL only, as a server that stopped without a
    checkpoint (or was killed) leaves it: the database and its WAL are copied while the record
    is there, and put back after the connection's close has checkpointed and removed the WAL."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    with conn:
        conn.execute("INSERT INTO predictions (id, created_ms, model, version, arm, outputs_json, n_rows,"
                     " latency_ms, status) VALUES (?, 1, 'm', '1', 'stable', '[]', 1, 0.1, 200)", (pid,))
    saved = str(tmp_path / "saved")
    shutil.copyfile(db, saved)
    shutil.copyfile(db + "-wal", saved + "-wal")
    conn.close()
    shutil.copyfile(saved, db)
    shutil.copyfile(saved + "-wal", db + "-wal")
    if os.path.exists(db + "-shm"):
        os.unlink(db + "-shm")


def test_restore_in_place_keeps_the_old_wal_paired_with_its_database(inst, tmp_path):
    """review47 #1: the old database went aside as <db>.pre-restore-<id> but its WAL as
    <db>-wal.pre-restore-<id>, a name SQLite never pairs with it, so the set-aside store
    looked as if it had lost every record since its last checkpoint. Both now go aside under
    one name. The records here are in the WAL alone, as an older server left them at stop."""
    s = inst.backup("full")
    record_in_the_wal_alone(inst.db, "after-the-backup", tmp_path)
    immutable = sqlite3.connect("file:%s?immutable=1" % inst.db, uri=True)
    assert immutable.execute("SELECT count(*) FROM predictions WHERE id = 'after-the-backup'").fetchone()[0] == 0
    immutable.close()
    r = inst.run(["restore", s["id"], "--yes", "--components", "db"])
    assert r.returncode == 0, out(r)
    aside = inst.db + ".pre-restore-" + s["id"]
    assert os.path.exists(aside + "-wal") and not os.path.exists(inst.db + "-wal.pre-restore-" + s["id"])
    old = sqlite3.connect(aside)
    try:
        assert old.execute("SELECT count(*) FROM predictions WHERE id = 'after-the-backup'").fetchone()[0] == 1
    finally:
        old.close()
    restored = sqlite3.connect(inst.db)
    try:
        assert restored.execute("SELECT count(*) FROM predictions WHERE id = 'after-the-backup'").fetchone()[0] == 0
    finally:
        restored.close()


def test_a_rerun_restore_keeps_the_first_aside_pair_whole(inst, tmp_path):
    """review48 #1: when the swap failed between linking the old database aside and moving its
    WAL there, the rerun that finished it took the next aside name: the name the first run gave
    (and the docs point to) kept the database without its WAL. The rerun now moves the WAL
    beside the database the first run set aside. strace fails the WAL's rename with EIO."""
    s = inst.backup("full")
    record_in_the_wal_alone(inst.db, "in-the-wal", tmp_path)
    env = h.base_env(dict(inst.env(), **h.UNDER_PTRACE))
    r = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-P", inst.db + "-wal", "-e",
                        "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:error=EIO:when=1",
                        h.require_binary(), "restore", s["id"], "--yes", "--components", "db"],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode != 0, out(r)
    r = inst.run(["restore", s["id"], "--yes", "--components", "db"])  # finishes the interrupted swap
    assert r.returncode == 0, out(r)
    aside = inst.db + ".pre-restore-" + s["id"]
    assert os.path.exists(aside + "-wal"), sorted(os.listdir(inst.prod))
    old = sqlite3.connect(aside)
    try:
        assert old.execute("SELECT count(*) FROM predictions WHERE id = 'in-the-wal'").fetchone()[0] == 1
    finally:
        old.close()


def test_restore_in_place_refuses_while_a_command_has_the_store_open(inst, tmp_path):
    """review48 #5: restore took the data lock, which keeps a server out but not a command: a
    `model train` running during the restore reported success, and its registration went
    into the database set aside. A process that has the database open now stops an in-place
    restore, named by its pid (this test's own connection stands for such a command)."""
    s = inst.backup("full")
    holder = sqlite3.connect(inst.db)
    try:
        holder.execute("SELECT count(*) FROM model_versions").fetchone()
        r = inst.run(["restore", s["id"], "--yes", "--components", "db"])
        assert r.returncode == 1, out(r)
        assert "process %d" % os.getpid() in r.stderr and "has the database" in r.stderr, out(r)
        assert not [n for n in os.listdir(inst.prod) if "pre-restore" in n]
    finally:
        holder.close()
    r = inst.run(["restore", s["id"], "--yes", "--components", "db"])
    assert r.returncode == 0, out(r)


def test_restore_in_place_refuses_a_symlinked_database_path(inst, tmp_path):
    """review50 #4: with the database path a symbolic link, an in-place restore set the link
    aside and put the restored database in its place as a regular file, leaving the link's
    target (the real database, on its data volume) as it was, and reported success. It is
    refused now, saying what to do. review51 #3: the same for the other areas, and only for
    the areas the restore replaces."""
    s = inst.backup("full")
    real = str(tmp_path / "volume" / "aimedres.db")
    os.makedirs(os.path.dirname(real))
    shutil.move(inst.db, real)
    os.symlink(real, inst.db)
    before = bh.db_content(real)
    r = inst.run(["restore", s["id"], "--yes", "--components", "db"])
    assert r.returncode == 1 and "is a symbolic link" in r.stderr, out(r)
    assert "DATABASE_URL" in r.stderr, out(r)
    assert os.path.islink(inst.db) and bh.db_content(real) == before
    # review51 #3: a restore that does not touch the database is not refused for its link ...
    r = inst.run(["restore", s["id"], "--yes", "--components", "models"])
    assert r.returncode == 0, out(r)
    # ... and the other areas' links are refused as the database's is: the model storage (its
    # target was left stale, the link replaced by a directory) and the audit log file
    real_models = str(tmp_path / "volume" / "models")
    shutil.move(inst.models, real_models)
    os.symlink(real_models, inst.models)
    r = inst.run(["restore", s["id"], "--yes", "--components", "models"])
    assert r.returncode == 1 and "%s is a symbolic link" % inst.models in r.stderr, out(r)
    assert "MODEL_STORAGE_PATH" in r.stderr, out(r)
    assert os.path.islink(inst.models)
    real_log = str(tmp_path / "volume" / "audit.log")
    shutil.move(inst.audit_log, real_log)
    os.symlink(real_log, inst.audit_log)
    with open(real_log, "rb") as f:
        log_before = f.read()
    r = inst.run(["restore", s["id"], "--yes", "--components", "audit"])
    assert r.returncode == 1 and "%s is a symbolic link" % inst.audit_log in r.stderr, out(r)
    assert "AUDIT_LOG_PATH" in r.stderr, out(r)
    assert os.path.islink(inst.audit_log)
    with open(real_log, "rb") as f:
        assert f.read().startswith(log_before)  # the refusal's own record appended, nothing replaced


def test_restore_in_place_with_a_trailing_slash_in_the_paths(inst, tmp_path):
    """review53 #3: with MODEL_STORAGE_PATH (or RESULTS_PATH) ending in "/", the stage and
    set-aside names were built inside the directory being replaced; the swap stopped halfway
    with EINVAL and left a journal no rerun could finish (serve and backup refused to start).
    The destinations lose their trailing slashes; a symlink behind one is seen too."""
    s = inst.backup("full")
    # review54 #1 and #2: "/." and "./" did the same; a relative path is made absolute (the
    # journal named it relative to the directory the restore ran in)
    rel = os.path.relpath(inst.models, inst.root)
    for models, cwd in ((inst.models + "/", None), (inst.models + "/.", None), (inst.models + "/./", None),
                        ("./" + rel + "/.", inst.root)):
        inst.extra = {"MODEL_STORAGE_PATH": models, "RESULTS_PATH": inst.results + "/"}
        r = subprocess.run([h.require_binary(), "restore", s["id"], "--yes", "--components", "models,results"],
                           env=h.base_env(inst.env()), cwd=cwd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (models, out(r))
        assert os.path.isdir(inst.models) and not os.path.islink(inst.models)
        assert not [n for n in os.listdir(inst.models) if "restore" in n], (models, os.listdir(inst.models))
        assert not [n for n in os.listdir(inst.prod) if "journal" in n], os.listdir(inst.prod)
    inst.extra = {"MODEL_STORAGE_PATH": inst.models + "/", "RESULTS_PATH": inst.results + "/"}
    assert inst.run(["backup", "full"]).returncode == 0
    real = str(tmp_path / "volume" / "models")
    os.makedirs(os.path.dirname(real))
    shutil.move(inst.models, real)
    os.symlink(real, inst.models)
    r = inst.run(["restore", s["id"], "--yes", "--components", "models"])
    assert r.returncode == 1 and "%s is a symbolic link" % inst.models in r.stderr, out(r)


def test_restore_in_place_refuses_a_mount_point_and_a_too_long_path(inst, tmp_path):
    """review55 #3 and #4: a destination that is a mount point (or "/") can not be renamed: the
    swap failed with EBUSY and left a journal no rerun could finish; and one longer than about
    3,770 characters had its stage name cut short. Both are refused before anything changes."""
    s = inst.backup("full")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", inst.models], capture_output=True,
                       text=True)
    assert r.returncode == 0, "mounting a tmpfs needs root (make test runs as root): " + r.stderr
    try:
        r = inst.run(["restore", s["id"], "--yes", "--components", "models"])
        assert r.returncode == 1 and "%s is a mount point" % inst.models in r.stderr, out(r)
        assert not [n for n in os.listdir(inst.prod) if "journal" in n], os.listdir(inst.prod)
    finally:
        subprocess.run(["umount", "-l", inst.models], capture_output=True)
    # review56 #1 and #2: a bind mount from the same file system (same device number), of the
    # model directory or of the database file itself
    vol = str(tmp_path / "vol")
    shutil.copytree(inst.models, vol)
    db_copy = str(tmp_path / "db-copy")
    shutil.copy(inst.db, db_copy)
    for src, dst, comp in ((vol, inst.models, "models"), (db_copy, inst.db, "db")):
        r = subprocess.run(["mount", "--bind", src, dst], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        try:
            r = inst.run(["restore", s["id"], "--yes", "--components", comp])
            assert r.returncode == 1 and "%s is a mount point" % dst in r.stderr, (comp, out(r))
            assert not [n for n in os.listdir(inst.prod) if "journal" in n], os.listdir(inst.prod)
        finally:
            subprocess.run(["umount", "-l", dst], capture_output=True)
    # review57 #2: a bind-mounted side file of the trail (not the log itself) stopped the swap too
    side = inst.audit_log + ".config-state"
    if not os.path.exists(side):
        open(side, "w").close()
    side_copy = str(tmp_path / "side-copy")
    shutil.copy(side, side_copy)
    r = subprocess.run(["mount", "--bind", side_copy, side], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        r = inst.run(["restore", s["id"], "--yes", "--components", "audit"])
        assert r.returncode == 1 and "%s is a mount point" % side in r.stderr, out(r)
        assert not [n for n in os.listdir(inst.prod) if "journal" in n], os.listdir(inst.prod)
    finally:
        subprocess.run(["umount", "-l", side], capture_output=True)
    # review57 #3: for the env file (no setting names its place) the way out is --config-dest
    r = inst.run(["backup", "full", "--env-file", inst.env_file, "--json"])
    assert r.returncode == 0, out(r)
    cid = json.loads(r.stdout)["id"]
    env_copy = str(tmp_path / "env-copy")
    shutil.copy(inst.env_file, env_copy)
    r = subprocess.run(["mount", "--bind", env_copy, inst.env_file], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        r = inst.run(["restore", cid, "--yes", "--components", "config"])
        assert r.returncode == 1 and "%s is a mount point" % inst.env_file in r.stderr, out(r)
        assert "pass --config-dest a file inside the volume, leave config out (--components)" in r.stderr, out(r)
    finally:
        subprocess.run(["umount", "-l", inst.env_file], capture_output=True)
    # review59 #3: under --target, a volume on a file inside the target's audit directory
    tgt = str(tmp_path / "tgt-audit")
    os.makedirs(os.path.join(tgt, "audit"))
    target_log = os.path.join(tgt, "audit", os.path.basename(inst.audit_log))
    open(target_log, "w").close()
    r = subprocess.run(["mount", "--bind", side_copy, target_log], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        r = inst.run(["restore", s["id"], "--yes", "--target", tgt])
        assert r.returncode == 1 and "%s is a mount point" % target_log in r.stderr, out(r)
        assert sorted(os.listdir(tgt)) == ["audit"], os.listdir(tgt)  # no journal, no stage
    finally:
        subprocess.run(["umount", "-l", target_log], capture_output=True)
    # review59 #4: SQLite opens the database by a path of at most 512 bytes
    r = inst.run(["restore", s["id"], "--yes", "--target", os.path.join(str(tmp_path), "d" * 200, "e" * 240)])
    assert r.returncode == 1, out(r)
    assert "the destination of the database (DATABASE_URL) is too long: at most 448 characters" in r.stderr, out(r)
    # review57 #4: the refusal names the destination and the limit
    r = inst.run(["restore", s["id"], "--yes", "--components", "models"],
                 MODEL_STORAGE_PATH=os.path.join(inst.prod, *(["x" * 200] * 19)))
    assert r.returncode == 1, out(r)
    assert ("the destination of the model storage (MODEL_STORAGE_PATH) is too long: at most 3777 characters"
            in r.stderr), out(r)


def test_restore_target_refuses_a_volume_inside_the_target(inst, tmp_path):
    """review56 #3: a --target directory that already held a volume at models stopped the swap
    with EBUSY and left a journal (and decrypted models) inside the target. It is refused before
    anything is staged; a target that is itself a mount point is fine (only what is inside it
    is renamed)."""
    s = inst.backup("full")
    tgt = str(tmp_path / "tgt")
    os.makedirs(os.path.join(tgt, "models"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", os.path.join(tgt, "models")],
                       capture_output=True, text=True)
    assert r.returncode == 0, "mounting a tmpfs needs root (make test runs as root): " + r.stderr
    try:
        r = inst.run(["restore", s["id"], "--yes", "--target", tgt])
        want = "refusing to restore: %s/models is a mount point; " % tgt
        assert r.returncode == 1 and want in r.stderr, out(r)
        assert "choose a --target directory without volumes inside it" in r.stderr, out(r)
        assert sorted(os.listdir(tgt)) == ["models"], os.listdir(tgt)  # no journal, no stage
    finally:
        subprocess.run(["umount", "-l", os.path.join(tgt, "models")], capture_output=True)
    # the same target without the volume, and a target that is a volume itself, restore
    r = inst.run(["restore", s["id"], "--yes", "--target", tgt])
    assert r.returncode == 0, out(r)
    vol = str(tmp_path / "voltgt")
    os.makedirs(vol)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", vol], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        r = inst.run(["restore", s["id"], "--yes", "--target", vol])
        assert r.returncode == 0, out(r)
        assert os.path.isdir(os.path.join(vol, "models")), os.listdir(vol)
    finally:
        subprocess.run(["umount", "-l", vol], capture_output=True)


def test_restore_in_place_sets_aside_trail_files_the_backup_lacks(inst, tmp_path):
    """review37 #2: a checkpoints file written after the backup stayed in place beside the
    restored log, naming seqs the restored log does not reach: `audit verify` failed at once."""
    s = inst.backup("full")
    ckpt = inst.audit_log + ".checkpoints"
    assert not os.path.exists(ckpt)  # not in the backup
    with open(ckpt, "w") as f:
        f.write(json.dumps({"seq": 99999, "hash": "ab" * 32, "ts": "2026-11-28T00:00:00Z"}) + "\n")
    lock = inst.audit_log + ".lock"
    had_lock = os.path.exists(lock)
    r = inst.run(["restore", s["id"], "--yes", "--json"])
    assert r.returncode == 0, out(r)
    assert not os.path.exists(ckpt), os.listdir(inst.audit_dir)
    aside = os.path.join(inst.audit_dir, ".pre-restore-" + s["id"])
    assert os.path.exists(os.path.join(aside, "audit.log.checkpoints")), os.listdir(aside)
    assert os.path.exists(lock) == had_lock  # lock files hold no records: they stay
    r = bh.audit_verify(inst)
    assert r.returncode == 0, out(r)


def test_failed_backup_is_audited(inst, tmp_path):
    """A backup that fails (here: another backup holds the repository) still writes its BACKUP
    record, with outcome failure and the reason."""
    inst.backup("full")
    log_before = bh.read_bytes(inst.audit_log)
    with open(os.path.join(inst.backups, ".write.lock"), "a") as wl:
        fcntl.flock(wl, fcntl.LOCK_EX)
        r = inst.run(["backup", "full", "--json"])
    assert r.returncode == 1, out(r)
    (rec,) = bh.appended_records(bh.read_bytes(inst.audit_log), log_before)
    assert rec["type"] == "BACKUP" and rec["outcome"] == "failure" and "busy" in rec["detail"]["error"], rec
    r = bh.audit_verify(inst)
    assert r.returncode == 0, out(r)


def test_unwritable_audit_log_stops_before_any_work(inst, tmp_path):
    """With AUDIT_LOG_PATH set but no SECRET_KEY (the chain key), backup, restore and the drill
    could not write their audit record: they say so and start nothing (a backup used to be
    published first, its JSON saying ok, then exit 1)."""
    for args in (["backup", "full"], ["restore", "latest", "--target", str(tmp_path / "t"), "--yes"],
                 ["dr-drill", "--work-dir", str(tmp_path)]):
        r = inst.run(args, SECRET_KEY="")
        assert r.returncode == 1 and "nothing was started" in r.stderr and "SECRET_KEY" in r.stderr, (args, out(r))
        assert '"ok": true' not in r.stdout, (args, out(r))
    assert not os.path.exists(inst.backups)
    assert not os.path.exists(tmp_path / "t")


def test_repository_inside_a_backed_up_tree_is_refused(inst, tmp_path):
    """A repository (or offsite copy) inside RESULTS_PATH or MODEL_STORAGE_PATH would put
    each backup into the next one: refused before anything is created."""
    inside = os.path.join(inst.results, "backups")
    r = inst.run(["backup", "full"], BACKUP_PATH=inside)
    assert r.returncode == 1 and "lies inside RESULTS_PATH" in r.stderr, out(r)
    assert not os.path.exists(inside)
    offsite = os.path.join(inst.models, "offsite")
    os.mkdir(offsite)
    r = inst.run(["backup", "full"], BACKUP_OFFSITE_DIR=offsite)
    assert r.returncode == 1 and "BACKUP_OFFSITE_DIR" in r.stderr and "MODEL_STORAGE_PATH" in r.stderr, out(r)
    assert os.listdir(offsite) == [] and not os.path.exists(inst.backups)


def test_postgresql_not_supported_yet(inst, tmp_path):
    """The store has no PostgreSQL backend yet, so there is nothing to pg_dump: every backup
    command says so plainly and touches nothing."""
    url = "postgresql://aimedres:pw@127.0.0.1:5432/aimedres"
    for args in (["backup", "full"], ["backup", "verify"], ["restore", "latest", "--yes"], ["dr-drill"]):
        r = inst.run(args, DATABASE_URL=url)
        assert r.returncode == 1, out(r)
        assert "PostgreSQL" in r.stderr and "not supported yet" in r.stderr and "pw@" not in r.stderr, out(r)
    assert not os.path.exists(inst.backups)


# --------------------------------------------------------------------------- DR drill


def test_dr_drill(inst, tmp_path):
    inst.backup("full")
    before = bh.prediction_count(inst.db)
    audit_before = bh.audit_digest(inst.audit_dir)
    log_before = bh.read_bytes(inst.audit_log)
    report = tmp_path / "drill.json"
    work = tmp_path / "work"
    work.mkdir()
    r = inst.run(["dr-drill", "--report", str(report), "--env-file", inst.env_file, "--work-dir", str(work)],
                 timeout=180)
    assert r.returncode == 0, out(r)
    rep = json.load(open(report))
    assert rep["ok"] is True
    assert rep["targets"] == {"rto_s": 14400, "rpo_s": 21600}
    assert 0 < rep["rto_s"] < 14400 and 0 <= rep["rpo_s"] < 21600
    assert rep["rto_ok"] and rep["rpo_ok"]
    steps = {s["name"]: s for s in rep["steps"]}
    for name in ("backup", "restore", "start", "models", "predict", "stop", "records", "cleanup"):
        assert steps[name]["ok"], steps[name]
    assert rep["backup"]["type"] == "incremental"
    assert steps["audit"]["ok"] and "verifies" in steps["audit"]["detail"], steps["audit"]
    assert os.listdir(work) == []  # cleaned up
    # production untouched by the drill server (its predictions went to the copy): the live
    # audit log only gained the drill's own BACKUP and RESTORE records, and still verifies
    assert bh.prediction_count(inst.db) == before
    added = bh.appended_records(bh.read_bytes(inst.audit_log), log_before)
    assert [(x["type"], x["entity_id"], x["outcome"]) for x in added] == [
        ("BACKUP", rep["backup"]["id"], "success"), ("RESTORE", rep["backup"]["id"], "success")], added
    assert all(x["detail"]["drill"] for x in added) and added[1]["detail"]["target"] == rep["target"]
    assert {k: v for k, v in bh.audit_digest(inst.audit_dir).items() if k != "audit.log"} == {
        k: v for k, v in audit_before.items() if k != "audit.log"}
    r = bh.audit_verify(inst)
    assert r.returncode == 0, out(r)


def test_dr_drill_against_live_production_server(inst, tmp_path):
    """The drill backs up while production serves (and writes its audit log), and compares
    the restored server's predictions with production's own answers over HTTP."""
    srv = h.Server(inst.prod, extra_env={"AUDIT_LOG_PATH": inst.audit_log, "SECRET_KEY": bh.SECRET_VALUE})
    srv.start()
    try:
        for name in h.DEMO_MODELS:
            r = srv.predict(name, {"features": h.valid_features(h.read_manifest(inst.models, name))})
            assert r.status_code == 200, r.text
        report = tmp_path / "drill.json"
        r = inst.run(["dr-drill", "--full", "--url", "http://127.0.0.1:%d" % srv.port, "--report", str(report),
                      "--env-file", inst.env_file, "--work-dir", str(tmp_path)], timeout=180)
        assert r.returncode == 0, out(r)
        rep = json.load(open(report))
        steps = {s["name"]: s for s in rep["steps"]}
        assert rep["backup"]["type"] == "full"
        assert "production server's" in steps["predict"]["detail"], steps["predict"]
        assert steps["records"]["ok"] and steps["audit"]["ok"], rep["steps"]
        # production keeps serving throughout
        assert srv.get("/ready").status_code == 200
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed, srv.log_tail()
    r = inst.run(["audit", "verify"])
    assert r.returncode == 0, out(r)


def test_dr_drill_against_a_tls_production_server(inst, tmp_path):
    """review58 #4: with TLS_ENABLED=true in its environment the drill started its own server
    speaking TLS to its plain-HTTP checks, and an https:// --url was refused. The drill's server
    now speaks plain HTTP on loopback, and production is compared over verified https (its
    certificate trusted through TLS_CERT_PATH, as for the other commands)."""
    key, cert = str(tmp_path / "tls-key.pem"), str(tmp_path / "tls-cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    tls = {"TLS_ENABLED": "true", "TLS_CERT_PATH": cert, "TLS_KEY_PATH": key}

    class TlsProduction(h.Server):
        def url(self, path):
            return "https://127.0.0.1:%d%s" % (self.port, path)

    srv = TlsProduction(inst.prod, extra_env=dict(tls, AUDIT_LOG_PATH=inst.audit_log, SECRET_KEY=bh.SECRET_VALUE))
    srv.session.verify = cert
    srv.start()
    try:
        report = tmp_path / "drill.json"
        # the pin holds for this machine's server: PORT says which (production's settings)
        r = inst.run(["dr-drill", "--full", "--url", "https://127.0.0.1:%d" % srv.port, "--report", str(report),
                      "--env-file", inst.env_file, "--work-dir", str(tmp_path)], timeout=180,
                     PORT=str(srv.port), **tls)
        assert r.returncode == 0, out(r)
        steps = {s["name"]: s for s in json.load(open(report))["steps"]}
        assert "production server's" in steps["predict"]["detail"], steps["predict"]
        # review59 #2: the same settings in the env file (as production keeps them), not the
        # environment, are read too: production's certificate is trusted from there
        with open(inst.env_file, "a") as f:
            f.write("TLS_ENABLED=true\nTLS_CERT_PATH=%s\nTLS_KEY_PATH=%s\nPORT=%d\n" % (cert, key, srv.port))
        r = inst.run(["dr-drill", "--url", "https://127.0.0.1:%d" % srv.port, "--report", str(report),
                      "--env-file", inst.env_file, "--work-dir", str(tmp_path)], timeout=180)
        assert r.returncode == 0, out(r)
        # and an http:// URL to that TLS port is refused before anything is sent
        r = inst.run(["dr-drill", "--url", "http://127.0.0.1:%d" % srv.port, "--env-file", inst.env_file,
                      "--work-dir", str(tmp_path)])
        assert r.returncode == 2 and "use https://" in r.stderr, out(r)
        # review60 #2: another server than the configured one is not held to the pin (the CAs
        # are asked: a self-signed certificate is not trusted there)
        r = inst.run(["dr-drill", "--url", "https://localhost:%d" % srv.port, "--report", str(report),
                      "--env-file", inst.env_file, "--work-dir", str(tmp_path)], timeout=180,
                     PORT=str(srv.port + 1))
        assert r.returncode == 1 and "the server's certificate is not trusted" in out(r), out(r)
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed, srv.log_tail()


def test_dr_drill_reports_a_missed_rpo(inst, tmp_path):
    """A drill on a backup older than the RPO target (6 h; here the drill runs 7 hours later
    under faketime) exits 1 and says why on stderr, with rpo_s in the report."""
    inst.backup("full")
    report = tmp_path / "drill.json"
    env = h.base_env(inst.env())
    # libfaketime is preloaded ahead of the sanitizer build's ASan runtime; ASan tolerates it so
    env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if x)
    r = subprocess.run([*h.faketime("+7h"), h.require_binary(), "dr-drill", "--use-latest", "--report",
                        str(report), "--work-dir", str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 1, out(r)
    # durations in the units they read best in (test_backup_exit_codes.py): not "25200 s"
    assert re.search(r"RPO target missed: the backup used was 7h( [0-9]+m)? old \(target 6h\)", r.stderr), out(r)
    rep = json.load(open(report))
    assert rep["rpo_ok"] is False and 7 * 3600 - 120 < rep["rpo_s"] < 7 * 3600 + 600, rep


def test_dr_drill_with_authentication(inst, tmp_path):
    """AUTH_ENABLED=true (production's default): the drill checks its restored server through
    that server's real authentication with a temporary clinician key of its own (minted in the
    restored copy of the store, under a fresh salt), and production with --api-key-file."""
    auth = {"AUTH_ENABLED": "true", "API_KEY_SALT": "s" * 40}
    srv = h.Server(inst.prod, extra_env=dict(auth, AUDIT_LOG_PATH=inst.audit_log, SECRET_KEY=bh.SECRET_VALUE))
    srv.start()
    try:
        r = inst.run(["apikey", "create", "--name", "drill-prod", "--role", "clinician"], **auth)
        assert r.returncode == 0, out(r)
        keyfile = tmp_path / "prod.key"
        keyfile.write_text(r.stdout.strip().splitlines()[-1] + "\n")
        assert srv.get("/api/v1/models/list").status_code == 401  # production does refuse anonymity
        report = tmp_path / "drill.json"
        url = "http://127.0.0.1:%d" % srv.port
        r = inst.run(["dr-drill", "--full", "--url", url, "--api-key-file", str(keyfile), "--report", str(report),
                      "--env-file", inst.env_file, "--work-dir", str(tmp_path)], timeout=180, **auth)
        assert r.returncode == 0, out(r)
        steps = {s["name"]: s for s in json.load(open(report))["steps"]}
        assert steps["models"]["ok"] and "production server's" in steps["predict"]["detail"], steps
        # AIMEDRES_API_KEY works as for deploy and verify
        r = inst.run(["dr-drill", "--url", url, "--env-file", inst.env_file, "--work-dir", str(tmp_path)],
                     timeout=180, AIMEDRES_API_KEY=keyfile.read_text().strip(), **auth)
        assert r.returncode == 0, out(r)
        # without production's key the comparison is refused by production, and said so
        r = inst.run(["dr-drill", "--url", url, "--env-file", inst.env_file, "--work-dir", str(tmp_path)],
                     timeout=180, **auth)
        assert r.returncode == 1 and "predict failed" in r.stderr and "401" in r.stderr, out(r)
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed, srv.log_tail()


def test_dr_drill_argument_errors_before_any_work(inst, tmp_path):
    """A bad --url or --api-key-file is a usage error (exit 2) found before the drill takes a
    backup, restores or starts anything."""
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not-a-key\n")
    good_shape = tmp_path / "good.key"
    good_shape.write_text("amr_0123456789abcdef_" + "A" * 43 + "\n")
    for args, msg in ((["--url", "notaurl"], "--url"),
                      (["--url", "ftp://127.0.0.1:1"], "--url"),  # https:// is taken since review58 #4
                      (["--url", "http://127.0.0.1:99999"], "--url"),
                      (["--url", "http://127.0.0.1:1", "--api-key-file", str(bad_key)], "not an API key"),
                      (["--url", "http://127.0.0.1:1", "--api-key-file", str(tmp_path / "none")], "--api-key-file"),
                      (["--api-key-file", str(good_shape)], "neither is set")):
        r = inst.run(["dr-drill", "--work-dir", str(tmp_path)] + args)
        assert r.returncode == 2 and msg in r.stderr, (args, out(r))
    assert not os.path.exists(inst.backups)  # nothing was backed up
    assert [p for p in os.listdir(tmp_path) if p.startswith("aimedres-drill-")] == []


def _children(pid):
    """Pids whose parent is pid (from /proc)."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def _wait_for(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.005)
    return None


def test_interrupted_restore_and_drill_leave_no_plaintext(inst, tmp_path):
    """SIGINT in the middle of a restore removes what it staged (decrypted patient data);
    SIGTERM while a drill's server runs stops that server and removes the drill's temporary
    installation. Both exit 128+signal."""
    with open(os.path.join(inst.results, "big.bin"), "wb") as f:
        for _ in range(75):
            f.write(os.urandom(4 << 20))
    inst.backup("full")
    env = h.base_env(inst.env(BACKUP_THREADS="1"))
    target = tmp_path / "t"
    proc = subprocess.Popen([h.require_binary(), "restore", "latest", "--target", str(target), "--yes"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    staged = _wait_for(lambda: os.path.isdir(target) and [
        n for n, _, fs in os.walk(target) for x in [n] + fs if ".restore-" in x])
    assert staged, "no staging area seen"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "interrupted" in err, err
    left = [os.path.join(d, x) for d, ds, fs in os.walk(target) for x in fs + [y for y in ds if "restore" in y]
            if not x.endswith(".lock")]
    assert left == [], left  # (empty parent directories it created may remain)

    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen([h.require_binary(), "dr-drill", "--use-latest", "--work-dir", str(work)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kids = _wait_for(lambda: _children(proc.pid))
    assert kids, "the drill server never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (proc.returncode, err)
    assert _wait_for(lambda: not any(os.path.exists("/proc/%d" % k) for k in kids), 15), "drill server left"
    assert os.listdir(work) == []


def test_server_exports_last_backup_gauges(inst):
    """With BACKUP_ENABLED=true the running server exports the time of the last good backup
    and its age (issue 6), read from BACKUP_PATH at scrape time: timestamp 0 before the first
    backup, then equal to the backup's own timestamp. Without it, neither series (a server
    whose data is not backed up must not raise BackupStale)."""
    srv = h.Server(inst.prod, extra_env=dict({k: v for k, v in inst.env().items() if k.startswith("BACKUP_")},
                                             BACKUP_ENABLED="true"))
    srv.start()
    try:
        text = srv.get("/metrics").text
        # never backed up: the timestamp is 0 (BackupStale fires on it), no age yet
        assert "\nbackup_last_success_timestamp_seconds 0\n" in text and "backup_age_seconds" not in text
        b = inst.backup("full")
        text = srv.get("/metrics").text
        vals = {}
        for line in text.splitlines():
            if line.startswith("backup_"):
                name, value = line.split()
                vals[name] = float(value)
        man = inst.manifest(b["id"])
        ts = man.get("timestamp_ms") or man.get("created_ms")
        if ts is None:
            from datetime import datetime, timezone
            ts = datetime.strptime(man["timestamp"][:19], "%Y-%m-%dT%H:%M:%S").replace(
                tzinfo=timezone.utc).timestamp() * 1000
        assert abs(vals["backup_last_success_timestamp_seconds"] - ts / 1000.0) < 1.0, (vals, man.get("timestamp"))
        assert 0 <= vals["backup_age_seconds"] < 120
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed
    srv = h.Server(inst.prod, extra_env={k: v for k, v in inst.env().items() if k.startswith("BACKUP_")})
    srv.start()
    try:
        assert "backup_" not in srv.get("/metrics").text
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed


def test_backup_of_a_writing_server_takes_a_consistent_audit_cut(inst, tmp_path):
    """Backups taken while the server appends records and signs a checkpoint after every one
    (AUDIT_CHECKPOINT_RECORDS=1) hold the active log and <log>.checkpoints as one cut made
    under the writer's lock: each restores (restore verifies the audit chain and its signed
    checkpoints) and its chain verifies. Copying the two files separately, each to its end,
    gave a checkpoints file naming a seq beyond the copied log (or the reverse), which
    restore refused."""
    priv, pub = str(tmp_path / "audit-priv.pem"), str(tmp_path / "audit-pub.pem")
    r = inst.run(["audit", "keygen", "--private", priv, "--public", pub])
    assert r.returncode == 0, out(r)
    audit_env = {"AUDIT_LOG_PATH": inst.audit_log, "SECRET_KEY": bh.SECRET_VALUE, "AUDIT_SIGNING_KEY_PATH": priv,
                 "AUDIT_CHECKPOINT_RECORDS": "1", "RATE_LIMIT_PER_IP": "off"}
    srv = h.Server(inst.prod, extra_env=audit_env)
    srv.start()
    ckpt_path = inst.audit_log + ".checkpoints"
    stop = threading.Event()
    errors = []

    def load(name):
        body = {"features": h.valid_features(srv.manifest(name))}
        while not stop.is_set():
            try:
                resp = srv.predict(name, body)
                if resp.status_code != 200:
                    errors.append(resp.status_code)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

    ids = []
    threads = [threading.Thread(target=load, args=(n,)) for n in h.DEMO_MODELS[:2]]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        ck_before = len(bh.read_bytes(ckpt_path).splitlines())
        deadline = time.monotonic() + 35
        while len(ids) < 10 and time.monotonic() < deadline:
            r = inst.run(["backup", "full", "--json"], **audit_env)
            assert r.returncode == 0, out(r)
            ids.append(json.loads(r.stdout)["id"])
    finally:
        stop.set()
        for t in threads:
            t.join()
        rc, killed = srv.stop()
    assert rc == 0 and not killed, srv.log_tail()
    assert not errors, errors[:5]
    assert len(ids) >= 5, ids
    live_log, live_ckpt = bh.read_bytes(inst.audit_log), bh.read_bytes(ckpt_path)
    # the server kept writing and checkpointing all along (the race was there to lose)
    assert len(live_ckpt.splitlines()) - ck_before > 3 * len(ids), (len(live_ckpt.splitlines()), ck_before)
    refused = []
    for bid in ids:
        target = tmp_path / ("r-" + bid)
        r = restore(inst, bid, target, "--components", "audit", **audit_env)
        if r.returncode != 0:
            refused.append((bid, r.stdout[-300:] + r.stderr[-300:]))
            continue
        restored = os.path.join(str(target), "audit", os.path.basename(inst.audit_log))
        # the backup holds a prefix of what the server went on writing, the manifest's sizes
        # (restore then appended its own records to the restored copy)
        files = {f["path"]: f for f in inst.manifest(bid)["files"]}
        n_log = files["audit/" + os.path.basename(inst.audit_log)]["size"]
        n_ck = files["audit/" + os.path.basename(ckpt_path)]["size"]
        assert 0 < n_log and 0 < n_ck, bid
        assert live_log.startswith(bh.read_bytes(restored)[:n_log]), bid
        assert live_ckpt.startswith(bh.read_bytes(restored + ".checkpoints")[:n_ck]), bid
        v = inst.run(["audit", "verify", "--json"], **dict(audit_env, AUDIT_LOG_PATH=restored))
        assert v.returncode == 0, (bid, out(v))
    assert not refused, "%d of %d backups of a writing server did not restore: %s" % (
        len(refused), len(ids), refused[:2])


def test_audit_cut_refused_when_it_cannot_be_consistent(inst, tmp_path):
    """The audit cut needs the writer's lock: held by a stuck writer past the writer's own
    wait (5 s), the backup fails naming the audit log and publishes nothing. Checkpoints
    without their active log are refused too, rather than copied as an inconsistent pair."""
    with open(inst.audit_log + ".lock", "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        t0 = time.monotonic()
        r = inst.run(["backup", "full", "--json"])
        waited = time.monotonic() - t0
    assert r.returncode == 1, out(r)
    assert inst.audit_log in r.stderr and "lock" in r.stderr and "stayed held" in r.stderr, out(r)
    assert 4.5 < waited < 60, waited
    assert not os.path.exists(os.path.join(inst.backups, "latest")), out(r)
    # the lock free again: the same backup goes through
    b = inst.backup("full")
    assert "audit/" + os.path.basename(inst.audit_log) in {f["path"] for f in inst.manifest(b["id"])["files"]}
    with open(inst.audit_log + ".checkpoints", "w") as f:
        f.write("{}\n")
    os.rename(inst.audit_log, str(tmp_path / "moved-away.log"))
    r = inst.run(["backup", "full", "--json"], AUDIT_LOG_PATH=inst.audit_log)
    assert r.returncode == 1 and "the audit log %s does not exist" % inst.audit_log in r.stderr, out(r)
    assert inst.latest() == b["id"]
