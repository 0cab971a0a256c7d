"""Benchmark of real-world chart patterns on the per-object path (issue 14).

Run: `python bench/bench_charts.py [--helm .tools/helm4/helm] [--repeat 3] [--json FILE]`

The chart is `tests/data/sync/big` (150 objects: 3 CRDs and objects of them, Deployments,
Services, ConfigMaps, RBAC, 4 hooks) with its `auth` subchart packed as a `.tgz` that
calls `lookup`, so every render runs against the cluster (`helm template
--dry-run=server`). It is synced to an embedded cluster in this process (API writes are
counted; helm runs behind a wrapper that counts its processes):
- first sync (CRDs first, hooks, everything applied and ready): target ≤ 3 s;
- no-op sync: target ≤ 0.15 s, 0 API writes, no helm process;
- one value changed (one Deployment's replicas): target ≤ 0.6 s, exactly 1 write.
Also printed: the cost of a render against the cluster against a plain `helm template`
of the same chart (median of 5 each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

from pytest_devloop.artifacts.render import HelmTool
from pytest_devloop.cluster.providers import Target
from pytest_devloop.config.load import load_config
from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.sync.syncer import Syncer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "sync"


def pack(chart: Path, into: Path) -> None:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(into / f"{meta['name']}-{meta['version']}.tgz", "w:gz") as tar:
        for path in sorted(chart.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=f"{meta['name']}/{path.relative_to(chart)}")


def make_project(root: Path) -> Path:
    shutil.copytree(DATA / "big", root)
    shutil.copytree(DATA / "lookup" / "subcharts", root / "subcharts")
    pack(root / "subcharts" / "auth", root / "charts" / "big" / "charts")
    return root


def counting_helm(real: str, folder: Path) -> tuple[HelmTool, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "calls.log"
    wrapper = folder / "helm"
    wrapper.write_text(
        f'#!/bin/sh\necho "$1" >> {shlex.quote(str(log))}\nexec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return HelmTool(str(wrapper)), log


def calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def render_cost(helm: str, chart: Path, kubeconfig: str, repeat: int = 5) -> tuple[float, float]:
    def timed(extra: list[str]) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run(
                [helm, "template", "big", str(chart), "-n", "big", "--include-crds", *extra],
                check=True,
                capture_output=True,
                timeout=120,
            )
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    server = ["--dry-run=server", "--disable-openapi-validation", "--is-upgrade"]
    return timed([]), timed([*server, "--kubeconfig", kubeconfig])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--helm", default=str(ROOT / ".tools" / "helm4" / "helm"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    firsts: list[float] = []
    noops: list[float] = []
    noop_writes: list[int] = []
    noop_helm: list[int] = []
    changes: list[float] = []
    change_writes: list[int] = []
    objects = 0
    plain = server = 0.0
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="devloop-bench-charts-") as tmp:
            root = make_project(Path(tmp) / "project")
            helm, log = counting_helm(args.helm, Path(tmp) / "bin")
            cluster = EmbeddedCluster(directory=Path(tmp) / "cluster").start()
            try:
                assert cluster.kubeconfig is not None and cluster.api is not None
                target = Target(
                    "current", "devloop-embedded", str(cluster.kubeconfig), cluster.url, "embedded"
                )
                config = load_config(root)
                assert config is not None
                lines: list[str] = []
                t0 = time.perf_counter()
                result = Syncer(config, target, out=lines.append, helm=helm).sync()
                firsts.append(time.perf_counter() - t0)
                assert result.ok, lines
                objects = len(result.artifacts[0].desired)

                # As a fresh `pytest` run does: new engine, new connection.
                before, helm_before = cluster.api.write_requests, calls(log)
                t0 = time.perf_counter()
                result = Syncer(
                    load_config(root) or config, target, out=lines.append, helm=helm
                ).sync()
                noops.append(time.perf_counter() - t0)
                noop_writes.append(cluster.api.write_requests - before)
                noop_helm.append(calls(log) - helm_before)
                assert result.ok, lines

                values = root / "charts" / "big" / "values.yaml"
                values.write_text(values.read_text().replace("svc0: 1", f"svc0: {3 + run % 2}"))
                before = cluster.api.write_requests
                t0 = time.perf_counter()
                result = Syncer(
                    load_config(root) or config, target, out=lines.append, helm=helm
                ).sync()
                changes.append(time.perf_counter() - t0)
                change_writes.append(cluster.api.write_requests - before)
                assert result.ok, lines
                if run == 0:
                    plain, server = render_cost(
                        args.helm, root / "charts" / "big", str(cluster.kubeconfig)
                    )
            finally:
                cluster.stop()

    rows = [
        (f"first sync, {objects} objects + 4 hooks, lookup subchart", statistics.median(firsts), 3.0, None, None),
        ("no-op sync (fresh engine)", statistics.median(noops), 0.15, max(noop_writes), max(noop_helm)),
        ("one replicas changed, applied and ready", statistics.median(changes), 0.6, max(change_writes), None),
    ]  # fmt: skip
    print(
        f"\nchart patterns benchmark — {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {Path(args.helm).parent.name}, median of {args.repeat}"
    )
    print(f"{'measure':<56} {'value':>8}  {'target':<8} {'writes':<7} {'helm':<5} met")
    ok_all = True
    for name, value, target, writes, helm_runs in rows:
        ok = value <= target
        if writes is not None:
            ok &= writes == (0 if "no-op" in name else 1)
        if helm_runs is not None:
            ok &= helm_runs == 0
        ok_all &= ok
        w = "-" if writes is None else str(writes)
        h = "-" if helm_runs is None else str(helm_runs)
        print(f"{name:<56} {value:>6.3f} s  ≤ {target:<5} {w:<7} {h:<5} {'yes' if ok else 'NO'}")
    print(
        f"render of the chart: plain helm template {plain:.3f} s, against the cluster "
        f"(--dry-run=server) {server:.3f} s (+{server - plain:.3f} s)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "rows": [
                        {"measure": n, "value": v, "target": t, "api_writes": w, "helm": h}
                        for n, v, t, w, h in rows
                    ],
                    "render": {"plain": plain, "server_dry_run": server},
                },
                indent=2,
            )
        )
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
