#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Soak test (issue 7, long mode: not part of `make test` or CI). Starts the server on a fresh
# demo directory, measures the maximum predict throughput with wrk, then holds 80% of it for
# SOAK_MINUTES (default 10) and checks: no socket errors, no non-2xx answers, the server still
# alive and clean (no sanitizer/crash output), and resident memory (VmRSS) growth under 5%
# from the end of a warm-up minute to the end of the run.
#
# Pacing: wrk2 is not in Debian, so wrk's Lua delay() hook paces each connection: with C
# connections and a target rate R, each connection waits C/R seconds between requests, which
# gives a little under R (the response time adds to each gap), so two 15 s calibration rounds
# subtract the measured response time from the delay; the achieved rate is printed next to
# the target.
#
# Usage: tests/soak/soak.sh   env: AIMEDRES_BIN (default build/aimedres), SOAK_MINUTES,
#        SOAK_WARMUP_S (60), SOAK_CONNS (32), SOAK_THREADS (2), SOAK_DIR (scratch dir), SOAK_PORT
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN=${AIMEDRES_BIN:-$ROOT/build/aimedres}
MINUTES=${SOAK_MINUTES:-10}
WARMUP=${SOAK_WARMUP_S:-60}
CONNS=${SOAK_CONNS:-32}
THREADS=${SOAK_THREADS:-2}
PORT=${SOAK_PORT:-18631}
WORK=${SOAK_DIR:-$(mktemp -d /tmp/aimedres-soak.XXXXXX)}
PY=/usr/bin/python3
MODEL=parkinsons_predictor
command -v wrk >/dev/null || { echo "soak: wrk is missing (apt-get install wrk)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "soak: no binary at $BIN (make build, or set AIMEDRES_BIN)" >&2; exit 1; }

mkdir -p "$WORK"
echo "soak: work dir $WORK"
if [ ! -f "$WORK/demo/models/$MODEL/1.0.0/manifest.json" ]; then
  "$BIN" demo init --dir "$WORK/demo" >"$WORK/demo-init.log" 2>&1
fi

# the request: one valid row (midpoint of every feature range) with a patient_id
$PY - "$WORK/demo/models/$MODEL/1.0.0/manifest.json" >"$WORK/body.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
f = {}
for x in m["features"]:
    lo, hi = x.get("min"), x.get("max")
    v = (lo + hi) / 2 if lo is not None and hi is not None else (lo if lo is not None else 0.0)
    f[x["name"]] = (v >= 0.5) if x["type"] == "boolean" else (int(round(v)) if x["type"] == "integer" else v)
print(json.dumps({"features": f, "patient_id": "soak-patient"}))
PYEOF
cat >"$WORK/predict.lua" <<'LUAEOF'
-- POST one predict; delay() paces each connection when SOAK_DELAY_MS is set (see soak.sh).
local f = io.open(os.getenv("SOAK_BODY"), "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local pause = tonumber(os.getenv("SOAK_DELAY_MS") or "0")
function delay()
  return pause
end
LUAEOF
export SOAK_BODY="$WORK/body.json"

MODEL_STORAGE_PATH="$WORK/demo/models" DATABASE_URL="sqlite://$WORK/demo/aimedres.db" \
  DATA_DIR="$WORK/demo/data" LOG_LEVEL=warning \
  "$BIN" serve --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "soak: server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
URL="http://127.0.0.1:$PORT/api/v1/models/$MODEL/predict"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }

check_wrk() { # $1 = wrk output file: fail on socket errors or non-2xx answers
  if grep -q "Non-2xx or 3xx responses" "$1" || grep -q "Socket errors" "$1"; then
    echo "soak: errors in $1:" >&2; cat "$1" >&2; exit 1
  fi
}

echo "soak: measuring max throughput (30 s, $THREADS threads, $CONNS connections)"
SOAK_DELAY_MS=0 wrk -t"$THREADS" -c"$CONNS" -d30s --latency -s "$WORK/predict.lua" "$URL" >"$WORK/wrk-max.txt"
check_wrk "$WORK/wrk-max.txt"
MAX=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk-max.txt")
TARGET=$(awk -v m="$MAX" 'BEGIN {printf "%.0f", m * 0.8}')
DELAY=$(awk -v c="$CONNS" -v r="$TARGET" 'BEGIN {printf "%d", c * 1000 / r}')
echo "soak: max ${MAX} req/s -> target ${TARGET} req/s"
# Calibrate: each connection's cycle is delay + response time, so measure the rate a delay
# gives and take the response time out of the next guess (twice, 15 s each).
for round in 1 2; do
  SOAK_DELAY_MS=$DELAY wrk -t"$THREADS" -c"$CONNS" -d15s -s "$WORK/predict.lua" "$URL" >"$WORK/wrk-cal$round.txt"
  check_wrk "$WORK/wrk-cal$round.txt"
  GOT=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk-cal$round.txt")
  DELAY=$(awk -v c="$CONNS" -v r="$TARGET" -v g="$GOT" -v d="$DELAY" \
    'BEGIN {resp = c * 1000 / g - d; if (resp < 0) resp = 0; n = c * 1000 / r - resp; printf "%d", n < 0 ? 0 : n}')
  echo "soak: calibration $round: ${GOT} req/s -> delay ${DELAY} ms per connection"
done

echo "soak: warm-up ${WARMUP} s at the target rate"
SOAK_DELAY_MS=$DELAY wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$WORK/predict.lua" "$URL" >"$WORK/wrk-warmup.txt"
check_wrk "$WORK/wrk-warmup.txt"
RSS0=$(rss)
echo "soak: RSS after warm-up ${RSS0} kB; running ${MINUTES} min"
: >"$WORK/rss.csv"
( while kill -0 $PID 2>/dev/null; do echo "$(date +%s),$(rss)" >>"$WORK/rss.csv"; sleep 30; done ) &
SAMPLER=$!
SOAK_DELAY_MS=$DELAY wrk -t"$THREADS" -c"$CONNS" -d"$((MINUTES * 60))s" --latency -s "$WORK/predict.lua" "$URL" >"$WORK/wrk-soak.txt"
kill $SAMPLER 2>/dev/null || true
RSS1=$(rss)
check_wrk "$WORK/wrk-soak.txt"
ACHIEVED=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk-soak.txt")
TOTAL=$(awk '/requests in/ {print $1}' "$WORK/wrk-soak.txt")
GROWTH=$(awk -v a="$RSS0" -v b="$RSS1" 'BEGIN {printf "%.2f", (b - a) * 100.0 / a}')
echo "soak: ${TOTAL} requests in ${MINUTES} min, achieved ${ACHIEVED} req/s (target ${TARGET}, max ${MAX})"
echo "soak: RSS ${RSS0} kB -> ${RSS1} kB (${GROWTH}%); samples in $WORK/rss.csv"
grep -E "Latency|50%|99%" "$WORK/wrk-soak.txt" || true

fail=0
if grep -Eq "Sanitizer|runtime error:|Segmentation fault" "$WORK/server.log"; then
  echo "soak: sanitizer/crash output in $WORK/server.log" >&2; fail=1
fi
awk -v g="$GROWTH" 'BEGIN {exit !(g >= 5.0)}' && { echo "soak: RSS grew ${GROWTH}% (limit 5%)" >&2; fail=1; }
kill -TERM $PID
trap - EXIT
wait $PID || { echo "soak: server exited non-zero on SIGTERM" >&2; fail=1; }
[ $fail -eq 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit $fail
