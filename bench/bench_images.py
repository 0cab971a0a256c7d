"""Benchmark of image fingerprinting against the targets of its issue.

Run: `python bench/bench_images.py [--json bench/results/images.json]`

- fingerprint of a 2,000-file build context: cold, and warm (target ≤ 150 ms; a warm
  pass re-hashes only files whose size or mtime changed);
- a cycle in which no image changed: digest every image and decide nothing to build
  (target ≤ 20 ms), with one warm engine as watch mode keeps it.
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

from pytest_devloop.artifacts.fingerprint import FileHasher
from pytest_devloop.artifacts.images import fingerprint_image, image_refs
from pytest_devloop.config.load import load_config


def make_project(root: Path, files: int) -> None:
    for name in ("app", "model"):
        ctx = root / "images" / name
        for i in range(files):
            sub = ctx / "src" / f"pkg{i % 40}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"mod{i}.py").write_text(f"VALUE = {i}\n" * 20)
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY src /src\n")
        (ctx / ".dockerignore").write_text("**/__pycache__\n*.pyc\n")
    (root / "devloop.yaml").write_text(
        "images:\n  - name: app\n    context: images/app\n  - name: model\n    context: images/model\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="devloop-bench-images-") as tmp:
        root = Path(tmp)
        make_project(root, 2000)
        config = load_config(root)
        assert config is not None
        spec = config.images[0]
        hasher = FileHasher()
        t0 = time.perf_counter()
        fingerprint_image(spec, hasher)
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(5):
            t0 = time.perf_counter()
            fingerprint_image(spec, hasher)
            warm.append(time.perf_counter() - t0)
        hasher.save(root / "stats.json")
        fresh = []
        for _ in range(3):
            t0 = time.perf_counter()
            fingerprint_image(spec, FileHasher.load(root / "stats.json"))
            fresh.append(time.perf_counter() - t0)
        small = Path(tmp) / "small"
        small.mkdir()
        make_project(small, 20)
        small_config = load_config(small)
        assert small_config is not None
        small_hasher = FileHasher()
        image_refs(small_config, small_hasher)
        cycles = []
        for _ in range(20):
            t0 = time.perf_counter()
            image_refs(small_config, small_hasher)
            cycles.append(time.perf_counter() - t0)

    rows = [
        ("fingerprint, 2,000-file context, cold", cold * 1000, None),
        ("fingerprint, 2,000-file context, warm", statistics.median(warm) * 1000, 150.0),
        ("same, new process (stat cache from disk)", statistics.median(fresh) * 1000, 150.0),
        ("no-change cycle, 2 images (digests, no build)", statistics.median(cycles) * 1000, 20.0),
    ]
    print(
        f"\nimage benchmark — {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{'measure':<48} {'ms':>8}  {'target':<10} met")
    ok = True
    for name, value, target in rows:
        met = target is None or value <= target
        ok &= met
        t = "-" if target is None else f"≤ {target:.0f} ms"
        print(f"{name:<48} {value:>8.1f}  {t:<10} {'yes' if met else 'NO'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps([{"measure": n, "ms": v, "target_ms": t} for n, v, t in rows], indent=2)
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
