"""pytest entry point of pytest-devloop: options, fixtures and hooks, nothing heavy.

Registered through the `pytest11` entry point. This module must stay cheap to import:
it is loaded by every pytest run in an environment where the package is installed,
including projects that never use devloop, so the Kubernetes client, the embedded
cluster and everything else are imported inside the hooks and fixtures that need them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_devloop.embedded.cluster import EmbeddedCluster
    from pytest_devloop.session import Options


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


def _options(config: pytest.Config) -> Options:
    from pytest_devloop.session import Options, parse_prune

    explicit = config.getoption("devloop_config") or config.getini("devloop_config") or None
    return Options(
        rootdir=Path(config.rootpath),
        config=Path(explicit) if explicit else None,
        profile=config.getoption("devloop_profile"),
        cluster=config.getoption("devloop_cluster"),
        context=config.getoption("devloop_context"),
        create_cluster=config.getoption("devloop_create_cluster"),
        force_conflicts=config.getoption("devloop_force_conflicts"),
        prune=parse_prune(config.getoption("devloop_prune")),
        build=config.getoption("devloop_build"),
    )


class DevloopSession:
    """The `devloop` fixture: config, cluster target and the session's sync result."""

    def __init__(self, pytest_config: pytest.Config) -> None:
        from pytest_devloop import session

        self._pytest_config = pytest_config
        self.options = _options(pytest_config)
        self._terminal = pytest_config.pluginmanager.get_plugin("terminalreporter")
        self.config = session.load(self.options)
        self.target: Any = None
        self.result: Any = None
        self._syncer: Any = None

    def write(self, line: str) -> None:
        # Sync lines are the loop's feedback: shown even while pytest captures output.
        if self._terminal is None:
            print(line)
            return
        capman = self._pytest_config.pluginmanager.getplugin("capturemanager")
        if capman is None:
            self._terminal.write_line(line)
            return
        with capman.global_and_fixture_disabled():
            self._terminal.write_line(line)

    def sync(self, *, plan_only: bool = False) -> Any:
        """Sync once (the fixtures call this); returns the SyncResult."""
        from pytest_devloop import session
        from pytest_devloop.sync import Syncer

        if self.config is None:
            raise pytest.UsageError(
                f"no devloop.yaml or skaffold.yaml in {self.options.rootdir}; "
                "write one (see docs/configuration.md) or pass --devloop-config"
            )
        for warning in self.config.warnings:
            self.write(f"devloop: warning: {warning}")
        if self.target is None:
            self.target = session.target_for(self.config, self.options)
        if self._syncer is None:
            self._syncer = Syncer(
                self.config,
                self.target,
                force_conflicts=self.options.force_conflicts,
                allow_prune=self.options.prune,
                mode=self.options.mode,
                out=self.write,
                build=self.options.build,
            )
        self.result = self._syncer.sync(plan_only=plan_only)
        return self.result


def _session(config: pytest.Config) -> DevloopSession:
    existing: DevloopSession | None = getattr(config, "_devloop_session", None)
    if existing is None:
        existing = DevloopSession(config)
        config._devloop_session = existing  # type: ignore[attr-defined]
    return existing


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """`--devloop-plan`: print what a sync would do, run no test (like `--fixtures`)."""
    if not config.getoption("devloop_plan"):
        return None
    from pytest_devloop.config import ConfigError
    from pytest_devloop.providers import ClusterRefused, ClusterUnavailable

    try:
        result = _session(config).sync(plan_only=True)
    except (ConfigError, ClusterRefused, ClusterUnavailable) as e:
        print(f"devloop: {e}")
        return int(pytest.ExitCode.USAGE_ERROR)
    except pytest.UsageError as e:
        print(f"devloop: {e}")
        return int(pytest.ExitCode.USAGE_ERROR)
    return 0 if result.ok else 1


@pytest.fixture(scope="session")
def devloop(pytestconfig: pytest.Config) -> DevloopSession:
    """The devloop session: `devloop.config`, `devloop.target`, `devloop.result` (the sync).

    Requesting it syncs the cluster once per session (only what changed since the last
    sync to that cluster) and fails the requesting tests if the sync failed.
    """
    from pytest_devloop.config import ConfigError
    from pytest_devloop.providers import ClusterRefused, ClusterUnavailable
    from pytest_devloop.state import StateLocked

    try:
        s = _session(pytestconfig)
        if s.result is None:
            s.sync()
    except (ConfigError, ClusterRefused, ClusterUnavailable, StateLocked) as e:
        pytest.fail(f"devloop: {e}", pytrace=False)
    if not s.result.ok:
        errors = "\n".join(a.line for a in s.result.artifacts if a.error)
        pytest.fail(f"devloop: the sync failed:\n{errors}", pytrace=False)
    return s


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
