"""What a kubectl user types first, against the embedded cluster (kubectl 1.32 and 1.33).

`kubectl get` tables are compared with the layout a real cluster prints for the same
objects (columns and cells of kube-apiserver's printers; ages and allocated addresses are
normalised). Tokens, can-i, whoami, explain, debug, logs --previous, the bootstrap objects,
APIService charts under Helm 3 and 4, and list semantics (snapshots, resourceVersionMatch,
field labels) are checked as a user or a client library sees them.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.embedded.cluster import EmbeddedCluster
from tests.embedded.conftest import helm_env

Run = Callable[..., subprocess.CompletedProcess[str]]
CHART = Path(__file__).parent / "data" / "charts" / "apiservice"

_AGE = re.compile(r"^(<unknown>|\d+(s|m|h|d|y)(\d+(s|m|h|d))?)$")
_IP = re.compile(r"\b127\.\d+\.\d+\.\d+\b")


def cells(text: str) -> list[list[str]]:
    """A kubectl table as rows of cells; ages become <age>, loopback addresses <ip>."""
    rows = []
    for line in text.strip("\n").splitlines():
        row = re.split(r"\s{2,}", line.strip())
        row = ["<age>" if _AGE.match(c) else _IP.sub("<ip>", c) for c in row]
        rows.append(row)
    return rows


def golden(text: str) -> list[list[str]]:
    return cells(text)


APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: nginx:1.27, ports: [{containerPort: 80, name: http}]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: pg, image: postgres:16}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: db.invalid
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {user: admin, password: not-shown}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: main, image: busybox}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: web.invalid
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: ServiceAccount, name: default, namespace: NS}
- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}
"""


def _deploy(kctl: Run, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(APP.replace("namespace: NS", f"namespace: {namespace}"))
    kctl("apply", "-n", namespace, "-f", str(manifest))
    kctl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=30s")
    kctl("rollout", "status", "-n", namespace, "statefulset/db", "--timeout=30s")
    kctl("wait", "-n", namespace, "--for=condition=complete", "job/once", "--timeout=30s")
    kctl(
        "wait", "-n", namespace, "--for=jsonpath={.status.phase}=Bound", "pvc/data", "--timeout=30s"
    )


def test_get_tables_match_a_real_cluster(kctl: Run, namespace: str, tmp_path: Path) -> None:
    _deploy(kctl, namespace, tmp_path)

    def get(*args: str) -> list[list[str]]:
        return cells(kctl("get", "-n", namespace, *args).stdout)

    assert get("deployments") == golden("""
NAME   READY   UP-TO-DATE   AVAILABLE   AGE
web    2/2     2            2           <age>
""")
    assert get("deployments", "-o", "wide") == golden("""
NAME   READY   UP-TO-DATE   AVAILABLE   AGE     CONTAINERS   IMAGES       SELECTOR
web    2/2     2            2           <age>   app          nginx:1.27   app=web
""")
    assert get("statefulsets") == golden("""
NAME   READY   AGE
db     1/1     <age>
""")
    assert get("pods", "db-0") == golden("""
NAME   READY   STATUS    RESTARTS   AGE
db-0   1/1     Running   0          <age>
""")
    assert get("pods", "db-0", "-o", "wide") == golden("""
NAME   READY   STATUS    RESTARTS   AGE     IP      NODE             NOMINATED NODE   READINESS GATES
db-0   1/1     Running   0          <age>   <ip>    devloop-node-1   <none>           <none>
""")
    job_pod = json.loads(
        kctl("get", "-n", namespace, "pods", "-l", "job-name=once", "-o", "json").stdout
    )
    job_pod_name = job_pod["items"][0]["metadata"]["name"]
    assert get("pods", job_pod_name) == golden(f"""
NAME          READY   STATUS      RESTARTS   AGE
{job_pod_name}   0/1     Completed   0          <age>
""")
    assert get("services") == golden("""
NAME   TYPE           CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE
ext    ExternalName   <none>       db.invalid    <none>    <age>
web    ClusterIP      <ip>         <none>        80/TCP    <age>
""")
    assert get("services", "web", "-o", "wide") == golden("""
NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE     SELECTOR
web    ClusterIP   <ip>         <none>        80/TCP    <age>   app=web
""")
    deprecated = kctl("get", "-n", namespace, "endpoints", "web").stderr
    assert (
        "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"
        in deprecated
    )
    endpoints = get("endpoints", "web")
    assert endpoints[0] == ["NAME", "ENDPOINTS", "AGE"]
    assert endpoints[1][0] == "web" and endpoints[1][1] == "<ip>:80,<ip>:80"
    assert get("configmaps", "settings") == golden("""
NAME       DATA   AGE
settings   2      <age>
""")
    secret = kctl("get", "-n", namespace, "secret", "creds").stdout
    assert cells(secret) == golden("""
NAME    TYPE     DATA   AGE
creds   Opaque   2      <age>
""")
    assert "not-shown" not in secret
    assert get("jobs") == golden("""
NAME   STATUS     COMPLETIONS   DURATION   AGE
once   Complete   1/1           <age>      <age>
""")
    assert get("cronjobs") == golden("""
NAME      SCHEDULE    TIMEZONE   SUSPEND   ACTIVE   LAST SCHEDULE   AGE
nightly   0 3 * * *   <none>     False     0        <none>          <age>
""")
    assert get("ingresses") == golden("""
NAME   CLASS    HOSTS         ADDRESS   PORTS   AGE
web    <none>   web.invalid             80      <age>
""")
    assert get("pdb") == golden("""
NAME   MIN AVAILABLE   MAX UNAVAILABLE   ALLOWED DISRUPTIONS   AGE
web    N/A             1                 1                     <age>
""")
    hpa = get("hpa")
    assert hpa[0] == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert hpa[1][:2] == ["web", "Deployment/web"] and hpa[1][3:5] == ["2", "5"]
    assert hpa[1][2].startswith("cpu: ") and hpa[1][2].endswith("/80%")
    pvc = get("pvc")
    assert pvc[0] == [
        "NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS", "AGE",
    ]  # fmt: skip
    assert pvc[1][:2] == ["data", "Bound"] and pvc[1][3:6] == ["1Gi", "RWO", "standard"]
    assert get("rolebinding", "readers", "-o", "wide") == golden(f"""
NAME      ROLE               AGE     USERS   GROUPS   SERVICEACCOUNTS
readers   ClusterRole/view   <age>   jane             {namespace}/default
""")
    assert get("serviceaccounts", "default") == golden("""
NAME      SECRETS   AGE
default   0         <age>
""")
    events = get("events")
    assert events[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert ["<age>", "Normal", "Scheduled", "pod/db-0"] in [row[:4] for row in events]
    nodes = cells(kctl("get", "nodes").stdout)
    assert nodes[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes[1][:3] == ["devloop-node-1", "Ready", "<none>"]
    namespaces = cells(kctl("get", "namespace", namespace).stdout)
    assert namespaces == [["NAME", "STATUS", "AGE"], [namespace, "Active", "<age>"]]
    # `-A` adds the namespace column from the rows' object metadata.
    all_cm = cells(
        kctl(
            "get",
            "configmaps",
            "-A",
            "--field-selector",
            f"metadata.name=settings,metadata.namespace={namespace}",
        ).stdout
    )
    assert all_cm == [["NAMESPACE", "NAME", "DATA", "AGE"], [namespace, "settings", "2", "<age>"]]


def test_custom_resource_printer_columns(kctl: Run, namespace: str, tmp_path: Path) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(
        """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: virtualservices.networking.istio.io}
spec:
  group: networking.istio.io
  names: {kind: VirtualService, plural: virtualservices, singular: virtualservice, shortNames: [vs]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Gateways, type: string, jsonPath: .spec.gateways}
    - {name: Hosts, type: string, jsonPath: .spec.hosts}
    - {name: Weight, type: integer, jsonPath: .spec.weight, priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: Configuration affecting label/content routing.
            properties:
              hosts: {type: array, items: {type: string}, description: The destination hosts.}
              gateways: {type: array, items: {type: string}}
              weight: {type: integer}
"""
    )
    kctl("apply", "-f", str(crd))
    kctl("wait", "--for=condition=Established", "crd/virtualservices.networking.istio.io")
    kctl(
        "apply", "-n", namespace, "-f", "-",
        input="apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
        "spec: {hosts: [reviews.invalid], gateways: [gw], weight: 3}\n",
    )  # fmt: skip
    assert cells(kctl("get", "-n", namespace, "vs").stdout) == golden("""
NAME      GATEWAYS   HOSTS                 AGE
reviews   ["gw"]     ["reviews.invalid"]   <age>
""")
    wide = cells(kctl("get", "-n", namespace, "vs", "-o", "wide").stdout)
    assert wide[0] == ["NAME", "GATEWAYS", "HOSTS", "WEIGHT", "AGE"] and wide[1][3] == "3"
    explained = kctl("explain", "virtualservice.spec").stdout
    assert "Configuration affecting label/content routing." in explained
    assert re.search(r"hosts\s+<\[\]string>", explained)


def test_tokens_whoami_can_i_explain(kctl: Run, namespace: str, cluster: EmbeddedCluster) -> None:
    token = kctl("create", "token", "default", "-n", namespace, "--duration=20m").stdout.strip()
    header, claims, _sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert payload["sub"] == f"system:serviceaccount:{namespace}:default"
    assert payload["exp"] - payload["iat"] == 1200
    # The token is verifiable with the published keys, and authenticates as the account.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    jwks = json.loads(kctl("get", "--raw", "/openid/v1/jwks").stdout)
    key = jwks["keys"][0]

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(unb64(key["x"]), "big"),
        int.from_bytes(unb64(key["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    raw = unb64(_sig)
    public.verify(
        encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
        f"{header}.{claims}".encode(),
        ec.ECDSA(hashes.SHA256()),
    )
    whoami = kctl("--token", token, "auth", "whoami").stdout
    assert f"system:serviceaccount:{namespace}:default" in whoami
    assert "system:serviceaccounts" in whoami
    bad = kctl("--token", token[:-4] + "AAAA", "get", "ns", check=False)
    assert bad.returncode != 0 and "Unauthorized" in bad.stderr
    too_short = kctl("create", "token", "default", "-n", namespace, "--duration=1m", check=False)
    assert "may not specify a duration less than 10 minutes" in too_short.stderr
    missing = kctl("create", "token", "nobody", "-n", namespace, check=False)
    assert 'serviceaccounts "nobody" not found' in missing.stderr

    assert kctl("auth", "whoami").stdout.split()[3] == "kubernetes-admin"
    assert kctl("auth", "can-i", "get", "pods").stdout.strip() == "yes"
    assert kctl("auth", "can-i", "create", "deployments", "-n", namespace).stdout.strip() == "yes"
    listed = kctl("auth", "can-i", "--list", "-n", namespace).stdout
    assert re.search(r"\*\.\*\s+\[\]\s+\[\]\s+\[\*\]", listed)

    explained = kctl("explain", "deployment.spec.replicas").stdout
    assert "FIELD: replicas <integer>" in explained
    assert "Number of desired pods" in explained


def test_debug_and_previous_logs_answer_with_a_status(kctl: Run, namespace: str) -> None:
    kctl("run", "p", "-n", namespace, "--image=busybox")
    kctl("wait", "-n", namespace, "--for=condition=Ready", "pod/p", "--timeout=30s")
    debug = kctl("debug", "-n", namespace, "p", "--image=busybox", "--profile=general", check=False)
    assert debug.returncode == 1
    assert "panic" not in debug.stderr
    assert "Error from server (MethodNotAllowed)" in debug.stderr
    assert "does not run ephemeral containers" in debug.stderr
    previous = kctl("logs", "-n", namespace, "p", "--previous", check=False)
    assert previous.returncode == 1
    assert 'previous terminated container "p" in pod "p" not found' in previous.stderr


def test_bootstrap_objects(kctl: Run, namespace: str) -> None:
    root_ca = json.loads(
        kctl("get", "-n", namespace, "configmap", "kube-root-ca.crt", "-o", "json").stdout
    )
    assert root_ca["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    # Deleted, it comes back (the root CA publisher keeps it).
    kctl("delete", "-n", namespace, "configmap", "kube-root-ca.crt")
    kctl("wait", "-n", namespace, "--for=create", "configmap/kube-root-ca.crt", "--timeout=10s")
    roles = kctl("get", "clusterroles", "-o", "name").stdout.split()
    for name in ("cluster-admin", "admin", "edit", "view", "system:aggregate-to-view"):
        assert f"clusterrole.rbac.authorization.k8s.io/{name}" in roles
    view = json.loads(kctl("get", "clusterrole", "view", "-o", "json").stdout)
    assert any("pods" in r.get("resources", []) for r in view["rules"])
    # Aggregation: a new role labelled aggregate-to-view joins view, edit and admin.
    kctl(
        "apply", "-f", "-",
        input="apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n"
        "  name: widget-reader\n  labels: {rbac.authorization.k8s.io/aggregate-to-view: 'true'}\n"
        "rules: [{apiGroups: [demo.invalid], resources: [widgets], verbs: [get]}]\n",
    )  # fmt: skip
    for role in ("view", "edit", "admin"):
        kctl(
            "wait", f"clusterrole/{role}", "--timeout=10s",
            "--for=jsonpath={.rules[?(@.apiGroups[0]=='demo.invalid')].resources[0]}=widgets",
        )  # fmt: skip
    dns = cells(kctl("get", "-n", "kube-system", "service", "kube-dns").stdout)
    assert dns[1][:4] == ["kube-dns", "ClusterIP", "<ip>", "<none>"]
    assert dns[1][4] == "53/UDP,53/TCP,9153/TCP"
    kctl(
        "apply", "-n", namespace, "-f", "-",
        input="apiVersion: v1\nkind: Secret\nmetadata:\n  name: legacy\n  annotations:\n"
        "    kubernetes.io/service-account.name: default\ntype: kubernetes.io/service-account-token\n",
    )  # fmt: skip
    kctl(
        "wait",
        "-n",
        namespace,
        "--for=jsonpath={.data.namespace}",
        "secret/legacy",
        "--timeout=10s",
    )
    secret = json.loads(kctl("get", "-n", namespace, "secret", "legacy", "-o", "json").stdout)
    assert base64.b64decode(secret["data"]["namespace"]).decode() == namespace
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert (
        f"system:serviceaccount:{namespace}:default"
        in kctl("--token", token, "auth", "whoami").stdout
    )
    groups = kctl("api-resources", "-o", "name").stdout.split()
    for resource in (
        "apiservices.apiregistration.k8s.io",
        "events.events.k8s.io",
        "csidrivers.storage.k8s.io",
        "validatingadmissionpolicies.admissionregistration.k8s.io",
        "runtimeclasses.node.k8s.io",
        "flowschemas.flowcontrol.apiserver.k8s.io",
    ):
        assert resource in groups


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_helm_installs_a_chart_registering_an_apiservice(
    helm_name: str,
    cluster: EmbeddedCluster,
    kubectl: Run,
    namespace: str,
    tool: Callable[[str], str],
    tmp_path: Path,
) -> None:
    env = helm_env(tmp_path, cluster)
    proc = subprocess.run(
        [tool(helm_name), "install", "metrics", str(CHART), "-n", namespace],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "STATUS: deployed" in proc.stdout
    kubectl(
        "wait",
        "apiservice/v1beta1.metrics.k8s.io",
        "--for=condition=Available=False",
        "--timeout=10s",
    )
    table = cells(kubectl("get", "apiservice", "v1beta1.metrics.k8s.io").stdout)
    assert table[0] == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    assert table[1][:3] == [
        "v1beta1.metrics.k8s.io",
        f"{namespace}/metrics-metrics",
        "False (NotProxied)",
    ]
    subprocess.run(
        [tool(helm_name), "uninstall", "metrics", "-n", namespace],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    gone = kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", check=False)
    assert "NotFound" in gone.stderr


# -- list semantics --------------------------------------------------------------------


def _api(cluster: EmbeddedCluster) -> Any:
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


def test_pagination_is_a_snapshot_under_concurrent_writes(
    cluster: EmbeddedCluster, namespace: str
) -> None:
    from kubernetes.client.rest import ApiException

    core = _api(cluster)
    store = cluster.store
    rt = cluster.registry.get("", "configmaps")
    assert rt is not None
    with store.lock:
        for i in range(2000):
            store.create(
                rt,
                {"metadata": {"name": f"cm-{i:04d}", "namespace": namespace}, "data": {"v": "0"}},
            )
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            core.create_namespaced_config_map(namespace, {"metadata": {"name": f"late-{i:04d}"}})
            core.patch_namespaced_config_map(f"cm-{i % 2000:04d}", namespace, {"data": {"v": "1"}})
            core.delete_namespaced_config_map(f"cm-{(1999 - i) % 2000:04d}", namespace)
            written.append(i)
            i += 1

    thread = threading.Thread(target=writer, daemon=True)
    names: list[str] = []
    versions = set()
    cont = None
    first_rv = None
    try:
        while True:
            page = core.list_namespaced_config_map(
                namespace,
                limit=250,
                _continue=cont,
                field_selector="metadata.name!=kube-root-ca.crt",
            )
            first_rv = first_rv or page.metadata.resource_version
            versions.add(page.metadata.resource_version)
            names += [c.metadata.name for c in page.items]
            assert all(c.data == {"v": "0"} for c in page.items)
            cont = page.metadata._continue
            if thread.ident is None:
                # The writer starts once the first page pinned the snapshot: every later
                # page must come from that snapshot whatever is written meanwhile.
                thread.start()
                deadline = time.monotonic() + 10
                while not written and thread.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.005)
            if not cont:
                break
    finally:
        stop.set()
        thread.join(10)
    assert written, "the writer never ran between pages"
    assert names == [f"cm-{i:04d}" for i in range(2000)]
    assert versions == {first_rv}
    # Exact reads of that version give the same snapshot; a future one times out (504).
    exact = core.list_namespaced_config_map(
        namespace, resource_version=first_rv, resource_version_match="Exact",
        field_selector="metadata.name!=kube-root-ca.crt",
    )  # fmt: skip
    assert len(exact.items) == 2000 and exact.metadata.resource_version == first_rv
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map(
            namespace, resource_version=str(store.resource_version + 10_000),
            resource_version_match="Exact",
        )  # fmt: skip
    assert caught.value.status == 504 and "Too large resource version" in caught.value.body


def test_compacted_versions_and_field_labels(cluster: EmbeddedCluster, namespace: str) -> None:
    from kubernetes.client.rest import ApiException

    core = _api(cluster)
    store = cluster.store
    # Compaction: a version older than the history answers 410 Expired.
    old = store._compacted_rv
    store._compacted_rv = store.resource_version - 1
    try:
        with pytest.raises(ApiException) as caught:
            core.list_namespaced_config_map(
                namespace, resource_version=str(store.resource_version - 5),
                resource_version_match="Exact",
            )  # fmt: skip
        assert caught.value.status == 410 and '"reason":"Expired"' in caught.value.body.replace(
            " ", ""
        )
    finally:
        store._compacted_rv = old
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map(namespace, field_selector="spec.foo=bar")
    assert caught.value.status == 400
    assert "field label not supported: spec.foo" in caught.value.body
    pods = core.list_namespaced_pod(
        namespace, field_selector="status.phase=Running,spec.nodeName=x"
    )
    assert pods.items == []
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod(namespace, field_selector="status.podIP!=1,spec.containers=x")
    assert "field label not supported: spec.containers" in caught.value.body
    secrets = core.list_namespaced_secret(namespace, field_selector="type=Opaque")
    assert secrets.items == []


def test_get_watch_prints_table_rows(
    cluster: EmbeddedCluster, kubectl: Run, namespace: str, tool: Callable[[str], str]
) -> None:
    exe = tool("kubectl-1.33")
    proc = subprocess.Popen(
        [exe, "--kubeconfig", str(cluster.kubeconfig), "get", "configmaps", "-w", "-n", namespace,
         "--field-selector", "metadata.name!=kube-root-ca.crt"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        # Create only once the server holds kubectl's watch (an earlier object would come
        # in the initial list instead).
        for _ in range(100):
            if any(w.namespace == namespace for w in list(cluster.store._watchers)):
                break
            threading.Event().wait(0.05)
        kubectl("create", "configmap", "w1", "-n", namespace, "--from-literal=a=b")
        lines = [proc.stdout.readline(), proc.stdout.readline()]
    finally:
        proc.terminate()
        proc.wait(10)
    assert cells("".join(lines)) == golden("""
NAME   DATA   AGE
w1     1      <age>
""")
