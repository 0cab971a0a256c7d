"""Server-side apply and ``metadata.managedFields`` bookkeeping for the embedded API server.

This module owns:

* field sets: which fields an object (or an apply configuration) sets, as tuples of FieldsV1
  path elements (``"f:spec"``, ``'k:{"name":"app"}'``, ``'v:"x"'``, ``"i:0"``), and their
  FieldsV1 encoding (:func:`fields_v1_to_set`, :func:`set_to_fields_v1`);
* :func:`apply`: server-side apply with ownership, conflicts, ``force`` and pruning of fields a
  manager stopped applying, raising :class:`ApplyConflict` with the API server's message;
* :func:`record_update`: ownership transfer for every other write (create, update, patch);
* :func:`changed_paths`: a readable diff of two objects, for the sync engine's reports.

List and map semantics come from the table in :mod:`pytest_devloop.k8s.patch`: map-lists
keyed by their ``listMapKey`` fields, sets, and atomic values.  Kinds and fields the table does
not describe get atomic lists and granular maps, which is also how custom resources without
``x-kubernetes-list-type`` markers behave.

Everything is a pure function over JSON-like data; inputs are never mutated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any, Final

from pytest_devloop.k8s.patch import (
    BUILTIN_NAME_RULES,
    UNKNOWN,
    JSONObject,
    JSONValue,
    PatchError,
    SchemaNode,
    copy_json,
    is_builtin_group,
    json_equal,
    schema_for,
)

__all__ = [
    "ApplyConflict",
    "Path",
    "apply",
    "changed_paths",
    "dotted_path",
    "field_set",
    "fields_v1_to_set",
    "format_path",
    "record_update",
    "set_to_fields_v1",
]

Path = tuple[str, ...]
"""A field path as FieldsV1 path elements, e.g. ``("f:spec", "f:replicas")``."""

_MISSING: Final = object()

# Fields the API server keeps out of every manager's set: identity and server-owned metadata.
_STRIPPED_PATHS: Final[frozenset[Path]] = frozenset(
    {("f:apiVersion",), ("f:kind",), ("f:metadata",)}
    | {
        ("f:metadata", f"f:{name}")
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        )
    }
)
# Metadata an apply configuration cannot set: the server owns these values.
_SERVER_METADATA: Final = frozenset(
    {"creationTimestamp", "selfLink", "uid", "generation", "managedFields", "resourceVersion"}
)
# What changed_paths leaves out by default: bookkeeping that changes on every write.
_BOOKKEEPING_METADATA: Final = _SERVER_METADATA


# --------------------------------------------------------------------------------------------
# Path elements
# --------------------------------------------------------------------------------------------


def _dump(value: JSONValue) -> str:
    """Compact JSON, as the API server writes values inside path elements."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _item_element(node: SchemaNode, item: JSONValue, index: int, *, strict: bool) -> str:
    """The path element naming ``item`` (at ``index``) of a map-list or set."""
    spec = node.spec
    if spec.list_type == "set":
        return "v:" + _dump(item)
    if isinstance(item, dict):
        parts = []
        for key in spec.list_keys:
            value = item.get(key, _MISSING)
            if value is _MISSING:
                value = dict(spec.key_defaults).get(key, _MISSING)
                if value is _MISSING:
                    break
            parts.append(f"{encode_basestring(key)}:{_dump(value)}")
        else:
            return "k:{" + ",".join(parts) + "}"
        if strict:
            raise PatchError(
                "associative list with keys has an element that omits key field "
                f"{key!r} (and doesn't have default value)"
            )
    elif strict:
        raise PatchError(f"expected an object in a keyed list, got {_dump(item)}")
    # Live objects may predate validation; an index keeps them addressable.
    return f"i:{index}"


@lru_cache(maxsize=4096)
def _normalize_element(element: str) -> str:
    """Rewrite a path element read from a client into the form this module generates."""
    tag = element[:2]
    if tag == "f:":
        return element
    try:
        if tag == "k:":
            keys = json.loads(element[2:])
            if isinstance(keys, dict):
                return (
                    "k:{"
                    + ",".join(f"{encode_basestring(k)}:{_dump(keys[k])}" for k in sorted(keys))
                    + "}"
                )
        elif tag == "v:":
            return "v:" + _dump(json.loads(element[2:]))
        elif tag == "i:" and element[2:].isdigit():
            return f"i:{int(element[2:])}"
    except ValueError:
        pass
    raise PatchError(f"invalid managedFields path element {element!r}", 400)


def _element_sort_key(element: str) -> tuple[int, int, str]:
    # Fields, then keys, then values, then indices; the API server serialises in that order.
    tag = element[0]
    if tag == "i":
        return (3, int(element[2:]), "")
    return ({"f": 0, "k": 1, "v": 2}.get(tag, 4), 0, element[2:])


def _path_sort_key(path: Path) -> tuple[tuple[int, tuple[int, int, str]], ...]:
    # Members of a node come before its children's paths, as in the API server's set walk.
    return (
        *((1, _element_sort_key(e)) for e in path[:-1]),
        (0, _element_sort_key(path[-1])),
    )


def _go_string(value: JSONValue) -> str:
    """Render a key value the way the API server prints it in a path."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return _dump(value)


def format_path(path: Path) -> str:
    """The API server's rendering of a path: ``.spec.containers[name="app"].image``."""
    out: list[str] = []
    for element in path:
        tag, body = element[:2], element[2:]
        if tag == "f:":
            out.append("." + body)
        elif tag == "k:":
            keys = json.loads(body)
            out.append("[" + ",".join(f"{k}={_go_string(v)}" for k, v in keys.items()) + "]")
        elif tag == "v:":
            out.append(f"[={_go_string(json.loads(body))}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


def _plain(value: JSONValue) -> str:
    return value if isinstance(value, str) else _dump(value)


def _is_identifier(name: str) -> bool:
    return bool(name) and all(ch.isalnum() or ch in "_-" for ch in name)


def dotted_path(path: Path) -> str:
    """A readable rendering: ``spec.template.spec.containers[name=app].image``.

    Field names that are not plain identifiers (label keys, annotations) are bracketed and
    quoted, e.g. ``metadata.labels["app.kubernetes.io/name"]``; set members render as
    ``finalizers[=example.com/x]`` and unkeyed items as ``[3]``.
    """
    out: list[str] = []
    for element in path:
        tag, body = element[:2], element[2:]
        if tag == "f:":
            if _is_identifier(body):
                out.append(("." if out else "") + body)
            else:
                out.append(f"[{json.dumps(body, ensure_ascii=False)}]")
        elif tag == "k:":
            keys = json.loads(body)
            out.append("[" + ",".join(f"{k}={_plain(v)}" for k, v in keys.items()) + "]")
        elif tag == "v:":
            out.append(f"[={_plain(json.loads(body))}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# FieldsV1
# --------------------------------------------------------------------------------------------


def fields_v1_to_set(fields: Mapping[str, JSONValue]) -> set[Path]:
    """Decode a ``fieldsV1`` document into a set of paths.

    A leaf ``{}`` and a node carrying ``".": {}`` are members; a node without ``"."`` only
    groups its children.
    """
    out: set[Path] = set()
    _decode_fields(fields, (), out)
    return out


def _decode_fields(fields: Mapping[str, JSONValue], prefix: Path, out: set[Path]) -> None:
    for key, sub in fields.items():
        if key == ".":
            if prefix:
                out.add(prefix)
            continue
        if not isinstance(sub, dict):
            raise PatchError(f"invalid managedFields: {key!r} must map to an object", 400)
        path = (*prefix, _normalize_element(key))
        if sub:
            _decode_fields(sub, path, out)
        else:
            out.add(path)


def set_to_fields_v1(paths: Collection[Path]) -> JSONObject:
    """Encode a set of paths as a ``fieldsV1`` document, keys in the API server's order."""
    members = paths if isinstance(paths, (set, frozenset)) else set(paths)
    trie: dict[str, Any] = {}
    for path in members:
        node = trie
        for element in path:
            node = node.setdefault(element, {})
    return _encode_fields(trie, (), members)


def _encode_fields(trie: dict[str, Any], prefix: Path, members: Collection[Path]) -> JSONObject:
    out: JSONObject = {}
    if trie and prefix and prefix in members:
        out["."] = {}
    for element in sorted(trie, key=_element_sort_key):
        out[element] = _encode_fields(trie[element], (*prefix, element), members)
    return out


# --------------------------------------------------------------------------------------------
# Walking objects with their schema
# --------------------------------------------------------------------------------------------


def _child(node: SchemaNode, name: str, builtin: bool) -> SchemaNode:
    child = node.fields.get(name)
    if child is not None:
        return child
    if builtin:
        rule = BUILTIN_NAME_RULES.get(name)
        if rule is not None:
            return _RULE_NODES[name]
    return UNKNOWN


_RULE_NODES: Final = {name: SchemaNode(spec) for name, spec in BUILTIN_NAME_RULES.items()}


def _is_keyed(node: SchemaNode) -> bool:
    return node.spec.list_type in ("map", "set")


class _Collector:
    """Gathers the fields a value sets (the apply notion of "set")."""

    __slots__ = ("builtin", "out", "strict")

    def __init__(self, builtin: bool, *, strict: bool) -> None:
        self.builtin = builtin
        self.strict = strict
        self.out: set[Path] = set()

    def collect(self, value: JSONValue, node: SchemaNode, path: Path) -> None:
        if isinstance(value, dict):
            if not value or node.spec.map_type == "atomic":
                self.out.add(path)
                return
            for key, sub in value.items():
                self.collect(sub, _child(node, key, self.builtin), (*path, "f:" + key))
        elif isinstance(value, list) and _is_keyed(node):
            self._collect_items(value, node, path)
        else:
            self.out.add(path)

    def _collect_items(self, items: list[JSONValue], node: SchemaNode, path: Path) -> None:
        seen: set[str] = set()
        item_node = node.items()
        is_set = node.spec.list_type == "set"
        for index, item in enumerate(items):
            element = _item_element(node, item, index, strict=self.strict)
            if element in seen:
                if self.strict:
                    raise PatchError(
                        f"{format_path(path)}: duplicate entries for key {element[2:]}"
                    )
                continue
            seen.add(element)
            item_path = (*path, element)
            self.out.add(item_path)
            if not is_set and isinstance(item, dict):
                for key, sub in item.items():
                    self.collect(
                        sub, _child(item_node, key, self.builtin), (*item_path, "f:" + key)
                    )


def _merge_map(
    live: Mapping[str, JSONValue], config: Mapping[str, JSONValue], node: SchemaNode, builtin: bool
) -> JSONObject:
    """Apply merge: ``config`` wins for the fields it sets, ``live`` keeps the rest."""
    out: JSONObject = {}
    for key, value in live.items():
        if key in config:
            merged = _merge_value(value, config[key], _child(node, key, builtin), builtin)
            if merged is not _MISSING:
                out[key] = merged
        else:
            out[key] = copy_json(value)
    for key, value in config.items():
        if key not in live:
            merged = _merge_value(_MISSING, value, _child(node, key, builtin), builtin)
            if merged is not _MISSING:
                out[key] = merged
    return out


def _merge_value(live: JSONValue, config: JSONValue, node: SchemaNode, builtin: bool) -> JSONValue:
    if config is None:
        # An explicit null in a configuration means "this field is unset"; typed objects have
        # no way to store it.
        return _MISSING
    if isinstance(config, dict):
        if node.spec.map_type == "atomic":
            return copy_json(config)
        return _merge_map(live if isinstance(live, dict) else {}, config, node, builtin)
    if isinstance(config, list) and _is_keyed(node) and isinstance(live, list):
        return _merge_list(live, config, node, builtin)
    if isinstance(config, list) and _is_keyed(node) and node.spec.list_type == "map":
        return [
            _merge_map({}, item, node.items(), builtin) if isinstance(item, dict) else item
            for item in config
        ]
    return copy_json(config)


def _merge_list(
    live: list[JSONValue], config: list[JSONValue], node: SchemaNode, builtin: bool
) -> list[JSONValue]:
    """Merge a map-list or set: configured items in configured order, live-only items kept.

    A live-only item stays right after the live item it followed, so items other managers
    added keep their neighbourhood.
    """
    config_items: dict[str, JSONValue] = {}
    for index, item in enumerate(config):
        element = _item_element(node, item, index, strict=True)
        if element in config_items:
            raise PatchError(f"duplicate entries for key {element[2:]}")
        config_items[element] = item
    live_items: dict[str, JSONValue] = {}
    after: dict[str | None, list[JSONValue]] = {}
    anchor: str | None = None
    for index, item in enumerate(live):
        element = _item_element(node, item, index, strict=False)
        if element in config_items:
            live_items.setdefault(element, item)
            anchor = element
        elif element not in live_items:
            live_items[element] = item
            after.setdefault(anchor, []).append(item)
    is_map = node.spec.list_type == "map"
    item_node = node.items()
    out = [copy_json(item) for item in after.get(None, ())]
    for element, item in config_items.items():
        if is_map and isinstance(item, dict):
            previous = live_items.get(element)
            base = previous if isinstance(previous, dict) else {}
            out.append(_merge_map(base, item, item_node, builtin))
        else:
            out.append(copy_json(item))
        out.extend(copy_json(kept) for kept in after.get(element, ()))
    return out


class _Diff:
    """Paths added, removed and modified between two objects, in walk order.

    Like the API server, a map, list or list item that appears or disappears is recorded
    together with everything below it.  Go structs exist in every typed object, so nobody ever
    "adds" one; ``structs=True`` records them anyway, for human-readable diffs.
    """

    __slots__ = ("added", "builtin", "modified", "removed", "structs")

    def __init__(self, builtin: bool, *, structs: bool = False) -> None:
        self.builtin = builtin
        self.structs = structs
        self.added: dict[Path, None] = {}
        self.removed: dict[Path, None] = {}
        self.modified: dict[Path, None] = {}

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def compare_map(
        self,
        old: Mapping[str, JSONValue],
        new: Mapping[str, JSONValue],
        node: SchemaNode,
        path: Path,
    ) -> None:
        builtin = self.builtin
        for key, value in old.items():
            other = new.get(key, _MISSING)
            child = _child(node, key, builtin)
            if other is _MISSING:
                self.mark(value, child, (*path, "f:" + key), self.removed)
            else:
                self.compare(value, other, child, (*path, "f:" + key))
        for key, value in new.items():
            if key not in old:
                self.mark(value, _child(node, key, builtin), (*path, "f:" + key), self.added)

    def compare(self, old: JSONValue, new: JSONValue, node: SchemaNode, path: Path) -> None:
        if old == new and json_equal(old, new):
            return
        old_is_map, new_is_map = isinstance(old, dict), isinstance(new, dict)
        old_is_list, new_is_list = isinstance(old, list), isinstance(new, list)
        if old_is_map and new_is_map:
            if node.spec.map_type != "atomic":
                self.compare_map(old, new, node, path)
                return
        elif old_is_list and new_is_list:
            if _is_keyed(node):
                self._compare_list(old, new, node, path)
                return
        elif old_is_map or new_is_map or old_is_list or new_is_list:
            # The value changed shape: it is modified, and everything below it came or went.
            self.mark(old, node, path, self.removed, include_self=False)
            self.mark(new, node, path, self.added, include_self=False)
        self.modified[path] = None

    def _compare_list(
        self, old: list[JSONValue], new: list[JSONValue], node: SchemaNode, path: Path
    ) -> None:
        old_items: dict[str, JSONValue] = {}
        for index, item in enumerate(old):
            old_items.setdefault(_item_element(node, item, index, strict=False), item)
        new_items: dict[str, JSONValue] = {}
        for index, item in enumerate(new):
            new_items.setdefault(_item_element(node, item, index, strict=False), item)
        item_node = node.items()
        is_map = node.spec.list_type == "map"
        for element, item in old_items.items():
            other = new_items.get(element, _MISSING)
            if other is _MISSING:
                self.mark_item(item, node, (*path, element), self.removed)
            elif is_map:
                self.compare(item, other, item_node, (*path, element))
        for element, item in new_items.items():
            if element not in old_items:
                self.mark_item(item, node, (*path, element), self.added)

    def mark_item(
        self, item: JSONValue, list_node: SchemaNode, path: Path, target: dict[Path, None]
    ) -> None:
        target[path] = None
        if list_node.spec.list_type == "map" and isinstance(item, dict):
            item_node = list_node.items()
            for key, value in item.items():
                self.mark(value, _child(item_node, key, self.builtin), (*path, "f:" + key), target)

    def mark(
        self,
        value: JSONValue,
        node: SchemaNode,
        path: Path,
        target: dict[Path, None],
        *,
        include_self: bool = True,
    ) -> None:
        """Record ``path`` and every field below it in ``target``."""
        spec = node.spec
        if isinstance(value, dict) and value and spec.map_type != "atomic":
            if include_self and (self.structs or not spec.struct):
                target[path] = None
            for key, sub in value.items():
                self.mark(sub, _child(node, key, self.builtin), (*path, "f:" + key), target)
        elif isinstance(value, list) and value and _is_keyed(node):
            if include_self:
                target[path] = None
            for index, item in enumerate(value):
                element = _item_element(node, item, index, strict=False)
                self.mark_item(item, node, (*path, element), target)
        elif include_self:
            target[path] = None


def _prune(obj: JSONObject, paths: Iterable[Path], node: SchemaNode, builtin: bool) -> None:
    """Delete the fields at ``paths`` from ``obj`` in place, dropping maps and lists they empty."""
    trie: dict[str, Any] = {}
    for path in paths:
        level = trie
        for element in path:
            level = level.setdefault(element, {})
        level["."] = {}
    _prune_map(obj, trie, node, builtin)


def _prune_map(obj: JSONObject, trie: dict[str, Any], node: SchemaNode, builtin: bool) -> None:
    for element, sub in trie.items():
        if not element.startswith("f:"):
            continue
        name = element[2:]
        value = obj.get(name, _MISSING)
        if value is _MISSING:
            continue
        if "." in sub:
            del obj[name]
            continue
        child = _child(node, name, builtin)
        if isinstance(value, dict) and value:
            _prune_map(value, sub, child, builtin)
        elif isinstance(value, list) and value and _is_keyed(child):
            _prune_list(value, sub, child, builtin)
        else:
            continue
        if not value:
            del obj[name]


def _prune_list(
    items: list[JSONValue], trie: dict[str, Any], node: SchemaNode, builtin: bool
) -> None:
    item_node = node.items()
    for index in range(len(items) - 1, -1, -1):
        sub = trie.get(_item_element(node, items[index], index, strict=False))
        if sub is None:
            continue
        if "." in sub:
            del items[index]
        elif isinstance(items[index], dict):
            _prune_map(items[index], sub, item_node, builtin)


# --------------------------------------------------------------------------------------------
# Managed fields entries
# --------------------------------------------------------------------------------------------

_Key = tuple[str, str, str, str]


@dataclass(slots=True)
class _Entry:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: set[Path]
    raw: JSONObject | None = None
    """The encoded entry this one was decoded from, reused while nothing changes."""

    @property
    def key(self) -> _Key:
        # Appliers keep one entry whatever version they apply with; updaters get one per version.
        version = self.api_version if self.operation == "Update" else ""
        return (self.manager, self.operation, self.subresource, version)

    def identifier(self) -> str:
        """The API server's manager identifier: the entry without fields and time."""
        ident: JSONObject = {"manager": self.manager, "operation": self.operation}
        if self.operation == "Update":
            ident["apiVersion"] = self.api_version
        if self.subresource:
            ident["subresource"] = self.subresource
        return json.dumps(ident, separators=(",", ":"))

    def describe(self) -> str:
        """The manager as conflict messages print it."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def encode(self) -> JSONObject:
        if self.raw is not None:
            copied: JSONObject = copy_json(self.raw)
            return copied
        out: JSONObject = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = set_to_fields_v1(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _decode_entries(entries: JSONValue) -> dict[_Key, _Entry] | None:
    """Decode ``metadata.managedFields``; ``None`` when it is not valid."""
    if not isinstance(entries, list):
        return None
    out: dict[_Key, _Entry] = {}
    for raw in entries:
        if not isinstance(raw, dict):
            return None
        operation = raw.get("operation")
        api_version = raw.get("apiVersion")
        manager = raw.get("manager", "")
        subresource = raw.get("subresource") or ""
        fields = raw.get("fieldsV1") or {}
        if (
            operation not in ("Apply", "Update")
            or not isinstance(api_version, str)
            or not api_version
            or raw.get("fieldsType") != "FieldsV1"
            or not isinstance(manager, str)
            or not isinstance(subresource, str)
            or not isinstance(fields, dict)
        ):
            return None
        try:
            paths = fields_v1_to_set(fields)
        except PatchError:
            return None
        time = raw.get("time")
        entry = _Entry(
            manager=manager,
            operation=str(operation),
            api_version=api_version,
            subresource=subresource,
            time=time if isinstance(time, str) else None,
            fields=paths,
            raw=raw,
        )
        out[entry.key] = entry
    return out


def _is_reset(entries: JSONValue) -> bool:
    """``[]`` or ``[{}]``: the client asks to wipe managedFields."""
    return isinstance(entries, list) and entries in ([], [{}])


def _live_entries(obj: Mapping[str, JSONValue]) -> dict[_Key, _Entry]:
    metadata = obj.get("metadata")
    entries = metadata.get("managedFields") if isinstance(metadata, dict) else None
    return _decode_entries(entries or []) or {}


def _requested_entries(
    live: Mapping[str, JSONValue], request: Mapping[str, JSONValue]
) -> dict[_Key, _Entry]:
    """Which managedFields a write starts from: absent → live, reset → none, else the request's."""
    metadata = request.get("metadata")
    requested = metadata.get("managedFields") if isinstance(metadata, dict) else None
    if requested is None:
        return _live_entries(live)
    if _is_reset(requested):
        return {}
    decoded = _decode_entries(requested)
    # Clients that mangle managedFields must not lose everyone's ownership by accident.
    return decoded if decoded else _live_entries(live)


def _store_entries(obj: JSONObject, entries: Iterable[_Entry]) -> None:
    ordered = sorted(
        entries,
        key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource),
    )
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        obj["metadata"] = metadata
    if ordered:
        metadata["managedFields"] = [entry.encode() for entry in ordered]
    else:
        metadata.pop("managedFields", None)


def _is_stripped(path: Path) -> bool:
    return path in _STRIPPED_PATHS or (len(path) > 2 and path[:2] in _STRIPPED_PATHS)


def _scope(subresource: str | None, status_subresource: bool) -> Callable[[str], bool]:
    """Which top-level fields a write through ``subresource`` may own."""
    if subresource == "status":
        return lambda key: key == "status"
    if status_subresource or subresource is not None:
        return lambda key: key != "status"
    return lambda key: True


def _tracked_view(obj: Mapping[str, JSONValue], in_scope: Callable[[str], bool]) -> JSONObject:
    """A shallow view of what ownership tracking compares: no managedFields, scope applied."""
    view: JSONObject = {}
    for key, value in obj.items():
        if not in_scope(key):
            continue
        if key == "metadata" and isinstance(value, dict) and "managedFields" in value:
            view[key] = {k: v for k, v in value.items() if k != "managedFields"}
        else:
            view[key] = value
    return view


def _infer_type(obj: Mapping[str, JSONValue]) -> tuple[str, str]:
    api_version = obj.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else ""
    kind = obj.get("kind")
    return group, kind if isinstance(kind, str) else ""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


class ApplyConflict(Exception):
    """Server-side apply would change fields other managers own.

    ``conflicts`` lists ``(manager, path)`` pairs, e.g. ``("kubectl", ".spec.replicas")``;
    ``causes`` is the ``details.causes`` list of the 409 Status, and the message is the API
    server's: ``Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas``.
    """

    code: Final = 409

    def __init__(
        self,
        conflicts: Sequence[tuple[str, str]],
        *,
        descriptions: Sequence[str] | None = None,
        identifiers: Sequence[str] | None = None,
    ) -> None:
        self.conflicts: list[tuple[str, str]] = list(conflicts)
        # How each conflict's manager is printed, and the identity managers are sorted by.
        self.descriptions = list(descriptions or [json.dumps(m) for m, _ in self.conflicts])
        self._identifiers = list(identifiers or [m for m, _ in self.conflicts])
        self.message = self._message()
        super().__init__(self.message)

    def _message(self) -> str:
        count = len(self.conflicts)
        if count == 1:
            return (
                f"Apply failed with 1 conflict: conflict with {self.descriptions[0]}: "
                f"{self.conflicts[0][1]}"
            )
        grouped: dict[str, tuple[str, list[str]]] = {}
        for ident, description, (_, path) in zip(
            self._identifiers, self.descriptions, self.conflicts, strict=True
        ):
            grouped.setdefault(ident, (description, []))[1].append(path)
        lines: list[str] = []
        for ident in sorted(grouped):
            description, paths = grouped[ident]
            lines.append(f"conflicts with {description}:")
            lines.extend(f"- {path}" for path in paths)
        return f"Apply failed with {count} conflicts: " + "\n".join(lines)

    @property
    def causes(self) -> list[JSONObject]:
        return [
            {
                "reason": "FieldManagerConflict",
                "message": f"conflict with {description}",
                "field": path,
            }
            for description, (_, path) in zip(self.descriptions, self.conflicts, strict=True)
        ]

    def to_status(self) -> JSONObject:
        """The ``metav1.Status`` the API server answers with."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": "Conflict",
            "details": {"causes": self.causes},
            "code": 409,
        }


def field_set(
    obj: Mapping[str, JSONValue], *, kind: str | None = None, api_group: str | None = None
) -> frozenset[Path]:
    """Every field ``obj`` sets, as apply sees them (leaves, keyed items, atomic values).

    ``kind``/``api_group`` default to the object's own ``kind``/``apiVersion``.
    ``metadata.managedFields`` is left out.
    """
    group, inferred_kind = _infer_type(obj)
    group = group if api_group is None else api_group
    root = schema_for(inferred_kind if kind is None else kind, group)
    collector = _Collector(is_builtin_group(group), strict=False)
    collector.collect(_tracked_view(obj, lambda key: True), root, ())
    collector.out.discard(())
    return frozenset(collector.out)


def changed_paths(
    old: Mapping[str, JSONValue] | None,
    new: Mapping[str, JSONValue] | None,
    *,
    kind: str | None = None,
    api_group: str | None = None,
    ignore_bookkeeping: bool = True,
) -> list[str]:
    """Dotted paths of what differs between ``old`` and ``new``, sorted by path.

    Lists are matched by key where the schema keys them, so a changed image reads
    ``spec.template.spec.containers[name=app].image``; an added or removed subtree is reported
    once, at its root.  With ``ignore_bookkeeping`` the server-maintained metadata
    (resourceVersion, generation, uid, creationTimestamp, managedFields, selfLink) is ignored.
    """
    old_obj: Mapping[str, JSONValue] = old or {}
    new_obj: Mapping[str, JSONValue] = new or {}
    group, inferred_kind = _infer_type(new_obj or old_obj)
    group = group if api_group is None else api_group
    root = schema_for(inferred_kind if kind is None else kind, group)
    diff = _Diff(is_builtin_group(group), structs=True)
    diff.compare(
        _bookkeeping_free(old_obj, ignore_bookkeeping),
        _bookkeeping_free(new_obj, ignore_bookkeeping),
        root,
        (),
    )
    whole = diff.added.keys() | diff.removed.keys() | diff.modified.keys()
    found: list[Path] = []
    for path in [*diff.removed, *diff.modified, *diff.added]:
        if not path or any(path[:i] in whole for i in range(1, len(path))):
            continue
        found.append(path)
    found.sort(key=lambda path: tuple(_element_sort_key(e) for e in path))
    return [dotted_path(path) for path in found]


def _bookkeeping_free(obj: Mapping[str, JSONValue], ignore: bool) -> JSONObject:
    view = dict(obj)
    metadata = view.get("metadata")
    if ignore and isinstance(metadata, dict):
        view["metadata"] = {k: v for k, v in metadata.items() if k not in _BOOKKEEPING_METADATA}
    return view


def apply(
    live: JSONObject | None,
    applied: JSONObject,
    manager: str,
    *,
    force: bool,
    kind: str,
    api_group: str,
    now: str,
    subresource: str | None = None,
    status_subresource: bool = True,
) -> JSONObject:
    """Server-side apply ``applied`` (the configuration) by ``manager`` onto ``live``.

    Returns the new object with ``metadata.managedFields`` updated; when it equals ``live`` the
    apply was a no-op and the server should not bump the resourceVersion.  Raises
    :class:`ApplyConflict` when a field the configuration changes is owned by another manager
    and ``force`` is false; with ``force`` the applier takes those fields over.

    * ``live`` is ``None`` on create.
    * ``status`` is only applied through ``subresource="status"``; ``status_subresource=False``
      makes it an ordinary field (custom resources without a status subresource).
    * ``metadata.managedFields`` in ``applied``: absent keeps the live entries, ``[]``/``[{}]``
      resets them, anything else valid replaces them.  (kube-apiserver itself rejects any
      managedFields in an apply body with 400; the server can enforce that before calling.)
    * Server-owned metadata (uid, resourceVersion, generation, creationTimestamp) is never
      taken from ``applied``; name and namespace are, but nobody owns them.
    """
    if not isinstance(applied, dict):
        raise PatchError("apply patch must be an object", 400)
    root = schema_for(kind, api_group)
    builtin = is_builtin_group(api_group)
    in_scope = _scope(subresource, status_subresource)
    base: JSONObject = live if isinstance(live, dict) else {}
    api_version = str(applied.get("apiVersion") or base.get("apiVersion") or "")

    entries = _requested_entries(base, applied)
    config = _config_view(applied, in_scope)
    collector = _Collector(builtin, strict=True)
    collector.collect(config, root, ())
    config_set = {path for path in collector.out if path and not _is_stripped(path)}

    merged = _merge_map(base, config, root, builtin)
    me: _Key = (manager, "Apply", subresource or "", "")
    previous = entries.get(me)
    if previous is not None:
        others: set[Path] = set()
        for key, entry in entries.items():
            if key != me:
                others |= entry.fields
        stale = previous.fields - config_set - others
        if stale:
            _prune(merged, stale, root, builtin)

    diff = _Diff(builtin)
    diff.compare_map(_tracked_view(base, in_scope), _tracked_view(merged, in_scope), root, ())
    changed = diff.added.keys() | diff.modified.keys()

    conflicts: list[tuple[_Entry, Path]] = []
    for key, entry in entries.items():
        if key != me:
            conflicts.extend((entry, path) for path in entry.fields & changed)
    if conflicts and not force:
        conflicts.sort(key=lambda pair: (pair[0].identifier(), _path_sort_key(pair[1])))
        raise ApplyConflict(
            [(entry.manager, format_path(path)) for entry, path in conflicts],
            descriptions=[entry.describe() for entry, _ in conflicts],
            identifiers=[entry.identifier() for entry, _ in conflicts],
        )

    lost = changed | diff.removed.keys()
    for key in list(entries):
        entry = entries[key]
        if key == me or not (entry.fields & lost):
            continue
        entry.fields = entry.fields - lost
        entry.raw = None
        if not entry.fields:
            del entries[key]

    if not config_set:
        entries.pop(me, None)
    elif (
        previous is None
        or previous.fields != config_set
        or previous.api_version != api_version
        or diff
    ):
        entries[me] = _Entry(
            manager=manager,
            operation="Apply",
            api_version=api_version,
            subresource=subresource or "",
            time=now
            if (diff or previous is None or previous.fields != config_set)
            else previous.time,
            fields=config_set,
        )
    _store_entries(merged, entries.values())
    return merged


def _config_view(applied: Mapping[str, JSONValue], in_scope: Callable[[str], bool]) -> JSONObject:
    """The part of an apply configuration that is applied: scope and server metadata removed."""
    config: JSONObject = {}
    for key, value in applied.items():
        if key in ("apiVersion", "kind"):
            config[key] = value
        elif not in_scope(key):
            continue
        elif key == "metadata" and isinstance(value, dict):
            config[key] = {k: v for k, v in value.items() if k not in _SERVER_METADATA}
        else:
            config[key] = value
    return config


def record_update(
    old: JSONObject | None,
    new: JSONObject,
    manager: str,
    *,
    operation: str = "Update",
    subresource: str | None = None,
    now: str,
    kind: str | None = None,
    api_group: str | None = None,
    status_subresource: bool = True,
) -> JSONObject:
    """Record a non-apply write (create, update, patch) of ``new`` by ``manager``.

    ``manager`` takes ownership of every field the write added or changed (every field on
    create, ``old is None``), and those fields leave every other manager's set; fields the
    write removed leave every set.  Updates never conflict.  Returns a copy of ``new`` (sharing
    unchanged sub-objects with it) whose ``metadata.managedFields`` holds one entry per
    (manager, operation, subresource, apiVersion).

    ``metadata.managedFields`` in ``new`` is honoured like kube-apiserver does: absent or
    invalid keeps the live entries, ``[]``/``[{}]`` resets them, valid entries replace them;
    writes to a subresource always keep the live entries.  ``kind``/``api_group`` default to
    those of ``new``.
    """
    if not isinstance(new, dict):
        raise PatchError("object must be a JSON object", 400)
    group, inferred_kind = _infer_type(new)
    group = group if api_group is None else api_group
    root = schema_for(inferred_kind if kind is None else kind, group)
    builtin = is_builtin_group(group)
    base: JSONObject = old if isinstance(old, dict) else {}
    in_scope = _scope(subresource, status_subresource)
    api_version = str(new.get("apiVersion") or base.get("apiVersion") or "")

    entries = _live_entries(base) if subresource else _requested_entries(base, new)
    diff = _Diff(builtin)
    diff.compare_map(_tracked_view(base, in_scope), _tracked_view(new, in_scope), root, ())
    changed = diff.added.keys() | diff.modified.keys()
    lost = changed | diff.removed.keys()

    me: _Key = (manager, operation, subresource or "", api_version if operation == "Update" else "")
    for key in list(entries):
        entry = entries[key]
        if key == me or not (entry.fields & lost):
            continue
        entry.fields = entry.fields - lost
        entry.raw = None
        if not entry.fields:
            del entries[key]

    taken = {path for path in changed if not _is_stripped(path)}
    previous = entries.get(me)
    kept = previous.fields - diff.removed.keys() if previous is not None else set()
    if taken or (previous is not None and kept != previous.fields):
        fields = kept | taken
        if fields:
            entries[me] = _Entry(
                manager=manager,
                operation=operation,
                api_version=api_version,
                subresource=subresource or "",
                time=now if taken else (previous.time if previous else now),
                fields=fields,
            )
        else:
            entries.pop(me, None)

    result = dict(new)
    metadata = result.get("metadata")
    result["metadata"] = dict(metadata) if isinstance(metadata, dict) else {}
    _store_entries(result, entries.values())
    return result
