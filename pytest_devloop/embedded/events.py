"""core/v1 Events written by the embedded cluster's simulated controllers and kubelets.

Owns the shape of the Events (`involvedObject`, `reason`, `message`, `type`, `count`,
first/last timestamps, `source` and `reportingComponent`, as `kubectl describe` and
`kubectl events` read them), their aggregation (a repeated event bumps `count` instead of
adding an object) and their cap per namespace, so a crash-looping pod cannot grow memory
without bound.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

from pytest_devloop.embedded import errors
from pytest_devloop.embedded.store import Store, meta

Obj = dict[str, Any]


class EventRecorder:
    """Writes Events through the store; call it from the controller loop only."""

    def __init__(
        self, store: Store, *, enabled: bool, per_namespace: int, rng: random.Random
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.per_namespace = per_namespace
        self.rng = rng
        self.rt = store.registry.get("", "events")
        # namespace -> aggregation key -> event name, oldest first
        self._recent: dict[str, OrderedDict[tuple[str, str, str, str], str]] = {}

    def record(
        self,
        obj: Obj,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        component: str,
        host: str | None = None,
        now: str,
    ) -> None:
        if not self.enabled or self.rt is None:
            return
        m = meta(obj)
        # Events about cluster-scoped objects (nodes) live in `default`, as on a real cluster.
        namespace = str(m.get("namespace") or "default")
        key = (str(m.get("uid", "")), reason, message, component)
        recent = self._recent.setdefault(namespace, OrderedDict())
        name = recent.get(key)
        if name is not None:
            existing = self.store.get(self.rt, namespace, name)
            if existing is not None:
                updated = dict(existing)
                updated["count"] = int(existing.get("count", 1)) + 1
                updated["lastTimestamp"] = now
                updated["metadata"] = dict(meta(existing))
                try:
                    self.store.update(self.rt, updated)
                except errors.ApiError:
                    pass
                recent.move_to_end(key)
                return
            del recent[key]
        involved: Obj = {
            "kind": obj.get("kind"),
            "namespace": m.get("namespace"),
            "name": m.get("name"),
            "uid": m.get("uid"),
            "apiVersion": obj.get("apiVersion"),
            "resourceVersion": m.get("resourceVersion"),
        }
        if involved["namespace"] is None:
            del involved["namespace"]
        source: Obj = {"component": component}
        if host:
            source["host"] = host
        name = f"{m.get('name')}.{self.rng.getrandbits(64):016x}"
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": None,
            "source": source,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        try:
            self.store.create(self.rt, event)
        except errors.ApiError:
            return  # e.g. the namespace is terminating
        recent[key] = name
        while len(recent) > self.per_namespace:
            _, oldest = recent.popitem(last=False)
            try:
                self.store.remove(self.rt, namespace, oldest)
            except errors.ApiError:
                pass

    def forget_namespace(self, namespace: str) -> None:
        self._recent.pop(namespace, None)
