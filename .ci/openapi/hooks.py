"""Schemathesis hooks: real credentials for every operation, real ids some of the time.

The fixture (fixture.py) has created a client, a user with an enrolled device, a permission
and an app2app request; it leaves their details in the JSON file named by CIBA_ST_FIXTURE.
These hooks put the right credentials on each generated request (Basic at the token endpoint,
the client's access token on merchant endpoints, a fresh single-use device JWT on the app
API), so the fuzzing reaches past authentication, and they count requests per operation.
"""

import atexit
import base64
import collections
import json
import os
import time
import uuid

import schemathesis
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

with open(os.environ["CIBA_ST_FIXTURE"], encoding="utf-8") as f:
    FIXTURE = json.load(f)
DEVICE_KEY = serialization.load_pem_private_key(FIXTURE["device_key_pem"].encode(), None)
COUNTS = collections.Counter()
STATUSES = collections.defaultdict(collections.Counter)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def device_jwt() -> str:
    header = {"alg": "ES256", "typ": "JWT", "kid": FIXTURE["device_id"]}
    now = int(time.time())
    claims = {
        "sub": FIXTURE["device_id"],
        "aud": FIXTURE["issuer"],
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    der = DEVICE_KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def credentials(path: str) -> str | None:
    if path == "/oidc/v1/token":
        pair = f"{FIXTURE['client_id']}:{FIXTURE['client_secret']}".encode()
        return "Basic " + base64.b64encode(pair).decode()
    if path.startswith("/permissions/v1/") and path != "/permissions/v1/jwks":
        return "Bearer " + FIXTURE["access_token"]
    if path in ("/oidc/v1/app-authorize", "/oidc/v1/bc-authorize"):
        return "Bearer " + FIXTURE["access_token"]
    if path.startswith("/app/v1/auth-requests"):
        return "Bearer " + device_jwt()
    return None


@schemathesis.hook
def before_call(ctx, case, kwargs):
    path = case.operation.path
    COUNTS[f"{case.operation.method.upper()} {path}"] += 1
    value = credentials(path)
    if value is not None:
        case.headers = dict(case.headers or {})
        case.headers["Authorization"] = value
    # Every other path id is real, so the 200 answers are checked against the schema too.
    # (Not `random`: Hypothesis reseeds it for every example.)
    turn = COUNTS[f"{case.operation.method.upper()} {path}"]
    if case.path_parameters and turn % 2 == 0:
        if "id" in case.path_parameters:
            granted = path.endswith("/grant")
            case.path_parameters["id"] = FIXTURE["approved_permission_id" if granted else "permission_id"]
        if "ref" in case.path_parameters:
            case.path_parameters["ref"] = FIXTURE["ref"]
    if path == "/app2app/authorize" and turn % 2 == 0:
        case.query = dict(case.query or {}, ref=FIXTURE["ref"])
    if path == "/oidc/v1/token" and isinstance(case.body, dict) and turn % 3 == 0:
        case.body["auth_req_id"] = FIXTURE["auth_req_id"]


@schemathesis.hook
def after_call(ctx, case, response):
    STATUSES[f"{case.operation.method.upper()} {case.operation.path}"][response.status_code] += 1


@atexit.register
def report():
    out = os.environ.get("CIBA_ST_COUNTS")
    if out:
        with open(out, "w", encoding="utf-8") as f:
            json.dump({op: {"requests": n, "statuses": dict(sorted(STATUSES[op].items()))}
                       for op, n in sorted(COUNTS.items())}, f, indent=1)
