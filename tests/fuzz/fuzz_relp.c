/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the RELP frame parser (relp_parse), which reads what a SIEM receiver sends
 * back. The input is parsed as a stream, frame after frame, as the forwarder does: a frame
 * must lie inside the bytes given, take at least its header, and reframe to the same bytes;
 * rsp texts and the open's command list are read from every frame. */
#include <errno.h>

#include "audit/relp.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_exact_copy(data, size); /* a read past the end is caught */
    size_t pos = 0;
    for (;;) {
        relp_msg_t m;
        size_t used = 0;
        int r = relp_parse(buf + pos, size - pos, &m, &used);
        if (r != 1) {
            if (r != 0 && r != -EPROTO)
                abort();
            break;
        }
        if (used < 6 || used > size - pos || m.data < buf + pos || m.data + m.data_len > buf + pos + used)
            abort();
        char text[64];
        relp_rsp_text(&m, text, sizeof(text));
        relp_offers(&m, "syslog");
        if (m.txnr <= RELP_TXNR_MAX && m.data_len <= RELP_MAX_DATA) {
            char *f;
            size_t fl;
            if (relp_frame(m.txnr, m.command, m.data, m.data_len, &f, &fl) != 0)
                abort();
            /* the same frame, unless the input wrote its numbers with leading zeros */
            if (fl == used && memcmp(f, buf + pos, fl) != 0)
                abort();
            free(f);
        }
        pos += used;
    }
    free(buf);
    return 0;
}
