# SPDX-License-Identifier: Apache-2.0
"""deploy/helm/aimedres, linted and rendered with a real helm (v3.9.4, installed by
scripts/install-helm.sh; this test fails, never skips, when it is missing) and checked offline:
every rendered object of a core kind is walked against the Kubernetes 1.22 API models of
python3-kubernetes (unknown field, wrong type, missing required field fail, naming the path);
the CRDs (ServiceMonitor, PrometheusRule) are checked by hand against the Service and
deploy/monitoring/rules/aimedres.yml. The rendered settings are real: known to the binary,
accepted by `config check`, a real server answers the probes' paths with them, and the backup
CronJobs' init script and commands run against a copy of the demo data with the rendered
environment. No cluster is used (none exists where this runs): scheduling, the CNI's
NetworkPolicy and the Prometheus Operator are not exercised."""

import os
import re
import shlex
import shutil
import stat
import subprocess

import pytest
import requests
import yaml
from kubernetes import client as k8s

import aimedres_harness as h

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "deploy", "helm", "aimedres")
RULES = os.path.join(ROOT, "deploy", "monitoring", "rules", "aimedres.yml")
RULES_COPY = os.path.join(CHART, "files", "aimedres-rules.yml")
PROMETHEUS = os.path.join(ROOT, "deploy", "monitoring", "prometheus.yml")
CRON = os.path.join(ROOT, "deploy", "backup", "aimedres-backup.cron")
DOCKERFILE = os.path.join(ROOT, "deploy", "compose", "Dockerfile")
TOOLS_DIR = os.environ.get("AIMEDRES_TOOLS_DIR", "/usr/local/lib/aimedres-tools")
HELM = os.path.join(TOOLS_DIR, "helm-v3.9.4", "helm")
SECRET = "aimedres-secrets"
MIN = ["--set", "existingSecret=" + SECRET]
SECRET_SETTINGS = ("SECRET_KEY", "JWT_SECRET_KEY", "API_KEY_SALT")
# URLs the binary redacts (SECRET_URL, SECRET_URL_TAIL): optional keys of existingSecret
SECRET_URLS = ("ALERTMANAGER_URL", "ALERT_WEBHOOK_URL")
SERVER = "StatefulSet"  # the server's workload kind (at most one pod, even across a node partition)

# apiVersion/kind -> the python3-kubernetes (k8s 1.22 API) model class
MODELS = {
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("batch/v1", "CronJob"): "V1CronJob",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
INGRESS = ["--set", "ingress.enabled=true", "--set", "config.TRUSTED_PROXIES=10.244.0.0/16"]
ALL_ON = MIN + INGRESS + ["--set", "ingress.tlsSecretName=aimedres-tls",
                "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true"]


# --------------------------------------------------------------------------- helm


def helm(*args):
    if not os.access(HELM, os.X_OK):
        pytest.fail("helm v3.9.4 is not installed at %s: run scripts/install-helm.sh (make test does, "
                    "through scripts/install-deps.sh)" % HELM, pytrace=False)
    env = dict(os.environ, HELM_CACHE_HOME="/tmp/aimedres-helm-cache", HELM_CONFIG_HOME="/tmp/aimedres-helm-config",
               HELM_DATA_HOME="/tmp/aimedres-helm-data")
    return subprocess.run([HELM] + list(args), capture_output=True, text=True, timeout=120, env=env)


def render(*args, chart=CHART):
    r = helm("template", "aimedres", chart, "--namespace", "clinical", *args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def render_fails(*args):
    r = helm("template", "aimedres", CHART, *args)
    assert r.returncode != 0, "rendered although it should not:\n" + r.stdout[:2000]
    return r.stderr


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, (kind, [d["metadata"]["name"] for d in found])
    return found[0]


def pod_specs(docs):
    """(name, pod spec) of every workload: the server StatefulSet and each CronJob's job template."""
    out = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in by_kind(docs, SERVER)]
    out += [(d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]["spec"])
            for d in by_kind(docs, "CronJob")]
    return out


def configmap(docs):
    return {k: str(v) for k, v in one(docs, "ConfigMap")["data"].items()}


def cronjobs(docs):
    """{name suffix (full, incremental ...): CronJob}"""
    return {d["metadata"]["name"].rsplit("-", 1)[1]: d for d in by_kind(docs, "CronJob")}


# --------------------------------------------------------------------------- schema


def check_type(value, typ, path):
    """Walks value against a python3-kubernetes openapi type string; raises AssertionError naming
    the path of an unknown field or a wrongly typed value."""
    m = re.fullmatch(r"list\[(.+)\]", typ)
    if m:
        assert isinstance(value, list), "%s: expected a list, got %r" % (path, value)
        for i, v in enumerate(value):
            check_type(v, m.group(1), "%s[%d]" % (path, i))
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", typ)
    if m:
        assert isinstance(value, dict), "%s: expected a map, got %r" % (path, value)
        for k, v in value.items():
            assert isinstance(k, str), "%s: key %r is not a string" % (path, k)
            check_type(v, m.group(1), "%s.%s" % (path, k))
        return
    if typ == "object":  # IntOrString, RawExtension
        assert isinstance(value, (str, int, dict, list)) and not isinstance(value, bool), (path, value)
        return
    if typ in ("str", "datetime", "date"):
        assert isinstance(value, str), "%s: expected a string, got %r (%s)" % (path, value, type(value).__name__)
        return
    if typ == "int":
        assert isinstance(value, int) and not isinstance(value, bool), "%s: expected an integer, got %r" % (path, value)
        return
    if typ == "float":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (path, value)
        return
    if typ == "bool":
        assert isinstance(value, bool), "%s: expected a boolean, got %r" % (path, value)
        return
    cls = getattr(k8s, typ)
    assert isinstance(value, dict), "%s: expected an object (%s), got %r" % (path, typ, value)
    fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, v in value.items():
        assert key in fields, "%s.%s: unknown field of %s" % (path, key, typ)
        if v is None:
            continue
        check_type(v, cls.openapi_types[fields[key]], "%s.%s" % (path, key))


def validate(doc):
    """The doc against its k8s 1.22 model: fields and types by walking, required fields by the
    models' own deserialization (which raises ValueError on a missing required one)."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    assert key in MODELS, "no k8s 1.22 model for %s %s" % key
    name = "%s/%s" % (doc["kind"], doc.get("metadata", {}).get("name"))
    check_type(doc, MODELS[key], name)
    try:
        k8s.ApiClient()._ApiClient__deserialize(doc, MODELS[key])
    except ValueError as e:
        raise AssertionError("%s: %s" % (name, e))


# --------------------------------------------------------------------------- the binary's view


def known_settings():
    r = h.run_cli(["config", "check"], env={})
    assert r.returncode == 0, r.stderr
    return {line.split("=", 1)[0] for line in r.stdout.splitlines() if "=" in line}


def env_names(container, cm):
    names = [e["name"] for e in container.get("env", [])]
    for src in container.get("envFrom", []):
        assert src["configMapRef"]["name"] == cm["metadata"]["name"], src
        names += list(cm["data"])
    return names


def local_path(root, value):
    """A container path (or sqlite:// URL) moved under root."""
    if value.startswith("sqlite://"):
        return "sqlite://" + local_path(root, value[len("sqlite://"):])
    if value.startswith("/"):
        return str(root) + value
    return value


def local_env(root, cm_data):
    out = {}
    for k, v in cm_data.items():
        out[k] = local_path(root, v)
        if out[k] != v:
            path = out[k][len("sqlite://"):] if out[k].startswith("sqlite://") else out[k]
            os.makedirs(os.path.dirname(path), exist_ok=True)
    return out


def make_secret_files(root, docs):
    """The existingSecret's files as a Secret volume with fsGroup shows them (mode 0440), and the
    three secret settings; returns the settings."""
    dep = one(docs, SERVER)
    vol = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "secret-files"][0]
    mount = [m for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
             if m["name"] == "secret-files"][0]["mountPath"]
    sdir = local_path(root, mount)
    os.makedirs(sdir, exist_ok=True)
    key = os.path.join(sdir, vol["secret"]["items"][0]["path"])
    r = h.run_cli(["audit", "keygen", "--private", key, "--public", str(root) + "/verify.pem"])
    assert r.returncode == 0, r.stderr
    r = h.run_cli(["backup", "keygen", os.path.join(sdir, "backup.key")])
    assert r.returncode == 0, r.stderr
    for f in os.listdir(sdir):
        os.chmod(os.path.join(sdir, f), vol["secret"]["defaultMode"])
    return {k: os.urandom(24).hex() for k in SECRET_SETTINGS}


# --------------------------------------------------------------------------- tests


def test_lint_strict_passes_with_the_required_values():
    r = helm("lint", "--strict", CHART, *MIN)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 chart(s) failed" in r.stdout, r.stdout
    assert "[ERROR]" not in r.stdout and "[WARNING]" not in r.stdout, r.stdout
    r = helm("lint", "--strict", CHART, *ALL_ON)
    assert r.returncode == 0, r.stdout + r.stderr


def test_chart_metadata_follows_the_binary():
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    assert chart["apiVersion"] == "v2"
    r = h.run_cli(["--version"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["aimedres", chart["appVersion"]], (r.stdout, chart["appVersion"])
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(aimedres VERSION (\S+)", f.read())
    assert m and m.group(1) == chart["appVersion"]
    dep = one(render(*MIN), SERVER)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "aimedres:" + chart["appVersion"]


def test_every_rendered_object_validates_against_the_k8s_models():
    combos = [MIN, ALL_ON, MIN + ["--set", "backups.enabled=false", "--set", "networkPolicy.enabled=false"],
              ALL_ON + ["--set", "persistence.data.existingClaim=mine", "--set", "persistence.backups.storageClass=fast",
                        "--set", "imagePullSecrets[0].name=regcred", "--set", "nodeSelector.disk=ssd"],
              MIN + ["-f", os.path.join(CHART, "values-production.example.yaml")]]
    kinds = set()
    for args in combos:
        for doc in render(*args):
            key = (doc["apiVersion"], doc["kind"])
            kinds.add(key)
            if key in CRDS:
                continue  # checked by hand below
            validate(doc)
    assert kinds == set(MODELS) | CRDS, kinds ^ (set(MODELS) | CRDS)


def test_the_schema_walk_catches_typos_types_and_missing_fields():
    dep = one(render(*MIN), SERVER)
    validate(dep)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["imagePullPolcy"] = "Always"
    with pytest.raises(AssertionError, match=r"containers\[0\]\.imagePullPolcy: unknown field"):
        validate(dep)
    del c["imagePullPolcy"]
    c["ports"][0]["containerPort"] = "8080"
    with pytest.raises(AssertionError, match=r"ports\[0\]\.containerPort: expected an integer"):
        validate(dep)
    c["ports"][0]["containerPort"] = 8080
    del c["name"]
    with pytest.raises(AssertionError, match=r"name.*must not be `None`"):
        validate(dep)


def test_more_than_one_replica_is_refused_with_the_reason():
    for n in ("2", "0"):
        err = render_fails(*MIN, "--set", "replicaCount=" + n)
        assert "replicaCount must be 1" in err and "SQLite" in err and "single-writer" in err, err
        assert "PostgreSQL backend, which is not available yet" in err, err
    dep = one(render(*MIN), SERVER)
    assert dep["spec"]["replicas"] == 1
    assert "strategy" not in dep["spec"]  # a Deployment's field


def test_secrets_come_only_from_the_existing_secret():
    err = render_fails()
    assert "existingSecret is required" in err and "never renders secrets" in err, err
    for key in SECRET_SETTINGS:
        err = render_fails(*MIN, "--set", "config.%s=%s" % (key, "x" * 40))
        assert "config.%s is a secret" % key in err, err
    for key in ("DATABASE_URL", "PORT", "BACKUP_ENCRYPTION_KEY_FILE"):
        err = render_fails(*MIN, "--set", "config.%s=x" % key)
        assert "config.%s: set by the chart" % key in err, err
    docs = render(*ALL_ON)
    assert not by_kind(docs, "Secret")
    for name, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            for e in c.get("env", []):
                if e["name"] in SECRET_SETTINGS:
                    assert e["valueFrom"]["secretKeyRef"]["name"] == SECRET, (name, e)
                    assert "value" not in e
        for v in spec["volumes"]:
            if "secret" in v:
                assert v["secret"]["secretName"] == SECRET, (name, v)
    assert not set(configmap(docs)) & set(SECRET_SETTINGS)


def test_env_names_are_settings_and_pass_config_check(tmp_path):
    docs = render(*ALL_ON)
    cm = one(docs, "ConfigMap")
    known = known_settings()
    for name, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            names = env_names(c, cm)
            unknown = sorted(set(names) - known)
            assert not unknown, "%s/%s sets unknown settings (silently ignored): %s" % (name, c["name"], unknown)
    data = configmap(docs)
    assert data["ENVIRONMENT"] == "production" and data["AUTH_ENABLED"] == "true"
    run = local_env(tmp_path, data)
    run["HOST"] = "0.0.0.0"  # the container's `serve --host 0.0.0.0`
    secrets = make_secret_files(tmp_path, docs)
    r = h.run_cli(["config", "check"], env=run)
    assert r.returncode == 1 and "SECRET_KEY" in r.stderr, r.stderr  # production: secrets required
    r = h.run_cli(["config", "check"], env=dict(run, **secrets))
    assert r.returncode == 0 and "configuration OK" in r.stderr, r.stderr
    cfg = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    for key in ("PORT", "PROMETHEUS_PORT", "ENVIRONMENT", "AUTH_ENABLED", "BACKUP_ENABLED", "MAX_WORKERS"):
        assert cfg[key] == run[key], (key, cfg[key], run[key])
    for key in SECRET_SETTINGS:
        assert cfg[key] == "<redacted>", (key, cfg[key])


def test_image_ports_paths_and_volumes_agree():
    with open(DOCKERFILE) as f:
        dockerfile = f.read()
    docs = render(*MIN)
    data = configmap(docs)
    dep = one(docs, SERVER)
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert '["/usr/local/bin/aimedres"]' in re.search(r"^ENTRYPOINT (.*)$", dockerfile, re.M).group(1)
    assert "command" not in c and c["args"] == ["serve", "--host", "0.0.0.0"], c
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": int(data["PORT"]), "metrics": int(data["PROMETHEUS_PORT"])}, ports
    assert sorted(re.search(r"^EXPOSE (.*)$", dockerfile, re.M).group(1).split()) == sorted(
        str(p) for p in ports.values())
    svc = one(docs, "Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "http": (ports["http"], "http"), "metrics": (ports["metrics"], "metrics")}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), (svc["spec"]["selector"], labels)
    assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    # every path the server writes is on a writable volume (the root file system is read-only)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    claims = {p["metadata"]["name"] for p in by_kind(docs, "PersistentVolumeClaim")}

    def mount_of(path):
        best = max((m for m in mounts if path.startswith(m.rstrip("/") + "/")), key=len, default=None)
        assert best, "%s is on the read-only root file system" % path
        return mounts[best]

    for key in ("DATABASE_URL", "MODEL_STORAGE_PATH", "DATA_DIR", "AUDIT_LOG_PATH"):
        path = data[key][len("sqlite://"):] if key == "DATABASE_URL" else data[key] + "/x"
        m = mount_of(path)
        assert not m.get("readOnly"), (key, m)
        assert vols[m["name"]]["persistentVolumeClaim"]["claimName"] in claims, (key, m)
    m = mount_of(data["BACKUP_PATH"] + "/latest")
    assert m.get("readOnly") is True and vols[m["name"]]["persistentVolumeClaim"]["claimName"] in claims
    m = mount_of(data["AUDIT_SIGNING_KEY_PATH"])
    items = [i["path"] for i in vols[m["name"]]["secret"]["items"]]
    assert os.path.relpath(data["AUDIT_SIGNING_KEY_PATH"], m["mountPath"]) in items
    assert "emptyDir" in vols[mount_of("/tmp/x")["name"]]
    uid = re.search(r"--uid (\d+)", dockerfile).group(1)
    assert spec["securityContext"]["runAsUser"] == int(uid) and spec["securityContext"]["fsGroup"] == int(uid)
    for p in by_kind(docs, "PersistentVolumeClaim"):
        assert p["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert p["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_security_context_on_every_pod():
    docs = render(*ALL_ON)
    specs = pod_specs(docs)
    assert len(specs) == 6, [n for n, _ in specs]  # the server and five backup jobs
    for name, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, (name, psc)
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, (name, psc)
        assert spec["automountServiceAccountToken"] is False, name
        assert "hostNetwork" not in spec and "hostPID" not in spec, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            where = "%s/%s" % (name, c["name"])
            assert sc["runAsNonRoot"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc.get("privileged", False) is False, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
    sa = one(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False


def test_probes_answer_on_a_real_server(demo_dir, make_server, tmp_path):
    docs = render(*MIN)
    dep = one(docs, SERVER)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    probes = {k: c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    for k, p in probes.items():
        assert p["httpGet"]["port"] == "http", (k, p)
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes["startupProbe"]["httpGet"]["path"] == "/health"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    # the compose file's start_period: 15 minutes for a schema upgrade before liveness applies
    sp = probes["startupProbe"]
    assert sp["periodSeconds"] * sp["failureThreshold"] >= 15 * 60, sp
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30  # SHUTDOWN_DRAIN_TIMEOUT
    # a real server with the rendered production settings and the chart's layout: every path
    # of the ConfigMap (store, models, data, audit log, backups) moved under tmp_path, the demo's
    # store, models and data copied where the data volume is mounted; free ports, not 8080/9090
    data = configmap(docs)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    h.copy_demo(demo_dir, local_path(tmp_path, mounts["data"]))
    assert data["DATABASE_URL"] == "sqlite://%s/aimedres.db" % mounts["data"], data["DATABASE_URL"]
    run = local_env(tmp_path, data)
    secrets = make_secret_files(tmp_path, docs)
    for k in ("DATABASE_URL", "MODEL_STORAGE_PATH", "DATA_DIR", "AUDIT_LOG_PATH", "BACKUP_PATH"):
        assert re.sub("^sqlite://", "", run[k]).startswith(str(tmp_path) + "/"), (k, run[k])
    os.makedirs(run["BACKUP_PATH"], exist_ok=True)
    run.pop("PORT")
    run["PROMETHEUS_PORT"] = str(h.free_port())
    srv = make_server(dict(run, **secrets))
    r = h.run_cli(["model", "list"], env=dict(run, **secrets))  # the server's store is the chart's
    assert r.returncode == 0 and h.DEMO_MODELS[0] in r.stdout, (r.stdout, r.stderr)
    for k in ("livenessProbe", "readinessProbe", "startupProbe"):
        r = srv.get(probes[k]["httpGet"]["path"])
        assert r.status_code == 200, (k, r.status_code, r.text)
    # the API needs a key (AUTH_ENABLED), the probes do not; /metrics answers on the metrics port
    assert srv.get("/api/v1/models/list").status_code == 401
    r = requests.get("http://127.0.0.1:%s/metrics" % run["PROMETHEUS_PORT"], timeout=10)
    assert r.status_code == 200, r.status_code
    # BACKUP_ENABLED=true (backups on): the server exports the backup's age for BackupStale
    assert "\nbackup_last_success_timestamp_seconds " in r.text, r.text[:300]
    assert ports["metrics"] == int(data["PROMETHEUS_PORT"])


def cron_lines():
    """{tuple(aimedres args without --env-file): schedule} of deploy/backup's cron file."""
    out = {}
    with open(CRON) as f:
        for line in f:
            line = line.strip()
            m = re.match(r"^((?:\S+\s+){5})aimedres\s+(.*)$", line)  # 5 time fields, the user
            if not m or line.startswith("#"):
                continue
            words = shlex.split(m.group(2).split(">>")[0])
            if words[:2] == ["flock", "-n"]:
                words = words[3:]
            assert words[0] == "aimedres", line
            args = words[1:]
            i = args.index("--env-file")
            del args[i:i + 2]
            out[tuple(args)] = " ".join(m.group(1).split())
    return out


def test_cronjobs_follow_the_backup_schedule_and_commands():
    docs = render(*MIN)
    jobs = cronjobs(docs)
    chart = {}
    for name, cj in jobs.items():
        spec = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        c = spec["containers"][0]
        assert "command" not in c, c  # the image's ENTRYPOINT: aimedres
        chart[tuple(c["args"])] = cj["spec"]["schedule"]
        assert cj["spec"]["concurrencyPolicy"] == "Forbid"
        assert spec["restartPolicy"] == "Never"
    cron = cron_lines()
    # the DR drill is not scheduled by the chart (values.yaml says why)
    drill = [k for k in cron if k[0] == "dr-drill"]
    assert len(drill) == 1
    del cron[drill[0]]
    assert chart == cron, (chart, cron)
    assert sorted(jobs) == ["check", "full", "incremental", "prune", "verify"]
    assert not cronjobs(render(*MIN, "--set", "backups.enabled=false"))


def test_backup_jobs_share_the_servers_volumes_on_its_node():
    docs = render(*MIN)
    dep = one(docs, SERVER)
    server_labels = dep["spec"]["template"]["metadata"]["labels"]
    dvols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    for name, cj in cronjobs(docs).items():
        spec = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        terms = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert len(terms) == 1 and terms[0]["topologyKey"] == "kubernetes.io/hostname", terms
        sel = terms[0]["labelSelector"]["matchLabels"]
        assert all(server_labels.get(k) == v for k, v in sel.items()), (sel, server_labels)
        assert sel.get("app.kubernetes.io/component") == "server"
        vols = {v["name"]: v for v in spec["volumes"]}
        assert vols["data"] == dvols["data"] and vols["backups"] == dvols["backups"], name
        assert vols["keys"]["emptyDir"]["medium"] == "Memory"
        # the backup pods are not themselves the server (the Service must not select them)
        labels = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "backup"


def test_backup_jobs_run_with_the_rendered_environment(demo_dir, make_server, tmp_path):
    """The init container's script and each CronJob's command, run here in the order of a day
    (full, incremental, verify, check, prune) against a copy of the demo data laid out as the
    chart mounts it, with the Secret volume's mode (0440, as fsGroup makes it), while a server
    with the same settings serves from that data (as the server pod does)."""
    docs = render(*MIN)
    data = configmap(docs)
    h.copy_demo(demo_dir, str(tmp_path) + "/var/lib/aimedres")
    run = local_env(tmp_path, data)
    assert data["DATABASE_URL"] == "sqlite:///var/lib/aimedres/aimedres.db"  # the demo's layout
    assert data["MODEL_STORAGE_PATH"] == "/var/lib/aimedres/models"
    os.makedirs(run["BACKUP_PATH"], exist_ok=True)
    secrets = make_secret_files(tmp_path, docs)
    srv = make_server(dict({k: v for k, v in run.items() if k != "PORT"}, PROMETHEUS_PORT=str(h.free_port()),
                           **secrets))
    assert srv.get("/ready").status_code == 200
    jobs = cronjobs(docs)
    for order, name in enumerate(("full", "incremental", "verify", "check", "prune")):
        spec = jobs[name]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        init = spec["initContainers"][0]
        keydir = [m for m in init["volumeMounts"] if m["name"] == "keys"][0]["mountPath"]
        os.makedirs(local_path(tmp_path, keydir), exist_ok=True)
        c = spec["containers"][0]
        env = dict(run, **secrets)
        for e in c["env"]:
            if "value" in e:
                env[e["name"]] = local_path(tmp_path, e["value"])
        if order == 0:  # the Secret volume's copy itself is refused (group-readable)
            r = h.run_cli(c["args"], env=dict(env, BACKUP_ENCRYPTION_KEY_FILE=local_path(tmp_path, init["command"][3])))
            assert r.returncode != 0 and "lets group or others access the key" in r.stderr, r.stderr
        cmd = init["command"][:3] + [local_path(tmp_path, a) for a in init["command"][3:]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        key = env["BACKUP_ENCRYPTION_KEY_FILE"]
        assert key == local_path(tmp_path, init["command"][4])
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        r = h.run_cli(c["args"], env=env, timeout=300)
        assert r.returncode == 0, (name, r.stdout[-2000:], r.stderr[-2000:])
    assert srv.get("/health").status_code == 200
    r = h.run_cli(["backup", "list"], env=dict(run, **secrets))
    assert r.returncode == 0 and r.stdout.count("full") >= 1 and "incremental" in r.stdout, r.stdout


def test_toggles_render_or_vanish():
    base = render(*MIN)
    kinds = {d["kind"] for d in base}
    assert "NetworkPolicy" in kinds  # on by default
    assert not kinds & {"Ingress", "ServiceMonitor", "PrometheusRule", "Secret"}, kinds
    off = {d["kind"] for d in render(*MIN, "--set", "networkPolicy.enabled=false")}
    assert "NetworkPolicy" not in off
    on = {d["kind"] for d in render(*ALL_ON)}
    assert {"Ingress", "ServiceMonitor", "PrometheusRule", "NetworkPolicy"} <= on
    # existing claims: none created, the pods use the named ones
    docs = render(*MIN, "--set", "persistence.data.existingClaim=d1", "--set", "persistence.backups.existingClaim=b1")
    assert not by_kind(docs, "PersistentVolumeClaim")
    for name, spec in pod_specs(docs):
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
                  if "persistentVolumeClaim" in v}
        assert claims == {"data": "d1", "backups": "b1"}, (name, claims)
    # backups off: no backup claim, no read-only backup mount, BACKUP_ENABLED=false
    docs = render(*MIN, "--set", "backups.enabled=false")
    assert [p["metadata"]["name"] for p in by_kind(docs, "PersistentVolumeClaim")] == ["aimedres-data"]
    assert configmap(docs)["BACKUP_ENABLED"] == "false"
    spec = one(docs, SERVER)["spec"]["template"]["spec"]
    assert "backups" not in {v["name"] for v in spec["volumes"]}


def test_network_policy_admits_the_ingress_and_prometheus_namespaces_only():
    docs = render(*MIN, "--set", "networkPolicy.ingressNamespaceSelector.matchLabels.team=edge",
                  "--set", "networkPolicy.prometheusNamespaceSelector.matchLabels.team=obs")
    np = one(docs, "NetworkPolicy")
    dep = one(docs, SERVER)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    sel = np["spec"]["podSelector"]["matchLabels"]
    assert all(labels.get(k) == v for k, v in sel.items())
    assert np["spec"]["policyTypes"] == ["Ingress"]
    rules = np["spec"]["ingress"]
    assert len(rules) == 2, rules
    got = {r["ports"][0]["port"]: r["from"] for r in rules}
    assert all(len(r["ports"]) == 1 and r["ports"][0]["protocol"] == "TCP" for r in rules)
    assert got["http"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx", "team": "edge"}}}], got
    assert got["metrics"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring", "team": "obs"}}}], got
    names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert set(got) == names
    # the backup pods are not selected by it (they need no inbound connection)
    for _, cj in cronjobs(docs).items():
        jl = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert not all(jl.get(k) == v for k, v in sel.items())


def nginx_size(v):
    m = re.fullmatch(r"(\d+)([kmg]?)", v)
    assert m, v
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]


def test_ingress_body_limit_equals_max_body_bytes_and_tls(tmp_path):
    for size in ("1M", "512k", "2097152"):
        docs = render(*ALL_ON, "--set", "config.MAX_BODY_BYTES=" + size, "--set", "ingress.className=nginx-internal",
                      "--set", "ingress.host=ai.example.net")
        ing = one(docs, "Ingress")
        limit = nginx_size(ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"])
        r = h.run_cli(["config", "check"], env={"MAX_BODY_BYTES": configmap(docs)["MAX_BODY_BYTES"]})
        assert r.returncode == 0, r.stderr
        server = int(re.search(r"^MAX_BODY_BYTES=(\d+)$", r.stdout, re.M).group(1))
        assert limit == server, (size, limit, server)
        assert ing["spec"]["ingressClassName"] == "nginx-internal"
        assert ing["spec"]["tls"] == [{"hosts": ["ai.example.net"], "secretName": "aimedres-tls"}]
        path = ing["spec"]["rules"][0]["http"]["paths"][0]
        assert ing["spec"]["rules"][0]["host"] == "ai.example.net"
        assert path["backend"]["service"] == {"name": one(docs, "Service")["metadata"]["name"], "port": {"name": "http"}}
    err = render_fails(*ALL_ON, "--set", "config.MAX_BODY_BYTES=1MiB")
    assert "MAX_BODY_BYTES=1MiB" in err and "proxy-body-size" in err, err
    ing = one(render(*MIN, *INGRESS), "Ingress")
    assert "tls" not in ing["spec"]


def test_service_monitor_and_prometheus_rule_match_the_service_and_the_repo_rules():
    with open(RULES, "rb") as a, open(RULES_COPY, "rb") as b:
        assert a.read() == b.read(), "files/aimedres-rules.yml differs from deploy/monitoring/rules/aimedres.yml"
    docs = render(*ALL_ON, "--set", "metrics.serviceMonitor.labels.release=kps")
    svc = one(docs, "Service")
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm["spec"]) == {"jobLabel", "selector", "namespaceSelector", "endpoints"}, sm["spec"]
    assert sm["metadata"]["labels"]["release"] == "kps"
    sel = sm["spec"]["selector"]["matchLabels"]
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), (sel, svc["metadata"]["labels"])
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["clinical"]}
    ep = sm["spec"]["endpoints"]
    assert len(ep) == 1 and set(ep[0]) <= {"port", "path", "interval"}, ep
    assert ep[0]["port"] in {p["name"] for p in svc["spec"]["ports"]} and ep[0]["port"] == "metrics"
    assert ep[0]["path"] == "/metrics"
    # job label = the prometheus.yml job the rules' up{job=...} expects
    job = svc["metadata"]["labels"][sm["spec"]["jobLabel"]]
    with open(PROMETHEUS) as f:
        assert job in [j["job_name"] for j in yaml.safe_load(f)["scrape_configs"]]
    with open(RULES) as f:
        text = f.read()
        repo_groups = yaml.safe_load(text)["groups"]
    assert 'up{job="%s"}' % job in text
    pr = one(docs, "PrometheusRule")
    assert pr["apiVersion"] == "monitoring.coreos.com/v1" and set(pr["spec"]) == {"groups"}
    assert pr["spec"]["groups"] == repo_groups


def render_notes(tmp_path, *args):
    """helm template skips NOTES.txt: render it from a copy of the chart as an ordinary file."""
    chart = str(tmp_path / "aimedres")
    if not os.path.exists(chart):
        shutil.copytree(CHART, chart)
        with open(os.path.join(chart, "templates", "NOTES.txt")) as f:
            text = f.read()
        os.remove(os.path.join(chart, "templates", "NOTES.txt"))
        with open(os.path.join(chart, "templates", "notes.yaml"), "w") as f:  # a YAML document helm accepts
            f.write("kind: Notes\ntext: |\n" + "".join("  " + line for line in text.splitlines(True)))
    r = helm("template", "rel", chart, "--namespace", "clinical", *args, "--show-only", "templates/notes.yaml")
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)["text"]


def test_notes_render(tmp_path):
    notes = render_notes(tmp_path, *MIN)
    for want in ("svc/rel-aimedres", "/health", "/ready", "docs/operations.md", "rel-aimedres.clinical.svc:8080",
                 "statefulset/rel-aimedres", "rel-aimedres-backup-{full,incremental,check,prune,verify}"):
        assert want in notes, (want, notes)
    # the default NetworkPolicy admits no in-cluster client: the notes say so, and how to add one
    assert "Clients inside the cluster: none yet" in notes and "networkPolicy.extraFrom" in notes, notes
    notes = render_notes(tmp_path, *MIN, "--set", "networkPolicy.extraFrom[0].ipBlock.cidr=10.0.5.0/24")
    assert "Clients inside the cluster: http://rel-aimedres.clinical.svc:8080, from the ingress" in notes, notes
    assert "none yet" not in notes
    notes = render_notes(tmp_path, *MIN, "--set", "networkPolicy.enabled=false")
    assert "Clients inside the cluster: http://rel-aimedres.clinical.svc:8080 (networkPolicy.enabled=false" in notes
    notes = render_notes(tmp_path, *ALL_ON, "--set", "ingress.host=ai.example.net")
    assert "Clients: https://ai.example.net/" in notes, notes


# --------------------------------------------------------------------------- review10 findings


def test_server_is_a_statefulset_of_one_with_the_charts_claims():
    """At most one server pod, even across a node partition: a StatefulSet creates the
    replacement only once the old pod is gone (a Deployment would start it at once, and the
    RWO volume is force-detached while the old pod may still write)."""
    for args in (MIN, ALL_ON, MIN + ["--set", "persistence.data.existingClaim=d1"]):
        docs = render(*args)
        assert not by_kind(docs, "Deployment") and not by_kind(docs, "ReplicaSet")
        sts = one(docs, SERVER)
        assert sts["apiVersion"] == "apps/v1"
        spec = sts["spec"]
        assert spec["replicas"] == 1
        assert spec["serviceName"] == one(docs, "Service")["metadata"]["name"]
        # Parallel: an unready pod (no model yet) must not block the upgrade that replaces it
        assert spec["podManagementPolicy"] == "Parallel"
        assert spec["updateStrategy"] == {"type": "RollingUpdate"}  # no partition, no maxUnavailable
        assert "volumeClaimTemplates" not in spec  # the claims of pvc.yaml / existingClaim
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["template"]["spec"]["volumes"]
                  if "persistentVolumeClaim" in v}
        made = {p["metadata"]["name"] for p in by_kind(docs, "PersistentVolumeClaim")}
        want = "d1" if "persistence.data.existingClaim=d1" in args else "aimedres-data"
        assert claims["data"] == want and (want == "d1" or want in made), (claims, made)
        validate(sts)


def cron_field(field, lo, hi):
    """The values of one cron time field (*, */n, a-b, a-b/n, a,b,...)."""
    out = set()
    for part in field.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a, b = (int(x) for x in rng.split("-"))
        else:
            a = b = int(rng)
        out |= set(range(a, b + 1, int(step or 1)))
    return out


def cron_starts(schedule):
    """{(weekday 0-6, hour, minute)} a weekly cron schedule starts at (day of month and month '*')."""
    m, hr, dom, mon, dow = schedule.split()
    assert dom == "*" and mon == "*", schedule
    days = {d % 7 for d in cron_field(dow, 0, 7)}
    return {(d, x, y) for d in days for x in cron_field(hr, 0, 23) for y in cron_field(m, 0, 59)}


def systemd_starts(oncalendar):
    """The same for the OnCalendar forms deploy/backup/systemd uses (fails on any other)."""
    names = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    if oncalendar == "hourly":
        return cron_starts("0 * * * *")
    m = re.fullmatch(r"(?:(\w{3}) )?\*-\*-\* (\d+)(?:/(\d+))?:(\d+):00(?: UTC)?", oncalendar)
    assert m, "OnCalendar form not understood here: %r" % oncalendar
    dow = str(names.index(m.group(1))) if m.group(1) else "*"
    hour = m.group(2) + ("-23/" + m.group(3) if m.group(3) else "")
    return cron_starts("%s %s * * %s" % (int(m.group(4)), hour, dow))


def test_prune_never_starts_with_another_backup_job():
    """prune takes the repository exclusively (waiting for readers): it must not start in the
    same minute as the hourly check (or any other job), in the chart, the cron file and the
    systemd timers."""
    chart = {name: cj["spec"]["schedule"] for name, cj in cronjobs(render(*MIN)).items()}
    cron = {args[1] if args[0] == "backup" else args[0]: sched for args, sched in cron_lines().items()}
    del cron["dr-drill"]  # quarterly on the 1st: not a weekly schedule (05:00, after prune)
    assert set(chart) == set(cron) == {"full", "incremental", "check", "prune", "verify"}
    timers = {}
    sysdir = os.path.join(ROOT, "deploy", "backup", "systemd")
    for f in sorted(os.listdir(sysdir)):
        m = re.fullmatch(r"aimedres-backup-(\w+)\.timer", f)
        if m:
            with open(os.path.join(sysdir, f)) as fh:
                timers[m.group(1)] = re.search(r"^OnCalendar=(.*)$", fh.read(), re.M).group(1).strip()
    assert set(timers) == set(chart), timers
    for where, starts in (("chart", {k: cron_starts(v) for k, v in chart.items()}),
                          ("cron file", {k: cron_starts(v) for k, v in cron.items()}),
                          ("systemd", {k: systemd_starts(v) for k, v in timers.items()})):
        assert starts["check"] and len(starts["check"]) == 7 * 24, where
        for other, times in starts.items():
            if other != "prune":
                both = starts["prune"] & times
                assert not both, "%s: prune starts with %s at %s" % (where, other, sorted(both)[:3])


def test_ingress_requires_trusted_proxies_and_a_host():
    err = render_fails(*MIN, "--set", "ingress.enabled=true")
    assert "config.TRUSTED_PROXIES is empty with ingress.enabled=true" in err, err
    assert "pod CIDR" in err and "lock out every client" in err and "source_ip" in err, err
    err = render_fails(*MIN, *INGRESS, "--set", "ingress.host=")
    assert "ingress.host is empty" in err, err
    # the value reaches the server, which accepts it
    data = configmap(render(*MIN, *INGRESS))
    assert data["TRUSTED_PROXIES"] == "10.244.0.0/16"
    r = h.run_cli(["config", "check"], env={"TRUSTED_PROXIES": data["TRUSTED_PROXIES"]})
    assert r.returncode == 0, r.stderr
    # without the Ingress, no proxy is in front: empty is right
    assert "TRUSTED_PROXIES" not in configmap(render(*MIN))


def test_numbers_from_a_values_file_render_as_the_binary_reads_them(tmp_path):
    vals = tmp_path / "numbers.yaml"
    vals.write_text("config:\n  BACKUP_MIN_FREE: 10000000000\n  DRIFT_WINDOW: 1000000\n"
                    "  MAX_BODY_BYTES: 2097152\n  ALERT_ERROR_RATE_CRITICAL: 0.05\n")
    docs = render(*ALL_ON, "-f", str(vals))
    data = configmap(docs)
    assert data["BACKUP_MIN_FREE"] == "10000000000", data["BACKUP_MIN_FREE"]
    assert data["DRIFT_WINDOW"] == "1000000", data["DRIFT_WINDOW"]
    assert data["MAX_BODY_BYTES"] == "2097152", data["MAX_BODY_BYTES"]
    assert data["ALERT_ERROR_RATE_CRITICAL"] == "0.05", data["ALERT_ERROR_RATE_CRITICAL"]
    ing = one(docs, "Ingress")
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "2097152"
    run = local_env(tmp_path, data)
    run["HOST"] = "0.0.0.0"
    secrets = make_secret_files(tmp_path, docs)
    r = h.run_cli(["config", "check"], env=dict(run, **secrets))
    assert r.returncode == 0 and "configuration OK" in r.stderr, r.stderr
    cfg = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert cfg["DRIFT_WINDOW"] == "1000000" and cfg["MAX_BODY_BYTES"] == "2097152", cfg
    assert cfg["ALERT_ERROR_RATE_CRITICAL"] == "0.05", cfg
    assert cfg["BACKUP_MIN_FREE"] in ("10000000000", "10G"), cfg["BACKUP_MIN_FREE"]


def test_credential_urls_come_from_the_existing_secret():
    for key in SECRET_URLS:
        err = render_fails(*MIN, "--set", "config.%s=http://user:pw@am.example:9093/hook/TOKEN" % key)
        assert "config.%s may carry a credential" % key in err and "existingSecret" in err, err
    docs = render(*ALL_ON, "--set", "secretKeys.alertWebhookUrl=webhook")
    assert not set(configmap(docs)) & set(SECRET_URLS)
    specs = pod_specs(docs)
    assert len(specs) == 6
    for name, spec in specs:
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        for key, secret_key in (("ALERTMANAGER_URL", "ALERTMANAGER_URL"), ("ALERT_WEBHOOK_URL", "webhook")):
            assert env[key]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": secret_key, "optional": True}, \
                (name, env[key])


def test_cronjob_names_stay_distinct_for_long_release_names():
    release = "clinical-decision-support-production"
    r = helm("template", release, CHART, "--namespace", "clinical", *MIN)
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    full = one(docs, "Service")["metadata"]["name"]
    assert full == release + "-aimedres"
    names = [cj["metadata"]["name"] for cj in by_kind(docs, "CronJob")]
    assert len(set(names)) == 5, names
    for n in names:
        assert len(n) <= 52, n
        prefix, job = re.fullmatch(r"(.*)-backup-(\w+)", n).groups()
        assert job in ("full", "incremental", "check", "prune", "verify"), n
        assert full.startswith(prefix), (n, full)
        assert cronjobs(docs)[job]["metadata"]["name"] == n
    # short names are kept whole
    assert sorted(cj["metadata"]["name"] for cj in by_kind(render(*MIN), "CronJob")) == [
        "aimedres-backup-" + j for j in ("check", "full", "incremental", "prune", "verify")]


def test_network_policy_extra_from_admits_in_cluster_clients(tmp_path):
    vals = tmp_path / "np.yaml"
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ehr"}},
              "podSelector": {"matchLabels": {"app": "ehr-gateway"}}},
             {"ipBlock": {"cidr": "10.0.5.0/24"}}]
    vals.write_text(yaml.safe_dump({"networkPolicy": {"extraFrom": peers}}))
    docs = render(*MIN, "-f", str(vals))
    np = one(docs, "NetworkPolicy")
    validate(np)
    got = {r["ports"][0]["port"]: r["from"] for r in np["spec"]["ingress"]}
    assert got["http"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}] \
        + peers, got["http"]
    assert got["metrics"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    # default: no extra peer
    got = {r["ports"][0]["port"]: r["from"] for r in one(render(*MIN), "NetworkPolicy")["spec"]["ingress"]}
    assert len(got["http"]) == 1


def test_unsupported_settings_and_names_are_refused():
    for v in ("true", "1", "yes", "ON"):
        err = render_fails(*MIN, "--set-string", "config.TLS_ENABLED=" + v)
        assert "config.TLS_ENABLED=true is not supported" in err and "terminate TLS at the Ingress" in err, err
    render(*MIN, "--set-string", "config.TLS_ENABLED=false")
    err = render_fails(*MIN, "--set", "config.LOG_FILE=/var/log/aimedres.log")
    assert "config.LOG_FILE is not supported" in err and "read-only" in err and "stderr" in err, err
    for bad in ("aimedres.prod", "Aimedres", "9aimedres", "aimedres_x"):
        err = render_fails(*MIN, "--set", "fullnameOverride=" + bad)
        assert "is not a DNS-1035 label" in err and bad in err, err
    err = render_fails(*MIN, "--set", "nameOverride=Med")  # fullname aimedres-Med
    assert "is not a DNS-1035 label" in err, err
    r = helm("template", "1st", CHART, *MIN)  # a valid release name, not a valid Service name
    assert r.returncode != 0 and "is not a DNS-1035 label" in r.stderr, r.stderr
    one(render(*MIN, "--set", "fullnameOverride=ai-med-01"), SERVER)
    # the pods' controller-revision-hash label (name + 11 characters) is limited to 63
    one(render(*MIN, "--set", "fullnameOverride=" + "a" * 52), SERVER)
    err = render_fails(*MIN, "--set", "fullnameOverride=" + "a" * 53)
    assert "at most 52" in err and "controller-revision-hash" in err, err
    r = helm("template", "hospital-north-campus-radiology-prod-eu1-blue", CHART, *MIN)
    assert r.returncode != 0 and "at most 52" in r.stderr, r.stderr
