"""The OpenAPI schemas of the built-in kinds the embedded cluster serves.

Owns the one source of truth for the shape of built-in objects: the strict JSON schemas
that the `kubernetes-validate` package ships per Kubernetes version (generated from the
upstream OpenAPI documents; `additionalProperties: false` everywhere a Go struct would
refuse an unknown field). Validation (`embedded.validation`) walks these schemas to find
unknown fields and wrong types; the OpenAPI documents the server publishes are built from
the same definitions.

The definitions file is read once, on the first call, and shared by every cluster in the
process: a pytest run that never validates an object never pays for it.

API:
- `schema_for(group, version, kind)`: the definition of one kind (a JSON schema whose
  `$ref`s point at `#/$defs/<definition name>`), or None for a kind the version lacks.
- `definition_name(group, version, kind)`: that definition's OpenAPI name
  (`io.k8s.api.apps.v1.Deployment`).
- `definition(name)`: one definition by OpenAPI name (what a `$ref` points at).
- `all_schemas()`: every definition by OpenAPI name (read-only: do not mutate).
- `SCHEMA_VERSION`: the Kubernetes version the schemas describe.
"""

from __future__ import annotations

import importlib.resources
import json
import threading
from typing import Any

SCHEMA_VERSION = "v1.33.0"
_PACKAGE = "kubernetes_validate"
_REF_PREFIXES = ("#/$defs/", "/api/_definitions.json#/$defs/")

_lock = threading.Lock()
_defs: dict[str, dict[str, Any]] | None = None
_by_gvk: dict[tuple[str, str, str], str] | None = None


def _load() -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str, str], str]]:
    global _defs, _by_gvk
    if _defs is not None and _by_gvk is not None:
        return _defs, _by_gvk
    with _lock:
        if _defs is None or _by_gvk is None:
            root = importlib.resources.files(_PACKAGE) / "kubernetes-json-schema"
            path = root / f"{SCHEMA_VERSION}-local-strict" / "_definitions.json"
            defs: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["$defs"]
            by_gvk: dict[tuple[str, str, str], str] = {}
            for name, schema in defs.items():
                for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                    key = (str(gvk.get("group", "")), str(gvk["version"]), str(gvk["kind"]))
                    # A kind served at a version has one definition; the first wins
                    # over the aggregated duplicates some versions list.
                    by_gvk.setdefault(key, name)
            _defs, _by_gvk = defs, by_gvk
    return _defs, _by_gvk


def ref_name(ref: str) -> str:
    """The definition name a `$ref` points at."""
    for prefix in _REF_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref.rsplit("/", 1)[-1]


def definition_name(group: str, version: str, kind: str) -> str | None:
    return _load()[1].get((group, version, kind))


def definition(name: str) -> dict[str, Any] | None:
    return _load()[0].get(name)


def schema_for(group: str, version: str, kind: str) -> dict[str, Any] | None:
    name = definition_name(group, version, kind)
    return definition(name) if name is not None else None


def all_schemas() -> dict[str, dict[str, Any]]:
    return _load()[0]
