"""Unit tests of each validation rule of the embedded cluster, on plain data (no cluster).

One case per rule: the object a real API server refuses, and the message it refuses it
with; plus the objects it accepts, so that no rule turns into a false red.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pytest_devloop.embedded import admission, scheduler
from pytest_devloop.embedded.validation import crd, rules, structure
from pytest_devloop.k8s import validation as v

Obj = dict[str, Any]


def deployment(**spec: Any) -> Obj:
    base: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    }
    base["spec"].update(spec)
    return base


def pod_spec(**extra: Any) -> Obj:
    return {"containers": [{"name": "c", "image": "i"}], **extra}


def messages(key: str, obj: Obj) -> list[str]:
    return [str(e) for e in rules.validate_object(key, True, obj)]


def test_valid_objects_pass() -> None:
    assert messages("apps/deployments", deployment()) == []
    assert messages("pods", {"metadata": {"name": "p"}, "spec": pod_spec()}) == []
    svc = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}]}}
    assert messages("services", svc) == []


@pytest.mark.parametrize(
    ("key", "name", "ok"),
    [
        ("rbac.authorization.k8s.io/clusterroles", "system:aggregate-to-view", True),
        ("rbac.authorization.k8s.io/rolebindings", "a:b:c", True),
        ("rbac.authorization.k8s.io/roles", "a/b", False),
        ("configmaps", "a:b", False),
        ("configmaps", "my.config", True),
        ("services", "1abc", False),
        ("namespaces", "a.b", False),
        ("apps/statefulsets", "a.b", False),
        ("apps/deployments", "a.b", True),
    ],
)
def test_names_are_checked_per_kind(key: str, name: str, ok: bool) -> None:
    errs = rules.validate_metadata(key, True, {"metadata": {"name": name}})
    assert (not errs) is ok


def test_path_segment_messages() -> None:
    assert v.path_segment("..") == ["may not be '..'"]
    assert v.path_segment("a/b%c") == ["may not contain '/'", "may not contain '%'"]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            deployment(replicas=-1),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ),
        (deployment(selector=None), "spec.selector: Required value"),
        (deployment(selector={}), "empty selector is invalid for deployment"),
        (
            deployment(selector={"matchLabels": {"app": "x"}}),
            "`selector` does not match template `labels`",
        ),
        (
            deployment(strategy={"type": "Sometimes"}),
            'spec.strategy.type: Unsupported value: "Sometimes"',
        ),
        (
            deployment(
                strategy={
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0},
                }
            ),
            "may not be 0 when `maxSurge` is 0",
        ),
    ],
)
def test_deployment_rules(obj: Obj, expected: str) -> None:
    assert any(expected in m for m in messages("apps/deployments", obj)), messages(
        "apps/deployments", obj
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": []}, "spec.containers: Required value"),
        ({"containers": [{"name": "c"}]}, "spec.containers[0].image: Required value"),
        ({"containers": [{"image": "i"}]}, "spec.containers[0].name: Required value"),
        (
            {
                "initContainers": [{"name": "c", "image": "i"}],
                "containers": [{"name": "c", "image": "i"}],
            },
            'spec.containers[0].name: Duplicate value: "c"',
        ),
        (pod_spec(restartPolicy="Sometimes"), 'spec.restartPolicy: Unsupported value: "Sometimes"'),
        (pod_spec(dnsPolicy="Google"), 'spec.dnsPolicy: Unsupported value: "Google"'),
        (
            {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 0}]}]},
            "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        (
            {
                "containers": [
                    {"name": "c", "image": "i", "ports": [{"containerPort": 80, "name": "HTTP"}]}
                ]
            },
            "spec.containers[0].ports[0].name: Invalid value",
        ),
        (
            {"containers": [{"name": "c", "image": "i", "env": [{"name": "A=B"}]}]},
            'spec.containers[0].env[0].name: Invalid value: "A=B"',
        ),
        (
            {
                "containers": [
                    {"name": "c", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/x"}]}
                ]
            },
            'spec.containers[0].volumeMounts[0].name: Not found: "v"',
        ),
        (
            pod_spec(volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]),
            'spec.volumes[1].name: Duplicate value: "v"',
        ),
    ],
)
def test_pod_rules(spec: Obj, expected: str) -> None:
    out = messages("pods", {"metadata": {"name": "p"}, "spec": spec})
    assert any(expected in m for m in out), out


def test_restart_policy_per_kind() -> None:
    dep = deployment()
    dep["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert (
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'
        in messages("apps/deployments", dep)
    )
    job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": pod_spec()}}}
    assert any("restartPolicy: Required value" in m for m in messages("batch/jobs", job))
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert any(
        'Unsupported value: "Always": supported values: "OnFailure", "Never"' in m
        for m in messages("batch/jobs", job)
    )
    cron = {
        "metadata": {"name": "c" * 53},
        "spec": {"schedule": "* * *", "jobTemplate": {"spec": job["spec"]}},
    }
    out = messages("batch/cronjobs", cron)
    assert any("must be no more than 52 characters" in m for m in out)
    assert any("spec.schedule: Invalid value" in m for m in out)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"ports": [{"port": 70000}]}, "spec.ports[0].port: Invalid value: 70000"),
        ({"ports": []}, "spec.ports: Required value"),
        (
            {"ports": [{"port": 80, "name": "a"}, {"port": 81}]},
            "spec.ports[1].name: Required value",
        ),
        (
            {"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]},
            'spec.ports[1].name: Duplicate value: "a"',
        ),
        ({"ports": [{"port": 80, "targetPort": 0}]}, "spec.ports[0].targetPort: Invalid value: 0"),
        (
            {"ports": [{"port": 80, "targetPort": "not_valid"}]},
            "spec.ports[0].targetPort: Invalid value",
        ),
        (
            {"ports": [{"port": 80, "targetPort": "8080"}]},
            'spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)',
        ),
        ({"type": "Magic", "ports": [{"port": 80}]}, 'spec.type: Unsupported value: "Magic"'),
        ({"type": "ExternalName"}, "spec.externalName: Required value"),
    ],
)
def test_service_rules(spec: Obj, expected: str) -> None:
    out = messages("services", {"metadata": {"name": "s"}, "spec": spec})
    assert any(expected in m for m in out), out


def test_ingress_hpa_pdb_rules() -> None:
    ing = {
        "metadata": {"name": "i"},
        "spec": {
            "rules": [
                {
                    "host": "Bad_Host",
                    "http": {
                        "paths": [
                            {
                                "path": "x",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "s"}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    out = messages("networking.k8s.io/ingresses", ing)
    assert any("spec.rules[0].host: Invalid value" in m for m in out)
    assert any(
        'spec.rules[0].http.paths[0].path: Invalid value: "x": must be an absolute path' in m
        for m in out
    )
    assert any("backend.service.port: Required value" in m for m in out)
    del ing["spec"]["rules"][0]["http"]["paths"][0]["pathType"]
    assert any(
        "pathType: Required value: pathType must be specified" in m
        for m in messages("networking.k8s.io/ingresses", ing)
    )
    hpa = {
        "metadata": {"name": "h"},
        "spec": {"minReplicas": 5, "maxReplicas": 2, "scaleTargetRef": {"kind": "Deployment"}},
    }
    out = messages("autoscaling/horizontalpodautoscalers", hpa)
    assert (
        "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`" in out
    )
    assert "spec.scaleTargetRef.name: Required value" in out
    pdb = {"metadata": {"name": "p"}, "spec": {"minAvailable": 1, "maxUnavailable": "150%"}}
    out = messages("policy/poddisruptionbudgets", pdb)
    assert any("minAvailable and maxUnavailable cannot be both set" in m for m in out)
    assert any("must be no more than 100%" in m for m in out)


def test_rbac_rules() -> None:
    role = {"metadata": {"name": "r"}, "rules": [{"resources": ["pods"]}]}
    out = messages("rbac.authorization.k8s.io/roles", role)
    assert "rules[0].verbs: Required value: verbs must contain at least one value" in out
    assert (
        "rules[0].apiGroups: Required value: resource rules must supply at least one api group"
        in out
    )
    binding = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa"}],
    }
    out = messages("rbac.authorization.k8s.io/clusterrolebindings", binding)
    assert 'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"' in out
    assert "subjects[0].namespace: Required value" in out


def test_metadata_rules() -> None:
    obj = {
        "metadata": {
            "name": "c",
            "labels": {"bad key!": "v", "ok": "x" * 64},
            "annotations": {"big": "x" * (256 * 1024)},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
                {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": True},
            ],
        }
    }
    out = messages("configmaps", obj)
    assert any(m.startswith('metadata.labels: Invalid value: "bad key!"') for m in out)
    assert any("must be no more than 63 bytes" in m for m in out)
    assert "metadata.annotations: Too long: may not be more than 262144 bytes" in out
    assert any("Only one reference can have Controller set to true" in m for m in out)


def test_configmap_and_secret_data() -> None:
    out = messages(
        "configmaps",
        {"metadata": {"name": "c"}, "data": {"a b": "x", "big": "x" * (1024 * 1024 + 1)}},
    )
    assert any('data[a b]: Invalid value: "a b": a valid config key' in m for m in out)
    assert ": Too long: may not be more than 1048576 bytes" in "".join(out) or any(
        "Too long" in m for m in out
    )
    tls = {"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {}}
    assert "data[tls.crt]: Required value" in messages("secrets", tls)


@pytest.mark.parametrize(
    ("key", "old", "new", "expected"),
    [
        (
            "apps/deployments",
            deployment(),
            deployment(selector={"matchLabels": {"app": "x"}}),
            "spec.selector: Invalid value",
        ),
        (
            "apps/statefulsets",
            {"spec": {"serviceName": "a", "replicas": 1}},
            {"spec": {"serviceName": "b", "replicas": 1}},
            "spec: Forbidden: updates to statefulset spec for fields other than",
        ),
        (
            "batch/jobs",
            {"spec": {"template": {"spec": pod_spec()}}},
            {"spec": {"template": {"spec": pod_spec(restartPolicy="Never")}}},
            "spec.template: Invalid value",
        ),
        (
            "configmaps",
            {"immutable": True, "data": {"a": "1"}},
            {"immutable": True, "data": {"a": "2"}},
            "data: Forbidden: field is immutable when `immutable` is set",
        ),
        (
            "secrets",
            {"type": "Opaque"},
            {"type": "x/y"},
            'type: Invalid value: "x/y": field is immutable',
        ),
        (
            "persistentvolumeclaims",
            {"spec": {"resources": {"requests": {"storage": "2Gi"}}}},
            {"spec": {"resources": {"requests": {"storage": "1Gi"}}}},
            "spec.resources.requests.storage: Forbidden: field can not be less than previous value",
        ),
        (
            "rbac.authorization.k8s.io/rolebindings",
            {"roleRef": {"name": "a"}},
            {"roleRef": {"name": "b"}},
            "cannot change roleRef",
        ),
        (
            "pods",
            {"spec": pod_spec()},
            {"spec": pod_spec(hostname="x")},
            "spec: Forbidden: pod updates may not change fields",
        ),
    ],
)
def test_immutable_fields(key: str, old: Obj, new: Obj, expected: str) -> None:
    out = [str(e) for e in rules.validate_update(key, True, old, new)]
    assert any(expected in m for m in out), out
    assert rules.validate_update(key, True, old, copy.deepcopy(old)) == []


def test_typed_decoding_finds_wrong_types_and_unknown_fields() -> None:
    obj = deployment(replica=2)
    obj["spec"]["template"]["spec"]["containers"][0]["bogus"] = True
    found = structure.decode("io.k8s.api.apps.v1.Deployment", obj)
    assert found.type_error is None
    assert sorted(found.unknown) == ["spec.replica", "spec.template.spec.containers[0].bogus"]
    assert "replica" not in obj["spec"]  # dropped
    found = structure.decode("io.k8s.api.apps.v1.Deployment", deployment(replicas="2"))
    assert found.type_error == (
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
    )
    svc = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}]}}
    assert structure.decode("io.k8s.api.core.v1.Service", svc).type_error is None


SCHEMA: Obj = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["mode"],
            "properties": {
                "mode": {"type": "string", "enum": ["a", "b"]},
                "size": {"type": "integer", "minimum": 1, "maximum": 3, "default": 2},
                "port": {"x-kubernetes-int-or-string": True},
                "tags": {
                    "type": "array",
                    "maxItems": 1,
                    "items": {"type": "string", "maxLength": 3},
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "inner": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {},
                },
                "checked": {"type": "string", "x-kubernetes-validations": [{"rule": "self.("}]},
            },
        }
    },
}


def test_crd_schema_rules() -> None:
    obj: Obj = {"spec": {"mode": "a", "port": "http", "junk": 1, "free": {"x": 1}}}
    checked = crd.check(SCHEMA, obj)
    assert checked.errors == [] and checked.unknown == ["spec.junk"]
    assert obj["spec"] == {"mode": "a", "port": "http", "free": {"x": 1}, "size": 2}
    bad: Obj = {
        "spec": {
            "mode": "c",
            "size": 9,
            "port": True,
            "tags": ["abcd", "e"],
            "inner": {},
            "checked": "x",
        }
    }
    checked = crd.check(SCHEMA, bad)
    out = [str(e) for e in checked.errors]
    assert 'spec.mode: Unsupported value: "c": supported values: "a", "b"' in out
    assert "spec.size: Invalid value: 9: spec.size in body should be less than or equal to 3" in out
    assert any(
        m.startswith(
            "spec.port: Invalid value: true: spec.port in body must be of type integer,string"
        )
        for m in out
    )
    assert "spec.tags: Too many: 2: must have at most 1 items" in out
    assert "spec.tags[0]: Too long: may not be more than 3 bytes" in out
    assert "spec.inner.apiVersion: Required value" in out
    assert crd.check(SCHEMA, {"spec": {}}).errors[0] == v.required("spec.mode")
    assert any(
        "x-kubernetes-validations rule" in w and "not evaluated" in w for w in checked.warnings
    )


def test_string_data_is_merged() -> None:
    secret: Obj = {"data": {"a": "eA=="}, "stringData": {"b": "hunter2", "a": "y"}}
    admission.merge_string_data(secret)
    assert secret == {"data": {"a": "eQ==", "b": "aHVudGVyMg=="}}


def test_missing_dependencies_and_requests() -> None:
    pod: Obj = {
        "metadata": {"namespace": "n"},
        "spec": {
            "volumes": [
                {"name": "v", "secret": {"secretName": "s"}},
                {"name": "o", "configMap": {"name": "x", "optional": True}},
            ],
            "containers": [
                {
                    "name": "c",
                    "env": [
                        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}
                    ],
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                }
            ],
        },
    }
    store: dict[tuple[str, str], Obj] = {}

    def lookup(kind: str, ns: str, name: str) -> Obj | None:
        return store.get((kind, name))

    assert scheduler.missing_dependency(pod, lookup) == scheduler.Missing(
        "FailedMount",
        'MountVolume.SetUp failed for volume "v" : secret "s" not found',
        "v",
        "secret",
        "s",
    )
    store[("secret", "s")] = {}
    assert scheduler.missing_dependency(pod, lookup) == scheduler.Missing(
        "CreateContainerConfigError", 'configmap "cm" not found', "", "configmap", "cm"
    )
    store[("configmap", "cm")] = {"data": {}}
    assert scheduler.missing_dependency(pod, lookup) == scheduler.Missing(
        "CreateContainerConfigError", "couldn't find key k in ConfigMap n/cm"
    )
    store[("configmap", "cm")] = {"data": {"k": "v"}}
    assert scheduler.missing_dependency(pod, lookup) is None
    assert scheduler.pod_requests(pod) == {"cpu": 0.5, "memory": 2**30}
    node = {"status": {"allocatable": {"cpu": "1", "memory": "16Gi", "pods": "110"}}}
    assert scheduler.insufficient(pod, node, []) == []
    assert scheduler.insufficient(pod, node, [pod, pod]) == ["cpu"]


CEL_SCHEMA: Obj = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                {"rule": "self.max == oldSelf.max", "message": "max is immutable"},
                {"rule": "self.min >= 0", "fieldPath": ".min", "reason": "FieldValueForbidden"},
            ],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
        }
    },
}


def test_cel_rules_are_evaluated() -> None:
    pytest.importorskip("celpy")
    assert crd.check(CEL_SCHEMA, {"spec": {"min": 1, "max": 2}}).errors == []
    out = crd.check(CEL_SCHEMA, {"spec": {"min": 3, "max": 2}})
    assert [str(e) for e in out.errors] == [
        'spec: Invalid value: "object": min must not exceed max'
    ]
    out = crd.check(CEL_SCHEMA, {"spec": {"min": -1, "max": 2}})
    assert out.errors == [
        v.FieldError(
            "spec.min", "FieldValueForbidden", 'Invalid value: "object": failed rule: self.min >= 0'
        )
    ]
    # A transition rule applies on update only, against the old value.
    out = crd.check(CEL_SCHEMA, {"spec": {"min": 1, "max": 5}}, {"spec": {"min": 1, "max": 2}})
    assert [str(e) for e in out.errors] == ['spec: Invalid value: "object": max is immutable']
    assert out.warnings == []


def test_cel_rule_that_cannot_be_evaluated_is_reported() -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self.spec.undefinedFn("}]}
    out = crd.check(schema, {"spec": {}})
    assert out.errors == []
    assert out.warnings == [
        "<root>: x-kubernetes-validations rule 'self.spec.undefinedFn(' was not evaluated "
        "by the embedded cluster"
    ]


def test_rbac_defaults_prevent_false_reds() -> None:
    binding: Obj = {
        "kind": "RoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa"}],
    }
    admission.default_binding(binding)
    assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert binding["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
    assert "apiGroup" not in binding["subjects"][1]
    assert messages("rbac.authorization.k8s.io/rolebindings", binding) == []


def test_relaxed_env_names_are_accepted() -> None:
    spec = {"containers": [{"name": "c", "image": "i", "env": [{"name": "1st-VAR.x"}]}]}
    assert messages("pods", {"metadata": {"name": "p"}, "spec": spec}) == []


def test_objects_a_job_names_are_taken_as_created() -> None:
    job = {
        "spec": {
            "template": {"spec": {"containers": [{"args": ["create", "--secret-name=hook-cert"]}]}}
        }
    }
    words = scheduler.job_mentions(job)
    assert "hook-cert" in words

    def lookup(kind: str, ns: str, name: str) -> Obj | None:
        return None

    pod: Obj = {
        "metadata": {"namespace": "n"},
        "spec": {"volumes": [{"name": "v", "secret": {"secretName": "hook-cert"}}]},
    }
    assert scheduler.missing_dependency(pod, lookup) is not None
    assert scheduler.missing_dependency(pod, scheduler.assuming(lookup, lambda ns: words)) is None


def test_statefulset_mounts_its_claim_templates() -> None:
    sts = deployment()
    sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "storage", "mountPath": "/data"}
    ]
    assert any('Not found: "storage"' in m for m in messages("apps/statefulsets", sts))
    sts["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "storage"}}]
    assert messages("apps/statefulsets", sts) == []


def test_a_job_allowed_to_create_secrets_may_have_written_one() -> None:
    job: Obj = {
        "metadata": {"namespace": "n"},
        "spec": {"template": {"spec": {"serviceAccountName": "init"}}},
    }
    role = {"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}]}
    binding = {
        "metadata": {"namespace": "n"},
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "init"}],
    }
    assert scheduler.job_may_create(job, [binding], lambda b: role) == {"secret"}
    other = dict(binding, subjects=[{"kind": "ServiceAccount", "name": "someone-else"}])
    assert scheduler.job_may_create(job, [other], lambda b: role) == set()
    read_only = {"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
    assert scheduler.job_may_create(job, [binding], lambda b: read_only) == set()


def test_job_name_becomes_a_label_value() -> None:
    job = {
        "metadata": {"name": "j" * 64},
        "spec": {"template": {"spec": pod_spec(restartPolicy="Never")}},
    }
    assert any(
        m.startswith("spec.template.labels: Invalid value") and "no more than 63" in m
        for m in messages("batch/jobs", job)
    )
