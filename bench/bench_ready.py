"""Benchmark of the readiness wait of a watch cycle: replicas 1 -> 3, hop by hop.

Run: `python bench/bench_ready.py [--project example|course] [--repeat 10] [--ready-delay 0.05]`

An embedded cluster in this process (default `SimulationConfig`, so the simulated pod
start is `pod_ready_delay`, 0.05 s unless `--ready-delay` says otherwise) gets the
chart's objects (the example's, or the 150-object course chart's: rendered by helm, the
kinds served without CRDs, no hooks). Each round server-side applies the Deployment of
scenario A with replicas 3 (from 1), through the real
`kubernetes` client as the sync does, then runs the sync's readiness `Waiter` on it.
Times are from the moment before the apply; the hops come from the store's change
listener (the moment each write is stored):
- apply: the PATCH answered;
- rs scaled: the ReplicaSet's spec.replicas is 3;
- pods created / bound: the last of the two new pods created / bound to a node;
- pods ready: the last new pod with Ready=True;
- rs status / deploy status: readyReplicas 3 on the ReplicaSet / the Deployment (with
  availableReplicas and observedGeneration current);
- waiter: `Waiter.wait` returned all ready; its list, watch or GET requests are counted.
Each round scales back to 1 first (not timed). Rounds alternate between the waiter's
watch and its poll (the waiter before the watch, kept as its fallback); medians and
worst of `--repeat` rounds of each, and the controllers' reconciles per scale.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conftest import find_tool  # noqa: E402
from pytest_devloop.embedded.cluster import EmbeddedCluster  # noqa: E402
from pytest_devloop.embedded.reconcile import SimulationConfig  # noqa: E402
from pytest_devloop.embedded.store import Change, meta  # noqa: E402
from pytest_devloop.sync.readiness import Waiter, _dynamic_client  # noqa: E402

NS = "sms-checker"
CHARTS = {
    # project -> (chart, the Deployment scenario A scales)
    "example": (ROOT / "example_project" / "charts" / "sms-checker", "bench-sms-checker-app"),
    "course": (
        ROOT / "bench" / "projects" / "course" / "charts" / "course-app",
        "bench-app-stable",
    ),
}
# Kinds served without CRDs (the chart's custom resources need their operators' CRDs).
KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "DaemonSet",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "Ingress",
}
HOOK = "helm.sh/hook"
HOPS = (
    "apply",
    "rs scaled",
    "pods created",
    "pods bound",
    "pods ready",
    "rs status",
    "deploy status",
    "waiter",
)


def render(chart: Path) -> list[dict[str, Any]]:
    helm = find_tool("helm4") or find_tool("helm3") or "helm"
    out = subprocess.run(
        [helm, "template", "bench", str(chart), "--namespace", NS],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]
    return [
        d
        for d in docs
        if d.get("kind") in KINDS
        and HOOK not in ((d.get("metadata") or {}).get("annotations") or {})
    ]


def _ready(obj: dict[str, Any]) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


class Hops:
    """Stamps the first moment each hop's condition holds, from the store's listener."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self.t0 = 0.0
        self.stamps: dict[str, float] = {}
        self.old_pods: set[str] = set()
        self.created: set[str] = set()
        self.bound: set[str] = set()
        self.ready: set[str] = set()
        self.active = False
        self.lock = threading.Lock()

    def start(self, old_pods: set[str]) -> None:
        with self.lock:
            self.t0 = time.perf_counter()
            self.stamps = {}
            self.old_pods = old_pods
            self.created, self.bound, self.ready = set(), set(), set()
            self.active = True

    def _stamp(self, hop: str) -> None:
        self.stamps.setdefault(hop, time.perf_counter() - self.t0)

    def __call__(self, change: Change) -> None:
        now_active = self.active
        if not now_active or change.type == "DELETED":
            return
        obj = change.new
        m = meta(obj)
        if m.get("namespace") != NS:
            return
        kind = change.rt.key
        with self.lock:
            if kind == "pods":
                name = str(m.get("name"))
                if not name.startswith(self.deployment) or name in self.old_pods:
                    return
                self.created.add(name)
                if (obj.get("spec") or {}).get("nodeName"):
                    self.bound.add(name)
                if _ready(obj):
                    self.ready.add(name)
                for hop, names in (
                    ("pods created", self.created),
                    ("pods bound", self.bound),
                    ("pods ready", self.ready),
                ):
                    if len(names) >= 2:
                        self._stamp(hop)
                return
            if kind == "apps/replicasets" and str(m.get("name")).startswith(self.deployment):
                if (obj.get("spec") or {}).get("replicas") == 3:
                    self._stamp("rs scaled")
                if (obj.get("status") or {}).get("readyReplicas") == 3:
                    self._stamp("rs status")
            if kind == "apps/deployments" and m.get("name") == self.deployment:
                status = obj.get("status") or {}
                if (
                    status.get("readyReplicas") == 3
                    and status.get("availableReplicas") == 3
                    and status.get("observedGeneration") == m.get("generation")
                ):
                    self._stamp("deploy status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--project", choices=sorted(CHARTS), default="example")
    parser.add_argument("--ready-delay", type=float, default=SimulationConfig.pod_ready_delay)
    args = parser.parse_args()
    chart, name = CHARTS[args.project]
    objects = render(chart)
    app = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = EmbeddedCluster(
            config=SimulationConfig(pod_ready_delay=args.ready_delay), directory=tmp
        )
        cluster.start()
        try:
            return run(cluster, objects, app, args.project, args.repeat)
        finally:
            cluster.stop()


def run(
    cluster: EmbeddedCluster,
    objects: list[dict[str, Any]],
    app: dict[str, Any],
    project: str,
    repeat: int,
) -> int:
    name = app["metadata"]["name"]
    from kubernetes import client, config

    assert cluster.kubeconfig is not None
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    dyn = _dynamic_client(api_client)
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NS}})

    def apply(obj: dict[str, Any]) -> None:
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        dyn.server_side_apply(
            resource, body=obj, namespace=NS, field_manager="bench", force_conflicts=True
        )

    def scaled(n: int) -> dict[str, Any]:
        body = {**app, "metadata": {**app["metadata"], "namespace": NS}}
        body["spec"] = {**app["spec"], "replicas": n}
        return body

    def pods() -> set[str]:
        pods_rt = cluster.registry.get("", "pods")
        assert pods_rt is not None
        items, _ = cluster.store.list(pods_rt, NS)
        return {
            str(meta(p).get("name")) for p in items if str(meta(p).get("name")).startswith(name)
        }

    for obj in objects:
        apply({**obj, "metadata": {**obj["metadata"], "namespace": NS}})
    hops = Hops(name)
    cluster.store.add_listener(hops)
    assert cluster.controllers is not None
    modes = {"watch": True, "poll": False}
    rows: dict[str, dict[str, list[float]]] = {m: {hop: [] for hop in HOPS} for m in modes}
    requests: dict[str, list[int]] = {m: [] for m in modes}
    reconciles: list[int] = []
    # Rounds alternate between the two ways of waiting, so load drifts hit both alike.
    for i in range(2 * (repeat + 1)):
        mode = "watch" if i % 2 == 0 else "poll"
        apply(scaled(1))
        back = Waiter(api_client, timeout=30).wait([scaled(1)])
        assert back.ok, back.not_ready
        while len(pods()) != 1:
            time.sleep(0.01)
        time.sleep(0.1)
        before = cluster.controllers.reconciles
        hops.start(pods())
        apply(scaled(3))
        hops.stamps.setdefault("apply", time.perf_counter() - hops.t0)
        result = Waiter(api_client, timeout=30, watch=modes[mode]).wait([scaled(3)])
        hops.stamps["waiter"] = time.perf_counter() - hops.t0
        hops.active = False
        assert result.ok, result.not_ready
        if i < 2:
            continue  # the first round of each warms discovery and caches
        time.sleep(0.05)
        reconciles.append(cluster.controllers.reconciles - before)
        requests[mode].append(result.requests)
        for hop in HOPS:
            rows[mode][hop].append(hops.stamps.get(hop, float("nan")))
    cfg = cluster.config
    print(
        f"replicas 1→3 on {name} ({project} chart, {len(objects)} objects), embedded cluster in-process, "
        f"pod_ready_delay {cfg.pod_ready_delay} s, median (worst) of {repeat} per waiter"
    )
    print(f"{'hop (ms since the apply began)':<34}{'watch':>18}{'poll (before)':>18}")

    def cell(values: list[float], scale: float = 1000) -> str:
        return f"{statistics.median(values) * scale:.1f} ({max(values) * scale:.1f})"

    for hop in HOPS:
        print(f"{hop:<34}{cell(rows['watch'][hop]):>18}{cell(rows['poll'][hop]):>18}")
    over = {
        m: [w - r for w, r in zip(rows[m]["waiter"], rows[m]["deploy status"], strict=True)]
        for m in modes
    }
    print(f"{'waiter after deploy status':<34}{cell(over['watch']):>18}{cell(over['poll']):>18}")
    req = {m: f"{statistics.median(requests[m]):.0f} ({max(requests[m])})" for m in modes}
    print(f"{'waiter requests':<34}{req['watch']:>18}{req['poll']:>18}")
    print(f"{'controller reconciles per scale':<34}{cell([float(r) for r in reconciles], 1):>18}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
