"""Precision and recall of affected-test selection on the scenario suite.

Run: `python bench/bench_selection_scenarios.py [--deployer devloop|helm] [--json FILE]`

The scenario project of `tests/selection/test_selection_scenarios.py` (a chart with a version
toggle, a ConfigMap, a ServiceMonitor no Prometheus selects, a cluster-scoped ClusterRole;
nine tests) is copied to a temporary folder and run with `python -m pytest` on its own
embedded cluster. For each edit (replicas, routes, a pruned version, a ConfigMap key, a
ServiceMonitor port, a touched test file, a comment) the edit is made, `pytest
--devloop-affected` selects, and the tests that ran are compared with the tests the edit
can affect (known per scenario): precision = right / selected, recall = right / affected.
The project is then put back with a run that leaves green records. Prints a table;
asserts nothing. Recall must stay 1.0: a missed test is a hidden failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _suite() -> Any:
    spec = importlib.util.spec_from_file_location(
        "selection_scenarios", ROOT / "tests" / "selection" / "test_selection_scenarios.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _helm() -> str:
    tools = ROOT / ".tools" / "tools.env"
    for line in tools.read_text().splitlines() if tools.exists() else []:
        if line.startswith("DEVLOOP_HELM4="):
            return line.split("=", 1)[1]
    return shutil.which("helm") or "helm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployer", choices=["devloop", "helm"], default="devloop")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    suite = _suite()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="devloop-bench-selection-") as tmp:
        project = suite.make_project(Path(tmp), os.environ.get("DEVLOOP_HELM") or _helm())
        if args.deployer == "helm":
            config = project.path / "devloop.yaml"
            config.write_text(
                config.read_text().replace(
                    "    namespace: shop\n", "    namespace: shop\n    deployer: helm\n"
                )
            )
        try:
            first = project.pytest()
            if first.ret != 0:
                raise SystemExit(f"the scenario project does not pass as shipped:\n{first}")
            for scenario in suite.SCENARIOS:
                t0 = time.perf_counter()
                m = suite.measure(project, scenario)
                rows.append(
                    {
                        "scenario": scenario.name,
                        "affected": len(scenario.expected),
                        "selected": len(m.selected),
                        "right": m.hits,
                        "precision": m.precision,
                        "recall": m.recall,
                        "seconds": time.perf_counter() - t0,
                        "header": m.header,
                    }
                )
        finally:
            project.stop()
    print(f"selection scenarios ({args.deployer} deployer, 9 tests)")
    print(
        f"{'scenario':<22}{'affected':>9}{'selected':>9}{'right':>7}{'precision':>10}{'recall':>8}"
    )
    for r in rows:
        print(
            f"{r['scenario']:<22}{r['affected']:>9}{r['selected']:>9}{r['right']:>7}"
            f"{r['precision']:>10.2f}{r['recall']:>8.2f}"
        )
    right = sum(r["right"] for r in rows)
    selected = sum(r["selected"] for r in rows)
    affected = sum(r["affected"] for r in rows)
    print(
        f"{'total':<22}{affected:>9}{selected:>9}{right:>7}"
        f"{(right / selected if selected else 1.0):>10.2f}"
        f"{(right / affected if affected else 1.0):>8.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
