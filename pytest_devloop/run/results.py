"""The outcomes of one pytest process as JSON, for the watch (`--devloop-results-file`).

The watch starts a test process per cycle and needs, per test id, the outcome, the
duration and why devloop selected it, plus the counts of pytest's summary line. Reading
them from pytest's terminal text would depend on `-r`, `-q`, `-v` and plugins that change
that text; this plugin writes them from the test reports themselves.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# pytest's order in its summary line.
ORDER = ("failed", "passed", "skipped", "deselected", "xfailed", "xpassed", "warnings", "errors")


class ResultsWriter:
    def __init__(
        self, config: pytest.Config, path: Path, run: Callable[[], Any] = lambda: None
    ) -> None:
        self.config = config
        self.path = path
        self._run = run  # the session's TestRun, when there is one (its selection reasons)
        self.tests: dict[str, dict[str, Any]] = {}
        self.deselected = 0
        self.warnings = 0
        self.collect_errors: list[str] = []
        self.started = time.time()

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    def pytest_warning_recorded(self) -> None:
        self.warnings += 1

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.tests.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
        entry["duration"] = round(entry["duration"] + report.duration, 6)
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            if report.failed:
                entry["outcome"] = "failed"
            elif report.skipped:
                entry["outcome"] = "xfailed" if xfail else "skipped"
            elif xfail:
                entry["outcome"] = "xpassed"
        elif report.failed:
            entry["outcome"] = "error"
        elif report.skipped and report.when == "setup":
            entry["outcome"] = "xfailed" if xfail else "skipped"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        run = self._run()
        reasons = {d.nodeid: d.reason for d in getattr(run, "decisions", None) or []}
        for nodeid, entry in self.tests.items():
            if nodeid in reasons:
                entry["reason"] = reasons[nodeid]
        counts = dict.fromkeys(ORDER, 0)
        for entry in self.tests.values():
            key = {"error": "errors"}.get(entry["outcome"], entry["outcome"])
            counts[key] += 1
        counts["errors"] += len(self.collect_errors)
        # Tests of files devloop left uncollected (all unaffected) are deselected too.
        counts["deselected"] = self.deselected + int(getattr(run, "not_collected", 0))
        counts["warnings"] = self.warnings
        data = {
            "exitstatus": int(session.exitstatus),
            "tests": self.tests,
            "collect_errors": self.collect_errors,
            "counts": counts,
            "seconds": round(time.time() - self.started, 3),
            # The selection line and --devloop-explain's lines, for the watch's block.
            "notes": [
                line
                for line in [
                    getattr(run, "selection_note", None),
                    *getattr(run, "explain_lines", []),
                ]
                if line
            ],
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)


def summary_line(data: dict[str, Any]) -> str:
    """pytest's summary line from the counts: `1 failed, 2 passed, 9 deselected in 0.41s`."""
    counts = data.get("counts") or {}
    parts = []
    for key in ORDER:
        n = int(counts.get(key, 0))
        if n:
            word = key
            if key in ("warnings", "errors") and n == 1:
                word = key[:-1]
            parts.append(f"{n} {word}")
    if not [k for k in ORDER if k not in ("deselected", "warnings") and counts.get(k)]:
        parts.insert(0, "no tests ran")
    return f"{', '.join(parts)} in {float(data.get('seconds', 0.0)):.2f}s"


def failed_ids(data: dict[str, Any]) -> list[str]:
    """The tests to re-run for the `f` key: failed or errored, whatever `-r` printed."""
    tests = data.get("tests") or {}
    return [nodeid for nodeid, t in tests.items() if t.get("outcome") in ("failed", "error")]
