"""What the project's own tests share: pytester, and the real tools the suite drives.

`scripts/tools.sh` installs helm 3 and 4, their kubectl, docker and prometheus into
`.tools/` and records their paths in `.tools/tools.env`. A test that needs one asks
`tool("helm4")`: the path, or a skip naming the tool and the command that installs it.
Under `CI=true` a missing tool is an error instead of a skip, so CI never passes by
skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent
TOOLS_ENV = ROOT / ".tools" / "tools.env"

# tool name -> (variable in tools.env, fallback on PATH)
_TOOLS = {
    "helm3": ("DEVLOOP_HELM3", None),
    "helm4": ("DEVLOOP_HELM4", None),
    "kubectl": ("DEVLOOP_KUBECTL", "kubectl"),
    "kubectl-1.32": ("DEVLOOP_KUBECTL_132", None),
    "kubectl-1.33": ("DEVLOOP_KUBECTL_133", None),
    "docker": ("DEVLOOP_DOCKER", "docker"),
    "prometheus": ("DEVLOOP_PROMETHEUS", "prometheus"),
    "victoria-metrics": ("DEVLOOP_VICTORIA_METRICS", "victoria-metrics"),
}


def _tools_env() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = TOOLS_ENV.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def find_tool(name: str) -> str | None:
    var, fallback = _TOOLS[name]
    path = os.environ.get(var) or _tools_env().get(var)
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return path
    if fallback:
        return shutil.which(fallback)
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """`tool("helm4")` -> path of the real tool, or skip (fail in CI) naming the fix."""

    def get(name: str) -> str:
        path = find_tool(name)
        if path is None:
            message = (
                f"{name} is not installed: run `bash scripts/tools.sh` to install it into .tools/"
            )
            if in_ci():
                pytest.fail(f"CI=true and {message}", pytrace=False)
            pytest.skip(message)
        return path

    return get


# -- the fast tier ----------------------------------------------------------------------
# `pytest -m pure` runs the tests that need no tool, no cluster and no subprocess, in
# seconds. A test is in that tier when none of its fixtures starts anything; the guard
# below makes the tier honest: a `pure` test that starts a process or opens a
# connection fails, naming the reason.

_IMPURE_FIXTURES = frozenset(
    {
        "tool", "pytester", "testdir", "cluster", "embedded", "api_client", "api", "kube",
        "namespace", "helm", "kctl", "kubectl", "prom", "plain_prometheus", "example",
        "make_project", "docker_cli", "busybox", "repo", "count_syncs", "watch", "k8s", "sim",
        "env", "helm_log", "events_log", "server", "prometheus",
    }
)  # fmt: skip
# Modules whose own fixtures of a common name (`project`) start clusters or tools.
_IMPURE_MODULES = frozenset(
    {
        "test_pytest_integration.py", "test_realcluster.py", "test_watch.py",
        "test_sync_images.py", "test_packaging.py", "test_docs_commands.py", "test_cli.py",
        "test_sync.py", "test_images.py", "test_render.py", "test_robustness.py",
        "test_cluster_down.py", "test_ci_teardown.py", "test_gate.py",
    }
)  # fmt: skip
# Single tests that start a process or connect (to a closed loopback port) on their own.
_IMPURE_TESTS = frozenset(
    {
        "test_cli_version_and_help",
        "test_unreachable_url_names_the_url",
        "test_importing_the_package_imports_no_client",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("pure") is not None:
            continue
        if item.path.name in _IMPURE_MODULES or names & _IMPURE_FIXTURES:
            continue
        if getattr(item, "originalname", item.name) in _IMPURE_TESTS:
            continue
        if item.get_closest_marker("tool") or item.get_closest_marker("realcluster"):
            continue
        item.add_marker(pytest.mark.pure)


@pytest.fixture(autouse=True)
def _pure_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("pure") is None:
        return
    import socket
    import subprocess

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError(
            "a test in the fast tier (`pure`) started a process or opened a connection: "
            "give it a tool/cluster fixture or list its module in conftest._IMPURE_MODULES"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
