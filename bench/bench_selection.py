"""Benchmark of affected-test selection against the target of its issue.

Run: `python bench/bench_selection.py [--repeat 7] [--tests 1000] [--apps 60] [--json FILE]`

A generated release of 300 objects (60 apps, each a Deployment, Service, ConfigMap,
ServiceMonitor and VirtualService, with the references a real chart has: envFrom, pod
selectors, monitors by matchLabels or matchExpressions, one monitor in another namespace
that selects every app, canary routes split across two Services) and 1,000 recorded tests,
each reading 1-5 objects at field level and making one list. For each change scenario:
`Graph.build` + `Graph.closure` + `select` over all tests, target ≤ 100 ms in total.
Times are medians over `--repeat` runs, each from scratch (no cache survives a run).
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_devloop.selection.impact import Graph, ListRead, TestRecord, select, summary
from pytest_devloop.sync.plan import object_key

TARGET_MS = 100.0

Objects = dict[str, dict[str, Any]]


def release(apps: int, namespaces: int) -> Objects:
    objects: list[dict[str, Any]] = []
    for i in range(apps):
        ns = f"team-{i % namespaces}"
        name = f"app-{i}"
        labels = {
            "app": name,
            "app.kubernetes.io/part-of": "bench",
            "tier": ("web", "api", "worker")[i % 3],
        }
        meta = {"name": name, "namespace": ns, "labels": labels}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {**meta, "name": f"{name}-config"},
                "data": {"LOG_LEVEL": "INFO", "PEER": f"http://app-{(i + 1) % apps}"},
            }
        )
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta,
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {**labels, "version": "v1"}},
                        "spec": {
                            "serviceAccountName": "bench",
                            "containers": [
                                {
                                    "name": "app",
                                    "image": f"registry.local/bench/{name}:devloop-0123456789ab",
                                    "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
                                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                                }
                            ],
                        },
                    },
                },
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
            }
        )
        selector: dict[str, Any] = (
            {"matchLabels": {"app": name}}
            if i % 2
            else {
                "matchExpressions": [
                    {"key": "app", "operator": "In", "values": [name]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ]
            }
        )
        objects.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "ServiceMonitor",
                "metadata": meta,
                "spec": {"selector": selector, "endpoints": [{"port": "http"}]},
            }
        )
        peer = f"app-{(i + 1) % apps}.team-{(i + 1) % apps % namespaces}.svc.cluster.local"
        objects.append(
            {
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "VirtualService",
                "metadata": meta,
                "spec": {
                    "hosts": [name],
                    "http": [
                        {
                            "route": [
                                {"destination": {"host": name}, "weight": 90},
                                {"destination": {"host": peer}, "weight": 10},
                            ]
                        }
                    ],
                },
            }
        )
    # One fleet-wide monitor in another namespace: every app's Service is its dependency.
    # It replaces app-0's monitor, so the release stays at 5 objects per app.
    objects[3] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "fleet", "namespace": "monitoring"},
        "spec": {
            "namespaceSelector": {"any": True},
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": "bench"}},
        },
    }
    return {object_key(o): o for o in objects}


READS = {
    "Deployment": [
        "spec.replicas",
        "status.readyReplicas",
        "spec.template.spec.containers.0.resources.limits",
        "metadata.annotations",
        "spec.template.metadata.labels",
    ],
    "Service": ["spec.selector", "spec.ports", "metadata.labels"],
    "ConfigMap": ["data", "data.LOG_LEVEL"],
    "ServiceMonitor": ["spec.selector", "spec.endpoints"],
    "VirtualService": ["spec.http", "spec.hosts"],
}


def recorded_suite(objects: Objects, tests: int, rng: random.Random) -> dict[str, TestRecord]:
    keys = sorted(objects)
    records: dict[str, TestRecord] = {}
    for t in range(tests):
        reads: dict[str, list[str] | None] = {}
        for key in rng.sample(keys, rng.randint(1, 5)):
            kind = key.split("/")[1]
            reads[key] = rng.sample(READS[kind], rng.randint(1, min(3, len(READS[kind]))))
        app = rng.randrange(len(keys) // 5)
        ns = objects[keys[0]]["metadata"]["namespace"] if rng.random() < 0.1 else None
        # Most tests list one app's pods; a few list a whole kind.
        lists = rng.choices(
            [
                ListRead("/Pod", ns, f"app=app-{app}"),
                ListRead("/Pod", ns, f"app in (app-{app}),version!=v2"),
                ListRead("apps/Deployment", None, "app.kubernetes.io/part-of=bench,tier=api"),
                ListRead("networking.istio.io/VirtualService", ns, ""),
            ],
            weights=[70, 20, 7, 3],
        )
        declared = [f"Deployment/app-{app}"] if rng.random() < 0.05 else []
        records[f"tests/test_fleet_{t // 50}.py::test_{t}"] = TestRecord(
            objects=reads, lists=lists, declared=declared, file_digest="d"
        )
    return records


Scenario = tuple[str, dict[str, list[str] | None], Objects | None]


def scenarios(objects: Objects) -> list[Scenario]:
    """(name, changed, previous bodies or None)."""

    def key(kind: str, name: str) -> str:
        return next(k for k in objects if k.split("/")[1] == kind and k.endswith("/" + name))

    deployments = [k for k in objects if "/Deployment/" in k][:6]
    relabel: dict[str, list[str] | None] = {
        k: ['spec.template.metadata.labels["version"]'] for k in deployments
    }
    previous = copy.deepcopy(objects)
    for k in deployments:
        previous[k]["spec"]["template"]["metadata"]["labels"]["version"] = "v0"
    return [
        ("one replica change", {key("Deployment", "app-7"): ["spec.replicas"]}, None),
        ("one ConfigMap change", {key("ConfigMap", "app-7-config"): ["data.LOG_LEVEL"]}, None),
        ("one VirtualService change", {key("VirtualService", "app-7"): ["spec.http"]}, None),
        ("6 pod-label changes, previous given", relabel, previous),
        ("6 pod-label changes, old labels unknown", relabel, None),
        ("whole chart changed, old labels unknown", {"chart:bench": None}, None),
    ]


def measure(
    objects: Objects,
    records: dict[str, TestRecord],
    changed: dict[str, list[str] | None],
    previous: Objects | None,
    repeat: int,
) -> dict[str, Any]:
    builds: list[float] = []
    closures: list[float] = []
    selects: list[float] = []
    totals: list[float] = []
    impacted = run = 0
    nodeids = list(records)
    artifact_of = dict.fromkeys(objects, "bench")
    line = ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        graph = Graph.build(objects.items(), artifact_of=artifact_of)
        t1 = time.perf_counter()
        impact = graph.closure(changed, cause="values.yaml", previous=previous)
        t2 = time.perf_counter()
        decisions = select(records, nodeids, impact)
        t3 = time.perf_counter()
        builds.append(t1 - t0)
        closures.append(t2 - t1)
        selects.append(t3 - t2)
        totals.append(t3 - t0)
        impacted = len(impact.fields)
        run = sum(d.run for d in decisions)
        line = summary(decisions, "values.yaml")
    ms: Callable[[list[float]], float] = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    return {
        "impacted": impacted,
        "selected": run,
        "build_ms": ms(builds),
        "closure_ms": ms(closures),
        "select_ms": ms(selects),
        "total_ms": ms(totals),
        "summary": line,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--tests", type=int, default=1000)
    parser.add_argument("--apps", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for namespaces in (1, 6):
        objects = release(args.apps, namespaces)
        records = recorded_suite(objects, args.tests, random.Random(6))
        for name, changed, previous in scenarios(objects):
            row = measure(objects, records, changed, previous, args.repeat)
            row.update(
                scenario=name, namespaces=namespaces, objects=len(objects), tests=len(records)
            )
            rows.append(row)
    print(
        f"\nselection benchmark — {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, median of {args.repeat}; "
        f"{rows[0]['objects']} objects, {rows[0]['tests']} tests; target ≤ {TARGET_MS:.0f} ms"
    )
    print(
        f"{'scenario':<42} {'ns':>2} {'impacted':>8} {'selected':>8} "
        f"{'build':>7} {'closure':>7} {'select':>7} {'total':>7}  met"
    )
    for r in rows:
        print(
            f"{r['scenario']:<42} {r['namespaces']:>2} {r['impacted']:>8} {r['selected']:>8} "
            f"{r['build_ms']:>5.1f}ms {r['closure_ms']:>5.1f}ms {r['select_ms']:>5.1f}ms "
            f"{r['total_ms']:>5.1f}ms  {'yes' if r['total_ms'] <= TARGET_MS else 'NO'}"
        )
    print(f"\ne.g. {rows[0]['summary']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
