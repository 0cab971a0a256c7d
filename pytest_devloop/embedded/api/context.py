"""What every verb group of the embedded API server shares, and the parsed request.

Owns `Request` (one parsed API request: the resource it addresses, its query, body and
headers) and `ApiContext`: the store, the type registry, validation, the admission hook
and the token signer, with the helpers every verb uses: the object as served at a
version, the request body decoded and checked against the URL, the field manager,
managedFields tracking for non-apply writes, dry run, and `kubectl get`'s Table view.
"""

from __future__ import annotations

import random
import string
from typing import Any, Protocol

import yaml

from pytest_devloop.embedded import auth as authn
from pytest_devloop.embedded import bodies, errors, printers
from pytest_devloop.embedded.store import Obj, Store, meta, now_rfc3339
from pytest_devloop.embedded.validation import Validation
from pytest_devloop.k8s import apply as ssa
from pytest_devloop.k8s.resources import ResourceType


class Admit(Protocol):
    def __call__(
        self, rt: ResourceType, obj: Obj, old: Obj | None, *, dry_run: bool = False
    ) -> None: ...


def _no_admit(rt: ResourceType, obj: Obj, old: Obj | None, *, dry_run: bool = False) -> None:
    return None


class Request:
    """One parsed API request: the resource it addresses and its query."""

    def __init__(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.group = ""
        self.version = ""
        self.rt: ResourceType | None = None
        self.namespace: str | None = None
        self.name: str | None = None
        self.sub: str | None = None
        self.rest: list[str] = []
        self.content_type = ""
        self.accept = ""
        self.user_agent = ""
        self.body = b""
        self.identity: authn.Identity = authn.ADMIN
        self.table_headers_sent = False  # a Table watch sends its columns once
        # `Warning` headers of the answer (unknown fields under fieldValidation=Warn, ...).
        self.warnings: list[str] = []

    def body_text(self) -> str:
        try:
            return self.body.decode()
        except UnicodeDecodeError as e:
            raise errors.bad_request(f"the request body is not valid UTF-8: {e}") from e

    def q(self, key: str, default: str = "") -> str:
        values = self.query.get(key)
        return values[0] if values else default

    def flag(self, key: str) -> bool:
        return self.q(key).lower() in ("true", "1")


class ApiContext:
    """The state and helpers the verb groups share (one per embedded cluster).

    `admit` is set after construction (the controllers that provide it need the store).
    """

    def __init__(self, store: Store, signer: authn.TokenSigner, admit: Admit = _no_admit) -> None:
        self.store = store
        self.registry = store.registry
        self.signer = signer
        self.admit = admit
        self.validation = Validation(store)

    def present(self, rt: ResourceType | None, obj: Obj, version: str) -> Obj:
        """The object as served at `version`: apiVersion and kind always set."""
        assert rt is not None
        api_version = rt.api_version(version)
        if obj.get("apiVersion") == api_version and obj.get("kind") == rt.kind:
            return obj
        out = dict(obj)
        out["apiVersion"] = api_version
        out["kind"] = rt.kind
        return out

    def crds(self) -> dict[str, Obj]:
        crd_rt = self.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        if crd_rt is None:
            return {}
        items, _ = self.store.list(crd_rt)
        return {str(meta(c).get("name", "")): c for c in items}

    def crd_of(self, rt: ResourceType) -> Obj | None:
        if rt.builtin or not rt.crd_name:
            return None
        crd_rt = self.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        return self.store.get(crd_rt, None, rt.crd_name) if crd_rt is not None else None

    def crd_field_labels(self, rt: ResourceType) -> frozenset[str]:
        """A CRD's `selectableFields` (with the leading dot dropped) for field selectors."""
        crd = self.crd_of(rt)
        if crd is None:
            return frozenset()
        out: set[str] = set()
        for v in (crd.get("spec") or {}).get("versions") or []:
            for f in v.get("selectableFields") or []:
                out.add(str(f.get("jsonPath", "")).lstrip("."))
        return frozenset(out)

    def as_table(
        self, req: Request, items: list[Obj], list_meta: dict[str, Any], table_version: str
    ) -> bytes:
        """`kubectl get`'s view: the kind's printer columns (CRD ones for custom resources)."""
        rt = req.rt
        assert rt is not None
        include = req.q("includeObject")
        if include not in ("", "None", "Object", "PartialObjectMetadata"):
            raise errors.bad_request(
                f'includeObject: Unsupported value: "{include}": supported values: '
                '"None", "Object", "PartialObjectMetadata"'
            )
        if include == "Object":
            items = [self.present(rt, o, req.version) for o in items]
        return printers.table_json(
            rt.key,
            items,
            table_version=table_version,
            include_object=include,
            crd=self.crd_of(rt),
            version=req.version,
            list_meta=list_meta,
        )

    def check_kind(self, req: Request, body: Obj) -> None:
        rt = req.rt
        assert rt is not None
        kind = body.get("kind")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )

    def must_get(self, req: Request) -> Obj:
        assert req.rt is not None and req.name is not None
        obj = self.store.get(req.rt, req.namespace, req.name)
        if obj is None:
            raise errors.not_found(req.rt.plural, req.name, req.rt.group)
        return obj

    def manager(self, req: Request, user_agent: str) -> str:
        fm = req.q("fieldManager")
        if fm:
            if len(fm) > 128:
                raise errors.invalid(
                    "", "", "", [("fieldManager", "Too long: may not be more than 128 bytes")]
                )
            return fm
        return user_agent.split("/", maxsplit=1)[0] or "unknown"

    def check_body(self, req: Request, obj: Obj, *, require_name: bool) -> None:
        """The body addresses what the URL does: type, namespace and name (filled in
        from the URL where the body leaves them out), with string labels and annotations."""
        rt = req.rt
        assert rt is not None
        _check_type(req, rt, obj)
        m = obj.get("metadata")
        if m is None:
            m = obj["metadata"] = {}
        if not isinstance(m, dict):
            raise errors.bad_request("metadata must be an object")
        _check_namespace(req, rt, m)
        name = _check_name(req, rt, m, require_name=require_name)
        _check_string_maps(rt, m, name)

    def track(
        self, rt: ResourceType, old: Obj | None, new: Obj, manager: str, subresource: str | None
    ) -> Obj:
        """Record a non-apply write in managedFields: the writer owns what it changed."""
        return ssa.record_update(
            old,
            new,
            manager,
            operation="Update",
            subresource=subresource,
            now=now_rfc3339(),
            kind=rt.kind,
            api_group=rt.group,
            status_subresource="status" in rt.subresources,
        )

    def dry_run(self, req: Request) -> bool:
        values = req.query.get("dryRun", [])
        for v in values:
            if v != "All":
                raise errors.bad_request(f"Invalid dry run value: {v}; supported: All")
        return bool(values)

    def body_object(self, req: Request) -> Obj:
        obj = self.decode(req, require_object=True)
        assert isinstance(obj, dict)
        return obj

    def decode(self, req: Request, *, require_object: bool) -> Any:
        raw = req.body
        ctype = req.content_type.split(";")[0].strip().lower()
        if not raw.strip():
            if require_object:
                raise errors.bad_request("the request body is empty")
            return None
        try:
            if ctype in ("", "application/json", "*/*"):
                data = bodies.load_json(raw)
            elif ctype in ("application/yaml", "application/x-yaml", "text/yaml"):
                data = bodies.load_yaml(raw)
            elif ctype == "application/vnd.kubernetes.protobuf":
                from pytest_devloop.embedded import protobuf

                try:
                    data = protobuf.decode_request(raw)
                    bodies.check_shape(data)  # its embedded JSON may nest deep
                except protobuf.UnsupportedProtobuf as e:
                    raise errors.unsupported_media(
                        f"the body of the request was in an unknown format - accepted media types include: "
                        f"application/json, application/yaml ({e})"
                    ) from e
                except protobuf.ProtobufError as e:
                    raise errors.bad_request(f"error decoding protobuf body: {e}") from e
            else:
                raise errors.unsupported_media(
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ctype!r})"
                )
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request(f"error decoding request body: {e}") from e
        if require_object and not isinstance(data, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return data


def _check_type(req: Request, rt: ResourceType, obj: Obj) -> None:
    """apiVersion and kind: those of the URL (set when left out)."""
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    if kind and kind != rt.kind:
        raise errors.bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
        )
    if api_version and api_version != rt.api_version(req.version):
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rt.api_version(req.version)})"
        )
    obj["apiVersion"] = rt.api_version(req.version)
    obj["kind"] = rt.kind


def _check_namespace(req: Request, rt: ResourceType, m: Obj) -> None:
    """A namespaced object's namespace is the URL's; a cluster-scoped one has none."""
    if rt.namespaced:
        ns = m.get("namespace")
        if ns and req.namespace and ns != req.namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if req.namespace:
            m["namespace"] = req.namespace
        elif not ns:
            raise errors.bad_request("a namespaced object must be created in a namespace")
    else:
        m.pop("namespace", None)


def _check_name(req: Request, rt: ResourceType, m: Obj, *, require_name: bool) -> str:
    """The name: the URL's, the body's, or generated from `generateName`."""
    if require_name and req.name is not None and m.get("name") not in (None, req.name):
        raise errors.bad_request(
            f"the name of the object ({m.get('name')}) does not match the name on the URL ({req.name})"
        )
    if req.name is not None:
        m.setdefault("name", req.name)
    if not m.get("name") and m.get("generateName"):
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        m["name"] = f"{m['generateName']}{suffix}"
    name = m.get("name")
    if not name:
        raise errors.invalid(
            rt.kind,
            "",
            rt.group,
            [("metadata.name", "Required value: name or generateName is required")],
        )
    if not isinstance(name, str):
        raise errors.invalid(
            rt.kind,
            str(name),
            rt.group,
            [
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                )
            ],
        )
    return name


def _check_string_maps(rt: ResourceType, m: Obj, name: str) -> None:
    """Labels and annotations map to strings."""
    for key in ("labels", "annotations"):
        val = m.get(key)
        if val is not None and (
            not isinstance(val, dict) or not all(isinstance(v, str) for v in val.values())
        ):
            raise errors.invalid(
                rt.kind,
                name,
                rt.group,
                [(f"metadata.{key}", "Invalid value: values must be strings")],
            )
