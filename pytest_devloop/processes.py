"""Knowing a process again before signalling it: PID plus start time plus command line.

Owns the rule that devloop never signals a PID it only remembers. A PID written to a file
(the embedded cluster's `cluster.json`) may since have been reused by any process of the
user; what identifies *our* process is its PID together with its start time (which no
later process with that PID shares) and its command line. `stop()` checks both before
each signal and returns only once the process has exited.

A process that is our own child (`subprocess.Popen`) needs none of this as long as it
has not been reaped: its PID cannot be reused before `wait()`, which is why
`Popen.send_signal` is safe and the places that stop children do so before waiting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tenacity


@dataclass(frozen=True)
class ProcessId:
    """A process as it was when recorded: PID and its start time."""

    pid: int
    start: str  # Linux: start time in clock ticks since boot; elsewhere `ps -o lstart`


def _proc_stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may itself hold spaces and parentheses.
    return stat.rsplit(")", 1)[-1].split()


def _ps(pid: int, field: str) -> str | None:
    try:
        out = subprocess.run(
            ["ps", "-o", f"{field}=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    return text or None


def alive(pid: int) -> bool:
    """Whether the PID names a process that has not exited (a zombie has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, someone else's
    fields = _proc_stat(pid)
    if fields is not None:
        return fields[:1] != ["Z"]
    if sys.platform.startswith("linux"):
        return False  # gone between the two looks
    state = _ps(pid, "stat")
    return state is not None and not state.startswith("Z")


def identify(pid: int) -> ProcessId | None:
    """The process now behind `pid` (None when there is none, or it has exited)."""
    if pid <= 0 or not alive(pid):
        return None
    fields = _proc_stat(pid)
    if fields is not None and len(fields) > 19:
        return ProcessId(pid, fields[19])  # field 22 of /proc/<pid>/stat: starttime
    start = _ps(pid, "lstart")
    return ProcessId(pid, start) if start else None


def command_line(pid: int) -> list[str]:
    """The process's arguments ([] when unknown)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    except OSError:
        pass
    text = _ps(pid, "command")
    return text.split() if text else []


def is_same(recorded: ProcessId) -> bool:
    """Whether `recorded` still runs (same PID, same start time)."""
    return recorded.start != "" and identify(recorded.pid) == recorded


def stop(
    recorded: ProcessId,
    *,
    timeout: float = 5.0,
    kill_timeout: float = 5.0,
    still_ours: Callable[[], bool] | None = None,
) -> bool:
    """SIGTERM, then SIGKILL after `timeout`, and return once the process has exited.

    Each signal goes only to the recorded process (checked again right before it, as is
    `still_ours` when given). Returns False when it was not (or no longer) that process,
    so nothing was signalled; raises TimeoutError when even SIGKILL did not end it.
    """
    if not is_same(recorded) or (still_ours is not None and not still_ours()):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, kill_timeout)):
        if not is_same(recorded):
            return True
        try:
            os.kill(recorded.pid, sig)
        except ProcessLookupError:
            return True
        exited = tenacity.Retrying(
            stop=tenacity.stop_after_delay(wait),
            wait=tenacity.wait_fixed(0.02),
            retry=tenacity.retry_if_result(lambda same: same),
            retry_error_callback=lambda state: True,
        )
        if not exited(is_same, recorded):
            return True
    if is_same(recorded):
        raise TimeoutError(f"process {recorded.pid} did not exit after SIGKILL")
    return True
