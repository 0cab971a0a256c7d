"""selection.changes: every kind of change is a change, and "cannot tell" runs tests.

Pure: the change set a sync report becomes, the roots of artifacts whose changes are not
known, the header text. Each path that cannot list its object changes is covered here and
end to end in test_selection_scenarios.py.
"""

from __future__ import annotations

from pytest_devloop.selection import impact
from pytest_devloop.selection.changes import change_set, describe
from pytest_devloop.selection.records import ListRead, TestRecord

APP = "apps/Deployment/shop/shop-v1"
V2 = "apps/Deployment/shop/shop-v2"
SVC = "/Service/shop/shop-v2"
CM = "/ConfigMap/shop/shop-config"
HOOK = "batch/Job/shop/migrate"


def deployment(name: str, version: str) -> dict[str, object]:
    labels = {"app": "shop", "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": []}},
        },
    }


def test_op_words_are_whole_object_changes_and_paths_stay_paths() -> None:
    cs = change_set(
        [
            (APP, ["spec.replicas"]),
            (V2, ["prune"]),
            (SVC, ["create"]),
            (CM, ["drift"]),
            (HOOK, ["hook"]),
        ]
    )
    assert cs.changed == {APP: ["spec.replicas"], V2: None, SVC: None, CM: None, HOOK: None}
    assert cs.ops == {V2: "prune", SVC: "create", CM: "drift", HOOK: "hook"}


def test_a_created_object_meets_a_field_read_and_an_existence_read() -> None:
    cs = change_set([(APP, ["create"])])
    graph = impact.Graph.build([(APP, deployment("shop-v1", "v1"))])
    imp = graph.closure(cs.changed)
    records: dict[str, TestRecord | None] = {
        "t::field": TestRecord(objects={APP: ["spec.replicas"]}),
        "t::exists": TestRecord(objects={APP: []}),
    }
    decisions = impact.select(records, list(records), imp)
    assert [d.run for d in decisions] == [True, True]


def test_a_pruned_workload_meets_the_lists_that_held_its_pods_by_their_old_labels() -> None:
    old = deployment("shop-v2", "v2")
    cs = change_set([(V2, ["prune"])])
    # The pruned object is in the graph with its last applied body.
    graph = impact.Graph.build([(APP, deployment("shop-v1", "v1")), (V2, old)])
    imp = graph.closure(cs.changed, previous={V2: old})
    records: dict[str, TestRecord | None] = {
        "t::v2-pods": TestRecord(lists=[ListRead("/Pod", "shop", "version=v2")]),
        "t::v1-pods": TestRecord(lists=[ListRead("/Pod", "shop", "version=v1")]),
        "t::tier": TestRecord(lists=[ListRead("/Pod", "shop", "app=shop")]),
    }
    run = {d.nodeid for d in impact.select(records, list(records), imp) if d.run}
    assert run == {"t::v2-pods", "t::tier"}


def test_an_opaque_artifact_runs_every_test_that_reads_any_of_its_objects() -> None:
    cs = change_set(
        [(APP, ["spec.replicas"])],
        opaque={"shop": "helm upgrade --install shop ran (Helm does not list what it wrote)"},
        artifact_of={APP: "shop", CM: "shop", "/ConfigMap/other/x": "other"},
    )
    assert cs.uncertain is None
    graph = impact.Graph.build(
        [
            (APP, deployment("shop-v1", "v1")),
            (CM, {"data": {"a": "1"}}),
            ("/ConfigMap/other/x", {}),
        ],
        artifact_of={APP: "shop", CM: "shop", "/ConfigMap/other/x": "other"},
    )
    imp = graph.closure(cs.changed, cause=cs.causes)
    records: dict[str, TestRecord | None] = {
        "t::config": TestRecord(objects={CM: ["data.a"]}),  # an object Helm may have written
        "t::other": TestRecord(objects={"/ConfigMap/other/x": ["data"]}),
    }
    run = {d.nodeid for d in impact.select(records, list(records), imp) if d.run}
    assert run == {"t::config"}
    assert describe(cs).startswith(
        "shop (helm upgrade --install shop ran (Helm does not list what it wrote): "
        "every test that reads shop runs)"
    )


def test_an_opaque_artifact_with_no_known_object_makes_every_test_run() -> None:
    cs = change_set([], opaque={"shop": "helm upgrade --install shop ran"}, artifact_of={})
    assert cs.uncertain is not None and "knows none of shop's objects" in cs.uncertain


def test_the_header_names_the_cause_once_per_file() -> None:
    cs = change_set(
        [(APP, ["spec.replicas"]), (V2, ["spec.replicas"])],
        causes={APP: "charts/shop/values.yaml", V2: "charts/shop/values.yaml"},
    )
    assert describe(cs) == (
        "charts/shop/values.yaml → Deployment/shop-v1 (spec.replicas), "
        "Deployment/shop-v2 (spec.replicas)"
    )
    assert describe(change_set([])) == "the sync (nothing changed in the cluster)"


def test_the_nearest_change_of_a_skipped_test() -> None:
    cs = change_set([(APP, ["spec.template.metadata.annotations"])])
    graph = impact.Graph.build([(APP, deployment("shop-v1", "v1"))])
    imp = graph.closure(cs.changed)
    rec = TestRecord(objects={APP: ["spec.replicas"]})
    assert impact.nearest_change(rec, imp) == (
        "reads Deployment/shop-v1 spec.replicas; nearest change: Deployment/shop-v1 "
        "spec.template.metadata.annotations"
    )
