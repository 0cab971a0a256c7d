"""Benchmark: a replicas change written to the cluster → `wait_for_targets(count=3)` passes.

Run: `python bench/bench_prometheus.py [--repeat 10] [--engine both|prometheus|victoria-metrics]
[--json FILE]`

The embedded cluster (in process) with the example's shape (app Deployment, Service with
port `http`, ServiceMonitor with `jobLabel`) and devloop's embedded scraper, 0.25 s scrape
interval: Debian's `prometheus` (file_sd targets) and/or `victoria-metrics` (targets in
the configuration, reloaded at once), each with the cluster watches that wake the wait.
Each run scales the Deployment 1 → 3 (the write a sync makes after `values.yaml` is saved)
and times until `prometheus.wait_for_targets(job=..., count=3, health="up")` returns (the
simulated pods' readiness delay included); then it scales back to 1 and waits (not timed),
and sleeps a random 0-5 s (Prometheus: so the change lands at a random phase of its 5 s
discovery and scrape-reload tickers, neither configurable in 2.42) or 0-0.5 s. The sync
itself is not included (bench_sync.py times it). Target (issue 18): median ≤ 1 s.
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
from pytest_devloop.prometheus.events import ClusterChanges  # noqa: E402
from pytest_devloop.prometheus.targets import (  # noqa: E402
    ClusterReader,
    EmbeddedPrometheus,
    LocalPrometheus,
    Prometheus,
)
from pytest_devloop.prometheus.victoria import LocalVictoriaMetrics  # noqa: E402

TARGET_S = 1.0
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


def run_engine(engine: str, binary: str, repeat: int, rng: random.Random) -> list[float]:
    times: list[float] = []
    with EmbeddedCluster() as cluster:
        api_client = client_from_kubeconfig(str(cluster.kubeconfig))
        kube = Kube(api_client)
        apply(
            kube,
            yaml.safe_load(
                (ROOT / "example_project/crds/monitoring-servicemonitor.yaml").read_text()
            ),
        )
        apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        for obj in objects(1):
            apply(kube, obj)
        scraper = LocalVictoriaMetrics if engine == "victoria-metrics" else LocalPrometheus
        with scraper(binary) as local:
            embedded = EmbeddedPrometheus(ClusterReader(kube).read, local)
            embedded.changes = ClusterChanges(api_client)
            embedded.refresh()
            prom = Prometheus(
                local.http(), refresh=embedded.refresh, mode="embedded", changes=embedded.changes
            )
            prom.wait_for_targets(job=JOB, count=1, timeout=30)
            for i in range(repeat):
                time.sleep(rng.uniform(0, 5 if engine == "prometheus" else 0.5))
                start = time.monotonic()
                apply(kube, objects(3)[0])
                prom.wait_for_targets(job=JOB, count=3, health="up", timeout=30)
                elapsed = time.monotonic() - start
                times.append(elapsed)
                print(f"{engine} run {i + 1}: {elapsed:.2f} s", flush=True)
                apply(kube, objects(1)[0])
                prom.wait_for_targets(job=JOB, count=1, health="up", timeout=30)
            embedded.changes.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--engine", choices=("both", "prometheus", "victoria-metrics"), default="both"
    )
    args = parser.parse_args()
    engines = ["prometheus", "victoria-metrics"] if args.engine == "both" else [args.engine]
    binaries = {e: shutil.which(e) for e in engines}
    if not any(binaries.values()):
        print("no prometheus or victoria-metrics binary: install one (scripts/tools.sh)")
        return 2
    rng = random.Random(args.seed)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results = []
    rows = []
    for engine, binary in binaries.items():
        if binary is None:
            rows.append(f"| {engine} | not installed | | | | | |")
            continue
        times = run_engine(engine, binary, args.repeat, rng)
        median = statistics.median(times)
        rows.append(
            f"| {engine} | replicas 1 → 3 written → wait_for_targets(count=3) | {len(times)} | "
            f"{median:.2f} s | {min(times):.2f} s | {max(times):.2f} s | ≤ {TARGET_S:g} s |"
        )
        results.append(
            {
                "engine": engine,
                "binary": binary,
                "runs": [round(t, 3) for t in times],
                "median_s": round(median, 3),
                "min_s": round(min(times), 3),
                "max_s": round(max(times), 3),
                "met": median <= TARGET_S,
            }
        )
    print()
    print("| engine | scenario | runs | median | min | max | target |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)
    print(
        f"(load before: {load}; after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])})"
    )
    result = {
        "benchmark": "prometheus",
        "scenario": "replicas 1 -> 3 written -> wait_for_targets(count=3, health=up)",
        "target_s": TARGET_S,
        "engines": results,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": load,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
