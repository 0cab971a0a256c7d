"""Real Helm 3.17 and Helm 4.1 install, upgrade and uninstall charts on the embedded cluster."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.embedded.cluster import EmbeddedCluster
from tests.embedded.conftest import helm_env

CHART = Path(__file__).parent / "data" / "charts" / "demo"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(params=["helm3", "helm4"])
def helm(
    request: pytest.FixtureRequest,
    cluster: EmbeddedCluster,
    tool: Callable[[str], str],
    tmp_path: Path,
) -> Run:
    exe = tool(request.param)
    env = helm_env(tmp_path, cluster)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [exe, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


def get(kubectl: Run, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def test_install_upgrade_uninstall(helm: Run, kubectl: Run, namespace: str) -> None:
    helm("upgrade", "--install", "demo", str(CHART), "-n", namespace, "--wait", "--timeout", "60s")
    dep = get(kubectl, "-n", namespace, "deployment/demo-web")
    assert dep["status"]["readyReplicas"] == 1
    widget = get(kubectl, "-n", namespace, "widgets.demo.devloop.dev/demo-widget")
    assert widget["spec"]["size"] == 1
    crd = get(kubectl, "crd/widgets.demo.devloop.dev")
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    first_rs = {rs["metadata"]["name"] for rs in get(kubectl, "-n", namespace, "rs")["items"]}

    # Changed values: the ConfigMap checksum changes the pod template, so the Deployment rolls.
    helm(
        "upgrade", "--install", "demo", str(CHART), "-n", namespace, "--wait", "--timeout", "60s",
        "--set", "replicas=3", "--set", "greeting=hi", "--set", "widgetSize=2",
    )  # fmt: skip
    dep = get(kubectl, "-n", namespace, "deployment/demo-web")
    assert dep["spec"]["replicas"] == 3 and dep["status"]["readyReplicas"] == 3
    assert dep["status"]["updatedReplicas"] == 3
    rs_names = {rs["metadata"]["name"] for rs in get(kubectl, "-n", namespace, "rs")["items"]}
    assert len(rs_names - first_rs) == 1, "a new ReplicaSet for the new pod template"
    cm = get(kubectl, "-n", namespace, "configmap/demo-config")
    assert cm["data"]["GREETING"] == "hi"
    assert (
        get(kubectl, "-n", namespace, "widgets.demo.devloop.dev/demo-widget")["spec"]["size"] == 2
    )

    releases = json.loads(helm("list", "-n", namespace, "-o", "json").stdout)
    assert [(r["name"], r["revision"], r["status"]) for r in releases] == [
        ("demo", "2", "deployed")
    ]

    helm("uninstall", "demo", "-n", namespace, "--wait", "--timeout", "60s")
    assert json.loads(helm("list", "-n", namespace, "-o", "json").stdout) == []
    for kind in ("deployments", "services", "configmaps", "widgets.demo.devloop.dev"):
        items = get(kubectl, "-n", namespace, kind)["items"]
        # The root CA bundle is in every namespace, as on a real cluster.
        assert [i for i in items if i["metadata"]["name"] != "kube-root-ca.crt"] == [], kind
    # Helm keeps CRDs on uninstall, as on a real cluster.
    assert get(kubectl, "crd/widgets.demo.devloop.dev")["metadata"]["name"]


def test_upgrade_after_out_of_band_change(
    helm: Run, kubectl: Run, namespace: str, request: pytest.FixtureRequest
) -> None:
    helm("upgrade", "--install", "oob", str(CHART), "-n", namespace, "--wait", "--timeout", "60s")
    kubectl("scale", "-n", namespace, "deployment/oob-web", "--replicas=2")
    upgrade = (
        "upgrade", "oob", str(CHART), "-n", namespace, "--wait", "--timeout", "60s",
        "--set", "image=nginx:1.28",
    )  # fmt: skip
    if "helm4" in request.node.callspec.id:
        # Helm 4 upgrades with server-side apply: kubectl now owns spec.replicas through
        # the scale subresource, so the chart's replicas conflict until forced.
        proc = helm(*upgrade, check=False)
        assert proc.returncode != 0
        assert 'conflict with "kubectl" with subresource "scale"' in proc.stderr
        assert ".spec.replicas" in proc.stderr
        helm(*upgrade, "--force-conflicts")
    else:
        # Helm 3's three-way merge patch simply overwrites the replicas.
        helm(*upgrade)
    dep = get(kubectl, "-n", namespace, "deployment/oob-web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert dep["status"]["updatedReplicas"] == dep["spec"]["replicas"]
    history = json.loads(helm("history", "oob", "-n", namespace, "-o", "json").stdout)
    assert [h["status"] for h in history][-1] == "deployed"
    assert history[0]["status"] in ("superseded", "failed")
