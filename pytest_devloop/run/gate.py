"""The gate between watch mode and the test process it starts before the sync has ended.

A save's cycle starts its test process as the sync starts, so pytest's set-up overlaps
the render and the plan. The process stops twice at a named pipe, the gate:

- at `pytest_sessionstart`, until the watch says `summary`: the sync's result is known
  (after the last artifact's writes, before its readiness wait) and written where the
  process reads it, so the session's summary and the collection of the affected test
  files overlap the rest of the sync; until then the process runs at the lowest CPU
  priority (`yield_cpu`);
- at `pytest_runtestloop`, before the first test, until the watch says `go`: the sync
  ended with the result the process read.

Anything else (`abort`, or the watch gone) ends the process at once, without a result,
a record or a line; the watch then runs the cycle's tests in a process of their own.

The watch holds the pipe open for reading and writing from its creation until the
process has ended, so neither end blocks on opening it, and a word written before the
process reads it waits in the pipe.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from pathlib import Path
from typing import IO

ENV = "DEVLOOP_GATE"
SUMMARY = b"summary\n"
GO = b"go\n"
ABORT = b"abort\n"


class Gate:
    """The watch's end: a fresh named pipe in `folder`, open until `close`. Each gate has
    a name of its own: a process stopped late never opens the next cycle's gate."""

    _made = itertools.count(1)

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"gate-{os.getpid()}-{next(self._made)}"
        self.path.unlink(missing_ok=True)
        os.mkfifo(self.path, 0o600)
        self._fd: int | None = os.open(self.path, os.O_RDWR)

    @property
    def env(self) -> dict[str, str]:
        return {ENV: str(self.path)}

    def _say(self, word: bytes) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, word)

    def summary(self) -> None:
        self._say(SUMMARY)

    def go(self) -> None:
        self._say(GO)

    def abort(self) -> None:
        self._say(ABORT)

    def close(self) -> None:
        """The pipe and its name gone. The name first: a process that opens it later
        finds nothing (and stops) instead of waiting for a writer that never comes; one
        that has it open still reads what was said, then the end of the pipe."""
        self.path.unlink(missing_ok=True)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


_base_nice: int | None = None  # the priority to return to (see `yield_cpu`)
CAP_SYS_NICE = 23


def _may_raise_priority(base: int) -> bool:
    """Whether this process may lower its nice value back to `base` once raised: with
    CAP_SYS_NICE (root in a container may lack it), or within RLIMIT_NICE (which lets a
    process go down to 20 - limit)."""
    import resource

    try:
        status = Path("/proc/self/status").read_text()
        caps = next(ln for ln in status.splitlines() if ln.startswith("CapEff:"))
        if int(caps.split()[1], 16) >> CAP_SYS_NICE & 1:
            return True
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or 20 - soft <= base


def yield_cpu(by: int = 19) -> None:
    """Until the summary arrives, this process sets up ahead of the sync it overlaps on
    the same cores: it gives way to the sync (the highest nice value) and returns to its
    own priority at `summary`, before it starts any thread or process of its own (xdist's
    workers, the warm-up of the cluster view). Only where it may return."""
    global _base_nice
    if _base_nice is not None or ENV not in os.environ:
        return
    try:
        base = os.getpriority(os.PRIO_PROCESS, 0)
        if not _may_raise_priority(base):
            return
        os.setpriority(os.PRIO_PROCESS, 0, min(19, base + by))
        _base_nice = base
    except (OSError, ValueError, AttributeError, ImportError):
        return


def _own_priority() -> None:
    """Back to the priority the process had, for each of its threads (Linux keeps a nice
    value per thread)."""
    global _base_nice
    base, _base_nice = _base_nice, None
    if base is None:
        return
    try:
        threads = [int(t.name) for t in Path("/proc/self/task").iterdir()]
    except OSError:
        threads = [0]
    for tid in threads:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, base)


class Waiting:
    """The test process's end, taken out of the environment when pytest configures (the
    processes it starts, xdist's workers among them, do not stop at it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pipe: IO[bytes] | None = None

    @classmethod
    def take(cls) -> Waiting | None:
        yield_cpu()
        path = os.environ.pop(ENV, None)
        return cls(path) if path else None

    def until(self, word: bytes) -> None:
        """Return when the watch says `word`; end the process on anything else, silently
        (its output is not read)."""
        try:
            if self._pipe is None:
                # Opened without waiting for a writer: a gate the watch closed meanwhile
                # reads as its end (and the process stops) instead of blocking forever.
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                os.set_blocking(fd, True)
                self._pipe = os.fdopen(fd, "rb", buffering=0)
            said = self._pipe.readline()  # unbuffered: never reads past the line
        except OSError:
            said = b""
        if said == word:
            if word == SUMMARY:
                _own_priority()
            return
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(0)
