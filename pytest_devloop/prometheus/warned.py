"""The embedded Prometheus's "not supported, ignored" warnings, said once per cluster.

A chart with a kube-prometheus-stack subchart has monitors with fields the embedded
Prometheus ignores (TLS settings, relabelings it does not run); naming them on every run
and every watch cycle buries the lines that matter. Each warning is said the first time a
project meets it on a cluster and kept in `.devloop/prometheus/<cluster key>.json`, where
`devloop status` lists them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

PREFIX = "devloop: warning: "


def path_for(root: Path, server: str, uid: str) -> Path:
    from pytest_devloop.sync.state import cluster_key

    return root / ".devloop" / "prometheus" / f"{cluster_key(server, uid)}.json"


def load(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [str(w) for w in data] if isinstance(data, list) else []


def _save(path: Path, warnings: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(warnings, indent=0))
    tmp.chmod(0o600)
    tmp.replace(path)


def once(path: Path, write: Callable[[str], None]) -> tuple[set[str], Callable[[str], None]]:
    """(warnings already said on this cluster, a writer that says and keeps new ones)."""
    seen = load(path)

    def say(line: str) -> None:
        text = line.removeprefix(PREFIX)
        if text not in seen:
            seen.append(text)
            _save(path, seen)
        write(f"{line} (said once per cluster; `devloop status` lists them)")

    return set(seen), say
