#!/usr/bin/env bash
# openapi.yaml in CI: lint it, then let schemathesis fuzz the live server (SQLite and
# PostgreSQL) against it. Fails on any 5xx or any response the document does not describe.
#
#   bash .ci/openapi/run.sh            # both backends (PostgreSQL via CIBA_TEST_PG_URL)
#   ST_MAX_EXAMPLES=200 bash .ci/openapi/run.sh
#
# Needs: node/npm (redocly), python3/pip (schemathesis), a built ciba-api (in $CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/../.."

REDOCLY_VERSION=2.77.0
SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-100}"
PG_URL="${CIBA_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
NNIN=15058510170
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '==> %s\n' "$*"; }

log "redocly lint openapi.yaml"
npx --yes "@redocly/cli@${REDOCLY_VERSION}" lint --format=stylish openapi.yaml

if ! schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    log "installing schemathesis $SCHEMATHESIS_VERSION"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        "schemathesis==${SCHEMATHESIS_VERSION}" cryptography requests
fi
source .ci/bin-dir.sh
[ -x "$BIN_DIR/ciba-api" ] || cargo build -q -p ciba-api
BIN="$BIN_DIR/ciba-api"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One backend: a fresh database, a server, a client, a user, a device; then schemathesis.
check_backend() {
    local name="$1" url="$2" port
    port="$(free_port)"
    export DATABASE_URL="$url" CIBA_LISTEN="127.0.0.1:$port" CIBA_ISSUER="http://127.0.0.1:$port"
    export CIBA_KEY_ENCRYPTION_KEY="${CIBA_KEY_ENCRYPTION_KEY:-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}"
    export RUST_LOG=warn
    # Fuzzing sends many wrong credentials and starts from one address: with the abuse limits
    # on, most answers would be 429 and the rest of the surface would go untested. The limits
    # have their own tests (api/tests/abuse); 429 is still in the spec and checked if it occurs.
    export CIBA_LIMIT_AUTH_FAILURES=0 CIBA_LIMIT_USER_STARTS=0 CIBA_AUTH_FAILURE_DELAY_MS=0
    "$BIN" migrate >/dev/null
    local client
    client="$("$BIN" admin --json clients create --name "Schemathesis Shop" \
        --scope "permissions/client permissions/app2app permissions/ciba permissions/text openid profile sub_bankid" \
        --callback-uri https://merchant.example/app2app/return)"
    export CIBA_ST_CLIENT_ID CIBA_ST_CLIENT_SECRET CIBA_ST_ENROLLMENT_CODE CIBA_ST_NNIN="$NNIN"
    CIBA_ST_CLIENT_ID="$(jq -r .client_id <<<"$client")"
    CIBA_ST_CLIENT_SECRET="$(jq -r .client_secret <<<"$client")"
    "$BIN" admin --json users create --nnin "$NNIN" --given-name Kari --family-name Nordmann \
        --birthdate 1985-05-15 >/dev/null
    CIBA_ST_ENROLLMENT_CODE="$("$BIN" admin --json enrollment-codes create --nnin "$NNIN" | jq -r .code)"

    "$BIN" >"$WORK/$name-server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    python3 .ci/openapi/fixture.py "http://127.0.0.1:$port" "$WORK/$name-fixture.json"

    log "schemathesis on $name ($MAX_EXAMPLES examples per operation)"
    CIBA_ST_FIXTURE="$WORK/$name-fixture.json" CIBA_ST_COUNTS="$WORK/$name-counts.json" \
        PYTHONPATH=.ci/openapi SCHEMATHESIS_HOOKS=hooks \
        schemathesis run "http://127.0.0.1:$port/openapi.yaml" \
        --url "http://127.0.0.1:$port" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
        --phases examples,coverage,fuzzing \
        --max-examples "$MAX_EXAMPLES" \
        --generation-deterministic \
        --no-color
    log "requests per operation on $name:"
    jq -r 'to_entries[] | "    \(.value.requests)\t\(.key)\t\(.value.statuses | tojson)"' "$WORK/$name-counts.json"
    if grep -q 'panicked' "$WORK/$name-server.log"; then
        log "the server panicked:"; grep -n 'panicked' "$WORK/$name-server.log"; exit 1
    fi
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}

check_backend sqlite "sqlite://$WORK/ciba.db"

db="ciba_openapi_$$"
psql "$PG_URL" -qAtc "DROP DATABASE IF EXISTS $db" >/dev/null
psql "$PG_URL" -qAtc "CREATE DATABASE $db" >/dev/null
check_backend postgres "${PG_URL%/*}/$db"
psql "$PG_URL" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
log "openapi: lint and conformance passed"
