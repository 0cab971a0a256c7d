"""Progress of long work: a live line in a terminal that gives way to the summary, a line
every few seconds elsewhere, nothing for short work off a terminal."""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pytest_devloop.run.progress import Progress

ROOT = Path(__file__).resolve().parents[2]


def test_terminal_line_is_rewritten_then_erased() -> None:
    out: list[str] = []
    p = Progress(out.append, tty=True)
    p("sms-checker: objects applied 0/10")
    p("sms-checker: objects applied 9/10")
    p.done()
    assert out == [
        "\r\x1b[Kdevloop: sms-checker: objects applied 0/10",
        "\r\x1b[Kdevloop: sms-checker: objects applied 9/10",
        "\r\x1b[K",
    ]


def test_off_a_terminal_a_line_every_interval_and_none_for_short_work() -> None:
    now = [0.0]
    out: list[str] = []
    p = Progress(out.append, tty=False, interval=5.0, clock=lambda: now[0])
    p("web: workloads ready 0/2, waiting for Deployment/a, Deployment/b")
    now[0] = 4.9
    p("web: workloads ready 1/2, waiting for Deployment/b")
    assert out == []  # short work says nothing beyond its summary
    now[0] = 5.0
    p("web: workloads ready 1/2, waiting for Deployment/b")
    now[0] = 7.0
    p("web: workloads ready 1/2, waiting for Deployment/b")
    p.done()
    assert out == ["devloop: ... web: workloads ready 1/2, waiting for Deployment/b\n"]


def _project(tmp_path: Path, tool: Callable[[str], str]) -> tuple[Path, dict[str, str]]:
    copy = tmp_path / "example_project"
    shutil.copytree(
        ROOT / "example_project", copy, ignore=shutil.ignore_patterns(".devloop", ".benchmarks")
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "KUBECONFIG")}
    env["DEVLOOP_HELM"] = shutil.which("helm") or tool("helm4")
    env["TERM"] = "xterm"
    return copy, env


def _in_a_pty(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execvpe(argv[0], argv, env)
    buf = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    return buf.decode(errors="replace")


def test_sync_in_a_terminal_shows_a_live_line_that_collapses_into_the_summary(
    tmp_path: Path, tool: Callable[[str], str]
) -> None:
    project, env = _project(tmp_path, tool)
    try:
        text = _in_a_pty([sys.executable, "-m", "pytest_devloop", "sync"], project, env)
        assert "\r\x1b[Kdevloop: sms-checker: objects applied 0/10" in text, repr(text[-2000:])
        assert re.search(
            r"\r\x1b\[Kdevloop: sms-checker: workloads ready [01]/2, waiting for "
            r"Deployment/sms-checker-(app|model)",
            text,
        ), repr(text[-2000:])
        # The live line is erased, and the usual summary line takes its place.
        assert re.search(
            r"\r\x1b\[Kdevloop: sms-checker: 0 updated, 10 created, 0 pruned, 0 unchanged, "
            r"[\d.]+ s\r\n$",
            text,
        ), repr(text[-2000:])
        # Off a terminal (a pipe, CI): a short sync prints its summary lines and nothing else.
        piped = subprocess.run(
            [sys.executable, "-m", "pytest_devloop", "sync"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert piped.returncode == 0
        assert "\x1b[K" not in piped.stderr + piped.stdout
        assert "objects applied" not in piped.stderr + piped.stdout
    finally:
        subprocess.run(
            [sys.executable, "-m", "pytest_devloop", "cluster", "down"],
            cwd=project,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
