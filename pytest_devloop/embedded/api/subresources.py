"""Subresource verbs of the embedded API server: the review kinds (answered, never stored),
`token`, `scale`, `log`, `binding` and `eviction`, a Service's `proxy`, and the refusal of
`ephemeralcontainers`. (`status` and `finalize` are writes: see writes.py.)
"""

from __future__ import annotations

import ssl
from typing import Any

from pytest_devloop.embedded import auth as authn
from pytest_devloop.embedded import bodies, disruption, errors
from pytest_devloop.embedded.api.context import ApiContext, Request
from pytest_devloop.embedded.errors import ApiError
from pytest_devloop.embedded.store import Obj, clone, meta
from pytest_devloop.k8s import patch as patching
from pytest_devloop.k8s.selectors import (
    format_label_selector,
)


def _loopback_endpoint(endpoints: Obj | None, port: Obj, name: str) -> tuple[str, int]:
    """The first ready address of the Service's port in 127.0.0.0/8 (the only ones proxied
    to), or 503 naming the addresses refused."""
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
                return ip, int(ep_port.get("port") or 0)
            refused.append(ip)
    why = (
        f"endpoints outside 127.0.0.0/8 are not proxied to ({', '.join(refused)})"
        if refused
        else "no endpoints available"
    )
    raise ApiError(503, "ServiceUnavailable", f'{why} for service "{name}"')


class Subresources:
    """The verbs of a resource's subresources, each checking its own method."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def do_review(self, req: Request) -> tuple[int, Any, str]:
        """The review kinds: answered on create, never stored."""
        assert req.rt is not None
        if req.method == "POST" and req.name is None:
            body = self.ctx.body_object(req)
            self.ctx.check_kind(req, body)
            answer = authn.review(
                req.rt.kind, body, req.identity, self.ctx.signer, namespace=req.namespace
            )
            answer["apiVersion"] = req.rt.api_version(req.version)
            return 201, answer, ""
        raise errors.method_not_allowed()

    def do_token(self, req: Request) -> tuple[int, Any, str]:
        if req.method != "POST":
            raise errors.method_not_allowed()
        sa = self.ctx.must_get(req)
        body = self.ctx.decode(req, require_object=False) or {}
        self.check_bound_object(req, body)
        return 201, authn.token_request(self.ctx.signer, sa, body), ""

    def do_ephemeral_containers(self, req: Request) -> tuple[int, Any, str]:
        self.ctx.must_get(req)
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the embedded cluster does not run ephemeral containers (kubectl debug): "
            "debug on a real cluster, or run a debugging Pod next to this one",
        )

    def do_scale(self, req: Request) -> tuple[int, Any, str]:
        if req.method == "GET":
            return 200, self.scale_of(req), ""
        if req.method in ("PUT", "PATCH"):
            return self.do_scale_write(req)
        raise errors.method_not_allowed()

    def do_log_request(self, req: Request) -> tuple[int, Any, str]:
        if req.method == "GET":
            return self.do_log(req)
        raise errors.method_not_allowed()

    def do_pod_action_request(self, req: Request) -> tuple[int, Any, str]:
        if req.method == "POST":
            return self.do_pod_action(req)
        raise errors.method_not_allowed()

    def do_proxy(self, req: Request) -> tuple[int, Any, str]:
        if req.rt is not None and req.rt.key == "services":
            return self.do_service_proxy(req)
        raise errors.ApiError(
            503, "ServiceUnavailable", "the embedded cluster does not proxy to this resource"
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
        rt = self.ctx.registry.get("", plural) if plural else None
        if rt is None:
            return  # an unsupported kind is refused by the TokenRequest validation
        name = str(ref.get("name", ""))
        obj = self.ctx.store.get(rt, req.namespace if rt.namespaced else None, name)
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

    def scale_of(self, req: Request) -> Obj:
        rt = req.rt
        assert rt is not None
        obj = self.ctx.must_get(req)
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
        old = self.ctx.must_get(req)
        new = clone(old)
        new.setdefault("spec", {})["replicas"] = replicas
        manager = self.ctx.manager(req, req.user_agent)
        new = self.ctx.track(rt, old, new, manager, "scale")
        self.ctx.store.update(rt, new, dry_run=self.ctx.dry_run(req))
        return 200, self.scale_of(req), ""

    def do_log(self, req: Request) -> tuple[int, Any, str]:
        pod = self.ctx.must_get(req)
        assert req.name is not None
        lines = self.ctx.store.logs(req.namespace or "", req.name)
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

    def do_pod_action(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        body = self.ctx.body_object(req)
        pod = self.ctx.must_get(req)
        if req.sub == "eviction":
            disruption.check_eviction(self.ctx.store, pod)
            self.ctx.store.delete(rt, req.namespace, req.name)
        else:
            node = (body.get("target") or {}).get("name")
            if not node:
                raise errors.invalid("Binding", req.name, "", [("target.name", "Required value")])
            new = clone(pod)
            new.setdefault("spec", {})["nodeName"] = node
            self.ctx.store.update(rt, new)
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
        svc = self.ctx.store.get(req.rt, req.namespace, name)
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
        endpoints_rt = self.ctx.registry.lookup("", "v1", "endpoints")
        endpoints = (
            self.ctx.store.get(endpoints_rt, req.namespace, name)
            if endpoints_rt is not None
            else None
        )
        target = _loopback_endpoint(endpoints, port, name)
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
