"""The embedded cluster driven by real kubectl binaries (the machine's and the Helm layers')."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_devloop.embedded.cluster import EmbeddedCluster

Run = Callable[..., subprocess.CompletedProcess[str]]

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        ports: [{containerPort: 8080, name: http}]
        env: [{name: MODE, value: dev}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {greeting: hello}
"""


@pytest.fixture(params=["kubectl", "kubectl-1.32", "kubectl-1.33"])
def kctl(request: pytest.FixtureRequest, kubectl: Run, tool: Callable[[str], str]) -> Run:
    """kubectl of each version the toolchain provides."""
    binary = tool(request.param)

    def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, binary=binary, **kw)

    return run


def test_apply_client_side_then_update(kctl: Run, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(DEPLOYMENT)
    out = kctl("apply", "-n", namespace, "-f", str(manifest)).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    kctl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=20s")
    # A second apply of the same file changes nothing.
    out = kctl("apply", "-n", namespace, "-f", str(manifest)).stdout
    assert "deployment.apps/web unchanged" in out
    # A changed image goes through kubectl's three-way strategic merge patch.
    manifest.write_text(
        DEPLOYMENT.replace("nginx:1.27", "nginx:1.28").replace("value: dev", "value: prod")
    )
    out = kctl("apply", "-n", namespace, "-f", str(manifest)).stdout
    assert "deployment.apps/web configured" in out
    kctl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=20s")
    dep = json.loads(kctl("get", "-n", namespace, "deployment/web", "-o", "json").stdout)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.28"
    assert container["env"] == [{"name": "MODE", "value": "prod"}]
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]


def test_apply_server_side(kctl: Run, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(DEPLOYMENT)
    out = kctl("apply", "--server-side", "-n", namespace, "-f", str(manifest)).stdout
    assert "deployment.apps/web serverside-applied" in out
    dep = yaml.safe_load(
        kctl("get", "-n", namespace, "deployment/web", "-o", "yaml", "--show-managed-fields").stdout
    )
    assert {e["manager"] for e in dep["metadata"]["managedFields"]} >= {"kubectl"}
    # Another manager took replicas: a plain server-side apply conflicts, --force-conflicts wins.
    kctl("scale", "-n", namespace, "deployment/web", "--replicas=2")
    changed = DEPLOYMENT.replace("replicas: 1", "replicas: 3")
    manifest.write_text(changed)
    proc = kctl("apply", "--server-side", "-n", namespace, "-f", str(manifest), check=False)
    assert (
        proc.returncode != 0
        and "conflict" in proc.stderr.lower()
        and ".spec.replicas" in proc.stderr
    )
    kctl("apply", "--server-side", "--force-conflicts", "-n", namespace, "-f", str(manifest))
    kctl("wait", "-n", namespace, "deployment/web", "--for=condition=Available", "--timeout=20s")
    dep = json.loads(kctl("get", "-n", namespace, "deployment/web", "-o", "json").stdout)
    assert dep["status"]["readyReplicas"] == 3


def test_scale_rollout_wait_delete(kctl: Run, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(DEPLOYMENT)
    kctl("apply", "-n", namespace, "-f", str(manifest))
    assert "scaled" in kctl("scale", "-n", namespace, "deployment/web", "--replicas=3").stdout
    kctl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=20s")
    kctl("wait", "-n", namespace, "deployment/web", "--for=condition=Available", "--timeout=20s")
    pods = json.loads(kctl("get", "-n", namespace, "pods", "-l", "app=web", "-o", "json").stdout)[
        "items"
    ]
    assert len(pods) == 3 and all(p["status"]["phase"] == "Running" for p in pods)
    logs = kctl("logs", "-n", namespace, pods[0]["metadata"]["name"]).stdout
    assert "nginx:1.27" in logs
    out = kctl("delete", "-n", namespace, "deployment/web", "--wait=true", "--timeout=20s").stdout
    assert 'deployment.apps "web" deleted' in out
    assert kctl("get", "-n", namespace, "deployment/web", check=False).returncode != 0


def test_create_secret_and_configmap(kctl: Run, namespace: str) -> None:
    # kubectl sends these bodies as protobuf.
    kctl(
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        namespace,
        "--from-literal=user=admin",
        "--from-literal=pass=s3cr3t",
    )
    secret = json.loads(kctl("get", "secret", "creds", "-n", namespace, "-o", "json").stdout)
    assert secret["type"] == "Opaque"
    assert set(secret["data"]) == {"user", "pass"}
    kctl("create", "configmap", "plain", "-n", namespace, "--from-literal=a=b")
    cm = json.loads(kctl("get", "configmap", "plain", "-n", namespace, "-o", "json").stdout)
    assert cm["data"] == {"a": "b"}
    kctl("label", "configmap", "plain", "-n", namespace, "tier=web")
    names = kctl(
        "get", "configmaps", "-n", namespace, "-l", "tier=web", "-o", "name"
    ).stdout.split()
    assert names == ["configmap/plain"]


def test_get_lists_and_namespaces(kctl: Run, cluster: EmbeddedCluster) -> None:
    out = kctl("get", "namespaces", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(out)
    nodes = json.loads(kctl("get", "nodes", "-o", "json").stdout)["items"]
    assert nodes and all(
        a["address"].startswith("127.")
        for n in nodes
        for a in n["status"]["addresses"]
        if a["type"] == "InternalIP"
    )
    assert kctl("version", "-o", "json").returncode == 0


def test_unknown_kind_is_reported(kctl: Run, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "x.yaml"
    manifest.write_text("apiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: g}\n")
    proc = kctl("apply", "-n", namespace, "-f", str(manifest), check=False)
    assert proc.returncode != 0
    assert "Gizmo" in proc.stderr


def test_rollout_status_of_a_scale_reads_as_on_a_real_cluster(
    kctl: Run, namespace: str, tmp_path: Path
) -> None:
    # Pods take 0.5 s: kubectl's watch sees the Deployment's status in between.
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        DEPLOYMENT.replace(
            "metadata: {labels: {app: web}}",
            "metadata: {labels: {app: web}, annotations: {devloop.dev/ready-delay: '0.5'}}",
        )
    )
    kctl("apply", "-n", namespace, "-f", str(manifest))
    kctl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=20s")
    kctl("scale", "-n", namespace, "deployment/web", "--replicas=3")
    out = kctl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=20s").stdout
    lines = out.splitlines()
    # kubectl's own texts (rollout_status.go): each wait line names what the status says.
    waiting = [
        'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...',
        'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...',
    ]
    assert lines[-1] == 'deployment "web" successfully rolled out', out
    assert lines[:-1] and set(lines[:-1]) <= set(waiting), out
    assert lines[0] == waiting[0], out
