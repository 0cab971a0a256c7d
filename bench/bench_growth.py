"""How a watch cycle grows with the size of the chart and the number of tests.

Run: `python bench/bench_growth.py [--repeat 5] [--json bench/results/growth.json]`

Scenario B (a 50% fault delay added to the VirtualService template: one object changes,
three tests are affected) and the no-op save, in `pytest --devloop-watch` on copies of:
the example (13 objects, 12 tests), the course chart at 150 and 600 objects (20 tests),
and the 150-object chart with 200 and 2,000 tests (`DEVLOOP_BENCH_TESTS`). Cost should
grow with what changed (one object, three tests), not with what exists: the table prints
each cycle's median and the median of its time split, so a part that grows shows which.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_watch as bw

CASES = [
    ("example", 13, None),
    ("course", 150, None),
    ("course", 600, None),
    ("course", 150, 200),
    ("course", 150, 2000),
]


def run_case(name: str, size: int, tests: int | None, repeat: int) -> dict[str, Any]:
    spec = bw.PROJECTS[name]
    if tests is None:
        bw.SETTINGS.pop("DEVLOOP_BENCH_TESTS", None)
    else:
        bw.SETTINGS["DEVLOOP_BENCH_TESTS"] = str(tests)
    tmp = Path(tempfile.mkdtemp(prefix="bench-growth-"))
    project = bw.copy_project(name, tmp, size)
    w = bw.Watch(project)
    try:
        w.block()
        b = bw.scenario(
            w, project / spec["vs"], "    - name: app\n", bw.FAULT, repeat, spec["b_line"]
        )
        n = bw.noop(w, project, spec["values"], repeat)
        rss = w.rss()
    finally:
        w.stop()
        subprocess.run(
            [sys.executable, "-m", "pytest_devloop", "cluster", "down", "--dir",
             str(project / ".devloop" / "embedded")],
            capture_output=True,
            check=False,
        )  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)
    tests_line = next(ln for ln in b["last_block"] if ln.startswith("devloop: tests:"))
    return {
        "project": name,
        "objects": size,
        "tests": tests or (12 if name == "example" else 20),
        "b_median_s": b["median_s"],
        "b_split": b["split_median"],
        "noop_median_s": n["median_s"],
        "noop_writes": n["api_writes"],
        "tests_line": tests_line,
        "rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--helm-backend", choices=("auto", "cli", "inprocess"), default=bw.default_backend()
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/growth.json"))
    args = parser.parse_args()
    bw.SETTINGS["DEVLOOP_HELM_BACKEND"] = args.helm_backend
    load = bw.load()
    rows = [run_case(name, size, tests, args.repeat) for name, size, tests in CASES]
    print(
        f"\nscenario B and no-op, median of {args.repeat}, helm {args.helm_backend}, "
        f"{os.cpu_count()} cores, load {load} → {bw.load()}"
    )
    print(
        "| objects | tests | B: save → green | render | sync | tests step | no-op | "
        "no-op writes | watch RSS |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        split = r["b_split"]
        print(
            f"| {r['objects']} | {r['tests']} | {r['b_median_s']:.3f} s | "
            f"{split.get('render', 0):.3f} | {split.get('sync', 0):.3f} | "
            f"{split.get('tests', 0):.3f} | {r['noop_median_s']:.3f} s | {r['noop_writes']} | "
            f"{r['rss_mb']:.0f} MB |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"load": load, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
