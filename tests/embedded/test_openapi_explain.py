"""`kubectl explain` of int-or-string and quantity fields, as on a real cluster.

kube-apiserver publishes IntOrString in `/openapi/v3` as a `oneOf` of integer and string
with format `int-or-string` and no `type` (Quantity likewise, of string and number), so
kubectl 1.32/1.33 name the type `<IntOrString>`/`<Quantity>`; `/openapi/v2` has them as
strings. A custom resource's `x-kubernetes-int-or-string` field is published as the CRD
wrote it (no `type`), which kubectl prints as `<Object>` on a real cluster too.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gateways.explain.example.com"},
    "spec": {
        "group": "explain.example.com",
        "names": {"kind": "Gateway", "plural": "gateways", "singular": "gateway"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "port": {
                                        "description": "Port number or name.",
                                        "x-kubernetes-int-or-string": True,
                                        "anyOf": [{"type": "integer"}, {"type": "string"}],
                                    },
                                    "host": {"type": "string"},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def crd(api_client: Any) -> str:
    from kubernetes import client

    client.ApiextensionsV1Api(api_client).create_custom_resource_definition(CRD)
    return "gateways.explain.example.com"


def _field_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("FIELD:"))


def test_explain_names_int_or_string_and_quantity_fields(kctl: Run) -> None:
    out = kctl("explain", "deployment.spec.strategy.rollingUpdate.maxSurge").stdout
    assert _field_line(out) == "FIELD: maxSurge <IntOrString>"
    out = kctl("explain", "pdb.spec").stdout
    assert "  maxUnavailable\t<IntOrString>" in out.splitlines()
    assert "  minAvailable\t<IntOrString>" in out.splitlines()
    out = kctl("explain", "pod.spec.overhead").stdout
    assert _field_line(out) == "FIELD: overhead <map[string]Quantity>"
    out = kctl("explain", "service.spec.ports.targetPort").stdout
    assert _field_line(out) == "FIELD: targetPort <IntOrString>"
    # A field named like a schema keyword is a field all the same.
    out = kctl("explain", "deployment.spec.strategy.type").stdout
    assert _field_line(out) == "FIELD: type <string>"


def test_explain_of_a_custom_int_or_string_field_prints_what_a_real_cluster_prints(
    kctl: Run, crd: str
) -> None:
    del crd
    out = kctl("explain", "gateways.spec.port").stdout
    assert _field_line(out) == "FIELD: port <Object>"
    assert "Port number or name." in out
    assert _field_line(kctl("explain", "gateways.spec.host").stdout) == "FIELD: host <string>"


def test_the_documents_spell_int_or_string_as_kube_apiserver(kubectl: Run, crd: str) -> None:
    del crd
    v3 = json.loads(kubectl("get", "--raw", "/openapi/v3/apis/apps/v1").stdout)
    schemas = v3["components"]["schemas"]
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    }
    surge = schemas["io.k8s.api.apps.v1.RollingUpdateDeployment"]["properties"]["maxSurge"]
    assert surge["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}
    ]
    core = json.loads(kubectl("get", "--raw", "/openapi/v3/api/v1").stdout)
    assert core["components"]["schemas"]["io.k8s.apimachinery.pkg.api.resource.Quantity"] == {
        "oneOf": [{"type": "string"}, {"type": "number"}]
    }

    custom = json.loads(kubectl("get", "--raw", "/openapi/v3/apis/explain.example.com/v1").stdout)
    gateway = custom["components"]["schemas"]["com.example.explain.v1.Gateway"]
    port = gateway["properties"]["spec"]["properties"]["port"]
    assert port["x-kubernetes-int-or-string"] is True and "type" not in port

    v2 = json.loads(kubectl("get", "--raw", "/openapi/v2").stdout)["definitions"]
    assert v2["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "type": "string",
        "format": "int-or-string",
    }
    assert v2["io.k8s.apimachinery.pkg.api.resource.Quantity"] == {"type": "string"}
