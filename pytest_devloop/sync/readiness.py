"""Is an applied object ready, and if not, why: the readiness rules and the waiter.

Owns three things:

- `assess`: pure readiness rules per kind over a live object (a plain dict as the API
  returns it), in the spirit of kstatus (Helm 4 `--wait`) and `kubectl rollout status`.
  It returns a `Readiness` with a one-line reason; `failed` marks a terminal failure that
  no amount of waiting fixes, so a waiter can give up early.
- `Waiter`: waits on the touched objects through the dynamic client until all are
  ready, one has failed, or the timeout passes. It lists the objects of one collection
  (kind and namespace; by name when there is one) and watches that collection from the
  list's resourceVersion, as `kubectl rollout status` does: it wakes on the status write
  that makes an object ready, not at the next poll, and a wait costs two requests per
  collection however long it lasts. A watch the server refuses (or a client without
  one) falls back to polling only the objects still not ready, at an interval that
  starts short (embedded pods are Ready in tens of ms) and grows to one second.
- `describe`: the diagnostic lines for one object (reason, conditions, the states of the
  pods its selector picks, its last Events), for `WaitTimeout` and test-failure reports.

Which pod waiting reasons are terminal (`failed=True`)? Only `InvalidImageName`: the image
reference cannot be parsed, so only a new spec helps. `CrashLoopBackOff` (a dependency not
up yet), `ErrImagePull`/`ImagePullBackOff`/`ErrImageNeverPull` (an image pushed or loaded a
moment later) and `CreateContainerConfigError` (a ConfigMap or Secret applied later) all heal
on their own, which is why kstatus, Helm and kubectl keep waiting on them; so does this
module, and the timeout report names the reason. A Pod in phase `Failed`, a Job with a
`Failed` or `FailureTarget` condition, a Deployment past its progress deadline, a CRD whose
names were rejected and a PVC that lost its volume are terminal.

Secrets are never read here: they have no readiness rule, so neither the waiter nor
`describe` fetches them, and `describe` prints only status, conditions and Events.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from pytest_devloop.k8s import selectors

__all__ = [
    "LiveObjects",
    "Readiness",
    "WaitFailed",
    "WaitResult",
    "WaitTimeout",
    "Waiter",
    "assess",
    "describe",
    "label_selector",
    "needs_wait",
    "object_ref",
]

Obj = dict[str, Any]

# Waiting reasons that explain why a container does not start. Only the ones in
# _TERMINAL_WAITING stop a wait early (see the module docstring for why so few).
_STUCK_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
_TERMINAL_WAITING = frozenset({"InvalidImageName"})
# Each poll interval is this much longer than the previous one, up to `max_poll`: a
# workload that becomes ready at time t is noticed by about 1.5 t at the latest.
_BACKOFF = 1.5
# Report sizes: enough to see the pattern, short enough to read in a terminal.
_MAX_PODS = 10
_MAX_EVENTS = 5
_MAX_MESSAGE = 300
# Kinds whose spec.selector picks pods (a PVC's selector picks volumes).
_SELECTS_PODS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Service"}
)


@dataclass(frozen=True)
class Readiness:
    """Whether one object is ready, why not in one line, and whether waiting is futile."""

    ready: bool
    reason: str
    failed: bool = False


# -- pure rules -----------------------------------------------------------------------------


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def _status(obj: Obj) -> Obj:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def _conditions(obj: Obj) -> list[Obj]:
    return [c for c in _status(obj).get("conditions") or [] if isinstance(c, dict)]


def _condition(obj: Obj, ctype: str) -> Obj | None:
    return next((c for c in _conditions(obj) if c.get("type") == ctype), None)


def _is_true(obj: Obj, ctype: str) -> bool:
    return (_condition(obj, ctype) or {}).get("status") == "True"


def _one_line(text: Any) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def _condition_text(c: Obj) -> str:
    """`Ready=False ContainersNotReady: containers with unready status: [app]`."""
    text = f"{c.get('type')}={c.get('status') or 'Unknown'}"
    if c.get("reason"):
        text += f" {c['reason']}"
    if c.get("message"):
        text += f": {_one_line(c['message'])}"
    return text


def _generation_pending(obj: Obj) -> Readiness | None:
    """Not ready while the controller has not seen the latest spec (its status is stale)."""
    generation = _meta(obj).get("generation")
    if generation is None:
        return None
    observed = _status(obj).get("observedGeneration")
    if observed is None:
        return Readiness(False, f"generation {generation} not observed yet")
    if _int(observed) < _int(generation):
        return Readiness(False, f"observedGeneration {observed} < generation {generation}")
    return None


def _deployment(obj: Obj) -> Readiness:
    pending = _generation_pending(obj)
    if pending:
        return pending
    progressing = _condition(obj, "Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Readiness(False, _condition_text(progressing), failed=True)
    status = _status(obj)
    want = _int(_spec(obj).get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    current = _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))
    ready = _int(status.get("readyReplicas"))
    if updated < want:
        return Readiness(False, f"{updated} of {want} replicas updated")
    if current > updated:
        return Readiness(False, f"{current - updated} old replicas pending termination")
    if current > want:
        return Readiness(False, f"{current - want} extra replicas pending termination")
    if available < updated:
        return Readiness(False, f"{available} of {updated} updated replicas available")
    if ready < want:
        return Readiness(False, f"{ready}/{want} ready")
    return Readiness(True, f"{ready}/{want} ready")


def _statefulset(obj: Obj) -> Readiness:
    pending = _generation_pending(obj)
    if pending:
        return pending
    status = _status(obj)
    spec = _spec(obj)
    want = _int(spec.get("replicas"), 1)
    ready = _int(status.get("readyReplicas"))
    current = _int(status.get("replicas"))
    if ready < want:
        return Readiness(False, f"{ready}/{want} ready")
    if current > want:
        return Readiness(False, f"{current - want} extra pods pending termination")
    strategy = spec.get("updateStrategy") or {}
    kind = strategy.get("type") or "RollingUpdate"
    if kind == "OnDelete":
        # Pods move to a new revision only when someone deletes them: waiting for equal
        # revisions would never end (kstatus treats it the same way).
        return Readiness(True, f"{ready}/{want} ready (OnDelete updates)")
    partition = (strategy.get("rollingUpdate") or {}).get("partition")
    if partition is not None:
        # The API server defaults partition to 0, so on a real cluster this branch, as in
        # kubectl, is the usual one: pods below the partition keep the old revision.
        need = want - _int(partition)
        updated = _int(status.get("updatedReplicas"))
        if updated < need:
            return Readiness(False, f"{updated} of {need} replicas updated (partition {partition})")
        return Readiness(True, f"{ready}/{want} ready")
    current_rev, update_rev = status.get("currentRevision"), status.get("updateRevision")
    if current_rev != update_rev:
        return Readiness(False, f"currentRevision {current_rev} != updateRevision {update_rev}")
    return Readiness(True, f"{ready}/{want} ready")


def _daemonset(obj: Obj) -> Readiness:
    pending = _generation_pending(obj)
    if pending:
        return pending
    status = _status(obj)
    desired = _int(status.get("desiredNumberScheduled"))
    for key, what in (
        ("updatedNumberScheduled", "updated"),
        ("numberAvailable", "available"),
        ("numberReady", "ready"),
    ):
        have = _int(status.get(key))
        if have < desired:
            return Readiness(False, f"{have} of {desired} scheduled pods {what}")
    return Readiness(True, f"{_int(status.get('numberReady'))}/{desired} ready")


def _replicaset(obj: Obj) -> Readiness:
    pending = _generation_pending(obj)
    if pending:
        return pending
    status = _status(obj)
    want = _int(_spec(obj).get("replicas"), 1)
    ready = _int(status.get("readyReplicas"))
    available = _int(status.get("availableReplicas"))
    if ready < want:
        return Readiness(False, f"{ready}/{want} ready")
    if available < want:
        return Readiness(False, f"{available} of {want} available")
    return Readiness(True, f"{ready}/{want} ready")


def _job(obj: Obj) -> Readiness:
    # FailureTarget comes before Failed while the failed Job's pods terminate: the
    # outcome is already decided, so stop there.
    for ctype in ("Failed", "FailureTarget"):
        cond = _condition(obj, ctype)
        if cond and cond.get("status") == "True":
            reason = f"Job failed: {cond.get('reason') or ctype}"
            if cond.get("message"):
                reason += f" ({_one_line(cond['message'])})"
            return Readiness(False, reason, failed=True)
    status = _status(obj)
    succeeded = _int(status.get("succeeded"))
    if _is_true(obj, "Complete"):
        return Readiness(True, f"complete, {succeeded} succeeded")
    spec = _spec(obj)
    progress = f"{_int(status.get('active'))} active, {succeeded} succeeded"
    failed = _int(status.get("failed"))
    if failed:
        progress += f", {failed} failed"
    progress += f" of {_int(spec.get('completions'), 1)}"
    if spec.get("suspend") is True:
        progress = f"suspended, {progress}"
    return Readiness(False, progress)


def _container_statuses(obj: Obj) -> list[Obj]:
    status = _status(obj)
    out = []
    for key in ("initContainerStatuses", "containerStatuses"):
        out += [cs for cs in status.get(key) or [] if isinstance(cs, dict)]
    return out


def _waiting(cs: Obj) -> Obj:
    waiting = (cs.get("state") or {}).get("waiting")
    return waiting if isinstance(waiting, dict) else {}


def _pod(obj: Obj) -> Readiness:
    status = _status(obj)
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded":
        return Readiness(True, "Succeeded")
    if phase == "Failed":
        why = status.get("reason") or next(
            (
                ((cs.get("state") or {}).get("terminated") or {}).get("reason")
                for cs in _container_statuses(obj)
                if (cs.get("state") or {}).get("terminated")
            ),
            None,
        )
        return Readiness(False, f"Pod failed: {why}" if why else "Pod failed", failed=True)
    for cs in _container_statuses(obj):
        waiting = _waiting(cs)
        reason = waiting.get("reason")
        if reason in _STUCK_WAITING:
            text = f"{reason} (container {cs.get('name')}"
            restarts = _int(cs.get("restartCount"))
            text += f", {restarts} restart{'s' if restarts > 1 else ''})" if restarts else ")"
            if waiting.get("message"):
                text += f": {_one_line(waiting['message'])}"
            return Readiness(False, text, failed=reason in _TERMINAL_WAITING)
    ready = _condition(obj, "Ready")
    if phase == "Running":
        if ready and ready.get("status") == "True":
            return Readiness(True, "Running, Ready")
        return Readiness(False, f"Running, {_condition_text(ready or {'type': 'Ready'})}")
    scheduled = _condition(obj, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        return Readiness(False, f"{phase}, {_condition_text(scheduled)}")
    for cs in _container_statuses(obj):
        reason = _waiting(cs).get("reason")
        if reason:
            return Readiness(False, f"{phase}: container {cs.get('name')} {reason}")
    return Readiness(False, str(phase))


def _pvc(obj: Obj) -> Readiness:
    phase = _status(obj).get("phase") or "Pending"
    if phase == "Bound":
        return Readiness(True, "Bound")
    # Lost: the bound volume is gone; the claim never recovers.
    return Readiness(False, f"phase {phase}", failed=phase == "Lost")


def _service(obj: Obj) -> Readiness:
    spec = _spec(obj)
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName":
        return Readiness(True, "ExternalName")
    if not spec.get("clusterIP"):
        return Readiness(False, "clusterIP not allocated")
    if kind != "LoadBalancer":
        return Readiness(True, f"{kind} {spec['clusterIP']}")
    ingress = (_status(obj).get("loadBalancer") or {}).get("ingress") or []
    if not ingress:
        return Readiness(False, "LoadBalancer without status.loadBalancer.ingress")
    addresses = ", ".join(str(i.get("ip") or i.get("hostname")) for i in ingress)
    return Readiness(True, f"LoadBalancer ingress {addresses}")


def _crd(obj: Obj) -> Readiness:
    names = _condition(obj, "NamesAccepted")
    if names and names.get("status") == "False":
        # A name clash with another CRD: it never becomes Established.
        return Readiness(False, _condition_text(names), failed=True)
    established = _condition(obj, "Established")
    if established and established.get("status") == "True":
        return Readiness(True, "Established")
    return Readiness(False, _condition_text(established or {"type": "Established"}))


# kind -> (API group, rule). The group keeps a custom resource that reuses a built-in
# kind name (a `Job` of some operator) out of the built-in rule.
_RULES: dict[str, tuple[str, Callable[[Obj], Readiness]]] = {
    "Deployment": ("apps", _deployment),
    "StatefulSet": ("apps", _statefulset),
    "DaemonSet": ("apps", _daemonset),
    "ReplicaSet": ("apps", _replicaset),
    "Job": ("batch", _job),
    "Pod": ("", _pod),
    "PersistentVolumeClaim": ("", _pvc),
    "Service": ("", _service),
    "CustomResourceDefinition": ("apiextensions.k8s.io", _crd),
}


def _group(obj: Obj) -> str:
    api_version = str(obj.get("apiVersion") or "")
    return api_version.rpartition("/")[0]


def _rule(obj: Obj) -> Callable[[Obj], Readiness] | None:
    entry = _RULES.get(str(obj.get("kind")))
    if entry is None:
        return None
    group, rule = entry
    # An object without apiVersion (hand-written in a test) is taken at its kind.
    if obj.get("apiVersion") and _group(obj) != group:
        return None
    return rule


def _kind_name(obj: Obj) -> str:
    # Only a kind that shares a built-in name needs its group to tell it apart.
    kind, group = str(obj.get("kind")), _group(obj)
    return f"{kind}.{group}" if kind in _RULES and group else kind


def assess(obj: Obj) -> Readiness:
    """Readiness of one live object (as the API returns it), by kind; pure."""
    rule = _rule(obj)
    if rule is None:
        return Readiness(True, f"no readiness rule for {_kind_name(obj)}")
    if _meta(obj).get("deletionTimestamp"):
        return Readiness(False, "terminating (deletionTimestamp set)")
    return rule(obj)


def needs_wait(obj: Obj) -> bool:
    """Whether `assess` can say anything about `obj` that is not known at apply time."""
    if _rule(obj) is None:
        return False
    if obj.get("kind") == "Service":
        # The API server allocates the cluster IP before it answers the apply; only a
        # load balancer's address comes later.
        return _spec(obj).get("type") == "LoadBalancer"
    return True


def object_ref(obj: Obj) -> str:
    """`Kind/namespace/name`, or `Kind/name` for an object without a namespace."""
    m = _meta(obj)
    ns = m.get("namespace")
    kind, name = obj.get("kind"), m.get("name")
    return f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"


def short_ref(ref: str) -> str:
    """`Deployment/web` from `Deployment/ns/web` (the live line has little room)."""
    parts = ref.split("/")
    return f"{parts[0]}/{parts[-1]}"


def label_selector(selector: Any) -> str | None:
    """A `metav1.LabelSelector` (or a Service's plain map) as a `labelSelector` query.

    None when it selects nothing usable: absent, empty (which would select every pod in
    the namespace) or with an operator that has no text form.
    """
    if not isinstance(selector, dict) or not selector:
        return None
    try:
        reqs = selectors.requirements_of(selector)
    except selectors.SelectorError:
        return None
    if not reqs:
        return None
    # matchLabels sorted, then the expressions in the order written (a stable query text).
    plain = len(selector.get("matchLabels") or {}) if "matchExpressions" in selector else len(reqs)
    return ",".join([*sorted(r.text() for r in reqs[:plain]), *(r.text() for r in reqs[plain:])])


# -- reads through the dynamic client -------------------------------------------------------


_DYNAMIC_ATTRIBUTE = "_devloop_dynamic_client"


def _dynamic_client(api_client: Any) -> Any:
    """The DynamicClient of `api_client`, built once per ApiClient.

    Building one costs a discovery round trip (/version, /api, /apis, and a cache file in
    the temp directory), and the sync engine makes a Waiter per cycle. The client is kept
    on the ApiClient itself: a WeakKeyDictionary would never let go, because the
    DynamicClient refers back to its ApiClient.
    """
    from kubernetes import dynamic

    if isinstance(api_client, dynamic.DynamicClient):
        return api_client
    client = getattr(api_client, _DYNAMIC_ATTRIBUTE, None)
    if client is None:
        client = dynamic.DynamicClient(api_client)
        setattr(api_client, _DYNAMIC_ATTRIBUTE, client)
    return client


class LiveObjects:
    """The few reads readiness needs, through the dynamic client, as plain dicts.

    Resource lookups are cached: discovery happens once per kind, not once per poll.
    """

    def __init__(self, api_client: Any, default_namespace: str = "default") -> None:
        self.dynamic = _dynamic_client(api_client)
        self.default_namespace = default_namespace
        self.requests = 0
        self._resources: dict[tuple[str, str], Any] = {}

    def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        if key not in self._resources:
            self._resources[key] = self.dynamic.resources.get(api_version=api_version, kind=kind)
        return self._resources[key]

    def get(self, obj: Obj) -> Obj | None:
        """The live object, or None when it does not exist (404)."""
        from kubernetes.client.exceptions import ApiException

        m = _meta(obj)
        if not m.get("name"):
            # A GET without a name would list the whole collection instead.
            raise ValueError(f"{object_ref(obj)} has no metadata.name")
        resource = self._resource(str(obj.get("apiVersion")), str(obj.get("kind")))
        namespace = (m.get("namespace") or self.default_namespace) if resource.namespaced else None
        self.requests += 1
        try:
            # serialize=False: the raw JSON is the dict the rules want, without the
            # ResourceInstance wrapping.
            response = resource.get(name=m.get("name"), namespace=namespace, serialize=False)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        live: Obj = json.loads(response.data)
        return live

    def list(
        self, api_version: str, kind: str, namespace: str, selector: str | None = None
    ) -> list[Obj]:
        resource = self._resource(api_version, kind)
        self.requests += 1
        response = resource.get(namespace=namespace, label_selector=selector, serialize=False)
        items = json.loads(response.data).get("items") or []
        return [i for i in items if isinstance(i, dict)]

    def list_named(self, group: Collection) -> tuple[dict[str, Obj], str]:
        """The live objects of `group` by name (absent ones left out), and the list's
        resourceVersion, the point a watch of the same collection starts from."""
        resource = self._resource(group.api_version, group.kind)
        self.requests += 1
        response = resource.get(
            namespace=group.namespace if resource.namespaced else None,
            field_selector=group.field_selector(),
            serialize=False,
        )
        body = json.loads(response.data)
        found: dict[str, Obj] = {}
        for item in body.get("items") or []:
            if isinstance(item, dict) and _meta(item).get("name") in group.names:
                found[str(_meta(item)["name"])] = self._typed(group, item)
        return found, str(_meta(body).get("resourceVersion") or "")

    @staticmethod
    def _typed(group: Collection, item: Obj) -> Obj:
        # The items of a list carry no kind and apiVersion; the rules need both.
        item.setdefault("apiVersion", group.api_version)
        item.setdefault("kind", group.kind)
        return item

    def watch(
        self, group: Collection, resource_version: str, timeout: float
    ) -> Generator[Obj, None, None]:
        """The watch events of `group`'s collection after `resource_version`, until
        `timeout` seconds pass without an event or the server ends the stream.

        The server's `timeoutSeconds` is whole seconds, rounded down so the stream never
        outlives the wait by more than the fraction; the read timeout ends a silent stream
        at `timeout`. A stream cut short ends the generator like a finished one: the
        caller watches again from the last version it saw. Closing the generator closes
        the connection.
        """
        from kubernetes.watch.watch import iter_resp_lines
        from urllib3.exceptions import ProtocolError, ReadTimeoutError

        resource = self._resource(group.api_version, group.kind)
        self.requests += 1
        response = None
        try:
            response = resource.get(
                namespace=group.namespace if resource.namespaced else None,
                field_selector=group.field_selector(),
                resource_version=resource_version,
                watch=True,
                allow_watch_bookmarks=True,
                timeout_seconds=max(1, math.floor(timeout)),
                serialize=False,
                _request_timeout=(10, max(timeout, 0.001)),
            )
            for line in iter_resp_lines(response):
                if not line:
                    continue
                event = json.loads(line)
                if isinstance(event, dict):
                    obj = event.get("object")
                    if isinstance(obj, dict) and event.get("type") != "ERROR":
                        self._typed(group, obj)
                    yield event
        except (ReadTimeoutError, ProtocolError):
            return
        finally:
            if response is not None:
                response.close()
                response.release_conn()


@dataclass(frozen=True)
class Collection:
    """The objects a waiter reads together: one kind, one namespace, some names."""

    api_version: str
    kind: str
    namespace: str | None
    names: frozenset[str]

    def field_selector(self) -> str | None:
        # One name: the server sends nothing else. Several: the whole collection.
        return f"metadata.name={next(iter(self.names))}" if len(self.names) == 1 else None


def _live_objects(api_client: Any) -> LiveObjects:
    return api_client if isinstance(api_client, LiveObjects) else LiveObjects(api_client)


# -- waiting --------------------------------------------------------------------------------


@dataclass
class WaitResult:
    """What one wait found: refs of ready objects, and the rest with their last readiness."""

    ready: list[str]
    not_ready: list[tuple[str, Readiness]]
    elapsed: float
    timed_out: bool
    requests: int = 0  # lists, watches and GETs made, for the cycle's latency report
    objects: dict[str, Obj] = field(default_factory=dict, repr=False)  # ref -> applied object

    @property
    def ok(self) -> bool:
        return not self.not_ready

    @property
    def failed(self) -> list[tuple[str, Readiness]]:
        return [(ref, r) for ref, r in self.not_ready if r.failed]


class WaitTimeout(Exception):
    """Objects were not ready in time; the message describes each one that was not."""

    def __init__(self, result: WaitResult, details: list[str]) -> None:
        self.result = result
        self.details = details
        super().__init__("\n".join([self._headline(result), *details]))

    @staticmethod
    def _headline(result: WaitResult) -> str:
        total = len(result.ready) + len(result.not_ready)
        refs = ", ".join(ref for ref, _ in result.not_ready)
        if result.failed:
            ref, readiness = result.failed[0]
            return (
                f"gave up after {result.elapsed:.2f} s, {ref} cannot become ready: "
                f"{readiness.reason}"
            )
        return (
            f"timed out after {result.elapsed:.2f} s waiting for "
            f"{len(result.not_ready)} of {total} objects: {refs}"
        )


class WaitFailed(WaitTimeout):
    """An object reached a terminal failure (a failed Job, a progress deadline) early."""


_NOT_FOUND = Readiness(False, "not found")


class _WatchRefused(Exception):
    """The server ended a watch with an error other than an expired version."""


def _not_served(obj: Obj) -> Readiness:
    return Readiness(False, f"{obj.get('apiVersion')} {obj.get('kind')} is not served", failed=True)


def _read_failed(e: Any) -> Readiness:
    # No wait fixes missing permissions; anything else (429, 5xx) may pass.
    return Readiness(False, f"GET failed: {e.status} {e.reason}", failed=e.status in (401, 403))


class _Progress:
    """Tells the waiter's progress line, only when it changed."""

    def __init__(
        self,
        order: list[str],
        by_ref: dict[str, Obj],
        pending: dict[str, Obj],
        tell: Callable[[str], None],
    ) -> None:
        self.order, self.pending, self._tell = order, pending, tell
        self.waited = sum(1 for ref in order if needs_wait(by_ref[ref]))
        self._said = ""

    def tell(self) -> None:
        if not self.pending:
            return
        names = [short_ref(ref) for ref in self.order if ref in self.pending]
        text = (
            f"workloads ready {self.waited - len(self.pending)}/{self.waited}, waiting for "
            + ", ".join(names[:4])
            + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        )
        if text != self._said:
            self._said = text
            self._tell(text)


class Waiter:
    """Waits on applied objects until all are ready, one has failed, or `timeout` passes.

    `api_client` is a `kubernetes.client.ApiClient` (or a `DynamicClient`). With `watch`
    (the default unless a `clock` is injected) it lists and then watches each
    collection; without it, or when the server refuses a watch, it polls. `clock` and
    `sleep` are injectable so the poll's timeout logic is testable without real sleeps.

    A plain loop rather than tenacity: tenacity measures its own delay with
    `time.monotonic()`, which would ignore the injected clock.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        timeout: float,
        poll: float = 0.05,
        max_poll: float = 1.0,
        default_namespace: str = "default",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        watch: bool | None = None,
    ) -> None:
        self._api_client = api_client
        self._live: LiveObjects | None = None
        self.timeout = timeout
        self.poll = poll
        self.max_poll = max(max_poll, poll)
        self.default_namespace = default_namespace
        self.clock = clock
        self.sleep = sleep
        # A watch waits in real time: with an injected clock, only the poll is testable.
        self.watch = clock is time.monotonic if watch is None else watch
        # Told when the picture changes: `workloads ready 3/5, waiting for Deployment/web, ...`.
        self.progress: Callable[[str], None] = lambda text: None

    @property
    def live(self) -> LiveObjects:
        # Created on first use: building the dynamic client costs a discovery round trip,
        # which a wait over ConfigMaps alone never needs.
        if self._live is None:
            self._live = LiveObjects(self._api_client, self.default_namespace)
        return self._live

    def check(self, obj: Obj) -> Readiness:
        """Read `obj` once and assess it; API errors become a not-ready reason."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            live = self.live.get(obj)
        except ResourceNotFoundError:
            return _not_served(obj)
        except ApiException as e:
            return _read_failed(e)
        if live is None:
            return Readiness(False, "not found")
        return assess(live)

    def wait(self, objects: Iterable[Obj]) -> WaitResult:
        """Wait for the applied `objects` (apiVersion, kind, metadata name/namespace).

        Kinds without a readiness rule count as ready without a request; only objects
        still not ready are read again (a watch event, or the next poll).
        """
        start = self.clock()
        deadline = start + self.timeout
        requests_before = self._live.requests if self._live is not None else 0
        order: list[str] = []
        by_ref: dict[str, Obj] = {}
        pending: dict[str, Obj] = {}
        for obj in objects:
            ref = object_ref(obj)
            if ref in by_ref:
                continue
            order.append(ref)
            by_ref[ref] = obj
            if needs_wait(obj):
                pending[ref] = obj
        progress = _Progress(order, by_ref, pending, self.progress)
        last: dict[str, Readiness] = {}
        if pending and (not self.watch or self._watch(pending, last, deadline, progress)):
            self._poll(pending, last, deadline, progress)
        failed = any(r.failed for ref, r in last.items() if ref in pending)
        requests = (self._live.requests if self._live is not None else 0) - requests_before
        return WaitResult(
            ready=[ref for ref in order if ref not in pending],
            not_ready=[(ref, last[ref]) for ref in order if ref in pending],
            elapsed=self.clock() - start,
            timed_out=bool(pending) and not failed,
            requests=requests,
            objects=by_ref,
        )

    @staticmethod
    def _settle(
        ref: str, readiness: Readiness, pending: dict[str, Obj], last: dict[str, Readiness]
    ) -> None:
        if readiness.ready:
            pending.pop(ref, None)
            last.pop(ref, None)
        else:
            last[ref] = readiness

    def _poll(
        self,
        pending: dict[str, Obj],
        last: dict[str, Readiness],
        deadline: float,
        progress: _Progress,
    ) -> None:
        interval = self.poll
        while True:
            for ref, obj in list(pending.items()):
                self._settle(ref, self.check(obj), pending, last)
            if not pending or any(r.failed for r in last.values()):
                return
            progress.tell()
            now = self.clock()
            if now >= deadline:
                return
            # Never sleep past the deadline: the last look happens at the deadline.
            self.sleep(min(interval, deadline - now))
            interval = min(interval * _BACKOFF, self.max_poll)

    def _collections(self, pending: dict[str, Obj]) -> dict[Collection, dict[str, str]]:
        """The pending objects by collection: collection -> name -> ref."""
        grouped: dict[tuple[str, str, str], dict[str, str]] = {}
        for ref, obj in pending.items():
            m = _meta(obj)
            key = (
                str(obj.get("apiVersion")),
                str(obj.get("kind")),
                str(m.get("namespace") or self.default_namespace),
            )
            grouped.setdefault(key, {})[str(m.get("name"))] = ref
        return {
            Collection(api_version, kind, namespace, frozenset(names)): names
            for (api_version, kind, namespace), names in grouped.items()
        }

    def _list(
        self,
        group: Collection,
        refs: dict[str, str],
        pending: dict[str, Obj],
        last: dict[str, Readiness],
    ) -> str:
        """List `group`, assess each of its objects; the list's resourceVersion."""
        live, version = self.live.list_named(group)
        for name, ref in refs.items():
            if ref in pending:
                found = live.get(name)
                self._settle(ref, assess(found) if found else _NOT_FOUND, pending, last)
        return version

    def _watch(
        self,
        pending: dict[str, Obj],
        last: dict[str, Readiness],
        deadline: float,
        progress: _Progress,
    ) -> bool:
        """Wait by list and watch; True when the poll must take over (a watch refused)."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        groups = self._collections(pending)
        versions: dict[Collection, str] = {}
        try:
            for group, refs in groups.items():
                try:
                    versions[group] = self._list(group, refs, pending, last)
                except ResourceNotFoundError:
                    for ref in refs.values():
                        last[ref] = _not_served(pending[ref])
            if any(r.failed for r in last.values()):
                return False
            progress.tell()
            # One collection after the other: all must be ready, so the wait ends with
            # the slowest one whatever the order, and no thread is needed.
            for group, refs in groups.items():
                if group in versions and not self._watch_one(
                    group, refs, versions[group], pending, last, deadline, progress
                ):
                    return False
        except (ApiException, OSError, ValueError, _WatchRefused):
            # A list or watch the server refuses (403, 405), or a broken stream: the
            # poll reports the objects still pending with their own errors.
            return True
        return False

    def _watch_one(
        self,
        group: Collection,
        refs: dict[str, str],
        version: str,
        pending: dict[str, Obj],
        last: dict[str, Readiness],
        deadline: float,
        progress: _Progress,
    ) -> bool:
        """Watch `group` until its objects are ready; False once one failed or time is up."""
        from kubernetes.client.exceptions import ApiException

        quiet = 0  # streams in a row that ended at once with nothing in them
        while any(ref in pending for ref in refs.values()):
            if any(r.failed for r in last.values()):
                return False
            remaining = deadline - self.clock()
            if remaining <= 0:
                return False
            names = frozenset(n for n, ref in refs.items() if ref in pending)
            began, events = self.clock(), 0
            stream = self.live.watch(
                Collection(group.api_version, group.kind, group.namespace, names),
                version,
                remaining,
            )
            try:
                for event in stream:
                    events += 1
                    kind, obj = event.get("type"), event.get("object")
                    if not isinstance(obj, dict):
                        continue
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # too old a version: list again
                            version = self._list(group, refs, pending, last)
                            break
                        raise _WatchRefused(str(obj.get("message")))
                    version = str(_meta(obj).get("resourceVersion") or version)
                    ref = refs.get(str(_meta(obj).get("name")))
                    if kind != "BOOKMARK" and ref is not None and ref in pending:
                        gone = kind == "DELETED"
                        self._settle(ref, _NOT_FOUND if gone else assess(obj), pending, last)
                        progress.tell()
                    if not any(r in pending for r in refs.values()) or self.clock() >= deadline:
                        break
                    if any(r.failed for r in last.values()):
                        return False
            except ApiException as e:
                if e.status != 410:
                    raise
                version = self._list(group, refs, pending, last)
            finally:
                stream.close()  # the connection, when the wait ends before the stream
            quiet = quiet + 1 if events == 0 and self.clock() - began < 0.5 else 0
            if quiet >= 3:
                raise _WatchRefused("watch streams end at once")
        return True

    def wait_or_raise(self, objects: Iterable[Obj]) -> WaitResult:
        """`wait`, raising `WaitFailed`/`WaitTimeout` with `describe` lines when not ok."""
        result = self.wait(objects)
        if result.ok:
            return result
        details: list[str] = []
        for ref, _ in result.not_ready:
            details += describe(self.live, result.objects[ref])
        raise (WaitFailed if result.failed else WaitTimeout)(result, details)


# -- diagnostics ----------------------------------------------------------------------------


def _pod_state(pod: Obj) -> str:
    """`Running Ready=False restarts=3 app: waiting CrashLoopBackOff`."""
    status = _status(pod)
    ready = _condition(pod, "Ready") or {}
    text = f"{status.get('phase') or 'Pending'} Ready={ready.get('status') or 'Unknown'}"
    if ready.get("status") != "True" and ready.get("reason"):
        text += f" ({ready['reason']})"
    statuses = _container_statuses(pod)
    text += f" restarts={sum(_int(cs.get('restartCount')) for cs in statuses)}"
    states = []
    for cs in statuses:
        state = cs.get("state") or {}
        if state.get("waiting"):
            states.append(f"{cs.get('name')}: waiting {state['waiting'].get('reason')}")
        elif state.get("terminated"):
            term = state["terminated"]
            states.append(
                f"{cs.get('name')}: terminated {term.get('reason')} (exit {term.get('exitCode')})"
            )
        elif state.get("running") and not cs.get("ready"):
            states.append(f"{cs.get('name')}: running, not ready")
    if states:
        text += " " + "; ".join(states)
    return text


def _event_key(event: Obj) -> tuple[str, int]:
    # Timestamps have second precision; the resourceVersion (a global counter in
    # practice) orders events within one second.
    stamp = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or _meta(event).get("creationTimestamp")
        or ""
    )
    version = str(_meta(event).get("resourceVersion") or "0")
    return str(stamp)[:19], int(version) if version.isdigit() else 0


def _event_line(event: Obj) -> str:
    involved = event.get("involvedObject") or {}
    stamp = _event_key(event)[0]
    count = _int(event.get("count"), 1)
    times = f" (x{count})" if count > 1 else ""
    return (
        f"  event {stamp.replace('T', ' ')} {event.get('type')} {event.get('reason')} "
        f"{involved.get('kind')}/{involved.get('name')}{times}: "
        f"{_one_line(event.get('message') or '')}"
    )


def describe(api_client: Any, obj: Obj) -> list[str]:
    """Diagnostic lines for one object: readiness, conditions, its pods, its last Events.

    `obj` needs apiVersion, kind and metadata name/namespace; the live object is read
    fresh. Pods are those the object's selector picks (a Pod describes itself); Events
    are those about the object, its pods and, for a Deployment, its ReplicaSets (where
    `FailedCreate` shows up). A failing read of pods or Events becomes a line, never an
    exception: a report must not hide the failure it reports. Kinds without a readiness
    rule (Secrets among them) are not read at all.
    """
    from kubernetes.client.exceptions import ApiException

    ref = object_ref(obj)
    if _rule(obj) is None:
        return [f"{ref}: {assess(obj).reason}"]
    api = _live_objects(api_client)
    try:
        live = api.get(obj)
    except ApiException as e:
        return [f"{ref}: GET failed: {e.status} {e.reason}"]
    if live is None:
        return [f"{ref}: not found"]
    readiness = assess(live)
    state = "ready" if readiness.ready else "failed" if readiness.failed else "not ready"
    lines = [f"{ref}: {state}: {readiness.reason}"]
    lines += [f"  condition {_condition_text(c)}" for c in _conditions(live)]

    m = _meta(live)
    namespace = str(m.get("namespace") or api.default_namespace)
    involved = {str(m.get("uid"))}
    pods: list[Obj] = []
    selector = label_selector(_spec(live).get("selector"))
    try:
        if live.get("kind") == "Pod":
            pods = [live]
        elif live.get("kind") in _SELECTS_PODS and selector is not None:
            pods = api.list("v1", "Pod", namespace, selector)
        if live.get("kind") == "Deployment" and selector is not None:
            for rs in api.list("apps/v1", "ReplicaSet", namespace, selector):
                owners = _meta(rs).get("ownerReferences") or []
                if any(o.get("uid") == m.get("uid") for o in owners):
                    involved.add(str(_meta(rs).get("uid")))
    except ApiException as e:
        lines.append(f"  (pods unavailable: {e.status} {e.reason})")
    # Not-ready pods first: they are the ones that explain the wait.
    pods.sort(key=lambda p: (_pod(p).ready, str(_meta(p).get("name"))))
    for pod in pods[:_MAX_PODS]:
        lines.append(f"  pod {_meta(pod).get('name')}: {_pod_state(pod)}")
    if len(pods) > _MAX_PODS:
        lines.append(f"  … and {len(pods) - _MAX_PODS} more pods")
    involved |= {str(_meta(p).get("uid")) for p in pods}

    try:
        events = [
            e
            for e in api.list("v1", "Event", namespace)
            if str((e.get("involvedObject") or {}).get("uid")) in involved
        ]
    except ApiException as e:
        lines.append(f"  (events unavailable: {e.status} {e.reason})")
        events = []
    events.sort(key=_event_key)
    lines += [_event_line(e) for e in events[-_MAX_EVENTS:]]
    return lines
