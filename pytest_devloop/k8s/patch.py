"""Patch semantics of the embedded Kubernetes API server: pure functions over JSON-like data.

This module owns:

* the field-schema table (:data:`FIELD_TABLE`, compiled by :func:`schema_for`) that says, for
  each built-in kind and field path, how a list is keyed and merged.  The same table drives the
  strategic merge patch here and server-side apply in :mod:`pytest_devloop.k8s.apply`;
* RFC 6902 JSON patch (:func:`json_patch`), RFC 7386 JSON merge patch (:func:`merge_patch`) and
  the Kubernetes strategic merge patch (:func:`strategic_merge_patch`), with the directives
  kubectl sends (``$patch``, ``$retainKeys``, ``$setElementOrder/…``,
  ``$deleteFromPrimitiveList/…``);
* :class:`PatchError`, whose ``code`` is the HTTP status the server should answer with.

Every function takes plain ``dict``/``list``/``str``/``int``/``float``/``bool``/``None`` data,
never mutates its arguments and returns a fresh object that shares nothing with them.  There is
no I/O and no global mutable state apart from a cache of compiled schemas.

Strategic merge patch only exists for compiled-in API groups: the real API server answers
``415 Unsupported Media Type`` for custom resources.  :func:`strategic_merge_patch` raises a
:class:`PatchError` with ``code == 415`` for groups that :func:`is_builtin_group` rejects, so the
server can map it directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "FIELD_TABLE",
    "FieldSpec",
    "JSONObject",
    "JSONValue",
    "PatchError",
    "SchemaNode",
    "copy_json",
    "is_builtin_group",
    "json_equal",
    "json_patch",
    "merge_patch",
    "schema_for",
    "strategic_merge_patch",
]

JSONValue = Any
"""Any value that :func:`json.loads` could return."""
JSONObject = dict[str, Any]


class PatchError(Exception):
    """A patch could not be decoded or applied.

    ``code`` is the HTTP status the API server should return: 422 (``Invalid``) when a
    well-formed patch does not apply to the object, 400 (``BadRequest``) when the patch document
    itself is malformed, 415 when strategic merge patch is used on a custom resource.
    """

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# --------------------------------------------------------------------------------------------
# Small JSON helpers shared with apply.py
# --------------------------------------------------------------------------------------------


def copy_json(value: JSONValue) -> JSONValue:
    """Deep-copy JSON-like data (much faster than :func:`copy.deepcopy` for this shape)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def json_equal(a: JSONValue, b: JSONValue) -> bool:
    """Equality with JSON semantics: ``1 == 1.0`` but ``True != 1``."""
    # Python's == is coarser than JSON equality only in bool/int, so a Python mismatch is final
    # and a Python match only needs the bool check.
    if a != b:
        return False
    return _same_bools(a, b)


def _same_bools(a: JSONValue, b: JSONValue) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b)
    if isinstance(a, dict):
        return all(_same_bools(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return all(_same_bools(x, y) for x, y in zip(a, b, strict=True))
    return True


def _hashable(value: JSONValue) -> Any:
    """A hashable stand-in for a JSON value that keeps ``True`` and ``1`` apart."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str) or value is None:
        return value
    return ("j", json.dumps(value, sort_keys=True, separators=(",", ":")))


# --------------------------------------------------------------------------------------------
# The field-schema table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one field of a built-in kind merges.

    The strategic-merge half mirrors the ``patchStrategy``/``patchMergeKey`` struct tags of the
    Kubernetes API types; the apply half mirrors ``+listType``/``+listMapKey``/``+mapType``/
    ``+structType`` markers, which are what server-side apply reads.
    """

    merge_key: str | None = None
    """``patchMergeKey``: the key that identifies items of a merged list of maps."""
    strategy: str = ""
    """``patchStrategy``: ``"merge"``, ``"retainKeys"``, ``"merge,retainKeys"`` or ``"replace"``."""
    list_type: str = ""
    """Apply list type: ``"map"``, ``"set"``, or ``""`` for atomic (the list is one field)."""
    list_keys: tuple[str, ...] = ()
    """Apply ``listMapKey`` fields, sorted by name as the API server serialises them."""
    key_defaults: tuple[tuple[str, JSONValue], ...] = ()
    """Values assumed for absent key fields, e.g. ``protocol: TCP`` for ports."""
    map_type: str = ""
    """``"atomic"`` when a map is one field for apply (label selectors); ``""`` = granular."""
    struct: bool = False
    """A Go struct that always exists in a typed object, so an update never "adds" it."""

    @property
    def merges_list(self) -> bool:
        return "merge" in self.strategy.split(",")


def _map_list(
    key: str,
    *,
    apply_keys: tuple[str, ...] | None = None,
    defaults: tuple[tuple[str, JSONValue], ...] = (),
    retain_keys: bool = False,
) -> FieldSpec:
    return FieldSpec(
        merge_key=key,
        strategy="merge,retainKeys" if retain_keys else "merge",
        list_type="map",
        list_keys=tuple(sorted(apply_keys or (key,))),
        key_defaults=defaults,
    )


_SET: Final = FieldSpec(strategy="merge", list_type="set")
_ATOMIC_MAP: Final = FieldSpec(map_type="atomic")
_STRUCT: Final = FieldSpec(struct=True)
_RETAIN_KEYS_STRUCT: Final = FieldSpec(strategy="retainKeys", struct=True)
_TCP: Final = (("protocol", "TCP"),)

_CONTAINER_FIELDS: Final[dict[str, FieldSpec]] = {
    "env": _map_list("name"),
    # Strategic merge keys ports by containerPort alone; apply also needs protocol because the
    # same port number may be exposed over TCP and UDP.
    "ports": _map_list("containerPort", apply_keys=("containerPort", "protocol"), defaults=_TCP),
    "volumeMounts": _map_list("mountPath"),
    "volumeDevices": _map_list("devicePath"),
}

POD_SPEC_FIELDS: Final[dict[str, FieldSpec]] = {
    "containers": _map_list("name"),
    "initContainers": _map_list("name"),
    "ephemeralContainers": _map_list("name"),
    "imagePullSecrets": _map_list("name"),
    "volumes": _map_list("name", retain_keys=True),
    "hostAliases": _map_list("ip"),
    "topologySpreadConstraints": _map_list(
        "topologyKey", apply_keys=("topologyKey", "whenUnsatisfiable")
    ),
    "resourceClaims": _map_list("name", retain_keys=True),
    "schedulingGates": _map_list("name"),
    "nodeSelector": _ATOMIC_MAP,
    **{
        f"{containers}[].{field}": spec
        for containers in ("containers", "initContainers", "ephemeralContainers")
        for field, spec in _CONTAINER_FIELDS.items()
    },
}
"""Fields of a PodSpec, relative to wherever the PodSpec lives (see :data:`POD_SPEC_LOCATIONS`)."""

POD_SPEC_LOCATIONS: Final[dict[tuple[str, str], str]] = {
    ("", "Pod"): "spec",
    ("", "PodTemplate"): "template.spec",
    ("", "ReplicationController"): "spec.template.spec",
    ("apps", "Deployment"): "spec.template.spec",
    ("apps", "ReplicaSet"): "spec.template.spec",
    ("apps", "StatefulSet"): "spec.template.spec",
    ("apps", "DaemonSet"): "spec.template.spec",
    ("batch", "Job"): "spec.template.spec",
    ("batch", "CronJob"): "spec.jobTemplate.spec.template.spec",
}
"""``(api group, kind)`` → path of the PodSpec inside the object."""

COMMON_FIELDS: Final[dict[str, FieldSpec]] = {
    "metadata.ownerReferences": _map_list("uid"),
    "metadata.finalizers": _SET,
}
"""ObjectMeta fields; they apply to every kind, custom resources included."""

BUILTIN_COMMON_FIELDS: Final[dict[str, FieldSpec]] = {
    "spec": _STRUCT,
    "status": _STRUCT,
    "status.conditions": _map_list("type"),
}

KIND_FIELDS: Final[dict[tuple[str, str], dict[str, FieldSpec]]] = {
    ("", "Service"): {
        "spec.ports": _map_list("port", apply_keys=("port", "protocol"), defaults=_TCP),
        "spec.selector": _ATOMIC_MAP,
    },
    ("", "ReplicationController"): {"spec.selector": _ATOMIC_MAP},
    ("apps", "Deployment"): {
        "spec.selector": _ATOMIC_MAP,
        "spec.strategy": _RETAIN_KEYS_STRUCT,
        "spec.template.metadata": _STRUCT,
    },
    ("apps", "DaemonSet"): {
        "spec.selector": _ATOMIC_MAP,
        "spec.updateStrategy": _RETAIN_KEYS_STRUCT,
        "spec.template.metadata": _STRUCT,
    },
    ("apps", "StatefulSet"): {
        "spec.selector": _ATOMIC_MAP,
        "spec.updateStrategy": _STRUCT,
        "spec.template.metadata": _STRUCT,
    },
    ("apps", "ReplicaSet"): {"spec.selector": _ATOMIC_MAP, "spec.template.metadata": _STRUCT},
    ("batch", "Job"): {"spec.selector": _ATOMIC_MAP, "spec.template.metadata": _STRUCT},
    ("batch", "CronJob"): {
        "spec.jobTemplate": _STRUCT,
        "spec.jobTemplate.spec.selector": _ATOMIC_MAP,
    },
}
"""Kind-specific fields besides the PodSpec ones."""

# LabelSelector is ``+structType=atomic`` and these maps are ``+mapType=atomic`` wherever they
# appear in built-in types, so apply treats each of them as a single field.
BUILTIN_NAME_RULES: Final[dict[str, FieldSpec]] = dict.fromkeys(
    (
        "selector",
        "labelSelector",
        "namespaceSelector",
        "podSelector",
        "nodeSelector",
        "matchLabels",
    ),
    _ATOMIC_MAP,
)
"""Apply-only rules matched by field name anywhere in a built-in kind not covered above."""

_BUILTIN_GROUPS: Final = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)


def is_builtin_group(group: str) -> bool:
    """True for API groups compiled into kube-apiserver ("" is the core group)."""
    return group in _BUILTIN_GROUPS


def _build_table() -> dict[tuple[str, str], dict[str, FieldSpec]]:
    table: dict[tuple[str, str], dict[str, FieldSpec]] = {}
    for key in set(POD_SPEC_LOCATIONS) | set(KIND_FIELDS):
        fields = {**COMMON_FIELDS, **BUILTIN_COMMON_FIELDS}
        location = POD_SPEC_LOCATIONS.get(key)
        if location is not None:
            fields[location] = _STRUCT
            fields.update({f"{location}.{path}": spec for path, spec in POD_SPEC_FIELDS.items()})
        fields.update(KIND_FIELDS.get(key, {}))
        table[key] = fields
    return table


FIELD_TABLE: Final[dict[tuple[str, str], dict[str, FieldSpec]]] = _build_table()
"""``(api group, kind)`` → ``{path pattern: FieldSpec}``.

A pattern is a dotted field path; ``name[]`` steps into the items of list ``name``, e.g.
``spec.template.spec.containers[].env``.  Built-in kinds missing from the table get
:data:`COMMON_FIELDS` plus :data:`BUILTIN_COMMON_FIELDS`, custom resources only
:data:`COMMON_FIELDS`.
"""


class SchemaNode:
    """One node of a compiled schema: the spec of a field, its sub-fields and its list items."""

    __slots__ = ("fields", "item", "spec")

    def __init__(self, spec: FieldSpec | None = None) -> None:
        self.spec: FieldSpec = spec if spec is not None else _PLAIN
        self.fields: dict[str, SchemaNode] = {}
        self.item: SchemaNode | None = None

    def field(self, name: str) -> SchemaNode:
        return self.fields.get(name, UNKNOWN)

    def items(self) -> SchemaNode:
        return self.item if self.item is not None else UNKNOWN


_PLAIN: Final = FieldSpec()
UNKNOWN: Final = SchemaNode()
"""Shared node for fields the table does not describe; never mutate it."""


def compile_schema(fields: Mapping[str, FieldSpec], *, builtin: bool) -> SchemaNode:
    """Turn ``{path pattern: FieldSpec}`` into a tree walkable alongside an object."""
    root = SchemaNode()
    for pattern, spec in fields.items():
        node = root
        in_item = False
        steps = pattern.split(".")
        for index, step in enumerate(steps):
            is_list = step.endswith("[]")
            name = step[:-2] if is_list else step
            child = node.fields.get(name)
            if child is None:
                # Intermediate maps of built-in types outside list items are Go structs.
                child = SchemaNode(_STRUCT if builtin and not in_item else None)
                node.fields[name] = child
            if index == len(steps) - 1:
                child.spec = spec
            node = child
            if is_list:
                if node.item is None:
                    node.item = SchemaNode()
                node = node.item
                in_item = True
    return root


_SCHEMA_CACHE: dict[tuple[str, str], SchemaNode] = {}


def schema_for(kind: str, api_group: str) -> SchemaNode:
    """The compiled schema of ``kind`` in ``api_group`` (cached)."""
    key = (api_group, kind)
    node = _SCHEMA_CACHE.get(key)
    if node is None:
        builtin = is_builtin_group(api_group)
        fields = FIELD_TABLE.get(key)
        if fields is None:
            fields = {**COMMON_FIELDS, **BUILTIN_COMMON_FIELDS} if builtin else COMMON_FIELDS
        node = compile_schema(fields, builtin=builtin)
        _SCHEMA_CACHE[key] = node
    return node


# --------------------------------------------------------------------------------------------
# RFC 6902 JSON patch
# --------------------------------------------------------------------------------------------

_MISSING: Final = object()


def _parse_pointer(pointer: JSONValue, what: str) -> list[str]:
    if not isinstance(pointer, str):
        raise PatchError(f"invalid JSON patch: {what!r} must be a string", 400)
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}: must start with '/'", 400)
    tokens = pointer[1:].split("/")
    for i, token in enumerate(tokens):
        if "~" in token:
            check = token.replace("~0", "").replace("~1", "")
            if "~" in check:
                raise PatchError(f"invalid JSON pointer {pointer!r}: bad escape", 400)
            tokens[i] = token.replace("~1", "/").replace("~0", "~")
    return tokens


def _array_index(token: str, length: int, pointer: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return length
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f"invalid array index {token!r} in {pointer!r}")
    index = int(token)
    if index > length or (index == length and not allow_end):
        raise PatchError(f"array index {index} out of bounds in {pointer!r}")
    return index


def _resolve_parent(doc: JSONValue, tokens: list[str], pointer: str) -> JSONValue:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path {pointer!r} not found: missing {token!r}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, len(node), pointer, allow_end=False)]
        else:
            raise PatchError(f"path {pointer!r} not found: {token!r} is not a container")
    return node


def _get(doc: JSONValue, tokens: list[str], pointer: str) -> JSONValue:
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {pointer!r} not found")
        return parent[last]
    if isinstance(parent, list):
        return parent[_array_index(last, len(parent), pointer, allow_end=False)]
    raise PatchError(f"path {pointer!r} not found")


def _add(doc: JSONValue, tokens: list[str], value: JSONValue, pointer: str) -> JSONValue:
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_array_index(last, len(parent), pointer, allow_end=True), value)
    else:
        raise PatchError(f"cannot add at {pointer!r}: parent is not a container")
    return doc


def _remove(doc: JSONValue, tokens: list[str], pointer: str) -> tuple[JSONValue, JSONValue]:
    """Remove the value at ``tokens``; returns ``(doc, removed value)``."""
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot remove {pointer!r}: path not found")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_array_index(last, len(parent), pointer, allow_end=False))
    raise PatchError(f"cannot remove {pointer!r}: path not found")


def _replace(doc: JSONValue, tokens: list[str], value: JSONValue, pointer: str) -> JSONValue:
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot replace {pointer!r}: path not found")
        parent[last] = value
    elif isinstance(parent, list):
        parent[_array_index(last, len(parent), pointer, allow_end=False)] = value
    else:
        raise PatchError(f"cannot replace {pointer!r}: path not found")
    return doc


def _op_field(op: Mapping[str, JSONValue], name: str, index: int) -> JSONValue:
    if name not in op:
        raise PatchError(f"invalid JSON patch: operation {index} has no {name!r}", 400)
    return op[name]


def json_patch(obj: JSONValue, ops: JSONValue) -> JSONValue:
    """Apply an RFC 6902 JSON patch (a list of operations) to ``obj``.

    Malformed operations raise ``PatchError(code=400)``; operations that do not apply (missing
    path, failed ``test``, index out of range) raise ``PatchError(code=422)``.  The patch is
    atomic: on error nothing is returned and ``obj`` is untouched.
    """
    if not isinstance(ops, list):
        raise PatchError("invalid JSON patch: expected a list of operations", 400)
    doc = copy_json(obj)
    for index, op in enumerate(ops):
        if not isinstance(op, dict):
            raise PatchError(f"invalid JSON patch: operation {index} is not an object", 400)
        kind = _op_field(op, "op", index)
        path = _op_field(op, "path", index)
        tokens = _parse_pointer(path, "path")
        if kind == "add":
            doc = _add(doc, tokens, copy_json(_op_field(op, "value", index)), path)
        elif kind == "remove":
            doc, _ = _remove(doc, tokens, path)
        elif kind == "replace":
            doc = _replace(doc, tokens, copy_json(_op_field(op, "value", index)), path)
        elif kind in ("move", "copy"):
            source = _op_field(op, "from", index)
            source_tokens = _parse_pointer(source, "from")
            if kind == "move":
                if source_tokens == tokens:
                    _get(doc, tokens, path)
                    continue
                if tokens[: len(source_tokens)] == source_tokens:
                    raise PatchError(f"cannot move {source!r} into its own child {path!r}")
                doc, value = _remove(doc, source_tokens, source)
            else:
                value = copy_json(_get(doc, source_tokens, source))
            doc = _add(doc, tokens, value, path)
        elif kind == "test":
            expected = _op_field(op, "value", index)
            if not json_equal(_get(doc, tokens, path), expected):
                raise PatchError(f"test operation failed: value at {path!r} differs")
        else:
            raise PatchError(f"invalid JSON patch: unknown operation {kind!r}", 400)
    return doc


# --------------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch
# --------------------------------------------------------------------------------------------


def merge_patch(obj: JSONValue, patch: JSONValue) -> JSONValue:
    """Apply an RFC 7386 JSON merge patch: ``null`` deletes a key, lists are replaced whole."""
    if not isinstance(patch, dict):
        return copy_json(patch)
    result: JSONObject = copy_json(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------------------------
# Kubernetes strategic merge patch
# --------------------------------------------------------------------------------------------

_PATCH: Final = "$patch"
_RETAIN_KEYS: Final = "$retainKeys"
_SET_ORDER: Final = "$setElementOrder/"
_DELETE_PRIMITIVE: Final = "$deleteFromPrimitiveList/"

_UNSUPPORTED_MEDIA_TYPE: Final = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)


def strategic_merge_patch(
    obj: JSONValue, patch: JSONValue, kind: str, api_group: str
) -> JSONObject:
    """Apply a Kubernetes strategic merge patch to ``obj`` (an object of ``kind``).

    Lists listed in :data:`FIELD_TABLE` with a merge strategy are merged item by item (by merge
    key, or as a set of primitives); every other list is replaced whole; maps are merged and
    ``null`` deletes a key.  The directives ``$patch`` (``replace``/``delete``/``merge``, in maps
    and list items), ``$retainKeys``, ``$setElementOrder/<field>`` and
    ``$deleteFromPrimitiveList/<field>`` are honoured and never appear in the result.

    Raises ``PatchError(code=415)`` for custom resources (non built-in groups), like the API
    server, and ``PatchError`` 400/422 for malformed or inapplicable patches.
    """
    if not is_builtin_group(api_group):
        raise PatchError(_UNSUPPORTED_MEDIA_TYPE, 415)
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object", 400)
    original: JSONObject = copy_json(obj) if isinstance(obj, dict) else {}
    return _smp_map(original, patch, schema_for(kind, api_group))


def _smp_map(original: JSONObject, patch: Mapping[str, JSONValue], node: SchemaNode) -> JSONObject:
    """Merge ``patch`` into ``original``, which this function owns and may mutate."""
    if _PATCH in patch:
        directive = patch[_PATCH]
        if directive == "delete":
            return {}
        if directive == "replace":
            return _smp_map({}, {k: v for k, v in patch.items() if k != _PATCH}, node)
        if directive != "merge":
            raise PatchError(f"unknown patch type: {directive} in map: {patch}", 400)

    if _RETAIN_KEYS in patch:
        _apply_retain_keys(original, patch)

    handled: set[str] = set()
    deletions: list[tuple[str, JSONValue]] = []
    for key, value in patch.items():
        if key.startswith(_SET_ORDER):
            field = key[len(_SET_ORDER) :]
            if not field:
                raise PatchError("invalid patch format of setElementOrder list", 400)
            _apply_set_element_order(original, patch, field, value, node.field(field))
            handled.add(field)
        elif key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE) :]
            if not field:
                raise PatchError("invalid patch format of primitive list", 400)
            deletions.append((field, value))

    for key, value in patch.items():
        if key in handled or key in (_PATCH, _RETAIN_KEYS):
            continue
        if key.startswith((_SET_ORDER, _DELETE_PRIMITIVE)):
            continue
        if value is None:
            original.pop(key, None)
            continue
        current = original.get(key, _MISSING)
        child = node.field(key)
        if isinstance(value, dict):
            if isinstance(current, dict) and child.spec.strategy != "replace":
                original[key] = _smp_map(current, value, child)
            elif value.get(_PATCH) == "delete":
                # Deleting a map that is not there (or is not a map) leaves nothing behind.
                original.pop(key, None)
            else:
                original[key] = _smp_map({}, value, child)
        elif isinstance(value, list):
            if isinstance(current, list):
                original[key] = _smp_list(current, value, child)
            else:
                original[key] = _clean_list(value, child)
        else:
            original[key] = value

    for field, value in deletions:
        _delete_from_primitive_list(original, field, value)
    return original


def _apply_retain_keys(original: JSONObject, patch: Mapping[str, JSONValue]) -> None:
    retain = patch[_RETAIN_KEYS]
    if not isinstance(retain, list):
        raise PatchError("invalid patch format of retainKeys", 400)
    keep = {k for k in retain if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith((_SET_ORDER, _DELETE_PRIMITIVE)):
            continue
        if key in (_RETAIN_KEYS, _PATCH):
            continue
        if key not in keep:
            raise PatchError("invalid patch format of retainKeys", 400)
    for key in [k for k in original if k not in keep]:
        del original[key]


def _item_key(item: JSONValue, merge_key: str | None) -> Any:
    """Hashable identity of a list item: its merge-key value, or the item itself."""
    if merge_key is None:
        return _hashable(item)
    if not isinstance(item, dict) or merge_key not in item:
        raise PatchError(f"map: {item} does not contain declared merge key: {merge_key}")
    return _hashable(item[merge_key])


def _is_map_list(*lists: Iterable[JSONValue]) -> bool:
    kinds = {isinstance(item, dict) for items in lists for item in items}
    if len(kinds) > 1:
        raise PatchError("list mixes maps and non-map values")
    for items in lists:
        for item in items:
            if isinstance(item, list):
                raise PatchError("lists of lists are not supported")
    return kinds == {True}


def _clean_list(items: list[JSONValue], node: SchemaNode) -> list[JSONValue]:
    """A fresh copy of a list taken as is from a patch, with directives and nulls stripped."""
    item_node = node.items()
    out: list[JSONValue] = []
    for item in items:
        if isinstance(item, dict):
            if _PATCH in item:
                continue
            out.append(_smp_map({}, item, item_node))
        elif isinstance(item, list):
            out.append(_clean_list(item, UNKNOWN))
        else:
            out.append(item)
    return out


def _smp_list(
    original: list[JSONValue], patch: list[JSONValue], node: SchemaNode
) -> list[JSONValue]:
    """Merge ``patch`` into ``original`` (owned) following the field's patch strategy."""
    spec = node.spec
    if not spec.merges_list:
        return _clean_list(patch, node)
    if not original and not patch:
        return original
    if not _is_map_list(original, patch):
        merged: list[JSONValue] = []
        seen: set[Any] = set()
        for item in original + patch:
            key = _hashable(item)
            if key not in seen:
                seen.add(key)
                merged.append(item)
        return _order(merged, patch, original, None)

    merge_key = spec.merge_key
    if merge_key is None:
        raise PatchError("cannot merge lists without merge key")
    item_node = node.items()
    plain: list[JSONValue] = []
    replace = False
    for item in patch:
        directive = item.get(_PATCH, _MISSING)
        if directive is _MISSING:
            plain.append(item)
        elif directive == "delete":
            gone = _item_key(item, merge_key)
            original = [x for x in original if _item_key(x, merge_key) != gone]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            if merge_key in item:
                plain.append({k: v for k, v in item.items() if k != _PATCH})
        else:
            raise PatchError(f"unknown patch type: {directive} in map: {item}", 400)
    if replace:
        return [_smp_map({}, item, item_node) for item in plain]

    positions = {_item_key(item, merge_key): i for i, item in reversed(list(enumerate(original)))}
    merged = list(original)
    for item in plain:
        key = _item_key(item, merge_key)
        position = positions.get(key)
        if position is None:
            positions[key] = len(merged)
            merged.append(_smp_map({}, item, item_node))
        else:
            merged[position] = _smp_map(merged[position], item, item_node)
    return _order(merged, plain, original, merge_key)


def _order(
    merged: list[JSONValue],
    patch_order: list[JSONValue],
    server_order: list[JSONValue],
    merge_key: str | None,
) -> list[JSONValue]:
    """Order a merged list the way the API server does.

    Items named by the patch follow the patch's order; the other (server-only) items keep
    their live order and are interleaved before the first patch item that came after them in
    the live list.  Items new to the list therefore come first unless ``$setElementOrder`` says
    otherwise, exactly like kube-apiserver.
    """
    in_patch = {_item_key(item, merge_key) for item in patch_order}
    patch_rank: dict[Any, int] = {}
    for i, item in enumerate(patch_order):
        patch_rank.setdefault(_item_key(item, merge_key), i)
    server_rank: dict[Any, int] = {}
    for i, item in enumerate(server_order):
        server_rank.setdefault(_item_key(item, merge_key), i)

    patch_items: list[tuple[Any, JSONValue]] = []
    server_only: list[tuple[Any, JSONValue]] = []
    for item in merged:
        key = _item_key(item, merge_key)
        (patch_items if key in in_patch else server_only).append((key, item))
    patch_items.sort(key=lambda pair: patch_rank.get(pair[0], len(patch_rank)))
    server_only.sort(key=lambda pair: server_rank.get(pair[0], len(server_rank)))

    out: list[JSONValue] = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if j >= len(patch_items):
            out.append(server_only[i][1])
            i += 1
        elif i >= len(server_only):
            out.append(patch_items[j][1])
            j += 1
        else:
            left = server_rank.get(server_only[i][0])
            right = server_rank.get(patch_items[j][0])
            if left is not None and right is not None and left < right:
                out.append(server_only[i][1])
                i += 1
            else:
                out.append(patch_items[j][1])
                j += 1
    return out


def _apply_set_element_order(
    original: JSONObject,
    patch: Mapping[str, JSONValue],
    field: str,
    order: JSONValue,
    node: SchemaNode,
) -> None:
    if not isinstance(order, list):
        raise PatchError("invalid patch format of setElementOrder list", 400)
    current = original.get(field, _MISSING)
    patch_list = patch.get(field, _MISSING)
    if current is not _MISSING and not isinstance(current, list):
        raise PatchError(f"expected a list for {field!r}, got {type(current).__name__}")
    if patch_list is not _MISSING and not isinstance(patch_list, list):
        raise PatchError(f"expected a list for {field!r} in the patch", 400)
    merge_key = node.spec.merge_key if _is_map_list(order) else None
    if isinstance(patch_list, list):
        _check_order(patch_list, order, merge_key)

    server_order: list[JSONValue] = current if isinstance(current, list) else []
    if isinstance(current, list) and isinstance(patch_list, list):
        merged = _smp_list(current, patch_list, node)
        if merge_key is not None and node.spec.merges_list:
            server_order = _server_order(current, patch_list, merge_key)
    elif isinstance(current, list):
        merged = current
    elif isinstance(patch_list, list):
        merged = _clean_list(patch_list, node)
    else:
        return
    original[field] = _order(merged, order, server_order, merge_key)


def _server_order(
    current: list[JSONValue], patch_list: list[JSONValue], merge_key: str
) -> list[JSONValue]:
    """The live order that server-only items are placed against under ``$setElementOrder``.

    kube-apiserver compares against the live list after ``$patch: delete`` removals with the
    new items appended, cut to the live list's original length.  The cut decides whether a new
    item sorts before or after the server-only items, so it is reproduced.
    """
    if any(isinstance(item, dict) and item.get(_PATCH) == "replace" for item in patch_list):
        return current
    doomed = {
        _item_key(item, merge_key)
        for item in patch_list
        if isinstance(item, dict) and item.get(_PATCH) == "delete"
    }
    window = [item for item in current if _item_key(item, merge_key) not in doomed]
    present = {_item_key(item, merge_key) for item in window}
    for item in patch_list:
        if isinstance(item, dict) and _PATCH not in item:
            key = _item_key(item, merge_key)
            if key not in present:
                present.add(key)
                window.append(item)
    return window[: len(current)]


def _check_order(
    patch_list: list[JSONValue], order: list[JSONValue], merge_key: str | None
) -> None:
    """The non-directive patch items must appear in ``order`` in the same relative order."""
    wanted = [
        _item_key(item, merge_key)
        for item in patch_list
        if not (isinstance(item, dict) and _PATCH in item)
    ]
    position = 0
    for entry in order:
        if position < len(wanted) and _item_key(entry, merge_key) == wanted[position]:
            position += 1
    if position < len(wanted):
        raise PatchError(
            f"the order in patch list {patch_list} doesn't match $setElementOrder list {order}",
            400,
        )


def _delete_from_primitive_list(original: JSONObject, field: str, values: JSONValue) -> None:
    if not isinstance(values, list):
        raise PatchError("invalid patch format of primitive list", 400)
    current = original.get(field)
    if not isinstance(current, list):
        return
    if any(isinstance(v, (dict, list)) for v in values):
        raise PatchError("invalid patch format of primitive list", 400)
    doomed = {_hashable(v) for v in values}
    original[field] = [item for item in current if _hashable(item) not in doomed]
