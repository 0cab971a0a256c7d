"""Coalescing of file events into cycles: pure logic over an injected clock.

Owns one decision: when a batch of saved paths is ready to become a cycle. A batch is
ready after `quiet` seconds without a new event, or `max_wait` seconds after its first
event, whichever comes first (Tilt's scheme). Events that arrive while a cycle runs simply
start the next batch: the runner takes it when the cycle ends, so any number of saves
during one cycle queue exactly one more cycle and none is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

Clock = Callable[[], float]


class Coalescer:
    def __init__(self, quiet: float, max_wait: float, clock: Clock = time.monotonic) -> None:
        if quiet < 0 or max_wait < 0:
            raise ValueError("quiet period and maximum wait must not be negative")
        self.quiet = quiet
        self.max_wait = max(max_wait, quiet)
        self.clock = clock
        self._paths: dict[str, None] = {}  # insertion-ordered set
        self._first: float | None = None
        self._last: float | None = None

    @property
    def pending(self) -> bool:
        return self._first is not None

    def add(self, paths: Iterable[str]) -> None:
        """Record events (an empty iterable still counts: e.g. a key press)."""
        now = self.clock()
        for p in paths:
            self._paths[p] = None
        if self._first is None:
            self._first = now
        self._last = now

    def wait_time(self) -> float | None:
        """Seconds until the batch is ready (0 when ready), None when nothing is pending."""
        if self._first is None or self._last is None:
            return None
        now = self.clock()
        ready_at = min(self._last + self.quiet, self._first + self.max_wait)
        return max(0.0, ready_at - now)

    def take(self) -> list[str] | None:
        """The batch's paths when it is ready (and start a new batch), else None."""
        wait = self.wait_time()
        if wait is None or wait > 0:
            return None
        paths = list(self._paths)
        self._paths.clear()
        self._first = self._last = None
        return paths
