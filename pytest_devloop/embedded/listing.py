"""List semantics: snapshots, pagination, resourceVersion matching, field labels per kind.

Owns what a list request means beyond "the current objects":

- which field labels each kind supports in a `fieldSelector` (anything else is the real
  server's 400 `field label not supported`);
- which resourceVersion a list reads at: unset is the latest, `resourceVersionMatch=Exact`
  is exactly that version (410 once compacted out of the history, 504 for a version the
  server has not reached), `NotOlderThan` (or no match with a version) at least that new;
- pagination: `limit` cuts the sorted list and the `continue` token pins the
  resourceVersion of the first page, so every page comes from the same snapshot however
  many writes happen between pages (a token older than the history answers 410).

Snapshots are rebuilt from the store's write history (`Store.list_at`), not copied.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from typing import Any

from pytest_devloop.embedded import conversion, errors
from pytest_devloop.embedded.store import FieldMatch, Obj, Store, meta
from pytest_devloop.k8s.resources import ResourceType
from pytest_devloop.k8s.selectors import (
    Requirement,
    field_selector_fields,
    parse_field_selector,
)

_COMMON = frozenset({"metadata.name", "metadata.namespace"})
_EVENT_FIELDS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    }
)
# The field labels kube-apiserver registers per kind, beyond metadata.name/namespace.
FIELD_LABELS: dict[str, frozenset[str]] = {
    "pods": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        }
    ),
    "events": _EVENT_FIELDS,
    # events.k8s.io names the involved object `regarding` and has no `involvedObject.*`
    # or `reportingComponent` labels (kube-apiserver's events/v1 field label conversion).
    "events.k8s.io/events": frozenset(
        {
            "reason",
            "source",
            "type",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reportingController",
        }
    ),
    "secrets": frozenset({"type"}),
    "namespaces": frozenset({"status.phase"}),
    "nodes": frozenset({"spec.unschedulable"}),
    "replicationcontrollers": frozenset({"status.replicas"}),
    "apps/replicasets": frozenset({"status.replicas"}),
    "batch/jobs": frozenset({"status.successful"}),
    "services": frozenset({"spec.clusterIP", "spec.type"}),
    "persistentvolumeclaims": frozenset(),
    "certificates.k8s.io/certificatesigningrequests": frozenset({"spec.signerName"}),
}

# How long a list at a resourceVersion the server has not reached waits before its 504
# (the real watch cache waits 3 s for the store to catch up).
FUTURE_WAIT = 3.0


def check_field_selector(
    rt: ResourceType, text: str, crd_fields: frozenset[str] = frozenset()
) -> None:
    """400 `field label not supported` for a field the kind does not index."""
    allowed = _COMMON | FIELD_LABELS.get(rt.key, frozenset()) | crd_fields
    for path in field_selector_fields(text):
        if path not in allowed:
            raise errors.bad_request(f"field label not supported: {path}")


def field_matcher(rt: ResourceType, text: str) -> FieldMatch | None:
    """The object filter of a field selector; labels a kind computes are read its way.

    Most labels are paths into the object; Events' labels come from the selectable-fields
    function of their version (`source` is the deprecated source's component or else the
    reporting controller, as kube-apiserver computes it).
    """
    plain = parse_field_selector(text)  # also the syntax check (SelectorError)
    fields_of = conversion.SELECTABLE_FIELDS.get(rt.key)
    if fields_of is None or plain is None:
        return plain
    terms = [
        (m.group(1), m.group(2) == "!=", m.group(3))
        for m in (
            re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*?)\s*", part)
            for part in text.split(",")
            if part.strip()
        )
        if m
    ]

    def match(obj: Mapping[str, Any]) -> bool:
        computed = fields_of(obj)
        m = meta(obj)
        computed["metadata.name"] = str(m.get("name") or "")
        computed["metadata.namespace"] = str(m.get("namespace") or "")
        return all((computed.get(path, "") == value) != negate for path, negate, value in terms)

    return match


def _encode_token(rv: int, ns: str, name: str) -> str:
    data = {"v": "meta.k8s.io/v1", "rv": rv, "start": [ns, name]}
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _decode_token(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        rv = int(data["rv"])
        ns, name = data["start"]
        return rv, (str(ns), str(name))
    except (ValueError, KeyError, TypeError) as e:
        raise errors.bad_request(f"continue key is not valid: {e}") from e


def _wait_for(store: Store, rv: int) -> None:
    deadline = time.monotonic() + FUTURE_WAIT
    while store.resource_version < rv:
        if time.monotonic() >= deadline:
            raise errors.ApiError(
                504,
                "Timeout",
                f"Too large resource version: {rv}, current: {store.resource_version}",
                details={
                    "causes": [
                        {
                            "reason": "ResourceVersionTooLarge",
                            "message": "Too large resource version",
                        }
                    ],
                    "retryAfterSeconds": 1,
                },
            )
        time.sleep(0.02)


def list_page(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    label_reqs: list[Requirement],
    field_match: FieldMatch | None,
    query: dict[str, list[str]],
) -> tuple[list[Obj], dict[str, Any]]:
    """One page of a list request: (items, list metadata) per the query's rv/limit/continue."""

    def q(key: str) -> str:
        values = query.get(key)
        return values[0] if values else ""

    rv_text = q("resourceVersion")
    match = q("resourceVersionMatch")
    cont = q("continue")
    limit_text = q("limit") or "0"
    try:
        limit = int(limit_text)
    except ValueError as e:
        raise errors.bad_request(f"invalid limit {limit_text!r}") from e
    if match and match not in ("Exact", "NotOlderThan"):
        raise errors.invalid(
            "ListOptions",
            "",
            "meta.k8s.io",
            [
                (
                    "resourceVersionMatch",
                    f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan"',
                )
            ],
        )
    if match and not rv_text:
        raise errors.invalid(
            "ListOptions",
            "",
            "meta.k8s.io",
            [
                (
                    "resourceVersionMatch",
                    "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
            ],
        )
    if match == "Exact" and rv_text == "0":
        raise errors.invalid(
            "ListOptions",
            "",
            "meta.k8s.io",
            [
                (
                    "resourceVersionMatch",
                    'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                )
            ],
        )
    if cont and match:
        raise errors.invalid(
            "ListOptions",
            "",
            "meta.k8s.io",
            [
                (
                    "resourceVersionMatch",
                    "Forbidden: resourceVersionMatch is forbidden when continue is provided",
                )
            ],
        )
    requested: int | None = None
    if rv_text and rv_text != "0":
        try:
            requested = int(rv_text)
        except ValueError as e:
            raise errors.bad_request(f"invalid resource version {rv_text!r}") from e
    start: tuple[str, str] | None = None
    if cont:
        at, start = _decode_token(cont)
        try:
            items = store.list_at(rt, at, namespace, label_reqs, field_match)
        except errors.ApiError as e:
            if e.code != 410:
                raise
            raise errors.expired(
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter."
            ) from e
    elif requested is not None and match == "Exact":
        if requested > store.resource_version:
            _wait_for(store, requested)
        at = requested
        try:
            items = store.list_at(rt, at, namespace, label_reqs, field_match)
        except errors.ApiError as e:
            if e.code != 410:
                raise
            raise errors.expired(
                f"The resourceVersion for the provided list is too old. ({requested})"
            ) from e
    else:
        if requested is not None and requested > store.resource_version:
            _wait_for(store, requested)
        items, at = store.list(rt, namespace, label_reqs, field_match)
    items.sort(key=_sort_key)
    if start is not None:
        items = [o for o in items if _sort_key(o) > start]
    list_meta: dict[str, Any] = {"resourceVersion": str(at)}
    if limit > 0 and len(items) > limit:
        last = items[limit - 1]
        ns, name = _sort_key(last)
        list_meta["continue"] = _encode_token(at, ns, name)
        # The real server counts the rest only when no selector filters it.
        if not label_reqs and field_match is None:
            list_meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    return items, list_meta


def _sort_key(obj: Obj) -> tuple[str, str]:
    m = meta(obj)
    return (str(m.get("namespace", "")), str(m.get("name", "")))
