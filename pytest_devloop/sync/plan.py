"""Planning a sync: desired objects vs what devloop applied last vs the live cluster.

Pure functions over plain data. For each object the plan says create, update, unchanged,
drift (deleted or edited by hand since devloop applied it), prune (no longer rendered) or
keep (no longer rendered, but of a kind never pruned implicitly), each with a reason and,
for updates and drift, the field paths that differ. Apply order follows Helm's install
order (namespaces and CRDs first, workloads after their config), prune the reverse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_devloop.k8s.apply import changed_paths
from pytest_devloop.k8s.install_order import INSTALL_ORDER
from pytest_devloop.k8s.install_order import RANK as _RANK
from pytest_devloop.sync.ownership import is_secret, redact

# Kinds whose deletion destroys data or other objects: never pruned unless allowed.
PROTECTED = {
    "PersistentVolumeClaim": "pvcs",
    "CustomResourceDefinition": "crds",
    "Namespace": "namespaces",
}

_MISSING = {"$devloop": "missing"}


def install_rank(kind: str) -> int:
    return _RANK.get(kind, len(INSTALL_ORDER))


def digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def object_key(obj: Mapping[str, Any]) -> str:
    """Identity of an object across versions: group/Kind/namespace/name."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    m = obj.get("metadata") or {}
    return f"{group}/{obj.get('kind')}/{m.get('namespace') or ''}/{m.get('name')}"


def short_name(key: str) -> str:
    """`Deployment/web` (or `Deployment/ns/web` is too long for lines; the namespace is implied)."""
    _, kind, _, name = key.split("/", 3)
    return f"{kind}/{name}"


def kind_of(key: str) -> str:
    return key.split("/", 3)[1]


def project(shape: Any, live: Any) -> Any:
    """The values `live` holds at the paths present in `shape` (what devloop applied).

    Lists of named items (containers, ports, env) are matched by name, others by
    position. Comparing two projections tells whether someone changed a field devloop
    owns, while ignoring whatever the server or controllers added.
    """
    if live is _MISSING:
        return _MISSING
    if isinstance(shape, dict):
        if not isinstance(live, dict):
            return _MISSING if live is None else live
        return {k: project(v, live.get(k, _MISSING)) for k, v in shape.items()}
    if isinstance(shape, list):
        if not isinstance(live, list):
            return _MISSING if live is None else live
        if shape and all(isinstance(i, dict) and "name" in i for i in shape):
            by_name = {i.get("name"): i for i in live if isinstance(i, dict)}
            return [project(i, by_name.get(i["name"], _MISSING)) for i in shape]
        return [project(s, live[i] if i < len(live) else _MISSING) for i, s in enumerate(shape)]
    return live


@dataclass
class Action:
    op: str  # create | update | unchanged | drift | prune | keep
    key: str
    reason: str
    desired: dict[str, Any] | None = None
    fields: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return kind_of(self.key)

    @property
    def name(self) -> str:
        return short_name(self.key)

    def describe(self) -> str:
        detail = f": {', '.join(self.fields[:4])}" if self.fields else ""
        more = f" (+{len(self.fields) - 4} more)" if len(self.fields) > 4 else ""
        return f"{self.name}{detail}{more}"


@dataclass
class Plan:
    artifact: str
    actions: list[Action]

    def by_op(self, op: str) -> list[Action]:
        return [a for a in self.actions if a.op == op]

    @property
    def writes(self) -> list[Action]:
        """What to apply, in install order."""
        todo = [a for a in self.actions if a.op in ("create", "update", "drift")]
        return sorted(todo, key=lambda a: install_rank(a.kind))

    @property
    def prunes(self) -> list[Action]:
        return sorted(self.by_op("prune"), key=lambda a: -install_rank(a.kind))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            out[a.op] = out.get(a.op, 0) + 1
        return out


@dataclass
class Recorded:
    digest: str
    applied: dict[str, Any]
    observed: Any  # projection of the live object onto `applied` right after the apply
    pending: bool = False  # written ahead of a create that may not have happened


def plan_artifact(
    artifact: str,
    desired: Mapping[str, dict[str, Any]],
    recorded: Mapping[str, Recorded],
    live: Mapping[str, dict[str, Any] | None] | None,
    *,
    allow_prune: frozenset[str] = frozenset(),
) -> Plan:
    """Decide every object's fate. `live` None means: no drift check this time."""
    actions: list[Action] = []
    for key, obj in desired.items():
        rec = recorded.get(key)
        d = digest(obj)
        if rec is None:
            actions.append(Action("create", key, "not applied by devloop before", obj))
            continue
        if not rec.digest:
            # Known only from the in-cluster inventory: the body devloop applied is not
            # recorded here, so there are no field paths to report, only a re-apply.
            actions.append(
                Action(
                    "update", key, "in the in-cluster inventory, no local record: re-applied", obj
                )
            )
            continue
        secret = is_secret(obj)
        if rec.pending:
            # Recorded ahead of its create by a sync that did not finish: created or not.
            if live is not None and live.get(key) is None:
                actions.append(Action("create", key, "recorded by an interrupted sync", obj))
            else:
                actions.append(
                    Action("update", key, "recorded by an interrupted sync: re-applied", obj)
                )
            continue
        # The recorded body of a Secret holds digests of its values, so its digest is
        # not the recorded one: the desired body *is* the recorded body (inputs unchanged).
        if rec.digest != d and obj != rec.applied:
            # Recorded Secret values are digests: compare digests.
            fields = changed_paths(rec.applied, redact(obj, secret))
            actions.append(
                Action("update", key, "rendered differently", obj, fields or ["(metadata)"])
            )
            continue
        if live is not None:
            current = live.get(key)
            if current is None:
                actions.append(Action("drift", key, "deleted since the last sync", obj))
                continue
            now = redact(project(rec.applied, current), secret)
            if rec.observed is not None and now != rec.observed:
                fields = changed_paths(rec.observed, now) if isinstance(now, dict) else []
                actions.append(Action("drift", key, "edited since the last sync", obj, fields))
                continue
        actions.append(Action("unchanged", key, "same rendering as applied", obj))
    for key in recorded:
        if key in desired:
            continue
        kind = kind_of(key)
        policy = PROTECTED.get(kind)
        if policy is not None and policy not in allow_prune:
            actions.append(
                Action(
                    "keep",
                    key,
                    f"no longer rendered, but {kind} objects are never pruned implicitly "
                    f"(allow with --devloop-prune={policy})",
                )
            )
        else:
            actions.append(Action("prune", key, "no longer rendered"))
    return Plan(artifact, actions)
