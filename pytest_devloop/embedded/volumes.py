"""Persistent volume binding of the embedded cluster.

Owns the PersistentVolumeClaim -> PersistentVolume life: a claim naming a volume is bound
to it; otherwise an Available volume that fits (class, access modes, size, mode) is
chosen; otherwise a volume `pvc-<claim uid>` is provisioned in the claim's storage class
and bound, so Helm's and kstatus' "PVC Bound" checks pass. A volume whose claim is gone
is deleted (reclaim policy Delete) or Released (Retain).

Simplified on purpose: any non-empty storage class provisions, even one that does not
exist (charts written for a cloud class should still install); `WaitForFirstConsumer`
binds at once; no `pvc-protection` finalizer; nothing is stored anywhere.
"""

from __future__ import annotations

import re
from typing import Any

from pytest_devloop.embedded.reconcile import (
    Context,
    Controller,
    Handler,
    Key,
    annotations_of,
    is_deleting,
)
from pytest_devloop.embedded.store import Change, clone, meta

Obj = dict[str, Any]
PROVISIONER = "devloop.dev/in-memory"

_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "m": 0.001,
}


def quantity(text: Any) -> float:
    """Bytes in a resource quantity like `10Gi` or `500M`; 0 for nonsense."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(text or ""))
    if not m or m.group(2) not in _UNITS:
        return 0.0
    try:
        return float(m.group(1)) * _UNITS[m.group(2)]
    except ValueError:
        return 0.0


class VolumeBinder(Controller):
    """Binds claims to (possibly freshly provisioned) volumes and reclaims orphans."""

    watches = ("persistentvolumeclaims", "persistentvolumes", "storage.k8s.io/storageclasses")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._pending: set[tuple[str, str]] = set()
        self.classes = ctx.rt("storage.k8s.io", "storageclasses")

    def handlers(self) -> dict[str, Handler]:
        return {"pvc": self.bind, "pv": self.reclaim}

    def observe(self, change: Change) -> None:
        m = meta(change.new)
        ns, name = str(m.get("namespace", "")), str(m.get("name", ""))
        key = change.rt.key
        if key == "persistentvolumeclaims":
            if change.type == "DELETED":
                self._pending.discard((ns, name))
                volume = (change.new.get("spec") or {}).get("volumeName")
                if volume:
                    self.ctx.enqueue(Key("pv", "", str(volume)))
            else:
                self.ctx.enqueue(Key("pvc", ns, name))
            return
        if key == "persistentvolumes" and change.type != "DELETED":
            claim = (change.new.get("spec") or {}).get("claimRef") or {}
            if claim.get("name"):
                self.ctx.enqueue(Key("pvc", str(claim.get("namespace", "")), str(claim["name"])))
            self.ctx.enqueue(Key("pv", "", name))
        # A new volume or class may unblock waiting claims.
        for pending in sorted(self._pending):
            self.ctx.enqueue(Key("pvc", *pending))

    def bind(self, key: Key) -> None:
        ctx = self.ctx
        pvc = ctx.get(ctx.pvcs, key.namespace, key.name)
        if pvc is None or is_deleting(pvc):
            return
        spec = pvc.get("spec") or {}
        uid = meta(pvc).get("uid")
        volume_name = spec.get("volumeName")
        pv = ctx.get(ctx.pvs, "", str(volume_name)) if volume_name else None
        claimed_by = ((pv or {}).get("spec") or {}).get("claimRef") or {}
        if pv is not None and claimed_by.get("uid") not in (None, uid):
            pv = None
        if pv is None and not volume_name:
            pv = self._find_available(pvc) or self._provision(pvc)
        if pv is None:
            self._pending.add((key.namespace, key.name))
            return
        self._pending.discard((key.namespace, key.name))
        self._bind(pvc, pv, bound_by_controller=not volume_name)

    def _find_available(self, pvc: Obj) -> Obj | None:
        spec = pvc.get("spec") or {}
        wanted = quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage"))
        modes = set(spec.get("accessModes") or [])
        klass = spec.get("storageClassName") or ""
        volumes, _ = self.ctx.store.list(self.ctx.pvs)
        fits = []
        for pv in volumes:
            pv_spec = pv.get("spec") or {}
            if pv_spec.get("claimRef") or (pv.get("status") or {}).get("phase") not in (
                None,
                "Available",
                "Pending",
            ):
                continue
            size = quantity((pv_spec.get("capacity") or {}).get("storage"))
            if (
                (pv_spec.get("storageClassName") or "") == klass
                and modes <= set(pv_spec.get("accessModes") or [])
                and size >= wanted
                and pv_spec.get("volumeMode", "Filesystem") == spec.get("volumeMode", "Filesystem")
            ):
                fits.append((size, str(meta(pv).get("name")), pv))
        return min(fits, key=lambda f: (f[0], f[1]))[2] if fits else None

    def _provision(self, pvc: Obj) -> Obj | None:
        ctx = self.ctx
        spec = pvc.get("spec") or {}
        klass = spec.get("storageClassName")
        if not klass:
            return None  # "" opts out of provisioning; None means no default class exists
        sc = ctx.get(self.classes, "", str(klass))
        m = meta(pvc)
        name = f"pvc-{m.get('uid')}"
        existing = ctx.get(ctx.pvs, "", name)
        if existing is not None:
            return existing
        provisioner = str((sc or {}).get("provisioner") or PROVISIONER)
        pv: Obj = {
            "metadata": {
                "name": name,
                "annotations": {"pv.kubernetes.io/provisioned-by": provisioner},
            },
            "spec": {
                "capacity": {
                    "storage": ((spec.get("resources") or {}).get("requests") or {}).get(
                        "storage", "1Gi"
                    )
                },
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "persistentVolumeReclaimPolicy": (sc or {}).get("reclaimPolicy", "Delete"),
                "storageClassName": klass,
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "hostPath": {"path": f"/var/lib/devloop/volumes/{name}", "type": ""},
                "claimRef": self._claim_ref(pvc),
            },
            "status": {"phase": "Bound"},
        }
        created = ctx.create(ctx.pvs, pv)
        if created is not None:
            ctx.record(
                pvc,
                "ProvisioningSucceeded",
                f"Successfully provisioned volume {name} (simulated by devloop)",
                component=provisioner,
            )
        return created

    @staticmethod
    def _claim_ref(pvc: Obj) -> Obj:
        m = meta(pvc)
        return {
            "kind": "PersistentVolumeClaim",
            "namespace": m.get("namespace"),
            "name": m.get("name"),
            "uid": m.get("uid"),
            "apiVersion": "v1",
            "resourceVersion": m.get("resourceVersion"),
        }

    def _bind(self, pvc: Obj, pv: Obj, *, bound_by_controller: bool) -> None:
        ctx = self.ctx
        pv_name = str(meta(pv).get("name"))
        pv_spec = pv.get("spec") or {}
        if (pv_spec.get("claimRef") or {}).get("uid") != meta(pvc).get("uid"):
            claimed = clone(pv)
            claimed["spec"]["claimRef"] = self._claim_ref(pvc)
            pv = ctx.update(ctx.pvs, claimed) or pv
        ctx.update_status(ctx.pvs, pv, {**(pv.get("status") or {}), "phase": "Bound"})
        wanted_ann = {"pv.kubernetes.io/bind-completed": "yes"}
        if bound_by_controller:
            wanted_ann["pv.kubernetes.io/bound-by-controller"] = "yes"
        provisioner = annotations_of(pv).get("pv.kubernetes.io/provisioned-by")
        if provisioner:
            wanted_ann["volume.beta.kubernetes.io/storage-provisioner"] = provisioner
            wanted_ann["volume.kubernetes.io/storage-provisioner"] = provisioner
        spec = pvc.get("spec") or {}
        if spec.get("volumeName") != pv_name or any(
            annotations_of(pvc).get(k) != v for k, v in wanted_ann.items()
        ):
            bound = clone(pvc)
            bound["spec"]["volumeName"] = pv_name
            bound["metadata"].setdefault("annotations", {}).update(wanted_ann)
            pvc = ctx.update(ctx.pvcs, bound) or pvc
        status = {
            "phase": "Bound",
            "accessModes": list(pv_spec.get("accessModes") or spec.get("accessModes") or []),
            "capacity": dict(pv_spec.get("capacity") or {}),
        }
        ctx.update_status(ctx.pvcs, pvc, status)

    def reclaim(self, key: Key) -> None:
        ctx = self.ctx
        pv = ctx.get(ctx.pvs, "", key.name)
        if pv is None or is_deleting(pv):
            return
        spec = pv.get("spec") or {}
        claim = spec.get("claimRef") or {}
        status = pv.get("status") or {}
        if not claim:
            if status.get("phase") in (None, "Pending"):
                ctx.update_status(ctx.pvs, pv, {**status, "phase": "Available"})
            return
        pvc = ctx.get(ctx.pvcs, str(claim.get("namespace", "")), str(claim.get("name", "")))
        if pvc is not None and (
            claim.get("uid") is None or meta(pvc).get("uid") == claim.get("uid")
        ):
            return
        if status.get("phase") not in ("Bound", "Released"):
            return
        if spec.get("persistentVolumeReclaimPolicy") == "Delete":
            ctx.delete(ctx.pvs, "", key.name)
        elif status.get("phase") != "Released":
            ctx.update_status(ctx.pvs, pv, {**status, "phase": "Released"})
