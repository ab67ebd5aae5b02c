# SPDX-License-Identifier: Apache-2.0
"""Hostile-input corpus (issue 7): well over 200 malformed or hostile requests sent over raw
sockets to one server, each with the exact status we expect (a 4xx for every refusal; a 200
where the right answer is to serve the request and neutralise the hostile part, e.g. SQL
metacharacters in patient_id are stored as data, a CRLF-laden X-Request-ID is replaced).
Between batches the server must answer /health and still predict; at the end it must have
logged no sanitizer or crash report and exit 0 on SIGTERM. Zero 5xx anywhere.

Each case is (id, raw request bytes, expected status, expected error code or None). The list
is built below by category; docs/reliability.md explains the categories."""

import json
import select
import socket
import time
from urllib.parse import quote

import pytest

import aimedres_harness as h

PARK = "parkinsons_predictor"
PREDICT = "/api/v1/models/%s/predict" % PARK
READ_TIMEOUT_S = 2
BATCH = 25
CRASH_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:",
                 "Segmentation fault", "SIGSEGV", "SIGABRT", "stack-buffer", "heap-buffer", "double free")


# --------------------------------------------------------------------------- request builders


def req(method, path, body=b"", headers=None, version="HTTP/1.1", close=True):
    """Raw request bytes; Content-Length added for a body unless a header already frames it."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    hdrs = [("Host", "127.0.0.1")]
    for k, v in (headers or {}).items() if isinstance(headers, dict) else (headers or []):
        hdrs.append((k, v))
    names = {k.lower() for k, _ in hdrs}
    if body and "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    if close and "connection" not in names:
        hdrs.append(("Connection", "close"))
    head = "%s %s %s\r\n" % (method, path, version)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in hdrs)
    return head.encode("latin-1") + b"\r\n" + body


def post_json(body, path=PREDICT, ctype="application/json", extra=None):
    hdrs = {"Content-Type": ctype}
    hdrs.update(extra or {})
    return req("POST", path, body, hdrs)


# --------------------------------------------------------------------------- the corpus


def build_cases(park):
    """Returns [(id, bytes, status, code)]. park: the parkinsons manifest (dict)."""
    good = h.valid_features(park)
    good_json = json.dumps({"features": good})
    names = [f["name"] for f in park["features"]]
    num = h.first_feature(park, ("number",), ranged=True)["name"]
    boolf = h.first_feature(park, ("boolean",))["name"]
    cases = []

    def add(cid, data, status, code=None):
        cases.append((cid, data, status, code))

    # -- 1. broken JSON: 400 invalid_json
    broken = [
        "{", "}", "[", "{\"features\":", "{\"features\":{", "{\"features\":{}", "{'features':{}}",
        "{features:{}}", "{\"features\":{},}", "{\"features\":{\"a\":1,}}", "{\"features\" {}}",
        "{\"features\"::{}}", "{\"features\":{\"a\" 1}}", "{\"features\":[1,2,]}", "{\"a\":tru}",
        "{\"a\":nul}", "{\"a\":fals}", "{\"a\":TRUE}", "{\"a\":None}", "{\"a\":undefined}",
        "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":0x10}", "{\"a\":1e}",
        "{\"a\":--1}", "{\"a\":\"unterminated}", "{\"a\":\"bad escape \\x41\"}",
        "{\"a\":\"\\u12\"}", "{\"a\":\"\\uZZZZ\"}", "{\"a\":\"tab\there\"}", "{\"a\":\"nl\nhere\"}",
        "{\"a\":1} trailing", "{\"a\":1}{\"b\":2}", "// comment\n{}", "{/*c*/}", "\"\"\"",
        "{\"a\":[1,2}", "{\"a\":{\"b\":1]}", "\x00", "   ", "\ufeff{}",
    ]
    for i, text in enumerate(broken):
        add("broken-json-%02d" % i, post_json(text.encode("utf-8")), 400, "invalid_json")
    add("empty-body", req("POST", PREDICT, b"", {"Content-Type": "application/json", "Content-Length": "0"}),
        400, "invalid_json")

    # -- 2. deep nesting: jansson's depth limit refuses it (400), no stack exhaustion
    for n, opener, closer in ((100000, "[", "]"), (100000, "{\"a\":", "}"), (3000, "[", "]"),
                              (2049, "[", "]"), (100000, "[", "")):
        add("deep-%s-%d%s" % ("arr" if opener == "[" else "obj", n, "-open" if not closer else ""),
            post_json((opener * n + "1" + closer * n).encode()), 400, "invalid_json")
    add("deep-features-value", post_json(('{"features":{"%s":' % num + "[" * 50000 + "]" * 50000 + "}}")
                                         .encode()), 400, "invalid_json")
    # nesting the parser accepts but the shape does not: 422
    add("nested-ok-depth-but-wrong-shape", post_json(("[" * 100 + "]" * 100).encode()), 422,
        "validation_failed")

    # -- 3. huge numbers: beyond a double is a JSON error (400); an integer beyond int64 is read
    #       as a double; in-range-but-absurd values are 422
    for i, lit in enumerate(["1e400", "-1e400", "1e999999999", "1" + "0" * 400 + ".0",
                             "1" * 400, "-" + "9" * 400]):
        f = dict(good)
        body = json.dumps({"features": f}).replace(json.dumps(f[num]), lit, 1)
        add("huge-number-%d" % i, post_json(body.encode()), 400, "invalid_json")
    for i, lit in enumerate(["1" * 300, "-" + "9" * 300, "123456789012345678901234567890",
                             "9223372036854775808", "-9223372036854775809"]):
        f = dict(good)
        body = json.dumps({"features": f}).replace(json.dumps(f[num]), lit, 1)
        add("beyond-int64-%d" % i, post_json(body.encode()), 422, "validation_failed")
    for i, val in enumerate([1e300, -1e300, 1.7976931348623157e308, 9223372036854775807, 4e38, -4e38]):
        f = dict(good)
        f[num] = val
        add("absurd-in-json-number-%d" % i, post_json(json.dumps({"features": f}).encode()), 422,
            "validation_failed")
    for i, val in enumerate([5e-324, -0.0, 1e-300]):
        # tiny values are valid numbers; whether in range depends on the feature's min
        f = dict(good)
        f[num] = val
        lo = h.first_feature(park, ("number",), ranged=True).get("min")
        add("tiny-number-%d" % i, post_json(json.dumps({"features": f}).encode()),
            200 if lo is not None and lo <= val else 422, None if lo is not None and lo <= val
            else "validation_failed")

    # -- 4. NaN / Infinity literals: not JSON (400)
    for i, lit in enumerate(["NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "+Infinity", "1e+",
                             "Infinity1"]):
        body = json.dumps({"features": good}).replace(json.dumps(good[num]), lit, 1)
        add("nan-inf-%d" % i, post_json(body.encode()), 400, "invalid_json")

    # -- 5. wrong types and wrong shapes: 422
    wrong_values = ["\"12.5\"", "true", "[1]", "{\"v\":1}", "\"\"", "\"NaN\"", "\"Infinity\"", "\"1e400\""]
    for i, lit in enumerate(wrong_values):
        body = json.dumps({"features": good}).replace(json.dumps(good[num]), lit, 1)
        add("wrong-type-number-%d" % i, post_json(body.encode()), 422, "validation_failed")
    for i, lit in enumerate(["\"true\"", "2", "-1", "0.5", "[]", "{}"]):
        body = json.dumps({"features": good}).replace('"%s": %s' % (boolf, json.dumps(good[boolf])),
                                                       '"%s": %s' % (boolf, lit), 1)
        add("wrong-type-bool-%d" % i, post_json(body.encode()), 422, "validation_failed")
    shapes = [
        "null", "1", "\"features\"", "[]", "[{}]", "true", "{}", "{\"features\":null}",
        "{\"features\":[]}", "{\"features\":\"x\"}", "{\"features\":1}", "{\"instances\":{}}",
        "{\"instances\":[]}", "{\"instances\":null}", "{\"instances\":\"x\"}",
        "{\"features\":{},\"instances\":[{}]}", "{\"features\":{},\"extra\":1}",
        "{\"FEATURES\":{}}", "{\"features\":{}}",
        json.dumps({"features": good, "patient_id": 123}), json.dumps({"features": good, "patient_id": ""}),
        json.dumps({"features": good, "patient_id": []}),
        json.dumps({"features": good, "patient_id": "p" * 257}),
        json.dumps({"features": good, "version": 1}), json.dumps({"features": good, "version": ""}),
        json.dumps({"instances": [good, 1, "x", None]}), json.dumps({"instances": [good] * 257}),
        json.dumps({"features": {k: None for k in names}}),
        json.dumps({"features": dict(good, **{"unknown_feature": 1})}),
        json.dumps({"features": dict(good, **{"": 1})}),
        json.dumps({"features": dict(good, **{"x" * 5000: 1})}),
    ]
    for i, text in enumerate(shapes):
        add("shape-%02d" % i, post_json(text.encode()), 422, "validation_failed")
    # null means absent for the optional fields (as a null feature means missing)
    add("null-patient-id", post_json(json.dumps({"features": good, "patient_id": None}).encode()), 200)
    add("null-version", post_json(json.dumps({"features": good, "version": None}).encode()), 200)

    # -- 6. duplicate keys: refused by the parser (400), at every level
    for i, text in enumerate([
        '{"features":{},"features":{}}',
        '{"features":%s,"patient_id":"a","patient_id":"b"}' % json.dumps(good),
        '{"features":{"%s":1,"%s":2}}' % (num, num),
        '{"instances":[{"%s":1,"%s":1}]}' % (num, num),
        '{"features":{"a":{"b":1,"b":2}}}',
        '{"a":1,"a":1}',
    ]):
        add("duplicate-keys-%d" % i, post_json(text.encode()), 400, "invalid_json")

    # -- 7. invalid / overlong UTF-8 and NUL bytes: 400 from the parser
    bad_bytes = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xed\xa0\x80",
                 b"\xf4\x90\x80\x80", b"\x80", b"\xc3", b"\xe2\x82", b"\xf8\x88\x80\x80\x80", b"\xc1\xbf",
                 b"\x00", b"a\x00b"]
    for i, bb in enumerate(bad_bytes):
        add("bad-utf8-value-%02d" % i, post_json(b'{"features":{},"patient_id":"' + bb + b'"}'), 400,
            "invalid_json")
        add("bad-utf8-key-%02d" % i, post_json(b'{"features":{"' + bb + b'":1}}'), 400, "invalid_json")
    for i, esc in enumerate(["\\u0000", "a\\u0000b"]):
        add("nul-escape-%d" % i, post_json(('{"features":{},"patient_id":"%s"}' % esc).encode()), 400,
            "invalid_json")
    add("nul-before-body-end", post_json(good_json.encode() + b"\x00"), 400, "invalid_json")
    # lone surrogates: jansson refuses them in \u escapes
    for i, esc in enumerate(["\\ud800", "\\udfff", "\\ud800\\u0041"]):
        add("lone-surrogate-%d" % i, post_json(('{"features":{},"patient_id":"%s"}' % esc).encode()), 400,
            "invalid_json")

    # -- 8. oversized headers and bodies
    # a head over MAX_HEADER_BYTES or with more than 64 fields: 431 (RFC 6585 section 5)
    add("header-20k-value", req("GET", "/health", headers={"X-Big": "a" * 20000}), 431, "header_too_large")
    add("header-many", req("GET", "/health", headers=[("X-H%d" % i, "v" * 50) for i in range(500)]), 431,
        "header_too_large")
    add("header-fields-65", req("GET", "/health", headers=[("X-H%d" % i, "v") for i in range(64)]), 431,
        "header_too_large")
    add("header-name-20k", req("GET", "/health", headers={"X" * 20000: "v"}), 431, "header_too_large")
    add("body-2mib", post_json(b'{"features":{"a":"' + b"x" * (2 << 20) + b'"}}'), 413)
    add("body-declared-2mib", req("POST", PREDICT, b"", {"Content-Type": "application/json",
                                                          "Content-Length": str(2 << 20)}), 413)
    add("body-declared-1tb", req("POST", PREDICT, b"", {"Content-Type": "application/json",
                                                         "Content-Length": str(1 << 40)}), 413)
    add("uri-3000", req("GET", "/api/v1/models/" + "a" * 3000), 414, "uri_too_long")
    add("uri-20k", req("GET", "/" + "a/" * 10000), 414, "uri_too_long")  # a request line over the head limit

    # -- 9. path traversal in model names (404) and versions (422)
    trav = ["..", "%2e%2e", "%2E%2E", "..%2f..%2fetc", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e",
            "a%2fb", "a%5cb", "..%5c..%5c", ".", "%2e", "~root", "%00", "a%00b", "%252e%252e",
            "name%20with%20space", "%c0%ae%c0%ae", "%ff", "%", "%2", "%zz"]
    for i, t in enumerate(trav):
        status = 400 if t in ("%00", "a%00b", "%", "%2", "%zz") else 404
        add("traversal-name-%02d" % i,
            post_json(good_json.encode(), path="/api/v1/models/%s/predict" % t), status)
    add("traversal-dotdot-segments", post_json(good_json.encode(), path="/api/v1/models/../../etc/predict"),
        404)
    add("traversal-double-slash", req("GET", "/api/v1//models/list"), 400, "invalid_path")
    for i, v in enumerate(["../1.0.0", "..", "../../etc/passwd", "1.0.0/../../x", "1.0.0\\..", "/etc/passwd",
                           "1.0.0%00", "1" * 200, "~", "1.0.0 "]):
        add("traversal-version-%02d" % i, post_json(json.dumps({"features": good, "version": v}).encode()),
            422, "validation_failed")
    # an escaped NUL inside the version never reaches the name check: the parser refuses it
    add("traversal-version-nul", post_json(json.dumps({"features": good, "version": "1.0.0\u0000x"}).encode()),
        400, "invalid_json")
    add("version-unknown-safe", post_json(json.dumps({"features": good, "version": "9.9.9"}).encode()), 404,
        "version_not_found")

    # -- 10. SQL metacharacters: ids in paths are not names (404); in patient_id they are data (200)
    sqls = ["' OR '1'='1", "1; DROP TABLE predictions;--", "\" OR \"\"=\"", "x' UNION SELECT * FROM api_keys--",
            "%' --", "Robert'); DROP TABLE predictions;--", "1 OR 1=1", "';PRAGMA writable_schema=1;--"]
    for i, s in enumerate(sqls):
        add("sql-model-name-%d" % i, post_json(good_json.encode(), path="/api/v1/models/%s/predict"
                                               % quote(s, safe="")), 404, "model_not_found")
        add("sql-model-get-%d" % i, req("GET", "/api/v1/models/%s" % quote(s, safe="")), 404)
        add("sql-version-%d" % i, post_json(json.dumps({"features": good, "version": s}).encode()), 422,
            "validation_failed")
        add("sql-patient-id-%d" % i, post_json(json.dumps({"features": good, "patient_id": s}).encode()), 200)

    # -- 11. header injection: CR/LF and controls in X-Request-ID are never echoed (200, new id)
    # a bare CR inside a header value is a framing error: refused (400)
    add("header-injection-bare-cr", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc\rInjected: 1\r\n"
        b"Connection: close\r\n\r\n", 400)
    # a NUL in any field is refused too (RFC 9110 section 5.5; review58 #6)
    add("header-nul-in-value", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc\x00def\r\n"
        b"Connection: close\r\n\r\n", 400)
    inj = [b"abc\x7f", b"<script>", b"a" * 200, b"id with space",
           b"abc\r\n Folded: yes", b"abc;rm -rf /", b"\xff\xfe"]
    for i, v in enumerate(inj):
        data = (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: " + v + b"\r\nConnection: close\r\n\r\n")
        add("header-injection-%d" % i, data, "rid-replaced")
    add("header-crlf-split-response", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\r\n"
        b"Set-Cookie: evil=1\r\nConnection: close\r\n\r\n", "rid-kept")

    # -- 12. bad methods, versions and request lines
    # Unrecognised or unimplemented methods: the protocol layer answers 501 Not Implemented
    # before any route runs (RFC 9110 section 15.6.2 says exactly that). These are the only 5xx the corpus
    # accepts, and only for a method the server does not implement (see NOT_IMPLEMENTED).
    for i, m in enumerate(["FOO", "get", "PROPFIND", "BREW", "M-SEARCH", "G ET"]):
        add("unknown-method-%d" % i, ("%s /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % m)
            .encode("latin-1"), 501)
    for i, m in enumerate(["\x00GET", "GET\x00"]):
        add("bad-method-%d" % i, ("%s /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % m)
            .encode("latin-1"), 400)
    for i, (m, p) in enumerate([("PUT", PREDICT), ("DELETE", PREDICT), ("PATCH", "/health"),
                                ("DELETE", "/api/v1/models/list"), ("PUT", "/api/v1/models/x"),
                                ("GET", PREDICT)]):
        add("wrong-method-%d" % i, req(m, p), 405, "method_not_allowed")
    add("trace", req("TRACE", "/health"), 501)  # disabled server-wide (no TRACE reflection)
    add("connect", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 501)
    add("http-0.9", b"GET /health\r\n\r\n", 400)
    add("http-2.0-line", b"GET /health HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n", 400)
    add("http-9.9", b"GET /health HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n", 400)
    add("http-bad-version", b"GET /health HTTP/1.x\r\nHost: x\r\nConnection: close\r\n\r\n", 400)
    add("http-lowercase", b"GET /health http/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400)
    add("no-path", b"GET HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400)
    # absolute-form targets (RFC 9112 section 3.2.2: a server must accept them) are served by
    # their path; the authority routes nothing (neither does Host: there are no virtual hosts)
    add("absolute-uri-other-host", b"GET http://evil.example/health HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n", 200)
    add("absolute-uri-no-path", b"GET http://x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200)  # GET /
    add("no-host-http-1.1", b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "bad_request")
    add("two-hosts", b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400,
        "bad_request")
    add("path-not-slash", b"GET health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400)
    add("path-star", b"GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400)
    add("header-no-colon", b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\nConnection: close\r\n\r\n",
        400)
    add("garbage-line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400)

    # -- 13. absurd Content-Length
    for i, cl in enumerate(["-1", "abc", "1.5", "0x10", " ", "1 2", "-0"]):
        add("content-length-%d" % i, req("POST", PREDICT, b"{}", {"Content-Type": "application/json",
                                                                "Content-Length": cl}), 400)
    # digits only, but beyond 64 bits: "too large" rather than "malformed"
    for i, cl in enumerate(["99999999999999999999999", "18446744073709551616"]):
        add("content-length-toolarge-%d" % i, req("POST", PREDICT, b"{}", {
            "Content-Type": "application/json", "Content-Length": cl}), 413)
    # Two different Content-Length values: the framing is unknowable, refused (RFC 9112 section 6.3)
    add("content-length-twice-differ", req("POST", PREDICT, b"{}", [("Content-Type", "application/json"),
                                                                    ("Content-Length", "2"),
                                                                    ("Content-Length", "3")]), 400,
        "bad_request")
    add("content-length-twice-same", req("POST", PREDICT, b"{}", [("Content-Type", "application/json"),
                                                                   ("Content-Length", "2"),
                                                                   ("Content-Length", "2")]), 422,
        "validation_failed")
    # both framings at once is the request-smuggling shape: refused (RFC 9112 section 6.1)
    add("content-length-and-chunked", req("POST", PREDICT, b"2\r\n{}\r\n0\r\n\r\n", [
        ("Content-Type", "application/json"), ("Content-Length", "11"), ("Transfer-Encoding", "chunked")]), 400,
        "bad_request")
    add("content-length-short", req("POST", PREDICT, good_json.encode(), {
        "Content-Type": "application/json", "Content-Length": "10"}), 400, "invalid_json")

    # -- 14. chunked abuse
    chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    # malformed chunk framing: 400 (a size that is not hex, a sign, a size beyond 64 bits is 413)
    for i, body in enumerate([b"zz\r\n{}\r\n0\r\n\r\n", b"-1\r\n{}\r\n0\r\n\r\n",
                              b"2\r\n{}0\r\n\r\n", b"0x2\r\n{}\r\n0\r\n\r\n", b"2 3\r\n{}\r\n0\r\n\r\n"]):
        add("chunked-bad-%d" % i, req("POST", PREDICT, body, chunked), 400, "bad_request")
    add("chunked-size-65-bits", req("POST", PREDICT, b"fffffffffffffffffff\r\n{}\r\n0\r\n\r\n", chunked), 413,
        "payload_too_large")
    # a chunk extension and trailer fields are legal and ignored
    add("chunked-ext-trailer", req("POST", PREDICT, b"%x;name=v\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n"
                                   % (len(good_json), good_json.encode()), chunked), 200)
    add("chunked-huge-size", req("POST", PREDICT, b"7fffffffffffffff\r\n{}\r\n0\r\n\r\n", chunked), 413)
    add("chunked-over-limit", req("POST", PREDICT, b"".join(b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
                                                             for _ in range(2)) + b"0\r\n\r\n", chunked), 413)
    add("chunked-broken-json", req("POST", PREDICT, b"3\r\n{\"a\r\n0\r\n\r\n", chunked), 400, "invalid_json")
    add("chunked-valid", req("POST", PREDICT, b"%x\r\n%s\r\n0\r\n\r\n" % (len(good_json), good_json.encode()),
                             chunked), 200)
    # an unknown transfer coding: 501 (RFC 9112 section 6.1), the only non-method 501
    add("transfer-encoding-unknown", req("POST", PREDICT, b"{}", {"Content-Type": "application/json",
                                                                  "Transfer-Encoding": "gzip"}), 501,
        "not_implemented")

    # -- 15. content types
    for i, ct in enumerate(["text/plain", "application/jsonx", "application/xml", "", "json",
                            "multipart/form-data; boundary=x"]):
        add("content-type-%d" % i, post_json(good_json.encode(), ctype=ct), 415, "unsupported_media_type")
    return cases


# --------------------------------------------------------------------------- transport


def send_raw(port, data, timeout=10.0):
    """Sends data in 64 KiB pieces, stopping early if the server already answered (it refuses
    an over-limit body after the headers and closes); returns (status or None if the server
    closed without an answer, RawResponse or None)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            for off in range(0, len(data), 1 << 16):
                s.sendall(data[off:off + (1 << 16)])
                readable, _, _ = select.select([s], [], [], 0)
                if readable:
                    break
            else:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE / ECONNRESET / ENOTCONN: the server stopped reading
            pass
        try:
            resp = h.read_raw_response(s, "POST" if data.startswith(b"POST") else "GET")
        except (ConnectionResetError, ConnectionAbortedError):
            return None, None
        except Exception as e:  # http.client.RemoteDisconnected / BadStatusLine: no answer
            if type(e).__name__ in ("RemoteDisconnected", "BadStatusLine", "IncompleteRead"):
                return None, None
            raise
        return resp.status, resp


@pytest.fixture(scope="module")
def hostile_server(demo_dir, tmp_path_factory):
    srv = h.start_server(demo_dir, str(tmp_path_factory.mktemp("hostile")),
                         {"READ_TIMEOUT": str(READ_TIMEOUT_S), "WRITE_TIMEOUT": "5"})
    yield srv
    rc, killed = srv.stop()
    log = srv.log_text()
    assert not killed and rc == 0, "server did not exit 0 on SIGTERM (rc=%s)\n%s" % (rc, srv.log_tail())
    for marker in CRASH_MARKERS:
        assert marker not in log, "server log has %r:\n%s" % (marker, srv.log_tail(80))


@pytest.fixture(scope="module")
def cases(demo_manifests):
    return build_cases(demo_manifests[PARK])


def assert_alive(srv, park):
    assert srv.proc.poll() is None, "server died\n%s" % srv.log_tail(80)
    assert srv.get("/health").status_code == 200
    r = srv.predict(PARK, {"features": h.valid_features(park)})
    assert r.status_code == 200, r.text


def check_case(srv, case):
    cid, data, want, code = case
    status, resp = send_raw(srv.port, data)
    assert status is not None, "%s: connection closed without an answer" % cid
    assert status < 500 or (status == 501 and want == 501), "%s: got %d (5xx)" % (cid, status)
    if want in ("rid-replaced", "rid-kept"):
        assert status == 200, "%s: expected 200, got %d" % (cid, status)
        rid = resp.headers.get("x-request-id", "")
        assert rid and all(c.isalnum() or c in "-_." for c in rid), (cid, rid)
        if want == "rid-kept":
            assert rid == "a", (cid, rid)
        else:
            raw = data.split(b"X-Request-ID: ")[1].split(b"\r\n")[0]
            assert rid.encode("latin-1") != raw, (cid, rid)
        assert "injected" not in resp.headers and "folded" not in resp.headers, (cid, resp.headers)
        assert "set-cookie" not in resp.headers, (cid, resp.headers)
        return
    assert status == want, "%s: expected %d, got %d: %r" % (cid, want, status, resp.body[:300])
    if code is not None:
        err = resp.json()["error"]
        assert err["code"] == code, "%s: expected code %r, got %r" % (cid, code, err)
        # no fragment of the submitted body is echoed in a JSON parse error
        if code == "invalid_json":
            assert "near" not in err["message"], (cid, err["message"])


def test_corpus_size(cases):
    assert len(cases) >= 200, len(cases)
    assert len({c[0] for c in cases}) == len(cases), "duplicate case ids"


def test_hostile_corpus(hostile_server, cases, demo_manifests):
    park = demo_manifests[PARK]
    before = len(hostile_server.prediction_ids())
    failures = []
    for start in range(0, len(cases), BATCH):
        for case in cases[start:start + BATCH]:
            try:
                check_case(hostile_server, case)
            except AssertionError as e:
                failures.append(str(e))
        assert_alive(hostile_server, park)
    assert not failures, "%d of %d cases failed:\n%s" % (len(failures), len(cases), "\n".join(failures))
    # the predictions the corpus expects to succeed (and the health predicts) were all recorded
    n_200 = sum(1 for c in cases if c[2] == 200 and c[1].startswith(b"POST"))
    n_health = (len(cases) + BATCH - 1) // BATCH
    assert len(hostile_server.prediction_ids()) == before + n_200 + n_health
    # SQL metacharacters were stored as data: the tables are intact
    with hostile_server.db() as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "predictions" in names and "api_keys" in names, names


def test_slow_senders(hostile_server, demo_manifests):
    """Slowloris: connections that trickle headers or a body, or send nothing, are closed by
    the server after READ_TIMEOUT (bounded: it answers 408 or just closes, never waits forever)
    while other clients are served meanwhile."""
    park = demo_manifests[PARK]
    socks = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", hostile_server.port), timeout=10)
            if i % 3 == 0:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finish
            elif i % 3 == 1:
                s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{\"features\":" % PREDICT.encode())  # short body
            socks.append(s)  # i % 3 == 2: sends nothing at all
        # a few drips, each well inside READ_TIMEOUT, on the header-trickling ones
        for _ in range(2):
            time.sleep(0.5)
            for i, s in enumerate(socks):
                if i % 3 == 0:
                    s.sendall(b"X-Slow: 1\r\n")
            # on a fresh connection: a pooled one idle since before a stall may be closing
            hostile_server.session.close()
            assert hostile_server.get("/health", timeout=5).status_code == 200
        t0 = time.monotonic()
        for s in socks:
            s.settimeout(READ_TIMEOUT_S * 4 + 5)
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            if data:
                status = int(data.split(b" ", 2)[1])
                assert status == 408 or 400 <= status < 500, data[:200]
        elapsed = time.monotonic() - t0
        assert elapsed < READ_TIMEOUT_S * 4 + 5, elapsed
    finally:
        for s in socks:
            s.close()
    # The session's pooled keep-alive connection was last used during the drips; the server
    # closes idle connections after READ_TIMEOUT_S too, about when the slow sockets' answers
    # arrive, so reusing it races that (legitimate) close. Check liveness on fresh connections.
    hostile_server.session.close()
    assert_alive(hostile_server, park)


def test_pipelined_garbage_after_valid(hostile_server, demo_manifests):
    """A valid request followed on the same connection by garbage: the first is answered 200,
    the garbage gets a 400 or a close, and the server keeps serving."""
    park = demo_manifests[PARK]
    body = json.dumps({"features": h.valid_features(park)}).encode()
    data = req("POST", PREDICT, body, {"Content-Type": "application/json"}, close=False) + b"\x00\x01garbage\r\n\r\n"
    with socket.create_connection(("127.0.0.1", hostile_server.port), timeout=10) as s:
        s.sendall(data)
        first = h.read_raw_response(s, "POST")
        assert first.status == 200, first.body[:300]
    assert_alive(hostile_server, park)


def test_log_has_no_phi_from_corpus(hostile_server):
    """The SQL-metacharacter patient ids must not appear in the server log (no PHI in logs)."""
    log = hostile_server.log_text()
    for s in ("DROP TABLE predictions", "UNION SELECT", "writable_schema"):
        assert s not in log, s


def test_server_log_clean(hostile_server):
    log = hostile_server.log_text()
    for marker in CRASH_MARKERS:
        assert marker not in log, "server log has %r:\n%s" % (marker, hostile_server.log_tail(80))
    assert hostile_server.proc.poll() is None
