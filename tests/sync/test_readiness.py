"""Readiness: the pure rules per kind, and the waiter and its reports on the embedded cluster."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.embedded.controllers import SimulationConfig
from pytest_devloop.sync.readiness import (
    Readiness,
    Waiter,
    WaitFailed,
    WaitTimeout,
    assess,
    describe,
    label_selector,
    needs_wait,
    object_ref,
)

Obj = dict[str, Any]

# -- builders for the pure cases ------------------------------------------------------------


def cond(ctype: str, status: str = "True", reason: str = "", message: str = "") -> Obj:
    return {"type": ctype, "status": status, "reason": reason, "message": message}


def deploy(
    *,
    generation: int = 2,
    observed: int | None = 2,
    replicas: int | None = 3,
    status_replicas: int = 3,
    updated: int = 3,
    ready: int = 3,
    available: int = 3,
    conditions: list[Obj] | None = None,
) -> Obj:
    status: Obj = {
        "replicas": status_replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": conditions or [],
    }
    if observed is not None:
        status["observedGeneration"] = observed
    spec: Obj = {} if replicas is None else {"replicas": replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": generation},
        "spec": spec,
        "status": status,
    }


def sts(
    *,
    replicas: int = 3,
    ready: int = 3,
    status_replicas: int = 3,
    updated: int = 3,
    strategy: Obj | None = None,
    revisions: tuple[str, str] = ("r1", "r1"),
    observed: int = 1,
) -> Obj:
    spec: Obj = {"replicas": replicas}
    if strategy is not None:
        spec["updateStrategy"] = strategy
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "generation": 1},
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "replicas": status_replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "currentRevision": revisions[0],
            "updateRevision": revisions[1],
        },
    }


def ds(desired: int = 2, updated: int = 2, available: int = 2, ready: int = 2) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": desired,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberReady": ready,
        },
    }


def rs(replicas: int = 2, ready: int = 2, available: int = 2, observed: int = 1) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "generation": 1},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "availableReplicas": available,
        },
    }


def job(status: Obj | None = None, spec: Obj | None = None) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "generation": 1},
        "spec": spec or {},
        "status": status or {},
    }


def pod(
    phase: str = "Running",
    ready: str | None = "True",
    waiting: str | None = None,
    restarts: int = 0,
    conditions: list[Obj] | None = None,
    **status: Any,
) -> Obj:
    cs: Obj = {"name": "app", "restartCount": restarts, "ready": ready == "True"}
    cs["state"] = (
        {"waiting": {"reason": waiting, "message": "details"}}
        if waiting
        else {"running": {"startedAt": "2025-01-01T00:00:00Z"}}
    )
    conds = list(conditions or [])
    if ready is not None:
        conds.append(cond("Ready", ready, "" if ready == "True" else "ContainersNotReady"))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "status": {"phase": phase, "conditions": conds, "containerStatuses": [cs], **status},
    }


def simple(kind: str, api_version: str = "v1", **fields: Any) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, **fields}


def crd(*conditions: Obj) -> Obj:
    return simple(
        "CustomResourceDefinition",
        "apiextensions.k8s.io/v1",
        status={"conditions": list(conditions)},
    )


# (id, object, ready, failed, expected reason)
CASES: list[tuple[str, Obj, bool, bool, str]] = [
    # Deployment: each kubectl/kstatus gate in order
    ("deploy-ready", deploy(), True, False, "3/3 ready"),
    ("deploy-replicas-default-1", deploy(replicas=None, status_replicas=1, updated=1, ready=1, available=1), True, False, "1/1 ready"),
    ("deploy-generation", deploy(observed=1), False, False, "observedGeneration 1 < generation 2"),
    ("deploy-never-observed", deploy(observed=None), False, False, "generation 2 not observed yet"),
    ("deploy-deadline", deploy(conditions=[cond("Progressing", "False", "ProgressDeadlineExceeded", 'ReplicaSet "web-1" has timed out progressing.')]), False, True, 'Progressing=False ProgressDeadlineExceeded: ReplicaSet "web-1" has timed out progressing.'),
    ("deploy-updated", deploy(updated=1), False, False, "1 of 3 replicas updated"),
    ("deploy-old-pods", deploy(status_replicas=4), False, False, "1 old replicas pending termination"),
    ("deploy-scale-down", deploy(replicas=1, status_replicas=3, updated=3), False, False, "2 extra replicas pending termination"),
    ("deploy-available", deploy(available=2), False, False, "2 of 3 updated replicas available"),
    ("deploy-ready-count", deploy(ready=2), False, False, "2/3 ready"),
    ("deploy-zero", deploy(replicas=0, status_replicas=0, updated=0, ready=0, available=0), True, False, "0/0 ready"),
    # StatefulSet
    ("sts-ready-revisions", sts(), True, False, "3/3 ready"),
    ("sts-generation", sts(observed=0), False, False, "observedGeneration 0 < generation 1"),
    ("sts-ready-count", sts(ready=2), False, False, "2/3 ready"),
    ("sts-extra", sts(status_replicas=4), False, False, "1 extra pods pending termination"),
    ("sts-revisions", sts(revisions=("r1", "r2")), False, False, "currentRevision r1 != updateRevision r2"),
    ("sts-partition-0", sts(updated=2, strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}), False, False, "2 of 3 replicas updated (partition 0)"),
    ("sts-partition-2", sts(updated=1, revisions=("r1", "r2"), strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}), True, False, "3/3 ready"),
    ("sts-ondelete", sts(revisions=("r1", "r2"), strategy={"type": "OnDelete"}), True, False, "3/3 ready (OnDelete updates)"),
    # DaemonSet
    ("ds-ready", ds(), True, False, "2/2 ready"),
    ("ds-updated", ds(updated=1), False, False, "1 of 2 scheduled pods updated"),
    ("ds-available", ds(available=0), False, False, "0 of 2 scheduled pods available"),
    ("ds-ready-count", ds(ready=1), False, False, "1 of 2 scheduled pods ready"),
    # ReplicaSet
    ("rs-ready", rs(), True, False, "2/2 ready"),
    ("rs-generation", rs(observed=0), False, False, "observedGeneration 0 < generation 1"),
    ("rs-ready-count", rs(ready=1, available=1), False, False, "1/2 ready"),
    ("rs-available", rs(available=1), False, False, "1 of 2 available"),
    # Job
    ("job-complete", job({"succeeded": 1, "conditions": [cond("Complete")]}), True, False, "complete, 1 succeeded"),
    ("job-failed", job({"failed": 1, "conditions": [cond("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]}), False, True, "Job failed: BackoffLimitExceeded (Job has reached the specified backoff limit)"),
    ("job-failure-target", job({"conditions": [cond("FailureTarget", "True", "DeadlineExceeded")]}), False, True, "Job failed: DeadlineExceeded"),
    ("job-running", job({"active": 1}), False, False, "1 active, 0 succeeded of 1"),
    ("job-retrying", job({"active": 1, "succeeded": 2, "failed": 1}, {"completions": 5}), False, False, "1 active, 2 succeeded, 1 failed of 5"),
    ("job-suspended", job({}, {"suspend": True}), False, False, "suspended, 0 active, 0 succeeded of 1"),
    ("job-complete-false", job({"active": 1, "conditions": [cond("Complete", "False")]}), False, False, "1 active, 0 succeeded of 1"),
    # Pod
    ("pod-ready", pod(), True, False, "Running, Ready"),
    ("pod-succeeded", pod("Succeeded", ready="False"), True, False, "Succeeded"),
    ("pod-failed", pod("Failed", ready="False", reason="Evicted"), False, True, "Pod failed: Evicted"),
    ("pod-not-ready", pod(ready="False"), False, False, "Running, Ready=False ContainersNotReady"),
    ("pod-crashloop", pod(ready="False", waiting="CrashLoopBackOff", restarts=3), False, False, "CrashLoopBackOff (container app, 3 restarts): details"),
    ("pod-crashloop-once", pod(ready="False", waiting="CrashLoopBackOff", restarts=1), False, False, "CrashLoopBackOff (container app, 1 restart): details"),
    ("pod-image-pull-backoff", pod("Pending", ready="False", waiting="ImagePullBackOff"), False, False, "ImagePullBackOff (container app): details"),
    ("pod-err-image-pull", pod("Pending", ready="False", waiting="ErrImagePull"), False, False, "ErrImagePull (container app): details"),
    ("pod-config-error", pod("Pending", ready="False", waiting="CreateContainerConfigError"), False, False, "CreateContainerConfigError (container app): details"),
    ("pod-invalid-image", pod("Pending", ready="False", waiting="InvalidImageName"), False, True, "InvalidImageName (container app): details"),
    ("pod-creating", pod("Pending", ready="False", waiting="ContainerCreating"), False, False, "Pending: container app ContainerCreating"),
    ("pod-unschedulable", pod("Pending", ready=None, conditions=[cond("PodScheduled", "False", "Unschedulable", "0/1 nodes are available")]), False, False, "Pending, PodScheduled=False Unschedulable: 0/1 nodes are available"),
    ("pod-terminating", {**pod(), "metadata": {"name": "p", "deletionTimestamp": "2025-01-01T00:00:00Z"}}, False, False, "terminating (deletionTimestamp set)"),
    # PersistentVolumeClaim, Service, CRD
    ("pvc-bound", simple("PersistentVolumeClaim", status={"phase": "Bound"}), True, False, "Bound"),
    ("pvc-pending", simple("PersistentVolumeClaim", status={"phase": "Pending"}), False, False, "phase Pending"),
    ("pvc-lost", simple("PersistentVolumeClaim", status={"phase": "Lost"}), False, True, "phase Lost"),
    ("svc-clusterip", simple("Service", spec={"clusterIP": "127.1.0.9"}), True, False, "ClusterIP 127.1.0.9"),
    ("svc-externalname", simple("Service", spec={"type": "ExternalName"}), True, False, "ExternalName"),
    ("svc-lb-pending", simple("Service", spec={"type": "LoadBalancer", "clusterIP": "127.1.0.9"}), False, False, "LoadBalancer without status.loadBalancer.ingress"),
    ("svc-lb-ready", simple("Service", spec={"type": "LoadBalancer", "clusterIP": "127.1.0.9"}, status={"loadBalancer": {"ingress": [{"ip": "127.0.1.1"}]}}), True, False, "LoadBalancer ingress 127.0.1.1"),
    ("crd-established", crd(cond("NamesAccepted"), cond("Established")), True, False, "Established"),
    ("crd-pending", crd(), False, False, "Established=Unknown"),
    ("crd-names-rejected", crd(cond("NamesAccepted", "False", "MultipleNamesNotAllowed", "x")), False, True, "NamesAccepted=False MultipleNamesNotAllowed: x"),
    # No rule
    ("configmap", simple("ConfigMap", data={"a": "1"}), True, False, "no readiness rule for ConfigMap"),
    ("secret", simple("Secret", data={"password": "c2VjcmV0"}), True, False, "no readiness rule for Secret"),
    ("custom-job", simple("Job", "example.com/v1", status={}), True, False, "no readiness rule for Job.example.com"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "ready", "failed", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_assess(obj: Obj, ready: bool, failed: bool, reason: str) -> None:  # fmt: skip
    result = assess(obj)
    assert (result.ready, result.failed) == (ready, failed), result
    assert result.reason.startswith(reason), result.reason


def test_needs_wait_only_for_kinds_with_a_rule() -> None:
    assert needs_wait(deploy())
    assert needs_wait(job())
    assert needs_wait(crd())
    assert needs_wait(simple("Service", spec={"type": "LoadBalancer"}))
    # A ClusterIP is allocated before the apply returns: nothing to wait for.
    assert not needs_wait(simple("Service", spec={"type": "ClusterIP"}))
    assert not needs_wait(simple("ConfigMap"))
    assert not needs_wait(simple("Secret"))
    assert not needs_wait(simple("Deployment", "example.com/v1"))


def test_label_selector() -> None:
    sel = {
        "matchLabels": {"app": "web", "tier": "fe"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["a", "b"]},
            {"key": "canary", "operator": "NotIn", "values": ["true"]},
            {"key": "team", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert label_selector(sel) == "app=web,tier=fe,env in (a,b),canary notin (true),team,!legacy"
    assert label_selector({"app": "web"}) == "app=web"  # a Service's selector
    assert label_selector({}) is None  # would select every pod
    assert label_selector(None) is None
    assert label_selector({"matchExpressions": [{"key": "a", "operator": "Gt"}]}) is None


def test_object_ref() -> None:
    assert object_ref({"kind": "Deployment", "metadata": {"name": "w", "namespace": "n"}}) == (
        "Deployment/n/w"
    )
    assert object_ref(crd()) == "CustomResourceDefinition/x"


# -- the embedded cluster -------------------------------------------------------------------

_counter = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=0.05, job_duration=0.1),
        directory=tmp_path_factory.mktemp("cluster"),
    )
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def api_client(cluster: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def namespace(api_client: Any, request: pytest.FixtureRequest) -> str:
    from kubernetes import client

    base = request.node.name.lower().replace("_", "-").removeprefix("test-")
    base = "".join(ch for ch in base if ch.isalnum() or ch == "-")[:40].strip("-")
    name = f"r-{base}-{next(_counter)}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": name}})
    return name


def apply(api_client: Any, obj: Obj) -> Obj:
    """Server-side apply through the dynamic client, as the sync engine will."""
    from kubernetes import dynamic

    dyn = dynamic.DynamicClient(api_client)
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    out = resource.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"].get("namespace"),
        field_manager="devloop-test",
        force_conflicts=True,
    )
    return dict(out.to_dict())


def deployment(
    name: str, namespace: str, replicas: int = 1, annotations: dict[str, str] | None = None
) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
        },
    }


def bare_pod(name: str, namespace: str, annotations: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]},
    }


class FakeTime:
    """A clock that moves only when the waiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_scaled_deployment_is_ready_within_a_few_polls(api_client: Any, namespace: str) -> None:
    dep = deployment("web", namespace, replicas=1)
    apply(api_client, dep)
    assert Waiter(api_client, timeout=2).wait([dep]).ok

    scaled = deployment("web", namespace, replicas=3)
    apply(api_client, scaled)
    waiter = Waiter(api_client, timeout=2)
    result = waiter.wait([scaled])

    assert result.ok and not result.timed_out, result
    assert result.ready == [f"Deployment/{namespace}/web"]
    assert result.elapsed < 0.3, result  # embedded pods are Ready after 50 ms
    # A Waiter per cycle (as the sync engine makes them) shares the discovered client.
    assert waiter.live.dynamic is Waiter(api_client, timeout=1).live.dynamic
    from kubernetes import client

    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector="app=web")
    ready = [
        p
        for p in pods.items
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    assert len(ready) == 3


def test_never_ready_deployment_times_out_with_conditions_pods_and_events(
    api_client: Any, namespace: str
) -> None:
    dep = deployment("stuck", namespace, annotations={"devloop.dev/never-ready": "true"})
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": {"a": "1"},
    }
    apply(api_client, cm)
    apply(api_client, dep)

    with pytest.raises(WaitTimeout) as info:
        Waiter(api_client, timeout=0.5).wait_or_raise([cm, dep])

    err = info.value
    assert not isinstance(err, WaitFailed)
    assert err.result.timed_out
    assert err.result.ready == [f"ConfigMap/{namespace}/settings"]
    message = str(err)
    lines = message.splitlines()
    assert lines[0].startswith("timed out after 0.5")
    assert lines[0].endswith(f"waiting for 1 of 2 objects: Deployment/{namespace}/stuck")
    assert f"Deployment/{namespace}/stuck: not ready: 0 of 1 updated replicas available" in lines
    assert "  condition Available=False MinimumReplicasUnavailable:" in message
    assert "  condition Progressing=True ReplicaSetUpdated:" in message
    pod_lines = [line for line in lines if line.startswith("  pod stuck-")]
    assert len(pod_lines) == 1, message
    assert (
        "Running Ready=False (ContainersNotReady) restarts=0 app: running, not ready"
        in (pod_lines[0])
    )
    event_lines = [line for line in lines if line.startswith("  event ")]
    assert 1 <= len(event_lines) <= 5, message
    assert any("Warning Unhealthy Pod/stuck-" in line for line in event_lines), message


def test_crash_looping_pod_reports_crashloopbackoff(api_client: Any, namespace: str) -> None:
    p = bare_pod("crasher", namespace, {"devloop.dev/crash-loop": "true"})
    apply(api_client, p)

    with pytest.raises(WaitTimeout) as info:
        Waiter(api_client, timeout=0.5).wait_or_raise([p])

    (ref, readiness), *_ = info.value.result.not_ready
    assert ref == f"Pod/{namespace}/crasher"
    assert readiness.reason.startswith("CrashLoopBackOff (container app")
    assert not readiness.failed  # a crash loop can heal: keep waiting
    message = str(info.value)
    assert f"Pod/{namespace}/crasher: not ready: CrashLoopBackOff" in message
    assert "  pod crasher: Running Ready=False (ContainersNotReady)" in message
    assert "app: waiting CrashLoopBackOff" in message
    assert "Warning BackOff Pod/crasher" in message


def test_image_pull_error_is_reported_but_not_terminal(api_client: Any, namespace: str) -> None:
    p = bare_pod("puller", namespace, {"devloop.dev/image-pull-error": "true"})
    apply(api_client, p)
    result = Waiter(api_client, timeout=0.3).wait([p])
    assert result.timed_out
    (_, readiness), *_ = result.not_ready
    assert readiness.reason.split()[0] in ("ErrImagePull", "ImagePullBackOff"), readiness
    assert not readiness.failed


def test_failing_job_stops_the_wait_early(api_client: Any, namespace: str) -> None:
    failing = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"devloop.dev/fail": "true"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": "busybox:1.36"}],
                },
            },
        },
    }
    apply(api_client, failing)

    with pytest.raises(WaitFailed) as info:
        Waiter(api_client, timeout=2).wait_or_raise([failing])

    result = info.value.result
    assert not result.timed_out
    assert result.elapsed < 1.0, result  # the job fails after ~0.1 s; the timeout is 2 s
    (ref, readiness), *_ = result.failed
    assert ref == f"Job/{namespace}/migrate"
    assert readiness.failed
    assert readiness.reason.startswith("Job failed: BackoffLimitExceeded")
    message = str(info.value)
    assert message.startswith("gave up after 0.")
    assert (
        f"Job/{namespace}/migrate cannot become ready: Job failed: BackoffLimitExceeded"
    ) in message.splitlines()[0]
    assert "  pod migrate-" in message and "Failed Ready=False" in message
    assert "migrate: terminated Error (exit 1)" in message


def test_statefulset_rollout(api_client: Any, namespace: str) -> None:
    def statefulset(image: str) -> Obj:
        labels = {"app": "db"}
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": namespace},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "db", "image": image}]},
                },
            },
        }

    first = statefulset("postgres:16")
    apply(api_client, first)
    result = Waiter(api_client, timeout=2).wait([first])
    assert result.ok, result

    updated = statefulset("postgres:17")
    apply(api_client, updated)
    result = Waiter(api_client, timeout=2).wait([updated])
    assert result.ok, result
    live = Waiter(api_client, timeout=0).live.get(updated)
    assert live is not None
    assert live["status"]["updatedReplicas"] == 2
    assert assess(live) == Readiness(True, "2/2 ready")


def test_crd_is_established(api_client: Any, namespace: str) -> None:
    plural = f"widgets{next(_counter)}"
    crd_obj = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    apply(api_client, crd_obj)
    result = Waiter(api_client, timeout=2).wait([crd_obj])
    assert result.ok, result
    assert result.ready == [f"CustomResourceDefinition/{plural}.example.com"]


def test_daemonset_pvc_and_load_balancer(api_client: Any, namespace: str) -> None:
    labels = {"app": "agent"}
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "agent", "image": "fluent-bit:3"}]},
            },
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    lb = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "edge", "namespace": namespace},
        "spec": {"type": "LoadBalancer", "selector": labels, "ports": [{"port": 80}]},
    }
    objects = [daemonset, pvc, lb]
    for obj in objects:
        apply(api_client, obj)
    waiter = Waiter(api_client, timeout=2)
    result = waiter.wait(objects)
    assert result.ok, result
    assert [assess(o).reason for o in map(waiter.live.get, objects) if o] == [
        "1/1 ready",
        "Bound",
        f"LoadBalancer ingress {lb_ip(waiter, lb)}",
    ]


def lb_ip(waiter: Waiter, svc: Obj) -> str:
    live = waiter.live.get(svc)
    assert live is not None
    ip = str(live["status"]["loadBalancer"]["ingress"][0]["ip"])
    assert ip.startswith("127."), ip  # nothing leaves the loopback range
    return ip


def test_timeout_logic_with_an_injected_clock(api_client: Any, namespace: str) -> None:
    never = bare_pod("never", namespace, {"devloop.dev/never-ready": "true"})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "edge", "namespace": namespace},
        "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": namespace},
        "stringData": {"password": "hunter2"},
    }
    for obj in (never, service, secret):
        apply(api_client, obj)
    fake = FakeTime()
    waiter = Waiter(api_client, timeout=30, clock=fake.clock, sleep=fake.sleep)

    result = waiter.wait([never, service, secret, never])

    assert result.timed_out
    assert result.elapsed == pytest.approx(30)
    # Short polls first, growing by half each time, capped at one second, and the last
    # one shortened so the final look happens exactly at the deadline.
    assert fake.sleeps[:4] == pytest.approx([0.05, 0.075, 0.1125, 0.16875])
    assert max(fake.sleeps) == 1.0
    assert sum(fake.sleeps) == pytest.approx(30)
    assert fake.sleeps[-1] <= 1.0
    assert result.ready == [f"Service/{namespace}/edge", f"Secret/{namespace}/creds"]
    assert [ref for ref, _ in result.not_ready] == [f"Pod/{namespace}/never"]
    # Only the pod is read again after the first round; the Secret is never read.
    rounds = len(fake.sleeps) + 1
    assert result.requests == rounds + 1


def test_timeout_zero_looks_once(api_client: Any, namespace: str) -> None:
    never = bare_pod("never", namespace, {"devloop.dev/never-ready": "true"})
    apply(api_client, never)
    fake = FakeTime()
    result = Waiter(api_client, timeout=0, clock=fake.clock, sleep=fake.sleep).wait([never])
    assert result.timed_out and fake.sleeps == [] and result.requests == 1


def test_missing_object_is_not_ready(api_client: Any, namespace: str) -> None:
    fake = FakeTime()
    ghost = deployment("ghost", namespace)
    result = Waiter(api_client, timeout=1, clock=fake.clock, sleep=fake.sleep).wait([ghost])
    assert result.not_ready == [(f"Deployment/{namespace}/ghost", Readiness(False, "not found"))]
    assert describe(api_client, ghost) == [f"Deployment/{namespace}/ghost: not found"]


def test_describe_never_reads_or_prints_secret_data(api_client: Any, namespace: str) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": namespace},
        "stringData": {"password": "hunter2"},
    }
    apply(api_client, secret)
    assert describe(api_client, secret) == [
        f"Secret/{namespace}/creds: no readiness rule for Secret"
    ]


def test_wait_over_objects_without_rules_makes_no_request(tmp_path: Path) -> None:
    # No cluster at all: the api client is never touched.
    cm = simple("ConfigMap")
    result = Waiter(object(), timeout=1).wait([cm])
    assert result.ok and result.requests == 0 and result.ready == ["ConfigMap/x"]
