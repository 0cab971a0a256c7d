"""`/openapi/v2` in protobuf: client-side schema validation as against kube-apiserver.

kubectl and Helm check a manifest against `/openapi/v3` to learn whether the server
validates the kind itself (`fieldValidation`); what v3 leaves to them, such as the items
of a `v1 List`, they validate client-side against the protobuf `/openapi/v2` document
(cli-runtime's ParamVerifyingSchema falling back to kubectl's schema validation, which
reads client-go's `OpenAPISchema()`). With the document served, an unknown field in a List
item is refused before anything is sent, with the message a real cluster gives:
`error validating data: ValidationError(...): unknown field "..." in <definition>`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_devloop.embedded.cluster import EmbeddedCluster
from tests.embedded.conftest import helm_env

Run = Callable[..., subprocess.CompletedProcess[str]]

DEPLOYMENT = """\
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: NAME}
  spec:
    replicas: 1
    strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: "25%"}}
    selector: {matchLabels: {app: NAME}}
    template:
      metadata: {labels: {app: NAME}}
      spec:
        containers:
        - name: app
          image: nginx:1.27
          ports: [{containerPort: 8080, name: http}]
          resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 1}}
          readinessProbe: {httpGet: {path: /, port: http}}
          EXTRA
"""
SERVICE = """\
- apiVersion: v1
  kind: Service
  metadata: {name: NAME}
  spec:
    selector: {app: NAME}
    ports: [{name: a, port: 80, targetPort: http}, {name: b, port: 81, targetPort: 8081}]
"""
CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gateways.v2proto.example.com}
spec:
  group: v2proto.example.com
  names: {kind: Gateway, plural: gateways, singular: gateway}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [host]
            properties:
              host: {type: string}
              port: {x-kubernetes-int-or-string: true, anyOf: [{type: integer}, {type: string}]}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
              note: {type: string, nullable: true}
              template:
                type: object
                x-kubernetes-embedded-resource: true
                properties:
                  spec: {type: object, properties: {size: {type: integer}}}
"""
UNKNOWN = (
    "error validating data: ValidationError(Deployment.spec.template.spec.containers[0]): "
    'unknown field "imagePullPolicyy" in io.k8s.api.core.v1.Container'
)


def _list(*items: str) -> str:
    return "apiVersion: v1\nkind: List\nitems:\n" + "".join(items)


def _deployment(name: str, extra: str = "") -> str:
    return DEPLOYMENT.replace("NAME", name).replace("EXTRA", extra)


def _document(item: str) -> str:
    """A List item as a document of its own."""
    return "".join(line[2:] + "\n" for line in item.splitlines())


def _chart(path: Path, manifest: str) -> Path:
    (path / "templates").mkdir(parents=True)
    (path / "Chart.yaml").write_text(f"apiVersion: v2\nname: {path.name}\nversion: 0.1.0\n")
    (path / "templates" / "manifest.yaml").write_text(manifest)
    return path


@dataclass
class Helm:
    name: str
    exe: str
    env: dict[str, str]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )


@pytest.fixture(params=["helm3", "helm4"])
def helm(
    request: pytest.FixtureRequest,
    cluster: EmbeddedCluster,
    tool: Callable[[str], str],
    tmp_path: Path,
) -> Helm:
    env = helm_env(tmp_path, cluster)
    return Helm(request.param, tool(request.param), env)


def test_helm_refuses_an_unknown_field_in_a_list_client_side(
    helm: Helm, kubectl: Run, namespace: str, tmp_path: Path
) -> None:
    chart = _chart(tmp_path / "badlist", _list(_deployment("web", "imagePullPolicyy: Always")))
    proc = helm("install", "bad", str(chart), "-n", namespace)
    assert proc.returncode != 0
    assert "unable to build kubernetes objects from release manifest" in proc.stderr
    assert UNKNOWN in proc.stderr
    gone = kubectl("get", "deployment", "web", "-n", namespace, check=False)
    assert "NotFound" in gone.stderr


def test_helm_installs_a_valid_list_and_leaves_a_plain_document_to_the_server(
    helm: Helm, kubectl: Run, namespace: str, tmp_path: Path
) -> None:
    chart = _chart(tmp_path / "oklist", _list(_deployment("web"), SERVICE.replace("NAME", "web")))
    proc = helm("install", "ok", str(chart), "-n", namespace)
    assert proc.returncode == 0, proc.stderr
    kubectl("get", "deployment/web", "service/web", "-n", namespace)

    # Outside a List, /openapi/v3 says the server validates, and the server answers as
    # kube-apiserver: Helm 3's create gets the field dropped with a warning (fieldValidation
    # defaults to Warn), Helm 4's server-side apply is refused.
    chart = _chart(tmp_path / "plain", _document(_deployment("api", "imagePullPolicyy: Always")))
    proc = helm("install", "plain", str(chart), "-n", namespace)
    if helm.name == "helm3":
        assert proc.returncode == 0, proc.stderr
        assert 'unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in proc.stderr
    else:
        assert proc.returncode != 0
        assert (
            ".spec.template.spec.containers[0].imagePullPolicyy: field not declared in schema"
            in proc.stderr
        )


def test_kubectl_validates_list_items_against_the_v2_document(
    kctl: Run, namespace: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_list(_deployment("web", "imagePullPolicyy: Always")))
    proc = kctl("apply", "-n", namespace, "-f", str(bad), check=False)
    assert proc.returncode != 0
    assert (
        f'error validating "{bad}": {UNKNOWN}; if you choose to ignore these errors' in proc.stderr
    )

    good = tmp_path / "good.yaml"
    good.write_text(_list(_deployment("web"), SERVICE.replace("NAME", "web")))
    out = kctl("apply", "-n", namespace, "-f", str(good)).stdout
    assert "deployment.apps/web" in out and "service/web" in out


def test_custom_resources_in_a_list_are_checked_against_their_crd_schema(
    kctl: Run, namespace: str, tmp_path: Path
) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(CRD)
    kctl("apply", "-f", str(crd))
    kctl("wait", "--for=condition=Established", "crd/gateways.v2proto.example.com")

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        _list(
            "- apiVersion: v2proto.example.com/v1\n  kind: Gateway\n  metadata: {name: g1}\n"
            "  spec: {host: a.invalid, port: 80, hostt: x}\n"
        )
    )
    proc = kctl("apply", "-n", namespace, "-f", str(bad), check=False)
    assert proc.returncode != 0
    assert (
        'error validating data: ValidationError(Gateway.spec): unknown field "hostt" in '
        "com.example.v2proto.v1.Gateway.spec" in proc.stderr
    )

    # int-or-string, preserved unknown fields and nullable fields are not checked by v2;
    # an embedded resource has its apiVersion, kind and metadata.
    good = tmp_path / "good.yaml"
    good.write_text(
        _list(
            "- apiVersion: v2proto.example.com/v1\n  kind: Gateway\n  metadata: {name: g2}\n"
            "  spec: {host: a.invalid, port: http, extra: {any: {thing: 1}}, note: null,\n"
            "    template: {apiVersion: v1, kind: Thing, metadata: {name: t}, spec: {size: 1}}}\n"
        )
    )
    assert (
        "gateway.v2proto.example.com/g2" in kctl("apply", "-n", namespace, "-f", str(good)).stdout
    )
