/* SPDX-License-Identifier: Apache-2.0 */
/* RELP frames (see relp.h). */
#include "audit/relp.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned relp_next_txnr(unsigned t)
{
    return t >= RELP_TXNR_MAX ? 1 : t + 1;
}

int relp_frame(unsigned txnr, const char *command, const char *data, size_t len, char **ret, size_t *ret_len)
{
    size_t cl = strlen(command);
    if (cl < 1 || cl > 32 || len > RELP_MAX_DATA || txnr > RELP_TXNR_MAX)
        return -EINVAL;
    for (size_t i = 0; i < cl; i++)
        if (!isalpha((unsigned char)command[i]))
            return -EINVAL;
    char head[64];
    int h = snprintf(head, sizeof(head), len ? "%u %s %zu " : "%u %s %zu", txnr, command, len);
    char *out = malloc((size_t)h + len + 2);
    if (!out)
        return -ENOMEM;
    memcpy(out, head, (size_t)h);
    if (len)
        memcpy(out + h, data, len);
    out[(size_t)h + len] = '\n';
    out[(size_t)h + len + 1] = '\0';
    *ret = out;
    *ret_len = (size_t)h + len + 1;
    return 0;
}

/* A NUMBER (1..9 digits) at buf[*pos], ended by end_char. 1 when read (pos past end_char), 0
 * when the bytes end first, -EPROTO when it is not a number so ended. */
static int number(const char *buf, size_t len, size_t *pos, char end_char, unsigned long *ret)
{
    size_t i = *pos, digits = 0;
    unsigned long v = 0;
    for (; i < len && isdigit((unsigned char)buf[i]); i++) {
        if (++digits > 9)
            return -EPROTO;
        v = v * 10 + (unsigned long)(buf[i] - '0');
    }
    if (i == len)
        return 0;
    if (!digits || buf[i] != end_char)
        return -EPROTO;
    *pos = i + 1;
    *ret = v;
    return 1;
}

int relp_parse(const char *buf, size_t len, relp_msg_t *m, size_t *used)
{
    size_t pos = 0;
    unsigned long txnr, datalen;
    int r = number(buf, len, &pos, ' ', &txnr);
    if (r <= 0)
        return r;
    size_t c0 = pos;
    while (pos < len && isalpha((unsigned char)buf[pos]) && pos - c0 < 32)
        pos++;
    if (pos == len)
        return 0;
    if (pos == c0 || buf[pos] != ' ')
        return -EPROTO;
    size_t cl = pos - c0;
    pos++;
    /* DATALEN ends with SP (data follows) or LF (no data) */
    size_t d0 = pos;
    r = number(buf, len, &pos, ' ', &datalen);
    if (r < 0) {
        pos = d0;
        r = number(buf, len, &pos, '\n', &datalen);
        if (r <= 0)
            return r;
        if (datalen != 0)
            return -EPROTO;
    } else if (r == 0) {
        return 0;
    } else {
        if (datalen == 0 || datalen > RELP_MAX_DATA)
            return -EPROTO;
        if (len - pos < datalen + 1)
            return 0;
        if (buf[pos + datalen] != '\n')
            return -EPROTO;
    }
    memset(m, 0, sizeof(*m));
    m->txnr = (unsigned)txnr;
    memcpy(m->command, buf + c0, cl);
    m->command[cl] = '\0';
    m->data = buf + pos;
    m->data_len = datalen;
    m->code = -1;
    if (strcmp(m->command, "rsp") == 0 && datalen >= 3 && isdigit((unsigned char)m->data[0]) &&
        isdigit((unsigned char)m->data[1]) && isdigit((unsigned char)m->data[2]) &&
        (datalen == 3 || m->data[3] == ' ' || m->data[3] == '\n'))
        m->code = (m->data[0] - '0') * 100 + (m->data[1] - '0') * 10 + (m->data[2] - '0');
    *used = pos + datalen + (datalen ? 1 : 0);
    return 1;
}

void relp_rsp_text(const relp_msg_t *m, char *out, size_t outlen)
{
    size_t start = m->code >= 0 ? 3 : 0, n = 0;
    if (start < m->data_len && m->data[start] == ' ')
        start++;
    for (size_t i = start; i < m->data_len && m->data[i] != '\n' && n + 1 < outlen; i++) {
        unsigned char c = (unsigned char)m->data[i];
        out[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (outlen)
        out[n] = '\0';
}

int relp_offers(const relp_msg_t *m, const char *command)
{
    size_t cl = strlen(command);
    const char *p = m->data, *end = m->data + m->data_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        if ((size_t)(line_end - p) > 9 && memcmp(p, "commands=", 9) == 0) {
            for (const char *c = p + 9; c < line_end;) {
                const char *comma = memchr(c, ',', (size_t)(line_end - c));
                const char *item_end = comma ? comma : line_end;
                if ((size_t)(item_end - c) == cl && memcmp(c, command, cl) == 0)
                    return 1;
                c = item_end + 1;
            }
        }
        p = line_end + 1;
    }
    return 0;
}
