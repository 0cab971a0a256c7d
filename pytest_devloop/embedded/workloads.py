"""Simulated workload controllers of the embedded cluster: Deployment, ReplicaSet,
StatefulSet and DaemonSet.

Owns how these kinds turn into Pods (names, labels, owner references, revisions) and the
status fields `kubectl rollout status`, Helm 3's ready checker and kstatus (Helm 4
`--wait`) read: observedGeneration, replica counts and, for Deployments, the Available
and Progressing conditions. Rolling updates honour maxSurge/maxUnavailable (or
partition for StatefulSets) the way the real controllers do, step by step, as the
simulated kubelet makes new pods Ready.

Not simulated: adoption of orphaned pods or ReplicaSets that match a selector, proportional
scaling of several live ReplicaSets during a rollout (the newest one absorbs the change),
and StatefulSet `maxUnavailable`.
"""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded import errors
from pytest_devloop.embedded.deployment_status import (
    Rollout,
    conditions_for,
    counts_for,
    wake_after,
)
from pytest_devloop.embedded.kubelet import pod_fits_node
from pytest_devloop.embedded.reconcile import (
    Context,
    Controller,
    Handler,
    Key,
    annotations_of,
    controller_keys,
    controller_ref,
    get_int,
    int_or_percent,
    is_deleting,
    labels_of,
    owner_reference,
    parse_time,
    pod_available,
    pod_from_template,
    pod_is_active,
    pod_is_ready,
    pod_is_terminal,
    template_hash,
)
from pytest_devloop.embedded.store import Change, clone, meta
from pytest_devloop.k8s.resources import ResourceType

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
POD_TEMPLATE_HASH = "pod-template-hash"
REVISION_HASH = "controller-revision-hash"
# Annotations of a Deployment that are not copied onto its ReplicaSets.
_NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
}
# A controller never creates more pods than this in one pass, like the real slow start.
_BURST = 500


def _replicas(obj: Obj) -> int:
    return get_int((obj.get("spec") or {}).get("replicas"), 1)


def _status_int(obj: Obj, field: str) -> int:
    return get_int((obj.get("status") or {}).get(field), 0)


def _revision(obj: Obj) -> int:
    try:
        return int(annotations_of(obj).get(REVISION, "0"))
    except ValueError:
        return 0


def _created(obj: Obj) -> tuple[float, str]:
    return parse_time(meta(obj).get("creationTimestamp")) or 0.0, str(meta(obj).get("name"))


def _omit_zero(status: Obj, *fields: str) -> Obj:
    for f in fields:
        if status.get(f) == 0:
            del status[f]
    return status


class ReplicaSetController(Controller):
    """Keeps `spec.replicas` active pods per ReplicaSet and reports their readiness."""

    watches = ("apps/replicasets", "pods")

    def handlers(self) -> dict[str, Handler]:
        return {"replicaset": self.reconcile}

    def observe(self, change: Change) -> None:
        if change.rt.key == "pods":
            for key in controller_keys(change, "ReplicaSet", "replicaset"):
                self.ctx.enqueue(key)
            return
        m = meta(change.new)
        self.ctx.enqueue(Key("replicaset", str(m.get("namespace")), str(m.get("name"))))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        rs = ctx.get(ctx.replicasets, key.namespace, key.name)
        if rs is None or is_deleting(rs):
            return
        spec = rs.get("spec") or {}
        template = spec.get("template") or {}
        active = [p for p in ctx.controlled(rs, ctx.pods) if pod_is_active(p)]
        diff = _replicas(rs) - len(active)
        if diff > 0:
            owner = owner_reference(ctx.replicasets, rs)
            for _ in range(min(diff, _BURST)):
                prefix = f"{key.name}-"
                pod = pod_from_template(
                    template,
                    namespace=key.namespace,
                    name=ctx.generate_name(ctx.pods, key.namespace, prefix),
                    owner=owner,
                    generate_name=prefix,
                )
                created = ctx.create(ctx.pods, pod)
                if created is None:
                    refused = ctx.last_create_error
                    if refused is not None and refused.code == 403:
                        ctx.record(
                            rs,
                            "FailedCreate",
                            f"Error creating: {refused.message}",
                            warning=True,
                            component="replicaset-controller",
                        )
                    break
                active.append(created)
                ctx.record(
                    rs,
                    "SuccessfulCreate",
                    f"Created pod: {meta(created).get('name')}",
                    component="replicaset-controller",
                )
        elif diff < 0:
            for victim in sorted(active, key=_deletion_rank)[:-diff]:
                ctx.delete(ctx.pods, key.namespace, str(meta(victim).get("name")))
                active.remove(victim)
                ctx.record(
                    rs,
                    "SuccessfulDelete",
                    f"Deleted pod: {meta(victim).get('name')}",
                    component="replicaset-controller",
                )
        self._status(rs, active)

    def _status(self, rs: Obj, active: list[Obj]) -> None:
        ctx = self.ctx
        spec = rs.get("spec") or {}
        wanted = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = get_int(spec.get("minReadySeconds"), 0)
        wall = ctx.wall()
        available = 0
        for pod in active:
            ok, wait = pod_available(pod, min_ready, wall)
            available += ok
            if wait is not None:
                m = meta(rs)
                ctx.enqueue_after(
                    wait, Key("replicaset", str(m.get("namespace")), str(m.get("name")))
                )
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                all(labels_of(p).get(k) == v for k, v in wanted.items()) for p in active
            ),
            "readyReplicas": sum(pod_is_ready(p) for p in active),
            "availableReplicas": available,
            "observedGeneration": meta(rs).get("generation", 1),
        }
        _omit_zero(status, "fullyLabeledReplicas", "readyReplicas", "availableReplicas")
        old = rs.get("status") or {}
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        ctx.update_status(ctx.replicasets, rs, status)


def _deletion_rank(pod: Obj) -> tuple[int, int, int, float, str]:
    """Pods deleted first on scale-down sort first: unscheduled, pending, unready, newest."""
    phase = (pod.get("status") or {}).get("phase")
    created, name = _created(pod)
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        {"Pending": 0, "Unknown": 1, "Running": 2}.get(str(phase), 0),
        1 if pod_is_ready(pod) else 0,
        -created,
        name,
    )


def _strip_hash(template: Obj) -> Obj:
    out: Obj = clone(template)
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return out


class DeploymentController(Controller):
    """Rolls Deployments out through ReplicaSets, one revision per pod template."""

    watches = ("apps/deployments", "apps/replicasets")

    def handlers(self) -> dict[str, Handler]:
        return {"deployment": self.reconcile}

    def observe(self, change: Change) -> None:
        if change.rt.key == "apps/replicasets":
            for key in controller_keys(change, "Deployment", "deployment"):
                self.ctx.enqueue(key)
            return
        m = meta(change.new)
        self.ctx.enqueue(Key("deployment", str(m.get("namespace")), str(m.get("name"))))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        d = ctx.get(ctx.deployments, key.namespace, key.name)
        if d is None or is_deleting(d):
            return
        spec = d.get("spec") or {}
        replicas = _replicas(d)
        template = spec.get("template") or {}
        rss = ctx.controlled(d, ctx.replicasets)
        new_rs = next(
            (
                r
                for r in rss
                if _strip_hash((r.get("spec") or {}).get("template") or {}) == template
            ),
            None,
        )
        olds = [r for r in rss if r is not new_rs]
        max_rev = max((_revision(r) for r in rss), default=0)
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        surge, unavailable = self._budgets(d, replicas, rolling)
        paused = bool(spec.get("paused"))
        created = False
        if new_rs is None and not paused:
            old_pods = any(_replicas(r) > 0 or _status_int(r, "replicas") > 0 for r in olds)
            if rolling:
                total = sum(_replicas(r) for r in olds)
                initial = min(replicas, max(replicas + surge - total, 0)) if olds else replicas
            else:
                initial = 0 if old_pods else replicas
            new_rs = self._create_rs(d, template, max_rev + 1, initial, surge)
            created = new_rs is not None
        elif new_rs is not None and _revision(new_rs) < max_rev:
            # Rolling back to an older template makes its ReplicaSet the newest revision.
            new_rs = self._annotate(new_rs, {REVISION: str(max_rev + 1)})
        if new_rs is not None:
            d = self._record_revision(d, annotations_of(new_rs).get(REVISION, "1"))
        if new_rs is not None:
            if paused:
                if not any(_replicas(r) > 0 for r in olds):
                    new_rs = self._scale(d, new_rs, replicas, surge)
            elif rolling:
                new_rs, olds = self._roll(
                    d, new_rs, olds, replicas=replicas, surge=surge, unavailable=unavailable
                )
            else:
                new_rs, olds = self._recreate(d, new_rs, olds, replicas)
        self._cleanup(d, olds)
        self._status(
            d, new_rs, olds, replicas=replicas, max_unavailable=unavailable, created=created
        )

    def _record_revision(self, d: Obj, revision: str) -> Obj:
        """Set the Deployment's revision annotation without bumping its generation.

        The real controller writes it through /status, whose Deployment strategy keeps
        annotation changes; a store that drops them there gets a main-resource write.
        """
        if annotations_of(d).get(REVISION) == revision:
            return d
        ctx = self.ctx
        marked = dict(d)
        marked["metadata"] = {**meta(d), "annotations": {**annotations_of(d), REVISION: revision}}
        try:
            stored = ctx.store.update(ctx.deployments, marked, subresource="status")
        except errors.ApiError:
            return d
        if annotations_of(stored).get(REVISION) == revision:
            return stored
        return ctx.update(ctx.deployments, clone(marked)) or d

    def _budgets(self, d: Obj, replicas: int, rolling: bool) -> tuple[int, int]:
        if not rolling:
            return 0, 0
        ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
        surge = int_or_percent(ru.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = int_or_percent(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1  # as the real controller does, so a rollout can progress
        return surge, min(unavailable, replicas)

    def _create_rs(
        self, d: Obj, template: Obj, revision: int, replicas: int, surge: int
    ) -> Obj | None:
        ctx = self.ctx
        m = meta(d)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        collisions = get_int((d.get("status") or {}).get("collisionCount"), 0)
        while True:
            h = template_hash(template, collisions)
            rs_name = f"{name}-{h}"
            existing = ctx.get(ctx.replicasets, ns, rs_name)
            if existing is None:
                break
            if (controller_ref(existing) or {}).get("uid") == m.get("uid") and _strip_hash(
                (existing.get("spec") or {}).get("template") or {}
            ) == template:
                return existing
            collisions += 1
        rs_template = clone(template)
        rs_template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = h
        selector = clone((d.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = h
        annotations = {k: v for k, v in annotations_of(d).items() if k not in _NOT_COPIED}
        annotations.update(
            {
                REVISION: str(revision),
                DESIRED_REPLICAS: str(_replicas(d)),
                MAX_REPLICAS: str(_replicas(d) + surge),
            }
        )
        rs_spec: Obj = {"replicas": replicas, "selector": selector, "template": rs_template}
        min_ready = (d.get("spec") or {}).get("minReadySeconds")
        if min_ready:
            rs_spec["minReadySeconds"] = min_ready
        rs: Obj = {
            "metadata": {
                "name": rs_name,
                "namespace": ns,
                "labels": dict(rs_template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_reference(ctx.deployments, d)],
            },
            "spec": rs_spec,
        }
        created = ctx.create(ctx.replicasets, rs)
        if created is not None and replicas > 0:
            ctx.record(
                d,
                "ScalingReplicaSet",
                f"Scaled up replica set {rs_name} from 0 to {replicas}",
                component="deployment-controller",
            )
        return created

    def _annotate(self, rs: Obj, annotations: dict[str, str]) -> Obj:
        if all(annotations_of(rs).get(k) == v for k, v in annotations.items()):
            return rs
        new = clone(rs)
        new["metadata"].setdefault("annotations", {}).update(annotations)
        return self.ctx.update(self.ctx.replicasets, new) or rs

    def _scale(self, d: Obj, rs: Obj, replicas: int, surge: int) -> Obj:
        ctx = self.ctx
        current = _replicas(rs)
        wanted_ann = {DESIRED_REPLICAS: str(_replicas(d)), MAX_REPLICAS: str(_replicas(d) + surge)}
        if current == replicas and all(
            annotations_of(rs).get(k) == v for k, v in wanted_ann.items()
        ):
            return rs
        new = clone(rs)
        new["spec"]["replicas"] = replicas
        new["metadata"].setdefault("annotations", {}).update(wanted_ann)
        stored = ctx.update(ctx.replicasets, new)
        if stored is None:
            return rs
        if current != replicas:
            ctx.record(
                d,
                "ScalingReplicaSet",
                f"Scaled {'up' if replicas > current else 'down'} replica set "
                f"{meta(rs).get('name')} from {current} to {replicas}",
                component="deployment-controller",
            )
        return stored

    def _roll(
        self, d: Obj, new_rs: Obj, olds: list[Obj], *, replicas: int, surge: int, unavailable: int
    ) -> tuple[Obj, list[Obj]]:
        # Scale up the new ReplicaSet as far as maxSurge allows.
        current = _replicas(new_rs)
        target = current
        if current > replicas:
            target = replicas
        elif current < replicas:
            room = replicas + surge - sum(_replicas(r) for r in [new_rs, *olds])
            target = current + max(0, min(room, replicas - current))
        new_rs = self._scale(d, new_rs, target, surge)
        if not any(_replicas(r) > 0 for r in olds):
            return new_rs, olds

        def available(r: Obj) -> int:
            # A ReplicaSet's status trails a scale-down; never count more than it wants.
            return min(_status_int(r, "availableReplicas"), _replicas(r))

        min_available = replicas - unavailable
        olds = sorted(olds, key=_created)
        # First drop old pods that are not available anyway: that costs no availability.
        total = sum(_replicas(r) for r in [new_rs, *olds])
        budget = total - min_available - (_replicas(new_rs) - available(new_rs))
        for i, r in enumerate(olds):
            unhealthy = _replicas(r) - available(r)
            if budget <= 0:
                break
            if unhealthy > 0:
                down = min(unhealthy, budget)
                olds[i] = self._scale(d, r, _replicas(r) - down, surge)
                budget -= down
        # Then available ones, as far as the remaining availability allows.
        budget = sum(available(r) for r in [new_rs, *olds]) - min_available
        for i, r in enumerate(olds):
            if budget <= 0:
                break
            down = min(_replicas(r), budget)
            if down > 0:
                olds[i] = self._scale(d, r, _replicas(r) - down, surge)
                budget -= down
        return new_rs, olds

    def _recreate(
        self, d: Obj, new_rs: Obj, olds: list[Obj], replicas: int
    ) -> tuple[Obj, list[Obj]]:
        olds = [self._scale(d, r, 0, 0) for r in olds]
        if any(pod_is_active(p) for r in olds for p in self.ctx.controlled(r, self.ctx.pods)):
            return new_rs, olds  # the new pods wait until every old one is gone
        return self._scale(d, new_rs, replicas, 0), olds

    def _cleanup(self, d: Obj, olds: list[Obj]) -> None:
        limit = get_int((d.get("spec") or {}).get("revisionHistoryLimit"), 10)
        dead = sorted(
            (
                r
                for r in olds
                if _replicas(r) == 0 and _status_int(r, "replicas") == 0 and not is_deleting(r)
            ),
            key=_revision,
        )
        for r in dead[: max(len(dead) - limit, 0)]:
            m = meta(r)
            self.ctx.delete(self.ctx.replicasets, str(m.get("namespace")), str(m.get("name")))

    def _status(
        self,
        d: Obj,
        new_rs: Obj | None,
        olds: list[Obj],
        *,
        replicas: int,
        max_unavailable: int,
        created: bool,
    ) -> None:
        ctx = self.ctx
        rollout = Rollout.of(
            d,
            new_rs,
            olds,
            replicas=replicas,
            max_unavailable=max_unavailable,
            created=created,
            wall=ctx.wall,
        )
        status = counts_for(d, rollout)
        status["conditions"] = conditions_for(d, rollout, now=ctx.now())
        remaining = wake_after(rollout)
        if remaining is not None:
            m = meta(d)
            # One second of slack: condition timestamps have whole-second resolution.
            ctx.enqueue_after(
                remaining + 1, Key("deployment", str(m.get("namespace")), str(m.get("name")))
            )
        ctx.update_status(ctx.deployments, d, status)


# -- revisions (StatefulSet, DaemonSet) -------------------------------------------


def ensure_revision(
    ctx: Context, owner_rt: ResourceType, owner: Obj, template: Obj
) -> tuple[str, str]:
    """The ControllerRevision of `template` for `owner`, created if missing: (name, hash)."""
    m = meta(owner)
    ns, name = str(m.get("namespace")), str(m.get("name"))
    h = template_hash(template)
    rev_name = f"{name}-{h}"
    revisions = ctx.controlled(owner, ctx.revisions)
    latest = max((get_int(r.get("revision"), 0) for r in revisions), default=0)
    existing = ctx.get(ctx.revisions, ns, rev_name)
    if existing is None:
        labels = dict(((owner.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
        labels["controller.kubernetes.io/hash"] = h
        ctx.create(
            ctx.revisions,
            {
                "metadata": {
                    "name": rev_name,
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [owner_reference(owner_rt, owner)],
                },
                "data": {"spec": {"template": {**clone(template), "$patch": "replace"}}},
                "revision": latest + 1,
            },
        )
    elif get_int(existing.get("revision"), 0) < latest:
        bumped = clone(existing)
        bumped["revision"] = latest + 1
        ctx.update(ctx.revisions, bumped)
    return rev_name, h


def revision_template(ctx: Context, namespace: str, rev_name: str) -> Obj | None:
    rev = ctx.get(ctx.revisions, namespace, rev_name)
    template = (((rev or {}).get("data") or {}).get("spec") or {}).get("template")
    if not isinstance(template, dict):
        return None
    return {k: v for k, v in template.items() if k != "$patch"}


def prune_revisions(ctx: Context, owner: Obj, keep: set[str]) -> None:
    limit = get_int((owner.get("spec") or {}).get("revisionHistoryLimit"), 10)
    revisions = sorted(
        (r for r in ctx.controlled(owner, ctx.revisions) if meta(r).get("name") not in keep),
        key=lambda r: get_int(r.get("revision"), 0),
    )
    for r in revisions[: max(len(revisions) - limit, 0)]:
        ctx.delete(ctx.revisions, str(meta(r).get("namespace")), str(meta(r).get("name")))


class StatefulSetController(Controller):
    """Ordinal pods with stable names and claims, rolled from the highest ordinal down."""

    watches = ("apps/statefulsets", "pods", "apps/controllerrevisions")

    def handlers(self) -> dict[str, Handler]:
        return {"statefulset": self.reconcile}

    def observe(self, change: Change) -> None:
        if change.rt.key != "apps/statefulsets":
            for key in controller_keys(change, "StatefulSet", "statefulset"):
                self.ctx.enqueue(key)
            return
        m = meta(change.new)
        self.ctx.enqueue(Key("statefulset", str(m.get("namespace")), str(m.get("name"))))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        sts = ctx.get(ctx.statefulsets, key.namespace, key.name)
        if sts is None or is_deleting(sts):
            return
        ns, name = key.namespace, key.name
        spec = sts.get("spec") or {}
        replicas = _replicas(sts)
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = (
            get_int((strategy.get("rollingUpdate") or {}).get("partition"), 0) if rolling else 0
        )
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        update_rev, _ = ensure_revision(ctx, ctx.statefulsets, sts, spec.get("template") or {})
        current_rev = str((sts.get("status") or {}).get("currentRevision") or update_rev)
        pods: dict[int, Obj] = {}
        for pod in ctx.controlled(sts, ctx.pods):
            ordinal = _ordinal(name, str(meta(pod).get("name")))
            if ordinal is not None:
                pods[ordinal] = pod
        blocked = False
        for i in range(replicas):
            current = pods.get(i)
            if current is None:
                if blocked:
                    break
                rev = current_rev if rolling and i < partition else update_rev
                created = self._create_pod(sts, i, rev, update_rev)
                if created is not None:
                    pods[i] = created
                blocked = ordered
                continue
            if is_deleting(current) or pod_is_terminal(current):
                if not is_deleting(current):
                    # A failed stateful pod is replaced under the same name.
                    ctx.delete(ctx.pods, ns, str(meta(current).get("name")))
                    del pods[i]
                blocked = blocked or ordered
                continue
            if ordered and not pod_is_ready(current):
                blocked = True
        condemned = sorted((o for o in pods if o >= replicas), reverse=True)
        if condemned and not blocked:
            for ordinal in condemned if not ordered else condemned[:1]:
                pod = pods[ordinal]
                if not is_deleting(pod):
                    ctx.delete(ctx.pods, ns, str(meta(pod).get("name")))
                    self._forget_claims(sts, ordinal)
                    del pods[ordinal]
        elif rolling and not condemned and not blocked and len(pods) == replicas:
            for i in range(replicas - 1, partition - 1, -1):
                pod = pods[i]
                if labels_of(pod).get(REVISION_HASH) != update_rev:
                    ctx.delete(ctx.pods, ns, str(meta(pod).get("name")))
                    del pods[i]
                    break
        self._status(sts, pods, current_rev, update_rev)

    def _create_pod(self, sts: Obj, ordinal: int, rev: str, update_rev: str) -> Obj | None:
        ctx = self.ctx
        m = meta(sts)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        spec = sts.get("spec") or {}
        template = spec.get("template") or {}
        if rev != update_rev:
            # Below the partition, pods are (re)created from the revision they run.
            template = revision_template(ctx, ns, rev) or template
        pod_name = f"{name}-{ordinal}"
        pod = pod_from_template(
            template,
            namespace=ns,
            name=pod_name,
            owner=owner_reference(ctx.statefulsets, sts),
            extra_labels={
                REVISION_HASH: rev,
                "statefulset.kubernetes.io/pod-name": pod_name,
                "apps.kubernetes.io/pod-index": str(ordinal),
            },
        )
        pod_spec = pod["spec"]
        pod_spec["hostname"] = pod_name
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        volumes = list(pod_spec.get("volumes") or [])
        for claim in spec.get("volumeClaimTemplates") or []:
            claim_name = str((claim.get("metadata") or {}).get("name"))
            pvc_name = f"{claim_name}-{name}-{ordinal}"
            self._ensure_claim(sts, claim, pvc_name)
            volumes = [v for v in volumes if v.get("name") != claim_name]
            volumes.append({"name": claim_name, "persistentVolumeClaim": {"claimName": pvc_name}})
        if volumes:
            pod_spec["volumes"] = volumes
        created = ctx.create(ctx.pods, pod)
        if created is not None:
            ctx.record(
                sts,
                "SuccessfulCreate",
                f"create Pod {pod_name} in StatefulSet {name} successful",
                component="statefulset-controller",
            )
        return created

    def _ensure_claim(self, sts: Obj, claim: Obj, pvc_name: str) -> None:
        ctx = self.ctx
        m = meta(sts)
        ns = str(m.get("namespace"))
        if ctx.get(ctx.pvcs, ns, pvc_name) is not None:
            return
        cmeta = claim.get("metadata") or {}
        labels = dict(cmeta.get("labels") or {})
        labels.update(((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
        metadata: Obj = {"name": pvc_name, "namespace": ns, "labels": labels}
        if cmeta.get("annotations"):
            metadata["annotations"] = dict(cmeta["annotations"])
        policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
        if policy.get("whenDeleted") == "Delete":
            metadata["ownerReferences"] = [owner_reference(ctx.statefulsets, sts, controller=False)]
        pvc: Obj = {"metadata": metadata, "spec": clone(claim.get("spec") or {})}
        if ctx.create(ctx.pvcs, pvc) is not None:
            ctx.record(
                sts,
                "SuccessfulCreate",
                f"create Claim {pvc_name} for Pod {pvc_name.split('-', 1)[-1]} in StatefulSet "
                f"{m.get('name')} success",
                component="statefulset-controller",
            )

    def _forget_claims(self, sts: Obj, ordinal: int) -> None:
        spec = sts.get("spec") or {}
        if (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") != "Delete":
            return
        m = meta(sts)
        for claim in spec.get("volumeClaimTemplates") or []:
            claim_name = (claim.get("metadata") or {}).get("name")
            self.ctx.delete(
                self.ctx.pvcs, str(m.get("namespace")), f"{claim_name}-{m.get('name')}-{ordinal}"
            )

    def _status(self, sts: Obj, pods: dict[int, Obj], current_rev: str, update_rev: str) -> None:
        ctx = self.ctx
        spec = sts.get("spec") or {}
        live = [p for p in pods.values() if not is_deleting(p)]
        wall = ctx.wall()
        min_ready = get_int(spec.get("minReadySeconds"), 0)
        available = 0
        for pod in live:
            ok, wait = pod_available(pod, min_ready, wall)
            available += ok
            if wait is not None:
                m = meta(sts)
                ctx.enqueue_after(
                    wait, Key("statefulset", str(m.get("namespace")), str(m.get("name")))
                )
        ready = sum(pod_is_ready(p) for p in live)
        updated = sum(labels_of(p).get(REVISION_HASH) == update_rev for p in live)
        current = sum(labels_of(p).get(REVISION_HASH) == current_rev for p in live)
        replicas = _replicas(sts)
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        if (
            updated == replicas
            and ready == replicas
            and len(live) == replicas
            and (rolling or current == 0)
        ):
            # The rollout is complete: the update revision becomes the current one.
            current_rev, current = update_rev, updated
        status: Obj = {
            "observedGeneration": meta(sts).get("generation", 1),
            "replicas": len(live),
            "readyReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "currentRevision": current_rev,
            "updateRevision": update_rev,
            "collisionCount": 0,
        }
        _omit_zero(status, "readyReplicas", "currentReplicas", "updatedReplicas")
        ctx.update_status(ctx.statefulsets, sts, status)
        prune_revisions(
            ctx,
            sts,
            {current_rev, update_rev} | {labels_of(p).get(REVISION_HASH, "") for p in live},
        )


def _ordinal(set_name: str, pod_name: str) -> int | None:
    prefix = f"{set_name}-"
    if not pod_name.startswith(prefix):
        return None
    tail = pod_name[len(prefix) :]
    return int(tail) if tail.isdigit() else None


_DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def _daemon_node(pod: Obj) -> str | None:
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return None


class DaemonSetController(Controller):
    """One pod per eligible Ready node, replaced within maxUnavailable on a new template."""

    watches = ("apps/daemonsets", "pods", "nodes", "apps/controllerrevisions")

    def handlers(self) -> dict[str, Handler]:
        return {"daemonset": self.reconcile}

    def observe(self, change: Change) -> None:
        if change.rt.key == "nodes":
            daemonsets, _ = self.ctx.store.list(self.ctx.daemonsets)
            for ds in daemonsets:
                m = meta(ds)
                self.ctx.enqueue(Key("daemonset", str(m.get("namespace")), str(m.get("name"))))
            return
        if change.rt.key != "apps/daemonsets":
            for key in controller_keys(change, "DaemonSet", "daemonset"):
                self.ctx.enqueue(key)
            return
        m = meta(change.new)
        self.ctx.enqueue(Key("daemonset", str(m.get("namespace")), str(m.get("name"))))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        ds = ctx.get(ctx.daemonsets, key.namespace, key.name)
        if ds is None or is_deleting(ds):
            return
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        _, h = ensure_revision(ctx, ctx.daemonsets, ds, template)
        probe = {
            "spec": {**(template.get("spec") or {}), "tolerations": self._tolerations(template)}
        }
        eligible = [str(meta(n).get("name")) for n in ctx.ready_nodes() if pod_fits_node(probe, n)]
        by_node: dict[str, list[Obj]] = {}
        for pod in ctx.controlled(ds, ctx.pods):
            if is_deleting(pod):
                continue
            if pod_is_terminal(pod):
                ctx.delete(ctx.pods, key.namespace, str(meta(pod).get("name")))
                continue
            by_node.setdefault(_daemon_node(pod) or "", []).append(pod)
        for node in list(by_node):
            if node not in eligible:
                for pod in by_node.pop(node):
                    ctx.delete(ctx.pods, key.namespace, str(meta(pod).get("name")))
        for node in eligible:
            pods = sorted(by_node.get(node, []), key=_created)
            for extra in pods[1:]:
                ctx.delete(ctx.pods, key.namespace, str(meta(extra).get("name")))
            if pods:
                by_node[node] = pods[:1]
                continue
            created = self._create_pod(ds, template, node, h)
            if created is not None:
                by_node[node] = [created]
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            self._roll(ds, by_node, eligible, h)
        self._status(ds, by_node, eligible, h)
        prune_revisions(ctx, ds, {f"{key.name}-{h}"})

    def _tolerations(self, template: Obj) -> list[Obj]:
        own = list((template.get("spec") or {}).get("tolerations") or [])
        keys = {t.get("key") for t in own}
        return own + [clone(t) for t in _DAEMON_TOLERATIONS if t["key"] not in keys]

    def _create_pod(self, ds: Obj, template: Obj, node: str, h: str) -> Obj | None:
        ctx = self.ctx
        m = meta(ds)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        prefix = f"{name}-"
        pod = pod_from_template(
            template,
            namespace=ns,
            name=ctx.generate_name(ctx.pods, ns, prefix),
            owner=owner_reference(ctx.daemonsets, ds),
            extra_labels={REVISION_HASH: h, "pod-template-generation": str(m.get("generation", 1))},
            generate_name=prefix,
        )
        pod_spec = pod["spec"]
        pod_spec["tolerations"] = self._tolerations(template)
        affinity = pod_spec.setdefault("affinity", {})
        affinity.setdefault("nodeAffinity", {})[
            "requiredDuringSchedulingIgnoredDuringExecution"
        ] = {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        }
        created = ctx.create(ctx.pods, pod)
        if created is not None:
            ctx.record(
                ds,
                "SuccessfulCreate",
                f"Created pod: {meta(created).get('name')}",
                component="daemonset-controller",
            )
        return created

    def _roll(self, ds: Obj, by_node: dict[str, list[Obj]], eligible: list[str], h: str) -> None:
        ctx = self.ctx
        ru = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {}
        max_unavailable = max(
            int_or_percent(ru.get("maxUnavailable", 1), len(eligible), round_up=True), 1
        )
        unavailable = sum(
            1 for n in eligible if not any(pod_is_ready(p) for p in by_node.get(n, []))
        )
        budget = max_unavailable - unavailable
        stale = [
            (n, p)
            for n in eligible
            for p in by_node.get(n, [])
            if labels_of(p).get(REVISION_HASH) != h
        ]
        for node, pod in sorted(stale, key=lambda np: pod_is_ready(np[1])):
            if pod_is_ready(pod):
                if budget <= 0:
                    break
                budget -= 1
            ctx.delete(ctx.pods, str(meta(pod).get("namespace")), str(meta(pod).get("name")))
            by_node[node] = []

    def _status(self, ds: Obj, by_node: dict[str, list[Obj]], eligible: list[str], h: str) -> None:
        ctx = self.ctx
        wall = ctx.wall()
        min_ready = get_int((ds.get("spec") or {}).get("minReadySeconds"), 0)
        scheduled = [by_node[n][0] for n in eligible if by_node.get(n)]
        available = 0
        for pod in scheduled:
            ok, wait = pod_available(pod, min_ready, wall)
            available += ok
            if wait is not None:
                m = meta(ds)
                ctx.enqueue_after(
                    wait, Key("daemonset", str(m.get("namespace")), str(m.get("name")))
                )
        status: Obj = {
            "currentNumberScheduled": len(scheduled),
            "desiredNumberScheduled": len(eligible),
            "numberMisscheduled": 0,
            "numberReady": sum(pod_is_ready(p) for p in scheduled),
            "observedGeneration": meta(ds).get("generation", 1),
            "updatedNumberScheduled": sum(labels_of(p).get(REVISION_HASH) == h for p in scheduled),
            "numberAvailable": available,
            "numberUnavailable": len(eligible) - available,
        }
        _omit_zero(status, "updatedNumberScheduled", "numberAvailable", "numberUnavailable")
        ctx.update_status(ctx.daemonsets, ds, status)
