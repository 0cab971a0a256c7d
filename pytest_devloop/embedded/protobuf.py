"""Protobuf request bodies for the embedded Kubernetes API server.

Since client-go 0.32, typed clients (kubectl 1.32+, helm's Secret storage driver) send
``Content-Type: application/vnd.kubernetes.protobuf`` bodies on create, update and
delete. This module owns turning such a body into the dict the API server would have
received had the client sent JSON, so that the rest of the server only ever sees JSON
objects. The server always answers in JSON, which client-go accepts.

It owns:

* the wire format: a small hand-written decoder (varints, length-delimited fields,
  skipping of fixed32/fixed64 for unknown fields) with no dependency on the
  ``protobuf`` package;
* the Kubernetes envelope: the magic ``k8s\\x00`` followed by a ``runtime.Unknown``
  message carrying ``typeMeta`` (apiVersion, kind) and the object's own bytes;
* per-kind schemas with field numbers from ``k8s.io/api`` and ``k8s.io/apimachinery``
  ``generated.proto``, plus the JSON field names and ``omitempty`` rules of the
  matching Go structs, so that the output matches what Go's ``encoding/json`` would
  have produced for the same object.

Decoded kinds: every kind of the built-in API groups a client may send (``v1``, ``apps``,
``batch``, ``autoscaling``, ``networking.k8s.io``, ``rbac.authorization.k8s.io``,
``policy``, ``storage.k8s.io``, ``scheduling.k8s.io``, ``coordination.k8s.io``,
``discovery.k8s.io``, ``admissionregistration.k8s.io``, ``node.k8s.io``,
``events.k8s.io``, ``flowcontrol.apiserver.k8s.io``, ``certificates.k8s.io``,
``authentication.k8s.io``, ``authorization.k8s.io``) from ``data/protobuf_types.json``,
the wire facts of the ``k8s.io/api`` structs generated from their struct tags by
``scripts/gen_protobuf_types.py``; a few kinds keep hand-written schemas (Secret,
ConfigMap, Namespace, ServiceAccount, Events, TokenRequest, the self reviews, Eviction)
checked against captured client bodies; and DeleteOptions under any apiVersion (client-go
labels it with the client's group version).

Anything else raises :class:`UnsupportedProtobuf` (the server answers 415 and asks for
JSON); malformed bytes raise :class:`ProtobufError` (the server answers 400).
"""

from __future__ import annotations

import base64
import datetime
import importlib.resources
import json
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "PROTOBUF_CONTENT_TYPE",
    "ProtobufError",
    "UnsupportedProtobuf",
    "decode_request",
    "is_protobuf",
    "supported_kinds",
]

PROTOBUF_CONTENT_TYPE: Final = "application/vnd.kubernetes.protobuf"

# Every protobuf body Kubernetes exchanges starts with these four bytes; the rest is a
# runtime.Unknown message (apimachinery pkg/runtime/serializer/protobuf).
_MAGIC: Final = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not a well-formed Kubernetes protobuf message (HTTP 400)."""


class UnsupportedProtobuf(ProtobufError):
    """The envelope names a kind this module has no schema for (HTTP 415).

    It subclasses :class:`ProtobufError` so that a handler catching only that still
    answers with a client error; catch this one first to answer 415.
    """

    def __init__(self, kind: str, api_version: str = "") -> None:
        self.kind = kind
        self.api_version = api_version
        shown = f"{api_version}, Kind={kind}" if api_version else kind
        super().__init__(
            f"the embedded API server cannot decode protobuf bodies of {shown}; "
            "send the request as application/json"
        )


def is_protobuf(content_type: str) -> bool:
    """Tell whether a Content-Type header value names Kubernetes protobuf.

    Parameters (``;charset=...``, ``;stream=watch``) and case are ignored.
    """
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == PROTOBUF_CONTENT_TYPE


# --------------------------------------------------------------------------- schemas
#
# A schema lists a message's fields in the order of the Go struct, because that is the
# key order of Go's JSON output and keeps decoded objects readable next to real ones.

# Value kinds. Plain ints rather than an Enum: they are compared in the innermost loop.
_STRING: Final = 0
_BOOL: Final = 2
_INT64: Final = 3
_INT32: Final = 4
_MESSAGE: Final = 5
_TIME: Final = 6  # metav1.Time: RFC 3339, whole seconds
_MICRO_TIME: Final = 7  # metav1.MicroTime: RFC 3339 with microseconds
_FIELDS_V1: Final = 8  # metav1.FieldsV1: its raw bytes are JSON, embedded as such
_STRING_MAP: Final = 9  # map<string, string>
_BYTES_MAP: Final = 10  # map<string, bytes>: JSON shows the bytes as standard base64
_STRING_LIST_MAP: Final = 11  # map<string, {1: repeated string}>, as authentication's ExtraValue
_BYTES: Final = 12  # []byte: standard base64 in JSON
_QUANTITY: Final = 13  # resource.Quantity {1: string}: the string
_INT_OR_STRING: Final = 14  # intstr.IntOrString {1: type, 2: intVal, 3: strVal}
_RAW: Final = 15  # runtime.RawExtension {1: raw JSON bytes}: embedded as JSON
_DURATION: Final = 16  # metav1.Duration {1: nanoseconds}: Go's duration text
_DOUBLE: Final = 17  # float64 (fixed64 on the wire)
_MAP: Final = 18  # map<string, V> with V described by the field's `value`

# How a field shows in JSON, after the Go field's type and json tag.
_OMITEMPTY: Final = 0  # value type with omitempty: left out when zero
_OPTIONAL: Final = 1  # pointer with omitempty: shown exactly when sent
_NULLABLE: Final = 2  # no omitempty on a pointer/slice/map, or any metav1.Time: null when unset
_REQUIRED: Final = 3  # value type without omitempty, or a struct: zero value when unset
_OMITZERO: Final = 4  # omitzero (creationTimestamp in current apimachinery): left out when unset
_INLINE: Final = 5  # an embedded struct tagged `json:",inline"`: its fields join the parent's

_LENGTH_DELIMITED_KINDS: Final = frozenset(
    {
        _STRING,
        _MESSAGE,
        _TIME,
        _MICRO_TIME,
        _FIELDS_V1,
        _STRING_MAP,
        _BYTES_MAP,
        _STRING_LIST_MAP,
        _BYTES,
        _QUANTITY,
        _INT_OR_STRING,
        _RAW,
        _DURATION,
        _MAP,
    }
)

_WIRE_VARINT: Final = 0
_WIRE_FIXED64: Final = 1
_WIRE_LEN: Final = 2
_WIRE_FIXED32: Final = 5


@dataclass(frozen=True, slots=True)
class _Field:
    number: int
    name: str
    kind: int
    mode: int
    repeated: bool = False
    message: _Message | None = None
    wire: int = field(init=False)

    value: _Field | None = None  # for _MAP: how each value is read

    def __post_init__(self) -> None:
        if self.kind in _LENGTH_DELIMITED_KINDS:
            wire = _WIRE_LEN
        elif self.kind == _DOUBLE:
            wire = _WIRE_FIXED64
        else:
            wire = _WIRE_VARINT
        object.__setattr__(self, "wire", wire)


@dataclass(frozen=True, slots=True)
class _Message:
    name: str
    fields: tuple[_Field, ...]
    by_number: dict[int, _Field] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_number", {f.number: f for f in self.fields})


def _f(
    number: int,
    name: str,
    kind: int,
    mode: int = _OMITEMPTY,
    *,
    repeated: bool = False,
    message: _Message | None = None,
) -> _Field:
    return _Field(number, name, kind, mode, repeated, message)


def _msg(name: str, *fields: _Field) -> _Message:
    return _Message(name, fields)


# k8s.io/apimachinery/pkg/runtime: the envelope's typeMeta ---------------------------

_TYPE_META = _msg(
    "TypeMeta",
    _f(1, "apiVersion", _STRING),
    _f(2, "kind", _STRING),
)

# k8s.io/apimachinery/pkg/apis/meta/v1 -------------------------------------------------

_OWNER_REFERENCE = _msg(
    "OwnerReference",
    _f(5, "apiVersion", _STRING, _REQUIRED),
    _f(1, "kind", _STRING, _REQUIRED),
    _f(3, "name", _STRING, _REQUIRED),
    _f(4, "uid", _STRING, _REQUIRED),
    _f(6, "controller", _BOOL, _OPTIONAL),
    _f(7, "blockOwnerDeletion", _BOOL, _OPTIONAL),
)

_MANAGED_FIELDS_ENTRY = _msg(
    "ManagedFieldsEntry",
    _f(1, "manager", _STRING),
    _f(2, "operation", _STRING),
    _f(3, "apiVersion", _STRING),
    _f(4, "time", _TIME, _OPTIONAL),
    _f(6, "fieldsType", _STRING),
    _f(7, "fieldsV1", _FIELDS_V1, _OPTIONAL),
    _f(8, "subresource", _STRING),
)

_OBJECT_META = _msg(
    "ObjectMeta",
    _f(1, "name", _STRING),
    _f(2, "generateName", _STRING),
    _f(3, "namespace", _STRING),
    _f(4, "selfLink", _STRING),
    _f(5, "uid", _STRING),
    _f(6, "resourceVersion", _STRING),
    _f(7, "generation", _INT64),
    # Go clients always send this field, empty when unset. kubectl <= 1.32 shows an unset
    # one as null in JSON; current apimachinery tags it omitzero and leaves it out, which
    # is what the server would rather see, so an unset one is left out here too.
    _f(8, "creationTimestamp", _TIME, _OMITZERO),
    _f(9, "deletionTimestamp", _TIME, _OPTIONAL),
    _f(10, "deletionGracePeriodSeconds", _INT64, _OPTIONAL),
    _f(11, "labels", _STRING_MAP),
    _f(12, "annotations", _STRING_MAP),
    _f(13, "ownerReferences", _MESSAGE, repeated=True, message=_OWNER_REFERENCE),
    _f(14, "finalizers", _STRING, repeated=True),
    _f(17, "managedFields", _MESSAGE, repeated=True, message=_MANAGED_FIELDS_ENTRY),
)

_PRECONDITIONS = _msg(
    "Preconditions",
    _f(1, "uid", _STRING, _OPTIONAL),
    _f(2, "resourceVersion", _STRING, _OPTIONAL),
)

_DELETE_OPTIONS = _msg(
    "DeleteOptions",
    _f(1, "gracePeriodSeconds", _INT64, _OPTIONAL),
    _f(2, "preconditions", _MESSAGE, _OPTIONAL, message=_PRECONDITIONS),
    _f(3, "orphanDependents", _BOOL, _OPTIONAL),
    # generated.proto says string; the Go struct tag's "varint" is a long-standing typo.
    _f(4, "propagationPolicy", _STRING, _OPTIONAL),
    _f(5, "dryRun", _STRING, repeated=True),
    _f(6, "ignoreStoreReadErrorWithClusterBreakingPotential", _BOOL, _OPTIONAL),
)

# k8s.io/api/core/v1 ---------------------------------------------------------------------

_SECRET = _msg(
    "Secret",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(5, "immutable", _BOOL, _OPTIONAL),
    _f(2, "data", _BYTES_MAP),
    _f(4, "stringData", _STRING_MAP),
    _f(3, "type", _STRING),
)

_CONFIG_MAP = _msg(
    "ConfigMap",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(4, "immutable", _BOOL, _OPTIONAL),
    _f(2, "data", _STRING_MAP),
    _f(3, "binaryData", _BYTES_MAP),
)

_NAMESPACE_CONDITION = _msg(
    "NamespaceCondition",
    _f(1, "type", _STRING, _REQUIRED),
    _f(2, "status", _STRING, _REQUIRED),
    _f(4, "lastTransitionTime", _TIME, _NULLABLE),
    _f(5, "reason", _STRING),
    _f(6, "message", _STRING),
)

_NAMESPACE = _msg(
    "Namespace",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(
        2,
        "spec",
        _MESSAGE,
        _REQUIRED,
        message=_msg("NamespaceSpec", _f(1, "finalizers", _STRING, repeated=True)),
    ),
    _f(
        3,
        "status",
        _MESSAGE,
        _REQUIRED,
        message=_msg(
            "NamespaceStatus",
            _f(1, "phase", _STRING),
            _f(2, "conditions", _MESSAGE, repeated=True, message=_NAMESPACE_CONDITION),
        ),
    ),
)

_OBJECT_REFERENCE = _msg(
    "ObjectReference",
    _f(1, "kind", _STRING),
    _f(2, "namespace", _STRING),
    _f(3, "name", _STRING),
    _f(4, "uid", _STRING),
    _f(5, "apiVersion", _STRING),
    _f(6, "resourceVersion", _STRING),
    _f(7, "fieldPath", _STRING),
)

_SERVICE_ACCOUNT = _msg(
    "ServiceAccount",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(2, "secrets", _MESSAGE, repeated=True, message=_OBJECT_REFERENCE),
    _f(
        3,
        "imagePullSecrets",
        _MESSAGE,
        repeated=True,
        message=_msg("LocalObjectReference", _f(1, "name", _STRING)),
    ),
    _f(4, "automountServiceAccountToken", _BOOL, _OPTIONAL),
)

_EVENT_SOURCE = _msg(
    "EventSource",
    _f(1, "component", _STRING),
    _f(2, "host", _STRING),
)

_CORE_EVENT = _msg(
    "Event",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(2, "involvedObject", _MESSAGE, _REQUIRED, message=_OBJECT_REFERENCE),
    _f(3, "reason", _STRING),
    _f(4, "message", _STRING),
    _f(5, "source", _MESSAGE, _REQUIRED, message=_EVENT_SOURCE),
    _f(6, "firstTimestamp", _TIME, _NULLABLE),
    _f(7, "lastTimestamp", _TIME, _NULLABLE),
    _f(8, "count", _INT32),
    _f(9, "type", _STRING),
    _f(10, "eventTime", _MICRO_TIME, _NULLABLE),
    _f(
        11,
        "series",
        _MESSAGE,
        _OPTIONAL,
        message=_msg(
            "EventSeries",
            _f(1, "count", _INT32),
            _f(2, "lastObservedTime", _MICRO_TIME, _NULLABLE),
        ),
    ),
    _f(12, "action", _STRING),
    _f(13, "related", _MESSAGE, _OPTIONAL, message=_OBJECT_REFERENCE),
    # Both without omitempty in the Go struct, so JSON always shows them.
    _f(14, "reportingComponent", _STRING, _REQUIRED),
    _f(15, "reportingInstance", _STRING, _REQUIRED),
)

# k8s.io/api/events/v1 (v1beta1 has the same numbers and tags) ---------------------------

_EVENTS_EVENT = _msg(
    "Event",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(2, "eventTime", _MICRO_TIME, _NULLABLE),
    _f(
        3,
        "series",
        _MESSAGE,
        _OPTIONAL,
        message=_msg(
            "EventSeries",
            _f(1, "count", _INT32, _REQUIRED),
            _f(2, "lastObservedTime", _MICRO_TIME, _NULLABLE),
        ),
    ),
    _f(4, "reportingController", _STRING),
    _f(5, "reportingInstance", _STRING),
    _f(6, "action", _STRING),
    _f(7, "reason", _STRING),
    _f(8, "regarding", _MESSAGE, _REQUIRED, message=_OBJECT_REFERENCE),
    _f(9, "related", _MESSAGE, _OPTIONAL, message=_OBJECT_REFERENCE),
    _f(10, "note", _STRING),
    _f(11, "type", _STRING),
    _f(12, "deprecatedSource", _MESSAGE, _REQUIRED, message=_EVENT_SOURCE),
    _f(13, "deprecatedFirstTimestamp", _TIME, _NULLABLE),
    _f(14, "deprecatedLastTimestamp", _TIME, _NULLABLE),
    _f(15, "deprecatedCount", _INT32),
)

# k8s.io/api/authentication/v1: what `kubectl create token` posts ------------------------

_TOKEN_REQUEST = _msg(
    "TokenRequest",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(
        2,
        "spec",
        _MESSAGE,
        _REQUIRED,
        message=_msg(
            "TokenRequestSpec",
            _f(1, "audiences", _STRING, _NULLABLE, repeated=True),
            _f(4, "expirationSeconds", _INT64, _NULLABLE),
            _f(
                3,
                "boundObjectRef",
                _MESSAGE,
                _NULLABLE,
                message=_msg(
                    "BoundObjectReference",
                    _f(1, "kind", _STRING),
                    _f(2, "apiVersion", _STRING),
                    _f(3, "name", _STRING),
                    _f(4, "uid", _STRING),
                ),
            ),
        ),
    ),
    _f(
        3,
        "status",
        _MESSAGE,
        _REQUIRED,
        message=_msg(
            "TokenRequestStatus",
            _f(1, "token", _STRING, _REQUIRED),
            _f(2, "expirationTimestamp", _TIME, _NULLABLE),
        ),
    ),
)

# k8s.io/api/authentication/v1 SelfSubjectReview: what `kubectl auth whoami` posts ----

_SELF_SUBJECT_REVIEW = _msg(
    "SelfSubjectReview",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(
        2,
        "status",
        _MESSAGE,
        _REQUIRED,
        message=_msg(
            "SelfSubjectReviewStatus",
            _f(
                1,
                "userInfo",
                _MESSAGE,
                _REQUIRED,
                message=_msg(
                    "UserInfo",
                    _f(1, "username", _STRING),
                    _f(2, "uid", _STRING),
                    _f(3, "groups", _STRING, repeated=True),
                    _f(4, "extra", _STRING_LIST_MAP),
                ),
            ),
        ),
    ),
)

# k8s.io/api/authorization/v1 SelfSubjectAccessReview: what `kubectl auth can-i` posts --


def _selector_attributes(name: str) -> _Message:
    # Field and label selector requirements share one shape (metav1 *SelectorRequirement).
    requirement = _msg(
        "SelectorRequirement",
        _f(1, "key", _STRING, _REQUIRED),
        _f(2, "operator", _STRING, _REQUIRED),
        _f(3, "values", _STRING, repeated=True),
    )
    return _msg(
        name,
        _f(1, "rawSelector", _STRING),
        _f(2, "requirements", _MESSAGE, repeated=True, message=requirement),
    )


_SELF_SUBJECT_ACCESS_REVIEW = _msg(
    "SelfSubjectAccessReview",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(
        2,
        "spec",
        _MESSAGE,
        _REQUIRED,
        message=_msg(
            "SelfSubjectAccessReviewSpec",
            _f(
                1,
                "resourceAttributes",
                _MESSAGE,
                _OPTIONAL,
                message=_msg(
                    "ResourceAttributes",
                    _f(1, "namespace", _STRING),
                    _f(2, "verb", _STRING),
                    _f(3, "group", _STRING),
                    _f(4, "version", _STRING),
                    _f(5, "resource", _STRING),
                    _f(6, "subresource", _STRING),
                    _f(7, "name", _STRING),
                    _f(
                        8,
                        "fieldSelector",
                        _MESSAGE,
                        _OPTIONAL,
                        message=_selector_attributes("FieldSelectorAttributes"),
                    ),
                    _f(
                        9,
                        "labelSelector",
                        _MESSAGE,
                        _OPTIONAL,
                        message=_selector_attributes("LabelSelectorAttributes"),
                    ),
                ),
            ),
            _f(
                2,
                "nonResourceAttributes",
                _MESSAGE,
                _OPTIONAL,
                message=_msg(
                    "NonResourceAttributes",
                    _f(1, "path", _STRING),
                    _f(2, "verb", _STRING),
                ),
            ),
        ),
    ),
    _f(
        3,
        "status",
        _MESSAGE,
        _REQUIRED,
        message=_msg(
            "SubjectAccessReviewStatus",
            _f(1, "allowed", _BOOL, _REQUIRED),
            _f(4, "denied", _BOOL),
            _f(2, "reason", _STRING),
            _f(3, "evaluationError", _STRING),
        ),
    ),
)

# k8s.io/api/policy/v1 Eviction: what client-go's typed Evict posts to pods/<name>/eviction
# (kubectl 1.32's drain still sends it as JSON).

_EVICTION = _msg(
    "Eviction",
    _f(1, "metadata", _MESSAGE, _REQUIRED, message=_OBJECT_META),
    _f(2, "deleteOptions", _MESSAGE, _OPTIONAL, message=_DELETE_OPTIONS),
)

_SCHEMAS: Final[dict[tuple[str, str], _Message]] = {
    ("v1", "Secret"): _SECRET,
    ("v1", "ConfigMap"): _CONFIG_MAP,
    ("v1", "Namespace"): _NAMESPACE,
    ("v1", "ServiceAccount"): _SERVICE_ACCOUNT,
    ("v1", "Event"): _CORE_EVENT,
    ("events.k8s.io/v1", "Event"): _EVENTS_EVENT,
    ("events.k8s.io/v1beta1", "Event"): _EVENTS_EVENT,
    ("authentication.k8s.io/v1", "TokenRequest"): _TOKEN_REQUEST,
    ("authentication.k8s.io/v1", "SelfSubjectReview"): _SELF_SUBJECT_REVIEW,
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): _SELF_SUBJECT_ACCESS_REVIEW,
    ("policy/v1", "Eviction"): _EVICTION,
    ("policy/v1beta1", "Eviction"): _EVICTION,
}

# apimachinery registers DeleteOptions in every group version, and client-go labels the
# body with its own (v1, apps/v1, ...), so this kind is looked up by name alone.
_ANY_VERSION_SCHEMAS: Final[dict[str, _Message]] = {"DeleteOptions": _DELETE_OPTIONS}


# ------------------------------------------------------------------ generated schemas
#
# Every other built-in kind is decoded from `data/protobuf_types.json`: the field numbers,
# JSON names and Go JSON rules of the k8s.io/api structs, generated from their struct tags
# by `scripts/gen_protobuf_types.py`. Messages are built on first use and kept.

_KIND_NAMES: Final = {
    "string": _STRING,
    "bool": _BOOL,
    "int32": _INT32,
    "int64": _INT64,
    "double": _DOUBLE,
    "message": _MESSAGE,
    "time": _TIME,
    "microtime": _MICRO_TIME,
    "fieldsv1": _FIELDS_V1,
    "bytes": _BYTES,
    "quantity": _QUANTITY,
    "intorstring": _INT_OR_STRING,
    "raw": _RAW,
    "duration": _DURATION,
    "map": _MAP,
    "objectmeta": _MESSAGE,
}
_MODE_NAMES: Final = {
    "omitempty": _OMITEMPTY,
    "optional": _OPTIONAL,
    "nullable": _NULLABLE,
    "required": _REQUIRED,
    "omitzero": _OMITZERO,
    "inline": _INLINE,
    "omitempty_time": _NULLABLE,
}
_generated_lock = threading.Lock()
_generated_doc: dict[str, Any] | None = None
_generated: dict[str, _Message] = {}


def _table() -> dict[str, Any]:
    global _generated_doc
    if _generated_doc is None:
        path = importlib.resources.files("pytest_devloop.embedded") / "data/protobuf_types.json"
        _generated_doc = json.loads(path.read_text(encoding="utf-8"))
    return _generated_doc


def _build(name: str, types: dict[str, Any]) -> _Message:
    """The message of one Go struct; a placeholder first, so that cycles resolve."""
    known = _generated.get(name)
    if known is not None:
        return known
    message = _Message(name.rsplit(".", 1)[-1], ())
    _generated[name] = message
    fields = []
    for entry in types[name]:
        number, json_name, kind_name, mode_name, repeated, ref = entry[:6]
        nested: _Message | None = None
        if kind_name == "objectmeta":
            nested = _OBJECT_META
        elif kind_name == "message":
            nested = _build(ref, types)
        value_spec: _Field | None = None
        if kind_name == "map":
            value_kind, value_ref, _ = entry[6]
            value_message = _build(value_ref, types) if value_kind == "message" else None
            value_spec = _Field(2, "", _KIND_NAMES[value_kind], _REQUIRED, False, value_message)
        fields.append(
            _Field(
                number,
                json_name,
                _KIND_NAMES[kind_name],
                _MODE_NAMES[mode_name],
                bool(repeated),
                nested,
                value=value_spec,
            )
        )
    object.__setattr__(message, "fields", tuple(fields))
    object.__setattr__(message, "by_number", {f.number: f for f in fields})
    return message


def _generated_schema(api_version: str, kind: str) -> _Message | None:
    doc = _table()
    name = doc["kinds"].get(f"{api_version} {kind}")
    if name is None:
        return None
    with _generated_lock:
        return _build(name, doc["types"])


def supported_kinds() -> list[str]:
    """Name the kinds :func:`decode_request` decodes, as ``apiVersion/Kind`` strings.

    Kinds accepted under any apiVersion are shown as ``*/Kind``.
    """
    named = {f"{api_version}/{kind}" for api_version, kind in _SCHEMAS}
    named |= {key.replace(" ", "/") for key in _table()["kinds"]}
    return sorted(named) + [f"*/{kind}" for kind in _ANY_VERSION_SCHEMAS]


# ---------------------------------------------------------------------------- decoding

_UINT64_MASK: Final = (1 << 64) - 1
_INT64_SIGN: Final = 1 << 63
_UINT32_MASK: Final = (1 << 32) - 1
_INT32_SIGN: Final = 1 << 31

# time.Time{} in Go (year 1), which metav1.Time renders as JSON null.
_GO_ZERO_TIME_SECONDS: Final = -62135596800
_EPOCH: Final = datetime.datetime(1970, 1, 1)  # naive UTC: isoformat() then gets no offset


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a base-128 varint at ``pos``; return (value as uint64, next position)."""
    result = 0
    shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            # Go's generated code keeps the low 64 bits of an over-long tenth byte.
            return result & _UINT64_MASK, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")
    raise ProtobufError("truncated varint")


def _skip(buf: bytes, pos: int, end: int, wire: int) -> int:
    """Skip the value of an unknown field (newer clients may send fields we lack)."""
    if wire == _WIRE_VARINT:
        return _varint(buf, pos, end)[1]
    if wire == _WIRE_LEN:
        length, pos = _varint(buf, pos, end)
        stop = pos + length
    elif wire == _WIRE_FIXED64:
        stop = pos + 8
    elif wire == _WIRE_FIXED32:
        stop = pos + 4
    else:
        # 3 and 4 are proto2 groups, which no Kubernetes type uses; 6 and 7 do not exist.
        raise ProtobufError(f"unsupported wire type {wire}")
    if stop > end:
        raise ProtobufError("truncated field")
    return stop


def _string(buf: bytes, pos: int, stop: int) -> str:
    # Go does not check UTF-8 when unmarshalling, and its JSON encoder then writes
    # U+FFFD for invalid bytes; "replace" gives the server the same text.
    return buf[pos:stop].decode("utf-8", "replace")


def _base64(buf: bytes, pos: int, stop: int) -> str:
    return base64.b64encode(buf[pos:stop]).decode("ascii")


def _timestamp(buf: bytes, pos: int, stop: int) -> tuple[int, int]:
    """Read a Timestamp message {1: seconds int64, 2: nanos int32}."""
    seconds = 0
    nanos = 0
    while pos < stop:
        key, pos = _varint(buf, pos, stop)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT and number in (1, 2):
            value, pos = _varint(buf, pos, stop)
            if number == 1:
                seconds = value - (1 << 64) if value & _INT64_SIGN else value
            else:
                value &= _UINT32_MASK
                nanos = value - (1 << 32) if value & _INT32_SIGN else value
        else:
            pos = _skip(buf, pos, stop, wire)
    return seconds, nanos


def _format_time(seconds: int, micros: int, with_micros: bool) -> str | None:
    if seconds == _GO_ZERO_TIME_SECONDS and micros == 0:
        return None
    try:
        moment = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=micros)
    except OverflowError as exc:
        raise ProtobufError(f"timestamp {seconds}s is out of range") from exc
    if with_micros:
        return moment.isoformat(timespec="microseconds") + "Z"
    return moment.isoformat(timespec="seconds") + "Z"


def _time(buf: bytes, pos: int, stop: int) -> str | None:
    # metav1.Time marshals the zero time as an empty message, and ignores nanos on
    # unmarshal because its JSON form has whole seconds only.
    if pos == stop:
        return None
    seconds, _ = _timestamp(buf, pos, stop)
    return _format_time(seconds, 0, with_micros=False)


def _micro_time(buf: bytes, pos: int, stop: int) -> str | None:
    if pos == stop:
        return None
    seconds, nanos = _timestamp(buf, pos, stop)
    # Go truncates toward zero to whole microseconds; timedelta normalises negatives.
    micros = int(nanos / 1000)
    return _format_time(seconds, micros, with_micros=True)


def _fields_v1(buf: bytes, pos: int, stop: int) -> Any:
    """FieldsV1 is {1: raw bytes}; the raw bytes are the JSON the API shows inline."""
    raw: bytes | None = None
    while pos < stop:
        key, pos = _varint(buf, pos, stop)
        number, wire = key >> 3, key & 7
        if number == 1 and wire == _WIRE_LEN:
            length, pos = _varint(buf, pos, stop)
            if pos + length > stop:
                raise ProtobufError("truncated FieldsV1")
            raw = buf[pos : pos + length]
            pos += length
        else:
            pos = _skip(buf, pos, stop, wire)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ProtobufError(f"managedFields fieldsV1 is not JSON: {exc!r}") from exc


def _strings(buf: bytes, pos: int, stop: int) -> list[str] | None:
    """Read a message {1: repeated string}; Go's nil slice for no items is JSON null."""
    items: list[str] = []
    while pos < stop:
        tag, pos = _varint(buf, pos, stop)
        number, wire = tag >> 3, tag & 7
        if number == 1 and wire == _WIRE_LEN:
            length, pos = _varint(buf, pos, stop)
            end = pos + length
            if end > stop:
                raise ProtobufError("truncated string list")
            items.append(_string(buf, pos, end))
            pos = end
        else:
            pos = _skip(buf, pos, stop, wire)
    return items or None


def _map_entry(buf: bytes, pos: int, stop: int, kind: int) -> tuple[str, Any]:
    """Read a map entry {1: key string, 2: value}; a missing part is the zero value."""
    key_text = ""
    value: Any = None if kind == _STRING_LIST_MAP else ""
    while pos < stop:
        tag, pos = _varint(buf, pos, stop)
        number, wire = tag >> 3, tag & 7
        if wire == _WIRE_LEN and number in (1, 2):
            length, pos = _varint(buf, pos, stop)
            end = pos + length
            if end > stop:
                raise ProtobufError("truncated map entry")
            if number == 1:
                key_text = _string(buf, pos, end)
            elif kind == _BYTES_MAP:
                value = _base64(buf, pos, end)
            elif kind == _STRING_MAP:
                value = _string(buf, pos, end)
            else:
                value = _strings(buf, pos, end)
            pos = end
        else:
            pos = _skip(buf, pos, stop, wire)
    return key_text, value


def _decode_message(buf: bytes, pos: int, end: int, message: _Message) -> dict[str, Any]:
    """Decode the fields of ``message`` found in ``buf[pos:end]`` into its JSON form."""
    seen: dict[int, Any] = {}
    by_number = message.by_number
    while pos < end:
        key = buf[pos]
        if key < 0x80:  # nearly every tag in Kubernetes types fits in one byte
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        number = key >> 3
        wire = key & 7
        if number == 0:
            raise ProtobufError(f"field number 0 in {message.name}")
        spec = by_number.get(number)
        if spec is None:
            pos = _skip(buf, pos, end, wire)
            continue
        kind = spec.kind
        value: Any
        if wire != spec.wire:
            if spec.repeated and spec.wire == _WIRE_VARINT and wire == _WIRE_LEN:
                # A packed repeated scalar: every varint of the run is one item.
                length, pos = _varint(buf, pos, end)
                stop = pos + length
                if stop > end:
                    raise ProtobufError(f"{message.name}.{spec.name}: truncated")
                items = seen.setdefault(number, [])
                while pos < stop:
                    raw, pos = _varint(buf, pos, stop)
                    items.append(_scalar(kind, raw))
                continue
            raise ProtobufError(
                f"{message.name}.{spec.name}: wire type {wire}, expected {spec.wire}"
            )
        if wire == _WIRE_FIXED64:
            if pos + 8 > end:
                raise ProtobufError(f"{message.name}.{spec.name}: truncated")
            value = struct.unpack_from("<d", buf, pos)[0]
            pos += 8
        elif wire == _WIRE_VARINT:
            raw, pos = _varint(buf, pos, end)
            if kind == _BOOL:
                value = raw != 0
            elif kind == _INT64:
                value = raw - (1 << 64) if raw & _INT64_SIGN else raw
            else:  # _INT32: Go keeps the low 32 bits
                raw &= _UINT32_MASK
                value = raw - (1 << 32) if raw & _INT32_SIGN else raw
        else:
            length = buf[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = _varint(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise ProtobufError(f"{message.name}.{spec.name}: truncated")
            if kind == _STRING:
                value = _string(buf, pos, stop)
            elif kind == _MESSAGE:
                assert spec.message is not None
                value = _decode_message(buf, pos, stop, spec.message)
            elif kind in (_STRING_MAP, _BYTES_MAP, _STRING_LIST_MAP):
                entry_key, entry_value = _map_entry(buf, pos, stop, kind)
                seen.setdefault(number, {})[entry_key] = entry_value
                pos = stop
                continue
            elif kind == _MAP:
                assert spec.value is not None
                entry_key, entry_value = _typed_map_entry(buf, pos, stop, spec.value)
                seen.setdefault(number, {})[entry_key] = entry_value
                pos = stop
                continue
            elif kind in _WRAPPED_KINDS:
                value = _wrapped(kind, buf, pos, stop)
            elif kind == _TIME:
                value = _time(buf, pos, stop)
            elif kind == _MICRO_TIME:
                value = _micro_time(buf, pos, stop)
            else:  # _FIELDS_V1
                value = _fields_v1(buf, pos, stop)
            pos = stop
        if spec.repeated:
            seen.setdefault(number, []).append(value)
        else:
            # A repeated non-repeated field means "last one wins" for scalars and
            # "merge" for messages; Go clients never send either, so keep the last.
            seen[number] = value
    return _to_json(message, seen)


def _scalar(kind: int, raw: int) -> Any:
    if kind == _BOOL:
        return raw != 0
    if kind == _INT64:
        return raw - (1 << 64) if raw & _INT64_SIGN else raw
    raw &= _UINT32_MASK
    return raw - (1 << 32) if raw & _INT32_SIGN else raw


_WRAPPED_KINDS: Final = frozenset({_BYTES, _QUANTITY, _INT_OR_STRING, _RAW, _DURATION})


def _wrapped(kind: int, buf: bytes, pos: int, stop: int) -> Any:
    """The JSON of a value whose protobuf form is a small message of its own."""
    if kind == _BYTES:
        return _base64(buf, pos, stop)
    fields: dict[int, Any] = {}
    while pos < stop:
        key, pos = _varint(buf, pos, stop)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT:
            raw, pos = _varint(buf, pos, stop)
            fields[number] = raw
        elif wire == _WIRE_LEN:
            length, pos = _varint(buf, pos, stop)
            if pos + length > stop:
                raise ProtobufError("truncated field")
            fields[number] = buf[pos : pos + length]
            pos += length
        else:
            pos = _skip(buf, pos, stop, wire)
    if kind == _QUANTITY:
        raw_text = fields.get(1, b"")
        return raw_text.decode("utf-8", "replace") if isinstance(raw_text, bytes) else "0"
    if kind == _INT_OR_STRING:
        if fields.get(1, 0) == 1:
            text = fields.get(3, b"")
            return text.decode("utf-8", "replace") if isinstance(text, bytes) else ""
        return _scalar(_INT32, int(fields.get(2, 0)))
    if kind == _DURATION:
        return _go_duration(_scalar(_INT64, int(fields.get(1, 0))))
    embedded = fields.get(1)
    if not isinstance(embedded, bytes) or not embedded:
        return None
    try:
        return json.loads(embedded)
    except (ValueError, RecursionError) as exc:
        raise ProtobufError(f"embedded object is not JSON: {exc!r}") from exc


def _go_duration(ns: int) -> str:
    """Go's `time.Duration.String()` (what metav1.Duration shows in JSON)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest / 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def _typed_map_entry(buf: bytes, pos: int, stop: int, spec: _Field) -> tuple[str, Any]:
    """A map entry {1: key string, 2: value} whose value is described by `spec`."""
    key_text = ""
    value: Any = _zero(spec)
    while pos < stop:
        tag, pos = _varint(buf, pos, stop)
        number, wire = tag >> 3, tag & 7
        if number == 1 and wire == _WIRE_LEN:
            length, pos = _varint(buf, pos, stop)
            key_text = _string(buf, pos, pos + length)
            pos += length
        elif number == 2 and wire == _WIRE_VARINT:
            raw, pos = _varint(buf, pos, stop)
            value = _scalar(spec.kind, raw)
        elif number == 2 and wire == _WIRE_LEN:
            length, pos = _varint(buf, pos, stop)
            end = pos + length
            if end > stop:
                raise ProtobufError("truncated map entry")
            if spec.kind == _STRING:
                value = _string(buf, pos, end)
            elif spec.kind == _MESSAGE:
                assert spec.message is not None
                value = _decode_message(buf, pos, end, spec.message)
            elif spec.kind in _WRAPPED_KINDS:
                value = _wrapped(spec.kind, buf, pos, end)
            else:
                raise ProtobufError(f"unsupported map value kind {spec.kind}")
            pos = end
        else:
            pos = _skip(buf, pos, stop, wire)
    return key_text, value


def _to_json(message: _Message, seen: dict[int, Any]) -> dict[str, Any]:
    """Apply Go's JSON rules (omitempty and friends) to the decoded field values."""
    out: dict[str, Any] = {}
    for spec in message.fields:
        mode = spec.mode
        if spec.number in seen:
            value = seen[spec.number]
            # Go clients send every value-typed field, zero or not; omitempty drops the
            # zero ones. A sent empty metav1.Time is the zero time: null, or absent.
            if (mode == _OMITEMPTY and not value) or (mode == _OMITZERO and value is None):
                continue
            if mode == _INLINE:
                out.update(value)
                continue
            out[spec.name] = value
        elif mode == _REQUIRED:
            out[spec.name] = _zero(spec)
        elif mode == _NULLABLE:
            out[spec.name] = None
    return out


def _zero(spec: _Field) -> Any:
    if spec.kind == _MESSAGE:
        assert spec.message is not None
        return _to_json(spec.message, {})
    if spec.kind == _STRING:
        return ""
    if spec.kind == _BOOL:
        return False
    if spec.kind in (_INT64, _INT32, _INT_OR_STRING):
        return 0
    if spec.kind == _DOUBLE:
        return 0.0
    if spec.kind == _QUANTITY:
        return "0"
    if spec.kind == _DURATION:
        return "0s"
    return None  # times, maps and repeated fields are null in Go's JSON when unset


def decode_request(body: bytes) -> dict[str, Any]:
    """Decode a Kubernetes protobuf request body into the object's JSON form.

    The result starts with ``kind`` and ``apiVersion`` from the envelope, then the
    object's fields as Go's JSON encoder would show them: zero-valued ``omitempty``
    fields are left out, ``[]byte`` values are base64 strings, times are RFC 3339 in
    UTC, ``managedFields[].fieldsV1`` is parsed JSON.

    Raises :class:`UnsupportedProtobuf` for a kind without a schema here and
    :class:`ProtobufError` for anything malformed.
    """
    data = bytes(body)
    if not data.startswith(_MAGIC):
        raise ProtobufError("body does not start with the Kubernetes protobuf magic k8s\\0")
    pos = len(_MAGIC)
    end = len(data)
    api_version = ""
    kind = ""
    content_encoding = ""
    raw_start = raw_stop = pos
    # runtime.Unknown: {1: typeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding,
    # 4: contentType}. Decoded by hand: it is the one message whose raw bytes we keep.
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire != _WIRE_LEN or number not in (1, 2, 3):
            pos = _skip(data, pos, end, wire)
            continue
        length, pos = _varint(data, pos, end)
        stop = pos + length
        if stop > end:
            raise ProtobufError("truncated envelope")
        if number == 1:
            type_meta = _decode_message(data, pos, stop, _TYPE_META)
            api_version = type_meta.get("apiVersion", "")
            kind = type_meta.get("kind", "")
        elif number == 2:
            raw_start, raw_stop = pos, stop
        else:
            content_encoding = _string(data, pos, stop)
        pos = stop
    if not kind:
        raise ProtobufError("protobuf envelope names no kind")
    if content_encoding:
        # client-go never sets one; refuse rather than misread compressed bytes.
        raise ProtobufError(f"unsupported protobuf contentEncoding {content_encoding!r}")
    schema = (
        _SCHEMAS.get((api_version, kind))
        or _ANY_VERSION_SCHEMAS.get(kind)
        or _generated_schema(api_version, kind)
    )
    if schema is None:
        raise UnsupportedProtobuf(kind, api_version)
    result: dict[str, Any] = {"kind": kind, "apiVersion": api_version}
    result.update(_decode_message(data, raw_start, raw_stop, schema))
    return result
