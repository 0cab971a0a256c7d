"""The embedded cluster's HTTP front: routing, auth, content negotiation, watches.

Owns the entry to the Kubernetes REST surface: `ApiServer` routes each request (health,
discovery, `/version`, OpenAPI, and per resource the verbs get/list/watch/create/update/
patch/delete/deletecollection plus the `status`, `scale`, `log`, `binding`, `eviction`,
`token` and `finalize` subresources) to its verb group in `api/`, and `Handler` serves
the connection: authentication, request bodies, responses, watch and log streams.
Objects live in `store.Store`; patch and apply semantics come from `k8s.patch` and
`k8s.apply`; defaults and allocations from the admission hook the controllers provide.

Responses are always JSON with an explicit `Content-Type` (client-go would otherwise try
to decode protobuf) and are written in one `send` on a `TCP_NODELAY` socket: a Python
HTTP server that writes headers and body separately pays ~40 ms per request to Nagle
and delayed ACKs.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pytest_devloop.embedded import auth as authn
from pytest_devloop.embedded import bodies, errors, printers
from pytest_devloop.embedded.api.context import Admit, ApiContext, Request, _no_admit
from pytest_devloop.embedded.api.discovery import Discovery
from pytest_devloop.embedded.api.reads import Reads
from pytest_devloop.embedded.api.subresources import Subresources
from pytest_devloop.embedded.api.writes import Writes
from pytest_devloop.embedded.errors import ApiError
from pytest_devloop.embedded.store import Change, Obj, Store, Watcher, dumps, meta
from pytest_devloop.embedded.validation import Validation
from pytest_devloop.k8s.resources import Registry, ResourceType, api_group, api_resource_list
from pytest_devloop.k8s.selectors import field_selector_name

log = logging.getLogger(__name__)

MAX_BODY = bodies.MAX_BODY
MAX_DISCARD = 64 * 1024 * 1024  # an oversized body up to this is read and dropped
# What real clusters let anyone read (the system:public-info-viewer role); kubectl's
# version dispatcher asks /version before it sends any credentials.
PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})


class ApiServer:
    """One embedded cluster's API: routes each request to its verb group.

    The groups (`api/`) share one `ApiContext`; this class owns what is per server: the
    bearer token, the watch bookmark interval, the request counters and the stop event,
    and serving CRDs as soon as they are stored.
    """

    def __init__(
        self,
        store: Store,
        token: str,
        *,
        admit: Admit = _no_admit,
        bookmark_interval: float = 5.0,
        signer: authn.TokenSigner | None = None,
    ) -> None:
        self.ctx = ApiContext(store, signer or authn.TokenSigner(), admit)
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.started = time.time()
        self.stopping = threading.Event()
        self.request_count = 0
        self.write_requests = 0
        self.discovery = Discovery(self.ctx)
        self.reads = Reads(self.ctx)
        self.writes = Writes(self.ctx)
        self.subresources = Subresources(self.ctx)
        # Subresource verbs by name; `status` and `finalize` go through the main verbs.
        self._subresource_verbs: dict[str, Callable[[Request], tuple[int, Any, str]]] = {
            "token": self.subresources.do_token,
            "ephemeralcontainers": self.subresources.do_ephemeral_containers,
            "scale": self.subresources.do_scale,
            "log": self.subresources.do_log_request,
            "binding": self.subresources.do_pod_action_request,
            "eviction": self.subresources.do_pod_action_request,
            "proxy": self.subresources.do_proxy,
        }
        self._collection_verbs: dict[str, Callable[[Request], tuple[int, Any, str]]] = {
            "GET": self.reads.do_list,
            "POST": self.writes.do_create,
            "DELETE": self.writes.do_delete_collection,
        }
        self._object_verbs: dict[str, Callable[[Request], tuple[int, Any, str]]] = {
            "GET": self.reads.do_get,
            "PUT": self.writes.do_update,
            "PATCH": self.writes.do_patch,
            "DELETE": self.writes.do_delete,
        }
        store.add_listener(self._on_change)

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def registry(self) -> Registry:
        return self.ctx.registry

    @property
    def signer(self) -> authn.TokenSigner:
        return self.ctx.signer

    @property
    def validation(self) -> Validation:
        return self.ctx.validation

    @property
    def admit(self) -> Admit:
        return self.ctx.admit

    @admit.setter
    def admit(self, admit: Admit) -> None:
        self.ctx.admit = admit

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
            return 200, self.discovery.version_info(), ""
        if head == "devloop" and parts[1:] == ["status"]:
            return 200, self.devloop_status(), ""
        if head == ".well-known" and parts[1:] == ["openid-configuration"]:
            return 200, self.discovery.openid_configuration(), ""
        if head == "openid" and parts[1:] == ["v1", "jwks"]:
            return 200, self.signer.jwks(), "application/jwk-set+json"
        if head == "openapi":
            return self.discovery.route_openapi(parts, req)
        if head == "api":
            if len(parts) == 1:
                return 200, self.discovery.api_versions(), ""
            req.group, req.version, rest = "", parts[1], parts[2:]
        elif head == "apis":
            if len(parts) == 1:
                return 200, self.discovery.api_group_list(), ""
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
        assert req.rt is not None
        if req.rt.key == "endpoints":
            # kube-apiserver 1.33 marks the v1 Endpoints API deprecated on every request.
            req.warnings.append(
                "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"
            )
        if not req.rt.stored:
            return self.subresources.do_review(req)
        verbs = self._object_verbs
        if req.sub in self._subresource_verbs:
            return self._subresource_verbs[req.sub](req)
        if req.name is None:
            verbs = self._collection_verbs
        verb = verbs.get(req.method)
        if verb is None:
            raise errors.method_not_allowed()
        return verb(req)

    def devloop_status(self) -> dict[str, Any]:
        return {
            "uid": self.store.cluster_uid,
            "uptime": round(time.time() - self.started, 1),
            "objects": self.store.counts(),
            "requests": self.request_count,
            "writes": self.store.write_count,
            "writeRequests": self.write_requests,
        }


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
        try:
            self.start_chunked("application/json")
            if send_initial and not self.send_initial_events(watcher, rv_now, rt, req):
                return
            self.send_live_events(watcher, rv_now, deadline, bookmarks, rt, req)
            self.end_chunks()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            api.store.stop_watch(watcher)

    def send_initial_events(
        self, watcher: Watcher, rv_now: int, rt: ResourceType, req: Request
    ) -> bool:
        """The replay, already queued, then a bookmark marking the end of the initial
        events, as watch-list clients expect (writes queued since registration are live
        events: they follow the bookmark). False when the watch ended meanwhile."""
        api_version = rt.api_version(req.version)
        for _ in range(watcher.initial):
            item = watcher.events.get_nowait()
            if item is None:
                return False
            self.chunk(self.event_line(item[0], item[1], api_version, rt, req))
        self.chunk(_bookmark(rt, api_version, rv_now, initial_end=True))
        return True

    def send_live_events(
        self,
        watcher: Watcher,
        last_rv: int,
        deadline: float,
        bookmarks: bool,
        rt: ResourceType,
        req: Request,
    ) -> None:
        """Events as they come until the deadline, the server stops or the client leaves;
        with `allowWatchBookmarks`, a bookmark every `bookmark_interval` of silence."""
        api = self.server.api
        api_version = rt.api_version(req.version)
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
                    rv = max(last_rv, api.store.resource_version)
                    self.chunk(_bookmark(rt, api_version, rv))
                    next_bookmark = time.monotonic() + api.bookmark_interval
                continue
            if item is None:
                break
            last_rv = int(meta(item[1]).get("resourceVersion") or last_rv)
            self.chunk(self.event_line(item[0], item[1], api_version, rt, req))

    def event_line(
        self, kind: str, obj: Obj, api_version: str, rt: ResourceType, req: Request | None = None
    ) -> bytes:
        table_version = printers.wants_table(req.accept) if req is not None else None
        if req is not None and table_version:
            # `kubectl get -w`: each event carries a one-row Table, columns on the first.
            api = self.server.api
            data = printers.table_json(
                rt.key,
                [api.ctx.present(rt, obj, req.version)],
                table_version=table_version,
                include_object=req.q("includeObject"),
                crd=api.ctx.crd_of(rt),
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


def _bookmark(rt: ResourceType, api_version: str, rv: int, *, initial_end: bool = False) -> bytes:
    """A BOOKMARK watch event line at `rv` (marking the end of the initial events)."""
    metadata: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    event = {
        "type": "BOOKMARK",
        "object": {"kind": rt.kind, "apiVersion": api_version, "metadata": metadata},
    }
    return dumps(event) + b"\n"


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
