"""Benchmark of the embedded cluster against the targets of its issue.

Run: `python bench/bench_embedded.py [--json bench/results/embedded.json]`

Measures, through the real `kubernetes` Python client over HTTP, with the cluster in a
background process (so its RSS is its own):
- server-side apply of 150 mixed objects, one request each (target ≤ 1.0 s);
- a Deployment scaled 1 → 3 until 3 ready replicas are reported (target ≤ 0.3 s);
- watch delivery latency, write to event, median of 200 (target ≤ 10 ms);
- with 5,000 stored objects: list of one kind (target ≤ 50 ms) and server RSS (≤ 200 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, dynamic, watch

from pytest_devloop.embedded import cluster as embedded


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def mixed_objects(ns: str, n: int) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for i in range(n):
        kind = i % 4
        name = f"obj-{i}"
        if kind == 0:
            labels = {"app": name}
            objs.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": labels},
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "containers": [
                                    {
                                        "name": "app",
                                        "image": "nginx:1.27",
                                        "ports": [{"containerPort": 80}],
                                    }
                                ]
                            },
                        },
                    },
                }
            )
        elif kind == 1:
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
                }
            )
        elif kind == 2:
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": ns},
                    "data": {"key": "value" * 10},
                }
            )
        else:
            objs.append(
                {
                    "apiVersion": "bench.devloop.dev/v1",
                    "kind": "Widget",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"size": i},
                }
            )
    return objs


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.bench.devloop.dev"},
    "spec": {
        "group": "bench.devloop.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def validation_cost(deployment: dict[str, Any]) -> tuple[str, float, str, str, bool]:
    """Server time validation adds to one Deployment update (decode + rules + immutables).

    Measured in-process on the same code the request threads run, median of 500, so that
    HTTP noise does not hide a 2 ms budget.
    """
    import copy

    from pytest_devloop.embedded.store import Store
    from pytest_devloop.embedded.validation import Validation
    from pytest_devloop.k8s.resources import Registry

    registry = Registry()
    rt = registry.get("apps", "deployments")
    assert rt is not None
    check = Validation(Store(registry))
    old = copy.deepcopy(deployment)
    check.decode(rt, "v1", copy.deepcopy(old), "Strict")  # first use loads the schemas
    timings = []
    for i in range(500):
        new = copy.deepcopy(deployment)
        new["spec"]["replicas"] = i % 5
        t0 = time.perf_counter()
        check.decode(rt, "v1", new, "Strict")
        check.validate(rt, new, old)
        timings.append(time.perf_counter() - t0)
    ms = statistics.median(timings) * 1000
    return ("validation added to one Deployment update", ms, "ms", "≤ 2 ms", ms <= 2.0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: list[tuple[str, float, str, str, bool]] = []
    with tempfile.TemporaryDirectory(prefix="devloop-bench-") as tmp:
        state, _ = embedded.up(Path(tmp))
        try:
            api = config.new_client_from_config(config_file=state.kubeconfig)
            core = client.CoreV1Api(api)
            apps = client.AppsV1Api(api)
            dyn = dynamic.DynamicClient(api)
            core.create_namespace({"metadata": {"name": "bench"}})
            dyn.resources.get(
                api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
            ).create(body=CRD)
            objs = mixed_objects("bench", 150)
            res = {
                k: dyn.resources.get(api_version=a, kind=k)
                for a, k in {(o["apiVersion"], o["kind"]) for o in objs}
            }
            # Warm the connection pool and discovery cache.
            res["ConfigMap"].server_side_apply(
                body=dict(objs[2], metadata={"name": "warm", "namespace": "bench"}),
                field_manager="bench",
            )
            t0 = time.perf_counter()
            for o in objs:
                res[o["kind"]].server_side_apply(body=o, field_manager="bench")
            ssa_s = time.perf_counter() - t0
            results.append(
                ("server-side apply, 150 mixed objects", ssa_s, "s", "≤ 1.0 s", ssa_s <= 1.0)
            )

            results.append(validation_cost(objs[0]))

            apps.create_namespaced_deployment(
                "bench",
                {
                    "metadata": {"name": "scaler"},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": "scaler"}},
                        "template": {
                            "metadata": {"labels": {"app": "scaler"}},
                            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                        },
                    },
                },
            )
            while (
                apps.read_namespaced_deployment_status("scaler", "bench").status.ready_replicas or 0
            ) < 1:
                time.sleep(0.01)
            t0 = time.perf_counter()
            apps.patch_namespaced_deployment_scale("scaler", "bench", {"spec": {"replicas": 3}})
            while (
                apps.read_namespaced_deployment_status("scaler", "bench").status.ready_replicas or 0
            ) < 3:
                time.sleep(0.005)
            scale_s = time.perf_counter() - t0
            results.append(
                ("Deployment 1 → 3, patch to 3 ready", scale_s, "s", "≤ 0.3 s", scale_s <= 0.3)
            )

            latencies: list[float] = []
            sent: dict[str, float] = {}
            ready = threading.Event()
            done = threading.Event()

            def consume() -> None:
                w = watch.Watch()
                for ev in w.stream(
                    core.list_namespaced_config_map,
                    "bench",
                    label_selector="lat=1",
                    timeout_seconds=30,
                    _request_timeout=60,
                ):
                    ready.set()
                    name = ev["object"].metadata.name
                    if ev["type"] == "ADDED" and name in sent:
                        latencies.append(time.perf_counter() - sent[name])
                    if len(latencies) >= 200:
                        w.stop()
                        done.set()
                        return

            core.create_namespaced_config_map(
                "bench", {"metadata": {"name": "lat-seed", "labels": {"lat": "1"}}}
            )
            t = threading.Thread(target=consume, daemon=True)
            t.start()
            ready.wait(5)
            for i in range(200):
                name = f"lat-{i}"
                sent[name] = time.perf_counter()
                core.create_namespaced_config_map(
                    "bench", {"metadata": {"name": name, "labels": {"lat": "1"}}}
                )
                time.sleep(0.002)
            done.wait(10)
            median_ms = statistics.median(latencies) * 1000 if latencies else float("nan")
            results.append(
                (
                    "watch delivery, write → event, median of 200",
                    median_ms,
                    "ms",
                    "≤ 10 ms",
                    median_ms <= 10,
                )
            )

            for i in range(5000 - 150):
                core.create_namespaced_config_map(
                    "bench",
                    {
                        "metadata": {"name": f"bulk-{i}", "labels": {"bulk": "1"}},
                        "data": {"k": "v" * 64},
                    },
                )
            timings = []
            for _ in range(5):
                t0 = time.perf_counter()
                core.list_namespaced_config_map("bench", _preload_content=False).read()
                timings.append(time.perf_counter() - t0)
            list_ms = min(timings) * 1000
            total = sum((embedded.query_status(state) or {}).get("objects", {}).values())
            results.append(
                (f"list one kind, {total} objects stored", list_ms, "ms", "≤ 50 ms", list_ms <= 50)
            )
            rss = rss_mb(state.pid)
            results.append(
                (f"server RSS, {total} objects stored", rss, "MB", "≤ 200 MB", rss <= 200)
            )
            api.close()
        finally:
            embedded.down(Path(tmp))

    print(
        f"\nembedded cluster benchmark — {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{'measure':<48} {'value':>10}  {'target':<10} {'met'}")
    for name, value, unit, target, ok in results:
        print(f"{name:<48} {value:>8.3f} {unit:<2} {target:<10} {'yes' if ok else 'NO'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                [
                    {"measure": n, "value": v, "unit": u, "target": t, "met": ok}
                    for n, v, u, t, ok in results
                ],
                indent=2,
            )
        )
    return 0 if all(r[4] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
