# SPDX-License-Identifier: Apache-2.0
"""The separate /metrics listener (PROMETHEUS_PORT) binds where PROMETHEUS_HOST says, so
the API can stay on loopback behind nginx while Prometheus scrapes another interface;
without PROMETHEUS_HOST it binds HOST. `config check` resolves PROMETHEUS_HOST like HOST.
127.0.0.2 is a second loopback address (Linux routes all of 127/8 to lo)."""

import requests

import aimedres_harness as h


def reachable(url):
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return None


def test_metrics_port_on_its_own_address(make_server):
    mport = h.free_port()
    srv = make_server({"PROMETHEUS_ENABLED": "true", "PROMETHEUS_PORT": str(mport),
                       "PROMETHEUS_HOST": "127.0.0.2"})
    assert reachable("http://127.0.0.2:%d/metrics" % mport) == 200
    r = requests.get("http://127.0.0.2:%d/metrics" % mport, timeout=5)
    assert "http_requests_total" in r.text
    assert reachable("http://127.0.0.1:%d/metrics" % mport) is None  # not on HOST
    assert reachable("http://127.0.0.1:%d/health" % srv.port) == 200  # the API stays on HOST
    assert reachable("http://127.0.0.2:%d/health" % srv.port) is None


def test_metrics_port_defaults_to_host(make_server):
    mport = h.free_port()
    make_server({"PROMETHEUS_ENABLED": "true", "PROMETHEUS_PORT": str(mport)})
    assert reachable("http://127.0.0.1:%d/metrics" % mport) == 200
    assert reachable("http://127.0.0.2:%d/metrics" % mport) is None


def test_config_check_resolves_prometheus_host(demo_dir):
    env = h.demo_env(demo_dir)
    env.update({"PROMETHEUS_PORT": "9464", "PROMETHEUS_HOST": "no-such-host.invalid"})
    r = h.run_cli(["config", "check"], env=env)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "PROMETHEUS_HOST: cannot listen on 'no-such-host.invalid'" in r.stderr, r.stderr
    env["PROMETHEUS_HOST"] = "127.0.0.2"
    r = h.run_cli(["config", "check"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PROMETHEUS_HOST" in r.stdout and "127.0.0.2" in r.stdout
    assert "has no effect" not in r.stderr
    env["PROMETHEUS_PORT"] = "0"  # the listener is off: the setting does nothing, and says so
    r = h.run_cli(["config", "check"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning: PROMETHEUS_HOST=127.0.0.2 has no effect" in r.stderr, r.stderr
    env["PROMETHEUS_HOST"] = "no-such-host.invalid"  # off: not resolved (serve binds nothing)
    r = h.run_cli(["config", "check"], env=env)
    assert r.returncode == 0 and "cannot listen" not in r.stderr, r.stdout + r.stderr
    assert "warning: PROMETHEUS_HOST=no-such-host.invalid has no effect" in r.stderr, r.stderr


def test_serve_names_the_setting_it_can_not_bind(make_server, demo_dir, tmp_path):
    """A PROMETHEUS_HOST that does not resolve stops serve with a message naming it (not
    HOST), and the listening line says where /metrics is."""
    import subprocess
    env = h.demo_env(h.copy_demo(demo_dir, str(tmp_path / "d")))
    env.update({"PROMETHEUS_ENABLED": "true", "PROMETHEUS_PORT": str(h.free_port()),
                "PROMETHEUS_HOST": "[::1]", "PORT": str(h.free_port())})
    r = subprocess.run([h.require_binary(), "serve"], env=h.base_env(env), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "PROMETHEUS_HOST/PROMETHEUS_PORT ([::1]:" in r.stderr and "cannot resolve '[::1]'" in r.stderr, r.stderr
    mport = h.free_port()
    srv = make_server({"PROMETHEUS_ENABLED": "true", "PROMETHEUS_PORT": str(mport), "PROMETHEUS_HOST": "127.0.0.2"})
    assert '"metrics_host":"127.0.0.2"' in srv.log_tail().replace(" ", "") or \
        '"metrics_host": "127.0.0.2"' in srv.log_tail(), srv.log_tail()
