/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: request-target routing. The first input byte picks the method, the rest
 * is the raw request target; the query is cut off as the server does (src/http/server.c),
 * then router_match runs against the real route table and each decoded parameter goes
 * through the handlers' name check. Any crash, overflow or UB is a finding. */
#include <errno.h>
#include <event2/http.h>
#include <stdio.h>

#include "api/api.h"
#include "common/util.h"
#include "fuzz_common.h"
#include "http/router.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static const unsigned methods[] = {EVHTTP_REQ_GET,   EVHTTP_REQ_POST,    EVHTTP_REQ_HEAD,
                                   EVHTTP_REQ_PUT,   EVHTTP_REQ_DELETE,  EVHTTP_REQ_OPTIONS,
                                   EVHTTP_REQ_TRACE, EVHTTP_REQ_CONNECT, EVHTTP_REQ_PATCH};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
    char *uri = fuzz_cstr(data + 1, size - 1);
    /* same cut as server.c: the path without query string or fragment, capped */
    char path[ROUTER_MAX_PATH + 1];
    size_t plen = strcspn(uri, "?#");
    if (plen <= ROUTER_MAX_PATH) {
        memcpy(path, uri, plen);
        path[plen] = '\0';
        router_match_t m;
        int rc = router_match(api_routes, api_routes_count, path, method, &m);
        if (rc == 0) {
            if (!m.route || m.n_params > ROUTER_MAX_PARAMS)
                abort();
            for (size_t i = 0; i < m.n_params; i++) {
                if (strnlen(m.params[i], sizeof(m.params[i])) >= sizeof(m.params[i]))
                    abort(); /* parameters must be NUL-terminated within their buffer */
                (void)util_is_safe_name(m.params[i]);
            }
        } else if (rc == -EPERM) {
            char allow[128];
            if (m.allowed == 0)
                abort(); /* 405 must name at least one allowed method */
            router_allow_header(m.allowed, allow, sizeof(allow));
        } else if (rc != -ENOENT && rc != -EINVAL) {
            abort();
        }
    }
    (void)router_method_name(method);
    free(uri);
    return 0;
}
