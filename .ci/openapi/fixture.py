"""Walk one real flow against a running server and leave what the hooks need in a JSON file.

Usage: fixture.py BASE_URL OUT_JSON  (CIBA_ST_CLIENT_ID, CIBA_ST_CLIENT_SECRET,
CIBA_ST_NNIN and CIBA_ST_ENROLLMENT_CODE come from the admin CLI, see run.sh).

Creates: an enrolled device (a fresh P-256 key), an access token, a pending app2app request
(its permission id and link ref) and an approved one (its auth_req_id, unredeemed).
"""

import base64
import hashlib
import json
import os
import sys
import time
import uuid
from urllib.parse import parse_qs, urlparse

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

BASE, OUT = sys.argv[1], sys.argv[2]
CLIENT_ID = os.environ["CIBA_ST_CLIENT_ID"]
CLIENT_SECRET = os.environ["CIBA_ST_CLIENT_SECRET"]
NNIN = os.environ["CIBA_ST_NNIN"]
CALLBACK = "https://merchant.example/app2app/return"
DEVICE = {"p": "ios", "ma": "Apple", "mo": "iPhone11,2"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def es256(key, header: dict, claims: dict) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    r, s = utils.decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def check(resp: requests.Response, status: int) -> dict:
    if resp.status_code != status:
        sys.exit(f"fixture: {resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text}")
    return resp.json()


def main() -> None:
    issuer = check(requests.get(f"{BASE}/.well-known/openid-configuration"), 200)["issuer"]
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
           "y": b64url(numbers.y.to_bytes(32, "big"))}
    device_id = check(requests.post(f"{BASE}/app/v1/devices", json={
        "enrollment_code": os.environ["CIBA_ST_ENROLLMENT_CODE"], "device_info": DEVICE,
        "public_jwk": jwk, "name": "schemathesis"}), 201)["device_id"]
    token = check(requests.post(f"{BASE}/oidc/v1/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "client_credentials",
        "scope": "permissions/client permissions/app2app permissions/ciba openid"}), 200)["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}

    def start() -> tuple[str, str, str, str]:
        statement = json.dumps({"nonce": uuid.uuid4().hex}).encode()
        now = int(time.time())
        perm = check(requests.post(f"{BASE}/permissions/v1/", headers=bearer, json={
            "type": "authentication.v1", "iat": now, "exp": now + 3000, "permission": b64url(statement),
            "intents": ["app2app"], "loginHint": [{"scheme": "nnin", "value": NNIN}],
            "app_callback_uri": CALLBACK}), 201)
        started = check(requests.post(f"{BASE}/oidc/v1/app-authorize", headers=bearer, data={
            "login_hint_token": perm["permissionToken"], "scope": "openid",
            "device_info": b64url(json.dumps(DEVICE).encode())}), 200)
        ref = parse_qs(urlparse(started["authorize_uri"]).query)["ref"][0]
        digest = b64url(hashlib.sha256(statement).digest())
        return perm["id"], started["auth_req_id"], ref, digest

    pending_permission, _, pending_ref, _ = start()
    approved_permission, approved_id, approved_ref, digest = start()
    now = int(time.time())
    device_jwt = es256(key, {"alg": "ES256", "kid": device_id}, {
        "sub": device_id, "aud": issuer, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex})
    decision = es256(key, {"alg": "ES256", "kid": device_id}, {
        "ref": approved_ref, "decision": "approve", "permission_digest": digest, "iat": now,
        "jti": uuid.uuid4().hex})
    check(requests.post(f"{BASE}/app/v1/auth-requests/{approved_ref}/decision",
                        headers={"Authorization": f"Bearer {device_jwt}"},
                        json={"signed_decision": decision}), 200)

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "access_token": token, "device_id": device_id, "device_key_pem": pem,
                   "permission_id": pending_permission, "ref": pending_ref,
                   "approved_permission_id": approved_permission,
                   "auth_req_id": approved_id}, f)


main()
