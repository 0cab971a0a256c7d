"""The plugin is registered through its entry point and costs nothing when unused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pytest_devloop


def test_help_shows_devloop_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*pytest-devloop*", "*--devloop-pod-ready-delay*"])
    assert result.ret == 0


def test_plugin_registered_through_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_it(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("devloop")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_imports_no_kubernetes_client(pytester: pytest.Pytester) -> None:
    # A project that does not use devloop must not pay for the Kubernetes client.
    pytester.makepyfile(
        """
        import sys, json
        def test_modules(pytestconfig):
            heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("kubernetes", "watchdog", "tenacity"))
            heavy += sorted(m for m in sys.modules if m.startswith("pytest_devloop.embedded"))
            print("HEAVY=" + json.dumps(heavy))
        """
    )
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    line = next(line for line in result.outlines if "HEAVY=" in line)
    assert json.loads(line.split("HEAVY=", 1)[1].split("]")[0] + "]") == []


def test_cli_version_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"pytest-devloop {pytest_devloop.__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cluster" in out.stdout
