#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# `make test-sanitize`: builds everything with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake option AIMEDRES_SANITIZE) in build-asan and runs the whole ctest suite (unit + e2e)
# with leak detection, aborting on the first report. Leak suppressions (third-party only)
# live in tests/sanitize/lsan.supp. Usage: scripts/test-sanitize.sh [ctest args...]
set -eu
cd "$(dirname "$0")/.."
BUILD=${ASAN_BUILD:-build-asan}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

werror=ON
[ "${WERROR:-1}" = 1 ] || werror=OFF
cmake -S . -B "$BUILD" -DAIMEDRES_WERROR=$werror -DAIMEDRES_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j "$JOBS"

SUPP="$(pwd)/tests/sanitize/lsan.supp"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$SUPP:print_suppressions=0"
# Lets a timing-sensitive test relax its bounds under sanitizers (code runs 2-5x slower).
export AIMEDRES_SANITIZE=1
# The e2e harness multiplies wall-clock waits, timeouts and server-side time allowances by this
# factor (tests/e2e/aimedres_harness.py, TIME_SCALE); what each test checks stays the same.
export AIMEDRES_TEST_TIME_SCALE="${AIMEDRES_TEST_TIME_SCALE:-4}"
cd "$BUILD"
# Per-test timeouts are scaled for sanitized builds in tests/CMakeLists.txt.
exec ctest --output-on-failure -j "$JOBS" "$@"
