"""The embedded cluster through the real `kubernetes` Python client, typed and dynamic."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException

from pytest_devloop.embedded.cluster import EmbeddedCluster


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.27") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        }
                    ]
                },
            },
        },
    }


def wait_until(fn: Any, timeout: float = 10.0) -> Any:
    """Retry `fn` until truthy; a 404 counts as "not yet" (controllers create objects
    such as Endpoints asynchronously, on a real cluster too)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except client.exceptions.ApiException as e:
            if e.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s; last value {last!r}")


def test_version_and_discovery(api_client: Any) -> None:
    info = client.VersionApi(api_client).get_code()
    assert info.git_version.startswith("v1.")
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert {
        "apps",
        "batch",
        "networking.k8s.io",
        "apiextensions.k8s.io",
        "rbac.authorization.k8s.io",
    } <= groups
    core = client.CoreApi(api_client).get_api_versions()
    assert core.versions == ["v1"]
    resources = {r.name for r in client.AppsV1Api(api_client).get_api_resources().resources}
    assert {"deployments", "deployments/scale", "deployments/status"} <= resources


def test_identity_is_kube_system_uid(api_client: Any, cluster: EmbeddedCluster) -> None:
    ns = client.CoreV1Api(api_client).read_namespace("kube-system")
    assert ns.metadata.uid == cluster.uid


def test_configmap_crud_and_stale_update(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    cm = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cfg"}, "data": {"a": "1"}}
    )
    assert cm.metadata.uid and cm.metadata.resource_version and cm.metadata.creation_timestamp
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {}})
    assert exc.value.status == 409 and "AlreadyExists" in exc.value.body

    stale = core.read_namespaced_config_map("cfg", namespace)
    fresh = core.read_namespaced_config_map("cfg", namespace)
    fresh.data = {"a": "2"}
    core.replace_namespaced_config_map("cfg", namespace, fresh)
    stale.data = {"a": "3"}
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("cfg", namespace, stale)
    assert exc.value.status == 409 and '"reason":"Conflict"' in exc.value.body.replace(" ", "")

    patched = core.patch_namespaced_config_map("cfg", namespace, {"data": {"b": "x"}})
    assert patched.data == {"a": "2", "b": "x"}
    listed = core.list_namespaced_config_map(namespace, label_selector="")
    # Every namespace also holds the cluster's root CA bundle, as on a real cluster.
    assert [c.metadata.name for c in listed.items] == ["cfg", "kube-root-ca.crt"]
    core.delete_namespaced_config_map("cfg", namespace)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("cfg", namespace)
    assert exc.value.status == 404


def test_label_and_field_selectors(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    for name, tier in (("a", "web"), ("b", "db"), ("c", "cache")):
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"tier": tier}}}
        )

    def names(**kw: Any) -> list[str]:
        return sorted(
            c.metadata.name for c in core.list_namespaced_config_map(namespace, **kw).items
        )

    assert names(label_selector="tier=web") == ["a"]
    assert names(label_selector="tier in (web,db)") == ["a", "b"]
    assert names(label_selector="tier notin (web),tier") == ["b", "c"]
    assert names(label_selector="!tier") == ["kube-root-ca.crt"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c", "kube-root-ca.crt"]
    page = core.list_namespaced_config_map(namespace, limit=2)
    assert len(page.items) == 2 and page.metadata._continue
    rest = core.list_namespaced_config_map(namespace, limit=2, _continue=page.metadata._continue)
    assert [c.metadata.name for c in rest.items] == ["c", "kube-root-ca.crt"]
    core.delete_collection_namespaced_config_map(namespace, label_selector="tier=db")
    assert names() == ["a", "c", "kube-root-ca.crt"]


def test_deployment_rollout_scale_and_status(api_client: Any, namespace: str) -> None:
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("web"))
    dep = wait_until(
        lambda: (
            (d := apps.read_namespaced_deployment("web", namespace)).status.ready_replicas == 1
            and d
        )
    )
    assert dep.spec.strategy.rolling_update.max_surge == "25%"
    assert dep.metadata.generation == 1 and dep.status.observed_generation == 1

    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
    wait_until(lambda: apps.read_namespaced_deployment("web", namespace).status.ready_replicas == 3)
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 3 and scale.status.selector == "app=web"
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.status.phase == "Running"
        assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network("127.0.0.0/8")
        assert ipaddress.ip_address(pod.status.host_ip) in ipaddress.ip_network("127.0.0.0/8")
        owner = pod.metadata.owner_references[0]
        assert owner.kind == "ReplicaSet" and owner.controller

    # A template change rolls out a new ReplicaSet.
    apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}}},
    )

    def rolled() -> bool:
        d = apps.read_namespaced_deployment("web", namespace)
        return (
            d.status.observed_generation == d.metadata.generation
            and d.status.updated_replicas == 3
            and d.status.ready_replicas == 3
            and (d.status.replicas or 0) == 3
        )

    wait_until(rolled)
    images = {
        p.spec.containers[0].image
        for p in core.list_namespaced_pod(namespace, label_selector="app=web").items
    }
    assert images == {"nginx:1.28"}
    assert len(apps.list_namespaced_replica_set(namespace).items) == 2


def test_service_gets_loopback_cluster_ip_and_endpoints(api_client: Any, namespace: str) -> None:
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("api", replicas=2))
    svc = core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "api"},
            "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )
    assert ipaddress.ip_address(svc.spec.cluster_ip) in ipaddress.ip_network("127.0.0.0/8")
    ep = wait_until(
        lambda: (
            (e := core.read_namespaced_endpoints("api", namespace)).subsets
            and len(e.subsets[0].addresses or []) == 2
            and e
        )
    )
    assert ep.subsets[0].ports[0].port == 8080
    slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=api"
    )
    assert len(slices.items[0].endpoints) == 2


def test_watch_resumes_from_resource_version(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w1"}})
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w2"}})
    core.patch_namespaced_config_map("w2", namespace, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("w1", namespace)
    w = watch.Watch()
    seen = []
    for ev in w.stream(
        core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=2
    ):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w2"), ("MODIFIED", "w2"), ("DELETED", "w1")]


def test_watch_delivers_live_events_and_bookmarks(
    api_client: Any, namespace: str, cluster: EmbeddedCluster
) -> None:
    core = client.CoreV1Api(api_client)
    watching = len(cluster.store._watchers)
    got: list[str] = []

    def consume() -> None:
        w = watch.Watch()
        for ev in w.stream(
            core.list_namespaced_config_map,
            namespace,
            timeout_seconds=3,
            allow_watch_bookmarks=True,
        ):
            if ev["object"].metadata.name == "kube-root-ca.crt":
                continue  # present in every namespace
            got.append(ev["type"] + ":" + (ev["object"].metadata.name or ""))
            if len(got) == 2:
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    # The writes must come after the watch is registered on the server, to be live events.
    wait_until(lambda: len(cluster.store._watchers) > watching)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "live"}})
    core.delete_namespaced_config_map("live", namespace)
    t.join(5)
    assert got == ["ADDED:live", "DELETED:live"]


def test_server_side_apply_conflict_and_force(api_client: Any, namespace: str) -> None:
    dyn = dynamic.DynamicClient(api_client)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": namespace},
        "data": {"k": "one"},
    }
    created = cms.server_side_apply(body=body, field_manager="alice")
    assert created.data.k == "one"
    managers = {e.manager: e.operation for e in created.metadata.managedFields}
    assert managers == {"alice": "Apply"}
    again = cms.server_side_apply(body=body, field_manager="alice")
    assert again.metadata.resourceVersion == created.metadata.resourceVersion

    with pytest.raises(ApiException) as exc:
        cms.server_side_apply(body={**body, "data": {"k": "two"}}, field_manager="bob")
    assert exc.value.status == 409
    assert (
        'conflict with \\"alice\\"' in exc.value.body or 'conflict with "alice"' in exc.value.body
    )
    forced = cms.server_side_apply(
        body={**body, "data": {"k": "two"}}, field_manager="bob", force_conflicts=True
    )
    assert forced.data.k == "two"
    # alice lost the field; dropping it from her config must not delete bob's value.
    kept = cms.server_side_apply(body={**body, "data": {}}, field_manager="alice")
    assert kept.data.k == "two"


def test_apply_removes_fields_dropped_from_config(api_client: Any, namespace: str) -> None:
    apps = client.AppsV1Api(api_client)
    body = deployment("ssa-dep")
    body["metadata"]["namespace"] = namespace
    body["metadata"]["annotations"] = {"team": "a", "tier": "x"}
    dyn = dynamic.DynamicClient(api_client)
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    deps.server_side_apply(body=body, field_manager="devloop")
    del body["metadata"]["annotations"]["tier"]
    deps.server_side_apply(body=body, field_manager="devloop")
    live = apps.read_namespaced_deployment("ssa-dep", namespace)
    assert live.metadata.annotations.get("team") == "a"
    assert "tier" not in live.metadata.annotations


def test_dry_run_writes_nothing(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dry"}}, dry_run="All")
    listed = core.list_namespaced_config_map(namespace, field_selector="metadata.name=dry")
    assert listed.items == []


def test_finalizers_and_foreground_deletion(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "fin", "finalizers": ["example.com/hold"]}}
    )
    core.delete_namespaced_config_map("fin", namespace)
    held = core.read_namespaced_config_map("fin", namespace)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("fin", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("fin", namespace)
    assert exc.value.status == 404

    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("gc", replicas=2))
    wait_until(lambda: len(core.list_namespaced_pod(namespace, label_selector="app=gc").items) == 2)
    apps.delete_namespaced_deployment(
        "gc", namespace, body=client.V1DeleteOptions(propagation_policy="Foreground")
    )
    wait_until(lambda: not core.list_namespaced_pod(namespace, label_selector="app=gc").items)
    wait_until(lambda: not apps.list_namespaced_replica_set(namespace).items)
    wait_until(lambda: not apps.list_namespaced_deployment(namespace).items)


def test_namespace_deletion_removes_contents(api_client: Any) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "x"}})
    client.AppsV1Api(api_client).create_namespaced_deployment("doomed", deployment("d"))
    core.delete_namespace("doomed")

    def gone() -> bool:
        try:
            core.read_namespace("doomed")
        except ApiException as e:
            return e.status == 404
        return False

    wait_until(gone)
    assert core.list_namespaced_config_map("doomed").items == []


def test_custom_resources_served_once_crd_exists(api_client: Any, namespace: str) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
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
    created = ext.create_custom_resource_definition(crd)
    conds = {
        c.type: c.status
        for c in ext.read_custom_resource_definition(created.metadata.name).status.conditions
    }
    assert conds["Established"] == "True"
    co = client.CustomObjectsApi(api_client)
    co.create_namespaced_custom_object(
        "example.com",
        "v1",
        namespace,
        "widgets",
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
        },
    )
    co.patch_namespaced_custom_object(
        "example.com", "v1", namespace, "widgets", "w", {"spec": {"size": 2}}
    )
    assert (
        co.get_namespaced_custom_object("example.com", "v1", namespace, "widgets", "w")["spec"][
            "size"
        ]
        == 2
    )
    ext.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as exc:
        co.list_namespaced_custom_object("example.com", "v1", namespace, "widgets")
    assert exc.value.status == 404


def test_job_completes(api_client: Any, namespace: str) -> None:
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job(
        namespace,
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
    job = wait_until(
        lambda: (j := batch.read_namespaced_job("once", namespace)).status.succeeded == 1 and j
    )
    assert {c.type for c in job.status.conditions} >= {"Complete"}
    assert job.spec.backoff_limit == 6


def test_statefulset_ordinals(api_client: Any, namespace: str) -> None:
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    sts = deployment("db", replicas=3)
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "db"
    apps.create_namespaced_stateful_set(namespace, sts)
    wait_until(
        lambda: apps.read_namespaced_stateful_set("db", namespace).status.ready_replicas == 3
    )
    assert sorted(p.metadata.name for p in core.list_namespaced_pod(namespace).items) == [
        "db-0",
        "db-1",
        "db-2",
    ]


def test_pod_logs(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
        },
    )
    wait_until(lambda: core.read_namespaced_pod("p", namespace).status.phase == "Running")
    text = core.read_namespaced_pod_log("p", namespace)
    assert "busybox:1.36" in text


def test_unauthenticated_request_is_refused(cluster: EmbeddedCluster) -> None:
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{cluster.url}/api/v1/namespaces", timeout=5, context=context)
    assert exc.value.code == 401
    assert json.loads(exc.value.read())["reason"] == "Unauthorized"
    # What real clusters show anyone: the version and health.
    with urllib.request.urlopen(f"{cluster.url}/version", timeout=5, context=context) as resp:
        assert json.loads(resp.read())["gitVersion"].startswith("v1.")
