#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages that building and running need (no argument: `make run`),
# and with `test` those the tests need too (`make test`), when some are missing. Runs apt-get
# only as root; otherwise it names what is missing.
#
# The test set holds real servers (nginx, Prometheus, Alertmanager, rsyslog) that the tests
# start on loopback themselves. On a booted systemd machine Debian's packages also enable them
# as services (nginx on :80, Prometheus on :9090, Alertmanager on :9093): `make run` does not
# install them (fresh57), and a machine that runs `make test` is a build machine.
set -eu

PACKAGES="build-essential cmake pkg-config
libevent-dev libjansson-dev libsqlite3-dev libxgboost-dev libssl-dev libcmocka-dev libzstd-dev
python3 curl sqlite3 procps"
if [ "${1:-}" = test ]; then
PACKAGES="$PACKAGES python3-pytest python3-requests python3-xgboost python3-numpy python3-jwt python3-cryptography"
# monitoring (issue 4): promtool, amtool and the real servers for tests/monitoring and the e2e test.
PACKAGES="$PACKAGES prometheus prometheus-alertmanager python3-yaml"
# reliability (issue 7): clang + libFuzzer runtime for `make fuzz`, llvm for llvm-symbolizer.
PACKAGES="$PACKAGES clang libclang-rt-14-dev llvm"
# audit (issue 5): a real rsyslog (TCP/UDP, TLS via its OpenSSL driver, RELP via imrelp) for
# tests/e2e/test_siem.py and test_siem_relp.py.
PACKAGES="$PACKAGES rsyslog rsyslog-openssl rsyslog-relp"
# backups (issue 6): faketime, to run a DR drill "hours later" (its RPO check) in tests/e2e.
PACKAGES="$PACKAGES faketime"
# backups (review29): strace's syscall fault injection slows or fails the renames of a restore's
# swap in tests/e2e/test_restore_interrupted.py, so a signal or kill -9 lands inside it.
PACKAGES="$PACKAGES strace"
# deploy units: systemd-analyze verifies the shipped systemd units in tests/e2e (a tool only:
# nothing is started; on a systemd machine the package is already there).
PACKAGES="$PACKAGES systemd"
# deploy8 (nginx front end): tests/e2e/test_deploy_nginx.py runs deploy/nginx/aimedres.conf in a
# private nginx on loopback ports. On a systemd machine the package also enables nginx.service
# on port 80 (`systemctl disable --now nginx` if it is not wanted there).
PACKAGES="$PACKAGES nginx"
# Helm chart: the Kubernetes 1.22 API models tests/e2e/test_deploy_helm.py checks the rendered
# chart against, offline. helm itself is no Debian package: see tools() below.
PACKAGES="$PACKAGES python3-kubernetes"
fi
# `install-deps.sh bench`: the peers the benchmarks compare against (not needed for tests;
# nginx's package starts a system service, so it is installed only when asked for).
if [ "${1:-}" = bench ]; then
  PACKAGES="$PACKAGES wrk nginx-light gunicorn python3-flask python3-xgboost python3-numpy restic"
fi

# `install-deps.sh test` (make test): also the tests' tools that are no Debian package, after
# the packages (they need curl and python3): helm v3.9.4 for tests/e2e/test_deploy_helm.py
# (scripts/install-helm.sh, checksum-pinned). Installed as root only, like the packages;
# otherwise this says what to run. `make run` needs none of them.
tools() {
  [ "${1:-}" = test ] || return 0
  if [ "$(id -u)" -eq 0 ]; then
    sh "$(dirname "$0")/install-helm.sh" || exit 1
  elif ! sh "$(dirname "$0")/install-helm.sh" --check; then
    echo "install-deps: helm v3.9.4 (for the tests) is missing: run 'sudo sh scripts/install-helm.sh' or run make as root" >&2
    exit 1
  fi
}

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && { tools "${1:-}"; exit 0; }

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages:$missing" >&2
  echo "install-deps: run 'sudo apt-get install$missing' or run make as root" >&2
  exit 1
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# One update per machine is enough; apt-get update failing (offline mirror) is not fatal
# if the package lists are already present.
if [ ! -f /var/lib/apt/lists/lock ] || [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock | head -1)" ] || [ "${AIMEDRES_APT_UPDATE:-0}" = 1 ]; then
  apt-get update -q || true
fi
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing || { apt-get update -q && apt-get install -y -q --no-install-recommends $missing; }
tools "${1:-}"
