# SPDX-License-Identifier: Apache-2.0
"""End-to-end harness: runs the real `aimedres` binary (AIMEDRES_BIN) on demo models in a
private copy of the demo directory, on a free loopback port, and talks HTTP to it with
requests (or raw sockets for what requests cannot send). Used by tests/e2e/conftest.py."""

import contextlib
import fcntl
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time

import requests

BIN = os.environ.get("AIMEDRES_BIN", "")
SRC = os.environ.get("AIMEDRES_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
DEMO_MODELS = ("alzheimer_classifier", "parkinsons_predictor", "als_classifier")
# Wall-clock allowance factor (>= 1) for code that runs slower than a plain build: set by
# scripts/test-sanitize.sh (ASan+UBSan runs the server 2-5x slower). Tests multiply their waits
# and time allowances by it (scaled()); what they check stays the same.
TIME_SCALE = max(1.0, float(os.environ.get("AIMEDRES_TEST_TIME_SCALE") or "1"))
# Rollout latency gates count a p95 below ROLLOUT_LATENCY_FLOOR_MS (default 5 ms) as the floor,
# which absorbs scheduler noise. A sanitized server on a busy 2-core machine has much more of it:
# the offline p95 gate failed good candidates at 11-44 ms against the 5 ms floor. With
# TIME_SCALE > 1 every Server gets the floor times LATENCY_SCALE, and an injected candidate
# delay (ROLLOUT_FAULT_INJECT delay_ms, tests only) is multiplied by the same factor, so the
# ratio the latency gate judges (delay : floor) is what the test wrote. A test's own
# ROLLOUT_LATENCY_FLOOR_MS wins.
LATENCY_SCALE = 3.0 * TIME_SCALE if TIME_SCALE > 1 else 1.0
SLOW_BUILD_SERVER_ENV = {"ROLLOUT_LATENCY_FLOOR_MS": "%g" % (5.0 * LATENCY_SCALE)} if TIME_SCALE > 1 else {}


def scale_fault_delay(fault):
    """ROLLOUT_FAULT_INJECT text with delay_ms multiplied by LATENCY_SCALE (capped at 60000)."""
    return re.sub(r"delay_ms=(\d+)", lambda m: "delay_ms=%d" % min(60000, int(m.group(1)) * LATENCY_SCALE), fault)


def fault_delay_s(fault):
    """The candidate delay a server started with ROLLOUT_FAULT_INJECT=fault really applies, in
    seconds (after scale_fault_delay); 0 without delay_ms."""
    m = re.search(r"delay_ms=(\d+)", scale_fault_delay(fault) if LATENCY_SCALE > 1 else fault)
    return int(m.group(1)) / 1000.0 if m else 0.0


HEALTH_TIMEOUT_S = 20.0 * TIME_SCALE
STOP_TIMEOUT_S = 15.0 * TIME_SCALE
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
}


def scaled(seconds):
    """seconds of wall clock, allowing for a slower build (TIME_SCALE)."""
    return seconds * TIME_SCALE


def faketime(spec):
    """A command prefix that runs what follows at a fake time, as Debian's `faketime` wrapper
    does ("2026-12-06 00:10:00": start there and run on; "+100d": an offset), by preloading
    libfaketime directly. The wrapper creates a named semaphore per pid and fails ("sem_open:
    File exists") when a killed earlier run left one for the pid it now has."""
    import glob
    libs = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert libs, "libfaketime is missing (Debian package faketime)"
    return ["env", "LD_PRELOAD=" + libs[0], "FAKETIME=" + (spec if spec[:1] in "+-@" else "@" + spec)]


def require_binary():
    if not BIN or not os.access(BIN, os.X_OK):
        raise RuntimeError("AIMEDRES_BIN is not set to an executable aimedres binary (got %r)" % BIN)
    return BIN


# LeakSanitizer cannot run under ptrace (an ASan build, scripts/test-sanitize.sh, fails at exit
# under strace): the environment of a command run under strace; other builds ignore it
UNDER_PTRACE = {"ASAN_OPTIONS": "detect_leaks=0"}


def base_env(extra=None):
    """A minimal, deterministic environment: nothing from the caller's AiMedRes settings leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
    }
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


def production_audit_env(directory):
    """The audit settings production requires (an audit log and its checkpoint signing key),
    in directory; the key pair is made by `aimedres audit keygen` once."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    private = os.path.join(directory, "audit-signing.pem")
    if not os.path.exists(private):
        r = run_cli(["audit", "keygen", "--private", private, "--public",
                     os.path.join(directory, "audit-signing.pub.pem")])
        assert r.returncode == 0, r.stdout + r.stderr
    return {"AUDIT_LOG_PATH": os.path.join(directory, "audit.log"), "AUDIT_SIGNING_KEY_PATH": private}


def run_cli(args, env=None, timeout=120, cwd=None, input_text=None):
    """Runs `aimedres ARGS` to completion; returns CompletedProcess with text stdout/stderr.
    timeout (seconds) is multiplied by TIME_SCALE."""
    require_binary()
    return subprocess.run(
        [BIN] + list(args),
        env=base_env(env),
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
    )


def demo_env(demo):
    """The settings that point the binary at a demo directory (models, store, data)."""
    demo = os.path.abspath(demo)
    return {
        "MODEL_STORAGE_PATH": os.path.join(demo, "models"),
        "DATABASE_URL": "sqlite://" + os.path.join(demo, "aimedres.db"),
        "DATA_DIR": os.path.join(demo, "data"),
    }


def _binary_digest():
    h = hashlib.sha256()
    with open(require_binary(), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def prepare_demo(cache_root=None):
    """Runs `aimedres demo init` once per built binary and returns the directory.

    The result is cached next to the binary (keyed by its sha256, guarded by a lock so
    parallel ctest jobs share one run). Tests never modify it: servers get copies."""
    require_binary()
    cache_root = cache_root or os.path.join(os.path.dirname(os.path.abspath(BIN)), "e2e-demo-cache")
    os.makedirs(cache_root, exist_ok=True)
    key = _binary_digest()
    target = os.path.join(cache_root, key)
    done = os.path.join(target, ".complete")
    with open(os.path.join(cache_root, ".lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        try:
            if not os.path.exists(done):
                for old in os.listdir(cache_root):
                    if not old.startswith("."):
                        shutil.rmtree(os.path.join(cache_root, old), ignore_errors=True)
                demo = os.path.join(target, "demo")
                os.makedirs(target, exist_ok=True)
                r = run_cli(["demo", "init", "--dir", demo], timeout=600)
                if r.returncode != 0:
                    shutil.rmtree(target, ignore_errors=True)
                    raise RuntimeError(
                        "aimedres demo init failed (exit %d)\nstdout:\n%s\nstderr:\n%s"
                        % (r.returncode, r.stdout[-4000:], r.stderr[-4000:])
                    )
                for name in DEMO_MODELS:
                    mf = os.path.join(demo, "models", name, "1.0.0", "manifest.json")
                    if not os.path.exists(mf):
                        raise RuntimeError("demo init did not create %s" % mf)
                open(done, "w").close()
        finally:
            fcntl.flock(lockf, fcntl.LOCK_UN)
    return os.path.join(target, "demo")


def copy_demo(src, dst):
    """Copies a demo directory (models, store with its WAL files, data) to dst."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def copy_model_version(models_dir, model, dst, new_version, src_version="1.0.0"):
    """Copies version src_version of model to dst as new_version (its manifest's version
    changed; the booster and its sha256 as they were): (dst, manifest), to register."""
    shutil.copytree(os.path.join(models_dir, model, src_version), dst)
    mf_path = os.path.join(dst, "manifest.json")
    with open(mf_path) as f:
        mf = json.load(f)
    mf["version"] = new_version
    with open(mf_path, "w") as f:
        json.dump(mf, f, indent=2)
    return dst, mf


def fill_fs(directory, chunk=1024):
    """Fills the file system of directory with a file `filler` there, until it has no room
    (ENOSPC); returns the file's path, for the test to remove."""
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- manifests


def read_manifest(models_dir, name, version="1.0.0"):
    with open(os.path.join(models_dir, name, version, "manifest.json")) as f:
        return json.load(f)


def _bounds(feat):
    lo, hi = feat.get("min"), feat.get("max")
    if isinstance(lo, bool) or not isinstance(lo, (int, float)):
        lo = None
    if isinstance(hi, bool) or not isinstance(hi, (int, float)):
        hi = None
    return lo, hi


def feature_value(feat, frac=0.5):
    """A valid value for one manifest feature: the point `frac` of the way through its range
    (midpoint by default), rounded for integers, a JSON boolean for booleans."""
    ftype = feat.get("type", "number")
    if ftype == "boolean":
        return frac >= 0.5
    lo, hi = _bounds(feat)
    if lo is not None and hi is not None:
        v = lo + (hi - lo) * frac
    elif lo is not None:
        v = lo
    elif hi is not None:
        v = hi
    else:
        v = feat.get("mean", 0.0) or 0.0
    if ftype == "integer":
        iv = int(round(v))
        if lo is not None and iv < lo:
            iv = int(math.ceil(lo))
        if hi is not None and iv > hi:
            iv = int(math.floor(hi))
        return iv
    return float(v)


def valid_features(manifest, frac=0.5):
    """A dict of every feature of the manifest with a valid value."""
    return {f["name"]: feature_value(f, frac) for f in manifest["features"]}


def valid_instances(manifest, n):
    """n valid rows spread over the feature ranges (fractions in 0.1..0.9)."""
    rows = []
    for i in range(n):
        frac = 0.1 + 0.8 * ((i * 7919) % 97) / 96.0
        rows.append(valid_features(manifest, frac))
    return rows


def first_feature(manifest, types=("number",), required=None, ranged=False):
    """The first feature of one of the given types (and required-ness / both bounds if asked)."""
    for f in manifest["features"]:
        if f.get("type", "number") not in types:
            continue
        if required is not None and bool(f.get("required", True)) != required:
            continue
        if ranged and None in _bounds(f):
            continue
        return f
    return None


def class_labels(manifest):
    return [str(x) for x in manifest.get("class_labels") or []]


# --------------------------------------------------------------------------- raw HTTP


class RawResponse:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> last value
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def raw_request(port, data, timeout=10.0, method_hint="GET"):
    """Sends raw bytes as one HTTP/1.1 request and parses the response (http.client does the
    framing: Content-Length or chunked). Returns RawResponse."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_raw_response(sock, method_hint)


def read_raw_response(sock, method_hint="GET"):
    resp = http.client.HTTPResponse(sock, method=method_hint)
    resp.begin()
    body = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    return RawResponse(resp.status, resp.reason, headers, body)


def build_request(method, path, body=b"", headers=None, host="127.0.0.1"):
    """Bytes of an HTTP/1.1 request (Content-Length set when a body is given)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    hdrs = dict(headers or {})
    if body and not any(k.lower() == "content-length" for k in hdrs):
        hdrs["Content-Length"] = str(len(body))
    for k, v in hdrs.items():
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --------------------------------------------------------------------------- server


class ServerStartError(RuntimeError):
    pass


class Server:
    """One running `aimedres serve` on a private copy of the demo directory."""

    def __init__(self, root, extra_env=None, args=None, port=None):
        self.root = root  # the private demo copy (models/, aimedres.db, data/)
        self.models_dir = os.path.join(root, "models")
        self.data_dir = os.path.join(root, "data")
        self.db_path = os.path.join(root, "aimedres.db")
        self.log_path = os.path.join(os.path.dirname(root), "server-%s.log" % os.path.basename(root))
        self.extra_env = dict(extra_env or {})
        self.args = list(args or [])
        self.port = port or free_port()
        self.proc = None
        self.returncode = None
        self.session = requests.Session()
        self.session.trust_env = False  # never a proxy for loopback
        self._log = None

    # -- process

    @property
    def env(self):
        env = demo_env(self.root)
        env.update(SLOW_BUILD_SERVER_ENV)
        env.update(self.extra_env)
        if LATENCY_SCALE > 1 and env.get("ROLLOUT_FAULT_INJECT"):
            env["ROLLOUT_FAULT_INJECT"] = scale_fault_delay(env["ROLLOUT_FAULT_INJECT"])
        return env

    def start(self):
        require_binary()
        # a restarted server is running again: make_server's teardown stops only servers whose
        # returncode is None (a stale code from the previous stop left restarted ones orphaned)
        self.returncode = None
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port)] + self.args,
            env=base_env(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            close_fds=True,
        )
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout=HEALTH_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise ServerStartError(
                    "aimedres serve exited with %s before answering /health\n--- log tail ---\n%s"
                    % (self.proc.returncode, self.log_tail())
                )
            try:
                r = self.session.get(self.url("/health"), timeout=1.0)
                if r.status_code == 200:
                    return
                last = "status %d" % r.status_code
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        raise ServerStartError(
            "GET /health did not answer 200 within %.0f s (last: %s)\n--- log tail ---\n%s"
            % (timeout, last, self.log_tail())
        )

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM, wait; returns (exit code, killed). Kills with SIGKILL after the timeout."""
        self.session.close()
        killed = False
        if self.proc is None:
            return None, False
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        if self._log:
            self._log.close()
            self._log = None
        return self.returncode, killed

    # -- logs

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_records(self):
        """Parsed JSON log lines (non-JSON lines are returned as {"_raw": line})."""
        out = []
        for line in self.log_text().splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"_raw": line})
        return out

    # -- HTTP

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", scaled(15))
        return self.session.request(method, self.url(path), **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def predict(self, name, body, **kw):
        return self.post("/api/v1/models/%s/predict" % name, json=body, **kw)

    def raw(self, data, timeout=10.0, method_hint="GET"):
        return raw_request(self.port, data, timeout=timeout, method_hint=method_hint)

    # -- models and store

    def manifest(self, name, version="1.0.0"):
        return read_manifest(self.models_dir, name, version)

    def db(self):
        """A read-only-use connection to the server's SQLite store (WAL allows concurrent readers)."""
        conn = sqlite3.connect(self.db_path, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def prediction_row(self, prediction_id):
        with contextlib.closing(self.db()) as conn:
            row = conn.execute("SELECT * FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
            return dict(row) if row is not None else None

    def prediction_ids(self):
        with contextlib.closing(self.db()) as conn:
            return {r[0] for r in conn.execute("SELECT id FROM predictions")}


def start_server(demo_src, workdir, extra_env=None, args=None, attempts=3):
    """Copies demo_src into a new directory under workdir and starts a server on it.
    Retries on another port if the chosen one was taken meanwhile."""
    os.makedirs(workdir, exist_ok=True)
    last = None
    for i in range(attempts):
        root = os.path.join(workdir, "demo-%d-%d" % (os.getpid(), int(time.monotonic() * 1e6)))
        copy_demo(demo_src, root)
        srv = Server(root, extra_env=extra_env, args=args)
        try:
            return srv.start()
        except ServerStartError as e:
            srv.stop(timeout=5)
            last = e
            if "in use" not in str(e).lower():
                raise
    raise last


def assert_error_body(resp, status, code=None):
    """Checks an error response: status, JSON body {"error":{"code","message","details"}},
    content type and security headers. Returns the error object."""
    status_got = resp.status_code if hasattr(resp, "status_code") else resp.status
    text = resp.text if hasattr(resp, "text") else resp.body.decode("utf-8", "replace")
    assert status_got == status, "expected %d, got %d: %s" % (status, status_got, text[:500])
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError("error body is not JSON: %r" % text[:500])
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], err
    assert isinstance(err.get("message"), str) and err["message"], err
    assert "details" in err, "error object has no 'details' key: %r" % err
    if code is not None:
        assert err["code"] == code, "expected code %r, got %r (%s)" % (code, err["code"], err["message"])
    assert_security_headers(resp)
    return err


def _headers(resp):
    if hasattr(resp, "status_code"):
        return {k.lower(): v for k, v in resp.headers.items()}
    return resp.headers


def assert_security_headers(resp):
    h = _headers(resp)
    for name, want in SECURITY_HEADERS.items():
        assert h.get(name) == want, "header %s: expected %r, got %r" % (name, want, h.get(name))
    assert h.get("x-request-id"), "no X-Request-ID"
    ctype = h.get("content-type", "")
    status = resp.status_code if hasattr(resp, "status_code") else resp.status
    if status != 204:
        assert ctype.split(";")[0].strip() == "application/json", "content-type %r" % ctype
