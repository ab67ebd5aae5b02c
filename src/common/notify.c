/* SPDX-License-Identifier: Apache-2.0 */
/* The sd_notify(3) datagram protocol, both ends; see notify.h. */
#include "common/notify.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un target;
static socklen_t target_len; /* 0: no socket named */

/* "/path" or "@abstract" into *sa; its address length, or 0 if it names no AF_UNIX socket. */
static socklen_t unix_address(const char *name, struct sockaddr_un *sa)
{
    size_t n = strlen(name);
    if (n < 2 || (name[0] != '/' && name[0] != '@') || n >= sizeof(sa->sun_path))
        return 0;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@') { /* abstract: a leading NUL, and the length counts exactly the name */
        sa->sun_path[0] = '\0';
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

int notify_init(void)
{
    const char *v = getenv("NOTIFY_SOCKET");
    target_len = 0;
    if (!v || !*v) {
        unsetenv("NOTIFY_SOCKET");
        return 0;
    }
    target_len = unix_address(v, &target);
    unsetenv("NOTIFY_SOCKET");
    return target_len ? 1 : -EINVAL;
}

int notify_send(const char *state)
{
    if (!target_len)
        return 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* never blocks: a listener that does not read (its queue full) must not stop the caller,
     * serve's main loop, from handling signals (review68 #3); EAGAIN is reported instead */
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&target, target_len);
    int e = n < 0 ? -errno : 0;
    close(fd);
    return e;
}

int notify_listen(char *addr, size_t addrlen)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t sl = sizeof(sa);
    /* binding only the family autobinds a unique name in the abstract namespace */
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa_family_t)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    size_t n = sl - offsetof(struct sockaddr_un, sun_path); /* the leading NUL and the name */
    if (n < 2 || n >= addrlen) {
        close(fd);
        return -ENAMETOOLONG;
    }
    addr[0] = '@';
    memcpy(addr + 1, sa.sun_path + 1, n - 1);
    addr[n] = '\0';
    return fd;
}

ssize_t notify_recv(int fd, int timeout_ms, char *buf, size_t len, pid_t *ret_pid)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, timeout_ms);
    if (pr <= 0)
        return pr < 0 ? (errno == EINTR ? 0 : -errno) : 0;
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = len - 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    buf[n] = '\0';
    *ret_pid = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
            c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
            struct ucred u;
            memcpy(&u, CMSG_DATA(c), sizeof(u));
            *ret_pid = u.pid;
        }
    return n;
}

int notify_field(const char *msg, const char *name, char *val, size_t vlen)
{
    size_t nl = strlen(name);
    for (const char *p = msg; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, nl) != 0 || p[nl] != '=')
            continue;
        const char *v = p + nl + 1;
        size_t n = strcspn(v, "\n");
        snprintf(val, vlen, "%.*s", (int)n, v);
        return 1;
    }
    return 0;
}
