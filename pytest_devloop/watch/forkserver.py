"""A warm test-process starter for watch mode: import once, fork per cycle.

Run as `python -m pytest_devloop.watch.forkserver`. It imports pytest, the `kubernetes` client,
yaml and the plugin (the ~0.5 s a fresh `python -m pytest` pays before collecting), then
reads one JSON request per line on stdin: `{"args": [...], "cwd": ..., "output": PATH}`
(and `"env": {...}`, variables for the child). For each it forks; the child redirects
stdout/stderr to `output` and runs `pytest.main(args)`, so test modules and conftests are
imported fresh every cycle (they were never imported in this process). It answers
`{"pid": N}` when the child starts and `{"rc": N}` when its session is over, one JSON line
each on stdout. The child says its exit code on a pipe once its output is flushed, so the
answer does not wait for the kernel to tear down a forked process (~8 ms); a child that
dies without saying it is answered with its exit status.

The next cycle's child is forked ahead of its request (a *standby*), right after the
previous one ends: it builds pytest's config object up to argument parsing (the plugin
manager and the built-in plugins, nothing of the project) and waits on a pipe, so a
cycle pays neither the fork nor that set-up. A request naming plugins (`-p ...`) gets a
config built afresh, as a plain `pytest.main` builds it.

Debug aid: with `DEVLOOP_PROFILE_CHILD=PATH` in its environment, each child writes its
cProfile to `PATH.<pid>`.

It stops, and kills a running child, when stdin closes (its parent died) or on SIGTERM.
Everything it starts shares its process group, so the parent can kill the whole group.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import sys
from pathlib import Path
from typing import Any, cast


def _warm() -> None:
    # One throwaway session in an empty folder: pytest loads every installed plugin and
    # rewrites its asserts, and plugins import what they import lazily (hypothesis's
    # terminal summary alone costs ~1.5 s), once here instead of in every cycle.
    import tempfile

    import kubernetes.client
    import kubernetes.dynamic
    import kubernetes.watch  # noqa: F401
    import pytest
    import yaml  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="devloop-warm-") as tmp:
        Path(tmp, "test_devloop_warm.py").write_text("def test_warm():\n    assert True\n")
        saved = os.dup(1), os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        cwd = Path.cwd()
        try:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.chdir(tmp)
            pytest.main([tmp, "-q", "-p", "no:cacheprovider"])
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.chdir(cwd)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, devnull):
                os.close(fd)
        sys.modules.pop("test_devloop_warm", None)
    # After the session: the package was imported (and marked) by pytest's own loader,
    # so the test process does not warn that it was imported before rewriting. Then every
    # module a test process may use (about 0.2 s of imports a cycle would pay otherwise);
    # not the embedded server, which runs in its own process.
    for name in _modules_to_warm():
        try:
            importlib.import_module(name)
        except Exception:
            pass  # imported in the child, where its error is reported, if it is used
    for name in ("filelock", "concurrent.futures.thread", "kubernetes.config"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _cache_distributions()
    # Everything imported so far lives as long as the server: out of the collector's
    # sight, so a child's `gc.collect()` (pytest runs five at exit) scans only its own
    # objects, and no collection touches (and copies) the shared pages.
    gc.freeze()


def _cache_distributions() -> None:
    """Installed distributions read once for every test process: pytest reads every
    distribution's metadata, entry points and file list in each session (plugin loading,
    marking plugins for assertion rewriting, the header), ~50 ms a cycle on a loaded
    machine. A package installed while watching is seen after a restart of the watch."""
    import importlib.metadata as md
    from functools import cached_property

    class Cached(md.Distribution):
        def __init__(self, inner: md.Distribution) -> None:
            self._inner = inner
            self._texts: dict[str, str | None] = {}

        def read_text(self, filename: str) -> str | None:
            if filename not in self._texts:
                self._texts[filename] = self._inner.read_text(filename)
            return self._texts[filename]

        def locate_file(self, path: Any) -> Any:
            return self._inner.locate_file(path)

        @cached_property
        def metadata(self) -> Any:
            return self._inner.metadata

        @cached_property
        def entry_points(self) -> Any:
            return self._inner.entry_points

        @cached_property
        def files(self) -> Any:
            return self._inner.files

    try:
        cached = [Cached(d) for d in md.distributions()]
        for d in cached:
            _ = d.metadata, d.entry_points, d.files
    except Exception:
        return  # a broken installation: the children read it as usual
    everything = md.distributions

    def distributions(**kwargs: Any) -> Any:
        return iter(cached) if not kwargs else everything(**kwargs)

    md.distributions = distributions


def _modules_to_warm() -> list[str]:
    import pkgutil

    import pytest_devloop

    names = []
    for info in pkgutil.walk_packages(pytest_devloop.__path__, "pytest_devloop."):
        if info.name.startswith(("pytest_devloop.embedded", "pytest_devloop.__main__")):
            continue
        if info.name.endswith(".forkserver"):
            continue
        names.append(info.name)
    return names


def _standby(requests: int, done: int) -> None:
    """In a child forked ahead of its cycle: prepare what needs no request, wait for one
    on the `requests` pipe, then run it as `_child` (which says its exit code on `done`);
    never returns. EOF without a request (the server stopped or replaced it) ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # the server's request and reply pipes are not the child's
    os.dup2(devnull, 1)
    os.close(devnull)
    prepared = _prepare_config()
    chunks = []
    while True:
        chunk = os.read(requests, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(requests)
    if not chunks:
        os._exit(0)
    _child(json.loads(b"".join(chunks)), done, prepared)


def _prepare_config() -> Any:
    """pytest's config object before the arguments are parsed (its plugin manager with
    the built-in plugins registered, ~10 ms): it depends on nothing of the request but
    `-p` arguments, which `_child` checks. None when pytest's internals differ."""
    try:
        import _pytest.config as pytest_config

        return pytest_config.get_config([])
    except Exception:
        return None


def _use_prepared(prepared: Any, args: list[str]) -> None:
    """Make the next `pytest.main` start from `prepared`, as pytest's own `get_config`
    would have built it for `args` in the current folder. Arguments naming plugins
    (`-p name`, `-p no:name`) act before the built-in plugins load: a fresh config then."""
    import _pytest.config as pytest_config

    if prepared is None or any(a.startswith("-p") for a in args):
        return
    real: Any = pytest_config.get_config  # its signature differs across pytest versions

    def get_config(args: Any = None, plugins: Any = None, **kwargs: Any) -> Any:
        # pytest 9.2 passes `prog` (the program name of its usage line); earlier ones not.
        pytest_config.get_config = real
        prog = kwargs.get("prog")
        if plugins or set(kwargs) - {"prog"}:
            return real(args, plugins, **kwargs)
        prepared.invocation_params = pytest_config.Config.InvocationParams(
            args=tuple(args or ()), plugins=None, dir=Path.cwd()
        )
        parser = getattr(prepared, "_parser", None)
        if prog is not None and parser is not None and hasattr(type(parser), "prog"):
            parser.prog = prog
        return prepared

    pytest_config.get_config = cast(Any, get_config)


def _child(request: dict[str, Any], done: int, prepared: Any = None) -> None:
    """In the forked child: run pytest with output to a file, say the exit code on the
    `done` pipe once the output is flushed, and exit; never returns."""
    rc = 70
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        out = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.chdir(request["cwd"])
        os.environ.update(request.get("env") or {})
        from pytest_devloop.run import gate

        gate.yield_cpu()  # started ahead of its sync: it gives way to it until `go`
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        import pytest

        from pytest_devloop.selection import prefilter

        prefilter.WARM_MODULES = frozenset(sys.modules)
        # Every module already imported here was imported by the server's warm-up, not by
        # the user (whose modules the child imports afresh): pytest's "cannot be rewritten"
        # warnings about them are the server's doing, so the child does not report them.
        quiet = "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning"
        args = ["-W", quiet, *request["args"]]
        _use_prepared(prepared, args)
        profile = os.environ.get("DEVLOOP_PROFILE_CHILD")
        rc = _profiled(profile, args) if profile else int(pytest.main(args))
    except BaseException as e:
        try:
            sys.stderr.write(f"devloop: the test process failed: {e!r}\n")
        except Exception:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            os.write(done, str(rc).encode())
        finally:
            os._exit(rc)


def _profiled(path: str, args: list[str]) -> int:
    """Debug aid: `DEVLOOP_PROFILE_CHILD=PATH` in the watch's environment writes each test
    process's cProfile to `PATH.<pid>` (read it with `python -m pstats`)."""
    import cProfile

    import pytest

    profiler = cProfile.Profile()
    try:
        return int(profiler.runcall(pytest.main, args))
    finally:
        profiler.dump_stats(f"{path}.{os.getpid()}")


class Standby:
    """A child forked ahead of its request: its pid, the pipe its request goes down and
    the pipe its exit code comes back on."""

    def __init__(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        read, self.write = os.pipe()
        self.done, done_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.write)
            os.close(self.done)
            try:
                _standby(read, done_write)
            finally:
                os._exit(70)
        os.close(read)
        os.close(done_write)

    def discard(self) -> None:
        """It reads EOF instead of a request and exits."""
        os.close(self.write)
        os.close(self.done)
        with contextlib.suppress(OSError):
            os.waitpid(self.pid, 0)


def _start(standby: Standby | None, request: dict[str, Any]) -> tuple[int, int]:
    """The child running `request` (its pid and the pipe of its exit code): the standby
    child when it takes it, else a new fork."""
    if standby is not None:
        try:
            os.write(standby.write, json.dumps(request).encode())
            os.close(standby.write)
            return standby.pid, standby.done
        except OSError:
            # It died (killed from outside): reap it, fork as before.
            os.close(standby.write)
            os.close(standby.done)
            with contextlib.suppress(OSError):
                os.kill(standby.pid, signal.SIGKILL)
                os.waitpid(standby.pid, 0)
    sys.stdout.flush()
    sys.stderr.flush()
    done, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(done)
        _child(request, done_write)
    os.close(done_write)
    return pid, done


def _finished(pid: int, done: int) -> int:
    """The child's exit code, as soon as it says it (its output is complete then); the
    exit status of a child that died without saying it."""
    said = b""
    poller = select.poll()
    poller.register(done, select.POLLIN | select.POLLHUP)
    with contextlib.suppress(OSError):
        while True:
            if poller.poll(100):
                # One read: the child writes its code in one write (atomic in a pipe).
                said = os.read(done, 16)
                break
            # A process the child forked may hold the pipe open after the child died
            # without a word: its exit is looked at too.
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
    os.close(done)
    if said.strip().lstrip(b"-").isdigit():
        return int(said)
    # Waited for without reaping first: until `waitpid` the exited child keeps its pid,
    # so the SIGTERM handler can never kill a process that reused it.
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    _, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status)


def main() -> int:
    _warm()
    child: list[int] = []
    standby: list[Standby] = []

    def stop(signum: int, frame: Any) -> None:
        for pid in [*child, *(s.pid for s in standby)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    reply = sys.stdout
    # The next cycle's child is forked (and its pytest config built) while the watch
    # syncs, not after the sync: ~20 ms less on every cycle's test step.
    standby[:] = [Standby()]
    reply.write(json.dumps({"ready": os.getpid()}) + "\n")
    reply.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        ahead = standby[0] if standby else None
        standby[:] = []
        pid, done = _start(ahead, request)
        child[:] = [pid]
        reply.write(json.dumps({"pid": pid}) + "\n")
        reply.flush()
        rc = _finished(pid, done)
        reply.write(json.dumps({"rc": rc}) + "\n")
        reply.flush()
        # Reaped after the answer: the child is exiting (or has, when it died).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        child[:] = []
        standby[:] = [Standby()]
    for s in standby:
        s.discard()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
