# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of native TLS (TLS_ENABLED): certificates generated with the openssl CLI;
TLS 1.2 and 1.3 work and answer with HSTS; TLS 1.1 (forced with openssl s_client at security
level 0, so the client really offers it) and plain HTTP on the TLS port are refused;
TLS_MIN_VERSION=1.3 refuses 1.2; non-ECDHE or non-AEAD TLS 1.2 ciphers are refused; bad
certificate settings stop the server from starting; API keys work over TLS."""

import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest
import requests

import aimedres_harness as h
import auth_helpers as a


class TlsServer(h.Server):
    def __init__(self, root, cafile, **kw):
        super().__init__(root, **kw)
        self.session.verify = cafile

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.port, path)


def make_cert(d, kind="rsa"):
    key, cert = str(d / ("%s-key.pem" % kind)), str(d / ("%s-cert.pem" % kind))
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    a.openssl("req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj",
              "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    return cert, key


@pytest.fixture
def tls_server(demo_dir, tmp_path):
    started = []

    def factory(extra=None, kind="rsa"):
        cert, key = make_cert(tmp_path, kind)
        env = {"TLS_ENABLED": "true", "TLS_CERT_PATH": cert, "TLS_KEY_PATH": key, "LOG_LEVEL": "WARNING"}
        env.update(extra or {})
        root = h.copy_demo(demo_dir, str(tmp_path / ("demo%d" % len(started))))
        srv = TlsServer(root, cert, extra_env=env)
        started.append(srv)
        return srv.start()

    yield factory
    for srv in started:
        rc, killed = srv.stop()
        assert not killed and rc == 0, srv.log_tail()


def handshake(port, cafile, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.minimum_version = version
    ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return s.version(), s.cipher(), data


def s_client(port, *args):
    """openssl s_client, allowing the client every protocol (SECLEVEL 0); returns (ok, output)."""
    r = a.openssl("s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "127.0.0.1", *args,
                  check=False, input_bytes=b"Q\n", timeout=30)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    ok = "Cipher is (NONE)" not in out and "Cipher is" in out and r.returncode == 0
    return ok, out


def test_tls12_and_tls13_work_with_hsts(tls_server):
    srv = tls_server()
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        got, cipher, data = handshake(srv.port, srv.session.verify, version)
        assert got == name, got
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        assert b"Strict-Transport-Security: max-age=31536000; includeSubDomains" in data, data[:600]
        if name == "TLSv1.2":
            assert cipher[0].startswith("ECDHE-") and ("GCM" in cipher[0] or "CHACHA20" in cipher[0]), cipher
    r = srv.get("/health")
    assert r.status_code == 200 and r.headers["Strict-Transport-Security"].startswith("max-age=")


def old_protocol_error(port, version):
    """Connects offering only `version` (client security level 0, so the client really offers
    it); returns the SSLError text, or None if the handshake succeeded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw):
                return None
    except ssl.SSLError as e:
        return str(e)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls11_refused(tls_server):
    srv = tls_server()
    for version in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        err = old_protocol_error(srv.port, version)
        # the alert comes from the server: the client did offer the old protocol
        assert err is not None and "ALERT_PROTOCOL_VERSION" in err, (version, err)
    assert old_protocol_error(srv.port, ssl.TLSVersion.TLSv1_2) is None  # same client, 1.2: fine
    ok, out = s_client(srv.port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert not ok, out
    assert "protocol version" in out or "alert" in out, out
    # the same client, same options, TLS 1.2: works (so the refusal above is the server's)
    ok, out = s_client(srv.port, "-tls1_2", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert ok and "TLSv1.2" in out, out


def test_weak_tls12_ciphers_refused(tls_server):
    srv = tls_server()
    for weak in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA", "DHE-RSA-AES128-GCM-SHA256"):
        ok, out = s_client(srv.port, "-tls1_2", "-cipher", weak + ":@SECLEVEL=0")
        assert not ok, "cipher %s accepted:\n%s" % (weak, out)
    ok, out = s_client(srv.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert ok, out


def test_plain_http_on_tls_port_refused(tls_server):
    srv = tls_server()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert b"HTTP/1.1" not in data and b"healthy" not in data, data[:200]
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get("http://127.0.0.1:%d/health" % srv.port, timeout=5)
    assert srv.get("/health").status_code == 200  # still serving TLS afterwards


def test_min_version_13(tls_server):
    srv = tls_server({"TLS_MIN_VERSION": "1.3"}, kind="ec")
    got, _, data = handshake(srv.port, srv.session.verify, ssl.TLSVersion.TLSv1_3)
    assert got == "TLSv1.3" and data.startswith(b"HTTP/1.1 200")
    with pytest.raises(ssl.SSLError):
        handshake(srv.port, srv.session.verify, ssl.TLSVersion.TLSv1_2)


def test_a_client_that_resets_does_not_close_another_clients_connection(tls_server):
    """review19: a client that read part of an answer and closed its socket (a reset) left an
    error in the worker's OpenSSL error queue after SSL_shutdown; the next SSL_read on another
    connection of that worker took it for its own and closed that connection unanswered
    (9 of 10 runs with one worker)."""
    srv = tls_server({"MAX_WORKERS": "1"})
    ctx = ssl.create_default_context(cafile=srv.session.verify)

    def conn():
        return ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=10),
                               server_hostname="127.0.0.1")

    for i in range(10):
        a_ = conn()
        a_.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        a_.recv(20)  # part of the answer only: the rest is unread when it closes (a reset)
        b = conn()
        a_.close()
        b.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b.recv(100)
        b.close()
        assert got.startswith(b"HTTP/1.1 200"), (i, got)


def test_api_key_over_tls(tls_server):
    srv = tls_server(a.auth_env())
    _, key, _ = a.create_key(a.server_env(srv), "tls", "clinician")
    body = {"features": h.valid_features(srv.manifest("parkinsons_predictor"))}
    r = srv.predict("parkinsons_predictor", body, headers={"Authorization": "Bearer " + key})
    assert r.status_code == 200, r.text
    assert srv.predict("parkinsons_predictor", body).status_code == 401


def test_bad_tls_settings_refuse_to_start(demo_dir, tmp_path):
    cert, key = make_cert(tmp_path, "rsa")
    other_cert, _ = make_cert(tmp_path, "ec")
    cases = [
        ({"TLS_CERT_PATH": str(tmp_path / "missing.pem"), "TLS_KEY_PATH": key}, "TLS_CERT_PATH"),
        ({"TLS_CERT_PATH": other_cert, "TLS_KEY_PATH": key}, "does not match"),
        ({"TLS_CERT_PATH": cert}, "TLS_KEY_PATH"),
    ]
    for i, (env, needle) in enumerate(cases):
        env = dict(env, TLS_ENABLED="true")
        root = h.copy_demo(demo_dir, str(tmp_path / ("bad%d" % i)))
        srv = TlsServer(root, cert, extra_env=env)
        with pytest.raises(h.ServerStartError) as e:
            srv.start()
        srv.stop(timeout=5)
        assert srv.returncode == 1 and needle in str(e.value), str(e.value)


def test_the_clis_speak_https_to_a_tls_server(tls_server, tmp_path):
    """review58 #4: with TLS_ENABLED=true, deploy, verify and smoke defaulted to http:// (the
    API key went in clear to the TLS port, then "Connection reset") and refused https:// URLs.
    They speak https now, verifying the certificate and the name dialled."""
    srv = tls_server(a.auth_env())
    env = a.server_env(srv)
    _, admin, _ = a.create_key(env, "ops", "admin")
    cli = dict(env, PORT=str(srv.port), HOST="127.0.0.1", AIMEDRES_API_KEY=admin)
    base = "https://127.0.0.1:%d" % srv.port

    def run(args, **extra):
        r = h.run_cli(args, env=dict(cli, **extra))
        return r.returncode, r.stdout + r.stderr

    # the default URL is https, trusting the server's own certificate (TLS_CERT_PATH)
    rc, o = run(["smoke"])
    assert rc == 0 and base in o, o
    rc, o = run(["deploy", "status"])  # every deployment (none yet)
    assert rc == 0, o
    rc, o = run(["verify", "--url", base], AIMEDRES_CA_FILE=env["TLS_CERT_PATH"])
    assert rc == 0, o
    # a certificate that is not trusted, or that does not name the host dialled: refused
    (tmp_path / "other").mkdir()
    other, _ = make_cert(tmp_path / "other")
    rc, o = run(["smoke"], AIMEDRES_CA_FILE=other)
    assert rc == 1 and "the server's certificate is not trusted" in o, o
    rc, o = run(["smoke", "--url", "https://localhost:%d" % srv.port], AIMEDRES_CA_FILE=env["TLS_CERT_PATH"])
    assert rc == 1 and "the server's certificate is not trusted (hostname mismatch)" in o, o
    rc, o = run(["deploy", "status", "parkinsons_predictor", "--url", "ftp://127.0.0.1:1"])
    assert rc != 0 and "URL must start with http:// or https://" in o, o
    rc, o = run(["smoke", "--url", base + "/prefix"])  # review59: was dropped silently
    assert rc == 2 and "a path, query or fragment is not supported" in o, o


def make_ca_and_leaf(d):
    """A CA and a leaf it issued for localhost and web-1.example.org (not 127.0.0.1); returns
    (ca, leaf chain file: leaf then CA, leaf alone, leaf key)."""
    ca_key, ca = str(d / "ca-key.pem"), str(d / "ca.pem")
    a.openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
              "-subj", "/CN=test hospital CA", "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign")
    key, csr, leaf = str(d / "leaf-key.pem"), str(d / "leaf.csr"), str(d / "leaf.pem")
    a.openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=web-1.example.org")
    ext = d / "leaf.ext"
    ext.write_text("subjectAltName=DNS:localhost,DNS:web-1.example.org\n")
    a.openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", leaf, "-days", "2",
              "-extfile", str(ext))
    chain = str(d / "chain.pem")
    with open(chain, "w") as f:
        f.write(open(leaf).read() + open(ca).read())
    return ca, chain, leaf, key


def test_the_clis_trust_a_ca_issued_certificate_and_read_the_servers_env_file(demo_dir, tmp_path):
    """review59 #1: the server's own certificate was trusted only when self-signed (a CA-issued
    one failed with "unable to get local issuer certificate", also through AIMEDRES_CA_FILE), and
    the default URL's 127.0.0.1 is a name real certificates do not hold. review59 #2: the
    commands read TLS_ENABLED from the environment only, so with the documented env file they
    sent the key in clear to the TLS port. Now: the server's own certificate (TLS_CERT_PATH) is
    pinned, AIMEDRES_CA_FILE may hold a CA or the leaf, --env-file reads the server's settings,
    and an http:// URL to the TLS port is refused before anything is sent."""
    ca, chain, leaf, key = make_ca_and_leaf(tmp_path)
    root = h.copy_demo(demo_dir, str(tmp_path / "demo"))

    class ByName(TlsServer):  # the certificate names localhost, not 127.0.0.1
        def url(self, path):
            return "https://localhost:%d%s" % (self.port, path)

    srv = ByName(root, ca, extra_env={"TLS_ENABLED": "true", "TLS_CERT_PATH": chain, "TLS_KEY_PATH": key,
                                      "LOG_LEVEL": "WARNING"})
    srv.start()
    try:
        envfile = tmp_path / "aimedres.env"
        envfile.write_text("TLS_ENABLED=true\nTLS_CERT_PATH=%s\nPORT=%d\n" % (chain, srv.port))
        plain = {k: v for k, v in srv.env.items() if not k.startswith("TLS_") and k not in ("PORT", "HOST")}

        def run(args, **extra):
            r = h.run_cli(args, env=dict(plain, **extra))
            return r.returncode, r.stdout + r.stderr

        rc, o = run(["smoke", "--env-file", str(envfile)])  # https, the server's own certificate pinned
        assert rc == 0 and "https://127.0.0.1:%d" % srv.port in o, o
        rc, o = run(["deploy", "status", "--env-file", str(envfile)])
        assert rc == 0, o
        for trust in (ca, leaf):  # a CA, or the leaf itself, as the anchor; the name must match
            rc, o = run(["smoke", "--url", "https://localhost:%d" % srv.port], AIMEDRES_CA_FILE=trust)
            assert rc == 0, (trust, o)
        rc, o = run(["smoke", "--url", "https://127.0.0.1:%d" % srv.port], AIMEDRES_CA_FILE=ca)
        assert rc == 1 and "the server's certificate is not trusted (IP address mismatch)" in o, o
        # the env file says TLS: an http:// URL to its port would send the key in clear
        rc, o = run(["verify", "--env-file", str(envfile), "--url", "http://127.0.0.1:%d" % srv.port],
                    AIMEDRES_API_KEY="amr_0123456789abcdef_" + "A" * 43)
        assert rc == 2 and "would send the request, and its API key, in clear; use https://" in o, o
        # review60 #3: this machine by another spelling is still the server's TLS port
        for host in ("LOCALHOST", "0.0.0.0", "[::ffff:127.0.0.1]", "2130706433"):
            rc, o = run(["smoke", "--env-file", str(envfile), "--url", "http://%s:%d" % (host, srv.port)])
            assert rc == 2 and "use https://" in o, (host, o)
        # review61 #1: PORT as serve reads it, leading zeros and all
        rc, o = run(["smoke", "--url", "http://127.0.0.1:%d" % srv.port], TLS_ENABLED="true",
                    PORT="0000000%d" % srv.port)
        assert rc == 2 and "use https://" in o, o
        # review60 #2: the pin is this server's only: another TLS server is checked against the CAs
        (tmp_path / "other").mkdir()
        other, other_key = make_cert(tmp_path / "other")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        other_port = s.getsockname()[1]
        s.close()
        peer = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % other_port, "-cert", other,
                                 "-key", other_key, "-www", "-quiet"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + h.scaled(10)
            while True:  # listening (a refused connection would be another finding)
                assert peer.poll() is None, "openssl s_server exited"
                try:
                    socket.create_connection(("127.0.0.1", other_port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "openssl s_server never listened"
                    time.sleep(0.05)
            rc, o = run(["smoke", "--env-file", str(envfile), "--url", "https://localhost:%d" % other_port])
            assert rc == 1 and "the server's certificate is not trusted" in o, o
            assert "configured with" not in o, o
        finally:
            peer.kill()
            peer.wait()
        # another certificate configured than the server presents
        rc, o = run(["smoke"], TLS_ENABLED="true", TLS_CERT_PATH=other, PORT=str(srv.port))
        assert rc == 1 and "does not present the certificate this machine's server is configured with" in o, o
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed, srv.log_tail()


def presented(port):
    """The DER of the certificate the server presents now (no verification: identity only)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert(binary_form=True)


def cert_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def not_after(path):
    out = a.openssl("x509", "-in", path, "-noout", "-enddate").stdout.decode()
    return int(time.mktime(time.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")) - time.timezone)


def test_a_renewed_certificate_is_served_without_a_restart(tls_server, tmp_path):
    """A renewed certificate (certbot, a Kubernetes secret) is picked up when its files change,
    or on SIGHUP: new connections get it, open ones keep working, a renewal that does not load
    leaves the server presenting the certificate it has, and /metrics tells when the served
    certificate expires. A certificate expiring within 14 days is warned about."""
    srv = tls_server({"LOG_LEVEL": "INFO"})
    cert, key = srv.env["TLS_CERT_PATH"], srv.env["TLS_KEY_PATH"]
    assert presented(srv.port) == cert_der(cert)
    assert "TLS certificate expires soon" in srv.log_tail(200)  # make_cert: 2 days

    def expiry():
        m = re.search(r"^tls_certificate_expiry_timestamp_seconds (\d+)$", srv.get("/metrics").text, re.M)
        assert m, "no tls_certificate_expiry_timestamp_seconds"
        return int(m.group(1))
    assert expiry() == not_after(cert)

    # an open keep-alive connection made with the old certificate
    old = srv.session
    assert old.get(srv.url("/health")).status_code == 200

    renewed = tmp_path / "renewed"
    renewed.mkdir()
    a.openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(renewed / "key.pem"), "-out",
              str(renewed / "cert.pem"), "-days", "90", "-subj", "/CN=127.0.0.1", "-addext",
              "subjectAltName=IP:127.0.0.1")
    os.replace(renewed / "key.pem", key)  # as a renewal does: whole files replaced
    os.replace(renewed / "cert.pem", cert)
    deadline = time.monotonic() + h.scaled(10)
    while presented(srv.port) != cert_der(cert):
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.2)
    assert expiry() == not_after(cert)
    assert old.get(srv.url("/health")).status_code == 200  # the open connection still works
    fresh = requests.Session()
    fresh.trust_env = False  # else REQUESTS_CA_BUNDLE, when set, replaces verify
    fresh.verify = cert
    assert fresh.get(srv.url("/health")).status_code == 200
    log = srv.log_tail(400)
    assert '"msg":"TLS certificate reloaded"' in log and '"trigger":"files changed"' in log, log

    # a damaged renewal: the server keeps presenting what it has, and says why
    good = open(cert).read()
    with open(renewed / "served.pem", "w") as f:
        f.write(good)
    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    deadline = time.monotonic() + h.scaled(10)
    while "TLS certificate not reloaded" not in srv.log_tail(400):
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.2)
    assert presented(srv.port) == cert_der(str(renewed / "served.pem"))
    assert fresh.get(srv.url("/health")).status_code == 200
    with open(cert, "w") as f:
        f.write(good)
    # SIGHUP reloads too (after the poll has seen the restored file, or in its place)
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + h.scaled(10)
    while '"trigger":"SIGHUP"' not in srv.log_tail(400):
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.2)
    assert presented(srv.port) == cert_der(cert)
    assert fresh.get(srv.url("/health")).status_code == 200


def test_an_expired_certificate_is_named_at_start(demo_dir, tmp_path):
    """serve starts with an expired certificate (it may be renewed any moment, and the files are
    watched) but says so at ERROR, and the expiry metric is in the past (TLSCertificateExpiry)."""
    key, cert = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    subprocess.run(h.faketime("-10d") + ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                                        "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    # config check passes (serve starts with it) but warns (review65 #7)
    r = h.run_cli(["config", "check"], env={"TLS_ENABLED": "true", "TLS_CERT_PATH": cert, "TLS_KEY_PATH": key})
    assert r.returncode == 0 and "warning: TLS_CERT_PATH: the certificate expired at" in r.stderr, r.stderr
    root = h.copy_demo(demo_dir, str(tmp_path / "demo"))
    srv = TlsServer(root, cert, extra_env={"TLS_ENABLED": "true", "TLS_CERT_PATH": cert, "TLS_KEY_PATH": key})
    srv.session.verify = False
    srv.start()
    try:
        log = srv.log_tail(200)
        assert '"level":"ERROR"' in log and "TLS certificate has expired" in log, log
        m = re.search(r"^tls_certificate_expiry_timestamp_seconds (\d+)$", srv.get("/metrics").text, re.M)
        assert m and int(m.group(1)) == not_after(cert) and int(m.group(1)) < time.time(), m
    finally:
        rc, killed = srv.stop()
        assert not killed and rc == 0, srv.log_tail()


def test_an_expired_renewal_does_not_replace_a_valid_certificate(tls_server, tmp_path):
    """review63 #4: a renewal that has expired (a stale file restored, a wrong copy) replaced a
    working certificate, and every client then refused the server. It is refused now: the
    server keeps presenting the valid one and says why."""
    srv = tls_server()
    cert, key = srv.env["TLS_CERT_PATH"], srv.env["TLS_KEY_PATH"]
    good = cert_der(cert)
    stale = tmp_path / "stale"
    stale.mkdir()
    with open(cert) as f, open(stale / "good.pem", "w") as g:
        g.write(f.read())
    subprocess.run(h.faketime("-10d") + ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                                        str(stale / "key.pem"), "-out", str(stale / "cert.pem"), "-days", "2",
                                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    os.replace(stale / "key.pem", key)
    os.replace(stale / "cert.pem", cert)
    deadline = time.monotonic() + h.scaled(10)
    while "the new one has expired" not in srv.log_tail(200):
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.2)
    assert presented(srv.port) == good
    fresh = requests.Session()
    fresh.trust_env = False
    fresh.verify = str(stale / "good.pem")
    assert fresh.get(srv.url("/health")).status_code == 200  # a new client still verifies it
