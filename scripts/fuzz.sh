#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# `make fuzz`: builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, coverage,
# ASan and UBSan in build-fuzz, then runs each for FUZZ_SECONDS (default 25) on a scratch
# copy of its committed seed corpus (tests/fuzz/corpus/<name>/). Fails on any crash, leak,
# timeout or sanitizer report; the reproducer is kept in build-fuzz/findings/<name>/ and the
# command to replay it is printed. Prints execs/s per target.
# Usage: scripts/fuzz.sh [target ...]   (FUZZ_SECONDS, FUZZ_BUILD, FUZZ_JOBS from env)
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${FUZZ_BUILD:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-25}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang is missing (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi
werror=ON
[ "${WERROR:-1}" = 1 ] || werror=OFF
CC=clang cmake -S . -B "$BUILD" -DAIMEDRES_FUZZ=ON -DAIMEDRES_WERROR=$werror -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target fuzz_all

if [ $# -gt 0 ]; then
  targets="$*"
else
  targets=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')
fi

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
summary=""
failed=0
for t in $targets; do
  name=${t#fuzz_}
  seeds="$ROOT/tests/fuzz/corpus/$name"
  work="$BUILD/fuzz-corpus/$name"
  findings="$BUILD/findings/$name"
  log="$BUILD/fuzz-$name.log"
  rm -rf "$work"
  mkdir -p "$work" "$findings"
  [ -d "$seeds" ] && cp "$seeds"/* "$work"/ 2>/dev/null || true
  dict=""
  [ -f "$ROOT/tests/fuzz/$name.dict" ] && dict="-dict=$ROOT/tests/fuzz/$name.dict"
  echo "fuzz: $t for ${SECONDS_EACH}s"
  # -max_len 64 KiB: bigger than any seed, small enough to keep execs/s meaningful;
  # -rss_limit_mb 2048 and -timeout 10 turn runaway allocations and hangs into findings.
  set +e
  # shellcheck disable=SC2086
  "$BUILD/tests/fuzz/$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$findings/" $dict "$work" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  line=$(printf '%-24s execs/s=%-8s runs=%-10s cov=%s rc=%s' "$t" "${secs:-?}" "${runs:-?}" "${cov:-?}" "$rc")
  summary="$summary$line
"
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "fuzz: $t FAILED (exit $rc); last lines of $log:" >&2
    tail -40 "$log" >&2
    for a in "$findings"/*; do
      [ -e "$a" ] && echo "fuzz: reproduce with: $BUILD/tests/fuzz/$t $a" >&2
    done
  fi
done
echo "fuzz summary (${SECONDS_EACH}s each):"
printf '%s' "$summary"
exit $failed
