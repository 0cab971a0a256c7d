"""The embedded cluster's resource registry: which kinds it serves and how.

Owns the table of built-in resource types (group, versions, plural, kind, scope,
short names, subresources), the dynamic registration of custom resources when their
CustomResourceDefinition is written, and the discovery documents derived from it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    """One served resource (a REST collection), independent of the version served."""

    group: str
    versions: tuple[str, ...]
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ("status",)
    categories: tuple[str, ...] = ()
    builtin: bool = True
    # For custom resources: the CRD's per-version list types are unknown to us, so
    # strategic merge patch is refused (415) as the real server does.
    crd_name: str = ""
    list_kind: str = ""
    # Verbs served (discovery); empty means all of VERBS. The review kinds are create-only
    # and never stored.
    verbs: tuple[str, ...] = ()

    @property
    def stored(self) -> bool:
        return not self.verbs or "get" in self.verbs

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def version(self) -> str:
        return self.versions[0]

    def api_version(self, version: str | None = None) -> str:
        v = version or self.version
        return f"{self.group}/{v}" if self.group else v

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"


def _rt(
    group: str,
    versions: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: str = "",
    sub: str = "status",
    cat: str = "",
    verbs: str = "",
) -> ResourceType:
    return ResourceType(
        group=group,
        versions=tuple(versions.split(",")),
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=tuple(s for s in short.split(",") if s),
        subresources=tuple(s for s in sub.split(",") if s),
        categories=tuple(c for c in cat.split(",") if c),
        verbs=tuple(v for v in verbs.split(",") if v),
    )


BUILTIN: tuple[ResourceType, ...] = (
    _rt("", "v1", "namespaces", "Namespace", namespaced=False, short="ns", sub="status,finalize"),
    _rt("", "v1", "nodes", "Node", namespaced=False, short="no", sub="status"),
    _rt(
        "",
        "v1",
        "pods",
        "Pod",
        short="po",
        sub="status,log,binding,eviction,ephemeralcontainers",
        cat="all",
    ),
    _rt("", "v1", "services", "Service", short="svc", sub="status,proxy", cat="all"),
    _rt("", "v1", "endpoints", "Endpoints", short="ep", sub=""),
    _rt("", "v1", "configmaps", "ConfigMap", short="cm", sub=""),
    _rt("", "v1", "secrets", "Secret", sub=""),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", short="sa", sub="token"),
    _rt("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short="pvc"),
    _rt("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False, short="pv"),
    _rt("", "v1", "events", "Event", short="ev", sub=""),
    _rt("", "v1", "limitranges", "LimitRange", short="limits", sub=""),
    _rt("", "v1", "resourcequotas", "ResourceQuota", short="quota"),
    _rt(
        "", "v1", "replicationcontrollers", "ReplicationController", short="rc", sub="status,scale"
    ),
    _rt("", "v1", "podtemplates", "PodTemplate", sub=""),
    _rt("apps", "v1", "deployments", "Deployment", short="deploy", sub="status,scale", cat="all"),
    _rt("apps", "v1", "replicasets", "ReplicaSet", short="rs", sub="status,scale", cat="all"),
    _rt("apps", "v1", "statefulsets", "StatefulSet", short="sts", sub="status,scale", cat="all"),
    _rt("apps", "v1", "daemonsets", "DaemonSet", short="ds", cat="all"),
    _rt("apps", "v1", "controllerrevisions", "ControllerRevision", sub=""),
    _rt("batch", "v1", "jobs", "Job", cat="all"),
    _rt("batch", "v1", "cronjobs", "CronJob", short="cj", cat="all"),
    _rt("networking.k8s.io", "v1", "ingresses", "Ingress", short="ing"),
    _rt("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False, sub=""),
    _rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short="netpol", sub=""),
    _rt("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", sub=""),
    _rt("autoscaling", "v2,v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short="hpa"),
    _rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short="pdb"),
    _rt("rbac.authorization.k8s.io", "v1", "roles", "Role", sub=""),
    _rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", sub=""),
    _rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False, sub=""),
    _rt(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
        sub="",
    ),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        namespaced=False,
        sub="",
    ),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        namespaced=False,
        sub="",
    ),
    _rt(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        namespaced=False,
        short="pc",
        sub="",
    ),
    _rt(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        namespaced=False,
        short="sc",
        sub="",
    ),
    _rt("coordination.k8s.io", "v1", "leases", "Lease", sub=""),
    _rt("events.k8s.io", "v1", "events", "Event", short="ev", sub=""),
    _rt("storage.k8s.io", "v1", "csidrivers", "CSIDriver", namespaced=False, sub=""),
    _rt("storage.k8s.io", "v1", "csinodes", "CSINode", namespaced=False, sub=""),
    _rt("storage.k8s.io", "v1", "volumeattachments", "VolumeAttachment", namespaced=False),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        namespaced=False,
    ),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        namespaced=False,
        sub="",
    ),
    _rt("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", namespaced=False, sub=""),
    _rt("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", "FlowSchema", namespaced=False),
    _rt(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "prioritylevelconfigurations",
        "PriorityLevelConfiguration",
        namespaced=False,
    ),
    _rt(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        namespaced=False,
        short="csr",
        sub="status,approval",
    ),
    _rt("apiregistration.k8s.io", "v1", "apiservices", "APIService", namespaced=False),
    _rt(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
        namespaced=False,
        sub="",
        verbs="create",
    ),
    _rt(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        namespaced=False,
        sub="",
        verbs="create",
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        namespaced=False,
        sub="",
        verbs="create",
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        namespaced=False,
        sub="",
        verbs="create",
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        namespaced=False,
        sub="",
        verbs="create",
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        sub="",
        verbs="create",
    ),
    _rt(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short="crd,crds",
    ),
)


@dataclass
class Registry:
    """Thread-safe lookup of served resource types, built-ins plus CRD-defined ones."""

    _types: dict[str, ResourceType] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        for rt in BUILTIN:
            self._types[rt.key] = rt

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def get(self, group: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get(f"{group}/{plural}" if group else plural)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self.get(group, plural)
        if rt is None or version not in rt.versions:
            return None
        return rt

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        with self._lock:
            for rt in self._types.values():
                if rt.group == group and rt.kind == kind:
                    return rt
        return None

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred first, in a stable order."""
        out: dict[str, list[str]] = {}
        with self._lock:
            for rt in self._types.values():
                versions = out.setdefault(rt.group, [])
                for v in rt.versions:
                    if v not in versions:
                        versions.append(v)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        with self._lock:
            return [
                rt for rt in self._types.values() if rt.group == group and version in rt.versions
            ]

    def register_crd(self, crd: dict[str, Any]) -> ResourceType | None:
        """Serve the custom resource a CRD defines; returns the type, or None if invalid."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group")
        plural = names.get("plural")
        kind = names.get("kind")
        if not (isinstance(group, str) and isinstance(plural, str) and isinstance(kind, str)):
            return None
        served = [
            v.get("name")
            for v in spec.get("versions") or []
            if isinstance(v, dict) and v.get("served", True) and isinstance(v.get("name"), str)
        ]
        storage = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
        ordered = [v for v in storage if v in served] + [v for v in served if v not in storage]
        if not ordered:
            return None
        subresources: list[str] = []
        for v in spec.get("versions") or []:
            sub = v.get("subresources") or {}
            if "status" in sub and "status" not in subresources:
                subresources.append("status")
            if "scale" in sub and "scale" not in subresources:
                subresources.append("scale")
        rt = ResourceType(
            group=group,
            versions=tuple(ordered),
            plural=plural,
            singular=names.get("singular") or kind.lower(),
            kind=kind,
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            subresources=tuple(subresources),
            categories=tuple(names.get("categories") or ()),
            builtin=False,
            crd_name=str((crd.get("metadata") or {}).get("name", "")),
            list_kind=names.get("listKind") or "",
        )
        with self._lock:
            self._types[rt.key] = rt
        return rt

    def unregister_crd(self, crd_name: str) -> ResourceType | None:
        with self._lock:
            for key, rt in list(self._types.items()):
                if rt.crd_name == crd_name:
                    del self._types[key]
                    return rt
        return None


def api_resource_list(group: str, version: str, types: Iterable[ResourceType]) -> dict[str, Any]:
    """The legacy discovery document of one group version (`/api/v1`, `/apis/G/V`)."""
    resources: list[dict[str, Any]] = []
    for rt in sorted(types, key=lambda t: t.plural):
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs) if rt.verbs else VERBS,
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "log":
                sub_entry.update(kind="Pod", verbs=["get"])
            elif sub in ("binding", "eviction"):
                sub_entry.update(
                    kind="Binding" if sub == "binding" else "Eviction",
                    verbs=["create"],
                )
                if sub == "eviction":
                    sub_entry.update(group="policy", version="v1")
            elif sub == "proxy":
                sub_entry.update(
                    kind="ServiceProxyOptions",
                    verbs=["create", "delete", "get", "patch", "update"],
                )
            elif sub == "finalize":
                sub_entry.update(verbs=["update"])
            elif sub == "token":
                sub_entry.update(
                    group="authentication.k8s.io",
                    version="v1",
                    kind="TokenRequest",
                    verbs=["create"],
                )
            elif sub == "ephemeralcontainers":
                sub_entry.update(verbs=["get", "patch", "update"])
            resources.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def api_group(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    # The Python client compares preferredVersion with versions[] entries as dicts.
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": gvs,
        "preferredVersion": dict(gvs[0]),
    }
