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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* Runs cmd under /bin/sh -c with BACKUP_ENCRYPTION_KEY_ID set; captures stdout. */
static int run_command(const char *cmd, const char *key_id, uint8_t *buf, size_t *ret_len, char *err,
                       size_t errlen)
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
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        free(envp);
        free(idvar);
        snprintf(err, errlen, "BACKUP_KEY_COMMAND: fork: %s", strerror(errno));
        return -EIO;
    }
    if (pid == 0) {
        dup2(pfd[1], STDOUT_FILENO); /* dup2 clears O_CLOEXEC on the copy */
        execve("/bin/sh", (char *const[]){"sh", "-c", (char *)cmd, NULL}, envp);
        _exit(127);
    }
    free(envp);
    free(idvar);
    close(pfd[1]);
    size_t got = 0;
    int r = 0;
    int64_t deadline = util_mono_ns() / 1000000 + BACKUP_KEY_COMMAND_TIMEOUT_MS;
    for (;;) {
        int64_t left = deadline - util_mono_ns() / 1000000;
        if (left <= 0) {
            snprintf(err, errlen, "BACKUP_KEY_COMMAND: no answer within %d s",
                     BACKUP_KEY_COMMAND_TIMEOUT_MS / 1000);
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
    if (r < 0)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (r == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        if (WIFEXITED(status))
            snprintf(err, errlen, "BACKUP_KEY_COMMAND exited with status %d", WEXITSTATUS(status));
        else
            snprintf(err, errlen, "BACKUP_KEY_COMMAND was killed by signal %d", WTERMSIG(status));
        r = -EIO;
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
                        : run_command(s->key_command, s->key_id, buf, &len, err, errlen);
    if (r == 0) {
        r = backup_key_decode(buf, len, master);
        if (r < 0)
            snprintf(err, errlen,
                     "%s: expected 32 raw bytes, 64 hex characters or base64 of 32 bytes, got %zu bytes of "
                     "something "
                     "else",
                     s->key_file ? "BACKUP_ENCRYPTION_KEY_FILE" : "BACKUP_KEY_COMMAND output", len);
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
