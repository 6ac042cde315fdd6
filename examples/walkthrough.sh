#!/usr/bin/env bash
# The README's "Walk-through with curl", runnable: a merchant, a user and the user's phone,
# from registering the merchant to an ID token the merchant has verified. CI runs it against
# a fresh server (.ci/walkthrough/run.sh), and checks that every line the README shows of it
# is here, in the same order.
#
#   bash examples/walkthrough.sh [BASE_URL]          # default http://127.0.0.1:8080
#
# The admin CLI must use the server's database: run this from the directory the server runs
# in, with the same DATABASE_URL (and CIBA_KEY_ENCRYPTION_KEY, if set). The programs it runs,
# as commands (split into words on blanks):
#   CIBA_API      the admin CLI           default: cargo run -q -p ciba-api --
#   CIBA_APP      the simulated app       default: cargo run -q -p ciba-api --example app --
#   CIBA_VERIFY   the merchant's checks   default: cargo run -q -p ciba-api --example merchant_verify --
# Needs bash, curl and jq.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true  # bash 4.4+

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

# curl that prints the answer's body, and stops with the server's answer on an HTTP error.
# The URL is its last argument.
http() {
    local body status
    body=$(mktemp)
    status=$(curl -sS -o "$body" -w '%{http_code}' "$@") || { rm -f "$body"; fail "no answer from ${!#}"; }
    if [ "$status" -lt 200 ] || [ "$status" -ge 300 ]; then
        printf '\nFAILED: HTTP %s from %s:\n' "$status" "${!#}" >&2
        cat "$body" >&2; echo >&2; rm -f "$body"; exit 1
    fi
    cat "$body"; rm -f "$body"
}

# Unpadded base64url of stdin.
b64url() { base64 | tr -d '\n=' | tr '+/' '-_'; }

# A synthetic test NNIN (fødselsnummer whose month is + 80, as the Norwegian test registry
# issues them: never a real person's): a random birth date in 1900-1999, an individual number
# 000-499 and the two mod-11 check digits (domain/src/nnin.rs). Random, so the walk-through can
# run again on the same database.
synthetic_nnin() {
    local k1=(3 7 6 1 8 9 4 5 2) k2=(5 4 3 2 7 6 5 4 3 2) n i s c
    while :; do
        n=$(printf '%02d%02d%02d%03d' $((RANDOM % 28 + 1)) $((RANDOM % 12 + 81)) $((RANDOM % 100)) $((RANDOM % 500)))
        s=0; for i in {0..8}; do s=$((s + ${n:i:1} * k1[i])); done
        c=$(((11 - s % 11) % 11)); [ "$c" -lt 10 ] || continue; n+=$c
        s=0; for i in {0..9}; do s=$((s + ${n:i:1} * k2[i])); done
        c=$(((11 - s % 11) % 11)); [ "$c" -lt 10 ] || continue
        echo "$n$c"; return
    done
}

for tool in curl jq; do command -v "$tool" >/dev/null || fail "$tool is needed"; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

base=${1:-http://127.0.0.1:8080}
read -r -a ciba_api <<<"${CIBA_API:-cargo run -q -p ciba-api --}"
read -r -a app <<<"${CIBA_APP:-cargo run -q -p ciba-api --example app --}"
read -r -a merchant_verify <<<"${CIBA_VERIFY:-cargo run -q -p ciba-api --example merchant_verify --}"
admin() { "${ciba_api[@]}" admin --json "$@"; }
callback=https://shop.example/app2app/callback

step "0. The server is ready; discovery names the issuer and the endpoints"
# The server may still be starting (the first `cargo run` compiles it): wait up to 10 min.
for _ in $(seq 600); do curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break; sleep 1; done
http "$base/readyz" >/dev/null
discovery=$(http "$base/.well-known/openid-configuration")
issuer=$(jq -r .issuer <<<"$discovery")
token_endpoint=$(jq -r .token_endpoint <<<"$discovery")
permissions_endpoint=$(jq -r .permissions_endpoint <<<"$discovery")
app_authorize_endpoint=$(jq -r .app_authentication_endpoint <<<"$discovery")
jq '{issuer, token_endpoint, permissions_endpoint, app_authentication_endpoint, jwks_uri}' <<<"$discovery"

step "1. The merchant: a client with the App2App scopes and its app's callback URI"
client=$(admin clients create --name "Walk-through Shop" \
    --scope "permissions/client permissions/app2app openid profile" --callback-uri "$callback")
client_id=$(jq -r .client_id <<<"$client")
client_secret=$(jq -r .client_secret <<<"$client")
echo "client_id: $client_id"

step "2. The user, with a synthetic NNIN"
nnin=$(synthetic_nnin)
birthdate=19${nnin:4:2}-$(printf '%02d' $((10#${nnin:2:2} - 80)))-${nnin:0:2}
admin users create --nnin "$nnin" --given-name Kari --family-name Nordmann --birthdate "$birthdate"

step "3. The user's iPhone: a one-time enrollment code, with which the app enrolls its key"
code=$(admin enrollment-codes create --nnin "$nnin" | jq -r .code)
device_id=$("${app[@]}" enroll --issuer "$issuer" --code "$code" --key-file "$work/phone-key.json" \
    --platform ios --manufacturer Apple --model iPhone11,2)
echo "device_id: $device_id"

step "4. The merchant's access token (client_credentials, client_secret_basic)"
token=$(http -u "$client_id:$client_secret" -d grant_type=client_credentials \
    --data-urlencode "scope=permissions/client permissions/app2app" "$token_endpoint")
access_token=$(jq -r .access_token <<<"$token")
jq '{token_type, expires_in, scope}' <<<"$token"
# A wrong secret: 401 invalid_client (with WWW-Authenticate).
status=$(curl -s -o /dev/null -w '%{http_code}' -u "$client_id:wrong" -d grant_type=client_credentials "$token_endpoint")
[ "$status" = 401 ] || fail "a wrong secret got HTTP $status, not 401"

step "5. The merchant registers what the user is to approve: a payment, for this user, by App2App"
nonce=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
statement_json=$(jq -cn --arg nonce "$nonce" '{nonce: $nonce, id: "basket-1",
    payments: [{paymentId: "p1", amount: "123.45", currency: "NOK", creditorName: "Shop AS"}]}')
statement=$(printf '%s' "$statement_json" | b64url)
now=$(date +%s)
registration=$(jq -cn --arg statement "$statement" --arg nnin "$nnin" --arg callback "$callback" \
    --argjson now "$now" '{type: "payment.v1", iat: $now, exp: ($now + 600), permission: $statement,
    intents: ["app2app"], loginHint: [{scheme: "nnin", value: $nnin}], app_callback_uri: $callback}')
permission=$(http -H "Authorization: Bearer $access_token" -H 'Content-Type: application/json' \
    -d "$registration" "$permissions_endpoint")
permission_id=$(jq -r .id <<<"$permission")
permission_token=$(jq -r .permissionToken <<<"$permission")
echo "statement: $statement_json"
echo "permission $permission_id, binding message $(jq -r .bindingMessage <<<"$permission")"

step "6. app-authorize: the permission token and the phone the merchant's app runs on (iOS only)"
device_info=$(printf '%s' '{"p":"ios","ma":"Apple","mo":"iPhone11,2"}' | b64url)
started=$(http -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
    -d client_assertion="$access_token" -d login_hint_token="$permission_token" \
    --data-urlencode "scope=openid profile" -d device_info="$device_info" "$app_authorize_endpoint")
jq . <<<"$started"
authorize_uri=$(jq -r .authorize_uri <<<"$started")
auth_req_id=$(jq -r .auth_req_id <<<"$started")
interval=$(jq -r .interval <<<"$started")
expires_in=$(jq -r .expires_in <<<"$started")
case "$authorize_uri" in
    */app2app/authorize\?ref=*) link_ref=${authorize_uri#*\?ref=} ;;
    *) fail "authorize_uri is not a universal link: $authorize_uri" ;;
esac

step "7. The merchant polls the token endpoint: the user has not decided yet"
poll() {
    curl -sS -o "$work/poll.json" -w '%{http_code}' -u "$client_id:$client_secret" \
        -d grant_type=urn:openid:params:grant-type:ciba -d auth_req_id="$auth_req_id" "$token_endpoint"
}
status=$(poll)
error=$(jq -r '.error // empty' "$work/poll.json" 2>/dev/null || true)
[ "$status $error" = "400 authorization_pending" ] ||
    fail "expected 400 authorization_pending, got HTTP $status: $(cat "$work/poll.json")"
echo "$error"

step "8. The merchant's app opens the universal link; the user's app shows the payment, checks its digest and approves"
decision=$("${app[@]}" approve --issuer "$issuer" --key-file "$work/phone-key.json" --ref "$link_ref")
jq . <<<"$decision"
[ "$(jq -r .redirect_uri <<<"$decision")" = "$callback" ] || fail "the app is not sent back to $callback"

step "9. The merchant polls every interval seconds (5 more after each slow_down) until the tokens come"
deadline=$(($(date +%s) + expires_in))
while :; do
    sleep "$interval"
    status=$(poll)
    [ "$status" = 200 ] && break
    error=$(jq -r '.error // empty' "$work/poll.json" 2>/dev/null || true)
    case "$status $error" in
        "400 authorization_pending") echo "$error" ;;
        "400 slow_down" | "503 temporarily_unavailable") interval=$((interval + 5)); echo "$error: every $interval s now" ;;
        *) fail "HTTP $status from $token_endpoint: $(cat "$work/poll.json")" ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "no tokens before the request expired"
done
id_token=$(jq -r .id_token "$work/poll.json")
jq '{token_type, expires_in}' "$work/poll.json"

step "10. The merchant verifies the ID token (issuer's key, iss, aud, exp) and its permission_digest"
"${merchant_verify[@]}" --issuer "$issuer" --client-id "$client_id" --id-token "$id_token" \
    --statement "$statement" --auth-req-id "$auth_req_id" --permission-id "$permission_id"

step "The walk-through passed"
