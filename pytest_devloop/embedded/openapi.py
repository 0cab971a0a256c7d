"""Minimal OpenAPI documents that let kubectl and Helm leave validation to the server.

kubectl (and Helm through the same resource builder) checks `/openapi/v3`: when a
kind's PATCH operation carries `x-kubernetes-group-version-kind` and a
`fieldValidation` query parameter, the client sends `fieldValidation=Strict` and skips
client-side schema validation. Without it the client falls back to protobuf
`/openapi/v2` and fails. So each group version gets one PATCH path per kind and no
schemas.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pytest_devloop.k8s.resources import Registry

_FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": "fieldValidation instructs the server on how to handle unknown fields.",
    "schema": {"type": "string", "uniqueItems": True},
}


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def group_version_document(
    registry: Registry, group: str, version: str, kube_version: str
) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rt in registry.in_group_version(group, version):
        base = "/" + _gv_path(group, version)
        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        gvk = {"group": group, "version": version, "kind": rt.kind}
        paths[f"{base}{scope}/{rt.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [_FIELD_VALIDATION],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": kube_version},
        "paths": paths,
        "components": {"schemas": {}},
    }


def index_document(registry: Registry, kube_version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for group, versions in sorted(registry.groups().items()):
        for version in versions:
            doc = group_version_document(registry, group, version, kube_version)
            digest = (
                hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
            )
            rel = _gv_path(group, version)
            paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={digest}"}
    return {"paths": paths}


def swagger_v2(kube_version: str) -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": kube_version},
        "paths": {},
        "definitions": {},
    }


def _pb_field(number: int, payload: bytes) -> bytes:
    # A length-delimited protobuf field; every length here is below 128.
    return bytes([(number << 3) | 2, len(payload)]) + payload


def swagger_v2_protobuf(kube_version: str) -> bytes:
    """The same empty document as `swagger_v2`, in the protobuf form kubectl asks for.

    kubectl falls back to `/openapi/v2` for kinds missing from `/openapi/v3` (an unknown
    custom resource, say) and parses only protobuf there; an empty document lets it
    get on to its real error, `no matches for kind ... ensure CRDs are installed first`.
    """
    info = _pb_field(1, b"Kubernetes") + _pb_field(2, kube_version.encode())
    return _pb_field(1, b"2.0") + _pb_field(2, info)
