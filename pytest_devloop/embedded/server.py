"""The embedded cluster's HTTP front: routing, auth, content negotiation, verbs, watches.

Owns the Kubernetes REST surface: discovery, `/version`, OpenAPI, health, and for every
resource the verbs get/list/watch/create/update/patch/delete/deletecollection plus the
`status`, `scale`, `log`, `binding`, `eviction` and `finalize` subresources. Objects live
in `store.Store`; patch and apply semantics come from `patch` and `apply`; defaults and
allocations from the admission hook the controllers provide.

Responses are always JSON with an explicit `Content-Type` (client-go would otherwise try
to decode protobuf) and are written in one `send` on a `TCP_NODELAY` socket: a Python
HTTP server that writes headers and body separately pays ~40 ms per request to Nagle
and delayed ACKs.
"""

from __future__ import annotations

import logging
import queue
import random
import select
import socket
import ssl
import string
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import yaml

from pytest_devloop.embedded import auth as authn
from pytest_devloop.embedded import bodies, disruption, errors, listing, openapi, printers
from pytest_devloop.embedded.errors import ApiError
from pytest_devloop.embedded.store import Change, Obj, Store, clone, dumps, meta, now_rfc3339
from pytest_devloop.embedded.validation import Validation
from pytest_devloop.k8s import apply as ssa
from pytest_devloop.k8s import patch as patching
from pytest_devloop.k8s.resources import ResourceType, api_group, api_resource_list
from pytest_devloop.k8s.selectors import (
    SelectorError,
    field_selector_name,
    format_label_selector,
    parse_field_selector,
    parse_label_selector,
)

log = logging.getLogger(__name__)

MAX_BODY = bodies.MAX_BODY
# Resources whose registry answers a DELETE with the deleted object rather than a Status
# (typed clients decode the reply as that kind: `delete_namespaced_service` -> V1Service).
_RETURNS_DELETED_OBJECT = frozenset(
    {
        "pods",
        "services",
        "serviceaccounts",
        "persistentvolumeclaims",
        "persistentvolumes",
        "podtemplates",
        "resourcequotas",
        "admissionregistration.k8s.io/mutatingwebhookconfigurations",
        "admissionregistration.k8s.io/validatingwebhookconfigurations",
    }
)
MAX_DISCARD = 64 * 1024 * 1024  # an oversized body up to this is read and dropped
# What real clusters let anyone read (the system:public-info-viewer role); kubectl's
# version dispatcher asks /version before it sends any credentials.
PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})
KUBE_VERSION = "v1.33.0"


class Admit(Protocol):
    def __call__(
        self, rt: ResourceType, obj: Obj, old: Obj | None, *, dry_run: bool = False
    ) -> None: ...


def _no_admit(rt: ResourceType, obj: Obj, old: Obj | None, *, dry_run: bool = False) -> None:
    return None


class Request:
    """One parsed API request: the resource it addresses and its query."""

    def __init__(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.group = ""
        self.version = ""
        self.rt: ResourceType | None = None
        self.namespace: str | None = None
        self.name: str | None = None
        self.sub: str | None = None
        self.rest: list[str] = []
        self.content_type = ""
        self.accept = ""
        self.user_agent = ""
        self.body = b""
        self.identity: authn.Identity = authn.ADMIN
        self.table_headers_sent = False  # a Table watch sends its columns once
        # `Warning` headers of the answer (unknown fields under fieldValidation=Warn, ...).
        self.warnings: list[str] = []

    def body_text(self) -> str:
        try:
            return self.body.decode()
        except UnicodeDecodeError as e:
            raise errors.bad_request(f"the request body is not valid UTF-8: {e}") from e

    def q(self, key: str, default: str = "") -> str:
        values = self.query.get(key)
        return values[0] if values else default

    def flag(self, key: str) -> bool:
        return self.q(key).lower() in ("true", "1")


class ApiServer:
    """State shared by all request threads of one embedded cluster."""

    def __init__(
        self,
        store: Store,
        token: str,
        *,
        admit: Admit = _no_admit,
        bookmark_interval: float = 5.0,
        signer: authn.TokenSigner | None = None,
    ) -> None:
        self.store = store
        self.registry = store.registry
        self.token = token
        self.signer = signer or authn.TokenSigner()
        self.admit = admit
        self.validation = Validation(store)
        self.bookmark_interval = bookmark_interval
        self.started = time.time()
        self.stopping = threading.Event()
        self.request_count = 0
        self.write_requests = 0
        store.add_listener(self._on_change)

    # CRDs are served as soon as they are stored, and their objects vanish with them.
    def _on_change(self, change: Change) -> None:
        if change.rt.key != "apiextensions.k8s.io/customresourcedefinitions":
            return
        if change.type == "DELETED":
            rt = self.registry.unregister_crd(str(meta(change.new).get("name", "")))
            if rt is not None:
                self.store.drop_type(rt)
        else:
            self.registry.register_crd(change.new)

    # -- routing ------------------------------------------------------------------

    def route(self, req: Request) -> tuple[int, Any, str]:
        """Returns (status code, body, content type); body may be bytes or JSON data."""
        parts = [p for p in req.path.split("/") if p]
        if not parts:
            return (
                200,
                {
                    "paths": [
                        "/api",
                        "/api/v1",
                        "/apis",
                        "/healthz",
                        "/livez",
                        "/readyz",
                        "/version",
                    ]
                },
                "",
            )
        head = parts[0]
        if head in ("healthz", "readyz", "livez"):
            return 200, b"ok", "text/plain; charset=utf-8"
        if head == "version":
            return 200, self.version_info(), ""
        if head == "devloop" and parts[1:] == ["status"]:
            return 200, self.devloop_status(), ""
        if head == ".well-known" and parts[1:] == ["openid-configuration"]:
            return 200, self.openid_configuration(), ""
        if head == "openid" and parts[1:] == ["v1", "jwks"]:
            return 200, self.signer.jwks(), "application/jwk-set+json"
        if head == "openapi":
            return self.route_openapi(parts, req)
        if head == "api":
            if len(parts) == 1:
                return 200, self.api_versions(), ""
            req.group, req.version, rest = "", parts[1], parts[2:]
        elif head == "apis":
            if len(parts) == 1:
                return 200, self.api_group_list(), ""
            if len(parts) == 2:
                versions = self.registry.groups().get(parts[1])
                if not versions or parts[1] == "":
                    raise errors.path_not_found(req.path)
                return 200, api_group(parts[1], versions), ""
            req.group, req.version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.path_not_found(req.path)
        if not rest:
            types = self.registry.in_group_version(req.group, req.version)
            if not types:
                raise errors.path_not_found(req.path)
            return 200, api_resource_list(req.group, req.version, types), ""
        self.resolve(req, rest)
        return self.dispatch(req)

    def resolve(self, req: Request, rest: list[str]) -> None:
        # /namespaces/NS/<plural>/... addresses namespaced objects; /namespaces/NAME[/sub]
        # addresses the Namespace itself.
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not req.group
            and rest[2] in ("status", "finalize")
        ):
            rest = ["namespaces", rest[1], rest[2], *rest[3:]]
            req.namespace = None
        elif rest[0] == "namespaces" and len(rest) >= 3:
            req.namespace = rest[1]
            rest = rest[2:]
        rt = self.registry.lookup(req.group, req.version, rest[0])
        if rt is None:
            raise errors.path_not_found(req.path)
        if req.namespace is not None and not rt.namespaced:
            raise errors.path_not_found(req.path)
        req.rt = rt
        if len(rest) > 1:
            req.name = rest[1]
        if len(rest) > 2:
            req.sub = rest[2]
            req.rest = rest[3:]
            if req.sub not in rt.subresources:
                raise errors.path_not_found(req.path)
            if req.rest and req.sub != "proxy":
                raise errors.path_not_found(req.path)

    def dispatch(self, req: Request) -> tuple[int, Any, str]:
        m = req.method
        assert req.rt is not None
        if req.rt.key == "endpoints":
            # kube-apiserver 1.33 marks the v1 Endpoints API deprecated on every request.
            req.warnings.append(
                "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"
            )
        if not req.rt.stored:
            # The review kinds: answered on create, never stored.
            if m == "POST" and req.name is None:
                body = self.body_object(req)
                self.check_kind(req, body)
                answer = authn.review(
                    req.rt.kind, body, req.identity, self.signer, namespace=req.namespace
                )
                answer["apiVersion"] = req.rt.api_version(req.version)
                return 201, answer, ""
            raise errors.method_not_allowed()
        if req.sub == "token":
            if m != "POST":
                raise errors.method_not_allowed()
            sa = self.must_get(req)
            body = self.decode(req, require_object=False) or {}
            self.check_bound_object(req, body)
            return 201, authn.token_request(self.signer, sa, body), ""
        if req.sub == "ephemeralcontainers":
            self.must_get(req)
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the embedded cluster does not run ephemeral containers (kubectl debug): "
                "debug on a real cluster, or run a debugging Pod next to this one",
            )
        if req.name is None:
            if m == "GET":
                return self.do_list(req)
            if m == "POST":
                return self.do_create(req)
            if m == "DELETE":
                return self.do_delete_collection(req)
            raise errors.method_not_allowed()
        if req.sub == "scale":
            if m == "GET":
                return 200, self.scale_of(req), ""
            if m in ("PUT", "PATCH"):
                return self.do_scale_write(req)
            raise errors.method_not_allowed()
        if req.sub == "log":
            if m == "GET":
                return self.do_log(req)
            raise errors.method_not_allowed()
        if req.sub in ("binding", "eviction"):
            if m == "POST":
                return self.do_pod_action(req)
            raise errors.method_not_allowed()
        if req.sub == "proxy":
            if req.rt is not None and req.rt.key == "services":
                return self.do_service_proxy(req)
            raise errors.ApiError(
                503, "ServiceUnavailable", "the embedded cluster does not proxy to this resource"
            )
        if m == "GET":
            obj = self.present(req.rt, self.must_get(req), req.version)
            table_version = printers.wants_table(req.accept)
            if table_version:
                list_meta = {"resourceVersion": meta(obj).get("resourceVersion", "")}
                return 200, self.as_table(req, [obj], list_meta, table_version), "application/json"
            return 200, obj, ""
        if m == "PUT":
            return self.do_update(req)
        if m == "PATCH":
            return self.do_patch(req)
        if m == "DELETE":
            return self.do_delete(req)
        raise errors.method_not_allowed()

    def route_openapi(self, parts: list[str], req: Request) -> tuple[int, Any, str]:
        if parts[1:2] == ["v2"]:
            if "protobuf" in req.accept:
                return (
                    200,
                    openapi.swagger_v2_protobuf(KUBE_VERSION),
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                )
            return 200, openapi.swagger_v2(KUBE_VERSION, self.registry, self.crds()), ""
        if parts[1:2] == ["v3"]:
            if len(parts) == 2:
                return 200, openapi.index_document(self.registry, KUBE_VERSION, self.crds()), ""
            if parts[2] == "api" and len(parts) == 4:
                group, version = "", parts[3]
            elif parts[2] == "apis" and len(parts) == 5:
                group, version = parts[3], parts[4]
            else:
                raise errors.path_not_found(req.path)
            if not self.registry.in_group_version(group, version):
                raise errors.path_not_found(req.path)
            return (
                200,
                openapi.group_version_document(
                    self.registry, group, version, KUBE_VERSION, self.crds()
                ),
                "",
            )
        raise errors.path_not_found(req.path)

    # -- discovery ----------------------------------------------------------------

    def version_info(self) -> dict[str, Any]:
        major, minor = KUBE_VERSION.lstrip("v").split(".")[:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": KUBE_VERSION,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def devloop_status(self) -> dict[str, Any]:
        return {
            "uid": self.store.cluster_uid,
            "uptime": round(time.time() - self.started, 1),
            "objects": self.store.counts(),
            "requests": self.request_count,
            "writes": self.store.write_count,
            "writeRequests": self.write_requests,
        }

    def api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }

    def api_group_list(self) -> dict[str, Any]:
        groups = [api_group(g, v) for g, v in self.registry.groups().items() if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    # -- helpers ------------------------------------------------------------------

    def present(self, rt: ResourceType | None, obj: Obj, version: str) -> Obj:
        """The object as served at `version`: apiVersion and kind always set."""
        assert rt is not None
        api_version = rt.api_version(version)
        if obj.get("apiVersion") == api_version and obj.get("kind") == rt.kind:
            return obj
        out = dict(obj)
        out["apiVersion"] = api_version
        out["kind"] = rt.kind
        return out

    def crds(self) -> dict[str, Obj]:
        crd_rt = self.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        if crd_rt is None:
            return {}
        items, _ = self.store.list(crd_rt)
        return {str(meta(c).get("name", "")): c for c in items}

    def crd_of(self, rt: ResourceType) -> Obj | None:
        if rt.builtin or not rt.crd_name:
            return None
        crd_rt = self.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        return self.store.get(crd_rt, None, rt.crd_name) if crd_rt is not None else None

    def crd_field_labels(self, rt: ResourceType) -> frozenset[str]:
        """A CRD's `selectableFields` (with the leading dot dropped) for field selectors."""
        crd = self.crd_of(rt)
        if crd is None:
            return frozenset()
        out: set[str] = set()
        for v in (crd.get("spec") or {}).get("versions") or []:
            for f in v.get("selectableFields") or []:
                out.add(str(f.get("jsonPath", "")).lstrip("."))
        return frozenset(out)

    def as_table(
        self, req: Request, items: list[Obj], list_meta: dict[str, Any], table_version: str
    ) -> bytes:
        """`kubectl get`'s view: the kind's printer columns (CRD ones for custom resources)."""
        rt = req.rt
        assert rt is not None
        include = req.q("includeObject")
        if include not in ("", "None", "Object", "PartialObjectMetadata"):
            raise errors.bad_request(
                f'includeObject: Unsupported value: "{include}": supported values: '
                '"None", "Object", "PartialObjectMetadata"'
            )
        if include == "Object":
            items = [self.present(rt, o, req.version) for o in items]
        return printers.table_json(
            rt.key,
            items,
            table_version=table_version,
            include_object=include,
            crd=self.crd_of(rt),
            version=req.version,
            list_meta=list_meta,
        )

    def check_kind(self, req: Request, body: Obj) -> None:
        rt = req.rt
        assert rt is not None
        kind = body.get("kind")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )

    def check_bound_object(self, req: Request, body: Any) -> None:
        """A token bound to a Pod, Secret or Node needs that object, with that uid."""
        ref = (
            ((body or {}).get("spec") or {}).get("boundObjectRef")
            if isinstance(body, dict)
            else None
        )
        if not isinstance(ref, dict):
            return
        plural = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}.get(str(ref.get("kind")))
        rt = self.registry.get("", plural) if plural else None
        if rt is None:
            return  # an unsupported kind is refused by the TokenRequest validation
        name = str(ref.get("name", ""))
        obj = self.store.get(rt, req.namespace if rt.namespaced else None, name)
        if obj is None:
            raise errors.not_found(rt.plural, name)
        uid = ref.get("uid")
        if uid and uid != meta(obj).get("uid"):
            raise errors.conflict(
                rt.plural,
                name,
                "",
                f"the UID in the bound object reference ({uid}) does not match the UID in "
                f"record. The object might have been deleted and then recreated",
            )

    def openid_configuration(self) -> dict[str, Any]:
        """Service-account issuer discovery: where the token keys are published."""
        return {
            "issuer": authn.ISSUER,
            "jwks_uri": f"{authn.ISSUER}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }

    def do_service_proxy(self, req: Request) -> tuple[int, Any, str]:
        """`services/[scheme:]name[:port]/proxy/...`: forward to one endpoint address.

        Only addresses in 127.0.0.0/8 are forwarded to (the simulation's pod IPs, or a
        hand-written Endpoints pointing at a local process): the embedded API server must
        never become a way to reach other hosts. Anything else answers 503.
        """
        import http.client
        from urllib.parse import urlencode

        assert req.rt is not None and req.name is not None
        parts = req.name.split(":")
        scheme = parts[0] if len(parts) == 3 else "http"
        name = parts[-2] if len(parts) == 3 else parts[0]
        port_ref = parts[-1] if len(parts) >= 2 else ""
        unavailable = "ServiceUnavailable"
        svc = self.store.get(req.rt, req.namespace, name)
        if svc is None:
            raise errors.not_found(req.rt.plural, name, req.rt.group)
        ports = (svc.get("spec") or {}).get("ports") or []
        port = next(
            (
                p
                for p in ports
                if not port_ref or port_ref in (str(p.get("name", "")), str(p.get("port")))
            ),
            None,
        )
        if port is None:
            raise ApiError(
                503, unavailable, f'no service port "{port_ref}" found for service "{name}"'
            )
        endpoints_rt = self.registry.lookup("", "v1", "endpoints")
        endpoints = (
            self.store.get(endpoints_rt, req.namespace, name) if endpoints_rt is not None else None
        )
        target: tuple[str, int] | None = None
        refused: list[str] = []
        for subset in (endpoints or {}).get("subsets") or []:
            ep_ports = subset.get("ports") or []
            ep_port = next(
                (
                    p
                    for p in ep_ports
                    if len(ep_ports) == 1 or p.get("name", "") == port.get("name", "")
                ),
                None,
            )
            if ep_port is None:
                continue
            for address in subset.get("addresses") or []:
                ip = str(address.get("ip", ""))
                if ip.startswith("127."):
                    target = (ip, int(ep_port.get("port") or 0))
                    break
                refused.append(ip)
            if target is not None:
                break
        if target is None:
            why = (
                f"endpoints outside 127.0.0.0/8 are not proxied to ({', '.join(refused)})"
                if refused
                else "no endpoints available"
            )
            raise ApiError(503, unavailable, f'{why} for service "{name}"')
        path = "/" + "/".join(req.rest)
        if req.path.endswith("/") and req.rest:
            path += "/"
        if req.query:
            path += "?" + urlencode(req.query, doseq=True)
        headers = {"Accept": req.accept or "*/*"}
        if req.content_type:
            headers["Content-Type"] = req.content_type
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                *target, timeout=30, context=ssl._create_unverified_context()
            )
        else:
            conn = http.client.HTTPConnection(*target, timeout=30)
        try:
            conn.request(req.method, path, body=req.body or None, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            ctype = resp.getheader("Content-Type") or "application/octet-stream"
            return resp.status, body, ctype
        except OSError as e:
            raise ApiError(
                503, unavailable, f"error trying to reach service: {target[0]}:{target[1]}: {e}"
            ) from e
        finally:
            conn.close()

    def must_get(self, req: Request) -> Obj:
        assert req.rt is not None and req.name is not None
        obj = self.store.get(req.rt, req.namespace, req.name)
        if obj is None:
            raise errors.not_found(req.rt.plural, req.name, req.rt.group)
        return obj

    def manager(self, req: Request, user_agent: str) -> str:
        fm = req.q("fieldManager")
        if fm:
            if len(fm) > 128:
                raise errors.invalid(
                    "", "", "", [("fieldManager", "Too long: may not be more than 128 bytes")]
                )
            return fm
        return user_agent.split("/", maxsplit=1)[0] or "unknown"

    def check_body(self, req: Request, obj: Obj, *, require_name: bool) -> None:
        rt = req.rt
        assert rt is not None
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        if api_version and api_version != rt.api_version(req.version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version(req.version)})"
            )
        obj["apiVersion"] = rt.api_version(req.version)
        obj["kind"] = rt.kind
        m = obj.get("metadata")
        if m is None:
            m = obj["metadata"] = {}
        if not isinstance(m, dict):
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            ns = m.get("namespace")
            if ns and req.namespace and ns != req.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if req.namespace:
                m["namespace"] = req.namespace
            elif not ns:
                raise errors.bad_request("a namespaced object must be created in a namespace")
        else:
            m.pop("namespace", None)
        if require_name and req.name is not None and m.get("name") not in (None, req.name):
            raise errors.bad_request(
                f"the name of the object ({m.get('name')}) does not match the name on the URL ({req.name})"
            )
        if req.name is not None:
            m.setdefault("name", req.name)
        if not m.get("name") and m.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            m["name"] = f"{m['generateName']}{suffix}"
        name = m.get("name")
        if not name:
            raise errors.invalid(
                rt.kind,
                "",
                rt.group,
                [("metadata.name", "Required value: name or generateName is required")],
            )
        if not isinstance(name, str):
            raise errors.invalid(
                rt.kind,
                str(name),
                rt.group,
                [
                    (
                        "metadata.name",
                        f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                    )
                ],
            )
        for key in ("labels", "annotations"):
            val = m.get(key)
            if val is not None and (
                not isinstance(val, dict) or not all(isinstance(v, str) for v in val.values())
            ):
                raise errors.invalid(
                    rt.kind,
                    name,
                    rt.group,
                    [(f"metadata.{key}", "Invalid value: values must be strings")],
                )

    def track(
        self, rt: ResourceType, old: Obj | None, new: Obj, manager: str, subresource: str | None
    ) -> Obj:
        """Record a non-apply write in managedFields: the writer owns what it changed."""
        return ssa.record_update(
            old,
            new,
            manager,
            operation="Update",
            subresource=subresource,
            now=now_rfc3339(),
            kind=rt.kind,
            api_group=rt.group,
            status_subresource="status" in rt.subresources,
        )

    def dry_run(self, req: Request) -> bool:
        values = req.query.get("dryRun", [])
        for v in values:
            if v != "All":
                raise errors.bad_request(f"Invalid dry run value: {v}; supported: All")
        return bool(values)

    # -- reads --------------------------------------------------------------------

    def do_list(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None
        try:
            label_reqs = parse_label_selector(req.q("labelSelector"))
            field_match = parse_field_selector(req.q("fieldSelector"))
        except SelectorError as e:
            raise errors.bad_request(str(e)) from e
        listing.check_field_selector(rt, req.q("fieldSelector"), self.crd_field_labels(rt))
        if req.q("watch").lower() in ("true", "1"):
            return 200, ("WATCH", label_reqs, field_match), ""
        if req.flag("sendInitialEvents"):
            raise errors.invalid(
                "ListOptions",
                "",
                "meta.k8s.io",
                [("sendInitialEvents", "Forbidden: sendInitialEvents is forbidden for list")],
            )
        items, list_meta = listing.list_page(
            self.store, rt, req.namespace, label_reqs, field_match, req.query
        )
        table_version = printers.wants_table(req.accept)
        if table_version:
            return 200, self.as_table(req, items, list_meta, table_version), "application/json"
        api_version = rt.api_version(req.version)
        encoded = [
            self.store.encoded(o)
            if o.get("apiVersion") == api_version and o.get("kind") == rt.kind
            else dumps(dict(o, apiVersion=api_version, kind=rt.kind))
            for o in items
        ]
        head = dumps({"kind": rt.list_kind_name, "apiVersion": api_version, "metadata": list_meta})
        body = head[:-1] + b',"items":[' + b",".join(encoded) + b"]}"
        return 200, body, "application/json"

    def scale_of(self, req: Request) -> Obj:
        rt = req.rt
        assert rt is not None
        obj = self.must_get(req)
        m = meta(obj)
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        selector = spec.get("selector")
        sel_text = format_label_selector(selector) if isinstance(selector, dict) else ""
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: m[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in m
            },
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": sel_text},
        }

    def do_log(self, req: Request) -> tuple[int, Any, str]:
        pod = self.must_get(req)
        assert req.name is not None
        lines = self.store.logs(req.namespace or "", req.name)
        container = req.q("container")
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        if container and container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {req.name}")
        if req.flag("previous"):
            # The simulation keeps the current container's log only; a previous one exists
            # exactly when the container has restarted, and then its log is not kept.
            name = container or (containers[0] if containers else "")
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            restarted = any(
                cs.get("name") == name and (cs.get("lastState") or {}).get("terminated")
                for cs in statuses
            )
            if not restarted:
                raise errors.bad_request(
                    f'previous terminated container "{name}" in pod "{req.name}" not found'
                )
            lines = []
        tail = req.q("tailLines")
        if tail:
            lines = lines[-int(tail) :] if int(tail) > 0 else []
        if req.flag("follow"):
            return 200, ("FOLLOW", len(lines), lines), ""
        body = "".join(line + "\n" for line in lines).encode()
        return 200, body, "text/plain"

    # -- writes -------------------------------------------------------------------

    def do_create(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None
        obj = self.body_object(req)
        self.check_body(req, obj, require_name=False)
        dry = self.dry_run(req)
        manager = self.manager(req, req.user_agent)
        obj.pop("status", None) if rt.kind not in (
            "Pod",
            "Namespace",
            "Event",
        ) and "status" in rt.subresources else None
        meta(obj).pop("uid", None)  # the server assigns identities; admission may need one
        req.warnings += self.validation.decode(rt, req.version, obj, req.q("fieldValidation"))
        self.admit(rt, obj, None, dry_run=dry)
        self.validation.validate(rt, obj, None)
        obj = self.track(rt, None, obj, manager, None)
        stored = self.store.create(rt, obj, dry_run=dry)
        if rt.key == "apiextensions.k8s.io/customresourcedefinitions" and not dry:
            stored = self.establish_crd(stored)
        return 201, self.present(rt, stored, req.version), ""

    def establish_crd(self, crd: Obj) -> Obj:
        """Custom resources are served at once, so the CRD reports Established at once."""
        rt = self.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        assert rt is not None
        new = clone(crd)
        now = now_rfc3339()
        names = dict((crd.get("spec") or {}).get("names") or {})
        names.setdefault("singular", str(names.get("kind", "")).lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
        new["status"] = {
            "acceptedNames": names,
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
            "storedVersions": [
                v.get("name")
                for v in (crd.get("spec") or {}).get("versions") or []
                if v.get("storage")
            ],
        }
        return self.store.update(rt, new, subresource="status")

    def do_update(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        obj = self.body_object(req)
        self.check_body(req, obj, require_name=True)
        dry = self.dry_run(req)
        if req.sub == "finalize":
            return self.do_finalize(req, obj)
        old = self.must_get(req)
        expected = str(meta(obj).get("resourceVersion") or "")
        manager = self.manager(req, req.user_agent)
        if req.sub is None:
            req.warnings += self.validation.decode(
                rt, req.version, obj, req.q("fieldValidation"), old
            )
            self.admit(rt, obj, old, dry_run=dry)
            self.validation.validate(rt, obj, old)
        if "managedFields" not in meta(obj) and meta(old).get("managedFields"):
            meta(obj)["managedFields"] = meta(old)["managedFields"]
        obj = self.track(rt, old, obj, manager, req.sub)
        stored = self.store.update(
            rt, obj, expected_rv=expected or None, subresource=req.sub, dry_run=dry
        )
        if (
            rt.key == "apiextensions.k8s.io/customresourcedefinitions"
            and req.sub is None
            and not dry
        ):
            stored = self.establish_crd(stored)
        return 200, self.present(rt, stored, req.version), ""

    def do_finalize(self, req: Request, obj: Obj) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None
        old = self.must_get(req)
        new = clone(old)
        new["spec"] = dict(
            new.get("spec") or {}, finalizers=(obj.get("spec") or {}).get("finalizers") or []
        )
        stored = self.store.update(rt, new)
        return 200, self.present(rt, stored, req.version), ""

    def do_patch(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        ctype = req.content_type.split(";")[0].strip().lower()
        dry = self.dry_run(req)
        raw = req.body_text()
        force = req.q("force")
        if ctype in ("application/apply-patch+yaml", "application/apply-patch+cbor"):
            return self.do_apply(req, raw, dry)
        if force:
            raise errors.invalid(
                "PatchOptions",
                "",
                "meta.k8s.io",
                [("force", "Forbidden: may not be specified for non-apply patch")],
            )
        try:
            patch_doc = bodies.load_json(raw) if raw else None
        except ValueError as e:
            raise errors.bad_request(f"error decoding patch: {e}") from e
        manager = self.manager(req, req.user_agent)
        for _attempt in range(5):
            old = self.must_get(req)
            live = clone(old)
            try:
                if ctype == "application/json-patch+json":
                    if not isinstance(patch_doc, list):
                        raise errors.bad_request("json patch must be an array of operations")
                    patched = patching.json_patch(live, patch_doc)
                elif ctype == "application/merge-patch+json":
                    patched = patching.merge_patch(live, patch_doc)
                elif ctype == "application/strategic-merge-patch+json":
                    if not rt.builtin:
                        raise errors.unsupported_media(
                            "the body of the request was in an unknown format - accepted media types include: "
                            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                        )
                    if not isinstance(patch_doc, dict):
                        raise errors.bad_request("strategic merge patch must be an object")
                    patched = patching.strategic_merge_patch(live, patch_doc, rt.kind, rt.group)
                else:
                    raise errors.unsupported_media(
                        f"the body of the request was in an unknown format - accepted media types include: "
                        f"application/json-patch+json, application/merge-patch+json, "
                        f"application/apply-patch+yaml, application/strategic-merge-patch+json (got {ctype!r})"
                    )
            except patching.PatchError as e:
                raise ApiError(
                    getattr(e, "code", 422),
                    "Invalid" if getattr(e, "code", 422) == 422 else "BadRequest",
                    str(e),
                ) from e
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch did not produce an object")
            # A patch may reach deep (a JSON patch path has no depth limit): the result
            # obeys the bodies' depth limit too. (Its size is the store's to judge.)
            bodies.check_shape(patched, limit_size=False)
            pm = patched.get("metadata")
            if not isinstance(pm, dict):
                raise errors.bad_request("the patch removed metadata")
            want_rv = pm.get("resourceVersion")
            if want_rv and want_rv != meta(old).get("resourceVersion"):
                raise errors.conflict(
                    rt.plural,
                    req.name,
                    rt.group,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            if pm.get("name") != req.name:
                raise errors.bad_request("the patch may not change the object's name")
            patched["apiVersion"] = old.get("apiVersion", rt.api_version(req.version))
            patched["kind"] = rt.kind
            if req.sub is None:
                warnings = self.validation.decode(
                    rt, req.version, patched, req.q("fieldValidation"), old
                )
                self.admit(rt, patched, old, dry_run=dry)
                self.validation.validate(rt, patched, old)
                req.warnings += warnings
            patched = self.track(rt, old, patched, manager, req.sub)
            try:
                stored = self.store.update(
                    rt,
                    patched,
                    expected_rv=str(meta(old).get("resourceVersion")),
                    subresource=req.sub,
                    dry_run=dry,
                )
            except ApiError as e:
                # Another writer got in between our read and write: a patch is retried
                # on the fresh object, as the real server does.
                if e.code == 409 and not want_rv:
                    continue
                raise
            return 200, self.present(rt, stored, req.version), ""
        raise errors.conflict(
            rt.plural, req.name, rt.group, "too many concurrent writers, try again"
        )

    def do_apply(self, req: Request, raw: str, dry: bool) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        manager = req.q("fieldManager")
        if not manager:
            raise errors.invalid(
                "PatchOptions",
                "",
                "meta.k8s.io",
                [("fieldManager", "Required value: is required for apply patch")],
            )
        force_text = req.q("force", "false").lower()
        if force_text not in ("true", "false", "1", "0", ""):
            raise errors.bad_request(f"invalid force value {force_text!r}")
        force = force_text in ("true", "1")
        try:
            applied = bodies.load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error decoding YAML: {e}") from e
        if not isinstance(applied, dict):
            raise errors.bad_request("apply patch must be an object")
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise errors.bad_request("apiVersion and kind must be set in an apply patch")
        if meta(applied).get("managedFields") is not None:
            raise errors.bad_request("metadata.managedFields must be nil")
        self.check_body(req, applied, require_name=True)
        if req.sub is None:
            self.validation.decode_applied(rt, req.version, applied)
        # Built-in kinds refused unknown fields above; a custom resource's are pruned from
        # the merged object, under the request's fieldValidation.
        directive = "Ignore" if rt.builtin else req.q("fieldValidation")
        for _attempt in range(5):
            old = self.store.get(rt, req.namespace, req.name)
            want_rv = meta(applied).get("resourceVersion")
            if want_rv and (old is None or want_rv != meta(old).get("resourceVersion")):
                raise errors.conflict(
                    rt.plural,
                    req.name,
                    rt.group,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            try:
                new = ssa.apply(
                    clone(old) if old is not None else None,
                    clone(applied),
                    manager,
                    force=force,
                    kind=rt.kind,
                    api_group=rt.group,
                    now=now_rfc3339(),
                    subresource=req.sub,
                    status_subresource="status" in rt.subresources,
                )
            except ssa.ApplyConflict as e:
                status = e.to_status()
                status["details"].update(name=req.name, group=rt.group, kind=rt.plural)
                raise ApiError(409, "Conflict", str(e.message), details=status["details"]) from e
            new["apiVersion"] = (
                rt.api_version(req.version) if old is None else old.get("apiVersion")
            )
            new["kind"] = rt.kind
            try:
                if old is None:
                    new.pop("status", None) if "status" in rt.subresources else None
                    meta(new).pop("uid", None)
                    req.warnings += self.validation.decode(rt, req.version, new, directive)
                    self.admit(rt, new, None, dry_run=dry)
                    self.validation.validate(rt, new, None)
                    stored = self.store.create(rt, new, dry_run=dry)
                    if rt.key == "apiextensions.k8s.io/customresourcedefinitions" and not dry:
                        stored = self.establish_crd(stored)
                    return 201, self.present(rt, stored, req.version), ""
                if req.sub is None:
                    req.warnings += self.validation.decode(rt, req.version, new, directive, old)
                    self.admit(rt, new, old, dry_run=dry)
                    self.validation.validate(rt, new, old)
                stored = self.store.update(
                    rt,
                    new,
                    expected_rv=str(meta(old).get("resourceVersion")),
                    subresource=req.sub,
                    dry_run=dry,
                )
                if (
                    rt.key == "apiextensions.k8s.io/customresourcedefinitions"
                    and req.sub is None
                    and not dry
                    and stored is not old
                ):
                    stored = self.establish_crd(stored)
                return 200, self.present(rt, stored, req.version), ""
            except ApiError as e:
                if e.code == 409 and e.reason in ("Conflict", "AlreadyExists") and not want_rv:
                    continue
                raise
        raise errors.conflict(
            rt.plural, req.name, rt.group, "too many concurrent writers, try again"
        )

    def do_scale_write(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        current = self.scale_of(req)
        raw = req.body_text()
        ctype = req.content_type.split(";")[0].strip().lower()
        try:
            doc = bodies.load_json(raw) if raw else {}
        except ValueError as e:
            raise errors.bad_request(f"error decoding body: {e}") from e
        if req.method == "PUT":
            scale = doc
            want_rv = str(meta(scale).get("resourceVersion") or "")
            if want_rv and want_rv != current["metadata"].get("resourceVersion"):
                raise errors.conflict(
                    rt.plural,
                    req.name,
                    rt.group,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
        elif ctype == "application/json-patch+json":
            scale = patching.json_patch(clone(current), doc)
        elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            scale = patching.merge_patch(clone(current), doc)
        else:
            raise errors.unsupported_media(f"unsupported patch type {ctype!r} for scale")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid(
                "Scale",
                req.name,
                "autoscaling",
                [
                    (
                        "spec.replicas",
                        f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                    )
                ],
            )
        old = self.must_get(req)
        new = clone(old)
        new.setdefault("spec", {})["replicas"] = replicas
        manager = self.manager(req, req.user_agent)
        new = self.track(rt, old, new, manager, "scale")
        self.store.update(rt, new, dry_run=self.dry_run(req))
        return 200, self.scale_of(req), ""

    def do_pod_action(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        body = self.body_object(req)
        pod = self.must_get(req)
        if req.sub == "eviction":
            disruption.check_eviction(self.store, pod)
            self.store.delete(rt, req.namespace, req.name)
        else:
            node = (body.get("target") or {}).get("name")
            if not node:
                raise errors.invalid("Binding", req.name, "", [("target.name", "Required value")])
            new = clone(pod)
            new.setdefault("spec", {})["nodeName"] = node
            self.store.update(rt, new)
        return (
            201,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            "",
        )

    def delete_options(self, req: Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if req.body.strip():
            opts = self.decode(req, require_object=False) or {}
        for key in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
            if req.q(key):
                opts[key] = req.q(key)
        return opts

    def do_delete(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        opts = self.delete_options(req)
        propagation = opts.get("propagationPolicy")
        if opts.get("orphanDependents") in (True, "true"):
            propagation = "Orphan"
        if propagation not in (None, "", "Background", "Foreground", "Orphan"):
            raise errors.invalid(
                "DeleteOptions",
                "",
                "meta.k8s.io",
                [("propagationPolicy", f"Unsupported value: {propagation!r}")],
            )
        pre = opts.get("preconditions") or {}
        dry = self.dry_run(req) or "All" in (opts.get("dryRun") or [])
        obj, removed = self.store.delete(
            rt,
            req.namespace,
            req.name,
            propagation=propagation or None,
            precondition_uid=pre.get("uid"),
            precondition_rv=pre.get("resourceVersion"),
            dry_run=dry,
        )
        if removed and (rt.key in _RETURNS_DELETED_OBJECT or not rt.builtin):
            return 200, self.present(rt, obj, req.version), ""
        if removed:
            m = meta(obj)
            return (
                200,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": m.get("name"),
                        "group": rt.group,
                        "kind": rt.plural,
                        "uid": m.get("uid"),
                    },
                },
                "",
            )
        return 200, self.present(rt, obj, req.version), ""

    def do_delete_collection(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None
        try:
            label_reqs = parse_label_selector(req.q("labelSelector"))
            field_match = parse_field_selector(req.q("fieldSelector"))
        except SelectorError as e:
            raise errors.bad_request(str(e)) from e
        opts = self.delete_options(req)
        items, _ = self.store.list(rt, req.namespace, label_reqs, field_match)
        deleted = []
        for obj in items:
            m = meta(obj)
            try:
                out, _removed = self.store.delete(
                    rt,
                    m.get("namespace"),
                    m["name"],
                    propagation=opts.get("propagationPolicy") or None,
                    dry_run=self.dry_run(req),
                )
                deleted.append(self.present(rt, out, req.version))
            except ApiError as e:
                if e.code != 404:
                    raise
        return (
            200,
            {
                "kind": rt.list_kind_name,
                "apiVersion": rt.api_version(req.version),
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            },
            "",
        )

    # -- bodies -------------------------------------------------------------------

    def body_object(self, req: Request) -> Obj:
        obj = self.decode(req, require_object=True)
        assert isinstance(obj, dict)
        return obj

    def decode(self, req: Request, *, require_object: bool) -> Any:
        raw = req.body
        ctype = req.content_type.split(";")[0].strip().lower()
        if not raw.strip():
            if require_object:
                raise errors.bad_request("the request body is empty")
            return None
        try:
            if ctype in ("", "application/json", "*/*"):
                data = bodies.load_json(raw)
            elif ctype in ("application/yaml", "application/x-yaml", "text/yaml"):
                data = bodies.load_yaml(raw)
            elif ctype == "application/vnd.kubernetes.protobuf":
                from pytest_devloop.embedded import protobuf

                try:
                    data = protobuf.decode_request(raw)
                    bodies.check_shape(data)  # its embedded JSON may nest deep
                except protobuf.UnsupportedProtobuf as e:
                    raise errors.unsupported_media(
                        f"the body of the request was in an unknown format - accepted media types include: "
                        f"application/json, application/yaml ({e})"
                    ) from e
                except protobuf.ProtobufError as e:
                    raise errors.bad_request(f"error decoding protobuf body: {e}") from e
            else:
                raise errors.unsupported_media(
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ctype!r})"
                )
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request(f"error decoding request body: {e}") from e
        if require_object and not isinstance(data, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return data


def warning_headers(warnings: list[str]) -> list[tuple[str, str]]:
    """RFC 7234 `Warning` headers as kube-apiserver sends them (code 299, agent `-`)."""
    seen: list[str] = []
    for w in warnings:
        if w not in seen:
            seen.append(w)
    return [
        ("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"') for w in seen
    ]


class Handler(BaseHTTPRequestHandler):
    """Per-connection request handler; all state lives on `server.api`."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self.handle_api("GET")

    def do_POST(self) -> None:
        self.handle_api("POST")

    def do_PUT(self) -> None:
        self.handle_api("PUT")

    def do_PATCH(self) -> None:
        self.handle_api("PATCH")

    def do_DELETE(self) -> None:
        self.handle_api("DELETE")

    def send_payload(
        self,
        code: int,
        body: bytes,
        ctype: str,
        extra: dict[str, str] | list[tuple[str, str]] | None = None,
    ) -> None:
        reason = self.responses.get(code, ("",))[0]
        lines = [
            f"HTTP/1.1 {code} {reason}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-cache, private",
        ]
        pairs = extra.items() if isinstance(extra, dict) else extra or []
        for k, v in pairs:
            lines.append(f"{k}: {v}")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def discard_body(self, length: int) -> bool:
        """Read and drop `length` bytes of request body; False if the client hung up."""
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                return False
            length -= len(chunk)
        return True

    def handle_api(self, method: str) -> None:
        api = self.server.api
        api.request_count += 1
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            if length > MAX_BODY:
                # Read and discard the refused body: a client still sending it would
                # otherwise get a reset connection instead of this answer. The
                # connection stays usable; a body too big even to discard ends it.
                if length > MAX_DISCARD or not self.discard_body(length):
                    self.close_connection = True
                raise errors.too_large(MAX_BODY)
            raw = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization", "")
            public = method == "GET" and split.path.rstrip("/") in PUBLIC_PATHS
            identity = None if public else authn.authenticate(auth, api.token, api.signer)
            if not public and identity is None:
                raise errors.unauthorized()
            if method != "GET":
                api.write_requests += 1
            req = Request(method, split.path, query)
            req.content_type = self.headers.get("Content-Type", "")
            req.user_agent = self.headers.get("User-Agent", "")
            req.accept = self.headers.get("Accept", "")
            req.body = raw
            req.identity = identity or authn.ADMIN
            code, body, ctype = api.route(req)
            if isinstance(body, tuple) and body and body[0] == "WATCH":
                self.stream_watch(req, body[1], body[2])
                return
            if isinstance(body, tuple) and body and body[0] == "FOLLOW":
                self.stream_logs(req, body[1], body[2])
                return
            extra = warning_headers(req.warnings)
            if isinstance(body, bytes):
                self.send_payload(code, body, ctype or "application/octet-stream", extra)
            else:
                self.send_payload(code, dumps(body), "application/json", extra)
        except ApiError as e:
            if e.code == 401:
                self.send_payload(
                    401,
                    dumps(e.status()),
                    "application/json",
                    {"WWW-Authenticate": 'Bearer realm="devloop"'},
                )
            else:
                self.send_payload(e.code, dumps(e.status()), "application/json")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug must not take the server down: answer 500
            log.exception("internal error serving %s %s", method, self.path)
            err = ApiError(
                500,
                "InternalError",
                f"an error on the server ({type(e).__name__}: {e}) has prevented the request from succeeding",
            )
            try:
                self.send_payload(500, dumps(err.status()), "application/json")
            except OSError:
                self.close_connection = True

    def start_chunked(self, ctype: str) -> None:
        head = (
            "HTTP/1.1 200 OK\r\n"
            f"Content-Type: {ctype}\r\n"
            "Cache-Control: no-cache, private\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        self.wfile.write(head.encode())

    def client_gone(self) -> bool:
        """A watch client sends nothing while it waits: a readable socket means it closed."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def stream_watch(self, req: Request, label_reqs: Any, field_match: Any) -> None:
        api = self.server.api
        rt = req.rt
        assert rt is not None
        send_initial = req.flag("sendInitialEvents")
        bookmarks = req.flag("allowWatchBookmarks")
        timeout = float(req.q("timeoutSeconds", "0") or 0) or 1800.0
        api_version = rt.api_version(req.version)
        name = field_selector_name(req.q("fieldSelector"))
        del name  # the field selector already filters by name
        try:
            watcher, rv_now = api.store.watch(
                rt,
                req.namespace,
                req.q("resourceVersion") or None,
                label_reqs,
                field_match,
                send_initial=send_initial,
            )
        except ApiError as e:
            if e.code != 410:
                raise
            self.start_chunked("application/json")
            self.chunk(dumps({"type": "ERROR", "object": e.status()}) + b"\n")
            self.end_chunks()
            return
        deadline = time.monotonic() + timeout
        last_rv = rv_now
        try:
            self.start_chunked("application/json")
            if send_initial:
                # The replay is already queued; drain it, then mark the end of the
                # initial events with a bookmark, as watch-list clients expect. Writes
                # queued since registration are live events: they follow the bookmark.
                pending = watcher.initial
                for _ in range(pending):
                    item = watcher.events.get_nowait()
                    if item is None:
                        return
                    self.chunk(self.event_line(item[0], item[1], api_version, rt, req))
                self.chunk(
                    dumps(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": rt.kind,
                                "apiVersion": api_version,
                                "metadata": {
                                    "resourceVersion": str(rv_now),
                                    "annotations": {"k8s.io/initial-events-end": "true"},
                                },
                            },
                        }
                    )
                    + b"\n"
                )
            next_bookmark = time.monotonic() + api.bookmark_interval
            while not api.stopping.is_set():
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = (
                    min(deadline - now, max(0.0, next_bookmark - now), 0.5)
                    if bookmarks
                    else min(deadline - now, 0.5)
                )
                try:
                    item = watcher.events.get(timeout=max(wait, 0.01))
                except queue.Empty:
                    if self.client_gone():
                        break
                    if bookmarks and time.monotonic() >= next_bookmark:
                        self.chunk(
                            dumps(
                                {
                                    "type": "BOOKMARK",
                                    "object": {
                                        "kind": rt.kind,
                                        "apiVersion": api_version,
                                        "metadata": {
                                            "resourceVersion": str(
                                                max(last_rv, api.store.resource_version)
                                            )
                                        },
                                    },
                                }
                            )
                            + b"\n"
                        )
                        next_bookmark = time.monotonic() + api.bookmark_interval
                    continue
                if item is None:
                    break
                last_rv = int(meta(item[1]).get("resourceVersion") or last_rv)
                self.chunk(self.event_line(item[0], item[1], api_version, rt, req))
            self.end_chunks()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            api.store.stop_watch(watcher)

    def event_line(
        self, kind: str, obj: Obj, api_version: str, rt: ResourceType, req: Request | None = None
    ) -> bytes:
        table_version = printers.wants_table(req.accept) if req is not None else None
        if req is not None and table_version:
            # `kubectl get -w`: each event carries a one-row Table, columns on the first.
            api = self.server.api
            data = printers.table_json(
                rt.key,
                [api.present(rt, obj, req.version)],
                table_version=table_version,
                include_object=req.q("includeObject"),
                crd=api.crd_of(rt),
                version=req.version,
                list_meta={"resourceVersion": str(meta(obj).get("resourceVersion", ""))},
                headers=not req.table_headers_sent,
            )
            req.table_headers_sent = True
        elif obj.get("apiVersion") != api_version or obj.get("kind") != rt.kind:
            data = dumps(dict(obj, apiVersion=api_version, kind=rt.kind))
        else:
            data = self.server.api.store.encoded(obj)
        return b'{"type":"' + kind.encode() + b'","object":' + data + b"}\n"

    def stream_logs(self, req: Request, sent: int, lines: list[str]) -> None:
        api = self.server.api
        rt = req.rt
        assert rt is not None and req.name is not None
        ns = req.namespace or ""
        try:
            self.start_chunked("text/plain")
            for line in lines:
                self.chunk((line + "\n").encode())
            seen = len(api.store.logs(ns, req.name))
            with api.store.logs_changed:
                while not api.stopping.is_set():
                    if api.store.get(rt, ns, req.name) is None:
                        break
                    current = api.store._logs.get((ns, req.name), [])
                    if len(current) > seen:
                        new = current[seen:]
                        seen = len(current)
                        for line in new:
                            self.chunk((line + "\n").encode())
                    api.store.logs_changed.wait(0.5)
            self.end_chunks()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    api: ApiServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes and clients that hang up mid-request are routine; a server
        # bug is already answered with a 500 and logged by the handler.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def make_http_server(
    api: ApiServer, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> _HTTPServer:
    httpd = _HTTPServer((host, port), Handler)
    httpd.api = api
    if ssl_context is not None:
        # The handshake happens on the first read, in the connection's own thread, so a
        # slow or plain-HTTP client never stalls the accept loop.
        httpd.socket = ssl_context.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
    return httpd
