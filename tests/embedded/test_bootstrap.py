"""The objects every cluster has and the controllers that keep them (fake clock, no HTTP)."""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded import bootstrap
from pytest_devloop.embedded.auth import TokenSigner
from pytest_devloop.embedded.controllers import ControllerManager, SimulationConfig
from pytest_devloop.embedded.store import Store, clone, meta
from pytest_devloop.k8s.resources import Registry

EPOCH = 1_700_000_000.0
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def sim() -> tuple[Store, ControllerManager, Clock]:
    clock = Clock()
    store = Store(Registry(), clock=lambda: EPOCH + clock.t)
    mgr = ControllerManager(
        store,
        SimulationConfig(seed=7),
        clock=clock,
        strict=True,
        extra=[bootstrap.factory(CA, TokenSigner())],
    )
    mgr.bootstrap()
    mgr.run_until_idle()
    return store, mgr, clock


def advance(mgr: ControllerManager, clock: Clock, seconds: float) -> None:
    end = clock.t + seconds
    while True:
        mgr.run_until_idle()
        wait = mgr.next_timer_in()
        if wait is None or clock.t + wait > end:
            break
        clock.t += wait
    clock.t = end
    mgr.run_until_idle()


def get(store: Store, group: str, plural: str, ns: str, name: str) -> Any:
    rt = store.registry.get(group, plural)
    assert rt is not None
    return store.get(rt, ns, name)


def test_leases_and_heartbeats_are_renewed() -> None:
    store, mgr, clock = sim()
    lease = get(store, "coordination.k8s.io", "leases", "kube-node-lease", "devloop-node-1")
    node = get(store, "", "nodes", "", "devloop-node-1")
    renewed = lease["spec"]["renewTime"]
    beats = {c["type"]: c.get("lastHeartbeatTime") for c in node["status"]["conditions"]}
    advance(mgr, clock, bootstrap.LEASE_RENEW_INTERVAL + 1)
    later = get(store, "coordination.k8s.io", "leases", "kube-node-lease", "devloop-node-1")
    assert later["spec"]["renewTime"] > renewed
    advance(mgr, clock, bootstrap.NODE_STATUS_INTERVAL)
    node = get(store, "", "nodes", "", "devloop-node-1")
    assert all(
        c.get("lastHeartbeatTime") and c["lastHeartbeatTime"] > (beats[c["type"]] or "")
        for c in node["status"]["conditions"]
    )


def test_root_ca_in_every_namespace_and_restored() -> None:
    store, mgr, _ = sim()
    ns_rt = store.registry.get("", "namespaces")
    cm_rt = store.registry.get("", "configmaps")
    assert ns_rt is not None and cm_rt is not None
    store.create(ns_rt, {"metadata": {"name": "team"}})
    mgr.run_until_idle()
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease", "team"):
        assert get(store, "", "configmaps", ns, bootstrap.ROOT_CA)["data"] == {
            "ca.crt": CA.decode()
        }
    changed = clone(get(store, "", "configmaps", "team", bootstrap.ROOT_CA))
    changed["data"] = {"ca.crt": "tampered"}
    store.update(cm_rt, changed)
    mgr.run_until_idle()
    assert get(store, "", "configmaps", "team", bootstrap.ROOT_CA)["data"]["ca.crt"] == CA.decode()
    store.delete(cm_rt, "team", bootstrap.ROOT_CA)
    mgr.run_until_idle()
    assert get(store, "", "configmaps", "team", bootstrap.ROOT_CA) is not None


def test_cluster_role_aggregation_follows_labelled_roles() -> None:
    store, mgr, _ = sim()
    roles = store.registry.get("rbac.authorization.k8s.io", "clusterroles")
    assert roles is not None
    rule = {"apiGroups": ["demo.invalid"], "resources": ["widgets"], "verbs": ["get"]}
    store.create(
        roles,
        {
            "metadata": {
                "name": "widgets",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"},
            },
            "rules": [rule],
        },
    )
    mgr.run_until_idle()
    for name, has in (("edit", True), ("admin", True), ("view", False)):
        rules = get(store, "rbac.authorization.k8s.io", "clusterroles", "", name)["rules"]
        assert (rule in rules) is has, name
    store.delete(roles, None, "widgets")
    mgr.run_until_idle()
    assert rule not in get(store, "rbac.authorization.k8s.io", "clusterroles", "", "admin")["rules"]
    svc = get(store, "", "services", "kube-system", "kube-dns")
    assert svc["spec"]["clusterIP"] == "127.1.0.10"
    assert meta(svc)["labels"]["k8s-app"] == "kube-dns"
