/* SPDX-License-Identifier: Apache-2.0 */
/* The SIEM forwarder (see siem.h).
 *
 * DESIGN
 * - Position: the cursor names the file by inode (rotation renames the active file, so the
 *   inode follows the records into their archive), the byte offset after the last record
 *   sent, and that record's seq. When the inode is gone (pruned) the forwarder finds the
 *   first record after seq by scanning the files in chain order.
 * - Only complete lines are sent; a partial last line waits for the writer to finish it.
 * - States: disconnected -> (connect, backoff 0.5 s doubling to 30 s) -> connected. Before
 *   each batch a connected stream socket is polled: hung up means the receiver closed it
 *   (syslog receivers never send), so we reconnect before sending rather than writing into a
 *   dead connection.
 * - Delivery is confirmed by the receiver closing its side. Syslog has no acknowledgement, and
 *   a send that succeeds only means the bytes reached our socket buffer: a TLS 1.3 receiver
 *   that refuses the client (a client certificate required) does so after our side of the
 *   handshake is done (review62 #1); a receiver that stops reading, or a proxy whose backend
 *   is down, takes bytes into buffers and drops them (review64 #1, #2). So records count as
 *   delivered (the cursor is saved) only when the forwarder ends a connection and the
 *   receiver answers by ending its side: it has then read everything up to our end of stream
 *   (a receiver that closes with bytes unread resets the connection instead). The forwarder
 *   ends its connection once it has sent what the log holds and nothing new came for
 *   CONFIRM_IDLE_MS, or CONFIRM_MAX_MS after the first unconfirmed record, then reconnects.
 *   A connection that breaks, or whose end is not answered within IO_TIMEOUT_S, has its
 *   records sent again from the last confirmed one (at least once: the receiver may see some
 *   twice, with the same seq and hash), after a backoff that only a confirmation resets.
 *   After an end that got no answer (a hung receiver), the next connection first sends
 *   nothing and must be answered: a frozen receiver would otherwise find a copy of the same
 *   records in every connection queued meanwhile (review65 #2).
 * - RELP (relp.h) replaces that confirmation where the receiver speaks it: a session opens with
 *   "open" (the receiver must offer "syslog"), each record is a transaction, and after each
 *   batch the forwarder reads the receiver's answers in order; the cursor is saved after the
 *   last record answered 200. A refusal, a serverclose, a broken session or no answer within
 *   IO_TIMEOUT_S sends the records after it again, as above. The answer comes from the
 *   receiver itself, so a proxy in between no longer confirms for it (review65 #1), and no
 *   probe is needed (a receiver that does not answer does not answer the open either).
 * - Connected only while there is something to send: the forwarder connects when the log
 *   holds bytes it has not seen, and closes a connection idle for CONFIRM_IDLE_MS.
 * - The saved cursor is written crash-safely (atomic rename) at each confirmation. */
#include "audit/siem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/record.h"
#include "audit/relp.h"
#include "common/log.h"
#include "common/util.h"
#include "monitor/metrics.h"

#define BATCH 256
#define IO_TIMEOUT_S 5
#define IDLE_MS 200
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define CONFIRM_IDLE_MS 1000 /* caught up and nothing new this long: confirm what was sent */
#define CONFIRM_MAX_MS 10000 /* and at the latest this long after the first unconfirmed record */
#define STOP_CONFIRM_MS 2000 /* at stop, wait this long for the receiver's confirmation */
#define WARN_EVERY_MS 60000  /* a failure that persists is logged again this often */
#define MAX_MSG (AUDIT_MAX_LINE + 8192)
#define RSYSLOG_DEFAULT_MAX_MESSAGE 8096 /* rsyslog's maxMessageSize default (imtcp, imrelp) */

enum proto { P_UDP, P_TCP, P_TLS, P_RELP, P_RELP_TLS };

/* SYSLOG_PROTOCOL (config checked its form; unset: tcp). */
static enum proto proto_of(const char *name)
{
    static const struct {
        const char *name;
        enum proto proto;
    } names[] = {{"udp", P_UDP}, {"tls", P_TLS}, {"relp", P_RELP}, {"relp-tls", P_RELP_TLS}};
    for (size_t i = 0; name && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i].name) == 0)
            return names[i].proto;
    return P_TCP;
}

/* Whether proto runs over TLS (the client context, SYSLOG_CA_PATH, the client certificate). */
static bool proto_tls(enum proto p)
{
    return p == P_TLS || p == P_RELP_TLS;
}

/* A log file as a read found it: inode, bytes up to the end (a partial line included) and
 * modification time. */
typedef struct log_stamp {
    uint64_t ino;
    int64_t size;
    int64_t mtime_ns;
} log_stamp_t;

static log_stamp_t stamp_of(const struct stat *st, int64_t size)
{
    int64_t mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    return (log_stamp_t){(uint64_t)st->st_ino, size, mtime_ns};
}

typedef struct cursor {
    uint64_t ino;
    int64_t offset;
    uint64_t seq;
    char hash[65]; /* of the record at seq ("" in cursors of earlier versions) */
    char ts[40];   /* its "ts" (ISO 8601 UTC, fixed width: compares as text; "" likewise) */
    int64_t rec_off; /* where that record's line starts in the file of ino (-1: in an earlier file) */
    bool other_chain_said; /* not saved: the CRITICAL line for a replaced chain was logged */
} cursor_t;

struct audit_siem {
    char *log_path;
    char cursor_path[4200];
    char lock_path[4200];
    char host[256];
    char port[16];
    enum proto proto;
    int facility;
    char hostname[256];
    bool tls;  /* tls or relp-tls */
    bool relp; /* relp or relp-tls: the receiver answers each record (relp.h) */

    int sock;
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    int lock_fd;
    int64_t backoff_ms;
    int64_t next_connect_ms;
    int64_t connected_ms;   /* when the current connection was made */
    int64_t last_warn_ms;   /* when a connection failure was last logged (0: none since the last success) */
    unsigned failures;      /* connection failures since then */

    /* Delivery (see DESIGN): the forwarder reads and sends from its cursor; saved is what the
     * receiver confirmed (on disk). */
    cursor_t saved;
    int64_t unconfirmed_ms; /* when the first record not yet confirmed was sent (0: none) */
    int64_t last_sent_ms;   /* when a record was last sent */
    bool client_cert;       /* SYSLOG_TLS_CERT_PATH is set */
    bool probe;             /* the receiver did not answer: ask it, sending nothing, before resending */
    /* the log file as the last read to its end found it, and as it was when the forwarder
     * last went idle: while the file is so, there is nothing new to send */
    log_stamp_t end, idle;

    /* RELP: the session's last transaction number, the records of the batch in flight (their
     * transaction and the cursor after each), and what the receiver sent not yet parsed */
    unsigned txnr;
    struct relp_pending {
        unsigned txnr;
        size_t bytes; /* of its syslog message */
        cursor_t after;
    } pending[BATCH];
    size_t npending;
    char rbuf[16384];
    size_t rlen, rused; /* bytes in rbuf; of them, taken by the frame relp_next returned last */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t size_warned_ms; /* when a message over RSYSLOG_DEFAULT_MAX_MESSAGE was last logged */
    bool stopping;
    int64_t stop_ms; /* when stopping began (util_now_ms), under mu */
    pthread_t thread;
};

/* ---- metrics: one forwarder per process (serve's) ---- */

static _Atomic int64_t siem_delivered_seq; /* seq of the last record delivered */
static _Atomic int64_t siem_caught_up_ms;  /* when everything in the trail was last delivered */
static atomic_int siem_connected;

static void siem_collector(FILE *out, void *arg)
{
    (void)arg;
    fprintf(out,
            "# HELP audit_siem_connected Whether the SIEM forwarder holds a connection to SYSLOG_SERVER (it "
            "connects when there are records to send).\n"
            "# TYPE audit_siem_connected gauge\naudit_siem_connected %d\n"
            "# HELP audit_siem_delivered_seq The seq of the last audit record delivered to the SIEM.\n"
            "# TYPE audit_siem_delivered_seq gauge\naudit_siem_delivered_seq %lld\n"
            "# HELP audit_siem_caught_up_timestamp_seconds When every record of the audit trail had last "
            "been delivered to the SIEM (the forwarder's start until then).\n"
            "# TYPE audit_siem_caught_up_timestamp_seconds gauge\naudit_siem_caught_up_timestamp_seconds %.3f\n",
            atomic_load(&siem_connected), (long long)atomic_load(&siem_delivered_seq),
            (double)atomic_load(&siem_caught_up_ms) / 1e3);
}

/* ---- formatting ---- */

size_t audit_siem_escape(const char *in, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        bool esc = *p == '"' || *p == '\\' || *p == ']';
        if (esc) {
            if (n + 1 < outlen)
                out[n] = '\\';
            n++;
        }
        if (n + 1 < outlen)
            out[n] = *p;
        n++;
    }
    if (outlen)
        out[n < outlen ? n : outlen - 1] = '\0';
    return n;
}

typedef struct buf {
    char *d;
    size_t len, cap;
    bool failed;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = (b->len + n + 1) * 2;
        char *nd = realloc(b->d, nc);
        if (!nd) {
            b->failed = true;
            return;
        }
        b->d = nd;
        b->cap = nc;
    }
    memcpy(b->d + b->len, s, n);
    b->len += n;
    b->d[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_param(buf_t *b, const char *name, const char *value)
{
    size_t need = audit_siem_escape(value, NULL, 0);
    char *esc = malloc(need + 1);
    if (!esc) {
        b->failed = true;
        return;
    }
    audit_siem_escape(value, esc, need + 1);
    puts_(b, " ");
    puts_(b, name);
    puts_(b, "=\"");
    puts_(b, esc);
    puts_(b, "\"");
    free(esc);
}

/* PARAM-NAME / MSGID: 1..32 printable US-ASCII without '=', ' ', ']', '"'. */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (; *s; s++)
        if (*s < 33 || *s > 126 || *s == '=' || *s == ']' || *s == '"')
            return false;
    return true;
}

int audit_siem_format(const json_t *rec, int facility, const char *hostname, char **ret, size_t *ret_len)
{
    const char *type = json_string_value(json_object_get(rec, "type"));
    const char *ts = json_string_value(json_object_get(rec, "ts"));
    const char *outcome = json_string_value(json_object_get(rec, "outcome"));
    if (!type || !ts || facility < 0 || facility > 23)
        return -EINVAL;
    int severity = !outcome || strcmp(outcome, "success") == 0 ? 6 : 4;
    char head[512];
    snprintf(head, sizeof(head), "<%d>1 %s %s aimedres - %s [audit@32473", facility * 8 + severity, ts,
             hostname && *hostname && valid_name(hostname) ? hostname : "-", valid_name(type) ? type : "-");
    buf_t b = {0};
    puts_(&b, head);
    char num[32];
    snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(json_object_get(rec, "seq")));
    put_param(&b, "seq", num);
    static const char *const fields[] = {"type",        "user",      "role",      "action",
                                         "entity_type", "entity_id", "source_ip", "outcome",
                                         "request_id",  "patient",   "hash"};
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        const char *v = json_string_value(json_object_get(rec, fields[i]));
        if (v)
            put_param(&b, fields[i], v);
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(rec, "detail"), k, v)
    {
        char name[40];
        snprintf(name, sizeof(name), "d.%s", k);
        if (!valid_name(name))
            continue;
        if (json_is_string(v))
            put_param(&b, name, json_string_value(v));
        else if (json_is_integer(v) || json_is_real(v) || json_is_boolean(v)) {
            char *s = json_dumps(v, JSON_ENCODE_ANY);
            if (s)
                put_param(&b, name, s);
            free(s);
        }
    }
    puts_(&b, "] ");
    char *line = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    if (!line) {
        free(b.d);
        return -ENOMEM;
    }
    puts_(&b, line);
    free(line);
    if (b.failed) {
        free(b.d);
        return -ENOMEM;
    }
    *ret = b.d;
    *ret_len = b.len;
    return 0;
}

char *audit_siem_frame(const char *msg, size_t len, size_t *ret_len)
{
    char pre[32];
    int p = snprintf(pre, sizeof(pre), "%zu ", len);
    char *out = malloc((size_t)p + len + 1);
    if (!out)
        return NULL;
    memcpy(out, pre, (size_t)p);
    memcpy(out + p, msg, len);
    out[(size_t)p + len] = '\0';
    *ret_len = (size_t)p + len;
    return out;
}

/* ---- transport ---- */

/* "host:port", with brackets around an IPv6 address. */
static void endpoint(const audit_siem_t *s, char *buf, size_t len)
{
    snprintf(buf, len, strchr(s->host, ':') ? "[%s]:%s" : "%s:%s", s->host, s->port);
}

static void disconnect(audit_siem_t *s)
{
    if (s->ssl) {
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->sock >= 0)
        close(s->sock);
    s->sock = -1;
    s->npending = 0;
    s->rlen = s->rused = 0;
    atomic_store(&siem_connected, 0);
}

/* Writes all of buf to the stream connection. 0 or -errno. */
static int stream_write(audit_siem_t *s, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w;
        if (s->tls) {
            w = SSL_write(s->ssl, buf + off, (int)(len - off));
            if (w <= 0) {
                ERR_clear_error();
                return -EPIPE;
            }
        } else {
            w = send(s->sock, buf + off, len - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return w < 0 ? -errno : -EPIPE;
        }
        off += (size_t)w;
    }
    return 0;
}

static int64_t stop_capped(audit_siem_t *s, int64_t deadline_ms);
static bool stopping(audit_siem_t *s);

/* Reads what the receiver sent into rbuf, waiting until deadline_ms (util_now_ms). 1 when bytes
 * came, 0 at the deadline, -EPIPE at its end of stream or an error, -EMSGSIZE when rbuf is full
 * without a whole frame. A TLS 1.3 session ticket is processed and waited past. */
static int stream_fill(audit_siem_t *s, int64_t deadline_ms)
{
    if (s->rlen == sizeof(s->rbuf))
        return -EMSGSIZE;
    for (;;) {
        if (!s->tls || SSL_pending(s->ssl) == 0) {
            /* in slices, so that a stop that comes meanwhile shortens the wait */
            int64_t left = stop_capped(s, deadline_ms) - util_now_ms();
            struct pollfd pfd = {.fd = s->sock, .events = POLLIN};
            if (left <= 0)
                return 0;
            int pr = poll(&pfd, 1, left < 100 ? (int)left : 100);
            if (pr == 0 || (pr < 0 && errno == EINTR))
                continue;
            if (pr != 1)
                return -EPIPE;
        }
        size_t room = sizeof(s->rbuf) - s->rlen;
        if (s->tls) {
            int n = SSL_read(s->ssl, s->rbuf + s->rlen, (int)room);
            if (n > 0) {
                s->rlen += (size_t)n;
                return 1;
            }
            int e = SSL_get_error(s->ssl, n);
            ERR_clear_error();
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                continue;
            return -EPIPE;
        }
        ssize_t n = recv(s->sock, s->rbuf + s->rlen, room, MSG_DONTWAIT);
        if (n > 0) {
            s->rlen += (size_t)n;
            return 1;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        return -EPIPE;
    }
}

/* The next RELP frame from the receiver, by deadline_ms: 1 with *m (its data lives in rbuf
 * until the next call), 0 at the deadline, -EPIPE (closed), -EPROTO (not RELP), -EMSGSIZE (a
 * frame longer than rbuf). */
static int relp_next(audit_siem_t *s, int64_t deadline_ms, relp_msg_t *m)
{
    if (s->rused) {
        memmove(s->rbuf, s->rbuf + s->rused, s->rlen - s->rused);
        s->rlen -= s->rused;
        s->rused = 0;
    }
    for (;;) {
        size_t used;
        int r = relp_parse(s->rbuf, s->rlen, m, &used);
        if (r < 0)
            return r;
        if (r == 1) {
            s->rused = used;
            return 1;
        }
        if ((r = stream_fill(s, deadline_ms)) <= 0)
            return r;
    }
}

/* Sends a RELP command frame; 0 or -errno. */
static int relp_send(audit_siem_t *s, const char *command, const char *data, size_t len)
{
    char *f;
    size_t fl;
    s->txnr = relp_next_txnr(s->txnr);
    int rc = relp_frame(s->txnr, command, data, len, &f, &fl);
    if (rc < 0)
        return rc;
    rc = stream_write(s, f, fl);
    free(f);
    return rc;
}

/* RELP's session open: the receiver must answer 200 and offer the syslog command. */
static int relp_open(audit_siem_t *s, const char *where, char *err, size_t errlen)
{
    static const char offer[] = "relp_version=0\nrelp_software=aimedres," AIMEDRES_VERSION "\ncommands=syslog";
    s->txnr = 0;
    relp_msg_t m;
    int r = relp_send(s, "open", offer, sizeof(offer) - 1);
    if (r == 0)
        r = relp_next(s, util_now_ms() + IO_TIMEOUT_S * 1000, &m);
    if (r == 1 && m.txnr == s->txnr && m.code == 200 && relp_offers(&m, "syslog"))
        return 0;
    char why[300];
    bool rsp = r == 1 && strcmp(m.command, "rsp") == 0 && m.txnr == s->txnr;
    if (rsp && m.code != 200) {
        char text[200];
        relp_rsp_text(&m, text, sizeof(text));
        snprintf(why, sizeof(why), "it answered %d %s", m.code, text);
    } else if (rsp) {
        snprintf(why, sizeof(why), "it does not offer the syslog command");
    } else if (r == -EMSGSIZE) {
        snprintf(why, sizeof(why), "its answer is longer than 16 KiB");
    } else if (r < 0 && r != -EPROTO && s->tls && !s->client_cert) {
        /* a TLS receiver that wants a certificate drops us only after our side of the handshake */
        snprintf(why, sizeof(why), "it closed the connection (does the receiver require a client certificate? "
                 "SYSLOG_TLS_CERT_PATH, SYSLOG_TLS_KEY_PATH)");
    } else {
        snprintf(why, sizeof(why), "%s (is it a RELP receiver? rsyslog: module imrelp)",
                 r == 0 && stopping(s) ? "no answer to the session open before the stop"
                 : r == 0              ? "no answer to the session open within 5 s"
                 : r == -EPROTO ? "its answer is not RELP"
                 : r == 1       ? "its answer is not the open's"
                                : "it closed the connection");
    }
    snprintf(err, errlen, "RELP session with %.150s not opened: %.280s", where, why);
    return -EPROTO;
}

/* Ends a RELP session politely (close, and its answer for up to 1 s); disconnects. */
static void relp_close(audit_siem_t *s)
{
    relp_msg_t m;
    if (relp_send(s, "close", NULL, 0) == 0)
        relp_next(s, util_now_ms() + 1000, &m);
    disconnect(s);
}

static int connect_to(audit_siem_t *s, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = s->proto == P_UDP ? SOCK_DGRAM : SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(s->host, s->port, &hints, &ai);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", s->host, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int rc = -ECONNREFUSED;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        int fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        if (connect(fd, p->ai_addr, p->ai_addrlen) < 0 && errno != EINPROGRESS) {
            rc = -errno;
            close(fd);
            continue;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (poll(&pfd, 1, IO_TIMEOUT_S * 1000) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
            rc = soerr ? -soerr : -ETIMEDOUT;
            close(fd);
            continue;
        }
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        struct timeval tv = {IO_TIMEOUT_S, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        s->sock = fd;
        rc = 0;
        break;
    }
    freeaddrinfo(ai);
    char where[300];
    endpoint(s, where, sizeof(where));
    if (rc < 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", where, strerror(-rc));
        return rc;
    }
    if (s->tls) {
        s->ssl = SSL_new(s->ssl_ctx);
        unsigned char ipbuf[16];
        bool is_ip = inet_pton(AF_INET, s->host, ipbuf) == 1 || inet_pton(AF_INET6, s->host, ipbuf) == 1;
        /* the certificate must name what we dialled: an IP SAN for an address, else the host name */
        bool named = s->ssl && (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), s->host) == 1
                                      : SSL_set_tlsext_host_name(s->ssl, s->host) == 1 &&
                                            SSL_set1_host(s->ssl, s->host) == 1);
        int c = -1;
        errno = 0;
        if (!s->ssl || SSL_set_fd(s->ssl, s->sock) != 1 || !named || (c = SSL_connect(s->ssl)) != 1) {
            int e_no = errno;
            int kind = s->ssl && c <= 0 ? SSL_get_error(s->ssl, c) : SSL_ERROR_SSL;
            long vr = s->ssl ? SSL_get_verify_result(s->ssl) : X509_V_OK;
            unsigned long e = ERR_get_error();
            char es[256];
            if (vr != X509_V_OK) /* why the certificate was refused: expired, wrong name, unknown CA... */
                snprintf(es, sizeof(es), "certificate verify failed: %s", X509_verify_cert_error_string(vr));
            else if (e)
                ERR_error_string_n(e, es, sizeof(es));
            else if (kind == SSL_ERROR_SYSCALL && (e_no == EAGAIN || e_no == EWOULDBLOCK))
                snprintf(es, sizeof(es), "no answer within %d s", IO_TIMEOUT_S);
            else
                snprintf(es, sizeof(es), "the receiver closed the connection");
            snprintf(err, errlen, "TLS handshake with %.200s failed: %.200s", where, es);
            ERR_clear_error();
            disconnect(s);
            return -EPROTO;
        }
        /* peer_closed reads post-handshake messages; it must not wait for application data */
        SSL_clear_mode(s->ssl, SSL_MODE_AUTO_RETRY);
    }
    if (s->relp && relp_open(s, where, err, errlen) < 0) {
        disconnect(s);
        return -EPROTO;
    }
    return 0;
}

/* Whether the receiver has gone (end of stream, reset, error). Being readable is not enough:
 * a syslog receiver sends nothing at the syslog layer, but a TLS 1.3 server sends session
 * tickets after the handshake. Reading "readable" as "closed" made the forwarder drop and
 * redial every connection at once, and closing a socket with unread data sends a reset that
 * can discard records the receiver had not read yet (seen: one record lost in the TLS e2e
 * test). So what is there is consumed (SSL_read processes the tickets; AUTO_RETRY is off so
 * it returns instead of waiting for application data), and only EOF or an error count. */
static bool peer_closed(audit_siem_t *s)
{
    if (s->proto == P_UDP || s->sock < 0)
        return false;
    if (s->relp && s->rlen > s->rused)
        return true; /* it sent something unasked: a serverclose (or worse) */
    for (int round = 0; round < 16; round++) {
        struct pollfd pfd = {.fd = s->sock, .events = POLLIN | POLLRDHUP};
        if (poll(&pfd, 1, 0) != 1)
            return false;
        if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
            return true;
        char buf[4096];
        if (s->tls) {
            int n = SSL_read(s->ssl, buf, sizeof(buf));
            if (n > 0 && s->relp)
                return true;
            if (n <= 0) {
                int e = SSL_get_error(s->ssl, n);
                ERR_clear_error();
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    return true;
            }
        } else {
            ssize_t n = recv(s->sock, buf, sizeof(buf), MSG_DONTWAIT);
            if (n == 0 || (n > 0 && s->relp))
                return true;
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return true;
        }
    }
    return false;
}

static int send_msg(audit_siem_t *s, const char *msg, size_t len)
{
    if (s->proto == P_UDP)
        return send(s->sock, msg, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -errno;
    if (s->relp)
        return relp_send(s, "syslog", msg, len);
    size_t flen;
    char *f = audit_siem_frame(msg, len, &flen);
    if (!f)
        return -ENOMEM;
    int rc = stream_write(s, f, flen);
    free(f);
    return rc;
}

/* ---- cursor and files ---- */

static void load_cursor(audit_siem_t *s, cursor_t *c)
{
    memset(c, 0, sizeof(*c));
    char *data;
    size_t len;
    if (util_read_file(s->cursor_path, 4096, &data, &len) < 0)
        return;
    json_t *o = json_loadb(data, len, 0, NULL);
    free(data);
    if (o) {
        c->ino = (uint64_t)json_integer_value(json_object_get(o, "ino"));
        c->offset = json_integer_value(json_object_get(o, "offset"));
        c->seq = (uint64_t)json_integer_value(json_object_get(o, "seq"));
        json_t *ro = json_object_get(o, "rec_off");
        c->rec_off = json_is_integer(ro) ? json_integer_value(ro) : -1;
        const char *h = json_string_value(json_object_get(o, "hash"));
        const char *t = json_string_value(json_object_get(o, "ts"));
        if (h && strlen(h) == 64)
            memcpy(c->hash, h, 65);
        if (t && strlen(t) < sizeof(c->ts))
            snprintf(c->ts, sizeof(c->ts), "%s", t);
        json_decref(o);
    }
}

static int save_cursor(audit_siem_t *s, const cursor_t *c)
{
    char buf[384];
    int n = snprintf(buf, sizeof(buf),
                     "{\"ino\":%llu,\"offset\":%lld,\"seq\":%llu,\"hash\":\"%s\",\"ts\":\"%s\",\"rec_off\":%lld}\n",
                     (unsigned long long)c->ino, (long long)c->offset, (unsigned long long)c->seq, c->hash, c->ts,
                     (long long)c->rec_off);
    return util_write_file_atomic(s->cursor_path, buf, (size_t)n, 0640);
}

/* Whether f (the file of the cursor's inode) still holds, at rec_off, the record the cursor
 * names. A log emptied or deleted and written again past the position (while no forwarder
 * ran, or while the receiver was away, or on a reused inode number) does not: reading on from
 * the position would skip its first records (the server's AUDIT_GAP among them) and start
 * mid-line. Unknown (an earlier cursor, or the record in an earlier file) counts as held. */
static bool holds_cursor_record(FILE *f, const cursor_t *c)
{
    if (!c->hash[0] || c->rec_off < 0)
        return true;
    bool same = false;
    if (fseeko(f, c->rec_off, SEEK_SET) == 0) {
        char *line;
        size_t len;
        bool term;
        if (audit_read_line(f, &line, &len, &term) > 0) {
            json_t *rec = audit_record_parse(line, len);
            const char *h = json_string_value(json_object_get(rec, "hash"));
            same = term && h && strcmp(h, c->hash) == 0;
            json_decref(rec);
            free(line);
        }
    }
    return same;
}

/* Whether rec comes after the cursor: a later seq, or (a log emptied, overwritten or begun
 * again, whose seqs restart below the cursor's) a later time than the record the cursor
 * names. Records already sent have neither. */
static bool after_cursor(const cursor_t *c, const json_t *rec)
{
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
    const char *ts = json_string_value(json_object_get(rec, "ts"));
    return seq > c->seq || (c->ts[0] && ts && strcmp(ts, c->ts) > 0);
}

/* Finds the file holding the records after c (by inode, else the first file whose last
 * record comes after the cursor). Returns a malloc'd path, or NULL when nothing is there yet.
 * Updates c->ino/offset when it had to move to another file. A file shorter than the
 * position (truncated or overwritten in place) is read again from its start. */
static char *locate(audit_siem_t *s, cursor_t *c)
{
    audit_file_t *files;
    size_t n;
    if (audit_files_list(s->log_path, &files, &n) < 0)
        return NULL;
    char *path = NULL;
    for (size_t i = 0; i < n && !path && c->ino; i++) {
        struct stat st;
        if (stat(files[i].path, &st) == 0 && (uint64_t)st.st_ino == c->ino) {
            if (st.st_size < c->offset) { /* what was sent is skipped again by after_cursor */
                log_msg(LOG_CRITICAL, "siem: the audit log is shorter than the forwarder's position: truncated "
                        "or overwritten; reading it again from its start",
                        "{s:s,s:I,s:I}", "file", files[i].path, "size", (json_int_t)st.st_size, "position",
                        (json_int_t)c->offset);
                c->offset = 0;
                c->rec_off = -1;
            }
            if (c->offset < st.st_size || i == n - 1) {
                path = strdup(files[i].path);
            } else if (i + 1 < n && stat(files[i + 1].path, &st) == 0) {
                /* finished this file: continue with the next one */
                path = strdup(files[i + 1].path);
                c->ino = (uint64_t)st.st_ino;
                c->offset = 0;
                c->rec_off = -1;
            }
        }
    }
    for (size_t i = 0; i < n && !path; i++) {
        /* inode gone (rotated away and pruned, or the log deleted) or first run */
        int fd = open(files[i].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat st;
        json_t *rec = NULL;
        off_t valid;
        if (fstat(fd, &st) == 0 && audit_file_tail(fd, st.st_size, &rec, &valid) == 0 && rec &&
            after_cursor(c, rec)) {
            uint64_t last = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
            if (c->ino && last <= c->seq)
                log_msg(LOG_CRITICAL, "siem: the audit log the forwarder read is gone and a new one begun; "
                        "forwarding the new records", "{s:s,s:I,s:I}", "file", files[i].path, "forwarded_seq",
                        (json_int_t)c->seq, "last_seq", (json_int_t)last);
            path = strdup(files[i].path);
            c->ino = (uint64_t)st.st_ino;
            c->offset = 0; /* records up to the cursor are skipped while reading */
            c->rec_off = -1;
        }
        json_decref(rec);
        close(fd);
    }
    audit_files_free(files, n);
    return path;
}

static bool stopping(audit_siem_t *s)
{
    pthread_mutex_lock(&s->mu);
    bool st = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* deadline_ms, or earlier once stopping: a wait for the receiver ends at most STOP_CONFIRM_MS
 * after the stop began, also one that began before it (a stop is not held by a slow or frozen
 * receiver; what it has not answered goes out again at the next start, review68 #4, review69
 * #2). */
static int64_t stop_capped(audit_siem_t *s, int64_t deadline_ms)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping && s->stop_ms + STOP_CONFIRM_MS < deadline_ms)
        deadline_ms = s->stop_ms + STOP_CONFIRM_MS;
    pthread_mutex_unlock(&s->mu);
    return deadline_ms;
}

/* The deadline of a wait for the receiver that begins now. */
static int64_t answer_deadline(audit_siem_t *s)
{
    return stop_capped(s, util_now_ms() + IO_TIMEOUT_S * 1000);
}

static void nap(audit_siem_t *s, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + (ms % 1000) * 1000000;
    ts.tv_sec += ms / 1000 + ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_mutex_lock(&s->mu);
    if (!s->stopping)
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    pthread_mutex_unlock(&s->mu);
}

/* Sends up to BATCH records after c and moves c past them (the caller saves it once they are
 * delivered); *ret_at_end says whether it stopped at the end of what is written. Returns the
 * records sent (1 when only lines that are not records were passed), 0 when there is nothing
 * new, <0 on a send failure. */
static int forward_batch(audit_siem_t *s, cursor_t *c, bool *ret_at_end)
{
    *ret_at_end = false;
    char *path = locate(s, c);
    if (!path) {
        *ret_at_end = true; /* nothing there yet */
        return 0;
    }
    FILE *f = fopen(path, "re");
    free(path);
    if (!f)
        return 0;
    int sent = 0, rc = 0;
    int64_t start_offset = c->offset;
    uint64_t start_ino = c->ino;
    if (c->offset > 0 && !holds_cursor_record(f, c)) {
        log_msg(LOG_CRITICAL, "siem: the audit log no longer holds the record the forwarder sent last (emptied "
                "or replaced, and written again); reading it again from its start", "{s:I}", "forwarded_seq",
                (json_int_t)c->seq);
        c->offset = 0;
        c->rec_off = -1;
    }
    if (fseeko(f, c->offset, SEEK_SET) != 0) {
        fclose(f);
        return 0;
    }
    while (sent < BATCH && !stopping(s)) {
        off_t start = ftello(f);
        char *line;
        size_t len;
        bool term;
        int r = audit_read_line(f, &line, &len, &term);
        if (r == 0 || (r > 0 && !term)) {
            /* the end of this file (the last one, or locate moves on next time), or a line the
             * writer has not finished: note the file as this read found it */
            struct stat st;
            s->end = fstat(fileno(f), &st) == 0 ? stamp_of(&st, ftello(f)) : (log_stamp_t){0};
            if (r > 0)
                free(line);
            *ret_at_end = true;
            break;
        }
        off_t end = ftello(f);
        json_t *rec = r > 0 ? audit_record_parse(line, len) : NULL;
        if (r > 0)
            free(line);
        uint64_t seq = rec ? (uint64_t)json_integer_value(json_object_get(rec, "seq")) : 0;
        const char *hash = json_string_value(json_object_get(rec, "hash"));
        const char *ts = json_string_value(json_object_get(rec, "ts"));
        if (rec && seq == c->seq && c->hash[0] && hash && strcmp(hash, c->hash) != 0 && !c->other_chain_said) {
            /* the record at the cursor's seq is another one: the log was begun again; its
             * records are newer than the cursor's and go out (after_cursor) */
            log_msg(LOG_CRITICAL, "siem: the audit record at the forwarded seq is not the one forwarded: the log "
                    "was replaced by another chain; forwarding its new records", "{s:I}", "seq", (json_int_t)seq);
            c->other_chain_said = true;
        }
        if (!rec || !after_cursor(c, rec)) {
            if (!rec)
                log_msg(LOG_WARNING, "siem: skipping a line that is not an audit record", "{s:I}", "offset",
                        (json_int_t)start);
            json_decref(rec);
            c->offset = end;
            continue;
        }
        if (c->seq && seq > c->seq + 1)
            log_msg(LOG_WARNING, "siem: gap in the audit sequence", "{s:I,s:I}", "after", (json_int_t)c->seq,
                    "next", (json_int_t)seq);
        char *msg;
        size_t mlen;
        char rec_hash[65] = "", rec_ts[40] = "";
        if (hash && strlen(hash) == 64)
            memcpy(rec_hash, hash, 65);
        if (ts && strlen(ts) < sizeof(rec_ts))
            snprintf(rec_ts, sizeof(rec_ts), "%s", ts);
        rc = audit_siem_format(rec, s->facility, s->hostname, &msg, &mlen);
        json_decref(rec);
        if (rc < 0)
            break;
        if (mlen > RSYSLOG_DEFAULT_MAX_MESSAGE && util_now_ms() - s->size_warned_ms >= WARN_EVERY_MS) {
            /* rsyslog left at its default cuts such a message and takes it all the same (imrelp
             * answers 200): the SIEM then holds a record it cannot verify (review68 #1) */
            s->size_warned_ms = util_now_ms();
            log_msg(LOG_WARNING, "siem: a syslog message longer than rsyslog's default limit; a receiver left "
                    "at it truncates the record (and over RELP still answers 200): set its maxMessageSize, and "
                    "imrelp's maxDataSize, to at least three times the largest audit record (256k covers any)",
                    "{s:I,s:I,s:i}", "seq", (json_int_t)seq, "bytes", (json_int_t)mlen, "default_limit",
                    RSYSLOG_DEFAULT_MAX_MESSAGE);
        }
        rc = send_msg(s, msg, mlen);
        free(msg);
        if (rc < 0)
            break;
        c->offset = end;
        c->rec_off = start;
        c->seq = seq; /* may go down: a log begun again */
        memcpy(c->hash, rec_hash, sizeof(c->hash));
        memcpy(c->ts, rec_ts, sizeof(c->ts));
        if (s->relp) /* delivered when the receiver answers this transaction */
            s->pending[s->npending++] = (struct relp_pending){s->txnr, mlen, *c};
        sent++;
    }
    fclose(f);
    if (rc >= 0 && sent == 0 && (c->offset != start_offset || c->ino != start_ino))
        return 1; /* lines skipped, none sent: moved on all the same */
    return rc < 0 ? rc : sent;
}

/* What the receiver confirmed: saved on disk. */
static void save_delivered(audit_siem_t *s, const cursor_t *c)
{
    s->saved = *c;
    s->saved.other_chain_said = false;
    int w = save_cursor(s, c);
    if (w < 0)
        log_msg(LOG_ERROR, "siem: cannot save the cursor", "{s:s,s:s}", "path", s->cursor_path, "error",
                strerror(-w));
    atomic_store(&siem_delivered_seq, (int64_t)c->seq);
}

/* The same record at the same place: a log emptied and written again can put another record's
 * end at the saved offset (review68 #5: its confirmation was skipped), so seq and hash count. */
static bool same_position(const cursor_t *a, const cursor_t *b)
{
    return a->ino == b->ino && a->offset == b->offset && a->seq == b->seq && strcmp(a->hash, b->hash) == 0;
}

/* Ends the connection so that the receiver's answer says whether it read everything: our side
 * ends its stream (TLS: close_notify, then TCP's end), and a receiver that has read up to that
 * end ends its side too. True when its end of stream comes within wait_ms; false when it
 * resets the connection (it closed with bytes unread), fails, or does not answer.
 * Disconnects in every case. */
enum confirm { CONFIRMED, REFUSED, NO_ANSWER };

static enum confirm close_confirmed(audit_siem_t *s, int64_t wait_ms)
{
    enum confirm r = REFUSED;
    if (s->tls && SSL_shutdown(s->ssl) < 0) {
        ERR_clear_error();
        goto out;
    }
    if (shutdown(s->sock, SHUT_WR) < 0)
        goto out;
    int64_t deadline = util_now_ms() + wait_ms;
    for (;;) {
        int64_t left = deadline - util_now_ms();
        struct pollfd pfd = {.fd = s->sock, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) != 1) {
            r = NO_ANSWER; /* hung, or a receiver that does not end what its client ended */
            break;
        }
        char buf[4096];
        ssize_t n = recv(s->sock, buf, sizeof(buf), MSG_DONTWAIT); /* what comes is discarded */
        if (n == 0) {
            r = CONFIRMED; /* its end of stream, after ours: everything was read */
            break;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break; /* reset: it closed with our records unread */
    }
out:
    disconnect(s);
    return r;
}

/* Whether the log holds bytes after c that were not there when the forwarder last went idle
 * (a partial line left by a crashed writer does not keep it reconnecting). */
static bool log_has_more(audit_siem_t *s, cursor_t *c)
{
    char *path = locate(s, c);
    if (!path)
        return false;
    struct stat st;
    bool more = false;
    if (stat(path, &st) == 0 && st.st_size > c->offset) {
        log_stamp_t now = stamp_of(&st, st.st_size);
        more = memcmp(&now, &s->idle, sizeof(now)) != 0;
    }
    free(path);
    return more;
}

/* A failure to log now: the first of a run, then one a minute with how many there were. */
static bool warn_due(audit_siem_t *s, int64_t now)
{
    s->failures++;
    if (s->last_warn_ms && now - s->last_warn_ms < WARN_EVERY_MS)
        return false;
    s->last_warn_ms = now;
    return true;
}

static void grow_backoff(audit_siem_t *s, int64_t now)
{
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (s->backoff_ms > BACKOFF_MAX_MS)
        s->backoff_ms = BACKOFF_MAX_MS;
    s->next_connect_ms = now + s->backoff_ms;
}

/* The connection broke, or the receiver did not confirm it: what was sent since the last
 * confirmation goes out again from there, after the backoff. */
static void connection_lost(audit_siem_t *s, cursor_t *cur, const char *what)
{
    int64_t now = util_now_ms();
    bool young = now - s->connected_ms < 2 * CONFIRM_IDLE_MS;
    bool resend = s->unconfirmed_ms || cur->seq != s->saved.seq; /* records went out unconfirmed */
    uint64_t sent_seq = cur->seq;
    bool said = cur->other_chain_said;
    *cur = s->saved; /* at least once */
    cur->other_chain_said = said;
    s->unconfirmed_ms = 0;
    if (s->sock >= 0)
        disconnect(s);
    if (!resend && !young) {
        /* an idle connection the receiver ended (a restart, an idle timeout): nothing to send
         * again, and no reason to wait long */
        s->backoff_ms = BACKOFF_MIN_MS;
        s->next_connect_ms = now + s->backoff_ms;
        log_msg(LOG_INFO, "siem: connection to the receiver lost; reconnecting", "{s:s}", "what", what);
        return;
    }
    grow_backoff(s, now);
    if (!warn_due(s, now))
        return;
    json_t *f = json_pack("{s:s,s:I,s:I,s:I}", "what", what, "retry_in_ms", (json_int_t)s->backoff_ms,
                          "failures", (json_int_t)s->failures, "delivered_seq", (json_int_t)s->saved.seq);
    if (f && resend)
        json_object_set_new(f, "resending_up_to_seq", json_integer((json_int_t)sent_seq));
    /* the likely cause of a TLS receiver that drops us at once: it wants a certificate */
    if (f && young && s->tls && !s->client_cert)
        json_object_set_new(f, "hint", json_string("does the receiver require a client certificate? "
                                                   "SYSLOG_TLS_CERT_PATH, SYSLOG_TLS_KEY_PATH"));
    log_json(LOG_WARNING,
             resend ? "siem: records not confirmed by the receiver; sending them again"
                    : "siem: the receiver ended the connection right after accepting it; will retry",
             f);
}

/* The receiver confirmed what was sent (RELP's answers, or its end of a connection we ended):
 * caught up when at the end of the log; no failure pending, so reconnect at once. */
static void receiver_confirmed(audit_siem_t *s, bool at_end)
{
    if (at_end)
        atomic_store(&siem_caught_up_ms, util_now_ms());
    s->unconfirmed_ms = 0;
    s->backoff_ms = 0;
    s->next_connect_ms = 0;
    s->failures = 0;
    s->last_warn_ms = 0;
}

/* RELP: the receiver's answers to the batch in flight, in order. The records it took (200)
 * are delivered: the cursor is saved after the last of them. 0 when it took them all; <0 with
 * what went wrong in `what` (the records after the last taken go out again). wait_ms 0: up to
 * IO_TIMEOUT_S for each answer (bounded at a stop, answer_deadline); else at most wait_ms in
 * all (what already came, after a send failed). */
static int relp_await(audit_siem_t *s, int64_t wait_ms, char *what, size_t wlen)
{
    size_t done = 0;
    int rc = 0;
    int64_t deadline = wait_ms ? util_now_ms() + wait_ms : answer_deadline(s);
    while (done < s->npending) {
        relp_msg_t m;
        int r = relp_next(s, deadline, &m);
        const struct relp_pending *p = &s->pending[done];
        if (r <= 0) {
            snprintf(what, wlen, "%s (first unanswered: seq %llu, %zu bytes)",
                     r == 0             ? "the receiver did not answer in time"
                     : r == -EMSGSIZE   ? "the receiver sent an answer longer than 16 KiB"
                     : r == -EPROTO     ? "the receiver's answer is not RELP"
                                        : "the receiver closed the connection",
                     (unsigned long long)p->after.seq, p->bytes);
            rc = r < 0 ? r : -ETIMEDOUT;
        } else if (strcmp(m.command, "serverclose") == 0) {
            snprintf(what, wlen, "the receiver ended the session (serverclose)");
            rc = -EPIPE;
        } else if (strcmp(m.command, "rsp") != 0 || m.txnr != p->txnr) {
            snprintf(what, wlen, "the receiver answered '%s' for transaction %u, expected rsp for %u", m.command,
                     m.txnr, p->txnr);
            rc = -EPROTO;
        } else if (m.code != 200) {
            char text[200];
            relp_rsp_text(&m, text, sizeof(text));
            snprintf(what, wlen, "the receiver refused the record of seq %llu: %d %s",
                     (unsigned long long)p->after.seq, m.code, text);
            rc = -EREMOTEIO;
        }
        if (rc < 0)
            break;
        done++;
        if (!wait_ms)
            deadline = answer_deadline(s); /* it answers: wait on */
    }
    if (done)
        save_delivered(s, &s->pending[done - 1].after);
    s->npending = 0;
    return rc;
}

static void *forwarder_main(void *arg)
{
    audit_siem_t *s = arg;
    cursor_t c;
    bool locked = false;
    while (!stopping(s)) {
        if (!locked) {
            if (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0) {
                locked = true;
                load_cursor(s, &c);
                s->saved = c;
                atomic_store(&siem_delivered_seq, (int64_t)c.seq);
                log_msg(LOG_INFO, "siem forwarder started", "{s:s,s:s,s:I}", "server", s->host, "port",
                        s->port, "after_seq", (json_int_t)c.seq);
            } else {
                nap(s, 2000);
                continue;
            }
        }
        if (s->sock < 0) {
            int64_t now = util_now_ms();
            /* connected only while there is something to send: no idle connections for a
             * receiver or a proxy to time out (review65 #4) */
            bool more = log_has_more(s, &c);
            if (!more && same_position(&c, &s->saved))
                atomic_store(&siem_caught_up_ms, now); /* everything delivered, nothing new */
            if (now < s->next_connect_ms || !more) {
                nap(s, IDLE_MS);
                continue;
            }
            char err[512] = "";
            if (connect_to(s, err, sizeof(err)) < 0) {
                if (warn_due(s, now))
                    log_msg(LOG_WARNING, "siem: receiver unreachable; will retry", "{s:s,s:I}", "error", err,
                            "failures", (json_int_t)s->failures);
                grow_backoff(s, util_now_ms());
                continue;
            }
            log_msg(LOG_DEBUG, "siem: connected", "{s:s,s:s}", "server", s->host, "port", s->port);
            s->connected_ms = util_now_ms();
            atomic_store(&siem_connected, 1);
            if (s->probe) {
                /* it did not answer last time: every connection then sent everything since the
                 * last confirmation, and a receiver that was only frozen read them all (copies
                 * piled up, review65 #2). First it must answer a connection that sends nothing. */
                enum confirm r = close_confirmed(s, IO_TIMEOUT_S * 1000);
                if (r != CONFIRMED) {
                    if (warn_due(s, util_now_ms()))
                        log_msg(LOG_WARNING,
                                r == NO_ANSWER ? "siem: the receiver does not answer; records wait until it does"
                                               : "siem: the receiver resets connections; records wait until it "
                                                 "answers",
                                "{s:I,s:I}", "delivered_seq", (json_int_t)s->saved.seq, "failures",
                                (json_int_t)s->failures);
                    grow_backoff(s, util_now_ms());
                    continue;
                }
                s->probe = false;
                s->next_connect_ms = 0;
                continue; /* it answers: connect again and send */
            }
        }
        if (peer_closed(s)) {
            connection_lost(s, &c, "the receiver closed the connection");
            continue;
        }
        bool at_end = false;
        int n = forward_batch(s, &c, &at_end);
        if (n < 0) {
            /* RELP: what the receiver answered before the session broke is delivered; only the
             * rest goes out again (review68 #2) */
            char what[400];
            if (s->relp && s->npending)
                relp_await(s, 200, what, sizeof(what));
            connection_lost(s, &c, "send failed");
            continue;
        }
        int64_t now = util_now_ms();
        if (n > 0) {
            if (!s->unconfirmed_ms)
                s->unconfirmed_ms = now;
            s->last_sent_ms = now;
        }
        if (s->relp && (s->npending || !same_position(&c, &s->saved))) {
            /* every record is answered: no connection end to wait for */
            char what[400];
            if (!s->npending)
                save_delivered(s, &c); /* only lines that are not records were passed */
            else if (relp_await(s, 0, what, sizeof(what)) < 0) {
                connection_lost(s, &c, what);
                continue;
            }
            receiver_confirmed(s, at_end);
            continue;
        }
        if (same_position(&c, &s->saved)) {
            if (at_end)
                atomic_store(&siem_caught_up_ms, now); /* everything delivered */
            if (at_end && n == 0 && now - s->last_sent_ms >= CONFIRM_IDLE_MS &&
                now - s->connected_ms >= CONFIRM_IDLE_MS) {
                /* as the read found the file: a record appended since, or a torn line replaced
                 * by one of the same length (a new mtime), is seen (review66 #1) */
                s->idle = s->end;
                if (s->relp)
                    relp_close(s);
                else
                    disconnect(s); /* idle: connect again when there is something to send */
                continue;
            }
        } else if (s->proto == P_UDP) {
            save_delivered(s, &c); /* best effort: nothing to confirm with */
            if (at_end)
                atomic_store(&siem_caught_up_ms, now);
        } else if ((at_end && now - s->last_sent_ms >= CONFIRM_IDLE_MS) ||
                   now - s->unconfirmed_ms >= CONFIRM_MAX_MS) {
            enum confirm r = close_confirmed(s, IO_TIMEOUT_S * 1000);
            if (r != CONFIRMED) {
                s->probe = r == NO_ANSWER;
                connection_lost(s, &c, r == NO_ANSWER ? "the receiver did not end its side after ours within 5 s"
                                                      : "the receiver reset the connection (records unread)");
                continue;
            }
            save_delivered(s, &c);
            receiver_confirmed(s, at_end);
            continue;
        }
        if (n == 0)
            nap(s, IDLE_MS);
    }
    /* Stopping: what the receiver confirms within a moment is delivered; the rest goes out
     * again at the next start. */
    if (locked && s->sock >= 0 && s->relp) {
        relp_close(s); /* every record sent was answered, or goes out again */
    } else if (locked && s->sock >= 0 && !same_position(&c, &s->saved) && s->proto != P_UDP) {
        if (close_confirmed(s, STOP_CONFIRM_MS) == CONFIRMED)
            save_delivered(s, &c);
    }
    disconnect(s);
    return NULL;
}

static int split_host_port(const char *hp, char *host, size_t hl, char *port, size_t pl)
{
    const char *colon;
    if (hp[0] == '[') {
        const char *close_b = strchr(hp, ']');
        if (!close_b || close_b[1] != ':')
            return -EINVAL;
        snprintf(host, hl, "%.*s", (int)(close_b - hp - 1), hp + 1);
        colon = close_b + 1;
    } else {
        colon = strrchr(hp, ':');
        if (!colon)
            return -EINVAL;
        snprintf(host, hl, "%.*s", (int)(colon - hp), hp);
    }
    snprintf(port, pl, "%s", colon + 1);
    return host[0] && port[0] ? 0 : -EINVAL;
}

void audit_siem_stop(audit_siem_t *s)
{
    if (!s)
        return;
    if (s->thread) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        s->stop_ms = util_now_ms();
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    disconnect(s);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    SSL_CTX_free(s->ssl_ctx);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->log_path);
    free(s);
}

/* Whether dir holds a hashed certificate name (<8 hex digits>.<n>, as c_rehash makes them):
 * OpenSSL looks certificates up in a directory by those names only, so one without any
 * verifies nothing (review62 #4). */
static bool has_hashed_cert(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        const char *n = e->d_name;
        size_t hex = strspn(n, "0123456789abcdef");
        found = hex == 8 && n[8] == '.' && n[9] && strspn(n + 9, "0123456789") == strlen(n + 9);
    }
    closedir(d);
    return found;
}

/* The TLS client context of the forwarder: TLS 1.2+, the peer verified against ca_path (NULL:
 * the system store; any certificate in it is an anchor: a root, an intermediate or the
 * receiver's own, as for the CLI's AIMEDRES_CA_FILE, review62 #2), and the client certificate
 * a receiver may require (RFC 5425 mutual authentication). */
static int tls_client_ctx(const config_t *cfg, SSL_CTX **ret, char *err, size_t errlen)
{
    const char *ca_path = cfg->syslog_ca_path;
    const char *cert = cfg->syslog_tls_cert_path, *key = cfg->syslog_tls_key_path;
    *ret = NULL;
    if (!cert != !key) {
        snprintf(err, errlen, "%s: required when %s is set (the client certificate and its key go together)",
                 cert ? "SYSLOG_TLS_KEY_PATH" : "SYSLOG_TLS_CERT_PATH", cert ? "SYSLOG_TLS_CERT_PATH" : "SYSLOG_TLS_KEY_PATH");
        return -EINVAL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "cannot create a TLS context");
        return -EIO;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* a PEM bundle file, or a directory of hashed certificates (c_rehash, as /etc/ssl/certs) */
    struct stat st;
    bool dir = ca_path && stat(ca_path, &st) == 0 && S_ISDIR(st.st_mode);
    int ok = !ca_path ? SSL_CTX_set_default_verify_paths(ctx)
             : dir    ? SSL_CTX_load_verify_locations(ctx, NULL, ca_path) == 1 && has_hashed_cert(ca_path)
                      : SSL_CTX_load_verify_locations(ctx, ca_path, NULL);
    if (ok != 1) {
        ERR_clear_error();
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "SYSLOG_CA_PATH: cannot load CA certificates from %s (a PEM file, or a directory "
                 "of hashed certificates: run openssl rehash on it)", ca_path ? ca_path : "the system store");
        return -EINVAL;
    }
    if (ca_path)
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
    if (cert) {
        char why[256] = "";
        const char *bad = NULL, *file = NULL;
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
            bad = "SYSLOG_TLS_CERT_PATH", file = cert;
        else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            bad = "SYSLOG_TLS_KEY_PATH", file = key;
        else if (SSL_CTX_check_private_key(ctx) != 1)
            snprintf(why, sizeof(why), "SYSLOG_TLS_KEY_PATH: the key does not match the certificate in "
                     "SYSLOG_TLS_CERT_PATH");
        if (bad || why[0]) {
            unsigned long e = ERR_peek_last_error();
            if (bad && ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
                snprintf(why, sizeof(why), "SYSLOG_TLS_KEY_PATH: the key does not match the certificate in "
                         "SYSLOG_TLS_CERT_PATH");
            else if (bad)
                snprintf(why, sizeof(why), "%s: cannot load %s: %s", bad, file,
                         e ? ERR_reason_error_string(e) : "unreadable");
            ERR_clear_error();
            SSL_CTX_free(ctx);
            snprintf(err, errlen, "%s", why);
            return -EINVAL;
        }
    }
    *ret = ctx;
    return 0;
}

/* SYSLOG_SERVER, required, as host and port. */
static int server_address(const config_t *cfg, char *host, size_t hl, char *port, size_t pl, char *err,
                          size_t errlen)
{
    if (!cfg->syslog_server) {
        snprintf(err, errlen, "SYSLOG_SERVER: required when SIEM_INTEGRATION_ENABLED=true");
        return -EINVAL;
    }
    if (split_host_port(cfg->syslog_server, host, hl, port, pl) < 0) {
        snprintf(err, errlen, "SYSLOG_SERVER: expected host:port, got '%s'", cfg->syslog_server);
        return -EINVAL;
    }
    return 0;
}

int audit_siem_settings_check(const config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->siem_integration_enabled || !cfg->audit_log_path)
        return 0;
    char host[256], port[16];
    int rc = server_address(cfg, host, sizeof(host), port, sizeof(port), err, errlen);
    if (rc < 0)
        return rc;
    if (!proto_tls(proto_of(cfg->syslog_protocol)))
        return 0;
    SSL_CTX *ctx = NULL;
    rc = tls_client_ctx(cfg, &ctx, err, errlen);
    SSL_CTX_free(ctx);
    return rc;
}

int audit_siem_start(const config_t *cfg, audit_siem_t **ret, char *err, size_t errlen)
{
    *ret = NULL;
    if (!cfg->siem_integration_enabled || !cfg->audit_log_path)
        return 0;
    audit_siem_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->sock = -1;
    s->lock_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc;
    s->log_path = strdup(cfg->audit_log_path);
    if (!s->log_path) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = server_address(cfg, s->host, sizeof(s->host), s->port, sizeof(s->port), err, errlen)) < 0)
        goto fail;
    s->client_cert = cfg->syslog_tls_cert_path != NULL;
    s->proto = proto_of(cfg->syslog_protocol);
    s->tls = proto_tls(s->proto);
    s->relp = s->proto == P_RELP || s->proto == P_RELP_TLS;
    s->facility = cfg->syslog_facility;
    if (gethostname(s->hostname, sizeof(s->hostname) - 1) < 0)
        snprintf(s->hostname, sizeof(s->hostname), "-");
    audit_path_cursor(s->log_path, s->cursor_path, sizeof(s->cursor_path));
    snprintf(s->lock_path, sizeof(s->lock_path), "%s.siem-lock", s->log_path);
    s->lock_fd = open(s->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lock_fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open %s: %s", s->lock_path, strerror(errno));
        goto fail;
    }
    if (s->tls && (rc = tls_client_ctx(cfg, &s->ssl_ctx, err, errlen)) < 0)
        goto fail;
    static atomic_bool registered;
    atomic_store(&siem_caught_up_ms, util_now_ms()); /* behind from now until it catches up */
    if (!atomic_exchange(&registered, true))
        metrics_register_collector(siem_collector, NULL);
    if ((rc = -pthread_create(&s->thread, NULL, forwarder_main, s)) < 0) {
        s->thread = 0;
        snprintf(err, errlen, "cannot start the SIEM forwarder thread");
        goto fail;
    }
    *ret = s;
    return 0;
fail:
    audit_siem_stop(s);
    return rc;
}
