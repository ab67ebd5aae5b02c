# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of the ROLLOUT_* settings (issue 3): they are ordinary settings of the
configuration, so an --env-file supplies the deployment defaults (the environment still
wins), `config check` prints them, a malformed one refuses to start naming the variable and
its form, and the test-only fault injection stays off unless set (warned about when set)."""

import os
import subprocess

import aimedres_harness as h
from test_rollouts import PARK, RELAXED, train

SERVE_TIMEOUT_S = 30


def test_env_file_supplies_rollout_defaults(make_server, tmp_path):
    env_file = tmp_path / "rollout.env"
    env_file.write_text("# deployment defaults\n"
                        "ROLLOUT_STAGE_DURATION=45s\n"
                        "ROLLOUT_CANARY_STAGES=10,100\n"
                        "ROLLOUT_SHADOW_DURATION=10m\n"
                        "ROLLOUT_MIN_ACCURACY=0.7\n"
                        "ROLLOUT_ROLLBACK_WINDOW=3h\n")
    srv = make_server({"ROLLOUT_MIN_ACCURACY": "0.75"}, args=["--env-file", str(env_file)])
    assert "fault injection" not in srv.log_text()  # off unless set
    train(srv, PARK, "2.0.0", "--rounds", "101")
    r = srv.post("/api/v1/deployments", json={"model": PARK, "version": "2.0.0", "config": dict(RELAXED)})
    assert r.status_code == 201, r.text
    d = r.json()
    cfg = d["config"]
    assert cfg["stage_duration"] == "45s", cfg
    assert cfg["canary_stages"] == [10, 100], cfg
    assert cfg["shadow_duration"] == "10m" and cfg["rollback_window"] == "3h", cfg
    assert cfg["min_accuracy"] == 0.75, cfg  # the environment overrides the file
    assert cfg["max_error_rate"] == 0.05 and cfg["auto_promote"] is False  # built-in defaults
    assert d["mode"] == "shadow"
    # the deployment's own config still beats the defaults
    assert srv.post("/api/v1/deployments/%s/rollback" % d["deployment_id"], json={}).status_code == 200
    r = srv.post("/api/v1/deployments", json={"model": PARK, "version": "2.0.0",
                                              "config": dict(RELAXED, stage_duration="5m")})
    assert r.status_code == 201 and r.json()["config"]["stage_duration"] == "5m"
    assert r.json()["config"]["canary_stages"] == [10, 100]
    assert srv.post("/api/v1/deployments/%s/rollback" % r.json()["deployment_id"], json={}).status_code == 200

    # `config check` shows what took effect, defaults included
    c = h.run_cli(["config", "check", "--env-file", str(env_file)], env={"ROLLOUT_MIN_ACCURACY": "0.75"})
    assert c.returncode == 0, c.stderr
    lines = set(c.stdout.splitlines())
    for want in ("ROLLOUT_STAGE_DURATION=45s", "ROLLOUT_CANARY_STAGES=10,100", "ROLLOUT_MIN_ACCURACY=0.75",
                 "ROLLOUT_ROLLBACK_WINDOW=3h", "ROLLOUT_MAX_ERROR_RATE=0.05", "ROLLOUT_AUTO_PROMOTE=false",
                 "ROLLOUT_FAULT_INJECT="):
        assert want in lines, (want, c.stdout)


def _serve(tmp_path, env, args=()):
    """Runs `aimedres serve` expecting it to refuse to start; returns the CompletedProcess."""
    base = {"MODEL_STORAGE_PATH": str(tmp_path / "models"), "DATABASE_URL": "sqlite://" + str(tmp_path / "a.db"),
            "DATA_DIR": str(tmp_path / "data")}
    base.update(env)
    try:
        return h.run_cli(["serve", "--host", "127.0.0.1", "--port", str(h.free_port())] + list(args), env=base,
                         timeout=SERVE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError("aimedres serve started despite a malformed ROLLOUT_ setting")


def test_malformed_rollout_setting_refuses_to_start(tmp_path):
    r = _serve(tmp_path, {"ROLLOUT_STAGE_DURATION": "abc", "ROLLOUT_MIN_ACCURACY": "1.7",
                          "ROLLOUT_CANARY_STAGES": "5,200"})
    assert r.returncode != 0
    err = r.stderr
    assert "ROLLOUT_STAGE_DURATION: expected a duration like 30s, 5m or 2h" in err and "got 'abc'" in err, err
    assert "ROLLOUT_MIN_ACCURACY: expected a number in [0, 1], got '1.7'" in err, err
    assert "ROLLOUT_CANARY_STAGES: expected" in err and "ending at 100" in err and "got '5,200'" in err, err
    assert not os.path.exists(tmp_path / "a.db")  # refused before touching anything

    # the same from an env file, and from `config check`
    bad = tmp_path / "bad.env"
    bad.write_text("ROLLOUT_CHECK_INTERVAL=10ms\nROLLOUT_FAULT_INJECT=error_rate=1\n")
    r = _serve(tmp_path, {}, ["--env-file", str(bad)])
    assert r.returncode != 0
    assert "ROLLOUT_CHECK_INTERVAL: expected a duration of at least 100ms" in r.stderr, r.stderr
    assert "ROLLOUT_FAULT_INJECT: expected version=V" in r.stderr, r.stderr
    c = h.run_cli(["config", "check", "--env-file", str(bad)])
    assert c.returncode == 1 and "ROLLOUT_CHECK_INTERVAL" in c.stderr


def test_fault_injection_is_warned_about(make_server):
    srv = make_server({"ROLLOUT_FAULT_INJECT": "version=2.0.0,delay_ms=1"})
    recs = [x for x in srv.log_records() if "fault injection is ON" in str(x.get("msg", x.get("message", x)))]
    assert recs, srv.log_tail()
    assert "WARN" in str(recs[0].get("level", "")).upper(), recs[0]
