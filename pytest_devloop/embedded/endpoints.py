"""Service endpoints of the embedded cluster: Endpoints, EndpointSlices, load balancers.

Owns the objects that say which pods back a Service: for a Service with a selector, an
`Endpoints` object of the same name (ready pods in `addresses`, the others in
`notReadyAddresses`) and `EndpointSlice`s labelled `kubernetes.io/service-name` with
ready/serving/terminating conditions, `targetRef` and `nodeName` (what Prometheus'
kubernetes_sd and `kubectl describe svc` read); named target ports are resolved per pod.
User-written Endpoints of a selectorless Service are mirrored into slices, as the
EndpointSlice mirroring controller does. LoadBalancer Services get
`status.loadBalancer.ingress` with the first node's loopback address (like k3s' service
load balancer), which Helm 3 waits for.

Not simulated: topology hints, slices split at 100 endpoints, dual stack.
"""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded.reconcile import (
    Context,
    Controller,
    Handler,
    Key,
    is_deleting,
    labels_of,
    node_address,
    owner_reference,
    pod_is_ready,
    pod_is_terminal,
)
from pytest_devloop.embedded.store import Change, clone, meta
from pytest_devloop.k8s.selectors import Requirement, labels_match

Obj = dict[str, Any]
PortKey = tuple[tuple[str, int, str], ...]  # (name, port, protocol) per service port

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
MIRROR_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
HEADLESS = "service.kubernetes.io/headless"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"


def _service_selector(svc: Obj) -> list[Requirement] | None:
    spec = svc.get("spec") or {}
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not selector or spec.get("type") == "ExternalName":
        return None
    return [Requirement(str(k), "=", (str(v),)) for k, v in selector.items()]


def _resolve_port(svc_port: Obj, pod: Obj) -> int | None:
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = svc_port.get("protocol", "TCP")
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return int(p["containerPort"])
    return None


def _target_ref(pod: Obj) -> Obj:
    m = meta(pod)
    return {
        "kind": "Pod",
        "namespace": m.get("namespace"),
        "name": m.get("name"),
        "uid": m.get("uid"),
    }


class EndpointsController(Controller):
    """Endpoints + EndpointSlices per Service, kept in step with its pods."""

    watches = ("services", "pods", "endpoints", "discovery.k8s.io/endpointslices")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        # namespace -> service name -> selector; lets a pod change find its Services
        # without listing every Service of the cluster.
        self._selectors: dict[str, dict[str, list[Requirement]]] = {}
        self._selectorless: dict[str, set[str]] = {}

    def handlers(self) -> dict[str, Handler]:
        return {"endpoints": self.reconcile}

    def observe(self, change: Change) -> None:
        key = change.rt.key
        m = meta(change.new)
        ns, name = str(m.get("namespace", "")), str(m.get("name", ""))
        if key == "services":
            self._selectors.setdefault(ns, {}).pop(name, None)
            self._selectorless.setdefault(ns, set()).discard(name)
            if change.type != "DELETED":
                reqs = _service_selector(change.new)
                if reqs is not None:
                    self._selectors[ns][name] = reqs
                else:
                    self._selectorless[ns].add(name)
            self.ctx.enqueue(Key("endpoints", ns, name))
        elif key == "pods":
            old_labels = labels_of(change.old)
            new_labels = labels_of(change.new)
            for svc, reqs in self._selectors.get(ns, {}).items():
                if labels_match(reqs, new_labels) or (
                    change.old is not None and labels_match(reqs, old_labels)
                ):
                    self.ctx.enqueue(Key("endpoints", ns, svc))
        elif key == "endpoints":
            # Someone else's write to a managed Endpoints is undone; a selectorless
            # Service's hand-written Endpoints are mirrored.
            if name in self._selectors.get(ns, {}) or name in self._selectorless.get(ns, set()):
                self.ctx.enqueue(Key("endpoints", ns, name))
        else:
            service = labels_of(change.new).get(SERVICE_NAME)
            if service and labels_of(change.new).get(MANAGED_BY) in (
                SLICE_CONTROLLER,
                MIRROR_CONTROLLER,
            ):
                self.ctx.enqueue(Key("endpoints", ns, service))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        ns, name = key.namespace, key.name
        svc = ctx.get(ctx.services, ns, name)
        if svc is None:
            if ctx.get(ctx.endpoints, ns, name) is not None:
                ctx.delete(ctx.endpoints, ns, name)
            return
        if is_deleting(svc):
            return
        self._load_balancer(svc)
        reqs = _service_selector(svc)
        if reqs is None:
            self._mirror(svc)
            return
        groups = self._groups(svc, reqs)
        self._write_endpoints(svc, groups)
        self._write_slices(svc, groups, SLICE_CONTROLLER)

    # -- computing ------------------------------------------------------------------

    def _groups(self, svc: Obj, reqs: list[Requirement]) -> dict[PortKey, list[Obj]]:
        """Endpoint entries of the Service's pods, grouped by their resolved port set."""
        ctx = self.ctx
        spec = svc.get("spec") or {}
        ns = str(meta(svc).get("namespace"))
        publish_all = bool(spec.get("publishNotReadyAddresses"))
        groups: dict[PortKey, list[Obj]] = {}
        for pod in ctx.pods_in(ns):
            if not labels_match(reqs, labels_of(pod)) or pod_is_terminal(pod):
                continue
            ip = (pod.get("status") or {}).get("podIP")
            if not ip:
                continue
            ports: list[tuple[str, int, str]] = []
            for p in spec.get("ports") or []:
                resolved = _resolve_port(p, pod)
                if resolved is not None:
                    ports.append(
                        (str(p.get("name") or ""), resolved, str(p.get("protocol", "TCP")))
                    )
            pod_spec = pod.get("spec") or {}
            entry: Obj = {
                "ip": ip,
                "ready": publish_all or pod_is_ready(pod),
                "serving": pod_is_ready(pod),
                "terminating": is_deleting(pod),
                "nodeName": pod_spec.get("nodeName"),
                "targetRef": _target_ref(pod),
            }
            if pod_spec.get("hostname") and pod_spec.get("subdomain") == meta(svc).get("name"):
                entry["hostname"] = pod_spec["hostname"]
            groups.setdefault(tuple(sorted(ports)), []).append(entry)
        for entries in groups.values():
            entries.sort(key=lambda e: tuple(int(x) for x in str(e["ip"]).split(".")))
        return groups

    def _labels(self, svc: Obj) -> dict[str, str]:
        labels = dict(labels_of(svc))
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS] = ""
        return labels

    # -- writing --------------------------------------------------------------------

    def _write_endpoints(self, svc: Obj, groups: dict[PortKey, list[Obj]]) -> None:
        ctx = self.ctx
        m = meta(svc)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        subsets = []
        for ports, entries in sorted(groups.items()):
            live = [e for e in entries if not e["terminating"]]
            if not live or not ports:
                continue
            subset: Obj = {}
            ready = [self._address(e) for e in live if e["ready"]]
            not_ready = [self._address(e) for e in live if not e["ready"]]
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            subset["ports"] = [
                {**({"name": pn} if pn else {}), "port": port, "protocol": proto}
                for pn, port, proto in ports
            ]
            subsets.append(subset)
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            # The label keeps the mirroring controller off Endpoints this one writes.
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {**self._labels(svc), SKIP_MIRROR: "true"},
            },
        }
        if subsets:
            body["subsets"] = subsets
        existing = ctx.get(ctx.endpoints, ns, name)
        if existing is None:
            ctx.create(ctx.endpoints, body)
            return
        if self._same(existing, body, ("subsets",)):
            return
        updated = clone(existing)
        updated["metadata"]["labels"] = body["metadata"]["labels"]
        updated.pop("subsets", None)
        if subsets:
            updated["subsets"] = subsets
        ctx.update(ctx.endpoints, updated)

    @staticmethod
    def _same(existing: Obj, body: Obj, fields: tuple[str, ...]) -> bool:
        return all(existing.get(f) == body.get(f) for f in fields) and meta(existing).get(
            "labels"
        ) == body["metadata"].get("labels")

    @staticmethod
    def _address(entry: Obj) -> Obj:
        out: Obj = {"ip": entry["ip"]}
        if entry.get("hostname"):
            out["hostname"] = entry["hostname"]
        if entry.get("nodeName"):
            out["nodeName"] = entry["nodeName"]
        if entry.get("targetRef"):
            out["targetRef"] = entry["targetRef"]
        return out

    def _write_slices(self, svc: Obj, groups: dict[PortKey, list[Obj]], manager: str) -> None:
        ctx = self.ctx
        m = meta(svc)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        labels = self._labels(svc)
        labels[SERVICE_NAME] = name
        labels[MANAGED_BY] = manager
        existing = [
            s
            for s in ctx.controlled(svc, ctx.endpointslices)
            if labels_of(s).get(MANAGED_BY) == manager
        ]
        by_ports = {self._slice_ports(s): s for s in existing}
        # A Service without endpoints keeps one empty slice, as the real controller does.
        wanted = dict(groups) or {(): []}
        keep: set[str] = set()
        for ports, entries in sorted(wanted.items()):
            body: Obj = {
                "addressType": "IPv4",
                "endpoints": [self._slice_endpoint(e) for e in entries],
            }
            if ports:
                body["ports"] = [
                    {"name": pn, "port": port, "protocol": proto} for pn, port, proto in ports
                ]
            current = by_ports.get(ports)
            if current is None:
                prefix = f"{name}-"
                created = ctx.create(
                    ctx.endpointslices,
                    {
                        "metadata": {
                            "name": ctx.generate_name(ctx.endpointslices, ns, prefix),
                            "generateName": prefix,
                            "namespace": ns,
                            "labels": labels,
                            "ownerReferences": [owner_reference(ctx.services, svc)],
                        },
                        **body,
                    },
                )
                if created is not None:
                    keep.add(str(meta(created).get("name")))
                continue
            keep.add(str(meta(current).get("name")))
            if self._same(
                current,
                {"metadata": {"labels": labels}, **body},
                ("addressType", "endpoints", "ports"),
            ):
                continue
            updated = clone(current)
            updated["metadata"]["labels"] = labels
            updated.pop("ports", None)
            updated.update(body)
            ctx.update(ctx.endpointslices, updated)
        for s in existing:
            if str(meta(s).get("name")) not in keep:
                ctx.delete(ctx.endpointslices, ns, str(meta(s).get("name")))

    @staticmethod
    def _slice_ports(slice_: Obj) -> PortKey:
        return tuple(
            sorted(
                (str(p.get("name") or ""), int(p.get("port", 0)), str(p.get("protocol", "TCP")))
                for p in slice_.get("ports") or []
            )
        )

    @staticmethod
    def _slice_endpoint(entry: Obj) -> Obj:
        out: Obj = {
            "addresses": [entry["ip"]],
            "conditions": {
                "ready": bool(entry["ready"]) and not entry["terminating"],
                "serving": bool(entry["serving"]),
                "terminating": bool(entry["terminating"]),
            },
        }
        if entry.get("hostname"):
            out["hostname"] = entry["hostname"]
        if entry.get("nodeName"):
            out["nodeName"] = entry["nodeName"]
        if entry.get("targetRef"):
            out["targetRef"] = entry["targetRef"]
        return out

    def _mirror(self, svc: Obj) -> None:
        """Slices for a selectorless Service from its hand-written Endpoints."""
        ctx = self.ctx
        m = meta(svc)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        # Slices this controller made while the Service still had a selector go away.
        for s in ctx.controlled(svc, ctx.endpointslices):
            if labels_of(s).get(MANAGED_BY) == SLICE_CONTROLLER:
                ctx.delete(ctx.endpointslices, ns, str(meta(s).get("name")))
        endpoints = ctx.get(ctx.endpoints, ns, name)
        if endpoints is None or labels_of(endpoints).get(SKIP_MIRROR) == "true":
            for s in ctx.controlled(svc, ctx.endpointslices):
                if labels_of(s).get(MANAGED_BY) == MIRROR_CONTROLLER:
                    ctx.delete(ctx.endpointslices, ns, str(meta(s).get("name")))
            return
        groups: dict[PortKey, list[Obj]] = {}
        for subset in endpoints.get("subsets") or []:
            ports = tuple(
                sorted(
                    (str(p.get("name") or ""), int(p.get("port", 0)), str(p.get("protocol", "TCP")))
                    for p in subset.get("ports") or []
                )
            )
            for ready, field in ((True, "addresses"), (False, "notReadyAddresses")):
                for addr in subset.get(field) or []:
                    entry: Obj = {
                        "ip": addr.get("ip"),
                        "ready": ready,
                        "serving": ready,
                        "terminating": False,
                        "nodeName": addr.get("nodeName"),
                        "targetRef": addr.get("targetRef"),
                    }
                    if addr.get("hostname"):
                        entry["hostname"] = addr["hostname"]
                    groups.setdefault(ports, []).append(entry)
        self._write_slices(svc, groups, MIRROR_CONTROLLER)

    def _load_balancer(self, svc: Obj) -> None:
        ctx = self.ctx
        if (svc.get("spec") or {}).get("type") != "LoadBalancer":
            return
        nodes = ctx.ready_nodes()
        if not nodes:
            return
        ingress = [{"ip": node_address(nodes[0]), "ipMode": "VIP"}]
        status = clone(svc.get("status") or {})
        if (status.get("loadBalancer") or {}).get("ingress") == ingress:
            return
        status["loadBalancer"] = {"ingress": ingress}
        ctx.update_status(ctx.services, svc, status)
