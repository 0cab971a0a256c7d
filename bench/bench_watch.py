"""Benchmark of watch mode against the targets of its issue (run in one go).

Run: `python bench/bench_watch.py [--repeat 10] [--json bench/results/watch.json]`

On a copy of `example_project/` with its embedded cluster, `pytest --devloop-watch` runs as
a subprocess and each scenario is saved `--repeat` times; a time is from the moment before
the file is written to the moment the watch prints the scenario's result line:
- A: app replicas 1 -> 3 in values.yaml -> the replica tests reported green (≤ 1.0 s);
- B: a 50% fault delay added to the VirtualService template -> routing tests green (≤ 1.0 s);
- no-op: the same content saved -> `nothing changed` (≤ 0.3 s, 0 API writes, 0 tests);
- baseline, same run: `pytest --devloop-ci` (fresh namespace, render, apply all, wait, run
  every test, tear down) in a fresh process, and the ratio baseline / devloop (goal ≥ 20x);
- peak RSS of the watch process (VmHWM, ≤ 250 MB), and of its fork server for reference.
Each scenario's save is undone between repetitions (that cycle is not measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "example_project"
VALUES = Path("charts/sms-checker/values.yaml")
VS = Path("charts/sms-checker/templates/virtualservice.yaml")
FAULT = (
    "    - name: app\n      fault:\n        delay:\n          percentage:\n"
    "            value: 50\n          fixedDelay: 2s\n"
)


def helm() -> str:
    from conftest import find_tool

    found = os.environ.get("DEVLOOP_HELM") or find_tool("helm4") or shutil.which("helm")
    if not found:
        raise SystemExit("helm is not installed: run `bash scripts/tools.sh`")
    return found


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "CI"}
    e["DEVLOOP_HELM"] = helm()
    e["PYTHONUNBUFFERED"] = "1"
    return e


class Watch:
    def __init__(self, project: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "--devloop-watch"],
            cwd=project,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env(),
            start_new_session=True,
        )
        self.q: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.q.put((time.perf_counter(), line.rstrip("\n")))
        self.q.put(None)

    def wait(self, pattern: str, timeout: float = 60) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                raise SystemExit("watch exited:\n" + "\n".join(self.log[-30:]))
            self.log.append(item[1])
            if re.search(pattern, item[1]):
                return item
        raise SystemExit(f"no {pattern!r} within {timeout} s:\n" + "\n".join(self.log[-30:]))

    def block(self) -> tuple[float, list[str]]:
        """Time of the tests line and the block's lines."""
        self.wait(r"^── devloop: cycle")
        start = len(self.log) - 1
        t, _ = self.wait(r"^devloop: tests: |^devloop: tests not run")
        self.wait(r"^devloop: time: ")
        return t, self.log[start:]

    def rss(self, pid: int | None = None) -> float:
        text = Path(f"/proc/{pid or self.proc.pid}/status").read_text()
        kb = int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1))  # type: ignore[union-attr]
        return kb / 1024

    def forkserver_pid(self) -> int | None:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmd = (entry / "cmdline").read_bytes()
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid and b"pytest_devloop.watch.forkserver" in cmd:
                    return int(entry.name)
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def writes(project: Path) -> int:
    from pytest_devloop.embedded.cluster import ClusterState, query_status

    state = ClusterState.read(project / ".devloop" / "embedded")
    assert state is not None
    status = query_status(state)
    assert status is not None
    return int(status["writeRequests"])


def cycle_times(block: list[str]) -> dict[str, float]:
    line = block[-1]
    return {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)", line.split(":", 1)[1])}


def scenario(w: Watch, path: Path, old: str, new: str, repeat: int, must: str) -> dict[str, Any]:
    original = path.read_text()
    changed = original.replace(old, new, 1)
    assert changed != original
    times: list[float] = []
    splits: list[dict[str, float]] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        path.write_text(changed)
        t, block = w.block()
        tests = next(ln for ln in block if ln.startswith("devloop: tests"))
        if "failed" in tests or "passed" not in tests or not any(must in ln for ln in block):
            raise SystemExit("unexpected block:\n" + "\n".join(block))
        times.append(t - t0)
        splits.append(cycle_times(block))
        path.write_text(original)
        w.block()
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": len(times),
        "split_median": {k: statistics.median(s[k] for s in splits) for k in splits[0]},
        "last_block": block,
    }


def noop(w: Watch, project: Path, repeat: int) -> dict[str, Any]:
    path = project / VALUES
    times: list[float] = []
    before = writes(project)
    for _ in range(repeat):
        t0 = time.perf_counter()
        path.write_text(path.read_text())
        t, _line = w.wait(r"^devloop: nothing changed")
        times.append(t - t0)
    # A cycle would print its block within the quiet period: make sure none did.
    stray = [ln for ln in w.log[-repeat:] if not ln.startswith("devloop: nothing changed")]
    return {
        "median_s": statistics.median(times),
        "max_s": max(times),
        "runs": len(times),
        "api_writes": writes(project) - before,
        "tests_run": 0 if not stray else -1,
    }


def baseline(project: Path, repeat: int) -> dict[str, Any]:
    times: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "--devloop-ci", "-q"],
            cwd=project,
            env=env(),
            capture_output=True,
            text=True,
            check=False,
        )
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit("baseline failed:\n" + proc.stdout[-3000:])
    return {
        "median_s": statistics.median(times),
        "runs": len(times),
        "last": proc.stdout.strip().splitlines()[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--baseline-repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "watch.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    project = tmp / "example_project"
    shutil.copytree(
        EXAMPLE, project, ignore=shutil.ignore_patterns(".devloop", ".benchmarks", "__pycache__")
    )
    w = Watch(project)
    try:
        w.block()  # the first cycle: sync everything, run every test
        a = scenario(
            w, project / VALUES, "app:\n  replicas: 1", "app:\n  replicas: 3", args.repeat,
            "Deployment/sms-checker-app: spec.replicas",
        )  # fmt: skip
        b = scenario(
            w,
            project / VS,
            "    - name: app\n",
            FAULT,
            args.repeat,
            "VirtualService/sms-checker-app",
        )
        n = noop(w, project, args.repeat)
        rss_watch = w.rss()
        fs = w.forkserver_pid()
        rss_fork = w.rss(fs) if fs else None
    finally:
        w.stop()
    base = baseline(project, args.baseline_repeat)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_devloop",
            "cluster",
            "down",
            "--dir",
            str(project / ".devloop" / "embedded"),
        ],
        capture_output=True,
        check=False,
    )
    shutil.rmtree(tmp, ignore_errors=True)
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "scenario_a": a,
        "scenario_b": b,
        "noop": n,
        "baseline_ci": base,
        "ratio_a": base["median_s"] / a["median_s"],
        "ratio_b": base["median_s"] / b["median_s"],
        "peak_rss_watch_mb": rss_watch,
        "peak_rss_forkserver_mb": rss_fork,
    }
    rows = [
        (
            "A: replicas 1→3 → replica tests green",
            f"{a['median_s']:.3f} s",
            "≤ 1.0 s",
            a["median_s"] <= 1.0,
        ),
        (
            "B: 50% fault delay → routing tests green",
            f"{b['median_s']:.3f} s",
            "≤ 1.0 s",
            b["median_s"] <= 1.0,
        ),
        ("no-op save → nothing changed", f"{n['median_s']:.3f} s", "≤ 0.3 s", n["median_s"] <= 0.3),
        ("no-op save: API writes", str(n["api_writes"]), "0", n["api_writes"] == 0),
        ("baseline: pytest --devloop-ci (clean)", f"{base['median_s']:.2f} s", "", True),
        ("ratio baseline / A", f"{results['ratio_a']:.1f}x", "≥ 20x", results["ratio_a"] >= 20),
        ("ratio baseline / B", f"{results['ratio_b']:.1f}x", "≥ 20x", results["ratio_b"] >= 20),
        ("peak RSS, watch process", f"{rss_watch:.0f} MB", "≤ 250 MB", rss_watch <= 250),
    ]
    if rss_fork is not None:
        rows.append(("peak RSS, fork server (reference)", f"{rss_fork:.0f} MB", "", True))
    print(f"{'scenario':45} {'median':>10} {'target':>10}  ok")
    for name, value, target, ok in rows:
        print(f"{name:45} {value:>10} {target:>10}  {'yes' if ok else 'NO'}")
    for key in ("scenario_a", "scenario_b"):
        split = results[key]["split_median"]  # type: ignore[index]
        print(f"{key} split (medians): " + ", ".join(f"{k} {v:.3f}" for k, v in split.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
