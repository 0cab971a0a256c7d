"""Server-side apply and managedFields bookkeeping of the embedded API server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pytest_devloop.k8s.apply import (
    ApplyConflict,
    apply,
    changed_paths,
    dotted_path,
    field_set,
    fields_v1_to_set,
    format_path,
    record_update,
    set_to_fields_v1,
)
from pytest_devloop.k8s.patch import PatchError

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:01:00Z"
T2 = "2024-05-01T10:02:00Z"
T3 = "2024-05-01T10:03:00Z"


def config(replicas: int | None = 2, image: str = "web:v1", **extra: Any) -> dict[str, Any]:
    """What ``kubectl apply --server-side`` sends for a small Deployment."""
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "MODE", "value": "prod"}],
                        }
                    ]
                },
            },
        },
    }
    if replicas is not None:
        obj["spec"]["replicas"] = replicas
    obj["spec"].update(extra)
    return obj


def do_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str = "kubectl",
    *,
    force: bool = False,
    now: str = T0,
    kind: str = "Deployment",
    group: str = "apps",
) -> dict[str, Any]:
    return apply(live, applied, manager, force=force, kind=kind, api_group=group, now=now)


def entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["metadata"].get("managedFields", [])
    return result


def entry(obj: dict[str, Any], manager: str, operation: str = "Apply") -> dict[str, Any]:
    found = [e for e in entries(obj) if e["manager"] == manager and e["operation"] == operation]
    assert len(found) == 1, entries(obj)
    return found[0]


def owned(obj: dict[str, Any], manager: str, operation: str = "Apply") -> set[str]:
    return {format_path(p) for p in fields_v1_to_set(entry(obj, manager, operation)["fieldsV1"])}


def app_container(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return result


# ---------------------------------------------------------------------------- apply


def test_apply_creates_the_object_and_records_the_appliers_fields() -> None:
    applied = config()
    before = copy.deepcopy(applied)
    obj = do_apply(None, applied)

    assert applied == before, "the configuration must not be mutated"
    assert obj["spec"]["replicas"] == 2
    assert obj["metadata"]["name"] == "web"
    assert entries(obj) == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"app"}': {
                                    ".": {},
                                    "f:env": {
                                        'k:{"name":"MODE"}': {
                                            ".": {},
                                            "f:name": {},
                                            "f:value": {},
                                        }
                                    },
                                    "f:image": {},
                                    "f:name": {},
                                    "f:ports": {
                                        'k:{"containerPort":80,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                        }
                                    },
                                }
                            }
                        },
                    },
                },
            },
        }
    ]


def test_identical_second_apply_changes_nothing() -> None:
    first = do_apply(None, config())
    second = do_apply(first, config(), now=T1)
    assert second == first
    assert entry(second, "kubectl")["time"] == T0


def test_server_owned_metadata_and_status_are_never_applied() -> None:
    live = do_apply(None, config())
    live["metadata"].update(uid="u-1", resourceVersion="7", generation=1)
    live["status"] = {"replicas": 2}
    applied = config()
    applied["metadata"].update(uid="evil", generation=9, creationTimestamp="1999-01-01T00:00:00Z")
    applied["status"] = {"replicas": 99}
    obj = do_apply(live, applied, now=T1)
    assert obj["metadata"]["uid"] == "u-1"
    assert obj["metadata"]["generation"] == 1
    assert "creationTimestamp" not in obj["metadata"]
    assert obj["status"] == {"replicas": 2}
    assert not any(path.startswith(".status") for path in owned(obj, "kubectl"))


def test_removing_fields_from_the_configuration_removes_them() -> None:
    live = do_apply(None, config())
    smaller = config()
    del smaller["metadata"]["labels"]
    smaller["spec"]["template"]["spec"]["containers"][0]["env"] = []
    obj = do_apply(live, smaller, now=T1)

    assert "labels" not in obj["metadata"], "a map emptied by pruning disappears"
    assert "env" not in app_container(obj)
    assert app_container(obj)["image"] == "web:v1"
    assert ".metadata.labels.app" not in owned(obj, "kubectl")
    assert entry(obj, "kubectl")["time"] == T1


def test_removing_a_container_removes_it_whole() -> None:
    two = config()
    two["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s:1"})
    live = do_apply(None, two)
    obj = do_apply(live, config(), now=T1)
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["app"]


def test_fields_set_by_others_survive_pruning() -> None:
    live = do_apply(None, config())
    # A controller adds an annotation and an env var through ordinary updates.
    edited = copy.deepcopy(live)
    edited["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    app_container(edited)["env"].append({"name": "INJECTED", "value": "1"})
    live = record_update(live, edited, "controller", now=T1)

    obj = do_apply(live, config(), now=T2)
    assert obj["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}
    assert app_container(obj)["env"] == [
        {"name": "MODE", "value": "prod"},
        {"name": "INJECTED", "value": "1"},
    ]


def test_two_appliers_co_own_a_field() -> None:
    live = do_apply(None, config(replicas=2), "team-a")
    shared = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2},
    }
    live = do_apply(live, shared, "team-b", now=T1)
    assert ".spec.replicas" in owned(live, "team-a")
    assert owned(live, "team-b") == {".spec.replicas"}

    # team-a stops applying replicas: team-b still owns it, so it stays.
    live = do_apply(live, config(replicas=None), "team-a", now=T2)
    assert live["spec"]["replicas"] == 2
    assert ".spec.replicas" not in owned(live, "team-a")

    # team-b stops too: nobody owns it any more, so it goes.
    only_name = copy.deepcopy(shared)
    only_name["metadata"]["labels"] = {"team": "b"}
    del only_name["spec"]
    live = do_apply(live, only_name, "team-b", now=T3)
    assert "replicas" not in live["spec"]
    assert owned(live, "team-b") == {".metadata.labels.team"}


def test_conflict_with_another_applier_and_force() -> None:
    live = do_apply(None, config(replicas=2), "team-a")
    with pytest.raises(ApplyConflict) as info:
        do_apply(live, config(replicas=5), "team-b", now=T1)
    error = info.value
    assert str(error) == 'Apply failed with 1 conflict: conflict with "team-a": .spec.replicas'
    assert error.conflicts == [("team-a", ".spec.replicas")]
    assert error.causes == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "team-a"',
            "field": ".spec.replicas",
        }
    ]
    status = error.to_status()
    assert (status["code"], status["reason"]) == (409, "Conflict")

    forced = do_apply(live, config(replicas=5), "team-b", force=True, now=T1)
    assert forced["spec"]["replicas"] == 5
    assert ".spec.replicas" in owned(forced, "team-b")
    assert ".spec.replicas" not in owned(forced, "team-a")
    # Fields with the same value were merely shared, not taken.
    assert '.spec.template.spec.containers[name="app"].image' in owned(forced, "team-a")


def test_several_conflicts_are_listed_by_manager() -> None:
    live = do_apply(None, config(replicas=2), "team-a")
    edited = copy.deepcopy(live)
    edited["metadata"]["labels"]["app"] = "edited"
    live = record_update(live, edited, "kubectl-edit", now=T1)

    changed = config(replicas=3, image="web:v2")
    changed["metadata"]["labels"]["app"] = "mine"
    with pytest.raises(ApplyConflict) as info:
        do_apply(live, changed, "team-b", now=T2)
    assert str(info.value) == (
        'Apply failed with 3 conflicts: conflicts with "kubectl-edit" using apps/v1:\n'
        "- .metadata.labels.app\n"
        'conflicts with "team-a":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="app"].image'
    )
    assert sorted(info.value.conflicts) == [
        ("kubectl-edit", ".metadata.labels.app"),
        ("team-a", ".spec.replicas"),
        ("team-a", '.spec.template.spec.containers[name="app"].image'),
    ]


def test_kubectl_scale_then_apply_without_force_conflicts() -> None:
    live = do_apply(None, config(replicas=2))
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    live = record_update(live, scaled, "kubectl", subresource="scale", now=T1)
    assert entry(live, "kubectl", "Update") == {
        "manager": "kubectl",
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
        "subresource": "scale",
    }
    assert ".spec.replicas" not in owned(live, "kubectl")

    with pytest.raises(ApplyConflict) as info:
        do_apply(live, config(replicas=2), now=T2)
    assert str(info.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" '
        "using apps/v1: .spec.replicas"
    )

    # Applying the value the object already has is not a conflict: the field becomes shared.
    shared = do_apply(live, config(replicas=5), now=T2)
    assert ".spec.replicas" in owned(shared, "kubectl")
    assert owned(shared, "kubectl", "Update") == {".spec.replicas"}


def test_apply_with_managed_fields_reset() -> None:
    live = do_apply(None, config(), "team-a")
    reset = config()
    reset["metadata"]["managedFields"] = []
    obj = do_apply(live, reset, "team-b", now=T1)
    assert [e["manager"] for e in entries(obj)] == ["team-b"]


def test_managed_fields_are_sorted_like_the_api_server() -> None:
    live = do_apply(None, config(), "zeta")
    edited = copy.deepcopy(live)
    edited["spec"]["paused"] = True
    live = record_update(live, edited, "alpha", now=T1)
    live = do_apply(live, config(), "beta", now=T2)
    assert [(e["operation"], e["manager"]) for e in entries(live)] == [
        ("Apply", "zeta"),
        ("Apply", "beta"),
        ("Update", "alpha"),
    ]


def test_invalid_configurations() -> None:
    duplicated = config()
    duplicated["spec"]["template"]["spec"]["containers"].append({"name": "app", "image": "x"})
    with pytest.raises(PatchError, match="duplicate entries"):
        do_apply(None, duplicated)
    keyless = config()
    keyless["spec"]["template"]["spec"]["containers"][0]["env"].append({"value": "x"})
    with pytest.raises(PatchError, match="omits key field 'name'"):
        do_apply(None, keyless)


def test_custom_resources_have_atomic_lists_and_granular_maps() -> None:
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "finalizers": ["example.com/cleanup"]},
        "spec": {"size": 3, "tags": ["a", "b"], "settings": {"color": "red"}},
    }
    obj = do_apply(None, widget, kind="Widget", group="example.com")
    assert owned(obj, "kubectl") == {
        '.metadata.finalizers[="example.com/cleanup"]',
        ".spec.size",
        ".spec.tags",
        ".spec.settings.color",
    }
    assert entry(obj, "kubectl")["fieldsV1"]["f:metadata"] == {
        "f:finalizers": {'v:"example.com/cleanup"': {}}
    }


def test_status_is_applied_only_through_the_status_subresource() -> None:
    live = do_apply(None, config())
    status = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"ignored": "yes"}},
        "status": {"conditions": [{"type": "Available", "status": "True"}]},
    }
    obj = apply(
        live,
        status,
        "controller",
        force=False,
        kind="Deployment",
        api_group="apps",
        now=T1,
        subresource="status",
    )
    assert obj["status"]["conditions"] == [{"type": "Available", "status": "True"}]
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert owned(obj, "controller") == {
        '.status.conditions[type="Available"]',
        '.status.conditions[type="Available"].status',
        '.status.conditions[type="Available"].type',
    }
    assert entry(obj, "controller")["subresource"] == "status"


# ---------------------------------------------------------------------------- record_update


def test_create_by_update_owns_everything_it_set() -> None:
    created = record_update(None, config(), "kubectl-create", now=T0)
    fields = entry(created, "kubectl-create", "Update")["fieldsV1"]
    assert "f:apiVersion" not in fields and "f:kind" not in fields
    assert fields["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert "." not in fields["f:spec"], "spec is a Go struct: it always exists"
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"app"}']
    assert container["f:ports"] == {
        ".": {},
        'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}},
    }

    # Applying a different image over it conflicts with the creator.
    with pytest.raises(ApplyConflict, match='conflict with "kubectl-create" using apps/v1'):
        do_apply(created, config(image="web:v2"), now=T1)


def test_update_takes_changed_fields_from_the_applier() -> None:
    live = do_apply(None, config())
    edited = copy.deepcopy(live)
    app_container(edited)["image"] = "web:hotfix"
    del app_container(edited)["env"]
    live = record_update(live, edited, "kubectl-edit", now=T1)

    assert owned(live, "kubectl-edit", "Update") == {
        '.spec.template.spec.containers[name="app"].image'
    }
    applier = owned(live, "kubectl")
    assert '.spec.template.spec.containers[name="app"].image' not in applier
    assert not any(".env" in path for path in applier), "removed fields leave every set"


def test_update_without_changes_leaves_managed_fields_alone() -> None:
    live = do_apply(None, config())
    again = record_update(live, copy.deepcopy(live), "kubectl-edit", now=T1)
    assert entries(again) == entries(live)


def test_update_resets_managed_fields_with_an_empty_list() -> None:
    live = do_apply(None, config())
    for reset in ([], [{}]):
        edited = copy.deepcopy(live)
        edited["metadata"]["managedFields"] = reset
        cleared = record_update(live, edited, "kubectl-patch", now=T1)
        assert "managedFields" not in cleared["metadata"]

        edited["spec"]["replicas"] = 4
        taken = record_update(live, edited, "kubectl-patch", now=T1)
        assert [e["manager"] for e in entries(taken)] == ["kubectl-patch"]
        assert owned(taken, "kubectl-patch", "Update") == {".spec.replicas"}


def test_update_keeps_live_managed_fields_when_the_request_has_none() -> None:
    live = do_apply(None, config())
    edited = copy.deepcopy(live)
    del edited["metadata"]["managedFields"]
    edited["spec"]["paused"] = True
    obj = record_update(live, edited, "kubectl-patch", now=T1)
    assert [e["manager"] for e in entries(obj)] == ["kubectl", "kubectl-patch"]
    assert entry(obj, "kubectl") == entry(live, "kubectl")


def test_status_writes_own_only_status() -> None:
    live = do_apply(None, config())
    with_status = copy.deepcopy(live)
    with_status["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    with_status["spec"]["replicas"] = 9  # a status write cannot take spec fields
    obj = record_update(live, with_status, "kube-controller-manager", subresource="status", now=T1)
    assert owned(obj, "kube-controller-manager", "Update") == {
        ".status.replicas",
        '.status.conditions[type="Available"]',
        '.status.conditions[type="Available"].status',
        '.status.conditions[type="Available"].type',
        ".status.conditions",
    }
    assert entry(obj, "kube-controller-manager", "Update")["subresource"] == "status"
    assert ".spec.replicas" in owned(obj, "kubectl")


# ---------------------------------------------------------------------------- helpers


def test_changed_paths_reports_readable_keyed_paths() -> None:
    old = do_apply(None, config())
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 3
    app_container(new)["image"] = "web:v2"
    app_container(new)["env"].append({"name": "DEBUG", "value": "1"})
    new["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s:1"})
    new["metadata"]["labels"]["app.kubernetes.io/name"] = "web"
    new["metadata"]["resourceVersion"] = "42"
    new["metadata"]["managedFields"] = []
    assert changed_paths(old, new) == [
        'metadata.labels["app.kubernetes.io/name"]',
        "spec.replicas",
        "spec.template.spec.containers[name=app].env[name=DEBUG]",
        "spec.template.spec.containers[name=app].image",
        "spec.template.spec.containers[name=sidecar]",
    ]
    assert changed_paths(old, copy.deepcopy(old)) == []
    assert changed_paths(None, {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}}) == [
        "apiVersion",
        "data",
        "kind",
    ]


def test_field_set_and_fields_v1_round_trip() -> None:
    paths = field_set(config())
    encoded = set_to_fields_v1(paths)
    assert fields_v1_to_set(encoded) == set(paths)
    assert ("f:spec", "f:selector") in paths
    assert (
        dotted_path(
            (
                "f:spec",
                "f:template",
                "f:spec",
                "f:containers",
                'k:{"name":"app"}',
                "f:ports",
                'k:{"containerPort":80,"protocol":"TCP"}',
            )
        )
        == "spec.template.spec.containers[name=app].ports[containerPort=80,protocol=TCP]"
    )
    # Keys written by other clients in another order or spacing are normalised.
    assert fields_v1_to_set({"f:x": {'k:{"protocol": "TCP", "containerPort": 80}': {}}}) == {
        ("f:x", 'k:{"containerPort":80,"protocol":"TCP"}')
    }
