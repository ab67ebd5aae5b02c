/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration fingerprints and the CONFIG_CHANGE record written at server start; see
 * configfp.h.
 *
 * DESIGN
 * - Key: HMAC-SHA256(SECRET_KEY, "aimedres/config-fingerprint/v1"). Each setting's
 *   fingerprint is HMAC(key, NAME "\0" value), the value being the raw string for string
 *   settings (secrets included: only their HMAC leaves memory) and config_print's text for
 *   the others. Without the key a fingerprint reveals nothing, not even for a short secret.
 * - Shown values: a setting's value is kept in the state and shown in the record only when
 *   it is not secret, its name does not end in _URL or _COMMAND (webhook URLs and key
 *   commands often embed credentials) and it is at most AUDIT_CONFIG_VALUE_MAX bytes.
 * - The state file <log>.config-state carries a MAC under the same key, so an edited state
 *   (or one written under another SECRET_KEY) is reported as "unverifiable" instead of
 *   silently hiding a change. Order at start: the CONFIG_CHANGE record is made durable
 *   first, then the state is replaced; a crash in between repeats the record next time,
 *   never loses it. The record also carries the whole-configuration fingerprint, so the
 *   chain itself holds every configuration the server ran with. */
#include "audit/configfp.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "security/jwt.h"

#define STATE_MAX (1024 * 1024)
#define DETAIL_MAX 12000 /* bytes of detail JSON before values are dropped (records stay < 16 KiB) */

void audit_path_config_state(const char *log_path, char *buf, size_t len)
{
    snprintf(buf, len, "%s.config-state", log_path);
}

static void hex32(const unsigned char in[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[64] = '\0';
}

static int derive_key(const config_t *cfg, unsigned char key[32])
{
    static const char label[] = "aimedres/config-fingerprint/v1";
    if (!cfg->secret_key || !*cfg->secret_key)
        return -EINVAL;
    return jwt_hmac_sha256(cfg->secret_key, strlen(cfg->secret_key), label, sizeof(label) - 1, key);
}

static int mac_hex(const unsigned char key[32], const void *data, size_t n, char out[65])
{
    unsigned char m[32];
    int rc = jwt_hmac_sha256(key, 32, data, n, m);
    if (rc == 0)
        hex32(m, out);
    return rc;
}

/* MAC of a JSON value in canonical form (compact, keys sorted). */
static int mac_json(const unsigned char key[32], const json_t *v, char out[65])
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!s)
        return -ENOMEM;
    int rc = mac_hex(key, s, strlen(s), out);
    free(s);
    return rc;
}

/* config_print's text of every setting, as an object NAME -> text. */
static json_t *printed_values(const config_t *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    config_print(cfg, f);
    fclose(f);
    json_t *o = json_object();
    for (char *line = buf; o && line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char *eq = strchr(line, '=');
        if (eq) {
            *eq = '\0';
            json_object_set_new(o, line, json_string(eq + 1));
        }
        line = nl ? nl + 1 : NULL;
    }
    free(buf);
    return o;
}

json_t *audit_config_state(const config_t *cfg)
{
    unsigned char key[32];
    if (derive_key(cfg, key) < 0)
        return NULL;
    json_t *printed = printed_values(cfg);
    json_t *settings = json_object(), *hashes = json_object(), *state = NULL;
    if (!printed || !settings || !hashes)
        goto out;
    for (size_t i = 0; config_setting_name(i); i++) {
        const char *name = config_setting_name(i);
        const char *raw = NULL, *text = json_string_value(json_object_get(printed, name));
        bool secret = false;
        bool is_str = config_setting_raw(cfg, i, &raw, &secret) == 0;
        /* string settings: the raw value (unset and empty differ from any real value);
         * others: their printed text */
        const char *v = is_str ? (raw ? raw : "") : (text ? text : "");
        char tag = is_str && !raw ? 'u' : 's';
        size_t nl = strlen(name), vl = strlen(v);
        char *msg = malloc(nl + vl + 3);
        if (!msg)
            goto out;
        memcpy(msg, name, nl);
        msg[nl] = '\0';
        msg[nl + 1] = tag;
        memcpy(msg + nl + 2, v, vl);
        char h[65];
        int rc = mac_hex(key, msg, nl + vl + 2, h);
        OPENSSL_cleanse(msg, nl + vl + 2);
        free(msg);
        if (rc < 0)
            goto out;
        json_t *entry = json_pack("{s:s}", "h", h);
        bool shown = !secret && !util_ends_with(name, "_URL") && !util_ends_with(name, "_COMMAND") && text &&
                     strlen(text) <= AUDIT_CONFIG_VALUE_MAX;
        if (entry && shown)
            json_object_set_new(entry, "v", json_string(text));
        json_object_set_new(settings, name, entry);
        json_object_set_new(hashes, name, json_string(h));
    }
    char fp[65], mac[65];
    if (mac_json(key, hashes, fp) < 0)
        goto out;
    state = json_pack("{s:i,s:s,s:O}", "v", 1, "fingerprint", fp, "settings", settings);
    if (!state || mac_json(key, state, mac) < 0) {
        json_decref(state);
        state = NULL;
        goto out;
    }
    json_object_set_new(state, "mac", json_string(mac));
out:
    OPENSSL_cleanse(key, sizeof(key));
    json_decref(printed);
    json_decref(settings);
    json_decref(hashes);
    return state;
}

/* True when st's "mac" matches its other members under cfg's key. */
static bool state_authentic(const config_t *cfg, const json_t *st)
{
    unsigned char key[32];
    const char *mac = json_string_value(json_object_get(st, "mac"));
    if (!json_is_object(st) || !mac || strlen(mac) != 64 || derive_key(cfg, key) < 0)
        return false;
    json_t *copy = json_deep_copy(st);
    json_object_del(copy, "mac");
    char want[65];
    bool ok = copy && mac_json(key, copy, want) == 0 && CRYPTO_memcmp(want, mac, 64) == 0 &&
              json_is_object(json_object_get(st, "settings"));
    json_decref(copy);
    OPENSSL_cleanse(key, sizeof(key));
    return ok;
}

json_t *audit_config_diff(const config_t *cfg, const json_t *prev, const json_t *cur)
{
    if (!cur)
        return NULL;
    json_t *cs = json_object_get(cur, "settings");
    const char *fp = json_string_value(json_object_get(cur, "fingerprint"));
    if (!prev || !state_authentic(cfg, prev)) {
        json_t *d = json_pack("{s:s,s:I,s:s}", "reason", "baseline", "settings",
                              (json_int_t)json_object_size(cs), "fingerprint", fp ? fp : "");
        if (d && prev)
            json_object_set_new(d, "previous_state",
                                json_string("unverifiable: written under another SECRET_KEY, or altered"));
        return d;
    }
    json_t *ps = json_object_get(prev, "settings");
    json_t *changed = json_array();
    const char *name;
    json_t *c;
    json_object_foreach(cs, name, c)
    {
        json_t *p = json_object_get(ps, name);
        json_t *e = NULL;
        if (!p) {
            e = json_pack("{s:s,s:b}", "setting", name, "added", 1);
        } else if (!json_equal(json_object_get(p, "h"), json_object_get(c, "h"))) {
            json_t *ov = json_object_get(p, "v"), *nv = json_object_get(c, "v");
            e = ov && nv ? json_pack("{s:s,s:O,s:O}", "setting", name, "old", ov, "new", nv)
                         : json_pack("{s:s,s:s}", "setting", name, "value", "hidden");
        }
        if (e)
            json_array_append_new(changed, e);
    }
    json_t *p;
    json_object_foreach(ps, name, p)
    {
        if (!json_object_get(cs, name))
            json_array_append_new(changed, json_pack("{s:s,s:b}", "setting", name, "removed", 1));
    }
    if (json_array_size(changed) == 0) {
        json_decref(changed);
        return NULL;
    }
    /* a bounded record: drop the values if the list is long */
    char *s = json_dumps(changed, JSON_COMPACT);
    bool omit = !s || strlen(s) > DETAIL_MAX;
    free(s);
    if (omit) {
        size_t i;
        json_t *e;
        json_array_foreach(changed, i, e)
        {
            if (json_object_get(e, "old")) {
                json_object_del(e, "old");
                json_object_del(e, "new");
                json_object_set_new(e, "value", json_string("omitted"));
            }
        }
    }
    const char *pfp = json_string_value(json_object_get(prev, "fingerprint"));
    return json_pack("{s:s,s:o,s:s,s:s}", "reason", "changed", "changed", changed, "fingerprint",
                     fp ? fp : "", "previous_fingerprint", pfp ? pfp : "");
}

void audit_os_user(char *buf, size_t len)
{
    struct passwd pw, *res = NULL;
    char tmp[1024];
    if (getpwuid_r(geteuid(), &pw, tmp, sizeof(tmp), &res) == 0 && res && res->pw_name)
        snprintf(buf, len, "%s", res->pw_name);
    else
        snprintf(buf, len, "uid:%u", (unsigned)geteuid());
}

int audit_config_record(audit_log_t *a, const config_t *cfg, int *ret_changed, char *err, size_t errlen)
{
    if (ret_changed)
        *ret_changed = 0;
    if (!a)
        return 0;
    char path[4200];
    audit_path_config_state(cfg->audit_log_path, path, sizeof(path));
    json_t *cur = audit_config_state(cfg), *prev = NULL, *detail = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc;
    if (!cur) {
        snprintf(err, errlen, "cannot fingerprint the configuration (SECRET_KEY unset?)");
        return -EINVAL;
    }
    rc = util_read_file(path, STATE_MAX, &text, &len);
    if (rc == 0) {
        prev = json_loadb(text, len, 0, NULL);
        if (!prev)
            prev = json_object(); /* unreadable: reported as unverifiable */
    } else if (rc != -ENOENT) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
        goto out;
    }
    free(text);
    text = NULL;
    detail = audit_config_diff(cfg, prev, cur);
    if (detail) {
        bool baseline = strcmp(json_string_value(json_object_get(detail, "reason")), "baseline") == 0;
        if (ret_changed)
            *ret_changed = baseline ? -1 : (int)json_array_size(json_object_get(detail, "changed"));
        char user[128];
        audit_os_user(user, sizeof(user));
        audit_event_t ev = {.type = "CONFIG_CHANGE",
                            .user = user,
                            .role = "system",
                            .action = "U",
                            .entity_type = "configuration",
                            .entity_id = "aimedres serve",
                            .outcome = "success",
                            .detail = detail};
        rc = audit_log_append_sync(a, &ev);
        if (rc < 0) {
            snprintf(err, errlen, "cannot record the CONFIG_CHANGE event: %s", strerror(-rc));
            goto out;
        }
        if (baseline && json_object_get(detail, "previous_state"))
            log_msg(LOG_WARNING,
                    "previous configuration state does not verify (another SECRET_KEY, or altered): "
                    "recorded a new CONFIG_CHANGE baseline",
                    "{s:s}", "path", path);
        else if (baseline)
            log_msg(LOG_INFO, "configuration baseline recorded in the audit log (CONFIG_CHANGE)", NULL);
        else
            log_msg(LOG_INFO, "configuration changed since the last start (CONFIG_CHANGE recorded)", "{s:I}",
                    "changed", (json_int_t)json_array_size(json_object_get(detail, "changed")));
    }
    text = json_dumps(cur, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = util_write_file_atomic(path, text, strlen(text), 0640);
    if (rc < 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
out:
    free(text);
    json_decref(cur);
    json_decref(prev);
    json_decref(detail);
    return rc;
}
