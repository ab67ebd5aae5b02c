# SPDX-License-Identifier: Apache-2.0
"""The shipped nginx front end (deploy/nginx/aimedres.conf) in a real nginx (Debian's
/usr/sbin/nginx under Debian's own nginx.conf, started by the test on loopback ports with a
throwaway self-signed certificate) in front of a real `aimedres serve`: nginx accepts the file,
redirects HTTP to HTTPS, proxies health, readiness and predictions unchanged, adds HSTS without
doubling the server's headers, refuses large bodies and /metrics itself, does not let a client
choose its audited address, and refuses TLS 1.1. Only listen ports, certificate, log and ACME
paths and the upstream port are rewritten; everything else runs as shipped."""

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

import aimedres_harness as h

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONF = os.path.join(ROOT, "deploy", "nginx", "aimedres.conf")
NGINX = "/usr/sbin/nginx"
PARK = "parkinsons_predictor"
ONE_MIB = 1 << 20
HSTS = "max-age=31536000"


def shipped_text():
    with open(CONF) as f:
        return f.read()


def substitute(text, pairs):
    """Replaces each (old, new) exactly; a missing `old` means the shipped file changed under
    the test, which must fail rather than run something else."""
    for old, new in pairs:
        assert old in text, "deploy/nginx/aimedres.conf no longer contains %r" % old
        text = text.replace(old, new)
    return text


def make_cert(d):
    cert, key = os.path.join(d, "fullchain.pem"), os.path.join(d, "privkey.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key


DEBIAN_MAIN = "/etc/nginx/nginx.conf"


def wrapper(prefix, site):
    """Debian's own /etc/nginx/nginx.conf (whose http block includes conf.d/*.conf, and sets
    `ssl_protocols TLSv1 TLSv1.1 ...` that the site must override) with the site file as its only
    include and every path it writes moved into prefix."""
    with open(DEBIAN_MAIN) as f:
        text = f.read()
    temps = "".join("    %s_temp_path %s/%s;\n" % (t, prefix, t)
                    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # workers write request bodies to client_body_temp_path: as root, keep them root (the
    # pytest temp dir is 0700); not root, nginx ignores `user` and runs as the invoking user
    user = "user root;" if os.geteuid() == 0 else ""
    subs = [
        (r"(?m)^user \S+;", user + "\ndaemon off;"),
        (r"(?m)^worker_processes \S+;", "worker_processes 1;"),
        (r"(?m)^pid \S+;", "pid %s/nginx.pid;" % prefix),
        (r"(?m)^error_log \S+;", "error_log %s/error.log info;" % prefix),
        (r"(?m)^(\s*)access_log /var/log/nginx/access.log;", r"\1access_log %s/access-main.log;" % prefix),
        (r"(?m)^(\s*)include /etc/nginx/conf\.d/\*\.conf;", r"%s\1include %s;" % (temps, site)),
        (r"(?m)^\s*include /etc/nginx/sites-enabled/\*;\n", ""),
    ]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text)
        assert n == 1, "%s: expected one match of %r (Debian 12's file)" % (DEBIAN_MAIN, pattern)
    return text


class Nginx:
    """A private nginx running the shipped site file (rewritten for loopback ports)."""

    def __init__(self, workdir, upstream_port, site_pairs=None, cert=None):
        self.prefix = str(workdir)
        os.makedirs(self.prefix, exist_ok=True)
        self.cert, self.key = cert or make_cert(self.prefix)
        self.acme = os.path.join(self.prefix, "acme")
        os.makedirs(os.path.join(self.acme, ".well-known", "acme-challenge"))
        self.access_log = os.path.join(self.prefix, "access.log")
        self.https_port, self.http_port = h.free_port(), h.free_port()
        pairs = [
            ("listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % self.https_port),
            ("listen 80;", "listen 127.0.0.1:%d;" % self.http_port),
            ("/etc/ssl/aimedres/fullchain.pem", self.cert),
            ("/etc/ssl/aimedres/privkey.pem", self.key),
            ("/var/log/nginx/aimedres-access.log", self.access_log),
            ("root /var/www/acme;", "root %s;" % self.acme),
            ("server 127.0.0.1:8080;", "server 127.0.0.1:%d;" % upstream_port),
        ] + list(site_pairs or [])
        self.site = os.path.join(self.prefix, "aimedres.conf")
        with open(self.site, "w") as f:
            f.write(substitute(shipped_text(), pairs))
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(wrapper(self.prefix, self.site))
        self.proc = None

    def cmd(self, *extra):
        # no -p: Debian's prefix, where the modules of /etc/nginx/modules-enabled are found
        return [NGINX, "-e", os.path.join(self.prefix, "error.log"), "-c", self.conf] + list(extra)

    def start(self):
        r = subprocess.run(self.cmd("-t"), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        self.proc = subprocess.Popen(self.cmd(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=True)
        deadline = time.monotonic() + h.scaled(20)
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "nginx exited %s\n%s" % (self.proc.returncode, self.error_log())
            with contextlib.suppress(OSError):
                for port in (self.https_port, self.http_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            time.sleep(0.05)
        raise AssertionError("nginx did not listen within 20 s\n" + self.error_log())

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
        try:
            self.proc.wait(timeout=h.scaled(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def error_log(self):
        with contextlib.suppress(FileNotFoundError), open(os.path.join(self.prefix, "error.log")) as f:
            return f.read()[-3000:]
        return ""

    def url(self, path, https=True):
        return ("https://127.0.0.1:%d%s" % (self.https_port, path) if https
                else "http://127.0.0.1:%d%s" % (self.http_port, path))

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.cert)

    def raw(self, method, path, headers=None, body=b"", source="127.0.0.1"):
        """One HTTPS request over a fresh connection from `source`; returns (status, [(name, value)],
        body) with every header field as sent (requests folds repeated ones)."""
        sock = socket.create_connection(("127.0.0.1", self.https_port), timeout=h.scaled(15),
                                        source_address=(source, 0))
        with self.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(h.build_request(method, path, body,
                                        dict({"Connection": "close"}, **(headers or {}))))
            resp = http.client.HTTPResponse(tls, method=method)
            resp.begin()
            return resp.status, resp.getheaders(), resp.read()


@pytest.fixture(scope="module")
def stack(demo_dir, tmp_path_factory):
    """(server, nginx, audit log path): aimedres with TRUSTED_PROXIES=127.0.0.1 and an audit log,
    behind nginx. Both are stopped at teardown whatever happened; the server must exit 0."""
    work = tmp_path_factory.mktemp("nginx-stack")
    audit = str(work / "audit" / "audit.log")
    srv = h.start_server(demo_dir, str(work / "srv"), {
        "TRUSTED_PROXIES": "127.0.0.1", "AUDIT_LOG_PATH": audit, "SECRET_KEY": "k" * 40})
    ngx = None
    try:
        ngx = Nginx(work / "nginx", srv.port)
        ngx.start()
        yield srv, ngx, audit
    finally:
        if ngx is not None:
            ngx.stop()
        rc, killed = srv.stop()
        assert not killed and rc == 0, "server exit %s (killed %s)\n%s" % (rc, killed, srv.log_tail())


@pytest.fixture
def session(stack):
    s = requests.Session()
    s.trust_env = False
    s.verify = stack[1].cert
    yield s
    s.close()


def test_nginx_accepts_the_shipped_file(tmp_path):
    """`nginx -t` on the file as shipped (ports 80/443 and the upstream 127.0.0.1:8080 unchanged),
    once the certificate exists: only the certificate, log and ACME paths point into tmp_path."""
    assert os.access(NGINX, os.X_OK), "nginx (Debian package nginx) is needed: scripts/install-deps.sh"
    cert, key = make_cert(str(tmp_path))
    site = tmp_path / "aimedres.conf"
    site.write_text(substitute(shipped_text(), [
        ("/etc/ssl/aimedres/fullchain.pem", cert), ("/etc/ssl/aimedres/privkey.pem", key),
        ("/var/log/nginx/aimedres-access.log", str(tmp_path / "access.log")),
        ("root /var/www/acme;", "root %s;" % tmp_path)]))
    conf = tmp_path / "nginx.conf"
    conf.write_text(wrapper(str(tmp_path), str(site)))
    r = subprocess.run([NGINX, "-t", "-e", str(tmp_path / "error.log"), "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr and "test is successful" in r.stderr, r.stderr
    assert "[warn]" not in r.stderr and "[emerg]" not in r.stderr, r.stderr
    # and without the certificate it is refused (the placeholders are real paths, not defaults)
    site.write_text(site.read_text().replace(cert, str(tmp_path / "missing.pem")))
    r = subprocess.run([NGINX, "-t", "-e", str(tmp_path / "error.log"), "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "missing.pem" in r.stderr, r.stderr


def test_shipped_file_logs_no_query_strings_or_bodies():
    text = shipped_text()
    fmt = text[text.index("log_format"):text.index(";", text.index("log_format"))]
    for var in ("$request_body", "$args", "$query_string", "$request ", "$request_uri", "$http_"):
        assert var not in fmt, (var, fmt)
    assert "client_max_body_size 1m;" in text
    r = h.run_cli(["config", "check"], env={})
    cfg = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert cfg["MAX_BODY_BYTES"] in ("1M", "1048576", "1MiB"), cfg["MAX_BODY_BYTES"]


def test_http_redirects_to_https_except_acme(stack):
    srv, ngx, _ = stack
    s = requests.Session()
    s.trust_env = False
    r = s.get(ngx.url("/health?probe=1", https=False), headers={"Host": "aimedres.example"},
              allow_redirects=False, timeout=h.scaled(10))
    assert r.status_code == 301, r.text
    assert r.headers["Location"] == "https://aimedres.example/health?probe=1", r.headers
    r = s.post(ngx.url("/api/v1/models/%s/predict" % PARK, https=False), json={}, allow_redirects=False,
               timeout=h.scaled(10))
    assert r.status_code == 301, r.text  # never proxied in clear text
    token = os.path.join(ngx.acme, ".well-known", "acme-challenge", "tok-123")
    with open(token, "w") as f:
        f.write("tok-123.thumb")
    r = s.get(ngx.url("/.well-known/acme-challenge/tok-123", https=False), allow_redirects=False,
              timeout=h.scaled(10))
    assert r.status_code == 200 and r.text == "tok-123.thumb", (r.status_code, r.text)


def test_health_and_ready_through_https(stack, session):
    srv, ngx, _ = stack
    for path in ("/health", "/ready"):
        direct = srv.get(path)
        r = session.get(ngx.url(path + "?patient_id=SHOULD-NOT-BE-LOGGED"), timeout=h.scaled(15))
        assert r.status_code == direct.status_code == 200, (path, r.status_code, r.text)
        assert set(r.json()) == set(direct.json()), (r.json(), direct.json())
        if path == "/ready":
            assert r.json()["ready"] is True, r.json()
        h.assert_security_headers(r)
    rid = r.headers["X-Request-ID"]
    # the request id nginx made is the server's (its access log line carries it too)
    deadline = time.monotonic() + 5
    log = ""
    while time.monotonic() < deadline and rid not in log:
        with open(ngx.access_log) as f:
            log = f.read()
        time.sleep(0.05)
    assert "rid=%s" % rid in log, log[-1000:]
    assert "SHOULD-NOT-BE-LOGGED" not in log and '"GET /ready HTTP/1.1" 200' in log, log[-1000:]


def test_predict_through_https_equals_direct(stack, session, demo_manifests):
    srv, ngx, _ = stack
    for frac in (0.2, 0.5, 0.8):
        body = {"features": h.valid_features(demo_manifests[PARK], frac), "patient_id": "nginx-p%g" % frac}
        direct = srv.predict(PARK, body)
        r = session.post(ngx.url("/api/v1/models/%s/predict" % PARK), json=body, timeout=h.scaled(15))
        assert r.status_code == direct.status_code == 200, (r.status_code, r.text, direct.text)
        a, b = r.json(), direct.json()
        assert a["prediction_id"] != b["prediction_id"]
        for key in set(a) | set(b):
            if key not in ("prediction_id", "request_id", "timestamp", "latency_ms", "created_at"):
                assert a.get(key) == b.get(key), (key, a.get(key), b.get(key))
        assert srv.prediction_row(a["prediction_id"]) is not None


def test_security_headers_once_and_hsts_from_nginx(stack):
    srv, ngx, _ = stack
    for method, path, body in (("GET", "/health", b""), ("GET", "/api/v1/models/nope", b""),
                               ("POST", "/api/v1/models/%s/predict" % PARK, b"{")):
        hdrs = {"Content-Type": "application/json"} if body else {}
        status, fields, _ = ngx.raw(method, path, hdrs, body)
        names = [k.lower() for k, _ in fields]
        got = {k.lower(): v for k, v in fields}
        for name, want in dict(h.SECURITY_HEADERS, **{"strict-transport-security": HSTS}).items():
            assert names.count(name) == 1, (path, status, name, fields)
            assert got[name] == want, (path, name, got[name])
        assert names.count("x-request-id") == 1, fields
    # the server itself sends no HSTS without TLS: it comes from nginx
    assert "Strict-Transport-Security" not in srv.get("/health").headers


def test_body_over_one_mib_is_413_from_nginx(stack, session):
    srv, ngx, _ = stack
    url = ngx.url("/api/v1/models/%s/predict" % PARK)
    pad = '{"features":{},"pad":"%s"}'
    big = (pad % ("x" * (ONE_MIB + 1 - len(pad % "")))).encode()
    assert len(big) == ONE_MIB + 1
    r = session.post(url, data=big, headers={"Content-Type": "application/json"}, timeout=h.scaled(30))
    err = h.assert_error_body(r, 413, "payload_too_large")
    assert "client_max_body_size" in err["message"], err  # nginx's answer, not the server's
    assert r.headers["Strict-Transport-Security"] == HSTS
    # exactly 1 MiB passes nginx and the server (same limit on both): the server judges the body
    ok = (pad % ("x" * (ONE_MIB - len(pad % "")))).encode()
    assert len(ok) == ONE_MIB
    r = session.post(url, data=ok, headers={"Content-Type": "application/json"}, timeout=h.scaled(30))
    assert r.status_code != 413 and r.status_code in (400, 422), (r.status_code, r.text[:300])
    h.assert_error_body(r, r.status_code)


def test_bodies_and_answers_never_touch_nginx_temp_files(stack, session, demo_manifests):
    """A large batch (its features are patient data) passes through nginx in memory: nginx logs
    a warning whenever it buffers a body (or an answer) to a temporary file on disk."""
    srv, ngx, _ = stack
    rows = h.valid_instances(demo_manifests[PARK], 256)
    body = json.dumps({"instances": rows}).encode()
    assert len(body) > 64 * 1024, len(body)  # far above nginx's default 16 KiB body buffer
    r = session.post(ngx.url("/api/v1/models/%s/predict" % PARK), data=body,
                     headers={"Content-Type": "application/json"}, timeout=h.scaled(30))
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["predictions"]) == len(rows)
    log = ngx.error_log()
    assert "temporary file" not in log, log[-1500:]
    for d in ("client_body", "proxy"):
        assert not os.listdir(os.path.join(ngx.prefix, d)), d


def test_metrics_refused_through_nginx(stack, session):
    srv, ngx, _ = stack
    direct = srv.get("/metrics")
    assert direct.status_code == 200 and "http_requests_total" in direct.text, direct.text[:200]
    for path in ("/metrics", "/metrics/", "/metrics?x=1", "//metrics", "/%6Detrics", "/./metrics"):
        status, fields, body = ngx.raw("GET", path)
        assert status == 404, (path, status, body[:200])
        assert b"http_requests_total" not in body, (path, body[:200])
        assert json.loads(body)["error"]["code"] == "not_found", (path, body)
    r = session.get(ngx.url("/metrics"), timeout=h.scaled(10))
    h.assert_error_body(r, 404, "not_found")


def test_client_forwarded_for_is_not_the_audited_address(stack, demo_manifests):
    """A client at 127.0.0.2 (not a trusted proxy) claims 203.0.113.9 in X-Forwarded-For. nginx
    appends the address it saw; with TRUSTED_PROXIES=127.0.0.1 the server takes the right-most
    untrusted entry, so the audit names 127.0.0.2, never 203.0.113.9 (and not nginx's 127.0.0.1).
    The client is on 127.0.0.2 because one on 127.0.0.1 would itself be a trusted proxy."""
    srv, ngx, audit = stack
    body = json.dumps({"features": h.valid_features(demo_manifests[PARK]),
                       "patient_id": "xff-nginx"}).encode()
    status, fields, resp = ngx.raw("POST", "/api/v1/models/%s/predict" % PARK,
                                   {"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"},
                                   body, source="127.0.0.2")
    assert status == 200, resp[:300]
    pid = json.loads(resp)["prediction_id"]
    rid = dict((k.lower(), v) for k, v in fields)["x-request-id"]
    recs = []
    deadline = time.monotonic() + h.scaled(5)
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError), open(audit) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        if any(x.get("detail", {}).get("prediction_id") == pid for x in recs):
            break
        time.sleep(0.05)
    inf = [x for x in recs if x["type"] == "MODEL_INFERENCE" and x["detail"].get("prediction_id") == pid]
    assert len(inf) == 1, recs[-3:]
    assert inf[0]["source_ip"] == "127.0.0.2", inf[0]
    assert inf[0]["request_id"] == rid, (inf[0]["request_id"], rid)
    assert "203.0.113.9" not in json.dumps(recs)


def tls_handshake(port, version, cafile=None, ciphers=None):
    """Handshakes with the TLS version pinned; returns the negotiated version or raises ssl.SSLError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=h.scaled(10)) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            return tls.version()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls11_refused_tls12_and_13_accepted(stack):
    srv, ngx, _ = stack
    legacy = "DEFAULT:@SECLEVEL=0"  # lets this client offer TLS 1.1 at all (OpenSSL 3 forbids it at level 1+)
    # control: this client does complete a TLS 1.1 handshake with a server that allows it
    cert, key = ngx.cert, ngx.key
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.minimum_version = ssl.TLSVersion.TLSv1
    sctx.set_ciphers(legacy)
    sctx.load_cert_chain(cert, key)
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(h.scaled(10))

    def serve_one():
        with contextlib.suppress(OSError):
            conn, _ = lsock.accept()
            with contextlib.suppress(OSError, ssl.SSLError), sctx.wrap_socket(conn, server_side=True) as t:
                t.recv(1)
    t = threading.Thread(target=serve_one)
    t.start()
    try:
        assert tls_handshake(lsock.getsockname()[1], ssl.TLSVersion.TLSv1_1, ciphers=legacy) == "TLSv1.1"
    finally:
        t.join(h.scaled(10))
        lsock.close()
    with pytest.raises(ssl.SSLError):
        tls_handshake(ngx.https_port, ssl.TLSVersion.TLSv1_1, ciphers=legacy)
    assert tls_handshake(ngx.https_port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert tls_handshake(ngx.https_port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    # TLS 1.2 without ECDHE + AEAD is refused too
    with pytest.raises(ssl.SSLError):
        tls_handshake(ngx.https_port, ssl.TLSVersion.TLSv1_2,
                      ciphers="ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA")


def test_server_down_gives_503_json(tmp_path):
    """nginx in front of a port where nothing listens answers 503 in the server's error format."""
    ngx = Nginx(tmp_path / "nginx", h.free_port())
    try:
        ngx.start()
        s = requests.Session()
        s.trust_env = False
        r = s.get(ngx.url("/health"), verify=ngx.cert, timeout=h.scaled(15))
        h.assert_error_body(r, 503, "service_unavailable")
        assert r.headers["Strict-Transport-Security"] == HSTS and r.headers.get("Retry-After") == "5"
    finally:
        ngx.stop()
    assert ngx.proc.returncode is not None
