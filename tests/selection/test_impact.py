"""Affected-test selection: the dependency graph of the sms-checker example, the impact of
the changes a developer makes to it, and which recorded tests each change selects, and why.

The objects are written by hand, as `helm template` renders the example chart (the last
test renders the real chart with Helm and checks that both give the same graph and the same
selection). Changes are diffed with the sync engine's own `changed_paths`, so the field
paths are the ones a sync reports.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.k8s.apply import changed_paths
from pytest_devloop.selection.impact import (
    Decision,
    Graph,
    Impact,
    ListRead,
    RecordError,
    TestRecord,
    canonical_path,
    describe_change,
    paths_intersect,
    select,
    summary,
)
from pytest_devloop.sync.plan import object_key

NS = "sms-checker"
APP = f"apps/Deployment/{NS}/sms-checker-app"
MODEL = f"apps/Deployment/{NS}/sms-checker-model"
APP_SVC = f"/Service/{NS}/sms-checker-app"
MODEL_SVC = f"/Service/{NS}/sms-checker-model"
CONFIG = f"/ConfigMap/{NS}/sms-checker-app-config"
SA = f"/ServiceAccount/{NS}/sms-checker"
VS = f"networking.istio.io/VirtualService/{NS}/sms-checker-app"
DR = f"networking.istio.io/DestinationRule/{NS}/sms-checker-app"
INGRESS = f"networking.k8s.io/Ingress/{NS}/sms-checker-app"
SM = f"monitoring.coreos.com/ServiceMonitor/{NS}/sms-checker-app"
APP_PODS = "pods-of:" + APP
APP_ENDPOINTS = f"/Endpoints/{NS}/sms-checker-app"
APP_POD_SELECTOR = (
    "app.kubernetes.io/name=sms-checker,app.kubernetes.io/instance=sms-checker,"
    "app.kubernetes.io/component=app"
)

Objects = dict[str, dict[str, Any]]


# -- the example chart, as rendered ----------------------------------------------------------


def _labels(component: str | None = None) -> dict[str, str]:
    labels = {
        "helm.sh/chart": "sms-checker-0.1.0",
        "app.kubernetes.io/name": "sms-checker",
        "app.kubernetes.io/instance": "sms-checker",
        "app.kubernetes.io/version": "1.0.0",
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "sms-checker",
    }
    if component:
        labels["app.kubernetes.io/component"] = component
    return labels


def _selector(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "sms-checker",
        "app.kubernetes.io/instance": "sms-checker",
        "app.kubernetes.io/component": component,
    }


def _deployment(
    component: str, replicas: int, version: str, image: str, container: dict[str, Any]
) -> dict[str, Any]:
    name = f"sms-checker-{component}"
    pod_labels = {
        **_labels(component),
        "app": name,
        "version": version,
        "sidecar.istio.io/inject": "true",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": _labels(component)},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": _selector(component)},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": "sms-checker",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": component,
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                            **container,
                        }
                    ],
                },
            },
        },
    }


def _service(component: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"sms-checker-{component}",
            "namespace": NS,
            "labels": _labels(component),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(component),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def sms_checker(
    *,
    app_replicas: int = 3,
    app_version: str = "v1",
    app_tag: str = "latest",
    log_level: str = "INFO",
    weights: Mapping[str, int] | None = None,
    service_port: int = 80,
    service_annotations: Mapping[str, str] | None = None,
    app_annotations: Mapping[str, str] | None = None,
) -> Objects:
    """The example chart's objects for the given values (the defaults are values.yaml's)."""
    weights = weights or {"v1": 100}
    app = _deployment(
        "app",
        app_replicas,
        app_version,
        f"sms-checker-app:{app_tag}",
        {"envFrom": [{"configMapRef": {"name": "sms-checker-app-config"}}]},
    )
    if app_annotations:
        app["metadata"]["annotations"] = dict(app_annotations)
    model = _deployment(
        "model",
        3,
        "v1",
        "sms-checker-model:latest",
        {
            "env": [{"name": "PORT", "value": "8081"}, {"name": "LOG_LEVEL", "value": log_level}],
            "volumeMounts": [{"name": "model-cache", "mountPath": "/models"}],
        },
    )
    model["spec"]["template"]["spec"]["volumes"] = [
        {"name": "model-cache", "emptyDir": {"sizeLimit": "1Gi"}}
    ]
    app_service = _service("app", service_port)
    if service_annotations:
        app_service["metadata"]["annotations"] = dict(service_annotations)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "sms-checker", "namespace": NS, "labels": _labels()},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "sms-checker-app-config",
                "namespace": NS,
                "labels": _labels("app"),
            },
            "data": {
                "MODEL_URL": "http://sms-checker-model.sms-checker.svc.cluster.local:8081",
                "LOG_LEVEL": log_level,
                "PORT": "8080",
            },
        },
        app_service,
        _service("model", 8081),
        app,
        model,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "sms-checker-app", "namespace": NS, "labels": _labels("app")},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [
                    {
                        "host": "sms-checker.local",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {
                                            "name": "sms-checker-app",
                                            "port": {"name": "http"},
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": "sms-checker-app", "namespace": NS, "labels": _labels("app")},
            "spec": {
                "host": "sms-checker-app",
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {
                "name": "sms-checker-app",
                "namespace": NS,
                "labels": {**_labels("app"), "release": "prometheus"},
            },
            "spec": {
                "jobLabel": "app.kubernetes.io/name",
                "namespaceSelector": {"matchNames": [NS]},
                "selector": {"matchLabels": _selector("app")},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "sms-checker-app", "namespace": NS, "labels": _labels("app")},
            "spec": {
                "hosts": ["sms-checker-app"],
                "http": [
                    {
                        "name": "app",
                        "route": [
                            {
                                "destination": {
                                    "host": "sms-checker-app",
                                    "subset": subset,
                                    "port": {"number": 80},
                                },
                                "weight": weight,
                            }
                            for subset, weight in weights.items()
                        ],
                        "timeout": "10s",
                    }
                ],
            },
        },
    ]
    return {object_key(o): o for o in objects}


def graph_of(objects: Objects, **kwargs: Any) -> Graph:
    return Graph.build(objects.items(), **kwargs)


def diff(before: Objects, after: Objects) -> dict[str, list[str] | None]:
    """What a sync reports as changed: field paths of updates, None for creates/deletes."""
    out: dict[str, list[str] | None] = {}
    for key in before.keys() | after.keys():
        if key not in before or key not in after:
            out[key] = None
        elif before[key] != after[key]:
            out[key] = changed_paths(before[key], after[key])
    return out


# -- the example project's test suite, as recorded -------------------------------------------


def suite() -> dict[str, TestRecord]:
    """Records of the example project's tests: what each one read on its last run."""
    t = "tests/test_sms_checker.py::"
    return {
        t + "test_app_replicas": TestRecord(
            objects={APP: ["spec.replicas", "status.readyReplicas"]},
            lists=[ListRead("/Pod", NS, "app=sms-checker-app")],
        ),
        t + "test_model_replicas": TestRecord(
            objects={MODEL: ["spec.replicas", "status.readyReplicas"]},
        ),
        t + "test_app_annotations": TestRecord(objects={APP: ["metadata.annotations"]}),
        t + "test_service_selects_app_pods": TestRecord(
            objects={APP_SVC: ["spec.selector"]},
            lists=[ListRead("/Pod", NS, APP_POD_SELECTOR)],
        ),
        t + "test_routing_rules": TestRecord(
            objects={VS: ["spec.http"], DR: ["spec.subsets", "spec.host"]},
        ),
        t + "test_ingress_routes_to_app": TestRecord(objects={INGRESS: ["spec.rules"]}),
        t + "test_servicemonitor_selects_app_service": TestRecord(
            # Reads the monitor's targets (what the prometheus fixture records) besides its spec.
            objects={
                SM: ["spec.selector", "spec.endpoints", "status.targets"],
                APP_SVC: ["metadata.labels"],
            },
        ),
        t + "test_resource_limits": TestRecord(
            objects={
                APP: ["spec.template.spec.containers.0.resources.limits"],
                MODEL: ["spec.template.spec.containers.0.resources.limits"],
            },
        ),
        t + "test_app_config": TestRecord(objects={CONFIG: ["data"]}),
    }


def selected(
    records: Mapping[str, TestRecord | None], impact: Impact, **kwargs: Any
) -> dict[str, str]:
    """Short test name -> reason, for the tests that run."""
    decisions = select(records, list(records), impact, **kwargs)
    return {d.nodeid.rpartition("::")[2]: d.reason for d in decisions if d.run}


def impact_of(before: Objects, after: Objects, **kwargs: Any) -> Impact:
    return graph_of(after).closure(diff(before, after), cause="values.yaml", **kwargs)


# -- the graph -------------------------------------------------------------------------------


def test_graph_edges_of_the_example_chart() -> None:
    g = graph_of(sms_checker())
    assert g.dependents(APP) == {APP_PODS}
    assert g.dependents(APP_PODS) == {APP_ENDPOINTS}
    assert g.dependents(APP_ENDPOINTS) == {SM}
    assert g.dependents(APP_SVC) == {APP_ENDPOINTS, VS, DR, INGRESS, SM}
    assert g.dependents(CONFIG) == {APP}
    assert g.dependents(SA) == {APP, MODEL}
    # The model Service is routed to by nothing and monitored by nothing.
    assert g.dependents(MODEL_SVC) == {f"/Endpoints/{NS}/sms-checker-model"}
    assert g.dependents("pods-of:" + MODEL) == {f"/Endpoints/{NS}/sms-checker-model"}
    for leaf in (VS, DR, INGRESS, SM):
        assert g.dependents(leaf) == set()
    assert (g.pod_labels(APP) or {}).get("version") == "v1"
    assert {APP_PODS, APP_ENDPOINTS, VS} <= g.keys


def test_build_refuses_what_is_not_an_object_key() -> None:
    with pytest.raises(ValueError, match="not an object key"):
        Graph.build([("Deployment/web", {})])


def test_replica_change_reaches_pods_endpoints_and_monitor_not_routes() -> None:
    impact = impact_of(sms_checker(), sms_checker(app_replicas=4))
    assert impact.changed == {APP: ["spec.replicas"]}
    assert impact.fields == {
        APP: ["spec.replicas"],
        APP_PODS: None,
        APP_ENDPOINTS: None,
        SM: ["status.targets"],  # whom it scrapes changed, not its own fields
    }
    assert impact.via[APP] == "Deployment/sms-checker-app ← values.yaml"
    assert impact.via[APP_PODS] == "pod set of Deployment/sms-checker-app ← values.yaml"
    assert impact.via[SM] == (
        "ServiceMonitor/sms-checker-app ← endpoints of Service/sms-checker-app"
        " ← pod set of Deployment/sms-checker-app ← values.yaml"
    )


def test_replica_change_selects_replica_pod_and_monitor_tests_only() -> None:
    impact = impact_of(sms_checker(), sms_checker(app_replicas=4))
    got = selected(suite(), impact)
    assert got == {
        "test_app_replicas": "reads Deployment/sms-checker-app spec.replicas, changed by values.yaml",
        "test_service_selects_app_pods": (
            f"lists Pod {APP_POD_SELECTOR} in sms-checker: "
            "pod set of Deployment/sms-checker-app ← values.yaml"
        ),
        "test_servicemonitor_selects_app_service": (
            "reads ServiceMonitor/sms-checker-app status.targets, reached from endpoints of "
            "Service/sms-checker-app ← pod set of Deployment/sms-checker-app ← values.yaml "
            "(status.targets)"
        ),
    }


def test_status_reads_follow_any_change_of_their_object() -> None:
    records = {
        "t::ready": TestRecord(objects={APP: ["status.readyReplicas"]}),
        "t::generation": TestRecord(objects={APP: ["metadata.generation"]}),
        "t::annotations": TestRecord(objects={APP: ["metadata.annotations"]}),
    }
    impact = impact_of(sms_checker(), sms_checker(app_replicas=4))
    assert selected(records, impact) == {
        "ready": "reads Deployment/sms-checker-app status.readyReplicas, changed by values.yaml "
        "(spec.replicas)",
        "generation": "reads Deployment/sms-checker-app metadata.generation, changed by "
        "values.yaml (spec.replicas)",
    }
    # An annotation change is seen by annotation readers and status readers only, and
    # does not roll pods: nothing beyond the Deployment is reached.
    impact = impact_of(sms_checker(), sms_checker(app_annotations={"team": "sms"}))
    assert impact.fields == {APP: ["metadata.annotations"]}
    assert set(selected(records, impact)) == {"ready", "generation", "annotations"}
    assert set(selected(suite(), impact)) == {"test_app_replicas", "test_app_annotations"}


def test_virtualservice_change_selects_only_routing_tests() -> None:
    impact = impact_of(sms_checker(), sms_checker(weights={"v1": 90, "v2": 10}))
    assert set(impact.fields) == {VS}
    assert selected(suite(), impact) == {
        "test_routing_rules": "reads VirtualService/sms-checker-app spec.http, changed by values.yaml"
    }


def test_configmap_change_reaches_workloads_using_it_and_their_pods_endpoints_monitors() -> None:
    before = sms_checker()
    after = copy.deepcopy(before)
    after[CONFIG]["data"]["LOG_LEVEL"] = "DEBUG"  # only the ConfigMap: an edit by hand
    impact = graph_of(after).closure(diff(before, after), cause="values.yaml")
    assert impact.fields == {
        CONFIG: ["data.LOG_LEVEL"],
        APP: None,  # object level: what its readers see (pods, status) follows a rollout
        APP_PODS: None,
        APP_ENDPOINTS: None,  # a rollout replaces every endpoint
        SM: ["status.targets"],  # ... which the monitor scrapes
    }
    assert (
        impact.via[APP]
        == "Deployment/sms-checker-app ← ConfigMap/sms-checker-app-config ← values.yaml"
    )
    got = selected(suite(), impact)
    assert set(got) == {
        "test_app_config",
        "test_app_replicas",
        "test_app_annotations",
        "test_resource_limits",
        "test_service_selects_app_pods",
        "test_servicemonitor_selects_app_service",
    }
    assert got["test_app_annotations"] == (
        "reads Deployment/sms-checker-app metadata.annotations, reached from "
        "ConfigMap/sms-checker-app-config ← values.yaml"
    )
    # Not the model (it does not mount the ConfigMap), not the routes, not the Service object.
    assert "test_model_replicas" not in got and "test_routing_rules" not in got
    assert "test_ingress_routes_to_app" not in got


def test_configmap_change_with_checksum_annotation_as_the_chart_renders_it() -> None:
    # The chart rolls the app on config changes: the ConfigMap and the pod template's
    # checksum annotation change together. Reached through the ConfigMap, the Deployment
    # counts as changed as a whole, not only at the annotation.
    before = sms_checker()
    after = copy.deepcopy(before)
    after[CONFIG]["data"]["LOG_LEVEL"] = "DEBUG"
    after[APP]["spec"]["template"]["metadata"]["annotations"] = {"checksum/config": "2"}
    impact = graph_of(after).closure(diff(before, after), cause="values.yaml", previous=before)
    assert impact.changed[APP] == ["spec.template.metadata.annotations"]
    assert impact.fields[APP] is None
    got = selected(suite(), impact)
    assert got["test_app_replicas"] == (
        "reads Deployment/sms-checker-app spec.replicas, changed by values.yaml"
    )
    assert "test_routing_rules" not in got


def test_configmap_label_change_feeds_no_container() -> None:
    before = sms_checker()
    after = copy.deepcopy(before)
    after[CONFIG]["metadata"]["labels"]["team"] = "sms"
    impact = graph_of(after).closure(diff(before, after), previous=before)
    assert set(impact.fields) == {CONFIG}


def test_values_change_of_log_level_through_the_chart() -> None:
    # logLevel feeds the ConfigMap (app) and an env value of the model Deployment.
    impact = impact_of(sms_checker(), sms_checker(log_level="DEBUG"))
    assert impact.changed[CONFIG] == ["data.LOG_LEVEL"]
    assert impact.changed[MODEL] == [
        "spec.template.spec.containers[name=model].env[name=LOG_LEVEL].value"
    ]
    got = selected(suite(), impact)
    assert "test_model_replicas" in got  # status follows the model's rollout
    assert "test_routing_rules" not in got and "test_ingress_routes_to_app" not in got


def test_servicemonitor_test_selected_by_its_service_or_the_monitored_replicas() -> None:
    sm_test = {
        "t::sm": suite()["tests/test_sms_checker.py::test_servicemonitor_selects_app_service"]
    }
    port = impact_of(sms_checker(), sms_checker(service_port=8080))
    assert port.fields[SM] == ["status.targets"]
    assert selected(sm_test, port)["sm"].startswith(
        "reads ServiceMonitor/sms-checker-app status.targets"
    )
    # A test of the monitor's own spec is not affected by whom it scrapes.
    spec_test = {"t::spec": TestRecord(objects={SM: ["spec.selector", "spec.endpoints"]})}
    assert selected(spec_test, port) == {}
    # A Service port change reaches its routes too, but not the pods.
    assert {VS, DR, INGRESS, APP_ENDPOINTS} <= set(port.fields)
    assert APP_PODS not in port.fields
    replicas = impact_of(sms_checker(), sms_checker(app_replicas=1))
    assert "sm" in selected(sm_test, replicas)
    # An annotation on the Service moves no endpoint and no route.
    note = impact_of(sms_checker(), sms_checker(service_annotations={"note": "x"}))
    assert set(note.fields) == {APP_SVC}
    assert "sm" not in selected({"t::sm": TestRecord(objects={SM: ["spec"]})}, note)


def test_generated_objects_pods_replicasets_endpointslices() -> None:
    impact = impact_of(sms_checker(), sms_checker(app_replicas=4))
    records = {
        "t::pod": TestRecord(objects={f"/Pod/{NS}/sms-checker-app-7d4b9c-x2k8q": ["status.phase"]}),
        "t::model-pod": TestRecord(objects={f"/Pod/{NS}/sms-checker-model-5f6d7-abcde": None}),
        "t::rs": TestRecord(objects={f"apps/ReplicaSet/{NS}/sms-checker-app-7d4b9c": None}),
        "t::slice-list": TestRecord(
            lists=[
                ListRead(
                    "discovery.k8s.io/EndpointSlice",
                    NS,
                    "kubernetes.io/service-name=sms-checker-app",
                )
            ]
        ),
        "t::model-slices": TestRecord(
            lists=[
                ListRead(
                    "discovery.k8s.io/EndpointSlice",
                    NS,
                    "kubernetes.io/service-name=sms-checker-model",
                )
            ]
        ),
        "t::endpoints": TestRecord(objects={APP_ENDPOINTS: ["subsets"]}),
        "t::slice": TestRecord(
            objects={f"discovery.k8s.io/EndpointSlice/{NS}/sms-checker-app-9xk2p": None}
        ),
        "t::events": TestRecord(lists=[ListRead("/Event", NS, "")]),
        "t::other-ns-events": TestRecord(lists=[ListRead("/Event", "kube-system", "")]),
    }
    got = selected(records, impact)
    assert set(got) == {"pod", "rs", "slice-list", "endpoints", "slice", "events"}
    assert got["pod"] == (
        "reads Pod/sms-checker-app-7d4b9c-x2k8q: pod set of Deployment/sms-checker-app ← values.yaml"
    )


# -- labels and selectors --------------------------------------------------------------------


def test_pod_label_change_selects_lists_of_old_and_new_labels() -> None:
    before, after = sms_checker(), sms_checker(app_version="v2")
    records = {
        "t::v1-pods": TestRecord(lists=[ListRead("/Pod", NS, "version=v1")]),
        "t::v2-pods": TestRecord(lists=[ListRead("/Pod", NS, "version in (v2,v3)")]),
        "t::model-pods": TestRecord(
            lists=[ListRead("/Pod", NS, "app.kubernetes.io/component=model")]
        ),
        "t::other-ns": TestRecord(lists=[ListRead("/Pod", "default", "")]),
        "t::all-ns": TestRecord(lists=[ListRead("/Pod", None, "!canary")]),
    }
    # With the bodies applied before, the old labels are known: the v1 list lost pods.
    precise = impact_of(before, after, previous=before)
    assert precise.labels[APP_PODS] is not None and len(precise.labels[APP_PODS] or []) == 2
    assert set(selected(records, precise)) == {"v1-pods", "v2-pods", "all-ns"}
    # Without them, the old labels are unknown: every pod list in the namespace runs.
    blind = impact_of(before, after)
    assert blind.labels[APP_PODS] is None
    assert set(selected(records, blind)) == {"v1-pods", "v2-pods", "model-pods", "all-ns"}


def test_created_and_deleted_objects() -> None:
    before = sms_checker()
    after = copy.deepcopy(before)
    del after[APP_SVC]
    records = {
        "t::svc": TestRecord(objects={APP_SVC: ["spec.ports"]}),
        "t::routes": TestRecord(objects={VS: ["spec.http"]}),
        "t::svc-list": TestRecord(
            lists=[ListRead("/Service", NS, "app.kubernetes.io/component=app")]
        ),
        "t::model-svc-list": TestRecord(
            lists=[ListRead("/Service", NS, "app.kubernetes.io/component=model")]
        ),
    }
    impact = graph_of(after).closure({APP_SVC: None}, cause="app-service.yaml", previous=before)
    assert {APP_SVC, APP_ENDPOINTS, VS, DR, INGRESS, SM} <= set(impact.fields)
    assert set(selected(records, impact)) == {"svc", "routes", "svc-list"}
    # Without the old body the deleted Service's labels are unknown: every Service list runs.
    impact = graph_of(after).closure({APP_SVC: None})
    assert set(selected(records, impact)) == {"svc", "routes", "svc-list", "model-svc-list"}
    # A deleted object missing from `previous` too: its old body is unknown.
    impact = graph_of(after).closure({APP_SVC: None}, previous={})
    assert {VS, DR, INGRESS, SM} <= set(impact.fields)
    assert set(selected(records, impact)) == {"svc", "routes", "svc-list", "model-svc-list"}
    # A created object (absent from `previous`) has no old labels to worry about.
    impact = graph_of(before).closure({APP_SVC: None}, previous=after)
    assert set(selected(records, impact)) == {"svc", "routes", "svc-list"}


def test_servicemonitor_match_expressions_and_namespace_selectors() -> None:
    objects = sms_checker()

    def monitor(ns: str, name: str, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        obj = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
        return object_key(obj), obj

    expressions = {
        "selector": {
            "matchExpressions": [
                {"key": "app.kubernetes.io/component", "operator": "In", "values": ["app", "web"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ]
        }
    }
    extra = dict(
        [
            monitor(NS, "by-expression", expressions),
            monitor(
                NS,
                "not-model",
                {
                    "selector": {
                        "matchExpressions": [
                            {
                                "key": "app.kubernetes.io/component",
                                "operator": "NotIn",
                                "values": ["app"],
                            }
                        ]
                    }
                },
            ),
            monitor(
                "monitoring", "cross-ns", {**expressions, "namespaceSelector": {"matchNames": [NS]}}
            ),
            monitor("monitoring", "any-ns", {"namespaceSelector": {"any": True}, "selector": {}}),
            monitor("monitoring", "own-ns-only", expressions),
            monitor(
                "monitoring",
                "other-ns",
                {**expressions, "namespaceSelector": {"matchNames": ["default"]}},
            ),
        ]
    )
    g = graph_of({**objects, **extra})
    monitors = g.dependents(APP_SVC) - {APP_ENDPOINTS, VS, DR, INGRESS}
    assert monitors == {
        SM,
        "monitoring.coreos.com/ServiceMonitor/sms-checker/by-expression",
        "monitoring.coreos.com/ServiceMonitor/monitoring/cross-ns",
        "monitoring.coreos.com/ServiceMonitor/monitoring/any-ns",
    }
    assert "monitoring.coreos.com/ServiceMonitor/sms-checker/not-model" in g.dependents(MODEL_SVC)
    records = {
        f"t::{name}": TestRecord(objects={key: ["status.targets"]})
        for key, name in ((k, k.rsplit("/", 1)[1]) for k in extra)
    }
    impact = graph_of({**objects, **extra}).closure({APP: ["spec.replicas"]})
    assert set(selected(records, impact)) == {"by-expression", "cross-ns", "any-ns"}


def test_list_selectors_set_based_and_unparseable() -> None:
    impact = impact_of(sms_checker(), sms_checker(app_replicas=4))
    records = {
        "t::in": TestRecord(
            lists=[ListRead("/Pod", NS, "app in (sms-checker-app, other), !canary")]
        ),
        "t::notin": TestRecord(lists=[ListRead("/Pod", NS, "version notin (v1)")]),
        "t::exists": TestRecord(lists=[ListRead("/Pod", NS, "sidecar.istio.io/inject")]),
        "t::bad": TestRecord(lists=[ListRead("/Pod", NS, "app in (unclosed")]),
        "t::deployments": TestRecord(
            lists=[ListRead("apps/Deployment", NS, "app.kubernetes.io/component=app")]
        ),
        "t::deployments-by-kind": TestRecord(lists=[ListRead("Deployment", None, "")]),
        "t::services": TestRecord(lists=[ListRead("/Service", NS, "")]),
        "t::anything": TestRecord(lists=[ListRead("*", None, "")]),
    }
    got = selected(records, impact)
    # Listing Deployments follows membership only (a replicas change adds or removes no
    # Deployment; the items' fields are recorded as reads of each item).
    assert set(got) == {"in", "exists", "bad", "anything"}
    after = sms_checker()
    after[APP]["metadata"]["labels"]["tier"] = "web"
    relabel = impact_of(sms_checker(), after)
    assert {"deployments", "deployments-by-kind"} <= set(selected(records, relabel))


# -- other references ------------------------------------------------------------------------


def _obj(
    api_version: str, kind: str, name: str, spec: dict[str, Any], ns: str = NS, **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
        **extra,
    }


def test_route_references_all_host_forms() -> None:
    svc = _service("app", 80)
    objects = [
        svc,
        _obj(
            "networking.istio.io/v1",
            "VirtualService",
            "fqdn",
            {
                "hosts": ["sms.example.com"],
                "http": [
                    {
                        "route": [
                            {
                                "destination": {
                                    "host": "sms-checker-app.sms-checker.svc.cluster.local"
                                }
                            }
                        ]
                    }
                ],
            },
            ns="istio-system",
        ),
        _obj(
            "networking.istio.io/v1",
            "VirtualService",
            "short-other-ns",
            {
                "hosts": ["x"],
                "tcp": [{"route": [{"destination": {"host": "sms-checker-app"}}]}],
            },
            ns="istio-system",
        ),
        _obj(
            "networking.istio.io/v1",
            "VirtualService",
            "svc-ns",
            {
                "hosts": ["x"],
                "tls": [{"route": [{"destination": {"host": "sms-checker-app.sms-checker"}}]}],
            },
            ns="default",
        ),
        _obj(
            "networking.istio.io/v1",
            "VirtualService",
            "wildcard",
            {"hosts": ["*.sms-checker.svc.cluster.local"]},
            ns="default",
        ),
        _obj(
            "networking.istio.io/v1",
            "DestinationRule",
            "dr",
            {"host": "sms-checker-app.sms-checker.svc.cluster.local"},
            ns="istio-system",
        ),
        _obj(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "route",
            {
                "parentRefs": [{"name": "gw"}],
                "rules": [{"backendRefs": [{"name": "sms-checker-app", "port": 80}]}],
            },
        ),
        _obj(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "to-other-kind",
            {
                "rules": [
                    {
                        "backendRefs": [
                            {"group": "example.com", "kind": "Bucket", "name": "sms-checker-app"}
                        ]
                    }
                ],
            },
        ),
        _obj(
            "networking.k8s.io/v1",
            "Ingress",
            "default-backend",
            {
                "defaultBackend": {"service": {"name": "sms-checker-app", "port": {"number": 80}}},
            },
        ),
        _obj("gateway.networking.k8s.io/v1", "Gateway", "gw", {"gatewayClassName": "istio"}),
    ]
    g = Graph.build((object_key(o), o) for o in objects)
    assert g.dependents(APP_SVC) == {
        APP_ENDPOINTS,
        "networking.istio.io/VirtualService/istio-system/fqdn",
        "networking.istio.io/VirtualService/default/svc-ns",
        "networking.istio.io/VirtualService/default/wildcard",
        "networking.istio.io/DestinationRule/istio-system/dr",
        "gateway.networking.k8s.io/HTTPRoute/sms-checker/route",
        "networking.k8s.io/Ingress/sms-checker/default-backend",
    }
    assert g.dependents("gateway.networking.k8s.io/Gateway/sms-checker/gw") == {
        "gateway.networking.k8s.io/HTTPRoute/sms-checker/route"
    }


def test_config_secret_and_account_references() -> None:
    pod_spec = {
        "serviceAccountName": "runner",
        "initContainers": [
            {
                "name": "init",
                "image": "busybox",
                "envFrom": [{"secretRef": {"name": "init-secret"}}],
            }
        ],
        "containers": [
            {
                "name": "main",
                "image": "registry.local:5000/team/worker:devloop-1a2b3c",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "a"}}},
                    {
                        "name": "B",
                        "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "b"}},
                    },
                ],
            }
        ],
        "volumes": [
            {"name": "c", "configMap": {"name": "vol-cm"}},
            {"name": "s", "secret": {"secretName": "vol-secret"}},
            {
                "name": "p",
                "projected": {
                    "sources": [
                        {"configMap": {"name": "proj-cm"}},
                        {"secret": {"name": "proj-secret"}},
                    ]
                },
            },
            {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
        ],
    }
    cron = _obj(
        "batch/v1",
        "CronJob",
        "nightly",
        {
            "schedule": "@daily",
            "jobTemplate": {
                "spec": {"template": {"metadata": {"labels": {"job": "nightly"}}, "spec": pod_spec}}
            },
        },
    )
    key = object_key(cron)
    refs = [("ConfigMap", n) for n in ("env-cm", "vol-cm", "proj-cm")]
    refs += [("Secret", n) for n in ("init-secret", "env-secret", "vol-secret", "proj-secret")]
    refs += [("ServiceAccount", "runner"), ("PersistentVolumeClaim", "data")]
    objects = [cron] + [
        {"apiVersion": "v1", "kind": k, "metadata": {"name": n, "namespace": NS}} for k, n in refs
    ]
    g = Graph.build((object_key(o), o) for o in objects)
    for kind, name in refs:
        assert g.dependents(f"/{kind}/{NS}/{name}") == {key}, (kind, name)
    assert g.pod_labels(key) == {"job": "nightly"}
    # An unrelated default ServiceAccount feeds nothing: this pod spec names its own.
    assert g.dependents(f"/ServiceAccount/{NS}/default") == set()
    # A Job made by the CronJob and its pods are generated objects of its pod set.
    impact = g.closure({f"/Secret/{NS}/vol-secret": ["data.token"]})
    records = {
        "t::job": TestRecord(objects={f"batch/Job/{NS}/nightly-28934512": ["status.succeeded"]}),
        "t::jobs": TestRecord(lists=[ListRead("batch/Job", NS, "anything=else")]),
        "t::pods": TestRecord(lists=[ListRead("/Pod", NS, "job=nightly")]),
    }
    assert set(selected(records, impact)) == {"job", "jobs", "pods"}


def test_hpa_and_pdb_both_ways_without_bouncing_back() -> None:
    objects = sms_checker()
    hpa = _obj(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "sms-checker-app",
        {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "sms-checker-app",
            },
            "minReplicas": 2,
            "maxReplicas": 5,
        },
    )
    pdb = _obj(
        "policy/v1",
        "PodDisruptionBudget",
        "sms-checker-app",
        {
            "minAvailable": 1,
            "selector": {"matchLabels": {"app": "sms-checker-app"}},
        },
    )
    hpa_key, pdb_key = object_key(hpa), object_key(pdb)
    objects.update({hpa_key: hpa, pdb_key: pdb})
    g = graph_of(objects)
    assert {hpa_key, pdb_key} <= g.dependents(APP)
    assert g.dependents(hpa_key) == {APP}
    assert g.dependents(pdb_key) == {APP}
    assert pdb_key in g.dependents(APP_PODS)
    records = {
        "t::annotations": TestRecord(objects={APP: ["metadata.annotations"]}),
        "t::replicas": TestRecord(objects={APP: ["spec.replicas"]}),
        "t::hpa": TestRecord(objects={hpa_key: ["status.desiredReplicas"]}),
        "t::pdb": TestRecord(objects={pdb_key: ["status.currentHealthy"]}),
    }
    # A replica change reaches the HPA and the PDB, and does not come back through them.
    impact = g.closure({APP: ["spec.replicas"]})
    assert impact.fields[APP] == ["spec.replicas"]
    assert set(selected(records, impact)) == {"replicas", "hpa", "pdb"}
    # An HPA change reaches the Deployment it scales (whole object: replicas will move).
    impact = g.closure({hpa_key: ["spec.minReplicas"]}, cause="hpa.yaml")
    assert impact.fields[APP] is None
    assert selected(records, impact)["replicas"] == (
        "reads Deployment/sms-checker-app spec.replicas, reached from "
        "HorizontalPodAutoscaler/sms-checker-app ← hpa.yaml"
    )
    # A PDB label change does not reach anything.
    impact = g.closure({pdb_key: ["metadata.labels.team"]}, previous=objects)
    assert set(impact.fields) == {pdb_key}


def test_images_by_repository_or_by_mapping() -> None:
    objects = sms_checker()
    g = graph_of(objects)
    records = {
        "t::app-image": TestRecord(declared=["image:sms-checker-app"]),
        "t::model-image": TestRecord(declared=["image:sms-checker-model"]),
        "t::app-status": TestRecord(objects={APP: ["status.updatedReplicas"]}),
        "t::model-status": TestRecord(objects={MODEL: ["status.updatedReplicas"]}),
    }
    # A rebuilt image (no object changed yet): the workloads running it, tag ignored.
    impact = g.closure({"image:sms-checker-app": None}, cause="images/app/app.py")
    assert impact.images == {"sms-checker-app"}
    assert (
        impact.via[APP] == "Deployment/sms-checker-app ← image sms-checker-app ← images/app/app.py"
    )
    assert set(selected(records, impact)) == {"app-image", "app-status"}
    # A new tag in the rendered Deployment counts as a change of its image.
    impact = impact_of(objects, sms_checker(app_tag="devloop-0123456789ab"))
    assert impact.images == {"sms-checker-app"}
    assert set(selected(records, impact)) == {"app-image", "app-status"}
    # With an explicit mapping, the repository does not matter.
    g = graph_of(objects, images_of={"model-img": [MODEL]})
    impact = g.closure({"image:model-img": None})
    assert set(impact.fields) == {MODEL, "pods-of:" + MODEL, f"/Endpoints/{NS}/sms-checker-model"}
    assert impact.images == {"model-img"}


# -- selection rules -------------------------------------------------------------------------


def test_declared_dependencies() -> None:
    objects = sms_checker()
    g = graph_of(objects, artifact_of=dict.fromkeys(objects, "sms-checker"))
    records = {
        "t::kind-name": TestRecord(declared=["Deployment/sms-checker-app"]),
        "t::lower-kind": TestRecord(declared=["deployment/sms-checker-app"]),
        "t::kind-ns-name": TestRecord(declared=["Deployment/sms-checker/sms-checker-app"]),
        "t::wrong-ns": TestRecord(declared=["Deployment/default/sms-checker-app"]),
        "t::full-key": TestRecord(declared=[APP]),
        "t::model": TestRecord(declared=["Deployment/sms-checker-model"]),
        "t::chart": TestRecord(declared=["chart:sms-checker"]),
        "t::other-chart": TestRecord(declared=["chart:other"]),
        "t::monitor": TestRecord(declared=["ServiceMonitor/sms-checker-app"]),
        "t::garbled": TestRecord(declared=["sms-checker-app"]),
    }
    impact = g.closure({APP: ["spec.replicas"]}, cause="values.yaml")
    got = selected(records, impact)
    assert set(got) == {
        "kind-name",
        "lower-kind",
        "kind-ns-name",
        "full-key",
        "chart",
        "monitor",
        "garbled",
    }
    assert got["kind-name"] == "declares Deployment/sms-checker-app, changed by values.yaml"
    assert got["chart"] == "declares chart:sms-checker, which changed"
    assert got["garbled"] == (
        "declares 'sms-checker-app', which devloop cannot resolve (Kind/name, chart:X, image:X)"
    )
    # A whole-chart change (hooks re-run, forced upgrade) reaches every object of it.
    impact = g.closure({"chart:sms-checker": None}, cause="Chart.yaml")
    assert set(objects) <= set(impact.fields)
    assert impact.via[VS] == "VirtualService/sms-checker-app ← chart sms-checker ← Chart.yaml"


def test_selection_rules_in_order() -> None:
    impact = Impact()  # nothing changed
    reads: dict[str, list[str] | None] = {APP: ["spec.replicas"]}
    records: dict[str, TestRecord | None] = {
        "tests/test_a.py::no_record": None,
        "tests/test_a.py::failed": TestRecord(objects=reads, outcome="failed"),
        "tests/test_a.py::error": TestRecord(objects=reads, outcome="error"),
        "tests/test_a.py::odd": TestRecord(objects=reads, outcome="rerun"),
        "tests/test_a.py::skipped": TestRecord(objects=reads, outcome="skipped"),
        "tests/test_a.py::digest": TestRecord(objects=reads, file_digest="old"),
        "tests/test_b.py::edited": TestRecord(objects=reads, file_digest="same"),
        "tests/sub/test_c.py::conftest": TestRecord(objects=reads),
        "tests/test_a.py::always": TestRecord(always=True),
        "tests/test_a.py::quiet": TestRecord(objects=reads, file_digest="same"),
    }
    decisions = select(
        records,
        [*records, "tests/test_new.py::collected_now"],
        impact,
        changed_files={"tests/test_b.py", "./tests/conftest.py"},
        current_file_digests={
            "tests/test_a.py::digest": "new",
            "tests/test_a.py::quiet": "same",
            "tests/test_b.py::edited": "same",
        },
    )
    assert [(d.nodeid.rpartition("::")[2], d.run, d.reason, d.cause) for d in decisions] == [
        ("no_record", True, "no record yet", "no-record"),
        ("failed", True, "failed last time", "failed"),
        ("error", True, "errored last time", "failed"),
        ("odd", True, "last outcome 'rerun' is unknown", "outcome"),
        ("skipped", True, "tests/conftest.py changed", "file"),
        ("digest", True, "its file changed", "file"),
        ("edited", True, "its file changed", "file"),
        ("conftest", True, "tests/conftest.py changed", "file"),
        ("always", True, "tests/conftest.py changed", "file"),
        ("quiet", True, "tests/conftest.py changed", "file"),
        ("collected_now", True, "no record yet", "no-record"),
    ]
    # Without the conftest change the later rules show.
    decisions = select(records, list(records), impact, changed_files={"tests/test_b.py"})
    by_name = {d.nodeid.rpartition("::")[2]: d for d in decisions}
    assert by_name["skipped"] == Decision("tests/test_a.py::skipped", False, "not affected", "none")
    assert by_name["always"].reason == "marked always"
    assert not by_name["quiet"].run and not by_name["conftest"].run


def test_file_of_maps_node_ids_to_paths() -> None:
    records = {"a.py::t": TestRecord()}
    decisions = select(
        records, ["a.py::t"], Impact(), changed_files={"/repo/a.py"}, file_of=lambda n: "/repo/a.py"
    )
    assert decisions == [Decision("a.py::t", True, "its file changed", "file")]


def test_empty_record_and_whole_object_reads() -> None:
    impact = impact_of(sms_checker(), sms_checker(app_annotations={"a": "b"}))
    records = {
        "t::nothing": TestRecord(),
        "t::whole": TestRecord(objects={APP: None}),
        "t::empty-paths": TestRecord(objects={APP: []}),
        "t::spec": TestRecord(objects={APP: ["spec"]}),
        "t::metadata": TestRecord(objects={APP: ["metadata"]}),
    }
    assert set(selected(records, impact)) == {"whole", "metadata"}
    # An empty list is an existence read: only a creation or deletion meets it.
    impact = graph_of(sms_checker()).closure({APP: None}, cause="app-deployment.yaml")
    assert selected(records, impact)["empty-paths"] == (
        "reads Deployment/sms-checker-app (that it exists), changed by app-deployment.yaml"
    )
    impact = graph_of(sms_checker()).closure({CONFIG: ["data"]})  # reached: still exists
    assert "empty-paths" not in selected(records, impact)


# -- field paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("spec.replicas", "spec.replicas"),
        ('metadata.labels["app.kubernetes.io/name"]', "metadata.labels.app.kubernetes.io/name"),
        ("spec.template.spec.containers[name=app].image", "spec.template.spec.containers.*.image"),
        ("spec.template.spec.containers.0.image", "spec.template.spec.containers.*.image"),
        ("spec.ports[3]", "spec.ports.*"),
        ("metadata.finalizers[=example.com/x]", "metadata.finalizers.*"),
        ("(metadata)", "metadata"),
        ("", ""),
    ],
)
def test_canonical_path(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical


@pytest.mark.parametrize(
    ("a", "b", "meet"),
    [
        ("spec.replicas", "spec.replicas", True),
        ("spec", "spec.replicas", True),
        ("spec.replicas", "spec", True),
        ("spec.replica", "spec.replicas", False),
        ("spec.replicas", "spec.template", False),
        ("", "spec.anything", True),
        ("metadata.labels.app", "metadata.labels.app.kubernetes.io/name", True),
        ("spec.ports.*.port", "spec.ports.*", True),
        ("spec.ports.*.port", "spec.ports.*.name", False),
    ],
)
def test_paths_intersect(a: str, b: str, meet: bool) -> None:
    assert paths_intersect(a, b) is meet


def test_diff_paths_meet_recorded_paths() -> None:
    before, after = sms_checker(), sms_checker(app_tag="v2")
    impact = impact_of(before, after)
    records = {
        "t::image": TestRecord(objects={APP: ["spec.template.spec.containers.0.image"]}),
        "t::limits": TestRecord(objects={APP: ["spec.template.spec.containers.0.resources"]}),
        "t::label": TestRecord(objects={APP: ["spec.template.metadata.labels.app"]}),
    }
    assert selected(records, impact) == {
        "image": "reads Deployment/sms-checker-app spec.template.spec.containers.0.image, changed "
        "by values.yaml (spec.template.spec.containers[name=app].image)"
    }


# -- records and summary ---------------------------------------------------------------------


def test_record_json_round_trip_and_errors() -> None:
    rec = TestRecord(
        objects={APP: ["spec.replicas"], SM: None},
        lists=[ListRead("/Pod", NS, "app=x"), ListRead("apps/Deployment", None)],
        declared=["chart:sms-checker"],
        always=True,
        outcome="failed",
        file_digest="abc",
    )
    data = rec.to_json()
    assert TestRecord.from_json(data) == rec
    assert TestRecord.from_json({}) == TestRecord()
    bad: Any
    for bad in (
        [],
        {"objects": []},
        {"objects": {APP: "spec"}},
        {"lists": [{"group_kind": 3, "namespace": None}]},
        {"lists": [["/Pod", None, ""]]},
        {"declared": "chart:x"},
        {"always": "yes"},
        {"outcome": 1},
    ):
        with pytest.raises(RecordError):
            TestRecord.from_json(bad)


def test_summary_lines() -> None:
    change = {APP: ["spec.replicas"]}
    reason = describe_change(change, "values.yaml")
    assert reason == "values.yaml → Deployment/sms-checker-app (spec.replicas)"
    impact = graph_of(sms_checker()).closure(change, cause="values.yaml")
    records: dict[str, TestRecord | None] = dict(suite())
    decisions = select(records, list(records), impact)
    assert summary(decisions, reason) == (
        "devloop: 3 of 9 tests affected by values.yaml → Deployment/sms-checker-app (spec.replicas)"
    )
    records["tests/test_sms_checker.py::test_model_replicas"] = None
    records["tests/test_sms_checker.py::test_app_config"] = TestRecord(outcome="failed")
    decisions = select(records, list(records), impact)
    assert summary(decisions, reason) == (
        "devloop: 5 of 9 tests selected: 3 affected by values.yaml → "
        "Deployment/sms-checker-app (spec.replicas); 1 with no record yet; 1 failed last time"
    )
    assert summary(select({}, [], Impact()), "") == "devloop: 0 of 0 tests affected"
    many = {f"/ConfigMap/ns/c{i}": None for i in range(5)}
    assert describe_change(many, "") == "ConfigMap/c0, ConfigMap/c1, ConfigMap/c2, +2 more"


# -- the real chart --------------------------------------------------------------------------


EXAMPLE_CHART = Path(__file__).resolve().parents[2] / "example_project" / "charts" / "sms-checker"


def test_real_chart_gives_the_same_graph_and_selection(tool: Callable[[str], str]) -> None:
    from pytest_devloop.artifacts.render import HelmTool, render_chart

    helm = HelmTool(tool("helm3"))

    def render(**set_values: Any) -> Objects:
        objects = render_chart(
            helm,
            release="sms-checker",
            chart=EXAMPLE_CHART,
            namespace=NS,
            values_files=[],
            set_values=set_values,
            set_string={},
            kube_version=None,
            api_versions=[],
        )
        return {object_key(d.obj): d.obj for d in objects}

    before, after = render(), render(**{"app.replicas": 4})
    hand = graph_of(sms_checker())
    real = graph_of(before)
    assert real.keys == hand.keys
    for key in hand.keys:
        assert real.dependents(key) == hand.dependents(key), key
    impact = real.closure(diff(before, after), cause="values.yaml")
    assert impact.changed == {APP: ["spec.replicas"]}
    assert selected(suite(), impact) == selected(
        suite(), impact_of(sms_checker(), sms_checker(app_replicas=4))
    )
