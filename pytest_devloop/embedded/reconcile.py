"""Plumbing shared by the embedded cluster's simulated controllers.

Owns the simulation settings (`SimulationConfig`), the reconcile key, the object index
the controllers consult instead of rescanning the store (uid -> object, owner uid ->
dependents, namespace -> names per type), the `Context` a controller gets (store,
clocks, queueing, event recorder, admission) and the small object helpers every
controller needs (owner references, conditions, pod readiness, template hashes).

Controllers are level-triggered: a change only says *which* key to look at; the
reconcile reads the current objects and writes the difference. That keeps them correct
when changes are coalesced, replayed or arrive in an unexpected order.
"""

from __future__ import annotations

import calendar
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from pytest_devloop.embedded import errors
from pytest_devloop.embedded.defaults import POD_IP_RANGE, AddressPool
from pytest_devloop.embedded.events import EventRecorder
from pytest_devloop.embedded.store import Change, Store, clone, meta, now_rfc3339
from pytest_devloop.k8s.resources import ResourceType

Obj = dict[str, Any]
Ref = tuple[str, str, str]  # (resource key, namespace, name)

# Annotations that change how the simulated kubelet treats one pod.
ANN_READY_DELAY = "devloop.dev/ready-delay"
ANN_NEVER_READY = "devloop.dev/never-ready"
ANN_CRASH_LOOP = "devloop.dev/crash-loop"
ANN_IMAGE_PULL_ERROR = "devloop.dev/image-pull-error"
ANN_FAIL = "devloop.dev/fail"
ANN_DURATION = "devloop.dev/duration"
FAIL_PULL_IMAGE_MARKER = "devloop-fail-pull"


@dataclass
class SimulationConfig:
    """How the embedded cluster's simulated controllers and kubelets behave."""

    pod_ready_delay: float = 0.05
    job_duration: float = 0.1
    nodes: int = 1
    api_server_host: str = "127.0.0.1"
    api_server_port: int = 6443
    emit_events: bool = True
    kubelet_version: str = "v1.32.4"
    # Base interval of simulated back-offs (crash loops, image pulls); doubles each time.
    restart_backoff: float = 1.0
    events_per_namespace: int = 300
    # A realistic worker: requests above this leave pods Pending (FailedScheduling).
    node_cpu: str = "4"
    node_memory: str = "16Gi"
    node_pods: str = "110"
    seed: int | None = None
    # Ready pods answer HTTP on podIP:containerPort (`/metrics`, probes): see podnet.py.
    pod_network: bool = True
    # A container's readinessProbe.initialDelaySeconds holds its pod's Ready condition
    # back (Running, not Ready) for that long after the start, as a kubelet's first
    # probe does. Off by default: charts ask for seconds that a fast loop does not want.
    readiness_probe_delays: bool = False


class Key(NamedTuple):
    """One unit of reconcile work: which handler, and for which object."""

    handler: str
    namespace: str
    name: str
    resource: str = ""


Handler = Callable[[Key], None]


class ObjectIndex:
    """Lookups the controllers need, kept current from the store's change feed."""

    def __init__(self) -> None:
        self.by_uid: dict[str, Ref] = {}
        self._owners: dict[str, tuple[str, ...]] = {}
        self._dependents: dict[str, set[str]] = {}
        self._names: dict[tuple[str, str], set[str]] = {}

    def apply(self, change: Change) -> None:
        if change.type == "DELETED":
            m = meta(change.new)
            uid = str(m.get("uid", ""))
            self.by_uid.pop(uid, None)
            names = self._names.get((change.rt.key, m.get("namespace", "")))
            if names is not None:
                names.discard(m.get("name", ""))
            self._set_owners(uid, ())
            # The dependents of a deleted owner stay listed until each of them is
            # deleted or loses the reference: the garbage collector walks them.
            return
        self._add(change.rt, change.new)

    def _add(self, rt: ResourceType, obj: Obj) -> None:
        m = meta(obj)
        uid = str(m.get("uid", ""))
        ns = str(m.get("namespace", ""))
        name = str(m.get("name", ""))
        self.by_uid[uid] = (rt.key, ns, name)
        self._names.setdefault((rt.key, ns), set()).add(name)
        owners = tuple(str(r.get("uid")) for r in m.get("ownerReferences") or [] if r.get("uid"))
        self._set_owners(uid, owners)

    def _set_owners(self, uid: str, owners: tuple[str, ...]) -> None:
        before = self._owners.get(uid, ())
        if before == owners:
            return
        for owner in set(before) - set(owners):
            deps = self._dependents.get(owner)
            if deps is not None:
                deps.discard(uid)
                if not deps:
                    del self._dependents[owner]
        for owner in owners:
            self._dependents.setdefault(owner, set()).add(uid)
        if owners:
            self._owners[uid] = owners
        else:
            self._owners.pop(uid, None)

    def dependents(self, owner_uid: str) -> list[Ref]:
        out = []
        for uid in self._dependents.get(owner_uid, ()):
            ref = self.by_uid.get(uid)
            if ref is not None:
                out.append(ref)
        return out

    def names(self, resource: str, namespace: str) -> list[str]:
        return list(self._names.get((resource, namespace), ()))


class Context:
    """What every simulated controller shares: store, settings, clocks, queue, index."""

    def __init__(
        self,
        store: Store,
        config: SimulationConfig,
        clock: Callable[[], float],
        *,
        enqueue: Callable[[Key], None],
        enqueue_after: Callable[[float, Key], None],
        admit: Callable[[ResourceType, Obj, Obj | None], None],
    ) -> None:
        self.store = store
        self.registry = store.registry
        self.config = config
        self.clock = clock
        self.enqueue = enqueue
        self.enqueue_after = enqueue_after
        self.admit = admit
        self.last_create_error: errors.ApiError | None = None
        self.index = ObjectIndex()
        self.rng = random.Random(config.seed)
        self.pod_ips = AddressPool(POD_IP_RANGE)
        self.events = EventRecorder(
            store,
            enabled=config.emit_events,
            per_namespace=config.events_per_namespace,
            rng=self.rng,
        )
        self.pods = self.rt("", "pods")
        self.nodes = self.rt("", "nodes")
        self.namespaces = self.rt("", "namespaces")
        self.services = self.rt("", "services")
        self.endpoints = self.rt("", "endpoints")
        self.endpointslices = self.rt("discovery.k8s.io", "endpointslices")
        self.serviceaccounts = self.rt("", "serviceaccounts")
        self.pvcs = self.rt("", "persistentvolumeclaims")
        self.pvs = self.rt("", "persistentvolumes")
        self.deployments = self.rt("apps", "deployments")
        self.replicasets = self.rt("apps", "replicasets")
        self.statefulsets = self.rt("apps", "statefulsets")
        self.daemonsets = self.rt("apps", "daemonsets")
        self.revisions = self.rt("apps", "controllerrevisions")
        self.jobs = self.rt("batch", "jobs")
        self.cronjobs = self.rt("batch", "cronjobs")

    def rt(self, group: str, plural: str) -> ResourceType:
        found = self.registry.get(group, plural)
        if found is None:
            raise LookupError(f"resource {group}/{plural} is not registered")
        return found

    def rt_for_key(self, key: str) -> ResourceType | None:
        group, _, plural = key.rpartition("/")
        return self.registry.get(group, plural)

    # -- time -------------------------------------------------------------------

    def wall(self) -> float:
        return self.store.clock()

    def now(self) -> str:
        return now_rfc3339(self.store.clock)

    # -- reads ------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        return self.store.get(rt, namespace, name)

    def controlled(self, owner: Obj, rt: ResourceType) -> list[Obj]:
        """Objects of type `rt` whose controller reference names `owner`."""
        uid = meta(owner).get("uid")
        out = []
        for key, ns, name in self.index.dependents(str(uid)):
            if key != rt.key:
                continue
            obj = self.store.get(rt, ns, name)
            if obj is not None and (controller_ref(obj) or {}).get("uid") == uid:
                out.append(obj)
        return out

    def pods_in(self, namespace: str) -> Iterator[Obj]:
        for name in self.index.names(self.pods.key, namespace):
            pod = self.store.get(self.pods, namespace, name)
            if pod is not None:
                yield pod

    def ready_nodes(self) -> list[Obj]:
        nodes, _ = self.store.list(self.nodes)
        return sorted(
            (
                n
                for n in nodes
                if node_is_ready(n) and not (n.get("spec") or {}).get("unschedulable")
            ),
            key=lambda n: str(meta(n).get("name")),
        )

    # -- writes (errors from racing deletes are expected and swallowed) ---------

    def create(self, rt: ResourceType, obj: Obj) -> Obj | None:
        obj.setdefault("apiVersion", rt.api_version())
        obj.setdefault("kind", rt.kind)
        try:
            self.admit(rt, obj, None)
            return self.store.create(rt, obj)
        except errors.ApiError as e:
            # Kept for the controller's `FailedCreate` event (a refused pod, say).
            self.last_create_error = e
            return None

    def update(self, rt: ResourceType, obj: Obj) -> Obj | None:
        try:
            return self.store.update(rt, obj)
        except errors.ApiError:
            return None

    def update_status(self, rt: ResourceType, obj: Obj, status: Obj) -> Obj | None:
        """Write `status` unless it equals the stored one."""
        if obj.get("status") == status:
            return obj
        new = {k: v for k, v in obj.items() if k != "status"}
        new["metadata"] = dict(meta(obj))
        new["status"] = status
        try:
            return self.store.update(rt, new, subresource="status")
        except errors.ApiError:
            return None

    def delete(
        self, rt: ResourceType, namespace: str, name: str, propagation: str | None = None
    ) -> None:
        try:
            self.store.delete(rt, namespace, name, propagation=propagation)
        except errors.ApiError:
            pass

    def generate_name(self, rt: ResourceType, namespace: str, prefix: str) -> str:
        while True:
            name = prefix + random_suffix(self.rng)
            if self.store.get(rt, namespace, name) is None:
                return name

    def record(
        self,
        obj: Obj,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        component: str,
        host: str | None = None,
    ) -> None:
        self.events.record(
            obj, reason, message, warning=warning, component=component, host=host, now=self.now()
        )


class Controller:
    """A simulated controller: maps changes to keys and reconciles keys."""

    #: resource keys whose changes `observe` wants; "*" for every change
    watches: tuple[str, ...] = ()

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def observe(self, change: Change) -> None:
        """Enqueue the keys a committed change affects (called in the loop thread)."""

    def handlers(self) -> dict[str, Handler]:
        return {}


# -- object helpers -----------------------------------------------------------------


def labels_of(obj: Obj | None) -> dict[str, str]:
    if obj is None:
        return {}
    labels = meta(obj).get("labels")
    return labels if isinstance(labels, dict) else {}


def annotations_of(obj: Obj | None) -> dict[str, str]:
    if obj is None:
        return {}
    ann = meta(obj).get("annotations")
    return ann if isinstance(ann, dict) else {}


def controller_keys(change: Change, kind: str, handler: str) -> list[Key]:
    """Keys of the `kind` controllers named by a change's old and new controller refs."""
    keys = []
    for obj in (change.old, change.new):
        ref = controller_ref(obj) if obj is not None else None
        if obj is not None and ref is not None and ref.get("kind") == kind:
            key = Key(handler, str(meta(obj).get("namespace", "")), str(ref.get("name")))
            if key not in keys:
                keys.append(key)
    return keys


def controller_ref(obj: Obj) -> Obj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def owner_reference(rt: ResourceType, owner: Obj, *, controller: bool = True) -> Obj:
    m = meta(owner)
    ref: Obj = {
        "apiVersion": rt.api_version(),
        "kind": rt.kind,
        "name": m.get("name"),
        "uid": m.get("uid"),
    }
    if controller:
        ref["controller"] = True
    ref["blockOwnerDeletion"] = True
    return ref


def is_deleting(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def get_int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return default


def int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    """Resolve an IntOrString like `maxSurge` against `total`."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            return 0
        scaled = pct * total
        return -(-scaled // 100) if round_up else scaled // 100
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    return get_int(value, 0)


def condition(obj: Obj, ctype: str) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None


def condition_true(obj: Obj, ctype: str) -> bool:
    cond = condition(obj, ctype)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: list[Obj],
    ctype: str,
    status: str,
    reason: str = "",
    message: str = "",
    *,
    now: str,
    update_time: bool = False,
    probe_time: bool = False,
    touch: bool = False,
) -> list[Obj]:
    """Return `conditions` with `ctype` set; transition times move only on a change.

    `update_time` adds `lastUpdateTime` (Deployments), moved on every change of reason or
    message, or when `touch` says progress was made; `probe_time` adds the
    `lastProbeTime: null` Pods carry.
    """
    out = [c for c in conditions if c.get("type") != ctype]
    prev = next((c for c in conditions if c.get("type") == ctype), None)
    new: Obj = {"type": ctype, "status": status}
    if probe_time:
        new["lastProbeTime"] = None
    same_status = prev is not None and prev.get("status") == status
    if update_time:
        unchanged = (
            same_status
            and prev is not None
            and prev.get("reason") == reason
            and prev.get("message") == message
            and not touch
        )
        new["lastUpdateTime"] = prev.get("lastUpdateTime", now) if unchanged and prev else now
    new["lastTransitionTime"] = prev.get("lastTransitionTime", now) if same_status and prev else now
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    if prev is not None:
        out.insert(conditions.index(prev), new)
    else:
        out.append(new)
    return out


def node_is_ready(node: Obj) -> bool:
    return condition_true(node, "Ready")


def node_address(node: Obj) -> str:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP":
            return str(addr.get("address"))
    return ""


def pod_is_ready(pod: Obj) -> bool:
    return condition_true(pod, "Ready")


def pod_is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_is_active(pod: Obj) -> bool:
    return not pod_is_terminal(pod) and not is_deleting(pod)


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return float(calendar.timegm(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def format_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def pod_available(pod: Obj, min_ready_seconds: int, wall_now: float) -> tuple[bool, float | None]:
    """Whether a pod counts as available, and in how many seconds it will if not yet."""
    if not pod_is_ready(pod) or is_deleting(pod):
        return False, None
    if min_ready_seconds <= 0:
        return True, None
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    if since is None:
        return True, None
    remaining = since + min_ready_seconds - wall_now
    return (True, None) if remaining <= 0 else (False, remaining)


_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Any, collision_count: int = 0) -> str:
    """Stable short hash of a pod template in the alphabet Kubernetes uses for names.

    FNV-1a (32 bit) over canonical JSON, printed in decimal and mapped digit by digit
    into the vowel-free alphabet, which yields names like `7c5ddbdf54` as on a real
    cluster and can never spell words.
    """
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    if collision_count:
        for byte in str(collision_count).encode():
            h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in str(h))


def random_suffix(rng: random.Random, n: int = 5) -> str:
    return "".join(rng.choice(_SAFE_ALPHABET) for _ in range(n))


def pod_from_template(
    template: Obj,
    *,
    namespace: str,
    name: str,
    owner: Obj,
    extra_labels: dict[str, str] | None = None,
    extra_annotations: dict[str, str] | None = None,
    generate_name: str | None = None,
) -> Obj:
    """A new Pod object from a pod template, controlled by `owner` (an owner reference)."""
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update(extra_labels or {})
    metadata: Obj = {"name": name, "namespace": namespace, "labels": labels}
    if generate_name:
        metadata["generateName"] = generate_name
    annotations = dict(tmeta.get("annotations") or {})
    annotations.update(extra_annotations or {})
    if annotations:
        metadata["annotations"] = annotations
    if tmeta.get("finalizers"):
        metadata["finalizers"] = list(tmeta["finalizers"])
    metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": clone(template.get("spec") or {}),
    }
