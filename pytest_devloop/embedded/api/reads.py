"""Read verbs of the embedded API server: get and list (a list with `watch=true` hands the
watch to the HTTP handler, which streams it).
"""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded import errors, listing, printers
from pytest_devloop.embedded.api.context import ApiContext, Request
from pytest_devloop.embedded.store import dumps, meta
from pytest_devloop.k8s.selectors import (
    SelectorError,
    parse_label_selector,
)


class Reads:
    """get, list and the start of a watch."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def do_get(self, req: Request) -> tuple[int, Any, str]:
        assert req.rt is not None
        obj = self.ctx.present(req.rt, self.ctx.must_get(req), req.version)
        table_version = printers.wants_table(req.accept)
        if table_version:
            list_meta = {"resourceVersion": meta(obj).get("resourceVersion", "")}
            return 200, self.ctx.as_table(req, [obj], list_meta, table_version), "application/json"
        return 200, obj, ""

    def do_list(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None
        try:
            label_reqs = parse_label_selector(req.q("labelSelector"))
            field_match = listing.field_matcher(rt, req.q("fieldSelector"))
        except SelectorError as e:
            raise errors.bad_request(str(e)) from e
        listing.check_field_selector(rt, req.q("fieldSelector"), self.ctx.crd_field_labels(rt))
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
            self.ctx.store, rt, req.namespace, label_reqs, field_match, req.query
        )
        table_version = printers.wants_table(req.accept)
        if table_version:
            return 200, self.ctx.as_table(req, items, list_meta, table_version), "application/json"
        api_version = rt.api_version(req.version)
        encoded = [
            self.ctx.store.encoded(o)
            if o.get("apiVersion") == api_version and o.get("kind") == rt.kind
            else dumps(dict(o, apiVersion=api_version, kind=rt.kind))
            for o in items
        ]
        head = dumps({"kind": rt.list_kind_name, "apiVersion": api_version, "metadata": list_meta})
        body = head[:-1] + b',"items":[' + b",".join(encoded) + b"]}"
        return 200, body, "application/json"
