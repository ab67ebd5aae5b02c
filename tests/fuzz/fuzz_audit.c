/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the audit log reader. The input is an audit log file: each line goes
 * through audit_record_parse and the chain-hash check, the file through audit_file_tail (the
 * writer's recovery of a torn tail) and, written as the active log of a scratch
 * AUDIT_LOG_PATH, through audit_verify, the whole `aimedres audit verify` path. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/record.h"
#include "common/config.h"
#include "fuzz_common.h"

#define SECRET "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static unsigned char key[AUDIT_KEY_LEN];
static config_t *cfg;
static char log_path[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* /dev/shm when present: truncating a file on a disk-backed /tmp 10^4 times is slow */
    char dir[] = "/dev/shm/aimedres-fuzz-audit.XXXXXX";
    if (access("/dev/shm", W_OK) != 0)
        memcpy(dir, "/tmp/aimedres-fuzz-audit.XXXXXX", sizeof("/tmp/aimedres-fuzz-audit.XXXXXX"));
    if (!mkdtemp(dir))
        abort();
    snprintf(log_path, sizeof(log_path), "%s/audit.log", dir);
    setenv("AUDIT_LOG_PATH", log_path, 1);
    setenv("SECRET_KEY", SECRET, 1);
    char err[1024];
    if (config_load(NULL, &cfg, err, sizeof(err)) != 0 || audit_chain_key(SECRET, key) != 0) {
        fprintf(stderr, "fuzz_audit: setup: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* line by line, as the verifier and the query read them */
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        json_t *rec = audit_record_parse(p, len);
        if (rec) {
            (void)audit_record_hash_ok(rec, key);
            json_decref(rec);
        }
        p += len + 1;
    }

    /* the writer's torn-tail recovery on the same bytes */
    int fd = memfd_create("audit", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    json_t *last = NULL;
    off_t valid = 0;
    if (audit_file_tail(fd, (off_t)size, &last, &valid) == 0) {
        if (valid < 0 || valid > (off_t)size)
            abort();
        json_decref(last);
    }
    close(fd);

    /* the whole verifier on the bytes as the active log file */
    int lf = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (lf < 0)
        abort();
    if (size && write(lf, data, size) != (ssize_t)size)
        abort();
    close(lf);
    audit_verify_result_t res;
    char err[512];
    if (audit_verify(cfg, NULL, &res, err, sizeof(err)) == 0) {
        json_t *j = audit_verify_result_json(&res);
        json_decref(j);
    }
    return 0;
}
