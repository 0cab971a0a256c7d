"""The `devloop` command and the option reference as a user meets them: every option,
subcommand and environment variable is documented; `status` is read-only; errors name the
flag that was typed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = ROOT / "docs" / "configuration.md"


def code_spans() -> list[str]:
    """The inline code of docs/configuration.md (fenced blocks left out)."""
    text = re.sub(r"^```.*?^```", "", CONFIGURATION.read_text(), flags=re.MULTILINE | re.DOTALL)
    return re.findall(r"`([^`]+)`", text)


def documented(name: str) -> bool:
    """`name` appears as a word of inline code (`--x`, `--x=V`, `devloop gc [--x N]`)."""
    word = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    return any(word.search(span) for span in code_spans())


def test_every_pytest_option_is_in_the_options_table(pytestconfig: pytest.Config) -> None:
    # The options pytest parsed (this plugin is loaded): each dest is its flag's name.
    options = sorted(
        "--" + dest.replace("_", "-")
        for dest in vars(pytestconfig.option)
        if dest.startswith("devloop_")
    )
    assert len(options) >= 20, options
    missing = [o for o in options if not documented(o)]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_devloop_subcommand_and_its_options_are_documented() -> None:
    from pytest_devloop.__main__ import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if a.choices and "sync" in a.choices)
    missing = []
    for name, p in sub.choices.items():
        if not re.search(rf"devloop {name}\b", CONFIGURATION.read_text()):
            missing.append(f"devloop {name}")
        for action in p._actions:
            missing += [
                f"devloop {name} {o}"
                for o in action.option_strings
                if o.startswith("--") and o != "--help" and not documented(o)
            ]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_environment_variable_is_documented() -> None:
    names = set()
    for path in (ROOT / "pytest_devloop").rglob("*.py"):
        names.update(re.findall(r"[\"'](DEVLOOP_[A-Z0-9_]+)[\"']", path.read_text()))
    assert "DEVLOOP_WATCH_RUNNER" in names
    missing = sorted(n for n in names if not documented(n))
    assert not missing, f"docs/configuration.md's Environment table lacks {missing}"


# -- the command on a project -------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, tool: Callable[[str], str]) -> Iterator[tuple[Path, dict[str, str]]]:
    copy = tmp_path / "example_project"
    shutil.copytree(
        ROOT / "example_project", copy, ignore=shutil.ignore_patterns(".devloop", ".benchmarks")
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "KUBECONFIG")}
    env["DEVLOOP_HELM"] = shutil.which("helm") or tool("helm4")
    yield copy, env
    devloop(copy, env, "cluster", "down")


def devloop(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_devloop", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_status_offers_no_writing_option() -> None:
    from pytest_devloop.__main__ import _parser

    with pytest.raises(SystemExit):
        _parser().parse_args(["status", "--create-cluster"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["status", "--profile", "p"])


def test_status_after_cluster_down_starts_no_cluster(project: tuple[Path, dict[str, str]]) -> None:
    folder, env = project
    assert devloop(folder, env, "sync").returncode == 0
    assert devloop(folder, env, "cluster", "down").returncode == 0

    run = devloop(folder, env, "status")

    assert run.returncode == 0, run.stderr
    assert "no embedded cluster running in .devloop/embedded" in run.stdout.replace(
        str(folder) + "/", ""
    ), run.stdout
    assert devloop(folder, env, "cluster", "status").returncode == 3  # still none running


def test_sync_prune_error_names_the_flag_typed(project: tuple[Path, dict[str, str]]) -> None:
    folder, env = project

    run = devloop(folder, env, "sync", "--prune", "foo")

    assert run.returncode == 2
    assert "--prune: unknown kind 'foo'; use one or more of pvcs, crds, namespaces" in run.stderr
    assert "--devloop-prune" not in run.stderr


@pytest.mark.skipif(
    shutil.which("victoria-metrics") is None and shutil.which("prometheus") is None,
    reason="no prometheus or victoria-metrics (scripts/tools.sh installs them)",
)
def test_embedded_prometheus_warnings_are_said_once_per_cluster_and_listed_by_status(
    project: tuple[Path, dict[str, str]],
) -> None:
    folder, env = project
    monitor = folder / "charts/sms-checker/templates/servicemonitor.yaml"
    text = monitor.read_text()
    anchor = "      scrapeTimeout: {{ .Values.monitoring.scrapeTimeout }}\n"
    assert anchor in text
    monitor.write_text(
        text.replace(anchor, anchor + "      tlsConfig:\n        insecureSkipVerify: true\n")
    )
    (folder / "tests/test_scrape.py").write_text(
        "def test_scrape_targets(prometheus):\n    prometheus.targets()\n"
    )
    warning = (
        "ServiceMonitor sms-checker/sms-checker-app: not supported by devloop's embedded "
        "Prometheus, ignored: spec.endpoints[0].tlsConfig"
    )

    def pytest_run() -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_scrape.py", "-p", "no:cacheprovider"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    first = pytest_run()
    assert first.count(warning) == 1, first
    second = pytest_run()
    assert warning not in second, second

    status = devloop(folder, env, "status")
    assert f"devloop: embedded Prometheus: {warning}" in status.stdout, status.stdout
