#!/usr/bin/env bash
# The benchmark of issue 5, reproducible by anyone: `bash bench/run.sh` (about 6 minutes).
# For each of PostgreSQL and SQLite it starts a release ciba-api and measures
#   - pending-poll throughput and p50/p99 at 64 connections over many distinct pending requests,
#   - poll p50 at 1,000 and at 1,000,000 stored requests (paced load on 1,000 pending ids; two
#     databases, each with its own API process, polled in alternated rounds),
#   - full flows per second (permission → app-authorize → signed approval → token),
#   - the API's peak resident memory,
# then the same poll and flow load against node-oidc-provider (CIBA poll mode, one
# client_secret_basic client), and writes bench/out/results.jsonl and bench/out/RESULTS.md.
# Knobs: BENCH_SECONDS (per phase, 15), BENCH_PENDING (50000), BENCH_FILLER (1000000),
# BENCH_RATE (paced phases, 900/s), BENCH_ROUNDS (of the paced comparison, 5), CIBA_TEST_PG_URL (admin URL of a PostgreSQL server).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-15}
PENDING=${BENCH_PENDING:-50000}
FILLER=${BENCH_FILLER:-1000000}
RATE=${BENCH_RATE:-900}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND_SECS=$(( (SECS + ROUNDS - 1) / ROUNDS ))  # each stored size is polled SECS in all
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
SMALL_PORT=18481
export CIBA_POLL_INTERVAL=1 RUST_LOG=warn
export CIBA_KEY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
BASE=http://127.0.0.1:$PORT

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "${PG_DB:-}" ]; then
        for db in "$PG_DB" "${PG_DB}_small"; do
            psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
        done
    fi
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

# new_db URL: migrate it and register the bench's client and user; sets CID, SECRET, SUB.
new_db() {
    DATABASE_URL=$1 $API migrate >/dev/null
    local creds
    creds=$(DATABASE_URL=$1 $API admin --json clients create --name Bench --scope "permissions/client permissions/app2app openid" \
            --callback-uri https://merchant.app/app_callback)
    CID=$(echo "$creds" | json client_id); SECRET=$(echo "$creds" | json client_secret)
    SUB=$(DATABASE_URL=$1 $API admin --json users create --nnin $NNIN --given-name Bench --family-name User --birthdate 1990-01-01 | json sub)
}

# start_api URL PORT LOG: a ciba-api on that database and port; sets API_PID.
start_api() {
    port_free "$2"
    DATABASE_URL=$1 CIBA_LISTEN=127.0.0.1:$2 CIBA_ISSUER=http://127.0.0.1:$2 $API > "$3" 2>&1 &
    API_PID=$!
    PIDS+=("$API_PID")
    wait_ready "http://127.0.0.1:$2/readyz" "$API_PID"
}

# bench_ours BACKEND URL SMALL_URL: every phase of one backend. URL is the measured database
# (50,000 pending requests, then 1,000,000 stored); SMALL_URL holds 1,000 stored requests,
# served by a second API process, for the paced comparison.
bench_ours() {
    local backend=$1 url=$2 small_url=$3
    new_db "$url"
    local cid=$CID secret=$SECRET sub=$SUB
    start_api "$url" $PORT "$OUT/api-$backend.log"
    local pid=$API_PID
    local poll=("$LOAD" poll --token-url "$BASE/oidc/v1/token" --client-id="$cid" --secret="$secret" --connections $CONNS --target "$backend")

    echo "== $backend: throughput over $PENDING pending requests" >&2
    $LOAD seed --database-url "$url" --client-id "$cid" --user-sub="$sub" --pending-from 1 --pending-to "$PENDING" >&2
    "${poll[@]}" --ids "seeded:$PENDING" --seconds "$SECS" --phase poll-throughput >> "$RESULTS"

    echo "== $backend: poll cost at 1,000 and at $FILLER stored requests, alternated" >&2
    $LOAD seed --database-url "$url" --client-id "$cid" --user-sub="$sub" --filler $((FILLER - PENDING)) >&2
    new_db "$small_url"
    $LOAD seed --database-url "$small_url" --client-id "$CID" --user-sub="$SUB" --pending-from 1 --pending-to 1000 >&2
    start_api "$small_url" $SMALL_PORT "$OUT/api-$backend-small.log"
    local small_pid=$API_PID
    local small=("$LOAD" poll --token-url "http://127.0.0.1:$SMALL_PORT/oidc/v1/token" --client-id="$CID" --secret="$SECRET"
                 --connections $CONNS --target "$backend" --ids seeded:1000 --rate "$RATE")
    sleep 2  # the first 1,000 were just polled: a well-behaved client waits the interval
    # Rounds alternate the two, so that the machine's drift from minute to minute (larger than
    # the difference sought at sub-millisecond latencies) falls on both alike; one warm-up round.
    "${small[@]}" --seconds 2 --phase warm-up >/dev/null
    "${poll[@]}" --ids seeded:1000 --rate "$RATE" --seconds 2 --phase warm-up >/dev/null
    for _ in $(seq 1 "$ROUNDS"); do
        "${small[@]}" --seconds "$ROUND_SECS" --phase poll-paced-1k >> "$RESULTS"
        "${poll[@]}" --ids seeded:1000 --rate "$RATE" --seconds "$ROUND_SECS" --phase poll-paced-1m >> "$RESULTS"
    done
    kill -TERM "$small_pid"; wait "$small_pid" || true

    echo "== $backend: full flows" >&2
    local code
    code=$(DATABASE_URL=$url $API admin --json enrollment-codes create --nnin $NNIN | json code)
    $LOAD flows-ours --base "$BASE" --client-id="$cid" --secret="$secret" --nnin $NNIN --enrollment-code="$code" \
        --seconds "$SECS" --target "$backend" >> "$RESULTS"

    local rss
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    echo "{\"phase\": \"memory\", \"target\": \"$backend\", \"peak_rss_kib\": $rss}" >> "$RESULTS"
    kill -TERM $pid; wait $pid || true
}

# PostgreSQL: fresh databases for the run.
PG_DB=ciba_bench_$$
psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
psql "$PG_ADMIN" -qc "CREATE DATABASE ${PG_DB}_small" >/dev/null
bench_ours postgres "${PG_ADMIN%/*}/$PG_DB" "${PG_ADMIN%/*}/${PG_DB}_small"

# SQLite: fresh files.
SQLITE_DIR=$(mktemp -d)
bench_ours sqlite "sqlite://$SQLITE_DIR/ciba.db" "sqlite://$SQLITE_DIR/small.db"
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
