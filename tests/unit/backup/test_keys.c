/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for backup/keys' key command (BACKUP_KEY_COMMAND): it gets BACKUP_ENCRYPTION_KEY_ID
 * and yields the same key as a key file; on a timeout (or when it lingers with its output
 * closed, or leaves a process holding its output) everything it started is killed, not only
 * the shell, checked on a grandchild reparented to this test (a child subreaper); and with a
 * controlling terminal it can still read a PIN from /dev/tty (it gets the foreground, and the
 * terminal comes back afterwards). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup/keys.h"
#include "backup/settings.h"
#include "common/util.h"
#include "testutil.h"

#define HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static char dir[2048], pidfile[2300], cmd[8192];

static int setup(void **state)
{
    (void)state;
    /* orphans of the key command are reparented to this process, which can then tell whether
     * they were killed (reaped here) or still run */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        return -1;
    if (test_tmpdir(dir, sizeof(dir), "backup-keys") < 0)
        return -1;
    snprintf(pidfile, sizeof(pidfile), "%s/grandchild.pid", dir);
    return 0;
}

static backup_settings_t command_settings(const char *command, int timeout_ms)
{
    backup_settings_t s;
    memset(&s, 0, sizeof(s));
    s.key_command = command;
    s.key_id = "kms-key-1";
    s.key_command_timeout_ms = timeout_ms;
    return s;
}

/* The pid the grandchild wrote to pidfile, or -1. */
static pid_t read_pid(void)
{
    char *buf = NULL;
    size_t len = 0;
    if (util_read_file(pidfile, 64, &buf, &len) < 0)
        return -1;
    long pid = strtol(buf, NULL, 10);
    free(buf);
    return pid > 1 ? (pid_t)pid : -1;
}

/* Asserts that pid (an orphan reparented here) was killed by SIGKILL: reaps it within 10 s,
 * else kills it (so the test leaves nothing behind) and fails. */
static void assert_killed(pid_t pid)
{
    assert_true(pid > 0);
    int status = 0;
    for (int i = 0; i < 1000; i++) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            assert_true(WIFSIGNALED(status));
            assert_int_equal(WTERMSIG(status), SIGKILL);
            return;
        }
        assert_int_equal(w, 0); /* still ours and running: wait a little more */
        poll(NULL, 0, 10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fail_msg("the key command's grandchild %d outlived the timeout", (int)pid);
}

static void test_command_gives_the_file_key(void **state)
{
    (void)state;
    char keyfile[2300];
    snprintf(keyfile, sizeof(keyfile), "%s/backup.key", dir);
    assert_int_equal(util_write_file_atomic(keyfile, HEX "\n", strlen(HEX) + 1, 0600), 0);
    backup_settings_t f;
    memset(&f, 0, sizeof(f));
    f.key_file = keyfile;
    backup_key_t a, b;
    char err[1024] = "";
    assert_int_equal(backup_key_load(&f, &a, err, sizeof(err)), 0);
    backup_settings_t s = command_settings("test \"$BACKUP_ENCRYPTION_KEY_ID\" = kms-key-1 && echo " HEX, 0);
    assert_int_equal(backup_key_load(&s, &b, err, sizeof(err)), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    s = command_settings("echo " HEX "; exit 3", 0);
    assert_int_equal(backup_key_load(&s, &b, err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "exited with status 3"));
}

/* `sh -c 'sleep 100; echo key'`: a timeout used to kill the shell only */
static void test_timeout_kills_grandchildren(void **state)
{
    (void)state;
    unlink(pidfile);
    snprintf(cmd, sizeof(cmd), "sh -c 'echo $$ > %s; exec sleep 100' & wait; echo " HEX, pidfile);
    backup_settings_t s = command_settings(cmd, 2000);
    backup_key_t k;
    char err[1024] = "";
    int64_t t0 = util_mono_ns();
    assert_int_equal(backup_key_load(&s, &k, err, sizeof(err)), -EIO);
    assert_true(util_mono_ns() - t0 < 20 * 1000000000LL);
    assert_non_null(strstr(err, "no answer within 2s"));
    assert_killed(read_pid());
}

/* the shell exits after printing, but a background process keeps the output open */
static void test_exited_but_output_held(void **state)
{
    (void)state;
    unlink(pidfile);
    snprintf(cmd, sizeof(cmd), "sh -c 'echo $$ > %s; exec sleep 100' & echo " HEX, pidfile);
    backup_settings_t s = command_settings(cmd, 2000);
    backup_key_t k;
    char err[1024] = "";
    assert_int_equal(backup_key_load(&s, &k, err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "kept its output open"));
    assert_killed(read_pid());
}

/* closing stdout and lingering used to block in waitpid forever */
static void test_lingering_after_closing_output(void **state)
{
    (void)state;
    unlink(pidfile);
    snprintf(cmd, sizeof(cmd), "echo " HEX "; exec >&-; sh -c 'echo $$ > %s; exec sleep 100' & wait",
             pidfile);
    backup_settings_t s = command_settings(cmd, 2000);
    backup_key_t k;
    char err[1024] = "";
    assert_int_equal(backup_key_load(&s, &k, err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "did not exit within 2s"));
    assert_killed(read_pid());
}

/* In a child of its own: a new session whose controlling terminal is the pty slave, in the
 * foreground. The key command reads a PIN from /dev/tty. Exits 0 when the key was read and
 * the terminal's foreground is this process's group again; 1 + a message otherwise. */
static int run_on_terminal(const char *slave_name, const char *command)
{
    if (setsid() < 0)
        return 10;
    int tty = open(slave_name, O_RDWR | O_CLOEXEC); /* the session's controlling terminal */
    if (tty < 0 || tcgetpgrp(tty) != getpgrp())
        return 11;
    backup_settings_t s = command_settings(command, 10000);
    backup_key_t k;
    char err[1024] = "";
    if (backup_key_load(&s, &k, err, sizeof(err)) < 0) {
        fprintf(stderr, "key command on a terminal: %s\n", err);
        return 12;
    }
    return tcgetpgrp(tty) == getpgrp() ? 0 : 13;
}

static void test_command_can_prompt_on_the_terminal(void **state)
{
    (void)state;
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    char slave_name[256];
    assert_int_equal(ptsname_r(master, slave_name, sizeof(slave_name)), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(master);
        _exit(run_on_terminal(slave_name, "printf 'PIN: ' > /dev/tty; read pin < /dev/tty; "
                                          "test \"$pin\" = 1234 && echo " HEX));
    }
    /* answer the prompt once it is shown (the terminal echoes; anything read is discarded).
     * The limit is time, not a count of polls: once the child's end of the terminal is
     * closed (it is exiting, not yet reaped), the master polls as hung up at once, and a
     * loaded machine can keep the child unreaped for longer than any count of such polls. */
    char buf[512];
    size_t seen = 0;
    char text[4096] = "";
    int status = 0;
    bool answered = false;
    int64_t deadline = util_mono_ns() / 1000000 + 20000;
    while (util_mono_ns() / 1000000 < deadline) {
        struct pollfd p = {master, POLLIN, 0};
        if (poll(&p, 1, 10) > 0) {
            ssize_t n = read(master, buf, sizeof(buf));
            if (n > 0 && seen + (size_t)n < sizeof(text)) {
                memcpy(text + seen, buf, (size_t)n);
                seen += (size_t)n;
                text[seen] = '\0';
            } else if (n <= 0) {
                poll(NULL, 0, 10); /* hung up: wait for the exit instead of spinning */
            }
        }
        if (!answered && strstr(text, "PIN: ")) {
            assert_int_equal(write(master, "1234\n", 5), 5);
            answered = true;
        }
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
    }
    close(master);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the key command did not finish on the terminal (prompt shown: %d)", answered);
    }
    assert_true(answered);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_gives_the_file_key),
        cmocka_unit_test(test_timeout_kills_grandchildren),
        cmocka_unit_test(test_exited_but_output_held),
        cmocka_unit_test(test_lingering_after_closing_output),
        cmocka_unit_test(test_command_can_prompt_on_the_terminal),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
