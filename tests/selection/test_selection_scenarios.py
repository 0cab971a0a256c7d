"""Affected-test selection that never misses (issues 15 and 13), driven as a user drives it.

A scenario project of its own (`tests/data/selection/shop`: a chart with a version
toggle, a ConfigMap, a ServiceMonitor no Prometheus selects, a cluster-scoped
ClusterRole, a release namespace of its own) is copied once per module and run with
`python -m pytest` on one embedded cluster. Each scenario edits the project, runs
`--devloop-affected`, compares the tests that ran with the tests the edit can affect,
and puts the project back (with a run that leaves green records).

`SCENARIOS` and `measure` are also what `bench/bench_selection_scenarios.py` prints as
a precision/recall table.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data" / "selection" / "shop"
VALUES = "charts/shop/values.yaml"

V2SVC = "tests/test_shop.py::test_v2_service_routes_to_v2"
REPLICAS = "tests/test_shop.py::test_replicas"
ROUTES = "tests/test_shop.py::test_routes_annotation"
GREETING = "tests/test_shop.py::test_greeting"
MONITOR = "tests/test_shop.py::test_monitor_port"
TIER = "tests/test_shop.py::test_high_tier_pods"
ROLE = "tests/test_cluster_scoped.py::test_reader_role"
NSTEST = "tests/test_cluster_scoped.py::test_namespace_is_the_release_namespace"
XFAIL = "tests/test_xfail.py::test_known_bug"
ALL = {V2SVC, REPLICAS, ROUTES, GREETING, MONITOR, TIER, ROLE, NSTEST, XFAIL}


CLUSTER_DOWN = [sys.executable, "-m", "pytest_devloop", "cluster", "down", "--dir"]


class Run:
    """One finished `pytest` run in the project copy."""

    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.args = args
        self.ret = proc.returncode
        self.text = proc.stdout + proc.stderr
        self.lines = self.text.splitlines()
        self.stdout = pytest.LineMatcher(self.lines)

    def outcomes(self) -> dict[str, str]:
        """Node id -> PASSED/FAILED/ERROR/XFAIL/XPASS (from `-rA`'s short summary)."""
        found: dict[str, str] = {}
        for line in self.lines:
            m = re.match(r"(PASSED|FAILED|ERROR|XFAIL|XPASS) (\S+)", line)
            if m:
                found[m.group(2)] = m.group(1)
        return found

    def ran(self) -> set[str]:
        return set(self.outcomes())

    def header(self) -> str:
        return next((x for x in self.lines if re.match(r"devloop: (\d+ of|running all)", x)), "")

    def __str__(self) -> str:
        return f"$ pytest {shlex.join(self.args)} -> {self.ret}\n{self.text}"


class Project:
    def __init__(self, path: Path, helm: str) -> None:
        self.path = path
        self.helm = helm

    def pytest(self, *args: str, ci: bool = False) -> Run:
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
        env.pop("PYTEST_XDIST_WORKER", None)
        env["DEVLOOP_HELM"] = self.helm
        if ci:
            env["CI"] = "true"
        argv = ["-p", "no:benchmark", "-rA", *args]
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", *argv],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return Run(argv, proc)

    def affected(self) -> Run:
        return self.pytest("--devloop-affected", "--devloop-explain")

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.path / rel
        text = path.read_text()
        assert text.count(old) == 1, f"{rel}: {old!r} is not there exactly once"
        path.write_text(text.replace(old, new))

    def records(self) -> dict[str, Any]:
        files = sorted((self.path / ".devloop" / "records").glob("*.json"))
        assert files, "no records file"
        tests: dict[str, Any] = json.loads(files[0].read_text())["tests"]
        return tests

    def stop(self) -> None:
        subprocess.run(
            [*CLUSTER_DOWN, str(self.path / ".devloop" / "embedded")],
            capture_output=True,
            timeout=60,
            check=False,
        )


def make_project(root: Path, helm: str) -> Project:
    path = root / "shop"
    shutil.copytree(DATA, path)
    return Project(path, helm)


# -- the scenario suite ------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    rel: str
    old: str
    new: str
    expected: frozenset[str]  # the tests the edit can affect


SCENARIOS = [
    Scenario("replicas", VALUES, "replicas: 2", "replicas: 3", frozenset({REPLICAS, TIER, XFAIL})),
    Scenario("routes", VALUES, 'routes: "/v1"', 'routes: "/v1/shop"', frozenset({ROUTES})),
    Scenario("pruned version", VALUES, "enabled: true", "enabled: false", frozenset({V2SVC, TIER})),
    Scenario(
        "ConfigMap key",
        VALUES,
        "greeting: hello",
        "greeting: hello\n  farewell: bye",
        frozenset({GREETING}),
    ),
    Scenario("ServiceMonitor port", VALUES, "port: http", "port: metrics", frozenset({MONITOR})),
    Scenario(
        "touched file",
        "tests/test_cluster_scoped.py",
        '"""Cluster-scoped',
        '"""Cluster scoped',
        frozenset({ROLE, NSTEST}),
    ),
    Scenario("comment", VALUES, "# A comment line", "# Another comment line", frozenset()),
]


@dataclass
class Measured:
    scenario: Scenario
    selected: set[str]
    header: str
    run: Run

    @property
    def hits(self) -> int:
        return len(self.selected & self.scenario.expected)

    @property
    def precision(self) -> float:
        return self.hits / len(self.selected) if self.selected else 1.0

    @property
    def recall(self) -> float:
        expected = self.scenario.expected
        return self.hits / len(expected) if expected else 1.0


def measure(project: Project, scenario: Scenario) -> Measured:
    """Edit, select, and put the project back with green records."""
    project.edit(scenario.rel, scenario.old, scenario.new)
    try:
        run = project.affected()
    finally:
        project.edit(scenario.rel, scenario.new, scenario.old)
        project.affected()
    return Measured(scenario, run.ran(), run.header(), run)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, tool: Callable[[str], str]) -> Iterator[Project]:
    project = make_project(tmp_path_factory.mktemp("selection"), tool("helm4"))
    try:
        first = project.pytest()
        assert first.ret == 0, first
        assert first.outcomes()[XFAIL] == "XFAIL", first
        yield project
    finally:
        project.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_selects_every_affected_test(shop: Project, scenario: Scenario) -> None:
    m = measure(shop, scenario)
    assert m.recall == 1.0, f"missed {scenario.expected - m.selected}\n{m.run}"
    assert m.selected == scenario.expected, m.run


def test_pruned_objects_are_changes_and_the_header_says_so(shop: Project) -> None:
    m = measure(shop, SCENARIOS[2])
    assert any(re.match(r"devloop: shop: .*2 pruned", x) for x in m.run.lines), m.run
    assert m.header == (
        "devloop: 2 of 9 tests affected by charts/shop/values.yaml → "
        "Deployment/shop-v2 (pruned), Service/shop-v2 (pruned)"
    ), m.run
    m.run.stdout.fnmatch_lines(
        [
            f"devloop: run  {V2SVC}: reads Service/shop-v2 *",
            f"devloop: run  {TIER}: lists Pod tier>3 in shop: pod set of Deployment/shop-v2*",
        ]
    )
    # The pruned Service's test runs, and fails as it must.
    assert m.run.outcomes()[V2SVC] == "FAILED", m.run


def test_cluster_reads_default_to_the_release_namespace(shop: Project) -> None:
    # devloop.yaml's top-level namespace is `default`; the only release lives in `shop`.
    run = shop.pytest(NSTEST.split("::", maxsplit=1)[0])
    assert run.ret == 0, run
    assert run.outcomes()[NSTEST] == "PASSED", run


def test_outcomes_are_recorded_as_pytest_reports_them_and_a_failed_sync_is_an_error(
    shop: Project,
) -> None:
    assert shop.records()[XFAIL]["outcome"] == "xfailed"
    shop.edit("charts/shop/templates/config.yaml", "kind: ConfigMap", "kind: ConfigMap\n{{ .Oops")
    try:
        run = shop.pytest(XFAIL.split("::", maxsplit=1)[0])
    finally:
        shop.edit(
            "charts/shop/templates/config.yaml", "kind: ConfigMap\n{{ .Oops", "kind: ConfigMap"
        )
    # The xfail test expected a failure of the shop, not a broken sync.
    assert run.outcomes() == {XFAIL: "ERROR"}, run
    run.stdout.fnmatch_lines(["*devloop: the sync failed*"])
    again = shop.pytest()
    assert again.ret == 0, again


def test_explain_names_the_nearest_change_a_skipped_test_was_compared_against(
    shop: Project,
) -> None:
    m = measure(shop, SCENARIOS[4])  # the ServiceMonitor's port
    m.run.stdout.fnmatch_lines(
        [f"devloop: run  {MONITOR}: reads ServiceMonitor/shop spec.endpoints*"]
    )
    m.run.stdout.fnmatch_lines(
        [
            f"devloop: skip {ROUTES}: not affected (reads Service/shop-v1 metadata.annotations*"
            "; nearest change: ServiceMonitor/shop spec.endpoints*)",
        ]
    )


def test_header_names_the_file_that_caused_each_change(shop: Project) -> None:
    m = measure(shop, SCENARIOS[0])  # replicas in values.yaml
    assert m.header == (
        "devloop: 3 of 9 tests affected by charts/shop/values.yaml → "
        "Deployment/shop-v1 (spec.replicas), Deployment/shop-v2 (spec.replicas)"
    ), m.run
    template = "charts/shop/templates/config.yaml"
    m = measure(
        shop, Scenario("template", template, "verbs: [get]", "verbs: [get, list]", frozenset())
    )
    assert m.selected == {ROLE}, m.run
    assert m.header.startswith(
        f"devloop: 1 of 9 tests affected by {template} → ClusterRole/shop-reader (rules"
    ), m.run


def test_helm_path_runs_every_test_that_reads_the_release_and_restores_its_drift(
    shop: Project,
) -> None:
    # Last of the tests on the module's project: the release moves to the Helm path.
    config = shop.path / "devloop.yaml"
    original = config.read_text()
    # Names of its own: Helm does not adopt what devloop applied.
    config.write_text(
        original.replace("    namespace: shop\n", "    namespace: shop-helm\n    deployer: helm\n")
    )
    shop.edit("charts/shop/templates/config.yaml", "name: shop-reader", "name: shop-reader-helm")
    first = shop.pytest()
    assert first.ret == 0, first
    shop.edit(VALUES, "replicas: 2", "replicas: 3")
    run = shop.affected()
    assert run.ret == 0, run
    # Every test reading an object of the release runs; the namespace test reads none,
    # the role test reads the ClusterRole of the earlier per-object release.
    assert run.ran() == ALL - {NSTEST, ROLE}, run
    assert "helm upgrade --install shop ran" in run.header(), run
    assert "every test that reads shop runs" in run.header(), run

    # Drift of a Helm-path release is reported and restored.
    from kubernetes import client
    from kubernetes import config as kubeconfig

    api = kubeconfig.new_client_from_config(
        config_file=str(shop.path / ".devloop" / "embedded" / "kubeconfig")
    )
    apps = client.AppsV1Api(api)
    apps.delete_namespaced_deployment("shop-v1", "shop-helm")
    drift = shop.affected()
    assert drift.ret == 0, drift
    drift.stdout.fnmatch_lines(
        ["devloop: shop: helm upgrade --install (drift corrected: Deployment/shop-v1 deleted)*"]
    )
    assert REPLICAS in drift.ran(), drift
    assert apps.read_namespaced_deployment("shop-v1", "shop-helm").spec.replicas == 3

    # `rendered` is the same in dev and static mode for a Helm-path chart.
    (shop.path / "tests" / "test_rendered.py").write_text(
        "def test_rendered_replicas(rendered):\n"
        '    assert rendered.get("Deployment", "shop-v1")["spec"]["replicas"] == 3\n'
        '    assert rendered.get("ClusterRole", "shop-reader-helm")["rules"]\n'
    )
    for args in ([], ["--devloop-static"]):
        same = shop.pytest("tests/test_rendered.py", *args)
        assert same.outcomes() == {"tests/test_rendered.py::test_rendered_replicas": "PASSED"}, same


def test_a_skaffold_release_with_its_own_namespace_is_the_default_of_cluster_reads(
    tmp_path: Path, tool: Callable[[str], str]
) -> None:
    project = make_project(tmp_path, tool("helm4"))
    (project.path / "devloop.yaml").unlink()
    (project.path / "skaffold.yaml").write_text(
        "apiVersion: skaffold/v4beta11\n"
        "kind: Config\n"
        "manifests:\n"
        "  rawYaml: [crds/monitoring-servicemonitor.yaml]\n"
        "  helm:\n"
        "    releases:\n"
        "      - name: shop\n"
        "        chartPath: charts/shop\n"
        "        namespace: shop-sk\n"
        "        createNamespace: true\n"
        "        valuesFiles: [charts/shop/values.yaml]\n"
    )
    try:
        for ci in (False, True):
            run = project.pytest("tests/test_cluster_scoped.py", "tests/test_shop.py", ci=ci)
            assert run.ret == 0, run
            assert run.outcomes()[NSTEST] == "PASSED", run
            assert run.outcomes()[V2SVC] == "PASSED", run
    finally:
        project.stop()


# -- CI mode on one cluster, twice -------------------------------------------------------------


def _cluster_roles(project: Project) -> set[str]:
    from kubernetes import client, config

    api = config.new_client_from_config(
        config_file=str(project.path / ".devloop" / "embedded" / "kubeconfig")
    )
    names = {r.metadata.name for r in client.RbacAuthorizationV1Api(api).list_cluster_role().items}
    return {n for n in names if n.startswith("shop-")}


def _namespaces(project: Project) -> set[str]:
    from kubernetes import client, config

    api = config.new_client_from_config(
        config_file=str(project.path / ".devloop" / "embedded" / "kubeconfig")
    )
    return {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}


def _delete_namespace(project: Project, name: str) -> None:
    from kubernetes import client, config

    from pytest_devloop.run.eventually import eventually

    api = config.new_client_from_config(
        config_file=str(project.path / ".devloop" / "embedded" / "kubeconfig")
    )
    client.CoreV1Api(api).delete_namespace(name)
    eventually(lambda: name not in _namespaces(project), timeout=60)


@pytest.mark.parametrize("deployer", ["devloop", "helm"])
def test_ci_mode_twice_on_one_cluster_with_a_cluster_scoped_object(
    tmp_path: Path, tool: Callable[[str], str], deployer: str
) -> None:
    project = make_project(tmp_path, tool("helm4"))
    if deployer == "helm":
        config = project.path / "devloop.yaml"
        config.write_text(
            config.read_text().replace(
                "    namespace: shop\n", "    namespace: shop\n    deployer: helm\n"
            )
        )
    try:
        for _ in range(2):
            run = project.pytest(ci=True)
            assert run.ret == 0, run
            # The namespace test passes: cluster reads and devloop.namespace() agree on
            # the run's namespace.
            assert run.outcomes()[NSTEST] == "PASSED", run
            assert not {n for n in _namespaces(project) if n.startswith("devloop-")}, run
            assert _cluster_roles(project) == set(), run
        if deployer != "helm":
            return
        # A run whose namespace disappeared without its teardown (a crashed runner whose
        # namespace was collected) leaves its ClusterRole: the next run removes it.
        kept = project.pytest("--devloop-keep", ci=True)
        assert kept.ret == 0, kept
        assert _cluster_roles(project) == {"shop-reader"}
        (left,) = {n for n in _namespaces(project) if n.startswith("devloop-")}
        _delete_namespace(project, left)
        run = project.pytest(ci=True)
        assert run.ret == 0, run
        run.stdout.fnmatch_lines(
            [
                "devloop: CI: removed ClusterRole/shop-reader, left by release shop of an "
                f"earlier CI run (namespace {left} is gone)"
            ]
        )
        assert _cluster_roles(project) == set(), run
    finally:
        project.stop()
