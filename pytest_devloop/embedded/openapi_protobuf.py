"""`/openapi/v2` in protobuf: a swagger 2.0 document as gnostic's `openapi.v2.Document`.

Owns the encoding of the swagger document `openapi.swagger_v2` builds into the message
kubectl and Helm download `/openapi/v2` as (`Accept:
application/com.github.proto-openapi.spec.v2@v1.0+protobuf`). They read it for client-side
schema validation whenever `/openapi/v3` does not settle whether the server validates a
kind itself: a `v1 List` document, for one, is checked against these definitions, and an
unknown field is refused client-side with `error validating data: ValidationError(...)`,
as against kube-apiserver. The field numbers are those of gnostic's public
`openapiv2/OpenAPIv2.proto`; vendor extensions, defaults and enum values travel as YAML
text in `Any.yaml`, as gnostic writes them (JSON is YAML).
"""

from __future__ import annotations

import json
import struct
from typing import Any

# Schema fields by JSON key: strings, doubles, booleans and int64s.
_STRINGS = {"$ref": 1, "format": 2, "title": 3, "description": 4, "pattern": 13}
_DOUBLES = {"multipleOf": 6, "maximum": 7, "minimum": 9}
_BOOLS = {"exclusiveMaximum": 8, "exclusiveMinimum": 10, "uniqueItems": 16, "readOnly": 27}
_INTS = {
    "maxLength": 11,
    "minLength": 12,
    "maxItems": 14,
    "minItems": 15,
    "maxProperties": 17,
    "minProperties": 18,
}


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 as protobuf writes it: ten bytes of two's complement
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _bytes(number, text.encode()) if text else b""


def _any(value: Any) -> bytes:
    """gnostic's `Any`: the value as YAML text (field 2)."""
    return _string(2, json.dumps(value, separators=(",", ":")))


def _named(number: int, name: str, value: bytes) -> bytes:
    """A `Named*` entry of an ordered map: name (1) and the value message (2)."""
    return _bytes(number, _string(1, name) + _bytes(2, value))


def schema(node: dict[str, Any]) -> bytes:
    """One JSON schema node as an `openapi.v2.Schema` message."""
    out = bytearray()
    for key, value in node.items():
        if key in _STRINGS and isinstance(value, str):
            out += _string(_STRINGS[key], value)
        elif key in _DOUBLES and isinstance(value, int | float) and not isinstance(value, bool):
            out += _key(_DOUBLES[key], 1) + struct.pack("<d", float(value))
        elif key in _BOOLS and value is True:
            out += _key(_BOOLS[key], 0) + b"\x01"
        elif key in _INTS and isinstance(value, int):
            out += _key(_INTS[key], 0) + _varint(value)
        elif key == "default":
            out += _bytes(5, _any(value))
        elif key == "example":
            out += _bytes(30, _any(value))
        elif key == "required" and isinstance(value, list):
            for name in value:
                out += _string(19, str(name))
        elif key == "enum" and isinstance(value, list):
            for item in value:
                out += _bytes(20, _any(item))
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out += _bytes(21, _bytes(1, schema(value)))
            elif isinstance(value, bool):
                out += _bytes(21, _key(2, 0) + (b"\x01" if value else b"\x00"))
        elif key == "type":
            types = [value] if isinstance(value, str) else list(value or [])
            out += _bytes(22, b"".join(_string(1, str(t)) for t in types))
        elif key == "items":
            items = value if isinstance(value, list) else [value]
            out += _bytes(23, b"".join(_bytes(1, schema(i)) for i in items if isinstance(i, dict)))
        elif key == "allOf" and isinstance(value, list):
            for sub in value:
                if isinstance(sub, dict):
                    out += _bytes(24, schema(sub))
        elif key == "properties" and isinstance(value, dict):
            entries = b"".join(
                _named(1, name, schema(sub)) for name, sub in value.items() if isinstance(sub, dict)
            )
            out += _bytes(25, entries)
        elif key == "externalDocs" and isinstance(value, dict):
            docs = _string(1, str(value.get("description") or "")) + _string(
                2, str(value.get("url") or "")
            )
            out += _bytes(29, docs)
        elif key.startswith("x-"):
            out += _named(31, key, _any(value))
        # Anything else (oneOf, anyOf, not, nullable...) has no place in a v2 schema.
    return bytes(out)


def document(swagger: dict[str, Any]) -> bytes:
    """A swagger 2.0 document (info and definitions) as an `openapi.v2.Document`."""
    info = swagger.get("info") or {}
    out = _string(1, str(swagger.get("swagger", "2.0")))
    out += _bytes(
        2, _string(1, str(info.get("title", ""))) + _string(2, str(info.get("version", "")))
    )
    definitions = swagger.get("definitions") or {}
    entries = b"".join(_named(1, name, schema(node)) for name, node in definitions.items())
    out += _bytes(9, entries)
    return out
