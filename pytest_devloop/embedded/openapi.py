"""The OpenAPI documents the embedded cluster publishes: `/openapi/v3` and `/openapi/v2`.

Owns turning the schemas the server validates with (`embedded.schemas`, the v1.33
definitions, plus each CRD's `openAPIV3Schema`) into the documents clients read:

- `/openapi/v3` (index) and `/openapi/v3/api/v1`, `/openapi/v3/apis/G/V`: per group
  version, the component schemas of its kinds and everything they reference (as
  kube-apiserver shapes them: `$ref`s under `#/components/schemas/`, a described `$ref`
  wrapped in `allOf`, int-or-string and quantities as a `oneOf` of their wire types, no
  `additionalProperties: false`), and one PATCH path per kind carrying
  `x-kubernetes-group-version-kind` and the `fieldValidation` parameter. `kubectl explain` reads the schemas; kubectl and Helm see the
  parameter and leave validation to the server (`fieldValidation=Strict`).
- `/openapi/v2` (swagger 2.0 `definitions` with the same schemas, int-or-string and
  quantities as strings, a described `$ref` beside its description; CRD schemas reduced as
  kube-apiserver reduces them for v2) as JSON and in the protobuf form kubectl and Helm
  ask for (`embedded.openapi_protobuf`): they validate client-side against it what v3
  leaves to them, such as the items of a `v1 List`.

Documents are built on first request and kept until a CRD changes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from pytest_devloop.embedded import openapi_protobuf, schemas
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
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            # Field names, not keywords: a field may be called `type` or `$ref`.
            out[key] = {name: _convert(sub, prefix) for name, sub in value.items()}
            continue
        out[key] = _convert(value, prefix)
    if "$ref" in out and len(out) > 1 and prefix == _V3_PREFIX:
        # v3 wraps a described reference in `allOf`; v2 keeps `$ref` beside the description.
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
    v2 = prefix != _V3_PREFIX
    out: dict[str, Any] = (
        json.loads(json.dumps(schema)) if isinstance(schema, dict) else {"type": "object"}
    )
    if v2 and (
        out.get("x-kubernetes-preserve-unknown-fields") or spec.get("preserveUnknownFields")
    ):
        # kube-apiserver publishes such a kind to v2 as a bare object: no field is checked.
        out = {"type": "object"}
    elif v2:
        out = _v2_structural(out)
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
    if v2:
        props["metadata"]["$ref"] = props["metadata"].pop("allOf")[0]["$ref"]
    out["x-kubernetes-group-version-kind"] = [
        {"group": rt.group, "version": version, "kind": rt.kind}
    ]
    return out


def _v2_structural(node: Any) -> Any:
    """A CRD schema node as kube-apiserver publishes it to OpenAPI v2.

    v2 has no junctors (`allOf`, `oneOf`, `anyOf`, `not`) and kubectl's v2 reader cannot
    cope with typed nullable values or with properties under preserved unknown fields, so
    those lose their type or their fields (apiextensions' ToStructuralOpenAPIV2).
    """
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if k not in ("allOf", "oneOf", "anyOf", "not")}
    if out.pop("nullable", False):
        for key in ("type", "items", "properties"):
            out.pop(key, None)
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("items", None)
        out.pop("properties", None)
        if out.get("type") == "object":
            out.pop("type")
    if out.get("type") == "array" and "items" not in out:
        out.pop("type")
    props = out.get("properties")
    if isinstance(props, dict):
        nullable = {k for k, v in props.items() if isinstance(v, dict) and v.get("nullable")}
        out["properties"] = {k: _v2_structural(v) for k, v in props.items()}
        if nullable and isinstance(out.get("required"), list):
            out["required"] = [r for r in out["required"] if r not in nullable]
            if not out["required"]:
                out.pop("required")
    if isinstance(out.get("items"), dict):
        out["items"] = _v2_structural(out["items"])
    extra = out.get("additionalProperties")
    if isinstance(extra, dict):
        if extra.get("nullable"):
            out.pop("required", None)
        out["additionalProperties"] = _v2_structural(extra)
    if out.get("x-kubernetes-embedded-resource") and not out.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        # An embedded object is a Kubernetes object: its type and object metadata are
        # fields of it (and required), as kube-apiserver adds them.
        fields = out.setdefault("properties", {})
        fields["apiVersion"] = {"type": "string"}
        fields["kind"] = {"type": "string"}
        fields["metadata"] = {"$ref": "#/definitions/" + _OBJECT_META}
        required = out.setdefault("required", [])
        required += [r for r in ("kind", "apiVersion") if r not in required]
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


_pb_docs: dict[str, tuple[str, bytes]] = {}


def swagger_v2_protobuf(
    kube_version: str,
    registry: Registry | None = None,
    crds: dict[str, dict[str, Any]] | None = None,
) -> bytes:
    """`/openapi/v2` in the protobuf form kubectl and Helm ask for, kept until a CRD changes.

    They validate against it client-side for what `/openapi/v3` leaves to them (a `v1 List`
    document, a kind v3 does not list), as they would against kube-apiserver's.
    """
    crds = crds or {}
    fingerprint = "|".join(
        f"{name}@{(c.get('metadata') or {}).get('resourceVersion', '')}"
        for name, c in sorted(crds.items())
    )
    if registry is not None:
        fingerprint += "|" + ",".join(sorted(rt.key for rt in registry.all()))
    with _lock:
        cached = _pb_docs.get(kube_version)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    data = openapi_protobuf.document(swagger_v2(kube_version, registry, crds))
    with _lock:
        _pb_docs[kube_version] = (fingerprint, data)
    return data
