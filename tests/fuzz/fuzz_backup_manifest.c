/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the backup manifest reader (backup_manifest_parse), unauthenticated and
 * with a fixed key. A manifest accepted without a key is re-signed with the fixed key and must
 * parse back, authenticated, to the same file count. */
#include <errno.h>
#include <stdio.h>

#include "backup/manifest.h"
#include "fuzz_common.h"

static backup_key_t key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    uint8_t master[BACKUP_KEY_BYTES];
    for (size_t i = 0; i < sizeof(master); i++)
        master[i] = (uint8_t)(i * 7 + 1);
    backup_key_derive(master, &key);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    char err[512];
    backup_manifest_t *m = NULL;
    if (backup_manifest_parse(text, size, NULL, &m, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < m->n_files; i++)
            (void)backup_manifest_find(m, m->files[i].path);
        /* sign with our key: the manifest must then name our key's fingerprint */
        snprintf(m->key_fingerprint, sizeof(m->key_fingerprint), "%s", key.fingerprint);
        char *dump = backup_manifest_dump(m, &key);
        if (dump) {
            backup_manifest_t *m2 = NULL;
            if (backup_manifest_parse(dump, strlen(dump), &key, &m2, err, sizeof(err)) != 0) {
                fprintf(stderr, "round trip refused: %s\n", err);
                abort();
            }
            if (m2->n_files != m->n_files)
                abort();
            backup_manifest_free(m2);
            free(dump);
        }
        backup_manifest_free(m);
    }
    m = NULL;
    if (backup_manifest_parse(text, size, &key, &m, err, sizeof(err)) == 0)
        backup_manifest_free(m);
    (void)backup_id_valid(text);
    free(text);
    return 0;
}
