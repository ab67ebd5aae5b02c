# SPDX-License-Identifier: Apache-2.0
"""An interrupted restore is never a silent mix (third outside review of issue 6, review29):

- SIGTERM in the middle of an in-place restore's swap (the renames that put the backup in
  place) no longer removes the staged areas not yet renamed in: signals are held from the
  first rename to the last, so the result is all of the backup (or, before the swap, all of
  what was there), and the env file is never lost;
- kill -9 in the middle of the swap leaves the fsynced restore journal beside the database:
  `aimedres serve` refuses to start, naming it and the command that finishes it,
  `backup check` fails, and the next restore finishes the swap and removes the journal;
- `backup check` freshness fails when latest's manifest does not authenticate, and the
  backup age is taken from the id (a forged manifest timestamp moves nothing);
- a restore into a new --target refused while decrypting leaves no directory behind (it used
  to keep <target>/aimedres.db.lock); a `.latest.<pid>` of a killed backup is removed by the
  next backup.

The swap is slowed with strace's syscall fault injection (every rename returns 0.3 s late),
so a signal lands between two renames of it; the tests skip where strace cannot trace."""

import json
import os
import signal
import subprocess
import time

import pytest

import aimedres_harness as h
import backup_helpers as bh

template, inst = bh.install_fixtures("restore-interrupted-template")
out = bh.out

JOURNAL_SUFFIX = ".restore-journal"
UNDER_PTRACE = h.UNDER_PTRACE
NEW_ENV_LINE = "MAX_WORKERS=7\n"


def strace_usable():
    try:
        r = subprocess.run(["strace", "-f", "-o", "/dev/null", "-e", "inject=rename:delay_exit=1", "true"],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


needs_strace = pytest.mark.skipif(not strace_usable(),
                                  reason="strace (with syscall injection) is missing or may not trace here")


def state(inst):
    """What a restore replaces, as comparable values (None: missing)."""
    env = bh.read_bytes(inst.env_file) if os.path.exists(inst.env_file) else None
    return {
        "db": bh.db_content(inst.db) if os.path.exists(inst.db) else None,
        "models": bh.tree_digest(inst.models),
        "baseline": bh.tree_digest(os.path.join(inst.data, "baseline")),
        "results": bh.tree_digest(inst.results),
        "env": env,
    }


def change_everything(inst):
    """Makes every area differ from the backup just taken."""
    bh.insert_predictions(inst.db, 25, start=900000)
    with open(os.path.join(inst.results, "after-backup.txt"), "w") as f:
        f.write("written after the backup\n")
    with open(inst.env_file, "a") as f:
        f.write(NEW_ENV_LINE)
    base = os.path.join(inst.data, "baseline")
    name = sorted(os.listdir(base))[0]
    p = os.path.join(base, name)
    if os.path.isdir(p):
        p = os.path.join(p, sorted(os.listdir(p))[0])
    with open(p, "ab") as f:
        f.write(b"\n")
    some_model = os.path.join(inst.models, h.DEMO_MODELS[0])
    with open(os.path.join(some_model, "note-after-backup.txt"), "w") as f:
        f.write("x\n")


def asides(inst, bid):
    """Paths the restore of bid set aside so far."""
    found = []
    for root in (inst.prod, inst.data, inst.root, inst.audit_dir):
        if os.path.isdir(root):
            found += [os.path.join(root, n) for n in os.listdir(root) if ".pre-restore-" + bid in n]
    return found


def traced_child(strace_proc, timeout=20):
    """The pid of the aimedres process strace started (strace first forks short-lived probes
    of its own: the child whose executable is aimedres)."""
    binary = os.path.realpath(h.require_binary())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/task/%d/children" % (strace_proc.pid, strace_proc.pid)) as f:
                kids = f.read().split()
        except OSError:
            kids = []
        for k in kids:
            try:
                if os.path.realpath("/proc/%s/exe" % k) == binary:
                    return int(k)
            except OSError:
                pass
        time.sleep(0.002)
    raise AssertionError("strace did not start aimedres")


def restore_with_slow_renames(inst, bid, sig, target=None):
    """Runs `restore bid --yes` (in place, or into target) with every rename 0.3 s late; as
    soon as the swap has begun (a path set aside; into a target, the database renamed in)
    sends sig to aimedres. Returns (rc, stdout, stderr)."""
    where = ["--target", target] if target else ["--env-file", inst.env_file]
    cmd = ["strace", "-f", "-o", "/dev/null", "-e", "trace=rename,renameat,renameat2",
           "-e", "inject=rename,renameat,renameat2:delay_exit=300000",
           h.require_binary(), "restore", bid, "--yes", "--json"] + where
    p = subprocess.Popen(cmd, env=h.base_env(inst.env(BACKUP_THREADS="1", **UNDER_PTRACE)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    begun = (lambda: os.path.exists(os.path.join(target, "aimedres.db"))) if target else \
        (lambda: asides(inst, bid))
    try:
        child = traced_child(p)
        deadline = time.monotonic() + h.scaled(120)
        while not begun() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert p.poll() is None, "the restore ended before its swap could be interrupted\n" + p.stderr.read()
        assert begun(), "the swap did not begin in time"
        os.kill(child, sig)
        so, se = p.communicate(timeout=h.scaled(120))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, so, se


@needs_strace
def test_sigterm_during_the_swap_finishes_it(inst):
    s = inst.backup("full")
    backed_up = state(inst)
    change_everything(inst)
    before = state(inst)
    assert all(before[k] != backed_up[k] for k in backed_up), "test setup: every area must differ"
    rc, so, se = restore_with_slow_renames(inst, s["id"], signal.SIGTERM)
    now = state(inst)
    mixed = {k: ("backup" if now[k] == backed_up[k] else "old" if now[k] == before[k] else "other") for k in now}
    assert set(mixed.values()) in ({"backup"}, {"old"}), "a mix after SIGTERM in the swap: %s\n%s" % (mixed, se)
    # an in-place restore finishes its swap and its RESTORE record, and says so
    assert set(mixed.values()) == {"backup"}, mixed
    assert rc == 0, "rc %d\n%s" % (rc, se)
    assert "swapped into place" in se and "removed the data this run had written" not in se, se
    assert json.loads(so)["ok"] is True
    assert not os.path.exists(inst.db + JOURNAL_SUFFIX)
    restore_records = [r for f in os.listdir(inst.audit_dir) if f.startswith("audit.log")
                       and os.path.isfile(os.path.join(inst.audit_dir, f))
                       for r in bh.records(bh.read_bytes(os.path.join(inst.audit_dir, f)))
                       if "RESTORE" in json.dumps(r)]
    assert restore_records, "no RESTORE audit record"


@needs_strace
def test_sigterm_during_the_swap_into_a_target_ends_after_it_saying_so(inst):
    s = inst.backup("full")
    target = os.path.join(inst.root, "restored")
    rc, _, se = restore_with_slow_renames(inst, s["id"], signal.SIGTERM, target=target)
    assert rc == 143, (rc, se)
    assert "backup %s is restored into %s" % (s["id"], target) in se, se
    assert "removed the data this run had written" not in se, se
    assert bh.tree_digest(os.path.join(target, "models")) == bh.tree_digest(inst.models)
    assert bh.tree_digest(os.path.join(target, "data", "results")) == bh.tree_digest(inst.results)
    with open(os.path.join(target, "config", "aimedres.env"), "rb") as f:
        assert f.read() == bh.read_bytes(inst.env_file)
    assert bh.db_content(os.path.join(target, "aimedres.db")) == bh.db_content(inst.db)
    assert not [n for n in os.listdir(target) if "restore-" in n], os.listdir(target)


def serve_result(inst, timeout=20):
    """Starts `serve` on the installation: (exit code or None if it kept running, output)."""
    port = h.free_port()
    env = h.demo_env(inst.prod)
    env.update({"AUDIT_LOG_PATH": inst.audit_log, "SECRET_KEY": bh.SECRET_VALUE, "LOG_LEVEL": "WARNING"})
    p = subprocess.Popen([h.require_binary(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                         env=h.base_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True)
    try:
        o, _ = p.communicate(timeout=h.scaled(timeout))
        return p.returncode, o
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        o, _ = p.communicate(timeout=30)
        return None, o


@needs_strace
def test_kill9_during_the_swap_then_serve_refuses_and_the_next_restore_finishes(inst):
    s = inst.backup("full")
    bid = s["id"]
    backed_up = state(inst)
    change_everything(inst)
    rc, _, se = restore_with_slow_renames(inst, bid, signal.SIGKILL)
    assert rc in (-9, 137), (rc, se)
    journal = inst.db + JOURNAL_SUFFIX
    code, text = serve_result(inst)
    assert code not in (None, 0), "serve started on a half-restored installation:\n" + text
    assert journal in text and ("aimedres restore %s" % bid) in text, text
    assert os.path.exists(journal), "kill -9 in the swap left no journal: %s" % os.listdir(inst.prod)
    with open(journal) as f:
        j = json.load(f)
    assert j["id"] == bid
    assert {a["name"] for a in j["areas"]} >= {"db", "models", "baseline", "config", "results", "audit"}
    # the env file is never lost: in place, or at the aside name the journal gives
    assert os.path.exists(inst.env_file) or os.path.exists(j["env_file_aside"]), j

    r = inst.run(["backup", "check", "--json"], BACKUP_MAX_AGE="1d")
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and rep["checks"]["restore"]["ok"] is False, out(r)
    assert journal in rep["checks"]["restore"]["message"]

    r = inst.run(["restore", bid, "--yes", "--env-file", inst.env_file, "--json"])
    assert r.returncode == 0, out(r)
    rep = json.loads(r.stdout)
    assert rep["rolled_forward"]["id"] == bid, rep
    assert not os.path.exists(journal)
    assert state(inst) == backed_up
    # nothing decrypted left behind by the killed run
    for root in (inst.prod, inst.data, inst.audit_dir, inst.root):
        assert not [n for n in os.listdir(root) if ".restore-" in n and not n.endswith(JOURNAL_SUFFIX)], \
            os.listdir(root)
    r = inst.run(["backup", "check", "--json"], BACKUP_MAX_AGE="1d")
    assert json.loads(r.stdout)["checks"]["restore"]["ok"] is True, out(r)
    code, text = serve_result(inst, timeout=8)
    assert code is None, "serve did not start after the restore was finished:\n" + text


@needs_strace
def test_kill9_at_every_rename_keeps_the_env_file_and_the_printed_command_finishes(inst):
    """review34: killed between setting the env file aside and renaming the backup's copy in,
    the restore left no env file, so the command it printed (`restore <id> --yes --env-file
    E`) could not run. Killed at each rename of the swap in turn (strace's syscall injection:
    SIGKILL at the Nth rename), the env file is always in place and that command finishes."""
    s = inst.backup("full")
    bid = s["id"]
    backed_up = state(inst)
    journal = inst.db + JOURNAL_SUFFIX
    killed = 0
    for n in range(1, 40):
        change_everything(inst)
        cmd = ["strace", "-f", "-o", "/dev/null", "-e", "trace=rename,renameat,renameat2",
               "-e", "inject=rename,renameat,renameat2:signal=SIGKILL:when=%d" % n,
               h.require_binary(), "restore", bid, "--yes", "--json", "--env-file", inst.env_file]
        r = subprocess.run(cmd, env=h.base_env(inst.env(BACKUP_THREADS="1", **UNDER_PTRACE)),
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=h.scaled(120))
        if r.returncode == 0:
            break  # fewer than n renames: every kill point is covered
        killed += 1
        assert os.path.exists(inst.env_file), "kill at rename %d left no env file: %s" % (n, out(r))
        r = inst.run(["restore", bid, "--yes", "--env-file", inst.env_file, "--json"])
        assert r.returncode == 0, "rename %d: %s" % (n, out(r))
        assert state(inst) == backed_up, n
        assert not os.path.exists(journal), n
    assert state(inst) == backed_up
    assert killed >= 6, "the swap made fewer renames than areas: %d" % killed


def test_serve_and_check_refuse_while_a_journal_exists(inst):
    """The journal alone (as a power cut would leave it) is enough to stop `serve`."""
    s = inst.backup("full")
    journal = inst.db + JOURNAL_SUFFIX
    with open(journal, "w") as f:
        json.dump({"format": 1, "id": s["id"], "pid": 999999999, "target": None, "areas": [],
                   "env_file_aside": inst.env_file + ".pre-restore-" + s["id"]}, f)
    code, text = serve_result(inst)
    assert code not in (None, 0) and journal in text and "--yes" in text, text
    assert inst.env_file + ".pre-restore-" + s["id"] in text
    # a backup would capture the mix and make it latest: refused, latest unchanged
    r = inst.run(["backup", "full"])
    assert r.returncode == 1 and journal in r.stderr, out(r)
    assert inst.latest() == s["id"]
    r = inst.run(["backup", "check", "--json"])
    assert r.returncode == 1 and json.loads(r.stdout)["checks"]["restore"]["ok"] is False, out(r)
    # a restore with nothing left to rename just removes it, then restores
    r = inst.run(["restore", s["id"], "--yes", "--env-file", inst.env_file, "--json"])
    assert r.returncode == 0, out(r)
    assert json.loads(r.stdout)["rolled_forward"]["finished"] == []
    assert not os.path.exists(journal)


def test_damaged_journal_is_not_acted_on(inst):
    """A journal whose staging path is not where restore stages renames nothing into place."""
    s = inst.backup("full")
    journal = inst.db + JOURNAL_SUFFIX
    victim = os.path.join(inst.root, "elsewhere")
    os.makedirs(victim)
    with open(journal, "w") as f:
        json.dump({"format": 1, "id": s["id"], "pid": 999999999, "target": None, "areas": [
            {"name": "models", "kind": "dir", "dest": inst.models, "stage": victim, "aside": None}]}, f)
    r = inst.run(["restore", s["id"], "--yes", "--env-file", inst.env_file])
    assert r.returncode == 1 and "damaged" in r.stderr and journal in r.stderr, out(r)
    assert os.path.isdir(victim) and os.path.exists(journal)
    # serve and check say it is damaged too, and do not send the operator to a restore that
    # refuses it (review36: they printed a literal "<id>" and `aimedres restore <id> --yes`)
    for content in ('{"id": "x"}', "not json at all"):
        with open(journal, "w") as f:
            f.write(content)
        code, text = serve_result(inst)
        assert code not in (None, 0) and "damaged" in text and journal in text, text
        assert "<id>" not in text and "--yes" not in text, text
        r = inst.run(["backup", "check", "--json"])
        msg = json.loads(r.stdout)["checks"]["restore"]["message"]
        assert r.returncode == 1 and "damaged" in msg and "<id>" not in msg, out(r)


def test_check_freshness_fails_when_latest_does_not_authenticate(inst):
    s = inst.backup("full")
    mpath = os.path.join(inst.backup_dir(s["id"]), "manifest.json")
    r = inst.run(["backup", "check", "--json"], BACKUP_MAX_AGE="1d")
    assert json.loads(r.stdout)["checks"]["freshness"]["ok"] is True, out(r)
    with open(mpath) as f:
        m = json.load(f)
    key = "timestamp_ms" if "timestamp_ms" in m else "timestamp"
    assert key in m, sorted(m)
    # a forged time one hour in the future: the manifest no longer authenticates
    if key == "timestamp_ms":
        m[key] = m[key] + 3600 * 1000
    else:
        m[key] = "2099-01-01T00:00:00.000Z"
    os.chmod(mpath, 0o600)
    with open(mpath, "w") as f:
        json.dump(m, f)
    r = inst.run(["backup", "check", "--json"], BACKUP_MAX_AGE="1d")
    rep = json.loads(r.stdout)
    fresh = rep["checks"]["freshness"]
    assert r.returncode == 1 and fresh["ok"] is False, out(r)
    assert "authenticate" in fresh["message"], fresh


def test_refused_restore_into_a_new_target_leaves_nothing(inst):
    s = inst.backup("full")
    victim = bh.largest_stored(inst.backup_dir(s["id"]))
    os.chmod(victim, 0o600)
    with open(victim, "r+b") as f:
        f.seek(os.path.getsize(victim) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 1]))
    parent = os.path.join(inst.root, "restores")
    os.makedirs(parent)
    target = os.path.join(parent, "new", "inst")
    r = inst.run(["restore", s["id"], "--target", target, "--yes"])
    assert r.returncode == 1, out(r)
    assert os.listdir(parent) == [], "a refused restore left %s" % [
        os.path.join(d, n) for d, _, ns in os.walk(parent) for n in ns] or os.listdir(parent)
    # an existing, empty target stays empty (no lock file)
    os.makedirs(target)
    r = inst.run(["restore", s["id"], "--target", target, "--yes"])
    assert r.returncode == 1, out(r)
    assert os.listdir(target) == [], os.listdir(target)


def test_next_backup_removes_a_dead_backups_latest_symlink(inst):
    inst.backup("full")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(inst.backups, ".latest.%d" % dead.pid)
    live = os.path.join(inst.backups, ".latest.%d" % os.getpid())
    os.symlink("20200101T000000Z", stale)
    os.symlink("20200101T000000Z", live)
    inst.backup("incremental")
    assert not os.path.lexists(stale), os.listdir(inst.backups)
    assert os.path.lexists(live), "a running process's symlink was removed"
    os.unlink(live)


def test_age_gauge_takes_the_time_from_the_id(inst):
    """A manifest edited to claim another time moves neither backup gauge: the time is the
    id's (checked against the manifest's own id)."""
    import calendar
    b = inst.backup("full")
    bid = b["id"]
    id_time = calendar.timegm(time.strptime(bid[:16], "%Y%m%dT%H%M%SZ"))
    mpath = os.path.join(inst.backup_dir(bid), "manifest.json")
    with open(mpath) as f:
        m = json.load(f)
    if "timestamp_ms" in m:
        m["timestamp_ms"] = 978307200000
    else:
        m["timestamp"] = "2001-01-01T00:00:00.000Z"
    os.chmod(mpath, 0o600)
    with open(mpath, "w") as f:
        json.dump(m, f)
    srv = h.Server(inst.prod, extra_env=dict({k: v for k, v in inst.env().items() if k.startswith("BACKUP_")},
                                             BACKUP_ENABLED="true"))
    srv.start()
    try:
        vals = {}
        for line in srv.get("/metrics").text.splitlines():
            if line.startswith("backup_"):
                name, value = line.split()
                vals[name] = float(value)
        assert vals["backup_last_success_timestamp_seconds"] == id_time, vals
        assert 0 <= vals["backup_age_seconds"] < 600, vals
        # a manifest naming another backup (copied over from elsewhere) gives no time at all
        m["id"] = "20010101T000000Z"
        with open(mpath, "w") as f:
            json.dump(m, f)
        text = srv.get("/metrics").text
        assert "\nbackup_last_success_timestamp_seconds 0\n" in text and "backup_age_seconds" not in text, \
            [ln for ln in text.splitlines() if ln.startswith("backup_")]
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed


@needs_strace
def test_failed_rename_in_the_swap_keeps_the_journal_and_the_next_restore_finishes(inst):
    """A step that fails half way through the swap (here: setting the env file aside, a hard
    link since review34, made to fail with EIO) leaves the journal and the staged data, and
    says how to finish."""
    s = inst.backup("full")
    bid = s["id"]
    backed_up = state(inst)
    change_everything(inst)
    cmd = ["strace", "-f", "-o", "/dev/null", "-P", inst.env_file, "-e", "trace=link,linkat",
           "-e", "inject=link,linkat:error=EIO:when=1",
           h.require_binary(), "restore", bid, "--yes", "--env-file", inst.env_file]
    r = subprocess.run(cmd, env=h.base_env(inst.env(**UNDER_PTRACE)), capture_output=True, text=True,
                       timeout=h.scaled(120),
                       stdin=subprocess.DEVNULL)
    journal = inst.db + JOURNAL_SUFFIX
    assert r.returncode == 1, out(r)
    assert "the swap stopped at config" in r.stderr and journal in r.stderr, out(r)
    assert ("aimedres restore %s --yes" % bid) in r.stderr
    assert os.path.exists(journal) and os.path.exists(inst.env_file)
    now = state(inst)
    assert now["db"] == backed_up["db"] and now["env"] != backed_up["env"], "not the expected half swap"
    code, text = serve_result(inst)
    assert code not in (None, 0) and journal in text, text
    r = inst.run(["restore", bid, "--yes", "--env-file", inst.env_file, "--json"])
    assert r.returncode == 0, out(r)
    assert set(json.loads(r.stdout)["rolled_forward"]["finished"]) == {"config", "results", "audit"}, r.stdout
    assert not os.path.exists(journal)
    assert state(inst) == backed_up
