#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Monitoring overhead (issue 4), one run on this machine, loopback only: single-row predict
# throughput with monitoring on (metrics port scraped every second, monitor loop every second)
# vs off (PROMETHEUS_ENABLED=false, MONITOR_ENABLED=false), alternating rounds on fresh copies of
# the demo data; then the time to scrape /metrics when it carries at least 1000 series, made
# by real requests to many registered models. Target: on/off >= 0.95x (reported, not asserted).
# Prints the figures with date and machine; appends a block to docs/benchmarks.md ("Monitoring").
#
# Environment (all optional):
#   BUILD / AIMEDRES        build dir (default build) / binary (default $BUILD/aimedres)
#   BENCH_WORKERS           aimedres MAX_WORKERS (default: nproc)
#   BENCH_DURATION          wrk -d per measurement (default 10s)
#   BENCH_WARMUP            wrk -d of the warm-up before each measurement (default 2s)
#   BENCH_CONNECTIONS       wrk -c (default 64)
#   BENCH_THREADS           wrk -t (default 2)
#   BENCH_ROUNDS            on/off pairs, order alternating (default 3)
#   BENCH_SERIES_MODELS     extra models registered for the scrape test (default 30)
#   BENCH_SCRAPES           timed scrapes of /metrics (default 50)
#   BENCH_APPEND_DOCS=0     do not append the result to docs/benchmarks.md
#   BENCH_KEEP_TMP=1        keep the temp dir (logs) for inspection
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
SERIES_MODELS=${BENCH_SERIES_MODELS:-30}
SCRAPES=${BENCH_SCRAPES:-50}
PY=/usr/bin/python3
MODEL=parkinsons_predictor
PREDICT_PATH=/api/v1/models/$MODEL/predict

log() { printf 'monitoring-bench: %s\n' "$*" >&2; }
die() {
    printf 'monitoring-bench: error: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

for v in N CONNECTIONS THREADS ROUNDS SERIES_MODELS SCRAPES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for d in "$DURATION" "$WARMUP"; do
    [[ $d =~ ^[1-9][0-9]*[smh]?$ ]] || die "durations look like 10s, 2s or 1m (got '$d')"
done
WRK_LIMIT=$(($(seconds "$DURATION") + $(seconds "$WARMUP") + 30))
missing=""
for c in wrk curl; do command -v "$c" >/dev/null 2>&1 || missing="$missing $c"; done
[ -x "$PY" ] || missing="$missing python3"
[ -z "$missing" ] || die "missing:$missing (Debian: apt-get install wrk curl python3)"
[ -x "$AIMEDRES" ] || die "$AIMEDRES not built (run 'make build' or set BUILD/AIMEDRES)"

bench_tmpdir monbench

NOTES=()

# start_server DIR PORT LOG [VAR=VALUE...]: starts aimedres on the demo copy DIR; sets SERVER_PID.
start_server() {
    local dir=$1 port=$2 logf=$3
    shift 3
    env -i PATH="$PATH" HOME="${HOME:-/tmp}" LANG=C.UTF-8 \
        MODEL_STORAGE_PATH="$dir/models" DATABASE_URL="sqlite://$dir/aimedres.db" DATA_DIR="$dir/data" \
        MAX_WORKERS="$N" LOG_LEVEL=WARNING LOG_FILE="$dir/server.log" SHUTDOWN_DRAIN_TIMEOUT=2s "$@" \
        "$AIMEDRES" serve --host 127.0.0.1 --port "$port" >"$logf" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_http "http://127.0.0.1:$port/health" "$SERVER_PID" "$logf"
}

# ---- machine ------------------------------------------------------------------------------------
bench_machine

log "demo init"
"$AIMEDRES" demo init --dir "$TMP/demo" >"$TMP/demo-init.log" 2>&1 || {
    tail -n 20 "$TMP/demo-init.log" >&2
    die "aimedres demo init failed"
}
BODY=$TMP/predict-body.json
"$PY" "$ROOT/bench/mkbody.py" "$TMP/demo/models/$MODEL/1.0.0/manifest.json" "$BODY" || die "cannot build the predict body"

# ---- 1. predict throughput, monitoring on vs off --------------------------------------------------
declare -A RPS
measure() { # measure KEY PORT -> RPS[KEY]
    local key=$1 port=$2 out=$TMP/wrk-$1.txt url=http://127.0.0.1:$2$PREDICT_PATH
    local args=(-t"$THREADS" -c"$CONNECTIONS" --timeout 10s -s "$ROOT/bench/post.lua")
    BENCH_BODY_FILE=$BODY timeout "$WRK_LIMIT" wrk "${args[@]}" -d"$WARMUP" "$url" >/dev/null || die "wrk warm-up failed ($key)"
    BENCH_BODY_FILE=$BODY timeout "$WRK_LIMIT" wrk "${args[@]}" -d"$DURATION" "$url" >"$out" || die "wrk failed ($key)"
    RPS[$key]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    local non2xx
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    [ -n "${RPS[$key]}" ] || die "cannot parse wrk output ($key): $(cat "$out")"
    [ -z "$non2xx" ] || NOTES+=("$key: $non2xx non-2xx answers: figure not valid")
    log "$key: ${RPS[$key]} req/s"
}

run_mode() { # run_mode MODE ROUND
    local mode=$1 r=$2 dir=$TMP/run-$1-$2 port mport scraper=""
    cp -a "$TMP/demo" "$dir"
    port=$(free_port)
    if [ "$mode" = on ]; then
        mport=$(free_port)
        start_server "$dir" "$port" "$dir/stdout.log" PROMETHEUS_ENABLED=true PROMETHEUS_PORT="$mport" \
            MONITOR_ENABLED=true MONITOR_INTERVAL=1s
        curl -fsS -o /dev/null "http://127.0.0.1:$mport/metrics" || die "monitoring on: /metrics does not answer"
        # A scraper at Prometheus' pace (1 s, the shortest interval anyone configures).
        (while :; do curl -fs -o /dev/null --max-time 5 "http://127.0.0.1:$mport/metrics" || true; sleep 1; done) &
        scraper=$!
        PIDS+=("$scraper")
    else
        start_server "$dir" "$port" "$dir/stdout.log" PROMETHEUS_ENABLED=false MONITOR_ENABLED=false
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics")" = 404 ] ||
            die "monitoring off: /metrics still answers"
    fi
    measure "$mode-$r" "$port"
    if [ -n "$scraper" ]; then
        kill "$scraper" 2>/dev/null || true
        wait "$scraper" 2>/dev/null || true
    fi
    stop "$SERVER_PID" "aimedres ($mode, round $r)"
    rm -rf "$dir"
}

for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then run_mode on "$r"; run_mode off "$r"; else run_mode off "$r"; run_mode on "$r"; fi
done

ON=()
OFF=()
PAIRS=()
for ((r = 1; r <= ROUNDS; r++)); do
    ON+=("${RPS[on-$r]}")
    OFF+=("${RPS[off-$r]}")
    PAIRS+=("$(awk -v a="${RPS[on-$r]}" -v b="${RPS[off-$r]}" 'BEGIN {printf "%.3f", a / b}')")
done
ON_MED=$(median "${ON[@]}")
OFF_MED=$(median "${OFF[@]}")
RATIO=$(awk -v a="$ON_MED" -v b="$OFF_MED" 'BEGIN {printf "%.3f", a / b}')
VERDICT=$(awk -v r="$RATIO" 'BEGIN {print (r >= 0.95) ? "meets the 0.95x target" : "BELOW the 0.95x target"}')

# ---- 2. scrape time with >= 1000 series ----------------------------------------------------------
log "scrape: registering $SERIES_MODELS more models"
SDIR=$TMP/scrape
cp -a "$TMP/demo" "$SDIR"
BASE_MODELS=(alzheimer_classifier parkinsons_predictor als_classifier)
for ((i = 1; i <= SERIES_MODELS; i++)); do
    base=${BASE_MODELS[$(((i - 1) % 3))]}
    name=$(printf '%s_site%02d' "$base" "$i")
    stage=$TMP/stage-$name
    cp -a "$SDIR/models/$base/1.0.0" "$stage"
    "$PY" -c 'import json, sys; p = sys.argv[1]; m = json.load(open(p)); m["name"] = sys.argv[2]; json.dump(m, open(p, "w"))' \
        "$stage/manifest.json" "$name"
    env -i PATH="$PATH" HOME="${HOME:-/tmp}" MODEL_STORAGE_PATH="$SDIR/models" DATABASE_URL="sqlite://$SDIR/aimedres.db" \
        DATA_DIR="$SDIR/data" "$AIMEDRES" model register "$stage" >>"$TMP/register.log" 2>&1 ||
        die "model register $name failed: $(tail -n 5 "$TMP/register.log")"
    rm -rf "$stage"
done
port=$(free_port)
mport=$(free_port)
start_server "$SDIR" "$port" "$SDIR/stdout.log" PROMETHEUS_ENABLED=true PROMETHEUS_PORT="$mport" \
    MONITOR_ENABLED=true MONITOR_INTERVAL=1s
# Real traffic on every model: a batch of 20 valid rows spread over the feature ranges, and one
# request with an out-of-range value (a 422 that counts against data quality).
"$PY" - "$SDIR/models" "$port" <<'EOF' || die "traffic for the scrape test failed"
import json, os, sys, urllib.request
models_dir, port = sys.argv[1], int(sys.argv[2])
def post(name, body):
    req = urllib.request.Request("http://127.0.0.1:%d/api/v1/models/%s/predict" % (port, name),
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
def value(f, frac):
    t = f.get("type", "number")
    if t == "boolean":
        return frac >= 0.5
    lo, hi = f.get("min"), f.get("max")
    v = lo + (hi - lo) * frac if lo is not None and hi is not None else (f.get("baseline", {}).get("mean") or 0.0)
    return int(round(v)) if t == "integer" else v
for name in sorted(os.listdir(models_dir)):
    mf = os.path.join(models_dir, name, "1.0.0", "manifest.json")
    if not os.path.exists(mf):
        continue
    m = json.load(open(mf))
    rows = [{f["name"]: value(f, 0.1 + 0.8 * ((i * 37) % 20) / 19) for f in m["features"]} for i in range(20)]
    s = post(name, {"instances": rows})
    assert s == 200, (name, s)
    ranged = [f for f in m["features"] if f.get("type", "number") != "boolean" and f.get("max") is not None]
    if ranged:
        bad = dict(rows[0])
        bad[ranged[0]["name"]] = ranged[0]["max"] * 10 + 10
        s = post(name, {"features": bad})
        assert s == 422, (name, s)
EOF
sleep 2.5 # two monitor loops: drift, quality and status gauges exist for every model
METRICS=$TMP/metrics.txt
curl -fsS -o "$METRICS" "http://127.0.0.1:$mport/metrics" || die "cannot scrape /metrics"
SERIES=$(grep -vc '^#' "$METRICS" || true)
FAMILIES=$(grep -c '^# TYPE' "$METRICS" || true)
BYTES=$(wc -c <"$METRICS")
[ "$SERIES" -ge 1000 ] || die "only $SERIES series with $SERIES_MODELS extra models; raise BENCH_SERIES_MODELS"
PROMTOOL="not run (promtool not installed)"
if command -v promtool >/dev/null 2>&1; then
    if promtool check metrics <"$METRICS" >"$TMP/promtool.txt" 2>&1; then PROMTOOL="passes"; else
        PROMTOOL="reports problems: $(head -c 300 "$TMP/promtool.txt" | tr '\n' ' ')"
    fi
fi
TIMES=$TMP/scrape-times.txt
: >"$TIMES"
for ((i = 0; i < SCRAPES; i++)); do
    curl -fsS -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$mport/metrics" >>"$TIMES" || die "scrape $i failed"
done
read -r S_MED S_P90 S_MAX < <(sort -g "$TIMES" | awk '{a[NR] = $1 * 1000} END {
    printf "%.2f %.2f %.2f\n", a[int((NR + 1) / 2)], a[int(NR * 0.9 + 0.5)], a[NR] }')
stop "$SERVER_PID" "aimedres (scrape)"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report -------------------------------------------------------------------------------------
REPORT=$TMP/report.md
{
    printf '### Run of %s\n\n' "$DATE"
    printf -- '- Machine: %s, %s cores%s, %s; commit %s; load average before %s, after %s.\n' \
        "$CPU" "$CORES" "$HYPER" "$UNAME" "$GIT_V" "$LOAD_BEFORE" "$LOAD_AFTER"
    printf -- '- Predict (single row, `%s`), wrk -t%s -c%s -d%s after %s warm-up, MAX_WORKERS=%s, %s rounds:\n\n' \
        "$MODEL" "$THREADS" "$CONNECTIONS" "$DURATION" "$WARMUP" "$N" "$ROUNDS"
    printf '| Round | Monitoring on (req/s) | Monitoring off (req/s) | on/off |\n|---|---|---|---|\n'
    for ((r = 1; r <= ROUNDS; r++)); do
        printf '| %d | %s | %s | %sx |\n' "$r" "${RPS[on-$r]}" "${RPS[off-$r]}" "${PAIRS[$((r - 1))]}"
    done
    printf '| median | %s | %s | **%sx** (%s) |\n\n' "$ON_MED" "$OFF_MED" "$RATIO" "$VERDICT"
    printf -- '- Scrape of /metrics with %s series (%s families, %s bytes; %s models with traffic): median %s ms, p90 %s ms, max %s ms over %s scrapes (curl time_total, loopback, idle server). promtool check metrics %s.\n' \
        "$SERIES" "$FAMILIES" "$BYTES" "$((SERIES_MODELS + 3))" "$S_MED" "$S_P90" "$S_MAX" "$SCRAPES" "$PROMTOOL"
    for n in "${NOTES[@]}"; do printf -- '- Note: %s\n' "$n"; done
    echo
} >"$REPORT"
cat "$REPORT"
echo "predict on/off ratio: ${RATIO}x ($VERDICT); scrape of $SERIES series: median ${S_MED} ms"

if [ "${BENCH_APPEND_DOCS:-1}" = 1 ]; then
    DOC=$ROOT/docs/benchmarks.md
    if ! grep -q '^## Monitoring$' "$DOC" 2>/dev/null; then
        cat >>"$DOC" <<'EOF'

## Monitoring

`bench/monitoring_bench.sh` (issue 4) measures what monitoring costs on the hot path: single-row
predict throughput with monitoring **on** (`PROMETHEUS_PORT` set and scraped once a second,
`MONITOR_ENABLED=true`, `MONITOR_INTERVAL=1s`: every request counted in the HTTP and model
metrics and pushed into the drift and data-quality windows) vs **off** (`PROMETHEUS_ENABLED=false`,
`MONITOR_ENABLED=false`), in alternating rounds, each on a fresh copy of the demo data. Target:
on/off at least **0.95x**, reported, not asserted; the median of the rounds is the figure. It then
registers 30 more copies of the demo models, sends each a batch of rows and one invalid request,
and times scrapes of `/metrics` once it carries at least 1000 series (counters, histograms,
drift per feature, quality, status). Runs are appended below, newest last.

EOF
    fi
    cat "$REPORT" >>"$DOC"
    log "appended to $DOC"
fi
