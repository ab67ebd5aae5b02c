/* SPDX-License-Identifier: Apache-2.0 */
/* Where the backup key comes from: a key file (BACKUP_ENCRYPTION_KEY_FILE, owner-only
 * permissions) or the standard output of a key command (BACKUP_KEY_COMMAND, e.g. a KMS
 * client, run with BACKUP_ENCRYPTION_KEY_ID in its environment). The key is 32 bytes; it is
 * never written into a backup. A key command prints it as 64 hex digits or as the base64 of
 * 32 bytes (one trailing newline allowed), nothing else: 32 bytes of anything (an error
 * message printed with exit status 0) are not a key. A key file holds 64 hex digits, the
 * base64 of 32 bytes (surrounding whitespace ignored) or 32 raw bytes; 32 bytes of printable
 * text (a passphrase, not a random key) are taken, since backups made with the file must stay
 * restorable, with a warning (backup_key_decode_file returns 1). */
#ifndef AIMEDRES_BACKUP_KEYS_H
#define AIMEDRES_BACKUP_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "backup/crypto.h"
#include "backup/settings.h"

#define BACKUP_KEY_COMMAND_TIMEOUT_MS 30000
#define BACKUP_KEY_INPUT_MAX 4096

/* Loads and derives the key. Errors (err says what to do):
 *   -ENOKEY  neither source is configured
 *   -EINVAL  both are configured, or the material is not 32 bytes in a known encoding
 *   -EPERM   the key file is readable or writable by group or others
 *   -EIO     the key command failed, timed out or printed too much
 *   -errno   the key file cannot be read */
int backup_key_load(const backup_settings_t *s, backup_key_t *ret, char *err, size_t errlen);

/* Decodes 32 key bytes from buf: exactly 32 raw bytes, or (surrounding whitespace
 * ignored) 64 hex characters or the base64 of 32 bytes. 0 or -EINVAL. */
int backup_key_decode(const uint8_t *buf, size_t len, uint8_t out[BACKUP_KEY_BYTES]);

/* What a key command may print: exactly 64 hex digits or the base64 of 32 bytes (44
 * characters, one '='), optionally followed by one newline ("\n" or "\r\n"). 0 or -EINVAL. */
int backup_key_decode_text(const uint8_t *buf, size_t len, uint8_t out[BACKUP_KEY_BYTES]);

/* What a key file may hold: backup_key_decode's forms. 0 for a key; 1 for 32 raw bytes that
 * are all printable ASCII or whitespace (text: a passphrase, not random bytes), still taken
 * as the key, since backups made with that file must stay restorable, for the caller to warn
 * about; -EINVAL otherwise. */
int backup_key_decode_file(const uint8_t *buf, size_t len, uint8_t out[BACKUP_KEY_BYTES]);

/* Writes a new random key as hex to path (O_EXCL, mode 0600). -EEXIST if it exists. */
int backup_key_generate(const char *path, char *err, size_t errlen);

#endif
