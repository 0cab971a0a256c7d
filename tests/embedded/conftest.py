"""Fixtures for the embedded cluster's tests: one cluster per test module, real clients."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.embedded.controllers import SimulationConfig

_counter = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=0.05, job_duration=0.1),
        directory=tmp_path_factory.mktemp("cluster"),
    )
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def api_client(cluster: EmbeddedCluster) -> Iterator[Any]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api
    api.close()
    del client


@pytest.fixture
def namespace(api_client: Any, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test, so tests sharing a module's cluster never collide."""
    from kubernetes import client

    base = request.node.name.lower().replace("_", "-").removeprefix("test-")
    base = "".join(ch for ch in base if ch.isalnum() or ch == "-")[:40].strip("-")
    name = f"t-{base}-{next(_counter)}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def kubectl(
    cluster: EmbeddedCluster, tool: Callable[[str], str]
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real kubectl against the module's cluster; raises on a non-zero exit."""
    exe = tool("kubectl")

    def run(
        *args: str, check: bool = True, input: str | None = None, binary: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [binary or exe, "--kubeconfig", str(cluster.kubeconfig), *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, input=input, timeout=60, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture(params=["kubectl-1.32", "kubectl-1.33"])
def kctl(
    request: pytest.FixtureRequest,
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    tool: Callable[[str], str],
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`kubectl` as each pinned kubectl version (1.32 and 1.33) runs it."""
    binary = tool(request.param)

    def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, binary=binary, **kw)

    return run


def helm_env(tmp_path: Path, cluster: EmbeddedCluster) -> dict[str, str]:
    """The environment of a real helm run against `cluster`, with its own folders."""
    return {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
        "KUBECONFIG": str(cluster.kubeconfig),
    }


def kubectl_json(run: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> Any:
    return json.loads(run(*args, "-o", "json").stdout)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
