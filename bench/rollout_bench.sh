#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Rollout overhead (issue 3), one run on this machine, loopback only: single-row predict
# throughput of one server with no deployment, with a canary active (50% of requests to the
# candidate, split by request id) and with a shadow active (every request also scored by the
# candidate on the shadow thread), in alternating rounds on the same server and data.
# Targets: canary >= 0.95x and shadow >= 0.5x of no deployment (reported, not asserted).
# Prints the figures with date and machine; appends a block to docs/benchmarks.md under
# "Rollouts" (set BENCH_APPEND_DOCS=0 to skip).
#
# Environment (all optional):
#   BUILD / AIMEDRES        build dir (default build) / binary (default $BUILD/aimedres)
#   BENCH_WORKERS           aimedres MAX_WORKERS (default: nproc)
#   BENCH_DURATION          wrk -d per measurement (default 10s)
#   BENCH_WARMUP            wrk -d warm-up before each measurement (default 2s)
#   BENCH_CONNECTIONS       wrk -c (default 32)
#   BENCH_THREADS           wrk -t (default 2)
#   BENCH_ROUNDS            rounds of (none, canary, shadow) (default 2)
#   BENCH_KEEP_TMP=1        keep the temp dir (logs) for inspection
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
AIMEDRES=${AIMEDRES:-$BUILD/aimedres}
N=${BENCH_WORKERS:-$(nproc)}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-2}
PY=/usr/bin/python3
MODEL=parkinsons_predictor
PREDICT_PATH=/api/v1/models/$MODEL/predict

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
log() { printf 'rollout-bench: %s\n' "$*" >&2; }
die() {
    printf 'rollout-bench: error: %s\n' "$*" >&2
    exit 1
}
for c in wrk curl; do command -v "$c" >/dev/null 2>&1 || die "missing $c (Debian: apt-get install wrk curl)"; done
[ -x "$AIMEDRES" ] || die "$AIMEDRES not built (run 'make build' or set BUILD/AIMEDRES)"
for v in N CONNECTIONS THREADS ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done

bench_tmpdir rolloutbench

bench_machine

DEMO=$TMP/demo
export MODEL_STORAGE_PATH=$DEMO/models DATABASE_URL=sqlite://$DEMO/aimedres.db DATA_DIR=$DEMO/data
log "demo init and a candidate version"
"$AIMEDRES" demo init --dir "$DEMO" >"$TMP/demo-init.log" 2>&1 || die "demo init failed: $(tail -n 5 "$TMP/demo-init.log")"
"$AIMEDRES" model train --data "$DEMO/data/cohorts/parkinsons.csv" --label status --class-labels healthy,parkinsons \
    --name $MODEL --version 2.0.0 --rounds 101 >"$TMP/train.log" 2>&1 || die "training the candidate failed"

PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
MAX_WORKERS=$N LOG_LEVEL=WARNING LOG_FILE=$TMP/server.log SHUTDOWN_DRAIN_TIMEOUT=2s \
    "$AIMEDRES" serve --host 127.0.0.1 --port "$PORT" >"$TMP/stdout.log" 2>&1 &
SERVER_PID=$!
wait_http "$BASE/health" "$SERVER_PID" "$TMP/stdout.log"

BODY=$TMP/body.json
"$PY" "$ROOT/bench/mkbody.py" "$DEMO/models/$MODEL/1.0.0/manifest.json" "$BODY" || die "cannot build the predict body"

DEP=""
start_dep() { # start_dep CONFIG_JSON: starts a deployment and waits for it to route
    local want=$2
    DEP=$(curl -fsS -X POST -H 'Content-Type: application/json' "$BASE/api/v1/deployments" \
        -d "{\"model\":\"$MODEL\",\"version\":\"2.0.0\",\"config\":$1}" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["deployment_id"])')
    for ((i = 0; i < 200; i++)); do
        st=$(curl -fsS "$BASE/api/v1/deployments/$DEP" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["status"]+"/"+d["mode"])')
        [ "$st" = "$want" ] && return 0
        case $st in failed/* | rolled_back/*) die "deployment $DEP ended: $st" ;; esac
        sleep 0.1
    done
    die "deployment $DEP did not reach $want (last $st)"
}
stop_dep() { curl -fsS -o /dev/null -X POST "$BASE/api/v1/deployments/$DEP/rollback" -d '{"reason":"bench"}'; }

declare -A SUM CNT
measure() { # measure KEY
    local key=$1 out=$TMP/wrk-$1-$r.txt
    local args=(-t"$THREADS" -c"$CONNECTIONS" --timeout 10s -s "$ROOT/bench/post.lua")
    BENCH_BODY_FILE=$BODY wrk "${args[@]}" -d"$WARMUP" "$BASE$PREDICT_PATH" >/dev/null
    BENCH_BODY_FILE=$BODY wrk "${args[@]}" -d"$DURATION" "$BASE$PREDICT_PATH" >"$out"
    local rps non2xx
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    [ -n "$rps" ] || die "cannot parse wrk output: $(cat "$out")"
    [ -z "$non2xx" ] || die "$key: $non2xx non-2xx answers"
    SUM[$key]=$("$PY" -c "print(${SUM[$key]:-0} + $rps)")
    CNT[$key]=$((${CNT[$key]:-0} + 1))
    log "round $r $key: $rps req/s"
}

for ((r = 1; r <= ROUNDS; r++)); do
    measure none
    start_dep '{"shadow_duration":"0s","canary_stages":[50,100],"stage_duration":"1h","max_demographic_disparity":0.5}' deploying/canary
    measure canary
    stop_dep
    start_dep '{"shadow_duration":"1h","max_demographic_disparity":0.5}' monitoring/shadow
    measure shadow
    SHADOW_STATS=$(curl -fsS "$BASE/api/v1/deployments/$DEP" | "$PY" -c 'import json,sys; s=json.load(sys.stdin)["performance_metrics"]["shadow"]; print("%d scored, %d dropped" % (s["requests"], s["dropped"]))')
    stop_dep
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

avg() { "$PY" -c "print('%.0f' % (${SUM[$1]} / ${CNT[$1]}))"; }
NONE=$(avg none)
CANARY=$(avg canary)
SHADOW=$(avg shadow)
RC=$("$PY" -c "print('%.3f' % ($CANARY / $NONE))")
RS=$("$PY" -c "print('%.3f' % ($SHADOW / $NONE))")
verdict() { "$PY" -c "print('meets' if $1 >= $2 else 'BELOW')"; }

BLOCK=$(
    cat <<MD

### Rollouts: $DATE

Machine: $CPU, $CORES CPUs; aimedres $GIT_V, MAX_WORKERS=$N; wrk -t$THREADS -c$CONNECTIONS -d$DURATION
(warm-up $WARMUP), $ROUNDS rounds of (none, canary, shadow) on one server; load average $LOAD_BEFORE -> $LOAD_AFTER.
Single-row predict of $MODEL; canary = 50% of requests to 2.0.0 split by request id; shadow = every
request also scored by 2.0.0 off the response path (last shadow round: $SHADOW_STATS).

| deployment | req/s (mean) | vs none | target |
|---|---:|---:|---|
| none | $NONE | 1.000 | |
| canary 50% | $CANARY | $RC | >= 0.95x ($(verdict "$RC" 0.95)) |
| shadow | $SHADOW | $RS | >= 0.5x ($(verdict "$RS" 0.5)) |
MD
)
printf '%s\n' "$BLOCK"
if [ "${BENCH_APPEND_DOCS:-1}" != 0 ]; then
    DOC=$ROOT/docs/benchmarks.md
    grep -q '^## Rollouts' "$DOC" 2>/dev/null || printf '\n## Rollouts\n\nBenchmarks of bench/rollout_bench.sh (newest last; append-only).\n' >>"$DOC"
    printf '%s\n' "$BLOCK" >>"$DOC"
    log "appended to $DOC"
fi
