/* SPDX-License-Identifier: Apache-2.0 */
/* Backup key sources: key file or key command (see keys.h). The raw key lives only in
 * stack buffers that are cleansed after derivation. */
#include "backup/keys.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "backup/progress.h"
#include "common/log.h"
#include "common/util.h"

extern char **environ;

int backup_key_decode(const uint8_t *buf, size_t len, uint8_t out[BACKUP_KEY_BYTES])
{
    if (len == BACKUP_KEY_BYTES) {
        memcpy(out, buf, BACKUP_KEY_BYTES);
        return 0;
    }
    size_t a = 0, b = len;
    while (a < b && isspace(buf[a]))
        a++;
    while (b > a && isspace(buf[b - 1]))
        b--;
    char text[128];
    size_t n = b - a;
    if (n == 0 || n >= sizeof(text))
        return -EINVAL;
    memcpy(text, buf + a, n);
    text[n] = '\0';
    int r = -EINVAL;
    if (n == 2 * BACKUP_KEY_BYTES) {
        r = backup_from_hex(text, out, BACKUP_KEY_BYTES);
    } else if (n == 44 && text[43] == '=' && text[42] != '=') {
        uint8_t tmp[36];
        int got = EVP_DecodeBlock(tmp, (const unsigned char *)text, (int)n);
        /* EVP_DecodeBlock counts the padding byte: 44 chars with one '=' give 33 -> 32. */
        if (got == 33) {
            memcpy(out, tmp, BACKUP_KEY_BYTES);
            r = 0;
        }
        OPENSSL_cleanse(tmp, sizeof(tmp));
    }
    OPENSSL_cleanse(text, sizeof(text));
    return r;
}

int backup_key_decode_text(const uint8_t *buf, size_t len, uint8_t out[BACKUP_KEY_BYTES])
{
    if (len >= 1 && buf[len - 1] == '\n')
        len -= len >= 2 && buf[len - 2] == '\r' ? 2 : 1;
    if (len != 2 * BACKUP_KEY_BYTES && len != 44)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        if (isspace(buf[i]))
            return -EINVAL;
    return backup_key_decode(buf, len, out);
}

int backup_key_decode_file(const uint8_t *buf, size_t len, uint8_t out[BACKUP_KEY_BYTES])
{
    if (len == BACKUP_KEY_BYTES) {
        size_t text = 0;
        for (size_t i = 0; i < len; i++)
            text += (buf[i] >= 0x20 && buf[i] < 0x7f) || isspace(buf[i]);
        /* random bytes are all text with odds of about 1e-14 */
        if (text == len)
            return backup_key_decode(buf, len, out) == 0 ? 1 : -EINVAL;
    }
    return backup_key_decode(buf, len, out);
}

static int load_file(const char *path, uint8_t *buf, size_t *ret_len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "BACKUP_ENCRYPTION_KEY_FILE %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "BACKUP_ENCRYPTION_KEY_FILE %s: not a regular file", path);
        r = -EINVAL;
        goto out;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen,
                 "BACKUP_ENCRYPTION_KEY_FILE %s: mode %04o lets group or others access the key; "
                 "run chmod 600 on it",
                 path, (unsigned)(st.st_mode & 07777));
        r = -EPERM;
        goto out;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, BACKUP_KEY_INPUT_MAX - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            snprintf(err, errlen, "BACKUP_ENCRYPTION_KEY_FILE %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == BACKUP_KEY_INPUT_MAX) {
            snprintf(err, errlen,
                     "BACKUP_ENCRYPTION_KEY_FILE %s: larger than %d bytes; expected a 32-byte key", path,
                     BACKUP_KEY_INPUT_MAX);
            r = -EINVAL;
            goto out;
        }
    }
    *ret_len = got;
out:
    close(fd);
    return r;
}

/* The controlling terminal, opened, when this process's group is in its foreground: the key
 * command runs in a process group of its own (so that a timeout can kill everything it
 * started), and gets the terminal's foreground while it runs, so that it can still ask for a
 * PIN or a passphrase on /dev/tty. -1 without one (cron, systemd) or in a background job. */
static int foreground_tty(void)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (tcgetpgrp(fd) != getpgrp()) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether the child has ended (how, in si), without reaping it: until it is reaped its pid,
 * which is also its process group's id, cannot be reused, so kill(-pid) stays safe. */
static bool ended(pid_t pid, siginfo_t *si)
{
    memset(si, 0, sizeof(*si));
    while (waitid(P_PID, (id_t)pid, si, WEXITED | WNOHANG | WNOWAIT) < 0)
        if (errno != EINTR)
            return true; /* not our child (cannot happen): nothing to wait for */
    return si->si_pid == pid;
}

/* Waits until the child ended or deadline_ms (monotonic) passed; whether it ended. */
static bool wait_until(pid_t pid, siginfo_t *si, int64_t deadline_ms)
{
    while (!ended(pid, si)) {
        if (util_mono_ns() / 1000000 >= deadline_ms)
            return false;
        poll(NULL, 0, 10);
    }
    return true;
}

/* Runs cmd under /bin/sh -c with BACKUP_ENCRYPTION_KEY_ID set; captures stdout. The command
 * runs in a new process group; when it fails, prints too much or does not finish within the
 * timeout, the whole group (a KMS client's helpers, `sh -c 'sleep 100; ...'`'s sleep) is
 * killed, not just the shell. */
static int run_command(const char *cmd, const char *key_id, int timeout_ms, uint8_t *buf, size_t *ret_len,
                       char *err, size_t errlen)
{
    /* The child's environment is built here: only async-signal-safe calls after fork. */
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 2, sizeof(*envp));
    char *idvar = NULL;
    if (!envp || (key_id && asprintf(&idvar, "BACKUP_ENCRYPTION_KEY_ID=%s", key_id) < 0)) {
        free(envp);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "BACKUP_ENCRYPTION_KEY_ID=", 25) != 0)
            envp[k++] = environ[i];
    if (idvar)
        envp[k++] = idvar;
    envp[k] = NULL;

    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "BACKUP_KEY_COMMAND: pipe: %s", strerror(errno));
        free(envp);
        free(idvar);
        return -EIO;
    }
    /* Handing the terminal over and taking it back happen while our group is (or becomes) a
     * background group: SIGTTOU, which would stop us, stays blocked meanwhile. */
    sigset_t ttou, oldmask;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    int tty = foreground_tty();
    struct termios saved;
    bool have_saved = tty >= 0 && tcgetattr(tty, &saved) == 0;
    pthread_sigmask(tty >= 0 ? SIG_BLOCK : SIG_SETMASK, tty >= 0 ? &ttou : NULL, &oldmask);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        if (tty >= 0) {
            pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
            close(tty);
        }
        close(pfd[0]);
        close(pfd[1]);
        free(envp);
        free(idvar);
        snprintf(err, errlen, "BACKUP_KEY_COMMAND: fork: %s", strerror(e));
        return -EIO;
    }
    if (pid == 0) {
        /* both sides set the group and the foreground, so neither order of running races */
        setpgid(0, 0);
        if (tty >= 0)
            tcsetpgrp(tty, getpid());
        sigprocmask(SIG_SETMASK, &oldmask, NULL);
        dup2(pfd[1], STDOUT_FILENO); /* dup2 clears O_CLOEXEC on the copy */
        execve("/bin/sh", (char *const[]){"sh", "-c", (char *)cmd, NULL}, envp);
        _exit(127);
    }
    setpgid(pid, pid); /* EACCES once the child has exec'd: it did it itself */
    if (tty >= 0)
        tcsetpgrp(tty, pid);
    free(envp);
    free(idvar);
    close(pfd[1]);
    size_t got = 0;
    int r = 0;
    siginfo_t si;
    char limit[24];
    util_format_duration_ms(timeout_ms, limit, sizeof(limit));
    int64_t deadline = util_mono_ns() / 1000000 + timeout_ms;
    for (;;) {
        int64_t left = deadline - util_mono_ns() / 1000000;
        if (left <= 0) {
            if (ended(pid, &si))
                snprintf(err, errlen,
                         "BACKUP_KEY_COMMAND exited, but a process it started kept its output open past the "
                         "%s limit (BACKUP_KEY_COMMAND_TIMEOUT)",
                         limit);
            else
                snprintf(err, errlen, "BACKUP_KEY_COMMAND: no answer within %s (BACKUP_KEY_COMMAND_TIMEOUT)",
                         limit);
            r = -EIO;
            break;
        }
        struct pollfd p = {pfd[0], POLLIN, 0};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t n = read(pfd[0], buf + got, BACKUP_KEY_INPUT_MAX - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == BACKUP_KEY_INPUT_MAX) {
            snprintf(err, errlen, "BACKUP_KEY_COMMAND: printed more than %d bytes; expected a 32-byte key",
                     BACKUP_KEY_INPUT_MAX);
            r = -EIO;
            break;
        }
    }
    close(pfd[0]);
    /* output closed: the command has until the same deadline to exit (it may close stdout
     * and linger) */
    if (r == 0 && !wait_until(pid, &si, deadline)) {
        snprintf(err, errlen, "BACKUP_KEY_COMMAND: closed its output but did not exit within %s", limit);
        r = -EIO;
    }
    if (r == 0 && !(si.si_code == CLD_EXITED && si.si_status == 0)) {
        if (si.si_code == CLD_EXITED)
            snprintf(err, errlen, "BACKUP_KEY_COMMAND exited with status %d", si.si_status);
        else
            snprintf(err, errlen, "BACKUP_KEY_COMMAND was killed by signal %d", si.si_status);
        r = -EIO;
    }
    /* On any failure, everything the command started goes with it: the whole group, killed
     * while its leader is still unreaped (so the group id is still ours), then the leader. */
    if (r < 0) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL); /* in case it never became a group leader */
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (tty >= 0) {
        tcsetpgrp(tty, getpgrp()); /* take the terminal back */
        if (r < 0 && have_saved)   /* a killed PIN prompt may have left echo off */
            tcsetattr(tty, TCSANOW, &saved);
        pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
        close(tty);
    }
    if (r == 0)
        *ret_len = got;
    return r;
}

int backup_key_load(const backup_settings_t *s, backup_key_t *ret, char *err, size_t errlen)
{
    if (s->key_file && s->key_command) {
        snprintf(err, errlen, "set only one of BACKUP_ENCRYPTION_KEY_FILE and BACKUP_KEY_COMMAND");
        return -EINVAL;
    }
    if (!s->key_file && !s->key_command) {
        snprintf(err, errlen,
                 "no backup key: set BACKUP_ENCRYPTION_KEY_FILE (a 0600 file holding 32 bytes as hex, e.g. "
                 "made by "
                 "'aimedres backup keygen FILE') or BACKUP_KEY_COMMAND (prints the key, e.g. a KMS client)");
        return -ENOKEY;
    }
    uint8_t buf[BACKUP_KEY_INPUT_MAX];
    uint8_t master[BACKUP_KEY_BYTES];
    size_t len = 0;
    int r = s->key_file ? load_file(s->key_file, buf, &len, err, errlen)
                        : run_command(s->key_command, s->key_id,
                                      s->key_command_timeout_ms > 0 ? s->key_command_timeout_ms
                                                                    : BACKUP_KEY_COMMAND_TIMEOUT_MS,
                                      buf, &len, err, errlen);
    /* what was read is never echoed: it may be a key (in a form we do not take) */
    if (r == 0 && s->key_file) {
        r = backup_key_decode_file(buf, len, master);
        if (r == 1) {
            /* taken (older backups may use it), but said: a key file is written once, by hand */
            log_msg(LOG_WARNING,
                    "BACKUP_ENCRYPTION_KEY_FILE holds 32 bytes of printable text, used as a raw key: a "
                    "passphrase has far less than 256 bits of entropy; make a key with 'aimedres backup "
                    "keygen FILE' and take a full backup with it (under a new BACKUP_ENCRYPTION_KEY_ID), "
                    "and keep this file while backups made with it are kept",
                    "{s:s}", "key_file", s->key_file);
            r = 0;
        } else if (r < 0)
            snprintf(err, errlen,
                     "BACKUP_ENCRYPTION_KEY_FILE %s: expected 64 hex digits, the base64 of 32 bytes or 32 "
                     "raw bytes, got %zu bytes of something else; make one with 'aimedres backup keygen "
                     "FILE'",
                     s->key_file, len);
    } else if (r == 0) {
        r = backup_key_decode_text(buf, len, master);
        if (r < 0)
            snprintf(err, errlen,
                     "BACKUP_KEY_COMMAND output: expected exactly 64 hex digits or the base64 of 32 bytes, "
                     "optionally followed by a newline, got %zu bytes of something else (not shown: it may "
                     "be a key); the command exited 0, so check what it prints (a command that prints "
                     "32 raw bytes can pipe them through 'base64')",
                     len);
    }
    if (r == 0)
        backup_key_derive(master, ret);
    OPENSSL_cleanse(buf, sizeof(buf));
    OPENSSL_cleanse(master, sizeof(master));
    return r;
}

int backup_key_generate(const char *path, char *err, size_t errlen)
{
    uint8_t key[BACKUP_KEY_BYTES];
    char hex[2 * BACKUP_KEY_BYTES + 2];
    if (util_random(key, sizeof(key)) < 0) {
        snprintf(err, errlen, "no randomness available");
        return -EIO;
    }
    backup_hex(key, sizeof(key), hex);
    strcat(hex, "\n");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int r = 0;
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    size_t n = strlen(hex);
    if (write(fd, hex, n) != (ssize_t)n || fsync(fd) < 0) {
        r = errno ? -errno : -EIO;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        goto out;
    }
    close(fd);
out:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(hex, sizeof(hex));
    return r;
}
