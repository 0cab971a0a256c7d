"""Watch mode's live progress line: in a terminal a cycle's slow readiness wait shows
`workloads ready n/m` in place, erased before the block's next line (nothing left on the
screen); off a terminal, a line every few seconds instead."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.terminal import in_a_pty, screen
from tests.watch.test_watch import WatchProcess, project  # noqa: F401  (the fixture)

VALUES = Path("charts/sms-checker/values.yaml")


def slow_app(root: Path, seconds: float) -> None:
    """The app's pods become Ready `seconds` after they are bound (the embedded kubelet)."""
    values = root / VALUES
    text = values.read_text()
    assert "  podAnnotations: {}\n" in text
    values.write_text(
        text.replace(
            "  podAnnotations: {}\n",
            f'  podAnnotations: {{devloop.dev/ready-delay: "{seconds}"}}\n',
            1,  # the first is the app's
        )
    )


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_a_slow_readiness_wait_shows_live_then_gives_way_to_the_block(
    project: Path,  # noqa: F811
    no_color: bool,
    tool: Callable[[str], str],
) -> None:
    slow_app(project, 2)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR", "PYTEST_ADDOPTS")}
    env["DEVLOOP_HELM"] = tool("helm4")
    env["TERM"] = "xterm"
    if no_color:
        env["NO_COLOR"] = "1"
    text = in_a_pty(
        [sys.executable, "-m", "pytest", "--devloop-watch"],
        project,
        env,
        until=r"devloop: time: [^\n]* s\r?\n",
        timeout=90,
    )
    live = re.findall(
        r"\r\x1b\[Kdevloop: sms-checker: workloads ready ([01])/2, waiting for ([^\r\n\x1b]*)",
        text,
    )
    assert live, repr(text[-3000:])
    assert any("Deployment/sms-checker-app" in waiting for _, waiting in live), live
    shown = screen(text)
    # Erased before the block's next line: no live text is left, and the sync's summary
    # line starts at the left edge, whole.
    assert not [ln for ln in shown if "workloads ready" in ln or "objects applied" in ln], shown
    summary = [ln for ln in shown if ln.startswith("devloop: sms-checker: ")]
    assert summary and re.match(
        r"devloop: sms-checker: 0 updated, 10 created, 0 pruned, 0 unchanged, [\d.]+ s$",
        summary[0],
    ), shown
    header = shown.index(next(ln for ln in shown if ln.startswith("── devloop: cycle 1")))
    assert shown.index(summary[0]) > header, "the live line belongs to the cycle's block"
    if no_color:
        # The live line has no colour of its own; with NO_COLOR the output has none at all.
        assert not re.search(r"\x1b\[[0-9;]*m", text), repr(text[-3000:])


def test_off_a_terminal_a_slow_readiness_wait_prints_a_line_every_few_seconds(
    project: Path,  # noqa: F811
    tool: Callable[[str], str],
) -> None:
    tool("helm4")  # WatchProcess uses it
    slow_app(project, 9)  # ready 9 s after binding: the wait lasts past 5 s even under load
    w = WatchProcess(project, env={"TERM": "xterm"})
    try:
        w.wait_line(r"^── devloop: cycle 1", timeout=60)
        periodic = w.wait_line(r"^devloop: \.\.\. sms-checker: workloads ready", timeout=60)
        assert re.match(
            r"devloop: \.\.\. sms-checker: workloads ready [01]/2, waiting for "
            r"[^\n]*Deployment/sms-checker-app",
            periodic,
        ), periodic
        w.wait_line(r"^devloop: sms-checker: 0 updated, 10 created", timeout=60)
        w.wait_line(r"^devloop: time: ", timeout=60)
        assert not [ln for ln in w.seen if "\x1b" in ln or "\r" in ln], w.seen
    finally:
        w.stop()
