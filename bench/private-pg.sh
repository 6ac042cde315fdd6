# Sourced by bench/run.sh and bench/soak.sh: the PostgreSQL server they measure on.
# By default a private server made for the run (initdb from the installed PostgreSQL, its
# default settings: autovacuum on, fsync on, as in production). A long run on a server with
# autovacuum off (this project's CI machines turn it off) measures dead rows piling up, not
# the service: every later round slower than the first. BENCH_PG_URL=URL (an admin URL) uses a
# running server instead; BENCH_PG_OPTIONS adds server settings to the private one (diagnosis
# only, e.g. "-c synchronous_commit=off" to see what durable commits cost; never a result).
#   private_pg_start PORT   sets PG_ADMIN; private_pg_stop (call it from the EXIT trap)
PG_DIR=

# pg_tool TOOL ARGS: an installed PostgreSQL program, as the postgres user when run as root.
pg_tool() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bin" ] || bin=$(pg_config --bindir)
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/$1" "${@:2}"; else "$bin/$1" "${@:2}"; fi
}

private_pg_start() {
    if [ -n "${BENCH_PG_URL:-}" ]; then
        PG_ADMIN=$BENCH_PG_URL
    else
        PG_DIR=$(mktemp -d)
        [ "$(id -u)" != 0 ] || chown postgres "$PG_DIR"
        pg_tool initdb -D "$PG_DIR/data" -A trust -U postgres -E UTF8 >/dev/null
        pg_tool pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/log" -w start \
            -o "-p $1 -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 ${BENCH_PG_OPTIONS:-}" >/dev/null
        PG_ADMIN=postgres://postgres@127.0.0.1:$1/postgres
    fi
    echo "== PostgreSQL $(psql "$PG_ADMIN" -Atc 'SHOW server_version'): autovacuum $(psql "$PG_ADMIN" -Atc 'SHOW autovacuum'), fsync $(psql "$PG_ADMIN" -Atc 'SHOW fsync'), synchronous_commit $(psql "$PG_ADMIN" -Atc 'SHOW synchronous_commit')" >&2
}

private_pg_stop() {
    if [ -n "$PG_DIR" ]; then
        pg_tool pg_ctl -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
        PG_DIR=
    fi
}
