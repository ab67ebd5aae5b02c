# SPDX-License-Identifier: Apache-2.0
"""Exit statuses and human-readable units of `aimedres backup`, `restore` and `dr-drill`.

One convention for all of them (docs/backup.md "Exit status", each command's --help):
0 success; 1 the operation ran and failed (a damaged backup, a failed check, a refused
restore); 2 a usage error or something named that does not exist (an unknown backup id, no
`latest` in an empty repository, a missing --env-file, restore without --yes off a terminal),
so a script can tell "no such backup" from "this backup is damaged". The message names what
was asked for.

`backup check` shows its limits as they were configured: BACKUP_MIN_FREE=1G (2^30 bytes) as
"1 GiB", BACKUP_MAX_AGE=1m as "1m"; its JSON numbers (bytes, seconds) are unchanged."""

import json
import os
import re

import backup_helpers as bh

UNKNOWN = "20990101T000000Z"  # a well-formed id no backup has


# one installation per module (demo copy, results, env file, key, a real audit log)
template, inst = bh.install_fixtures("backup-exit-template")
out = bh.out


def test_unknown_backup_is_2_damaged_is_1(inst, tmp_path):
    s = inst.backup("full")
    target = tmp_path / "t"
    # an id that does not exist: 2, named
    for args in (["backup", "verify", UNKNOWN], ["backup", "verify", UNKNOWN, "--json"],
                 ["restore", UNKNOWN, "--target", str(target), "--yes"]):
        r = inst.run(args)
        assert r.returncode == 2, (args, out(r))
        assert "no backup %s in %s" % (UNKNOWN, inst.backups) in r.stderr, (args, out(r))
    # not an id at all: 2, named
    for args in (["backup", "verify", "yesterday"], ["restore", "yesterday", "--yes"]):
        r = inst.run(args)
        assert r.returncode == 2 and "'yesterday' is not a backup id" in r.stderr, (args, out(r))
    assert not os.path.exists(target)
    # the real one verifies: 0
    r = inst.run(["backup", "verify", s["id"]])
    assert r.returncode == 0, out(r)

    # restore without --yes and without a terminal: 2 (stdin is /dev/null here), names the id
    r = inst.run(["restore", s["id"], "--target", str(target)])
    assert r.returncode == 2, out(r)
    assert "--yes" in r.stderr and s["id"] in r.stderr, out(r)
    assert not os.path.exists(target / "aimedres.db")

    # damaged: 1 for verify and for restore (refused), whether or not --yes was given
    victim = bh.largest_stored(inst.backup_dir(s["id"]))
    with open(victim, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0x01]))
    r = inst.run(["backup", "verify", s["id"]])
    assert r.returncode == 1, out(r)
    rep = json.loads(r.stdout)["backups"][0]
    assert rep["id"] == s["id"] and rep["ok"] is False and rep["bad"], out(r)
    r = inst.run(["backup", "verify", "--all"])
    assert r.returncode == 1, out(r)
    r = inst.run(["restore", s["id"], "--target", str(target), "--yes"])
    assert r.returncode == 1 and s["id"] in r.stderr and "refusing to restore" in r.stderr, out(r)
    # the missing confirmation is found before any data is read: still the usage error
    r = inst.run(["restore", s["id"], "--target", str(target)])
    assert r.returncode == 2 and "--yes" in r.stderr, out(r)
    assert not os.path.exists(target / "aimedres.db")


def test_damaged_latest_or_manifestless_backup_is_1(inst, tmp_path):
    full = inst.backup("full")
    inc = inst.backup("incremental")
    # a backup directory under its final name without its manifest is damage, not "unknown"
    os.remove(os.path.join(inst.backup_dir(inc["id"]), "manifest.json"))
    for args in (["backup", "verify", inc["id"]], ["restore", inc["id"], "--yes", "--target", str(tmp_path / "t")]):
        r = inst.run(args)
        assert r.returncode == 1, (args, out(r))
        assert "backup %s" % inc["id"] in r.stderr and "damaged" in r.stderr, (args, out(r))
    # and `latest` points at it: a dangling latest is damage too
    for args in (["backup", "verify"], ["restore", "latest", "--yes", "--target", str(tmp_path / "t")]):
        r = inst.run(args)
        assert r.returncode == 1 and "latest does not point at a complete backup" in r.stderr, (args, out(r))
    r = inst.run(["backup", "verify", full["id"]])
    assert r.returncode == 0, out(r)


def test_empty_repository_has_no_latest(inst, tmp_path):
    """An existing repository without backups: `latest` names nothing (2); a missing
    repository is an unmounted volume or a typo (1, 'mounted')."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, env in ((["backup", "verify", "--dest", str(empty)], {}),
                      (["restore", "latest", "--from", str(empty), "--yes", "--target", str(tmp_path / "t")], {}),
                      (["dr-drill", "--use-latest", "--work-dir", str(tmp_path)], {"BACKUP_PATH": str(empty)})):
        r = inst.run(args, **env)
        assert r.returncode == 2, (args, out(r))
        assert "%s has no latest backup" % empty in r.stderr, (args, out(r))
    nowhere = tmp_path / "nowhere"
    for args in (["backup", "verify", "--dest", str(nowhere)],
                 ["restore", "latest", "--from", str(nowhere), "--yes", "--target", str(tmp_path / "t")]):
        r = inst.run(args)
        assert r.returncode == 1 and "mounted" in r.stderr, (args, out(r))
    assert not os.path.exists(tmp_path / "t") and not os.path.exists(nowhere)


def test_missing_env_file_is_2(inst, tmp_path):
    missing = str(tmp_path / "no-such.env")
    for args in (["backup", "full"], ["backup", "verify"], ["backup", "list"], ["backup", "prune"],
                 ["backup", "check"], ["restore", "latest", "--yes"], ["dr-drill"]):
        r = inst.run(args + ["--env-file", missing])
        assert r.returncode == 2, (args, out(r))
        assert "--env-file %s: no such file" % missing in r.stderr, (args, out(r))
    assert not os.path.exists(inst.backups)


def test_help_documents_exit_status(inst):
    for args in (["backup", "--help"], ["restore", "--help"], ["dr-drill", "--help"]):
        r = inst.run(args)
        assert r.returncode == 0, out(r)
        text = " ".join(r.stdout.split())
        assert "Exit status: 0 success; 1 the operation ran and failed" in text, (args, out(r))
        assert "2 usage error or a named thing that does not exist (unknown backup id" in text, (args, out(r))


def test_check_shows_limits_as_configured(inst):
    inst.backup("full")
    r = inst.run(["backup", "check"], BACKUP_MIN_FREE="1G", BACKUP_MAX_AGE="1m")
    assert r.returncode == 0, out(r)
    rep = json.loads(r.stdout)
    disk, fresh = rep["checks"]["disk"], rep["checks"]["freshness"]
    assert disk["min_free_bytes"] == 1 << 30 and fresh["max_age_s"] == 60, rep  # numbers unchanged
    assert disk["message"].endswith(" free (min 1 GiB)"), disk
    assert re.fullmatch(r"[0-9]+(\.[0-9])? (B|KiB|MiB|GiB|TiB|PiB) free \(min 1 GiB\)", disk["message"]), disk
    # a backup seconds old, against a 1 minute limit
    assert re.fullmatch(r"latest backup %s is ([0-9]+ms|[0-9]+(\.[0-9])?s) old \(max 1m\)" % rep["latest"],
                        fresh["message"]), fresh
    r = inst.run(["backup", "check"], BACKUP_MIN_FREE="1000000G", BACKUP_MAX_AGE="90s")
    assert r.returncode == 1, out(r)
    rep = json.loads(r.stdout)
    assert rep["checks"]["disk"]["message"].endswith("(min 1000000 GiB)"), rep
    assert rep["checks"]["freshness"]["message"].endswith("(max 90s)"), rep
    r = inst.run(["backup", "check"], BACKUP_MIN_FREE="1536K", BACKUP_MAX_AGE="12h")
    rep = json.loads(r.stdout)
    assert rep["checks"]["disk"]["message"].endswith("(min 1536 KiB)"), rep
    assert rep["checks"]["freshness"]["message"].endswith("(max 12h)"), rep


def test_key_command_timeout_is_configurable(inst):
    """BACKUP_KEY_COMMAND_TIMEOUT bounds the key command (default 30 s): a command that
    does not answer within it is killed and the backup fails (1) naming the limit as it was
    written; a malformed value is refused (1) before anything runs, naming the variable."""
    import time
    key_hex = open(inst.key).read().strip()
    cmd = "sleep 30; echo %s" % key_hex
    t0 = time.monotonic()
    r = inst.run(["backup", "full"], BACKUP_ENCRYPTION_KEY_FILE="", BACKUP_KEY_COMMAND=cmd,
                 BACKUP_KEY_COMMAND_TIMEOUT="1s")
    took = time.monotonic() - t0
    assert r.returncode == 1, out(r)
    assert "BACKUP_KEY_COMMAND: no answer within 1s (BACKUP_KEY_COMMAND_TIMEOUT)" in r.stderr, out(r)
    assert took < 20, took  # killed at its 1 s limit, not after the command's 30 s
    left = os.listdir(inst.backups) if os.path.isdir(inst.backups) else []
    assert not [n for n in left if not n.endswith(".lock")], left
    # a command that answers in time under the same limit works
    r = inst.run(["backup", "full", "--json"], BACKUP_ENCRYPTION_KEY_FILE="",
                 BACKUP_KEY_COMMAND="echo %s" % key_hex, BACKUP_KEY_COMMAND_TIMEOUT="1s")
    assert r.returncode == 0, out(r)
    for bad in ("0", "soon", "2h"):
        r = inst.run(["backup", "full"], BACKUP_ENCRYPTION_KEY_FILE="", BACKUP_KEY_COMMAND=cmd,
                     BACKUP_KEY_COMMAND_TIMEOUT=bad)
        assert r.returncode == 1, (bad, out(r))  # an unusable setting (docs/backup.md "Exit status")
        assert "BACKUP_KEY_COMMAND_TIMEOUT" in r.stderr, (bad, out(r))
