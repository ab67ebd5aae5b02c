#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One benchmark run on this machine, loopback only, bounded in time: wrk measures requests/s and
# p50/p99 latency of GET /health on `aimedres serve` vs nginx (static JSON, same size and headers)
# and of single-row predict on the demo Parkinson's model vs Flask/gunicorn serving the same
# booster through python3-xgboost. Servers run one after another, never concurrently. Prints a
# table, the ratios and a Markdown block; the raw output goes to bench/results/<timestamp>.txt.
#
# Environment (all optional):
#   BUILD               build dir holding the aimedres binary (default: build)
#   AIMEDRES            path of the binary (default: $BUILD/aimedres)
#   BENCH_WORKERS       N: aimedres MAX_WORKERS, nginx worker_processes, gunicorn -w (default: nproc)
#   BENCH_DURATION      wrk -d per measurement (default 10s)
#   BENCH_WARMUP        wrk -d of the warm-up before each measurement (default 2s)
#   BENCH_CONNECTIONS   wrk -c (default 64)
#   BENCH_THREADS       wrk -t (default 2)
#   BENCH_ROUNDS        rounds per pair (default 3): each round measures aimedres, then its peer,
#                       with both servers up (the idle one costs nothing); the ratio reported is
#                       the median of the rounds' ratios, so a burst of load on a shared machine
#                       moves one round rather than the result
#   BENCH_ONLY          all | peers (peers: only nginx and Flask, e.g. before aimedres is built)
#   BENCH_DEMO_DIR      use this demo directory instead of `aimedres demo init` into a temp dir
#                       (needed with BENCH_ONLY=peers when the binary is not available)
#   BENCH_KEEP_TMP=1    keep the temp dir (logs, configs) for inspection
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
AIMEDRES=${AIMEDRES:-$BUILD/aimedres}
N=${BENCH_WORKERS:-$(nproc)}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
ONLY=${BENCH_ONLY:-all}
PY=/usr/bin/python3
MODEL=parkinsons_predictor
MODEL_VERSION=1.0.0
PREDICT_PATH=/api/v1/models/$MODEL/predict

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

[[ $N =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS must be a positive integer"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNECTIONS must be a positive integer"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "BENCH_THREADS must be a positive integer"
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || die "BENCH_ROUNDS must be 1..99"
for d in "$DURATION" "$WARMUP"; do
    [[ $d =~ ^[1-9][0-9]*[smh]?$ ]] || die "durations look like 10s, 2s or 1m (got '$d')"
done
case $ONLY in all | peers) ;; *) die "BENCH_ONLY must be 'all' or 'peers'" ;; esac
WRK_LIMIT=$(($(seconds "$DURATION") + $(seconds "$WARMUP") + 30))

# ---- prerequisites ------------------------------------------------------------------------------
missing=""
for c in wrk nginx gunicorn curl; do
    command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
done
[ -x "$PY" ] || missing="$missing python3"
"$PY" -c 'import flask, xgboost, numpy' 2>/dev/null || missing="$missing python3-flask/python3-xgboost/python3-numpy"
[ -z "$missing" ] || die "missing:$missing (Debian: apt-get install wrk nginx-light gunicorn python3-flask python3-xgboost curl)"
if [ "$ONLY" = all ] && [ ! -x "$AIMEDRES" ]; then
    die "$AIMEDRES not built (run 'make build', set BUILD/AIMEDRES, or BENCH_ONLY=peers)"
fi

bench_tmpdir bench

# Milliseconds from a wrk latency figure (412.00us, 1.23ms, 2.00s, 1.00m).
to_ms() {
    awk -v v="$1" 'BEGIN {
        x = v + 0
        if (v ~ /us$/) x /= 1000; else if (v ~ /ms$/) ; else if (v ~ /m$/) x *= 60000;
        else if (v ~ /s$/) x *= 1000
        printf "%.3f", x }'
}

declare -A RPS P50 P99 NON2XX SOCKERR TOTAL
NOTES=()
RAW=$TMP/raw.txt
: >"$RAW"

# measure KEY URL [LUA]: a warm-up run, then the measured run; parses wrk --latency output.
measure() {
    local key=$1 url=$2 lua=${3:-} out=$TMP/wrk-$1.txt
    local args=(-t"$THREADS" -c"$CONNECTIONS" --timeout 10s)
    [ -z "$lua" ] || args+=(-s "$lua")
    log "$key: warm-up $WARMUP"
    timeout "$WRK_LIMIT" wrk "${args[@]}" -d"$WARMUP" "$url" >/dev/null || die "wrk warm-up failed for $key"
    log "$key: measuring $DURATION"
    timeout "$WRK_LIMIT" wrk "${args[@]}" -d"$DURATION" --latency "$url" >"$out" || die "wrk failed for $key"
    {
        printf '==== %s: wrk %s -d%s --latency %s\n' "$key" "${args[*]}" "$DURATION" "$url"
        cat "$out"
        echo
    } >>"$RAW"
    local rps p50 p99 non2xx sock total
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(awk '/Latency Distribution/ {d = 1; next} d && $1 == "50%" {print $2; exit}' "$out")
    p99=$(awk '/Latency Distribution/ {d = 1; next} d && $1 == "99%" {print $2; exit}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    sock=$(awk -F'[ ,]+' '/Socket errors:/ {print $5 + $7 + $9 + $11}' "$out")
    total=$(awk '/requests in/ {print $1}' "$out")
    if [ -z "$rps" ] || [ -z "$p50" ] || [ -z "$p99" ]; then
        die "could not parse wrk output for $key: $(cat "$out")"
    fi
    RPS[$key]=$rps
    P50[$key]=$(to_ms "$p50")
    P99[$key]=$(to_ms "$p99")
    NON2XX[$key]=${non2xx:-0}
    SOCKERR[$key]=${sock:-0}
    TOTAL[$key]=${total:-0}
    if [ "${NON2XX[$key]}" != 0 ]; then
        NOTES+=("$key: ${NON2XX[$key]} of ${TOTAL[$key]} responses were not 2xx: this figure is not valid")
    fi
    log "$key: ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms, non-2xx ${NON2XX[$key]}"
}

# ---- machine and versions -----------------------------------------------------------------------
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
bench_machine
NGINX_V=$(nginx -v 2>&1 | sed 's/^nginx version: nginx\///')
GUNICORN_V=$(gunicorn --version 2>&1 | sed 's/^gunicorn (version \(.*\))$/\1/')
WRK_V=$(wrk -v 2>&1 | head -n 1 | awk '{print $2}' || true)
PY_V=$("$PY" -c 'import sys, flask, xgboost; print("python %d.%d.%d, flask %s, xgboost %s" % (sys.version_info[:3] + (flask.__version__, xgboost.__version__)))' 2>/dev/null)
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
if [ -z "$BUILD_TYPE" ]; then
    BUILD_TYPE=$(sed -n 's/^ *set(CMAKE_BUILD_TYPE \([A-Za-z]*\)).*/\1/p' "$ROOT/CMakeLists.txt" | head -n 1)
fi

# ---- demo models and the predict body -----------------------------------------------------------
if [ -n "${BENCH_DEMO_DIR:-}" ]; then
    DEMO=$(cd "$BENCH_DEMO_DIR" && pwd)
else
    DEMO=$TMP/demo
    [ -x "$AIMEDRES" ] || die "no demo models: build aimedres or set BENCH_DEMO_DIR"
    log "creating demo models in $DEMO"
    timeout 600 "$AIMEDRES" demo init --dir "$DEMO" >"$TMP/demo-init.log" 2>&1 ||
        { tail -n 20 "$TMP/demo-init.log" >&2; die "aimedres demo init failed"; }
fi
MODEL_DIR=$DEMO/models/$MODEL/$MODEL_VERSION
[ -f "$MODEL_DIR/manifest.json" ] || die "$MODEL_DIR/manifest.json not found"

BODY=$TMP/predict.json
"$PY" "$ROOT/bench/mkbody.py" "$MODEL_DIR/manifest.json" "$BODY" || die "cannot build the predict body"
export BENCH_BODY_FILE=$BODY
log "predict body: $(wc -c <"$BODY") bytes, $("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["features"]))' "$BODY") features"

# ---- aimedres -----------------------------------------------------------------------------------
start_aimedres() {
    AIM_PORT=$(free_port)
    AIM_LOG=$TMP/aimedres-$1.log
    MODEL_STORAGE_PATH=$DEMO/models DATABASE_URL=sqlite://$DEMO/aimedres.db DATA_DIR=$DEMO/data \
        MAX_WORKERS=$N "$AIMEDRES" serve --host 127.0.0.1 --port "$AIM_PORT" >"$AIM_LOG" 2>&1 &
    AIM_PID=$!
    PIDS+=("$AIM_PID")
    wait_http "http://127.0.0.1:$AIM_PORT/health" "$AIM_PID" "$AIM_LOG"
}

HEALTH_BODY='{"status":"healthy","timestamp":"2025-01-01T00:00:00Z","version":"0.1.0"}'
AIM_HEALTH_SIZE="" NGINX_HEALTH_SIZE="" AIM_PREDICT_RESP="" FLASK_PREDICT_RESP=""
if [ "$ONLY" = all ]; then
    log "aimedres serve, MAX_WORKERS=$N: GET /health"
    start_aimedres health
    AIM_HEALTH_PID=$AIM_PID AIM_HEALTH_PORT=$AIM_PORT
    HEALTH_BODY=$(curl -fsS "http://127.0.0.1:$AIM_PORT/health")
    AIM_HEALTH_SIZE=$(curl -fsS -o /dev/null -w '%{size_header}+%{size_download}' "http://127.0.0.1:$AIM_PORT/health")
else
    NOTES+=("aimedres half not measured (BENCH_ONLY=peers); nginx served a /health body of the documented shape")
fi

# ---- nginx --------------------------------------------------------------------------------------
case $HEALTH_BODY in *"'"* | *\\* | *'$'*) die "health body has characters nginx's return string can not hold" ;; esac
NGX=$TMP/nginx
mkdir -p "$NGX"
NGX_PORT=$(free_port)
tpl=$(<"$ROOT/bench/nginx.conf.in")
tpl=${tpl//@PREFIX@/"$NGX"}
tpl=${tpl//@WORKERS@/"$N"}
tpl=${tpl//@PORT@/"$NGX_PORT"}
tpl=${tpl//@BODY@/"$HEALTH_BODY"}
printf '%s\n' "$tpl" >"$NGX/nginx.conf"
log "nginx, worker_processes $N: GET /health"
nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" >"$NGX/stdout.log" 2>&1 &
NGX_PID=$!
PIDS+=("$NGX_PID")
wait_http "http://127.0.0.1:$NGX_PORT/health" "$NGX_PID" "$NGX/error.log"
[ "$(curl -fsS "http://127.0.0.1:$NGX_PORT/health")" = "$HEALTH_BODY" ] || die "nginx does not serve the expected body"
NGINX_HEALTH_SIZE=$(curl -fsS -o /dev/null -w '%{size_header}+%{size_download}' "http://127.0.0.1:$NGX_PORT/health")
for ((r = 1; r <= ROUNDS; r++)); do
    [ "$ONLY" != all ] || measure "health_aimedres_r$r" "http://127.0.0.1:$AIM_HEALTH_PORT/health"
    measure "health_nginx_r$r" "http://127.0.0.1:$NGX_PORT/health"
done
stop "$NGX_PID" nginx
[ "$ONLY" != all ] || stop "$AIM_HEALTH_PID" "aimedres (health run)"

# ---- aimedres predict ---------------------------------------------------------------------------
if [ "$ONLY" = all ]; then
    log "aimedres serve, MAX_WORKERS=$N: POST $PREDICT_PATH"
    start_aimedres predict
    AIM_PREDICT_RESP=$TMP/predict-aimedres.json
    curl -fsS -H 'Content-Type: application/json' --data-binary @"$BODY" \
        "http://127.0.0.1:$AIM_PORT$PREDICT_PATH" >"$AIM_PREDICT_RESP" ||
        die "aimedres refused the predict body: $(curl -sS -H 'Content-Type: application/json' --data-binary @"$BODY" "http://127.0.0.1:$AIM_PORT$PREDICT_PATH")"
fi

# ---- Flask / gunicorn ---------------------------------------------------------------------------
FL_PORT=$(free_port)
FL_LOG=$TMP/gunicorn.log
log "Flask under gunicorn -w $N (sync): POST $PREDICT_PATH"
BENCH_MODEL_DIR=$MODEL_DIR OMP_NUM_THREADS=1 gunicorn -w "$N" --chdir "$ROOT/bench" \
    --bind "127.0.0.1:$FL_PORT" --log-level warning --error-logfile - flask_app:app >"$FL_LOG" 2>&1 &
FL_PID=$!
PIDS+=("$FL_PID")
wait_http "http://127.0.0.1:$FL_PORT/health" "$FL_PID" "$FL_LOG"
FLASK_PREDICT_RESP=$TMP/predict-flask.json
curl -fsS -H 'Content-Type: application/json' --data-binary @"$BODY" \
    "http://127.0.0.1:$FL_PORT$PREDICT_PATH" >"$FLASK_PREDICT_RESP" ||
    die "the Flask app refused the predict body: $(curl -sS -H 'Content-Type: application/json' --data-binary @"$BODY" "http://127.0.0.1:$FL_PORT$PREDICT_PATH")"
for ((r = 1; r <= ROUNDS; r++)); do
    [ "$ONLY" != all ] || measure "predict_aimedres_r$r" "http://127.0.0.1:$AIM_PORT$PREDICT_PATH" "$ROOT/bench/post.lua"
    measure "predict_flask_r$r" "http://127.0.0.1:$FL_PORT$PREDICT_PATH" "$ROOT/bench/post.lua"
done
stop "$FL_PID" gunicorn
[ "$ONLY" != all ] || stop "$AIM_PID" "aimedres (predict run)"

# The figure of each server is the median of its rounds (requests/s, p50 and p99 each).
for k in health_aimedres health_nginx predict_aimedres predict_flask; do
    [ -n "${RPS[${k}_r1]:-}" ] || continue
    rps=() p50=() p99=() n2=0 se=0 tot=0
    for ((r = 1; r <= ROUNDS; r++)); do
        rps+=("${RPS[${k}_r$r]}") p50+=("${P50[${k}_r$r]}") p99+=("${P99[${k}_r$r]}")
        n2=$((n2 + ${NON2XX[${k}_r$r]})) se=$((se + ${SOCKERR[${k}_r$r]})) tot=$((tot + ${TOTAL[${k}_r$r]}))
    done
    RPS[$k]=$(median "${rps[@]}") P50[$k]=$(median "${p50[@]}") P99[$k]=$(median "${p99[@]}")
    NON2XX[$k]=$n2 SOCKERR[$k]=$se TOTAL[$k]=$tot
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# Both sides must have computed the same prediction for the same row.
AGREE="not compared (aimedres half not measured)"
if [ -n "$AIM_PREDICT_RESP" ]; then
    AGREE=$("$PY" - "$AIM_PREDICT_RESP" "$FLASK_PREDICT_RESP" <<'EOF'
import json, sys
a, f = (json.load(open(p))["predictions"][0] for p in sys.argv[1:3])
if "probabilities" in a:
    pa, pf = a["probabilities"], f["probabilities"]
    d = max(abs(float(pa[k]) - float(pf[k])) for k in pf) if set(pa) == set(pf) else float("inf")
    same = a.get("label") == f.get("label")
    print("label %s (%s), max |p_aimedres - p_flask| = %.2g" % (a.get("label"), "same" if same else "DIFFERENT: flask says %s" % f.get("label"), d))
else:
    print("value %s vs %s" % (a.get("value"), f.get("value")))
EOF
    ) || AGREE="could not compare the two predict answers"
fi

# ---- report -------------------------------------------------------------------------------------
# ratio A B: the median over rounds of A's requests/s over B's in the same round.
ratio() {
    local r rs=()
    for ((r = 1; r <= ROUNDS; r++)); do
        [ -n "${RPS[${1}_r$r]:-}" ] && [ -n "${RPS[${2}_r$r]:-}" ] || { echo pending; return; }
        rs+=("$(awk -v a="${RPS[${1}_r$r]}" -v b="${RPS[${2}_r$r]}" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')")
    done
    printf '%.2fx' "$(median "${rs[@]}")"
}
# rounds A B: each round's ratio, for the report.
rounds() {
    local r out=""
    for ((r = 1; r <= ROUNDS; r++)); do
        [ -n "${RPS[${1}_r$r]:-}" ] && [ -n "${RPS[${2}_r$r]:-}" ] || { echo "n/a"; return; }
        out+="${out:+, }$(awk -v a="${RPS[${1}_r$r]}" -v b="${RPS[${2}_r$r]}" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')"
    done
    echo "$out"
}
row() { # row KEY BENCH SERVER
    if [ -n "${RPS[$1]:-}" ]; then
        printf '| %s | %s | %s | %s | %s | %s |\n' "$2" "$3" "${RPS[$1]}" "${P50[$1]}" "${P99[$1]}" \
            "$((${NON2XX[$1]} + ${SOCKERR[$1]}))"
    else
        printf '| %s | %s | pending | pending | pending | - |\n' "$2" "$3"
    fi
}
HEALTH_RATIO=$(ratio health_aimedres health_nginx)
PREDICT_RATIO=$(ratio predict_aimedres predict_flask)
FLASK_V=$("$PY" -c 'import flask; print(flask.__version__)')

SUMMARY=$TMP/summary.md
{
    echo "### $DATE: $CPU, $CORES cores$HYPER"
    echo
    echo "- Machine: \`$UNAME\`, $CPU$HYPER, $CORES cores; load average before $LOAD_BEFORE, after $LOAD_AFTER"
    echo "- aimedres $GIT_V (${BUILD_TYPE:-unknown} build); nginx $NGINX_V; gunicorn $GUNICORN_V; $PY_V; wrk $WRK_V"
    echo "- wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency after a $WARMUP warm-up, loopback; $ROUNDS rounds per pair," \
        "each measuring aimedres then its peer (both up, one loaded at a time); figures are medians over rounds;" \
        "N = $N workers each (aimedres MAX_WORKERS, nginx worker_processes, gunicorn -w sync workers)"
    echo "- /health response bytes (headers+body): aimedres ${AIM_HEALTH_SIZE:-n/a}, nginx $NGINX_HEALTH_SIZE;" \
        "predict body $(wc -c <"$BODY") bytes, one row of $MODEL $MODEL_VERSION; prediction check: $AGREE"
    echo
    echo "| Benchmark | Server | Requests/s | p50 ms | p99 ms | Errors |"
    echo "|---|---|---:|---:|---:|---:|"
    row health_aimedres "GET /health" "aimedres serve"
    row health_nginx "GET /health" "nginx (static JSON)"
    row predict_aimedres "POST predict" "aimedres serve (durable in SQLite)"
    row predict_flask "POST predict" "Flask $FLASK_V / gunicorn (no writes)"
    echo
    echo "Ratios of requests/s (median of the rounds' ratios): /health aimedres/nginx = **$HEALTH_RATIO**" \
        "(target >= 0.9x; rounds $(rounds health_aimedres health_nginx)); predict aimedres/Flask = **$PREDICT_RATIO**" \
        "(target >= 20x; rounds $(rounds predict_aimedres predict_flask))."
    if [ ${#NOTES[@]} -gt 0 ]; then
        echo
        for n in "${NOTES[@]}"; do echo "- Note: $n"; done
    fi
} >"$SUMMARY"

mkdir -p "$ROOT/bench/results"
RESULT=$ROOT/bench/results/$STAMP.txt
{
    cat "$SUMMARY"
    echo
    echo "---- raw wrk output ----"
    cat "$RAW"
    echo "---- predict body ----"
    cat "$BODY"
    echo
    if [ -n "$AIM_PREDICT_RESP" ]; then
        echo "---- aimedres predict answer ----"
        cat "$AIM_PREDICT_RESP"
        echo
    fi
    echo "---- Flask predict answer ----"
    cat "$FLASK_PREDICT_RESP"
    echo
} >"$RESULT"

echo
echo "Benchmark ($DATE, $UNAME, $CPU, $CORES cores)"
echo
printf '%-14s %-40s %12s %10s %10s %8s\n' benchmark server req/s p50_ms p99_ms errors
for k in health_aimedres health_nginx predict_aimedres predict_flask; do
    [ -n "${RPS[$k]:-}" ] || { printf '%-14s %-40s %12s\n' "${k%%_*}" "${k#*_}" pending; continue; }
    printf '%-14s %-40s %12s %10s %10s %8s\n' "${k%%_*}" "${k#*_}" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" \
        "$((${NON2XX[$k]} + ${SOCKERR[$k]}))"
done
echo
echo "/health aimedres/nginx: $HEALTH_RATIO (target >= 0.9x)"
echo "predict aimedres/flask: $PREDICT_RATIO (target >= 20x)"
echo
echo "Raw results: $RESULT"
echo
echo "Markdown (paste into docs/benchmarks.md):"
echo
echo '```markdown'
cat "$SUMMARY"
echo '```'
