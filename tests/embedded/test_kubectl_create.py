"""Every `kubectl create <kind>` subcommand against the embedded cluster (kubectl 1.32, 1.33).

Since client-go 0.32 these subcommands send protobuf bodies. For each one the test
records what the server decoded from the protobuf body and compares it with the JSON the
same kubectl renders for `--dry-run=client -o json`: the decoder must read every field
exactly as Go's JSON encoder would have written it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_devloop.embedded import protobuf

Run = Callable[..., subprocess.CompletedProcess[str]]

# (args after `create`/`autoscale`, kind) — names are unique per test namespace
CREATE_COMMANDS: list[tuple[list[str], str]] = [
    (
        ["create", "deployment", "d", "--image=nginx:1.27", "--replicas=0", "--port=8080"],
        "Deployment",
    ),
    (["create", "service", "clusterip", "s", "--tcp=80:8080"], "Service"),
    (["create", "service", "nodeport", "np", "--tcp=80:8080"], "Service"),
    (["create", "service", "externalname", "en", "--external-name=db.invalid"], "Service"),
    (["create", "job", "j", "--image=busybox", "--", "true"], "Job"),
    (["create", "cronjob", "cj", "--image=busybox", "--schedule=*/5 * * * *"], "CronJob"),
    (["create", "role", "r", "--verb=get,list", "--resource=pods,deployments.apps"], "Role"),
    (
        ["create", "rolebinding", "rb", "--role=r", "--user=u", "--serviceaccount=default:sa"],
        "RoleBinding",
    ),
    (["create", "quota", "q", "--hard=pods=10,requests.cpu=2"], "ResourceQuota"),
    (["create", "pdb", "p", "--selector=app=d", "--min-available=50%"], "PodDisruptionBudget"),
    (
        ["create", "ingress", "ing", "--class=nginx", "--rule=foo.invalid/bar*=svc:8080,tls=cert"],
        "Ingress",
    ),
    (["create", "serviceaccount", "sa"], "ServiceAccount"),
]
CLUSTER_COMMANDS: list[tuple[list[str], str]] = [
    (
        [
            "create",
            "clusterrole",
            "cr-{v}",
            "--verb=get",
            "--resource=nodes",
        ],
        "ClusterRole",
    ),
    (["create", "clusterrole", "agg-{v}", "--aggregation-rule=a=b"], "ClusterRole"),
    (
        ["create", "clusterrolebinding", "crb-{v}", "--clusterrole=view", "--group=g"],
        "ClusterRoleBinding",
    ),
    (
        [
            "create",
            "priorityclass",
            "pc-{v}",
            "--value=100",
            "--description=d",
            "--preemption-policy=Never",
        ],
        "PriorityClass",
    ),
]


@pytest.fixture(params=["kubectl-1.32", "kubectl-1.33"])
def kctl(request: pytest.FixtureRequest, kubectl: Run, tool: Callable[[str], str]) -> Run:
    binary = tool(request.param)

    def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, binary=binary, **kw)

    run.version = request.param.split("-")[1]  # type: ignore[attr-defined]
    return run


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every object the server decodes from a protobuf body during the test."""
    seen: list[dict[str, Any]] = []
    real = protobuf.decode_request

    def record(body: bytes) -> dict[str, Any]:
        out = real(body)
        seen.append(json.loads(json.dumps(out)))
        return out

    monkeypatch.setattr(protobuf, "decode_request", record)
    yield seen


def _client_json(kctl: Run, args: list[str], namespace: str | None) -> dict[str, Any]:
    ns = ["-n", namespace] if namespace else []
    cut = args.index("--") if "--" in args else len(args)
    dry = [*args[:cut], "--dry-run=client", "-o", "json", *args[cut:]]
    out = _without_null_creation(json.loads(kctl(*ns, *dry).stdout))
    if not namespace:
        out["metadata"].pop("namespace", None)
    return out


def _without_null_creation(value: Any) -> Any:
    """The decoder leaves an unset creationTimestamp out (current apimachinery's omitzero)."""
    if isinstance(value, dict):
        return {
            k: _without_null_creation(v)
            for k, v in value.items()
            if not (k == "creationTimestamp" and v is None)
        }
    if isinstance(value, list):
        return [_without_null_creation(v) for v in value]
    return value


def test_every_create_subcommand_decodes_like_json(
    kctl: Run, namespace: str, decoded: list[dict[str, Any]]
) -> None:
    version = kctl.version  # type: ignore[attr-defined]
    commands = [(a, k, namespace) for a, k in CREATE_COMMANDS] + [
        ([x.replace("{v}", version) for x in a], k, None) for a, k in CLUSTER_COMMANDS
    ]
    for args, kind, ns in commands:
        expected = _client_json(kctl, args, ns)
        decoded.clear()
        scope = ["-n", ns] if ns else []
        proc = kctl(*scope, *args, check=False)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        assert "created" in proc.stdout
        bodies = [b for b in decoded if b.get("kind") == kind]
        assert bodies, f"kubectl {' '.join(args)} sent no protobuf {kind}"
        assert bodies[0] == expected, f"kubectl {' '.join(args)}"
    # `kubectl autoscale` reads the Deployment, then creates an autoscaling/v1 HPA.
    out = kctl(
        "-n", namespace, "autoscale", "deployment", "d", "--min=1", "--max=3", "--cpu-percent=80"
    )
    assert "autoscaled" in out.stdout
    hpa = json.loads(kctl("-n", namespace, "get", "hpa", "d", "-o", "json").stdout)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "d",
    }
    assert hpa["spec"]["maxReplicas"] == 3
    dep = json.loads(kctl("-n", namespace, "get", "deployment", "d", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 0  # a pointer field sent as 0 stays 0, not defaulted
