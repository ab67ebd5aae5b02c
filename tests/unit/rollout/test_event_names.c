/* SPDX-License-Identifier: Apache-2.0 */
/* Every deployment event the rollout controller can emit becomes an audit record the trail
 * accepts (review28 finding 1: DEPLOYMENT_<EVENT> types past 32 characters were refused, so
 * those changes were never audited and their API calls answered 503). The event names are read
 * from src/rollout/rollout.c itself: each snake_case string literal there, as the controller
 * turns it into a type, must validate; the known events are written to a real log, found by
 * type and the chain verifies. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "audit/record.h"
#include "common/util.h"
#include "rollout/config.h"
#include "testutil.h"

#define SECRET "unit-test-secret-key-0123456789abcdef"

/* The events the controller saves (save/save_ex/finish/close_promotion in rollout.c). */
static const char *const KNOWN[] = {"created",
                                    "validation_started",
                                    "validation_passed",
                                    "validation_failed",
                                    "validation_failed_ignored",
                                    "shadow_started",
                                    "stage_%d_started",
                                    "extended_awaiting_evidence",
                                    "stage_complete_awaiting_promotion",
                                    "switched_to_green",
                                    "promoted_to_stable",
                                    "restored_previous_version",
                                    "rolled_back",
                                    "rolled_back_to_previous_stable",
                                    "rolled_back_to_version",
                                    "model_rolled_back",
                                    "paused",
                                    "paused_on_failed_check",
                                    "resumed",
                                    "resumed_after_restart",
                                    "rollback_window_resumed"};

static char *read_source(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/../src/rollout/rollout.c", TEST_SOURCE_DIR);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(path, 4 * 1024 * 1024, &text, &len), 0);
    return text;
}

/* The audit type the controller makes of an event (rollout.c audit_event), with "%d" as the
 * widest stage index. */
static void type_of(const char *event, char *type, size_t n)
{
    char ev[256];
    const char *pct = strstr(event, "%d");
    if (pct)
        snprintf(ev, sizeof(ev), "%.*s%d%s", (int)(pct - event), event, ROLLOUT_MAX_STAGES - 1, pct + 2);
    else
        snprintf(ev, sizeof(ev), "%s", event);
    snprintf(type, n, "DEPLOYMENT_%s", ev);
    for (char *c = type; *c; c++)
        *c = (*c >= 'a' && *c <= 'z') ? (char)(*c - 32) : (*c == '-' || *c == ' ') ? '_' : *c;
}

static bool snake_case(const char *s, size_t n)
{
    if (n == 0 || !islower((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_' ||
              (s[i] == '%' && i + 1 < n && s[i + 1] == 'd') || (s[i] == 'd' && i > 0 && s[i - 1] == '%')))
            return false;
    return true;
}

/* Every snake_case string literal of rollout.c (event names among them) makes a valid type. */
static void test_every_literal_makes_a_valid_type(void **state)
{
    (void)state;
    char *src = read_source();
    size_t checked = 0;
    for (const char *p = src; (p = strchr(p, '"'));) {
        if (p > src && (p[-1] == '\\' || p[-1] == '\'')) {
            p++;
            continue;
        }
        const char *e = p + 1;
        while (*e && *e != '"' && *e != '\n')
            e += (*e == '\\' && e[1]) ? 2 : 1;
        if (*e != '"')
            break;
        size_t n = (size_t)(e - p - 1);
        if (snake_case(p + 1, n) && n < 200) {
            char lit[256], type[320];
            snprintf(lit, sizeof(lit), "%.*s", (int)n, p + 1);
            type_of(lit, type, sizeof(type));
            audit_event_t ev = {
                .type = type, .action = "U", .entity_type = "deployment", .outcome = "success"};
            if (audit_event_validate(&ev) != 0)
                fail_msg("event literal \"%s\" makes audit type %s (%zu chars), which the trail refuses", lit,
                         type, strlen(type));
            /* review52 #2: and an audit query for it is not refused as an unknown type */
            if (!audit_event_type_known(type))
                fail_msg("event literal \"%s\" makes audit type %s, which audit queries refuse", lit, type);
            checked++;
        }
        p = e + 1;
    }
    assert_true(checked >= ARRAY_SIZE(KNOWN));
    /* the known events are the controller's: each is in the source */
    for (size_t i = 0; i < ARRAY_SIZE(KNOWN); i++) {
        char q[128];
        snprintf(q, sizeof(q), "\"%s\"", KNOWN[i]);
        if (!strstr(src, q))
            fail_msg("event %s is no longer in rollout.c: update KNOWN", KNOWN[i]);
    }
    free(src);
}

/* The longest ones are the ones review28 found refused. */
static void test_the_long_types_fit(void **state)
{
    (void)state;
    char type[128];
    type_of("stage_complete_awaiting_promotion", type, sizeof(type));
    assert_true(strlen(type) > 32);
    audit_event_t ev = {.type = type, .action = "U"};
    assert_int_equal(audit_event_validate(&ev), 0);
    /* the cap still holds */
    char longest[AUDIT_MAX_TYPE + 2];
    memset(longest, 'A', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    ev.type = longest;
    assert_int_equal(audit_event_validate(&ev), -EINVAL);
    longest[AUDIT_MAX_TYPE] = '\0';
    assert_int_equal(audit_event_validate(&ev), 0);
}

/* Each known event written to a real log as the controller writes it, found by its type, the
 * chain intact. */
static void test_known_events_reach_a_real_trail(void **state)
{
    (void)state;
    char dir[PATH_MAX / 2], path[PATH_MAX];
    assert_int_equal(test_tmpdir(dir, sizeof(dir), "event-names"), 0);
    snprintf(path, sizeof(path), "%s/audit.log", dir);
    config_t cfg = {0};
    cfg.audit_log_path = path;
    cfg.secret_key = SECRET;
    cfg.audit_durability = "strict";
    cfg.audit_checkpoint_records = 1000;
    cfg.audit_checkpoint_interval_s = 3600;
    cfg.audit_log_retention_days = 2555;
    audit_log_t *a = NULL;
    char err[512] = "";
    assert_int_equal(audit_log_open(&cfg, &a, err, sizeof(err)), 0);
    for (size_t i = 0; i < ARRAY_SIZE(KNOWN); i++) {
        char type[128];
        type_of(KNOWN[i], type, sizeof(type));
        json_t *detail = json_pack("{s:s,s:s,s:s,s:s}", "event", KNOWN[i], "actor", "svc-deployer",
                                   "from_version", "3.0.0", "to_version", "1.0.0");
        audit_event_t ev = {.type = type,
                            .user = "svc-deployer",
                            .action = "U",
                            .entity_type = "deployment",
                            .entity_id = "deploy_20260101000000_abcdef",
                            .outcome = "success",
                            .detail = detail};
        assert_int_equal(audit_log_append_sync(a, &ev), 0);
        json_decref(detail);
    }
    audit_log_close(a);
    for (size_t i = 0; i < ARRAY_SIZE(KNOWN); i++) {
        char type[128];
        type_of(KNOWN[i], type, sizeof(type));
        audit_query_t q = {.type = type, .limit = 10};
        json_t *recs = NULL;
        uint64_t next = 0;
        assert_int_equal(audit_query_check(&q, "", err, sizeof(err)), 0);
        assert_int_equal(audit_query_run(&cfg, &q, &recs, &next, err, sizeof(err)), 0);
        if (json_array_size(recs) != 1)
            fail_msg("%s: %zu records found", type, json_array_size(recs));
        json_decref(recs);
    }
    audit_verify_result_t res;
    assert_int_equal(audit_verify(&cfg, NULL, &res, err, sizeof(err)), 0);
    assert_true(res.ok);
    util_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_literal_makes_a_valid_type),
        cmocka_unit_test(test_the_long_types_fit),
        cmocka_unit_test(test_known_events_reach_a_real_trail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
