/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.x request parsing (RFC 9112), in place and without allocation: the request head
 * is split into NUL-terminated method, target and header strings inside the caller's
 * buffer, and a chunked body is decoded in place. Pure functions over a byte buffer, so
 * they are unit-tested and fuzzed alone (tests/unit/http/test_parse.c, tests/fuzz/
 * fuzz_http.c); src/http/server.c drives them from its connections.
 *
 * Refusals are HTTP statuses (returned negated) so the server answers them directly:
 * 400 malformed, 413 body over the limit, 414 request line over the head limit, 431 head
 * over the limit or too many fields, 501 unknown method or transfer coding. A 400 also
 * leaves in `why` which rule was broken (set only on that path: nothing on the way of a
 * good request). */
#ifndef AIMEDRES_HTTP_PARSE_H
#define AIMEDRES_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_FIELDS 64

typedef struct http_field {
    const char *name;  /* NUL-terminated, as received (match case-insensitively) */
    const char *value; /* NUL-terminated, surrounding whitespace removed */
    size_t value_len;  /* the value's length (strlen: a NUL in a field is refused) */
} http_field_t;

typedef struct http_head {
    unsigned method; /* EVHTTP_REQ_* bit, 0 if unknown */
    const char *method_name;
    const char *target; /* request target as received (percent-encoded), NUL-terminated */
    int minor;          /* HTTP/1.<minor>: 0 or 1 */
    /* framing, derived from the fields */
    bool chunked;
    bool has_length;
    uint64_t content_length;
    bool keep_alive;      /* HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with keep-alive */
    bool expect_continue; /* "Expect: 100-continue" */
    bool body_too_large;  /* declared Content-Length over max_body: answer 413 with this head */
    unsigned n_host;      /* Host fields (the server wants exactly one in HTTP/1.1) */
    const char *why;      /* after a -400: which rule the head broke (a static string), for the answer */
    size_t n_fields;
    http_field_t fields[HTTP_MAX_FIELDS]; /* last: the parser clears everything before it */
} http_head_t;

/* Parses the head at buf[0..len). Returns the head's length (through the empty line) when it
 * is complete, 0 when more bytes are needed (and len is still within max_head), or a negated
 * status: -400, -413 (a Content-Length beyond 2^64), -414, -431, -501. A declared
 * Content-Length over max_body parses, with body_too_large set, so that the 413 keeps the
 * request's id and CORS headers. On success,
 * buf's bytes inside the head are rewritten (NULs, folded lines). */
int http_parse_head(char *buf, size_t len, size_t max_head, uint64_t max_body, http_head_t *h);

/* Looks a field up by name (case-insensitive); the first occurrence, or NULL. */
const char *http_head_field(const http_head_t *h, const char *name);
/* How many times the field occurs (case-insensitive name). */
size_t http_head_field_count(const http_head_t *h, const char *name);

/* Incremental in-place decoder of a chunked body. The raw bytes after the head sit at
 * buf[*raw_off .. len); decoded data is moved down to buf[start .. start + *body_len).
 * Keep the state between calls (zero it for a new body). Returns 1 when the body and its
 * trailers are complete (*raw_off then points after them), 0 when more bytes are needed,
 * -400 for malformed framing, -413 when the decoded body would exceed max_body. */
typedef struct http_chunk_state {
    int phase;          /* 0 size line, 1 data, 2 CRLF after data, 3 trailers */
    uint64_t remaining; /* data bytes left in the current chunk */
    const char *why;    /* after a -400: what is malformed (a static string), for the answer */
} http_chunk_state_t;

int http_decode_chunked(char *buf, size_t len, size_t start, size_t *raw_off, size_t *body_len,
                        uint64_t max_body, http_chunk_state_t *st);

/* Reason phrase for a status ("OK", "Not Found", ...); "Unknown" for others. */
const char *http_reason(int status);

#endif
