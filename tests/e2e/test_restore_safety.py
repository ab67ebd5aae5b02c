# SPDX-License-Identifier: Apache-2.0
"""Restore safety found by the second outside review of issue 6:

- a second in-place restore of the same backup keeps what the first one set aside: the
  replaced audit log (tamper-evident evidence) goes to a directory of its own, as the
  database and the models already did (`-1` suffix);
- a restore killed with SIGKILL leaves decrypted staging directories behind; the next
  restore into the same place removes them (they belong to a process that no longer exists);
- a restore target inside BACKUP_PATH (or BACKUP_OFFSITE_DIR) is refused: decrypted
  patient data and secrets must not sit in the backup storage;
- an in-place restore holds the repository's write lock, so a backup can not run meanwhile
  (and become `latest` with the half-restored state)."""

import fcntl
import json
import os
import subprocess
import time

import pytest

import aimedres_harness as h
import backup_helpers as bh


# one installation per module (demo copy, results, env file, key, a real audit log)
template, inst = bh.install_fixtures("restore-safety-template")
out = bh.out


def grep_tree(root, needle):
    """Paths of the files under root that contain needle."""
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                if needle in f.read():
                    found.append(p)
    return found


def test_second_restore_keeps_the_first_set_aside_audit_log(inst):
    s = inst.backup("full")
    with open(inst.audit_log, "ab") as f:
        f.write(b"ORIGINAL_LIVE_MARKER\n")
    for _ in range(2):
        r = inst.run(["restore", s["id"], "--yes", "--env-file", inst.env_file, "--json"])
        assert r.returncode == 0, out(r)
    kept = grep_tree(inst.audit_dir, b"ORIGINAL_LIVE_MARKER")
    assert kept, "the live audit log set aside by the first restore was overwritten by the second"
    asides = sorted(d for d in os.listdir(inst.audit_dir) if d.startswith(".pre-restore-"))
    assert asides == [".pre-restore-%s" % s["id"], ".pre-restore-%s-1" % s["id"]], asides


def test_killed_restore_leaves_nothing_decrypted_after_the_next(inst):
    big = os.path.join(inst.results, "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(64 << 20))
    s = inst.backup("full")
    p = subprocess.Popen([h.require_binary(), "restore", s["id"], "--yes", "--env-file", inst.env_file],
                         env=h.base_env(inst.env(BACKUP_THREADS="1")), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    pid = p.pid
    stage = os.path.join(inst.data, ".results.restore-%d" % pid)
    deadline = time.monotonic() + 30
    while not os.path.exists(stage) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if p.poll() is not None:
        pytest.fail("the restore finished before it could be killed (rc %s)" % p.returncode)
    p.kill()
    p.wait()
    leftovers = [n for n in os.listdir(inst.data) if ".restore-%d" % pid in n] + \
        [n for n in os.listdir(inst.prod) if ".restore-%d" % pid in n]
    assert leftovers, "the kill came too late to leave anything (test setup)"
    r = inst.run(["restore", s["id"], "--yes", "--env-file", inst.env_file, "--json"])
    assert r.returncode == 0, out(r)
    rep = json.loads(r.stdout)
    for root in (inst.prod, inst.data, inst.audit_dir):
        left = [n for n in os.listdir(root) if ".restore-%d" % pid in n]
        assert not left, (root, left)
    assert rep.get("removed_stale_stages"), rep


def test_target_inside_the_repository_is_refused(inst):
    s = inst.backup("full")
    for target in (os.path.join(inst.backups, "plain"), inst.backups):
        r = inst.run(["restore", s["id"], "--target", target, "--yes"])
        assert r.returncode != 0, out(r)
        assert "inside BACKUP_PATH" in r.stderr, out(r)
        assert not os.path.exists(os.path.join(inst.backups, "plain")), "something was written"
        assert not grep_tree(inst.backups, bh.SECRET_VALUE.encode()), "plaintext secret in the repository"
    offsite = os.path.join(inst.root, "offsite")
    os.makedirs(offsite)
    r = inst.run(["restore", s["id"], "--target", os.path.join(offsite, "x"), "--yes"],
                 BACKUP_OFFSITE_DIR=offsite)
    assert r.returncode != 0 and "inside BACKUP_OFFSITE_DIR" in r.stderr, out(r)


def test_in_place_restore_holds_the_repository_write_lock(inst):
    s = inst.backup("full")
    # a backup (or prune) holding the write lock: the in-place restore waits, then gives up
    with open(os.path.join(inst.backups, ".write.lock"), "a+") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        t0 = time.monotonic()
        r = inst.run(["restore", s["id"], "--yes", "--env-file", inst.env_file])
        assert r.returncode != 0 and "busy" in r.stderr, out(r)
        # a restore into another target does not need it
        r = inst.run(["restore", s["id"], "--target", os.path.join(inst.root, "elsewhere"), "--yes"])
        assert r.returncode == 0, out(r)
    assert time.monotonic() - t0 < 120
    # and while an in-place restore runs, a backup does not start
    with open(os.path.join(inst.results, "big.bin"), "wb") as f:
        f.write(os.urandom(64 << 20))
    s2 = inst.backup("full")
    p = subprocess.Popen([h.require_binary(), "restore", s2["id"], "--yes", "--env-file", inst.env_file],
                         env=h.base_env(inst.env(BACKUP_THREADS="1")), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    lock = os.path.join(inst.backups, ".write.lock")
    deadline = time.monotonic() + 30
    held = False
    while p.poll() is None and time.monotonic() < deadline and not held:
        with open(lock, "a+") as lk:
            try:
                fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lk, fcntl.LOCK_UN)
            except BlockingIOError:
                held = True
        time.sleep(0.002)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert held, "the in-place restore never held the repository's write lock"
