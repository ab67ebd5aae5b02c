/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the HTTP/1.x request parser (src/http/parse.c). The input is a byte
 * stream as a client would send it; the head is parsed with small limits, and when it frames
 * a chunked body the decoder runs on the rest, fed in two pieces to exercise resumption.
 * Checks: every pointer the parser returns lies inside the buffer and is NUL-terminated
 * there, a complete head never reports more than it was given, the decoded body never
 * exceeds the limit nor runs past the raw bytes. Any crash, overflow or UB is a finding. */
#include <event2/http.h>

#include "fuzz_common.h"
#include "http/parse.h"

#define MAX_HEAD 2048
#define MAX_BODY 4096

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void check_str(const char *buf, size_t len, const char *s)
{
    if (!s || s < buf || s >= buf + len)
        abort();
    if (!memchr(s, '\0', (size_t)(buf + len - s)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_cstr(data, size);
    http_head_t h;
    int rc = http_parse_head(buf, size, MAX_HEAD, MAX_BODY, &h);
    if (rc > 0) {
        size_t head = (size_t)rc;
        if (head > size || head > MAX_HEAD)
            abort();
        check_str(buf, head, h.method_name);
        check_str(buf, head, h.target);
        /* a declared length over the limit parses, flagged, so that the 413 keeps the head */
        if (h.n_fields > HTTP_MAX_FIELDS || (h.chunked && h.has_length) ||
            h.body_too_large != (h.has_length && h.content_length > MAX_BODY))
            abort();
        for (size_t i = 0; i < h.n_fields; i++) {
            check_str(buf, head, h.fields[i].name);
            check_str(buf, head, h.fields[i].value);
            if (h.fields[i].value + h.fields[i].value_len > buf + head)
                abort();
        }
        (void)http_head_field(&h, "Content-Type");
        if (h.chunked) {
            http_chunk_state_t st = {0};
            size_t raw = head, body = 0, half = head + (size - head) / 2;
            int d = http_decode_chunked(buf, half, head, &raw, &body, MAX_BODY, &st);
            if (d == 0) {
                /* the caller closes the gap between decoded data and raw rest; so do we */
                memmove(buf + head + body, buf + raw, size - raw);
                size_t n = size - (raw - (head + body));
                raw = head + body;
                d = http_decode_chunked(buf, n, head, &raw, &body, MAX_BODY, &st);
                if (raw > n)
                    abort();
            }
            if (body > MAX_BODY || (d == 1 && raw > size))
                abort();
            if (d != 0 && d != 1 && d != -400 && d != -413)
                abort();
        }
    } else if (rc != 0 && rc != -400 && rc != -413 && rc != -414 && rc != -431 && rc != -501) {
        abort();
    }
    (void)http_reason(rc < 0 ? -rc : 200);
    free(buf);
    return 0;
}
