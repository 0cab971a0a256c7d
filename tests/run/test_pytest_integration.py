"""Proof of the pytest integration (issue 6), driven as a user drives it.

Every test runs `python -m pytest` in a copy of `example_project/` (one copy and one
embedded cluster for the module) and asserts on what a user sees: the tests that ran,
the lines devloop printed, the report sections, and the objects left in the cluster.

Before each test the copy is brought back to the example as shipped and, when a test
changed it, run once in full so that the records describe a green suite at that state.
Dev-mode runs drop `CI` from the environment (the project's own CI sets `CI=true`,
which would switch the plugin to CI mode); CI-mode runs set it, or pass `--devloop-ci`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_project"
NAMESPACE = "sms-checker"

MANIFESTS = [
    "tests/test_manifests.py::test_every_container_has_requests_and_limits",
    "tests/test_manifests.py::test_images_are_tagged_with_their_source_digest",
    "tests/test_manifests.py::test_services_select_their_own_deployment",
]
MONITORING = [
    "tests/test_monitoring.py::test_service_monitor_selects_the_app_service",
    "tests/test_monitoring.py::test_service_monitor_port_exists_on_the_service",
]
APP_REPLICAS = "tests/test_replicas.py::test_app_runs_the_requested_replicas"
MODEL_REPLICAS = "tests/test_replicas.py::test_model_runs_the_requested_replicas"
ROUTING = [
    "tests/test_routing.py::test_routes_go_to_the_app_service",
    "tests/test_routing.py::test_route_weights_add_up_to_100",
    "tests/test_routing.py::test_fault_delay_hits_at_most_half_the_requests",
]
APP_ENDPOINTS = "tests/test_services.py::test_app_service_has_an_endpoint_per_ready_pod"
MODEL_PODS = "tests/test_services.py::test_model_service_selects_model_pods"
ALL = {*MANIFESTS, *MONITORING, APP_REPLICAS, MODEL_REPLICAS, *ROUTING, APP_ENDPOINTS, MODEL_PODS}
TOTAL = len(ALL)


class Run:
    """One finished `pytest` run in the project copy."""

    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.args = args
        self.ret = proc.returncode
        self.text = proc.stdout + proc.stderr
        self.lines = self.text.splitlines()
        self.stdout = pytest.LineMatcher(self.lines)

    def ran(self) -> set[str]:
        """Node ids that ran to an outcome (from `-rA`'s short summary)."""
        found = set()
        for line in self.lines:
            m = re.match(r"(PASSED|FAILED|ERROR|XFAIL|XPASS) (\S+)", line)
            if m:
                found.add(m.group(2))
        return found

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))

    def __str__(self) -> str:  # shown by a failing assert on the run
        return f"$ pytest {shlex.join(self.args)} -> {self.ret}\n{self.text}"


class Project:
    """A copy of the example project with its own embedded cluster."""

    def __init__(self, path: Path, helm: str) -> None:
        self.path = path
        self.helm = helm
        self.dirty = True  # differs from the records of a full green run
        self.records_snapshot: dict[Path, bytes] = {}

    # -- running ----------------------------------------------------------------------

    def env(self, *, ci: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        env["DEVLOOP_HELM"] = self.helm
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PYTEST_XDIST_WORKER", None)
        if ci:
            env["CI"] = "true"
        return env

    def pytest(self, *args: str, ci: bool = False, timeout: float = 120) -> Run:
        # -p no:benchmark: the benchmark plugin warns under xdist; it is not ours.
        argv = ["-p", "no:benchmark", *args]
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", *argv],
            cwd=self.path,
            env=self.env(ci=ci),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Run(list(args), proc)

    # -- editing ----------------------------------------------------------------------

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.path / rel
        text = path.read_text()
        assert text.count(old) == 1, f"{rel}: {old!r} is not there exactly once"
        path.write_text(text.replace(old, new))
        self.dirty = True

    def write(self, rel: str, text: str) -> None:
        (self.path / rel).write_text(text)
        self.dirty = True

    def records_files(self) -> list[Path]:
        return sorted((self.path / ".devloop" / "records").glob("*.json"))

    def reset(self) -> None:
        """Back to the example as shipped, with records of a full green run."""
        if not self.dirty:
            for path, data in self.records_snapshot.items():
                path.write_bytes(data)
            return
        for part in ("tests", "charts", "crds"):
            shutil.rmtree(self.path / part)
            shutil.copytree(EXAMPLE / part, self.path / part)
        full = self.pytest("-rA")
        assert full.ret == 0, full
        assert full.ran() == ALL, full
        full.stdout.fnmatch_lines([f"*{TOTAL} passed*"])
        self.records_snapshot = {p: p.read_bytes() for p in self.records_files()}
        assert self.records_snapshot, f"no records file after a full run\n{full}"
        self.dirty = False

    # -- the cluster --------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.path / ".devloop" / "embedded" / "kubeconfig"

    def api(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def namespaces(self) -> set[str]:
        from kubernetes import client

        items = client.CoreV1Api(self.api()).list_namespace().items
        return {n.metadata.name for n in items}

    def ci_namespaces(self) -> set[str]:
        return {n for n in self.namespaces() if n.startswith("devloop-")}

    def stop_cluster(self) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest_devloop",
                "cluster",
                "down",
                "--dir",
                str(self.path / ".devloop" / "embedded"),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, tool: Callable[[str], str]
) -> Iterator[Project]:
    path = tmp_path_factory.mktemp("example") / "example_project"
    shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns(".devloop", "__pycache__"))
    proj = Project(path, tool("helm4"))
    try:
        yield proj
    finally:
        proj.stop_cluster()


@pytest.fixture
def example(project: Project) -> Project:
    project.reset()
    return project


def affected(project: Project) -> Run:
    return project.pytest("--devloop-affected", "--devloop-explain", "-rA")


# -- affected-test selection --------------------------------------------------------------


def test_replicas_change_runs_the_replica_tests(example: Project) -> None:
    example.edit("charts/sms-checker/values.yaml", "app:\n  replicas: 1", "app:\n  replicas: 3")

    run = affected(example)

    assert run.ret == 0, run
    assert run.ran() == {APP_REPLICAS, APP_ENDPOINTS}, run
    run.stdout.fnmatch_lines(
        [
            "devloop: 2 of 12 tests affected by charts/sms-checker/values.yaml → "
            "Deployment/sms-checker-app (spec.replicas)",
            f"devloop: run  {APP_REPLICAS}: reads Deployment/sms-checker-app spec*",
            "*2 passed, 10 deselected*",
        ]
    )
    run.stdout.fnmatch_lines([f"devloop: skip {ROUTING[0]}: not affected*"])
    from kubernetes import client

    deployment = client.AppsV1Api(example.api()).read_namespaced_deployment(
        "sms-checker-app", NAMESPACE
    )
    assert deployment.spec.replicas == 3
    assert deployment.status.ready_replicas == 3


def test_virtualservice_change_runs_the_routing_tests(example: Project) -> None:
    example.edit(
        "charts/sms-checker/values.yaml",
        "    delay:\n      enabled: false",
        "    delay:\n      enabled: true",
    )

    run = affected(example)

    assert run.ret == 0, run
    assert run.ran() == set(ROUTING), run
    run.stdout.fnmatch_lines(
        [
            "devloop: 3 of 12 tests affected by charts/sms-checker/values.yaml → "
            "VirtualService/sms-checker-app (spec.http)",
            f"devloop: run  {ROUTING[2]}: reads VirtualService/sms-checker-app spec.http, changed by charts/sms-checker/values.yaml",
            "*3 passed, 9 deselected*",
        ]
    )


# The app reads its ConfigMap through envFrom; `modelTimeoutSeconds` lives only there,
# `logLevel` also sits in the model Deployment's env (so the model's tests run too).
# Tests that read only the VirtualService or the ServiceMonitor never run.
APP_WORKLOAD_READERS = {*MANIFESTS, APP_REPLICAS, APP_ENDPOINTS}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "modelTimeoutSeconds: 5",
            "modelTimeoutSeconds: 7",
            APP_WORKLOAD_READERS,
            id="configmap-only",
        ),
        pytest.param(
            "logLevel: INFO",
            "logLevel: DEBUG",
            APP_WORKLOAD_READERS | {MODEL_REPLICAS, MODEL_PODS},
            id="log-level",
        ),
    ],
)
def test_configmap_change_runs_the_tests_of_the_workloads_mounting_it(
    example: Project, old: str, new: str, expected: set[str]
) -> None:
    example.edit("charts/sms-checker/values.yaml", old, new)

    run = affected(example)

    assert run.ret == 0, run
    assert run.ran() == expected, run
    assert not run.ran() & {*ROUTING, *MONITORING}
    run.stdout.fnmatch_lines(
        [
            f"devloop: {len(expected)} of 12 tests affected by charts/sms-checker/values.yaml → "
            "ConfigMap/sms-checker-app-config (data.*)*",
            f"*{len(expected)} passed, {TOTAL - len(expected)} deselected*",
        ]
    )


def test_test_file_edit_runs_the_tests_in_that_file(example: Project) -> None:
    example.edit(
        "tests/test_routing.py",
        "def test_route_weights_add_up_to_100(cluster):",
        "def test_route_weights_add_up_to_100(cluster):  # edited",
    )

    run = affected(example)

    assert run.ret == 0, run
    assert run.ran() == set(ROUTING), run
    run.stdout.fnmatch_lines(
        [
            "devloop: 3 of 12 tests selected: 3 whose file changed",
            f"devloop: run  {ROUTING[0]}: its file changed",
        ]
    )


def test_a_fixed_syntax_error_runs_that_files_tests(example: Project) -> None:
    original = (example.path / "tests/test_routing.py").read_text()
    example.write("tests/test_routing.py", original + "\ndef broken(:\n")
    broken = affected(example)
    assert broken.ret != 0 and "SyntaxError" in broken.text, broken

    # Back to the very content of the last successful record: still, these tests have
    # not run since the file last failed to collect.
    example.write("tests/test_routing.py", original)
    run = affected(example)

    assert run.ret == 0, run
    assert run.ran() == set(ROUTING), run


def test_nothing_changed_runs_nothing_and_exits_0(example: Project) -> None:
    run = affected(example)

    assert run.ran() == set(), run
    # pytest's 5 ("no tests collected") would be an error to scripts and editors.
    assert run.ret == 0, run
    run.stdout.fnmatch_lines(
        [
            # The report header, under pytest's own (pytest_report_header).
            "devloop: mode dev, cluster * (https://127.0.0.1:*), config devloop.yaml, "
            "selection on (--devloop-affected*)",
            "devloop: nothing affected; 12 tests passed last time (run all with:*",
            "*12 deselected*",
        ]
    )


def test_report_header_says_why_selection_is_off(example: Project) -> None:
    run = example.pytest("-k", "replica", "--devloop-affected", "--devloop-static")

    run.stdout.fnmatch_lines(
        [
            "devloop: mode static, no cluster (rendered objects only), config devloop.yaml, "
            "selection off (-k was given)"
        ]
    )


def test_corrupt_records_file_runs_everything_with_a_warning(example: Project) -> None:
    (records,) = example.records_files()
    records.write_text('{"schema": 1, "tests": {"tests/test_')

    run = affected(example)

    assert run.ret == 0, run
    assert run.ran() == ALL, run
    run.stdout.fnmatch_lines(
        [
            "devloop: warning: records file *.json is unreadable (JSONDecodeError): "
            "running every test",
            "*12 passed*",
        ]
    )


@pytest.mark.parametrize(
    ("args", "why", "ran"),
    [
        (["-k", "routes_go"], "-k was given", {ROUTING[0]}),
        (["-m", "not nothing"], "-m was given", ALL),
        ([ROUTING[1]], "test ids were given", {ROUTING[1]}),
    ],
    ids=["-k", "-m", "node-id"],
)
def test_explicit_selection_turns_affected_selection_off(
    example: Project, args: list[str], why: str, ran: set[str]
) -> None:
    # Nothing changed: with selection on, not one test would run.
    run = example.pytest("--devloop-affected", "-rA", *args)

    assert run.ret == 0, run
    assert run.ran() == ran, run
    run.stdout.fnmatch_lines([f"devloop: affected-test selection is off: {why}; running all *"])


# -- CI mode ------------------------------------------------------------------------------

FAILING = """
def test_the_app_answers_in_klingon(cluster):
    assert cluster.get("Deployment", "sms-checker-app")["metadata"]["name"] == "qapla"
"""

INTERRUPTING = """
def test_the_developer_presses_ctrl_c(cluster):
    assert cluster.get("Deployment", "sms-checker-app")
    raise KeyboardInterrupt
"""


def assert_dev_objects_untouched(project: Project) -> None:
    """CI mode maps into its own namespace: the developer's objects and CRDs stay."""
    from kubernetes import client

    api = project.api()
    crds = {
        c.metadata.name
        for c in client.ApiextensionsV1Api(api).list_custom_resource_definition().items
    }
    assert "virtualservices.networking.istio.io" in crds
    vs = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "networking.istio.io", "v1", NAMESPACE, "virtualservices", "sms-checker-app"
    )
    assert vs["metadata"]["name"] == "sms-checker-app"


def test_ci_mode_pass_leaves_no_namespace(example: Project) -> None:
    run = example.pytest("-rA", ci=True)

    assert run.ret == 0, run
    assert run.ran() == ALL, run
    run.stdout.fnmatch_lines(
        [
            "devloop: CI mode: fresh namespace devloop-*, full sync, no state",
            "*devloop: CI teardown: namespace devloop-* deleted",
        ]
    )
    assert example.ci_namespaces() == set()
    assert_dev_objects_untouched(example)
    # The next dev run finds its own objects as it left them.
    dev = example.pytest("-q")
    dev.stdout.fnmatch_lines(["devloop: sms-checker: unchanged (10 objects)*"])


@pytest.mark.parametrize(
    ("source", "ret", "outcome"),
    [
        (FAILING, 1, "*1 failed*"),
        (INTERRUPTING, 2, "*KeyboardInterrupt*"),
    ],
    ids=["failure", "keyboard-interrupt"],
)
def test_ci_mode_leaves_no_namespace_after_a_failure_or_ctrl_c(
    example: Project, source: str, ret: int, outcome: str
) -> None:
    example.write("tests/test_zz_broken.py", source)

    run = example.pytest("--devloop-ci", "tests/test_zz_broken.py")

    assert run.ret == ret, run
    run.stdout.fnmatch_lines([outcome])
    run.stdout.fnmatch_lines(["*devloop: CI teardown: namespace devloop-* deleted"])
    assert example.ci_namespaces() == set()
    assert_dev_objects_untouched(example)


def test_ci_mode_keep_keeps_the_namespace_and_says_how_to_delete_it(
    example: Project, tool: Callable[[str], str]
) -> None:
    run = example.pytest("--devloop-ci", "--devloop-keep", "tests/test_routing.py")

    assert run.ret == 0, run
    line = next(line for line in run.lines if "--devloop-keep: namespace" in line)
    m = re.search(r"namespace (devloop-[0-9a-f]+) kept; delete it with `(kubectl .*)`", line)
    assert m, line
    kept, command = m.groups()
    assert example.ci_namespaces() == {kept}
    # The printed command works as printed (it names the run's kubeconfig).
    argv = shlex.split(command)
    subprocess.run([tool("kubectl"), *argv[1:], "--wait=true"], check=True, timeout=60)
    assert example.ci_namespaces() == set()


# -- xdist --------------------------------------------------------------------------------


SYNC_COUNTER = """
# Counts syncs per process: the root conftest loads in the controller and every worker,
# before the session starts.
import os
from pathlib import Path

from pytest_devloop.sync import syncer as sync

_sync = sync.Syncer.sync


def _counted(self, *args, **kwargs):
    with (Path(__file__).parent / "syncs.log").open("a") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "controller") + "\\n")
    return _sync(self, *args, **kwargs)


sync.Syncer.sync = _counted
"""


@pytest.fixture
def count_syncs(example: Project) -> Iterator[Path]:
    example.write("conftest.py", SYNC_COUNTER)
    log = example.path / "syncs.log"
    try:
        yield log
    finally:
        (example.path / "conftest.py").unlink()
        log.unlink(missing_ok=True)


def test_xdist_syncs_once_and_merges_the_workers_records(
    example: Project, count_syncs: Path
) -> None:
    run = example.pytest("-n", "2", "-rA")

    assert run.ret == 0, run
    assert run.ran() == ALL, run
    assert run.count(r"^devloop: sms-checker: ") == 1, run
    assert count_syncs.read_text().split() == ["controller"]
    # One writer merged what both workers recorded.
    (records,) = example.records_files()
    tests = json.loads(records.read_text())["tests"]
    assert set(tests) >= ALL
    assert tests[APP_REPLICAS]["objects"], tests[APP_REPLICAS]
    assert {t["outcome"] for n, t in tests.items() if n in ALL} == {"passed"}


def test_xdist_ci_mode_tears_down_once_after_all_workers(
    example: Project, count_syncs: Path
) -> None:
    run = example.pytest("-n", "2", "-rA", ci=True)

    assert run.ret == 0, run
    assert run.ran() == ALL, run  # every worker's tests found the namespace
    assert count_syncs.read_text().split() == ["controller"]
    assert run.count(r"devloop: CI teardown: ") == 1, run
    last_test = max(i for i, line in enumerate(run.lines) if "[100%]" in line)
    teardown = next(i for i, line in enumerate(run.lines) if "CI teardown" in line)
    assert teardown >= last_test, run
    assert example.ci_namespaces() == set()


# -- diagnostics --------------------------------------------------------------------------

NINETY_NINE = """
def test_app_runs_99_replicas(cluster, eventually):
    eventually(lambda: cluster.deployment("sms-checker-app").ready_replicas == 99, timeout=0.3)
"""


def test_failing_replica_test_shows_the_cluster_section(example: Project) -> None:
    example.write("tests/test_zz_ninety_nine.py", NINETY_NINE)

    run = example.pytest("tests/test_zz_ninety_nine.py")

    assert run.ret == 1, run
    run.stdout.fnmatch_lines(
        [
            "E   *AssertionError: eventually: not true after *",
            "E   *last value: False",
            "*- devloop: cluster -*",
            "Deployment/sms-checker-app:",
            "  Deployment/sms-checker/sms-checker-app: ready: 1/1 ready",
            "    condition Available=True *",
            "    pod sms-checker-app-*: Running Ready=True restarts=0",
            "    event * Normal *",
        ]
    )
    # The eventually loop is hidden: the traceback ends at the test's own line.
    assert "pytest_devloop/run/eventually.py" not in run.text, run


# -- static tier --------------------------------------------------------------------------


def test_static_runs_rendered_tests_and_skips_cluster_tests(example: Project) -> None:
    run = example.pytest("--devloop-static", "-rA")

    assert run.ret == 0, run
    assert run.ran() == set(MANIFESTS), run
    run.stdout.fnmatch_lines(
        [
            "SKIPPED [1] tests/test_replicas.py:4: --devloop-static: this test reads the "
            "cluster, and the cluster is skipped",
            "*3 passed, 9 skipped*",
        ]
    )
    assert run.count(r"devloop: sms-checker: ") == 0, run  # no sync at all


# -- cost in projects that do not use devloop ---------------------------------------------

MODULES_PROBE = """
import json, sys
def test_modules():
    print("MODULES=" + json.dumps(sorted(m for m in sys.modules)))
"""


def test_plugin_load_is_cheap_and_imports_no_kubernetes_client(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(MODULES_PROBE)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if "MODULES=" in line)
    modules = set(json.loads(line.split("MODULES=", 1)[1].split("]")[0] + "]"))
    assert "pytest_devloop.plugin" in modules  # loaded through its entry point
    heavy = {m for m in modules if m.split(".")[0] in ("kubernetes", "urllib3", "watchdog")}
    assert heavy == set()
    ours = {m for m in modules if m.startswith("pytest_devloop")}
    # hookspecs: registered at plugin load (pytest_addhooks); it imports only pytest.
    assert ours == {"pytest_devloop", "pytest_devloop.plugin", "pytest_devloop.hookspecs"}

    # A figure, not an assertion (bench/bench_plugin_load.py has the table): what the
    # entry point adds to the import phase once pytest itself is imported.
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest; import pytest_devloop.plugin"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    own = re.findall(r"import time:\s+\d+ \|\s+(\d+) \| pytest_devloop\.plugin$", err, re.M)
    print(f"import pytest_devloop.plugin after pytest: {int(own[0]) / 1000:.1f} ms (target ≤ 20)")


# -- --devloop-plan ---------------------------------------------------------------------------


def test_plan_option_shows_the_change_writes_nothing_and_honours_every_option(
    example: Project,
) -> None:
    """`pytest --devloop-plan` builds its Syncer from the same options as a run: a change is
    planned, nothing is written, and options such as --devloop-force-conflicts or
    --devloop-build are accepted by that path as by the run's."""
    from kubernetes import client

    example.edit("charts/sms-checker/values.yaml", "app:\n  replicas: 1", "app:\n  replicas: 3")
    run = example.pytest("--devloop-plan", "--devloop-force-conflicts", "--devloop-build")
    assert run.ret == 0, run
    run.stdout.fnmatch_lines(["*sms-checker*Deployment/sms-checker-app*spec.replicas*"])
    assert "passed" not in run.text, run  # a plan runs no test
    deployment = client.AppsV1Api(example.api()).read_namespaced_deployment(
        "sms-checker-app", NAMESPACE
    )
    assert deployment.spec.replicas == 1


def test_a_conftest_hook_overrides_the_selection_policy(example: Project) -> None:
    """`pytest_devloop_selection_mode` in a project's conftest decides, and its reason is printed."""
    example.write(
        "conftest.py",
        "from pytest_devloop.selection.policy import Decision\n\n\n"
        "def pytest_devloop_selection_mode(config, mode, synced, sync_error):\n"
        "    return Decision(False, 'the team runs everything on Fridays')\n",
    )
    try:
        run = affected(example)
    finally:
        (example.path / "conftest.py").unlink()
    assert run.ret == 0, run
    run.stdout.fnmatch_lines(
        [
            "devloop: affected-test selection is off: the team runs everything on Fridays; "
            f"running all {TOTAL} tests"
        ]
    )
    assert run.ran() == ALL, run
