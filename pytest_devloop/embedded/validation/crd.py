"""Custom resources checked against their CRD's structural schema, as the API server does.

Owns, for one version's `openAPIV3Schema`: pruning of fields the schema does not declare
(kept under `x-kubernetes-preserve-unknown-fields`, and `apiVersion`/`kind`/`metadata` of
an `x-kubernetes-embedded-resource`), schema defaults, and validation of type, enum,
required, pattern, numeric bounds, lengths and item counts, `x-kubernetes-int-or-string`
and `nullable`, with the server's `field.Error` wording. `x-kubernetes-validations`
(CEL) rules are evaluated with `cel-python` when it is installed (the `cel` extra), with
`oldSelf` on updates for transition rules; a rule it cannot evaluate, or every rule when
it is absent, yields a warning that says so, so a test never takes an unevaluated rule for
a passed one.
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


def check(schema: Obj, obj: Obj, old: Obj | None = None) -> Checked:
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
    _walk(root, obj, "", out, top=True, old=old)
    return out


_MISSING = object()
_programs: dict[str, Any] = {}


def _cel_program(rule: str) -> Any:
    """A compiled CEL program, cached per rule text; None when CEL cannot be evaluated."""
    if rule in _programs:
        return _programs[rule]
    try:
        import celpy
    except ImportError:
        _programs[rule] = None
        return None
    try:
        env = celpy.Environment()
        program = env.program(env.compile(rule))
    except Exception:  # a rule the Python CEL cannot parse is reported, not held against
        program = None
    _programs[rule] = program
    return program


def _evaluate(rule: str, value: Any, old: Any) -> bool | None:
    """True/False when the rule could be evaluated; None when it could not."""
    program = _cel_program(rule)
    if program is None:
        return None
    from celpy import adapter

    activation = {"self": adapter.json_to_cel(value)}
    if old is not _MISSING:
        activation["oldSelf"] = adapter.json_to_cel(old)
    try:
        result = program.evaluate(activation)
    except Exception:
        return None
    if isinstance(result, bool) or type(result).__name__ == "BoolType":
        return bool(result)
    return None


def _schema_type(schema: Obj) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "string"
    return str(schema.get("type") or "object")


def _rules(schema: Obj, value: Any, path: str, out: Checked, old: Any) -> None:
    for rule in schema.get("x-kubernetes-validations") or []:
        if not isinstance(rule, dict) or not rule.get("rule"):
            continue
        text = str(rule["rule"])
        if "oldSelf" in text and old is _MISSING:
            continue  # a transition rule applies to updates only
        verdict = _evaluate(text, value, old)
        if verdict is None:
            out.warnings.append(
                f"{path or '<root>'}: x-kubernetes-validations rule {text!r} was not "
                "evaluated by the embedded cluster"
            )
        elif not verdict:
            where = path
            rule_path = rule.get("fieldPath")
            if isinstance(rule_path, str) and rule_path:
                where = (path + rule_path) if rule_path.startswith(".") else rule_path
                where = where.lstrip(".")
            message = str(rule.get("message") or f"failed rule: {text}")
            error = v.invalid(where, _schema_type(schema), message)
            reason = rule.get("reason")
            if isinstance(reason, str) and reason:
                error = v.FieldError(error.field, reason, error.body)
            out.errors.append(error)


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


def _walk(
    schema: Obj, value: Any, path: str, out: Checked, *, top: bool = False, old: Any = _MISSING
) -> None:
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
        _rules(schema, value, path, out, old)
        return
    if isinstance(value, dict):
        _object(schema, value, path, out, old)
    # Rules see the value after its defaults and pruning, as on a real server.
    _rules(schema, value, path, out, old)


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


def _object(schema: Obj, value: Obj, path: str, out: Checked, old: Any) -> None:
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
        old_child = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
        _walk(sub, value[key], child, out, old=old_child)
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
