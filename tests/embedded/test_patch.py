"""JSON patch, JSON merge patch and strategic merge patch of the embedded API server.

The strategic-merge expectations were checked against ``kubectl patch --local
--type=strategic``, which runs the same apimachinery code as kube-apiserver.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pytest_devloop.k8s.patch import (
    FIELD_TABLE,
    PatchError,
    is_builtin_group,
    json_equal,
    json_patch,
    merge_patch,
    schema_for,
    strategic_merge_patch,
)


def deployment() -> dict[str, Any]:
    """A live Deployment as kubectl would have created it, plus a server-added env var."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "finalizers": ["a.example/x", "b.example/y"],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "web:v1",
                            "args": ["--a"],
                            "env": [
                                {"name": "A", "value": "1"},
                                {"name": "B", "value": "2"},
                                {"name": "S", "value": "server"},
                            ],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        },
                        {"name": "sidecar", "image": "side:v1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                },
            },
        },
    }


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


def directives_in(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        found += [k for k in value if k.startswith("$")]
        for v in value.values():
            found += directives_in(v)
    elif isinstance(value, list):
        for v in value:
            found += directives_in(v)
    return found


# ---------------------------------------------------------------------------- JSON patch


def test_json_patch_operations_on_a_deployment() -> None:
    live = deployment()
    live["metadata"]["annotations"] = {"example.com/a~b": "x"}
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "N"}},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/0", "value": "--first"},
        {"op": "remove", "path": "/metadata/annotations/example.com~1a~0b"},
        {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"},
        {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copied"},
        {"op": "move", "from": "/spec/template/spec/tolerations", "path": "/spec/tolerations"},
    ]
    patched = json_patch(live, ops)
    assert patched["spec"]["replicas"] == 3
    assert containers(patched)[0]["env"][-1] == {"name": "N"}
    assert containers(patched)[0]["args"] == ["--first", "--a"]
    assert patched["metadata"]["annotations"] == {}
    assert patched["metadata"]["labels"] == {
        "app": "web",
        "app.kubernetes.io/name": "web",
        "copied": "web",
    }
    assert "tolerations" not in patched["spec"]["template"]["spec"]
    assert patched["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert live["spec"]["replicas"] == 2, "the input must not be mutated"


def test_json_patch_replaces_the_whole_document_at_the_root() -> None:
    assert json_patch({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}]) == {"b": 2}


def test_json_patch_copied_values_do_not_alias() -> None:
    patched = json_patch({"a": {"x": [1]}}, [{"op": "copy", "from": "/a", "path": "/b"}])
    patched["b"]["x"].append(2)
    assert patched["a"] == {"x": [1]}


@pytest.mark.parametrize(
    ("ops", "code", "fragment"),
    [
        ([{"op": "test", "path": "/spec/replicas", "value": 5}], 422, "test operation failed"),
        ([{"op": "test", "path": "/spec/replicas", "value": True}], 422, "test"),
        ([{"op": "remove", "path": "/spec/nope"}], 422, "not found"),
        ([{"op": "replace", "path": "/spec/nope", "value": 1}], 422, "not found"),
        ([{"op": "add", "path": "/spec/nope/deeper", "value": 1}], 422, "not found"),
        ([{"op": "add", "path": "/spec/template/spec/volumes/5", "value": {}}], 422, "bounds"),
        ([{"op": "remove", "path": "/spec/template/spec/volumes/-"}], 422, "index"),
        ([{"op": "add", "path": "/spec/template/spec/volumes/01", "value": {}}], 422, "index"),
        ([{"op": "move", "from": "/spec", "path": "/spec/inner"}], 422, "own child"),
        ([{"op": "frobnicate", "path": "/spec"}], 400, "unknown operation"),
        ([{"op": "add", "path": "/spec/x"}], 400, "'value'"),
        ([{"path": "/spec"}], 400, "'op'"),
        ([{"op": "add", "path": "spec", "value": 1}], 400, "must start with"),
        ([{"op": "add", "path": "/a~2b", "value": 1}], 400, "escape"),
        ({"op": "add"}, 400, "list"),
    ],
)
def test_json_patch_errors(ops: Any, code: int, fragment: str) -> None:
    live = deployment()
    before = copy.deepcopy(live)
    with pytest.raises(PatchError) as info:
        json_patch(live, ops)
    assert info.value.code == code
    assert fragment in info.value.message
    assert live == before


def test_json_patch_is_atomic() -> None:
    live = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(live, [{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/c"}])
    assert live == {"a": 1}


# ---------------------------------------------------------------------------- merge patch


def test_merge_patch_follows_rfc_7386() -> None:
    live = deployment()
    patched = merge_patch(
        live,
        {
            "metadata": {"labels": {"app": None, "tier": "fe"}},
            "spec": {
                "replicas": 4,
                "strategy": None,
                "template": {"spec": {"containers": [{"name": "only", "image": "o:1"}]}},
            },
        },
    )
    assert patched["metadata"]["labels"] == {"tier": "fe"}
    assert patched["spec"]["replicas"] == 4
    assert "strategy" not in patched["spec"]
    assert containers(patched) == [{"name": "only", "image": "o:1"}], "lists are replaced whole"
    assert patched["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert containers(live)[0]["name"] == "app"


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


# ---------------------------------------------------------------------------- strategic merge


def test_kubectl_three_way_patch_of_a_deployment() -> None:
    """What ``kubectl apply`` (client-side) sends after editing the manifest.

    The manifest changed the image and env of ``app``, dropped env ``B``, switched the strategy
    to Recreate (``$retainKeys`` clears rollingUpdate), replaced the data volume's source,
    replaced args and tolerations, and swapped a finalizer.
    """
    patch = {
        "metadata": {
            "$setElementOrder/finalizers": ["b.example/y", "c.example/z"],
            "$deleteFromPrimitiveList/finalizers": ["a.example/x"],
            "finalizers": ["c.example/z"],
        },
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                    "containers": [
                        {
                            "name": "app",
                            "image": "web:v2",
                            "$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "S"}],
                            "env": [
                                {"name": "A", "value": "10"},
                                {"name": "C", "value": "3"},
                                {"name": "B", "$patch": "delete"},
                            ],
                            "args": ["--b"],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "data",
                            "$retainKeys": ["configMap", "name"],
                            "configMap": {"name": "cm"},
                            "emptyDir": None,
                        }
                    ],
                    "tolerations": [{"key": "z", "operator": "Exists"}],
                }
            },
        },
    }
    live = deployment()
    before = copy.deepcopy(live)
    patched = strategic_merge_patch(live, patch, "Deployment", "apps")

    assert live == before, "the input must not be mutated"
    assert directives_in(patched) == []
    assert patched["metadata"]["finalizers"] == ["b.example/y", "c.example/z"]
    assert patched["spec"]["strategy"] == {"type": "Recreate"}
    pod = patched["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["app", "sidecar"]
    app = pod["containers"][0]
    assert app["image"] == "web:v2"
    assert app["args"] == ["--b"], "args has no merge strategy: replaced whole"
    assert app["env"] == [
        {"name": "A", "value": "10"},
        {"name": "C", "value": "3"},
        {"name": "S", "value": "server"},
    ]
    assert app["ports"] == [{"containerPort": 80, "protocol": "TCP"}], "untouched fields stay"
    assert pod["volumes"] == [{"name": "data", "configMap": {"name": "cm"}}]
    assert pod["tolerations"] == [{"key": "z", "operator": "Exists"}]
    assert pod["containers"][1] == {"name": "sidecar", "image": "side:v1"}


def test_two_way_patch_merges_env_and_prepends_new_items_like_the_api_server() -> None:
    """Without ``$setElementOrder``, kube-apiserver puts items new to a list first."""
    patch = {
        "metadata": {
            "labels": {"app": None, "tier": "fe"},
            "ownerReferences": [{"uid": "u1", "name": "o", "kind": "K", "apiVersion": "v1"}],
        },
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "new", "image": "n:1"},
                        {
                            "name": "app",
                            "env": [{"name": "Z", "value": "z"}, {"name": "A", "value": "x"}],
                            "ports": [{"containerPort": 8080}],
                        },
                    ],
                    "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]}],
                }
            }
        },
    }
    patched = strategic_merge_patch(deployment(), patch, "Deployment", "apps")
    assert patched["metadata"]["labels"] == {"tier": "fe"}
    assert patched["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert [c["name"] for c in containers(patched)] == ["new", "app", "sidecar"]
    app = containers(patched)[1]
    assert app["env"] == [
        {"name": "Z", "value": "z"},
        {"name": "A", "value": "x"},
        {"name": "B", "value": "2"},
        {"name": "S", "value": "server"},
    ]
    assert app["ports"] == [{"containerPort": 8080}, {"containerPort": 80, "protocol": "TCP"}]
    assert patched["spec"]["template"]["spec"]["hostAliases"] == [
        {"ip": "1.2.3.4", "hostnames": ["a"]}
    ]


def test_null_deletes_keys_and_nulls_never_reach_new_subtrees() -> None:
    patch = {
        "spec": {
            "replicas": None,
            "strategy": {"rollingUpdate": None},
            "template": {"spec": {"nodeSelector": {"disk": "ssd", "zone": None}}},
        },
        "metadata": {"absent": None},
    }
    patched = strategic_merge_patch(deployment(), patch, "Deployment", "apps")
    assert "replicas" not in patched["spec"]
    assert patched["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert patched["spec"]["template"]["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert "absent" not in patched["metadata"]


def test_patch_delete_removes_a_list_item_and_patch_replace_replaces_the_list() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "$patch": "delete"},
                        {
                            "name": "app",
                            "ports": [{"$patch": "replace"}, {"containerPort": 9000}],
                        },
                    ]
                }
            }
        }
    }
    patched = strategic_merge_patch(deployment(), patch, "Deployment", "apps")
    assert [c["name"] for c in containers(patched)] == ["app"]
    assert containers(patched)[0]["ports"] == [{"containerPort": 9000}]


def test_patch_directives_on_maps() -> None:
    replaced = strategic_merge_patch(
        deployment(),
        {"spec": {"template": {"metadata": {"$patch": "replace", "labels": {"v": "2"}}}}},
        "Deployment",
        "apps",
    )
    assert replaced["spec"]["template"]["metadata"] == {"labels": {"v": "2"}}
    emptied = strategic_merge_patch(
        deployment(), {"spec": {"strategy": {"$patch": "delete"}}}, "Deployment", "apps"
    )
    assert emptied["spec"]["strategy"] == {}
    merged = strategic_merge_patch(
        deployment(), {"spec": {"strategy": {"$patch": "merge", "type": "X"}}}, "Deployment", "apps"
    )
    assert merged["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": "25%",
        "maxUnavailable": "25%",
    }
    assert merged["spec"]["strategy"]["type"] == "X"


def test_set_element_order_alone_reorders() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}
            }
        },
        "metadata": {
            "$setElementOrder/finalizers": ["b.example/y", "new", "a.example/x"],
            "finalizers": ["new"],
        },
    }
    patched = strategic_merge_patch(deployment(), patch, "Deployment", "apps")
    assert [c["name"] for c in containers(patched)] == ["sidecar", "app"]
    assert patched["metadata"]["finalizers"] == ["b.example/y", "new", "a.example/x"]


def test_set_element_order_places_new_items_after_server_only_ones() -> None:
    live = {"apiVersion": "v1", "kind": "Pod", "spec": {"volumes": [{"name": n} for n in "1249"]}}
    patch = {
        "spec": {
            "$setElementOrder/volumes": [{"name": "2"}, {"name": "3"}],
            "volumes": [{"name": "3"}, {"name": "1", "$patch": "delete"}],
        }
    }
    patched = strategic_merge_patch(live, patch, "Pod", "")
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["2", "4", "9", "3"]


def test_service_ports_merge_by_port() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {
            "selector": {"app": "a", "tier": "x"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
        },
    }
    patch = {
        "spec": {
            "selector": {"tier": None},
            "ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "name": "https"}],
        }
    }
    patched = strategic_merge_patch(svc, patch, "Service", "")
    assert patched["spec"]["selector"] == {"app": "a"}
    assert patched["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
        {"port": 443, "name": "https"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ]


def test_status_conditions_merge_by_type() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "PodScheduled", "status": "True"},
            ],
        },
    }
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "ok"}]}}
    patched = strategic_merge_patch(pod, patch, "Pod", "")
    assert patched["status"]["conditions"] == [
        {"type": "Ready", "status": "True", "reason": "ok"},
        {"type": "PodScheduled", "status": "True"},
    ]


def test_cronjob_pod_spec_is_found_under_the_job_template() -> None:
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "job",
                                    "image": "j:1",
                                    "env": [{"name": "X", "value": "1"}],
                                }
                            ]
                        }
                    }
                }
            }
        },
    }
    patch = {
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "job",
                                    "env": [
                                        {"name": "Y", "value": "2"},
                                        {"name": "X", "$patch": "delete"},
                                    ],
                                }
                            ]
                        }
                    }
                }
            }
        }
    }
    patched = strategic_merge_patch(cronjob, patch, "CronJob", "batch")
    pod_spec = patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["containers"] == [
        {"name": "job", "image": "j:1", "env": [{"name": "Y", "value": "2"}]}
    ]


def test_new_items_never_carry_directives() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {
                            "name": "cfg",
                            "$retainKeys": ["configMap", "name"],
                            "configMap": {"name": "c", "items": None},
                        }
                    ],
                    "initContainers": [
                        {
                            "name": "init",
                            "env": [{"name": "A", "value": "1"}, {"name": "Q", "$patch": "delete"}],
                        }
                    ],
                }
            }
        }
    }
    patched = strategic_merge_patch(deployment(), patch, "Deployment", "apps")
    assert directives_in(patched) == []
    pod = patched["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "cfg", "configMap": {"name": "c"}}
    assert pod["initContainers"] == [{"name": "init", "env": [{"name": "A", "value": "1"}]}]


def test_unknown_kind_of_a_builtin_group_replaces_lists() -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "rules": [{"verbs": ["get"]}],
    }
    patched = strategic_merge_patch(
        role, {"rules": [{"verbs": ["list"]}]}, "Role", "rbac.authorization.k8s.io"
    )
    assert patched["rules"] == [{"verbs": ["list"]}]


@pytest.mark.parametrize(
    ("patch", "code", "fragment"),
    [
        (
            {
                "spec": {
                    "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}
                }
            },
            400,
            "retainKeys",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            422,
            "does not contain declared merge key: name",
        ),
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "$setElementOrder/containers": [{"name": "sidecar"}],
                            "containers": [{"name": "app", "image": "x"}],
                        }
                    }
                }
            },
            400,
            "doesn't match",
        ),
        ({"spec": {"strategy": {"$patch": "bogus"}}}, 400, "unknown patch type"),
        ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, 400, "primitive list"),
    ],
)
def test_strategic_merge_patch_errors(patch: dict[str, Any], code: int, fragment: str) -> None:
    with pytest.raises(PatchError) as info:
        strategic_merge_patch(deployment(), patch, "Deployment", "apps")
    assert info.value.code == code
    assert fragment in info.value.message


def test_custom_resources_have_no_strategic_merge_patch() -> None:
    with pytest.raises(PatchError) as info:
        strategic_merge_patch({"spec": {}}, {"spec": {"a": 1}}, "Widget", "example.com")
    assert info.value.code == 415
    assert "application/merge-patch+json" in info.value.message


def test_builtin_groups() -> None:
    assert is_builtin_group("")
    assert is_builtin_group("apps")
    assert is_builtin_group("networking.k8s.io")
    assert not is_builtin_group("example.com")
    assert not is_builtin_group("monitoring.coreos.com")


def test_the_table_is_shared_data() -> None:
    deployment_table = FIELD_TABLE[("apps", "Deployment")]
    env = deployment_table["spec.template.spec.containers[].env"]
    assert (env.merge_key, env.list_type, env.list_keys) == ("name", "map", ("name",))
    ports = deployment_table["spec.template.spec.containers[].ports"]
    assert ports.merge_key == "containerPort"
    assert ports.list_keys == ("containerPort", "protocol")
    assert deployment_table["spec.strategy"].strategy == "retainKeys"
    assert FIELD_TABLE[("", "Pod")]["spec.volumes"].strategy == "merge,retainKeys"
    assert FIELD_TABLE[("", "Service")]["spec.ports"].list_keys == ("port", "protocol")
    assert FIELD_TABLE[("apps", "DaemonSet")]["spec.updateStrategy"].strategy == "retainKeys"
    node = schema_for("Deployment", "apps")
    assert node is schema_for("Deployment", "apps")
    container = node.field("spec").field("template").field("spec").field("containers")
    assert container.items().field("env").spec.merge_key == "name"


def test_json_equal_keeps_booleans_apart_from_numbers() -> None:
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal({"a": True}, {"a": 1})
    assert not json_equal([0], [False])
    assert json.loads("1") == 1
