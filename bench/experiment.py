"""The extension proposal's experiment, reproduced: a clean cycle against the devloop cycle.

Run: `python3 bench/experiment.py [--repeat 5] [--project all|example|course]
[--json bench/results/experiment.json]`

Against a copy of `example_project/` (so the repository's own copy is never edited), and
of `bench/projects/course/`, a 150-object chart shaped like a real course project (two
versions of two Deployments, Istio routing, hooks, a kube-prometheus-stack-like subchart);
there scenario B adds the fault block to the VirtualService template:

- Scenario A: `app.replicas` 1 -> 3 in values.yaml; the replica tests must be green.
- Scenario B: a 50% fault delay in the VirtualService (`istio.fault.delay.enabled: true`);
  the routing tests must be green.

For each scenario and repetition, the edit is made on a synced project, then:

- baseline, the clean cycle: `pytest --devloop-ci` (fresh namespace, render, build the
  images, apply everything, wait, run every test, delete the namespace);
- devloop cycle: `pytest --devloop-affected` (sync what changed, run the affected tests),
  with `CI` removed from the environment.

- watch cycle (when `pytest_devloop.watch.loop` exists; `--no-watch` leaves it out): one
  `pytest --devloop-watch` process keeps running, and the time is from saving the edit to
  the cycle's `devloop: time:` line (detection, sync, the affected tests).

Each baseline and devloop cycle is a fresh `python3 -m pytest` process, timed from start
to exit. Times are
medians over `--repeat` repetitions. API writes are the embedded cluster's
`/devloop/status` `writeRequests` before and after the cycle (not measured on a real
cluster). On the embedded cluster by default; when `DEVLOOP_TEST_CONTEXT` names a
kubeconfig context, the same experiment also runs against it (`--devloop-context`).

Images: on the embedded cluster neither cycle builds them (no container runs there; both
print "not built"); on a real cluster both build what changed, the baseline everything.
When the Dockerfiles' base image (`python:3.12-slim`) is not available locally, the copy's
Dockerfiles are rewritten onto the local `devloop-busybox` base that `scripts/tools.sh`
builds (same COPY steps), so a build, when one happens, works offline; `--images none`
leaves the images out of the copy. The mode used is printed and written to the JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
VALUES = Path("charts/sms-checker/values.yaml")
BASE_IMAGE = "python:3.12-slim"
BUSYBOX_IMAGE = "devloop-busybox:latest"

COURSE = ROOT / "bench" / "projects" / "course"
COURSE_VS = Path("charts/course-app/templates/virtualservice.yaml")
FAULT = (
    "    - name: app\n      fault:\n        delay:\n          percentage:\n"
    "            value: 50\n          fixedDelay: 2s\n"
)

SCENARIOS: dict[str, dict[str, Any]] = {
    "A": {
        "title": "A: app replicas 1 -> 3",
        "edit": ("app:\n  replicas: 1\n", "app:\n  replicas: 3\n"),
        "must_pass": [
            "tests/test_replicas.py::test_app_runs_the_requested_replicas",
        ],
    },
    "B": {
        "title": "B: 50% fault delay",
        "edit": (
            "  fault:\n    delay:\n      enabled: false\n",
            "  fault:\n    delay:\n      enabled: true\n",
        ),
        "must_pass": [
            "tests/test_routing.py::test_routes_go_to_the_app_service",
            "tests/test_routing.py::test_route_weights_add_up_to_100",
            "tests/test_routing.py::test_fault_delay_hits_at_most_half_the_requests",
        ],
    },
}
COURSE_SCENARIOS: dict[str, dict[str, Any]] = {
    "A": {
        "title": "A: app replicas 1 -> 3",
        "file": Path("charts/course-app/values.yaml"),
        "edit": ("app:\n  replicas: 1\n", "app:\n  replicas: 3\n"),
        "must_pass": ["tests/test_replicas.py::test_app_runs_the_requested_replicas"],
    },
    "B": {
        "title": "B: 50% fault delay",
        "file": COURSE_VS,
        "edit": ("    - name: app\n", FAULT),
        "must_pass": [
            "tests/test_routing.py::test_app_routes_go_to_the_app_service",
            "tests/test_routing.py::test_route_weights_add_up_to_100",
            "tests/test_routing.py::test_fault_delay_hits_at_most_half_the_requests",
        ],
    },
}
PROJECTS: dict[str, tuple[Path, dict[str, dict[str, Any]]]] = {
    "example": (EXAMPLE, SCENARIOS),
    "course": (COURSE, COURSE_SCENARIOS),
}


@dataclass
class Cycle:
    seconds: float
    writes: int | None
    passed: list[str]
    failed: list[str]
    session_s: float | None = None  # what pytest reports ("in 1.23s"): no interpreter start


@dataclass
class Row:
    cluster: str
    scenario: str
    baseline_s: float
    devloop_s: float
    ratio: float
    baseline_writes: int | None
    devloop_writes: int | None
    baseline_tests: int
    devloop_tests: int
    repeat: int
    baseline_all_s: list[float] = field(default_factory=list)
    devloop_all_s: list[float] = field(default_factory=list)
    baseline_session_s: float | None = None
    devloop_session_s: float | None = None
    watch_s: float | None = None
    watch_writes: int | None = None
    watch_tests: int | None = None
    watch_all_s: list[float] = field(default_factory=list)


def helm_env() -> dict[str, str]:
    """The environment of every cycle: CI removed, and the project's helm when none is on
    PATH (a copy in a temporary folder has no `.tools/` above it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if not env.get("DEVLOOP_HELM") and shutil.which("helm") is None:
        for candidate in (ROOT / ".tools/helm4/helm", ROOT / ".tools/helm3/helm"):
            if candidate.is_file():
                env["DEVLOOP_HELM"] = str(candidate)
                break
    return env


def docker_image_exists(ref: str) -> bool:
    if shutil.which("docker") is None:
        return False
    r = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False)
    return r.returncode == 0


def prepare_copy(dest: Path, images: str, source: Path = EXAMPLE) -> str:
    """Copy a project to `dest`; returns the image mode actually used."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".devloop", ".benchmarks"))
    if not (dest / "images").is_dir():
        return "none (the project has no images)"
    if images == "auto":
        if docker_image_exists(BASE_IMAGE):
            images = "keep"
        elif docker_image_exists(BUSYBOX_IMAGE):
            images = "busybox"
        else:
            images = "none"
    if images == "busybox":
        for name, script in (("app", "app.py"), ("model", "model.py")):
            (dest / "images" / name / "Dockerfile").write_text(
                f"# Rewritten by bench/experiment.py: {BASE_IMAGE} is not available offline.\n"
                f"FROM {BUSYBOX_IMAGE}\nWORKDIR /srv\nCOPY {script} ./\n"
                f'CMD ["/bin/sh", "-c", "sleep 3600"]\n'
            )
    elif images == "none":
        config = dest / "devloop.yaml"
        text = config.read_text()
        text = re.sub(r"\n    set:\n(      .*\n)+", "\n", text.split("\nimages:")[0] + "\n")
        config.write_text(text)
    return images


def writes(project: Path) -> int | None:
    from pytest_devloop.embedded.cluster import ClusterState, query_status

    state = ClusterState.read(project / ".devloop" / "embedded")
    if state is None:
        return None
    status = query_status(state)
    return None if status is None else int(status["writeRequests"])


def pytest_cycle(project: Path, args: list[str], env: dict[str, str], real: bool) -> Cycle:
    before = None if real else writes(project)
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    after = None if real else writes(project)
    out = r.stdout + r.stderr
    passed = re.findall(r"^PASSED (\S+)", out, re.MULTILINE)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    if r.returncode not in (0, 5):
        raise SystemExit(f"experiment: `pytest {' '.join(args)}` failed in {project}:\n{out}")
    session = re.findall(r" in (\d+(?:\.\d+)?)s", out)
    return Cycle(
        seconds,
        None if before is None or after is None else after - before,
        passed,
        failed,
        float(session[-1]) if session else None,
    )


class Watch:
    """A running `pytest --devloop-watch` in the project, its output in a file."""

    def __init__(self, project: Path, target: list[str], env: dict[str, str]) -> None:
        self.log = project.parent / f"{project.name}-watch.log"
        with self.log.open("w") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", *target, "--devloop-watch"],
                cwd=project,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.cycles = 0
        self.wait_cycle(timeout=120)  # cycle 1: first sync and every test

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_cycle(self, timeout: float = 60) -> str:
        """Wait for the next cycle's last line; returns the cycle's block."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            ends = [m.end() for m in re.finditer(r"^devloop: time: .*$", text, re.MULTILINE)]
            if len(ends) > self.cycles:
                start = ends[self.cycles - 1] if self.cycles else 0
                self.cycles += 1
                return text[start : ends[self.cycles - 1]]
            if self.proc.poll() is not None:
                raise SystemExit(f"experiment: watch mode exited:\n{text}")
            time.sleep(0.005)
        raise SystemExit(f"experiment: no watch cycle within {timeout} s:\n{self.text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


def watch_cycles(
    project: Path,
    target: list[str],
    env: dict[str, str],
    real: bool,
    edit: tuple[str, str],
    repeat: int,
    file: Path = VALUES,
) -> list[Cycle]:
    values = project / file
    original = values.read_text()
    old, new = edit
    watch = Watch(project, target, env)
    cycles = []
    try:
        for _ in range(repeat):
            if values.read_text() != original:
                values.write_text(original)
                watch.wait_cycle()  # back to the unedited state
            before = None if real else writes(project)
            t0 = time.perf_counter()
            values.write_text(original.replace(old, new))
            block = watch.wait_cycle()
            seconds = time.perf_counter() - t0
            after = None if real else writes(project)
            tests = re.search(r"^devloop: tests: (.*)$", block, re.MULTILINE)
            summary = tests.group(1) if tests else ""
            if "failed" in summary or "error" in summary or "passed" not in summary:
                raise SystemExit(f"experiment: watch cycle not green:\n{block}")
            passed = re.search(r"(\d+) passed", summary)
            cycles.append(
                Cycle(
                    seconds,
                    None if before is None or after is None else after - before,
                    ["?"] * int(passed.group(1) if passed else 0),
                    [],
                )
            )
        values.write_text(original)
        watch.wait_cycle()
    finally:
        watch.stop()
    return cycles


def run_cluster(
    project: Path,
    label: str,
    context: str | None,
    repeat: int,
    env: dict[str, str],
    with_watch: bool,
    scenarios: dict[str, dict[str, Any]] = SCENARIOS,
) -> list[Row]:
    real = context is not None
    target = ["--devloop-context", context] if context else []
    # Warm-up: the cluster is up, the project synced, every test recorded once.
    pytest_cycle(project, target, env, real)
    rows = []
    for key, scenario in scenarios.items():
        values = project / scenario.get("file", VALUES)
        original = values.read_text()
        old, new = scenario["edit"]
        assert old in original, f"scenario {key}: {old!r} not in {values}"
        base: list[Cycle] = []
        dev: list[Cycle] = []
        for _ in range(repeat):
            if values.read_text() != original:  # synced already before the first repetition
                values.write_text(original)
                pytest_cycle(project, target, env, real)  # back to the unedited, synced state
            values.write_text(original.replace(old, new))
            dev.append(pytest_cycle(project, [*target, "--devloop-affected"], env, real))
            base.append(pytest_cycle(project, [*target, "--devloop-ci"], env, real))
            for cycle, name in ((dev[-1], "devloop"), (base[-1], "baseline")):
                missing = [t for t in scenario["must_pass"] if t not in cycle.passed]
                if missing or cycle.failed:
                    raise SystemExit(
                        f"experiment: scenario {key}, {name} cycle: not green "
                        f"(failed {cycle.failed}, missing {missing})"
                    )
        values.write_text(original)
        pytest_cycle(project, target, env, real)
        watch = (
            watch_cycles(
                project, target, env, real, (old, new), repeat, values.relative_to(project)
            )
            if with_watch
            else []
        )
        b = statistics.median(c.seconds for c in base)
        d = statistics.median(c.seconds for c in dev)
        bw = [c.writes for c in base if c.writes is not None]
        dw = [c.writes for c in dev if c.writes is not None]
        rows.append(
            Row(
                cluster=label,
                scenario=scenario["title"],
                baseline_s=round(b, 3),
                devloop_s=round(d, 3),
                ratio=round(b / d, 1),
                baseline_writes=int(statistics.median(bw)) if bw else None,
                devloop_writes=int(statistics.median(dw)) if dw else None,
                baseline_tests=int(statistics.median(len(c.passed) for c in base)),
                devloop_tests=int(statistics.median(len(c.passed) for c in dev)),
                repeat=repeat,
                baseline_all_s=[round(c.seconds, 3) for c in base],
                devloop_all_s=[round(c.seconds, 3) for c in dev],
                baseline_session_s=median_of([c.session_s for c in base]),
                devloop_session_s=median_of([c.session_s for c in dev]),
                watch_s=median_of([c.seconds for c in watch]),
                watch_writes=median_int([c.writes for c in watch]),
                watch_tests=median_int([len(c.passed) for c in watch]),
                watch_all_s=[round(c.seconds, 3) for c in watch],
            )
        )
    return rows


def median_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def median_int(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return int(statistics.median(known)) if known else None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def table(rows: list[Row]) -> str:
    def w(v: int | None) -> str:
        return "-" if v is None else str(v)

    watch = any(r.watch_s is not None for r in rows)
    head = "| cluster | scenario | baseline (s) | devloop (s) | ratio |"
    rule = "| --- | --- | ---: | ---: | ---: |"
    if watch:
        head += " watch cycle (s) | ratio |"
        rule += " ---: | ---: |"
    who = "baseline / devloop / watch" if watch else "baseline / devloop"
    head += f" API writes ({who}) | tests run ({who}) |"
    rule += " ---: | ---: |"
    lines = [head, rule]
    for r in rows:
        line = (
            f"| {r.cluster} | {r.scenario} | {r.baseline_s:.2f} | {r.devloop_s:.2f} | "
            f"{r.ratio:.1f}x |"
        )
        if watch:
            if r.watch_s:
                line += f" {r.watch_s:.2f} | {r.baseline_s / r.watch_s:.1f}x |"
            else:
                line += " - | - |"
        writes = [w(r.baseline_writes), w(r.devloop_writes)]
        tests = [str(r.baseline_tests), str(r.devloop_tests)]
        if watch:
            writes.append(w(r.watch_writes))
            tests.append(w(r.watch_tests))
        line += f" {' / '.join(writes)} | {' / '.join(tests)} |"
        lines.append(line)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/experiment.json")
    parser.add_argument("--images", choices=("auto", "keep", "busybox", "none"), default="auto")
    parser.add_argument(
        "--no-embedded", action="store_true", help="only the DEVLOOP_TEST_CONTEXT cluster"
    )
    parser.add_argument("--no-watch", action="store_true", help="leave out the watch cycle")
    parser.add_argument("--project", choices=(*PROJECTS, "all"), default="all")
    parser.add_argument(
        "--helm-backend",
        choices=("auto", "cli", "inprocess"),
        default="inprocess" if importlib.util.find_spec("helm_python") else "auto",
    )
    args = parser.parse_args()
    env = helm_env()
    env["DEVLOOP_HELM_BACKEND"] = args.helm_backend
    projects = list(PROJECTS) if args.project == "all" else [args.project]
    with_watch = (
        not args.no_watch and importlib.util.find_spec("pytest_devloop.watch.loop") is not None
    )
    context = os.environ.get("DEVLOOP_TEST_CONTEXT") or None
    rows: list[Row] = []
    modes: dict[str, str] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="devloop-experiment-") as tmp:
        clusters: list[tuple[str, str | None]] = []
        if not args.no_embedded:
            clusters.append(("embedded", None))
        if context:
            clusters.append((f"context {context}", context))
        for name in projects:
            source, scenarios = PROJECTS[name]
            for cluster_label, ctx in clusters:
                label = cluster_label if name == "example" else f"{cluster_label}, {name} chart"
                project = Path(tmp) / name / cluster_label.replace(" ", "-")
                project.parent.mkdir(parents=True, exist_ok=True)
                modes[label] = prepare_copy(project, args.images, source)
                try:
                    rows += run_cluster(
                        project, label, ctx, args.repeat, env, with_watch, scenarios
                    )
                finally:
                    if ctx is None:
                        from pytest_devloop.embedded.cluster import down

                        down(project / ".devloop" / "embedded")
    result = {
        "machine": machine(),
        "host": platform.node(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "repeat": args.repeat,
        "helm_backend": args.helm_backend,
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "images": modes,
        "statistic": "median",
        "rows": [asdict(r) for r in rows],
    }
    print(
        f"\nThe proposal's experiment: median of {args.repeat}, {result['machine']}, "
        f"{result['date']}, load {result['load']}, helm {args.helm_backend}; images: "
        f"{', '.join(f'{k} {v}' for k, v in modes.items())}\n"
    )
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {args.json}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from experiment_plot import plot

    drawn = plot(result, args.json.with_suffix(""))
    print(drawn if isinstance(drawn, str) else "picture: " + ", ".join(map(str, drawn)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
