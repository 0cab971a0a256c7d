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
