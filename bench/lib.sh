# SPDX-License-Identifier: Apache-2.0
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
