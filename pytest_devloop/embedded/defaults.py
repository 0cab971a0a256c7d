"""Admission of the embedded cluster: per-kind defaults and address allocation.

Owns what a real API server adds to an object before storing it: the `SetDefaults_*`
values of the built-in kinds (so `kubectl get -o yaml`, Helm's ready checks and diffs
against a live object see what they would see on a real cluster), a Job's generated
selector, a new Pod's `Pending` phase and QoS class, and the allocation of Service
cluster IPs and node ports.

Every address the embedded cluster hands out is in 127.0.0.0/8, in disjoint ranges:
cluster IPs in `CLUSTER_IP_RANGE`, pod IPs in `POD_IP_RANGE` (allocated by the
simulated kubelet from an `AddressPool` like the one here), node addresses in
`NODE_IP_RANGE`. Nothing the cluster reports may ever route to a private or public
network from the machines this runs on.
"""

from __future__ import annotations

import ipaddress
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from pytest_devloop.embedded import admission, errors
from pytest_devloop.embedded.store import Store, meta
from pytest_devloop.k8s.resources import ResourceType

Obj = dict[str, Any]

CLUSTER_IP_RANGE = "127.1.0.0/16"
POD_IP_RANGE = "127.2.0.0/16"
NODE_IP_RANGE = "127.0.1.0/24"
NODE_PORT_RANGE = (30000, 32767)

DEFAULT_STORAGE_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"

# Pod templates live at these paths in the built-in workload kinds.
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "apps/deployments": ("spec", "template"),
    "apps/replicasets": ("spec", "template"),
    "apps/statefulsets": ("spec", "template"),
    "apps/daemonsets": ("spec", "template"),
    "batch/jobs": ("spec", "template"),
    "batch/cronjobs": ("spec", "jobTemplate", "spec", "template"),
    "replicationcontrollers": ("spec", "template"),
    "podtemplates": ("template",),
}


class AddressPool:
    """Thread-safe allocator of the host addresses of one IPv4 network.

    Allocation walks forward from the last address handed out, so a released address is
    only reused after the whole range has been used once: a stale client holding an old
    address is unlikely to reach a new owner. Host parts ending in .0 or .255 are skipped
    because some tools treat them as network or broadcast addresses.
    """

    def __init__(self, network: str) -> None:
        self.network = ipaddress.IPv4Network(network)
        self._first = int(self.network.network_address) + 1
        self._size = self.network.num_addresses - 2
        self._cursor = 0
        self._used: set[int] = set()
        self._lock = threading.Lock()

    def __contains__(self, ip: object) -> bool:
        try:
            return ipaddress.IPv4Address(str(ip)) in self.network
        except ValueError:
            return False

    def allocate(self, *, reserve: bool = True) -> str:
        with self._lock:
            for _ in range(self._size):
                n = self._first + self._cursor
                self._cursor = (self._cursor + 1) % self._size
                if n & 0xFF in (0, 0xFF) or n in self._used:
                    continue
                if reserve:
                    self._used.add(n)
                return str(ipaddress.IPv4Address(n))
        raise errors.ApiError(500, "InternalError", f"range {self.network} is full")

    def reserve(self, ip: str) -> bool:
        """Mark `ip` used; False when someone already holds it."""
        n = int(ipaddress.IPv4Address(ip))
        with self._lock:
            if n in self._used:
                return False
            self._used.add(n)
            return True

    def release(self, ip: str | None) -> None:
        if not ip or ip not in self:
            return
        with self._lock:
            self._used.discard(int(ipaddress.IPv4Address(ip)))


class PortPool:
    """Thread-safe allocator of Service node ports, walking forward like `AddressPool`."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self._cursor = 0
        self._used: set[int] = set()
        self._lock = threading.Lock()

    def allocate(self, *, reserve: bool = True) -> int:
        size = self.high - self.low + 1
        with self._lock:
            for _ in range(size):
                port = self.low + self._cursor
                self._cursor = (self._cursor + 1) % size
                if port not in self._used:
                    if reserve:
                        self._used.add(port)
                    return port
        raise errors.ApiError(500, "InternalError", "node port range is full")

    def reserve(self, port: int) -> bool:
        with self._lock:
            if port in self._used:
                return False
            self._used.add(port)
            return True

    def release(self, port: int | None) -> None:
        if port is None:
            return
        with self._lock:
            self._used.discard(port)


# -- defaults -----------------------------------------------------------------------


def apply_defaults(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    """Fill in the defaults the real API server sets, in place, on a caller-owned object.

    `old` is the stored object on an update (None on create): fields the server
    generates once (a Job's selector) are carried over from it.
    """
    spec = obj.get("spec")
    spec = spec if isinstance(spec, dict) else None
    key = rt.key
    path = _TEMPLATE_PATHS.get(key) if rt.builtin else None
    if path is not None:
        template = _dig(obj, path)
        if isinstance(template, dict):
            _default_template(template)
    if key == "pods":
        _default_pod(obj, old)
    elif key == "apps/deployments" and spec is not None:
        _default_deployment(spec)
    elif key == "apps/replicasets" and spec is not None:
        spec.setdefault("replicas", 1)
    elif key == "apps/statefulsets" and spec is not None:
        _default_statefulset(spec)
    elif key == "apps/daemonsets" and spec is not None:
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", 1)
            rolling.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
    elif key == "batch/jobs" and spec is not None:
        _default_job(obj, spec, old)
    elif key == "batch/cronjobs" and spec is not None:
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
    elif key == "replicationcontrollers" and spec is not None:
        spec.setdefault("replicas", 1)
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
        if labels and not spec.get("selector"):
            spec["selector"] = dict(labels)
    elif key == "services":
        _default_service(obj.setdefault("spec", {}))
    elif key == "persistentvolumeclaims":
        obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        if old is None:
            obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif key == "persistentvolumes":
        pv_spec = obj.setdefault("spec", {})
        pv_spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        pv_spec.setdefault("volumeMode", "Filesystem")
        if old is None:
            obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif key == "namespaces":
        name = meta(obj).get("name", "")
        obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = (
            name
        )
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if old is None:
            obj.setdefault("status", {}).setdefault("phase", "Active")
    elif key == "secrets":
        obj.setdefault("type", "Opaque")
    elif key == "networking.k8s.io/networkpolicies" and spec is not None:
        if not spec.get("policyTypes"):
            types = ["Ingress"]
            if spec.get("egress"):
                types.append("Egress")
            spec["policyTypes"] = types
        for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
    elif key == "apiextensions.k8s.io/customresourcedefinitions" and spec is not None:
        spec.setdefault("conversion", {"strategy": "None"})


def _dig(obj: Obj, path: Iterable[str]) -> Any:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _default_template(template: Obj) -> None:
    spec = template.get("spec")
    if isinstance(spec, dict):
        _default_pod_spec(spec)


def _default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    # The deprecated alias mirrors serviceAccountName in every v1 pod spec.
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    elif spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            if isinstance(container, dict):
                _default_container(container)
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            _default_volume(volume)


def _image_pulls_always(image: str) -> bool:
    if "@" in image:
        return False
    last = image.rsplit("/", 1)[-1]
    return ":" not in last or last.rsplit(":", 1)[1] == "latest"


def _default_container(c: Obj) -> None:
    c.setdefault(
        "imagePullPolicy",
        "Always" if _image_pulls_always(str(c.get("image", ""))) else "IfNotPresent",
    )
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(probe_name)
        if isinstance(probe, dict):
            probe.setdefault("timeoutSeconds", 1)
            probe.setdefault("periodSeconds", 10)
            probe.setdefault("successThreshold", 1)
            probe.setdefault("failureThreshold", 3)
            http = probe.get("httpGet")
            if isinstance(http, dict):
                http.setdefault("scheme", "HTTP")
    for env in c.get("env") or []:
        field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")


def _default_volume(volume: Obj) -> None:
    for source in ("configMap", "secret", "projected", "downwardAPI"):
        body = volume.get(source)
        if isinstance(body, dict):
            body.setdefault("defaultMode", 420)
            for item in body.get("items") or []:
                field_ref = (item or {}).get("fieldRef")
                if isinstance(field_ref, dict):
                    field_ref.setdefault("apiVersion", "v1")


def _default_pod(pod: Obj, old: Obj | None) -> None:
    spec = pod.setdefault("spec", {})
    _default_pod_spec(spec)
    # Admission plugins of a real server (ServiceAccount, Priority,
    # DefaultTolerationSeconds) add these to Pods only, never to templates.
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    present = {t.get("key") for t in tolerations if isinstance(t, dict)}
    for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if taint not in present:
            tolerations.append(
                {
                    "key": taint,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            )
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            resources = c.get("resources") if isinstance(c, dict) else None
            if isinstance(resources, dict) and resources.get("limits"):
                requests = resources.setdefault("requests", {})
                for res, qty in resources["limits"].items():
                    requests.setdefault(res, qty)
    if old is None:
        status = pod.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status["qosClass"] = qos_class(spec)


def qos_class(spec: Obj) -> str:
    """The Pod QoS class (Guaranteed, Burstable, BestEffort) from container resources."""
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        resources = c.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        for res in ("cpu", "memory"):
            if res in requests or res in limits:
                any_set = True
            if res not in limits or requests.get(res, limits[res]) != limits[res]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _default_deployment(spec: Obj) -> None:
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)


def _default_statefulset(spec: Obj) -> None:
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    policy = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    policy.setdefault("whenDeleted", "Retain")
    policy.setdefault("whenScaled", "Retain")
    for claim in spec.get("volumeClaimTemplates") or []:
        if isinstance(claim, dict):
            claim.setdefault("apiVersion", "v1")
            claim.setdefault("kind", "PersistentVolumeClaim")
            claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
            claim.setdefault("status", {}).setdefault("phase", "Pending")


JOB_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def _default_job(job: Obj, spec: Obj, old: Obj | None) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimitPerIndex") is None:
        spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", False)
    spec.setdefault(
        "podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    )
    if spec.get("manualSelector"):
        return
    m = job.setdefault("metadata", {})
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    if old is not None:
        old_spec = old.get("spec") or {}
        spec["selector"] = old_spec.get("selector")
        old_labels = ((old_spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        for label in JOB_UID_LABELS + JOB_NAME_LABELS:
            if label in old_labels:
                labels[label] = old_labels[label]
        return
    # The selector names the Job's uid, which must therefore exist before the store
    # sees the object (a real server also assigns it before generating the selector).
    uid = m.get("uid") or str(uuid.uuid4())
    m["uid"] = uid
    name = str(m.get("name", ""))
    user_labels = dict(labels)
    for label in JOB_UID_LABELS:
        labels[label] = uid
    for label in JOB_NAME_LABELS:
        labels[label] = name
    spec["selector"] = {"matchLabels": {JOB_UID_LABELS[0]: uid}}
    if not m.get("labels"):
        m["labels"] = {**user_labels, **dict.fromkeys(JOB_NAME_LABELS, name)}


def _default_service(spec: Obj) -> None:
    svc_type = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "targetPort" not in port and "port" in port:
                port["targetPort"] = port["port"]
    if svc_type == "ExternalName":
        return
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if svc_type in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if svc_type == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


# -- admission ----------------------------------------------------------------------


class Admission:
    """Defaults plus the allocations a real API server makes when an object is written.

    The server calls `admit` from request threads; the controller loop calls `release`
    when it sees a Service go away. Both sides share the pools under their own locks.
    """

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.cluster_ips = AddressPool(CLUSTER_IP_RANGE)
        self.node_ports = PortPool(*NODE_PORT_RANGE)

    def admit(self, rt: ResourceType, obj: Obj, old: Obj | None, *, dry_run: bool = False) -> None:
        if old is None:
            # A create never keeps a client's uid; assigning it here lets defaults
            # that name the uid (a Job's selector) agree with the stored object.
            obj.setdefault("metadata", {})["uid"] = str(uuid.uuid4())
        admission.admit(self.store, rt, obj, old)
        apply_defaults(rt, obj, old)
        if rt.key == "services":
            self._allocate_service(rt, obj, old, dry_run)
        elif rt.key == "persistentvolumeclaims" and old is None:
            self._default_storage_class(obj)

    def restore(self, services: Iterable[Obj]) -> None:
        """Mark the addresses and ports of already stored Services as used."""
        for svc in services:
            spec = svc.get("spec") or {}
            ip = spec.get("clusterIP")
            if ip and ip in self.cluster_ips:
                self.cluster_ips.reserve(ip)
            for port in _node_ports(spec):
                self.node_ports.reserve(port)

    def release(self, old: Obj, new: Obj | None) -> None:
        """Free what `old` held and `new` (None once deleted) no longer holds."""
        old_spec = old.get("spec") or {}
        new_spec = (new or {}).get("spec") or {}
        if old_spec.get("clusterIP") != new_spec.get("clusterIP"):
            self.cluster_ips.release(old_spec.get("clusterIP"))
        for port in set(_node_ports(old_spec)) - set(_node_ports(new_spec)):
            self.node_ports.release(port)

    def _allocate_service(self, rt: ResourceType, obj: Obj, old: Obj | None, dry_run: bool) -> None:
        spec = obj.setdefault("spec", {})
        name = str(meta(obj).get("name", ""))
        old_spec = (old or {}).get("spec") or {}
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
            return
        ip = spec.get("clusterIP")
        old_ip = old_spec.get("clusterIP")
        if old_ip:
            if ip not in (None, "", old_ip):
                raise errors.invalid(
                    rt.kind,
                    name,
                    rt.group,
                    [("spec.clusterIPs[0]", "Invalid value: field is immutable")],
                )
            ip = old_ip
        elif ip == "None":
            pass
        elif ip:
            if ip not in self.cluster_ips:
                raise errors.invalid(
                    rt.kind,
                    name,
                    rt.group,
                    [
                        (
                            "spec.clusterIPs",
                            f"Invalid value: {ip!r}: failed to allocate IP {ip}: the provided IP "
                            f"({ip}) is not in the valid range. The range of valid IPs is "
                            f"{CLUSTER_IP_RANGE}",
                        )
                    ],
                )
            if not dry_run and not self.cluster_ips.reserve(ip):
                raise errors.invalid(
                    rt.kind,
                    name,
                    rt.group,
                    [
                        (
                            "spec.clusterIPs",
                            f"Invalid value: {ip!r}: provided IP is already allocated",
                        )
                    ],
                )
        else:
            ip = self.cluster_ips.allocate(reserve=not dry_run)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            # Changing the type back to ClusterIP gives the node ports up, as on a real server.
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
            return
        held = {
            (p.get("port"), p.get("protocol", "TCP")): p["nodePort"]
            for p in old_spec.get("ports") or []
            if p.get("nodePort")
        }
        old_ports = set(held.values())
        for port in spec.get("ports") or []:
            wanted = port.get("nodePort")
            if wanted:
                low, high = NODE_PORT_RANGE
                if not isinstance(wanted, int) or not low <= wanted <= high:
                    raise errors.invalid(
                        rt.kind,
                        name,
                        rt.group,
                        [
                            (
                                "spec.ports.nodePort",
                                f"Invalid value: {wanted}: provided port is not in the valid "
                                f"range. The range of valid ports is {low}-{high}",
                            )
                        ],
                    )
                if wanted not in old_ports and not dry_run and not self.node_ports.reserve(wanted):
                    raise errors.invalid(
                        rt.kind,
                        name,
                        rt.group,
                        [
                            (
                                "spec.ports.nodePort",
                                f"Invalid value: {wanted}: provided port is already allocated",
                            )
                        ],
                    )
                continue
            kept = held.get((port.get("port"), port.get("protocol", "TCP")))
            port["nodePort"] = kept if kept else self.node_ports.allocate(reserve=not dry_run)

    def _default_storage_class(self, pvc: Obj) -> None:
        spec = pvc.setdefault("spec", {})
        if "storageClassName" in spec or self.store is None:
            return
        sc_rt = self.store.registry.get("storage.k8s.io", "storageclasses")
        if sc_rt is None:
            return
        classes, _ = self.store.list(sc_rt)
        for sc in classes:
            if (meta(sc).get("annotations") or {}).get(DEFAULT_STORAGE_CLASS_ANNOTATION) == "true":
                spec["storageClassName"] = meta(sc).get("name")
                return


def _node_ports(spec: Obj) -> list[int]:
    return [p["nodePort"] for p in spec.get("ports") or [] if isinstance(p.get("nodePort"), int)]
