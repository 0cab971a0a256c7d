"""Benchmark of the sync engine against the targets of its issue.

Run: `python bench/bench_sync.py [--json bench/results/sync.json] [--repeat 5]`

A generated chart of 150 objects (50 Deployments, 50 Services, 50 ConfigMaps) is synced
to an embedded cluster (in this process, so API write requests can be counted):
- first sync (render, apply everything, wait for every Deployment): target ≤ 2 s;
- no-op sync: target ≤ 0.15 s and 0 API writes;
- one value changed (one Deployment's replicas): target ≤ 0.5 s to applied and ready,
  writing only the changed object.
Times are medians over `--repeat` runs (the first sync is measured once per fresh cluster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pytest_devloop.cluster.providers import Target
from pytest_devloop.config.load import load_config
from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.sync.syncer import Syncer

TEMPLATE = """\
{{- range $i := until 50 }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg-{{ $i }}
data:
  index: "{{ $i }}"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{{ $i }}
  labels: {app: app-{{ $i }}}
spec:
  replicas: {{ index $.Values.replicas (printf "app%d" $i) | default 1 }}
  selector: {matchLabels: {app: app-{{ $i }}}}
  template:
    metadata: {labels: {app: app-{{ $i }}}}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        ports: [{containerPort: 8080, name: http}]
        envFrom: [{configMapRef: {name: cfg-{{ $i }}}}]
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}
---
apiVersion: v1
kind: Service
metadata:
  name: app-{{ $i }}
spec:
  selector: {app: app-{{ $i }}}
  ports: [{port: 80, targetPort: http}]
{{- end }}
"""


def make_project(root: Path) -> Path:
    chart = root / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: bench\nversion: 0.1.0\n")
    (chart / "templates" / "all.yaml").write_text(TEMPLATE)
    (root / "values.yaml").write_text("replicas:\n  app0: 1\n")
    (root / "devloop.yaml").write_text(
        "namespace: bench\ncharts:\n  - name: bench\n    path: chart\n    values: [values.yaml]\n"
    )
    return root


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    firsts: list[float] = []
    noops: list[float] = []
    noop_writes: list[int] = []
    cold_noops: list[float] = []
    changes: list[float] = []
    change_writes: list[int] = []
    objects = 0
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="devloop-bench-sync-") as tmp:
            root = make_project(Path(tmp) / "project")
            cluster = EmbeddedCluster(directory=Path(tmp) / "cluster").start()
            try:
                assert cluster.kubeconfig is not None and cluster.api is not None
                target = Target(
                    "current", "devloop-embedded", str(cluster.kubeconfig), cluster.url, "embedded"
                )
                config = load_config(root)
                assert config is not None
                lines: list[str] = []
                syncer = Syncer(config, target, out=lines.append)
                t0 = time.perf_counter()
                result = syncer.sync()
                firsts.append(time.perf_counter() - t0)
                assert result.ok, lines
                plan = result.artifacts[0].plan
                objects = len(plan.actions) if plan else 0

                before = cluster.api.write_requests
                t0 = time.perf_counter()
                result = syncer.sync()
                noops.append(time.perf_counter() - t0)
                noop_writes.append(cluster.api.write_requests - before)
                assert result.ok, lines

                # As a fresh `pytest` run does: new engine, new connection, new helm probe.
                before = cluster.api.write_requests
                t0 = time.perf_counter()
                result = Syncer(load_config(root) or config, target, out=lines.append).sync()
                cold_noops.append(time.perf_counter() - t0)
                noop_writes.append(cluster.api.write_requests - before)

                (root / "values.yaml").write_text(f"replicas:\n  app0: {3 + run % 2}\n")
                before = cluster.api.write_requests
                t0 = time.perf_counter()
                result = syncer.sync()
                changes.append(time.perf_counter() - t0)
                change_writes.append(cluster.api.write_requests - before)
                assert result.ok, lines
            finally:
                cluster.stop()

    rows = [
        (
            f"first sync, {objects} objects, applied and ready",
            statistics.median(firsts),
            "s",
            2.0,
            None,
        ),
        ("no-op sync", statistics.median(noops), "s", 0.15, max(noop_writes)),
        (
            "no-op sync, fresh engine (new pytest run)",
            statistics.median(cold_noops),
            "s",
            0.15,
            max(noop_writes),
        ),
        (
            "one value changed, applied and ready",
            statistics.median(changes),
            "s",
            0.5,
            max(change_writes),
        ),
    ]
    print(
        f"\nsync engine benchmark — {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, median of {args.repeat}"
    )
    print(f"{'measure':<48} {'value':>8}  {'target':<8} {'API writes':<10} met")
    ok_all = True
    for name, value, unit, target, writes in rows:
        ok = value <= target and (
            writes is None or (writes == 0 if "no-op" in name else writes <= 1)
        )
        ok_all &= ok
        w = "-" if writes is None else str(writes)
        print(f"{name:<48} {value:>6.3f} {unit}  ≤ {target:<5} {w:<10} {'yes' if ok else 'NO'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                [
                    {"measure": n, "value": v, "unit": u, "target": t, "api_writes": w}
                    for n, v, u, t, w in rows
                ],
                indent=2,
            )
        )
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
