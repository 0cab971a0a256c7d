"""Which input files changed since the last sync, and which file caused which change.

Owns the per-file digests of every artifact's inputs as last synced to a cluster
(`.devloop/inputs/<cluster key>.json`: artifact -> file -> digest; files named relative
to the config's root), so that a plain `pytest --devloop-affected` knows the changed
files as watch mode does, and the attribution of an object change to its cause: the
template the object comes from when that file changed, else the other changed inputs of
its artifact (values files, helpers). The digests come from the syncer's `FileHasher`
(cached by stat), so a sync reads no file twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["InputStore", "attribute", "changed_inputs"]


class InputStore:
    """The digests of the last sync's inputs, per artifact, for one cluster."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        self.artifacts: dict[str, dict[str, str]] = {
            str(a): {str(f): str(d) for f, d in files.items()}
            for a, files in (data.items() if isinstance(data, dict) else [])
            if isinstance(files, dict)
        }
        self._dirty = False

    def get(self, artifact: str) -> dict[str, str] | None:
        return self.artifacts.get(artifact)

    def put(self, artifact: str, files: Mapping[str, str]) -> None:
        if self.artifacts.get(artifact) != dict(files):
            self.artifacts[artifact] = dict(files)
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.artifacts, sort_keys=True))
        tmp.replace(self.path)
        self._dirty = False


def changed_inputs(
    current: Mapping[str, str],
    before: Mapping[str, str] | None,
    touched: Iterable[str] = (),
) -> list[str]:
    """Input files whose digest differs from the last sync's (added and removed files
    count), plus the `touched` ones (watch mode's saved files) among the inputs. None
    `before` (never synced): no file is the cause, the artifact is."""
    out = set()
    if before is not None:
        out |= {f for f, d in current.items() if before.get(f) != d}
        out |= set(before) - set(current)
    out |= {f for f in touched if f in current or (before is not None and f in before)}
    return sorted(out)


def attribute(source: str, changed: list[str]) -> str | None:
    """The changed file that caused a change of an object rendered from `source`
    (`shop/templates/x.yaml` as Helm names it, or a manifest's path): its own template
    when that changed, else the other changed inputs (values files, helpers)."""
    if not changed:
        return None
    tail = source.split("/", 1)[-1] if "/" in source else source
    for f in changed:
        if f == source or f.endswith("/" + tail):
            return _short(f)
    templates = {"templates", "crds"}
    others = [f for f in changed if not (set(f.split("/")[:-1]) & templates)]
    chosen = others or changed
    return ", ".join(_short(f) for f in chosen[:2]) + (
        f" +{len(chosen) - 2}" if len(chosen) > 2 else ""
    )


def _short(path: str) -> str:
    return path
