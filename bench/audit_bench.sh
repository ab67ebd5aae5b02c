#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Audit trail benchmark (issue 5), one run on this machine:
#  1. audit appends per second through the public API (bench/audit_append.c, built here against
#     the build's libaimedres_core.a): strict vs async, one caller waiting for each record
#     (one fdatasync per record), several callers waiting (group commit), and pipelined submits
#     (256 in flight per thread, like the predict path under load);
#  2. single-row predict throughput with AUDIT_DURABILITY=strict vs audit off (AUDIT_LOG_PATH
#     unset), alternating rounds on fresh copies of the demo data (target: strict/off >= 0.8x,
#     reported, not asserted); after each strict round the log must verify and hold at least
#     one MODEL_INFERENCE record per answered request.
# Prints the figures with date and machine and adds a block at the top of the "## Audit"
# section of docs/benchmarks.md (newest first; older runs are kept).
#
# Environment (all optional):
#   BUILD / AIMEDRES        build dir (default build) / binary (default $BUILD/aimedres)
#   BENCH_APPEND_SECONDS    seconds per append measurement (default 5)
#   BENCH_WORKERS           aimedres MAX_WORKERS (default: nproc)
#   BENCH_DURATION          wrk -d per predict measurement (default 10s)
#   BENCH_CONNECTIONS       wrk -c (default 64)
#   BENCH_THREADS           wrk -t (default 2)
#   BENCH_ROUNDS            off/strict pairs (default 2)
#   BENCH_APPEND_DOCS=0     do not append the result to docs/benchmarks.md
#   BENCH_KEEP_TMP=1        keep the temp dir
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
AIMEDRES=${AIMEDRES:-$BUILD/aimedres}
SECS=${BENCH_APPEND_SECONDS:-5}
N=${BENCH_WORKERS:-$(nproc)}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-2}
PY=/usr/bin/python3
MODEL=parkinsons_predictor
PREDICT_PATH=/api/v1/models/$MODEL/predict
SECRET=bench-audit-secret-0123456789abcdef0123456789abcdef

log() { printf 'audit-bench: %s\n' "$*" >&2; }
die() {
    printf 'audit-bench: error: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for v in SECS N CONNECTIONS THREADS ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || die "BENCH_DURATION looks like 10s (got '$DURATION')"
missing=""
for c in wrk curl cc pkg-config; do command -v "$c" >/dev/null 2>&1 || missing="$missing $c"; done
[ -z "$missing" ] || die "missing:$missing (Debian: apt-get install wrk curl build-essential pkg-config)"
[ -x "$AIMEDRES" ] || die "$AIMEDRES not built (run 'make build' or set BUILD/AIMEDRES)"
[ -f "$BUILD/libaimedres_core.a" ] || die "$BUILD/libaimedres_core.a not found"

bench_tmpdir auditbench

bench_machine
FS=$(df -T "$TMP" | awk 'NR == 2 {print $2 " on " $1}')

# ---- 1. appends ---------------------------------------------------------------------------------
log "building bench/audit_append.c"
# shellcheck disable=SC2046
cc -O2 -std=gnu17 -D_GNU_SOURCE -I"$ROOT/src" "$ROOT/bench/audit_append.c" "$BUILD/libaimedres_core.a" \
    $(pkg-config --libs jansson openssl libevent_core libevent_extra libevent_pthreads libevent_openssl sqlite3 libzstd) \
    -lxgboost -lpthread -lm -o "$TMP/audit_append"
"$AIMEDRES" audit keygen --private "$TMP/sign.pem" --public "$TMP/verify.pem" >/dev/null
declare -A RATE
CASES=("strict sync 1" "strict sync 8" "strict pipe 1" "strict pipe 4" "async pipe 1" "async pipe 4")
for c in "${CASES[@]}"; do
    read -r dur mode thr <<<"$c"
    dir=$TMP/append-$dur-$mode-$thr
    out=$(AUDIT_SIGNING_KEY_PATH=$TMP/sign.pem "$TMP/audit_append" "$dir/audit.log" "$dur" "$mode" "$thr" "$SECS" 2>/dev/null) ||
        die "append run failed: $c"
    RATE[$c]=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<<"$out")
    env -i PATH="$PATH" SECRET_KEY=bench-secret-0123456789abcdef0123456789abcdef AUDIT_LOG_PATH="$dir/audit.log" \
        AUDIT_SIGNING_KEY_PATH="$TMP/sign.pem" "$AIMEDRES" audit verify >/dev/null 2>&1 || die "log of '$c' does not verify"
    log "$c: ${RATE[$c]} appends/s"
    rm -rf "$dir"
done

# ---- 2. predict, strict audit vs off --------------------------------------------------------------
start_server() { # DIR PORT [VAR=VALUE...] -> SERVER_PID
    local dir=$1 port=$2
    shift 2
    env -i PATH="$PATH" HOME="${HOME:-/tmp}" LANG=C.UTF-8 \
        MODEL_STORAGE_PATH="$dir/models" DATABASE_URL="sqlite://$dir/aimedres.db" DATA_DIR="$dir/data" \
        MAX_WORKERS="$N" LOG_LEVEL=WARNING LOG_FILE="$dir/server.log" SHUTDOWN_DRAIN_TIMEOUT=5s "$@" \
        "$AIMEDRES" serve --host 127.0.0.1 --port "$port" >"$dir/stdout.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_http "http://127.0.0.1:$port/health" "$SERVER_PID"
}
stop_server() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

log "demo init"
"$AIMEDRES" demo init --dir "$TMP/demo" >"$TMP/demo-init.log" 2>&1 || die "aimedres demo init failed"
BODY=$TMP/body.json
"$PY" "$ROOT/bench/mkbody.py" "$TMP/demo/models/$MODEL/1.0.0/manifest.json" "$BODY" bench-patient-1 || die "cannot build the predict body"

declare -A RPS
NOTES=()
for ((r = 1; r <= ROUNDS; r++)); do
    order=(off strict)
    ((r % 2 == 0)) && order=(strict off)
    for mode in "${order[@]}"; do
        dir=$TMP/run-$mode-$r
        cp -a "$TMP/demo" "$dir"
        port=$(free_port)
        if [ "$mode" = strict ]; then
            start_server "$dir" "$port" SECRET_KEY=$SECRET AUDIT_LOG_PATH="$dir/audit/audit.log" AUDIT_DURABILITY=strict \
                AUDIT_SIGNING_KEY_PATH="$TMP/sign.pem"
        else
            start_server "$dir" "$port"
        fi
        url=http://127.0.0.1:$port$PREDICT_PATH
        BENCH_BODY_FILE=$BODY wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$ROOT/bench/post.lua" "$url" >/dev/null
        BENCH_BODY_FILE=$BODY wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$ROOT/bench/post.lua" "$url" >"$dir/wrk.txt"
        RPS[$mode-$r]=$(awk '/^Requests\/sec:/ {print $2}' "$dir/wrk.txt")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$dir/wrk.txt")
        [ -z "$non2xx" ] || NOTES+=("$mode round $r: $non2xx non-2xx answers")
        stop_server "$SERVER_PID"
        if [ "$mode" = strict ]; then
            env -i PATH="$PATH" SECRET_KEY=$SECRET AUDIT_LOG_PATH="$dir/audit/audit.log" AUDIT_SIGNING_KEY_PATH="$TMP/sign.pem" \
                "$AIMEDRES" audit verify >"$dir/verify.txt" 2>&1 || die "strict round $r: the audit log does not verify: $(cat "$dir/verify.txt")"
            recs=$(grep -c '"type":"MODEL_INFERENCE"' "$dir/audit/audit.log" || true)
            reqs=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
            [ "$recs" -ge "$reqs" ] || NOTES+=("strict round $r: $recs MODEL_INFERENCE records < $reqs answered requests")
            log "strict round $r: ${RPS[$mode-$r]} req/s, $recs MODEL_INFERENCE records for $reqs measured requests (+warm-up)"
        else
            log "off round $r: ${RPS[$mode-$r]} req/s"
        fi
        rm -rf "$dir"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

mean() { "$PY" -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print("%.0f" % (sum(v)/len(v)))' "$@"; }
offs=() stricts=()
for ((r = 1; r <= ROUNDS; r++)); do
    offs+=("${RPS[off-$r]}")
    stricts+=("${RPS[strict-$r]}")
done
OFF=$(mean "${offs[@]}")
STRICT=$(mean "${stricts[@]}")
RATIO=$("$PY" -c "print('%.2f' % ($STRICT / $OFF))")

BLOCK=$(
    printf '### Audit, %s (%s)\n\n' "$DATE" "$GIT_V"
    printf -- '- Machine: %s, %s vCPUs; log on %s; load average %s before, %s after.\n' "$CPU" "$CORES" "$FS" "$LOAD_BEFORE" "$LOAD_AFTER"
    printf -- '- Appends per second (bench/audit_append.c, %ss each, MODEL_INFERENCE-sized records, checkpoints every 1000):\n\n' "$SECS"
    printf '| durability | callers | appends/s |\n|---|---|---|\n'
    printf '| strict | 1 thread, waits for each record | %s |\n' "${RATE[strict sync 1]}"
    printf '| strict | 8 threads, each waits (group commit) | %s |\n' "${RATE[strict sync 8]}"
    printf '| strict | 1 thread, 256 in flight | %s |\n' "${RATE[strict pipe 1]}"
    printf '| strict | 4 threads, 256 in flight each | %s |\n' "${RATE[strict pipe 4]}"
    printf '| async | 1 thread, 256 in flight | %s |\n' "${RATE[async pipe 1]}"
    printf '| async | 4 threads, 256 in flight each | %s |\n' "${RATE[async pipe 4]}"
    printf '\n- Predict (single row, `%s`), wrk -t%s -c%s -d%s, MAX_WORKERS=%s, %s rounds alternating:\n' "$MODEL" "$THREADS" "$CONNECTIONS" "$DURATION" "$N" "$ROUNDS"
    printf '  audit off %s req/s (%s), strict audit %s req/s (%s): **strict/off = %sx** (target >= 0.8x).\n' \
        "$OFF" "${offs[*]}" "$STRICT" "${stricts[*]}" "$RATIO"
    printf '  Every strict round verified (`aimedres audit verify` exit 0) with a MODEL_INFERENCE record per answered request.\n'
    for n in "${NOTES[@]}"; do printf -- '- Note: %s\n' "$n"; done
)
printf '%s\n' "$BLOCK"
if [ "${BENCH_APPEND_DOCS:-1}" != 0 ]; then
    # the new run goes at the top of the "## Audit" section (newest first); older runs stay
    DOC=$ROOT/docs/benchmarks.md
    BLOCK=$BLOCK "$PY" - "$DOC" <<'EOF'
import os, sys
path = sys.argv[1]
block = os.environ["BLOCK"].rstrip("\n") + "\n"
intro = "Added by `bench/audit_bench.sh` (newest first).\n"
try:
    text = open(path).read()
except FileNotFoundError:
    text = ""
lines = text.splitlines(keepends=True)
if "## Audit\n" not in lines:
    if text and not text.endswith("\n"):
        text += "\n"
    text += "\n## Audit\n\n" + intro
    lines = text.splitlines(keepends=True)
i = lines.index("## Audit\n") + 1
while i < len(lines) and (lines[i].strip() == "" or lines[i].startswith(("Added by", "Appended by"))):
    i += 1
lines[i:i] = [block, "\n"]
tmp = path + ".tmp"
open(tmp, "w").write("".join(lines))
os.replace(tmp, path)
EOF
    log "added to the top of the Audit section of $DOC"
fi
