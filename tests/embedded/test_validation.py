"""The embedded cluster gives a real API server's verdict: refusals, acceptances, pods that wait.

Every false green of issue 16 is driven through real kubectl 1.32 and 1.33 (and Helm 3 and 4
where a chart is the natural client) and must be refused with the real message, or leave
its pod not Ready with the real reason; every false red must be accepted.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.embedded.cluster import EmbeddedCluster
from tests.embedded.conftest import helm_env

Run = Callable[..., subprocess.CompletedProcess[str]]
CHART = Path(__file__).parent / "data" / "charts" / "colon-rbac"


def apply(
    kctl: Run, namespace: str, manifest: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return kctl("apply", "-n", namespace, *extra, "-f", "-", input=manifest, check=False)


def wait_until(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def get(kctl: Run, namespace: str, *args: str) -> Any:
    return json.loads(kctl("get", "-n", namespace, *args, "-o", "json").stdout)


DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web{labels}}}
spec:
  {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: {template_app}}}}}
    spec:
      containers: {containers}
"""


def deploy(
    *,
    replicas: str = "replicas: 1",
    containers: str = "[{name: web, image: 'nginx:1.27'}]",
    template_app: str = "web",
    labels: str = "",
) -> str:
    return DEPLOY.format(
        replicas=replicas, containers=containers, template_app=template_app, labels=labels
    )


FALSE_GREENS = {
    "unknown-field": (
        deploy(replicas="replica: 2"),
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.replica"',
    ),
    "pull-policy": (
        deploy(containers="[{name: web, image: nginx, imagePullPolicy: Sometimes}]"),
        'spec.template.spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": '
        'supported values: "Always", "IfNotPresent", "Never"',
    ),
    "negative-replicas": (
        deploy(replicas="replicas: -1"),
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
    ),
    "string-replicas": (
        deploy(replicas="replicas: '2'"),
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
    ),
    "no-image": (
        deploy(containers="[{name: web}]"),
        "spec.template.spec.containers[0].image: Required value",
    ),
    "duplicate-containers": (
        deploy(containers="[{name: web, image: a}, {name: web, image: b}]"),
        'spec.template.spec.containers[1].name: Duplicate value: "web"',
    ),
    "selector-mismatch": (
        deploy(template_app="other"),
        'spec.template.metadata.labels: Invalid value: {"app":"other"}: '
        "`selector` does not match template `labels`",
    ),
    "label-with-space": (
        deploy(labels=", labels: {tier: 'front end'}"),
        'metadata.labels: Invalid value: "front end": a valid label must be an empty string',
    ),
    "pod-without-containers": (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n",
        "spec.containers: Required value",
    ),
    "service-port": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 70000}]}\n",
        "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
    ),
    "job-restart-always": (
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n"
        "    spec:\n      restartPolicy: Always\n      containers: [{name: c, image: busybox}]\n",
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
        '"OnFailure", "Never"',
    ),
    "owner-reference-without-uid": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  ownerReferences:\n"
        "  - {apiVersion: v1, kind: ConfigMap, name: other}\n",
        'metadata.ownerReferences[0].uid: Invalid value: "": uid must not be empty',
    ),
    "configmap-over-1mib": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {blob: "
        + "x" * (1100 * 1024)
        + "}\n",
        "Too long: may not be more than 1048576 bytes",
    ),
}


@pytest.mark.parametrize("case", sorted(FALSE_GREENS))
def test_false_green_is_refused_with_the_real_message(kctl: Run, namespace: str, case: str) -> None:
    manifest, message = FALSE_GREENS[case]
    proc = apply(kctl, namespace, manifest)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr
    listed = kctl("get", "-n", namespace, "deploy,pod,svc,job,cm", "-o", "name").stdout
    assert "/web" not in listed and "pod/p" not in listed and "job.batch/j" not in listed


def test_server_side_apply_refuses_an_undeclared_field(kctl: Run, namespace: str) -> None:
    proc = apply(kctl, namespace, deploy(replicas="replica: 2"), "--server-side")
    assert proc.returncode != 0
    assert (
        f"failed to create typed patch object ({namespace}/web; apps/v1, Kind=Deployment): "
        ".spec.replica: field not declared in schema" in proc.stderr
    )


def test_field_validation_warn_and_ignore(kctl: Run, namespace: str) -> None:
    proc = apply(kctl, namespace, deploy(replicas="replica: 2"), "--validate=warn")
    assert proc.returncode == 0, proc.stderr
    assert 'Warning: unknown field "spec.replica"' in proc.stderr
    dep = get(kctl, namespace, "deployment/web")
    assert "replica" not in dep["spec"]  # dropped, as the Go struct cannot hold it
    kctl("delete", "-n", namespace, "deployment/web")
    proc = apply(kctl, namespace, deploy(replicas="replica: 2"), "--validate=false")
    assert proc.returncode == 0 and "Warning" not in proc.stderr


def test_rbac_names_with_a_colon_are_accepted(kctl: Run, namespace: str) -> None:
    name = f"{namespace}-approve:cert-manager-io"
    role = (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
        f"metadata: {{name: '{name}'}}\n"
        "rules: [{apiGroups: [cert-manager.io], resources: [signers], verbs: [approve]}]\n"
    )
    assert apply(kctl, namespace, role).returncode == 0
    assert apply(kctl, namespace, role, "--server-side").returncode == 0
    kctl("delete", "clusterrole", name)
    # Other kinds keep their DNS-subdomain rule.
    proc = apply(kctl, namespace, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 'a:b'}\n")
    assert 'metadata.name: Invalid value: "a:b": a lowercase RFC 1123 subdomain' in proc.stderr


def test_immutable_fields(kctl: Run, namespace: str) -> None:
    sts = (
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n"
        "  serviceName: {svc}\n  selector: {{matchLabels: {{app: db}}}}\n"
        "  template:\n    metadata: {{labels: {{app: db}}}}\n"
        "    spec: {{containers: [{{name: db, image: postgres}}]}}\n"
    )
    assert apply(kctl, namespace, sts.format(svc="db")).returncode == 0
    proc = apply(kctl, namespace, sts.format(svc="other"))
    assert "spec: Forbidden: updates to statefulset spec for fields other than 'replicas'" in (
        proc.stderr
    )
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: frozen}}\nimmutable: true\ndata: {{a: '{v}'}}\n"
    assert apply(kctl, namespace, cm.format(v="1")).returncode == 0
    proc = apply(kctl, namespace, cm.format(v="2"))
    assert "data: Forbidden: field is immutable when `immutable` is set" in proc.stderr
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ntype: {t}\nstringData: {{a: b}}\n"
    )
    assert apply(kctl, namespace, secret.format(t="Opaque")).returncode == 0
    proc = apply(kctl, namespace, secret.format(t="example.com/other"))
    assert 'type: Invalid value: "example.com/other": field is immutable' in proc.stderr
    pvc = (
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec:\n"
        "  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n"
    )
    assert apply(kctl, namespace, pvc.format(size="2Gi")).returncode == 0
    proc = apply(kctl, namespace, pvc.format(size="1Gi"))
    assert "spec.resources.requests.storage: Forbidden: field can not be less than" in proc.stderr
    proc = apply(kctl, namespace, deploy())
    assert proc.returncode == 0
    changed = deploy().replace("{matchLabels: {app: web}}", "{matchLabels: {app: web, v: '2'}}")
    changed = changed.replace("labels: {app: web}", "labels: {app: web, v: '2'}")
    proc = apply(kctl, namespace, changed)
    assert (
        'spec.selector: Invalid value: {"matchLabels":{"app":"web","v":"2"}}: field is immutable'
        in (proc.stderr)
    )


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.validation.devloop.dev}
spec:
  group: validation.devloop.dev
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
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
            required: [mode]
            properties:
              mode: {type: string, enum: [fast, safe]}
              replicas: {type: integer, minimum: 0, default: 1}
              port: {x-kubernetes-int-or-string: true}
              name: {type: string, pattern: '^[a-z]+$', maxLength: 8}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def test_custom_resources_follow_their_crd(kctl: Run, namespace: str) -> None:
    kctl("apply", "-f", "-", input=CRD)
    kctl("wait", "--for=condition=Established", "crd/gadgets.validation.devloop.dev")
    base = (
        "apiVersion: validation.devloop.dev/v1\nkind: Gadget\nmetadata: {{name: g}}\nspec: {spec}\n"
    )
    proc = apply(kctl, namespace, base.format(spec="{mode: turbo}"))
    assert 'spec.mode: Unsupported value: "turbo": supported values: "fast", "safe"' in proc.stderr
    proc = apply(kctl, namespace, base.format(spec="{replicas: 1}"))
    assert "spec.mode: Required value" in proc.stderr
    proc = apply(kctl, namespace, base.format(spec="{mode: fast, name: 'ABC'}"))
    assert "spec.name in body should match '^[a-z]+$'" in proc.stderr
    proc = apply(kctl, namespace, base.format(spec="{mode: fast, replicas: -2}"))
    assert "spec.replicas in body should be greater than or equal to 0" in proc.stderr
    ok = base.format(spec="{mode: fast, port: http, colour: red, extra: {any: [1]}}")
    proc = apply(kctl, namespace, ok, "--validate=false")
    assert proc.returncode == 0, proc.stderr
    gadget = get(kctl, namespace, "gadget/g")
    assert "colour" not in gadget["spec"]  # pruned
    assert gadget["spec"]["replicas"] == 1  # schema default
    assert gadget["spec"]["extra"] == {"any": [1]}  # preserved
    proc = apply(kctl, namespace, ok)
    assert 'unknown field "spec.colour"' in proc.stderr


def test_stringdata_is_merged_on_every_write_path(kctl: Run, namespace: str) -> None:
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{password: {p}}}\n"
    )

    def password() -> str:
        obj = get(kctl, namespace, "secret/creds")
        assert "stringData" not in obj
        return base64.b64decode(obj["data"]["password"]).decode()

    kctl("create", "-n", namespace, "-f", "-", input=secret.format(p="one"))
    assert password() == "one"
    kctl("replace", "-n", namespace, "-f", "-", input=secret.format(p="two"))
    assert password() == "two"
    kctl(
        "patch",
        "-n",
        namespace,
        "secret/creds",
        "--type=merge",
        "-p",
        '{"stringData":{"password":"three"}}',
    )
    assert password() == "three"
    kctl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-n",
        namespace,
        "-f",
        "-",
        input=secret.format(p="four"),
    )
    assert password() == "four"


def pod_state(kctl: Run, namespace: str, selector: str) -> dict[str, Any]:
    pods = get(kctl, namespace, "pods", "-l", selector)["items"]
    return pods[0] if pods else {}


def waiting_reason(pod: dict[str, Any]) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        return str(((cs.get("state") or {}).get("waiting") or {}).get("reason", ""))
    return ""


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def events(kctl: Run, namespace: str, reason: str) -> list[str]:
    items = get(kctl, namespace, "events", "--field-selector", f"reason={reason}")["items"]
    return [str(e.get("message", "")) for e in items]


def test_pod_waits_for_a_missing_configmap_volume(kubectl: Run, namespace: str) -> None:
    spec = (
        "[{name: web, image: nginx, volumeMounts: [{name: cfg, mountPath: /cfg}]}]\n"
        "      volumes: [{name: cfg, configMap: {name: app-config}}]"
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=deploy(containers=spec))
    pod = wait_until(
        lambda: (p := pod_state(kubectl, namespace, "app=web")) and waiting_reason(p) and p
    )
    assert waiting_reason(pod) == "ContainerCreating" and not is_ready(pod)
    assert wait_until(lambda: events(kubectl, namespace, "FailedMount")) == [
        'MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found'
    ]
    kubectl("create", "configmap", "app-config", "-n", namespace, "--from-literal=a=b")
    assert wait_until(lambda: is_ready(pod_state(kubectl, namespace, "app=web")))


def test_pod_waits_for_a_missing_secret_key(kubectl: Run, namespace: str) -> None:
    spec = (
        "[{name: web, image: nginx, env: [{name: PW, valueFrom: "
        "{secretKeyRef: {name: db, key: password}}}]}]"
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=deploy(containers=spec))
    pod = wait_until(
        lambda: (
            (p := pod_state(kubectl, namespace, "app=web"))
            and waiting_reason(p) == "CreateContainerConfigError"
            and p
        )
    )
    assert pod and not is_ready(pod)
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == (
        'secret "db" not found'
    )
    kubectl("create", "secret", "generic", "db", "-n", namespace, "--from-literal=user=x")
    assert wait_until(
        lambda: (
            pod_state(kubectl, namespace, "app=web")["status"]["containerStatuses"][0]["state"]
            .get("waiting", {})
            .get("message")
            == f"couldn't find key password in Secret {namespace}/db"
        )
    )
    kubectl(
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        namespace,
        "--from-literal=password=x",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    kubectl(
        "patch",
        "-n",
        namespace,
        "secret/db",
        "--type=merge",
        "-p",
        '{"stringData":{"password":"x"}}',
    )
    assert wait_until(lambda: is_ready(pod_state(kubectl, namespace, "app=web")))


def test_missing_service_account_refuses_the_pod(kubectl: Run, namespace: str) -> None:
    spec = "[{name: web, image: nginx}]\n      serviceAccountName: robot"
    kubectl("apply", "-n", namespace, "-f", "-", input=deploy(containers=spec))
    expected = (
        "is forbidden: error looking up service account "
        f'{namespace}/robot: serviceaccount "robot" not found'
    )
    assert wait_until(
        lambda: any(expected in m for m in events(kubectl, namespace, "FailedCreate"))
    )
    assert pod_state(kubectl, namespace, "app=web") == {}
    proc = kubectl(
        "run",
        "p",
        "-n",
        namespace,
        "--image=nginx",
        "--overrides",
        '{"spec":{"serviceAccountName":"robot"}}',
        check=False,
    )
    assert proc.returncode != 0 and expected in proc.stderr


def test_unschedulable_pods_stay_pending(kubectl: Run, namespace: str) -> None:
    big = "[{name: web, image: nginx, resources: {requests: {cpu: '64'}}}]"
    kubectl("apply", "-n", namespace, "-f", "-", input=deploy(containers=big))
    assert wait_until(
        lambda: any("Insufficient cpu" in m for m in events(kubectl, namespace, "FailedScheduling"))
    )
    pod = pod_state(kubectl, namespace, "app=web")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    claim = "[{name: web, image: nginx}]\n      volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]"
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=deploy(containers=claim)
        .replace("name: web}", "name: web2}")
        .replace("app: web", "app: web2"),
    )
    assert wait_until(
        lambda: any(
            'persistentvolumeclaim "data" not found' in m
            for m in events(kubectl, namespace, "FailedScheduling")
        )
    )
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n"
            "  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n"
        ),
    )
    assert wait_until(lambda: is_ready(pod_state(kubectl, namespace, "app=web2")))


def test_eviction_honours_the_disruption_budget(
    kubectl: Run, namespace: str, api_client: Any
) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    kubectl("apply", "-n", namespace, "-f", "-", input=deploy())
    kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=20s")
    kubectl("create", "pdb", "web", "-n", namespace, "--selector=app=web", "--min-available=1")
    pod = pod_state(kubectl, namespace, "app=web")
    name = pod["metadata"]["name"]
    eviction = {"metadata": {"name": name, "namespace": namespace}}
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(api_client).create_namespaced_pod_eviction(name, namespace, eviction)
    assert err.value.status == 429
    body = json.loads(err.value.body)
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"][0] == {
        "reason": "DisruptionBudget",
        "message": "The disruption budget web needs 1 healthy pods and has 1 currently",
    }
    kubectl("scale", "-n", namespace, "deployment/web", "--replicas=2")
    kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=20s")
    client.CoreV1Api(api_client).create_namespaced_pod_eviction(name, namespace, eviction)


@pytest.fixture(params=["helm3", "helm4"])
def helm(
    request: pytest.FixtureRequest,
    cluster: EmbeddedCluster,
    tool: Callable[[str], str],
    tmp_path: Path,
) -> Run:
    exe = tool(request.param)
    env = helm_env(tmp_path, cluster)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [exe, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def test_helm_installs_colon_rbac_and_refuses_a_selector_change(
    helm: Run, kubectl: Run, namespace: str
) -> None:
    release = namespace[-20:].strip("-")
    helm("install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "60s")
    role = kubectl(
        "get", "clusterrole", f"{release}-controller-approve:cert-manager-io", "-o", "name"
    )
    assert (
        role.stdout.strip()
        == f"clusterrole.rbac.authorization.k8s.io/{release}-controller-approve:cert-manager-io"
    )
    proc = helm(
        "upgrade", release, str(CHART), "-n", namespace, "--set", "selectorApp=other", check=False
    )
    assert proc.returncode != 0
    assert "spec.selector: Invalid value" in proc.stderr and "field is immutable" in proc.stderr
    helm("uninstall", release, "-n", namespace)


CEL_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: ranges.validation.devloop.dev}
spec:
  group: validation.devloop.dev
  scope: Namespaced
  names: {plural: ranges, singular: range, kind: Range}
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
            x-kubernetes-validations:
            - {rule: "self.min <= self.max", message: "min must not exceed max"}
            properties:
              min: {type: integer}
              max: {type: integer}
"""


def test_cel_rules_of_a_crd_are_enforced(kubectl: Run, namespace: str) -> None:
    pytest.importorskip("celpy")
    kubectl("apply", "-f", "-", input=CEL_CRD)
    kubectl("wait", "--for=condition=Established", "crd/ranges.validation.devloop.dev")
    cr = "apiVersion: validation.devloop.dev/v1\nkind: Range\nmetadata: {{name: r}}\nspec: {spec}\n"
    proc = apply(kubectl, namespace, cr.format(spec="{min: 5, max: 1}"))
    assert proc.returncode != 0
    assert 'The Range "r" is invalid: spec: Invalid value: "object": min must not exceed max' in (
        proc.stderr
    )
    assert apply(kubectl, namespace, cr.format(spec="{min: 1, max: 5}")).returncode == 0


def test_client_side_apply_of_a_large_object_hits_the_annotation_limit(
    kctl: Run, namespace: str
) -> None:
    # 300 KiB of data fits a ConfigMap, but kubectl's last-applied-configuration copy of it
    # exceeds the 256 KiB all annotations may take: a real cluster refuses it too.
    big = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {blob: "
        + "x" * (300 * 1024)
        + "}\n"
    )
    proc = apply(kctl, namespace, big)
    assert proc.returncode != 0
    assert (
        'The ConfigMap "big" is invalid: metadata.annotations: Too long: may not be more than '
        "262144 bytes" in proc.stderr
    )
    assert apply(kctl, namespace, big, "--server-side").returncode == 0


def test_a_secret_a_job_would_create_does_not_block(kubectl: Run, namespace: str) -> None:
    # ingress-nginx's pattern: a hook Job's container writes the Secret the controller
    # mounts. Containers do not run here, so the kubelet takes it as created, and says so.
    job = (
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: certgen}\nspec:\n  template:\n"
        "    spec:\n      restartPolicy: OnFailure\n      containers:\n"
        "      - {name: gen, image: certgen, args: [create, --secret-name=admission-cert]}\n"
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=job)
    spec = (
        "[{name: web, image: nginx, volumeMounts: [{name: cert, mountPath: /cert}]}]\n"
        "      volumes: [{name: cert, secret: {secretName: admission-cert}}]"
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=deploy(containers=spec))
    assert wait_until(lambda: is_ready(pod_state(kubectl, namespace, "app=web")))
    assert wait_until(lambda: events(kubectl, namespace, "DependencyAssumed")) == [
        f'secret "admission-cert" does not exist in {namespace}; a Job of the namespace names '
        "it or may create it, so it is taken as created (Job containers do not run in the "
        "embedded cluster)"
    ]


def test_missing_image_pull_secret_warns_as_a_kubelet_does(kubectl: Run, namespace: str) -> None:
    spec = "[{name: web, image: nginx}]\n      imagePullSecrets: [{name: regcred}]"
    kubectl("apply", "-n", namespace, "-f", "-", input=deploy(containers=spec))
    assert wait_until(lambda: events(kubectl, namespace, "FailedToRetrieveImagePullSecret")) == [
        "Unable to retrieve some image pull secrets (regcred); attempting to pull the image "
        "may not succeed."
    ]
    assert wait_until(lambda: is_ready(pod_state(kubectl, namespace, "app=web")))
