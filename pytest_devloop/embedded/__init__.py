"""The embedded cluster: a Kubernetes API server with simulated controllers.

`EmbeddedCluster` runs one in a thread of the calling process (what test sessions use);
`up`/`down`/`running` manage the background process behind
`python -m pytest_devloop cluster up|down|status`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_devloop.embedded.cluster import EmbeddedCluster, down, running, up
    from pytest_devloop.embedded.controllers import SimulationConfig

__all__ = ["EmbeddedCluster", "SimulationConfig", "down", "running", "up"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import pytest_devloop.embedded.store` (and the plugin)
    # stays cheap.
    if name in ("EmbeddedCluster", "down", "running", "up"):
        from pytest_devloop.embedded import cluster

        return getattr(cluster, name)
    if name == "SimulationConfig":
        from pytest_devloop.embedded import controllers

        return controllers.SimulationConfig
    raise AttributeError(name)
