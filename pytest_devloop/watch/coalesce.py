"""Coalescing of file events into cycles: pure logic over an injected clock.

Owns one decision: when a batch of saved paths is ready to become a cycle. A batch is
ready after `quiet` seconds without a new event, or `max_wait` seconds after its first
event, whichever comes first (Tilt's scheme). When every file of the batch is known to be
complete (its writer closed it, or renamed it into place, or it was deleted), `settle`
seconds of quiet are enough: the editor is done, and the short wait only gathers the other
files of the same "save all". A file modified and not closed yet (or a platform that
reports no close) keeps the full quiet period. Events that arrive while a cycle runs simply
start the next batch: the runner takes it when the cycle ends, so any number of saves
during one cycle queue exactly one more cycle and none is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

Clock = Callable[[], float]


class Coalescer:
    def __init__(
        self,
        quiet: float,
        max_wait: float,
        clock: Clock = time.monotonic,
        *,
        settle: float = 0.01,
    ) -> None:
        if quiet < 0 or max_wait < 0 or settle < 0:
            raise ValueError("quiet period, settle and maximum wait must not be negative")
        self.quiet = quiet
        self.settle = min(settle, quiet)
        self.max_wait = max(max_wait, quiet)
        self.clock = clock
        self._paths: dict[str, None] = {}  # insertion-ordered set
        self._open: set[str] = set()  # written and not closed yet
        self._complete = False  # every event so far said its file is complete
        self._first: float | None = None
        self._last: float | None = None

    @property
    def pending(self) -> bool:
        return self._first is not None

    def add(self, paths: Iterable[str], *, complete: bool = False) -> None:
        """Record events (an empty iterable still counts: e.g. a key press).

        `complete`: the event says the file is finished (closed after writing, renamed into
        place, deleted); else it may still be being written."""
        now = self.clock()
        paths = list(paths)
        for p in paths:
            self._paths[p] = None
            if complete:
                self._open.discard(p)
            else:
                self._open.add(p)
        self._complete = complete and bool(paths) and not self._open
        if self._first is None:
            self._first = now
        self._last = now

    def wait_time(self) -> float | None:
        """Seconds until the batch is ready (0 when ready), None when nothing is pending."""
        if self._first is None or self._last is None:
            return None
        now = self.clock()
        quiet = self.settle if self._complete else self.quiet
        ready_at = min(self._last + quiet, self._first + self.max_wait)
        return max(0.0, ready_at - now)

    def take(self) -> list[str] | None:
        """The batch's paths when it is ready (and start a new batch), else None."""
        wait = self.wait_time()
        if wait is None or wait > 0:
            return None
        paths = list(self._paths)
        self._paths.clear()
        self._open.clear()
        self._complete = False
        self._first = self._last = None
        return paths
