#!/usr/bin/env bash
# The sandbox in a real browser (issue 22): headless Chromium drives /sandbox and /docs of a
# fresh ciba-api in sandbox mode (tests/browser/sandbox.py). Installs Debian's chromium and
# chromium-driver and the selenium package when missing. Screenshots: target/browser/.
#
#   bash .ci/browser/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SELENIUM_VERSION=4.27.1

log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import selenium' 2>/dev/null; then
    log "installing selenium $SELENIUM_VERSION"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        "selenium==${SELENIUM_VERSION}"
fi

log "cargo build -p ciba-api --bin ciba-api --example merchant_verify"
cargo build -q -p ciba-api --bin ciba-api --example merchant_verify
source .ci/bin-dir.sh   # BIN_DIR, honouring CARGO_TARGET_DIR

export CIBA_API="$BIN_DIR/ciba-api" CIBA_VERIFY="$BIN_DIR/examples/merchant_verify"
export BROWSER_OUT="${BIN_DIR%/debug}/browser"
python3 tests/browser/sandbox.py
