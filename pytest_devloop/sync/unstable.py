"""Fields a chart generates anew on each render.

Owns finding and neutralising them. Charts generate passwords, certificates, UUIDs and
timestamps in their templates (`randAlphaNum`, `genCA`, `uuidv4`, `now`); rendering the
same inputs twice gives different objects there, and applying each render would write on
every sync and rotate secrets under running workloads. The paths where two renders of
the same inputs differ are recorded per object; later renders take the value applied
before at those paths (what the cluster holds), so only real input changes write.
"""

from __future__ import annotations

import copy
from typing import Any

Path = list[str | int]


def diff_paths(a: Any, b: Any, prefix: tuple[str | int, ...] = ()) -> list[Path]:
    """The paths where two objects differ, as deep as both have the same shape."""
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[Path] = []
        for k in sorted(set(a) | set(b), key=str):
            if k in a and k in b:
                out += diff_paths(a[k], b[k], (*prefix, str(k)))
            else:
                out.append([*prefix, str(k)])
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += diff_paths(x, y, (*prefix, i))
        return out
    return [list(prefix)]


def path_text(path: Path) -> str:
    """`data.admin-password`, `spec.template.spec.containers[0].env[1].value`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _get(obj: Any, path: Path) -> tuple[bool, Any]:
    for part in path:
        if isinstance(part, int):
            if not isinstance(obj, list) or part >= len(obj):
                return False, None
        elif not isinstance(obj, dict) or part not in obj:
            return False, None
        obj = obj[part]
    return True, obj


def _parent(obj: Any, path: Path) -> Any:
    found, parent = _get(obj, path[:-1])
    if not found:
        return None
    last = path[-1]
    if isinstance(last, int):
        return parent if isinstance(parent, list) and last < len(parent) else None
    return parent if isinstance(parent, dict) and last in parent else None


def keep_values(obj: dict[str, Any], paths: list[Path], previous: dict[str, Any]) -> list[Path]:
    """Set each unstable path of `obj` to its value in `previous` (in place); returns the
    paths kept. A path that either side lacks is left as rendered."""
    kept: list[Path] = []
    for path in paths:
        if not path:
            continue
        found, value = _get(previous, path)
        parent = _parent(obj, path)
        if not found or parent is None:
            continue
        parent[path[-1]] = copy.deepcopy(value)
        kept.append(path)
    return kept


def without(obj: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    """A copy of `obj` with the unstable paths blanked (what a hook is remembered by)."""
    if not paths:
        return obj
    out = copy.deepcopy(obj)
    for path in paths:
        if not path:
            continue
        parent = _parent(out, path)
        if parent is not None:
            parent[path[-1]] = None
    return out
