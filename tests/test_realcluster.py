"""The real-cluster lane: what the embedded cluster cannot show, on a kind/Minikube/k3d cluster.

Run it with a cluster whose kubeconfig context you name (docs/real-clusters.md):

    DEVLOOP_TEST_CONTEXT=kind-devloop ./scripts/test -m realcluster

Without `DEVLOOP_TEST_CONTEXT` every test here is skipped with that reason. The embedded
cluster runs no containers: its pods become Ready after a fixed delay, no image is ever
pulled and a namespace is gone the moment it is deleted. These tests check the plugin
against the real thing: images built and loaded into the cluster (or not pullable at all),
readiness probes that take real time, a rollout of several replicas, and namespace
deletion that takes a while.

Each test copies the example project to a temporary folder and syncs it into a namespace
of its own (`devloop-rc-<random>`), deleted at the end, so the tests are independent of
each other and of their order (the test command runs them on two xdist workers). The provider is derived from the
context: `kind-<name>` -> `kind:<name>`, `k3d-<name>` -> `k3d:<name>` (so the images are
loaded into the cluster's nodes), anything else -> `current` with that context (and
`allow_contexts`, so a remote dev cluster is accepted). `DEVLOOP_TEST_PROVIDER` overrides
it, e.g. `minikube:minikube`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import find_tool

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
CONTEXT = os.environ.get("DEVLOOP_TEST_CONTEXT", "")

pytestmark = [
    pytest.mark.realcluster,
    pytest.mark.skipif(
        not CONTEXT,
        reason="real-cluster lane: set DEVLOOP_TEST_CONTEXT to a kubeconfig context "
        "(e.g. DEVLOOP_TEST_CONTEXT=kind-devloop ./scripts/test -m realcluster)",
    ),
]


def provider_for(context: str) -> str:
    explicit = os.environ.get("DEVLOOP_TEST_PROVIDER")
    if explicit:
        return explicit
    for prefix, kind in (("kind-", "kind"), ("k3d-", "k3d")):
        if context.startswith(prefix):
            return f"{kind}:{context[len(prefix) :]}"
    return "current"


def run_env() -> dict[str, str]:
    """Dev mode (no CI), and the project's helm when none is on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if not env.get("DEVLOOP_HELM") and shutil.which("helm") is None:
        helm = find_tool("helm4") or find_tool("helm3")
        if helm:
            env["DEVLOOP_HELM"] = helm
    return env


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = find_tool("kubectl") or "kubectl"
    return subprocess.run(
        [exe, "--context", CONTEXT, *args], capture_output=True, text=True, check=check
    )


def configure(project: Path, namespace: str, *, with_images: bool = True) -> None:
    """Point a copy's devloop.yaml at the lane's cluster and namespace."""
    config_file = project / "devloop.yaml"
    config = yaml.safe_load(config_file.read_text())
    provider = provider_for(CONTEXT)
    cluster: dict[str, object] = {"provider": provider}
    if provider == "current":
        cluster.update(context=CONTEXT, allow_contexts=[CONTEXT])
    config["cluster"] = cluster
    config["namespace"] = namespace
    config["wait_timeout"] = 300
    if not with_images:  # the chart's image values then stay at their defaults
        config.pop("images", None)
        for chart in config.get("charts", []):
            chart.pop("set", None)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))


def pytest_in(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", *args],
        cwd=project,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def devloop_sync(project: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "sync", "--rootdir", str(project)],
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def delete_namespace(namespace: str) -> None:
    kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A copy of the example project configured for the lane's cluster, not synced yet."""
    if kubectl("version", "-o", "json", check=False).returncode != 0:
        pytest.fail(f"DEVLOOP_TEST_CONTEXT={CONTEXT}: the cluster does not answer kubectl")
    namespace = f"devloop-rc-{uuid.uuid4().hex[:6]}"
    dest = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".devloop", ".benchmarks"))
    configure(dest, namespace)
    try:
        yield dest
    finally:
        delete_namespace(namespace)


def deployment(namespace: str, name: str) -> dict[str, object]:
    out = kubectl("-n", namespace, "get", "deployment", name, "-o", "json").stdout
    data: dict[str, object] = json.loads(out)
    return data


def namespace_of(project: Path) -> str:
    return str(yaml.safe_load((project / "devloop.yaml").read_text())["namespace"])


def set_replicas(project: Path, component: str, replicas: int) -> None:
    values = project / "charts/sms-checker/values.yaml"
    text = values.read_text()
    new, n = re.subn(
        rf"^({component}:\n  replicas: )\d+$", rf"\g<1>{replicas}", text, flags=re.MULTILINE
    )
    assert n == 1, f"no {component}.replicas in {values}"
    values.write_text(new)


def test_example_suite_is_green_on_the_real_cluster(project: Path) -> None:
    """Images built and loaded, pods pass their real readiness probes, all 12 tests green."""
    r = pytest_in(project)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"^devloop: crds: .*\d+ created", out, re.MULTILINE), out
    assert re.search(r"^devloop: sms-checker: .*10 created", out, re.MULTILINE), out
    assert "12 passed" in out, out
    # Built, not skipped as on the embedded cluster.
    assert "not built" not in out, out
    ns = namespace_of(project)
    for name in ("sms-checker-app", "sms-checker-model"):
        status = deployment(ns, name)["status"]
        assert isinstance(status, dict) and status.get("readyReplicas") == 1, status


def test_sync_waits_for_a_rollout_of_three_replicas(project: Path) -> None:
    """The sync returns only when all 3 replicas passed their readiness probe: checked with
    no retry right after it (on the embedded cluster every pod is Ready in 50 ms, so only a
    real kubelet shows whether the wait covers the whole rollout)."""
    first = devloop_sync(project)
    assert first.returncode == 0, first.stdout + first.stderr
    set_replicas(project, "app", 3)
    r = devloop_sync(project)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Deployment/sms-checker-app: spec.replicas" in out, out
    status = deployment(namespace_of(project), "sms-checker-app")["status"]
    assert isinstance(status, dict)
    assert status.get("readyReplicas") == 3, status
    assert status.get("updatedReplicas") == 3, status


def test_selection_after_a_replicas_change(project: Path) -> None:
    """`--devloop-affected` after 1 -> 2 replicas runs the app's replica test (not the
    model's) and it passes against what the real cluster reports."""
    first = pytest_in(project)
    assert first.returncode == 0, first.stdout + first.stderr
    set_replicas(project, "app", 2)
    r = pytest_in(project, "--devloop-affected", "--devloop-explain")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Deployment/sms-checker-app: spec.replicas" in out, out
    assert re.search(r"^devloop: \d+ of 12 tests (affected|selected)", out, re.MULTILINE), out
    assert "PASSED tests/test_replicas.py::test_app_runs_the_requested_replicas" in out, out
    assert "test_model_runs_the_requested_replicas: not affected" in out, out
    status = deployment(namespace_of(project), "sms-checker-app")["status"]
    assert isinstance(status, dict) and status.get("readyReplicas") == 2, status


def test_ci_mode_tears_its_namespace_down(project: Path) -> None:
    """CI mode on a real cluster: a fresh namespace, every test, then the namespace is
    deleted, and the teardown waited until it was gone (a real namespace spends seconds in
    Terminating while its pods shut down; the embedded one is gone at once)."""
    r = pytest_in(project, "--devloop-ci")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    fresh = re.search(r"CI mode: fresh namespace (\S+),", out)
    assert fresh, out
    ns = fresh.group(1)
    assert f"CI teardown: namespace {ns} deleted" in out, out
    assert "12 passed" in out, out
    got = kubectl("get", "namespace", ns, "-o", "jsonpath={.status.phase}", check=False)
    assert got.returncode != 0, f"namespace {ns} still exists: {got.stdout}"
    assert "NotFound" in got.stderr, got.stderr


def test_an_image_that_cannot_be_pulled_fails_the_sync_naming_the_pull_error(
    tmp_path: Path,
) -> None:
    """A Deployment whose image does not exist never becomes ready: the sync's wait ends in
    an error that names ErrImagePull or ImagePullBackOff (the embedded cluster pulls
    nothing, so there it would be Ready)."""
    namespace = f"devloop-rc-{uuid.uuid4().hex[:6]}"
    project = tmp_path / "pull"
    (project / "manifests").mkdir(parents=True)
    (project / "manifests" / "deployment.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "no-such-image"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "no-such-image"}},
                    "template": {
                        "metadata": {"labels": {"app": "no-such-image"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "image": "registry.invalid/devloop/no-such-image:0.0.0",
                                    "imagePullPolicy": "Always",
                                }
                            ]
                        },
                    },
                },
            }
        )
    )
    cluster: dict[str, object] = {"provider": "current", "context": CONTEXT}
    cluster["allow_contexts"] = [CONTEXT]
    (project / "devloop.yaml").write_text(
        yaml.safe_dump(
            {
                "cluster": cluster,
                "namespace": namespace,
                "wait_timeout": 60,
                "manifests": [{"name": "pull", "path": "manifests"}],
            },
            sort_keys=False,
        )
    )
    try:
        r = devloop_sync(project, timeout=300)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert "no-such-image" in out, out
        assert "ErrImagePull" in out or "ImagePullBackOff" in out, out
    finally:
        delete_namespace(namespace)
