/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.x request head and chunked body parsing; see parse.h. Strict where leniency lets
 * two parsers disagree about framing (RFC 9112 section 11.2, request smuggling): a bare CR,
 * whitespace before a field's colon, Transfer-Encoding together with Content-Length,
 * differing Content-Length values, a transfer coding other than chunked, a malformed
 * chunk size are all refused. Lenient where RFC 9112 allows it and clients rely on it: a
 * bare LF ends a line, empty lines before the request line are skipped, obs-fold becomes
 * spaces. */
#include "http/parse.h"

#include <event2/http.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

/* RFC 9110 tchar */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static const struct {
    const char *name;
    unsigned bit;
} methods[] = {
    {"GET", EVHTTP_REQ_GET},     {"POST", EVHTTP_REQ_POST},     {"HEAD", EVHTTP_REQ_HEAD},
    {"PUT", EVHTTP_REQ_PUT},     {"DELETE", EVHTTP_REQ_DELETE}, {"OPTIONS", EVHTTP_REQ_OPTIONS},
    {"PATCH", EVHTTP_REQ_PATCH},
};

/* The 400 answers: each says which rule was broken (RFC 9112 names them). */
#define BAD_REQUEST_LINE "malformed request line (expected METHOD SP request-target SP HTTP/1.x)"
#define BAD_VERSION "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 only)"
#define BAD_CR "bare CR in the request head (a CR is allowed only right before LF)"
#define BAD_NUL "NUL in a header field (RFC 9110 section 5.5)"
#define BAD_FIELD                                                                                            \
    "malformed header field (expected name: value, the name a token with no whitespace before the colon)"
#define BAD_LENGTH "malformed Content-Length (expected digits only)"
#define TWO_LENGTHS "two different Content-Length values"
#define BAD_TE "Transfer-Encoding: chunked given more than once or not last"
#define LENGTH_AND_TE "Content-Length and Transfer-Encoding both present"
#define BAD_CHUNK_SIZE "malformed chunk size (expected hex digits, optionally followed by ;extension)"
#define BAD_CHUNK_LINE "chunk size or trailer line longer than 1024 bytes"
#define BAD_CHUNK_END "chunk data not followed by CRLF (the chunk is longer than its size)"

static int bad(http_head_t *h, const char *why)
{
    h->why = why;
    return -400;
}

static int bad_chunk(http_chunk_state_t *st, const char *why)
{
    st->why = why;
    return -400;
}

/* End of the head: the offset just past the empty line, or 0 if not there yet. */
static size_t find_head_end(const char *buf, size_t len, size_t skip)
{
    size_t pos = skip;
    bool line_seen = false;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl)
            return 0;
        size_t end = (size_t)(nl - buf);
        size_t line_len = end - pos;
        if (line_len > 0 && buf[end - 1] == '\r')
            line_len--;
        if (line_len == 0 && line_seen)
            return end + 1;
        line_seen = true;
        pos = end + 1;
    }
    return 0;
}

static int parse_request_line(char *line, size_t n, http_head_t *h)
{
    char *sp = memchr(line, ' ', n);
    if (!sp || sp == line)
        return bad(h, BAD_REQUEST_LINE);
    for (char *p = line; p < sp; p++)
        if (!is_tchar((unsigned char)*p))
            return bad(h, BAD_REQUEST_LINE);
    *sp = '\0';
    h->method_name = line;
    h->method = 0;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(line, methods[i].name) == 0)
            h->method = methods[i].bit;
    if (!h->method)
        return -501; /* a token we do not implement (TRACE and CONNECT included) */
    char *target = sp + 1, *end = line + n;
    char *sp2 = memchr(target, ' ', (size_t)(end - target));
    if (!sp2 || sp2 == target)
        return bad(h, BAD_REQUEST_LINE);
    for (char *p = target; p < sp2; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return bad(h, BAD_REQUEST_LINE);
    *sp2 = '\0';
    h->target = target;
    char *ver = sp2 + 1;
    size_t vl = (size_t)(end - ver);
    if (vl < 5 || memcmp(ver, "HTTP/", 5) != 0 || memchr(ver, ' ', vl))
        return bad(h, BAD_REQUEST_LINE);
    if (vl != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || (ver[7] != '0' && ver[7] != '1'))
        return bad(h, BAD_VERSION);
    h->minor = ver[7] - '0';
    return 0;
}

/* How many times token is in the comma-separated list; *ret_last: whether it is the last. */
static int token_count(const char *list, const char *token, bool *ret_last)
{
    size_t tl = strlen(token);
    const char *p = list;
    int n = 0;
    bool last = false;
    while (*p) {
        while (*p == ',' || is_ows(*p))
            p++;
        if (!*p)
            break;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && is_ows(t[-1]))
            t--;
        last = (size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0;
        n += last;
        p = e;
    }
    if (ret_last)
        *ret_last = last;
    return n;
}

static bool token_in_list(const char *list, const char *token)
{
    return token_count(list, token, NULL) > 0;
}

/* Content-Length: 1*DIGIT. -400 malformed, -413 beyond 2^64-1. */
static int parse_length(http_head_t *h, const http_field_t *f, uint64_t *ret)
{
    if (f->value_len == 0)
        return bad(h, BAD_LENGTH);
    uint64_t v = 0;
    for (size_t i = 0; i < f->value_len; i++) {
        unsigned char c = (unsigned char)f->value[i];
        if (c < '0' || c > '9')
            return bad(h, BAD_LENGTH);
        if (v > (UINT64_MAX - (c - '0')) / 10)
            return -413;
        v = v * 10 + (c - '0');
    }
    *ret = v;
    return 0;
}

static int derive_framing(http_head_t *h, uint64_t max_body)
{
    int n_te = 0;
    h->keep_alive = h->minor == 1;
    for (size_t i = 0; i < h->n_fields; i++) {
        const http_field_t *f = &h->fields[i];
        if (strcasecmp(f->name, "Content-Length") == 0) {
            uint64_t v = 0;
            int rc = parse_length(h, f, &v);
            if (rc < 0)
                return rc;
            if (h->has_length && v != h->content_length)
                return bad(h, TWO_LENGTHS); /* RFC 9112 section 6.3: differing lengths are unrecoverable */
            h->has_length = true;
            h->content_length = v;
        } else if (strcasecmp(f->name, "Transfer-Encoding") == 0) {
            if (++n_te > 1)
                return bad(h, BAD_TE); /* chunked twice, or a coding after chunked: malformed framing */
            if (strcasecmp(f->value, "chunked") != 0 || strlen(f->value) != f->value_len) {
                /* chunked twice or not last: malformed (400); gzip, chunked: not implemented */
                bool last = false;
                int n = token_count(f->value, "chunked", &last);
                return n > 1 || (n == 1 && !last) ? bad(h, BAD_TE) : -501;
            }
            h->chunked = true;
        } else if (strcasecmp(f->name, "Connection") == 0) {
            if (token_in_list(f->value, "close"))
                h->keep_alive = false;
            else if (h->minor == 0 && token_in_list(f->value, "keep-alive"))
                h->keep_alive = true;
        } else if (strcasecmp(f->name, "Expect") == 0) {
            h->expect_continue = strcasecmp(f->value, "100-continue") == 0;
        } else if (strcasecmp(f->name, "Host") == 0) {
            h->n_host++;
        }
    }
    if (h->chunked && h->has_length)
        return bad(h, LENGTH_AND_TE); /* RFC 9112 section 6.1: a smuggling attempt, never guessed at */
    h->body_too_large = h->has_length && h->content_length > max_body;
    return 0;
}

int http_parse_head(char *buf, size_t len, size_t max_head, uint64_t max_body, http_head_t *h)
{
    memset(h, 0, offsetof(http_head_t, fields));
    /* RFC 9112 section 2.2: empty lines before the request line are ignored */
    size_t skip = 0;
    while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n') && skip < 8) {
        if (buf[skip] == '\r' && (skip + 1 >= len || buf[skip + 1] != '\n'))
            break;
        skip += buf[skip] == '\r' ? 2 : 1;
    }
    size_t head_end = find_head_end(buf, len, skip);
    if (head_end == 0 || head_end > max_head) {
        if (head_end == 0 && len <= max_head)
            return 0;
        /* over the limit: 414 while the request line itself has not ended within it */
        size_t lim = len < max_head ? len : max_head;
        return lim > skip && memchr(buf + skip, '\n', lim - skip) ? -431 : -414;
    }
    /* A CR is only allowed right before LF. NUL nowhere: in the request line it is malformed
     * (below); in a field it is refused, not kept, so that no value reads shorter here than
     * to a proxy in front (review58 #6: a credential cut at its NUL was accepted). */
    for (size_t i = skip; i < head_end; i++)
        if (buf[i] == '\r' && buf[i + 1] != '\n')
            return bad(h, BAD_CR);
    /* obs-fold: a line starting with SP or HTAB continues the previous field's value */
    size_t first_nl = (size_t)((char *)memchr(buf + skip, '\n', head_end - skip) - buf);
    if (memchr(buf + first_nl, '\0', head_end - first_nl))
        return bad(h, BAD_NUL);
    for (size_t i = first_nl; i + 1 < head_end; i++) {
        if (buf[i] != '\n' || !is_ows(buf[i + 1]))
            continue;
        if (i == first_nl)
            return bad(h, BAD_FIELD); /* whitespace after the request line: not a field, not a fold */
        buf[i] = ' ';
        if (buf[i - 1] == '\r')
            buf[i - 1] = ' ';
    }
    size_t pos = skip;
    bool first = true;
    while (pos < head_end) {
        char *nl = memchr(buf + pos, '\n', head_end - pos);
        size_t end = (size_t)(nl - buf), n = end - pos;
        if (n > 0 && buf[end - 1] == '\r')
            n--;
        char *line = buf + pos;
        pos = end + 1;
        if (first) {
            if (memchr(line, '\0', n))
                return bad(h, BAD_REQUEST_LINE);
            int rc = parse_request_line(line, n, h);
            if (rc < 0)
                return rc;
            first = false;
            continue;
        }
        if (n == 0)
            break; /* the empty line */
        char *colon = memchr(line, ':', n);
        if (!colon || colon == line)
            return bad(h, BAD_FIELD);
        for (char *p = line; p < colon; p++)
            if (!is_tchar((unsigned char)*p))
                return bad(h, BAD_FIELD); /* includes whitespace before the colon (RFC 9112 section 5.1) */
        if (h->n_fields == HTTP_MAX_FIELDS)
            return -431;
        char *v = colon + 1, *ve = line + n;
        while (v < ve && is_ows(*v))
            v++;
        while (ve > v && is_ows(ve[-1]))
            ve--;
        *colon = '\0';
        *ve = '\0';
        http_field_t *f = &h->fields[h->n_fields++];
        f->name = line;
        f->value = v;
        f->value_len = (size_t)(ve - v);
    }
    int rc = derive_framing(h, max_body);
    if (rc < 0)
        return rc;
    return (int)head_end;
}

const char *http_head_field(const http_head_t *h, const char *name)
{
    for (size_t i = 0; i < h->n_fields; i++)
        if (strcasecmp(h->fields[i].name, name) == 0)
            return h->fields[i].value;
    return NULL;
}

size_t http_head_field_count(const http_head_t *h, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n_fields; i++)
        n += strcasecmp(h->fields[i].name, name) == 0;
    return n;
}

#define MAX_CHUNK_LINE 1024

int http_decode_chunked(char *buf, size_t len, size_t start, size_t *raw_off, size_t *body_len,
                        uint64_t max_body, http_chunk_state_t *st)
{
    size_t off = *raw_off;
    for (;;) {
        size_t avail = len - off;
        if (st->phase == 0 || st->phase == 3) { /* a size line or a trailer line */
            char *nl = avail ? memchr(buf + off, '\n', avail) : NULL;
            if (!nl) {
                *raw_off = off;
                return avail > MAX_CHUNK_LINE ? bad_chunk(st, BAD_CHUNK_LINE) : 0;
            }
            size_t end = (size_t)(nl - buf), n = end - off;
            if (n > MAX_CHUNK_LINE)
                return bad_chunk(st, BAD_CHUNK_LINE);
            if (n > 0 && buf[end - 1] == '\r')
                n--;
            const char *line = buf + off;
            off = end + 1;
            if (st->phase == 3) {
                if (n == 0) {
                    *raw_off = off;
                    return 1;
                }
                continue; /* trailer fields are read and ignored */
            }
            size_t i = 0;
            uint64_t size = 0;
            for (; i < n && util_hexval(line[i]) >= 0; i++) {
                if (i >= 16)
                    return -413; /* more than 64 bits of size */
                size = size * 16 + (uint64_t)util_hexval(line[i]);
            }
            if (i == 0)
                return bad_chunk(st, BAD_CHUNK_SIZE);
            while (i < n && is_ows(line[i]))
                i++;
            if (i < n && line[i] != ';')
                return bad_chunk(st, BAD_CHUNK_SIZE); /* only a chunk extension may follow the size */
            for (size_t j = i; j < n; j++)
                if (line[j] == '\r' || line[j] == '\0')
                    return bad_chunk(st, BAD_CHUNK_SIZE);
            if (size == 0) {
                st->phase = 3;
                continue;
            }
            if (size > max_body || *body_len + size > max_body)
                return -413;
            st->remaining = size;
            st->phase = 1;
        } else if (st->phase == 1) {
            size_t n = avail < st->remaining ? avail : (size_t)st->remaining;
            memmove(buf + start + *body_len, buf + off, n);
            *body_len += n;
            off += n;
            st->remaining -= n;
            if (st->remaining > 0) {
                *raw_off = off;
                return 0;
            }
            st->phase = 2;
        } else { /* CRLF (or LF) after the chunk's data */
            if (avail == 0 || (buf[off] == '\r' && avail < 2)) {
                *raw_off = off;
                return 0;
            }
            if (buf[off] == '\n')
                off += 1;
            else if (buf[off] == '\r' && buf[off + 1] == '\n')
                off += 2;
            else
                return bad_chunk(st, BAD_CHUNK_END);
            st->phase = 0;
        }
    }
}

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
