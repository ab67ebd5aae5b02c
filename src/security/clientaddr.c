/* SPDX-License-Identifier: Apache-2.0 */
/* TRUSTED_PROXIES and the client address behind them; see clientaddr.h. Addresses are kept
 * as 16 bytes (IPv4 as IPv4-mapped IPv6, its prefix length plus 96), so one masked compare
 * serves both families and "::ffff:10.0.0.1" from a dual-stack socket matches "10.0.0.0/8". */
#include "security/clientaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

typedef struct net {
    uint8_t addr[16];
    int prefix; /* 0..128 */
} net_t;

struct clientaddr_proxies {
    size_t n;
    net_t nets[CLIENTADDR_MAX_PROXIES];
};

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Parses a bare address (no port, no brackets; a %zone is dropped) of n bytes into 16 bytes.
 * Returns 4 or 6 (the family as written), or 0 when it is not an address. */
static int parse_ip(const char *s, size_t n, uint8_t out[16])
{
    char buf[CLIENTADDR_LEN];
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *zone = strchr(buf, '%');
    if (zone)
        *zone = '\0';
    struct in_addr a4;
    if (strchr(buf, ':') == NULL) {
        if (inet_pton(AF_INET, buf, &a4) != 1)
            return 0;
        memcpy(out, v4_mapped, 12);
        memcpy(out + 12, &a4, 4);
        return 4;
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET6, buf, &a6) != 1)
        return 0;
    memcpy(out, &a6, 16);
    return 6;
}

static bool in_net(const net_t *nt, const uint8_t a[16])
{
    int bits = nt->prefix, i = 0;
    for (; bits >= 8; bits -= 8, i++)
        if (nt->addr[i] != a[i])
            return false;
    if (bits == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - bits));
    return (nt->addr[i] & mask) == (a[i] & mask);
}

/* Whether the block holds IPv4 addresses (as IPv4-mapped IPv6): inside ::ffff:0:0/96, or
 * wider than it and around it. */
static bool holds_ipv4(const net_t *nt)
{
    uint8_t mapped0[16] = {0};
    memcpy(mapped0, v4_mapped, sizeof(v4_mapped));
    return memcmp(nt->addr, v4_mapped, sizeof(v4_mapped)) == 0 || in_net(nt, mapped0);
}

static bool contains(const clientaddr_proxies_t *p, const uint8_t a[16])
{
    if (!p)
        return false;
    for (size_t i = 0; i < p->n; i++)
        if (in_net(&p->nets[i], a))
            return true;
    return false;
}

static void format_ip(const uint8_t a[16], char *out, size_t outlen)
{
    char buf[INET6_ADDRSTRLEN];
    const char *r = memcmp(a, v4_mapped, 12) == 0 ? inet_ntop(AF_INET, a + 12, buf, sizeof(buf))
                                                  : inet_ntop(AF_INET6, a, buf, sizeof(buf));
    snprintf(out, outlen, "%s", r ? r : "");
}

int clientaddr_proxies_parse(const char *spec, clientaddr_proxies_t **ret, char *err, size_t errlen)
{
    *ret = NULL;
    if (!spec)
        return 0;
    const char *p = spec;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p)
        return 0;
    clientaddr_proxies_t *set = calloc(1, sizeof(*set));
    if (!set)
        return -ENOMEM;
    const char *cur = spec, *a;
    size_t n;
    double v4_addrs = 0, v6_addrs = 0; /* how many addresses the entries trust, together */
    while (util_list_next(&cur, &a, &n)) {
        const char *b = a + n;
        const char *slash = memchr(a, '/', n);
        net_t nt = {0};
        int fam = parse_ip(a, slash ? (size_t)(slash - a) : n, nt.addr);
        bool ok = fam != 0 && memchr(a, '%', n) == NULL;
        if (ok && slash) {
            int64_t pl = -1;
            const char *d = slash + 1;
            if (d < b && (size_t)(b - d) <= 3) {
                pl = 0;
                for (; d < b && isdigit((unsigned char)*d); d++)
                    pl = pl * 10 + (*d - '0');
                if (d != b)
                    pl = -1;
            }
            int maxp = fam == 4 ? 32 : 128;
            ok = pl >= 0 && pl <= maxp;
            nt.prefix = ok ? (int)pl + (fam == 4 ? 96 : 0) : 0;
        } else {
            nt.prefix = 128;
        }
        if (!ok) {
            snprintf(err, errlen, "'%.*s' is not an IPv4/IPv6 address or CIDR block (e.g. 10.0.0.0/8, ::1)",
                     (int)(n > 60 ? 60 : n), a);
            goto fail;
        }
        /* review58 S1: every address a proxy, so every client picks its own address (lockout,
         * rate limits and the trail's source_ip with it). Not only /0: a block wider than a /8
         * of IPv4 (also written as IPv4-mapped IPv6, ::ffff:0:0/96, or a short IPv6 prefix
         * that holds those) or a /8 of IPv6 (fd00::/8, the unique local addresses, is as wide
         * as 10.0.0.0/8) is no proxy network either (review62 #6). */
        bool holds_v4 = holds_ipv4(&nt);
        if (slash && (nt.prefix == (fam == 4 ? 96 : 0) || (holds_v4 ? nt.prefix < 96 + 8 : nt.prefix < 8))) {
            snprintf(err, errlen,
                     "'%.*s' trusts %s: each client there could choose its own address; list the proxies' "
                     "addresses or networks (at most a /8 of IPv4 or of IPv6)",
                     (int)(n > 60 ? 60 : n), a,
                     nt.prefix == (fam == 4 ? 96 : 0) ? "every address"
                     : holds_v4                       ? "too much of IPv4"
                                                      : "too much of IPv6");
            goto fail;
        }
        if (set->n == CLIENTADDR_MAX_PROXIES) {
            snprintf(err, errlen, "more than %d entries", CLIENTADDR_MAX_PROXIES);
            goto fail;
        }
        /* host bits beyond the prefix are ignored: 10.1.2.3/8 means 10.0.0.0/8 */
        set->nets[set->n++] = nt;
    }
    /* what the entries cover together: blocks are nested or apart, so the union counts each
     * block not inside another (the first of equal ones; review65 #6: a repeated 10.0.0.0/8
     * counted three times) */
    for (size_t i = 0; i < set->n; i++) {
        const net_t *ni = &set->nets[i];
        bool inside = false;
        for (size_t j = 0; j < set->n && !inside; j++)
            inside = j != i && set->nets[j].prefix <= ni->prefix && in_net(&set->nets[j], ni->addr) &&
                     (set->nets[j].prefix < ni->prefix || j < i);
        if (inside)
            continue;
        if (holds_ipv4(ni))
            v4_addrs += ldexp(1.0, 128 - ni->prefix);
        else
            v6_addrs += ldexp(1.0, 128 - ni->prefix);
    }
    /* and together at most two /8s' worth (10.0.0.0/8, 172.16.0.0/12 and 192.168.0.0/16 with
     * hosts pass; 64 /8s, a quarter of IPv4, do not: review63 #3) */
    if (v4_addrs > ldexp(1.0, 25) || v6_addrs > ldexp(1.0, 121)) {
        snprintf(err, errlen, "the entries together trust more than two /8s of %s: each client there could "
                 "choose its own address; list the proxies' addresses or networks",
                 v4_addrs > ldexp(1.0, 25) ? "IPv4" : "IPv6");
        goto fail;
    }
    *ret = set;
    return 0;
fail:
    free(set);
    return -EINVAL;
}

void clientaddr_proxies_free(clientaddr_proxies_t *p)
{
    free(p);
}

bool clientaddr_is_trusted(const clientaddr_proxies_t *p, const char *addr)
{
    uint8_t a[16];
    return p && addr && parse_ip(addr, strlen(addr), a) && contains(p, a);
}

/* One X-Forwarded-For entry [a, b) to 16 bytes: "1.2.3.4", "1.2.3.4:80", "::1", "[::1]",
 * "[::1]:80". False when malformed ("unknown", obfuscated identifiers, junk). */
static bool parse_entry(const char *a, const char *b, uint8_t out[16])
{
    while (a < b && (*a == ' ' || *a == '\t'))
        a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
    if (a == b)
        return false;
    if (*a == '[') {
        const char *close = memchr(a, ']', (size_t)(b - a));
        if (!close)
            return false;
        const char *rest = close + 1;
        if (rest < b) {
            if (*rest != ':' || rest + 1 == b)
                return false;
            for (const char *q = rest + 1; q < b; q++)
                if (!isdigit((unsigned char)*q))
                    return false;
        }
        return parse_ip(a + 1, (size_t)(close - a - 1), out) == 6;
    }
    const char *colon = memchr(a, ':', (size_t)(b - a));
    if (colon && memchr(colon + 1, ':', (size_t)(b - colon - 1)) == NULL) {
        /* exactly one colon: IPv4 with a port */
        if (colon + 1 == b)
            return false;
        for (const char *q = colon + 1; q < b; q++)
            if (!isdigit((unsigned char)*q))
                return false;
        return parse_ip(a, (size_t)(colon - a), out) == 4;
    }
    return parse_ip(a, (size_t)(b - a), out) != 0;
}

bool clientaddr_select(const clientaddr_proxies_t *p, const char *peer, const char *xff, char *out,
                       size_t outlen)
{
    uint8_t pa[16];
    bool peer_ok = peer && parse_ip(peer, strlen(peer), pa);
    size_t xl = xff ? strlen(xff) : 0;
    if (xl > CLIENTADDR_MAX_XFF) {
        /* only the end is examined: the right-most entries, those the trusted proxies wrote.
         * Ignoring a longer header whole let a client pad it and be taken for the proxy
         * (review58 #1). The entry the cut lands in is not one of them. */
        const char *tail = strchr(xff + xl - CLIENTADDR_MAX_XFF, ',');
        xff = tail ? tail + 1 : "";
    }
    if (!p || !peer_ok || !contains(p, pa) || !xff) {
        if (peer_ok)
            format_ip(pa, out, outlen);
        else
            snprintf(out, outlen, "%s", peer ? peer : "");
        return false;
    }
    uint8_t last_trusted[16], cur[16];
    memcpy(last_trusted, pa, 16);
    const char *end = xff + strlen(xff);
    bool any = false;
    for (int hop = 0; hop < CLIENTADDR_MAX_HOPS && end > xff; hop++) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        end = start > xff ? start - 1 : xff;
        if (a == b && hop == 0 && start == xff)
            break; /* an empty header */
        if (!parse_entry(start, b, cur))
            break; /* a trusted hop forwarded garbage: keep the last trusted address */
        any = true;
        if (!contains(p, cur)) {
            format_ip(cur, out, outlen);
            return true;
        }
        memcpy(last_trusted, cur, 16);
    }
    format_ip(last_trusted, out, outlen);
    return any;
}

/* ---- the server's process-wide set ---- */

static clientaddr_proxies_t *g_proxies;

int clientaddr_configure(const char *spec, char *err, size_t errlen)
{
    char why[200] = "";
    clientaddr_proxies_t *p = NULL;
    int rc = clientaddr_proxies_parse(spec, &p, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "TRUSTED_PROXIES: %s", why[0] ? why : strerror(-rc));
        return rc;
    }
    clientaddr_proxies_free(g_proxies);
    g_proxies = p;
    return 0;
}

void clientaddr_deconfigure(void)
{
    clientaddr_proxies_free(g_proxies);
    g_proxies = NULL;
}

void clientaddr_apply(http_ctx_t *ctx)
{
    if (!g_proxies)
        return;
    const char *peer = http_ctx_peer(ctx);
    char client[CLIENTADDR_LEN];
    /* every X-Forwarded-For header, as one list: a proxy that adds its own header instead of
     * appending to the client's must not let the client's header speak for it */
    char xff[CLIENTADDR_MAX_XFF + 2];
    const char *list = http_ctx_header_list(ctx, "X-Forwarded-For", xff, sizeof(xff)) >= 0 ? xff : NULL;
    if (clientaddr_select(g_proxies, peer, list, client, sizeof(client)))
        http_ctx_set_peer(ctx, client);
}
