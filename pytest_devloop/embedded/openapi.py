"""The OpenAPI documents the embedded cluster publishes: `/openapi/v3` and `/openapi/v2`.

Owns turning the schemas the server validates with (`embedded.schemas`, the v1.33
definitions, plus each CRD's `openAPIV3Schema`) into the documents clients read:

- `/openapi/v3` (index) and `/openapi/v3/api/v1`, `/openapi/v3/apis/G/V`: per group
  version, the component schemas of its kinds and everything they reference (as
  kube-apiserver shapes them: `$ref`s under `#/components/schemas/`, a described `$ref`
  wrapped in `allOf`, int-or-string and quantities as a `oneOf` of their wire types, no
  `additionalProperties: false`), and one PATCH path per kind carrying `x-kubernetes-group-version-kind` and the
  `fieldValidation` parameter. `kubectl explain` reads the schemas; kubectl and Helm see the
  parameter and leave validation to the server (`fieldValidation=Strict`).
- `/openapi/v2` as JSON (swagger 2.0 `definitions` with the same schemas, int-or-string
  and quantities as strings). The protobuf
  form kubectl asks for is an empty document: kubectl uses v3 and falls back to v2 only for
  kinds v3 lacks, where an empty document lets it reach its real error.

Documents are built on first request and kept until a CRD changes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from pytest_devloop.embedded import schemas
from pytest_devloop.k8s.resources import Registry, ResourceType

_FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": "fieldValidation instructs the server on how to handle objects in the "
    "request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - "
    "Ignore, - Warn, - Strict",
    "schema": {"type": "string", "uniqueItems": True},
}
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_DROP_KEYS = frozenset({"$schema", "$id"})
_V3_PREFIX = "#/components/schemas/"

_lock = threading.Lock()
_converted: dict[tuple[str, str], dict[str, Any]] = {}  # (definition, ref prefix) -> schema
_docs: dict[tuple[str, str, str], tuple[str, dict[str, Any], str]] = {}


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


# -- schema conversion --------------------------------------------------------------------


def _convert(node: Any, prefix: str) -> Any:
    """A JSON-schema node of the validation schemas in kube-apiserver's OpenAPI shape."""
    if isinstance(node, list):
        return [_convert(v, prefix) for v in node]
    if not isinstance(node, dict):
        return node
    one_of = node.get("oneOf")
    if isinstance(one_of, list) and all(
        isinstance(o, dict) and set(o) <= {"type", "format"} for o in one_of
    ):
        # IntOrString and Quantity, as kube-apiserver publishes them: in v3 a `oneOf` of
        # their wire types and no `type` (so `kubectl explain` names them `IntOrString`
        # and `Quantity`), in v2 a string (IntOrString with format `int-or-string`).
        kinds = {t for o in one_of for t in _types(o.get("type"))}
        out: dict[str, Any] = {
            k: _convert(v, prefix) for k, v in node.items() if k not in ("oneOf", "type")
        }
        int_or_string = "integer" in kinds
        if prefix == _V3_PREFIX:
            wire = ["integer", "string"] if int_or_string else ["string", "number"]
            out["oneOf"] = [{"type": t} for t in wire]
        else:
            out["type"] = "string"
        if int_or_string:
            out["format"] = "int-or-string"
        return out
    out = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "type":
            types = [t for t in _types(value) if t != "null"]
            if types:
                out["type"] = types[0]
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "$ref" and isinstance(value, str):
            out["$ref"] = prefix + schemas.ref_name(value)
            continue
        out[key] = _convert(value, prefix)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def _types(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _definition(name: str, prefix: str) -> dict[str, Any] | None:
    key = (name, prefix)
    found = _converted.get(key)
    if found is None:
        raw = schemas.definition(name)
        if raw is None:
            return None
        found = _convert(raw, prefix)
        _converted[key] = found
    return found


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out.add(value.rsplit("/", 1)[-1])
            else:
                _refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _refs(value, out)


def _closure(roots: list[str], prefix: str) -> dict[str, Any]:
    """The named definitions and every definition they reference, converted."""
    out: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        schema = _definition(name, prefix)
        if schema is None:
            continue
        out[name] = schema
        found: set[str] = set()
        _refs(schema, found)
        todo.extend(sorted(found - set(out)))
    return out


# -- custom resources -----------------------------------------------------------------------


def _crd_definition_name(group: str, version: str, kind: str) -> str:
    return ".".join([*reversed(group.split(".")), version, kind])


def _crd_schema(rt: ResourceType, crd: dict[str, Any], version: str, prefix: str) -> dict[str, Any]:
    spec = crd.get("spec") or {}
    schema: Any = None
    for v in spec.get("versions") or []:
        if v.get("name") == version:
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
    if schema is None:
        schema = (spec.get("validation") or {}).get("openAPIV3Schema")
    out: dict[str, Any] = (
        json.loads(json.dumps(schema)) if isinstance(schema, dict) else {"type": "object"}
    )
    out.setdefault("type", "object")
    props: dict[str, Any] = out.setdefault("properties", {})
    props["apiVersion"] = {
        "description": "APIVersion defines the versioned schema of this representation of an "
        "object.",
        "type": "string",
    }
    props["kind"] = {
        "description": "Kind is a string value representing the REST resource this object "
        "represents.",
        "type": "string",
    }
    props["metadata"] = {
        "allOf": [{"$ref": prefix + _OBJECT_META}],
        "description": "Standard object's metadata. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    }
    out["x-kubernetes-group-version-kind"] = [
        {"group": rt.group, "version": version, "kind": rt.kind}
    ]
    return out


# -- documents ------------------------------------------------------------------------------


def _fingerprint(registry: Registry, crds: dict[str, dict[str, Any]], group: str) -> str:
    parts = [
        f"{name}@{(c.get('metadata') or {}).get('resourceVersion', '')}"
        for name, c in sorted(crds.items())
        if (c.get("spec") or {}).get("group") == group
    ]
    parts += [rt.key + ",".join(rt.versions) for rt in registry.all() if rt.group == group]
    return "|".join(parts)


def group_version_document(
    registry: Registry,
    group: str,
    version: str,
    kube_version: str,
    crds: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI v3 document of one group version."""
    return _document(registry, group, version, kube_version, crds or {})[1]


def _document(
    registry: Registry,
    group: str,
    version: str,
    kube_version: str,
    crds: dict[str, dict[str, Any]],
) -> tuple[str, dict[str, Any], str]:
    fingerprint = _fingerprint(registry, crds, group)
    key = (group, version, kube_version)
    with _lock:
        cached = _docs.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached
        prefix = _V3_PREFIX
        paths: dict[str, Any] = {}
        roots: list[str] = []
        custom: dict[str, Any] = {}
        for rt in registry.in_group_version(group, version):
            base = "/" + _gv_path(group, version)
            scope = "/namespaces/{namespace}" if rt.namespaced else ""
            gvk = {"group": group, "version": version, "kind": rt.kind}
            if rt.stored:
                paths[f"{base}{scope}/{rt.plural}/{{name}}"] = {
                    "patch": {
                        "operationId": f"patch{rt.kind}",
                        "x-kubernetes-action": "patch",
                        "x-kubernetes-group-version-kind": gvk,
                        "parameters": [_FIELD_VALIDATION],
                        "responses": {"200": {"description": "OK"}},
                    }
                }
            if rt.builtin:
                name = schemas.definition_name(group, version, rt.kind)
                if name is not None:
                    roots.append(name)
            else:
                crd = crds.get(rt.crd_name)
                if crd is not None:
                    custom[_crd_definition_name(group, version, rt.kind)] = _crd_schema(
                        rt, crd, version, prefix
                    )
                    roots.append(_OBJECT_META)
        components = _closure(roots, prefix)
        components.update(custom)
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": kube_version},
            "paths": paths,
            "components": {"schemas": dict(sorted(components.items()))},
        }
        digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128]
        entry = (fingerprint, doc, digest.upper())
        _docs[key] = entry
        return entry


def index_document(
    registry: Registry, kube_version: str, crds: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for group, versions in sorted(registry.groups().items()):
        for version in versions:
            _, _, digest = _document(registry, group, version, kube_version, crds or {})
            rel = _gv_path(group, version)
            paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={digest}"}
    return {"paths": paths}


def swagger_v2(
    kube_version: str,
    registry: Registry | None = None,
    crds: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Swagger 2.0: the definitions of every served kind (JSON only)."""
    definitions: dict[str, Any] = {}
    if registry is not None:
        prefix = "#/definitions/"
        roots = []
        for rt in registry.all():
            for version in rt.versions:
                if rt.builtin:
                    name = schemas.definition_name(rt.group, version, rt.kind)
                    if name is not None:
                        roots.append(name)
                elif rt.crd_name in (crds or {}):
                    definitions[_crd_definition_name(rt.group, version, rt.kind)] = _crd_schema(
                        rt, (crds or {})[rt.crd_name], version, prefix
                    )
        with _lock:
            definitions.update(_closure(roots, prefix))
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": kube_version},
        "paths": {},
        "definitions": dict(sorted(definitions.items())),
    }


def _pb_field(number: int, payload: bytes) -> bytes:
    # A length-delimited protobuf field; every length here is below 128.
    return bytes([(number << 3) | 2, len(payload)]) + payload


def swagger_v2_protobuf(kube_version: str) -> bytes:
    """An empty swagger document in the protobuf form kubectl asks `/openapi/v2` for.

    kubectl falls back to `/openapi/v2` for kinds missing from `/openapi/v3` (an unknown
    custom resource, say) and parses only protobuf there; an empty document lets it
    get on to its real error, `no matches for kind ... ensure CRDs are installed first`.
    """
    info = _pb_field(1, b"Kubernetes") + _pb_field(2, kube_version.encode())
    return _pb_field(1, b"2.0") + _pb_field(2, info)
