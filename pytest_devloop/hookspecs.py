"""Hooks a project may implement in its `conftest.py` to override devloop's policies.

Registered by the plugin through `pytest_addhooks`. Each hook is `firstresult`: the first
implementation that returns a value decides; devloop's own default comes last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_devloop.selection.policy import Decision


@pytest.hookspec(firstresult=True)
def pytest_devloop_selection_mode(
    config: pytest.Config, mode: str, synced: bool, sync_error: str | None
) -> Decision | None:
    """Whether `--devloop-affected` selection is on for this run, and why (one line).

    Return a `pytest_devloop.selection.policy.Decision`, or None to leave it to devloop.
    """


@pytest.hookspec(firstresult=True)
def pytest_devloop_cluster_provider(config: pytest.Config, configured: str | None) -> str | None:
    """The cluster provider to use (`embedded`, `current`, `kind:<name>`, ...), given the one
    the options or `devloop.yaml` name (None: the config's default). Return None to keep it.
    The guard checks whatever provider is chosen."""
