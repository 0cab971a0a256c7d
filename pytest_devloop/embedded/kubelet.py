"""The simulated scheduler and kubelets of the embedded cluster.

Owns a Pod's life from creation to removal, in stages like KWOK's: the scheduler binds
a Pending pod to a Ready node that fits its node selector, affinity and taints; the
node's kubelet then walks it through `ContainerCreating`, `Running`/Ready
(or a failure path chosen by annotation), `Succeeded`/`Failed` for pods that run to
completion, and removes pods marked for deletion. A pod's stage is a pure function of
its annotations and the time since binding (`Kubelet._stage`), so coalesced or replayed
changes never skip or repeat a transition. It writes the status fields readiness
checkers read (conditions, containerStatuses, podIP, hostIP, startTime), the Events
`kubectl describe` shows and synthetic container logs for `kubectl logs`.

No container runs. Pod IPs come from the loopback pool (127.2.0.0/16).

Annotations on a pod (or its template) choose a path:
  devloop.dev/ready-delay: "0.5"        seconds from binding to Running (default from config)
  devloop.dev/never-ready: "true"       Running, never Ready
  devloop.dev/crash-loop: "true"        CrashLoopBackOff, restartCount growing with back-off
  devloop.dev/image-pull-error: "true"  Pending with ErrImagePull, then ImagePullBackOff
                                        (also any image whose name contains devloop-fail-pull)
  devloop.dev/fail: "true"              a run-to-completion pod ends Failed
  devloop.dev/duration: "2"             seconds a run-to-completion pod runs (default job_duration)

With `SimulationConfig.readiness_probe_delays`, a pod on the ready path is Running but
not Ready until the largest `readinessProbe.initialDelaySeconds` of its containers has
passed since its start.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pytest_devloop.embedded import errors, scheduler
from pytest_devloop.embedded.defaults import qos_class
from pytest_devloop.embedded.reconcile import (
    ANN_CRASH_LOOP,
    ANN_DURATION,
    ANN_FAIL,
    ANN_IMAGE_PULL_ERROR,
    ANN_NEVER_READY,
    ANN_READY_DELAY,
    FAIL_PULL_IMAGE_MARKER,
    Context,
    Controller,
    Handler,
    Key,
    annotations_of,
    controller_ref,
    is_deleting,
    labels_of,
    node_address,
    node_is_ready,
    parse_time,
    pod_is_terminal,
    set_condition,
)
from pytest_devloop.embedded.store import Change, clone, meta

Obj = dict[str, Any]
Stage = tuple[Any, ...]

_CONDITION_ORDER = (
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
)
# Crash-loop and image-pull back-off doubles up to this many base intervals, like the
# kubelet's 10 s .. 5 min.
_MAX_BACKOFF_FACTOR = 30


def _float_annotation(pod: Obj, name: str, default: float) -> float:
    value = annotations_of(pod).get(name)
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def runs_to_completion(pod: Obj) -> bool:
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    return policy in ("Never", "OnFailure") or (controller_ref(pod) or {}).get("kind") == "Job"


def _behaviour(pod: Obj) -> str:
    ann = annotations_of(pod)
    images = [str(c.get("image", "")) for c in (pod.get("spec") or {}).get("containers") or []]
    if ann.get(ANN_IMAGE_PULL_ERROR) == "true" or any(FAIL_PULL_IMAGE_MARKER in i for i in images):
        return "pull"
    if runs_to_completion(pod):
        failing = ann.get(ANN_FAIL) == "true" or ann.get(ANN_CRASH_LOOP) == "true"
        return "fail" if failing else "complete"
    if ann.get(ANN_CRASH_LOOP) == "true":
        return "crash"
    if ann.get(ANN_NEVER_READY) == "true":
        return "never-ready"
    return "ready"


def _readiness_probe_delay(pod: Obj) -> float:
    """Seconds after the start before every container's first readiness probe."""
    delays = [0.0]
    for c in (pod.get("spec") or {}).get("containers") or []:
        probe = c.get("readinessProbe") if isinstance(c, dict) else None
        value = probe.get("initialDelaySeconds") if isinstance(probe, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            delays.append(float(value))
    return max(delays)


def _backoff_instant(base: float, k: int) -> float:
    """Seconds after the first start at which restart number `k` happens."""
    total = 0.0
    for i in range(k):
        total += base * min(2**i, _MAX_BACKOFF_FACTOR)
    return total


def _tolerates(pod: Obj, taint: Obj) -> bool:
    for tol in (pod.get("spec") or {}).get("tolerations") or []:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol.get("key") == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _term_matches(term: Obj, node: Obj) -> bool:
    labels = labels_of(node)
    for expr in term.get("matchExpressions") or []:
        if not _expr_matches(expr, labels.get(expr.get("key", "")), expr.get("key", "") in labels):
            return False
    name = str(meta(node).get("name"))
    for expr in term.get("matchFields") or []:
        if expr.get("key") == "metadata.name" and not _expr_matches(expr, name, True):
            return False
    return True


def _expr_matches(expr: Obj, value: str | None, present: bool) -> bool:
    op = expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and values:
        try:
            a, b = int(value or ""), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def pod_fits_node(pod: Obj, node: Obj) -> bool:
    """Node selector, required node affinity and NoSchedule/NoExecute taints."""
    spec = pod.get("spec") or {}
    labels = labels_of(node)
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(_term_matches(t, node) for t in terms):
        return False
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(pod, taint):
            return False
    return True


class Kubelet(Controller):
    """Scheduler plus the kubelets of every Ready node, driven by pod keys and timers."""

    # ConfigMaps, Secrets and claims: a pod waiting for one starts when it appears.
    watches = (
        "pods",
        "nodes",
        "configmaps",
        "secrets",
        "persistentvolumeclaims",
        "batch/jobs",
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._bound_at: dict[str, float] = {}  # pod uid -> clock() when bound
        self._applied: dict[str, Stage] = {}  # pod uid -> last stage written
        self._ips: dict[str, str] = {}  # pod uid -> pod IP from the pool
        self._unschedulable: set[tuple[str, str]] = set()
        self._on_node: dict[str, set[tuple[str, str]]] = {}
        self._waiting: set[tuple[str, str]] = set()  # pods blocked on a missing object
        # namespace -> words its Jobs pass to their containers (scheduler.job_mentions);
        # kept after a hook Job is deleted, as what it created would stay.
        self._job_words: dict[str, set[str]] = {}
        # namespace -> kinds (configmap, secret) a Job's ServiceAccount may create there
        self._job_writes: dict[str, set[str]] = {}
        self._assumed: set[tuple[str, str]] = set()  # (pod uid, object) already announced

    def handlers(self) -> dict[str, Handler]:
        return {"pod": self.reconcile}

    def _lookup(self, kind: str, namespace: str, name: str) -> Obj | None:
        rt = {
            "configmap": self.ctx.rt("", "configmaps"),
            "secret": self.ctx.rt("", "secrets"),
            "persistentvolumeclaim": self.ctx.pvcs,
        }[kind]
        return self.ctx.get(rt, namespace, name)

    def observe(self, change: Change) -> None:
        if change.rt.key == "batch/jobs":
            if change.type == "DELETED":
                return
            ns = str(meta(change.new).get("namespace", ""))
            words = scheduler.job_mentions(change.new)
            known = self._job_words.setdefault(ns, set())
            writes = self._job_writes.setdefault(ns, set())
            can = scheduler.job_may_create(change.new, self._bindings(ns), self._role_of)
            if words - known or can - writes:
                known |= words
                writes |= can
                for pod_ns, pod_name in sorted(self._waiting):
                    if pod_ns == ns:
                        self.ctx.enqueue(Key("pod", pod_ns, pod_name))
            return
        if change.rt.key in ("configmaps", "secrets", "persistentvolumeclaims"):
            ns = str(meta(change.new).get("namespace", ""))
            for pod_ns, pod_name in sorted(self._waiting | self._unschedulable):
                if pod_ns == ns:
                    self.ctx.enqueue(Key("pod", pod_ns, pod_name))
            return
        if change.rt.key == "nodes":
            if change.type != "DELETED" and node_is_ready(change.new):
                for ns, name in sorted(self._unschedulable):
                    self.ctx.enqueue(Key("pod", ns, name))
            return
        m = meta(change.new)
        ns, name, uid = str(m.get("namespace", "")), str(m.get("name", "")), str(m.get("uid"))
        old_node = ((change.old or {}).get("spec") or {}).get("nodeName")
        new_node = (change.new.get("spec") or {}).get("nodeName")
        if old_node and (change.type == "DELETED" or old_node != new_node):
            self._on_node.get(old_node, set()).discard((ns, name))
        if change.type == "DELETED":
            self._unschedulable.discard((ns, name))
            self._waiting.discard((ns, name))
            self._assumed = {a for a in self._assumed if a[0] != uid}
            self._bound_at.pop(uid, None)
            self._applied.pop(uid, None)
            self.ctx.pod_ips.release(self._ips.pop(uid, None))
            return
        if new_node:
            self._on_node.setdefault(new_node, set()).add((ns, name))
        ip = (change.new.get("status") or {}).get("podIP")
        if ip and uid not in self._ips and ip in self.ctx.pod_ips and self.ctx.pod_ips.reserve(ip):
            self._ips[uid] = ip
        self.ctx.enqueue(Key("pod", ns, name))

    # -- reconcile ----------------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        pod = ctx.get(ctx.pods, key.namespace, key.name)
        if pod is None:
            return
        if is_deleting(pod):
            if meta(pod).get("finalizers"):
                self._stop_containers(pod)
            else:
                # Graceful deletion is simulated as instant: no process needs stopping.
                try:
                    ctx.store.remove(ctx.pods, key.namespace, key.name)
                except errors.ApiError:
                    pass
            return
        if pod_is_terminal(pod):
            return
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            self._schedule(pod)
            return
        node = ctx.get(ctx.nodes, "", node_name)
        if node is None or not node_is_ready(node):
            return
        self._run(pod, node)

    def _schedule(self, pod: Obj) -> None:
        ctx = self.ctx
        spec = pod.get("spec") or {}
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return  # another scheduler's pod, as on a real cluster
        m = meta(pod)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        nodes = ctx.ready_nodes()
        claim = scheduler.claim_missing(pod, self._lookup)
        reasons: dict[str, int] = {}
        fitting = []
        for n in [] if claim else nodes:
            if not pod_fits_node(pod, n):
                why = "node(s) didn't match Pod's node affinity/selector or had untolerated taints"
                reasons[why] = reasons.get(why, 0) + 1
                continue
            short = self._bound_pods(str(meta(n).get("name")))
            lacking = scheduler.insufficient(pod, n, short)
            if lacking:
                for res in lacking:
                    why = "Too many pods" if res == "pods" else f"Insufficient {res}"
                    reasons[why] = reasons.get(why, 0) + 1
                continue
            fitting.append(n)
        if not fitting:
            self._unschedulable.add((ns, name))
            if claim:
                message = (
                    f"0/{len(nodes)} nodes are available: {claim}. preemption: 0/{len(nodes)} "
                    f"nodes are available: {len(nodes)} Preemption is not helpful for scheduling."
                )
            elif nodes:
                message = scheduler.unschedulable_message(len(nodes), reasons)
            else:
                message = "no nodes available to schedule pods"
            status = clone(pod.get("status") or {})
            status["conditions"] = set_condition(
                status.get("conditions") or [],
                "PodScheduled",
                "False",
                "Unschedulable",
                message,
                now=ctx.now(),
                probe_time=True,
            )
            if status != pod.get("status"):
                ctx.update_status(ctx.pods, pod, status)
                ctx.record(
                    pod, "FailedScheduling", message, warning=True, component="default-scheduler"
                )
            return
        self._unschedulable.discard((ns, name))
        node = min(
            fitting,
            key=lambda n: (
                len(self._on_node.get(str(meta(n).get("name")), ())),
                meta(n).get("name"),
            ),
        )
        node_name = str(meta(node).get("name"))
        bound = clone(pod)
        bound["spec"]["nodeName"] = node_name
        stored = ctx.update(ctx.pods, bound)
        if stored is None:
            return
        self._on_node.setdefault(node_name, set()).add((ns, name))
        self._bound_at[str(m.get("uid"))] = ctx.clock()
        ctx.record(
            stored,
            "Scheduled",
            f"Successfully assigned {ns}/{name} to {node_name}",
            component="default-scheduler",
        )
        self._run(stored, node)

    def _announce_assumed(self, pod: Obj, node: Obj) -> None:
        """Say which missing objects the pod was let start without, once per object."""
        uid = str(meta(pod).get("uid"))
        ns = str(meta(pod).get("namespace", ""))
        while True:
            missing = scheduler.missing_dependency(pod, self._assumed_lookup(uid))
            if missing is None or not missing.name:
                return
            self._assumed.add((uid, f"{missing.kind}/{missing.name}"))
            self.ctx.record(
                pod,
                "DependencyAssumed",
                f'{missing.kind} "{missing.name}" does not exist in {ns}; a Job of the '
                "namespace names it or may create it, so it is taken as created (Job "
                "containers do not run in the embedded cluster)",
                component="kubelet",
                host=str(meta(node).get("name")),
            )

    def _announce_pull_secrets(self, pod: Obj, node: Obj) -> None:
        """A missing image pull Secret does not stop a real kubelet: it warns and pulls."""
        uid = str(meta(pod).get("uid"))
        if (uid, "pull-secrets") in self._assumed:
            return
        self._assumed.add((uid, "pull-secrets"))
        ns = str(meta(pod).get("namespace", ""))
        missing = [
            str(ref.get("name"))
            for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []
            if isinstance(ref, dict)
            and ref.get("name")
            and self._lookup("secret", ns, str(ref["name"])) is None
        ]
        if missing:
            self.ctx.record(
                pod,
                "FailedToRetrieveImagePullSecret",
                f"Unable to retrieve some image pull secrets ({', '.join(missing)}); attempting "
                "to pull the image may not succeed.",
                warning=True,
                component="kubelet",
                host=str(meta(node).get("name")),
            )

    def _bindings(self, ns: str) -> list[Obj]:
        ctx = self.ctx
        out: list[Obj] = []
        for group_kind, namespace in (
            ("rolebindings", ns),
            ("clusterrolebindings", None),
        ):
            rt = ctx.rt("rbac.authorization.k8s.io", group_kind)
            items, _ = ctx.store.list(rt, namespace)
            out.extend(items)
        return out

    def _role_of(self, binding: Obj) -> Obj | None:
        ctx = self.ctx
        ref = binding.get("roleRef") or {}
        name = str(ref.get("name", ""))
        if ref.get("kind") == "ClusterRole":
            return ctx.get(ctx.rt("rbac.authorization.k8s.io", "clusterroles"), "", name)
        ns = str((binding.get("metadata") or {}).get("namespace", ""))
        return ctx.get(ctx.rt("rbac.authorization.k8s.io", "roles"), ns, name)

    def _assumed_lookup(self, uid: str) -> scheduler.Lookup:
        def lookup(kind: str, ns: str, name: str) -> Obj | None:
            found = self._lookup(kind, ns, name)
            if found is None and (uid, f"{kind}/{name}") in self._assumed:
                return scheduler.Assumed()
            return found

        return lookup

    def _bound_pods(self, node_name: str) -> list[Obj]:
        ctx = self.ctx
        out = []
        for ns, name in self._on_node.get(node_name, ()):
            other = ctx.get(ctx.pods, ns, name)
            if other is not None and not pod_is_terminal(other):
                out.append(other)
        return out

    def _ready_delay(self, pod: Obj) -> float:
        return _float_annotation(pod, ANN_READY_DELAY, self.ctx.config.pod_ready_delay)

    def _stage(self, pod: Obj, elapsed: float) -> tuple[Stage, float | None]:
        """The stage a pod is in `elapsed` seconds after binding, and when the next begins."""
        cfg = self.ctx.config
        delay = self._ready_delay(pod)
        if elapsed < delay:
            return ("creating",), delay - elapsed
        since_start = elapsed - delay
        behaviour = _behaviour(pod)
        backoff = max(cfg.restart_backoff, 0.001)
        if behaviour == "pull":
            if since_start < backoff:
                return ("pull", "ErrImagePull"), backoff - since_start
            return ("pull", "ImagePullBackOff"), None
        if behaviour == "crash":
            restarts = 0
            while _backoff_instant(backoff, restarts + 1) <= since_start:
                restarts += 1
            return ("crash", restarts), _backoff_instant(backoff, restarts + 1) - since_start
        if behaviour in ("complete", "fail"):
            duration = _float_annotation(pod, ANN_DURATION, cfg.job_duration)
            if since_start < duration:
                return ("running", True), duration - since_start
            return ("done", "Failed" if behaviour == "fail" else "Succeeded"), None
        if behaviour == "ready" and cfg.readiness_probe_delays:
            probing = _readiness_probe_delay(pod)
            if since_start < probing:
                # Started, first readiness probe not due yet: Running, not Ready.
                return ("running", False, "probe"), probing - since_start
        return ("running", behaviour == "ready"), None

    def _run(self, pod: Obj, node: Obj) -> None:
        ctx = self.ctx
        m = meta(pod)
        uid = str(m.get("uid"))
        now = ctx.clock()
        if uid not in self._bound_at:
            # A pod this manager did not bind (a restart, or nodeName set by a client):
            # one that already runs keeps running instead of starting over.
            started = parse_time((pod.get("status") or {}).get("startTime"))
            age = 0.0
            if started is not None and (pod.get("status") or {}).get("phase") == "Running":
                age = self._ready_delay(pod) + max(0.0, ctx.wall() - started)
            self._bound_at[uid] = now - age
        key = Key("pod", str(m.get("namespace")), str(m.get("name")))
        lookup = scheduler.assuming(
            self._lookup,
            lambda ns: self._job_words.get(ns, set()),
            lambda ns: self._job_writes.get(ns, set()),
        )
        missing = scheduler.missing_dependency(pod, lookup)
        if missing is not None:
            # The kubelet retries until the object appears; the start delay counts from then.
            self._waiting.add((key.namespace, key.name))
            self._bound_at[uid] = now
            stage: Stage = ("blocked", missing.reason, missing.message)
            if self._applied.get(uid) == stage:
                return
            if ctx.update_status(ctx.pods, pod, self._status(pod, node, stage)) is None:
                return
            self._applied[uid] = stage
            ctx.record(
                pod,
                missing.reason if missing.reason == "FailedMount" else "Failed",
                missing.message if missing.reason == "FailedMount" else f"Error: {missing.message}",
                warning=True,
                component="kubelet",
                host=str(meta(node).get("name")),
            )
            return
        self._waiting.discard((key.namespace, key.name))
        self._announce_assumed(pod, node)
        self._announce_pull_secrets(pod, node)
        stage, next_in = self._stage(pod, now - self._bound_at[uid])
        if next_in is not None:
            ctx.enqueue_after(next_in, key)
        previous = self._applied.get(uid)
        if previous == stage:
            return
        status = self._status(pod, node, stage)
        if ctx.update_status(ctx.pods, pod, status) is None:
            return
        self._applied[uid] = stage
        self._announce(pod, node, previous, stage)

    # -- status ---------------------------------------------------------------------

    def _pod_ip(self, pod: Obj, host_ip: str) -> str:
        if (pod.get("spec") or {}).get("hostNetwork"):
            return host_ip
        uid = str(meta(pod).get("uid"))
        ip = self._ips.get(uid)
        if ip is None:
            ip = self.ctx.pod_ips.allocate()
            self._ips[uid] = ip
        return ip

    def _status(self, pod: Obj, node: Obj, stage: Stage) -> Obj:
        ctx = self.ctx
        now = ctx.now()
        spec = pod.get("spec") or {}
        old = pod.get("status") or {}
        kind = stage[0]
        host_ip = node_address(node)
        status: Obj = {}
        if kind == "done":
            status["phase"] = stage[1]
        elif kind in ("creating", "pull", "blocked"):
            status["phase"] = "Pending"
        else:
            status["phase"] = "Running"
        containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
        inits = [c for c in spec.get("initContainers") or [] if isinstance(c, dict)]
        names = " ".join(str(c.get("name")) for c in containers)
        ready = kind == "running" and bool(stage[1])
        mounting = kind == "blocked" and stage[1] == "FailedMount"
        started = kind != "creating" and not mounting
        conds = list(old.get("conditions") or [])

        def put(ctype: str, ok: bool, reason: str = "", message: str = "") -> None:
            nonlocal conds
            conds = set_condition(
                conds,
                ctype,
                "True" if ok else "False",
                "" if ok else reason,
                "" if ok else message,
                now=now,
                probe_time=True,
            )

        put("PodReadyToStartContainers", started and kind != "done")
        put(
            "Initialized",
            started or not inits,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(str(c.get('name')) for c in inits)}]",
        )
        if kind == "done":
            put("Ready", False, "PodCompleted")
            put("ContainersReady", False, "PodCompleted")
        else:
            put("Ready", ready, "ContainersNotReady", f"containers with unready status: [{names}]")
            put(
                "ContainersReady",
                ready,
                "ContainersNotReady",
                f"containers with unready status: [{names}]",
            )
        put("PodScheduled", True)
        for gate in spec.get("readinessGates") or []:
            if gate.get("conditionType"):
                put(str(gate["conditionType"]), ready, "ReadinessGateNotReady")
        order = {t: i for i, t in enumerate(_CONDITION_ORDER)}
        status["conditions"] = sorted(
            conds, key=lambda c: order.get(str(c.get("type")), len(order))
        )
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
        if started:
            ip = self._pod_ip(pod, host_ip)
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        status["startTime"] = old.get("startTime") or now
        status["qosClass"] = old.get("qosClass") or qos_class(spec)
        old_states = {
            str(cs.get("name")): cs
            for cs in (old.get("containerStatuses") or [])
            + (old.get("initContainerStatuses") or [])
        }
        if inits:
            status["initContainerStatuses"] = [
                self._init_status(pod, c, kind, old_states.get(str(c.get("name"))), now)
                for c in inits
            ]
        status["containerStatuses"] = [
            self._container_status(
                pod,
                c,
                stage,
                has_inits=bool(inits),
                old=old_states.get(str(c.get("name"))),
                now=now,
            )
            for c in containers
        ]
        return status

    def _ids(self, pod: Obj, container: Obj, restarts: int) -> tuple[str, str]:
        image = str(container.get("image", ""))
        digest = hashlib.sha256(image.encode()).hexdigest()
        repo = (
            image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        )
        seed = f"{meta(pod).get('uid')}/{container.get('name')}/{restarts}".encode()
        return f"{repo}@sha256:{digest}", f"containerd://{hashlib.sha256(seed).hexdigest()}"

    def _init_status(self, pod: Obj, c: Obj, kind: str, old: Obj | None, now: str) -> Obj:
        image_id, container_id = self._ids(pod, c, 0)
        out: Obj = {
            "name": c.get("name"),
            "image": c.get("image"),
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "lastState": {},
        }
        if kind == "creating":
            out["state"] = {"waiting": {"reason": "PodInitializing"}}
            return out
        started_at = ((old or {}).get("state") or {}).get("running", {}).get("startedAt") or now
        out.update(imageID=image_id, containerID=container_id)
        if c.get("restartPolicy") == "Always":
            # A native sidecar keeps running next to the app containers.
            out.update(ready=kind == "running", started=True)
            out["state"] = {"running": {"startedAt": started_at}}
        else:
            prev = ((old or {}).get("state") or {}).get("terminated") or {}
            out["ready"] = True
            out["state"] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": prev.get("startedAt") or now,
                    "finishedAt": prev.get("finishedAt") or now,
                    "containerID": container_id,
                }
            }
        return out

    def _container_status(
        self, pod: Obj, c: Obj, stage: Stage, *, has_inits: bool, old: Obj | None, now: str
    ) -> Obj:
        kind = stage[0]
        restarts = int(stage[1]) if kind == "crash" else 0
        image_id, container_id = self._ids(pod, c, restarts)
        out: Obj = {
            "name": c.get("name"),
            "image": c.get("image"),
            "imageID": "",
            "ready": False,
            "restartCount": restarts,
            "started": False,
            "lastState": {},
        }
        old_state = (old or {}).get("state") or {}
        if kind == "blocked":
            if stage[1] == "FailedMount":
                out["state"] = {"waiting": {"reason": "ContainerCreating"}}
            else:
                out["state"] = {"waiting": {"reason": stage[1], "message": stage[2]}}
            return out
        if kind == "creating":
            out["state"] = {
                "waiting": {"reason": "PodInitializing" if has_inits else "ContainerCreating"}
            }
            return out
        if kind == "pull":
            image = c.get("image")
            message = (
                f'Back-off pulling image "{image}"'
                if stage[1] == "ImagePullBackOff"
                else f'failed to pull and unpack image "{image}": not found (simulated by devloop)'
            )
            out["state"] = {"waiting": {"reason": stage[1], "message": message}}
            return out
        out.update(imageID=image_id, containerID=container_id)
        if kind == "crash":
            _, last_id = self._ids(pod, c, max(restarts - 1, 0))
            m = meta(pod)
            out["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off restarting failed container={c.get('name')} "
                    f"pod={m.get('name')}_{m.get('namespace')}({m.get('uid')})",
                }
            }
            out["lastState"] = {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": now,
                    "finishedAt": now,
                    "containerID": last_id,
                }
            }
            return out
        started_at = (old_state.get("running") or {}).get("startedAt") or now
        if kind == "done":
            failed = stage[1] == "Failed"
            out["state"] = {
                "terminated": {
                    "exitCode": 1 if failed else 0,
                    "reason": "Error" if failed else "Completed",
                    "startedAt": started_at,
                    "finishedAt": now,
                    "containerID": container_id,
                }
            }
            return out
        out.update(ready=bool(stage[1]), started=True)
        out["state"] = {"running": {"startedAt": started_at}}
        return out

    def _stop_containers(self, pod: Obj) -> None:
        """A pod held by finalizers: its containers stop, the object stays."""
        status = clone(pod.get("status") or {})
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        now = self.ctx.now()
        status["phase"] = "Succeeded"
        for ctype in ("Ready", "ContainersReady"):
            status["conditions"] = set_condition(
                status.get("conditions") or [],
                ctype,
                "False",
                "PodCompleted",
                "",
                now=now,
                probe_time=True,
            )
        for cs in status.get("containerStatuses") or []:
            running = (cs.get("state") or {}).get("running") or {}
            cs["ready"] = False
            cs["started"] = False
            cs["state"] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": running.get("startedAt") or now,
                    "finishedAt": now,
                    "containerID": cs.get("containerID", ""),
                }
            }
        self.ctx.update_status(self.ctx.pods, pod, status)

    # -- events and logs --------------------------------------------------------------

    def _announce(self, pod: Obj, node: Obj, previous: Stage | None, stage: Stage) -> None:
        ctx = self.ctx
        host = str(meta(node).get("name"))
        m = meta(pod)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        containers = [
            c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)
        ]
        kind = stage[0]

        def event(reason: str, message: str, *, warning: bool = False) -> None:
            ctx.record(pod, reason, message, warning=warning, component="kubelet", host=host)

        def log(line: str) -> None:
            ctx.store.append_log(ns, name, f"{ctx.now()} devloop: {line}")

        first_start = kind in ("running", "crash", "done") and (
            previous is None or previous[0] in ("creating", "pull", "blocked")
        )
        if first_start:
            for c in containers:
                image, cname = c.get("image"), c.get("name")
                if c.get("imagePullPolicy") == "Always":
                    event("Pulling", f'Pulling image "{image}"')
                    event(
                        "Pulled",
                        f'Successfully pulled image "{image}" in 5ms (5ms including waiting)',
                    )
                else:
                    event("Pulled", f'Container image "{image}" already present on machine')
                event("Created", f"Created container: {cname}")
                event("Started", f"Started container {cname}")
                port = next(
                    (
                        p.get("containerPort")
                        for p in c.get("ports") or []
                        if p.get("containerPort")
                    ),
                    8080,
                )
                log(f"container {cname} started (image {image})")
                log(f"{cname} listening on :{port}")
                if kind == "running" and stage[1]:
                    log(f"{cname} ready")
        if stage == ("running", True) and previous == ("running", False, "probe"):
            for c in containers:
                log(f"{c.get('name')} ready")
        if stage == ("running", False):
            event("Unhealthy", f"Readiness probe failed: {ANN_NEVER_READY} is set", warning=True)
            log("readiness check failing (devloop.dev/never-ready)")
        elif kind == "crash":
            for c in containers:
                log(f"{c.get('name')} exited with code 1 (devloop.dev/crash-loop)")
                event(
                    "BackOff",
                    f"Back-off restarting failed container {c.get('name')} in pod "
                    f"{name}_{ns}({m.get('uid')})",
                    warning=True,
                )
        elif kind == "pull":
            for c in containers:
                image = c.get("image")
                if stage[1] == "ErrImagePull":
                    event("Pulling", f'Pulling image "{image}"')
                    event(
                        "Failed",
                        f'Failed to pull image "{image}": not found (simulated by devloop)',
                        warning=True,
                    )
                else:
                    event("BackOff", f'Back-off pulling image "{image}"')
                event("Failed", f"Error: {stage[1]}", warning=True)
        elif kind == "done":
            outcome = "failed with exit code 1" if stage[1] == "Failed" else "completed"
            for c in containers:
                log(f"{c.get('name')} {outcome}")
