"""What the embedded API server checks before it stores a write, in a real server's order.

Owns the verdict on a written object:

1. `decode`: the typed decoding of the body. A wrong JSON type is a 400 (`... cannot be
   handled as a Deployment: json: cannot unmarshal ...`); fields the kind does not have are
   refused, warned about or ignored per `fieldValidation` (Strict / Warn, the server's
   default / Ignore) and always dropped. A custom resource is pruned, defaulted and
   checked against its CRD's schema here (`crd`).
2. `validate`: the kind's semantic rules and, on an update, its immutable fields (`rules`),
   plus the size limits; a 422 `Invalid` Status whose `details.causes` carry each field,
   reason and message.

Server-side apply decodes the applied configuration instead of the merged object: an
unknown field in it fails whatever `fieldValidation` says, as structured-merge-diff's
typed conversion does on a real server.
"""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded import schemas
from pytest_devloop.embedded.errors import ApiError
from pytest_devloop.embedded.store import Store, clone, dumps
from pytest_devloop.embedded.validation import crd as crd_schema
from pytest_devloop.embedded.validation import rules, structure
from pytest_devloop.k8s import validation as v
from pytest_devloop.k8s.resources import ResourceType

Obj = dict[str, Any]

DIRECTIVES = ("Ignore", "Warn", "Strict")
# etcd's default request limit: an object whose stored form is larger is refused.
MAX_OBJECT_BYTES = 1536 * 1024


def directive(value: str) -> str:
    """The `fieldValidation` query value, defaulted as a real server does (Warn)."""
    if not value:
        return "Warn"
    if value not in DIRECTIVES:
        raise ApiError(
            400,
            "BadRequest",
            f"fieldValidation must be one of {', '.join(DIRECTIVES)}, got {value!r}",
        )
    return value


def invalid(rt: ResourceType, name: str, errs: list[v.FieldError]) -> ApiError:
    details: dict[str, Any] = {"name": name, "kind": rt.kind}
    if rt.group:
        details["group"] = rt.group
    details["causes"] = [{"reason": e.reason, "message": e.body, "field": e.field} for e in errs]
    return ApiError(
        422,
        "Invalid",
        f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {v.aggregate(errs)}',
        details=details,
    )


def _gvk(rt: ResourceType, version: str) -> str:
    return f"{rt.group}/{version}, Kind={rt.kind}"


class Validation:
    """The checks of one embedded cluster; reads CRDs from its store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _crd_schema(self, rt: ResourceType, version: str) -> Obj | None:
        crd_rt = self.store.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        if crd_rt is None or not rt.crd_name:
            return None
        crd = self.store.get(crd_rt, None, rt.crd_name)
        return crd_schema.version_schema(crd, version) if crd is not None else None

    def decode(
        self,
        rt: ResourceType,
        version: str,
        obj: Obj,
        field_validation: str,
        old: Obj | None = None,
    ) -> list[str]:
        """Check types and unknown fields of a body about to be stored; returns warnings."""
        mode = directive(field_validation)
        name = str((obj.get("metadata") or {}).get("name", ""))
        warnings: list[str] = []
        if rt.builtin:
            definition = schemas.definition_name(rt.group, version, rt.kind)
            if definition is None:
                return warnings
            found = structure.decode(definition, obj)
            if found.type_error:
                raise ApiError(
                    400,
                    "BadRequest",
                    f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: '
                    f"{found.type_error}",
                )
            unknown = found.unknown
        else:
            schema = self._crd_schema(rt, version)
            if schema is None:
                return warnings
            checked = crd_schema.check(schema, obj, old)
            warnings += checked.warnings
            if checked.errors:
                raise invalid(rt, name, checked.errors)
            unknown = checked.unknown
        messages = [f'unknown field "{path}"' for path in unknown]
        if messages and mode == "Strict":
            raise ApiError(
                400,
                "BadRequest",
                f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: '
                f"strict decoding error: {', '.join(messages)}",
            )
        if mode == "Warn":
            warnings += messages
        return warnings

    def decode_applied(self, rt: ResourceType, version: str, applied: Obj) -> None:
        """A built-in apply configuration must fit the kind's schema: no unknown fields, right
        types (a custom resource's is pruned and checked once merged, by `decode`)."""
        if not rt.builtin:
            return
        definition = schemas.definition_name(rt.group, version, rt.kind)
        if definition is None:
            return
        found = structure.decode(definition, clone(applied))
        problem = None
        if found.typed_error:
            problem = found.typed_error
        elif found.unknown:
            problem = f".{found.unknown[0]}: field not declared in schema"
        if problem:
            m = applied.get("metadata") or {}
            where = f"{m.get('namespace', '')}/{m.get('name', '')}; {_gvk(rt, version)}"
            raise ApiError(500, "", f"failed to create typed patch object ({where}): {problem}")

    def validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """The kind's semantic rules, immutable fields on update, and the size limit."""
        name = str((obj.get("metadata") or {}).get("name", ""))
        errs = rules.validate_object(rt.key, rt.builtin, obj, creating=old is None)
        if old is not None:
            errs += rules.validate_update(rt.key, rt.builtin, old, obj)
        if errs:
            raise invalid(rt, name, errs)
        size = len(dumps(obj))
        if size > MAX_OBJECT_BYTES:
            raise ApiError(500, "InternalError", "etcdserver: request is too large")
