# SPDX-License-Identifier: Apache-2.0
"""deploy/compose (docker-compose.yml, Dockerfile): the cross-references a typo would break
hold: the aimedres service
sets only settings the binary knows and they pass `aimedres config check`, every mounted file
is in the repository (or is one of the operator's secrets), nginx's rewritten upstream is the
aimedres service on its PORT, Prometheus' targets are services, only nginx publishes ports, and
the image installs the -dev packages of scripts/install-deps.sh to build and the libraries the
binary links to run. No Docker engine is needed (none is started). `docker-compose config -q`
(Debian's docker-compose 1.29, offline) accepted the file when it was written, but the suite
does not run it: that package pulls in docker.io and containerd, which the test machines do
not otherwise need (docs/operations.md says how to run it)."""

import ipaddress
import os
import re
import subprocess

import pytest
import yaml

import aimedres_harness as h

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIR = os.path.join(ROOT, "deploy", "compose")
COMPOSE = os.path.join(DIR, "docker-compose.yml")
DOCKERFILE = os.path.join(DIR, "Dockerfile")
EXAMPLE_ENV = "aimedres.env.example"
NGINX_CONF = os.path.join(ROOT, "deploy", "nginx", "aimedres.conf")
PROMETHEUS = os.path.join(ROOT, "deploy", "monitoring", "prometheus.yml")
ALERTMANAGER = os.path.join(ROOT, "deploy", "monitoring", "alertmanager.yml")
SECRETS = os.path.join(DIR, "secrets")
SERVER = "aimedres-web"


def compose():
    with open(COMPOSE) as f:
        return yaml.safe_load(f)


def services():
    return compose()["services"]


def read(path):
    with open(path) as f:
        return f.read()


def env_file_values(path):
    out = {}
    for line in read(path).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def bind_mounts(svc):
    """(host path, container path) of the service's bind mounts (named volumes left out)."""
    out = []
    for v in svc.get("volumes", []):
        src, dst = v.split(":")[:2]
        if src.startswith((".", "/")):
            out.append((os.path.normpath(os.path.join(DIR, src)) if src.startswith(".") else src, dst))
    return out


def known_settings():
    r = h.run_cli(["config", "check"], env={})
    assert r.returncode == 0, r.stderr
    return {line.split("=", 1)[0] for line in r.stdout.splitlines() if "=" in line}


def test_only_nginx_publishes_ports_and_nothing_uses_the_host_network():
    svcs = services()
    published = sorted(n for n, s in svcs.items() if s.get("ports"))
    assert published == ["nginx"], published
    assert sorted(svcs["nginx"]["ports"]) == ["443:443", "80:80"], svcs["nginx"]["ports"]
    for name, s in svcs.items():
        assert s.get("network_mode") is None, (name, s.get("network_mode"))


def test_server_settings_are_known_and_pass_config_check(tmp_path):
    svc = services()[SERVER]
    assert svc["command"] == ["serve", "--host", "0.0.0.0"], svc["command"]
    assert svc["env_file"] == ["${AIMEDRES_ENV_FILE:-aimedres.env}"], svc["env_file"]
    env = {k: str(v) for k, v in svc["environment"].items()}
    secrets = env_file_values(os.path.join(DIR, EXAMPLE_ENV))
    known = known_settings()
    unknown = sorted(set(env) - known) + sorted(set(secrets) - known)
    assert not unknown, "not AiMedRes settings (a typo is silently ignored by the server): %s" % unknown
    assert not set(env) & set(secrets), "secrets belong in the env file only"
    assert env["ENVIRONMENT"] == "production" and env["AUTH_ENABLED"] == "true"

    # the container's paths, moved under tmp_path; HOST as the command line sets it
    def local(path):
        p = str(tmp_path) + path
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p
    run = dict(env, HOST="0.0.0.0")
    for key in ("MODEL_STORAGE_PATH", "DATA_DIR", "BACKUP_PATH"):
        run[key] = local(env[key] + "/")
    run["AUDIT_LOG_PATH"] = local(env["AUDIT_LOG_PATH"])
    run["DATABASE_URL"] = "sqlite://" + local(env["DATABASE_URL"][len("sqlite://"):])
    run["AUDIT_SIGNING_KEY_PATH"] = local(env["AUDIT_SIGNING_KEY_PATH"])
    r = h.run_cli(["audit", "keygen", "--private", run["AUDIT_SIGNING_KEY_PATH"],
                   "--public", str(tmp_path / "verify.pem")])
    assert r.returncode == 0, r.stderr
    # the example's placeholders are refused, as they must be in production
    r = h.run_cli(["config", "check"], env=dict(run, **secrets))
    assert r.returncode == 1, r.stdout[-500:]
    for key in secrets:
        assert re.search(r"%s\b.*(placeholder|REPLACE_ME)" % key, r.stderr, re.I), (key, r.stderr)
    real = {k: os.urandom(24).hex() for k in secrets}
    r = h.run_cli(["config", "check"], env=dict(run, **real))
    assert r.returncode == 0 and "configuration OK" in r.stderr, r.stderr
    cfg = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    for key in ("PORT", "PROMETHEUS_PORT", "TRUSTED_PROXIES", "ENVIRONMENT"):
        assert cfg[key] == run[key], (key, cfg[key], run[key])


def test_mounted_files_are_in_the_repository_or_are_the_operators_secrets():
    header = read(COMPOSE).split("services:")[0]
    for name, svc in services().items():
        for src, dst in bind_mounts(svc):
            if name == "node-exporter" and src == "/":
                continue  # the host's root, read-only, for host metrics
            assert src.startswith(DIR + os.sep) or src.startswith(os.path.join(ROOT, "deploy") + os.sep), src
            if src.startswith(SECRETS + os.sep):
                rel = os.path.relpath(src, DIR)
                assert rel in header or rel + "/" in header, "secret %s not named in the file's header" % rel
                continue
            assert os.path.exists(src), (name, src, dst)
    build = services()[SERVER]["build"]
    assert os.path.normpath(os.path.join(DIR, build["context"])) == ROOT
    assert os.path.normpath(os.path.join(ROOT, build["dockerfile"])) == DOCKERFILE
    for src in re.findall(r"^COPY (?!--from)(\S+)", read(DOCKERFILE), re.M):
        assert os.path.exists(os.path.join(ROOT, src)), src


def test_monitoring_files_agree_with_the_services():
    svcs = services()
    server_env = svcs[SERVER]["environment"]
    prom = yaml.safe_load(read(PROMETHEUS))
    mounts = dict((dst, src) for src, dst in bind_mounts(svcs["prometheus"]))
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS
    for rule in prom["rule_files"]:  # relative to the config file's directory
        target = os.path.join("/etc/prometheus", rule)
        base = [d for d in mounts if target.startswith(d + "/")]
        assert base, (rule, mounts)
        assert os.path.exists(os.path.join(mounts[base[0]], os.path.relpath(target, base[0]))), rule
    for job in prom["scrape_configs"]:
        for sc in job["static_configs"]:
            for t in sc["targets"]:
                host, port = t.rsplit(":", 1)
                assert host == "localhost" or host in svcs, (job["job_name"], t)
                if host == SERVER:
                    assert port == str(server_env["PROMETHEUS_PORT"]), (t, server_env["PROMETHEUS_PORT"])
    for am in prom["alerting"]["alertmanagers"]:
        for sc in am["static_configs"]:
            for t in sc["targets"]:
                assert t.split(":")[0] in svcs, t
                assert server_env["ALERTMANAGER_URL"] == "http://%s" % t, (t, server_env["ALERTMANAGER_URL"])
    am_mounts = dict((dst, src) for src, dst in bind_mounts(svcs["alertmanager"]))
    assert am_mounts["/etc/alertmanager/alertmanager.yml"] == ALERTMANAGER
    pw = yaml.safe_load(read(ALERTMANAGER))["global"]["smtp_auth_password_file"]
    assert pw in am_mounts, (pw, am_mounts)
    # Grafana: the data source is the prometheus service, the provider reads the mounted dashboard
    g_mounts = dict((dst, src) for src, dst in bind_mounts(svcs["grafana"]))
    ds = yaml.safe_load(read(g_mounts["/etc/grafana/provisioning/datasources/aimedres.yml"]))
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    prov = yaml.safe_load(read(g_mounts["/etc/grafana/provisioning/dashboards/aimedres.yml"]))
    path = prov["providers"][0]["options"]["path"]
    dash = [d for d in g_mounts if os.path.dirname(d) == path and d.endswith(".json")]
    assert dash and g_mounts[dash[0]].endswith("deploy/monitoring/grafana/aimedres-dashboard.json"), g_mounts


def test_nginx_upstream_is_the_server_service_and_the_proxy_is_trusted():
    svcs = services()
    nginx, server = svcs["nginx"], svcs[SERVER]
    script = nginx["command"][-1]
    conf = read(NGINX_CONF)
    m = re.search(r"s/(server 127\.0\.0\.1:8080;)/server ([\w.-]+):(\d+);/", script)
    assert m, script
    assert conf.count(m.group(1)) == 1, "the shipped upstream line is not there once"
    assert m.group(2) == SERVER and m.group(2) in svcs, m.group(2)
    assert m.group(3) == str(server["environment"]["PORT"]), (m.group(3), server["environment"]["PORT"])
    mounts = dict((dst, src) for src, dst in bind_mounts(nginx))
    src_conf = re.search(r"(/\S+aimedres\.conf) > (/etc/nginx/conf\.d/\S+\.conf)", script)
    assert src_conf and mounts[src_conf.group(1)] == NGINX_CONF, (script, mounts)
    for old in re.findall(r"s#([^#]+)#", script):
        assert old in conf, old
    # the certificate directory is mounted where the shipped file looks
    for path in re.findall(r"ssl_certificate(?:_key)? (\S+);", conf):
        assert os.path.dirname(path) in mounts, (path, mounts)
    # X-Forwarded-For is believed from nginx's fixed address only, inside the network
    proxy = nginx["networks"]["backend"]["ipv4_address"]
    assert server["environment"]["TRUSTED_PROXIES"] == proxy
    subnet = ipaddress.ip_network(compose()["networks"]["backend"]["ipam"]["config"][0]["subnet"])
    addrs = [s["networks"]["backend"]["ipv4_address"] for s in svcs.values()
             if isinstance(s.get("networks"), dict) and (s["networks"]["backend"] or {}).get("ipv4_address")]
    assert len(addrs) == len(set(addrs)) and all(ipaddress.ip_address(a) in subnet for a in addrs), addrs


def dockerfile_stages():
    """The Dockerfile's stages (text after each FROM) and the packages each apt-get installs."""
    stages = re.split(r"^FROM ", read(DOCKERFILE), flags=re.M)[1:]

    def apt(stage):
        m = re.search(r"apt-get install -y --no-install-recommends((?:[^&])+)", stage)
        return set(m.group(1).replace("\\", " ").split())
    return stages, [apt(st) for st in stages]


def test_image_builds_with_install_deps_packages_as_a_non_root_user():
    stages, (build, runtime) = dockerfile_stages()
    assert len(stages) == 2 and all(s.startswith("debian:12") for s in stages), [s[:20] for s in stages]
    deps = read(os.path.join(ROOT, "scripts", "install-deps.sh"))
    first = re.search(r'^PACKAGES="([^"]*)"', deps, re.M).group(1).split()
    dev = {p for p in first if p.endswith("-dev")} | {"build-essential", "cmake", "pkg-config"}
    assert dev <= build, sorted(dev - build)
    assert not {p for p in runtime if p.endswith("-dev")}, runtime
    runtime_stage = stages[1]
    assert re.search(r"^USER aimedres$", runtime_stage, re.M), "the runtime stage must not run as root"
    assert "useradd --system --uid 10001" in runtime_stage


def test_image_runtime_packages_cover_the_linked_libraries():
    """Every library `ldd aimedres` loads comes from a runtime package of the image or one of
    their dependencies. The image builds the plain binary; the suite's sanitizer pass (.ci/run)
    runs an ASan/UBSan build, which also links the sanitizer runtimes and all of libevent, so
    there this check is left to the plain pass of the same run."""
    runtime = dockerfile_stages()[1][1]
    ldd = subprocess.run(["ldd", h.require_binary()], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"=> (/\S+)", ldd)
    assert libs, ldd
    if any("/libasan" in lib for lib in libs):
        pytest.skip("sanitizer build: the image builds the plain binary, checked in the plain pass")
    pkgs = set()
    for lib in libs:
        r = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
        if r.returncode != 0:
            r = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        assert r.returncode == 0, (lib, r.stderr)
        pkgs.add(r.stdout.split(":")[0])
    covered, todo = set(), list(runtime)
    while todo:
        p = todo.pop()
        if p in covered:
            continue
        covered.add(p)
        r = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", p], capture_output=True,
                           text=True)
        for dep in re.split(r"[,|]", r.stdout):
            name = dep.strip().split(" ")[0].split(":")[0]
            if name:
                todo.append(name)
    base = {"libc6", "libgcc-s1"}  # in debian:12-slim
    assert pkgs - base <= covered, sorted(pkgs - base - covered)
