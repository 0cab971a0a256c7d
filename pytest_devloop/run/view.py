"""The objects tests read through: the `cluster` and `rendered` fixtures, every read recorded.

Owns:

- `ObjectView` / `ListView`: read-only views of one object's JSON that record the field
  paths a test actually reads, so a test that reads only `spec.replicas` is not re-run
  for an annotation change. Where field precision would be unsound the view records a
  coarser path (see "What a read records" below).
- `Cluster`: reads from a live cluster through `kube.Kube` (get, list, workloads,
  services' endpoints, logs, events), kind names resolved like kubectl resolves them
  (Kind, plural, singular, short name, `Kind.group`, custom kinds via discovery).
- `Rendered`: the same reads over the desired objects of every artifact, without a
  cluster, for checks such as "the chart sets 3 replicas" or "every container has limits".

What a read records (into the `records.Recorder` shared by both):

- A field (`view.spec.replicas`, `view["spec"]["replicas"]`): its dotted path,
  `spec.replicas`, rendered as `embedded.apply.dotted_path` renders changed paths.
- A list (`containers`): the list's path. Precision stops at lists: an item's identity
  in a change (`containers[name=app]`) cannot be tied to a position read here.
- A whole node (`len`, iteration, `keys()`, `items()`, `dict(view)`, `==`, `repr`,
  `.raw`, the truth value of a sub-node): that node's path; at the root, the whole
  object (None).
- Anything under `status` (and `metadata.generation`) also records `spec`: status is
  computed from the spec, so a test reading `readyReplicas` depends on a replicas
  change. `metadata.resourceVersion` and `managedFields` change with every write: the
  whole object.
- `cluster.get()` of an existing object records its key with no paths (it exists); of a
  missing one, the whole object (its creation must re-run the test). A list records a
  `ListRead`; the items' fields record under their own keys.

Not recorded: `Cluster.api_client` (the raw `kubernetes` client), declared by hand with
`Cluster.depends_on`.
"""

from __future__ import annotations

import builtins
import copy
import difflib
import functools
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from pytest_devloop.cluster.kube import ApiResource, KubeError, base_path
from pytest_devloop.selection.records import (
    ANY_KIND,
    RENDERED,
    ListRead,
    Recorder,
    normalize_selector,
    selector_matches,
)

if TYPE_CHECKING:
    from pytest_devloop.cluster.kube import Kube
    from pytest_devloop.sync.readiness import Readiness

__all__ = ["Cluster", "ListView", "ObjectView", "Rendered", "ServiceView", "WorkloadView"]

Obj = dict[str, Any]

# -- paths -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _is_identifier(name: str) -> bool:
    # The rule of `embedded.apply.dotted_path`, so recorded paths and the changed paths of
    # a plan compare as plain strings.
    return bool(name) and all(ch.isalnum() or ch in "_-" for ch in name)


def _child(path: str, key: str) -> str:
    if _is_identifier(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] in ".[")


def _dependencies(path: str) -> tuple[str, ...] | None:
    """What reading `path` depends on: the paths to record, or None for the whole object."""
    if not path or path == "metadata":
        return None
    if _under(path, "status") or _under(path, "metadata.generation"):
        return (path, "spec")
    if _under(path, "metadata.resourceVersion") or _under(path, "metadata.managedFields"):
        return None
    return (path,)


class _Sink:
    """Where the reads of one object's views go: the recorder, under the object's key."""

    __slots__ = ("key", "recorder")

    def __init__(self, recorder: Recorder, key: str) -> None:
        self.recorder = recorder
        self.key = key

    def read(self, path: str) -> None:
        deps = _dependencies(path)
        if deps is None:
            self.recorder.object_read(self.key, None)
        elif len(deps) == 1:
            self.recorder.object_read(self.key, deps[0])
        else:
            self.recorder.object_paths(self.key, deps)


_SNAKE = re.compile(r"_([a-z0-9])")


@functools.lru_cache(maxsize=4096)
def _camel(name: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def _field_name(data: Mapping[str, Any], name: str) -> str | None:
    """The key `name` means: itself, its camelCase, or a match ignoring case and `_`.

    The last form finds `podIP` for `pod_ip` and `clusterIPs` for `cluster_ips`, as the
    `kubernetes` client's models name them.
    """
    if name in data:
        return name
    camel = _camel(name)
    if camel in data:
        return camel
    folded = name.replace("_", "").lower()
    for key in data:
        if key.replace("_", "").lower() == folded:
            return key
    return None


_REDACTED = "<redacted>"


def _redact(data: Any, path: str, secret: bool) -> Any:
    """A copy for display: a Secret's `data`/`stringData` values hidden."""
    if not secret:
        return data
    if path in ("data", "stringData") and isinstance(data, dict):
        return dict.fromkeys(data, _REDACTED)
    if not path and isinstance(data, dict):
        return {
            k: dict.fromkeys(v, _REDACTED)
            if k in ("data", "stringData") and isinstance(v, dict)
            else v
            for k, v in data.items()
        }
    if _under(path, "data") or _under(path, "stringData"):
        return _REDACTED
    return data


def _wrap(value: Any, path: str, sink: _Sink | None, secret: bool) -> Any:
    """Return a child value; record it unless it is a mapping (recorded when read)."""
    if isinstance(value, dict):
        return ObjectView(value, sink, path, secret=secret)
    if sink is not None:
        sink.read(path)
    if isinstance(value, list):
        return ListView(value, secret=secret and _under(path, "data"))
    return value


# -- views -----------------------------------------------------------------------------------


class ObjectView(Mapping[str, Any]):
    """Read-only view of one object (or one of its mappings); records what is read.

    Subscription (`view["spec"]["replicas"]`) and attributes (`view.spec.replicas`,
    snake_case or camelCase: `view.status.ready_replicas`) read the same field and record
    `spec.replicas`. An absent field reads as None through an attribute (as the
    `kubernetes` client's models do) and raises KeyError through subscription; either
    way its path is recorded, because the test depends on its absence.

    Attributes that are Mapping methods (`get`, `keys`, `items`, `values`) and `raw`
    win over fields of the same name: read such fields by subscription
    (`volume["configMap"]["items"]`).
    """

    __slots__ = ("_data", "_path", "_secret", "_sink")
    __hash__ = None  # type: ignore[assignment]  # a view compares by content

    def __init__(
        self, data: Obj, sink: _Sink | None = None, path: str = "", *, secret: bool = False
    ) -> None:
        self._data = data
        self._sink = sink
        self._path = path
        self._secret = secret or (not path and data.get("kind") == "Secret")

    def _read_node(self) -> None:
        if self._sink is not None:
            self._sink.read(self._path)

    # -- fields

    def __getitem__(self, key: str) -> Any:
        path = _child(self._path, key)
        try:
            value = self._data[key]
        except KeyError:
            if self._sink is not None:
                self._sink.read(path)
            raise
        return _wrap(value, path, self._sink, self._secret)

    def get(self, key: str, default: Any = None) -> Any:
        path = _child(self._path, key)
        if key not in self._data:
            if self._sink is not None:
                self._sink.read(path)
            return default
        return _wrap(self._data[key], path, self._sink, self._secret)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if self._sink is not None:
            self._sink.read(_child(self._path, key))
        return key in self._data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        key = _field_name(self._data, name)
        if key is None:
            if self._sink is not None:
                self._sink.read(_child(self._path, _camel(name)))
            return None
        return _wrap(self._data[key], _child(self._path, key), self._sink, self._secret)

    # -- the whole node: precision cannot be sound, so the node's path is recorded

    def __iter__(self) -> Iterator[str]:
        self._read_node()
        return iter(list(self._data))

    def __len__(self) -> int:
        self._read_node()
        return len(self._data)

    def __bool__(self) -> bool:
        # An object (the root) always has fields: testing `if view:` is not a read.
        if self._path:
            self._read_node()
        return bool(self._data)

    def __eq__(self, other: object) -> bool:
        self._read_node()
        if isinstance(other, ObjectView):
            other._read_node()
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        self._read_node()
        return f"ObjectView({_redact(self._data, self._path, self._secret)!r})"

    def __dir__(self) -> list[str]:
        # For completion in a debugger: not a read.
        return sorted({*super().__dir__(), *self._data})

    @property
    def raw(self) -> Obj:
        """A deep copy of the underlying dict; records this node (the root: whole object)."""
        self._read_node()
        return copy.deepcopy(self._data)


class ListView(Sequence[Any]):
    """Read-only view of a list inside an object.

    The list's path was recorded when the list was read from its parent; its items are
    views that record nothing more (precision stops at lists).
    """

    __slots__ = ("_data", "_secret")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, data: list[Any], *, secret: bool = False) -> None:
        self._data = data
        self._secret = secret

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [_wrap(v, "", None, self._secret) for v in self._data[index]]
        return _wrap(self._data[index], "", None, self._secret)

    def __iter__(self) -> Iterator[Any]:
        for value in self._data:
            yield _wrap(value, "", None, self._secret)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListView):
            return self._data == other._data
        if isinstance(other, list | tuple):
            return self._data == [_plain(v) for v in other]
        return NotImplemented

    def __repr__(self) -> str:
        return f"ListView({_REDACTED if self._secret else self._data!r})"

    @property
    def raw(self) -> list[Any]:
        return copy.deepcopy(self._data)


def _plain(value: Any) -> Any:
    if isinstance(value, ObjectView):
        return value._data
    if isinstance(value, ListView):
        return value._data
    return value


# -- workloads and services --------------------------------------------------------------------

# Which status fields hold the counts, per kind: a DaemonSet has no spec.replicas.
_COUNTS: dict[str, dict[str, str]] = {
    "DaemonSet": {
        "replicas": "desiredNumberScheduled",
        "ready": "numberReady",
        "available": "numberAvailable",
        "updated": "updatedNumberScheduled",
    },
}
_DEFAULT_COUNTS = {
    "ready": "readyReplicas",
    "available": "availableReplicas",
    "updated": "updatedReplicas",
}


class WorkloadView(ObjectView):
    """A Deployment, StatefulSet or DaemonSet read from the cluster, with its counts and pods.

    Counts are 0 when the status does not have them yet (a controller omits zeroes).
    """

    __slots__ = ("_cluster", "_key")

    def __init__(self, data: Obj, sink: _Sink, cluster: Cluster, key: str) -> None:
        super().__init__(data, sink)
        self._cluster = cluster
        self._key = key

    def _count(self, which: str) -> int:
        field = _COUNTS.get(str(self._data.get("kind")), _DEFAULT_COUNTS)[which]
        if self._sink is not None:
            self._sink.read(f"status.{field}")
        value = (self._data.get("status") or {}).get(field)
        return value if isinstance(value, int) else 0

    @property
    def replicas(self) -> int:
        """Desired pods: `spec.replicas` (1 when unset), a DaemonSet's scheduled count."""
        if self._data.get("kind") == "DaemonSet":
            return self._count("replicas")
        if self._sink is not None:
            self._sink.read("spec.replicas")
        value = (self._data.get("spec") or {}).get("replicas")
        return value if isinstance(value, int) else 1

    @property
    def ready_replicas(self) -> int:
        return self._count("ready")

    @property
    def available_replicas(self) -> int:
        return self._count("available")

    @property
    def updated_replicas(self) -> int:
        return self._count("updated")

    @property
    def readiness(self) -> Readiness:
        """`readiness.assess` of this object: ready or not, and why in one line."""
        from pytest_devloop.sync.readiness import assess

        if self._sink is not None:
            self._sink.recorder.object_paths(
                self._sink.key, ("spec", "status", "metadata.generation")
            )
        return assess(self._data)

    @property
    def ready(self) -> bool:
        return self.readiness.ready

    def pods(self) -> list[ObjectView]:
        """The pods the workload's selector picks (recorded as a Pod list by that selector)."""
        return self._cluster._pods_selected_by(self)

    def image(self, container: str | None = None) -> str:
        """The image of `container` (default: the first container) in the pod template."""
        containers = self["spec"]["template"]["spec"]["containers"]
        for c in containers:
            if container is None or c.get("name") == container:
                return str(c.get("image"))
        names = [c.get("name") for c in containers]
        raise LookupError(f"{self._key}: no container {container!r} (containers: {names})")


class ServiceView(ObjectView):
    """A Service read from the cluster, with the addresses that serve it."""

    __slots__ = ("_cluster", "_key")

    def __init__(self, data: Obj, sink: _Sink, cluster: Cluster, key: str) -> None:
        super().__init__(data, sink)
        self._cluster = cluster
        self._key = key

    def endpoints(self, port: int | str | None = None) -> list[tuple[str, int]]:
        """(ip, port) of every Ready endpoint, from the Service's EndpointSlices, sorted.

        `port` keeps one service port, by name or number. Records the Service's spec, the
        EndpointSlice list and the Pod list by the Service's selector (the endpoints follow
        the pods, which change when their workload does).
        """
        return self._cluster._endpoints_of(self, port)


# -- kind names --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    resource: ApiResource
    names: frozenset[str]  # lower-case: kind, plural, singular, short names

    @property
    def group(self) -> str:
        return self.resource.group


def _kinds_of_document(group_version: str, doc: Mapping[str, Any]) -> list[_Kind]:
    out = []
    for r in doc.get("resources") or []:
        plural = str(r.get("name", ""))
        if not plural or "/" in plural:
            continue  # subresources
        kind = str(r.get("kind"))
        names = {kind.lower(), plural.lower(), str(r.get("singularName") or kind).lower()}
        names.update(str(s).lower() for s in r.get("shortNames") or ())
        res = ApiResource(
            group_version=group_version,
            kind=kind,
            plural=plural,
            namespaced=bool(r.get("namespaced")),
            verbs=tuple(r.get("verbs") or ()),
        )
        out.append(_Kind(res, frozenset(names)))
    return out


def _split_kind_name(name: str) -> tuple[str, str | None]:
    """`Deployment.apps` -> ("deployment", "apps"); `deploy` -> ("deploy", None)."""
    base, dot, group = name.partition(".")
    return base.lower(), group.lower() if dot else None


def _group_matches(want: str | None, group: str) -> bool:
    if want is None:
        return True
    if want == group.lower():
        return True
    # kubectl also takes `resource.version.group` (`deployments.v1.apps`).
    version, _, rest = want.partition(".")
    return bool(re.fullmatch(r"v\d+\w*", version)) and rest == group.lower()


@functools.cache
def _builtin_names() -> list[tuple[str, str, frozenset[str]]]:
    """(group, Kind, names) of the Kubernetes built-in kinds, core group first.

    Borrowed from the embedded cluster's table of served types, which mirrors the real
    API server's names; it lets the common kinds resolve without a discovery sweep.
    """
    from pytest_devloop.k8s.resources import BUILTIN

    out = []
    for rt in BUILTIN:
        names = {rt.kind.lower(), rt.plural, rt.singular, *rt.short_names}
        out.append((rt.group, rt.kind, frozenset(names)))
    return out


class _Discovery:
    """Kind name -> served resource, as kubectl resolves it; cached, thread-safe.

    The built-in kinds resolve through the adapter's per-group-version cache (warm after
    a sync, so usually no request). Other names take one sweep over the preferred
    version of every group, which has the short and singular names, repeated once when
    a name is not found (a CRD applied since the last sweep).

    With a `cache` file (dev mode: one per cluster under `.devloop/cache/`), the sweep's
    documents outlive the process, as kubectl's discovery cache does: a later process
    uses them while the cluster serves the same group versions (two requests tell), and
    confirms the group version of a name it finds there still serves the kind (one
    request) before trusting it; otherwise it sweeps afresh. A watch cycle's test process
    thus pays three requests for a custom kind instead of one per served group.
    """

    def __init__(self, kube: Kube, cache: Path | None = None) -> None:
        self._kube = kube
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str | None], ApiResource] = {}
        self._catalog: list[_Kind] | None = None
        self._file = cache
        self._from_file = False

    def resolve(self, name: str, api_version: str | None = None) -> ApiResource:
        found = self._cache.get((name, api_version))
        if found is not None:
            return found
        if api_version is not None:
            res = self._in_group_version(name, api_version)
        else:
            res = self._builtin(name) or self._swept(name)
        with self._lock:
            self._cache[(name, api_version)] = res
        return res

    def _in_group_version(self, name: str, api_version: str) -> ApiResource:
        base, _ = _split_kind_name(name)
        try:
            doc = self._kube.request("GET", base_path(api_version)) or {}
        except KubeError as e:
            if e.status != 404:
                raise
            raise LookupError(f"the cluster does not serve {api_version}") from e
        kinds = _kinds_of_document(api_version, doc)
        for k in kinds:
            if base in k.names:
                return k.resource
        served = ", ".join(sorted(k.resource.kind for k in kinds))
        raise LookupError(f"{api_version} has no kind {name!r} (it serves: {served})")

    def _builtin(self, name: str) -> ApiResource | None:
        base, group = _split_kind_name(name)
        for g, kind, names in _builtin_names():
            if base in names and _group_matches(group, g):
                # Versions come preferred first; a kind may live in an older one only.
                for gv in self._kube.group_versions():
                    if gv.rpartition("/")[0] == g:
                        res = self._kube.resource(gv, kind)
                        if res is not None:
                            return res
                return None
        return None

    def _preferred(self) -> list[str]:
        """The preferred version of every served group, core first (two requests)."""
        core = self._kube.request("GET", "/api") or {}
        groups = self._kube.request("GET", "/apis") or {}
        gvs = [str(v) for v in core.get("versions") or []][:1]
        for g in groups.get("groups") or []:
            preferred = (g.get("preferredVersion") or {}).get("groupVersion")
            versions = [v.get("groupVersion") for v in g.get("versions") or []]
            gv = preferred or (versions[0] if versions else None)
            if gv:
                gvs.append(str(gv))
        return gvs

    def _sweep(self, gvs: list[str] | None = None) -> list[_Kind]:
        gvs = self._preferred() if gvs is None else gvs

        def fetch(gv: str) -> list[dict[str, Any]] | None:
            try:
                doc = self._kube.request("GET", base_path(gv)) or {}
            except KubeError:
                return None  # an aggregated API that is down must not hide the others
            return list(doc.get("resources") or [])

        # Parallel: a real cluster serves dozens of groups, each a round trip.
        with ThreadPoolExecutor(max_workers=8) as pool:
            docs = list(pool.map(fetch, gvs))
        self._save(gvs, docs)
        return [
            k
            for gv, doc in zip(gvs, docs, strict=True)
            for k in _kinds_of_document(gv, {"resources": doc or []})
        ]

    def _load(self) -> list[_Kind] | None:
        """The catalog of the cache file, if the cluster serves the same group versions."""
        if self._file is None:
            return None
        try:
            data = json.loads(self._file.read_text())
            gvs, docs = list(data["gvs"]), list(data["docs"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if None in docs:
            return None  # a group did not answer then: sweep again
        current = self._preferred()
        if current != gvs or len(docs) != len(gvs):
            return self._sweep(current)
        self._from_file = True
        return [
            k
            for gv, doc in zip(gvs, docs, strict=True)
            for k in _kinds_of_document(gv, {"resources": doc})
        ]

    def _save(self, gvs: list[str], docs: list[list[dict[str, Any]] | None]) -> None:
        if self._file is None:
            return
        import os

        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._file.with_name(f".{self._file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"gvs": gvs, "docs": docs}))
            tmp.replace(self._file)
        except OSError:
            pass  # a cache: the next process sweeps

    def _confirmed(self, k: _Kind) -> ApiResource | None:
        """A name found in the cache file: the kind as its group version serves it now
        (None when it no longer does)."""
        if not self._from_file:
            return k.resource
        try:
            return self._kube.resource(k.resource.group_version, k.resource.kind)
        except KubeError:
            return None

    def _swept(self, name: str) -> ApiResource:
        base, group = _split_kind_name(name)
        for fresh in (False, True):
            with self._lock:
                catalog = None if fresh else self._catalog
            if catalog is None and not fresh:
                catalog = self._load()
            if catalog is None:
                self._from_file = False
                catalog = self._sweep()
            with self._lock:
                self._catalog = catalog
            for k in catalog:
                if base in k.names and _group_matches(group, k.group):
                    res = self._confirmed(k)
                    if res is not None:
                        return res
                    break  # the cache file is stale: sweep afresh
        names = sorted({n for k in catalog or () for n in k.names})
        close = difflib.get_close_matches(base, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LookupError(f"the cluster serves no kind named {name!r}{hint}")


# -- the cluster -------------------------------------------------------------------------------

_WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
_DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
# describe(): how much of a pod's log a failure report shows, and for how many pods.
_DESCRIBE_LOG_LINES = 10
_DESCRIBE_LOG_PODS = 3


def _key(res: ApiResource, namespace: str | None, name: str) -> str:
    # The format of plan.object_key, built without the object.
    return f"{res.group}/{res.kind}/{namespace or ''}/{name}"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _event_order(event: Obj) -> tuple[str, int]:
    # Timestamps have second precision; the resourceVersion orders events within one.
    stamp = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or _meta(event).get("creationTimestamp")
        or ""
    )
    version = str(_meta(event).get("resourceVersion") or "0")
    return str(stamp)[:19], int(version) if version.isdigit() else 0


class Cluster:
    """The `cluster` fixture object: reads from the synced cluster, each one recorded.

    `namespace` is the default namespace of reads (the config's). `artifact_of` maps an
    object key to the artifact that renders it, for the message when an object is
    missing. Kinds are named as kubectl takes them: `Deployment`, `deployment`,
    `deploy`, `deployments`, `Deployment.apps`, or a custom kind (`ServiceMonitor`,
    `servicemonitors.monitoring.coreos.com`) found through discovery.
    """

    def __init__(
        self,
        kube: Kube,
        recorder: Recorder,
        *,
        namespace: str,
        artifact_of: Callable[[str], str | None] | None = None,
        discovery_cache: Path | None = None,
    ) -> None:
        self.namespace = namespace
        self._kube = kube
        self._recorder = recorder
        self._artifact_of = artifact_of
        self._kinds = _Discovery(kube, discovery_cache)

    @property
    def api_client(self) -> Any:
        """The raw `kubernetes` ApiClient. Its reads are NOT recorded: declare what a
        test reads through it with `depends_on`."""
        return self._kube.api_client

    def resource(self, kind: str, api_version: str | None = None) -> ApiResource:
        """The served resource a kind name means (LookupError when none)."""
        return self._kinds.resolve(kind, api_version)

    def _namespace(self, res: ApiResource, namespace: str | None) -> str | None:
        return (namespace or self.namespace) if res.namespaced else None

    def _view(self, res: ApiResource, obj: Obj, key: str) -> ObjectView:
        sink = _Sink(self._recorder, key)
        if res.group == "apps" and res.kind in _WORKLOADS:
            return WorkloadView(obj, sink, self, key)
        if res.group == "" and res.kind == "Service":
            return ServiceView(obj, sink, self, key)
        return ObjectView(obj, sink)

    # -- objects

    def get(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        api_version: str | None = None,
    ) -> ObjectView | None:
        """The live object, or None when it does not exist (recorded either way)."""
        res = self._kinds.resolve(kind, api_version)
        ns = self._namespace(res, namespace)
        obj = self._kube.get(res, ns, name)
        key = _key(res, ns, name)
        if obj is None:
            # A test that found nothing depends on the object's creation.
            self._recorder.object_read(key, None)
            return None
        self._recorder.object_seen(key)
        return self._view(res, obj, key)

    def must_get(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        api_version: str | None = None,
    ) -> ObjectView:
        """`get`, raising LookupError that says what is there instead when it is missing."""
        found = self.get(kind, name, namespace, api_version=api_version)
        if found is None:
            res = self._kinds.resolve(kind, api_version)
            raise LookupError(self._missing(res, self._namespace(res, namespace), name))
        return found

    def _missing(self, res: ApiResource, ns: str | None, name: str) -> str:
        where = f" in namespace {ns!r}" if ns else ""
        text = f"{res.kind} {name!r} not found{where}"
        try:
            others = sorted(str(_meta(o).get("name")) for o in self._kube.list(res, ns))
        except KubeError:
            others = []
        if others:
            shown = ", ".join(others[:10]) + (", …" if len(others) > 10 else "")
            text += f" (there: {shown})"
        elif ns:
            text += f" (no {res.kind} there)"
        if self._artifact_of is not None:
            artifact = self._artifact_of(_key(res, ns, name))
            text += (
                f"; artifact {artifact!r} renders it: did its sync succeed?"
                if artifact
                else "; no artifact renders it: check the name and the namespace"
            )
        return text

    def list(
        self,
        kind: str,
        *,
        namespace: str | None = None,
        selector: Mapping[str, str] | str | None = None,
        all_namespaces: bool = False,
        api_version: str | None = None,
    ) -> builtins.list[ObjectView]:
        """Objects of a kind in `namespace` (default: the cluster's), by label selector.

        `selector` is a dict of labels (`{"app": "web"}`) or selector text
        (`"app=web,tier in (fe,be)"`). Records a `ListRead`; reading an item's fields
        records them under the item's key.
        """
        res = self._kinds.resolve(kind, api_version)
        ns = None if all_namespaces else self._namespace(res, namespace)
        text = normalize_selector(selector)
        query = selector if isinstance(selector, str) else text
        items = self._kube.list(res, ns, query or None)
        self._recorder.list_read(ListRead(f"{res.group}/{res.kind}", ns, text))
        return [
            self._view(res, item, _key(res, _meta(item).get("namespace"), _meta(item)["name"]))
            for item in items
        ]

    def _workload(self, kind: str, name: str, namespace: str | None) -> WorkloadView:
        view = self.must_get(f"{kind}.apps", name, namespace)
        assert isinstance(view, WorkloadView)
        return view

    def deployment(self, name: str, namespace: str | None = None) -> WorkloadView:
        """The Deployment (LookupError when missing, so `eventually` waits for it)."""
        return self._workload("Deployment", name, namespace)

    def statefulset(self, name: str, namespace: str | None = None) -> WorkloadView:
        return self._workload("StatefulSet", name, namespace)

    def daemonset(self, name: str, namespace: str | None = None) -> WorkloadView:
        return self._workload("DaemonSet", name, namespace)

    def service(self, name: str, namespace: str | None = None) -> ServiceView:
        """The Service (LookupError when missing)."""
        view = self.must_get("Service", name, namespace)
        assert isinstance(view, ServiceView)
        return view

    # -- derived reads

    def _pods(self, namespace: str | None, selector: str) -> builtins.list[ObjectView]:
        pod = self._kinds.resolve("Pod")
        items = self._kube.list(pod, namespace, selector)
        self._recorder.list_read(ListRead("/Pod", namespace, normalize_selector(selector)))
        return [self._view(pod, p, _key(pod, namespace, _meta(p)["name"])) for p in items]

    def _pods_selected_by(self, owner: ObjectView) -> builtins.list[ObjectView]:
        from pytest_devloop.sync.readiness import label_selector

        if owner._sink is not None:
            owner._sink.read("spec.selector")
        selector = label_selector((owner._data.get("spec") or {}).get("selector"))
        if selector is None:
            return []
        return self._pods(_meta(owner._data).get("namespace"), selector)

    def _endpoints_of(
        self, svc: ServiceView, port: int | str | None
    ) -> builtins.list[tuple[str, int]]:
        from pytest_devloop.sync.readiness import label_selector

        assert svc._sink is not None
        # The endpoints follow the selector and the ports: the whole spec.
        self._recorder.object_read(svc._sink.key, "spec")
        m = _meta(svc._data)
        ns, name = m.get("namespace"), str(m.get("name"))
        spec = svc._data.get("spec") or {}
        selector = label_selector(spec.get("selector"))
        if selector is not None:
            self._recorder.list_read(ListRead("/Pod", ns, normalize_selector(selector)))
        slices_res = self._kinds.resolve("EndpointSlice.discovery.k8s.io")
        by_service = f"kubernetes.io/service-name={name}"
        slices = self._kube.list(slices_res, ns, by_service)
        self._recorder.list_read(ListRead("discovery.k8s.io/EndpointSlice", ns, by_service))
        found: set[tuple[str, int]] = set()
        for s in slices:
            ports = [
                p
                for p in s.get("ports") or []
                if port is None or p.get("name") == port or p.get("port") == port
            ]
            for ep in s.get("endpoints") or []:
                # A nil `ready` means ready (EndpointSlice API contract).
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                for address in ep.get("addresses") or []:
                    found.update((str(address), int(p["port"])) for p in ports if "port" in p)
        return sorted(found)

    def logs(
        self,
        pod_or_workload: str,
        *,
        container: str | None = None,
        tail: int | None = 100,
        namespace: str | None = None,
    ) -> str:
        """Log text of a pod (`"web-0"`, `"Pod/web-0"`) or of every pod of a workload
        (`"Deployment/web"`: each line prefixed `[pod] `). `container` defaults to the
        pod's default container (its annotation), else the first. Records the object as a
        whole (a log reflects everything about it) and, for a workload, its pod list.
        """
        kind, _, name = pod_or_workload.rpartition("/")
        res = self._kinds.resolve(kind or "Pod")
        ns = self._namespace(res, namespace)
        owner = self.must_get(kind or "Pod", name, namespace)
        self._recorder.object_read(_key(res, ns, name), None)
        if res.group == "" and res.kind == "Pod":
            return self._pod_log(owner._data, container, tail)
        pods = self._pods_selected_by(owner)
        lines: builtins.list[str] = []
        for pod in sorted(pods, key=lambda p: str(_meta(p._data).get("name"))):
            pod_name = _meta(pod._data).get("name")
            text = self._pod_log(pod._data, container, tail)
            lines.extend(f"[{pod_name}] {line}" for line in text.splitlines())
        return "\n".join(lines) + ("\n" if lines else "")

    def _pod_log(self, pod: Obj, container: str | None, tail: int | None) -> str:
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException

        m = _meta(pod)
        if container is None:
            containers = (pod.get("spec") or {}).get("containers") or [{}]
            container = (m.get("annotations") or {}).get(_DEFAULT_CONTAINER) or containers[0].get(
                "name"
            )
        kwargs: dict[str, Any] = {"container": container, "_preload_content": False}
        if tail is not None:
            kwargs["tail_lines"] = tail
        try:
            # Through the typed API, not Kube.request: that one parses JSON, and a log
            # line that happens to be JSON must stay text.
            resp: Any = CoreV1Api(self._kube.api_client).read_namespaced_pod_log(
                str(m.get("name")), str(m.get("namespace")), **kwargs
            )
        except ApiException as e:
            raise KubeError(
                int(e.status or 0), str(e.reason), f"logs of pod {m.get('name')}: {e.body}"
            ) from e
        return bytes(resp.data).decode(errors="replace")

    def events(self, kind: str, name: str, namespace: str | None = None) -> builtins.list[Obj]:
        """The Events about one object, oldest first (plain dicts). Records the object."""
        res = self._kinds.resolve(kind)
        ns = self._namespace(res, namespace)
        self._recorder.object_read(_key(res, ns, name), None)
        path = f"/api/v1/namespaces/{ns}/events" if ns else "/api/v1/events"
        doc = (
            self._kube.request(
                "GET", path, query=[("fieldSelector", f"involvedObject.name={name}")]
            )
            or {}
        )
        found = [
            e
            for e in doc.get("items") or []
            if (e.get("involvedObject") or {}).get("kind") == res.kind
            and (e.get("involvedObject") or {}).get("name") == name
        ]
        found.sort(key=_event_order)
        return found

    # -- dependencies and diagnostics

    def depends_on(self, *deps: str) -> None:
        """Declare what a test depends on but did not read through this object.

        `Kind/name`, `Kind/namespace/name` (kinds as `get` takes them) or a full key
        `group/Kind/namespace/name` record the whole object; anything else
        (`chart:shop`, `image:web`, or a kind the cluster does not serve) is declared
        as written.
        """
        for dep in deps:
            key = self._dependency_key(dep)
            if key is None:
                self._recorder.declare(dep)
            else:
                self._recorder.object_read(key, None)

    def _dependency_key(self, dep: str) -> str | None:
        if ":" in dep:
            return None
        parts = dep.split("/")
        try:
            if len(parts) == 4:
                group, kind, ns, name = parts
                res = self._kinds.resolve(f"{kind}.{group}" if group else kind)
                return _key(res, ns if res.namespaced else None, name)
            if len(parts) == 3:
                kind, ns, name = parts
            elif len(parts) == 2:
                (kind, name), ns = parts, ""
            else:
                return None
            res = self._kinds.resolve(kind)
        except LookupError:
            return None
        return _key(res, self._namespace(res, ns or None), name)

    def describe(self, key: str) -> builtins.list[str]:
        """Diagnostic lines for one recorded object key: readiness, conditions, pods,
        Events (`readiness.describe`), and the last log lines of up to 3 of its pods.

        Not recorded (a failure report is not part of the test), and never prints a
        Secret's data: `readiness.describe` does not read Secrets, and logs are read
        only for pods and workloads.
        """
        from pytest_devloop.sync.readiness import describe, label_selector

        group, kind, ns, name = key.split("/", 3)
        try:
            res = self._kinds.resolve(f"{kind}.{group}" if group else kind)
            ref = {
                "apiVersion": res.group_version,
                "kind": res.kind,
                "metadata": {"name": name, **({"namespace": ns} if ns else {})},
            }
            lines = describe(self._kube.api_client, ref)
        except Exception as e:  # a report must not hide the failure it reports
            return [f"{kind}/{name}: cannot describe: {e}"]
        if not (res.group == "" and res.kind == "Pod") and res.kind not in _WORKLOADS:
            return lines
        try:
            live = self._kube.get(res, ns or None, name)
            if live is None:
                return lines
            if res.kind == "Pod":
                pods = [live]
            else:
                selector = label_selector((live.get("spec") or {}).get("selector"))
                pods = self._kube.list(self._kinds.resolve("Pod"), ns, selector) if selector else []
            for pod in pods[:_DESCRIBE_LOG_PODS]:
                text = self._pod_log(pod, None, _DESCRIBE_LOG_LINES)
                pod_name = _meta(pod).get("name")
                lines += [f"  log {pod_name}: {line}" for line in text.splitlines()]
        except Exception as e:
            lines.append(f"  (logs unavailable: {e})")
        return lines


# -- rendered objects --------------------------------------------------------------------------

# Kinds whose objects run containers, and where their pod spec is.
_POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("", "Pod"): ("spec",),
}


def _group_kind(obj: Mapping[str, Any]) -> tuple[str, str]:
    return str(obj.get("apiVersion", "")).rpartition("/")[0], str(obj.get("kind"))


def _rendered(group_kind: str) -> str:
    """A list read's kind on the rendered objects (`*` stays any kind, anywhere)."""
    return group_kind if group_kind == ANY_KIND else RENDERED + group_kind


class Rendered:
    """The `rendered` fixture object: the desired objects of every artifact, no cluster.

    `objects` are (key, object) pairs with `plan.object_key` keys. Reads are recorded in
    the same recorder as the cluster's, under the same keys, so a test reading
    `rendered.get("Deployment", "web").spec.replicas` depends on that field of that
    desired object. A key without a namespace (not placed yet) matches any `namespace`.
    """

    def __init__(self, objects: Iterable[tuple[str, Obj]], recorder: Recorder) -> None:
        self._objects = list(objects)
        self._recorder = recorder
        # Custom kinds are known by what is rendered: their objects and their CRDs.
        self._custom: list[tuple[str, str, frozenset[str]]] = []
        seen: set[tuple[str, str]] = set()
        builtin = {(g, k) for g, k, _ in _builtin_names()}
        for _, obj in self._objects:
            gk = _group_kind(obj)
            if gk[1] == "CustomResourceDefinition":
                spec = obj.get("spec") or {}
                names = spec.get("names") or {}
                kind = str(names.get("kind"))
                aliases = {
                    kind.lower(),
                    str(names.get("plural", "")).lower(),
                    str(names.get("singular") or kind).lower(),
                    *(str(s).lower() for s in names.get("shortNames") or ()),
                }
                self._custom.append((str(spec.get("group", "")), kind, frozenset(aliases)))
                seen.add((str(spec.get("group", "")), kind))
        for _, obj in self._objects:
            gk = _group_kind(obj)
            if gk not in builtin and gk not in seen:
                seen.add(gk)
                self._custom.append((gk[0], gk[1], frozenset({gk[1].lower(), f"{gk[1]}s".lower()})))

    def _kinds(self, name: str) -> builtins.list[tuple[str, str]]:
        """(group, Kind) candidates a kind name means; [] when nothing known has it.

        The built-in kind first, then rendered kinds of that name in other groups (an
        old chart's `extensions/v1beta1` Ingress is still an Ingress to the reader).
        """
        base, group = _split_kind_name(name)
        found = [
            (g, kind)
            for g, kind, names in _builtin_names()
            if base in names and _group_matches(group, g)
        ][:1]
        found += [
            (g, k)
            for g, k, names in self._custom
            if base in names and _group_matches(group, g) and (g, k) not in found
        ]
        return found

    def _view(self, key: str, obj: Obj) -> ObjectView:
        return ObjectView(obj, _Sink(self._recorder, key))

    @staticmethod
    def _in_namespace(key: str, namespace: str | None) -> bool:
        key_ns = key.split("/", 3)[2]
        return namespace is None or not key_ns or key_ns == namespace

    def get(self, kind: str, name: str, namespace: str | None = None) -> ObjectView | None:
        """The desired object, None when no artifact renders it (recorded either way).

        Without `namespace`, the one object of that kind and name in any namespace
        (LookupError when there are several).
        """
        kinds = self._kinds(name=kind)
        found = [
            (key, obj)
            for key, obj in self._objects
            if _group_kind(obj) in kinds
            and _meta(obj).get("name") == name
            and self._in_namespace(key, namespace)
        ]
        if len(found) > 1:
            places = ", ".join(sorted(k.split("/", 3)[2] or "(none)" for k, _ in found))
            raise LookupError(
                f"{len(found)} rendered {kind} objects named {name!r}, in namespaces "
                f"{places}: pass namespace="
            )
        if found:
            key, obj = found[0]
            self._recorder.object_seen(key)
            return self._view(key, obj)
        # Absent: the test depends on its appearance. With a namespace and a known kind
        # that is one key; otherwise every object of the kind (of any kind, if unknown).
        if namespace is not None and len(kinds) == 1:
            g, k = kinds[0]
            self._recorder.object_read(f"{g}/{k}/{namespace}/{name}", None)
        else:
            for g, k in kinds or [("", ANY_KIND)]:
                gk = ANY_KIND if k == ANY_KIND else f"{g}/{k}"
                self._recorder.list_read(ListRead(_rendered(gk), namespace))
        return None

    def must_get(self, kind: str, name: str, namespace: str | None = None) -> ObjectView:
        found = self.get(kind, name, namespace)
        if found is None:
            kinds = self._kinds(kind)
            same_kind = sorted(
                str(_meta(o).get("name")) for _, o in self._objects if _group_kind(o) in kinds
            )
            there = f" (rendered: {', '.join(same_kind)})" if same_kind else ""
            raise LookupError(f"no artifact renders {kind} {name!r}{there}")
        return found

    def list(
        self,
        kind: str | None = None,
        *,
        selector: Mapping[str, str] | str | None = None,
        namespace: str | None = None,
    ) -> builtins.list[ObjectView]:
        """Desired objects of a kind (None: every kind) matching a label selector."""
        text = normalize_selector(selector)
        if kind is None:
            kinds = None
            self._recorder.list_read(ListRead(ANY_KIND, namespace, text))
        else:
            kinds = self._kinds(kind)
            for g, k in kinds or [("", ANY_KIND)]:
                gk = ANY_KIND if k == ANY_KIND else f"{g}/{k}"
                self._recorder.list_read(ListRead(_rendered(gk), namespace, text))
        out = []
        for key, obj in self._objects:
            if kinds is not None and _group_kind(obj) not in kinds:
                continue
            if not self._in_namespace(key, namespace):
                continue
            labels = _meta(obj).get("labels") or {}
            if text and not selector_matches(text, labels):
                continue
            out.append(self._view(key, obj))
        return out

    def all(self) -> builtins.list[ObjectView]:
        """Every desired object (depends on every object of every kind)."""
        return self.list()

    def containers(self, *, init: bool = False) -> Iterator[tuple[ObjectView, ObjectView]]:
        """(workload, container) for every container of every object that runs pods.

        For checks such as "every container has limits". `init=True` includes init
        containers. Records every workload kind as a list read (a new workload must
        re-run the check) and each workload's container list.
        """
        for g, k in _POD_SPEC_PATHS:
            self._recorder.list_read(ListRead(f"{RENDERED}{g}/{k}", None))
        lists = ("initContainers", "containers") if init else ("containers",)
        for key, obj in self._objects:
            spec_path = _POD_SPEC_PATHS.get(_group_kind(obj))
            if spec_path is None:
                continue
            workload = self._view(key, obj)
            node: Any = workload
            for part in spec_path:
                node = node.get(part) if isinstance(node, ObjectView) else None
            if not isinstance(node, ObjectView):
                continue
            for which in lists:
                for container in node.get(which) or ():
                    yield workload, container
