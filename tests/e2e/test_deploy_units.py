# SPDX-License-Identifier: Apache-2.0
"""The server's systemd unit (deploy/systemd/aimedres.service): systemd accepts it, it agrees
with the configuration's defaults and with the backup units (same binary, env file and
writable paths), it waits longer than the drain on stop, and it stays hardened."""

import os
import re
import shutil
import subprocess

import aimedres_harness as h

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "deploy", "systemd", "aimedres.service")
BACKUP_UNIT = os.path.join(ROOT, "deploy", "backup", "systemd", "aimedres-backup@.service")


def directives(path):
    """{key: [values]} of a unit file."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


def test_systemd_accepts_the_unit(tmp_path):
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze (package systemd) is needed to check the unit"
    with open(UNIT) as f:
        text = f.read().replace("/usr/local/bin/aimedres", h.require_binary())
    unit = tmp_path / "aimedres.service"
    unit.write_text(text)
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    r = subprocess.run([tool, "security", "--offline=true", str(unit)], capture_output=True, text=True,
                       timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m and float(m.group(1)) <= 4.0, r.stdout[-400:] + r.stderr[-400:]


def test_unit_agrees_with_the_defaults_and_the_backup_units(tmp_path):
    d, b = directives(UNIT), directives(BACKUP_UNIT)
    start = d["ExecStart"][0].split()
    assert start[:2] == ["/usr/local/bin/aimedres", "serve"], start
    env_file = start[start.index("--env-file") + 1]
    assert env_file in b["ExecStart"][0], (env_file, b["ExecStart"])
    assert d["User"] == b["User"] == ["aimedres"]
    rw = " ".join(d["ReadWritePaths"]).split()
    # the defaults the server writes to (config check prints them)
    r = h.run_cli(["config", "check"], env={})
    cfg = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    db = cfg["DATABASE_URL"].replace("sqlite://", "")
    for path in (os.path.dirname(db), os.path.dirname(cfg["MODEL_STORAGE_PATH"]), "/var/log/aimedres"):
        assert path in rw, (path, rw)
        assert path in " ".join(b["ReadWritePaths"]), (path, b["ReadWritePaths"])
    # stop waits longer than the drain
    drain = int(re.match(r"(\d+)", cfg["SHUTDOWN_DRAIN_TIMEOUT"]).group(1))
    assert int(d["TimeoutStopSec"][0]) > drain, (d["TimeoutStopSec"], drain)
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # readiness from the server itself (test_lifecycle checks it sends READY=1 from its own pid)
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"], (d["Type"], d.get("NotifyAccess"))
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectHome"):
        assert key in d, key
    assert d["CapabilityBoundingSet"] == [""]
