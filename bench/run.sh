#!/usr/bin/env bash
# The benchmark of issue 5, reproducible by anyone: `bash bench/run.sh` (about 6 minutes).
# For each of PostgreSQL and SQLite it starts a release ciba-api and measures
#   - pending-poll throughput and p50/p99 at 64 connections over many distinct pending requests,
#   - poll p50 at 1,000 and at 1,000,000 stored requests (paced load on 1,000 pending ids),
#   - full flows per second (permission → app-authorize → signed approval → token),
#   - the API's peak resident memory,
# then the same poll and flow load against node-oidc-provider (CIBA poll mode, one
# client_secret_basic client), and writes bench/out/results.jsonl and bench/out/RESULTS.md.
# Knobs: BENCH_SECONDS (per phase, 15), BENCH_PENDING (50000), BENCH_FILLER (1000000),
# BENCH_RATE (paced phases, 900/s), CIBA_TEST_PG_URL (admin URL of a PostgreSQL server).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-15}
PENDING=${BENCH_PENDING:-50000}
FILLER=${BENCH_FILLER:-1000000}
RATE=${BENCH_RATE:-900}
CONNS=64
OUT=bench/out
PG_ADMIN=${CIBA_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

cargo build --release --quiet -p ciba-api -p ciba-bench
API=target/release/ciba-api
LOAD=target/release/ciba-bench
(cd bench/peer && npm install --silent --no-audit --no-fund >/dev/null 2>&1)

NNIN=01019010046            # a made-up number with valid check digits
PORT=18480
export CIBA_LISTEN=127.0.0.1:$PORT CIBA_ISSUER=http://127.0.0.1:$PORT CIBA_POLL_INTERVAL=1 RUST_LOG=warn
export CIBA_KEY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
BASE=http://127.0.0.1:$PORT

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "${PG_DB:-}" ]; then psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# port_free PORT: nothing answers there yet (a leftover server would be measured instead).
port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "port $1 is in use: stop what listens there first" >&2; exit 1
    fi
}

# wait_ready URL PID: until URL answers 2xx; fails if the process PID died.
wait_ready() {
    for _ in $(seq 1 300); do
        curl -sf -m 2 "$1" >/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { echo "process $2 exited; see $OUT" >&2; return 1; }
        sleep 0.1
    done
    echo "not ready: $1" >&2; return 1
}

json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

bench_ours() {
    local backend=$1 url=$2
    export DATABASE_URL=$url
    $API migrate >/dev/null
    local creds cid secret sub
    creds=$($API admin --json clients create --name Bench --scope "permissions/client permissions/app2app openid" \
            --callback-uri https://merchant.app/app_callback)
    cid=$(echo "$creds" | json client_id); secret=$(echo "$creds" | json client_secret)
    sub=$($API admin --json users create --nnin $NNIN --given-name Bench --family-name User --birthdate 1990-01-01 | json sub)
    port_free $PORT
    $API > "$OUT/api-$backend.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_ready "$BASE/readyz" "$pid"
    local poll=("$LOAD" poll --token-url "$BASE/oidc/v1/token" --client-id="$cid" --secret="$secret" --connections $CONNS --seconds "$SECS" --target "$backend")

    echo "== $backend: 1,000 stored requests, paced" >&2
    $LOAD seed --database-url "$url" --client-id "$cid" --user-sub="$sub" --pending-from 1 --pending-to 1000 >&2
    "${poll[@]}" --ids seeded:1000 --rate "$RATE" --phase poll-paced-1k >> "$RESULTS"

    echo "== $backend: throughput over $PENDING pending requests" >&2
    $LOAD seed --database-url "$url" --client-id "$cid" --user-sub="$sub" --pending-from 1001 --pending-to "$PENDING" >&2
    sleep 2  # the first 1,000 were just polled: a well-behaved client waits the interval
    "${poll[@]}" --ids "seeded:$PENDING" --phase poll-throughput >> "$RESULTS"

    echo "== $backend: $FILLER stored requests, paced" >&2
    $LOAD seed --database-url "$url" --client-id "$cid" --user-sub="$sub" --filler $((FILLER - PENDING)) >&2
    sleep 2
    "${poll[@]}" --ids seeded:1000 --rate "$RATE" --phase poll-paced-1m >> "$RESULTS"

    echo "== $backend: full flows" >&2
    local code
    code=$($API admin --json enrollment-codes create --nnin $NNIN | json code)
    $LOAD flows-ours --base "$BASE" --client-id="$cid" --secret="$secret" --nnin $NNIN --enrollment-code="$code" \
        --seconds "$SECS" --target "$backend" >> "$RESULTS"

    local rss
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    echo "{\"phase\": \"memory\", \"target\": \"$backend\", \"peak_rss_kib\": $rss}" >> "$RESULTS"
    kill -TERM $pid; wait $pid || true
}

# PostgreSQL: a fresh database for the run.
PG_DB=ciba_bench_$$
psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
bench_ours postgres "${PG_ADMIN%/*}/$PG_DB"

# SQLite: a fresh file.
SQLITE_DIR=$(mktemp -d)
bench_ours sqlite "sqlite://$SQLITE_DIR/ciba.db"
rm -rf "$SQLITE_DIR"

# The peer.
echo "== peer: node-oidc-provider" >&2
port_free 18490
PEER_PORT=18490 node bench/peer/peer.mjs > "$OUT/peer.log" 2>&1 &
PEER=$!
PIDS+=("$PEER")
wait_ready "http://127.0.0.1:18490/.well-known/openid-configuration" "$PEER"
PEER_BASE=http://127.0.0.1:18490
$LOAD seed-peer --base $PEER_BASE --client-id bench --secret bench-secret --count "$PENDING" --out "$OUT/peer-ids.txt" >&2
$LOAD poll --token-url $PEER_BASE/token --client-id bench --secret bench-secret --ids "$OUT/peer-ids.txt" \
    --connections $CONNS --seconds "$SECS" --target peer --phase poll-throughput >> "$RESULTS"
$LOAD flows-peer --base $PEER_BASE --client-id bench --secret bench-secret --seconds "$SECS" >> "$RESULTS"
echo "{\"phase\": \"memory\", \"target\": \"peer\", \"peak_rss_kib\": $(awk '/VmHWM/ {print $2}' /proc/$PEER/status)}" >> "$RESULTS"
kill $PEER; wait $PEER 2>/dev/null || true

python3 bench/report.py "$RESULTS" > "$OUT/RESULTS.md"
cat "$OUT/RESULTS.md"
