"""Progress of long work (applies, readiness waits): one live line in a terminal, a line
every few seconds elsewhere.

In a terminal the line is rewritten in place (`objects applied 40/150`, `workloads ready
3/5, waiting for web, worker`) and erased when the work ends, so the usual one-line
summary follows with nothing left over. When the output is no terminal (CI, a pipe, a
file) nothing is printed for work that ends within `interval` seconds; longer work prints
its current state as a line every `interval` seconds, so a log shows it is not stuck.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    def __init__(
        self,
        write: Callable[[str], None],
        *,
        tty: bool,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write  # writes text as is (no newline added)
        self.tty = tty
        self.interval = interval
        self.clock = clock
        self._since: float | None = None
        self._shown = False

    def __call__(self, text: str) -> None:
        now = self.clock()
        if self._since is None:
            self._since = now
        if self.tty:
            self._write(f"\r\x1b[Kdevloop: {text}")
            self._shown = True
        elif now - self._since >= self.interval:
            self._write(f"devloop: ... {text}\n")
            self._since = now

    def done(self) -> None:
        """The work ended: erase the live line (the summary line comes next)."""
        if self._shown:
            self._write("\r\x1b[K")
        self._shown = False
        self._since = None


def silent(text: str) -> None:
    """The progress of a caller that shows none."""
