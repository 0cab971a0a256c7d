"""The Kubernetes API as the sync engine needs it: discovery, apply, get, list, delete.

A thin adapter over the real `kubernetes` client (its `DynamicClient.request`, which
handles TLS, tokens and exec plugins of the kubeconfig) that speaks plain JSON dicts, so
the engine above it never deserializes into generated models and stays fast. Errors come
back typed (`KubeError` with status and reason), chained from the client's exception.
Also reads the merged kubeconfig (`read_kubeconfig`) for the guard, without connecting.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

FIELD_MANAGER = "pytest-devloop"


class KubeError(Exception):
    """An API error: HTTP status, Kubernetes reason and the server's message."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}

    def __str__(self) -> str:
        return f"{self.message} ({self.status} {self.reason})"


class Unreachable(KubeError):
    """The API server did not answer (connection refused, TLS or DNS failure, timeout)."""


@dataclass(frozen=True)
class ApiResource:
    group_version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...]

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def base_path(api_version: str) -> str:
    group, version = split_api_version(api_version)
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


class Kube:
    """One cluster connection. Thread-safe; discovery is cached until `refresh()`."""

    def __init__(self, api_client: Any, *, timeout: float = 30.0) -> None:
        from kubernetes.dynamic import DynamicClient
        from kubernetes.dynamic.discovery import LazyDiscoverer

        class _NoDiscovery(LazyDiscoverer):
            # The dynamic client's own discovery (and its cache file) is not used: this
            # adapter discovers only the group versions it needs.
            def __init__(self, client: Any, cache_file: Any) -> None:
                self.client = client

        self.api_client = api_client
        self._dyn = DynamicClient(api_client, discoverer=_NoDiscovery)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._gv_resources: dict[str, dict[str, ApiResource]] = {}
        self._group_versions: list[str] | None = None
        # Called with the path of every write request (after it, whatever its outcome):
        # caches of listed objects forget the collection.
        self.write_listeners: list[Callable[[str], None]] = []

    # -- raw requests ---------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Iterable[tuple[str, str]] = (),
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            resp = self._dyn.request(
                method,
                path,
                body=body,
                query_params=list(query),
                content_type=content_type,
                serialize=False,
                _request_timeout=timeout or self.timeout,
            )
        except ApiException as e:
            raise _typed(e) from e
        except HTTPError as e:
            raise Unreachable(0, "Unreachable", f"the API server did not answer: {e}") from e
        except OSError as e:
            raise Unreachable(0, "Unreachable", f"the API server did not answer: {e}") from e
        finally:
            if method != "GET":
                for listener in self.write_listeners:
                    listener(path)
        data = resp.data
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data.decode(errors="replace")

    # -- discovery ------------------------------------------------------------

    def group_versions(self) -> list[str]:
        """Every served group version, core first (`v1`, `apps/v1`, ...)."""
        with self._lock:
            if self._group_versions is not None:
                return list(self._group_versions)
        core = self.request("GET", "/api") or {}
        groups = self.request("GET", "/apis") or {}
        gvs = list(core.get("versions") or [])
        for g in groups.get("groups") or []:
            gvs.extend(v["groupVersion"] for v in g.get("versions") or [])
        with self._lock:
            self._group_versions = gvs
        return list(gvs)

    def resources(self, group_version: str) -> dict[str, ApiResource]:
        """Kind -> resource of one group version; {} when the group version is not served."""
        with self._lock:
            cached = self._gv_resources.get(group_version)
        if cached is not None:
            return cached
        try:
            doc = self.request("GET", base_path(group_version)) or {}
        except KubeError as e:
            if e.status != 404:
                raise
            doc = {}
        out: dict[str, ApiResource] = {}
        for r in doc.get("resources") or []:
            if "/" in r.get("name", ""):
                continue
            out[r["kind"]] = ApiResource(
                group_version=group_version,
                kind=r["kind"],
                plural=r["name"],
                namespaced=bool(r.get("namespaced")),
                verbs=tuple(r.get("verbs") or ()),
            )
        with self._lock:
            self._gv_resources[group_version] = out
        return out

    def resource(self, api_version: str, kind: str) -> ApiResource | None:
        found = self.resources(api_version).get(kind)
        if found is None:
            # A CRD applied moments ago may have added the kind: look once more.
            with self._lock:
                self._gv_resources.pop(api_version, None)
                self._group_versions = None
            found = self.resources(api_version).get(kind)
        return found

    def refresh(self) -> None:
        with self._lock:
            self._gv_resources.clear()
            self._group_versions = None

    def api_versions_with_kinds(self) -> list[str]:
        """What Helm's `--api-versions` takes: every `group/version` and `group/version/Kind`."""
        out: list[str] = []
        for gv in self.group_versions():
            out.append(gv)
            out.extend(f"{gv}/{kind}" for kind in sorted(self.resources(gv)))
        return out

    def server_version(self) -> str:
        info = self.request("GET", "/version") or {}
        return str(info.get("gitVersion", ""))

    def cluster_uid(self) -> str:
        ns = self.request("GET", "/api/v1/namespaces/kube-system") or {}
        return str((ns.get("metadata") or {}).get("uid", ""))

    # -- objects --------------------------------------------------------------

    def path(self, res: ApiResource, namespace: str | None, name: str | None = None) -> str:
        parts = [base_path(res.group_version)]
        if res.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace)}")
        parts.append(res.plural)
        if name is not None:
            parts.append(quote(name))
        return "/".join(parts)

    def apply(
        self,
        res: ApiResource,
        obj: dict[str, Any],
        *,
        force: bool,
        field_manager: str = FIELD_MANAGER,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        m = obj.get("metadata") or {}
        query = [("fieldManager", field_manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        result: dict[str, Any] = self.request(
            "PATCH",
            self.path(res, m.get("namespace"), m["name"]),
            body=json.dumps(obj),
            query=query,
            content_type="application/apply-patch+yaml",
        )
        return result

    def get(self, res: ApiResource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.request("GET", self.path(res, namespace, name))
            return obj
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def list(
        self, res: ApiResource, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        doc = self.request("GET", self.path(res, namespace), query=query) or {}
        items: list[dict[str, Any]] = doc.get("items") or []
        for item in items:
            item.setdefault("apiVersion", res.group_version)
            item.setdefault("kind", res.kind)
        return items

    def delete(
        self, res: ApiResource, namespace: str | None, name: str, *, propagation: str = "Background"
    ) -> bool:
        """Delete; returns False when it was already gone."""
        try:
            self.request(
                "DELETE",
                self.path(res, namespace, name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": propagation,
                },
            )
            return True
        except KubeError as e:
            if e.status == 404:
                return False
            raise

    def create(self, res: ApiResource, obj: dict[str, Any]) -> dict[str, Any]:
        m = obj.get("metadata") or {}
        created: dict[str, Any] = self.request(
            "POST",
            self.path(res, m.get("namespace")),
            body=obj,
            query=[("fieldManager", FIELD_MANAGER)],
        )
        return created


def _typed(e: Any) -> KubeError:
    status = int(getattr(e, "status", 0) or 0)
    body: dict[str, Any] = {}
    raw = getattr(e, "body", None)
    if raw:
        try:
            body = json.loads(raw)
        except (TypeError, ValueError):
            body = {}
    reason = str(body.get("reason") or getattr(e, "reason", "") or "")
    message = str(body.get("message") or raw or e)
    if status == 0:
        return Unreachable(0, "Unreachable", f"the API server did not answer: {message}", body)
    return KubeError(status, reason, message, body)


def kubeconfig_location(path: str | None) -> str:
    """The kubeconfig file list kubectl reads: `path`, else `$KUBECONFIG`, else ~/.kube/config.

    Read when called: the client's own default (`KUBE_CONFIG_DEFAULT_LOCATION`) is fixed
    when it is first imported, and would miss a `KUBECONFIG` set afterwards.
    """
    return path or os.environ.get("KUBECONFIG") or "~/.kube/config"


@dataclass(frozen=True)
class Kubeconfig:
    """The merged kubeconfig as kubectl sees it (no connection is made to read it)."""

    location: str  # the path list it was read from
    files: tuple[str, ...]  # the files that exist, in merge order
    current_context: str | None
    contexts: dict[str, dict[str, Any]]  # context name -> its `context` body
    clusters: dict[str, dict[str, Any]]  # cluster name -> its `cluster` body

    def server(self, context: str) -> str:
        return str(self.cluster(context).get("server") or "")

    def cluster(self, context: str) -> dict[str, Any]:
        return self.clusters.get(str(self.contexts.get(context, {}).get("cluster") or ""), {})


def read_kubeconfig(path: str | None) -> Kubeconfig:
    """Merge the kubeconfig files with the `kubernetes` client's merger, as kubectl does.

    Several files (`KUBECONFIG=a:b`) merge by name with the first file winning, and the
    current context is the first one a file sets (kubectl's rule; the client's merger
    keeps the last, so it is taken from the files in order). Raises OSError, YAML errors
    and `ConfigException` for unreadable files; missing files are skipped, as kubectl does.
    """
    from kubernetes.config.kube_config import KubeConfigMerger

    location = kubeconfig_location(path)
    merger = KubeConfigMerger(location)
    merged = merger.config
    if merged is None:
        return Kubeconfig(location, (), None, {}, {})
    value = merged.value

    def named(item: str, body: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for node in value.get(item) or []:
            entry = getattr(node, "value", node)
            if isinstance(entry, dict) and entry.get("name") is not None:
                out[str(entry["name"])] = dict(entry.get(body) or {})
        return out

    current = next(
        (
            str(doc["current-context"])
            for doc in merger.config_files.values()
            if isinstance(doc, dict) and doc.get("current-context")
        ),
        None,
    )
    return Kubeconfig(
        location,
        tuple(merger.paths),
        current,
        named("contexts", "context"),
        named("clusters", "cluster"),
    )


def client_from_kubeconfig(path: str | None, context: str | None = None) -> Any:
    """A `kubernetes` ApiClient for a kubeconfig file list and context (None: defaults)."""
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig_location(path), context=context)
