"""The embedded cluster's control plane: one loop that runs every simulated controller.

Owns the `ControllerManager`: the admission hook the API server calls before each write
(`admit`), the cluster's initial objects (`bootstrap`: namespaces, Ready nodes, the
`kubernetes` Service, a default StorageClass), and the work loop. The store's listener
only enqueues the change; the loop, in one thread (or in the caller's, through
`run_until_idle`), updates the object index, lets every controller map the change to
reconcile keys, runs the keys, and fires the timers of delayed transitions (pods
becoming Ready, jobs finishing, deadlines). All state changes go through `Store`
methods, under the store lock, one key at a time.

Where each controller lives:
  kubelet.py     scheduler and pod lifecycle (stages, IPs, events, logs)
  workloads.py   Deployment, ReplicaSet, StatefulSet, DaemonSet
  jobs.py        Job, CronJob
  endpoints.py   Endpoints, EndpointSlices, LoadBalancer status
  volumes.py     PersistentVolumeClaim binding and provisioning
  statuses.py    CRD Established, HPA and PDB status
  gc.py          garbage collection, namespace deletion, default ServiceAccounts
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import itertools
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from pytest_devloop.embedded import errors
from pytest_devloop.embedded.defaults import (
    CLUSTER_IP_RANGE,
    DEFAULT_STORAGE_CLASS_ANNOTATION,
    NODE_IP_RANGE,
    Admission,
)
from pytest_devloop.embedded.endpoints import SERVICE_NAME, SKIP_MIRROR, EndpointsController
from pytest_devloop.embedded.gc import GarbageCollector, NamespaceController
from pytest_devloop.embedded.jobs import CronJobController, JobController
from pytest_devloop.embedded.kubelet import Kubelet
from pytest_devloop.embedded.podnet import PodNetwork
from pytest_devloop.embedded.reconcile import (
    Context,
    Controller,
    Handler,
    Key,
    SimulationConfig,
)
from pytest_devloop.embedded.statuses import CrdStatus, HpaStatus, PdbStatus
from pytest_devloop.embedded.store import Change, Store, clone, meta
from pytest_devloop.embedded.volumes import PROVISIONER, VolumeBinder
from pytest_devloop.embedded.workloads import (
    DaemonSetController,
    DeploymentController,
    ReplicaSetController,
    StatefulSetController,
)
from pytest_devloop.k8s.resources import ResourceType

__all__ = ["ControllerManager", "SimulationConfig"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Reconciles one pass may run before the loop yields; far above any real burst, it turns
# a controller bug that writes forever into a visible error instead of a hang.
_MAX_KEYS_PER_PASS = 200_000
# Timers fire this late so that the reconcile they trigger never finds its moment still a
# rounding error away (and plans the same timer again, forever).
_TIMER_SLACK = 0.001


def _loopback(host: str) -> str:
    try:
        if ipaddress.IPv4Address(host).is_loopback:
            return host
    except ValueError:
        pass
    return "127.0.0.1"


class ControllerManager:
    """Runs the simulated controllers of one embedded cluster over its `Store`."""

    def __init__(
        self,
        store: Store,
        config: SimulationConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        strict: bool = False,
        extra: Sequence[Callable[[Context], Controller]] = (),
    ) -> None:
        """`clock` drives timers (monotonic seconds); object timestamps use `store.clock`.

        With `strict`, an unexpected exception in a controller propagates out of
        `run_until_idle` (for tests) instead of being logged and skipped.
        """
        self.store = store
        self.config = config or SimulationConfig()
        if not 1 <= self.config.nodes <= 254:
            raise ValueError(f"nodes must be within 1..254 (addresses in {NODE_IP_RANGE})")
        self.clock = clock
        self.strict = strict
        self.admission = Admission(store)
        self.reconciles = 0
        self._inbox: queue.SimpleQueue[Change | None] = queue.SimpleQueue()
        self._dirty: dict[Key, None] = {}
        self._timers: list[tuple[float, int, Key]] = []
        self._timer_due: dict[Key, float] = {}
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.ctx = Context(
            store,
            self.config,
            clock,
            enqueue=self._enqueue,
            enqueue_after=self._enqueue_after,
            admit=self.admission.admit,
        )
        self.controllers: list[Controller] = [
            Kubelet(self.ctx),
            ReplicaSetController(self.ctx),
            DeploymentController(self.ctx),
            StatefulSetController(self.ctx),
            DaemonSetController(self.ctx),
            JobController(self.ctx),
            CronJobController(self.ctx),
            EndpointsController(self.ctx),
            VolumeBinder(self.ctx),
            CrdStatus(self.ctx),
            HpaStatus(self.ctx),
            PdbStatus(self.ctx),
            GarbageCollector(self.ctx),
            NamespaceController(self.ctx),
            *(make(self.ctx) for make in extra),
        ]
        self.pod_network: PodNetwork | None = None
        if self.config.pod_network:
            self.pod_network = PodNetwork(self.ctx)
            self.controllers.append(self.pod_network)
            # Pods listen on their IPs: clusters of other processes on this machine must
            # not hand out the same ones, so each starts at its own place in the pool.
            self.ctx.pod_ips._cursor = random.Random(self.config.seed).randrange(0, 60000)
        self._observers: dict[str, list[Callable[[Change], None]]] = {}
        self._handlers: dict[str, Handler] = {}
        for controller in self.controllers:
            for resource in controller.watches:
                self._observers.setdefault(resource, []).append(controller.observe)
            self._handlers.update(controller.handlers())
        self._everything = self._observers.pop("*", [])
        services = self.ctx.services
        with store.lock:
            store.add_listener(self._inbox.put)
            # Objects stored before the manager existed are replayed as if just created,
            # inside the lock so no change slips between the snapshot and the listener.
            existing: Any = store.all_objects()
            for rt, obj in existing:
                self._inbox.put(
                    Change("ADDED", rt, None, obj, int(meta(obj).get("resourceVersion", 0)))
                )
                if rt.key == services.key:
                    self.admission.restore([obj])

    # -- the API server's hooks ----------------------------------------------------

    def admit(self, rt: ResourceType, obj: Obj, old: Obj | None, *, dry_run: bool = False) -> None:
        """Defaults and allocations for a create (`old` None) or update of a main resource.

        Call before `store.create`/`store.update`; raises `ApiError` (422) for a
        requested cluster IP or node port that is invalid or taken.
        """
        self.admission.admit(rt, obj, old, dry_run=dry_run)

    def bootstrap(self) -> None:
        """Create what every cluster has before its first client request."""
        ctx = self.ctx
        cfg = self.config
        with self.store.lock:
            for ns in SYSTEM_NAMESPACES:
                self._ensure(ctx.namespaces, {"metadata": {"name": ns}})
            self._ensure(
                ctx.rt("storage.k8s.io", "storageclasses"),
                {
                    "metadata": {
                        "name": "standard",
                        "annotations": {DEFAULT_STORAGE_CLASS_ANNOTATION: "true"},
                    },
                    "provisioner": PROVISIONER,
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "Immediate",
                },
            )
            for i in range(1, cfg.nodes + 1):
                node = self._ensure(ctx.nodes, self._node(i))
                self._ensure(
                    ctx.rt("coordination.k8s.io", "leases"),
                    {
                        "metadata": {
                            "name": meta(node).get("name"),
                            "namespace": "kube-node-lease",
                            "ownerReferences": [
                                {
                                    "apiVersion": "v1",
                                    "kind": "Node",
                                    "name": meta(node).get("name"),
                                    "uid": meta(node).get("uid"),
                                }
                            ],
                        },
                        "spec": {
                            "holderIdentity": meta(node).get("name"),
                            "leaseDurationSeconds": 40,
                            "renewTime": time.strftime(
                                "%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(self.store.clock())
                            ),
                        },
                    },
                )
            self._ensure(
                ctx.services,
                {
                    "metadata": {
                        "name": "kubernetes",
                        "namespace": "default",
                        "labels": {"component": "apiserver", "provider": "kubernetes"},
                    },
                    "spec": {
                        # The first address of the range, as on a real cluster.
                        "clusterIP": str(next(ipaddress.IPv4Network(CLUSTER_IP_RANGE).hosts())),
                        "ports": [
                            {
                                "name": "https",
                                "port": 443,
                                "protocol": "TCP",
                                "targetPort": cfg.api_server_port,
                            }
                        ],
                    },
                },
            )
            self.set_api_server(cfg.api_server_host, cfg.api_server_port)
            for ns in SYSTEM_NAMESPACES:
                self._handlers["serviceaccount"](Key("serviceaccount", ns, "default"))
            for controller in self.controllers:
                hook = getattr(controller, "bootstrap", None)
                if hook is not None:
                    hook()

    def set_api_server(self, host: str, port: int) -> None:
        """Point the `kubernetes` Service's Endpoints at the API server's address."""
        ctx = self.ctx
        self.config.api_server_host, self.config.api_server_port = host, port
        ip = _loopback(host)
        ports = [{"name": "https", "port": port, "protocol": "TCP"}]
        with self.store.lock:
            svc = ctx.get(ctx.services, "default", "kubernetes")
            if svc is not None and svc["spec"]["ports"][0].get("targetPort") != port:
                moved = clone(svc)
                moved["spec"]["ports"][0]["targetPort"] = port
                ctx.update(ctx.services, moved)
            # The API server's own addresses are never mirrored or managed by a controller.
            self._put(
                ctx.endpoints,
                {
                    "metadata": {
                        "name": "kubernetes",
                        "namespace": "default",
                        "labels": {SKIP_MIRROR: "true"},
                    },
                    "subsets": [{"addresses": [{"ip": ip}], "ports": ports}],
                },
            )
            self._put(
                ctx.endpointslices,
                {
                    "metadata": {
                        "name": "kubernetes",
                        "namespace": "default",
                        "labels": {SERVICE_NAME: "kubernetes"},
                    },
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
                    "ports": ports,
                },
            )

    def _node(self, i: int) -> Obj:
        cfg = self.config
        name = f"devloop-node-{i}"
        ip = str(ipaddress.IPv4Network(NODE_IP_RANGE).network_address + i)
        digest = hashlib.sha256(name.encode()).hexdigest()
        now = self.ctx.now()
        resources = {
            "cpu": cfg.node_cpu,
            "memory": cfg.node_memory,
            "pods": cfg.node_pods,
            "ephemeral-storage": "100Gi",
            "hugepages-2Mi": "0",
        }
        conditions = [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        return {
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": "devloop-simulated",
                },
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {"providerID": f"devloop://{name}"},
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "conditions": [
                    {
                        "type": t,
                        "status": s,
                        "reason": r,
                        "message": msg,
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                    for t, s, r, msg in conditions
                ],
                "addresses": [
                    {"type": "InternalIP", "address": ip},
                    {"type": "Hostname", "address": name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": digest[:32],
                    "systemUUID": str(uuid.UUID(digest[:32])),
                    "bootID": digest[32:64],
                    "kernelVersion": "6.1.0-devloop",
                    "osImage": "devloop simulated node",
                    "containerRuntimeVersion": "containerd://1.7.0-devloop",
                    "kubeletVersion": cfg.kubelet_version,
                    "kubeProxyVersion": cfg.kubelet_version,
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
                "images": [],
            },
        }

    def _ensure(self, rt: ResourceType, obj: Obj) -> Obj:
        m = obj["metadata"]
        existing = self.store.get(rt, m.get("namespace"), m["name"])
        if existing is not None:
            return existing
        obj.setdefault("apiVersion", rt.api_version())
        obj.setdefault("kind", rt.kind)
        self.admit(rt, obj, None)
        return self.store.create(rt, obj)

    def _put(self, rt: ResourceType, obj: Obj) -> None:
        m = obj["metadata"]
        existing = self.store.get(rt, m.get("namespace"), m["name"])
        if existing is None:
            self._ensure(rt, obj)
            return
        updated = {**clone(existing), **{k: v for k, v in obj.items() if k != "metadata"}}
        updated["metadata"] = {**clone(meta(existing)), "labels": m.get("labels", {})}
        self.store.update(rt, updated)

    # -- the loop ------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a background thread until `stop()`."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="devloop-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop thread; returns within about a second."""
        if self.pod_network is not None:
            self.pod_network.close()
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._inbox.put(None)
        thread.join(timeout=1.0)
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_until_idle()
            except Exception:
                log.exception("devloop controllers: loop pass failed")
            wait = self.next_timer_in()
            try:
                change = self._inbox.get(timeout=wait)
            except queue.Empty:
                continue
            if change is not None:
                with self.store.lock:
                    self._dispatch(change)

    def step(self) -> bool:
        """Take in pending changes and due timers, then reconcile one key.

        Returns False when there was nothing to do. Call from one thread only, and not
        while the background loop runs.
        """
        with self.store.lock:
            self._drain()
            self._fire_timers()
            if not self._dirty:
                return False
            key = next(iter(self._dirty))
            del self._dirty[key]
            self._reconcile(key)
            return True

    def run_until_idle(self) -> int:
        """Reconcile until no change, due timer or key is left; returns keys reconciled."""
        done = 0
        while self.step():
            done += 1
            if done >= _MAX_KEYS_PER_PASS:
                raise RuntimeError("devloop controllers did not settle: a controller keeps writing")
        return done

    def next_timer_in(self) -> float | None:
        """Seconds until the next delayed transition is due (None when none is planned)."""
        with self.store.lock:
            if not self._timers:
                return None
            return max(self._timers[0][0] - self.clock(), 0.0)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- internals -------------------------------------------------------------------

    def _enqueue(self, key: Key) -> None:
        self._dirty[key] = None

    def _enqueue_after(self, delay: float, key: Key) -> None:
        due = self.clock() + max(delay, 0.0) + _TIMER_SLACK
        current = self._timer_due.get(key)
        if current is not None and current <= due:
            return  # the earlier firing reconciles, and that reconcile plans what follows
        self._timer_due[key] = due
        heapq.heappush(self._timers, (due, next(self._seq), key))

    def _fire_timers(self) -> None:
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            due, _, key = heapq.heappop(self._timers)
            if self._timer_due.get(key) == due:
                del self._timer_due[key]
                self._dirty[key] = None

    def _drain(self) -> None:
        while True:
            try:
                change = self._inbox.get_nowait()
            except queue.Empty:
                return
            if change is not None:
                self._dispatch(change)

    def _dispatch(self, change: Change) -> None:
        self.ctx.index.apply(change)
        if change.rt.key == self.ctx.services.key and change.old is not None:
            self.admission.release(change.old, None if change.type == "DELETED" else change.new)
        for observe in self._observers.get(change.rt.key, ()):
            observe(change)
        for observe in self._everything:
            observe(change)

    def _reconcile(self, key: Key) -> None:
        handler = self._handlers.get(key.handler)
        if handler is None:
            return
        self.reconciles += 1
        try:
            handler(key)
        except errors.ApiError as e:
            log.debug("devloop controllers: %s: %s", key, e.message)
        except Exception:
            if self.strict:
                raise
            log.exception("devloop controllers: reconcile of %s failed", key)
