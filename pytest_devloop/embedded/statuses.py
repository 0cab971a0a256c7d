"""Controllers of the embedded cluster that only report status.

Owns the status of kinds nothing needs to act on, only to look settled:
CustomResourceDefinitions become `NamesAccepted` and `Established` (the server already
serves the type; Helm and kubectl wait for the condition) and, when deleted with the
`customresourcecleanup` finalizer, lose their custom resources first;
HorizontalPodAutoscalers report the target's replicas (no metrics, so no scaling);
PodDisruptionBudgets count the healthy pods they select.
"""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded.reconcile import (
    Context,
    Controller,
    Handler,
    Key,
    get_int,
    int_or_percent,
    is_deleting,
    labels_of,
    pod_is_ready,
    pod_is_terminal,
    set_condition,
)
from pytest_devloop.embedded.store import Change, clone, meta
from pytest_devloop.k8s.selectors import (
    Requirement,
    SelectorError,
    labels_match,
    selector_from_label_selector,
)

Obj = dict[str, Any]
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


class CrdStatus(Controller):
    """Marks CustomResourceDefinitions Established and cleans up after deleted ones."""

    watches = ("apiextensions.k8s.io/customresourcedefinitions",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.crds = ctx.rt("apiextensions.k8s.io", "customresourcedefinitions")

    def handlers(self) -> dict[str, Handler]:
        return {"crd": self.reconcile}

    def observe(self, change: Change) -> None:
        if change.type != "DELETED":
            self.ctx.enqueue(Key("crd", "", str(meta(change.new).get("name"))))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        crd = ctx.get(self.crds, "", key.name)
        if crd is None:
            return
        if is_deleting(crd):
            self._cleanup(crd)
            return
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        kind = str(names.get("kind", ""))
        accepted: Obj = {
            "plural": names.get("plural"),
            "singular": names.get("singular") or kind.lower(),
            "kind": kind,
            "listKind": names.get("listKind") or f"{kind}List",
        }
        for optional in ("shortNames", "categories"):
            if names.get(optional):
                accepted[optional] = list(names[optional])
        old = crd.get("status") or {}
        stored = list(old.get("storedVersions") or [])
        for version in spec.get("versions") or []:
            if version.get("storage") and version.get("name") not in stored:
                stored.append(version["name"])
        now = ctx.now()
        conds = set_condition(
            list(old.get("conditions") or []),
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
            now=now,
        )
        conds = set_condition(
            conds,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
            now=now,
        )
        ctx.update_status(
            self.crds,
            crd,
            {"conditions": conds, "acceptedNames": accepted, "storedVersions": stored},
        )

    def _cleanup(self, crd: Obj) -> None:
        ctx = self.ctx
        finalizers = list(meta(crd).get("finalizers") or [])
        if CRD_CLEANUP not in finalizers:
            return
        name = meta(crd).get("name")
        for rt in ctx.registry.all():
            if rt.crd_name == name:
                items, _ = ctx.store.list(rt)
                for obj in items:
                    m = meta(obj)
                    ctx.delete(rt, str(m.get("namespace", "")), str(m.get("name")))
                if ctx.store.list(rt)[0]:
                    return  # custom resources held by finalizers; wait for them
        finalizers.remove(CRD_CLEANUP)
        done = clone(crd)
        done["metadata"]["finalizers"] = finalizers
        ctx.update(self.crds, done)


class HpaStatus(Controller):
    """Reports an autoscaler's current and desired replicas from its scale target."""

    watches = (
        "autoscaling/horizontalpodautoscalers",
        "apps/deployments",
        "apps/statefulsets",
        "apps/replicasets",
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.hpas = ctx.rt("autoscaling", "horizontalpodautoscalers")
        # (namespace, kind, name) of a target -> autoscalers naming it
        self._targets: dict[tuple[str, str, str], set[str]] = {}
        self._by_hpa: dict[tuple[str, str], tuple[str, str, str]] = {}

    def handlers(self) -> dict[str, Handler]:
        return {"hpa": self.reconcile}

    def observe(self, change: Change) -> None:
        m = meta(change.new)
        ns, name = str(m.get("namespace", "")), str(m.get("name", ""))
        if change.rt.key != self.hpas.key:
            for hpa in sorted(self._targets.get((ns, change.rt.kind, name), ())):
                self.ctx.enqueue(Key("hpa", ns, hpa))
            return
        previous = self._by_hpa.pop((ns, name), None)
        if previous is not None:
            self._targets.get(previous, set()).discard(name)
        if change.type == "DELETED":
            return
        ref = (change.new.get("spec") or {}).get("scaleTargetRef") or {}
        target = (ns, str(ref.get("kind", "")), str(ref.get("name", "")))
        self._targets.setdefault(target, set()).add(name)
        self._by_hpa[(ns, name)] = target
        self.ctx.enqueue(Key("hpa", ns, name))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        hpa = ctx.get(self.hpas, key.namespace, key.name)
        if hpa is None or is_deleting(hpa):
            return
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        rt = ctx.registry.by_kind(group, str(ref.get("kind", "")))
        target = ctx.get(rt, key.namespace, str(ref.get("name", ""))) if rt is not None else None
        now = ctx.now()
        old = hpa.get("status") or {}
        conds = list(old.get("conditions") or [])
        if target is None:
            conds = set_condition(
                conds,
                "AbleToScale",
                "False",
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: "
                f"{ref.get('kind')} {ref.get('name')!r} not found",
                now=now,
            )
            current = 0
        else:
            conds = set_condition(
                conds,
                "AbleToScale",
                "True",
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
                now=now,
            )
            current = get_int((target.get("status") or {}).get("replicas"), 0) or get_int(
                (target.get("spec") or {}).get("replicas"), 1
            )
        conds = set_condition(
            conds,
            "ScalingActive",
            "False",
            "FailedGetResourceMetric",
            "the HPA was unable to compute the replica count: metrics are not simulated "
            "by the devloop embedded cluster",
            now=now,
        )
        low = get_int(spec.get("minReplicas"), 1)
        high = get_int(spec.get("maxReplicas"), max(low, current))
        status: Obj = {
            "observedGeneration": meta(hpa).get("generation", 1),
            "currentReplicas": current,
            "desiredReplicas": min(max(current, low), high) if current else 0,
            "conditions": conds,
        }
        ctx.update_status(self.hpas, hpa, status)


class PdbStatus(Controller):
    """Counts the healthy pods a PodDisruptionBudget selects and the disruptions allowed."""

    watches = ("policy/poddisruptionbudgets", "pods")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.pdbs = ctx.rt("policy", "poddisruptionbudgets")
        self._selectors: dict[str, dict[str, list[Requirement] | None]] = {}

    def handlers(self) -> dict[str, Handler]:
        return {"pdb": self.reconcile}

    def observe(self, change: Change) -> None:
        m = meta(change.new)
        ns, name = str(m.get("namespace", "")), str(m.get("name", ""))
        if change.rt.key == "pods":
            for pdb, reqs in self._selectors.get(ns, {}).items():
                if reqs is not None and (
                    labels_match(reqs, labels_of(change.new))
                    or labels_match(reqs, labels_of(change.old))
                ):
                    self.ctx.enqueue(Key("pdb", ns, pdb))
            return
        selectors = self._selectors.setdefault(ns, {})
        selectors.pop(name, None)
        if change.type != "DELETED":
            selectors[name] = _selector(change.new)
            self.ctx.enqueue(Key("pdb", ns, name))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        pdb = ctx.get(self.pdbs, key.namespace, key.name)
        if pdb is None or is_deleting(pdb):
            return
        spec = pdb.get("spec") or {}
        reqs = _selector(pdb)
        pods = [
            p
            for p in ctx.pods_in(key.namespace)
            if reqs is not None
            and labels_match(reqs, labels_of(p))
            and not pod_is_terminal(p)
            and not is_deleting(p)
        ]
        expected = len(pods)
        healthy = sum(pod_is_ready(p) for p in pods)
        if spec.get("minAvailable") is not None:
            desired = int_or_percent(spec["minAvailable"], expected, round_up=True)
        elif spec.get("maxUnavailable") is not None:
            desired = max(
                expected - int_or_percent(spec["maxUnavailable"], expected, round_up=True), 0
            )
        else:
            desired = expected
        allowed = max(healthy - desired, 0)
        old = pdb.get("status") or {}
        conds = set_condition(
            list(old.get("conditions") or []),
            "DisruptionAllowed",
            "True" if allowed else "False",
            "SufficientPods" if allowed else "InsufficientPods",
            "",
            now=ctx.now(),
        )
        for cond in conds:
            cond.setdefault("message", "")
            cond["observedGeneration"] = meta(pdb).get("generation", 1)
        status: Obj = {
            "observedGeneration": meta(pdb).get("generation", 1),
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": conds,
        }
        ctx.update_status(self.pdbs, pdb, status)


def _selector(pdb: Obj) -> list[Requirement] | None:
    """policy/v1: a missing selector selects nothing, an empty one every pod."""
    try:
        return selector_from_label_selector((pdb.get("spec") or {}).get("selector"))
    except SelectorError:
        return None
