"""Write verbs of the embedded API server: create, update, patch (JSON, merge, strategic),
server-side apply, delete and deletecollection, and the status and finalize writes that go
through update and patch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from pytest_devloop.embedded import bodies, errors, listing
from pytest_devloop.embedded.api.context import ApiContext, Request
from pytest_devloop.embedded.errors import ApiError
from pytest_devloop.embedded.store import Obj, clone, meta, now_rfc3339
from pytest_devloop.k8s import apply as ssa
from pytest_devloop.k8s import patch as patching
from pytest_devloop.k8s.resources import ResourceType
from pytest_devloop.k8s.selectors import (
    SelectorError,
    parse_label_selector,
)

# Resources whose registry answers a DELETE with the deleted object rather than a Status
# (typed clients decode the reply as that kind: `delete_namespaced_service` -> V1Service).
_RETURNS_DELETED_OBJECT = frozenset(
    {
        "pods",
        "services",
        "serviceaccounts",
        "persistentvolumeclaims",
        "persistentvolumes",
        "podtemplates",
        "resourcequotas",
        "admissionregistration.k8s.io/mutatingwebhookconfigurations",
        "admissionregistration.k8s.io/validatingwebhookconfigurations",
    }
)


def _json_patch(rt: ResourceType, live: Obj, doc: Any) -> Any:
    if not isinstance(doc, list):
        raise errors.bad_request("json patch must be an array of operations")
    return patching.json_patch(live, doc)


def _merge_patch(rt: ResourceType, live: Obj, doc: Any) -> Any:
    return patching.merge_patch(live, doc)


def _strategic_merge_patch(rt: ResourceType, live: Obj, doc: Any) -> Any:
    if not rt.builtin:
        raise errors.unsupported_media(
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        )
    if not isinstance(doc, dict):
        raise errors.bad_request("strategic merge patch must be an object")
    return patching.strategic_merge_patch(live, doc, rt.kind, rt.group)


# The non-apply patch types by content type (apply patches go to `Writes.do_apply`).
_PATCHERS: dict[str, Callable[[ResourceType, Obj, Any], Any]] = {
    "application/json-patch+json": _json_patch,
    "application/merge-patch+json": _merge_patch,
    "application/strategic-merge-patch+json": _strategic_merge_patch,
}


def _patched(rt: ResourceType, ctype: str, live: Obj, doc: Any) -> Any:
    """`live` with a non-apply patch of content type `ctype` applied."""
    patcher = _PATCHERS.get(ctype)
    if patcher is None:
        raise errors.unsupported_media(
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json-patch+json, application/merge-patch+json, "
            f"application/apply-patch+yaml, application/strategic-merge-patch+json (got {ctype!r})"
        )
    try:
        return patcher(rt, live, doc)
    except patching.PatchError as e:
        raise ApiError(
            getattr(e, "code", 422),
            "Invalid" if getattr(e, "code", 422) == 422 else "BadRequest",
            str(e),
        ) from e


def _check_patched(rt: ResourceType, name: str, old: Obj, patched: Any) -> Any:
    """A patch result is still the same object; returns the resourceVersion it asks for."""
    if not isinstance(patched, dict):
        raise errors.bad_request("the patch did not produce an object")
    # A patch may reach deep (a JSON patch path has no depth limit): the result
    # obeys the bodies' depth limit too. (Its size is the store's to judge.)
    bodies.check_shape(patched, limit_size=False)
    pm = patched.get("metadata")
    if not isinstance(pm, dict):
        raise errors.bad_request("the patch removed metadata")
    want_rv = pm.get("resourceVersion")
    if want_rv and want_rv != meta(old).get("resourceVersion"):
        raise errors.conflict(
            rt.plural,
            name,
            rt.group,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    if pm.get("name") != name:
        raise errors.bad_request("the patch may not change the object's name")
    return want_rv


def _apply_options(req: Request) -> tuple[str, bool]:
    """An apply patch's field manager (required) and `force`."""
    manager = req.q("fieldManager")
    if not manager:
        raise errors.invalid(
            "PatchOptions",
            "",
            "meta.k8s.io",
            [("fieldManager", "Required value: is required for apply patch")],
        )
    force_text = req.q("force", "false").lower()
    if force_text not in ("true", "false", "1", "0", ""):
        raise errors.bad_request(f"invalid force value {force_text!r}")
    return manager, force_text in ("true", "1")


def _applied_body(raw: str) -> Obj:
    """The apply patch's object: YAML (or JSON), typed, without managedFields."""
    try:
        applied = bodies.load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise errors.bad_request(f"error decoding YAML: {e}") from e
    if not isinstance(applied, dict):
        raise errors.bad_request("apply patch must be an object")
    if not applied.get("apiVersion") or not applied.get("kind"):
        raise errors.bad_request("apiVersion and kind must be set in an apply patch")
    if meta(applied).get("managedFields") is not None:
        raise errors.bad_request("metadata.managedFields must be nil")
    return applied


def _merged(
    req: Request, rt: ResourceType, old: Obj | None, applied: Obj, manager: str, force: bool
) -> Obj:
    """The live object with the apply patch merged in (server-side apply's field rules)."""
    try:
        new = ssa.apply(
            clone(old) if old is not None else None,
            clone(applied),
            manager,
            force=force,
            kind=rt.kind,
            api_group=rt.group,
            now=now_rfc3339(),
            subresource=req.sub,
            status_subresource="status" in rt.subresources,
        )
    except ssa.ApplyConflict as e:
        status = e.to_status()
        status["details"].update(name=req.name, group=rt.group, kind=rt.plural)
        raise ApiError(409, "Conflict", str(e.message), details=status["details"]) from e
    new["apiVersion"] = rt.api_version(req.version) if old is None else old.get("apiVersion")
    new["kind"] = rt.kind
    return new


class Writes:
    """Everything that changes a stored object through its main verbs."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def do_create(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None
        obj = self.ctx.body_object(req)
        self.ctx.check_body(req, obj, require_name=False)
        dry = self.ctx.dry_run(req)
        manager = self.ctx.manager(req, req.user_agent)
        obj.pop("status", None) if rt.kind not in (
            "Pod",
            "Namespace",
            "Event",
        ) and "status" in rt.subresources else None
        meta(obj).pop("uid", None)  # the server assigns identities; admission may need one
        req.warnings += self.ctx.validation.decode(rt, req.version, obj, req.q("fieldValidation"))
        self.ctx.admit(rt, obj, None, dry_run=dry)
        self.ctx.validation.validate(rt, obj, None)
        obj = self.ctx.track(rt, None, obj, manager, None)
        stored = self.ctx.store.create(rt, obj, dry_run=dry)
        if rt.key == "apiextensions.k8s.io/customresourcedefinitions" and not dry:
            stored = self.establish_crd(stored)
        return 201, self.ctx.present(rt, stored, req.version), ""

    def establish_crd(self, crd: Obj) -> Obj:
        """Custom resources are served at once, so the CRD reports Established at once."""
        rt = self.ctx.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        assert rt is not None
        new = clone(crd)
        now = now_rfc3339()
        names = dict((crd.get("spec") or {}).get("names") or {})
        names.setdefault("singular", str(names.get("kind", "")).lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
        new["status"] = {
            "acceptedNames": names,
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
            "storedVersions": [
                v.get("name")
                for v in (crd.get("spec") or {}).get("versions") or []
                if v.get("storage")
            ],
        }
        return self.ctx.store.update(rt, new, subresource="status")

    def do_update(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        obj = self.ctx.body_object(req)
        self.ctx.check_body(req, obj, require_name=True)
        dry = self.ctx.dry_run(req)
        if req.sub == "finalize":
            return self.do_finalize(req, obj)
        old = self.ctx.must_get(req)
        expected = str(meta(obj).get("resourceVersion") or "")
        manager = self.ctx.manager(req, req.user_agent)
        if req.sub is None:
            req.warnings += self.ctx.validation.decode(
                rt, req.version, obj, req.q("fieldValidation"), old
            )
            self.ctx.admit(rt, obj, old, dry_run=dry)
            self.ctx.validation.validate(rt, obj, old)
        if "managedFields" not in meta(obj) and meta(old).get("managedFields"):
            meta(obj)["managedFields"] = meta(old)["managedFields"]
        obj = self.ctx.track(rt, old, obj, manager, req.sub)
        stored = self.ctx.store.update(
            rt, obj, expected_rv=expected or None, subresource=req.sub, dry_run=dry
        )
        if (
            rt.key == "apiextensions.k8s.io/customresourcedefinitions"
            and req.sub is None
            and not dry
        ):
            stored = self.establish_crd(stored)
        return 200, self.ctx.present(rt, stored, req.version), ""

    def do_finalize(self, req: Request, obj: Obj) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None
        old = self.ctx.must_get(req)
        new = clone(old)
        new["spec"] = dict(
            new.get("spec") or {}, finalizers=(obj.get("spec") or {}).get("finalizers") or []
        )
        stored = self.ctx.store.update(rt, new)
        return 200, self.ctx.present(rt, stored, req.version), ""

    def do_patch(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        ctype = req.content_type.split(";")[0].strip().lower()
        dry = self.ctx.dry_run(req)
        raw = req.body_text()
        force = req.q("force")
        if ctype in ("application/apply-patch+yaml", "application/apply-patch+cbor"):
            return self.do_apply(req, raw, dry)
        if force:
            raise errors.invalid(
                "PatchOptions",
                "",
                "meta.k8s.io",
                [("force", "Forbidden: may not be specified for non-apply patch")],
            )
        try:
            patch_doc = bodies.load_json(raw) if raw else None
        except ValueError as e:
            raise errors.bad_request(f"error decoding patch: {e}") from e
        manager = self.ctx.manager(req, req.user_agent)
        for _attempt in range(5):
            old = self.ctx.must_get(req)
            patched = _patched(rt, ctype, clone(old), patch_doc)
            want_rv = _check_patched(rt, req.name, old, patched)
            patched["apiVersion"] = old.get("apiVersion", rt.api_version(req.version))
            patched["kind"] = rt.kind
            if req.sub is None:
                warnings = self.ctx.validation.decode(
                    rt, req.version, patched, req.q("fieldValidation"), old
                )
                self.ctx.admit(rt, patched, old, dry_run=dry)
                self.ctx.validation.validate(rt, patched, old)
                req.warnings += warnings
            patched = self.ctx.track(rt, old, patched, manager, req.sub)
            try:
                stored = self.ctx.store.update(
                    rt,
                    patched,
                    expected_rv=str(meta(old).get("resourceVersion")),
                    subresource=req.sub,
                    dry_run=dry,
                )
            except ApiError as e:
                # Another writer got in between our read and write: a patch is retried
                # on the fresh object, as the real server does.
                if e.code == 409 and not want_rv:
                    continue
                raise
            return 200, self.ctx.present(rt, stored, req.version), ""
        raise errors.conflict(
            rt.plural, req.name, rt.group, "too many concurrent writers, try again"
        )

    def do_apply(self, req: Request, raw: str, dry: bool) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        manager, force = _apply_options(req)
        applied = _applied_body(raw)
        self.ctx.check_body(req, applied, require_name=True)
        if req.sub is None:
            self.ctx.validation.decode_applied(rt, req.version, applied)
        # Built-in kinds refused unknown fields above; a custom resource's are pruned from
        # the merged object, under the request's fieldValidation.
        directive = "Ignore" if rt.builtin else req.q("fieldValidation")
        for _attempt in range(5):
            old = self.ctx.store.get(rt, req.namespace, req.name)
            want_rv = meta(applied).get("resourceVersion")
            if want_rv and (old is None or want_rv != meta(old).get("resourceVersion")):
                raise errors.conflict(
                    rt.plural,
                    req.name,
                    rt.group,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            new = _merged(req, rt, old, applied, manager, force)
            try:
                return self._store_applied(req, rt, old, new, directive, dry)
            except ApiError as e:
                if e.code == 409 and e.reason in ("Conflict", "AlreadyExists") and not want_rv:
                    continue
                raise
        raise errors.conflict(
            rt.plural, req.name, rt.group, "too many concurrent writers, try again"
        )

    def _store_applied(
        self, req: Request, rt: ResourceType, old: Obj | None, new: Obj, directive: str, dry: bool
    ) -> tuple[int, Any, str]:
        """Create or update with the merged object (admission and validation first)."""
        if old is None:
            new.pop("status", None) if "status" in rt.subresources else None
            meta(new).pop("uid", None)
            req.warnings += self.ctx.validation.decode(rt, req.version, new, directive)
            self.ctx.admit(rt, new, None, dry_run=dry)
            self.ctx.validation.validate(rt, new, None)
            stored = self.ctx.store.create(rt, new, dry_run=dry)
            if rt.key == "apiextensions.k8s.io/customresourcedefinitions" and not dry:
                stored = self.establish_crd(stored)
            return 201, self.ctx.present(rt, stored, req.version), ""
        if req.sub is None:
            req.warnings += self.ctx.validation.decode(rt, req.version, new, directive, old)
            self.ctx.admit(rt, new, old, dry_run=dry)
            self.ctx.validation.validate(rt, new, old)
        stored = self.ctx.store.update(
            rt,
            new,
            expected_rv=str(meta(old).get("resourceVersion")),
            subresource=req.sub,
            dry_run=dry,
        )
        if (
            rt.key == "apiextensions.k8s.io/customresourcedefinitions"
            and req.sub is None
            and not dry
            and stored is not old
        ):
            stored = self.establish_crd(stored)
        return 200, self.ctx.present(rt, stored, req.version), ""

    def delete_options(self, req: Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if req.body.strip():
            opts = self.ctx.decode(req, require_object=False) or {}
        for key in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
            if req.q(key):
                opts[key] = req.q(key)
        return opts

    def do_delete(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None and req.name is not None
        opts = self.delete_options(req)
        propagation = opts.get("propagationPolicy")
        if opts.get("orphanDependents") in (True, "true"):
            propagation = "Orphan"
        if propagation not in (None, "", "Background", "Foreground", "Orphan"):
            raise errors.invalid(
                "DeleteOptions",
                "",
                "meta.k8s.io",
                [("propagationPolicy", f"Unsupported value: {propagation!r}")],
            )
        pre = opts.get("preconditions") or {}
        dry = self.ctx.dry_run(req) or "All" in (opts.get("dryRun") or [])
        obj, removed = self.ctx.store.delete(
            rt,
            req.namespace,
            req.name,
            propagation=propagation or None,
            precondition_uid=pre.get("uid"),
            precondition_rv=pre.get("resourceVersion"),
            dry_run=dry,
        )
        if removed and (rt.key in _RETURNS_DELETED_OBJECT or not rt.builtin):
            return 200, self.ctx.present(rt, obj, req.version), ""
        if removed:
            m = meta(obj)
            return (
                200,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": m.get("name"),
                        "group": rt.group,
                        "kind": rt.plural,
                        "uid": m.get("uid"),
                    },
                },
                "",
            )
        return 200, self.ctx.present(rt, obj, req.version), ""

    def do_delete_collection(self, req: Request) -> tuple[int, Any, str]:
        rt = req.rt
        assert rt is not None
        try:
            label_reqs = parse_label_selector(req.q("labelSelector"))
            field_match = listing.field_matcher(rt, req.q("fieldSelector"))
        except SelectorError as e:
            raise errors.bad_request(str(e)) from e
        opts = self.delete_options(req)
        items, _ = self.ctx.store.list(rt, req.namespace, label_reqs, field_match)
        deleted = []
        for obj in items:
            m = meta(obj)
            try:
                out, _removed = self.ctx.store.delete(
                    rt,
                    m.get("namespace"),
                    m["name"],
                    propagation=opts.get("propagationPolicy") or None,
                    dry_run=self.ctx.dry_run(req),
                )
                deleted.append(self.ctx.present(rt, out, req.version))
            except ApiError as e:
                if e.code != 404:
                    raise
        return (
            200,
            {
                "kind": rt.list_kind_name,
                "apiVersion": rt.api_version(req.version),
                "metadata": {"resourceVersion": str(self.ctx.store.resource_version)},
                "items": deleted,
            },
            "",
        )
