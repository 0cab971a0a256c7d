"""Progress of long work (image builds, applies, readiness waits): one live line in a
terminal, a line every few seconds elsewhere.

In a terminal the line is rewritten in place (`building app: step 3/7 COPY . /app`,
`objects applied 40/150`, `workloads ready 3/5, waiting for web, worker`), cut to the
terminal's width (a wrapped line could not be erased), and erased when the work ends, so
the usual one-line summary follows with nothing left over. Work that lasts shows its
seconds so far (`workloads ready 3/5, waiting for web (14 s)`), counted every second even
while the state stays the same, so a long wait visibly goes on. Whole lines printed through
`Progress.line` while the live line shows erase it first (the watch prints its cycle block
that way); the next update draws it again. The live line carries no colour, only the
carriage return and erase-line controls, so `NO_COLOR` and `--color=no` change nothing
here; `TERM=dumb` turns it off (the callers decide `tty`).

When the output is no terminal (CI, a pipe, a file) nothing is printed for work that ends
within `interval` seconds; longer work prints its current state as a line every `interval`
seconds, so a log shows it is not stuck. A ticker thread does both (the seconds, these
lines): the callers tell a state only when it changes (a watch-based readiness wait may say
nothing for minutes). It ends with the work (`done`).

The texts name objects and build steps only, never a value (a Secret's data never reaches
a progress line). Thread-safe: concurrent image builds report from their own threads.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import IO, Any

ERASE = "\r\x1b[K"  # back to the line's start, clear to its end
SHOW_SECONDS_AFTER = 3.0  # a live line shows its work's seconds once it lasts this long
TICK = 1.0  # how often a live line's seconds are counted


def terminal_columns() -> int:
    return shutil.get_terminal_size().columns


class Progress:
    def __init__(
        self,
        write: Callable[[str], None],
        *,
        tty: bool,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        columns: Callable[[], int] = terminal_columns,
    ) -> None:
        self._write = write  # writes text as is (no newline added)
        self.tty = tty
        self.interval = interval
        self.clock = clock
        self.columns = columns
        self._since: float | None = None  # when the work started, or its last line printed
        self._started = 0.0  # when the work started
        self._text: str | None = None  # the current state, while the work lasts
        self._shown = False
        self._lock = threading.RLock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()  # the running ticker's (each ticker has its own)

    def __call__(self, text: str) -> None:
        with self._lock:
            now = self.clock()
            if self._since is None:
                self._since = self._started = now
            self._text = text
            if self.tty:
                self._draw(now)
            elif now - self._since >= self.interval:
                self._print_state(now)
            if self._ticker is None:
                self._stop = threading.Event()
                self._ticker = threading.Thread(
                    target=self._tick, args=(self._stop,), daemon=True, name="devloop-progress"
                )
                self._ticker.start()

    def _print_state(self, now: float) -> None:
        self._write(f"devloop: ... {self._text}\n")
        self._since = now

    def _draw(self, now: float) -> None:
        seconds = now - self._started
        suffix = f" ({seconds:.0f} s)" if seconds >= SHOW_SECONDS_AFTER else ""
        self._write(ERASE + self._fit(f"devloop: {self._text}", len(suffix)) + suffix)
        self._shown = True

    def _tick(self, stop: threading.Event) -> None:
        """Until `done`: in a terminal, the live line with its seconds every TICK; off a
        terminal, the current state every `interval` seconds."""
        wait = TICK if self.tty else self.interval
        while not stop.wait(max(wait, 0.01)):
            with self._lock:
                if stop.is_set() or self._text is None or self._since is None:
                    return
                now = self.clock()
                if self.tty:
                    if now - self._started >= SHOW_SECONDS_AFTER:
                        self._draw(now)
                    continue
                if now - self._since >= self.interval:
                    self._print_state(now)
                wait = self.interval - (now - self._since)

    def _fit(self, text: str, reserve: int = 0) -> str:
        # One column short of the width: a line that fills the last column wraps on some
        # terminals, and the erase would then clear only its second row.
        width = max(self.columns() - 1 - reserve, 10)
        return text if len(text) <= width else text[: width - 3] + "..."

    def done(self) -> None:
        """The work ended: erase the live line (the summary line comes next)."""
        with self._lock:
            if self._shown:
                self._write(ERASE)
            self._shown = False
            self._since = None
            self._text = None
            ticker, self._ticker = self._ticker, None
            self._stop.set()
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join()

    def line(self, text: str) -> None:
        """Print a whole line: the live line, if shown, is erased first (the next update
        draws it again below), so a line never ends up appended to it."""
        with self._lock:
            if self._shown:
                self._write(ERASE)
                self._shown = False
            self._write(text + "\n")


def silent(text: str) -> None:
    """The progress of a caller that shows none."""


def for_stream(stream: IO[str], **kwargs: Any) -> Progress:
    """A Progress on a text stream: a live line when it is a terminal (and `TERM` is not
    `dumb`), periodic lines otherwise."""
    isatty = getattr(stream, "isatty", None)
    tty = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    def columns() -> int:
        # The stream's own terminal: under pytest, fd 1 (what shutil asks) may be a capture
        # file while this stream is the terminal.
        try:
            return os.get_terminal_size(stream.fileno()).columns or terminal_columns()
        except (AttributeError, OSError, ValueError):
            return terminal_columns()

    kwargs.setdefault("columns", columns)
    return Progress(write, tty=tty, **kwargs)
