"""The `devloop:` report header line of a pytest run: mode, cluster, config file, selection.

One line, computed after the session-start sync (the plugin's `pytest_sessionstart` runs
before the terminal reporter's), so the cluster it names is the one the tests will use and
the selection decision is the one `--devloop-affected` will apply.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_devloop.run.testrun import TestRun


def header_line(run: TestRun) -> str:
    parts = [f"mode {run.mode}"]
    cfg = run.config
    if cfg is None:
        return f"devloop: mode {run.mode}, no devloop.yaml or skaffold.yaml found"
    provider = run.options.cluster or cfg.cluster.provider
    if run.mode == "static":
        parts.append("no cluster (rendered objects only)")
    elif run.summary is not None:
        where = run.summary.context or provider
        parts.append(f"cluster {where} ({run.summary.server})")
    elif run.sync_error:
        parts.append(f"cluster {provider}: not synced ({run.sync_error.splitlines()[0]})")
    else:
        parts.append(f"cluster {provider}")
    try:
        shown = os.path.relpath(cfg.source, run.pytest_config.rootpath)
    except ValueError:  # another drive (Windows)
        shown = str(cfg.source)
    parts.append(f"config {shown}")
    pc = run.pytest_config
    decision = pc.hook.pytest_devloop_selection_mode(
        config=pc, mode=run.mode, synced=run.summary is not None, sync_error=run.sync_error
    )
    parts.append(f"selection {'on' if decision.on else 'off'} ({decision.reason})")
    return "devloop: " + ", ".join(parts)
