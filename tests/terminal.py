"""A terminal for tests: run a command in a pseudo-terminal and read what it printed, and
the screen a terminal would show after that output (for live lines that must leave nothing
behind)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import time
from pathlib import Path

ROWS, COLUMNS = 40, 160


def in_a_pty(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    until: str | None = None,
    timeout: float = 120.0,
) -> str:
    """Run `argv` with a pty of ROWS x COLUMNS as its terminal, until it exits or, with
    `until`, until its output matches that regex (then Ctrl-C, then a kill); the raw text."""
    import fcntl
    import pty
    import struct
    import termios

    # The pty's size is the terminal's (xdist's workers set COLUMNS=80, which would win).
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    pid, fd = pty.fork()
    if pid == 0:
        # A fresh pty has no size: the program would assume 80 columns.
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        os.chdir(cwd)
        os.execvpe(argv[0], argv, env)
    buf = b""
    deadline = time.monotonic() + timeout
    exited = False
    try:
        while time.monotonic() < deadline:
            if until is not None and re.search(until, buf.decode(errors="replace")):
                break
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    exited = True
                    break
                buf += chunk
    finally:
        if not exited:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGINT)
                time.sleep(0.5)
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return buf.decode(errors="replace")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows after `raw`: carriage return, erase-to-end-of-line and
    newline are applied, colour codes dropped. A live line left behind, or a line written
    after one, shows here as the garbage it would be."""
    raw = re.sub(r"\x1b\[[0-9;]*m", "", raw).replace("\r\n", "\n")
    lines: list[str] = [""]
    col = 0
    for token in re.split(r"(\r|\n|\x1b\[K)", raw):
        if token == "\r":
            col = 0
        elif token == "\n":
            lines.append("")
            col = 0
        elif token == "\x1b[K":
            lines[-1] = lines[-1][:col]
        elif token:
            cur = lines[-1]
            lines[-1] = cur[:col] + token + cur[col + len(token) :]
            col += len(token)
    return lines
