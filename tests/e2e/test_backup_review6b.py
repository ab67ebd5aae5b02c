# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of the fixes for the sixth review of the backups (issue 6):

- a damaged file in an old backup that an incremental references is stored afresh from the
  live file, named in the summary, and the new backup verifies (finding 3);
- the systemd units let backup/check/prune write in the offsite directory, and the reader
  locks work on a read-only (WORM) repository: a read-only bind mount (finding 4);
- a missing BACKUP_OFFSITE_DIR is reported as such by check, prune and backup (finding 6);
- dr-drill checks --report's directory before any work (finding 7);
- `backup check` with an unusable setting still prints its JSON report (finding 8);
- the write lock's busy message names backup, prune and in-place restore (finding 9b);
- a relative BACKUP_PATH or BACKUP_OFFSITE_DIR is refused (finding 10)."""

import fcntl
import glob
import json
import os
import re
import shutil
import subprocess

import pytest

import aimedres_harness as h
import backup_helpers as bh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = os.path.join(ROOT, "deploy", "backup", "systemd")


# one installation per module (demo copy, results, env file, key, a real audit log)
template, inst = bh.install_fixtures("backup-review6b")
out = bh.out


def flip_first_chunk(path):
    """Damages chunk 0 of a stored stream (32-byte header, 5-byte chunk header, ciphertext)."""
    with open(path, "r+b") as f:
        f.seek(40)
        b = f.read(1)
        f.seek(40)
        f.write(bytes([b[0] ^ 0x01]))


# --------------------------------------------------------------------------- finding 3


def test_damaged_holder_file_is_stored_afresh(inst):
    full = inst.backup("full")
    m = inst.manifest(full["id"])
    victim = next(f for f in m["files"] if f["path"].startswith("baseline/"))
    flip_first_chunk(os.path.join(inst.backup_dir(full["id"]), victim["stored"]))
    r = inst.run(["backup", "incremental", "--env-file", inst.env_file, "--json"])
    assert r.returncode == 0, out(r)
    s = json.loads(r.stdout)
    assert s["ok"] and s["type"] == "incremental" and s["parent"] == full["id"], s
    (d,) = s["damaged_references"]
    assert d["path"] == victim["path"] and d["holder"] == full["id"] and d["stored"] == victim["stored"], d
    assert "failed authentication" in d["error"], d
    note = [n for n in s["notes"] if victim["path"] in n and full["id"] in n]
    assert note and "stored afresh" in note[0] and "backup verify" in note[0], s["notes"]
    # the new backup holds the file itself, with the live file's sha256 (what was referenced)
    entry = next(f for f in inst.manifest(s["id"])["files"] if f["path"] == victim["path"])
    assert entry["holder"] == s["id"] and entry["sha256"] == victim["sha256"], entry
    # other unchanged files are still referenced
    assert s["referenced_files"] > 0
    r = inst.run(["backup", "verify", s["id"], "--json"])
    assert r.returncode == 0, out(r)
    # the damaged full still fails verify, naming the file
    r = inst.run(["backup", "verify", full["id"], "--json"])
    assert r.returncode == 1 and victim["path"] in r.stdout, out(r)
    # the next incremental references the fresh copy and has nothing to repair
    s2 = inst.backup("incremental")
    assert "damaged_references" not in s2, s2
    entry = next(f for f in inst.manifest(s2["id"])["files"] if f["path"] == victim["path"])
    assert entry["holder"] == s["id"], entry
    t = os.path.join(inst.root, "restored")
    r = inst.run(["restore", "latest", "--target", t, "--yes", "--json"])
    assert r.returncode == 0, out(r)
    assert bh.tree_digest(os.path.join(t, "data", "baseline")) == bh.tree_digest(
        os.path.join(inst.data, "baseline"))


# --------------------------------------------------------------------------- finding 4


def _unit(name):
    with open(os.path.join(UNITS, name)) as f:
        return f.read()


@pytest.mark.parametrize("name", ["aimedres-backup@.service", "aimedres-backup-prune.service",
                                  "aimedres-backup-check.service"])
def test_units_make_the_offsite_directory_writable(name):
    text = _unit(name)
    lines = [l.strip() for l in text.splitlines()]
    rw = [l for l in lines if l.startswith("ReadWritePaths=")]
    assert any("-/mnt/offsite/aimedres" in l.split("=", 1)[1].split() for l in rw), rw
    mounts = [l for l in lines if l.startswith("RequiresMountsFor=")]
    assert any("/mnt/offsite/aimedres" in l.split("=", 1)[1].split() for l in mounts), mounts
    assert "BACKUP_OFFSITE_DIR" in text  # the comment telling the operator to adapt it
    # every aimedres command opens LOG_FILE (review7: check and prune failed without it)
    assert any("/var/log/aimedres" in l.split("=", 1)[1].replace("-/", "/").split() for l in rw), rw
    # docs/backup.md uses the same mount point
    with open(os.path.join(ROOT, "docs", "backup.md")) as f:
        assert "/mnt/offsite/aimedres" in f.read()


def test_units_verify_with_systemd_analyze(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze is not installed")
    for p in glob.glob(os.path.join(UNITS, "*")):
        with open(p) as f:
            text = f.read().replace("/usr/local/bin/aimedres", h.require_binary())
        with open(tmp_path / os.path.basename(p), "w") as f:
            f.write(text)
    units = [str(tmp_path / n) for n in ("aimedres-backup-check.service", "aimedres-backup-prune.service",
                                          "aimedres-dr-drill.service", "aimedres-backup-verify.service")]
    units += sorted(str(tmp_path / n) for n in os.listdir(tmp_path) if n.endswith(".timer"))
    shutil.copy(tmp_path / "aimedres-backup@.service", tmp_path / "aimedres-backup@incremental.service")
    units.append(str(tmp_path / "aimedres-backup@incremental.service"))
    r = subprocess.run([tool, "verify"] + units, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and ("Failed to initialize" in r.stderr or "No such file or directory" in r.stderr
                              and "/run/systemd" in r.stderr):
        pytest.skip("systemd-analyze cannot run here: %s" % r.stderr.strip()[:200])
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), out(r)
    # hardened like the server's unit: systemd's own exposure score stays "OK" (<= 4.0)
    for unit in units:
        if not unit.endswith(".service"):
            continue
        r = subprocess.run([tool, "security", "--offline=true", unit], capture_output=True, text=True,
                           timeout=60)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
        assert m and float(m.group(1)) <= 4.0, (unit, (r.stdout + r.stderr)[-300:])


class ReadOnlyBind:
    """A read-only bind mount of src at dst (root only; skips the test when not permitted)."""

    def __init__(self, src, dst):
        self.src, self.dst = str(src), str(dst)

    def __enter__(self):
        os.makedirs(self.dst, exist_ok=True)
        r = subprocess.run(["mount", "--bind", self.src, self.dst], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip("mount --bind is not permitted here (needs root): %s" % r.stderr.strip())
        r = subprocess.run(["mount", "-o", "remount,bind,ro", self.dst], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", self.dst])
            pytest.skip("remount read-only is not permitted here: %s" % r.stderr.strip())
        return self.dst

    def __exit__(self, *exc):
        subprocess.run(["umount", self.dst], check=True)


@pytest.mark.parametrize("lock_file", ["absent", "present"])
def test_read_locks_on_a_read_only_repository(inst, tmp_path, lock_file):
    s = inst.backup("full")
    lock = os.path.join(inst.backups, ".read.lock")
    if lock_file == "absent" and os.path.exists(lock):
        os.remove(lock)
    if lock_file == "present":
        open(lock, "a").close()
    ro = tmp_path / "worm"
    with ReadOnlyBind(inst.backups, ro) as d:
        with pytest.raises(OSError):
            open(os.path.join(d, "probe"), "w")  # really read-only
        r = inst.run(["backup", "verify", "--dest", d, "--json"])
        assert r.returncode == 0, out(r)
        rep = json.loads(r.stdout)
        assert rep["ok"] and rep["backups"][0]["id"] == s["id"], rep
        assert "read-only" in r.stderr and "read-only" in rep["notes"][0], out(r)
        r = inst.run(["backup", "list", "--dest", d, "--json"])
        assert r.returncode == 0 and s["id"] in r.stdout, out(r)
        # the WORM volume as the offsite copy: check reads it without its lock
        r = inst.run(["backup", "check"], BACKUP_OFFSITE_DIR=d)
        assert r.returncode == 0, out(r)
        rep = json.loads(r.stdout)
        assert rep["ok"] and rep["checks"]["offsite"]["ok"], rep
        assert any("read-only" in n for n in rep["notes"]), rep
        # and as the repository checked
        r = inst.run(["backup", "check", "--dest", d])
        assert r.returncode == 0, out(r)
        t = tmp_path / "restored"
        r = inst.run(["restore", "latest", "--from", d, "--target", str(t), "--yes", "--json"])
        assert r.returncode == 0, out(r)
        assert bh.tree_digest(os.path.join(str(t), "models")) == bh.tree_digest(inst.models)
        # writers still fail there, with the reason
        r = inst.run(["backup", "prune", "--dest", d, "--json"])
        assert r.returncode == 1 and "Read-only file system" in r.stderr, out(r)


# --------------------------------------------------------------------------- finding 6


def test_missing_offsite_directory_is_named(inst, tmp_path):
    s = inst.backup("full")
    missing = str(tmp_path / "not-mounted")
    r = inst.run(["backup", "check"], BACKUP_OFFSITE_DIR=missing)
    assert r.returncode == 1, out(r)
    off = json.loads(r.stdout)["checks"]["offsite"]
    assert off["ok"] is False and off["exists"] is False, off
    assert "does not exist" in off["message"] and "mounted" in off["message"] and missing in off["message"], off
    assert "no offsite copy" not in off["message"], off
    r = inst.run(["backup", "prune", "--json"], BACKUP_OFFSITE_DIR=missing)
    assert r.returncode == 1, out(r)
    assert "BACKUP_OFFSITE_DIR" in r.stderr and "mounted" in r.stderr and missing in r.stderr, out(r)
    assert "created by the first" not in r.stderr, out(r)
    repos = json.loads(r.stdout)["repositories"]
    assert repos[0]["kept"] == [s["id"]] and repos[1]["ok"] is False, repos
    r = inst.run(["backup", "full"], BACKUP_OFFSITE_DIR=missing)
    assert r.returncode == 1 and "offsite copy failed" in r.stderr and "does not exist" in r.stderr, out(r)
    assert "created by the first" not in r.stderr, out(r)
    assert not os.path.exists(missing)
    # BACKUP_PATH's own message is unchanged: backup does create it
    r = inst.run(["backup", "list", "--dest", str(tmp_path / "nowhere")])
    assert r.returncode == 1 and "created by the first" in r.stderr, out(r)


# --------------------------------------------------------------------------- finding 7


def test_drill_report_directory_checked_first(inst, tmp_path):
    for report, why in ((tmp_path / "nodir" / "x.json", "does not exist"),
                        (tmp_path, "names a directory")):
        r = inst.run(["dr-drill", "--work-dir", str(tmp_path), "--report", str(report)])
        assert r.returncode == 2 and "--report" in r.stderr and why in r.stderr, out(r)
    assert not os.path.exists(inst.backups)  # nothing was backed up
    assert [p for p in os.listdir(tmp_path) if p.startswith("aimedres-drill-")] == []


# --------------------------------------------------------------------------- finding 8


def test_check_with_a_bad_setting_prints_its_report(inst):
    r = inst.run(["backup", "check"], BACKUP_MAX_AGE="0")
    assert r.returncode == 1, out(r)
    rep = json.loads(r.stdout)
    assert rep["ok"] is False and rep["checks"]["configuration"]["ok"] is False, rep
    assert "BACKUP_MAX_AGE" in rep["checks"]["configuration"]["message"], rep
    assert "BACKUP_MAX_AGE" in r.stderr, out(r)


# --------------------------------------------------------------------------- finding 9b


def test_busy_write_lock_names_backup_prune_and_restore(inst):
    os.makedirs(inst.backups, exist_ok=True)
    with open(os.path.join(inst.backups, ".write.lock"), "a") as wl:
        fcntl.flock(wl, fcntl.LOCK_EX)
        r = inst.run(["backup", "full"])
        assert r.returncode == 1, out(r)
        assert "is busy: a backup, prune or in-place restore is running" in r.stderr, out(r)
        r = inst.run(["backup", "prune"])
        assert r.returncode == 1 and "a backup, prune or in-place restore" in r.stderr, out(r)


# --------------------------------------------------------------------------- finding 10


def test_relative_repository_paths_are_refused(inst, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for var in ("BACKUP_PATH", "BACKUP_OFFSITE_DIR"):
        for args in (["backup", "full"], ["backup", "list"], ["backup", "prune"], ["restore", "latest", "--yes"]):
            r = subprocess.run([h.require_binary()] + args, env=h.base_env(inst.env(**{var: "backups/rel"})),
                               capture_output=True, text=True, timeout=60, cwd=str(cwd),
                               stdin=subprocess.DEVNULL)
            assert r.returncode == 1, (var, args, out(r))
            assert "%s=backups/rel must be an absolute path" % var in r.stderr, (var, args, out(r))
        r = subprocess.run([h.require_binary(), "backup", "check"], env=h.base_env(inst.env(**{var: "rel"})),
                           capture_output=True, text=True, timeout=60, cwd=str(cwd), stdin=subprocess.DEVNULL)
        assert r.returncode == 1 and "must be an absolute path" in json.loads(r.stdout)["checks"][
            "configuration"]["message"], out(r)
    assert os.listdir(cwd) == []  # nothing created relative to the current directory
