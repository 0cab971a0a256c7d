"""CI mode leaves no namespace however the job ends, and collects what killed runs left.

Each run is a real `python -m pytest --devloop-ci` in a small project, against an embedded
cluster of this module (provider `current`, a loopback kubeconfig). Its one test marks a
gate file and then blocks, so the signal arrives while a test runs, as when a CI job is
cancelled; the `timeout -s TERM` run is signalled whenever its time is up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_devloop.cluster.kube import Kube
from pytest_devloop.cluster.session import Options, load
from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.embedded.controllers import SimulationConfig
from pytest_devloop.run import teardown

pytestmark = pytest.mark.slow

BLOCKING_TEST = """
import os, pathlib, time

def test_blocks_until_the_job_is_cancelled(cluster):
    assert cluster.get("ConfigMap", "app")
    pathlib.Path(os.environ["GATE"]).write_text("started")
    time.sleep(600)
"""


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web:1}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(directory=tmp_path_factory.mktemp("cluster"))
    c.start()
    yield c
    c.stop()


@pytest.fixture
def kube(cluster: EmbeddedCluster) -> Kube:
    from kubernetes import config

    return Kube(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "manifests").mkdir(parents=True)
    (root / "devloop.yaml").write_text(
        "namespace: app\nmanifests:\n  - name: app\n    path: manifests\n"
    )
    (root / "manifests" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: '1'\n"
    )
    (root / "test_blocking.py").write_text(BLOCKING_TEST)
    return root


def project_id(root: Path) -> str:
    config = load(Options(rootdir=root))
    assert config is not None
    return teardown.project_identity(config)


def env(cluster: EmbeddedCluster, root: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    out["KUBECONFIG"] = str(cluster.kubeconfig)
    out["GATE"] = str(root / "gate")
    return out


def pytest_argv(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "--devloop-ci",
        "--devloop-cluster=current",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:benchmark",
        *extra,
    ]


def ci_namespaces(kube: Kube) -> dict[str, dict[str, str]]:
    res = kube.resource("v1", "Namespace")
    assert res is not None
    return {
        ns["metadata"]["name"]: ns["metadata"].get("labels") or {}
        for ns in kube.list(res)
        if ns["metadata"]["name"].startswith("devloop-")
        and not ns["metadata"].get("deletionTimestamp")
    }


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        if proc.poll() is not None:
            out, _ = proc.communicate()
            pytest.fail(f"pytest ended before its test started:\n{out}")
        assert time.monotonic() < deadline, "the blocking test never started"
        time.sleep(0.05)


def start(cluster: EmbeddedCluster, root: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        pytest_argv(*extra),
        cwd=root,
        env=env(cluster, root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def make_stale(kube: Kube, name: str, project: str, age: float) -> None:
    res = kube.resource("v1", "Namespace")
    assert res is not None
    kube.create(res, teardown.namespace_manifest(name, name[-6:], project, time.time() - age))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_during_the_tests_leaves_no_namespace(
    cluster: EmbeddedCluster, kube: Kube, project: Path, signum: int
) -> None:
    proc = start(cluster, project, "-p", "no:xdist")
    wait_for(project / "gate", proc)

    # While the run is going, its namespace carries the run, its creation and the project.
    live = ci_namespaces(kube)
    assert len(live) == 1, live
    ((name, labels),) = live.items()
    assert labels[teardown.CI_RUN_LABEL] == name.removeprefix("devloop-")
    assert labels[teardown.PROJECT_LABEL] == project_id(project)
    assert abs(int(labels[teardown.CI_CREATED_LABEL]) - time.time()) < 600

    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)

    assert f"devloop: CI teardown: namespace {name} deleted" in out, out
    assert proc.returncode == 2, out  # interrupted, as on Ctrl-C
    assert ci_namespaces(kube) == {}


def test_a_signal_during_the_sync_leaves_no_namespace(
    tmp_path_factory: pytest.TempPathFactory, project: Path
) -> None:
    # Pods that never get ready: the sync waits for the Deployment when the signal comes,
    # before any test (pytest then skips its session finish; the teardown still runs).
    slow = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=3600), directory=tmp_path_factory.mktemp("slow")
    )
    slow.start()
    try:
        from kubernetes import config

        kube = Kube(config.new_client_from_config(config_file=str(slow.kubeconfig)))
        (project / "manifests" / "deploy.yaml").write_text(DEPLOYMENT)
        proc = start(slow, project, "-p", "no:xdist")
        deploy = kube.resource("apps/v1", "Deployment")
        assert deploy is not None
        deadline = time.monotonic() + 120
        while not any(kube.list(deploy, ns) for ns in ci_namespaces(kube)):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the sync never applied the Deployment"
            time.sleep(0.05)

        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)

        assert not (project / "gate").exists(), out
        assert "devloop: CI teardown: namespace devloop-" in out, out
        assert ci_namespaces(kube) == {}
    finally:
        slow.stop()


def test_sigterm_to_the_xdist_controller_leaves_no_namespace(
    cluster: EmbeddedCluster, kube: Kube, project: Path
) -> None:
    proc = start(cluster, project, "-n", "2")
    wait_for(project / "gate", proc)
    assert len(ci_namespaces(kube)) == 1

    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)

    assert "devloop: CI teardown: namespace devloop-" in out, out
    assert ci_namespaces(kube) == {}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_timeout_sigterm_leaves_no_namespace(
    cluster: EmbeddedCluster, kube: Kube, project: Path, workers: list[str]
) -> None:
    timeout = shutil.which("timeout")
    if timeout is None:
        pytest.skip("coreutils timeout is not installed")
    # `timeout` under a limit the run never reaches by itself; once the test runs, its
    # SIGALRM is sent by hand: that is how `timeout` expires, and it then sends TERM to
    # the command and to its whole process group (the xdist workers too).
    proc = subprocess.Popen(
        [timeout, "-s", "TERM", "600", *pytest_argv(*(workers or ["-p", "no:xdist"]))],
        cwd=project,
        env=env(cluster, project),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(project / "gate", proc)
    assert len(ci_namespaces(kube)) == 1

    proc.send_signal(signal.SIGALRM)
    out, _ = proc.communicate(timeout=180)

    assert proc.returncode == 124, out  # timeout's "timed out"
    assert "devloop: CI teardown: namespace devloop-" in out, out
    assert ci_namespaces(kube) == {}


def test_a_ci_run_collects_this_projects_stale_namespaces_only(
    cluster: EmbeddedCluster, kube: Kube, project: Path
) -> None:
    mine = project_id(project)
    make_stale(kube, "devloop-0ld0ld", mine, age=2 * 3600)
    make_stale(kube, "devloop-young1", mine, age=60)
    make_stale(kube, "devloop-other1", "another-project", age=2 * 3600)
    (project / "test_blocking.py").write_text(
        "def test_reads(cluster):\n    assert cluster.get('ConfigMap', 'app')\n"
    )

    proc = subprocess.run(
        pytest_argv("-p", "no:xdist"),
        cwd=project,
        env=env(cluster, project),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = proc.stdout + proc.stderr

    assert proc.returncode == 0, out
    assert "devloop: gc: deleted stale CI namespace devloop-0ld0ld (created 2 h ago)" in out, out
    assert set(ci_namespaces(kube)) == {"devloop-young1", "devloop-other1"}
    _cleanup(kube, "devloop-young1", "devloop-other1")


def test_devloop_gc_dry_run_lists_then_gc_deletes(
    cluster: EmbeddedCluster, kube: Kube, project: Path
) -> None:
    mine = project_id(project)
    make_stale(kube, "devloop-aaaaaa", mine, age=3 * 3600)
    make_stale(kube, "devloop-bbbbbb", mine, age=30 * 60)
    make_stale(kube, "devloop-cccccc", "another-project", age=3 * 3600)
    base = [sys.executable, "-m", "pytest_devloop", "gc", "--cluster", "current"]

    def gc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args],
            cwd=project,
            env=env(cluster, project),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    dry = gc("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "devloop: gc: would delete stale CI namespace devloop-aaaaaa (created 3 h ago)"
    ]
    assert {"devloop-aaaaaa", "devloop-bbbbbb", "devloop-cccccc"} <= set(ci_namespaces(kube))

    done = gc("--older-than", "600")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "devloop: gc: deleted stale CI namespace devloop-aaaaaa (created 3 h ago)",
        "devloop: gc: deleted stale CI namespace devloop-bbbbbb (created 30 min ago)",
    ]
    assert set(ci_namespaces(kube)) == {"devloop-cccccc"}
    again = gc()
    assert again.stdout.strip() == (
        "devloop: gc: no CI namespace of this project is older than 3600 s"
    )
    _cleanup(kube, "devloop-cccccc")


def _cleanup(kube: Kube, *names: str) -> None:
    res = kube.resource("v1", "Namespace")
    assert res is not None
    for name in names:
        kube.delete(res, None, name)


def test_devloop_gc_starts_no_embedded_cluster(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "gc"],
        cwd=project,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"devloop: gc: no embedded cluster running in {project / '.devloop' / 'embedded'}; "
        "nothing to collect"
    )
    assert not (project / ".devloop" / "embedded").exists()


def test_gc_collects_what_a_killed_ci_run_created_outside_its_namespace(
    cluster: EmbeddedCluster, kube: Kube, project: Path
) -> None:
    # A CI run killed with SIGKILL runs no teardown: its namespace and the ClusterRole it
    # created stay. `devloop gc` deletes both; a ClusterRole that existed before the run
    # (the run applied to it, so it carries the run's labels too) is kept.
    roles = kube.resource("rbac.authorization.k8s.io/v1", "ClusterRole")
    assert roles is not None
    kube.create(roles, {"metadata": {"name": "gc-shared"}, "rules": []})
    time.sleep(1.1)  # the run starts in a later second than the shared role was created
    for name in ("gc-made-by-run", "gc-shared"):
        (project / "manifests" / f"{name}.yaml").write_text(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
            f"metadata:\n  name: {name}\nrules: []\n"
        )
    before = set(ci_namespaces(kube))
    proc = start(cluster, project, "-p", "no:xdist", "--devloop-adopt")
    wait_for(project / "gate", proc)
    (namespace,) = set(ci_namespaces(kube)) - before
    made = kube.get(roles, None, "gc-made-by-run")
    assert made is not None
    assert made["metadata"]["labels"][teardown.CI_RUN_LABEL] == namespace.removeprefix("devloop-")
    proc.kill()
    proc.communicate(timeout=60)
    assert namespace in ci_namespaces(kube), "SIGKILL: no teardown ran"

    gc = subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "gc", "--cluster", "current", "--older-than", "0"],
        cwd=project,
        env=env(cluster, project),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert gc.returncode == 0, gc.stderr
    lines = gc.stdout.splitlines()
    assert lines[0].startswith(f"devloop: gc: deleted stale CI namespace {namespace}"), lines
    assert lines[1:] == [
        f"devloop: gc: deleted ClusterRole/gc-made-by-run (left by CI run {namespace}, "
        "whose namespace is gone)"
    ]
    assert kube.get(roles, None, "gc-made-by-run") is None
    assert kube.get(roles, None, "gc-shared") is not None
    kube.delete(roles, None, "gc-shared")
