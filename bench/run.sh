#!/usr/bin/env bash
# The benchmark of issue 5, reproducible by anyone: `bash bench/run.sh` (about 9 minutes).
# It starts a release ciba-api on PostgreSQL, one on SQLite, and node-oidc-provider (CIBA poll
# mode, one client_secret_basic client), all at once, and measures
#   - pending-poll throughput and p50/p99 at 64 connections over many distinct pending
#     requests, in rounds that alternate the three targets (so the host's drift from minute to
#     minute falls on all three alike),
#   - poll p50 at 1,000 and at 1,000,000 stored requests (paced load on 1,000 pending ids; two
#     databases, each with its own API process, polled in alternated rounds),
#   - polls that come too fast (64 connections over 2,000 pending requests each, so nearly
#     every answer is slow_down), in alternated rounds of the three targets like the above,
#   - full flows per second (permission → app-authorize → signed approval → token; the peer:
#     backchannel request → approval → token), in alternated rounds of the three targets,
#   - each server's peak resident memory,
#   - paced polls without and with a flood of failing client authentications at the token
#     endpoint (64 connections: wrong secrets for the polling client; made-up client ids), in
#     alternated rounds on one API process per database, and how the flood was answered,
#   - that process's resident memory before and after 10,000 requests with 100 KB client ids,
# and writes bench/out/results.jsonl and bench/out/RESULTS.md.
# Knobs: BENCH_SECONDS (per measurement, split over the rounds; 15), BENCH_ROUNDS (5),
# BENCH_PENDING (50000), BENCH_FILLER (1000000), BENCH_RATE (paced phases, 900/s),
# BENCH_FLOOD_CONNS (64), BENCH_OVERSIZED (requests with oversized ids; 10000),
# BENCH_ONLY=flood (only the flood and oversized-id phases, no peer), BENCH_ONLY=polls (only
# the throughput and too-fast phases) or BENCH_ONLY=flows (only the full flows),
# BENCH_PROFILE=1 (after the flow rounds, one more round per target under `perf record -a`:
# bench/out/profile-*.txt; after the too-fast rounds, one well-paced and one too-fast round
# of each of ours: bench/out/profile-polls-*.txt),
# BENCH_PG_URL (admin URL of a running PostgreSQL server; default: a private one made for the
# run with production's settings, bench/private-pg.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-15}
PENDING=${BENCH_PENDING:-50000}
FILLER=${BENCH_FILLER:-1000000}
RATE=${BENCH_RATE:-900}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND_SECS=$(( (SECS + ROUNDS - 1) / ROUNDS ))  # each stored size is polled SECS in all
CONNS=64
FLOOD_CONNS=${BENCH_FLOOD_CONNS:-64}
FLOOD_FIRST=$((PENDING + 1)) FLOOD_LAST=$((PENDING + 2000))  # the flood phase's own pending requests
FAST_FIRST=$((PENDING + 2001)) FAST_LAST=$((PENDING + 4000))  # the too-fast phase's own
OVERSIZED=${BENCH_OVERSIZED:-10000}
ONLY=${BENCH_ONLY:-}
case "$ONLY" in ""|flood|polls|flows) ;; *) echo "BENCH_ONLY: empty, flood, polls or flows, not $ONLY" >&2; exit 1 ;; esac
OUT=bench/out
source bench/private-pg.sh
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

cargo build --release --quiet -p ciba-api -p ciba-bench
API=target/release/ciba-api
LOAD=target/release/ciba-bench
[ "$ONLY" = flood ] || (cd bench/peer && npm install --silent --no-audit --no-fund >/dev/null 2>&1)

NNIN=01019010046            # a made-up number with valid check digits
PORT=18480         # the PostgreSQL API
SQLITE_PORT=18482
SMALL_PORT=18481   # the API on the 1,000-request database of the paced comparison
FLOOD_PORT=18483   # the API of the flood phase (on the measured database)
PEER_PORT=18490
export CIBA_POLL_INTERVAL=1 RUST_LOG=warn
# One merchant and one user run every flow here: the abuse limits stay on (their cost is
# measured) but out of reach, where the defaults would refuse most flows.
export CIBA_LIMIT_USER_STARTS=1000000/60 CIBA_LIMIT_CLIENT_STARTS=1000000/60 CIBA_LIMIT_CLIENT_REGISTRATIONS=1000000/60
# Each round of flows enrolls its own phone for the bench user.
export CIBA_MAX_DEVICES_PER_USER=100
export CIBA_KEY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "${PG_DB:-}" ]; then
        for db in "$PG_DB" "${PG_DB}_small"; do
            psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
        done
    fi
    private_pg_stop
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

# start_ours BACKEND URL PORT: a fresh database with $PENDING pending requests and its API.
declare -A CIDS SECRETS SUBS URLS API_PIDS BASES
start_ours() {
    local backend=$1 url=$2 port=$3
    new_db "$url"
    CIDS[$backend]=$CID SECRETS[$backend]=$SECRET SUBS[$backend]=$SUB URLS[$backend]=$url
    BASES[$backend]=http://127.0.0.1:$port
    start_api "$url" "$port" "$OUT/api-$backend.log"
    API_PIDS[$backend]=$API_PID
    $LOAD seed --database-url "$url" --client-id="$CID" --user-sub="$SUB" --pending-from 1 --pending-to "$PENDING" >&2
}

# poll_round TARGET SECONDS PHASE [IDS PEER_IDS]: closed-loop polls of one target's pending
# requests (ours: seeded:1-$PENDING unless IDS; the peer's: peer-ids.txt unless PEER_IDS).
poll_round() {
    local t=$1 secs=$2 phase=$3 ids=${4:-seeded:$PENDING} peer_ids=${5:-$OUT/peer-ids.txt}
    if [ "$t" = peer ]; then
        $LOAD poll --token-url "$PEER_BASE/token" --client-id=bench --secret=bench-secret --ids "$peer_ids" \
            --connections $CONNS --seconds "$secs" --target peer --phase "$phase"
    else
        $LOAD poll --token-url "${BASES[$t]}/oidc/v1/token" --client-id="${CIDS[$t]}" --secret="${SECRETS[$t]}" \
            --ids "$ids" --connections $CONNS --seconds "$secs" --target "$t" --phase "$phase"
    fi
}

# too_fast_rounds: 64 connections over 2,000 pending requests of each target, as fast as
# answers come: each request is polled many times a second, so after its first poll nearly
# every answer is slow_down (and the interval soon at its maximum). Alternated rounds as for
# the throughput, which this is compared with.
too_fast_rounds() {
    echo "== polls too fast: $ROUNDS rounds of postgres, sqlite, peer over 2,000 pending requests each" >&2
    for t in postgres sqlite; do
        $LOAD seed --database-url "${URLS[$t]}" --client-id="${CIDS[$t]}" --user-sub="${SUBS[$t]}" \
            --pending-from $FAST_FIRST --pending-to $FAST_LAST >&2
    done
    $LOAD seed-peer --base $PEER_BASE --client-id=bench --secret=bench-secret --count 2000 --out "$OUT/peer-fast-ids.txt" >&2
    for t in postgres sqlite peer; do
        poll_round $t 2 warm-up "seeded:$FAST_FIRST-$FAST_LAST" "$OUT/peer-fast-ids.txt" >/dev/null
    done
    for _ in $(seq 1 "$ROUNDS"); do
        for t in postgres sqlite peer; do
            poll_round $t "$ROUND_SECS" poll-too-fast "seeded:$FAST_FIRST-$FAST_LAST" "$OUT/peer-fast-ids.txt" >> "$RESULTS"
        done
    done
}

# paced_comparison BACKEND SMALL_URL: poll cost at 1,000 and at $FILLER stored requests. The
# measured database grows to $FILLER; SMALL_URL holds 1,000, served by a second API process.
paced_comparison() {
    local backend=$1 small_url=$2 url=${URLS[$1]}
    echo "== $backend: poll cost at 1,000 and at $FILLER stored requests, alternated" >&2
    $LOAD seed --database-url "$url" --client-id="${CIDS[$backend]}" --user-sub="${SUBS[$backend]}" --filler $((FILLER - PENDING)) >&2
    new_db "$small_url"
    $LOAD seed --database-url "$small_url" --client-id="$CID" --user-sub="$SUB" --pending-from 1 --pending-to 1000 >&2
    start_api "$small_url" $SMALL_PORT "$OUT/api-$backend-small.log"
    local small_pid=$API_PID
    local small=("$LOAD" poll --token-url "http://127.0.0.1:$SMALL_PORT/oidc/v1/token" --client-id="$CID" --secret="$SECRET"
                 --connections $CONNS --target "$backend" --ids seeded:1000 --rate "$RATE")
    local large=("$LOAD" poll --token-url "${BASES[$backend]}/oidc/v1/token" --client-id="${CIDS[$backend]}"
                 --secret="${SECRETS[$backend]}" --connections $CONNS --target "$backend" --ids seeded:1000 --rate "$RATE")
    sleep 2  # a well-behaved client waits the interval after the throughput rounds
    "${small[@]}" --seconds 2 --phase warm-up >/dev/null
    "${large[@]}" --seconds 2 --phase warm-up >/dev/null
    for _ in $(seq 1 "$ROUNDS"); do
        "${small[@]}" --seconds "$ROUND_SECS" --phase poll-paced-1k >> "$RESULTS"
        "${large[@]}" --seconds "$ROUND_SECS" --phase poll-paced-1m >> "$RESULTS"
    done
    kill -TERM "$small_pid"; wait "$small_pid" || true
}

# flow_round TARGET [PERF_OUT]: one round of full flows (ours: with a phone enrolled for the
# round); with PERF_OUT, the whole machine is sampled meanwhile (perf record -a -g).
flow_round() {
    local t=$1 perf_out=${2:-} code
    local profile=()
    [ -z "$perf_out" ] || profile=(perf record -q -a -g -F 999 -o "$perf_out" --)
    if [ "$t" = peer ]; then
        "${profile[@]}" $LOAD flows-peer --base $PEER_BASE --client-id=bench --secret=bench-secret --seconds "$ROUND_SECS"
    else
        code=$(DATABASE_URL=${URLS[$t]} $API admin --json enrollment-codes create --nnin $NNIN | json code)
        "${profile[@]}" $LOAD flows-ours --base "${BASES[$t]}" --client-id="${CIDS[$t]}" --secret="${SECRETS[$t]}" --nnin $NNIN \
            --enrollment-code="$code" --seconds "$ROUND_SECS" --target "$t"
    fi
}

# perf_summary DATA JSONL OUT: the round's result line, then where the machine's samples went,
# by process and by function.
perf_summary() {
    {
        cat "$2"
        echo "-- samples by process"
        (perf report -q -i "$1" --no-children --sort comm --stdio -g none 2>/dev/null | head -20) || true
        echo "-- samples by process and function"
        (perf report -q -i "$1" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null | head -60) || true
    } > "$3"
}

# profile_flows: BENCH_PROFILE=1: one more round of flows per target under perf, and where
# the machine's samples went, by process and by function ($OUT/profile-TARGET.txt).
profile_flows() {
    command -v perf >/dev/null || { echo "BENCH_PROFILE: perf is not installed" >&2; return 1; }
    for t in postgres sqlite peer; do
        echo "== $t: one round of flows under perf" >&2
        flow_round $t "$OUT/perf-$t.data" > "$OUT/profile-$t.jsonl"
        perf_summary "$OUT/perf-$t.data" "$OUT/profile-$t.jsonl" "$OUT/profile-$t.txt"
    done
}

# profile_polls: BENCH_PROFILE=1: after the too-fast rounds, one well-paced and one too-fast
# round of each of our targets under `perf record -a`, so the two answers' costs can be set
# side by side ($OUT/profile-polls-TARGET-paced.txt, ...-too-fast.txt).
profile_polls() {
    command -v perf >/dev/null || { echo "BENCH_PROFILE: perf is not installed" >&2; return 1; }
    local t kind ids
    for t in postgres sqlite; do
        for kind in paced too-fast; do
            echo "== $t: one round of $kind polls under perf" >&2
            ids=seeded:$PENDING
            [ "$kind" = paced ] || ids=seeded:$FAST_FIRST-$FAST_LAST
            local base=$OUT/profile-polls-$t-$kind
            perf record -q -a -g -F 999 -o "$base.data" -- \
                "$LOAD" poll --token-url "${BASES[$t]}/oidc/v1/token" --client-id="${CIDS[$t]}" \
                --secret="${SECRETS[$t]}" --ids "$ids" --connections $CONNS --seconds "$ROUND_SECS" \
                --target "$t" --phase "profile-$kind" > "$base.jsonl"
            perf_summary "$base.data" "$base.jsonl" "$base.txt"
        done
    done
}

# peak_memory TARGET PID: the process's peak resident memory over all its phases.
peak_memory() {
    echo "{\"phase\": \"memory\", \"target\": \"$1\", \"peak_rss_kib\": $(awk '/VmHWM/ {print $2}' "/proc/$2/status")}" >> "$RESULTS"
}

# flood_rounds BACKEND PREFIX ROUNDS [SOURCE]: on the API at $FLOOD_PORT, paced polls of the
# bench client alone, then the same during a flood of failing client authentications (sent
# from SOURCE if given), ROUNDS times alternated: the host's drift falls on both alike. The
# polled requests are 2,000 of their own (each polled every 2.2 s at 900/s): no other phase
# has polled them (too fast at times: slow_down), so each is answered authorization_pending.
flood_rounds() {
    local backend=$1 prefix=$2 n=$3 source=${4:-}
    local url=http://127.0.0.1:$FLOOD_PORT/oidc/v1/token
    local polls=("$LOAD" poll --token-url "$url" --client-id="${CIDS[$backend]}" --secret="${SECRETS[$backend]}"
                 --connections $CONNS --target "$backend" --ids "seeded:$FLOOD_FIRST-$FLOOD_LAST" --rate "$RATE")
    local flood=("$LOAD" flood --token-url "$url" --client-id="${CIDS[$backend]}" --connections $FLOOD_CONNS
                 --pid "$API_PID" --target "$backend" --phase "$prefix-load" ${source:+--source "$source"})
    sleep 2  # a well-behaved client waits the interval after the previous phase
    # also verifies the client's secret once: from then on its polls are answered from memory
    "${polls[@]}" --seconds 2 --phase warm-up >/dev/null
    local flood_pid
    for _ in $(seq 1 "$n"); do
        "${polls[@]}" --seconds "$ROUND_SECS" --phase "$prefix-polls-quiet" >> "$RESULTS"
        "${flood[@]}" --seconds $((ROUND_SECS + 2)) >> "$RESULTS" &
        flood_pid=$!
        sleep 1  # the flood at full strength before the polls start
        "${polls[@]}" --seconds "$ROUND_SECS" --phase "$prefix-polls-flooded" >> "$RESULTS"
        wait "$flood_pid"
        sleep 1  # the hashing queue the flood left drains before the next quiet round
    done
}

# flood_phase BACKEND: polls without and with a flood, then memory over oversized ids, on a
# second API process on the measured database. That process runs with
# CIBA_LIMIT_AUTH_FAILURES=0: all the load comes from 127.0.0.1, and the per-address limit
# would refuse the flood from memory before it reaches the hashing pool; the pool's bounds
# are the harder case, measured here. A short run with the default address limit follows,
# the flood sent from 127.0.0.2 so that the limit refuses it and not the polls.
flood_phase() {
    local backend=$1
    echo "== $backend: polls without and with a flood of failing client authentications, alternated" >&2
    $LOAD seed --database-url "${URLS[$backend]}" --client-id="${CIDS[$backend]}" --user-sub="${SUBS[$backend]}" \
        --pending-from $FLOOD_FIRST --pending-to $FLOOD_LAST >&2
    CIBA_LIMIT_AUTH_FAILURES=0 start_api "${URLS[$backend]}" $FLOOD_PORT "$OUT/api-$backend-flood.log"
    flood_rounds "$backend" flood "$ROUNDS"
    kill -TERM "$API_PID"; wait "$API_PID" || true
    # Memory: refused authentications answered at once (no CIBA_AUTH_FAILURE_DELAY_MS), so the
    # 10,000 requests arrive as fast as the server takes them.
    echo "== $backend: resident memory over $OVERSIZED requests with 100 KB client ids" >&2
    CIBA_LIMIT_AUTH_FAILURES=0 CIBA_AUTH_FAILURE_DELAY_MS=0 start_api "${URLS[$backend]}" $FLOOD_PORT "$OUT/api-$backend-oversized.log"
    $LOAD oversized --token-url "http://127.0.0.1:$FLOOD_PORT/oidc/v1/token" --pid "$API_PID" --requests "$OVERSIZED" \
        --target "$backend" --phase oversized >> "$RESULTS"
    kill -TERM "$API_PID"; wait "$API_PID" || true
    echo "== $backend: the same with the default address limit, the flood from 127.0.0.2" >&2
    start_api "${URLS[$backend]}" $FLOOD_PORT "$OUT/api-$backend-flood-limited.log"
    flood_rounds "$backend" flood-limited 1 127.0.0.2
    kill -TERM "$API_PID"; wait "$API_PID" || true
}

# Every server is up at once (idle while another is measured), each with its own pending set.
private_pg_start 18499
PG_DB=ciba_bench_$$
psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
psql "$PG_ADMIN" -qc "CREATE DATABASE ${PG_DB}_small" >/dev/null
SQLITE_DIR=$(mktemp -d)
start_ours postgres "${PG_ADMIN%/*}/$PG_DB" $PORT
start_ours sqlite "sqlite://$SQLITE_DIR/ciba.db" $SQLITE_PORT

if [ "$ONLY" = flood ]; then
    flood_phase postgres
    flood_phase sqlite
    rm -rf "$SQLITE_DIR"
    python3 bench/report.py "$RESULTS" > "$OUT/RESULTS.md"
    cat "$OUT/RESULTS.md"
    exit 0
fi

port_free $PEER_PORT
PEER_PORT=$PEER_PORT node bench/peer/peer.mjs > "$OUT/peer.log" 2>&1 &
PEER=$!
PIDS+=("$PEER")
PEER_BASE=http://127.0.0.1:$PEER_PORT
wait_ready "$PEER_BASE/.well-known/openid-configuration" "$PEER"
$LOAD seed-peer --base $PEER_BASE --client-id=bench --secret=bench-secret --count "$PENDING" --out "$OUT/peer-ids.txt" >&2

# Throughput in alternated rounds: the host's speed drifts from minute to minute (by a
# quarter on some hosts), and rounds spread that drift over the three targets alike.
if [ "$ONLY" != flows ]; then
    echo "== throughput over $PENDING pending requests each: $ROUNDS rounds of postgres, sqlite, peer" >&2
    for _ in $(seq 1 "$ROUNDS"); do
        for t in postgres sqlite peer; do poll_round $t "$ROUND_SECS" poll-throughput >> "$RESULTS"; done
    done
    too_fast_rounds
    [ -z "${BENCH_PROFILE:-}" ] || profile_polls
fi
if [ "$ONLY" = polls ]; then
    kill $PEER; wait $PEER 2>/dev/null || true
    rm -rf "$SQLITE_DIR"
    python3 bench/report.py "$RESULTS" > "$OUT/RESULTS.md"
    cat "$OUT/RESULTS.md"
    exit 0
fi

if [ "$ONLY" != flows ]; then
    paced_comparison postgres "${PG_ADMIN%/*}/${PG_DB}_small"
    paced_comparison sqlite "sqlite://$SQLITE_DIR/small.db"
    flood_phase postgres
    flood_phase sqlite
fi
# Full flows in alternated rounds, as the throughput: the host's drift falls on all three.
echo "== full flows: $ROUNDS rounds of postgres, sqlite, peer" >&2
for t in postgres sqlite peer; do flow_round $t >/dev/null; done  # warm-up (the peer's JIT too)
# The seeding's ANALYZE saw no permissions (flows make them): a server in service has
# statistics of the tables its traffic writes, which autovacuum keeps within a minute or so;
# a 3-second round is shorter than its naptime. Without this, plans cached on the pooled
# connections keep treating those tables as empty (a sequential scan of a table that grows
# with every flow). ANALYZE also invalidates those plans, as autovacuum's would.
psql "${URLS[postgres]}" -qc ANALYZE
for _ in $(seq 1 "$ROUNDS"); do
    for t in postgres sqlite peer; do flow_round $t >> "$RESULTS"; done
done
[ -z "${BENCH_PROFILE:-}" ] || profile_flows
for t in postgres sqlite; do
    peak_memory $t "${API_PIDS[$t]}"
    kill -TERM "${API_PIDS[$t]}"; wait "${API_PIDS[$t]}" || true
done
peak_memory peer $PEER
kill $PEER; wait $PEER 2>/dev/null || true
rm -rf "$SQLITE_DIR"

python3 bench/report.py "$RESULTS" > "$OUT/RESULTS.md"
cat "$OUT/RESULTS.md"
