"""What keeps a pod from being scheduled or started on a real cluster, found from the store.

Owns two questions the simulated kubelet asks before it lets a pod run:

- `unschedulable_reason`: a PersistentVolumeClaim the pod mounts does not exist, or no
  Ready node has the CPU, memory or pod slots its requests need once the pods already bound
  there are counted (`0/1 nodes are available: 1 Insufficient cpu.`). The pod stays
  `Pending` with `PodScheduled=False/Unschedulable` and a `FailedScheduling` event.
- `missing_dependency`: a ConfigMap or Secret the pod mounts (`FailedMount`, the containers
  stay `ContainerCreating`) or reads into its environment (`CreateContainerConfigError`)
  does not exist, or lacks the key, and the reference is not `optional`.

Both are recomputed whenever a pod is reconciled, and the kubelet re-queues blocked pods
when a ConfigMap, Secret or PersistentVolumeClaim of their namespace changes, so a pod
starts as soon as what it waits for appears.

Containers do not run here, so an object that a Job's code would create on a real cluster
(ingress-nginx's `kube-webhook-certgen` writes the admission Secret its controller
mounts; Argo CD's `redis-secret-init` writes `argocd-redis`) never appears. A ConfigMap
or Secret is therefore taken as present when a Job of the namespace names it in its
command, arguments or environment (`job_mentions`), or when a Job's ServiceAccount may
create that kind in the namespace (`job_may_create`); the kubelet says so in an Event.
The simulation cannot tell what the Job's code writes, so it does not block.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pytest_devloop.embedded.validation.rules import quantity

Obj = dict[str, Any]
# (kind, namespace, name) -> the stored object or None
Lookup = Callable[[str, str, str], Obj | None]


@dataclass(frozen=True)
class Missing:
    """Why a pod cannot start: `FailedMount` or `CreateContainerConfigError`, and the message."""

    reason: str
    message: str
    volume: str = ""
    kind: str = ""
    name: str = ""


def _volume_refs(spec: Obj) -> Iterable[tuple[str, str, str, bool]]:
    """(volume name, kind, object name, optional) for every ConfigMap/Secret a volume reads."""
    for vol in spec.get("volumes") or []:
        if not isinstance(vol, dict):
            continue
        vname = str(vol.get("name", ""))
        cm = vol.get("configMap")
        if isinstance(cm, dict):
            yield vname, "configmap", str(cm.get("name", "")), bool(cm.get("optional"))
        secret = vol.get("secret")
        if isinstance(secret, dict):
            yield vname, "secret", str(secret.get("secretName", "")), bool(secret.get("optional"))
        projected = vol.get("projected")
        if isinstance(projected, dict):
            for source in projected.get("sources") or []:
                for key, kind in (("configMap", "configmap"), ("secret", "secret")):
                    ref = (source or {}).get(key)
                    if isinstance(ref, dict):
                        yield vname, kind, str(ref.get("name", "")), bool(ref.get("optional"))


_KIND_TITLE = {"configmap": "ConfigMap", "secret": "Secret"}


def missing_dependency(pod: Obj, lookup: Lookup) -> Missing | None:
    spec = pod.get("spec") or {}
    ns = str((pod.get("metadata") or {}).get("namespace", ""))
    for vname, kind, name, optional in _volume_refs(spec):
        if name and not optional and lookup(kind, ns, name) is None:
            return Missing(
                "FailedMount",
                f'MountVolume.SetUp failed for volume "{vname}" : {kind} "{name}" not found',
                vname,
                kind,
                name,
            )
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    for c in containers:
        if not isinstance(c, dict):
            continue
        for env in c.get("env") or []:
            source = (env or {}).get("valueFrom") or {}
            for key, kind in (("configMapKeyRef", "configmap"), ("secretKeyRef", "secret")):
                ref = source.get(key)
                if not isinstance(ref, dict) or ref.get("optional"):
                    continue
                name = str(ref.get("name", ""))
                obj = lookup(kind, ns, name)
                if obj is None:
                    return Missing(
                        "CreateContainerConfigError", f'{kind} "{name}" not found', "", kind, name
                    )
                data_key = str(ref.get("key", ""))
                if isinstance(obj, Assumed):
                    continue
                if data_key not in (obj.get("data") or {}) and data_key not in (
                    obj.get("binaryData") or {}
                ):
                    return Missing(
                        "CreateContainerConfigError",
                        f"couldn't find key {data_key} in {_KIND_TITLE[kind]} {ns}/{name}",
                    )
        for source in c.get("envFrom") or []:
            for key, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
                ref = (source or {}).get(key)
                if not isinstance(ref, dict) or ref.get("optional"):
                    continue
                name = str(ref.get("name", ""))
                if lookup(kind, ns, name) is None:
                    return Missing(
                        "CreateContainerConfigError", f'{kind} "{name}" not found', "", kind, name
                    )
    return None


class Assumed(dict[str, Any]):
    """An object taken as present because a Job would create it (see the module doc)."""


def job_mentions(job: Obj) -> set[str]:
    """Words a Job's containers pass in command, args and env values (names it may create)."""
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    words: set[str] = set()
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if not isinstance(c, dict):
            continue
        texts = [str(t) for t in (c.get("command") or []) + (c.get("args") or [])]
        texts += [str((e or {}).get("value", "")) for e in c.get("env") or []]
        for text in texts:
            words.update(w for w in re.split(r"[\s=,:;\"']+", text) if w)
    return words


_WRITE_VERBS = frozenset({"create", "update", "patch", "*"})


def _rule_allows(rule: Obj, resource: str) -> bool:
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    verbs = rule.get("verbs") or []
    return (
        ("" in groups or "*" in groups)
        and (resource in resources or "*" in resources)
        and bool(_WRITE_VERBS & set(verbs))
        and not rule.get("resourceNames")
    )


def job_may_create(
    job: Obj, bindings: Iterable[Obj], role_of: Callable[[Obj], Obj | None]
) -> set[str]:
    """Which of `configmap`/`secret` the Job's ServiceAccount may write in its namespace.

    `bindings` are the RoleBindings of the namespace and the ClusterRoleBindings;
    `role_of(roleRef-holding binding)` finds the Role or ClusterRole it grants.
    """
    ns = str((job.get("metadata") or {}).get("namespace", ""))
    pod_spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    sa = str(pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default")
    out: set[str] = set()
    for binding in bindings:
        subjects = binding.get("subjects") or []
        if not any(
            isinstance(s, dict)
            and s.get("kind") == "ServiceAccount"
            and s.get("name") == sa
            and (s.get("namespace") or (binding.get("metadata") or {}).get("namespace")) == ns
            for s in subjects
        ):
            continue
        role = role_of(binding)
        for rule in (role or {}).get("rules") or []:
            if not isinstance(rule, dict):
                continue
            for kind, resource in (("secret", "secrets"), ("configmap", "configmaps")):
                if _rule_allows(rule, resource):
                    out.add(kind)
    return out


def assuming(
    lookup: Lookup,
    mentioned: Callable[[str], set[str]],
    writable: Callable[[str], set[str]] = lambda ns: set(),
) -> Lookup:
    """`lookup`, with the ConfigMaps and Secrets a Job of the namespace could have written
    (it names them, or may create that kind) taken as present."""

    def wrapped(kind: str, ns: str, name: str) -> Obj | None:
        found = lookup(kind, ns, name)
        if (
            found is None
            and kind in ("configmap", "secret")
            and (name in mentioned(ns) or kind in writable(ns))
        ):
            return Assumed()
        return found

    return wrapped


def pod_requests(pod: Obj) -> dict[str, float]:
    """The pod's effective requests: the sum over containers, at least any init container."""
    spec = pod.get("spec") or {}
    total: dict[str, float] = {}
    for c in spec.get("containers") or []:
        for res, qty in (((c or {}).get("resources") or {}).get("requests") or {}).items():
            value = quantity(qty)
            if value is not None:
                total[res] = total.get(res, 0.0) + value
    for c in spec.get("initContainers") or []:
        for res, qty in (((c or {}).get("resources") or {}).get("requests") or {}).items():
            value = quantity(qty)
            if value is not None:
                total[res] = max(total.get(res, 0.0), value)
    for res, qty in (spec.get("overhead") or {}).items():
        value = quantity(qty)
        if value is not None:
            total[res] = total.get(res, 0.0) + value
    return total


def insufficient(pod: Obj, node: Obj, bound: Iterable[Obj]) -> list[str]:
    """The resources `node` lacks for `pod`, given the pods already `bound` to it."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    want = pod_requests(pod)
    used: dict[str, float] = {}
    count = 0
    for other in bound:
        count += 1
        for res, value in pod_requests(other).items():
            used[res] = used.get(res, 0.0) + value
    out = []
    pods_cap = quantity(allocatable.get("pods", "110"))
    if pods_cap is not None and count + 1 > pods_cap:
        out.append("pods")
    for res in sorted(want):
        cap = quantity(allocatable.get(res)) if res in allocatable else None
        if cap is None:
            if want[res] > 0 and res not in ("cpu", "memory", "ephemeral-storage"):
                out.append(res)
            continue
        if used.get(res, 0.0) + want[res] > cap + 1e-9:
            out.append(res)
    return out


def claim_missing(pod: Obj, lookup: Lookup) -> str | None:
    ns = str((pod.get("metadata") or {}).get("namespace", ""))
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        claim = (vol or {}).get("persistentVolumeClaim")
        if isinstance(claim, dict):
            name = str(claim.get("claimName", ""))
            if lookup("persistentvolumeclaim", ns, name) is None:
                return f'persistentvolumeclaim "{name}" not found'
    return None


def unschedulable_message(total: int, reasons: dict[str, int]) -> str:
    """`0/N nodes are available: 1 Insufficient cpu, 1 ...` as the scheduler reports it."""
    parts = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
    return (
        f"0/{total} nodes are available: {parts}. preemption: 0/{total} nodes are available: "
        f"{total} No preemption victims found for incoming pod."
    )
