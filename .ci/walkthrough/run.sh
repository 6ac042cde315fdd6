#!/usr/bin/env bash
# The README walk-through in CI: checks that every line of the README's ```bash blocks in
# "## Walk-through with curl" is a line of examples/walkthrough.sh (in the same order), then
# runs that script against a fresh ciba-api on a fresh SQLite database, with the admin CLI,
# the simulated app (api/examples/app.rs) and the merchant's verifier
# (api/examples/merchant_verify.rs) built here.
#
#   bash .ci/walkthrough/run.sh
#
# Needs curl and jq (.ci/run installs jq when it is missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '==> %s\n' "$*"; }

# 1. The README shows the script, not something like it.
readme_lines() {
    awk '/^## Walk-through with curl/ { on = 1; next }
         on && /^##/ { exit }
         on && /^```bash$/ { block = 1; next }
         on && block && /^```$/ { block = 0; next }
         on && block' README.md
}
mapfile -t script <examples/walkthrough.sh
at=0
shown=0
while IFS= read -r line; do
    shown=$((shown + 1))
    while [ "$at" -lt "${#script[@]}" ] && [ "${script[at]}" != "$line" ]; do at=$((at + 1)); done
    if [ "$at" -ge "${#script[@]}" ]; then
        printf 'README.md shows a walk-through line that examples/walkthrough.sh does not have (or not in this order):\n    %s\n' "$line" >&2
        exit 1
    fi
    at=$((at + 1))
done < <(readme_lines)
if [ "$shown" -lt 40 ]; then
    echo "README.md: only $shown lines in the walk-through's bash blocks; has the section moved?" >&2
    exit 1
fi
log "README.md walk-through: $shown lines, all in examples/walkthrough.sh in order"

# 2. The programs.
log "cargo build -p ciba-api --examples --bin ciba-api"
cargo build -q -p ciba-api --examples --bin ciba-api
source .ci/bin-dir.sh   # BIN_DIR, honouring CARGO_TARGET_DIR

# Ids are base64url: one in 64 starts with '-', which the examples must take as a value (a
# usage error, exit 2, would fail the walk-through once in a while). Nothing listens on port 1:
# the verifier's own failure is exit 1.
for example in "merchant_verify --issuer http://127.0.0.1:1 --client-id -x --id-token -y --statement -z" \
    "app approve --issuer http://127.0.0.1:1 --key-file /nonexistent --ref -r"; do
    read -r -a argv <<<"$example"
    rc=0; "$BIN_DIR/examples/${argv[0]}" "${argv[@]:1}" >/dev/null 2>&1 || rc=$?
    if [ "$rc" != 1 ]; then
        echo "error: examples/${argv[0]} did not take a value starting with '-' (exit $rc)" >&2
        exit 1
    fi
done

# 3. A fresh server on a fresh database.
work=$(mktemp -d)
server=""
cleanup() {
    local status=$?
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    if [ "$status" != 0 ] && [ -s "$work/server.log" ]; then
        echo "--- the server's log (last 50 lines) ---" >&2
        tail -n 50 "$work/server.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "no free port found" >&2
    return 1
}
port=$(free_port)
base=http://127.0.0.1:$port
export DATABASE_URL="sqlite://$work/ciba.db" CIBA_LISTEN="127.0.0.1:$port" CIBA_ISSUER="$base"
log "ciba-api on $base, database $DATABASE_URL"
RUST_LOG=warn "$BIN_DIR/ciba-api" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
    if curl -sf "$base/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then
        echo "ciba-api stopped before it was ready" >&2
        exit 1
    fi
    sleep 0.1
done
curl -sf "$base/readyz" >/dev/null || { echo "ciba-api is not ready after 30 s" >&2; exit 1; }

# 4. The walk-through.
CIBA_API="$BIN_DIR/ciba-api" CIBA_APP="$BIN_DIR/examples/app" CIBA_VERIFY="$BIN_DIR/examples/merchant_verify" \
    bash examples/walkthrough.sh "$base"
if grep -q 'panicked' "$work/server.log"; then
    echo "the server panicked:" >&2
    grep -n 'panicked' "$work/server.log" >&2
    exit 1
fi
log "walk-through passed"
