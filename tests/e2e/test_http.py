# SPDX-License-Identifier: Apache-2.0
"""The HTTP/1.1 layer itself (src/http/server.c), over raw sockets: pipelined requests are
answered in order on one connection, HTTP/1.0 keep-alive, Expect: 100-continue, HEAD,
a stalled request gets 408 after READ_TIMEOUT, an idle connection is closed, a client that
half-closes still gets its (deferred) prediction, a client that vanishes while its
prediction is being recorded does not disturb the server."""

import json
import socket
import time

import pytest

import aimedres_harness as h

PARK = "parkinsons_predictor"
PREDICT = "/api/v1/models/%s/predict" % PARK
READ_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def http_server(demo_dir, tmp_path_factory):
    srv = h.start_server(demo_dir, str(tmp_path_factory.mktemp("http")), {"READ_TIMEOUT": str(READ_TIMEOUT_S)})
    yield srv
    rc, killed = srv.stop()
    assert not killed and rc == 0, "server did not exit 0 on SIGTERM (rc=%s)\n%s" % (rc, srv.log_tail())


@pytest.fixture(scope="module")
def body(demo_manifests):
    return json.dumps({"features": h.valid_features(demo_manifests[PARK])}).encode()


def connect(srv, timeout=10):
    return socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)


def recv_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def split_responses(data, methods):
    """[(status, headers, body)] from the bytes of consecutive responses (Content-Length framed;
    no body after HEAD). http.client can not do it: each HTTPResponse buffers past its end."""
    out = []
    for method in methods:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        n = 0 if method == "HEAD" else int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    assert data == b"", data[:200]
    return out


def test_pipelined_requests_answered_in_order(http_server, body):
    reqs = [
        h.build_request("GET", "/health", headers={"X-Request-ID": "pipe-1"}),
        h.build_request("POST", PREDICT, body, {"Content-Type": "application/json", "X-Request-ID": "pipe-2"}),
        h.build_request("GET", "/no/such/path", headers={"X-Request-ID": "pipe-3"}),
        h.build_request("POST", PREDICT, body, {"Content-Type": "application/json", "X-Request-ID": "pipe-4"}),
        h.build_request("GET", "/health", headers={"X-Request-ID": "pipe-5", "Connection": "close"}),
    ]
    with connect(http_server) as s:
        s.sendall(b"".join(reqs))  # all in one segment: parsed one after the other
        data = recv_all(s)  # Connection: close on the last one ends the stream
    got = [(st, hd.get("x-request-id")) for st, hd, _ in split_responses(data, ["GET", "POST", "GET", "POST", "GET"])]
    assert got == [(200, "pipe-1"), (200, "pipe-2"), (404, "pipe-3"), (200, "pipe-4"), (200, "pipe-5")]


def test_http10_keep_alive_only_when_asked(http_server):
    with connect(http_server) as s:
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        data = recv_all(s)  # the server closes: HTTP/1.0 without keep-alive
    assert data.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in data
    with connect(http_server) as s:
        for _ in range(2):
            s.sendall(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = h.read_raw_response(s)
            assert r.status == 200 and r.headers.get("connection") == "keep-alive"


def test_expect_100_continue(http_server, body):
    head = h.build_request("POST", PREDICT, b"", {"Content-Type": "application/json",
                                                  "Content-Length": str(len(body)), "Expect": "100-continue"})
    with connect(http_server) as s:
        s.sendall(head)
        interim = s.recv(64)  # before any body byte is sent
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
        s.sendall(body)
        r = h.read_raw_response(s, "POST")
    assert r.status == 200, r.body[:200]
    assert r.json()["model"] == PARK


def test_head_has_length_and_no_body(http_server):
    with connect(http_server) as s:
        s.sendall(h.build_request("HEAD", "/health") + h.build_request("GET", "/health", headers={"Connection": "close"}))
        (st1, h1, b1), (st2, _, b2) = split_responses(recv_all(s), ["HEAD", "GET"])
    assert st1 == 200 and b1 == b"" and int(h1["content-length"]) > 0
    assert st2 == 200 and len(b2) == int(h1["content-length"])  # framed right after the body-less answer


def test_stalled_request_gets_408(http_server):
    with connect(http_server, timeout=READ_TIMEOUT_S * 4 + 5) as s:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
                  % PREDICT.encode())
        t0 = time.monotonic()
        data = recv_all(s)
        elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert READ_TIMEOUT_S * 0.8 <= elapsed < READ_TIMEOUT_S * 4 + 5, elapsed


def trickle_until_answered(sock, data, every_s):
    """Sends data one byte every every_s seconds until the server answers or closes;
    returns (what it answered, seconds from the first byte)."""
    t0 = time.monotonic()
    for i in range(len(data)):
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            break
        sock.settimeout(every_s)
        try:
            first = sock.recv(65536)
        except socket.timeout:
            continue
        sock.settimeout(10)
        return first + recv_all(sock), time.monotonic() - t0
    sock.settimeout(READ_TIMEOUT_S * 4 + 5)
    return recv_all(sock), time.monotonic() - t0


@pytest.mark.parametrize("part", ["head", "body"])
def test_trickled_request_gets_408_within_read_timeout(http_server, body, part):
    """READ_TIMEOUT bounds a request as a whole: a client sending one byte every 0.4 s (each
    silence far shorter than READ_TIMEOUT) is answered 408 once the request has taken
    READ_TIMEOUT, not served the silence timeout forever (slowloris)."""
    head = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nX-Pad: %s\r\n\r\n" % (PREDICT.encode(), len(body), b"p" * 200))
    with connect(http_server) as s:
        if part == "body":
            s.sendall(head)
            data, elapsed = trickle_until_answered(s, body, 0.4)
        else:
            data, elapsed = trickle_until_answered(s, head + body, 0.4)
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert READ_TIMEOUT_S * 0.8 <= elapsed < READ_TIMEOUT_S * 4 + 5, elapsed
    # the 408's log line (and latency histogram) counts from the request's first byte
    durations = [r["duration_ms"] for r in http_server.log_records() if r.get("status") == 408]
    assert durations and max(durations) >= READ_TIMEOUT_S * 1000 * 0.8, durations


def test_absolute_form_target_and_host_rules(http_server):
    """RFC 9112: a server must accept an absolute-form target (as proxies send it); an
    HTTP/1.1 request without Host, or any request with two, is 400 and the connection
    closes; HTTP/1.0 without Host is fine."""
    with connect(http_server) as s:
        s.sendall(b"GET http://aimedres.internal:8080/health HTTP/1.1\r\nHost: aimedres.internal:8080\r\n"
                  b"Connection: close\r\n\r\n")
        st, _, b = split_responses(recv_all(s), ["GET"])[0]
    assert st == 200 and json.loads(b)["status"] == "healthy", (st, b[:200])
    cases = [(b"GET /health HTTP/1.1\r\n\r\n", 400, b"without a Host"),
             (b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"more than one Host"),
             (b"GET /health HTTP/1.0\r\n\r\n", 200, b"healthy")]
    for raw, status, text in cases:
        with connect(http_server) as s:
            s.sendall(raw)
            data = recv_all(s)  # also proves that the server closed the connection
        assert data.startswith(b"HTTP/1.1 %d " % status) and text in data, (raw, data[:300])


def test_idle_connection_closed_silently(http_server):
    with connect(http_server, timeout=READ_TIMEOUT_S * 4 + 5) as s:
        s.sendall(h.build_request("GET", "/health"))
        assert h.read_raw_response(s).status == 200
        t0 = time.monotonic()
        assert s.recv(1) == b""  # closed, without an answer, once idle for READ_TIMEOUT
        assert READ_TIMEOUT_S * 0.8 <= time.monotonic() - t0 < READ_TIMEOUT_S * 4 + 5


def test_half_closed_client_still_gets_its_prediction(http_server, body):
    before = len(http_server.prediction_ids())
    with connect(http_server) as s:
        s.sendall(h.build_request("POST", PREDICT, body, {"Content-Type": "application/json"}))
        s.shutdown(socket.SHUT_WR)  # done sending; still reading
        data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    pid = json.loads(data.split(b"\r\n\r\n", 1)[1])["prediction_id"]
    assert pid in http_server.prediction_ids()
    assert len(http_server.prediction_ids()) == before + 1


def test_vanished_clients_do_not_disturb_the_server(http_server, body):
    req = h.build_request("POST", PREDICT, body, {"Content-Type": "application/json"})
    for _ in range(20):
        s = connect(http_server)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.sendall(req)
        s.close()  # reset while the prediction is being recorded
    r = http_server.predict(PARK, json.loads(body))
    assert r.status_code == 200, r.text
    assert http_server.get("/health").status_code == 200


@pytest.mark.parametrize("raw,why", [
    (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 11\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     "Content-Length and Transfer-Encoding both present"),
    (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
     "two different Content-Length values"),
    (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
     "Transfer-Encoding: chunked given more than once or not last"),
    (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
     "malformed chunk size (expected hex digits, optionally followed by ;extension)"),
    (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 only)"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
     "malformed request line (expected METHOD SP request-target SP HTTP/1.x)"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
     "bare CR in the request head (a CR is allowed only right before LF)"),
])
def test_a_malformed_request_is_told_what_is_wrong(http_server, raw, why):
    """review52 #6: every request the protocol layer refused as malformed got one message,
    "malformed HTTP request (request line, header fields or message framing)". The answer
    now names the rule the request broke (status and code unchanged: 400 bad_request)."""
    with connect(http_server) as s:
        s.sendall(raw)
        data = recv_all(s)
    [(status, headers, body)] = split_responses(data, ["GET"])
    assert status == 400 and headers.get("connection") == "close", data[:300]
    err = json.loads(body)["error"]
    assert err["code"] == "bad_request" and err["message"] == why, err


@pytest.mark.parametrize("target,code,message", [
    ("/api/v1/models/%zz", "invalid_path",
     "malformed request path: segment 4: malformed percent-escape (expected % and two hex digits)"),
    ("/api/v1/models//predict", "invalid_path", "malformed request path: segment 4: empty (//)"),
    ("/api/v1/models/a%00b", "invalid_path", "malformed request path: segment 4: NUL byte (%00)"),
    ("/api/v1/deployments?abc", "invalid_query",
     "malformed query string: each parameter must be name=value (a non-empty name), joined by &"),
])
def test_a_malformed_path_or_query_is_told_what_is_wrong(http_server, target, code, message):
    """review52 #6: "malformed request path" and "malformed query string" did not say which
    segment or what rule; they do now (status and code unchanged)."""
    with connect(http_server) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target.encode())
        data = recv_all(s)
    [(status, _, body)] = split_responses(data, ["GET"])
    err = json.loads(body)["error"]
    assert status == 400 and err["code"] == code and err["message"] == message, (status, err)
