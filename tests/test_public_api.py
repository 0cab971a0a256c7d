"""The package's public surface: the fixtures' types, importable for annotations, loaded lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pytest_devloop


def test_fixture_types_are_reexported_from_the_package() -> None:
    from pytest_devloop.prometheus.targets import Prometheus
    from pytest_devloop.run.eventually import Eventually
    from pytest_devloop.run.view import Cluster, Rendered

    assert pytest_devloop.Cluster is Cluster
    assert pytest_devloop.Rendered is Rendered
    assert pytest_devloop.Prometheus is Prometheus
    assert pytest_devloop.Eventually is Eventually
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pytest_devloop.Nope  # noqa: B018


def test_importing_the_package_imports_no_client() -> None:
    code = (
        "import sys, pytest_devloop, pytest_devloop.plugin; "
        "print(sorted(m for m in sys.modules if m.startswith(('kubernetes', 'pytest_devloop.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "kubernetes" not in out, out
    assert out.strip() == "['pytest_devloop.plugin']", out


def test_the_session_plugin_is_registered_only_when_a_config_is_active(
    pytester: pytest.Pytester,
) -> None:
    """As xdist registers its DSession: a project without devloop.yaml gets no devloop hooks."""
    pytester.makepyfile(
        test_probe="""
        def test_probe(pytestconfig):
            print("SESSION", pytestconfig.pluginmanager.get_plugin("devloop-session") is not None)
        """
    )
    without = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    without.stdout.fnmatch_lines(["*SESSION False*"])
    pytester.makefile(".yaml", devloop="charts: []\n")
    with_config = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--devloop-static")
    with_config.stdout.fnmatch_lines(["*SESSION True*"])
