"""Benchmark: what loading pytest-devloop costs a project that does not use it.

Run: `python bench/bench_plugin_load.py [--repeat 7] [--json FILE]`

Two figures against the issue's target (≤ 20 ms added to pytest start-up):
- `import pytest_devloop.plugin` after `import pytest` (what the entry point adds to
  the import phase), from `python -X importtime`, best of `--repeat`;
- wall time of `pytest -q` on a one-test scratch project with the plugin and with
  `-p no:devloop`, best of `--repeat` each, and their difference.
Also lists the modules the plugin brings in (no Kubernetes client must be among them).
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 20.0


def import_ms() -> tuple[float, list[str]]:
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest; import pytest_devloop.plugin"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    lines = err.splitlines()
    # Everything imported after pytest's own (cumulative) line is the plugin's share.
    start = max(i for i, line in enumerate(lines) if re.search(r"\|\s+pytest$", line)) + 1
    ours = [
        re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line) for line in lines[start:]
    ]
    total = sum(int(m.group(1)) for m in ours if m)
    return total / 1000, [m.group(4) for m in ours if m]


def pytest_ms(project: Path, *extra: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
        cwd=project,
        env=env,
        capture_output=True,
        check=True,
    )
    return (time.perf_counter() - t) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    imports = [import_ms() for _ in range(args.repeat)]
    best_import = min(ms for ms, _ in imports)
    modules = imports[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "test_one.py").write_text("def test_one():\n    assert True\n")
        with_plugin, without = [], []
        for _ in range(args.repeat):  # interleaved, so drift hits both alike
            with_plugin.append(pytest_ms(project))
            without.append(pytest_ms(project, "-p", "no:devloop"))
    row = {
        "import_ms": best_import,
        "pytest_with_ms": min(with_plugin),
        "pytest_without_ms": min(without),
        "added_ms": min(with_plugin) - min(without),
        "modules": modules,
    }
    print(
        f"\nplugin load benchmark — {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, best of {args.repeat}; target ≤ {TARGET_MS:.0f} ms"
    )
    print(f"{'measure':<46} {'ms':>8}  met")
    print(
        f"{'import pytest_devloop.plugin (after pytest)':<46} {best_import:>8.1f}  "
        f"{'yes' if best_import <= TARGET_MS else 'NO'}"
    )
    print(f"{'pytest -q, one test, -p no:devloop':<46} {row['pytest_without_ms']:>8.1f}")
    print(f"{'pytest -q, one test, with the plugin':<46} {row['pytest_with_ms']:>8.1f}")
    print(
        f"{'added by the plugin (difference of bests)':<46} {row['added_ms']:>8.1f}  "
        f"{'yes' if row['added_ms'] <= TARGET_MS else 'NO'}"
    )
    print(f"\nmodules the plugin imports: {', '.join(modules)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
