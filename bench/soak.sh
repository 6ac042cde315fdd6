#!/usr/bin/env bash
# The soak of issue 24: `bash bench/soak.sh` (10 minutes of load, about 13 in all). Two release
# `ciba-api` replicas and two `ciba-worker`s on one fresh PostgreSQL database; `ciba-bench soak`
# sends paced polls (over 2,000 pending requests), full App2App flows and ping flows (its own
# notification endpoint receives the pings) to the replicas in turn, and samples once a minute
# each replica's resident memory, the database's and the replicas' open connections, and the
# p99 of each kind of load. Writes bench/out/soak.jsonl and the chart bench/soak.svg, and prints
# the second and last minutes side by side (target: RSS and p99 within 1.2x).
# The load is paced (a steady mixed load, as production sees, not as much as the machine takes):
# SOAK_POLL_RATE (300 polls/s), SOAK_FLOW_RATE (20 flows/s), SOAK_PING_RATE (4 ping flows/s).
# Other knobs: SOAK_MINUTES (10), SOAK_WINDOW (seconds per sample, 60), BENCH_PG_URL (a running
# PostgreSQL server's admin URL; default: a private one with production's settings, autovacuum
# on, made for the run by bench/private-pg.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${SOAK_MINUTES:-10}
WINDOW=${SOAK_WINDOW:-60}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --quiet -p ciba-api -p ciba-worker -p ciba-bench
API=target/release/ciba-api WORKER=target/release/ciba-worker LOAD=target/release/ciba-bench

DB=ciba_soak_$$
PORTS=(18580 18581) WORKER_PORTS=(18591 18592) PING_PORT=18590 PG_PORT=18599
PIDS=()
source bench/private-pg.sh
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    private_pg_stop
}
trap cleanup EXIT
private_pg_start $PG_PORT
URL="${PG_ADMIN%/*}/$DB"
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null

export DATABASE_URL=$URL RUST_LOG=warn
export CIBA_KEY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
export CIBA_ISSUER=http://127.0.0.1:${PORTS[0]}   # one issuer, two replicas
# One merchant and one user run every flow: the abuse limits stay on but out of reach.
export CIBA_LIMIT_USER_STARTS=1000000/60 CIBA_LIMIT_CLIENT_STARTS=1000000/60 CIBA_LIMIT_CLIENT_REGISTRATIONS=1000000/60
export CIBA_ACCESS_TOKEN_TTL=7200   # the merchants' tokens outlive the soak
export CIBA_ALLOW_INSECURE_CALLBACKS=true CIBA_PING_ALLOWED_NETWORKS=127.0.0.0/8

json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
wait_ready() {
    for _ in $(seq 1 300); do
        curl -sf -m 2 "$1" >/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { echo "process $2 exited; see $OUT" >&2; return 1; }
        sleep 0.1
    done
    echo "not ready: $1" >&2; return 1
}

$API migrate >/dev/null
creds=$($API admin --json clients create --name Soak --scope "permissions/client permissions/app2app openid" \
    --callback-uri https://merchant.app/app_callback)
CID=$(echo "$creds" | json client_id) SECRET=$(echo "$creds" | json client_secret)
creds=$($API admin --json clients create --name "Soak ping" --scope "permissions/client permissions/app2app openid" \
    --callback-uri https://merchant.app/app_callback --delivery-mode ping \
    --notification-endpoint "http://127.0.0.1:$PING_PORT/ping")
PING_CID=$(echo "$creds" | json client_id) PING_SECRET=$(echo "$creds" | json client_secret)
NNIN=01019010046
SUB=$($API admin --json users create --nnin $NNIN --given-name Soak --family-name User --birthdate 1990-01-01 | json sub)
CODE=$($API admin --json enrollment-codes create --nnin $NNIN | json code)
$LOAD seed --database-url "$URL" --client-id="$CID" --user-sub="$SUB" --pending-from 1 --pending-to 2000 >&2

api_pids=() bases=()
for i in 0 1; do
    CIBA_LISTEN=127.0.0.1:${PORTS[i]} $API >"$OUT/soak-api-$i.log" 2>&1 &
    PIDS+=($!) api_pids+=($!) bases+=("http://127.0.0.1:${PORTS[i]}")
    wait_ready "http://127.0.0.1:${PORTS[i]}/readyz" $!
    CIBA_WORKER_LISTEN=127.0.0.1:${WORKER_PORTS[i]} $WORKER >"$OUT/soak-worker-$i.log" 2>&1 &
    PIDS+=($!)
done

echo "== soak: $MINUTES minutes on ${bases[*]}" >&2
$LOAD soak --bases "$(IFS=,; echo "${bases[*]}")" --pids "$(IFS=,; echo "${api_pids[*]}")" \
    --database-url "$URL" --poll-ids seeded:1-2000 --poll-rate "${SOAK_POLL_RATE:-300}" \
    --flow-rate "${SOAK_FLOW_RATE:-20}" --ping-rate "${SOAK_PING_RATE:-4}" \
    --ping-listen 127.0.0.1:$PING_PORT --minutes "$MINUTES" --window-secs "$WINDOW" \
    --svg bench/soak.svg --issuer "$CIBA_ISSUER" --client-id="$CID" --secret="$SECRET" \
    --ping-client-id="$PING_CID" --ping-secret="$PING_SECRET" --nnin $NNIN --enrollment-code="$CODE" \
    | tee "$OUT/soak.jsonl"

# Where the database's time went: sequential scans and dead rows per table, after the load.
psql "$URL" -qc "SELECT relname, seq_scan, seq_tup_read, idx_scan, n_live_tup, n_dead_tup, autovacuum_count
                 FROM pg_stat_user_tables ORDER BY seq_tup_read DESC" > "$OUT/soak-tables.txt"

python3 - "$OUT/soak.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if len(rows) < 2:
    sys.exit("fewer than two windows")
second, last = rows[1], rows[-1]
def show(name, a, b):
    ratio = b / a if a else float("inf")
    print(f"{name:28} {a:10.2f} {b:10.2f}   {ratio:5.2f}x {'ok' if ratio <= 1.2 else 'OVER 1.2x'}")
print(f"{'':28} {'window 2':>10} {'window ' + str(last['window']):>10}")
for i, _ in enumerate(second["rss_mib"]):
    show(f"RSS api-{i + 1} (MiB)", second["rss_mib"][i], last["rss_mib"][i])
for kind in ("polls", "flows", "pings"):
    show(f"{kind} p99 (ms)", second[kind]["p99_ms"], last[kind]["p99_ms"])
print(f"{'db connections':28} {second['db_connections']:10} {last['db_connections']:10}")
for kind in ("polls", "flows", "pings"):
    total = sum(r[kind]["count"] for r in rows)
    bad = {k: sum(r[kind]["outcomes"].get(k, 0) for r in rows) for r in rows for k in r[kind]["outcomes"]}
    print(f"{kind}: {total} in all; outcomes {bad}")
print(f"duplicate pings: {sum(r['duplicate_pings'] for r in rows)}")
EOF
