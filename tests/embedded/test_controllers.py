"""The embedded cluster's simulated controllers, driven through the store (no HTTP).

Time is a fake clock shared by the store (object timestamps) and the controller manager
(timers); `Sim.settle` advances it from timer to timer, so nothing here sleeps except the
one test that measures the real background thread.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_devloop.embedded import errors
from pytest_devloop.embedded.controllers import ControllerManager, SimulationConfig
from pytest_devloop.embedded.defaults import apply_defaults
from pytest_devloop.embedded.jobs import CronSchedule
from pytest_devloop.embedded.store import Store, clone, meta
from pytest_devloop.k8s.resources import Registry, ResourceType

Obj = dict[str, Any]
EPOCH = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Sim:
    """A store plus controller manager on a fake clock, with the writes the server makes."""

    def __init__(self, **config: Any) -> None:
        self.clock = FakeClock()
        self.registry = Registry()
        self.store = Store(self.registry, clock=lambda: EPOCH + self.clock.t)
        config.setdefault("seed", 7)
        self.mgr = ControllerManager(
            self.store, SimulationConfig(**config), clock=self.clock, strict=True
        )
        self.mgr.bootstrap()
        self.mgr.run_until_idle()

    def rt(self, group: str, plural: str) -> ResourceType:
        rt = self.registry.get(group, plural)
        assert rt is not None
        return rt

    def settle(self, seconds: float = 5.0) -> None:
        """Run the controllers while `seconds` of fake time pass, timer by timer."""
        end = self.clock.t + seconds
        while True:
            self.mgr.run_until_idle()
            wait = self.mgr.next_timer_in()
            if wait is None or self.clock.t + wait > end:
                break
            self.clock.t += wait
        self.clock.t = end
        self.mgr.run_until_idle()

    def create(self, group: str, plural: str, obj: Obj) -> Obj:
        rt = self.rt(group, plural)
        obj = clone(obj)
        obj.setdefault("apiVersion", rt.api_version())
        obj.setdefault("kind", rt.kind)
        obj["metadata"].setdefault("namespace", "default") if rt.namespaced else None
        self.mgr.admit(rt, obj, None)
        return self.store.create(rt, obj)

    def update(self, group: str, plural: str, obj: Obj) -> Obj:
        rt = self.rt(group, plural)
        m = meta(obj)
        old = self.store.get(rt, m.get("namespace"), m["name"])
        new = clone(obj)
        self.mgr.admit(rt, new, old)
        return self.store.update(rt, new)

    def get(self, group: str, plural: str, name: str, namespace: str = "default") -> Obj:
        obj = self.store.get(self.rt(group, plural), namespace, name)
        assert obj is not None, f"{plural}/{name} not found"
        return obj

    def find(self, group: str, plural: str, name: str, namespace: str = "default") -> Obj | None:
        return self.store.get(self.rt(group, plural), namespace, name)

    def list(self, group: str, plural: str, namespace: str | None = "default") -> list[Obj]:
        items, _ = self.store.list(self.rt(group, plural), namespace)
        return sorted(items, key=lambda o: str(meta(o).get("name")))

    def pods(self, namespace: str = "default") -> list[Obj]:
        return self.list("", "pods", namespace)

    def events(self, reason: str) -> list[Obj]:
        return [e for e in self.list("", "events", None) if e.get("reason") == reason]

    def delete(
        self,
        group: str,
        plural: str,
        name: str,
        namespace: str = "default",
        propagation: str | None = None,
    ) -> None:
        self.store.delete(self.rt(group, plural), namespace, name, propagation=propagation)


@pytest.fixture
def sim() -> Iterator[Sim]:
    yield Sim()


def deployment(
    name: str = "web", replicas: int = 2, image: str = "nginx:1.27", **extra: Any
) -> Obj:
    template_meta: Obj = {"labels": {"app": name}}
    if "annotations" in extra:
        template_meta["annotations"] = extra.pop("annotations")
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
            **extra,
        },
    }


def status(obj: Obj) -> Obj:
    return dict(obj.get("status") or {})


def cond(obj: Obj, ctype: str) -> Obj:
    for c in status(obj).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return {}


def rollout_complete(d: Obj) -> bool:
    """What `kubectl rollout status` and kstatus both require of a finished Deployment."""
    s = status(d)
    want = d["spec"]["replicas"]
    return (
        s.get("observedGeneration") == meta(d)["generation"]
        and s.get("updatedReplicas", 0) == want
        and s.get("replicas", 0) == want
        and s.get("readyReplicas", 0) == want
        and s.get("availableReplicas", 0) == want
        and cond(d, "Available").get("status") == "True"
        and cond(d, "Progressing").get("reason") == "NewReplicaSetAvailable"
    )


# -- bootstrap and admission ----------------------------------------------------------


def test_bootstrap_creates_namespaces_nodes_and_the_kubernetes_service() -> None:
    sim = Sim(nodes=3, api_server_port=34567)
    names = [meta(n)["name"] for n in sim.list("", "namespaces", None)]
    assert set(names) >= {"default", "kube-system", "kube-public", "kube-node-lease"}
    nodes = sim.list("", "nodes", None)
    assert [meta(n)["name"] for n in nodes] == [
        "devloop-node-1",
        "devloop-node-2",
        "devloop-node-3",
    ]
    for node in nodes:
        assert cond(node, "Ready")["status"] == "True"
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
        assert node["status"]["allocatable"]["pods"] == "110"
        internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert ipaddress.IPv4Address(internal[0]).is_loopback
    svc = sim.get("", "services", "kubernetes")
    assert svc["spec"]["clusterIP"] == "127.1.0.1"
    ep = sim.get("", "endpoints", "kubernetes")
    assert ep["subsets"] == [
        {
            "addresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": "https", "port": 34567, "protocol": "TCP"}],
        }
    ]
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert sim.find("", "serviceaccounts", "default", ns) is not None
    sim.create("", "namespaces", {"metadata": {"name": "team"}})
    sim.settle(0.1)
    assert sim.find("", "serviceaccounts", "default", "team") is not None
    ns = sim.get("", "namespaces", "team", "")
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert ns["status"]["phase"] == "Active"
    assert meta(ns)["labels"]["kubernetes.io/metadata.name"] == "team"


def test_defaults_match_a_real_api_server(sim: Sim) -> None:
    d = sim.create("apps", "deployments", deployment(replicas=1))
    spec = d["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["dnsPolicy"] == "ClusterFirst"
    assert pod_spec["terminationGracePeriodSeconds"] == 30
    assert "serviceAccountName" not in pod_spec  # only Pods get the default account
    c = pod_spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["ports"][0]["protocol"] == "TCP"
    assert c["terminationMessagePath"] == "/dev/termination-log"

    job = sim.create(
        "batch",
        "jobs",
        {
            "metadata": {"name": "once"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                }
            },
        },
    )
    jspec = job["spec"]
    assert (jspec["backoffLimit"], jspec["completions"], jspec["parallelism"]) == (6, 1, 1)
    assert jspec["completionMode"] == "NonIndexed" and jspec["suspend"] is False
    assert jspec["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    labels = jspec["template"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == labels["job-name"] == "once"
    assert labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"]
    sim.settle(0.01)
    job = sim.get("batch", "jobs", "once")
    uid = meta(job)["uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert job["spec"]["template"]["metadata"]["labels"]["controller-uid"] == uid

    sts: Obj = {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}}
    apply_defaults(sim.rt("apps", "statefulsets"), sts, None)
    assert sts["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"partition": 0},
    }
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    ds: Obj = {"spec": {}}
    apply_defaults(sim.rt("apps", "daemonsets"), ds, None)
    assert ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    cj: Obj = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}
    apply_defaults(sim.rt("batch", "cronjobs"), cj, None)
    assert (cj["spec"]["concurrencyPolicy"], cj["spec"]["successfulJobsHistoryLimit"]) == (
        "Allow",
        3,
    )
    assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"

    pod = sim.create(
        "",
        "pods",
        {
            "metadata": {"name": "solo"},
            "spec": {
                "containers": [
                    {
                        "name": "a",
                        "image": "app:latest",
                        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                    }
                ]
            },
        },
    )
    assert pod["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}
    assert pod["spec"]["serviceAccountName"] == "default"
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert isinstance(pod["spec"]["terminationGracePeriodSeconds"], int)


def test_service_addresses_are_loopback_and_kept_on_update(sim: Sim) -> None:
    a = sim.create("", "services", {"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}})
    assert ipaddress.IPv4Address(a["spec"]["clusterIP"]) in ipaddress.IPv4Network("127.1.0.0/16")
    assert a["spec"]["clusterIPs"] == [a["spec"]["clusterIP"]]
    assert a["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert (a["spec"]["type"], a["spec"]["sessionAffinity"]) == ("ClusterIP", "None")
    assert a["spec"]["ipFamilies"] == ["IPv4"] and a["spec"]["internalTrafficPolicy"] == "Cluster"

    replaced = {
        "metadata": {"name": "a", "namespace": "default"},
        "spec": {"ports": [{"port": 81}]},
    }
    assert sim.update("", "services", replaced)["spec"]["clusterIP"] == a["spec"]["clusterIP"]
    with pytest.raises(errors.ApiError) as e:
        sim.update(
            "",
            "services",
            {**replaced, "spec": {"clusterIP": "127.1.9.9", "ports": [{"port": 81}]}},
        )
    assert e.value.code == 422

    headless = sim.create(
        "",
        "services",
        {"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
    )
    assert headless["spec"]["clusterIP"] == "None"
    ext = sim.create(
        "",
        "services",
        {
            "metadata": {"name": "x"},
            "spec": {"type": "ExternalName", "externalName": "example.test"},
        },
    )
    assert "clusterIP" not in ext["spec"]
    node_port = sim.create(
        "",
        "services",
        {"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}},
    )
    port = node_port["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    with pytest.raises(errors.ApiError):
        sim.create(
            "",
            "services",
            {
                "metadata": {"name": "np2"},
                "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]},
            },
        )
    with pytest.raises(errors.ApiError):
        sim.create(
            "", "services", {"metadata": {"name": "far"}, "spec": {"clusterIP": "192.0.2.10"}}
        )
    # Released on delete: the port can be requested again.
    sim.delete("", "services", "np")
    sim.settle(0.01)
    again = sim.create(
        "",
        "services",
        {
            "metadata": {"name": "np3"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]},
        },
    )
    assert again["spec"]["ports"][0]["nodePort"] == port


# -- Deployments ------------------------------------------------------------------


def test_rollout_creates_replicaset_and_pods_with_labels_and_owners(sim: Sim) -> None:
    d = sim.create("apps", "deployments", deployment(replicas=2))
    sim.mgr.run_until_idle()
    rss = sim.list("apps", "replicasets")
    assert len(rss) == 1
    rs = rss[0]
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", h)
    assert meta(rs)["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == h
    assert meta(rs)["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": meta(d)["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    ann = meta(rs)["annotations"]
    assert ann["deployment.kubernetes.io/revision"] == "1"
    assert ann["deployment.kubernetes.io/desired-replicas"] == "2"
    assert ann["deployment.kubernetes.io/max-replicas"] == "3"
    pods = sim.pods()
    assert len(pods) == 2
    for pod in pods:
        assert re.fullmatch(rf"web-{h}-[bcdfghjklmnpqrstvwxz2456789]{{5}}", meta(pod)["name"])
        assert meta(pod)["labels"] == {"app": "web", "pod-template-hash": h}
        assert meta(pod)["ownerReferences"][0]["uid"] == meta(rs)["uid"]
        assert meta(pod)["ownerReferences"][0]["kind"] == "ReplicaSet"
    # Not ready before the kubelet's delay has passed.
    assert all(p["status"]["phase"] == "Pending" for p in pods)
    d = sim.get("apps", "deployments", "web")
    assert cond(d, "Available")["status"] == "False"
    assert not rollout_complete(d)


def test_rollout_status_reaches_what_kubectl_and_kstatus_read(sim: Sim) -> None:
    sim.create("apps", "deployments", deployment(replicas=3))
    sim.settle(0.04)
    assert not rollout_complete(sim.get("apps", "deployments", "web"))
    sim.settle(0.1)
    d = sim.get("apps", "deployments", "web")
    assert rollout_complete(d), status(d)
    assert meta(d)["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert "unavailableReplicas" not in status(d)
    rs = sim.list("apps", "replicasets")[0]
    assert status(rs) == {
        "replicas": 3,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "observedGeneration": 1,
    }
    for pod in sim.pods():
        s = pod["status"]
        assert s["phase"] == "Running"
        assert {c["type"]: c["status"] for c in s["conditions"]} == {
            "PodReadyToStartContainers": "True",
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
        cs = s["containerStatuses"][0]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
        assert cs["imageID"] and cs["containerID"].startswith("containerd://")
        assert "startedAt" in cs["state"]["running"]
        assert s["startTime"] and s["hostIP"] == "127.0.1.1" and s["podIPs"] == [{"ip": s["podIP"]}]
        logs = sim.store.logs("default", meta(pod)["name"])
        assert any("container app started (image nginx:1.27)" in line for line in logs)
        assert any("listening on :8080" in line for line in logs)
    reasons = {e["reason"] for e in sim.list("", "events")}
    assert {
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "Scheduled",
        "Pulled",
        "Created",
        "Started",
    } <= reasons
    scheduled = sim.events("Scheduled")[0]
    assert scheduled["source"] == {"component": "default-scheduler"}
    assert scheduled["involvedObject"]["kind"] == "Pod" and scheduled["count"] == 1
    assert scheduled["firstTimestamp"] == scheduled["lastTimestamp"]


def test_rolling_update_honours_surge_and_unavailability(sim: Sim) -> None:
    sim.create("apps", "deployments", deployment(replicas=4))
    sim.settle(1)
    old_rs = sim.list("apps", "replicasets")[0]
    d = sim.get("apps", "deployments", "web")
    d = clone(d)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    sim.update("apps", "deployments", d)
    # 25% of 4: at most 5 pods, at least 3 available, at every step of the rollout.
    seen_rolling = False
    for _ in range(60):
        sim.mgr.run_until_idle()
        pods = [p for p in sim.pods() if not meta(p).get("deletionTimestamp")]
        ready = [p for p in pods if cond(p, "Ready").get("status") == "True"]
        assert len(pods) <= 5
        assert len(ready) >= 3
        dep = sim.get("apps", "deployments", "web")
        if cond(dep, "Progressing").get("reason") == "ReplicaSetUpdated":
            seen_rolling = True
        if rollout_complete(dep):
            break
        sim.clock.t += 0.02
    else:
        pytest.fail("rollout did not finish")
    assert seen_rolling
    d = sim.get("apps", "deployments", "web")
    assert meta(d)["annotations"]["deployment.kubernetes.io/revision"] == "2"
    rss = {meta(r)["name"]: r for r in sim.list("apps", "replicasets")}
    assert rss[meta(old_rs)["name"]]["spec"]["replicas"] == 0
    new = next(r for n, r in rss.items() if n != meta(old_rs)["name"])
    assert meta(new)["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert {p["spec"]["containers"][0]["image"] for p in sim.pods()} == {"nginx:1.28"}
    assert (
        cond(d, "Progressing")["message"]
        == f'ReplicaSet "{meta(new)["name"]}" has successfully progressed.'
    )
    # Helm 3 finds the new ReplicaSet by comparing templates without the hash label.
    tpl = clone(new["spec"]["template"])
    del tpl["metadata"]["labels"]["pod-template-hash"]
    assert tpl == d["spec"]["template"]
    # Rolling back to the first template re-uses its ReplicaSet as revision 3.
    back = clone(d)
    back["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    sim.update("apps", "deployments", back)
    sim.settle(2)
    d = sim.get("apps", "deployments", "web")
    assert rollout_complete(d)
    assert len(sim.list("apps", "replicasets")) == 2
    first = sim.get("apps", "replicasets", meta(old_rs)["name"])
    assert meta(first)["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert first["spec"]["replicas"] == 4


def test_scale_keeps_the_revision(sim: Sim) -> None:
    sim.create("apps", "deployments", deployment(replicas=1))
    sim.settle(1)
    d = clone(sim.get("apps", "deployments", "web"))
    d["spec"]["replicas"] = 3
    sim.update("apps", "deployments", d)
    sim.settle(0.2)
    d = sim.get("apps", "deployments", "web")
    assert rollout_complete(d)
    (rs,) = sim.list("apps", "replicasets")
    assert rs["spec"]["replicas"] == 3 and status(rs)["readyReplicas"] == 3
    assert meta(rs)["annotations"]["deployment.kubernetes.io/revision"] == "1"
    d = clone(d)
    d["spec"]["replicas"] = 1
    sim.update("apps", "deployments", d)
    sim.settle(0.2)
    assert len(sim.pods()) == 1
    assert rollout_complete(sim.get("apps", "deployments", "web"))
    assert any("Scaled down replica set" in e["message"] for e in sim.events("ScalingReplicaSet"))


def test_recreate_strategy_stops_old_pods_first(sim: Sim) -> None:
    sim.create("apps", "deployments", deployment(replicas=2, strategy={"type": "Recreate"}))
    sim.settle(1)
    d = clone(sim.get("apps", "deployments", "web"))
    assert "rollingUpdate" not in d["spec"]["strategy"]
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    sim.update("apps", "deployments", d)
    sim.mgr.run_until_idle()
    images = {p["spec"]["containers"][0]["image"] for p in sim.pods()}
    assert images <= {"nginx:2"}  # never old and new side by side
    sim.settle(1)
    assert rollout_complete(sim.get("apps", "deployments", "web"))
    assert {p["spec"]["containers"][0]["image"] for p in sim.pods()} == {"nginx:2"}


def test_old_replicasets_beyond_history_limit_are_deleted(sim: Sim) -> None:
    sim.create("apps", "deployments", deployment(replicas=1, revisionHistoryLimit=1))
    sim.settle(1)
    for tag in ("2", "3", "4"):
        d = clone(sim.get("apps", "deployments", "web"))
        d["spec"]["template"]["spec"]["containers"][0]["image"] = f"nginx:{tag}"
        sim.update("apps", "deployments", d)
        sim.settle(1)
    rss = sim.list("apps", "replicasets")
    revisions = sorted(
        int(meta(r)["annotations"]["deployment.kubernetes.io/revision"]) for r in rss
    )
    assert revisions == [3, 4]


def test_progress_deadline_exceeded_for_pods_that_never_get_ready(sim: Sim) -> None:
    sim.create(
        "apps",
        "deployments",
        deployment(
            replicas=1, progressDeadlineSeconds=5, annotations={"devloop.dev/never-ready": "true"}
        ),
    )
    sim.settle(2)
    d = sim.get("apps", "deployments", "web")
    assert cond(d, "Progressing")["status"] == "True"
    assert status(d)["unavailableReplicas"] == 1
    sim.settle(10)
    d = sim.get("apps", "deployments", "web")
    assert cond(d, "Progressing")["reason"] == "ProgressDeadlineExceeded"
    assert cond(d, "Progressing")["status"] == "False"


# -- pod failure paths ----------------------------------------------------------------


def bare_pod(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": spec.pop("image", "nginx:1.27")}], **spec},
    }


def test_never_ready_crash_loop_and_image_pull_failures(sim: Sim) -> None:
    sim.create("", "pods", bare_pod("never", {"devloop.dev/never-ready": "true"}))
    sim.create("", "pods", bare_pod("crash", {"devloop.dev/crash-loop": "true"}))
    sim.create("", "pods", bare_pod("pull", {"devloop.dev/image-pull-error": "true"}))
    sim.create("", "pods", bare_pod("badimage", image="registry.test/devloop-fail-pull:1"))
    sim.create("", "pods", bare_pod("slow", {"devloop.dev/ready-delay": "0.5"}))
    sim.settle(0.2)
    never = sim.get("", "pods", "never")
    assert never["status"]["phase"] == "Running"
    assert cond(never, "Ready")["status"] == "False"
    assert never["status"]["containerStatuses"][0]["started"] is True
    assert sim.get("", "pods", "slow")["status"]["phase"] == "Pending"
    pull = sim.get("", "pods", "pull")["status"]
    assert pull["phase"] == "Pending"
    assert pull["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    assert (
        sim.get("", "pods", "badimage")["status"]["containerStatuses"][0]["state"]["waiting"][
            "reason"
        ]
        == "ErrImagePull"
    )
    sim.settle(1)
    assert cond(sim.get("", "pods", "slow"), "Ready")["status"] == "True"
    pull = sim.get("", "pods", "pull")["status"]
    assert pull["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    crash = sim.get("", "pods", "crash")
    cs = crash["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cond(crash, "Ready")["status"] == "False"
    first = cs["restartCount"]
    assert first >= 1
    sim.settle(10)
    later = sim.get("", "pods", "crash")["status"]["containerStatuses"][0]["restartCount"]
    assert first < later < 10  # grows, slowly (back-off doubles)
    backoff = [e for e in sim.events("BackOff") if e["involvedObject"]["name"] == "crash"]
    assert backoff and backoff[0]["type"] == "Warning" and backoff[0]["count"] > later
    assert any(e["message"] == "Error: ErrImagePull" for e in sim.events("Failed"))
    assert sim.events("Unhealthy")


def probed_pod(name: str, initial_delay: int) -> Obj:
    pod = bare_pod(name)
    pod["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/healthz", "port": 8080},
        "initialDelaySeconds": initial_delay,
    }
    return pod


def test_readiness_probe_initial_delay_holds_ready_back_when_simulated() -> None:
    faithful = Sim(readiness_probe_delays=True)
    faithful.create("", "pods", probed_pod("web", 2))
    faithful.settle(1.9)  # started after pod_ready_delay (0.05 s), probed from 2.05 s
    web = faithful.get("", "pods", "web")
    assert web["status"]["phase"] == "Running"
    assert cond(web, "Ready")["status"] == "False"
    cs = web["status"]["containerStatuses"][0]
    assert cs["started"] is True and cs["ready"] is False and "running" in cs["state"]
    assert not faithful.events("Unhealthy")  # not probed yet is no failed probe
    faithful.settle(0.2)
    web = faithful.get("", "pods", "web")
    assert cond(web, "Ready")["status"] == "True"
    assert cond(web, "ContainersReady")["status"] == "True"
    assert web["status"]["containerStatuses"][0]["ready"] is True
    assert any("app ready" in line for line in faithful.store.logs("default", "web"))

    # A Deployment's rollout waits for it too.
    d = deployment("api", replicas=2)
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 8080},
        "initialDelaySeconds": 3,
    }
    faithful.create("apps", "deployments", d)
    faithful.settle(2)
    assert not rollout_complete(faithful.get("apps", "deployments", "api"))
    faithful.settle(2)
    assert rollout_complete(faithful.get("apps", "deployments", "api"))

    # By default the probe's delay is not simulated: pod_ready_delay alone counts.
    fast = Sim()
    fast.create("", "pods", probed_pod("web", 2))
    fast.settle(0.1)
    assert cond(fast.get("", "pods", "web"), "Ready")["status"] == "True"


def test_configured_pod_ready_delay_applies() -> None:
    slow = Sim(pod_ready_delay=0.5)
    slow.create("", "pods", bare_pod("web"))
    slow.settle(0.4)
    assert slow.get("", "pods", "web")["status"]["phase"] == "Pending"
    slow.settle(0.2)
    assert cond(slow.get("", "pods", "web"), "Ready")["status"] == "True"


def test_pods_that_run_to_completion_succeed_or_fail(sim: Sim) -> None:
    sim.create("", "pods", bare_pod("ok", restartPolicy="Never"))
    sim.create("", "pods", bare_pod("bad", {"devloop.dev/fail": "true"}, restartPolicy="OnFailure"))
    sim.settle(0.1)
    assert sim.get("", "pods", "ok")["status"]["phase"] == "Running"
    sim.settle(0.2)
    ok = sim.get("", "pods", "ok")["status"]
    assert ok["phase"] == "Succeeded"
    assert ok["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert cond(sim.get("", "pods", "ok"), "Ready")["reason"] == "PodCompleted"
    bad = sim.get("", "pods", "bad")["status"]
    assert bad["phase"] == "Failed"
    assert bad["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


def test_scheduler_honours_node_selectors_and_waits_for_a_fitting_node() -> None:
    sim = Sim(nodes=2)
    sim.create(
        "", "pods", bare_pod("pinned", nodeSelector={"kubernetes.io/hostname": "devloop-node-2"})
    )
    sim.create("", "pods", bare_pod("nowhere", nodeSelector={"disk": "ssd"}))
    sim.settle(0.2)
    assert sim.get("", "pods", "pinned")["spec"]["nodeName"] == "devloop-node-2"
    nowhere = sim.get("", "pods", "nowhere")
    assert "nodeName" not in nowhere["spec"]
    assert cond(nowhere, "PodScheduled")["reason"] == "Unschedulable"
    assert sim.events("FailedScheduling")
    node = clone(sim.get("", "nodes", "devloop-node-1", ""))
    node["metadata"]["labels"]["disk"] = "ssd"
    sim.update("", "nodes", node)
    sim.settle(0.2)
    assert sim.get("", "pods", "nowhere")["spec"]["nodeName"] == "devloop-node-1"


def test_a_pod_held_by_a_finalizer_stops_and_goes_when_released(sim: Sim) -> None:
    sim.create(
        "", "pods", {**bare_pod("held"), "metadata": {"name": "held", "finalizers": ["test/keep"]}}
    )
    sim.settle(0.2)
    sim.delete("", "pods", "held")
    sim.settle(0.1)
    held = sim.get("", "pods", "held")
    assert held["status"]["phase"] == "Succeeded"
    assert "terminated" in held["status"]["containerStatuses"][0]["state"]
    released = clone(held)
    released["metadata"]["finalizers"] = []
    sim.store.update(sim.rt("", "pods"), released)
    sim.settle(0.1)
    assert sim.find("", "pods", "held") is None


# -- StatefulSets and DaemonSets ------------------------------------------------------


def statefulset(name: str = "db", replicas: int = 3, **extra: Any) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "db", "image": "postgres:16"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
            **extra,
        },
    }


def test_statefulset_creates_ordinals_in_order_with_claims(sim: Sim) -> None:
    sim.create("apps", "statefulsets", statefulset())
    sim.mgr.run_until_idle()
    assert [meta(p)["name"] for p in sim.pods()] == ["db-0"]  # db-1 waits for db-0 to be Ready
    sim.settle(0.06)
    assert [meta(p)["name"] for p in sim.pods()] == ["db-0", "db-1"]
    sim.settle(1)
    sts = sim.get("apps", "statefulsets", "db")
    pods = sim.pods()
    assert [meta(p)["name"] for p in pods] == ["db-0", "db-1", "db-2"]
    rev = status(sts)["updateRevision"]
    assert rev.startswith("db-")
    for i, pod in enumerate(pods):
        labels = meta(pod)["labels"]
        assert labels["controller-revision-hash"] == rev
        assert labels["statefulset.kubernetes.io/pod-name"] == f"db-{i}"
        assert pod["spec"]["hostname"] == f"db-{i}" and pod["spec"]["subdomain"] == "db"
        claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "data")
        assert claim["persistentVolumeClaim"]["claimName"] == f"data-db-{i}"
        pvc = sim.get("", "persistentvolumeclaims", f"data-db-{i}")
        assert pvc["status"]["phase"] == "Bound"
        assert meta(pvc)["labels"]["app"] == "db"
        pv = sim.get("", "persistentvolumes", pvc["spec"]["volumeName"], "")
        assert pv["spec"]["claimRef"]["uid"] == meta(pvc)["uid"]
        assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == "standard"
    assert status(sts) == {
        "observedGeneration": 1,
        "replicas": 3,
        "readyReplicas": 3,
        "currentReplicas": 3,
        "updatedReplicas": 3,
        "availableReplicas": 3,
        "currentRevision": rev,
        "updateRevision": rev,
        "collisionCount": 0,
    }
    revisions = sim.list("apps", "controllerrevisions")
    assert [meta(r)["name"] for r in revisions] == [rev] and revisions[0]["revision"] == 1


def test_statefulset_parallel_scale_down_and_partitioned_update(sim: Sim) -> None:
    sim.create("apps", "statefulsets", statefulset(podManagementPolicy="Parallel", replicas=4))
    sim.mgr.run_until_idle()
    assert len(sim.pods()) == 4
    sim.settle(1)
    sts = clone(sim.get("apps", "statefulsets", "db"))
    sts["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    sts["spec"]["template"]["spec"]["containers"][0]["image"] = "postgres:17"
    sim.update("apps", "statefulsets", sts)
    sim.settle(2)
    images = {meta(p)["name"]: p["spec"]["containers"][0]["image"] for p in sim.pods()}
    assert images == {
        "db-0": "postgres:16",
        "db-1": "postgres:16",
        "db-2": "postgres:17",
        "db-3": "postgres:17",
    }
    s = status(sim.get("apps", "statefulsets", "db"))
    assert s["updatedReplicas"] == 2 and s["currentRevision"] != s["updateRevision"]
    sts = clone(sim.get("apps", "statefulsets", "db"))
    sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 0
    sts["spec"]["replicas"] = 2
    sim.update("apps", "statefulsets", sts)
    sim.settle(2)
    assert [meta(p)["name"] for p in sim.pods()] == ["db-0", "db-1"]
    assert {p["spec"]["containers"][0]["image"] for p in sim.pods()} == {"postgres:17"}
    s = status(sim.get("apps", "statefulsets", "db"))
    assert s["currentRevision"] == s["updateRevision"] and s["readyReplicas"] == 2
    # Claims outlive scale-down by default (whenScaled: Retain).
    assert sim.find("", "persistentvolumeclaims", "data-db-3") is not None


def test_daemonset_runs_one_pod_per_ready_node() -> None:
    sim = Sim(nodes=3)
    sim.create(
        "apps",
        "daemonsets",
        {
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "a", "image": "agent:1"}]},
                },
            },
        },
    )
    sim.settle(1)
    pods = sim.pods()
    assert sorted(p["spec"]["nodeName"] for p in pods) == [
        "devloop-node-1",
        "devloop-node-2",
        "devloop-node-3",
    ]
    assert all(meta(p)["labels"]["pod-template-generation"] == "1" for p in pods)
    s = status(sim.get("apps", "daemonsets", "agent"))
    assert s == {
        "currentNumberScheduled": 3,
        "desiredNumberScheduled": 3,
        "numberMisscheduled": 0,
        "numberReady": 3,
        "observedGeneration": 1,
        "updatedNumberScheduled": 3,
        "numberAvailable": 3,
    }
    ds = clone(sim.get("apps", "daemonsets", "agent"))
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
    sim.update("apps", "daemonsets", ds)
    sim.settle(2)
    assert {p["spec"]["containers"][0]["image"] for p in sim.pods()} == {"agent:2"}
    s = status(sim.get("apps", "daemonsets", "agent"))
    assert (
        s["updatedNumberScheduled"] == 3
        and s["numberAvailable"] == 3
        and s["observedGeneration"] == 2
    )


# -- Jobs and CronJobs --------------------------------------------------------------


def job(name: str = "task", annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox:1"}],
                },
            },
            **spec,
        },
    }


def test_job_runs_to_completion(sim: Sim) -> None:
    sim.create("batch", "jobs", job(completions=3, parallelism=2))
    sim.mgr.run_until_idle()
    assert len(sim.pods()) == 2
    j = sim.get("batch", "jobs", "task")
    assert status(j)["active"] == 2 and status(j)["startTime"]
    assert status(j)["uncountedTerminatedPods"] == {}
    sim.settle(1)
    j = sim.get("batch", "jobs", "task")
    s = status(j)
    assert s["succeeded"] == 3 and "active" not in s and "failed" not in s
    assert s["ready"] == 0 and s["completionTime"]
    assert [c["type"] for c in s["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert cond(j, "Complete")["status"] == "True"
    pods = sim.pods()
    assert len(pods) == 3 and {p["status"]["phase"] for p in pods} == {"Succeeded"}
    uid = meta(j)["uid"]
    for pod in pods:
        assert meta(pod)["labels"]["batch.kubernetes.io/controller-uid"] == uid
        assert meta(pod)["labels"]["job-name"] == "task"
        assert meta(pod)["ownerReferences"][0]["kind"] == "Job"
    assert sim.events("Completed")


def test_job_fails_after_backoff_limit(sim: Sim) -> None:
    sim.create("batch", "jobs", job(annotations={"devloop.dev/fail": "true"}, backoffLimit=1))
    sim.settle(2)
    j = sim.get("batch", "jobs", "task")
    s = status(j)
    assert s["failed"] == 2 and "succeeded" not in s and "active" not in s
    assert [c["type"] for c in s["conditions"]] == ["FailureTarget", "Failed"]
    assert cond(j, "Failed")["reason"] == "BackoffLimitExceeded"
    assert len(sim.pods()) == 2
    assert sim.events("BackoffLimitExceeded")[0]["type"] == "Warning"


def test_indexed_job_and_ttl_after_finished(sim: Sim) -> None:
    sim.create(
        "batch",
        "jobs",
        job(completions=3, parallelism=3, completionMode="Indexed", ttlSecondsAfterFinished=5),
    )
    sim.settle(1)
    j = sim.get("batch", "jobs", "task")
    assert status(j)["completedIndexes"] == "0-2"
    indexes = sorted(
        meta(p)["annotations"]["batch.kubernetes.io/job-completion-index"] for p in sim.pods()
    )
    assert indexes == ["0", "1", "2"]
    sim.settle(10)
    assert sim.find("batch", "jobs", "task") is None
    assert sim.pods() == []


def test_cronjob_creates_jobs_on_schedule(sim: Sim) -> None:
    assert CronSchedule.parse("*/5 * * * *").next_after(0) == 300
    assert CronSchedule.parse("@hourly").next_after(59 * 60) == 3600
    weekday = CronSchedule.parse("0 9 * * mon-fri")
    saturday = 1_700_870_400.0  # 2023-11-25 00:00 UTC
    assert weekday.next_after(saturday) == saturday + 2 * 86400 + 9 * 3600
    sim.create(
        "batch",
        "cronjobs",
        {
            "metadata": {"name": "tick"},
            "spec": {"schedule": "* * * * *", "jobTemplate": job()},
        },
    )
    sim.settle(61)
    jobs = sim.list("batch", "jobs")
    assert len(jobs) == 1
    j = jobs[0]
    assert meta(j)["ownerReferences"][0]["kind"] == "CronJob"
    assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in meta(j)["annotations"]
    cj = sim.get("batch", "cronjobs", "tick")
    assert status(cj)["lastScheduleTime"]
    sim.settle(240)
    cj = sim.get("batch", "cronjobs", "tick")
    assert len(sim.list("batch", "jobs")) == 3  # successfulJobsHistoryLimit
    assert status(cj)["lastSuccessfulTime"]


# -- Services -------------------------------------------------------------------------


def test_endpoints_list_ready_pods_and_keep_the_others_apart(sim: Sim) -> None:
    sim.create("apps", "deployments", deployment(name="web", replicas=2))
    sim.create(
        "apps",
        "deployments",
        deployment(name="bad", replicas=1, annotations={"devloop.dev/never-ready": "true"}),
    )
    sim.create(
        "",
        "services",
        {
            "metadata": {"name": "web", "labels": {"team": "a"}},
            "spec": {
                "selector": {"tier": "front"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    )
    sim.create("", "services", {"metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}})
    sim.settle(0.5)
    ep = sim.get("", "endpoints", "web")
    assert "subsets" not in ep  # no pod carries tier=front yet
    slices = [
        s
        for s in sim.list("discovery.k8s.io", "endpointslices")
        if s["metadata"]["labels"].get("kubernetes.io/service-name") == "web"
    ]
    assert len(slices) == 1 and slices[0]["endpoints"] == []
    # Label both deployments' pods into the Service.
    for name in ("web", "bad"):
        d = clone(sim.get("apps", "deployments", name))
        d["spec"]["template"]["metadata"]["labels"]["tier"] = "front"
        sim.update("apps", "deployments", d)
    sim.settle(2)
    # The never-ready Deployment cannot finish its rollout: its old pod (no tier label)
    # stays next to the new one, which the Service selects.
    pods = {meta(p)["name"]: p for p in sim.pods() if meta(p)["labels"].get("tier") == "front"}
    ready_ips = sorted(
        p["status"]["podIP"] for p in pods.values() if meta(p)["labels"]["app"] == "web"
    )
    bad_ips = [p["status"]["podIP"] for p in pods.values() if meta(p)["labels"]["app"] == "bad"]
    ep = sim.get("", "endpoints", "web")
    (subset,) = ep["subsets"]
    assert sorted(a["ip"] for a in subset["addresses"]) == ready_ips
    assert [a["ip"] for a in subset["notReadyAddresses"]] == bad_ips
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert subset["addresses"][0]["targetRef"]["kind"] == "Pod"
    assert subset["addresses"][0]["nodeName"] == "devloop-node-1"
    assert meta(ep)["labels"]["team"] == "a"
    (es,) = [
        s
        for s in sim.list("discovery.k8s.io", "endpointslices")
        if s["metadata"]["labels"].get("kubernetes.io/service-name") == "web"
    ]
    assert (
        meta(es)["labels"]["endpointslice.kubernetes.io/managed-by"]
        == "endpointslice-controller.k8s.io"
    )
    assert meta(es)["ownerReferences"][0]["kind"] == "Service"
    assert es["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    by_ip = {e["addresses"][0]: e for e in es["endpoints"]}
    assert {ip: by_ip[ip]["conditions"]["ready"] for ip in ready_ips + bad_ips} == {
        **dict.fromkeys(ready_ips, True),
        **dict.fromkeys(bad_ips, False),
    }
    assert by_ip[ready_ips[0]]["targetRef"]["name"] in pods
    # A selectorless Service gets nothing from the controller.
    assert sim.find("", "endpoints", "manual") is None
    sim.create(
        "",
        "endpoints",
        {
            "metadata": {"name": "manual"},
            "subsets": [{"addresses": [{"ip": "127.0.0.9"}], "ports": [{"port": 80}]}],
        },
    )
    sim.settle(0.1)
    assert sim.get("", "endpoints", "manual")["subsets"][0]["addresses"] == [{"ip": "127.0.0.9"}]
    mirrored = [
        s
        for s in sim.list("discovery.k8s.io", "endpointslices")
        if s["metadata"]["labels"].get("kubernetes.io/service-name") == "manual"
    ]
    assert mirrored and mirrored[0]["endpoints"][0]["addresses"] == ["127.0.0.9"]
    # Deleting the Service takes its Endpoints and slices with it.
    sim.delete("", "services", "web")
    sim.settle(0.1)
    assert sim.find("", "endpoints", "web") is None
    assert not [
        s
        for s in sim.list("discovery.k8s.io", "endpointslices")
        if s["metadata"]["labels"].get("kubernetes.io/service-name") == "web"
    ]


def test_load_balancer_gets_a_loopback_ingress(sim: Sim) -> None:
    sim.create(
        "",
        "services",
        {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
    )
    sim.settle(0.1)
    lb = sim.get("", "services", "lb")
    assert lb["status"]["loadBalancer"]["ingress"][0]["ip"] == "127.0.1.1"
    assert 30000 <= lb["spec"]["ports"][0]["nodePort"] <= 32767


# -- garbage collection and namespaces -------------------------------------------------


def test_deleting_a_deployment_collects_its_replicasets_and_pods(sim: Sim) -> None:
    sim.create("apps", "deployments", deployment(replicas=2))
    sim.settle(1)
    sim.delete("apps", "deployments", "web", propagation="Background")
    sim.settle(0.1)
    assert sim.list("apps", "replicasets") == []
    assert sim.pods() == []


def test_foreground_deletion_waits_for_dependents(sim: Sim) -> None:
    sim.create("apps", "deployments", deployment(replicas=2))
    sim.settle(1)
    sim.delete("apps", "deployments", "web", propagation="Foreground")
    d = sim.get("apps", "deployments", "web")
    assert meta(d)["finalizers"] == ["foregroundDeletion"]
    sim.settle(0.1)
    assert sim.find("apps", "deployments", "web") is None
    assert sim.list("apps", "replicasets") == [] and sim.pods() == []


def test_orphan_deletion_keeps_dependents_without_owner(sim: Sim) -> None:
    sim.create("apps", "deployments", deployment(replicas=1))
    sim.settle(1)
    sim.delete("apps", "deployments", "web", propagation="Orphan")
    sim.settle(0.1)
    assert sim.find("apps", "deployments", "web") is None
    (rs,) = sim.list("apps", "replicasets")
    assert "ownerReferences" not in meta(rs) or meta(rs)["ownerReferences"] == []
    assert len(sim.pods()) == 1


def test_namespace_deletion_removes_everything_in_it(sim: Sim) -> None:
    sim.create("", "namespaces", {"metadata": {"name": "doomed"}})
    crd_rt = sim.registry.register_crd(
        {
            "metadata": {"name": "widgets.example.test"},
            "spec": {
                "group": "example.test",
                "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": True, "storage": True}],
            },
        }
    )
    assert crd_rt is not None
    sim.settle(0.1)
    dep = deployment()
    dep["metadata"]["namespace"] = "doomed"
    sim.create("apps", "deployments", dep)
    sim.create(
        "", "configmaps", {"metadata": {"name": "cfg", "namespace": "doomed"}, "data": {"a": "1"}}
    )
    widget = {
        "apiVersion": "example.test/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "doomed"},
    }
    sim.store.create(crd_rt, widget)
    sim.settle(1)
    assert len(sim.pods("doomed")) == 2
    sim.delete("", "namespaces", "doomed", "")
    assert sim.get("", "namespaces", "doomed", "")["status"]["phase"] == "Terminating"
    sim.settle(0.1)
    assert sim.find("", "namespaces", "doomed", "") is None
    assert sim.store.get(crd_rt, "doomed", "w") is None
    assert sim.pods("doomed") == [] and sim.list("", "configmaps", "doomed") == []
    assert sim.list("", "serviceaccounts", "doomed") == []


def test_pvc_binds_and_crd_is_established(sim: Sim) -> None:
    sim.create(
        "",
        "persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}},
            },
        },
    )
    sim.create(
        "",
        "persistentvolumeclaims",
        {
            "metadata": {"name": "fast"},
            "spec": {"storageClassName": "gp3", "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    sim.create(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        {
            "metadata": {"name": "widgets.example.test"},
            "spec": {
                "group": "example.test",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": True, "storage": True}],
            },
        },
    )
    sim.settle(0.1)
    pvc = sim.get("", "persistentvolumeclaims", "data")
    assert pvc["status"] == {
        "phase": "Bound",
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": "5Gi"},
    }
    assert pvc["spec"]["volumeName"] == f"pvc-{meta(pvc)['uid']}"
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert sim.get("", "persistentvolumeclaims", "fast")["status"]["phase"] == "Bound"
    crd = sim.get("apiextensions.k8s.io", "customresourcedefinitions", "widgets.example.test", "")
    assert cond(crd, "Established")["status"] == "True"
    assert cond(crd, "NamesAccepted")["status"] == "True"
    assert crd["status"]["acceptedNames"]["listKind"] == "WidgetList"
    assert crd["status"]["storedVersions"] == ["v1"]
    sim.delete("", "persistentvolumeclaims", "data")
    sim.settle(0.1)
    assert sim.find("", "persistentvolumes", f"pvc-{meta(pvc)['uid']}", "") is None


def test_events_are_capped_per_namespace() -> None:
    sim = Sim(events_per_namespace=20)
    sim.create("apps", "deployments", deployment(replicas=10))
    sim.settle(1)
    assert len(sim.list("", "events")) == 20


# -- addresses, scale, timing -----------------------------------------------------------

_IPV4 = re.compile(r"\b(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\b")


def test_every_address_the_cluster_hands_out_is_loopback() -> None:
    sim = Sim(nodes=2)
    sim.create("apps", "deployments", deployment(replicas=3))
    sim.create("apps", "statefulsets", statefulset(replicas=2))
    sim.create(
        "",
        "services",
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
    )
    sim.create(
        "",
        "services",
        {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
    )
    sim.create("", "pods", bare_pod("host", hostNetwork=True))
    sim.settle(2)
    found = set()
    for _, obj in sim.store.all_objects():
        for ip in _IPV4.findall(repr(obj)):
            found.add(ip)
    assert len(found) > 10
    assert all(ipaddress.IPv4Address(ip).is_loopback for ip in found), found
    assert sim.get("", "pods", "host")["status"]["podIP"] == "127.0.1.1"


def test_a_pod_change_does_not_rescan_unrelated_objects(sim: Sim) -> None:
    for i in range(2000):
        sim.create("", "configmaps", {"metadata": {"name": f"cm-{i}"}, "data": {"k": str(i)}})
    for i in range(100):
        sim.create(
            "",
            "services",
            {
                "metadata": {"name": f"s-{i}"},
                "spec": {"selector": {"app": f"x{i}"}, "ports": [{"port": 80}]},
            },
        )
    sim.create("apps", "deployments", deployment(replicas=1))
    sim.settle(1)
    before = sim.mgr.reconciles
    d = clone(sim.get("apps", "deployments", "web"))
    d["spec"]["replicas"] = 2
    started = time.perf_counter()
    sim.update("apps", "deployments", d)
    sim.settle(1)
    elapsed = time.perf_counter() - started
    # Scaling touches the Deployment, its ReplicaSet, one pod, GC checks: a few dozen keys.
    assert sim.mgr.reconciles - before < 60
    assert elapsed < 1.0


def test_background_thread_scales_a_deployment_within_the_budget() -> None:
    registry = Registry()
    store = Store(registry)
    mgr = ControllerManager(store, SimulationConfig())
    mgr.bootstrap()
    mgr.start()
    try:
        rt = registry.get("apps", "deployments")
        assert rt is not None
        obj = deployment(replicas=1)
        obj["metadata"]["namespace"] = "default"
        obj.update(apiVersion="apps/v1", kind="Deployment")
        mgr.admit(rt, obj, None)
        store.create(rt, obj)
        ready = threading.Event()

        def wait_ready(n: int, timeout: float) -> float:
            start = time.perf_counter()
            while time.perf_counter() - start < timeout:
                d = store.get(rt, "default", "web")
                if (
                    d is not None
                    and (d.get("status") or {}).get("readyReplicas") == n
                    and rollout_complete(d)
                ):
                    return time.perf_counter() - start
                ready.wait(0.002)
            pytest.fail(f"deployment did not reach {n} ready replicas")

        wait_ready(1, 5.0)
        d = clone(store.get(rt, "default", "web"))
        d["spec"]["replicas"] = 3
        old = store.get(rt, "default", "web")
        mgr.admit(rt, d, old)
        store.update(rt, d)
        elapsed = wait_ready(3, 5.0)
        # The budget is 0.3 s; leave room for a loaded CI machine.
        assert elapsed < 1.0, elapsed
    finally:
        started = time.perf_counter()
        mgr.stop()
        assert time.perf_counter() - started < 1.1
        assert not mgr.running
