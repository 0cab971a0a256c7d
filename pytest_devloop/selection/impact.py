"""Which tests a change affects: dependency records, the resource graph, and selection.

Owns three pure pieces, with no I/O, no clock and no cluster:

- reading the one record model of `records` (`TestRecord` / `ListRead`, re-exported
  here): what one test read last time, its last outcome and the digest of its file.
- `Graph`: the desired objects plus two kinds of virtual node, and the edges between
  them. An edge A → B means "a change of A can change what a reader of B sees".
  `Graph.closure` turns the changed objects of a sync into an `Impact`.
- `select` / `summary`: one `Decision` per test, each with a one-line reason, and the
  header line that says why this many tests run.

How far a change travels (the decisions behind the edges):

- A workload's pods are a node of their own, `pods-of:<workload key>`, labelled with the
  pod template's labels. A Service's endpoints are a node too, keyed like the Endpoints
  object (`/Endpoints/<ns>/<name>`) so reads of Endpoints and EndpointSlices land on it.
  Keeping endpoints apart from the Service object is what lets a replica change reach
  the ServiceMonitor scraping those pods without reaching the VirtualService routing to
  the Service: routes read the Service (name, ports), monitors read its endpoints.
- Edges fire only for changes that can matter to the dependent: a Deployment whose
  annotations changed does not roll its pods; a Service whose annotations changed moves
  no endpoints and no route; a ConfigMap whose labels changed feeds no container.
- Objects reached through the graph count as changed as a whole (`None` fields): what
  their readers see (status, pods, endpoints) is derived, so field precision is unsound.
  Directly changed objects keep their field paths unless they are also reached.
- A ConfigMap/Secret/ServiceAccount change reaches the workloads using it (object
  level), their pods, the endpoints of the Services selecting those pods and the
  monitors scraping them (a rollout replaces every endpoint), not the routes.
- HPA and PDB changes reach their workload; a workload change reaches its HPA/PDB (their
  status follows it). Only a change of the HPA/PDB's own spec travels back, so a replica
  change does not bounce back through the HPA and widen to the whole Deployment.
- Old labels matter as much as new ones (a test listing `version=v1` pods is affected
  when the pods become `version=v2`): give `closure` the previously applied bodies
  (`previous`); without them, a label or selector change counts as "old labels unknown"
  and matches every selector in scope. When in doubt, run.
"""

from __future__ import annotations

import json
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from pytest_devloop.k8s.selectors import (
    Requirement,
    SelectorError,
    labels_match,
    parse_label_selector,
    selector_from_label_selector,
)
from pytest_devloop.selection.records import ListRead, RecordError, TestRecord
from pytest_devloop.sync.plan import short_name

__all__ = [
    "POD_SET",
    "WORKLOAD_KINDS",
    "Decision",
    "Graph",
    "Impact",
    "ListRead",
    "RecordError",
    "TestRecord",
    "canonical_path",
    "describe_change",
    "endpoints_key",
    "paths_intersect",
    "select",
    "summary",
]

POD_SET = "pods-of:"
RENDERED = "rendered:"  # prefix of list reads on the rendered objects (see records.py)
_MONITOR_KINDS = frozenset({"ServiceMonitor", "PodMonitor"})
WORKLOAD_KINDS = frozenset(
    {
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
        "Pod",
    }
)
# Objects a pod spec refers to by name, in the workload's namespace.
_REFERENCED_KINDS = frozenset({"ConfigMap", "Secret", "ServiceAccount", "PersistentVolumeClaim"})
_GATEWAY_API = "gateway.networking.k8s.io"
_ISTIO = "networking.istio.io"
_XROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"})
# Read paths that change whenever anything in the object changes: controllers rewrite
# status after every spec change, the API server bumps generation and resourceVersion.
_VOLATILE = ("status", "metadata.generation", "metadata.resourceVersion", "metadata.managedFields")
_FAILED = frozenset({"failed", "error"})
_KNOWN_OUTCOMES = frozenset({"passed", "failed", "error", "skipped", "xfailed", "xpassed"})


# -- dependency records: one model, in `records` -----------------------------------------

# -- field paths -----------------------------------------------------------------------------

# `[...]` parts of a path: a quoted map key (`labels["app.kubernetes.io/name"]`, as the
# sync engine's diff writes label keys) or a list element (`containers[name=app]`, `[0]`).
_BRACKET = re.compile(r"""\[\s*(?:("(?:[^"\\]|\\.)*")|'([^']*)'|([^\]]*))\s*\]""")


@lru_cache(maxsize=16384)
def canonical_path(path: str) -> str:
    """One spelling for the field-path notations that meet here.

    The recorder writes `spec.ports.0.port` or `metadata.labels.app`, the sync engine's
    diff writes `spec.ports[name=http].port` and `metadata.labels["app"]`. Quoted keys
    become dotted segments and every list element becomes `*`: an element chosen by
    index on one side and by name on the other cannot be told apart, so they must be
    taken to be the same element (a false positive, never a false negative).
    `(metadata)` (the plan's "something in metadata") reads as `metadata`.
    """
    text = path.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]

    def bracket(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            try:
                return "." + str(json.loads(m.group(1)))
            except ValueError:
                return "." + m.group(1)[1:-1]
        if m.group(2) is not None:
            return "." + m.group(2)
        return ".*"

    text = _BRACKET.sub(bracket, text)
    return ".".join("*" if s.isdigit() else s for s in text.split(".") if s)


def paths_intersect(a: str, b: str) -> bool:
    """Whether two canonical paths overlap: equal, or one is a prefix of the other at a
    segment boundary (`spec` and `spec.replicas` do; `spec.replica` and `spec.replicas`
    do not). An empty path is the whole object."""
    if not a or not b or a == b:
        return True
    if len(a) < len(b):
        return b.startswith(a) and b[len(a)] == "."
    return a.startswith(b) and a[len(b)] == "."


def _volatile(path: str) -> bool:
    return any(paths_intersect(path, v) for v in _VOLATILE)


# -- small readers of plain objects ----------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dig(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


def _label_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _map(value).items()}


def _split(key: str) -> tuple[str, str, str, str] | None:
    parts = key.split("/", 3)
    if len(parts) != 4 or not parts[1]:
        return None
    return parts[0], parts[1], parts[2], parts[3]


def endpoints_key(namespace: str, service: str) -> str:
    """The node of a Service's endpoints: the key its Endpoints object has."""
    return f"/Endpoints/{namespace}/{service}"


def _owner(key: str) -> str:
    """The object a virtual node belongs to (a pod set's workload, endpoints' Service)."""
    if key.startswith(POD_SET):
        return key[len(POD_SET) :]
    parts = _split(key)
    if parts is not None and parts[0] == "" and parts[1] == "Endpoints":
        return f"/Service/{parts[2]}/{parts[3]}"
    return key


def _label(key: str) -> str:
    """How a node reads in a reason line."""
    if key.startswith(POD_SET):
        return f"pod set of {_label(key[len(POD_SET) :])}"
    for prefix, word in (("chart:", "chart"), ("image:", "image")):
        if key.startswith(prefix):
            return f"{word} {key[len(prefix) :]}"
    parts = _split(key)
    if parts is None:
        return key
    if parts[0] == "" and parts[1] == "Endpoints":
        return f"endpoints of Service/{parts[3]}"
    return short_name(key)


def _pod_template_path(kind: str) -> str:
    if kind == "Pod":
        return ""
    if kind == "CronJob":
        return "spec.jobTemplate.spec.template"
    return "spec.template"


def _pod_template(kind: str, obj: Mapping[str, Any]) -> tuple[dict[str, str], Mapping[str, Any]]:
    """Labels and spec of the pods a workload makes."""
    template: Any = obj
    path = _pod_template_path(kind)
    if path:
        template = _dig(obj, *path.split("."))
    return _label_map(_dig(template, "metadata", "labels")), _map(_dig(template, "spec"))


def _pod_labels_path(kind: str) -> str:
    base = _pod_template_path(kind)
    return f"{base}.metadata.labels" if base else "metadata.labels"


def _image_paths(kind: str) -> tuple[str, ...]:
    base = _pod_template_path(kind)
    spec = f"{base}.spec" if base else "spec"
    return tuple(f"{spec}.{c}.*.image" for c in ("containers", "initContainers"))


def _containers(pod_spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for group in ("containers", "initContainers", "ephemeralContainers"):
        for c in _seq(pod_spec.get(group)):
            if isinstance(c, Mapping):
                yield c


def _pod_refs(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object a pod spec uses by name."""
    yield (
        "ServiceAccount",
        _text(pod_spec.get("serviceAccountName"))
        or _text(pod_spec.get("serviceAccount"))
        or "default",
    )
    for c in _containers(pod_spec):
        for env in _seq(c.get("env")):
            source = _map(_dig(env, "valueFrom"))
            yield "ConfigMap", _text(_dig(source, "configMapKeyRef", "name"))
            yield "Secret", _text(_dig(source, "secretKeyRef", "name"))
        for env_from in _seq(c.get("envFrom")):
            yield "ConfigMap", _text(_dig(env_from, "configMapRef", "name"))
            yield "Secret", _text(_dig(env_from, "secretRef", "name"))
    for volume in _seq(pod_spec.get("volumes")):
        yield "ConfigMap", _text(_dig(volume, "configMap", "name"))
        yield "Secret", _text(_dig(volume, "secret", "secretName"))
        yield "PersistentVolumeClaim", _text(_dig(volume, "persistentVolumeClaim", "claimName"))
        for source in _seq(_dig(volume, "projected", "sources")):
            yield "ConfigMap", _text(_dig(source, "configMap", "name"))
            yield "Secret", _text(_dig(source, "secret", "name"))
    for pull in _seq(pod_spec.get("imagePullSecrets")):
        yield "Secret", _text(_dig(pull, "name"))


def _repository(image: str) -> str:
    """`registry:5000/team/app:tag@sha256:…` → `registry:5000/team/app` (tags ignored)."""
    ref = image.split("@", 1)[0]
    if ref.rfind(":") > ref.rfind("/"):
        ref = ref[: ref.rfind(":")]
    return ref


def _image_matches(a: str, b: str) -> bool:
    """`sms-checker-app` names `localhost:5000/sms-checker-app` and the other way round."""
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)


def _selector(value: Any, *, missing_matches_all: bool) -> list[Requirement] | None:
    """Requirements of a LabelSelector; None = selects nothing.

    A selector devloop cannot parse selects everything: guessing "nothing" could hide a
    dependency, guessing "everything" only runs more tests.
    """
    if value is None:
        return [] if missing_matches_all else None
    if not isinstance(value, Mapping):
        return []
    try:
        return selector_from_label_selector(value)
    except SelectorError:
        return []


def _namespace_scope(spec: Mapping[str, Any], own: str) -> frozenset[str] | None:
    """Namespaces a Prometheus Operator monitor looks in (None = all): `any: true`, else
    `matchNames`, else its own namespace, as the operator resolves it."""
    selector = _map(spec.get("namespaceSelector"))
    if selector.get("any") is True:
        return None
    names = [str(n) for n in _seq(selector.get("matchNames"))]
    return frozenset(names) if names else frozenset({own})


def _istio_host(host: str, namespace: str) -> tuple[str, str] | None:
    """(namespace, service) an Istio host names: `svc` (relative to the referring
    object's namespace), `svc.ns`, `svc.ns.svc[.cluster.local]`; `*` parts are wildcards.
    Hosts outside the mesh (`api.example.com`) name no Service."""
    host = host.strip()
    if not host:
        return None
    if host == "*":
        return "*", "*"
    parts = host.split(".")
    if len(parts) == 1:
        return namespace, host
    if len(parts) == 2 or parts[2] == "svc":
        return parts[1], parts[0]
    return None


def _route_services(
    group: str, kind: str, ns: str, obj: Mapping[str, Any]
) -> Iterator[tuple[str, str]]:
    """(namespace, service) of every Service a routing object sends traffic to."""
    spec = _map(obj.get("spec"))
    if kind == "Ingress":
        backends: list[Any] = [spec.get("defaultBackend"), spec.get("backend")]
        for rule in _seq(spec.get("rules")):
            backends += [
                p.get("backend")
                for p in _seq(_dig(rule, "http", "paths"))
                if isinstance(p, Mapping)
            ]
        for backend in backends:
            name = _text(_dig(backend, "service", "name")) or _text(_dig(backend, "serviceName"))
            if name:
                yield ns, name
    elif group == _ISTIO and kind == "VirtualService":
        hosts = [_text(h) for h in _seq(spec.get("hosts"))]
        for proto in ("http", "tcp", "tls"):
            for route in _seq(spec.get(proto)):
                hosts += [_text(_dig(d, "destination", "host")) for d in _seq(_dig(route, "route"))]
                hosts.append(_text(_dig(route, "mirror", "host")))
                hosts += [
                    _text(_dig(m, "destination", "host")) for m in _seq(_dig(route, "mirrors"))
                ]
        for host in hosts:
            target = _istio_host(host, ns)
            if target is not None:
                yield target
    elif group == _ISTIO and kind == "DestinationRule":
        target = _istio_host(_text(spec.get("host")), ns)
        if target is not None:
            yield target
    elif group == _GATEWAY_API and kind in _XROUTE_KINDS:
        for rule in _seq(spec.get("rules")):
            refs = list(_seq(_dig(rule, "backendRefs")))
            for flt in _seq(_dig(rule, "filters")):
                refs.append(_dig(flt, "requestMirror", "backendRef"))
            for raw in refs:
                ref = _map(raw)
                if _text(ref.get("kind")) in ("", "Service") and _text(ref.get("group")) in (
                    "",
                    "core",
                ):
                    name = _text(ref.get("name"))
                    if name:
                        yield _text(ref.get("namespace")) or ns, name


def _route_gateways(
    group: str, kind: str, ns: str, obj: Mapping[str, Any]
) -> Iterator[tuple[str, str, str]]:
    """(gateway group, namespace, name) of the Gateways a route binds to."""
    spec = _map(obj.get("spec"))
    if group == _ISTIO and kind == "VirtualService":
        for raw in _seq(spec.get("gateways")):
            gw = _text(raw)
            if gw and gw != "mesh":
                gw_ns, _, gw_name = gw.rpartition("/")
                yield _ISTIO, gw_ns or ns, gw_name
    elif group == _GATEWAY_API and kind in _XROUTE_KINDS:
        for raw in _seq(spec.get("parentRefs")):
            ref = _map(raw)
            if _text(ref.get("kind")) in ("", "Gateway") and _text(ref.get("name")):
                yield _GATEWAY_API, _text(ref.get("namespace")) or ns, _text(ref.get("name"))


# -- the graph -------------------------------------------------------------------------------


@dataclass
class _State:
    """How a node changed: directly (`direct` = canonical changed paths, None = whole
    object) and/or `derived` (reached through an edge)."""

    direct: tuple[str, ...] | None = None
    is_direct: bool = False
    derived: bool = False


def _touches(state: _State, prefixes: tuple[str, ...]) -> bool:
    if not state.is_direct:
        return False
    if state.direct is None:
        return True
    return any(paths_intersect(p, q) for p in state.direct for q in prefixes)


# Gates: which changes of an edge's source travel along it.
_Gate = Callable[[_State], bool]


def _always(state: _State) -> bool:
    return True


def _spec(state: _State) -> bool:
    return state.derived or _touches(state, ("spec",))


def _own_spec(state: _State) -> bool:
    # Only a change of the source's own spec: what reaches an HPA, a PDB or a Service
    # through the graph is a change of their status or endpoints, not of what they point at.
    return _touches(state, ("spec",))


def _spec_or_labels(state: _State) -> bool:
    return state.derived or _touches(state, ("spec", "metadata.labels"))


def _content(state: _State) -> bool:
    """Anything but the object's own metadata (a ConfigMap's labels feed no container)."""
    if state.derived:
        return True
    if not state.is_direct:
        return False
    if state.direct is None:
        return True
    return any(p != "metadata" and not p.startswith("metadata.") for p in state.direct)


@dataclass
class _Selecting:
    item: str
    reqs: list[Requirement]
    scope: frozenset[str] | None  # namespaces whose labelled objects it can select; None = all


class _SelectorIndex:
    """Objects that hold a label selector, found from a label set without testing each.

    Each selector is filed under one requirement every matching label set must satisfy
    (`k=v`, each value of `k in (...)`, or `k` exists); a label set then looks up only
    its own pairs and keys. Selectors with no such requirement are always candidates.
    """

    def __init__(self) -> None:
        self._all: list[_Selecting] = []
        self._by_pair: dict[tuple[str, str], list[_Selecting]] = {}
        self._by_key: dict[str, list[_Selecting]] = {}
        self._unfiled: list[_Selecting] = []

    def add(self, item: str, reqs: list[Requirement], scope: frozenset[str] | None) -> None:
        s = _Selecting(item, reqs, scope)
        self._all.append(s)
        for op in ("=", "in", "exists"):
            req = next((r for r in reqs if r.op == op), None)
            if req is None:
                continue
            if op == "exists":
                self._by_key.setdefault(req.key, []).append(s)
            else:
                for value in set(req.values):
                    self._by_pair.setdefault((req.key, value), []).append(s)
            return
        self._unfiled.append(s)

    def query(self, namespace: str, labels: Mapping[str, str] | None) -> Iterator[str]:
        """Items selecting a label set in `namespace`; labels None (unknown) = all in scope."""
        candidates: list[_Selecting]
        if labels is None:
            candidates = self._all
        else:
            candidates = list(self._unfiled)
            for k, v in labels.items():
                candidates += self._by_pair.get((k, v), ())
                candidates += self._by_key.get(k, ())
        for s in candidates:
            if s.scope is not None and namespace not in s.scope:
                continue
            if labels is None or labels_match(s.reqs, labels):
                yield s.item


@dataclass
class Impact:
    """The objects a change reaches.

    `fields`: key → changed field paths (None = whole object); keys are object keys,
    pod sets (`pods-of:<workload key>`) and endpoints (`/Endpoints/<ns>/<service>`).
    `via`: key → reason chain (`endpoints of Service/a ← pod set of Deployment/a ←
    values.yaml`). `labels`: key → the label sets it had before and after (None =
    unknown, matches any selector), for list reads. `changed`: the direct changes.
    """

    fields: dict[str, list[str] | None] = field(default_factory=dict)
    via: dict[str, str] = field(default_factory=dict)
    artifacts: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    labels: dict[str, list[dict[str, str]] | None] = field(default_factory=dict)
    changed: dict[str, list[str] | None] = field(default_factory=dict)


class Graph:
    """Dependencies between desired objects. Build with `Graph.build`.

    Indexes are filed from the dependent's side (routes by the Service they name,
    monitors by selector, workloads by the ConfigMaps they use), so the dependents of
    any body of an object, current or previous, are found by lookups, never by scanning
    every pair of objects.
    """

    def __init__(self) -> None:
        self._objects: dict[str, Mapping[str, Any]] = {}
        self._pod_labels: dict[str, dict[str, str]] = {}  # pod set key -> template labels
        self._pod_sets_by_ns: dict[str, list[str]] = {}
        self._pod_sets_by_pair: dict[tuple[str, str, str], list[str]] = {}
        self._service_endpoints = _SelectorIndex()  # Service selectors -> endpoints keys
        self._service_monitors = _SelectorIndex()
        self._pod_monitors = _SelectorIndex()
        self._pdbs = _SelectorIndex()
        self._routes: dict[tuple[str, str], list[str]] = {}  # (ns, service or "*") -> routes
        self._routes_by_gateway: dict[tuple[str, str, str], list[str]] = {}
        self._refs: dict[tuple[str, str, str], list[str]] = {}  # (kind, ns, name) -> workloads
        self._hpas: dict[tuple[str, str, str], list[str]] = {}  # (ns, kind, name) -> HPAs
        self._workloads: dict[tuple[str, str, str], str] = {}  # (ns, kind, name) -> key
        self._workloads_by_ns: dict[str, list[str]] = {}
        self._by_image_tail: dict[str, list[tuple[str, str]]] = {}  # tail -> (workload, repo)
        self._images_of: dict[str, list[str]] | None = None
        self._image_names: dict[str, list[str]] = {}  # workload -> image names (images_of)
        self._artifact_of: dict[str, str] = {}
        self._artifact_objects: dict[str, list[str]] = {}
        self._edge_cache: dict[str, list[tuple[str, _Gate]]] = {}

    @classmethod
    def build(
        cls,
        objects: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        artifact_of: Mapping[str, str] = {},  # read only
        images_of: Mapping[str, list[str]] | None = None,
    ) -> Graph:
        """The graph of `(object key, object)` pairs. The key's namespace counts, not the
        object's (rendered objects do not have theirs filled in). `artifact_of` maps keys
        to their artifact (for `chart:` dependencies); `images_of` maps image names to the
        workload keys using them, else images are matched by repository (tag ignored)."""
        g = cls()
        for key, obj in objects:
            if _split(key) is None:
                raise ValueError(f"not an object key (group/Kind/namespace/name): {key!r}")
            g._objects[key] = obj
        g._artifact_of = dict(artifact_of)
        for key, artifact in g._artifact_of.items():
            g._artifact_objects.setdefault(artifact, []).append(key)
        if images_of is not None:
            g._images_of = {name: list(keys) for name, keys in images_of.items()}
            for name, keys in g._images_of.items():
                for key in keys:
                    g._image_names.setdefault(key, []).append(name)
        for key, obj in g._objects.items():
            g._index(key, obj)
        return g

    def _index(self, key: str, obj: Mapping[str, Any]) -> None:
        group, kind, ns, name = _split(key) or ("", "", "", "")
        spec = _map(obj.get("spec"))
        if kind in WORKLOAD_KINDS:
            pod_set = POD_SET + key
            labels, pod_spec = _pod_template(kind, obj)
            self._pod_labels[pod_set] = labels
            self._pod_sets_by_ns.setdefault(ns, []).append(pod_set)
            for k, v in labels.items():
                self._pod_sets_by_pair.setdefault((ns, k, v), []).append(pod_set)
            self._workloads[(ns, kind, name)] = key
            self._workloads_by_ns.setdefault(ns, []).append(key)
            for ref_kind, ref_name in set(_pod_refs(pod_spec)):
                if ref_name:
                    self._refs.setdefault((ref_kind, ns, ref_name), []).append(key)
            for c in _containers(pod_spec):
                repo = _repository(_text(c.get("image")))
                if repo:
                    tail = repo.rsplit("/", 1)[-1]
                    self._by_image_tail.setdefault(tail, []).append((key, repo))
        elif group == "" and kind == "Service":
            selector = _label_map(spec.get("selector"))
            # A Service without a selector has its endpoints managed by hand: no pods feed it.
            if selector:
                reqs = [Requirement(k, "=", (v,)) for k, v in selector.items()]
                self._service_endpoints.add(endpoints_key(ns, name), reqs, frozenset({ns}))
        elif group == "monitoring.coreos.com" and kind in ("ServiceMonitor", "PodMonitor"):
            reqs = _selector(spec.get("selector"), missing_matches_all=True) or []
            index = self._service_monitors if kind == "ServiceMonitor" else self._pod_monitors
            index.add(key, reqs, _namespace_scope(spec, ns))
        elif kind == "PodDisruptionBudget":
            pdb_reqs = _selector(spec.get("selector"), missing_matches_all=False)
            if pdb_reqs is not None:
                self._pdbs.add(key, pdb_reqs, frozenset({ns}))
        elif kind == "HorizontalPodAutoscaler":
            ref = _map(spec.get("scaleTargetRef"))
            self._hpas.setdefault((ns, _text(ref.get("kind")), _text(ref.get("name"))), []).append(
                key
            )
        for target in set(_route_services(group, kind, ns, obj)):
            self._routes.setdefault(target, []).append(key)
        for gateway in set(_route_gateways(group, kind, ns, obj)):
            self._routes_by_gateway.setdefault(gateway, []).append(key)

    # -- edges ---------------------------------------------------------------------------------

    def _pod_sets_selected(self, ns: str, reqs: list[Requirement] | None) -> list[str]:
        """Pod sets in `ns` a selector picks; reqs None (unknown) = all of them."""
        if reqs is None:
            return list(self._pod_sets_by_ns.get(ns, ()))
        candidates: Iterable[str] = self._pod_sets_by_ns.get(ns, ())
        for req in reqs:
            if req.op == "=":
                candidates = self._pod_sets_by_pair.get((ns, req.key, req.values[0]), ())
                break
            if req.op == "in":
                candidates = {
                    ps
                    for v in req.values
                    for ps in self._pod_sets_by_pair.get((ns, req.key, v), ())
                }
                break
        return [ps for ps in candidates if labels_match(reqs, self._pod_labels[ps])]

    def _edges(self, key: str, body: Mapping[str, Any] | None) -> list[tuple[str, _Gate]]:
        """Dependents of `key` given a body of its owner object (None = unknown body:
        every selector in scope matches, every reference by name still counts)."""
        out: list[tuple[str, _Gate]] = []
        if key.startswith(POD_SET):
            parts = _split(key[len(POD_SET) :])
            if parts is None:
                return out
            kind, ns = parts[1], parts[2]
            labels = None if body is None else _pod_template(kind, body)[0]
            for index in (self._service_endpoints, self._pod_monitors, self._pdbs):
                out += [(t, _always) for t in index.query(ns, labels)]
            return out
        parts = _split(key)
        if parts is None:
            return out
        group, kind, ns, name = parts
        if group == "" and kind == "Endpoints":
            labels = None if body is None else _label_map(_dig(body, "metadata", "labels"))
            return [(t, _always) for t in self._service_monitors.query(ns, labels)]
        spec = _map(_dig(body, "spec"))
        if kind in WORKLOAD_KINDS:
            # A bare Pod's own metadata is its pods' metadata; other workloads' is not copied.
            out.append((POD_SET + key, _always if kind == "Pod" else _spec))
            out += [(hpa, _spec) for hpa in self._hpas.get((ns, kind, name), ())]
            pod_labels = None if body is None else _pod_template(kind, body)[0]
            out += [(pdb, _spec) for pdb in self._pdbs.query(ns, pod_labels)]
        if group == "" and kind == "Service":
            out.append((endpoints_key(ns, name), _spec_or_labels))
            for target in ((ns, name), (ns, "*"), ("*", "*")):
                out += [(route, _own_spec) for route in self._routes.get(target, ())]
            labels = None if body is None else _label_map(_dig(body, "metadata", "labels"))
            out += [(sm, _spec_or_labels) for sm in self._service_monitors.query(ns, labels)]
        elif group == "" and kind in _REFERENCED_KINDS:
            out += [(w, _content) for w in self._refs.get((kind, ns, name), ())]
        elif kind == "HorizontalPodAutoscaler":
            if body is None:
                targets = list(self._workloads_by_ns.get(ns, ()))
            else:
                ref = _map(spec.get("scaleTargetRef"))
                found = self._workloads.get((ns, _text(ref.get("kind")), _text(ref.get("name"))))
                targets = [found] if found else []
            out += [(t, _own_spec) for t in targets]
        elif kind == "PodDisruptionBudget":
            reqs = (
                None if body is None else _selector(spec.get("selector"), missing_matches_all=False)
            )
            if body is None or reqs is not None:
                for ps in self._pod_sets_selected(ns, reqs):
                    out.append((ps[len(POD_SET) :], _own_spec))
        elif kind == "Gateway" and group in (_ISTIO, _GATEWAY_API):
            out += [(r, _own_spec) for r in self._routes_by_gateway.get((group, ns, name), ())]
        return out

    def _current_body(self, key: str) -> Mapping[str, Any] | None:
        return self._objects.get(_owner(key))

    def _current_edges(self, key: str) -> list[tuple[str, _Gate]]:
        cached = self._edge_cache.get(key)
        if cached is None:
            cached = self._edges(key, self._current_body(key))
            self._edge_cache[key] = cached
        return cached

    def dependents(self, key: str) -> set[str]:
        """Nodes one edge away from `key` (whatever changed in it)."""
        if _owner(key) in self._objects:
            return {t for t, _ in self._current_edges(key)}
        return {t for t, _ in self._edges(key, None)}

    @property
    def keys(self) -> set[str]:
        """Every node: the objects, their pod sets and the endpoints of their Services."""
        out = set(self._objects) | set(self._pod_labels)
        for key in self._objects:
            parts = _split(key)
            if parts and parts[0] == "" and parts[1] == "Service":
                out.add(endpoints_key(parts[2], parts[3]))
        return out

    def pod_labels(self, key: str) -> dict[str, str] | None:
        """Pod template labels of a workload key or a pod-set key."""
        return self._pod_labels.get(key if key.startswith(POD_SET) else POD_SET + key)

    # -- closure -------------------------------------------------------------------------------

    def _selection_paths(self, key: str) -> tuple[str, ...]:
        """Paths of `key`'s owner that decide which dependents its edges pick."""
        owner = _owner(key)
        parts = _split(owner)
        kind = parts[1] if parts else ""
        if key.startswith(POD_SET):
            return (_pod_labels_path(kind),)
        if kind in WORKLOAD_KINDS:
            return ("metadata.labels", _pod_labels_path(kind))
        if kind == "PodDisruptionBudget":
            return ("metadata.labels", "spec.selector")
        if kind == "HorizontalPodAutoscaler":
            return ("metadata.labels", "spec.scaleTargetRef")
        return ("metadata.labels",)

    def _bodies(
        self,
        key: str,
        states: Mapping[str, _State],
        previous: Mapping[str, Mapping[str, Any]] | None,
        paths: tuple[str, ...] | None = None,
    ) -> list[Mapping[str, Any] | None]:
        """The bodies of `key`'s owner whose edges (or labels) count: as rendered now, as
        applied before, and None (unknown) when the owner changed at `paths` (by default
        where it selects) and its old body is not known."""
        owner = _owner(key)
        out: list[Mapping[str, Any] | None] = []
        current = self._objects.get(owner)
        if current is not None:
            out.append(current)
        old = None if previous is None else previous.get(owner)
        if old is not None:
            out.append(old)
        if current is None and old is None:
            out.append(None)
        elif previous is None:
            state = states.get(owner)
            if state is not None and _touches(state, paths or self._selection_paths(key)):
                out.append(None)
        return out

    def closure(
        self,
        changed: Mapping[str, list[str] | None],
        *,
        cause: str | Mapping[str, str] = "",
        previous: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Impact:
        """Everything the changes reach.

        `changed`: object key → changed field paths (None or [] = whole object: created,
        deleted, or unknown), plus `chart:<artifact>` (every object of the artifact
        changed) and `image:<name>` (the image was rebuilt) entries. `cause` ends every
        reason chain (`values.yaml`), one text or one per changed key. `previous`: the
        bodies applied before (from the state), for old labels and old selectors; keys
        absent from it are new. Without it, old labels are unknown where they changed.
        """
        states: dict[str, _State] = {}
        via: dict[str, str] = {}
        impact = Impact()
        queue: deque[str] = deque()

        def cause_of(key: str) -> str:
            return cause.get(key, "") if isinstance(cause, Mapping) else cause

        def chain(head: str, rest: str) -> str:
            return f"{head} ← {rest}" if rest else head

        def reach(target: str, rest: str) -> None:
            state = states.get(target)
            if state is None:
                states[target] = _State(derived=True)
                via[target] = chain(_label(target), rest)
                queue.append(target)
            elif not state.derived:
                state.derived = True
                queue.append(target)

        def direct(key: str, fields: list[str] | None, rest: str) -> None:
            canon = tuple(canonical_path(f) for f in fields) if fields else None
            state = states.get(key)
            if state is None:
                states[key] = _State(direct=canon, is_direct=True)
                via[key] = chain(_label(key), rest)
            elif not state.is_direct:
                state.direct, state.is_direct = canon, True
            elif state.direct is not None:
                state.direct = None if canon is None else (*state.direct, *canon)
            old = impact.changed.get(key, [])
            impact.changed[key] = None if not fields or old is None else [*old, *fields]
            queue.append(key)

        charts: list[str] = []
        images: list[str] = []
        for key, fields in changed.items():
            if key.startswith("chart:"):
                charts.append(key)
            elif key.startswith("image:"):
                images.append(key)
            else:
                direct(key, None if fields is None else list(fields), cause_of(key))
        for root in charts:
            name = root[len("chart:") :]
            impact.artifacts.add(name)
            rest = chain(_label(root), cause_of(root))
            for key in self._artifact_objects.get(name, ()):
                direct(key, None, rest)
        for root in images:
            name = root[len("image:") :]
            impact.images.add(name)
            rest = chain(_label(root), cause_of(root))
            for key in self._workloads_of_image(name):
                reach(key, rest)

        while queue:
            key = queue.popleft()
            state = states[key]
            owner_current = _owner(key) in self._objects
            for body in self._bodies(key, states, previous):
                edges = (
                    self._current_edges(key)
                    if owner_current and body is self._objects[_owner(key)]
                    else self._edges(key, body)
                )
                for target, gate in edges:
                    if not gate(state):
                        continue
                    # A pod set or endpoints node stands in for its owner in the chain:
                    # "pod set of Deployment/a ← values.yaml", not "… ← Deployment/a ← …".
                    head = _label(key)
                    rest = via[key]
                    if _owner(target) == key and rest.startswith(head):
                        rest = rest[len(head) :].removeprefix(" ← ")
                    reach(target, rest)

        for key, state in states.items():
            impact.fields[key] = None if state.derived else impact.changed.get(key)
            parts = _split(key)
            if state.derived and parts is not None and parts[1] in _MONITOR_KINDS:
                # What a reached monitor changes is whom it scrapes, not its own fields:
                # `status.targets` stands for that, read by target queries, not by tests
                # of the monitor's spec.
                direct_fields = impact.changed.get(key) if state.is_direct else []
                impact.fields[key] = (
                    None if direct_fields is None else [*direct_fields, "status.targets"]
                )
            impact.labels[key] = self._label_sets(key, states, previous)
            artifact = self._artifact_of.get(_owner(key))
            if artifact is not None:
                impact.artifacts.add(artifact)
            if state.is_direct:
                impact.images.update(self._changed_images(key, state, previous))
        impact.via = via
        return impact

    def _label_sets(
        self,
        key: str,
        states: Mapping[str, _State],
        previous: Mapping[str, Mapping[str, Any]] | None,
    ) -> list[dict[str, str]] | None:
        """Labels a list read could have seen on `key`, before and after the change
        (None: unknown, so any selector may have matched)."""
        owner = _owner(key)
        parts = _split(owner)
        if parts is None:
            return None
        kind = parts[1]
        pods = key.startswith(POD_SET)
        path = _pod_labels_path(kind) if pods else "metadata.labels"
        sets: list[dict[str, str]] = []
        for body in self._bodies(key, states, previous, (path,)):
            if body is None:
                return None
            if pods:
                labels = _pod_template(kind, body)[0]
            else:
                labels = _label_map(_dig(body, "metadata", "labels"))
                if owner != key:  # endpoints: EndpointSlices carry the Service's name
                    labels["kubernetes.io/service-name"] = parts[3]
            if labels not in sets:
                sets.append(labels)
        return sets

    def _workloads_of_image(self, name: str) -> list[str]:
        if self._images_of is not None:
            return list(self._images_of.get(name, ()))
        tail = _repository(name).rsplit("/", 1)[-1]
        return [w for w, repo in self._by_image_tail.get(tail, ()) if _image_matches(repo, name)]

    def _changed_images(
        self, key: str, state: _State, previous: Mapping[str, Mapping[str, Any]] | None
    ) -> set[str]:
        """Images a direct change of a workload switched (new tag, new image)."""
        parts = _split(key)
        if key.startswith(POD_SET) or parts is None or parts[1] not in WORKLOAD_KINDS:
            return set()
        if not _touches(state, _image_paths(parts[1])):
            return set()
        if self._images_of is not None:
            return set(self._image_names.get(key, ()))
        out: set[str] = set()
        for body in (self._objects.get(key), None if previous is None else previous.get(key)):
            if body is not None:
                pod_spec = _pod_template(parts[1], body)[1]
                out.update(_repository(_text(c.get("image"))) for c in _containers(pod_spec))
        out.discard("")
        return out


# -- selection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Whether one test runs, and why, in one line. `cause` groups reasons for the
    summary: no-record | failed | outcome | file | always | declared | reads | lists | none."""

    nodeid: str
    run: bool
    reason: str
    cause: str = ""


_IMPACT_CAUSES = ("declared", "reads", "lists")
_OTHER_CAUSES = (
    ("no-record", "with no record yet"),
    ("failed", "failed last time"),
    ("outcome", "with an unknown last outcome"),
    ("file", "whose file changed"),
    ("always", "marked always"),
)


class _Matcher:
    """An impact indexed for the questions records ask, with answers cached: many tests
    read the same objects and make the same lists."""

    def __init__(self, impact: Impact) -> None:
        self.impact = impact
        self._by_kind_name: dict[tuple[str, str], list[str]] = {}
        self._by_kind_ns_name: dict[tuple[str, str, str], list[str]] = {}
        self._by_gk_ns: dict[tuple[str, str], list[str]] = {}
        self._by_kind_ns: dict[tuple[str, str], list[str]] = {}
        self._by_ns: dict[str, list[str]] = {}
        self._pod_sets_by_ns: dict[str, list[tuple[str, str, str]]] = {}  # key, kind, name
        self._endpoints_by_ns: dict[str, list[tuple[str, str]]] = {}  # key, service name
        self._object_cache: dict[tuple[str, tuple[str, ...] | None], str | None] = {}
        self._list_cache: dict[ListRead, str | None] = {}
        self._changed_canon: dict[str, list[tuple[str, str]]] = {}
        for key in impact.fields:
            owner = _owner(key)
            parts = _split(owner)
            if parts is None:
                continue
            group, kind, ns, name = parts
            self._by_ns.setdefault(ns, []).append(key)
            if key.startswith(POD_SET):
                self._pod_sets_by_ns.setdefault(ns, []).append((key, kind, name))
                continue
            if owner != key:  # endpoints
                self._endpoints_by_ns.setdefault(ns, []).append((key, name))
                group, kind = "", "Endpoints"
            self._by_kind_name.setdefault((kind.lower(), name), []).append(key)
            self._by_kind_ns_name.setdefault((kind.lower(), ns, name), []).append(key)
            self._by_gk_ns.setdefault((f"{group}/{kind}", ns), []).append(key)
            self._by_kind_ns.setdefault((kind, ns), []).append(key)

    # -- reason texts --------------------------------------------------------------------------

    def _why(self, key: str) -> str:
        """`changed by values.yaml` for a direct change, `reached from pod set of
        Deployment/a ← values.yaml` for a node the graph reached."""
        chain = self.impact.via.get(key, _label(key))
        head = _label(key)
        rest = chain[len(head) :].removeprefix(" ← ") if chain.startswith(head) else chain
        if not rest:
            return "which changed"
        return f"changed by {rest}" if key in self.impact.changed else f"reached from {rest}"

    # -- declared dependencies -----------------------------------------------------------------

    def declared(self, dep: str) -> str | None:
        dep = dep.strip()
        if dep.startswith("chart:"):
            name = dep[len("chart:") :]
            return f"declares {dep}, which changed" if name in self.impact.artifacts else None
        if dep.startswith("image:"):
            name = dep[len("image:") :]
            if any(_image_matches(i, name) for i in self.impact.images):
                return f"declares {dep}, which changed"
            return None
        parts = dep.split("/")
        keys: list[str]
        if len(parts) == 2:
            keys = self._by_kind_name.get((parts[0].lower(), parts[1]), [])
        elif len(parts) == 3:
            keys = self._by_kind_ns_name.get((parts[0].lower(), parts[1], parts[2]), [])
        elif len(parts) == 4:
            keys = [dep] if dep in self.impact.fields else []
        else:
            # When in doubt, run: a dependency devloop cannot read may be a hit.
            return f"declares {dep!r}, which devloop cannot resolve (Kind/name, chart:X, image:X)"
        if not keys:
            return None
        return f"declares {dep}, {self._why(keys[0])}"

    # -- object reads --------------------------------------------------------------------------

    def read(self, key: str, paths: list[str] | None) -> str | None:
        cache_key = (key, None if paths is None else tuple(paths))
        if cache_key in self._object_cache:
            return self._object_cache[cache_key]
        found = self._read(key, paths)
        self._object_cache[cache_key] = found
        return found

    def _read(self, key: str, paths: list[str] | None) -> str | None:
        if key in self.impact.fields:
            return self._field_hit(key, paths)
        parts = _split(key)
        if parts is None:
            return None
        owner = self._generated_by(*parts)
        if owner is None:
            return None
        return f"reads {parts[1]}/{parts[3]}: {self.impact.via.get(owner, _label(owner))}"

    def _field_hit(self, key: str, paths: list[str] | None) -> str | None:
        changed = self.impact.fields[key]
        label = _label(key)
        if paths is not None and not paths:
            # The recorder's empty list: the test saw the object exist and read nothing in
            # it. Only a creation or deletion meets that, and those arrive as whole-object
            # direct changes (an unknown change does too: when in doubt, run).
            if key in self.impact.changed and self.impact.changed[key] is None:
                return f"reads {label} (that it exists), {self._why(key)}"
            return None
        if paths is None or changed is None:
            shown = f" {paths[0]}" if paths else ""
            return f"reads {label}{shown}, {self._why(key)}"
        canon = self._changed_canon.get(key)
        if canon is None:
            canon = [(canonical_path(c), c) for c in changed]
            self._changed_canon[key] = canon
        for path in paths:
            cp = canonical_path(path)
            if _volatile(cp):
                what = ", ".join(changed[:2]) + (
                    f" +{len(changed) - 2}" if len(changed) > 2 else ""
                )
                return f"reads {label} {path}, {self._why(key)} ({what})"
            for cc, original in canon:
                if paths_intersect(cp, cc):
                    extra = "" if original == path else f" ({original})"
                    return f"reads {label} {path}, {self._why(key)}{extra}"
        return None

    def _generated_by(self, group: str, kind: str, ns: str, name: str) -> str | None:
        """The impacted pod set or endpoints a generated object (a workload's Pod,
        ReplicaSet or Job, a Service's EndpointSlice) comes from, judged by its name."""
        owners: frozenset[str]
        if group == "" and kind == "Pod":
            owners = WORKLOAD_KINDS - {"Pod"}
        elif group == "apps" and kind == "ReplicaSet":
            owners = frozenset({"Deployment"})
        elif group == "apps" and kind == "ControllerRevision":
            owners = frozenset({"StatefulSet", "DaemonSet"})
        elif group == "batch" and kind == "Job":
            owners = frozenset({"CronJob"})
        elif group == "discovery.k8s.io" and kind == "EndpointSlice":
            for key, service in self._endpoints_by_ns.get(ns, ()):
                if name == service or name.startswith(service + "-"):
                    return key
            return None
        else:
            return None
        for key, owner_kind, owner_name in self._pod_sets_by_ns.get(ns, ()):
            if owner_kind in owners and name.startswith(owner_name + "-"):
                return key
        return None

    # -- list reads ----------------------------------------------------------------------------

    def listed(self, lr: ListRead) -> str | None:
        if lr in self._list_cache:
            return self._list_cache[lr]
        found = self._listed(lr)
        self._list_cache[lr] = found
        return found

    def _candidates(self, lr: ListRead) -> Iterator[tuple[str, bool]]:
        """Impacted nodes a list of this kind can contain, and whether their labels count
        (a Job's own labels are not its pods': those are taken as unknown)."""
        namespaces = [lr.namespace] if lr.namespace is not None else list(self._by_ns)
        gk = lr.group_kind
        rendered = gk.startswith(RENDERED)
        gk = gk.removeprefix(RENDERED)
        kind = gk.rpartition("/")[2]
        owners: tuple[str, ...] = ()
        if rendered:
            pass  # rendered lists hold rendered objects only: no pods, no endpoints
        elif gk in ("/Pod", "Pod"):
            owners = tuple(WORKLOAD_KINDS)
        elif gk in ("apps/ReplicaSet", "ReplicaSet"):
            owners = ("Deployment",)
        elif gk in ("batch/Job", "Job"):
            owners = ("CronJob",)
        for ns in namespaces:
            if gk == "*" or kind == "Event":
                # Events follow any change; a wildcard read is the recorder saying
                # "this test saw something it could not describe".
                for key in self._by_ns.get(ns, ()):
                    yield key, False
                continue
            if owners:
                for key, owner_kind, _ in self._pod_sets_by_ns.get(ns, ()):
                    if owner_kind in owners:
                        yield key, kind != "Job"
            if not rendered and gk in (
                "/Endpoints",
                "Endpoints",
                "discovery.k8s.io/EndpointSlice",
                "EndpointSlice",
            ):
                for key, _ in self._endpoints_by_ns.get(ns, ()):
                    yield key, True
                continue
            same = (
                self._by_gk_ns.get((gk, ns), ())
                if "/" in gk
                else self._by_kind_ns.get((gk, ns), ())
            )
            for key in same:
                if self._membership_may_change(key):
                    yield key, True

    def _membership_may_change(self, key: str) -> bool:
        """Whether a change can add, remove or relabel `key` in a list of its kind.

        Field reads of listed items are recorded under each item's own key, so a list
        read needs to follow only membership: creation, deletion, labels, names.
        """
        fields = self.impact.fields.get(key)
        if fields is None:
            return True
        return any(
            paths_intersect(f, m) for f in fields for m in ("metadata.labels", "metadata.name")
        )

    def _listed(self, lr: ListRead) -> str | None:
        try:
            reqs: list[Requirement] | None = parse_label_selector(lr.selector)
        except SelectorError:
            reqs = None  # a selector devloop cannot parse could match anything
        for key, labels_count in self._candidates(lr):
            sets = self.impact.labels.get(key) if labels_count else None
            if (
                reqs is None
                or not labels_count
                or sets is None
                or any(labels_match(reqs, s) for s in sets)
            ):
                kind = lr.group_kind.rpartition("/")[2] or lr.group_kind
                sel = f" {lr.selector}" if lr.selector else ""
                where = f" in {lr.namespace}" if lr.namespace is not None else " in all namespaces"
                return f"lists {kind}{sel}{where}: {self.impact.via.get(key, _label(key))}"
        return None


def _default_file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def select(
    records: Mapping[str, TestRecord | None],
    nodeids: Iterable[str],
    impact: Impact,
    *,
    changed_files: Iterable[str] = frozenset(),
    file_of: Callable[[str], str] | None = None,
    current_file_digests: Mapping[str, str] = {},  # read only
) -> list[Decision]:
    """One decision per node id, in order; the reason names the first cause that holds.

    A test runs when it has no record, failed (or errored) last time, its file changed
    (its digest differs from the recorded one, or its file or a conftest above it is in
    `changed_files`, paths as `file_of(nodeid)` gives them: the node id's path by
    default), it is marked always, a declared dependency is impacted, an object it read
    meets the impact at field level, or a list it made can contain an impacted object.
    """
    match = _Matcher(impact)
    file_of = file_of or _default_file_of
    changed = {str(PurePosixPath(f)) for f in changed_files}
    conftest_dirs = {
        str(PurePosixPath(f).parent) for f in changed if PurePosixPath(f).name == "conftest.py"
    }
    out: list[Decision] = []
    by_path: dict[str, str | None] = {}  # a file's changed-files reason, once per file
    for nodeid in nodeids:
        rec = records.get(nodeid)
        if rec is None:
            out.append(Decision(nodeid, True, "no record yet", "no-record"))
            continue
        if rec.outcome in _FAILED:
            text = "failed last time" if rec.outcome == "failed" else "errored last time"
            out.append(Decision(nodeid, True, text, "failed"))
            continue
        if rec.outcome not in _KNOWN_OUTCOMES:
            out.append(
                Decision(nodeid, True, f"last outcome {rec.outcome!r} is unknown", "outcome")
            )
            continue
        file_reason = _file_reason(
            nodeid, rec, file_of, changed, conftest_dirs, current_file_digests, by_path
        )
        if file_reason is not None:
            out.append(Decision(nodeid, True, file_reason, "file"))
            continue
        if rec.always:
            out.append(Decision(nodeid, True, "marked always", "always"))
            continue
        decision = _affected(nodeid, rec, match)
        out.append(decision or Decision(nodeid, False, "not affected", "none"))
    return out


def _file_reason(
    nodeid: str,
    rec: TestRecord,
    file_of: Callable[[str], str],
    changed: set[str],
    conftest_dirs: set[str],
    digests: Mapping[str, str],
    by_path: dict[str, str | None],
) -> str | None:
    current = digests.get(nodeid)
    if current is not None and current != rec.file_digest:
        return "its file changed"
    if not changed:
        return None
    file = file_of(nodeid)
    if file not in by_path:
        by_path[file] = _changed_file_reason(PurePosixPath(file), changed, conftest_dirs)
    return by_path[file]


def _changed_file_reason(
    path: PurePosixPath, changed: set[str], conftest_dirs: set[str]
) -> str | None:
    if str(path) in changed:
        return "its file changed"
    for parent in path.parents:
        if str(parent) in conftest_dirs:
            return f"{parent / 'conftest.py'} changed"
    return None


class ReadsMatcher:
    """Whether any of a set of merged reads meets an impact (`selection.prefilter`'s
    per-file summary): a test is affected when one of its declared dependencies, object
    reads or list reads is, so a file's tests are all unaffected exactly when none of
    the distinct reads of all of them is."""

    def __init__(self, impact: Impact) -> None:
        self._match = _Matcher(impact)

    def affected(
        self,
        declared: Iterable[str],
        objects: Iterable[tuple[str, list[str] | None]],
        lists: Iterable[ListRead],
    ) -> bool:
        m = self._match
        return (
            any(m.declared(d) is not None for d in declared)
            or any(m.read(k, p) is not None for k, p in objects)
            or any(m.listed(lr) is not None for lr in lists)
        )


def _affected(nodeid: str, rec: TestRecord, match: _Matcher) -> Decision | None:
    for dep in rec.declared:
        reason = match.declared(dep)
        if reason is not None:
            return Decision(nodeid, True, reason, "declared")
    for key, paths in rec.objects.items():
        reason = match.read(key, paths)
        if reason is not None:
            return Decision(nodeid, True, reason, "reads")
    for lr in rec.lists:
        reason = match.listed(lr)
        if reason is not None:
            return Decision(nodeid, True, reason, "lists")
    return None


def nearest_change(rec: TestRecord, impact: Impact) -> str:
    """For `--devloop-explain` on a skipped test: what it read, and the change nearest to
    it that it was compared against (same object, else same kind, else same namespace,
    else any): `reads Deployment/x spec.replicas; nearest change: Deployment/x
    spec.template.metadata.annotations`."""

    def fields_text(fields: list[str] | None) -> str:
        if fields is None:
            return " (whole object)"
        more = f" +{len(fields) - 2}" if len(fields) > 2 else ""
        return f" {', '.join(fields[:2])}{more}" if fields else ""

    reads = [(k, p) for k, p in rec.objects.items()]
    changed = [k for k in impact.fields if _split(k) is not None]
    if reads:
        key, paths = reads[0]
        read_text = f"reads {_label(key)}{fields_text(paths)}"
    elif rec.lists:
        lr = rec.lists[0]
        where = f" in {lr.namespace}" if lr.namespace is not None else " in all namespaces"
        read_text = f"lists {lr.group_kind}{' ' + lr.selector if lr.selector else ''}{where}"
    else:
        read_text = "reads nothing recorded from the cluster"
    if not changed:
        return f"{read_text}; nothing changed"

    def rank(candidate: str) -> int:
        parts = _split(candidate) or ("", "", "", "")
        best = 4
        for key, _ in reads:
            read_parts = _split(key) or ("", "", "", "")
            if candidate == key:
                return 0
            if parts[1] == read_parts[1]:
                best = min(best, 1 if parts[2] == read_parts[2] else 2)
            elif parts[2] == read_parts[2]:
                best = min(best, 3)
        for lr in rec.lists:
            if lr.group_kind.rpartition("/")[2] == parts[1]:
                best = min(best, 1)
        return best

    nearest = min(changed, key=rank)
    return f"{read_text}; nearest change: {_label(nearest)}{fields_text(impact.fields[nearest])}"


def describe_change(changed: Mapping[str, list[str] | None], cause: str, *, limit: int = 3) -> str:
    """`values.yaml → Deployment/sms-checker-app (spec.replicas)`, for `summary`."""
    items: list[str] = []
    for key, fields in list(changed.items())[:limit]:
        label = _label(key)
        if fields:
            more = f" +{len(fields) - 2}" if len(fields) > 2 else ""
            label += f" ({', '.join(fields[:2])}{more})"
        items.append(label)
    if len(changed) > limit:
        items.append(f"+{len(changed) - limit} more")
    what = ", ".join(items) or "nothing"
    return f"{cause} → {what}" if cause else what


def summary(decisions: Iterable[Decision], impact_reason: str) -> str:
    """The header line: `devloop: 2 of 14 tests affected by values.yaml → Deployment/a
    (spec.replicas)`, naming the other reasons tests run when there are any."""
    decisions = list(decisions)
    run = [d for d in decisions if d.run]
    counts = Counter(d.cause for d in run)
    affected = sum(counts[c] for c in _IMPACT_CAUSES)
    by = f" by {impact_reason}" if impact_reason else ""
    head = f"devloop: {len(run)} of {len(decisions)} tests"
    others = [f"{counts[c]} {text}" for c, text in _OTHER_CAUSES if counts[c]]
    if not others:
        return f"{head} affected{by}"
    parts = ([f"{affected} affected{by}"] if affected else []) + others
    return f"{head} selected: {'; '.join(parts)}"
