"""Resources served from another resource's storage, and the field conversion between them.

Owns the table of REST collections that keep no objects of their own: kube-apiserver stores
`events.k8s.io/v1` Events as core `v1` Events, so an Event written through either API is
read, listed, watched and deleted through the other. The store keeps such objects once, in
the storage resource's shape, and converts them on the way in and out with the functions
here (the field mapping of kube-apiserver's events conversion: `message`/`note`,
`involvedObject`/`regarding`, `source`/`deprecatedSource`, the timestamps and count with
their `deprecated` names, `reportingComponent`/`reportingController`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class StoredAs:
    """A served collection whose objects live in the storage collection `storage_key`."""

    storage_key: str  # ResourceType.key of the collection holding the objects
    api_version: str  # what the served collection's objects say they are
    to_storage: Callable[[Obj], Obj]
    from_storage: Callable[[Obj], Obj]

    @property
    def storage(self) -> tuple[str, str]:
        """(group, plural) of the storage collection, for a registry lookup."""
        group, _, plural = self.storage_key.rpartition("/")
        return group, plural


# core v1 field -> events.k8s.io/v1 field, for the fields that change only their name.
_RENAMED = (
    ("message", "note"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
)
# Fields both versions carry under the same name.
_SAME = ("eventTime", "series", "reportingInstance", "action", "reason", "related", "type")


def _put(out: Obj, key: str, value: Any, *, always: bool) -> None:
    # Go's encoding omits an `omitempty` field's zero value; the other fields are written
    # even when zero (an empty string, `null` for an unset time, `{}` for a struct).
    if always or value not in (None, "", 0, {}, []):
        out[key] = value


def core_event_to_events_v1(core: Obj) -> Obj:
    """A core v1 Event as events.k8s.io/v1 serves it."""
    out: Obj = {"apiVersion": "events.k8s.io/v1", "kind": "Event"}
    if "metadata" in core:
        out["metadata"] = core["metadata"]
    out["eventTime"] = core.get("eventTime")
    for name in ("series", "reportingInstance", "action", "reason", "related", "type"):
        _put(out, name, core.get(name), always=False)
    _put(out, "reportingController", core.get("reportingComponent"), always=False)
    out["regarding"] = core.get("involvedObject") or {}
    _put(out, "note", core.get("message"), always=False)
    out["deprecatedSource"] = core.get("source") or {}
    out["deprecatedFirstTimestamp"] = core.get("firstTimestamp")
    out["deprecatedLastTimestamp"] = core.get("lastTimestamp")
    _put(out, "deprecatedCount", core.get("count"), always=False)
    return out


def events_v1_to_core_event(ev: Obj) -> Obj:
    """An events.k8s.io/v1 Event in the core v1 shape it is stored in."""
    out: Obj = {"apiVersion": "v1", "kind": "Event"}
    if "metadata" in ev:
        out["metadata"] = ev["metadata"]
    out["involvedObject"] = ev.get("regarding") or {}
    _put(out, "reason", ev.get("reason"), always=False)
    _put(out, "message", ev.get("note"), always=False)
    out["source"] = ev.get("deprecatedSource") or {}
    out["firstTimestamp"] = ev.get("deprecatedFirstTimestamp")
    out["lastTimestamp"] = ev.get("deprecatedLastTimestamp")
    _put(out, "count", ev.get("deprecatedCount"), always=False)
    _put(out, "type", ev.get("type"), always=False)
    out["eventTime"] = ev.get("eventTime")
    for name in ("series", "action", "related"):
        _put(out, name, ev.get(name), always=False)
    out["reportingComponent"] = ev.get("reportingController") or ""
    out["reportingInstance"] = ev.get("reportingInstance") or ""
    return out


STORED_AS: dict[str, StoredAs] = {
    "events.k8s.io/events": StoredAs(
        storage_key="events",
        api_version="events.k8s.io/v1",
        to_storage=events_v1_to_core_event,
        from_storage=core_event_to_events_v1,
    ),
}


def stored_as(key: str) -> StoredAs | None:
    """How the collection `key` (a ResourceType.key) is stored, when not as itself."""
    return STORED_AS.get(key)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _event_source(ev: Mapping[str, Any], source_key: str, controller_key: str) -> str:
    # The `source` field label reads the deprecated source's component, and the
    # reporting controller when that is empty (events written through events.k8s.io).
    return _text((ev.get(source_key) or {}).get("component")) or _text(ev.get(controller_key))


def _event_fields(
    ev: Mapping[str, Any], ref_key: str, reporting_key: str, source_key: str
) -> dict[str, str]:
    """The field labels of an Event in one API version's names (the object it is about
    under `ref_key`, its reporter under `reporting_key`), beyond metadata."""
    ref = ev.get(ref_key) or {}
    out = {
        f"{ref_key}.{k}": _text(ref.get(k))
        for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    }
    out["reason"] = _text(ev.get("reason"))
    out[reporting_key] = _text(ev.get(reporting_key))
    out["source"] = _event_source(ev, source_key, reporting_key)
    out["type"] = _text(ev.get("type"))
    return out


def core_event_fields(ev: Mapping[str, Any]) -> dict[str, str]:
    """The field labels a core v1 Event is selected by, beyond metadata.name/namespace."""
    return _event_fields(ev, "involvedObject", "reportingComponent", "source")


def events_v1_fields(ev: Mapping[str, Any]) -> dict[str, str]:
    """The field labels an events.k8s.io/v1 Event is selected by, beyond metadata."""
    return _event_fields(ev, "regarding", "reportingController", "deprecatedSource")


# Kinds whose field labels are not all plain paths into the object: the label -> value
# map of one object, as kube-apiserver's selectable-fields functions compute it.
SELECTABLE_FIELDS: dict[str, Callable[[Mapping[str, Any]], dict[str, str]]] = {
    "events": core_event_fields,
    "events.k8s.io/events": events_v1_fields,
}
