/* SPDX-License-Identifier: Apache-2.0 */
/* Sanitizer defaults compiled into the aimedres binary of an AIMEDRES_SANITIZE build, so the
 * server started by the e2e harness (which passes it a minimal environment, without
 * ASAN_OPTIONS) still fails loudly: leaks checked at exit, abort on the first report, UBSan
 * fatal. ASAN_OPTIONS / UBSAN_OPTIONS / LSAN_OPTIONS in the environment still override.
 * The leak suppressions name third-party libraries only (see tests/sanitize/lsan.supp). */

const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__lsan_default_suppressions(void);

const char *__asan_default_options(void)
{
    return "detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:"
           "check_initialization_order=1";
}

const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

/* Keep in sync with tests/sanitize/lsan.supp (one entry per third-party leak, explained there). */
const char *__lsan_default_suppressions(void)
{
    return "";
}
