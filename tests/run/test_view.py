"""The `cluster` and `rendered` views: what each read records, against the embedded cluster.

Objects are created with the `kubernetes` client over real HTTP; each test reads through
a `Cluster` and asserts on the `TestRecord` its `Recorder` returns.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_devloop.cluster.kube import Kube, client_from_kubeconfig
from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.embedded.controllers import SimulationConfig
from pytest_devloop.k8s.apply import dotted_path
from pytest_devloop.run.eventually import eventually
from pytest_devloop.run.view import Cluster, ListView, ObjectView, Rendered, WorkloadView
from pytest_devloop.selection.impact import canonical_path
from pytest_devloop.selection.impact import paths_intersect as intersect
from pytest_devloop.selection.records import (
    ListRead,
    Recorder,
    TestRecord,
    minimal_paths,
    normalize_selector,
    selector_matches,
)
from pytest_devloop.sync.plan import object_key

Obj = dict[str, Any]
_counter = itertools.count()


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=0.05),
        directory=tmp_path_factory.mktemp("cluster"),
    ).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def api(embedded: EmbeddedCluster) -> Iterator[Any]:
    client = client_from_kubeconfig(str(embedded.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="module")
def kube(api: Any) -> Kube:
    return Kube(api)


@pytest.fixture
def namespace(api: Any) -> str:
    """A fresh namespace per test: tests share the module's cluster."""
    from kubernetes import client

    name = f"view-{next(_counter)}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def recorder() -> Recorder:
    r = Recorder()
    r.start("tests/test_view.py::t")
    return r


@pytest.fixture
def cluster(kube: Kube, recorder: Recorder, namespace: str) -> Cluster:
    return Cluster(kube, recorder, namespace=namespace)


def deployment(name: str, *, replicas: int = 2, labels: dict[str, str] | None = None) -> Obj:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {**labels, "app.kubernetes.io/name": name},
            "annotations": {"note": "x"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": f"{name}:1", "ports": [{"containerPort": 8080}]},
                        {"name": "sidecar", "image": "proxy:2"},
                    ]
                },
            },
        },
    }


def create_deployment(api: Any, namespace: str, name: str = "web", **kw: Any) -> Obj:
    from kubernetes import client

    body = deployment(name, **kw)
    client.AppsV1Api(api).create_namespaced_deployment(namespace, body)
    return body


def ready(cluster: Cluster, name: str, replicas: int = 2) -> None:
    """Wait (real time, short) until the simulated pods of `name` are ready."""
    eventually(lambda: cluster.deployment(name).ready_replicas == replicas, timeout=10)


def record_of(recorder: Recorder) -> TestRecord:
    return recorder.stop()


# -- field paths -------------------------------------------------------------------------------


def test_get_records_exactly_the_field_paths_read(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    create_deployment(api, namespace)
    recorder.start("t")
    web = cluster.get("Deployment", "web")
    assert web is not None
    assert web["spec"]["replicas"] == 2
    assert web.metadata.labels["app.kubernetes.io/name"] == "web"
    record = recorder.stop()
    key = f"apps/Deployment/{namespace}/web"
    assert record.objects == {
        key: ['metadata.labels["app.kubernetes.io/name"]', "spec.replicas"],
    }
    assert record.lists == []
    # The same rendering as the plan's changed paths, so the two compare as strings.
    assert record.objects[key] == [
        dotted_path(("f:metadata", "f:labels", "f:app.kubernetes.io/name")),
        dotted_path(("f:spec", "f:replicas")),
    ]


def test_a_get_without_reads_records_only_that_the_object_exists(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    create_deployment(api, namespace)
    recorder.start("t")
    assert cluster.get("deploy", "web") is not None  # truth of the root is not a read
    assert recorder.stop().objects == {f"apps/Deployment/{namespace}/web": []}


def test_kind_names_resolve_like_kubectl(cluster: Cluster, api: Any, namespace: str) -> None:
    create_deployment(api, namespace)
    for kind in ("Deployment", "deployment", "deploy", "deployments", "Deployment.apps"):
        found = cluster.get(kind, "web")
        assert found is not None, kind
        assert found["kind"] == "Deployment"
    assert cluster.resource("deployments.v1.apps").group_version == "apps/v1"
    assert cluster.resource("svc").kind == "Service"
    with pytest.raises(LookupError, match=r"no kind named 'Deploymnt'; did you mean deployment"):
        cluster.get("Deploymnt", "web")


def test_attribute_access_takes_snake_case_and_camel_case(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    create_deployment(api, namespace)
    web = cluster.get("Deployment", "web")
    assert web is not None
    recorder.start("t")
    assert web.spec.revision_history_limit == web.spec.revisionHistoryLimit == 10
    assert web.spec.paused is None  # absent: None, and its absence is recorded
    assert web.api_version == "apps/v1"
    assert recorder.stop().objects == {
        f"apps/Deployment/{namespace}/web": [
            "apiVersion",
            "spec.paused",
            "spec.revisionHistoryLimit",
        ]
    }
    ready(cluster, "web")
    pod = cluster.deployment("web").pods()[0]
    # `pod_ip` finds `podIP`, as the kubernetes client's models name it.
    assert pod.status.pod_ip == pod.status.podIP
    assert str(pod.status.pod_ip).startswith("127.")


def test_lists_record_the_list_path(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    create_deployment(api, namespace)
    web = cluster.get("Deployment", "web")
    assert web is not None
    recorder.start("t")
    containers = web.spec.template.spec.containers
    assert isinstance(containers, ListView)
    assert [c.name for c in containers] == ["app", "sidecar"]
    assert containers[0].ports[0].container_port == 8080
    # Precision stops at the list: a change to any container meets this read.
    assert recorder.stop().objects == {
        f"apps/Deployment/{namespace}/web": ["spec.template.spec.containers"]
    }


@pytest.mark.parametrize(
    ("read", "recorded"),
    [
        (lambda v: v.raw, None),
        (dict, None),
        (lambda v: list(v.spec.selector), ["spec.selector"]),
        (lambda v: len(v.metadata.labels), ["metadata.labels"]),
        (lambda v: v.spec.selector == {"matchLabels": {"app": "web"}}, ["spec.selector"]),
        (lambda v: dict(v.spec.selector.match_labels.items()), ["spec.selector.matchLabels"]),
        (lambda v: "tier" in v.metadata.labels, ["metadata.labels.tier"]),
        (lambda v: v.spec.template.raw, ["spec.template"]),
        (lambda v: bool(v.metadata.annotations), ["metadata.annotations"]),
        (lambda v: repr(v.spec.strategy), ["spec.strategy"]),
        (lambda v: v.metadata.resource_version, None),
        (lambda v: list(v.metadata), None),
        (lambda v: v.metadata.generation, ["metadata.generation", "spec"]),
        (lambda v: v.status.observed_generation, ["spec", "status.observedGeneration"]),
    ],
    ids=[
        "raw",
        "dict",
        "iter",
        "len",
        "eq",
        "items",
        "contains",
        "subtree-raw",
        "bool",
        "repr",
        "resourceVersion",
        "metadata",
        "generation",
        "status",
    ],
)
def test_whole_node_reads_record_the_node(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str, read: Any, recorded: Any
) -> None:
    create_deployment(api, namespace)
    web = cluster.get("Deployment", "web")
    assert web is not None
    recorder.start("t")
    read(web)
    assert recorder.stop().objects == {f"apps/Deployment/{namespace}/web": recorded}


def test_raw_is_a_copy_and_views_are_read_only(api: Any, cluster: Cluster, namespace: str) -> None:
    create_deployment(api, namespace)
    web = cluster.get("Deployment", "web")
    assert web is not None
    raw = web.raw
    raw["spec"]["replicas"] = 99
    assert web.spec.replicas == 2
    with pytest.raises(TypeError):
        web["spec"] = {}
    assert object_key(raw) == f"apps/Deployment/{namespace}/web"


def test_status_reads_depend_on_the_spec(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    create_deployment(api, namespace)
    ready(cluster, "web")
    recorder.start("t")
    web = cluster.deployment("web")
    assert isinstance(web, WorkloadView)
    assert web.ready_replicas == 2
    assert (web.replicas, web.available_replicas, web.updated_replicas) == (2, 2, 2)
    assert web.ready
    assert web.image() == "web:1"
    assert web.image("sidecar") == "proxy:2"
    with pytest.raises(LookupError, match="no container 'db'"):
        web.image("db")
    # A replicas change moves readyReplicas: reading status depends on the spec.
    assert recorder.stop().objects == {
        f"apps/Deployment/{namespace}/web": [
            "metadata.generation",
            "spec",
            "status",
        ]
    }
    recorder.start("t")
    assert cluster.deployment("web").ready_replicas == 2
    assert recorder.stop().objects == {
        f"apps/Deployment/{namespace}/web": ["spec", "status.readyReplicas"]
    }


def test_missing_object_returns_none_and_is_recorded(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    create_deployment(api, namespace, "api")
    recorder.start("t")
    assert cluster.get("Deployment", "web") is None
    assert cluster.get("ConfigMap", "settings") is None
    record = recorder.stop()
    # A test that found nothing depends on the object's creation: the whole object.
    assert record.objects == {
        f"/ConfigMap/{namespace}/settings": None,
        f"apps/Deployment/{namespace}/web": None,
    }
    with pytest.raises(
        LookupError, match=rf"Deployment 'web' not found in namespace '{namespace}' \(there: api\)"
    ):
        cluster.must_get("Deployment", "web")
    with pytest.raises(LookupError, match="not found"):
        cluster.deployment("web")


def test_missing_object_message_names_its_artifact(kube: Kube, namespace: str) -> None:
    artifacts = {f"apps/Deployment/{namespace}/web": "shop"}
    c = Cluster(kube, Recorder(), namespace=namespace, artifact_of=artifacts.get)
    with pytest.raises(LookupError, match="artifact 'shop' renders it: did its sync succeed"):
        c.must_get("Deployment", "web")
    with pytest.raises(LookupError, match="no artifact renders it"):
        c.must_get("Deployment", "other")


# -- lists, pods, services -------------------------------------------------------------------


def test_list_records_a_list_read_with_its_selector(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    create_deployment(api, namespace, "web")
    create_deployment(api, namespace, "api")
    recorder.start("t")
    found = cluster.list("Deployment", selector={"app": "web"})
    assert [d.metadata.name for d in found] == ["web"]
    by_text = cluster.list("deploy", selector="app in (web, api)")
    assert sorted(d.metadata.name for d in by_text) == ["api", "web"]
    everywhere = cluster.list("Deployment", all_namespaces=True)
    assert {d.metadata.name for d in everywhere} >= {"web", "api"}
    record = recorder.stop()
    assert record.lists == [
        ListRead("apps/Deployment", namespace, "app=web"),
        ListRead("apps/Deployment", namespace, "app in (api,web)"),
        ListRead("apps/Deployment", None, ""),
    ]
    # Item reads are recorded under each item's own key.
    assert record.objects[f"apps/Deployment/{namespace}/web"] == ["metadata.name"]


def test_pods_records_the_pod_list_by_the_workload_selector(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    create_deployment(api, namespace, labels={"app": "web", "tier": "fe"})
    ready(cluster, "web")
    recorder.start("t")
    pods = cluster.deployment("web").pods()
    assert len(pods) == 2
    record = recorder.stop()
    assert record.lists == [ListRead("/Pod", namespace, "app=web,tier=fe")]
    assert record.objects == {f"apps/Deployment/{namespace}/web": ["spec.selector"]}


def test_service_endpoints_are_the_ready_pod_addresses(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    from kubernetes import client

    create_deployment(api, namespace)
    client.CoreV1Api(api).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
    )
    ready(cluster, "web")
    pod_ips = sorted(str(p.status.pod_ip) for p in cluster.deployment("web").pods())
    recorder.start("t")
    endpoints = eventually(lambda: cluster.service("web").endpoints(), timeout=10)
    assert endpoints == [(ip, 8080) for ip in pod_ips]
    assert cluster.service("web").endpoints(port="http") == endpoints
    assert cluster.service("web").endpoints(port="metrics") == []
    record = recorder.stop()
    assert record.objects == {f"/Service/{namespace}/web": ["spec"]}
    assert record.lists == [
        ListRead("/Pod", namespace, "app=web"),
        ListRead("discovery.k8s.io/EndpointSlice", namespace, "kubernetes.io/service-name=web"),
    ]


# -- custom kinds ------------------------------------------------------------------------------


def test_custom_kind_is_found_through_discovery(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    from kubernetes import client

    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        {
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {
                    "plural": "widgets",
                    "singular": "widget",
                    "kind": "Widget",
                    "shortNames": ["wdg"],
                },
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )
    eventually(
        lambda: client.CustomObjectsApi(api).create_namespaced_custom_object(
            "example.com",
            "v1",
            namespace,
            "widgets",
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "w1"},
                "spec": {"size": 3},
            },
        ),
        retry_on=(client.ApiException,),
        timeout=10,
    )
    recorder.start("t")
    for name in ("Widget", "widget", "widgets", "wdg", "widgets.example.com", "Widget.example.com"):
        found = cluster.get(name, "w1")
        assert found is not None, name
        assert found.spec.size == 3
    assert cluster.get("Widget", "w1", api_version="example.com/v1") is not None
    assert recorder.stop().objects == {f"example.com/Widget/{namespace}/w1": ["spec.size"]}


# -- logs, events, dependencies, diagnostics ---------------------------------------------------


def test_logs_and_events_record_the_object(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    create_deployment(api, namespace)
    ready(cluster, "web")
    pods = sorted(str(p.metadata.name) for p in cluster.deployment("web").pods())
    recorder.start("t")
    text = cluster.logs("Deployment/web")
    lines = text.splitlines()
    assert lines and all(any(line.startswith(f"[{p}] ") for p in pods) for line in lines)
    assert {line.split("]")[0][1:] for line in lines} == set(pods)
    one = cluster.logs(f"Pod/{pods[0]}", container="app", tail=1)
    assert len(one.splitlines()) == 1
    assert "app ready" in cluster.logs(pods[0])
    events = cluster.events("Pod", pods[0])
    reasons = [e["reason"] for e in events]
    assert reasons[0] == "Scheduled" and "Started" in reasons  # oldest first
    assert all(e["involvedObject"]["name"] == pods[0] for e in events)
    record = recorder.stop()
    # A log or an event list reflects everything about the object: the whole of it.
    assert record.objects == {
        f"apps/Deployment/{namespace}/web": None,
        f"/Pod/{namespace}/{pods[0]}": None,
    }
    assert record.lists == [ListRead("/Pod", namespace, "app=web")]


def test_depends_on_records_objects_and_declares_the_rest(
    cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    cluster.depends_on(
        "Deployment/web",
        "cm/other/settings",
        "apps/StatefulSet/db-ns/db",
        "chart:shop",
        "image:web",
        "Gadget/g",
    )
    record = recorder.stop()
    assert record.objects == {
        f"apps/Deployment/{namespace}/web": None,
        "/ConfigMap/other/settings": None,
        "apps/StatefulSet/db-ns/db": None,
    }
    assert record.declared == ["chart:shop", "image:web", "Gadget/g"]
    assert cluster.api_client is cluster._kube.api_client


def test_describe_shows_state_and_never_secret_data(
    api: Any, cluster: Cluster, recorder: Recorder, namespace: str
) -> None:
    from kubernetes import client

    create_deployment(api, namespace)
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {"metadata": {"name": "creds"}, "stringData": {"password": "hunter2-very-secret"}},
    )
    ready(cluster, "web")
    recorder.start("t")
    lines = cluster.describe(f"apps/Deployment/{namespace}/web")
    assert lines[0] == f"Deployment/{namespace}/web: ready: 2/2 ready"
    assert any(line.startswith("  pod web-") for line in lines)
    assert any(line.startswith("  log web-") and "app ready" in line for line in lines)
    secret_lines = cluster.describe(f"/Secret/{namespace}/creds")
    secret = cluster.must_get("Secret", "creds")
    assert recorder.stop().objects == {f"/Secret/{namespace}/creds": []}  # describe: no record
    shown = "\n".join(secret_lines) + repr(secret) + repr(secret.data)
    assert "hunter2" not in shown
    assert "aHVudGVyM" not in shown  # nor its base64
    assert "<redacted>" in repr(secret)


# -- overhead ----------------------------------------------------------------------------------


def test_a_get_and_its_field_reads_are_recorded_once(
    api: Any, kube: Kube, recorder: Recorder, namespace: str
) -> None:
    """What `bench/bench_micro.py` times: a get plus two field reads, recorded at field level."""
    create_deployment(api, namespace)
    cluster = Cluster(kube, recorder, namespace=namespace)
    for _ in range(3):
        view = cluster.get("Deployment", "web")
        assert view is not None
        view.spec.replicas  # noqa: B018 - the read is the point
        view.metadata.labels["app"]
    assert recorder.stop().objects == {
        f"apps/Deployment/{namespace}/web": ["metadata.labels.app", "spec.replicas"]
    }


# -- the recorder ------------------------------------------------------------------------------


def test_recorder_outside_a_test_counts_reads_and_keeps_none() -> None:
    r = Recorder()
    r.object_read("apps/Deployment/ns/web", "spec")
    r.list_read(ListRead("/Pod", "ns", ""))
    r.declare("chart:shop")
    assert r.unattributed == 3
    r.start("a")
    r.object_read("apps/Deployment/ns/web", "spec.replicas")
    assert r.stop() == TestRecord(objects={"apps/Deployment/ns/web": ["spec.replicas"]}, nodeid="a")
    assert r.stop() == TestRecord()


def test_recorder_keeps_minimal_paths_and_whole_object_wins() -> None:
    r = Recorder()
    r.start("t")
    for path in ("spec.template.spec.containers", "spec.replicas", "spec", "metadata.name"):
        r.object_read("k/A/ns/a", path)
    r.object_read("k/B/ns/b", "spec")
    r.object_read("k/B/ns/b", None)
    r.object_read("k/B/ns/b", "spec.x")
    r.object_seen("k/C/ns/c")
    r.object_seen("k/A/ns/a")
    record = r.stop()
    assert record.objects == {
        "k/A/ns/a": ["metadata.name", "spec"],
        "k/B/ns/b": None,
        "k/C/ns/c": [],
    }
    assert TestRecord.from_json(record.to_json(), "t") == record


def test_recorder_is_thread_safe() -> None:
    r = Recorder()
    r.start("t")

    def read(i: int) -> None:
        for j in range(500):
            r.object_read(f"/ConfigMap/ns/c{i}", f"data.k{j}")
            r.list_read(ListRead("/Pod", "ns", f"n={j % 7}"))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = r.stop()
    assert len(record.objects) == 8
    assert all(len(paths or ()) == 500 for paths in record.objects.values())
    assert len(record.lists) == 7


def test_paths_and_selectors() -> None:
    assert minimal_paths(["spec", "spec-x", "spec.a", 'metadata["a.b"]', 'metadata["a.b"].c']) == [
        'metadata["a.b"]',
        "spec",
        "spec-x",
    ]

    # The paths the recorder writes meet changed paths by the selection's one rule.
    def paths_intersect(a: str, b: str) -> bool:
        return intersect(canonical_path(a), canonical_path(b))

    assert paths_intersect(
        "spec.template.spec.containers", "spec.template.spec.containers[name=app]"
    )
    assert paths_intersect("spec", "spec.replicas") and paths_intersect("spec.replicas", "spec")
    assert not paths_intersect("spec.replicas", "spec.replicasX")
    assert not paths_intersect("metadata.annotations", "spec.replicas")

    assert normalize_selector({"b": "2", "a": "1"}) == "a=1,b=2"
    assert normalize_selector(" b == 2 , a in ( y , x ),!c ") == "!c,a in (x,y),b=2"
    labels = {"app": "web", "tier": "fe", "n": "5"}
    assert selector_matches("app=web,tier in (fe,be)", labels)
    assert selector_matches("app,!missing,tier notin (be),n>3,n<9", labels)
    assert not selector_matches("app!=web", labels)
    assert not selector_matches("app=api", labels)
    assert not selector_matches("tier in (be)", labels)
    assert not selector_matches("n>5", labels)
    assert selector_matches("", labels)
    assert selector_matches("this is ( not parsable", labels)  # when in doubt: affected


# -- rendered ---------------------------------------------------------------------------------


def _rendered_objects() -> list[tuple[str, Obj]]:
    web = deployment("web", replicas=3)
    web["metadata"]["namespace"] = "shop"
    web["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "1", "memory": "128Mi"}
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "shop", "labels": {"app": "nightly"}},
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "initContainers": [{"name": "wait", "image": "busybox"}],
                            "containers": [{"name": "run", "image": "tool:1"}],
                        }
                    }
                }
            }
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
    }
    return [(object_key(o), o) for o in (web, job, svc, monitor)]


def test_rendered_reads_are_recorded_under_the_same_keys() -> None:
    r = Recorder()
    rendered = Rendered(_rendered_objects(), r)
    r.start("t")
    web = rendered.get("Deployment", "web")
    assert web is not None and web.spec.replicas == 3
    assert rendered.get("deploy", "web", "shop") is not None
    monitor = rendered.get("ServiceMonitor", "web")
    assert monitor is not None
    assert monitor.spec.selector.match_labels.app == "web"
    assert rendered.get("servicemonitors", "web") is not None
    assert rendered.get("Deployment", "web", "elsewhere") is None
    assert rendered.get("Deployment", "api") is None
    assert rendered.get("Gadget", "g") is None
    record = r.stop()
    assert record.objects == {
        "apps/Deployment/elsewhere/web": None,
        "apps/Deployment/shop/web": ["spec.replicas"],
        "monitoring.coreos.com/ServiceMonitor/shop/web": ["spec.selector.matchLabels.app"],
    }
    # Absent without a namespace: any new object of the kind (of any kind, if unknown).
    assert record.lists == [ListRead("rendered:apps/Deployment", None), ListRead("*", None)]


def test_rendered_list_all_and_must_get() -> None:
    r = Recorder()
    rendered = Rendered(_rendered_objects(), r)
    r.start("t")
    assert [o.kind for o in rendered.list(selector={"app": "web"})] == ["Deployment", "Service"]
    assert [o.metadata.name for o in rendered.list("svc")] == ["web"]
    assert len(rendered.all()) == 4
    record = r.stop()
    assert record.lists == [
        ListRead("*", None, "app=web"),
        ListRead("rendered:/Service", None, ""),
        ListRead("*", None, ""),
    ]
    with pytest.raises(
        LookupError, match=r"no artifact renders Deployment 'api' \(rendered: web\)"
    ):
        rendered.must_get("Deployment", "api")
    twice = [*_rendered_objects(), *(_with_namespace(o, "other") for o in _rendered_objects()[:1])]
    with pytest.raises(LookupError, match="2 rendered Deployment objects named 'web'"):
        Rendered(twice, r).get("Deployment", "web")


def _with_namespace(item: tuple[str, Obj], namespace: str) -> tuple[str, Obj]:
    obj = ObjectView(item[1]).raw
    obj["metadata"]["namespace"] = namespace
    return object_key(obj), obj


def test_rendered_containers_for_every_container_checks() -> None:
    r = Recorder()
    rendered = Rendered(_rendered_objects(), r)
    r.start("t")
    seen = [(w.metadata.name, c.name) for w, c in rendered.containers()]
    assert seen == [("web", "app"), ("web", "sidecar"), ("nightly", "run")]
    with_init = [c.name for _, c in rendered.containers(init=True)]
    assert with_init == ["app", "sidecar", "wait", "run"]
    without_limits = [
        f"{w.metadata.name}/{c.name}"
        for w, c in rendered.containers()
        if not (c.resources and c.resources.limits)
    ]
    assert without_limits == ["web/sidecar", "nightly/run"]
    record = r.stop()
    assert record.objects == {
        # Absent init containers are read too: adding one changes what init=True yields.
        "apps/Deployment/shop/web": [
            "metadata.name",
            "spec.template.spec.containers",
            "spec.template.spec.initContainers",
        ],
        "batch/CronJob/shop/nightly": [
            "metadata.name",
            "spec.jobTemplate.spec.template.spec.containers",
            "spec.jobTemplate.spec.template.spec.initContainers",
        ],
    }
    # A new workload of any kind must re-run an "every container" check.
    assert ListRead("rendered:apps/Deployment", None) in record.lists
    assert ListRead("rendered:batch/CronJob", None) in record.lists
    assert ListRead("rendered:/Pod", None) in record.lists


def test_waiting_on_a_view_does_not_read_the_whole_object() -> None:
    r = Recorder()
    rendered = Rendered(_rendered_objects(), r)
    r.start("t")
    found = eventually(lambda: rendered.get("Deployment", "web"), timeout=0)
    assert isinstance(found, ObjectView)
    assert r.stop().objects == {"apps/Deployment/shop/web": []}


def _crd(kind: str, group: str) -> Obj:
    plural = kind.lower() + "s"
    return {
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


class _CountingKube(Kube):
    def __init__(self, api_client: Any) -> None:
        super().__init__(api_client)
        self.paths: list[str] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.paths.append(path)
        return super().request(method, path, **kwargs)


def test_a_discovery_cache_file_serves_a_later_process_until_a_kind_is_gone(
    api: Any, recorder: Recorder, namespace: str, tmp_path: Any
) -> None:
    from kubernetes import client

    crds = client.ApiextensionsV1Api(api)
    for kind in ("Gadget", "Gizmo"):
        crds.create_custom_resource_definition(_crd(kind, "cache.example.org"))
    cache = tmp_path / "discovery.json"

    def view() -> tuple[Cluster, _CountingKube]:
        kube = _CountingKube(api)
        return Cluster(kube, recorder, namespace=namespace, discovery_cache=cache), kube

    first, first_kube = view()
    eventually(lambda: first.resource("Gizmo").plural == "gizmos", retry_on=(LookupError,))
    assert cache.exists()
    served = len(first_kube.paths)
    # A later process: /api, /apis and the found kind's group version, not a sweep.
    later, later_kube = view()
    assert later.resource("gadget").kind == "Gadget"
    assert len(later_kube.paths) == 3 < served, later_kube.paths
    assert later_kube.paths[-1] == "/apis/cache.example.org/v1"
    # A kind deleted from a group that stays served: the cached name is not trusted.
    crds.delete_custom_resource_definition("gizmos.cache.example.org")
    eventually(lambda: "Gizmo" not in Kube(api).resources("cache.example.org/v1"))
    stale, _ = view()
    with pytest.raises(LookupError, match="no kind named 'Gizmo'"):
        stale.resource("Gizmo")
