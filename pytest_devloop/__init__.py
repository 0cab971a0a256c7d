"""pytest-devloop: test-driven iteration on Kubernetes infrastructure.

The package is a pytest plugin (registered through the ``pytest11`` entry point as
``pytest_devloop.plugin``) plus a small command line (``python -m pytest_devloop``).
Nothing heavy is imported here: the plugin must load in a few milliseconds in projects
that do not use it.

The fixtures' types are importable from here for annotations in tests
(``def test_x(cluster: pytest_devloop.Cluster) -> None``); they are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Cluster", "Eventually", "Prometheus", "Rendered", "__version__"]

if TYPE_CHECKING:
    from pytest_devloop.prometheus.targets import Prometheus
    from pytest_devloop.run.eventually import Eventually
    from pytest_devloop.run.view import Cluster, Rendered

_LAZY = {
    "Cluster": "pytest_devloop.run.view",
    "Rendered": "pytest_devloop.run.view",
    "Prometheus": "pytest_devloop.prometheus.targets",
    "Eventually": "pytest_devloop.run.eventually",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_devloop' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
