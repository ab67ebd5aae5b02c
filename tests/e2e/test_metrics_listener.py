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


def host_cpu(srv):
    r = srv.get("/metrics")
    assert r.status_code == 200, r.text
    help_line = [ln for ln in r.text.splitlines() if ln.startswith("# HELP host_cpu_usage_percent ")]
    assert help_line and "last complete 15 s interval" in help_line[0], help_line
    vals = [ln.split()[1] for ln in r.text.splitlines() if ln.startswith("host_cpu_usage_percent ")]
    assert len(vals) == 1, vals
    return float(vals[0])


def test_host_cpu_is_the_same_for_every_scrape(server):
    """host_cpu_usage_percent is the busy share of the server's own last 15 s interval, not
    "since the previous scrape": scrapes close together (two Prometheus servers, say) see the
    same figure. A 15 s boundary may fall between the scrapes of one try: another try then."""
    import time
    seen = []
    for _ in range(3):
        vals = []
        for i in range(6):  # pairs back to back (the old "since the previous scrape": 0 or 100)
            vals.append(host_cpu(server))
            end = time.monotonic() + (0.2 if i % 2 else 0.0)
            while time.monotonic() < end:  # keep a core busy between pairs
                pass
        seen.append(vals)
        if len(set(vals)) == 1:
            assert 0.0 <= vals[0] <= 100.0, vals
            return
    raise AssertionError("scrapes close together saw different host CPU figures: %r" % seen)


def requests_by_method(srv):
    """{method: summed http_requests_total} from /metrics."""
    import re
    r = srv.get("/metrics")
    assert r.status_code == 200, r.text
    out = {}
    for ln in r.text.splitlines():
        m = re.match(r'^http_requests_total\{method="([^"]*)",[^}]*\} (\S+)$', ln)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


def test_unknown_method_counted_as_other(server):
    """A request with a method the server does not know (curl -X FOOBAR) is counted under
    method="OTHER", not as a GET."""
    url = "http://127.0.0.1:%d/health" % server.port
    before = requests_by_method(server)
    statuses = {requests.request("FOOBAR", url, timeout=5).status_code for _ in range(3)}
    assert statuses and all(s >= 400 for s in statuses), statuses
    after = requests_by_method(server)
    assert after.get("OTHER", 0) - before.get("OTHER", 0) == 3, (before, after)
    # the GETs in between are the /metrics scrape of `before` only
    assert after.get("GET", 0) - before.get("GET", 0) == 1, (before, after)
    assert "FOOBAR" not in after
