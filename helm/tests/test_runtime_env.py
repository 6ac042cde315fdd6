"""The binaries accept exactly what the chart renders, and answer its probes.

For a SQLite and a PostgreSQL scenario: take the environment the chart gives a pod (its
ConfigMap and Secret), run the commands its containers run (`ciba-api migrate`, `ciba-api`,
`ciba-worker`) with it, and poll the probe paths on the ports the probes name. Only the
database location and the ports are swapped for local ones. SIGTERM must end both within the
pod's termination grace period.

Needs CIBA_BIN_DIR (the directory holding ciba-api and ciba-worker) and, for PostgreSQL,
CIBA_TEST_PG_URL; .ci/deploy/run.sh sets both.
"""

import base64
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from test_chart import container, minimal, one, production, render

BIN_DIR = os.environ.get("CIBA_BIN_DIR")
PG_URL = os.environ.get("CIBA_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_for(url, status=200, seconds=30):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = get(url)
        if last == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} answered {last}, not {status}, within {seconds}s")


def pod_env(docs):
    """The environment a pod of the release gets: ConfigMap, then the chart's Secret."""
    env = dict(one(docs, "ConfigMap", "rel-ciba")["data"])
    for key, value in one(docs, "Secret", "rel-ciba")["data"].items():
        env[key] = base64.b64decode(value).decode()
    return env


def local_addr(addr, port):
    host, _, _ = addr.rpartition(":")
    assert host == "0.0.0.0", addr
    return f"127.0.0.1:{port}"


@unittest.skipUnless(BIN_DIR, "set CIBA_BIN_DIR to the directory of ciba-api and ciba-worker")
class RenderedEnvironment(unittest.TestCase):
    def run_scenario(self, docs, database_url):
        api_spec = one(docs, "Deployment", "rel-ciba-api")["spec"]["template"]["spec"]
        env = pod_env(docs)
        ports = {name: free_port() for name in ("http", "metrics", "worker")}
        env.update(
            DATABASE_URL=database_url,
            CIBA_LISTEN=local_addr(env["CIBA_LISTEN"], ports["http"]),
            CIBA_METRICS_LISTEN=local_addr(env["CIBA_METRICS_LISTEN"], ports["metrics"]),
            CIBA_WORKER_LISTEN=local_addr(env["CIBA_WORKER_LISTEN"], ports["worker"]),
        )
        full_env = {"PATH": f'{BIN_DIR}:{os.environ["PATH"]}', **env}

        migrate = subprocess.run(["ciba-api", "migrate"], env=full_env, capture_output=True,
                                 text=True, timeout=120, check=False)
        self.assertEqual(migrate.returncode, 0, migrate.stderr)

        api = container(api_spec, "api")
        procs = []
        logs = tempfile.TemporaryDirectory()
        self.addCleanup(logs.cleanup)
        try:
            for name, command in (("api", api["command"]), ("worker", ["ciba-worker"])):
                log = open(Path(logs.name) / f"{name}.log", "w")
                self.addCleanup(log.close)
                procs.append(subprocess.Popen(command, env=full_env, stdout=log, stderr=log))
            base = f'http://127.0.0.1:{ports["http"]}'
            wait_for(base + api["startupProbe"]["httpGet"]["path"])
            wait_for(base + api["livenessProbe"]["httpGet"]["path"])
            wait_for(base + api["readinessProbe"]["httpGet"]["path"])
            wait_for(f'http://127.0.0.1:{ports["metrics"]}/metrics')
            wait_for(f'http://127.0.0.1:{ports["worker"]}/healthz')
            wait_for(f'http://127.0.0.1:{ports["worker"]}/metrics')
            # The public port does not serve /metrics when it has its own port.
            self.assertEqual(get(base + "/metrics"), 404)
            grace = api_spec["terminationGracePeriodSeconds"]
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                self.assertEqual(p.wait(timeout=grace), 0)
        except BaseException:
            for name in ("api", "worker"):
                path = Path(logs.name) / f"{name}.log"
                if path.exists():
                    print(f"--- {name} log\n{path.read_text()[-4000:]}")
            raise
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def test_sqlite_scenario(self):
        with tempfile.TemporaryDirectory() as data:
            docs = render(minimal())
            url = one(docs, "ConfigMap", "rel-ciba")["data"]["DATABASE_URL"]
            self.assertEqual(url, "sqlite:///var/lib/ciba/ciba.db")
            self.run_scenario(docs, url.replace("/var/lib/ciba", data))

    def test_postgres_scenario(self):
        name = "ciba_chart_" + uuid.uuid4().hex[:12]
        admin = ["psql", PG_URL, "-qAtc"]
        subprocess.run(admin + [f"CREATE DATABASE {name}"], check=True, capture_output=True)
        self.addCleanup(subprocess.run, admin + [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                        check=False, capture_output=True)
        base, _, _ = PG_URL.rpartition("/")
        docs = render(production())
        self.assertTrue(pod_env(docs)["DATABASE_URL"].startswith("postgres://"))
        self.run_scenario(docs, f"{base}/{name}")


if __name__ == "__main__":
    unittest.main()
