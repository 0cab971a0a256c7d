"""What a sync changed, as selection reads it: every kind of change, and its cause.

Owns the translation from a sync's report (`SyncResult.changed`: per object key either
the changed field paths or one op word) to the change set the impact graph takes, the
roots for artifacts whose object-level changes are not known (a Helm command ran), the
cause of each change (the input file that produced it, when known), and the one-line
text of the header. Pure: no I/O.

Every kind of change is a change: an op word (created, pruned, drift restored after a
deletion, hook re-run, recreated) is a whole-object change (None), which meets every
read of the object and every list that can hold it; field paths stay field paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["OPS", "ChangeSet", "change_set", "describe"]

# Op words the syncer reports instead of field paths (no field path is a bare op word).
OPS = frozenset({"create", "update", "prune", "drift", "recreate", "hook", "delete", "keep"})


@dataclass
class ChangeSet:
    """The input of `Graph.closure`, with what the header and the explain lines say.

    `changed`: object key (or `chart:<artifact>`) -> field paths, None for the whole
    object. `ops`: key -> the op word of a whole-object change. `causes`: key -> the file
    that produced the change (or the artifact). `opaque`: artifact -> why its changes are
    not all known. `uncertain`: None, or why no one can tell which tests a change meets.
    """

    changed: dict[str, list[str] | None] = field(default_factory=dict)
    ops: dict[str, str] = field(default_factory=dict)
    causes: dict[str, str] = field(default_factory=dict)
    opaque: dict[str, str] = field(default_factory=dict)
    uncertain: str | None = None

    def __bool__(self) -> bool:
        return bool(self.changed)


def change_set(
    changed: Iterable[tuple[str, list[str]]],
    *,
    opaque: Mapping[str, str] = {},  # read only
    causes: Mapping[str, str] = {},  # read only
    artifact_of: Mapping[str, str] = {},  # read only
) -> ChangeSet:
    """The change set of a sync report. An artifact in `opaque` becomes a
    `chart:<artifact>` root (every object of it changed as a whole); one with no known
    object makes the whole set uncertain (every test runs)."""
    out = ChangeSet()
    for key, fields in changed:
        words = [f for f in fields if f in OPS]
        paths = [f for f in fields if f not in OPS]
        if words or not paths:
            out.changed[key] = None
            out.ops[key] = words[0] if words else "update"
        else:
            old = out.changed.get(key, [])
            out.changed[key] = None if old is None else [*old, *paths]
        cause = causes.get(key) or artifact_of.get(key)
        if cause:
            out.causes[key] = cause
    known = set(artifact_of.values())
    for artifact, why in opaque.items():
        out.opaque[artifact] = why
        out.changed[f"chart:{artifact}"] = None
        out.causes[f"chart:{artifact}"] = why
        if artifact not in known:
            out.uncertain = f"{why}, and devloop knows none of {artifact}'s objects"
    return out


def _label(key: str) -> str:
    parts = key.split("/", 3)
    return f"{parts[1]}/{parts[3]}" if len(parts) == 4 else key


def describe(cs: ChangeSet, *, limit: int = 2) -> str:
    """`values.yaml → Deployment/sms-checker-app (spec.replicas)`: what the sync changed,
    named by its cause (the file when known, else the artifact)."""
    if not cs.changed:
        return "the sync (nothing changed in the cluster)"
    parts: list[str] = []
    for artifact, why in cs.opaque.items():
        parts.append(f"{artifact} ({why}: every test that reads {artifact} runs)")
    keys = [k for k in cs.changed if not k.startswith("chart:")]
    groups: dict[str, list[str]] = {}  # cause -> changes, in order (one cause said once)
    for key in keys[:limit]:
        fields = cs.changed[key]
        text = _label(key)
        if fields:
            extra = f" +{len(fields) - 2}" if len(fields) > 2 else ""
            text += f" ({', '.join(fields[:2])}{extra})"
        elif key in cs.ops and cs.ops[key] != "update":
            text += f" ({_OP_TEXT.get(cs.ops[key], cs.ops[key])})"
        groups.setdefault(cs.causes.get(key, ""), []).append(text)
    for cause, texts in groups.items():
        joined = ", ".join(texts)
        parts.append(f"{cause} → {joined}" if cause else joined)
    more = len(keys) - limit
    return "; ".join(parts) + (f" and {more} more" if more > 0 else "")


_OP_TEXT = {
    "create": "created",
    "prune": "pruned",
    "drift": "drift restored",
    "hook": "hook ran",
    "recreate": "recreated",
    "delete": "deleted",
}
