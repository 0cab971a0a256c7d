"""Decoding a built-in object as the API server's typed decoder does: types and unknown fields.

Owns what a real server finds while it turns a request body into its Go struct: a value of
the wrong JSON type (`json: cannot unmarshal string into Go struct field ...`), and fields
the struct does not have (collected for `fieldValidation`, then dropped, since a Go struct
cannot hold them). The shapes come from `embedded.schemas`; each definition is compiled
once into a small node tree, so that walking an object costs a dictionary lookup per field.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pytest_devloop.embedded import schemas

_ANY = "any"


@dataclass
class Node:
    """One compiled schema: JSON type, Go type name, and children."""

    json_type: str  # object, array, string, integer, number, boolean, int-or-string, quantity, any
    go_type: str
    props: dict[str, Node] | None = None
    closed: bool = False  # unknown properties are refused (a Go struct)
    values: Node | None = None  # map values
    items: Node | None = None
    struct: str = ""  # the Go struct owning the fields (for messages)
    required: tuple[str, ...] = field(default_factory=tuple)


_lock = threading.Lock()
_compiled: dict[str, Node] = {}


def _short(name: str) -> str:
    parts = name.split(".")
    return f"{parts[-2]}.{parts[-1]}" if len(parts) >= 2 else name


def _scalar_type(schema: dict[str, Any]) -> str:
    types = schema.get("type")
    if isinstance(types, list):
        types = next((t for t in types if t != "null"), None)
    return str(types) if types else _ANY


def _go_scalar(json_type: str, fmt: str | None) -> str:
    if json_type == "integer":
        return fmt if fmt in ("int32", "int64") else "int"
    if json_type == "number":
        return "float64"
    if json_type == "boolean":
        return "bool"
    if json_type == "string":
        return "[]uint8" if fmt == "byte" else "string"
    return "interface {}"


def _compile(schema: dict[str, Any], struct: str, pending: dict[str, Node]) -> Node:
    ref = schema.get("$ref")
    if ref:
        return _compile_def(schemas.ref_name(ref), pending)
    one_of = schema.get("oneOf")
    if one_of:
        kinds = {_scalar_type(s) for s in one_of}
        if kinds == {"string", "integer"}:
            return Node("int-or-string", "intstr.IntOrString")
        if kinds == {"string", "number"}:
            return Node("quantity", "resource.Quantity")
        return Node(_ANY, "interface {}")
    json_type = _scalar_type(schema)
    if json_type == "object":
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        if props is not None:
            node = Node("object", struct, struct=struct.rsplit(".", maxsplit=1)[-1])
            node.props = {k: _compile(v, struct, pending) for k, v in props.items()}
            node.closed = addl is False
            node.required = tuple(schema.get("required") or ())
            return node
        if isinstance(addl, dict):
            values = _compile(addl, struct, pending)
            return Node("object", f"map[string]{values.go_type}", values=values)
        return Node(_ANY, "map[string]interface {}")
    if json_type == "array":
        items = schema.get("items")
        item = _compile(items, struct, pending) if isinstance(items, dict) else Node(_ANY, "")
        return Node("array", f"[]{item.go_type}", items=item)
    return Node(json_type, _go_scalar(json_type, schema.get("format")))


def _compile_def(name: str, pending: dict[str, Node]) -> Node:
    node = _compiled.get(name) or pending.get(name)
    if node is not None:
        return node
    schema = schemas.definition(name)
    if schema is None:
        return Node(_ANY, "interface {}")
    # Recursive definitions (JSONSchemaProps) refer to themselves: register the node
    # before compiling its children, then fill it in.
    node = Node(_ANY, _short(name))
    pending[name] = node
    built = _compile(schema, _short(name), pending)
    node.__dict__.update(built.__dict__)
    node.go_type = _short(name)
    return node


def compiled(definition_name: str) -> Node:
    node = _compiled.get(definition_name)
    if node is None:
        with _lock:
            pending: dict[str, Node] = {}
            node = _compile_def(definition_name, pending)
            _compiled.update(pending)
    return node


@dataclass
class Decoded:
    """What decoding found: the first type error and every unknown field (pruned)."""

    type_error: str | None = None
    # The same error as structured-merge-diff words it for an apply: `.spec.replicas:
    # expected numeric (int or float), got string`.
    typed_error: str | None = None
    unknown: list[str] = field(default_factory=list)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _fits(node: Node, value: Any) -> bool:
    t = node.json_type
    if value is None or t == _ANY:
        return True
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t in ("int-or-string", "quantity"):
        return isinstance(value, str | int | float) and not isinstance(value, bool)
    return True


def decode(definition_name: str, obj: dict[str, Any]) -> Decoded:
    """Walk `obj` (pruning unknown fields in place) against a built-in definition."""
    out = Decoded()
    _walk(compiled(definition_name), obj, "", "", "", out)
    return out


_SMD_TYPES = {
    "integer": "numeric (int or float)",
    "number": "numeric (int or float)",
    "string": "string",
    "boolean": "boolean",
    "object": "map",
    "array": "list",
    "int-or-string": "string or numeric",
    "quantity": "string or numeric",
}


def _walk(node: Node, value: Any, path: str, go_path: str, owner: str, out: Decoded) -> None:
    if not _fits(node, value):
        if out.type_error is None:
            kind = _json_kind(value)
            if kind == "number" and isinstance(value, float) and node.json_type == "integer":
                kind = f"number {value:g}"
            where = f"Go struct field {owner}.{go_path}" if owner else "Go value"
            out.type_error = f"json: cannot unmarshal {kind} into {where} of type {node.go_type}"
            expected = _SMD_TYPES.get(node.json_type, node.json_type)
            got = {"bool": "bool", "number": "float64", "array": "[]interface {}"}.get(
                _json_kind(value),
                "map[string]interface {}" if isinstance(value, dict) else "string",
            )
            out.typed_error = f".{path}: expected {expected}, got {got}"
        return
    if value is None:
        return
    if node.json_type == "object":
        if node.props is not None:
            unknown = []
            for key, child in value.items():
                sub = node.props.get(key)
                child_path = f"{path}.{key}" if path else key
                if sub is None:
                    if node.closed:
                        unknown.append(key)
                        out.unknown.append(child_path)
                    continue
                child_go = f"{go_path}.{key}" if go_path else key
                _walk(sub, child, child_path, child_go, node.struct, out)
            for key in unknown:
                del value[key]
        elif node.values is not None:
            for key, child in value.items():
                _walk(node.values, child, f"{path}[{key}]", go_path, owner, out)
    elif node.json_type == "array" and node.items is not None:
        for i, item in enumerate(value):
            _walk(node.items, item, f"{path}[{i}]", go_path, owner, out)
