# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Helpers shared by the benchmark scripts (sourced, not run). The caller defines PY (Debian's
# python3), die MESSAGE, and, for stop, the NOTES array the report prints.

# A free loopback TCP port.
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Seconds from a wrk duration (10s, 1m, 1h; a bare number is seconds).
seconds() {
    case $1 in
        *h) echo $((${1%h} * 3600)) ;;
        *m) echo $((${1%m} * 60)) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}

# wait_http URL PID [LOG]: until URL answers 200, the process dies, or 30 s pass (the log's
# tail is shown on failure when given).
wait_http() {
    local url=$1 pid=$2 logf=${3:-} i
    for ((i = 0; i < 300; i++)); do
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            [ -z "$logf" ] || tail -n 20 "$logf" >&2 || true
            die "server exited before answering $url"
        fi
        sleep 0.1
    done
    [ -z "$logf" ] || tail -n 20 "$logf" >&2 || true
    die "no answer from $url within 30 s"
}

# stop PID NAME: SIGTERM, then SIGKILL after 15 s. Records a kill or a non-zero exit in NOTES.
stop() {
    local pid=$1 name=$2 i rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        NOTES+=("$name did not stop within 15 s of SIGTERM; killed")
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" -eq 0 ] || NOTES+=("$name exited with status $rc after SIGTERM")
}

# median NUMBER...: the median (mean of the two middle values for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# bench_tmpdir NAME: a fresh temp dir in TMP (/tmp/aimedres-NAME.XXXXXX) and an EXIT trap that
# kills whatever is left in PIDS (and SERVER_PID), then removes TMP unless BENCH_KEEP_TMP=1.
# The caller defines log MESSAGE.
bench_tmpdir() {
    TMP=$(mktemp -d "/tmp/aimedres-$1.XXXXXX")
    PIDS=()
    SERVER_PID=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local rc=$? p
    for p in "${PIDS[@]}" $SERVER_PID; do
        if kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
    exit $rc
}

# bench_machine: what a result is recorded with: DATE, UNAME, CPU, CORES, HYPER (" (VM, vendor)"
# or empty), GIT_V (short commit, "+local changes" when the tree is dirty) and LOAD_BEFORE.
# shellcheck disable=SC2034 # the callers print them
bench_machine() {
    DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
    UNAME=$(uname -srm)
    CPU=$(lscpu | awk -F: '/^Model name:/ {sub(/^[ \t]+/, "", $2); print $2; exit}')
    CORES=$(nproc)
    HYPER=$(lscpu | awk -F: '/^Hypervisor vendor:/ {sub(/^[ \t]+/, "", $2); print " (VM, " $2 ")"; exit}')
    GIT_V=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)" ]; then GIT_V="$GIT_V+local changes"; fi
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
}
