"""The objects every cluster has, and the controllers that keep them so.

Owns what charts and operators find on any real cluster beyond namespaces and nodes:

- the `kube-root-ca.crt` ConfigMap in every namespace (the cluster CA, as the root CA
  publisher keeps it: re-created when deleted, restored when changed);
- the default RBAC objects: `cluster-admin`, `admin`, `edit`, `view`, the
  `system:aggregate-to-*` roles and a few `system:*` roles and bindings, with ClusterRole
  aggregation (`aggregationRule`) computed as the aggregation controller does;
- the `kube-dns` Service in `kube-system` at the tenth address of the Service range;
- legacy service-account token Secrets (`kubernetes.io/service-account-token`) filled with
  a signed token, the CA and the namespace;
- living nodes: each node's Lease renewed every 10 s and its conditions' heartbeats every
  `NODE_STATUS_INTERVAL`, as a kubelet does.
"""

from __future__ import annotations

import base64
import ipaddress
import time
from collections.abc import Callable

from pytest_devloop.embedded.auth import DEFAULT_AUDIENCES, TokenSigner
from pytest_devloop.embedded.defaults import CLUSTER_IP_RANGE
from pytest_devloop.embedded.reconcile import Context, Controller, Handler, Key
from pytest_devloop.embedded.store import Change, Obj, clone, meta
from pytest_devloop.k8s.selectors import labels_match, requirements_of

ROOT_CA = "kube-root-ca.crt"
LEASE_RENEW_INTERVAL = 10.0  # the kubelet's: a quarter of the 40 s lease duration
NODE_STATUS_INTERVAL = 60.0  # heartbeats of the node conditions
_SA_TOKEN = "kubernetes.io/service-account-token"
_SA_NAME = "kubernetes.io/service-account.name"
_SA_UID = "kubernetes.io/service-account.uid"
_RBAC = "rbac.authorization.k8s.io"
_BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_VIEW_RESOURCES = [
    (
        "",
        [
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
            "pods/log",
            "pods/status",
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "persistentvolumeclaims/status",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
            "namespaces",
        ],
    ),
    (
        "apps",
        [
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
    ),
    ("autoscaling", ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    ("batch", ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    ("policy", ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    ("networking.k8s.io", ["ingresses", "ingresses/status", "networkpolicies"]),
    ("discovery.k8s.io", ["endpointslices"]),
]


def _rules(verbs: list[str], resources: list[tuple[str, list[str]]]) -> list[Obj]:
    return [{"apiGroups": [g], "resources": list(r), "verbs": list(verbs)} for g, r in resources]


def _role(
    name: str,
    rules: list[Obj] | None = None,
    aggregate_from: str = "",
    labels: dict[str, str] | None = None,
) -> Obj:
    obj: Obj = {
        "metadata": {
            "name": name,
            "labels": {**_BOOTSTRAP_LABELS, **(labels or {})},
            "annotations": dict(_AUTOUPDATE),
        },
        "rules": rules or [],
    }
    if aggregate_from:
        obj["aggregationRule"] = {
            "clusterRoleSelectors": [
                {
                    "matchLabels": {
                        f"rbac.authorization.k8s.io/aggregate-to-{aggregate_from}": "true"
                    }
                }
            ]
        }
    return obj


def default_cluster_roles() -> list[Obj]:
    """The default ClusterRoles (a representative subset of kube-apiserver's)."""
    view = _rules(_READ, _VIEW_RESOURCES)
    edit = [
        *_rules(_WRITE, _VIEW_RESOURCES),
        {
            "apiGroups": [""],
            "resources": [
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            "verbs": _READ + _WRITE,
        },
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    ]
    admin = [
        {"apiGroups": [_RBAC], "resources": ["rolebindings", "roles"], "verbs": _READ + _WRITE},
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["localsubjectaccessreviews"],
            "verbs": ["create"],
        },
    ]
    return [
        _role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        _role("admin", aggregate_from="admin"),
        _role("edit", aggregate_from="edit", labels={f"{_RBAC}/aggregate-to-admin": "true"}),
        _role("view", aggregate_from="view", labels={f"{_RBAC}/aggregate-to-edit": "true"}),
        _role("system:aggregate-to-admin", admin, labels={f"{_RBAC}/aggregate-to-admin": "true"}),
        _role("system:aggregate-to-edit", edit, labels={f"{_RBAC}/aggregate-to-edit": "true"}),
        _role("system:aggregate-to-view", view, labels={f"{_RBAC}/aggregate-to-view": "true"}),
        _role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"],
                    "verbs": ["create"],
                },
            ],
        ),
        _role(
            "system:discovery",
            [
                {
                    "nonResourceURLs": [
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/healthz",
                        "/livez",
                        "/openapi",
                        "/openapi/*",
                        "/readyz",
                        "/version",
                        "/version/",
                    ],
                    "verbs": ["get"],
                }
            ],
        ),
        _role(
            "system:public-info-viewer",
            [
                {
                    "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"],
                }
            ],
        ),
        _role(
            "system:service-account-issuer-discovery",
            [
                {
                    "nonResourceURLs": ["/.well-known/openid-configuration", "/openid/v1/jwks"],
                    "verbs": ["get"],
                }
            ],
        ),
    ]


def default_cluster_role_bindings() -> list[Obj]:
    def binding(name: str, group: str) -> Obj:
        return {
            "metadata": {
                "name": name,
                "labels": dict(_BOOTSTRAP_LABELS),
                "annotations": dict(_AUTOUPDATE),
            },
            "roleRef": {"apiGroup": _RBAC, "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": _RBAC, "kind": "Group", "name": group}],
        }

    return [
        binding("cluster-admin", "system:masters"),
        binding("system:basic-user", "system:authenticated"),
        binding("system:discovery", "system:authenticated"),
        binding("system:public-info-viewer", "system:authenticated"),
        binding("system:service-account-issuer-discovery", "system:serviceaccounts"),
    ]


def kube_dns_service() -> Obj:
    network = ipaddress.IPv4Network(CLUSTER_IP_RANGE)
    return {
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {
                "k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS",
            },
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "clusterIP": str(network.network_address + 10),
            "selector": {"k8s-app": "kube-dns"},
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }


def _rfc3339(seconds: float, micros: bool = False) -> str:
    if micros:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
            f".{int(seconds % 1 * 1_000_000):06d}Z"
        )
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class ClusterObjects(Controller):
    """Keeps the objects every cluster has: root CA ConfigMaps, RBAC, tokens, heartbeats."""

    watches = (
        "namespaces",
        "configmaps",
        "secrets",
        f"{_RBAC}/clusterroles",
        "nodes",
        "apiregistration.k8s.io/apiservices",
    )

    def __init__(self, ctx: Context, ca_pem: bytes | None, signer: TokenSigner) -> None:
        super().__init__(ctx)
        self.ca_pem = (ca_pem or b"").decode()
        self.signer = signer
        self.configmaps = ctx.rt("", "configmaps")
        self.secrets = ctx.rt("", "secrets")
        self.leases = ctx.rt("coordination.k8s.io", "leases")
        self.clusterroles = ctx.rt(_RBAC, "clusterroles")
        self.bindings = ctx.rt(_RBAC, "clusterrolebindings")

    def handlers(self) -> dict[str, Handler]:
        return {
            "rootca": self.ensure_root_ca,
            "satoken": self.fill_token,
            "aggregate": self.aggregate,
            "lease": self.renew_lease,
            "nodestatus": self.heartbeat,
            "apiservice": self.apiservice_status,
        }

    # -- startup -----------------------------------------------------------------------

    def bootstrap(self) -> None:
        ctx = self.ctx
        for role in default_cluster_roles():
            if ctx.get(self.clusterroles, "", role["metadata"]["name"]) is None:
                ctx.create(self.clusterroles, role)
        for binding in default_cluster_role_bindings():
            if ctx.get(self.bindings, "", binding["metadata"]["name"]) is None:
                ctx.create(self.bindings, binding)
        if ctx.get(ctx.services, "kube-system", "kube-dns") is None:
            ctx.create(ctx.services, kube_dns_service())
        for ns in ctx.store.list(ctx.namespaces)[0]:
            self.ensure_root_ca(Key("rootca", str(meta(ns).get("name")), ROOT_CA))
        for role in ctx.store.list(self.clusterroles)[0]:
            if role.get("aggregationRule"):
                self.aggregate(Key("aggregate", "", str(meta(role).get("name"))))
        for node in ctx.store.list(ctx.nodes)[0]:
            name = str(meta(node).get("name"))
            ctx.enqueue_after(LEASE_RENEW_INTERVAL, Key("lease", "kube-node-lease", name))
            ctx.enqueue_after(NODE_STATUS_INTERVAL, Key("nodestatus", "", name))

    # -- changes -----------------------------------------------------------------------

    def observe(self, change: Change) -> None:
        m = meta(change.new)
        name = str(m.get("name", ""))
        key = change.rt.key
        if key == "namespaces":
            if change.type != "DELETED" and not m.get("deletionTimestamp"):
                self.ctx.enqueue(Key("rootca", name, ROOT_CA))
        elif key == "configmaps":
            if name == ROOT_CA:
                self.ctx.enqueue(Key("rootca", str(m.get("namespace", "")), ROOT_CA))
        elif key == "secrets":
            if change.type != "DELETED" and change.new.get("type") == _SA_TOKEN:
                self.ctx.enqueue(Key("satoken", str(m.get("namespace", "")), name))
        elif key == self.clusterroles.key:
            for role in self.ctx.store.list(self.clusterroles)[0]:
                if role.get("aggregationRule") and meta(role).get("name") != name:
                    self.ctx.enqueue(Key("aggregate", "", str(meta(role).get("name"))))
            if change.type != "DELETED" and change.new.get("aggregationRule"):
                self.ctx.enqueue(Key("aggregate", "", name))
        elif key == "apiregistration.k8s.io/apiservices":
            if change.type != "DELETED":
                self.ctx.enqueue(Key("apiservice", "", name))
        elif key == "nodes" and change.type == "ADDED":
            self.ctx.enqueue_after(LEASE_RENEW_INTERVAL, Key("lease", "kube-node-lease", name))
            self.ctx.enqueue_after(NODE_STATUS_INTERVAL, Key("nodestatus", "", name))

    # -- reconcilers -------------------------------------------------------------------

    def ensure_root_ca(self, key: Key) -> None:
        ctx = self.ctx
        ns = ctx.get(ctx.namespaces, "", key.namespace)
        if ns is None or meta(ns).get("deletionTimestamp"):
            return
        want = {"ca.crt": self.ca_pem}
        current = ctx.get(self.configmaps, key.namespace, ROOT_CA)
        if current is None:
            ctx.create(
                self.configmaps,
                {
                    "metadata": {
                        "name": ROOT_CA,
                        "namespace": key.namespace,
                        "annotations": {
                            "kubernetes.io/description": "Contains a CA bundle that can be "
                            "used to verify the kube-apiserver when using internal endpoints "
                            "such as the internal service IP or kubernetes.default.svc. No "
                            "other usage is guaranteed across distributions of Kubernetes "
                            "clusters."
                        },
                    },
                    "data": want,
                },
            )
        elif current.get("data") != want and not meta(current).get("deletionTimestamp"):
            fixed = clone(current)
            fixed["data"] = want
            ctx.update(self.configmaps, fixed)

    def fill_token(self, key: Key) -> None:
        ctx = self.ctx
        secret = ctx.get(self.secrets, key.namespace, key.name)
        if secret is None or secret.get("type") != _SA_TOKEN:
            return
        annotations = meta(secret).get("annotations") or {}
        sa = ctx.get(ctx.serviceaccounts, key.namespace, str(annotations.get(_SA_NAME, "")))
        if sa is None:
            return  # the token controller leaves it empty (a real one deletes it)
        data = secret.get("data") or {}
        if data.get("token") and data.get("namespace"):
            return
        sa_uid = str(meta(sa).get("uid", ""))
        token, _ = self.signer.service_account_token(
            key.namespace,
            str(meta(sa).get("name")),
            sa_uid,
            audiences=list(DEFAULT_AUDIENCES),
            expiration=None,
            bound={"kind": "Secret", "name": key.name, "uid": meta(secret).get("uid", "")},
        )
        filled = clone(secret)
        filled["data"] = {
            **data,
            "ca.crt": base64.b64encode(self.ca_pem.encode()).decode(),
            "namespace": base64.b64encode(key.namespace.encode()).decode(),
            "token": base64.b64encode(token.encode()).decode(),
        }
        meta(filled).setdefault("annotations", {})[_SA_UID] = sa_uid
        ctx.update(self.secrets, filled)

    def aggregate(self, key: Key) -> None:
        ctx = self.ctx
        role = ctx.get(self.clusterroles, "", key.name)
        if role is None or not role.get("aggregationRule"):
            return
        selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        matchers = [requirements_of(s) for s in selectors if isinstance(s, dict)]
        rules: list[Obj] = []
        for other in sorted(
            ctx.store.list(self.clusterroles)[0], key=lambda r: str(meta(r).get("name"))
        ):
            if meta(other).get("name") == key.name:
                continue
            labels = meta(other).get("labels") or {}
            if not any(m is not None and labels_match(m, labels) for m in matchers):
                continue
            for rule in other.get("rules") or []:
                if rule not in rules:
                    rules.append(rule)
        if role.get("rules") != rules:
            updated = clone(role)
            updated["rules"] = rules
            ctx.update(self.clusterroles, updated)

    def apiservice_status(self, key: Key) -> None:
        """Registrations are stored, not proxied: a service-backed one is never Available."""
        ctx = self.ctx
        rt = ctx.rt("apiregistration.k8s.io", "apiservices")
        svc = ctx.get(rt, "", key.name)
        if svc is None:
            return
        if (svc.get("spec") or {}).get("service"):
            status, reason, message = (
                "False",
                "NotProxied",
                "the embedded cluster stores APIService registrations but does not proxy "
                "to aggregated API servers",
            )
        else:
            status, reason, message = "True", "Local", "Local APIServices are always available"
        current = next(
            (
                c
                for c in (svc.get("status") or {}).get("conditions") or []
                if c.get("type") == "Available"
            ),
            None,
        )
        if current and (current.get("status"), current.get("reason")) == (status, reason):
            return
        condition = {
            "type": "Available",
            "status": status,
            "lastTransitionTime": _rfc3339(ctx.store.clock()),
            "reason": reason,
            "message": message,
        }
        ctx.update_status(rt, svc, {"conditions": [condition]})

    def renew_lease(self, key: Key) -> None:
        ctx = self.ctx
        if ctx.get(ctx.nodes, "", key.name) is None:
            return
        lease = ctx.get(self.leases, key.namespace, key.name)
        if lease is not None:
            renewed = clone(lease)
            renewed.setdefault("spec", {})["renewTime"] = _rfc3339(ctx.store.clock(), micros=True)
            ctx.update(self.leases, renewed)
        ctx.enqueue_after(LEASE_RENEW_INTERVAL, key)

    def heartbeat(self, key: Key) -> None:
        ctx = self.ctx
        node = ctx.get(ctx.nodes, "", key.name)
        if node is None:
            return
        now = _rfc3339(ctx.store.clock())
        status = clone(node.get("status") or {})
        for cond in status.get("conditions") or []:
            cond["lastHeartbeatTime"] = now
        ctx.update_status(ctx.nodes, node, status)
        ctx.enqueue_after(NODE_STATUS_INTERVAL, key)


def factory(ca_pem: bytes | None, signer: TokenSigner) -> Callable[[Context], Controller]:
    """What `ControllerManager(extra=...)` calls to add this controller."""

    def make(ctx: Context) -> Controller:
        return ClusterObjects(ctx, ca_pem, signer)

    return make
