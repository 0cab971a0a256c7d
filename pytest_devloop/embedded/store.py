"""The embedded cluster's object store: one lock, one resourceVersion counter, watches.

Owns every stored object, the global `resourceVersion` counter, the history buffer that
lets a watch resume from a resourceVersion (or fail with 410 Expired once compacted),
the registration of watchers and controller listeners, and the storage rules every API
server applies regardless of the client: uid/creationTimestamp/generation on create,
status kept on main-resource writes and spec kept on status writes, generation bumped on
spec changes, finalizers and deletionTimestamp on delete.

Stored objects are never mutated in place: each write stores a new dict. Readers get the
stored dict itself and must `clone()` it before changing anything, which keeps a list of
thousands of objects free of copies.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pytest_devloop.embedded import conversion, errors
from pytest_devloop.k8s.resources import Registry, ResourceType
from pytest_devloop.k8s.selectors import Requirement, labels_match

Obj = dict[str, Any]
# `Store.list` shadows the builtin inside the class body, so annotations there use these.
Lines = list[str]
Objs = list[Obj]
ObjectsByType = list[tuple[ResourceType, Obj]]
Requirements = list[Requirement]
FieldMatch = Callable[[Mapping[str, Any]], bool]

# Kinds whose objects carry no metadata.generation on a real cluster.
_NO_GENERATION = {
    "ConfigMap",
    "Secret",
    "Event",
    "Endpoints",
    "EndpointSlice",
    "ServiceAccount",
    "Lease",
    "ControllerRevision",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
}


# Status fields that Go serializes even at zero (no `omitempty`); typed clients require
# them (the Python client rejects a StatefulSetStatus without `replicas`).
_ZERO_STATUS: dict[str, dict[str, int]] = {
    "apps/statefulsets": {"replicas": 0, "availableReplicas": 0},
    "apps/replicasets": {"replicas": 0},
    "apps/daemonsets": {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    },
    "autoscaling/horizontalpodautoscalers": {"desiredReplicas": 0},
    "policy/poddisruptionbudgets": {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    },
}


def _fill_zero_status(rt: ResourceType, obj: Obj) -> None:
    zeros = _ZERO_STATUS.get(rt.key)
    status = obj.get("status")
    if zeros and isinstance(status, dict) and any(k not in status for k in zeros):
        obj["status"] = {**zeros, **status}


def clone(obj: Any) -> Any:
    """Deep copy of JSON-like data; several times faster than `copy.deepcopy`."""
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone(v) for v in obj]
    return obj


def now_rfc3339(clock: Callable[[], float] = time.time) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


@dataclass(frozen=True)
class Change:
    """One committed write, as controllers and watches see it."""

    type: str  # ADDED | MODIFIED | DELETED
    rt: ResourceType
    old: Obj | None
    new: Obj  # for DELETED: the last state of the object
    rv: int


@dataclass(eq=False)
class Watcher:
    """A watch's filter and queue; the HTTP layer drains `events`."""

    rt_key: str
    namespace: str | None
    label_reqs: list[Requirement]
    field_match: FieldMatch | None
    events: queue.SimpleQueue[tuple[str, Obj] | None] = field(default_factory=queue.SimpleQueue)
    closed: bool = False
    initial: int = 0  # how many of the queued events are the replayed current state
    # For a collection served from another's storage: the stored object as served.
    serve: Callable[[Obj], Obj] | None = None

    def _matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        m = meta(obj)
        if self.namespace is not None and m.get("namespace") != self.namespace:
            return False
        if self.label_reqs and not labels_match(self.label_reqs, m.get("labels")):
            return False
        return not (self.field_match is not None and not self.field_match(obj))

    def offer(self, change: Change) -> None:
        if self.closed or change.rt.key != self.rt_key:
            return
        if self.serve is not None:
            old = None if change.old is None else self.serve(change.old)
            change = Change(change.type, change.rt, old, self.serve(change.new), change.rv)
        new_ok = self._matches(change.new)
        if change.type == "ADDED":
            if new_ok:
                self.events.put(("ADDED", change.new))
        elif change.type == "DELETED":
            if new_ok:
                self.events.put(("DELETED", change.new))
        else:
            old_ok = self._matches(change.old)
            # An object moving across the selector boundary looks like a create or delete
            # to this watch, as on a real API server.
            if old_ok and new_ok:
                self.events.put(("MODIFIED", change.new))
            elif new_ok:
                self.events.put(("ADDED", change.new))
            elif old_ok:
                self.events.put(("DELETED", change.new))

    def close(self) -> None:
        self.closed = True
        self.events.put(None)


def _spec_part(rt: ResourceType, obj: Obj) -> Any:
    """What a change of bumps metadata.generation."""
    part = {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    if rt.kind == "Deployment":
        part["__annotations"] = meta(obj).get("annotations")
    if rt.key == "apiextensions.k8s.io/customresourcedefinitions":
        return part
    return part


class Store:
    """All objects of one embedded cluster."""

    def __init__(
        self,
        registry: Registry,
        *,
        history: int = 50_000,
        clock: Callable[[], float] = time.time,
        cluster_uid: str | None = None,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.cluster_uid = cluster_uid or str(uuid.uuid4())
        self.lock = threading.RLock()
        self._rv = 1
        self._data: dict[str, dict[tuple[str, str], Obj]] = {}
        self._history: deque[Change] = deque(maxlen=history)
        self._compacted_rv = 1
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Change], None]] = []
        self.write_count = 0
        self._logs: dict[tuple[str, str], list[str]] = {}
        # JSON of stored objects, keyed by identity: stored dicts never change, so each
        # is encoded once however often it is listed or watched.
        self._encoded: dict[int, tuple[Obj, bytes]] = {}
        self.logs_changed = threading.Condition(self.lock)
        # Objects of a collection served from another's storage, converted once per
        # stored version (keyed by identity like `_encoded`).
        self._served: dict[tuple[str, int], tuple[Obj, Obj]] = {}

    # -- collections served from another's storage ---------------------------------

    def _stored_as(self, rt: ResourceType) -> tuple[ResourceType, conversion.StoredAs] | None:
        how = conversion.stored_as(rt.key)
        if how is None:
            return None
        storage = self.registry.get(*how.storage)
        return None if storage is None else (storage, how)

    def _serve(self, how: conversion.StoredAs, obj: Obj) -> Obj:
        key = (how.api_version, id(obj))
        entry = self._served.get(key)
        if entry is not None and entry[0] is obj:
            return entry[1]
        out = how.from_storage(obj)
        if len(self._served) > 2 * self.write_count + 10_000:
            self._served.clear()
        self._served[key] = (obj, out)
        return out

    # -- reads ------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        alias = self._stored_as(rt)
        if alias is not None:
            stored = self.get(alias[0], namespace, name)
            return None if stored is None else self._serve(alias[1], stored)
        with self.lock:
            return self._data.get(rt.key, {}).get((namespace or "", name))

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_reqs: list[Requirement] | None = None,
        field_match: FieldMatch | None = None,
    ) -> tuple[list[Obj], int]:
        alias = self._stored_as(rt)
        if alias is not None:
            # Field labels name the served shape's fields: select after converting.
            stored, rv = self.list(alias[0], namespace, label_reqs)
            served = [self._serve(alias[1], o) for o in stored]
            return [o for o in served if field_match is None or field_match(o)], rv
        with self.lock:
            bucket = self._data.get(rt.key, {})
            items: Iterable[tuple[tuple[str, str], Obj]] = bucket.items()
            out: list[Obj] = []
            for (ns, _), obj in items:
                if namespace is not None and ns != namespace:
                    continue
                if label_reqs and not labels_match(label_reqs, meta(obj).get("labels")):
                    continue
                if field_match is not None and not field_match(obj):
                    continue
                out.append(obj)
            return out, self._rv

    def list_at(
        self,
        rt: ResourceType,
        rv: int,
        namespace: str | None = None,
        label_reqs: Requirements | None = None,
        field_match: FieldMatch | None = None,
    ) -> Objs:
        """The objects of `rt` as they were at resourceVersion `rv`: a consistent snapshot.

        Rebuilt by undoing, newest first, the writes after `rv` that the history still
        holds; 410 Expired when `rv` is older than the history.
        """
        alias = self._stored_as(rt)
        if alias is not None:
            stored = self.list_at(alias[0], rv, namespace, label_reqs)
            served = [self._serve(alias[1], o) for o in stored]
            return [o for o in served if field_match is None or field_match(o)]
        with self.lock:
            if rv >= self._rv:
                return self.list(rt, namespace, label_reqs, field_match)[0]
            if rv < self._compacted_rv:
                raise errors.expired(f"too old resource version: {rv} ({self._compacted_rv + 1})")
            bucket = dict(self._data.get(rt.key, {}))
            # Walking back, the last assignment per key is the earliest write after rv,
            # whose `old` is the state at rv.
            for change in reversed(self._history):
                if change.rv <= rv:
                    break
                if change.rt.key != rt.key:
                    continue
                m = meta(change.new)
                key = (str(m.get("namespace") or ""), str(m.get("name", "")))
                before = change.old  # None for a create: the object did not exist yet
                if before is None:
                    bucket.pop(key, None)
                else:
                    bucket[key] = before
        out: Objs = []
        for (ns, _), obj in bucket.items():
            if namespace is not None and ns != namespace:
                continue
            if label_reqs and not labels_match(label_reqs, meta(obj).get("labels")):
                continue
            if field_match is not None and not field_match(obj):
                continue
            out.append(obj)
        return out

    def all_objects(self) -> ObjectsByType:
        with self.lock:
            out: ObjectsByType = []
            for key, bucket in self._data.items():
                rt = self._rt_for_key(key)
                if rt is None:
                    continue
                out.extend((rt, o) for o in bucket.values())
            return out

    def counts(self) -> dict[str, int]:
        with self.lock:
            counts: dict[str, int] = {}
            for key, bucket in self._data.items():
                rt = self._rt_for_key(key)
                if rt is not None and bucket:
                    counts[rt.kind] = counts.get(rt.kind, 0) + len(bucket)
            return counts

    def _rt_for_key(self, key: str) -> ResourceType | None:
        group, _, plural = key.rpartition("/")
        return self.registry.get(group, plural)

    def encoded(self, obj: Obj) -> bytes:
        """The JSON of a stored object, encoded at most once per stored version."""
        entry = self._encoded.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        data = dumps(obj)
        # Versions encoded for a lagging watch or a deleted object are never evicted by
        # a write; bound the cache instead of tracking them.
        if len(self._encoded) > 2 * self.write_count + 10_000:
            self._encoded.clear()
        self._encoded[id(obj)] = (obj, data)
        return data

    # -- writes -----------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _commit(self, change_type: str, rt: ResourceType, old: Obj | None, new: Obj) -> Change:
        if old is not None:
            self._encoded.pop(id(old), None)
        change = Change(change_type, rt, old, new, int(meta(new)["resourceVersion"]))
        self._history.append(change)
        if len(self._history) == self._history.maxlen:
            self._compacted_rv = self._history[0].rv - 1
        self.write_count += 1
        for w in list(self._watchers):
            w.offer(change)
        for listener in self._listeners:
            listener(change)
        return change

    def _check_namespace(self, rt: ResourceType, namespace: str) -> None:
        if not rt.namespaced:
            return
        ns_rt = self.registry.get("", "namespaces")
        assert ns_rt is not None
        ns = self._data.get(ns_rt.key, {}).get(("", namespace))
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if meta(ns).get("deletionTimestamp"):
            raise errors.forbidden(
                f'{rt.plural} "{meta(ns).get("name")}" is forbidden: unable to create new '
                f"content in namespace {namespace} because it is being terminated"
            )

    def create(self, rt: ResourceType, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Store a new object the caller owns (not shared with anyone afterwards)."""
        alias = self._stored_as(rt)
        if alias is not None:
            with _as_served(alias[0], rt):
                stored = self.create(alias[0], alias[1].to_storage(obj), dry_run=dry_run)
            return self._serve(alias[1], stored)
        with self.lock:
            m = obj.setdefault("metadata", {})
            name = m.get("name")
            if not name:
                raise errors.invalid(
                    rt.kind,
                    "",
                    rt.group,
                    [("metadata.name", "Required value: name or generateName is required")],
                )
            namespace = m.get("namespace", "") if rt.namespaced else ""
            if rt.namespaced and not namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if not rt.namespaced:
                m.pop("namespace", None)
            bucket = self._data.setdefault(rt.key, {})
            if (namespace, name) in bucket:
                raise errors.already_exists(rt.plural, name, rt.group)
            self._check_namespace(rt, namespace)
            # Admission may have assigned the uid already: a Job's generated selector names it.
            m["uid"] = m.get("uid") or str(uuid.uuid4())
            if rt.key == "namespaces" and name == "kube-system":
                m["uid"] = self.cluster_uid
            m["creationTimestamp"] = now_rfc3339(self.clock)
            m.pop("deletionTimestamp", None)
            m.pop("selfLink", None)
            # Built-in types serialize their (non-pointer) status struct even when empty;
            # clients such as the Python one expect `status: {}`, never a missing key.
            if rt.builtin and "status" in rt.subresources and "status" not in obj:
                obj["status"] = {}
            _fill_zero_status(rt, obj)
            if rt.kind not in _NO_GENERATION:
                m["generation"] = 1
            else:
                m.pop("generation", None)
            if dry_run:
                m["resourceVersion"] = str(self._rv)
                return obj
            m["resourceVersion"] = str(self._next_rv())
            bucket[(namespace, name)] = obj
            self._commit("ADDED", rt, None, obj)
            return obj

    def update(
        self,
        rt: ResourceType,
        obj: Obj,
        *,
        expected_rv: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Replace an object (caller-owned dict); status/spec kept per subresource rules.

        Returns the stored object. An update that changes nothing is not written and
        does not move resourceVersion, as on a real API server.
        """
        alias = self._stored_as(rt)
        if alias is not None:
            with _as_served(alias[0], rt):
                stored = self.update(
                    alias[0],
                    alias[1].to_storage(obj),
                    expected_rv=expected_rv,
                    subresource=subresource,
                    dry_run=dry_run,
                )
            return self._serve(alias[1], stored)
        with self.lock:
            m = obj.setdefault("metadata", {})
            name = m.get("name", "")
            namespace = m.get("namespace", "") if rt.namespaced else ""
            old = self._data.get(rt.key, {}).get((namespace, name))
            if old is None:
                raise errors.not_found(rt.plural, name, rt.group)
            om = meta(old)
            if expected_rv and expected_rv != om.get("resourceVersion"):
                raise errors.conflict(
                    rt.plural,
                    name,
                    rt.group,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            if m.get("uid") and m["uid"] != om.get("uid"):
                raise errors.conflict(
                    rt.plural,
                    name,
                    rt.group,
                    "Precondition failed: UID in precondition does not match",
                )
            new: Obj
            if subresource == "status":
                new = {k: v for k, v in old.items() if k != "status"}
                if "status" in obj:
                    new["status"] = obj["status"]
                _fill_zero_status(rt, new)
                new["metadata"] = dict(om)
                # The Deployment controller records rollout revisions through /status,
                # whose Deployment strategy (unlike most) keeps annotation changes.
                if rt.key == "apps/deployments" and "annotations" in m:
                    new["metadata"]["annotations"] = m["annotations"]
                # Status writers may still maintain their own managed fields.
                if "managedFields" in m:
                    new["metadata"]["managedFields"] = m["managedFields"]
            else:
                new = obj
                if "status" in rt.subresources:
                    if "status" in old:
                        new["status"] = old["status"]
                    else:
                        new.pop("status", None)
                if not rt.namespaced:
                    m.pop("namespace", None)
            nm = new["metadata"]
            for key in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if key in om:
                    nm[key] = om[key]
                else:
                    nm.pop(key, None)
            if "generation" in om:
                nm["generation"] = om["generation"]
                if subresource is None and _spec_part(rt, new) != _spec_part(rt, old):
                    nm["generation"] = om["generation"] + 1
            nm["resourceVersion"] = om.get("resourceVersion")
            if new == old:
                return old
            if dry_run:
                return new
            # Removing the last finalizer of an object being deleted completes the delete.
            if (
                om.get("deletionTimestamp")
                and not nm.get("finalizers")
                and not _ns_blocked(rt, new)
            ):
                nm["resourceVersion"] = str(self._next_rv())
                del self._data[rt.key][(namespace, name)]
                self._commit("MODIFIED", rt, old, new)
                gone = dict(new)
                gone["metadata"] = dict(nm, resourceVersion=str(self._next_rv()))
                self._commit("DELETED", rt, new, gone)
                return gone
            nm["resourceVersion"] = str(self._next_rv())
            self._data[rt.key][(namespace, name)] = new
            self._commit("MODIFIED", rt, old, new)
            return new

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        precondition_uid: str | None = None,
        precondition_rv: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete by the API's rules; returns (object, removed-now).

        With finalizers (or a Foreground/Orphan propagation, which add one), the
        object only gets a deletionTimestamp and stays until its finalizers are gone.
        """
        alias = self._stored_as(rt)
        if alias is not None:
            with _as_served(alias[0], rt):
                stored, removed = self.delete(
                    alias[0],
                    namespace,
                    name,
                    propagation=propagation,
                    precondition_uid=precondition_uid,
                    precondition_rv=precondition_rv,
                    dry_run=dry_run,
                )
            return self._serve(alias[1], stored), removed
        with self.lock:
            ns = namespace or "" if rt.namespaced else ""
            old = self._data.get(rt.key, {}).get((ns, name))
            if old is None:
                raise errors.not_found(rt.plural, name, rt.group)
            om = meta(old)
            if precondition_uid and precondition_uid != om.get("uid"):
                raise errors.conflict(
                    rt.plural,
                    name,
                    rt.group,
                    f"Precondition failed: UID in precondition: {precondition_uid}, UID in object meta: {om.get('uid')}",
                )
            if precondition_rv and precondition_rv != om.get("resourceVersion"):
                raise errors.conflict(
                    rt.plural,
                    name,
                    rt.group,
                    f"Precondition failed: ResourceVersion in precondition: {precondition_rv}, "
                    f"ResourceVersion in object meta: {om.get('resourceVersion')}",
                )
            finalizers = list(om.get("finalizers") or [])
            if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            elif propagation == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if dry_run:
                return old, False
            if finalizers or _ns_blocked(rt, old):
                if om.get("deletionTimestamp") and finalizers == list(om.get("finalizers") or []):
                    return old, False
                new = dict(old)
                nm = dict(om)
                nm["finalizers"] = finalizers
                if not finalizers:
                    nm.pop("finalizers")
                nm.setdefault("deletionTimestamp", now_rfc3339(self.clock))
                nm.setdefault("deletionGracePeriodSeconds", 0)
                nm["resourceVersion"] = str(self._next_rv())
                new["metadata"] = nm
                if rt.key == "namespaces":
                    new["status"] = dict(new.get("status") or {}, phase="Terminating")
                self._data[rt.key][(ns, name)] = new
                self._commit("MODIFIED", rt, old, new)
                return new, False
            return self.remove(rt, ns, name), True

    def remove(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        """Remove an object now (no finalizer check): the last step of every delete."""
        alias = self._stored_as(rt)
        if alias is not None:
            with _as_served(alias[0], rt):
                return self._serve(alias[1], self.remove(alias[0], namespace, name))
        with self.lock:
            ns = namespace or "" if rt.namespaced else ""
            old = self._data.get(rt.key, {}).pop((ns, name), None)
            if old is None:
                raise errors.not_found(rt.plural, name, rt.group)
            gone = dict(old)
            gone["metadata"] = dict(meta(old), resourceVersion=str(self._next_rv()))
            self._commit("DELETED", rt, old, gone)
            self._logs.pop((ns, name), None) if rt.key == "pods" else None
            return gone

    def drop_type(self, rt: ResourceType) -> None:
        """Remove every object of a type (its CRD was deleted)."""
        if self._stored_as(rt) is not None:
            return  # the objects belong to the storage collection
        with self.lock:
            for ns, name in list(self._data.get(rt.key, {})):
                self.remove(rt, ns, name)
            self._data.pop(rt.key, None)

    # -- watches and listeners --------------------------------------------------

    def add_listener(self, fn: Callable[[Change], None]) -> None:
        """Call `fn` for every committed change, in order, under the store lock.

        Listeners must be quick (enqueue work); they run inside the writer's call.
        """
        with self.lock:
            self._listeners.append(fn)

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        resource_version: str | None,
        label_reqs: Requirements,
        field_match: FieldMatch | None,
        *,
        send_initial: bool = False,
    ) -> tuple[Watcher, int]:
        """Register a watch and queue its replay; returns (watcher, rv at registration).

        `resource_version` unset or "0" (or `send_initial`) replays the current state
        as ADDED events; a number replays the history after it; a number older than
        the history raises 410 Expired.
        """
        w = Watcher(rt.key, namespace, label_reqs, field_match)
        alias = self._stored_as(rt)
        if alias is not None:
            # Watches the storage collection's changes, each converted to the served shape.
            how = alias[1]
            w.rt_key = alias[0].key
            w.serve = lambda obj: self._serve(how, obj)
        with self.lock:
            rv_now = self._rv
            if send_initial or not resource_version or resource_version == "0":
                items, _ = self.list(rt, namespace, label_reqs, field_match)
                for obj in items:
                    w.events.put(("ADDED", obj))
                w.initial = len(items)
            else:
                try:
                    since = int(resource_version)
                except ValueError as e:
                    raise errors.bad_request(
                        f"invalid resource version {resource_version!r}"
                    ) from e
                if since < self._compacted_rv:
                    raise errors.expired(
                        f"too old resource version: {since} ({self._compacted_rv + 1})"
                    )
                for change in self._history:
                    if change.rv > since:
                        w.offer(change)
            self._watchers.add(w)
            return w, rv_now

    def stop_watch(self, w: Watcher) -> None:
        with self.lock:
            self._watchers.discard(w)
        w.close()

    def close_all_watches(self) -> None:
        with self.lock:
            watchers = list(self._watchers)
            self._watchers.clear()
        for w in watchers:
            w.close()

    # -- synthetic container logs -----------------------------------------------

    def append_log(self, namespace: str, pod: str, line: str) -> None:
        with self.lock:
            self._logs.setdefault((namespace, pod), []).append(line)
            self.logs_changed.notify_all()

    def logs(self, namespace: str, pod: str) -> Lines:
        with self.lock:
            return [*self._logs.get((namespace, pod), [])]


@contextmanager
def _as_served(storage: ResourceType, served: ResourceType) -> Iterator[None]:
    """Errors of a write to the storage collection name the collection the client used."""
    try:
        yield
    except errors.ApiError as e:
        for was, now in (
            (_qualified(storage.plural, storage.group), _qualified(served.plural, served.group)),
            (f"{storage.kind}.{storage.group or 'core'}", f"{served.kind}.{served.group}"),
        ):
            e.message = e.message.replace(f'{was} "', f'{now} "')
        details = e.details
        kinds = (storage.plural, storage.kind)
        if details is not None and served.group and details.get("kind") in kinds:
            details["group"] = served.group
        raise


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def _ns_blocked(rt: ResourceType, obj: Obj) -> bool:
    """A namespace stays until its spec finalizers are cleared by the namespace controller."""
    return rt.key == "namespaces" and bool((obj.get("spec") or {}).get("finalizers"))


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
