/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the env-file parser (config_parse_env_buffer). Every pair handed to the
 * callback must be NUL-terminated strings with a non-empty key; on a syntax error no
 * callback may have run (the header promises all-or-nothing). */
#include <errno.h>
#include <stdio.h>

#include "common/config.h"
#include "fuzz_common.h"

typedef struct count {
    size_t pairs;
    size_t bytes;
} count_t;

static int on_pair(const char *key, const char *value, void *arg)
{
    count_t *c = arg;
    if (!key || !value || key[0] == '\0')
        abort();
    c->pairs++;
    c->bytes += strlen(key) + strlen(value);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the parser takes a length: an exact-size heap copy, so reads past it are caught */
    char *buf = fuzz_exact_copy(data, size);
    count_t c = {0, 0};
    char err[1024];
    int rc = config_parse_env_buffer(buf, size, "fuzz.env", on_pair, &c, err, sizeof(err));
    if (rc == -EINVAL && c.pairs != 0)
        abort(); /* a buffer with a syntax error must not have produced any pair */
    if (rc != 0 && rc != -EINVAL)
        abort();
    if (rc == -EINVAL && strnlen(err, sizeof(err)) == 0)
        abort(); /* refusals explain themselves */
    free(buf);
    return 0;
}
