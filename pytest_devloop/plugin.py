"""pytest entry point of pytest-devloop: options, fixtures and hooks, nothing heavy.

Registered through the `pytest11` entry point. This module must stay cheap to import:
it is loaded by every pytest run in an environment where the package is installed,
including projects that never use devloop, so the Kubernetes client, the embedded
cluster and everything else are imported inside the hooks and fixtures that need them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_devloop.embedded.cluster import EmbeddedCluster
    from pytest_devloop.prometheus.targets import Prometheus
    from pytest_devloop.run.eventually import Eventually
    from pytest_devloop.run.gate import Waiting
    from pytest_devloop.run.testrun import TestRun
    from pytest_devloop.run.view import Cluster, Rendered

# Per-run state lives in the pytest config's stash, not in private attributes.
_RUN_KEY = pytest.StashKey["TestRun"]()
_ACTIVE_KEY = pytest.StashKey[bool]()
_COLLECT_ERRORS_KEY = pytest.StashKey[list[str]]()
_GATE_KEY: pytest.StashKey[Waiting | None] = pytest.StashKey()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_devloop import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(trylast=True)
def pytest_devloop_selection_mode(
    config: pytest.Config, mode: str, synced: bool, sync_error: str | None
) -> Any:
    """devloop's default selection policy (`selection.policy.selection_mode`)."""
    from pytest_devloop.selection.policy import selection_mode

    return selection_mode(
        affected=bool(config.getoption("devloop_affected")),
        keyword=config.getoption("keyword") or "",
        markexpr=config.getoption("markexpr") or "",
        last_failed=bool(config.getoption("lf", False) or config.getoption("failedfirst", False)),
        args=[str(a) for a in config.args],
        mode=mode,
        synced=synced,
        sync_error=sync_error,
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("devloop", "pytest-devloop: Kubernetes infrastructure test loop")
    group.addoption(
        "--devloop-config",
        default=None,
        metavar="FILE",
        help="devloop config file (default: devloop.yaml, else skaffold.yaml, in the rootdir)",
    )
    group.addoption(
        "--devloop-profile",
        default=None,
        metavar="NAME",
        help="skaffold.yaml profile(s) to apply (comma-separated)",
    )
    group.addoption(
        "--devloop-cluster",
        default=None,
        metavar="PROVIDER",
        help="cluster to sync to: embedded (default), current, kind:<name>, minikube:<profile>, k3d:<name>",
    )
    group.addoption(
        "--devloop-context",
        default=None,
        metavar="CONTEXT",
        help="kubeconfig context to use (implies --devloop-cluster=current)",
    )
    group.addoption(
        "--devloop-create-cluster",
        action="store_true",
        default=False,
        help="create the kind/minikube/k3d cluster when it does not exist",
    )
    group.addoption(
        "--devloop-force-conflicts",
        action="store_true",
        default=False,
        help="take over fields that another field manager owns instead of failing",
    )
    group.addoption(
        "--devloop-adopt",
        action="store_true",
        default=False,
        help="take over objects another devloop project, a Helm release or a person created",
    )
    group.addoption(
        "--devloop-prune",
        action="append",
        default=[],
        metavar="KINDS",
        help="also prune objects of these kinds when they leave the chart: pvcs, crds, namespaces",
    )
    group.addoption(
        "--devloop-build",
        action="store_true",
        default=False,
        help="build images even for the embedded cluster (which runs no containers)",
    )
    group.addoption(
        "--devloop-affected",
        action="store_true",
        default=False,
        help="run only the tests the sync's changes affect (or that failed, are new or changed); say why",
    )
    group.addoption(
        "--devloop-explain",
        action="store_true",
        default=False,
        help="with --devloop-affected: print the reason for every test run or skipped",
    )
    group.addoption(
        "--devloop-ci",
        action="store_true",
        default=False,
        help="clean CI mode: fresh namespace, full sync, every test, teardown (automatic when CI=true)",
    )
    group.addoption(
        "--devloop-mode",
        choices=("dev", "ci"),
        default=None,
        help="force dev or ci mode (CI=true selects ci unless --devloop-mode=dev)",
    )
    group.addoption(
        "--devloop-keep",
        action="store_true",
        default=False,
        help="CI mode: keep the namespace after the run (prints how to delete it)",
    )
    group.addoption(
        "--devloop-static",
        action="store_true",
        default=False,
        help="no cluster: tests using only `rendered` run, tests using `cluster` are skipped",
    )
    group.addoption(
        "--devloop-watch",
        action="store_true",
        default=False,
        help="keep watching: each saved file re-syncs what it belongs to and re-runs the affected tests",
    )
    group.addoption(
        "--devloop-quiet-period",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="watch mode: wait this long without file events before a cycle (default 0.05)",
    )
    group.addoption(
        "--devloop-max-wait",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="watch mode: start a cycle at most this long after the first event (default 1.0)",
    )
    group.addoption(
        "--devloop-logs",
        action="store_true",
        default=False,
        help="watch mode: stream the synced workloads' pod logs, prefixed by pod",
    )
    group.addoption(
        "--devloop-summary-file",
        default=None,
        help=argparse.SUPPRESS,  # watch mode hands its sync to the test process
    )
    group.addoption(
        "--devloop-results-file",
        default=None,
        help=argparse.SUPPRESS,  # the test process hands its outcomes to the watch (JSON)
    )
    group.addoption(
        "--devloop-plan",
        action="store_true",
        default=False,
        help="print what a sync would do (create/update/prune/drift, with reasons) and exit",
    )
    group.addoption(
        "--devloop-pod-ready-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help="embedded cluster: delay before a simulated pod becomes Running and Ready (default 0.05)",
    )
    parser.addini("devloop_config", "devloop config file, relative to the rootdir", default="")
    parser.addini(
        "devloop_pod_ready_delay",
        "embedded cluster: delay before a simulated pod becomes Ready, in seconds",
        default="0.05",
    )


def _run(config: pytest.Config) -> TestRun:
    run: TestRun | None = config.stash.get(_RUN_KEY, None)
    if run is None:
        from pytest_devloop.run.testrun import TestRun

        run = TestRun(config)
        config.stash[_RUN_KEY] = run
    return run


def _active(config: pytest.Config) -> bool:
    """Whether this run uses devloop at all (a config file exists); decided once, cheaply."""
    cached: bool | None = config.stash.get(_ACTIVE_KEY, None)
    if cached is None:
        explicit = config.getoption("devloop_config") or config.getini("devloop_config")
        root = Path(config.rootpath)
        cached = bool(explicit) or any(
            (root / name).is_file()
            for name in ("devloop.yaml", "devloop.yml", "skaffold.yaml", "skaffold.yml")
        )
        config.stash[_ACTIVE_KEY] = cached
    return cached


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "devloop(depends_on=[...], always=False): dependencies devloop cannot see "
        "('Deployment/name', 'chart:<release>', 'image:<name>'), or always run the test",
    )
    results = config.getoption("devloop_results_file", None)
    if results and not hasattr(config, "workerinput"):
        from pytest_devloop.run.results import ResultsWriter

        config.pluginmanager.register(
            ResultsWriter(config, Path(results), run=lambda: config.stash.get(_RUN_KEY, None)),
            "devloop-results",
        )
    if not _active(config):
        return
    from pytest_devloop.run.gate import Waiting

    config.stash[_GATE_KEY] = Waiting.take()
    config.pluginmanager.register(DevloopSession(config), "devloop-session")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "devloop-xdist")


class _XdistHooks:
    """Controller side under xdist: hand the sync to workers, collect their records."""

    def pytest_configure_node(self, node: Any) -> None:
        from pytest_devloop.run.testrun import WORKER_KEY

        node.workerinput[WORKER_KEY] = _run(node.config).worker_input()

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        from pytest_devloop.run.testrun import WORKER_RECORDS

        output = getattr(node, "workeroutput", None) or {}
        data = output.get(WORKER_RECORDS)
        if data:
            run = _run(node.config)
            payload = json.loads(data)
            run.records.update(payload.get("records", {}))
            if payload.get("note") and not run.selection_note:
                run.selection_note = payload["note"]
            if payload.get("nothing_affected"):
                run.nothing_affected = True
            if payload.get("explain") and not run.explain_lines:
                run.explain_lines = payload["explain"]


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """`--devloop-watch` runs the watch loop; `--devloop-plan` prints a plan and runs no test."""
    if config.getoption("devloop_watch"):
        from pytest_devloop.watch.loop import run_watch

        return run_watch(config)
    if not config.getoption("devloop_plan"):
        return None
    from pytest_devloop.cluster.providers import ClusterRefused, ClusterUnavailable
    from pytest_devloop.cluster.session import load, options_from_pytest, target_for
    from pytest_devloop.config.model import ConfigError
    from pytest_devloop.sync.syncer import Syncer

    try:
        options = options_from_pytest(config)
        loaded = load(options)
        if loaded is None:
            print(f"devloop: no devloop.yaml or skaffold.yaml in {options.rootdir}")
            return int(pytest.ExitCode.USAGE_ERROR)
        syncer = Syncer.from_options(loaded, target_for(loaded, options), options)
        result = syncer.sync(plan_only=True)
    except (ConfigError, ClusterRefused, ClusterUnavailable) as e:
        print(f"devloop: {e}")
        return int(pytest.ExitCode.USAGE_ERROR)
    return 0 if result.ok else 1


class DevloopSession:
    """The hooks of a pytest run that uses devloop, registered only when a config file is
    active (as xdist registers its DSession): a project without one pays nothing past
    `pytest_configure`. State lives in `config.stash`."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        """`devloop: mode dev, cluster embedded (https://127.0.0.1:...), config devloop.yaml,
        selection on (...)` under pytest's own header, as testmon and xdist print theirs."""
        if hasattr(config, "workerinput"):
            return None
        from pytest_devloop.run.header import header_line

        return [header_line(_run(config))]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # tryfirst: under xdist the controller must have synced before its workers start.
        config = session.config
        gate = config.stash.get(_GATE_KEY, None)
        if gate is not None:
            # Started with the cycle: the sync's summary is written once the watch says so.
            from pytest_devloop.run.gate import SUMMARY

            gate.until(SUMMARY)
        if config.getoption("collectonly"):
            return
        _run(config).sync_once()

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Generator[None, Any, Any]:
        report = yield
        # Remembered per session: a file that failed to collect invalidates its tests' records.
        if report.failed and isinstance(collector, pytest.File):
            collector.config.stash.setdefault(_COLLECT_ERRORS_KEY, []).append(report.nodeid)
        if not report.passed:
            # Its node ids are not all known: the file index drops it (selection.prefilter).
            _run(collector.config).collect_skipped.add(report.nodeid.split("::", 1)[0])
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Generator[None, Any, Any]:
        # Data files the test modules read while imported join the file index.
        from pytest_devloop.selection.prefilter import CollectionReads

        reads = CollectionReads.install(Path(session.config.rootpath))
        _run(session.config).collection_reads = reads
        reads.active = True
        try:
            return (yield)
        finally:
            reads.active = False

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        # --devloop-affected: a file whose every test is unaffected is not even imported.
        return True if _run(config).skip_collecting(collection_path) else None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # After pytest's "collected N items / D deselected" line: its final summary counts
        # the tests of the files devloop left uncollected as deselected, as before.
        run = _run(session.config)
        terminal = session.config.pluginmanager.get_plugin("terminalreporter")
        if run.not_collected and run.prefilter is not None and terminal is not None:
            terminal.stats.setdefault("deselected", []).extend(
                _Uncollected(d.nodeid) for d in run.prefilter.decisions
            )

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        _run(item.config).collected_files.setdefault(item.nodeid.split("::", 1)[0], []).append(
            item.nodeid
        )

    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not config.getoption("devloop_affected"):
            return
        run = _run(config)
        selected, deselected = run.select(items)
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected
        if config.getoption("devloop_explain"):
            run.explain_lines = run.explain()
        if not run.is_worker:
            if run.selection_note:
                run.write(run.selection_note)
            for line in run.explain_lines:
                run.write(line)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        # A watch cycle's test process started before its sync ended: its tests run
        # once the sync ended as expected (see run.gate).
        gate = session.config.stash.get(_GATE_KEY, None)
        if gate is not None:
            from pytest_devloop.run.gate import GO

            if any("cluster" in getattr(item, "fixturenames", ()) for item in session.items):
                _run(session.config).warm_cluster_view()
            gate.until(GO)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Iterator[None]:
        run = _run(item.config)
        run.recorder.start(item.nodeid)
        yield
        run.record_test(item, run.recorder.stop(), run.outcomes.get(item.nodeid, "passed"))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        from pytest_devloop.run.testrun import SyncFailed

        report: pytest.TestReport = outcome.get_result()
        if call.excinfo is not None and isinstance(call.excinfo.value, SyncFailed):
            # A failed sync is an error of the test, never the failure an xfail expects.
            if hasattr(report, "wasxfail"):
                del report.wasxfail
            report.outcome = "failed"
        run = _run(item.config)
        if call.when != "call":
            if report.failed:
                run.outcomes[item.nodeid] = "error"
            elif report.skipped and hasattr(report, "wasxfail"):
                run.outcomes[item.nodeid] = "xfailed"  # an xfail(run=False) or a setup xfail
            return
        # Outcomes as pytest reports them: an expected failure is xfailed, not skipped.
        if hasattr(report, "wasxfail"):
            run.outcomes[item.nodeid] = "xfailed" if report.skipped else "xpassed"
        elif report.skipped:
            run.outcomes.setdefault(item.nodeid, "skipped")
        if not report.failed:
            return
        run.outcomes[item.nodeid] = "failed"
        text = run.diagnostics(item)
        if text:
            report.sections.append(("devloop: cluster", text))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = session.config
        run = _run(config)
        if run.is_worker:
            from pytest_devloop.run.testrun import WORKER_RECORDS

            config.workeroutput[WORKER_RECORDS] = json.dumps(  # type: ignore[attr-defined]
                {
                    "records": run.records,
                    "note": run.selection_note,
                    "explain": run.explain_lines,
                    "nothing_affected": run.nothing_affected,
                }
            )
            return
        if run.nothing_affected and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            # Every test deselected by devloop: nothing to run is a green run, not pytest's 5.
            session.exitstatus = pytest.ExitCode.OK
        try:
            _invalidate_uncollected(config, run)
            run.save_records(run.records)
        finally:
            run.teardown()
            _secure(run)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # An interrupt during the session-start sync (SIGTERM/SIGHUP/Ctrl-C) skips
        # pytest_sessionfinish: the CI namespace may exist already, so tear down here too.
        run: TestRun | None = config.stash.get(_RUN_KEY, None)
        if run is None or run.is_worker:
            return
        try:
            run.teardown()
        finally:
            if run.signals is not None:
                run.signals.uninstall()

    def pytest_terminal_summary(
        self, terminalreporter: Any, exitstatus: int, config: pytest.Config
    ) -> None:
        run = _run(config)
        if config.pluginmanager.hasplugin("dsession") and run.selection_note:
            # Under xdist the workers selected; their note arrives at the end.
            terminalreporter.write_line(run.selection_note)
            for line in run.explain_lines:
                terminalreporter.write_line(line)


class _Uncollected:
    """A test of a file devloop did not collect (all its tests unaffected), as counted
    among the deselected in pytest's summary line."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


def _invalidate_uncollected(config: pytest.Config, run: TestRun) -> None:
    """A test file that failed to collect (a syntax error) keeps no record of a clean
    state: its tests' records get a digest no file has, so after the fix (even back to the
    very content last recorded) they run instead of being taken as unchanged."""
    files = config.stash.get(_COLLECT_ERRORS_KEY, [])
    if not files:
        return
    old, _ = run.load_records()
    for nodeid, record in (old or {}).items():
        if nodeid.split("::", 1)[0] in files and nodeid not in run.records:
            run.records[nodeid] = {**record, "file_digest": "collection-error"}


def _secure(run: TestRun) -> None:
    """`.devloop/` private: whatever this run wrote there (records, caches, logs) 0600."""
    from pytest_devloop.sync.ownership import secure_tree

    root = getattr(getattr(run, "config", None), "root", None)
    if root is not None:
        secure_tree(root)


@pytest.fixture(scope="session")
def devloop(pytestconfig: pytest.Config) -> TestRun:
    """The devloop run: `.config`, `.target`, `.result` (this session's sync), `.summary`."""
    run = _run(pytestconfig)
    run.require_cluster()
    return run


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Cluster:
    """The synced cluster. Reads through it are recorded per test (affected-test selection).

    `cluster.get("Deployment", "web")`, `cluster.list("Pod", selector={"app": "web"})`,
    `cluster.deployment("web").ready_replicas`, `cluster.logs(...)`, `cluster.events(...)`;
    `cluster.api_client` is the raw `kubernetes` client (not recorded: declare what it
    reads with `cluster.depends_on(...)` or `@pytest.mark.devloop(depends_on=[...])`).
    """
    view: Cluster = _run(pytestconfig).cluster_view()
    return view


@pytest.fixture(scope="session")
def rendered(pytestconfig: pytest.Config) -> Rendered:
    """The desired objects of every artifact, without a cluster (also with --devloop-static)."""
    view: Rendered = _run(pytestconfig).rendered_view()
    return view


@pytest.fixture(scope="session")
def prometheus(pytestconfig: pytest.Config) -> Prometheus:
    """Prometheus scrape targets and queries as assertions (see docs/prometheus.md)."""
    from pytest_devloop.prometheus.targets import prometheus_for

    return prometheus_for(_run(pytestconfig))


@pytest.fixture
def eventually() -> Eventually:
    """`eventually(lambda: cond, timeout=10, interval=0.05)`: retry until true; on timeout
    the failure shows the last observed value."""
    from pytest_devloop.run.eventually import eventually as fn

    return fn


@pytest.fixture(scope="session")
def embedded_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedCluster]:
    """A fresh embedded Kubernetes cluster for the session, with a kubeconfig.

    `embedded_cluster.kubeconfig` is the path to give kubectl, helm or
    `kubernetes.config.load_kube_config`.
    """
    from pytest_devloop.embedded.cluster import EmbeddedCluster
    from pytest_devloop.embedded.controllers import SimulationConfig

    delay = request.config.getoption("devloop_pod_ready_delay")
    if delay is None:
        delay = float(request.config.getini("devloop_pod_ready_delay"))
    cluster = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=delay),
        directory=tmp_path_factory.mktemp("devloop-embedded"),
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
