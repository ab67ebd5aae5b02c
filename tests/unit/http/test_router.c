/* SPDX-License-Identifier: Apache-2.0 */
/* Router: literal and parameter matching, per-segment percent-decoding, 404 vs 405,
 * malformed paths. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <event2/http.h>

#include "http/router.h"

static void h(http_ctx_t *ctx)
{
    (void)ctx;
}

static const http_route_t routes[] = {
    {EVHTTP_REQ_GET, "/", h, "", NULL},
    {EVHTTP_REQ_GET, "/health", h, "", NULL},
    {EVHTTP_REQ_GET, "/api/v1/models/list", h, "", NULL},
    {EVHTTP_REQ_GET, "/api/v1/models/{name}", h, "", NULL},
    {EVHTTP_REQ_POST, "/api/v1/models/{name}/predict", h, "", NULL},
};
#define N (sizeof(routes) / sizeof(routes[0]))

static void test_literal_and_root(void **state)
{
    (void)state;
    router_match_t m;
    assert_int_equal(router_match(routes, N, "/", EVHTTP_REQ_GET, &m), 0);
    assert_ptr_equal(m.route, &routes[0]);
    assert_int_equal(router_match(routes, N, "/health", EVHTTP_REQ_GET, &m), 0);
    assert_ptr_equal(m.route, &routes[1]);
    assert_int_equal(router_match(routes, N, "/health/", EVHTTP_REQ_GET, &m), 0);
    assert_int_equal(router_match(routes, N, "/healthz", EVHTTP_REQ_GET, &m), -ENOENT);
}

static void test_literal_wins_in_table_order(void **state)
{
    (void)state;
    router_match_t m;
    assert_int_equal(router_match(routes, N, "/api/v1/models/list", EVHTTP_REQ_GET, &m), 0);
    assert_ptr_equal(m.route, &routes[2]);
    assert_int_equal(router_match(routes, N, "/api/v1/models/als", EVHTTP_REQ_GET, &m), 0);
    assert_ptr_equal(m.route, &routes[3]);
    assert_int_equal(m.n_params, 1);
    assert_string_equal(m.params[0], "als");
}

static void test_params_decoded_per_segment(void **state)
{
    (void)state;
    router_match_t m;
    assert_int_equal(router_match(routes, N, "/api/v1/models/a%2Fb/predict", EVHTTP_REQ_POST, &m), 0);
    assert_ptr_equal(m.route, &routes[4]);
    assert_string_equal(m.params[0], "a/b"); /* stays one parameter; the handler refuses it */
    assert_int_equal(router_match(routes, N, "/api/v1/models/%2e%2e/predict", EVHTTP_REQ_POST, &m), 0);
    assert_string_equal(m.params[0], "..");
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    router_match_t m;
    assert_int_equal(router_match(routes, N, "/api/v1/models/x/predict", EVHTTP_REQ_GET, &m), -EPERM);
    assert_int_equal(m.allowed, EVHTTP_REQ_POST);
    assert_null(m.route);
    assert_non_null(m.path_route); /* the route a 405 is counted under */
    assert_string_equal(m.path_route->pattern, "/api/v1/models/{name}/predict");
    char allow[64];
    router_allow_header(m.allowed | EVHTTP_REQ_OPTIONS, allow, sizeof(allow));
    assert_string_equal(allow, "POST, OPTIONS");
    assert_int_equal(router_match(routes, N, "/health", EVHTTP_REQ_DELETE, &m), -EPERM);
}

/* A malformed path, and (review52 #6) what the 400 says about it: the rule and the segment. */
static void malformed(const char *path, const char *why, size_t segment)
{
    router_match_t m;
    assert_int_equal(router_match(routes, N, path, EVHTTP_REQ_GET, &m), -EINVAL);
    assert_string_equal(m.why, why);
    assert_int_equal(m.bad_segment, segment);
}

static void test_malformed(void **state)
{
    (void)state;
    malformed("", "the request target does not start with /", 0);
    malformed("health", "the request target does not start with /", 0);
    malformed("/api//v1", "empty (//)", 2);
    malformed("/api/v1/models//predict", "empty (//)", 4);
    malformed("/api/%zz", "malformed percent-escape (expected % and two hex digits)", 2);
    malformed("/api/%2", "malformed percent-escape (expected % and two hex digits)", 2);
    malformed("/api/a%00", "NUL byte (%00)", 2);
    char longp[300];
    longp[0] = '/';
    memset(longp + 1, 'a', 280);
    longp[281] = '\0';
    malformed(longp, "longer than 255 bytes decoded", 1);
    char deep[200] = "";
    for (int i = 0; i < 20; i++)
        strcat(deep, "/a");
    malformed(deep, "more than 16 segments", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_and_root),
        cmocka_unit_test(test_literal_wins_in_table_order),
        cmocka_unit_test(test_params_decoded_per_segment),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
