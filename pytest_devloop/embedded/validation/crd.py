"""Custom resources checked against their CRD's structural schema, as the API server does.

Owns, for one version's `openAPIV3Schema`: pruning of fields the schema does not declare
(kept under `x-kubernetes-preserve-unknown-fields`, and `apiVersion`/`kind`/`metadata` of
an `x-kubernetes-embedded-resource`), schema defaults, and validation of type, enum,
required, pattern, numeric bounds, lengths and item counts, `x-kubernetes-int-or-string`
and `nullable`, with the server's `field.Error` wording. `x-kubernetes-validations`
(CEL) rules are not evaluated here: each one met yields a warning that says so, so a test
never takes an unevaluated rule for a passed one.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from pytest_devloop.k8s import validation as v
from pytest_devloop.k8s.validation import FieldError

Obj = dict[str, Any]

_TYPE_NAMES = {
    "object": "object",
    "array": "array",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
}


@dataclass
class Checked:
    errors: list[FieldError] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def version_schema(crd: Obj, version: str) -> Obj | None:
    for ver in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(ver, dict) and ver.get("name") == version:
            schema = (ver.get("schema") or {}).get("openAPIV3Schema")
            return schema if isinstance(schema, dict) else None
    return None


def check(schema: Obj, obj: Obj) -> Checked:
    """Prune, default and validate `obj` in place (the top-level object of a custom resource)."""
    out = Checked()
    # The root's apiVersion, kind and metadata are the server's, whatever the schema says.
    root = dict(schema)
    props = dict(root.get("properties") or {})
    for key in ("apiVersion", "kind"):
        props.setdefault(key, {"type": "string"})
    props["metadata"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    root["properties"] = props
    root["type"] = "object"
    _walk(root, obj, "", out, top=True)
    return out


def _type_ok(t: str, value: Any) -> bool:
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _at(path: str) -> str:
    return path or "body"


def _walk(schema: Obj, value: Any, path: str, out: Checked, *, top: bool = False) -> None:
    for rule in schema.get("x-kubernetes-validations") or []:
        if isinstance(rule, dict) and rule.get("rule"):
            out.warnings.append(
                f"{_at(path) if path else '<root>'}: x-kubernetes-validations rule "
                f"{rule['rule']!r} was not evaluated by the embedded cluster"
            )
    if value is None:
        if not schema.get("nullable") and schema.get("type") and not top:
            out.errors.append(
                v.invalid(
                    path, None, f'{_at(path)} in body must be of type {schema["type"]}: "null"'
                )
            )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            out.errors.append(
                v.invalid(
                    path,
                    value,
                    f"{_at(path)} in body must be of type integer,string: {v.show_value(_json_type(value))}",
                )
            )
            return
    else:
        t = schema.get("type")
        if isinstance(t, str) and t and not _type_ok(t, value):
            out.errors.append(
                v.invalid(
                    path, value, f'{_at(path)} in body must be of type {t}: "{_json_type(value)}"'
                )
            )
            return
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        out.errors.append(
            v.not_supported(
                path, value, [e if isinstance(e, str) else v.show_value(e) for e in enum]
            )
        )
    if isinstance(value, str):
        _string(schema, value, path, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _number(schema, value, path, out)
    if isinstance(value, list):
        max_items = schema.get("maxItems")
        min_items = schema.get("minItems")
        if isinstance(max_items, int) and len(value) > max_items:
            out.errors.append(v.too_many(path, len(value), max_items))
        if isinstance(min_items, int) and len(value) < min_items:
            out.errors.append(
                v.invalid(
                    path, len(value), f"{_at(path)} in body should have at least {min_items} items"
                )
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _walk(items, item, f"{path}[{i}]", out)
        return
    if isinstance(value, dict):
        _object(schema, value, path, out)


def _string(schema: Obj, value: str, path: str, out: Checked) -> None:
    max_len = schema.get("maxLength")
    min_len = schema.get("minLength")
    if isinstance(max_len, int) and len(value) > max_len:
        out.errors.append(v.too_long(path, max_len))
    if isinstance(min_len, int) and len(value) < min_len:
        out.errors.append(
            v.invalid(path, value, f"{_at(path)} in body should be at least {min_len} chars long")
        )
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            matched = True  # a pattern Python cannot compile is not held against the object
        if not matched:
            out.errors.append(
                v.invalid(path, value, f"{_at(path)} in body should match '{pattern}'")
            )


def _number(schema: Obj, value: float, path: str, out: Checked) -> None:
    minimum = schema.get("minimum")
    maximum = schema.get("maximum")
    if isinstance(minimum, int | float):
        if schema.get("exclusiveMinimum") and value <= minimum:
            out.errors.append(
                v.invalid(path, value, f"{_at(path)} in body should be greater than {minimum:g}")
            )
        elif value < minimum:
            out.errors.append(
                v.invalid(
                    path,
                    value,
                    f"{_at(path)} in body should be greater than or equal to {minimum:g}",
                )
            )
    if isinstance(maximum, int | float):
        if schema.get("exclusiveMaximum") and value >= maximum:
            out.errors.append(
                v.invalid(path, value, f"{_at(path)} in body should be less than {maximum:g}")
            )
        elif value > maximum:
            out.errors.append(
                v.invalid(
                    path, value, f"{_at(path)} in body should be less than or equal to {maximum:g}"
                )
            )


def _object(schema: Obj, value: Obj, path: str, out: Checked) -> None:
    props = schema.get("properties")
    addl = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    props = props if isinstance(props, dict) else {}
    # Defaults first: a defaulted field is then validated like a sent one.
    for key, sub in props.items():
        if key not in value and isinstance(sub, dict) and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
    for key in list(value):
        child = f"{path}.{key}" if path else key
        sub = props.get(key)
        if sub is None and isinstance(addl, dict):
            sub = addl
        if sub is None:
            if preserve or addl is True or (embedded and key in ("apiVersion", "kind", "metadata")):
                continue
            out.unknown.append(child)
            del value[key]
            continue
        _walk(sub, value[key], child, out)
    for key in schema.get("required") or []:
        if key not in value:
            out.errors.append(v.required(f"{path}.{key}" if path else key))
    if embedded:
        for key in ("apiVersion", "kind"):
            if not value.get(key):
                out.errors.append(v.required(f"{path}.{key}" if path else key))
    max_props = schema.get("maxProperties")
    if isinstance(max_props, int) and len(value) > max_props:
        out.errors.append(v.too_many(path, len(value), max_props))
