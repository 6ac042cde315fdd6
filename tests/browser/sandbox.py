#!/usr/bin/env python3
"""The sandbox in a real browser (headless Chromium through chromedriver).

A merchant flow is started over HTTP for a seeded test user; the /sandbox page shows it as the
authenticating app would (merchant, amount, binding message; the NNIN masked); a click on
Approve makes the merchant's next poll return an ID token that the merchant's verifier
(api/examples/merchant_verify.rs) accepts; a click on Decline gives access_denied; /docs
renders its list of operations. Screenshots go to $BROWSER_OUT (default target/browser).

    CIBA_API=target/debug/ciba-api CIBA_VERIFY=target/debug/examples/merchant_verify \
        python3 tests/browser/sandbox.py

Run by .ci/browser/run.sh, which installs Chromium, chromedriver and selenium when missing.
"""

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

API = os.path.abspath(os.environ["CIBA_API"])
VERIFY = os.path.abspath(os.environ["CIBA_VERIFY"])
OUT = os.path.abspath(os.environ.get("BROWSER_OUT", "target/browser"))
CALLBACK = "https://shop.example/app2app/callback"
# The seeded test users (README, "Sandbox"): Kari answers by hand.
KARI = "01818010083"
SEEDED = ["01818010083", "02828510188", "03839010140", "04849510083"]
PHONE = {"p": "ios", "ma": "Apple", "mo": "iPhone15,2"}
CIBA = "urn:openid:params:grant-type:ciba"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, form=None, body=None, basic=None, bearer=None):
    """(status, JSON body or None)."""
    headers = {}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if basic:
        token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Server:
    def __init__(self, work):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": f"sqlite://{work}/ciba.db",
            "CIBA_SANDBOX": "true",
            "CIBA_LISTEN": f"127.0.0.1:{port}",
            "CIBA_ISSUER": self.base,
        }
        self.log = open(os.path.join(OUT, "server.log"), "w")
        self.proc = subprocess.Popen([API], env=self.env, stdout=self.log, stderr=self.log)
        for _ in range(300):
            try:
                if http("GET", self.base + "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited; see server.log")
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    def admin(self, *args):
        out = subprocess.run([API, "admin", "--json", *args], env=self.env, check=True,
                             capture_output=True, text=True)
        return json.loads(out.stdout)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Merchant:
    def __init__(self, srv):
        self.srv = srv
        made = srv.admin("clients", "create", "--name", "Browser Shop", "--scope",
                         "permissions/client permissions/app2app openid profile",
                         "--callback-uri", CALLBACK)
        self.id, self.secret = made["client_id"], made["client_secret"]
        status, token = http("POST", srv.base + "/oidc/v1/token", basic=(self.id, self.secret),
                             form={"grant_type": "client_credentials",
                                   "scope": "permissions/client permissions/app2app"})
        check(status == 200, f"client_credentials: {status} {token}")
        self.token = token["access_token"]

    def start(self, nnin):
        """Register a payment and start App2App; the flow's facts."""
        statement = b64url(json.dumps({
            "nonce": secrets.token_urlsafe(16), "id": "basket-1",
            "payments": [{"paymentId": "p1", "amount": "249.90", "currency": "NOK",
                          "creditorName": "Browser Shop AS"}]}).encode())
        now = int(time.time())
        status, perm = http("POST", self.srv.base + "/permissions/v1/", bearer=self.token, body={
            "type": "payment.v1", "iat": now, "exp": now + 600, "permission": statement,
            "intents": ["app2app"], "loginHint": [{"scheme": "nnin", "value": nnin}],
            "app_callback_uri": CALLBACK})
        check(status == 201, f"permission: {status} {perm}")
        status, started = http("POST", self.srv.base + "/oidc/v1/app-authorize", form={
            "client_assertion_type": ASSERTION, "client_assertion": self.token,
            "login_hint_token": perm["permissionToken"], "scope": "openid profile",
            "device_info": b64url(json.dumps(PHONE).encode())})
        check(status == 200, f"app-authorize: {status} {started}")
        return {
            "auth_req_id": started["auth_req_id"],
            "ref": started["authorize_uri"].split("ref=", 1)[1],
            "binding": perm["bindingMessage"],
            "statement": statement,
            "permission_id": perm["id"],
            "interval": started["interval"],
        }

    def poll(self, flow):
        return http("POST", self.srv.base + "/oidc/v1/token", basic=(self.id, self.secret),
                    form={"grant_type": CIBA, "auth_req_id": flow["auth_req_id"]})


def browser():
    opts = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,1600"]:
        opts.add_argument(arg)
    if os.path.exists("/usr/bin/chromium"):
        opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def click_on_sandbox(driver, srv, flow, decision, shot):
    driver.get(srv.base + "/sandbox")
    card = driver.find_element(By.CSS_SELECTOR, f'[data-ref="{flow["ref"]}"]')
    text = card.text
    for shown in ["Browser Shop", "249.90", "NOK", "Browser Shop AS", flow["binding"]]:
        check(shown in text, f"{shown!r} is not shown for the request: {text!r}")
    page = driver.page_source
    check("018180*****" in page, "Kari's masked NNIN is not on the page")
    for nnin in SEEDED:
        check(nnin not in page, "an NNIN is shown in full")
    driver.save_screenshot(os.path.join(OUT, shot))
    card.find_element(By.CSS_SELECTOR, f'button[value="{decision}"]').click()
    WebDriverWait(driver, 10).until(lambda d: f"decided={decision}" in d.current_url)
    notice = driver.find_element(By.ID, "notice").text
    check(notice, "no notice after the decision")
    check(not driver.find_elements(By.CSS_SELECTOR, f'[data-ref="{flow["ref"]}"]'),
          "the decided request is still listed")


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        srv = Server(work)
        driver = None
        try:
            m = Merchant(srv)
            driver = browser()

            # Approve: the next poll gives an ID token the merchant's verifier accepts.
            flow = m.start(KARI)
            status, body = m.poll(flow)
            check((status, (body or {}).get("error")) == (400, "authorization_pending"),
                  f"before the click: {status} {body}")
            polled = time.monotonic()
            click_on_sandbox(driver, srv, flow, "approve", "sandbox.png")
            # A well-behaved client waits `interval` between polls (or gets slow_down).
            time.sleep(max(0.0, flow["interval"] - (time.monotonic() - polled)))
            status, tokens = m.poll(flow)
            check(status == 200 and "id_token" in tokens, f"after Approve: {status} {tokens}")
            verified = subprocess.run(
                [VERIFY, "--issuer", srv.base, "--client-id", m.id, "--id-token",
                 tokens["id_token"], "--statement", flow["statement"], "--auth-req-id",
                 flow["auth_req_id"], "--permission-id", flow["permission_id"]],
                capture_output=True, text=True)
            check(verified.returncode == 0, f"the verifier refused: {verified.stderr}")
            claims = json.loads(verified.stdout)
            check(claims.get("amr") == ["swk"], f"amr of a simulated app: {claims.get('amr')}")
            print(f"approve: ID token verified (sub {claims['sub']}, amr {claims['amr']})")

            # Decline: access_denied.
            flow = m.start(KARI)
            click_on_sandbox(driver, srv, flow, "decline", "sandbox-decline.png")
            status, body = m.poll(flow)
            check((status, (body or {}).get("error")) == (400, "access_denied"),
                  f"after Decline: {status} {body}")
            print("decline: access_denied")

            # /docs renders the API's operations from the vendored viewer.
            driver.get(srv.base + "/docs")
            ops = WebDriverWait(driver, 30).until(lambda d: d.execute_script(
                "return document.querySelectorAll('[data-section-id*=\"operation/\"]').length") or None)
            check(ops >= 10, f"/docs rendered only {ops} operations")
            driver.save_screenshot(os.path.join(OUT, "docs.png"))
            print(f"/docs: {ops} operations rendered")
        finally:
            if driver is not None:
                driver.quit()
            srv.stop()
    print(f"browser test passed; screenshots in {OUT}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
