"""Every shell command in the README and the docs is exercised, here or by the test command.

The commands are the `$ ` lines of the ```console blocks of `DOCS`. `COVERAGE` says, for
each, how it is exercised:

- `run`: run here, in order, on a copy of the example project (the quickstart's
  sequence, which holds the README's commands too); the `devloop:` lines and the
  `passed` line shown under a command must be in its real output (times, ports, pids and
  digests aside);
- `watch`: the watch demo, run here with the edit the README describes;
- `provider`: a real-cluster command, run here against a kubeconfig without that cluster:
  it must fail naming the command the docs give to create the cluster;
- `lane`: the real-cluster lane, run here without a cluster (every test skipped, with
  the reason), and by `tests/test_realcluster.py` with one;
- `experiment`: `bench/experiment.py`, run here once (`--repeat 1`);
- `main-job`: the README's one-line install-and-run, run here without its install half
  (`./scripts/test` installs the same `helm` extra) and with no helm CLI anywhere, so that
  the example renders with the in-process Helm;
- `test-command`: run by `./scripts/test` itself (it installs the package and the tools
  on every run, and is the command `.ci/run` runs);
- `external`: another tool's command that creates a cluster (kind, minikube, k3d),
  named in the error a `provider` command prints when it was not run.

A command added to the docs without an entry here fails `test_every_command_is_covered`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/quickstart.md", "docs/concepts.md", "docs/real-clusters.md"]

COVERAGE: dict[str, str] = {
    "python3 -m pip install -e . && bash scripts/tools.sh --no-docker": "test-command",
    "python3 -m pip install -e '.[helm]' && python3 -m pytest example_project": "main-job",
    "python3 -m pytest example_project": "run",
    "cd example_project": "run",
    "python3 -m pytest --devloop-affected --devloop-explain": "run",
    "python3 -m pytest_devloop status": "run",
    "python3 -m pytest_devloop cluster status": "run",
    "python3 -m pytest_devloop cluster down": "run",
    "python3 -m pytest example_project --devloop-watch": "watch",
    "./scripts/test": "test-command",
    "python3 -m pytest -m pure": "fast-tier",
    "DEVLOOP_TEST_CONTEXT=kind-devloop ./scripts/test -m realcluster": "lane",
    "DEVLOOP_TEST_CONTEXT=devloop DEVLOOP_TEST_PROVIDER=minikube:devloop ./scripts/test -m realcluster": "lane",
    "python3 bench/experiment.py": "experiment",
    "DEVLOOP_TEST_CONTEXT=kind-devloop python3 bench/experiment.py": "lane",
    "kind create cluster --name devloop": "external",
    "minikube start -p devloop": "external",
    "eval $(minikube -p devloop docker-env)": "external",
    "k3d cluster create devloop": "external",
    "python3 -m pytest example_project --devloop-cluster kind:devloop": "provider",
    "python3 -m pytest example_project --devloop-cluster minikube:devloop": "provider",
    "python3 -m pytest example_project --devloop-cluster k3d:devloop": "provider",
}

# The edits the prose around the commands asks for, made before the command runs.
APP_REPLICAS = re.compile(r"^(app:\n  replicas: )\d+$", re.MULTILINE)


@dataclass
class Command:
    doc: str
    line: int
    text: str
    output: list[str] = field(default_factory=list)


def console_commands(doc: str) -> list[Command]:
    """The `$ ` lines of the ```console blocks of `doc`, each with the lines shown under it."""
    out: list[Command] = []
    in_console = False
    for n, line in enumerate((ROOT / doc).read_text().splitlines(), 1):
        if line.startswith("```"):
            in_console = line.strip() == "```console" and not in_console
            continue
        if not in_console:
            continue
        if line.startswith("$ "):
            out.append(Command(doc, n, line[2:].strip()))
        elif out and out[-1].line < n:
            out[-1].output.append(line)
    return out


def all_commands() -> list[Command]:
    return [c for doc in DOCS for c in console_commands(doc)]


def normalize(line: str) -> str:
    line = re.sub(r"https://127\.0\.0\.1:\d+", "URL", line)
    line = re.sub(r"uid [0-9a-f]{8}", "uid UID", line)
    line = re.sub(r"devloop-[0-9a-f]{12}", "devloop-DIGEST", line)
    line = re.sub(r"-[0-9a-f]{8,10}-[a-z0-9]{5}\b", "-POD", line)  # a pod's generated name
    line = re.sub(r"\d+\.\d+", "N", line)
    return line.strip(" =")


def checked_lines(output: list[str]) -> list[str]:
    """The shown lines a run must reproduce: devloop's own, and pytest's result line."""
    return [
        normalize(x)
        for x in output
        if x.startswith("devloop:") or (re.search(r"\d+ passed", x) and x.startswith("="))
    ]


def assert_shows(cmd: Command, out: str) -> None:
    actual = {normalize(x) for x in out.splitlines()}
    missing = [x for x in checked_lines(cmd.output) if x not in actual]
    assert not missing, f"{cmd.doc}:{cmd.line} `{cmd.text}` did not print {missing}:\n{out}"


@pytest.fixture
def env(tool: Callable[[str], str]) -> dict[str, str]:
    """Dev mode (no CI), and a helm for the copies (which have no .tools/ above them)."""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "KUBECONFIG")
    }
    environ["DEVLOOP_HELM"] = shutil.which("helm") or tool("helm4")
    return environ


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A folder holding a copy of example_project/, as the repository root holds it."""
    shutil.copytree(
        ROOT / "example_project",
        tmp_path / "example_project",
        ignore=shutil.ignore_patterns(".devloop", ".benchmarks"),
    )
    return tmp_path


def set_app_replicas(project: Path, replicas: int) -> None:
    values = project / "charts/sms-checker/values.yaml"
    text, n = APP_REPLICAS.subn(rf"\g<1>{replicas}", values.read_text())
    assert n == 1
    values.write_text(text)


def stop_cluster(project: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "cluster", "down"],
        cwd=project,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_every_command_is_covered() -> None:
    commands = all_commands()
    found = {c.text for c in commands}
    uncovered = [f"{c.doc}:{c.line}: {c.text}" for c in commands if c.text not in COVERAGE]
    assert not uncovered, "commands in the docs with no entry in COVERAGE:\n" + "\n".join(uncovered)
    stale = sorted(set(COVERAGE) - found)
    assert not stale, f"COVERAGE lists commands no document has any more: {stale}"
    # The README's and the quickstart's: nothing there is only documented.
    for doc in ("README.md", "docs/quickstart.md"):
        kinds = {COVERAGE[c.text] for c in console_commands(doc)}
        assert kinds <= {
            "run",
            "watch",
            "test-command",
            "main-job",
            "lane",
            "experiment",
            "fast-tier",
        }, (
            doc,
            kinds,
        )
    # `test-command` entries are what ./scripts/test runs.
    script = (ROOT / "scripts" / "test").read_text()
    assert (
        'pip install --disable-pip-version-check --root-user-action=ignore -q -e ".[test,helm,cel]"'
        in (script.replace("python3 -m ", ""))
    )
    assert "bash scripts/tools.sh" in script
    assert "exec ./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_quickstart_and_readme_commands_run_and_print_what_the_docs_show(
    repo: Path, env: dict[str, str]
) -> None:
    quickstart = [c for c in console_commands("docs/quickstart.md") if COVERAGE[c.text] == "run"]
    readme = [c for c in console_commands("README.md") if COVERAGE[c.text] == "run"]
    assert {c.text for c in readme} <= {c.text for c in quickstart}
    cwd = repo
    outputs: dict[str, str] = {}
    try:
        for cmd in quickstart:
            if cmd.text.startswith("cd "):
                cwd = cwd / cmd.text[3:]
                assert cwd.is_dir(), cmd
                continue
            if "--devloop-affected" in cmd.text:
                set_app_replicas(repo / "example_project", 3)  # as the prose above it says
            r = subprocess.run(
                cmd.text,
                shell=True,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            out = r.stdout + r.stderr
            assert r.returncode == 0, f"{cmd.doc}:{cmd.line} `{cmd.text}` failed:\n{out}"
            assert_shows(cmd, out)
            outputs.setdefault(cmd.text, out)
        for cmd in readme:
            assert_shows(cmd, outputs[cmd.text])
    finally:
        stop_cluster(repo / "example_project", env)


def test_main_job_runs_with_no_helm_cli(repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    """The README's first command, less its install half: no `helm` on PATH, no
    DEVLOOP_HELM, no .tools/ above the copy; the in-process Helm renders the example."""
    if importlib.util.find_spec("helm_python") is None:
        message = "the [helm] extra is not installed: python3 -m pip install -e '.[helm]'"
        if os.environ.get("CI"):
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    (main,) = [c for c in console_commands("README.md") if COVERAGE[c.text] == "main-job"]
    install, _, run = main.text.partition(" && ")
    assert install == "python3 -m pip install -e '.[helm]'"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    environ = {k: v for k, v in env.items() if k not in ("DEVLOOP_HELM", "DEVLOOP_HELM_BACKEND")}
    environ["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    assert shutil.which("helm", path=environ["PATH"]) is None
    try:
        r = subprocess.run(
            run,
            shell=True,
            cwd=repo,
            env=environ,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"`{run}` failed:\n{out}"
        assert_shows(main, out)
    finally:
        stop_cluster(repo / "example_project", environ)


def test_watch_demo(repo: Path, env: dict[str, str]) -> None:
    pytest.importorskip("pytest_devloop.watch.loop", reason="watch mode is not built yet")
    [cmd] = [c for c in all_commands() if COVERAGE[c.text] == "watch"]
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(cmd.text) :].split("```\n", 2)[2].split("```")[0]
    shown = [normalize(x) for x in block.splitlines() if x.startswith("devloop: ")]
    shown = [x for x in shown if not x.startswith("devloop: time:")]
    assert shown, block
    log = repo / "watch.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            shlex.split(cmd.text),
            cwd=repo,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def wait_for(pattern: str, timeout: float) -> str:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = log.read_text()
                if re.search(pattern, text, re.MULTILINE):
                    return text
                assert proc.poll() is None, f"watch mode exited:\n{text}"
                time.sleep(0.1)
            raise AssertionError(f"no {pattern!r} within {timeout} s:\n{log.read_text()}")

        wait_for(r"^devloop: time: .*total", 90)  # cycle 1: first sync and every test
        set_app_replicas(repo / "example_project", 2)  # the README's edit
        text = wait_for(r"^devloop: tests: 2 passed", 60)
        cycle2 = text[text.index("cycle 2") :]
        actual = {normalize(x) for x in cycle2.splitlines()}
        missing = [x for x in shown if x not in actual]
        assert not missing, f"watch mode did not print {missing}:\n{text}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        stop_cluster(repo / "example_project", env)


def test_real_cluster_commands_name_the_cluster_they_need(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Without the cluster, each documented `--devloop-cluster` command fails its sync,
    naming the `external` command the docs show just before it."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: elsewhere\n"
        "clusters: [{name: elsewhere, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: elsewhere, context: {cluster: elsewhere, user: elsewhere}}]\n"
        "users: [{name: elsewhere, user: {token: x}}]\n"
    )
    env = {**env, "KUBECONFIG": str(kubeconfig)}
    commands = console_commands("docs/real-clusters.md")
    checked = 0
    for i, cmd in enumerate(commands):
        if COVERAGE[cmd.text] != "provider":
            continue
        creates = [c.text for c in commands[:i] if COVERAGE[c.text] == "external"]
        r = subprocess.run(
            cmd.text,
            shell=True,
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        line = next((x for x in out.splitlines() if "exists (no kubeconfig context" in x), "")
        assert any(f"create it with `{c}`" in line for c in creates), out
        # The `rendered` tests pass without a cluster; the 9 `cluster` tests error.
        assert re.search(r"\b9 errors\b", out), out
        checked += 1
    assert checked == sum(COVERAGE[c.text] == "provider" for c in commands) >= 3


def test_fast_tier_runs_alone_and_passes() -> None:
    """`pytest -m pure` (README "Development"): the tier runs alone, with no tool and no cluster."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS",)}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "pure", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    passed = re.search(r"\b(\d+) passed\b", out)
    assert passed and int(passed.group(1)) >= 400, out
    assert re.search(r"\b\d+ deselected\b", out), out


def test_real_cluster_lane_skips_with_the_reason_without_a_context() -> None:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "PYTEST_ADDOPTS", "DEVLOOP_TEST_CONTEXT", "DEVLOOP_TEST_PROVIDER")
    }
    r = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-m", "realcluster", "-rs"),
            *("-p", "no:cacheprovider", "tests/test_realcluster.py"),
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"\b5 skipped\b", out), out
    assert "real-cluster lane: set DEVLOOP_TEST_CONTEXT" in out, out


@pytest.mark.slow
def test_experiment_command_runs(tmp_path: Path, tool: Callable[[str], str]) -> None:
    """`python3 bench/experiment.py`, once per scenario: every cycle green, the table
    printed, the JSON written; the devloop (and watch) cycle writes one object and runs
    fewer tests."""
    tool("helm4")
    environ = {
        k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "KUBECONFIG")
    }
    environ.pop("DEVLOOP_TEST_CONTEXT", None)
    out_json = tmp_path / "experiment.json"
    r = subprocess.run(
        [sys.executable, "bench/experiment.py", "--repeat", "1", "--json", str(out_json)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "| cluster | scenario | baseline (s) | devloop (s) | ratio |" in out, out
    data = json.loads(out_json.read_text())
    # The example (12 tests) and the 150-object course chart (20 tests), both scenarios.
    tests = {"embedded": 12, "embedded, course chart": 20}
    rows = {(row["cluster"], row["scenario"]): row for row in data["rows"]}
    assert set(rows) == {
        (cluster, scenario)
        for cluster in tests
        for scenario in ("A: app replicas 1 -> 3", "B: 50% fault delay")
    }
    for (cluster, _), row in rows.items():
        assert row["baseline_tests"] == tests[cluster]
        assert 0 < row["devloop_tests"] < tests[cluster]
        assert row["devloop_writes"] == 1
        assert row["baseline_writes"] > row["devloop_writes"]
        if row["watch_s"] is not None:
            assert row["watch_writes"] == 1
            assert row["watch_tests"] == row["devloop_tests"]
