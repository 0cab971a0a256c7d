"""Benchmark: a replicas change written to the cluster → `wait_for_targets(count=3)` passes.

Run: `python bench/bench_prometheus.py [--repeat 9] [--json FILE]`

The embedded cluster (in process) with the example's shape (app Deployment, Service with
port `http`, ServiceMonitor with `jobLabel`) and devloop's embedded Prometheus (Debian's
`prometheus`, file_sd targets, 0.25 s scrape interval). Each run scales the Deployment
1 → 3 (the write a sync makes after `values.yaml` is saved) and times until
`prometheus.wait_for_targets(job=..., count=3, health="up")` returns; then it scales back
to 1 and waits (not timed), and sleeps a random 0-5 s so the change lands at a random
phase of Prometheus' 5 s discovery and scrape-reload tickers (Prometheus 2.42 forwards
discovered targets and reloads scrape pools on fixed 5 s ticks, neither configurable).
The sync itself is not included (bench_sync.py times it). Target: median ≤ 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_devloop.cluster.kube import Kube, client_from_kubeconfig  # noqa: E402
from pytest_devloop.embedded.cluster import EmbeddedCluster  # noqa: E402
from pytest_devloop.prometheus.targets import (  # noqa: E402
    ClusterReader,
    EmbeddedPrometheus,
    LocalPrometheus,
    Prometheus,
)

TARGET_S = 3.0
NS = "sms-checker"
JOB = "sms-checker"
LABELS = {"app.kubernetes.io/name": "sms-checker", "app.kubernetes.io/component": "app"}


def objects(replicas: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "sms-checker-app", "namespace": NS, "labels": LABELS},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "app",
                                "ports": [{"name": "http", "containerPort": 8080}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "sms-checker-app", "namespace": NS, "labels": LABELS},
            "spec": {
                "selector": LABELS,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "sms-checker-app", "namespace": NS, "labels": LABELS},
            "spec": {
                "jobLabel": "app.kubernetes.io/name",
                "namespaceSelector": {"matchNames": [NS]},
                "selector": {"matchLabels": LABELS},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
            },
        },
    ]


def apply(kube: Kube, obj: dict[str, Any]) -> None:
    res = kube.resource(obj["apiVersion"], obj["kind"])
    deadline = time.monotonic() + 10
    while res is None and time.monotonic() < deadline:
        time.sleep(0.05)
        kube.refresh()
        res = kube.resource(obj["apiVersion"], obj["kind"])
    assert res is not None, obj["kind"]
    kube.apply(res, obj, force=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    binary = shutil.which("prometheus")
    if binary is None:
        print("no prometheus binary: install it (scripts/tools.sh)")
        return 2
    rng = random.Random(args.seed)
    times: list[float] = []
    with EmbeddedCluster() as cluster:
        kube = Kube(client_from_kubeconfig(str(cluster.kubeconfig)))
        apply(
            kube,
            yaml.safe_load(
                (ROOT / "example_project/crds/monitoring-servicemonitor.yaml").read_text()
            ),
        )
        apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        for obj in objects(1):
            apply(kube, obj)
        with LocalPrometheus(binary) as local:
            embedded = EmbeddedPrometheus(ClusterReader(kube).read, local)
            embedded.refresh()
            prom = Prometheus(local.http(), refresh=embedded.refresh, mode="embedded")
            prom.wait_for_targets(job=JOB, count=1, timeout=30)
            for i in range(args.repeat):
                time.sleep(rng.uniform(0, 5))
                start = time.monotonic()
                apply(kube, objects(3)[0])
                prom.wait_for_targets(job=JOB, count=3, health="up", timeout=30)
                elapsed = time.monotonic() - start
                times.append(elapsed)
                print(f"run {i + 1}: {elapsed:.2f} s", flush=True)
                apply(kube, objects(1)[0])
                prom.wait_for_targets(job=JOB, count=1, health="up", timeout=30)
    median = statistics.median(times)
    print()
    print("| scenario | runs | median | min | max | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| replicas 1 → 3 written → wait_for_targets(count=3) | {len(times)} | "
        f"{median:.2f} s | {min(times):.2f} s | {max(times):.2f} s | ≤ {TARGET_S:g} s |"
    )
    result = {
        "benchmark": "prometheus",
        "scenario": "replicas 1 -> 3 written -> wait_for_targets(count=3, health=up)",
        "runs": [round(t, 3) for t in times],
        "median_s": round(median, 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "target_s": TARGET_S,
        "met": median <= TARGET_S,
        "prometheus": binary,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
