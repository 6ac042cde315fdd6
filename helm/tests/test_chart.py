"""Assertions on what the chart renders, and on what it refuses to render.

    HELM=/path/to/helm python3 -m unittest discover -s helm/tests -v

`helm lint`, `helm template` and schema validation of every scenario are in
.ci/deploy/run.sh; this file checks the properties an operator relies on: security contexts,
probes, the migration hook, checksum annotations that roll pods, references that resolve, and
clear failures for impossible combinations.
"""

import base64
import json
import os
import subprocess
import unittest
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent / "ciba"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
HELM = os.environ.get("HELM", "helm")
KEK = "q2Nk5Yb0m3H0b2lqc8W2cP0iC7V4n8oXk1g8s3mTt4U="
PG_URL = "postgres://ciba:pw@db:5432/ciba"


def helm_template(values_file=None, sets=()):
    """Render the chart; returns (returncode, documents, stderr)."""
    cmd = [HELM, "template", "rel", str(CHART), "--namespace", "ns"]
    if values_file:
        cmd += ["-f", str(values_file)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    docs = []
    if proc.returncode == 0:
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return proc.returncode, docs, proc.stderr


def render(values_file=None, sets=()):
    code, docs, err = helm_template(values_file, sets)
    if code != 0:
        raise AssertionError(f"helm template failed: {err}")
    return docs


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def one(docs, kind, name):
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(docs):
    """(owner name, pod spec, pod metadata) of every Deployment and Job."""
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            tpl = d["spec"]["template"]
            out.append((f'{d["kind"]}/{d["metadata"]["name"]}', tpl["spec"], tpl["metadata"]))
    return out


def containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def container(spec, name):
    return next(c for c in containers(spec) if c["name"] == name)


def minimal():
    return CHART / "ci" / "minimal-values.yaml"


def production():
    return CHART / "ci" / "production-values.yaml"


def external_secret():
    return CHART / "ci" / "external-secret-values.yaml"


class ScenarioInvariants(unittest.TestCase):
    """What holds for every scenario in ci/."""

    @classmethod
    def setUpClass(cls):
        assert len(SCENARIOS) >= 3, SCENARIOS
        cls.rendered = {p.name: render(p) for p in SCENARIOS}

    def each(self):
        for name, docs in self.rendered.items():
            with self.subTest(scenario=name):
                yield name, docs

    def test_every_pod_and_container_is_locked_down(self):
        for _, docs in self.each():
            specs = pod_specs(docs)
            self.assertTrue(specs)
            for owner, spec, _ in specs:
                psc = spec["securityContext"]
                self.assertIs(psc["runAsNonRoot"], True, owner)
                self.assertNotEqual(psc.get("runAsUser"), 0, owner)
                self.assertEqual(psc["seccompProfile"]["type"], "RuntimeDefault", owner)
                self.assertIs(spec["automountServiceAccountToken"], False, owner)
                for c in containers(spec):
                    sc = c["securityContext"]
                    where = f'{owner} container {c["name"]}'
                    self.assertIs(sc["readOnlyRootFilesystem"], True, where)
                    self.assertIs(sc["allowPrivilegeEscalation"], False, where)
                    self.assertIs(sc["runAsNonRoot"], True, where)
                    self.assertFalse(sc.get("privileged", False), where)
                    self.assertEqual(sc["capabilities"]["drop"], ["ALL"], where)
                    self.assertNotIn("add", sc["capabilities"], where)
                    self.assertIn("limits", c["resources"], where)
                    self.assertIn("requests", c["resources"], where)
                    # A read-only root needs a writable /tmp.
                    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                    self.assertIn("/tmp", mounts, where)

    def test_probes_point_at_health_endpoints_on_declared_ports(self):
        for _, docs in self.each():
            api = one(docs, "Deployment", "rel-ciba-api")["spec"]["template"]["spec"]
            c = container(api, "api")
            ports = {p["name"] for p in c["ports"]}
            self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
            self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
            self.assertEqual(c["startupProbe"]["httpGet"]["path"], "/healthz")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                self.assertIn(c[probe]["httpGet"]["port"], ports)
            # The api waits up to a minute for its database before it listens.
            startup = c["startupProbe"]
            self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 60)
            for _, spec, _ in pod_specs(docs):
                for w in (x for x in spec["containers"] if x["name"] == "worker"):
                    self.assertEqual(w["command"], ["ciba-worker"])
                    wports = {p["name"]: p["containerPort"] for p in w["ports"]}
                    self.assertEqual(w["livenessProbe"]["httpGet"]["path"], "/healthz")
                    self.assertIn(w["livenessProbe"]["httpGet"]["port"], wports)
                    self.assertIn(w["readinessProbe"]["httpGet"]["port"], wports)

    def test_listen_addresses_match_the_container_ports(self):
        for _, docs in self.each():
            cm = one(docs, "ConfigMap", "rel-ciba")["data"]
            self.assertEqual(cm["CIBA_LISTEN"], "0.0.0.0:8080")
            for owner, spec, _ in pod_specs(docs):
                for c in spec["containers"]:
                    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                    if c["name"] == "api":
                        self.assertEqual(ports["http"], 8080, owner)
                        self.assertEqual(f'0.0.0.0:{ports["metrics"]}', cm["CIBA_METRICS_LISTEN"])
                    if c["name"] == "worker":
                        self.assertEqual(
                            f'0.0.0.0:{ports["worker-metrics"]}', cm["CIBA_WORKER_LISTEN"]
                        )

    def test_graceful_termination_outlasts_the_binaries_shutdown(self):
        for _, docs in self.each():
            timeout = int(one(docs, "ConfigMap", "rel-ciba")["data"]["CIBA_SHUTDOWN_TIMEOUT"])
            for d in find(docs, "Deployment"):
                spec = d["spec"]["template"]["spec"]
                budget = timeout
                for c in spec["containers"]:
                    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {})
                    if pre:
                        self.assertEqual(pre["command"][0], "sleep")
                        budget = max(budget, timeout + int(pre["command"][1]))
                self.assertGreater(spec["terminationGracePeriodSeconds"], budget)

    def test_every_reference_resolves(self):
        for name, docs in self.each():
            configmaps = {d["metadata"]["name"] for d in find(docs, "ConfigMap")}
            secrets = {d["metadata"]["name"]: d for d in find(docs, "Secret")}
            existing = "ciba-credentials" if name.startswith("external-secret") else None
            for owner, spec, _ in pod_specs(docs):
                volumes = {v["name"] for v in spec.get("volumes", [])}
                for c in containers(spec):
                    for m in c.get("volumeMounts", []):
                        self.assertIn(m["name"], volumes, owner)
                    for src in c.get("envFrom", []):
                        self.assertIn(src["configMapRef"]["name"], configmaps, owner)
                    for env in c.get("env", []):
                        ref = env.get("valueFrom", {}).get("secretKeyRef")
                        if not ref:
                            continue
                        if ref["name"] == existing:
                            continue
                        self.assertIn(ref["name"], secrets, f"{owner} {env['name']}")
                        self.assertIn(ref["key"], secrets[ref["name"]]["data"], owner)

    def test_services_select_pods_and_target_declared_ports(self):
        for _, docs in self.each():
            pods = [(m["labels"], s) for _, s, m in pod_specs(docs)]
            for svc in find(docs, "Service"):
                sel = svc["spec"]["selector"]
                matched = [s for labels, s in pods if sel.items() <= labels.items()]
                self.assertTrue(matched, svc["metadata"]["name"])
                names = {p["name"] for s in matched for c in s["containers"] for p in c["ports"]}
                for port in svc["spec"]["ports"]:
                    self.assertIn(port["targetPort"], names, svc["metadata"]["name"])

    def test_secrets_never_land_in_the_configmap(self):
        for _, docs in self.each():
            cm = one(docs, "ConfigMap", "rel-ciba")["data"]
            self.assertNotIn("CIBA_KEY_ENCRYPTION_KEY", cm)
            self.assertNotIn("CIBA_EXTERNAL_ISSUERS", cm)
            self.assertFalse(cm.get("DATABASE_URL", "sqlite:").startswith("postgres"))
            for value in cm.values():
                self.assertNotIn(KEK, value)


class MigrationHook(unittest.TestCase):
    def test_postgres_migrates_in_a_pre_install_pre_upgrade_job(self):
        for values in (production(), external_secret()):
            with self.subTest(values=values.name):
                docs = render(values)
                job = one(docs, "Job", "rel-ciba-migrate")
                ann = job["metadata"]["annotations"]
                self.assertEqual(ann["helm.sh/hook"], "pre-install,pre-upgrade")
                self.assertIn("before-hook-creation", ann["helm.sh/hook-delete-policy"])
                spec = job["spec"]["template"]["spec"]
                self.assertEqual(spec["restartPolicy"], "Never")
                self.assertEqual(container(spec, "migrate")["command"], ["ciba-api", "migrate"])
                env = {e["name"]: e for e in container(spec, "migrate")["env"]}
                self.assertIn("DATABASE_URL", env)
                self.assertIn("CIBA_KEY_ENCRYPTION_KEY", env)
                # Nothing the hook needs may be an ordinary release resource: those are
                # created only after pre-install hooks ran.
                self.assertNotIn("envFrom", container(spec, "migrate"))
                ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
                hook_secrets = {
                    s["metadata"]["name"]: s
                    for s in find(docs, "Secret")
                    if "helm.sh/hook" in s["metadata"].get("annotations", {})
                }
                if values == external_secret():
                    self.assertEqual(ref, "ciba-credentials")
                    self.assertEqual(hook_secrets, {})
                else:
                    secret = hook_secrets[ref]
                    hook = secret["metadata"]["annotations"]
                    self.assertEqual(hook["helm.sh/hook"], "pre-install,pre-upgrade")
                    self.assertLess(int(hook["helm.sh/hook-weight"]), int(ann["helm.sh/hook-weight"]))
                    url = base64.b64decode(secret["data"]["DATABASE_URL"]).decode()
                    self.assertTrue(url.startswith("postgres://"))
                # The chart's ServiceAccount does not exist yet either; an existing one is used.
                expected_sa = "ciba-runtime" if values == external_secret() else None
                self.assertEqual(spec.get("serviceAccountName"), expected_sa)

    def test_sqlite_migrates_in_an_init_container_and_has_no_hook(self):
        docs = render(minimal())
        self.assertEqual(find(docs, "Job"), [])
        spec = one(docs, "Deployment", "rel-ciba-api")["spec"]["template"]["spec"]
        init = container(spec, "migrate")
        self.assertEqual(init["command"], ["ciba-api", "migrate"])
        self.assertIn("/var/lib/ciba", {m["mountPath"] for m in init["volumeMounts"]})

    def test_migrations_can_be_turned_off(self):
        docs = render(production(), ["migrations.enabled=false"])
        self.assertEqual(find(docs, "Job"), [])


class Checksums(unittest.TestCase):
    """Pods roll when their configuration changes, and only then."""

    @staticmethod
    def annotations(docs):
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]
            for d in find(docs, "Deployment")
        }

    def test_annotations_follow_the_rendered_configmap_and_secret(self):
        docs = render(production())
        cm = one(docs, "ConfigMap", "rel-ciba")
        for name, ann in self.annotations(docs).items():
            with self.subTest(deployment=name):
                self.assertRegex(ann["checksum/config"], r"^[0-9a-f]{64}$")
                self.assertRegex(ann["checksum/secret"], r"^[0-9a-f]{64}$")
        self.assertEqual(len(self.annotations(docs)), 2)
        self.assertTrue(cm["data"])

    def test_a_config_change_rolls_every_deployment(self):
        base = self.annotations(render(production()))
        changed = self.annotations(render(production(), ["config.pollInterval=5"]))
        for name in base:
            self.assertNotEqual(base[name]["checksum/config"], changed[name]["checksum/config"])
            self.assertEqual(base[name]["checksum/secret"], changed[name]["checksum/secret"])

    def test_a_secret_change_rolls_every_deployment(self):
        base = self.annotations(render(production()))
        changed = self.annotations(render(production(), ["database.url=" + PG_URL]))
        for name in base:
            self.assertNotEqual(base[name]["checksum/secret"], changed[name]["checksum/secret"])
            self.assertEqual(base[name]["checksum/config"], changed[name]["checksum/config"])

    def test_an_unrelated_change_rolls_nothing(self):
        base = self.annotations(render(production()))
        changed = self.annotations(render(production(), ["worker.replicaCount=5"]))
        self.assertEqual(base, changed)

    def test_an_existing_secret_has_no_secret_checksum(self):
        for ann in self.annotations(render(external_secret())).values():
            self.assertIn("checksum/config", ann)
            self.assertNotIn("checksum/secret", ann)


class Topology(unittest.TestCase):
    def test_sqlite_is_one_pod_with_the_worker_beside_the_api(self):
        docs = render(minimal())
        deployments = find(docs, "Deployment")
        self.assertEqual([d["metadata"]["name"] for d in deployments], ["rel-ciba-api"])
        api = deployments[0]
        self.assertEqual(api["spec"]["replicas"], 1)
        self.assertEqual(api["spec"]["strategy"]["type"], "Recreate")
        spec = api["spec"]["template"]["spec"]
        self.assertEqual([c["name"] for c in spec["containers"]], ["api", "worker"])
        claim = next(v for v in spec["volumes"] if v["name"] == "data")
        pvc = one(docs, "PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])
        self.assertEqual(pvc["metadata"]["annotations"]["helm.sh/resource-policy"], "keep")
        cm = one(docs, "ConfigMap", "rel-ciba")["data"]
        self.assertEqual(cm["DATABASE_URL"], "sqlite:///var/lib/ciba/ciba.db")
        for c in spec["containers"]:
            self.assertIn("/var/lib/ciba", {m["mountPath"] for m in c["volumeMounts"]})
        self.assertEqual(find(docs, "HorizontalPodAutoscaler"), [])

    def test_postgres_runs_the_worker_in_its_own_deployment(self):
        docs = render(production())
        worker = one(docs, "Deployment", "rel-ciba-worker")
        self.assertEqual(worker["spec"]["replicas"], 2)
        spec = worker["spec"]["template"]["spec"]
        self.assertEqual([c["name"] for c in spec["containers"]], ["worker"])
        api = one(docs, "Deployment", "rel-ciba-api")
        self.assertEqual(api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
        self.assertEqual([c["name"] for c in api["spec"]["template"]["spec"]["containers"]], ["api"])

    def test_the_worker_can_be_left_out(self):
        for values in (minimal(), production()):
            docs = render(values, ["worker.enabled=false"])
            names = {c["name"] for _, s, _ in pod_specs(docs) for c in s["containers"]}
            self.assertNotIn("worker", names)

    def test_autoscaler_owns_the_replica_count(self):
        docs = render(production())
        hpa = one(docs, "HorizontalPodAutoscaler", "rel-ciba-api")
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], "rel-ciba-api")
        self.assertEqual((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), (3, 12))
        self.assertNotIn("replicas", one(docs, "Deployment", "rel-ciba-api")["spec"])

    def test_disruption_budget_selects_the_api_pods(self):
        for values, expect in ((production(), {"minAvailable": 2}), (minimal(), {"maxUnavailable": 1})):
            docs = render(values)
            pdb = one(docs, "PodDisruptionBudget", "rel-ciba-api")
            for k, v in expect.items():
                self.assertEqual(pdb["spec"][k], v)
            labels = one(docs, "Deployment", "rel-ciba-api")["spec"]["template"]["metadata"]["labels"]
            self.assertTrue(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items())

    def test_client_certificates_come_from_the_ingress_and_the_ca_is_mounted(self):
        docs = render(CHART / "ci" / "fapi-values.yaml")
        cm = one(docs, "ConfigMap", "rel-ciba")["data"]
        self.assertEqual(cm["CIBA_CLIENT_CERT_HEADER"], "ssl-client-cert")
        self.assertEqual(cm["CIBA_TRUSTED_PROXIES"], "10.0.0.0/8")
        spec = one(docs, "Deployment", "rel-ciba-api")["spec"]["template"]["spec"]
        volume = next(v for v in spec["volumes"] if v["name"] == "client-ca")
        self.assertEqual(volume["secret"]["secretName"], "merchant-client-ca")
        mount = next(m for m in container(spec, "api")["volumeMounts"] if m["name"] == "client-ca")
        self.assertTrue(mount["readOnly"])
        self.assertEqual(cm["CIBA_TLS_CLIENT_CA"], mount["mountPath"] + "/" + volume["secret"]["items"][0]["path"])
        ing = one(docs, "Ingress", "rel-ciba")
        self.assertEqual(
            ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream"], "true")
        # Without mtls values nothing of it is rendered.
        cm = one(render(production()), "ConfigMap", "rel-ciba")["data"]
        self.assertNotIn("CIBA_CLIENT_CERT_HEADER", cm)
        self.assertNotIn("CIBA_TLS_CLIENT_CA", cm)

    def test_ingress_routes_to_the_api_http_port_with_tls(self):
        docs = render(production())
        ing = one(docs, "Ingress", "rel-ciba")
        self.assertEqual(ing["spec"]["tls"][0]["hosts"], ["auth.example.test"])
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        svc = one(docs, "Service", backend["name"])
        self.assertIn(backend["port"]["name"], {p["name"] for p in svc["spec"]["ports"]})
        self.assertEqual(backend["port"]["name"], "http")

    def test_service_monitor_scrapes_api_and_worker(self):
        docs = render(production())
        sm = one(docs, "ServiceMonitor", "rel-ciba")
        self.assertEqual(sm["metadata"]["labels"]["release"], "prometheus")
        sel = sm["spec"]["selector"]["matchLabels"]
        ports = {e["port"] for e in sm["spec"]["endpoints"]}
        scraped = set()
        for svc in find(docs, "Service"):
            if sel.items() <= svc["metadata"]["labels"].items():
                scraped |= {p["name"] for p in svc["spec"]["ports"]} & ports
        self.assertEqual(scraped, {"metrics", "worker-metrics"})

    def test_alert_rules_are_the_shipped_rule_file(self):
        docs = render(production())
        rule = one(docs, "PrometheusRule", "rel-ciba")
        self.assertEqual(rule["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(rule["metadata"]["labels"]["release"], "prometheus")
        shipped = yaml.safe_load((CHART / "alerts" / "ciba-rules.yaml").read_text())
        self.assertEqual(rule["spec"], shipped)
        alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
        self.assertTrue(all({"alert", "expr", "for", "labels", "annotations"} <= r.keys() for r in alerts))
        self.assertEqual(find(render(minimal()), "PrometheusRule"), [])

    def test_dashboards_configmap_carries_the_sidecar_label_and_every_dashboard(self):
        docs = render(production())
        cm = one(docs, "ConfigMap", "rel-ciba-dashboards")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(cm["metadata"]["namespace"], "monitoring")
        self.assertEqual(cm["metadata"]["annotations"], {"grafana_folder": "ciba"})
        shipped = {p.name: json.loads(p.read_text()) for p in (CHART / "dashboards").glob("*.json")}
        self.assertEqual({k: json.loads(v) for k, v in cm["data"].items()}, shipped)
        self.assertEqual(shipped["ciba.json"]["templating"]["list"][0]["name"], "datasource")
        relabelled = render(production(), ["metrics.dashboards.label=dash", "metrics.dashboards.labelValue=yes"])
        labels = one(relabelled, "ConfigMap", "rel-ciba-dashboards")["metadata"]["labels"]
        self.assertEqual(labels["dash"], "yes")
        self.assertNotIn("grafana_dashboard", labels)
        self.assertEqual(find(render(minimal()), "ConfigMap", "rel-ciba-dashboards"), [])

    def test_network_policy_opens_only_the_service_ports(self):
        docs = render(production())
        np = one(docs, "NetworkPolicy", "rel-ciba")
        self.assertEqual(np["spec"]["policyTypes"], ["Ingress", "Egress"])
        opened = {p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]}
        self.assertEqual(opened, {"http", "metrics", "worker-metrics"})
        self.assertTrue(all("from" in rule for rule in np["spec"]["ingress"]))
        egress_ports = {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
        self.assertTrue({53, 5432, 443} <= egress_ports)

    def test_secret_values_round_trip(self):
        docs = render(production())
        data = one(docs, "Secret", "rel-ciba")["data"]
        decode = lambda k: base64.b64decode(data[k]).decode()  # noqa: E731
        self.assertEqual(decode("CIBA_KEY_ENCRYPTION_KEY"), KEK)
        self.assertTrue(decode("DATABASE_URL").startswith("postgres://ciba:"))
        issuers = yaml.safe_load(decode("CIBA_EXTERNAL_ISSUERS"))
        self.assertEqual(issuers[0]["jwks_uri"], "https://login.bank.example.test/jwks")

    def test_a_previous_key_encryption_key_reaches_every_pod_during_a_rotation(self):
        old = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        docs = render(production(), [f"secrets.keyEncryptionKeyPrevious={old}"])
        data = one(docs, "Secret", "rel-ciba")["data"]
        self.assertEqual(base64.b64decode(data["CIBA_KEY_ENCRYPTION_KEY_PREVIOUS"]).decode(), old)
        for name in ("rel-ciba-api", "rel-ciba-worker"):
            spec = one(docs, "Deployment", name)["spec"]["template"]["spec"]
            env = {e["name"] for c in containers(spec) for e in c.get("env", [])}
            self.assertIn("CIBA_KEY_ENCRYPTION_KEY_PREVIOUS", env, name)
        # Not there outside a rotation.
        data = one(render(production()), "Secret", "rel-ciba")["data"]
        self.assertNotIn("CIBA_KEY_ENCRYPTION_KEY_PREVIOUS", data)

    def test_extra_env_numbers_are_rendered_as_integers(self):
        cm = one(render(production()), "ConfigMap", "rel-ciba")["data"]
        self.assertEqual(cm["CIBA_JOB_MAX_ATTEMPTS"], "12")
        self.assertEqual(cm["CIBA_KEY_ROTATION_PERIOD"], "7776000")
        self.assertEqual(cm["CIBA_RETENTION"], "2592000")

    def test_image_digest_pins_the_image(self):
        docs = render(production())
        images = {c["image"] for _, s, _ in pod_specs(docs) for c in containers(s)}
        self.assertEqual(len(images), 1)
        self.assertRegex(images.pop(), r"^registry\.example\.test/ciba@sha256:[0-9a-f]{64}$")
        images = {c["image"] for _, s, _ in pod_specs(render(minimal())) for c in containers(s)}
        self.assertEqual(images, {"ciba:0.1.0"})


class ImpossibleCombinations(unittest.TestCase):
    """Each must fail to render, with a message that names the values to change."""

    def assert_refused(self, values, sets, *phrases):
        code, _, err = helm_template(values, sets)
        self.assertNotEqual(code, 0, f"rendered although {sets} is impossible")
        for phrase in phrases:
            self.assertIn(phrase, err)

    def test_sqlite_with_more_than_one_api_replica(self):
        self.assert_refused(minimal(), ["api.replicaCount=2"],
                            "database.type=sqlite allows exactly one api pod", "api.replicaCount is 2")

    def test_sqlite_with_autoscaling(self):
        self.assert_refused(minimal(), ["api.autoscaling.enabled=true"],
                            "database.type=sqlite cannot autoscale the api")

    def test_sqlite_with_a_separate_worker_pod(self):
        self.assert_refused(minimal(), ["worker.placement=deployment"],
                            "database.type=sqlite cannot run the worker in a separate pod")

    def test_sqlite_with_a_postgres_url(self):
        self.assert_refused(minimal(), ["database.url=" + PG_URL], "database.url is for PostgreSQL")

    def test_postgres_without_url_or_secret(self):
        self.assert_refused(None, ["config.issuer=https://a.test", "secrets.keyEncryptionKey=" + KEK],
                            "database.type=postgres needs a connection URL",
                            "secrets.existingSecret")

    def test_no_key_encryption_key(self):
        self.assert_refused(None, ["config.issuer=https://a.test", "database.url=" + PG_URL],
                            "secrets.keyEncryptionKey is required", "openssl rand -base64 32")

    def test_no_issuer(self):
        self.assert_refused(production(), ["config.issuer="], "config.issuer is required")

    def test_existing_secret_and_inline_secrets(self):
        self.assert_refused(external_secret(), ["database.url=" + PG_URL],
                            "leave database.url and secrets.keyEncryptionKey empty")
        self.assert_refused(external_secret(), ["config.externalIssuers[0].issuer=https://i.test",
                                                "config.externalIssuers[0].jwks_uri=https://i.test/j"],
                            "that Secret's key external-issuers")

    def test_secret_through_extra_env(self):
        self.assert_refused(production(), ["config.extraEnv.CIBA_KEY_ENCRYPTION_KEY=x"],
                            "config.extraEnv.CIBA_KEY_ENCRYPTION_KEY is a secret")
        self.assert_refused(production(), ["config.extraEnv.CIBA_ISSUER=https://x.test"],
                            "config.extraEnv.CIBA_ISSUER is set by the chart already")

    def test_a_certificate_header_without_trusted_proxies(self):
        self.assert_refused(production(), ["mtls.clientCertHeader=ssl-client-cert"],
                            "mtls.clientCertHeader needs config.trustedProxies")

    def test_a_certificate_header_open_to_every_pod(self):
        fapi = CHART / "ci" / "fapi-values.yaml"
        self.assert_refused(fapi, ["networkPolicy.enabled=false"],
                            "mtls.clientCertHeader needs networkPolicy.enabled=true")
        self.assert_refused(fapi, ["networkPolicy.apiFrom=null"],
                            "mtls.clientCertHeader needs networkPolicy.enabled=true")

    def test_autoscaling_bounds(self):
        self.assert_refused(production(), ["api.autoscaling.minReplicas=20"],
                            "minReplicas must not exceed")

    def test_schema_rejects_malformed_values(self):
        self.assert_refused(production(), ["database.type=mysql"], "database.type")
        self.assert_refused(production(), ["secrets.keyEncryptionKey=c2hvcnQ="],
                            "secrets.keyEncryptionKey")
        self.assert_refused(production(), ["database.url=mysql://x"], "database.url")
        self.assert_refused(production(), ["config.issuer=not a url"], "config.issuer")
        self.assert_refused(production(), ["api.replicaCount=zero"], "api.replicaCount")
        self.assert_refused(production(), ["api.resource.limits.cpu=1"], "resource")
        self.assert_refused(production(), ["worker.placement=elsewhere"], "worker.placement")


if __name__ == "__main__":
    unittest.main()
