/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/notify: the sd_notify datagram protocol, both ends (abstract and path
 * sockets, the sender's pid, fields, refused NOTIFY_SOCKET values, a socket nobody reads). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/notify.h"

static void test_abstract_socket_round_trip(void **state)
{
    (void)state;
    char addr[64];
    int fd = notify_listen(addr, sizeof(addr));
    assert_true(fd >= 0);
    assert_int_equal(addr[0], '@');
    assert_true(strlen(addr) > 1);
    setenv("NOTIFY_SOCKET", addr, 1);
    assert_int_equal(notify_init(), 1);
    /* gone from the environment: no child inherits it */
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_int_equal(notify_send("READY=1\nSTATUS=serving on 127.0.0.1:8080\nX_AIMEDRES_PORT=8080"), 0);
    char buf[256], val[32];
    pid_t from = 0;
    ssize_t n = notify_recv(fd, 5000, buf, sizeof(buf), &from);
    assert_int_equal(n, (ssize_t)strlen("READY=1\nSTATUS=serving on 127.0.0.1:8080\nX_AIMEDRES_PORT=8080"));
    assert_int_equal(from, getpid());
    assert_true(notify_field(buf, "READY", val, sizeof(val)));
    assert_string_equal(val, "1");
    assert_true(notify_field(buf, "X_AIMEDRES_PORT", val, sizeof(val)));
    assert_string_equal(val, "8080");
    assert_true(notify_field(buf, "STATUS", val, sizeof(val)));
    assert_string_equal(val, "serving on 127.0.0.1:8080");
    char small[8];
    assert_true(notify_field(buf, "STATUS", small, sizeof(small)));
    assert_string_equal(small, "serving"); /* cut to the buffer */
    assert_false(notify_field(buf, "PORT", val, sizeof(val))); /* only whole names at a line's start */
    assert_false(notify_field(buf, "READ", val, sizeof(val)));
    /* nothing more: a timeout is 0 */
    assert_int_equal(notify_recv(fd, 20, buf, sizeof(buf), &from), 0);
    close(fd);
}

static void test_path_socket(void **state)
{
    (void)state;
    /* under /tmp: a socket's path must fit sun_path (108 bytes), a build tree's may not */
    char dir[] = "/tmp/aimedres-notify.XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/n.sock", dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(notify_init(), 1);
    assert_int_equal(notify_send("STOPPING=1"), 0);
    char buf[64] = "";
    assert_int_equal(recv(fd, buf, sizeof(buf) - 1, 0), 10);
    assert_string_equal(buf, "STOPPING=1");
    close(fd);
    unlink(path);
    rmdir(dir);
}

static void test_no_socket_sends_nothing(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(notify_init(), 0);
    assert_int_equal(notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(notify_init(), 0);
    assert_null(getenv("NOTIFY_SOCKET"));
}

static void test_values_that_name_no_socket(void **state)
{
    (void)state;
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    const char *bad[] = {"relative/path", "@", "/", "vsock:2:1234", longpath};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("NOTIFY_SOCKET", bad[i], 1);
        assert_int_equal(notify_init(), -EINVAL);
        assert_null(getenv("NOTIFY_SOCKET"));
        assert_int_equal(notify_send("READY=1"), 0); /* nothing to send to */
    }
}

static void test_a_socket_nobody_reads_is_an_error(void **state)
{
    (void)state;
    char addr[64];
    int fd = notify_listen(addr, sizeof(addr));
    assert_true(fd >= 0);
    close(fd); /* the name is free again */
    setenv("NOTIFY_SOCKET", addr, 1);
    assert_int_equal(notify_init(), 1);
    assert_int_equal(notify_send("READY=1"), -ECONNREFUSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abstract_socket_round_trip),
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_no_socket_sends_nothing),
        cmocka_unit_test(test_values_that_name_no_socket),
        cmocka_unit_test(test_a_socket_nobody_reads_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
