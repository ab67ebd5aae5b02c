/* SPDX-License-Identifier: Apache-2.0 */
/* The service manager's readiness protocol (systemd's sd_notify(3), which `Type=notify` units
 * use): a service sends "KEY=VALUE" lines in one datagram to the AF_UNIX socket named by
 * NOTIFY_SOCKET ("/path", or "@name" for the abstract namespace). `serve` says READY=1 once
 * it answers requests, with its port as X_AIMEDRES_PORT, and STOPPING=1 when it drains;
 * `dr-drill` listens on its own socket to learn when and where its server answers. No
 * libsystemd: the protocol is one sendmsg. */
#ifndef AIMEDRES_COMMON_NOTIFY_H
#define AIMEDRES_COMMON_NOTIFY_H

#include <stddef.h>
#include <sys/types.h>

/* Takes NOTIFY_SOCKET from the environment and removes it, so no child process inherits it
 * (their messages would be refused as not the main pid's, or worse, accepted). Call once,
 * before starting threads. 1 when a socket is named, 0 when not, -EINVAL (and nothing is
 * sent later) for a value that names no AF_UNIX socket. */
int notify_init(void);
/* Sends state (e.g. "READY=1\nSTATUS=...") to the socket notify_init found, without blocking.
 * 0 when sent or when there is no socket; -errno when the send failed, -EAGAIN when the
 * listener's queue is full (the caller logs it: the manager would then time the service out,
 * which is what it should do). */
int notify_send(const char *state);

/* The listening side. A datagram socket autobound in the abstract namespace, receiving the
 * sender's credentials; its NOTIFY_SOCKET value ("@xxxxx") is written into addr. Returns the
 * fd or -errno. */
int notify_listen(char *addr, size_t addrlen);
/* Waits up to timeout_ms for one message; writes it NUL-terminated into buf and the sender's
 * pid into *ret_pid. Bytes received, 0 on timeout, -errno. */
ssize_t notify_recv(int fd, int timeout_ms, char *buf, size_t len, pid_t *ret_pid);
/* The value of "name=" on its own line of msg, copied into val; false when absent. */
int notify_field(const char *msg, const char *name, char *val, size_t vlen);

#endif
