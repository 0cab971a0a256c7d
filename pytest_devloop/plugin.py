"""pytest entry point of pytest-devloop: options, fixtures and hooks, nothing heavy.

Registered through the `pytest11` entry point. This module must stay cheap to import:
it is loaded by every pytest run in an environment where the package is installed,
including projects that never use devloop, so the Kubernetes client, the embedded
cluster and everything else are imported inside the fixtures that need them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_devloop.embedded.cluster import EmbeddedCluster


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("devloop", "pytest-devloop: Kubernetes infrastructure test loop")
    group.addoption(
        "--devloop-pod-ready-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help="embedded cluster: delay before a simulated pod becomes Running and Ready (default 0.05)",
    )
    parser.addini(
        "devloop_pod_ready_delay",
        "embedded cluster: delay before a simulated pod becomes Ready, in seconds",
        default="0.05",
    )


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
