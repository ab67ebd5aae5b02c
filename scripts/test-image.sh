#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# `make test-image`: an OPT-IN check (not part of `make test` or .ci/run: it needs root, podman
# and a few minutes) that builds deploy/compose/Dockerfile with podman, the repository
# root as context, and runs the image the way deploy/compose/docker-compose.yml and the Helm
# chart do: uid 10001, read-only root file system with a tmpfs /tmp, no capabilities,
# no-new-privileges, compose's environment with generated secrets, a demo store made on the
# host by `aimedres demo init`, ports published on 127.0.0.1 only. It checks /health, /ready,
# one predict against the host binary's answer, /metrics on the metrics port, `backup full` +
# `backup verify` in a second container while the server runs (the Helm CronJob's situation),
# `audit verify`, and that SIGTERM (`podman stop`) exits 0 within the grace period. Exits
# non-zero on the first failure and removes every container, image and file it made.
set -eu

usage() {
    cat <<'EOF'
usage: scripts/test-image.sh [--bin PATH] [--layout compose|helm] [--keep] [--no-build]

Builds deploy/compose/Dockerfile with podman and runs the server image as compose and the
Helm chart would (see the top of this script for the checks). Needs root, podman, catatonit
(compose's `init: true`) and, when no debian:12-slim image is present, mmdebstrap: the base
image is then made from the Debian archive (mmdebstrap --variant=apt bookworm) and tagged
docker.io/library/debian:12-slim, so that the Dockerfile builds unchanged without Docker Hub.
Missing packages are installed with apt-get.

  --bin PATH   host aimedres binary for the demo data and the reference predict
               (default: $BUILD/aimedres, BUILD defaulting to build)
  --layout L   check only the volume/env layout of compose or of the Helm chart
               (default: both, one after the other)
  --keep       keep the images it built (localhost/aimedres:test-image and the base image)
  --no-build   use the image a previous --keep run left (skip the base image and build)
  -h, --help   show this help

Environment: TEST_IMAGE_PORT (first of three free loopback ports, default 24080).
Exit status: 0 every check passed, 1 a check failed, 2 usage or missing prerequisite.
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/${BUILD:-build}/aimedres"
KEEP=0
NOBUILD=0
LAYOUTS="compose helm"
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) [ $# -ge 2 ] || { usage >&2; exit 2; }; BIN=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) NOBUILD=1; shift ;;
        --layout)
            [ $# -ge 2 ] || { usage >&2; exit 2; }
            case "$2" in compose|helm) LAYOUTS=$2 ;; *) usage >&2; exit 2 ;; esac
            shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "test-image: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

say() { echo "test-image: $*"; }
fail() { echo "test-image: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || { echo "test-image: run as root (rootful podman; chown to uid 10001)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "test-image: no host binary $BIN (make build, or --bin PATH)" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

BASE=docker.io/library/debian:12-slim
IMAGE=localhost/aimedres:test-image
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
missing=""
"$PY" -c 'import yaml' 2>/dev/null || missing="$missing python3-yaml"
command -v podman >/dev/null 2>&1 || missing="$missing podman"
command -v catatonit >/dev/null 2>&1 || missing="$missing catatonit"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
if ! command -v podman >/dev/null 2>&1 || ! podman image exists "$BASE"; then
    command -v mmdebstrap >/dev/null 2>&1 || missing="$missing mmdebstrap"
fi
if [ -n "$missing" ]; then
    say "installing:$missing"
    # with podman's Recommends (fuse-overlayfs, slirp4netns, uidmap)
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null \
        || { echo "test-image: could not install:$missing" >&2; exit 2; }
fi

# A host (or container) without CAP_SYS_RESOURCE cannot raise rlimits, and podman's defaults
# (nofile 1048576, nproc 4194304) then fail with "error setting rlimit type 7: operation not
# permitted". Pass limits no higher than our own hard limits.
nofile=$(awk '/^Max open files/ { print $5 }' /proc/self/limits)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile" -gt 1048576 ] && nofile=1048576
ULIMITS="--ulimit nofile=$nofile:$nofile --ulimit nproc=4096:4096"

W=$(mktemp -d /tmp/aimedres-test-image.XXXXXX)
TAG=$$
HOSTPID=""
MADE_BASE=0
MADE_IMAGE=0
cleanup() {
    rc=$?
    set +e
    [ -n "$HOSTPID" ] && kill "$HOSTPID" 2>/dev/null && wait "$HOSTPID" 2>/dev/null
    for c in $(podman ps -a --filter "label=aimedres.test-image=$TAG" --format '{{.ID}}' 2>/dev/null); do
        podman rm -f -t 0 "$c" >/dev/null 2>&1
    done
    if [ "$KEEP" = 0 ]; then
        [ "$MADE_IMAGE" = 1 ] && podman rmi -f "$IMAGE" >/dev/null 2>&1
        [ "$MADE_BASE" = 1 ] && podman rmi -f "$BASE" >/dev/null 2>&1
    fi
    rm -rf "$W"
    [ $rc -eq 0 ] && say "all checks passed" || echo "test-image: failed (exit $rc)" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# three free loopback ports: API, metrics, host reference server
port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
P=${TEST_IMAGE_PORT:-24080}
while ! { port_free "$P" && port_free $((P + 1)) && port_free $((P + 2)); }; do
    P=$((P + 10))
    [ "$P" -lt 29990 ] || fail "no free ports"
done
MP=$((P + 1))
HP=$((P + 2))

# --- 1. base image and build -------------------------------------------------------------
if [ "$NOBUILD" = 1 ]; then
    podman image exists "$IMAGE" || { echo "test-image: --no-build: no image $IMAGE" >&2; exit 2; }
    MADE_IMAGE=0
elif ! podman image exists "$BASE"; then
    say "making $BASE from the Debian archive (mmdebstrap --variant=apt bookworm)"
    mmdebstrap --quiet --variant=apt bookworm "$W/base.tar" || fail "mmdebstrap"
    podman import -q "$W/base.tar" "$BASE" >/dev/null || fail "podman import"
    MADE_BASE=1
    rm -f "$W/base.tar"
fi
if [ "$NOBUILD" = 0 ]; then
    say "building $IMAGE from deploy/compose/Dockerfile (context $ROOT; log $W/build.log)"
    # --layers=false: no cached intermediate images (the build stage) are left behind
    # shellcheck disable=SC2086
    if ! podman build --layers=false $ULIMITS -f "$ROOT/deploy/compose/Dockerfile" -t "$IMAGE" "$ROOT" \
        >"$W/build.log" 2>&1; then
        tail -30 "$W/build.log" >&2
        fail "podman build"
    fi
    MADE_IMAGE=1
fi
# shellcheck disable=SC2086
podman run --rm $ULIMITS --entrypoint /bin/sh "$IMAGE" -c 'id -u; ldd /usr/local/bin/aimedres' \
    >"$W/ldd.txt" 2>&1 || fail "image: $(cat "$W/ldd.txt")"
[ "$(head -1 "$W/ldd.txt")" = 10001 ] || fail "image user is not 10001"
! grep -q 'not found' "$W/ldd.txt" || fail "image lacks a library: $(grep 'not found' "$W/ldd.txt")"
say "ok: image built, runs as uid 10001, every library of ldd present"

# --- 2. demo data, secrets, the host reference answer -----------------------------------
say "demo init on the host (log $W/demo.log)"
"$BIN" demo init --dir "$W/demo" >"$W/demo.log" 2>&1 || fail "demo init: $(tail -3 "$W/demo.log")"
cp -a "$W/demo" "$W/host"            # the host reference server's own copy
S=$W/secrets
mkdir -p "$S"
"$BIN" audit keygen --private "$S/audit-signing.pem" --public "$W/audit-verify.pem" >/dev/null \
    || fail "audit keygen"
"$BIN" backup keygen "$S/backup.key" >/dev/null || fail "backup keygen"
# aimedres.env from aimedres.env.example, each placeholder replaced by a generated secret
sed -e "s|^SECRET_KEY=.*|SECRET_KEY=$(openssl rand -hex 32)|" \
    -e "s|^JWT_SECRET_KEY=.*|JWT_SECRET_KEY=$(openssl rand -hex 32)|" \
    -e "s|^API_KEY_SALT=.*|API_KEY_SALT=$(openssl rand -hex 32)|" \
    "$ROOT/deploy/compose/aimedres.env.example" >"$S/aimedres.env"
chmod 0600 "$S/aimedres.env"
! grep -q '^[^#]*REPLACE_ME' "$S/aimedres.env" || fail "a placeholder is left in aimedres.env"

code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }
BODY="$ROOT/docs/examples/parkinsons.json"
URL=/api/v1/models/parkinsons_predictor/predict
DATABASE_URL="sqlite://$W/host/aimedres.db" MODEL_STORAGE_PATH="$W/host/models" DATA_DIR="$W/host/data" \
    AUTH_ENABLED=false ENVIRONMENT=development "$BIN" serve --host 127.0.0.1 --port "$HP" \
    >"$W/host.log" 2>&1 &
HOSTPID=$!
i=0
until [ "$(code "http://127.0.0.1:$HP/ready")" = 200 ]; do
    i=$((i + 1)); [ $i -lt 120 ] || fail "host server not ready: $(tail -3 "$W/host.log")"; sleep 0.5
done
curl -sf --max-time 10 -H 'Content-Type: application/json' --data-binary @"$BODY" \
    "http://127.0.0.1:$HP$URL" >"$W/pred.host.json" || fail "host predict"
kill "$HOSTPID"; wait "$HOSTPID" 2>/dev/null || true; HOSTPID=""

# --- 3. one layout: volumes, server, checks, backup job, SIGTERM --------------------------
# compose: deploy/compose/docker-compose.yml's volumes (store -> /var/lib/aimedres, models ->
#   /var/aimedres with models/ and data/, audit -> /var/log/aimedres, backups ->
#   /var/backup/aimedres), its environment: (TRUSTED_PROXIES and ALERTMANAGER_URL left out: no
#   nginx, no Alertmanager here), read_only, tmpfs /tmp, cap_drop ALL, no-new-privileges, init.
#   Compose names no backup key: the backup container gets one at the chart's path.
# helm: deploy/helm/aimedres's StatefulSet and backup CronJob: one data volume at
#   /var/lib/aimedres (aimedres.db, models/, data/, audit/), backups read-only in the server,
#   the Secret's files at /etc/aimedres/secret (root, group 10001, 0440: fsGroup), the
#   ConfigMap's settings, no init process (aimedres is PID 1); the job's init container copies
#   backup.key into /run/aimedres-keys with mode 0600.
check_layout() {
    L=$1
    V=$W/$L
    CN=aimedres-test-image-$TAG-$L
    if [ "$L" = compose ]; then
        say "[$L] volumes and environment of deploy/compose/docker-compose.yml"
    else
        say "[$L] volumes and environment of deploy/helm/aimedres"
    fi
    BASEOPTS="$ULIMITS --label aimedres.test-image=$TAG --read-only --tmpfs /tmp --cap-drop ALL
 --security-opt no-new-privileges --user 10001:10001 --env-file $S/aimedres.env"
    if [ "$L" = compose ]; then
        mkdir -p "$V/store" "$V/models" "$V/audit" "$V/backups" "$V/keys"
        cp -a "$W/demo/aimedres.db" "$V/store/"
        cp -a "$W/demo/models" "$W/demo/data" "$V/models/"
        cp "$S/audit-signing.pem" "$V/audit-signing.pem"
        cp "$S/backup.key" "$V/keys/backup.key"
        chown -R 10001:10001 "$V"
        chmod 0750 "$V/store" "$V/models" "$V/audit" "$V/backups"
        ENVOPTS="-e ENVIRONMENT=production -e PORT=8080 -e PROMETHEUS_PORT=9090 -e AUTH_ENABLED=true
 -e DATABASE_URL=sqlite:///var/lib/aimedres/aimedres.db -e MODEL_STORAGE_PATH=/var/aimedres/models
 -e DATA_DIR=/var/aimedres/data -e AUDIT_LOG_PATH=/var/log/aimedres/audit.log
 -e AUDIT_SIGNING_KEY_PATH=/etc/aimedres/audit-signing.pem -e BACKUP_PATH=/var/backup/aimedres"
        VOLS="-v $V/store:/var/lib/aimedres -v $V/models:/var/aimedres -v $V/audit:/var/log/aimedres
 -v $V/backups:/var/backup/aimedres -v $V/audit-signing.pem:/etc/aimedres/audit-signing.pem:ro"
        SERVER_OPTS="--init $BASEOPTS $ENVOPTS $VOLS"
        JOB_OPTS="$BASEOPTS $ENVOPTS $VOLS -e BACKUP_ENCRYPTION_KEY_FILE=/run/aimedres-keys/backup.key
 -v $V/keys/backup.key:/run/aimedres-keys/backup.key:ro"
    else
        mkdir -p "$V/data" "$V/backups" "$V/secret" "$V/keys"
        cp -a "$W/demo/aimedres.db" "$W/demo/models" "$W/demo/data" "$V/data/"
        chown -R 10001:10001 "$V/data" "$V/backups" "$V/keys"
        chmod 0700 "$V/keys"
        cp "$S/audit-signing.pem" "$S/backup.key" "$V/secret/"
        chown -R 0:10001 "$V/secret"
        chmod 0440 "$V/secret/audit-signing.pem" "$V/secret/backup.key"
        chmod 0750 "$V/secret"
        # the ConfigMap (aimedres.ownedConfig + values.yaml config) and the Secret's env
        ENVOPTS="-e PORT=8080 -e PROMETHEUS_PORT=9090 -e DATABASE_URL=sqlite:///var/lib/aimedres/aimedres.db
 -e MODEL_STORAGE_PATH=/var/lib/aimedres/models -e DATA_DIR=/var/lib/aimedres/data
 -e AUDIT_LOG_PATH=/var/lib/aimedres/audit/audit.log
 -e AUDIT_SIGNING_KEY_PATH=/etc/aimedres/secret/audit-signing.pem -e BACKUP_PATH=/var/backup/aimedres
 -e BACKUP_ENABLED=true -e ENVIRONMENT=production -e AUTH_ENABLED=true -e LOG_LEVEL=INFO
 -e MAX_WORKERS=4 -e MAX_BODY_BYTES=1M -e AUDIT_LOG_RETENTION_DAYS=2555 -e BACKUP_RETENTION_DAYS=90"
        SERVER_OPTS="$BASEOPTS $ENVOPTS -v $V/data:/var/lib/aimedres -v $V/backups:/var/backup/aimedres:ro
 -v $V/secret:/etc/aimedres/secret:ro"
        JOB_OPTS="$BASEOPTS $ENVOPTS -v $V/data:/var/lib/aimedres -v $V/backups:/var/backup/aimedres
 -v $V/secret:/etc/aimedres/secret:ro -v $V/keys:/run/aimedres-keys:ro
 -e BACKUP_ENCRYPTION_KEY_FILE=/run/aimedres-keys/backup.key"
    fi

    # an API key, as docs/operations.md does it (`docker compose run --rm aimedres-web apikey
    # create`; with the chart, `kubectl exec` in the server pod)
    # shellcheck disable=SC2086
    podman run --rm $JOB_OPTS "$IMAGE" apikey create --name test-image --role clinician \
        >"$V.apikey.out" 2>"$V.apikey.err" || fail "[$L] apikey create: $(cat "$V.apikey.err")"
    KEY=$(tail -1 "$V.apikey.out")
    [ -n "$KEY" ] || fail "[$L] apikey create printed no key"

    say "[$L] starting the server container (127.0.0.1:$P api, 127.0.0.1:$MP metrics)"
    # shellcheck disable=SC2086
    podman run -d --name "$CN" $SERVER_OPTS -p "127.0.0.1:$P:8080" -p "127.0.0.1:$MP:9090" \
        "$IMAGE" serve --host 0.0.0.0 >/dev/null || fail "[$L] podman run (server)"
    i=0
    until [ "$(code "http://127.0.0.1:$P/ready")" = 200 ]; do
        i=$((i + 1))
        if [ $i -ge 120 ] || [ "$(podman inspect -f '{{.State.Running}}' "$CN")" != true ]; then
            podman logs "$CN" 2>&1 | tail -20 >&2
            fail "[$L] /ready did not answer 200 within 60 s"
        fi
        sleep 0.5
    done
    say "[$L] ok: /ready 200"
    [ "$(code "http://127.0.0.1:$P/health")" = 200 ] || fail "[$L] /health is not 200"
    say "[$L] ok: /health 200"
    if [ "$L" = compose ]; then
        # compose's healthcheck command, taken from docker-compose.yml, run in the container
        hc=$("$PY" -c 'import shlex, sys, yaml
t = yaml.safe_load(open(sys.argv[1]))["services"]["aimedres-web"]["healthcheck"]["test"]
assert t[0] == "CMD", t
print(" ".join(map(shlex.quote, t[1:])))' "$ROOT/deploy/compose/docker-compose.yml") \
            || fail "[$L] healthcheck: not read from docker-compose.yml"
        eval "set -- $hc"
        podman exec "$CN" "$@" || fail "[$L] compose's healthcheck command fails in the container"
        set --
        say "[$L] ok: compose's healthcheck command succeeds in the container"
    fi

    [ "$(code -X POST -H 'Content-Type: application/json' --data-binary @"$BODY" "http://127.0.0.1:$P$URL")" \
        = 401 ] || fail "[$L] predict without an API key is not 401"
    curl -sf --max-time 10 -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
        --data-binary @"$BODY" "http://127.0.0.1:$P$URL" >"$V.pred.json" || fail "[$L] container predict"
    "$PY" - "$V.pred.json" "$W/pred.host.json" <<'PYEOF' || fail "[$L] container and host predictions differ"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
keys = ("model", "version", "predictions")
print("test-image: container", json.dumps({k: a[k] for k in keys}))
sys.exit(0 if all(a[k] == b[k] for k in keys) else 1)
PYEOF
    say "[$L] ok: predict (with an API key; 401 without) equals the host binary's answer"

    curl -sf --max-time 5 "http://127.0.0.1:$MP/metrics" >"$V.metrics.txt" \
        || fail "[$L] /metrics on the metrics port"
    # the one authorized predict above is counted (the API and metrics ports are one server)
    grep -q '^http_requests_total{method="POST",route="/api/v1/models/{name}/predict",status="200"} 1$' \
        "$V.metrics.txt" || fail "[$L] /metrics does not count the predict"
    say "[$L] ok: /metrics on the metrics port ($(grep -vc '^#' "$V.metrics.txt") samples, predict counted)"

    # backups in a second container while the server runs (the Helm CronJob's situation)
    if [ "$L" = helm ]; then
        # shellcheck disable=SC2086,SC2016
        podman run --rm $BASEOPTS -v "$V/secret:/etc/aimedres/secret:ro" -v "$V/keys:/run/aimedres-keys" \
            --entrypoint /bin/sh "$IMAGE" -c 'umask 077 && cat "$0" > "$1"' \
            /etc/aimedres/secret/backup.key /run/aimedres-keys/backup.key \
            || fail "[$L] backup-key init container"
        [ "$(stat -c '%u %a' "$V/keys/backup.key")" = "10001 600" ] \
            || fail "[$L] the copied key is not owned by 10001 with mode 0600"
    fi
    # shellcheck disable=SC2086
    podman run --rm $JOB_OPTS "$IMAGE" backup full --json >"$V.backup.json" 2>"$V.backup.err" \
        || fail "[$L] backup full: $(tail -5 "$V.backup.err")"
    # shellcheck disable=SC2086
    podman run --rm $JOB_OPTS "$IMAGE" backup verify --all --json >"$V.verify.json" 2>"$V.verify.err" \
        || fail "[$L] backup verify: $(tail -5 "$V.verify.err")"
    "$PY" - "$V.backup.json" "$V.verify.json" <<'PYEOF' || fail "[$L] backup reports: $(cat "$V.backup.json")"
import json, sys
b, v = (json.load(open(p)) for p in sys.argv[1:3])
# the online snapshot holds the predict acknowledged above; models and the audit log are in
assert b["ok"] and b["verified"] and b["type"] == "full", b
assert b["db"]["predictions"] >= 1 and b["db"]["integrity"]["result"] == "ok", b["db"]
assert {"db", "models", "audit"} <= set(b["components"]), b["components"]
assert v["ok"] and len(v["backups"]) == 1 and v["backups"][0]["ok"], v
print("test-image: backup", b["id"], json.dumps(b["components"]))
PYEOF
    [ "$(podman inspect -f '{{.State.Running}}' "$CN")" = true ] || fail "[$L] server died during the backup"
    [ "$(code "http://127.0.0.1:$P/ready")" = 200 ] || fail "[$L] /ready not 200 after the backup"
    say "[$L] ok: backup full + backup verify in a second container while the server runs"

    # SIGTERM within compose's stop_grace_period / the chart's terminationGracePeriodSeconds
    GRACE=45
    t0=$(date +%s)
    podman stop -t "$GRACE" "$CN" >/dev/null || fail "[$L] podman stop"
    t1=$(date +%s)
    rc=$(podman inspect -f '{{.State.ExitCode}}' "$CN")
    [ "$rc" = 0 ] || { podman logs "$CN" 2>&1 | tail -10 >&2; fail "[$L] exit status $rc after SIGTERM"; }
    [ $((t1 - t0)) -lt "$GRACE" ] || fail "[$L] SIGTERM took $((t1 - t0)) s (grace $GRACE s)"
    podman logs "$CN" >"$V.server.log" 2>&1
    if grep -q '"level":"\(ERROR\|CRITICAL\)"' "$V.server.log"; then
        grep '"level":"\(ERROR\|CRITICAL\)"' "$V.server.log" | head -5 >&2
        fail "[$L] the server logged errors"
    fi
    say "[$L] ok: SIGTERM: exit 0 after $((t1 - t0)) s (grace $GRACE s), no ERROR in the server log"

    # the audit trail the server wrote on its volume verifies
    # shellcheck disable=SC2086
    podman run --rm $JOB_OPTS "$IMAGE" audit verify >"$V.audit.out" 2>&1 \
        || fail "[$L] audit verify: $(tail -3 "$V.audit.out")"
    say "[$L] ok: audit verify"
    podman rm "$CN" >/dev/null
}

for L in $LAYOUTS; do
    check_layout "$L"
done
