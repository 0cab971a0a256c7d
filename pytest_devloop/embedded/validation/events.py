"""Event validation as kube-apiserver does it, per API: core `v1` lax, `events.k8s.io` strict.

Both APIs store the same object (`embedded.conversion`), and kube-apiserver validates it in
the core shape whichever API wrote it, so error paths name core fields (`message`,
`involvedObject.namespace`, `count`...) also for `events.k8s.io` requests. Every Event must
pass the legacy checks (namespace agreement; with `eventTime` set, a reporting controller,
instance, action and reason); one written through `events.k8s.io/v1` must also have an
`eventTime`, a type of Normal or Warning, no deprecated source, timestamps or count, and a
valid series; updates through it may change the series and metadata only.
"""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded.conversion import events_v1_to_core_event
from pytest_devloop.k8s import validation as v
from pytest_devloop.k8s.validation import FieldError

Obj = dict[str, Any]

_INSTANCE_LIMIT = 128
_ACTION_LIMIT = 128
_REASON_LIMIT = 128
_NOTE_LIMIT = 1024


def _namespace(ev: Obj) -> str:
    return str((ev.get("metadata") or {}).get("namespace") or "")


def _at_most(path: str, value: Any, limit: int) -> list[FieldError]:
    if len(str(value or "")) > limit:
        return [v.invalid(path, "", f"can have at most {limit} characters")]
    return []


def _legacy(ev: Obj) -> list[FieldError]:
    """What every Event passes, whichever API wrote it (kube-apiserver's legacy checks)."""
    errs: list[FieldError] = []
    ns = _namespace(ev)
    involved = ev.get("involvedObject") or {}
    involved_ns = str(involved.get("namespace") or "")
    mismatch = v.invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
    if not ev.get("eventTime"):
        if not involved_ns:
            if ns not in ("", "default"):
                errs.append(mismatch)
        elif ns != involved_ns:
            errs.append(mismatch)
    else:
        if not involved_ns and ns not in ("default", "kube-system"):
            errs.append(mismatch)
        controller = str(ev.get("reportingComponent") or "")
        if not controller:
            errs.append(v.required("reportingController"))
        for msg in v.qualified_name(controller):
            errs.append(v.invalid("reportingController", controller, msg))
        if not ev.get("reportingInstance"):
            errs.append(v.required("reportingInstance"))
        errs += _at_most("reportingInstance", ev.get("reportingInstance"), _INSTANCE_LIMIT)
        if not ev.get("action"):
            errs.append(v.required("action"))
        errs += _at_most("action", ev.get("action"), _ACTION_LIMIT)
        if not ev.get("reason"):
            errs.append(v.required("reason"))
        errs += _at_most("reason", ev.get("reason"), _REASON_LIMIT)
        errs += _at_most("message", ev.get("message"), _NOTE_LIMIT)
    for msg in v.dns1123_subdomain(ns):
        errs.append(v.invalid("namespace", ns, msg))
    return errs


def _series(ev: Obj) -> list[FieldError]:
    series = ev.get("series")
    if not isinstance(series, dict):
        return []
    errs: list[FieldError] = []
    if int(series.get("count") or 0) < 2:
        errs.append(v.invalid("series.count", "", "should be at least 2"))
    if not series.get("lastObservedTime"):
        errs.append(v.required("series.lastObservedTime"))
    return errs


def core_create(ev: Obj) -> list[FieldError]:
    return _legacy(ev)


def core_update(old: Obj, new: Obj) -> list[FieldError]:
    del old
    return _legacy(new)


def events_create(served: Obj) -> list[FieldError]:
    ev = events_v1_to_core_event(served)
    errs = _legacy(ev) + _series(ev)
    if not ev.get("eventTime"):
        errs.append(v.required("eventTime"))
    kind = ev.get("type") or ""
    if kind not in ("Normal", "Warning"):
        errs.append(v.invalid("type", "", f"has invalid value: {kind}"))
    for path in ("firstTimestamp", "lastTimestamp", "count"):
        if ev.get(path):
            errs.append(v.invalid(path, "", "needs to be unset"))
    if ev.get("source"):
        errs.append(v.invalid("source", "", "needs to be unset"))
    return errs


# Core fields an update through events.k8s.io may not change.
_IMMUTABLE = (
    "involvedObject",
    "reason",
    "message",
    "source",
    "firstTimestamp",
    "lastTimestamp",
    "count",
    "type",
    "eventTime",
    "action",
    "related",
    "reportingComponent",
    "reportingInstance",
)
# Where kube-apiserver reports a field whose core name differs from its error path.
_PATHS = {"reportingComponent": "reportingController"}


def events_update(old_served: Obj, new_served: Obj) -> list[FieldError]:
    old = events_v1_to_core_event(old_served)
    new = events_v1_to_core_event(new_served)
    errs = _legacy(new)
    if new.get("series") != old.get("series"):
        errs += _series(new)
    for name in _IMMUTABLE:
        if (new.get(name) or None) != (old.get(name) or None):
            errs.append(v.invalid(_PATHS.get(name, name), new.get(name), "field is immutable"))
    return errs
