"""Watch mode (`pytest --devloop-watch`): from a saved file to a green or red test.

Owns the loop of one watch process and its three units (STYLE.md §5): the file watcher
(watchdog threads put events on a queue), the coalescer (`coalesce.py`, pure), and the
cycle runner on the main thread. A cycle syncs through one warm `Syncer` (only changed
artifacts re-render), hands its result to a test process started by the fork server
(`forkserver.py`; a fresh `python -m pytest` when forking is unavailable) with
`--devloop-affected --devloop-summary-file`, and prints one block: what changed, what was
synced, which tests ran and why, their results and the time split. It also owns the keys
(Enter, a, f, q), the drift watches on the objects devloop applied, and a clean exit on
Ctrl-C (no child left behind).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from pytest_devloop.run.gate import Gate
from pytest_devloop.watch.coalesce import Coalescer

IGNORED_DIRS = frozenset({".git", ".devloop", "__pycache__", ".pytest_cache", ".mypy_cache"})
IGNORED_DIRS |= {".ruff_cache", ".venv", "node_modules", ".benchmarks", ".tox"}
IGNORED_NAMES = ("*.swp", "*.swx", "*.swo", "*~", ".#*", "4913", "*.tmp", "*.pyc")
# Options of the watch process itself, with whether each takes a value.
WATCH_ONLY = {
    "--devloop-watch": False,
    "--devloop-logs": False,
    "--devloop-quiet-period": True,
    "--devloop-max-wait": True,
}


def ignored(path: str) -> bool:
    parts = Path(path).parts
    if any(p in IGNORED_DIRS for p in parts):
        return True
    name = parts[-1] if parts else ""
    return any(fnmatch.fnmatch(name, pat) for pat in IGNORED_NAMES)


def content_digest(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except (IsADirectoryError, FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return "unreadable"


def args_for_test_process(invocation: Iterable[str]) -> list[str]:
    """The user's pytest arguments without the watch process's own options."""
    out: list[str] = []
    args = list(invocation)
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if name in WATCH_ONLY:
            i += 2 if WATCH_ONLY[name] and "=" not in arg else 1
            continue
        out.append(arg)
        i += 1
    return out


@dataclass
class RunOutcome:
    rc: int
    counts: dict[str, int]
    header: list[str]  # the test process's devloop: lines (selection and reasons)
    failed: list[str]
    text: str
    summary_line: str


def log_colour(option: str, tty: bool, no_color: str) -> bool:
    """Colour pod prefixes? pytest's `--color=yes|no` wins, then `NO_COLOR` (any non-empty
    value, as no-color.org says), then whether the output is a terminal."""
    if option in ("yes", "no"):
        return option == "yes"
    return tty and not no_color


def outcome_of(
    data: dict[str, Any] | None, text: str, rc: int, rootdir: Path, cwd: Path
) -> RunOutcome:
    """A cycle's test results from the JSON the test process wrote (`run.results`), never
    from its terminal text, which `-r`, `-q`, `-v` and plugins reshape. Failed ids are made
    relative to the folder the test process runs in, as pytest takes them as arguments."""
    from pytest_devloop.run import results

    if data is None:
        return RunOutcome(rc, {}, [], [], text, "")
    failed = []
    for nodeid in results.failed_ids(data):
        path, sep, rest = nodeid.partition("::")
        failed.append(os.path.relpath(rootdir / path, cwd) + sep + rest)
    counts = {k: int(v) for k, v in (data.get("counts") or {}).items() if v}
    notes = [str(n) for n in data.get("notes") or []]
    return RunOutcome(rc, counts, notes, failed, text, results.summary_line(data))


# -- test process starters ---------------------------------------------------------


class SubprocessRunner:
    """A fresh `python -m pytest` per cycle (the fallback)."""

    name = "subprocess"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def run(self, args: list[str], cwd: Path, output: Path) -> int:
        self.start(args, cwd, output)
        return self.finish()

    def start(
        self, args: list[str], cwd: Path, output: Path, env: dict[str, str] | None = None
    ) -> None:
        with output.open("wb") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", *args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **env} if env else None,
            )

    def finish(self) -> int:
        assert self._proc is not None
        try:
            return self._proc.wait()
        finally:
            self.kill()

    def abandon(self) -> None:
        """The running process is stopped (at its gate: it has run no test) and reaped."""
        self.kill()

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        self.kill()


class ForkServerRunner:
    """A warm process that forks a test process per cycle (see `forkserver.py`)."""

    name = "fork server"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._proc: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-m", "pytest_devloop.watch.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own group: killed as one, Ctrl-C is ours to handle
            env=env,
        )
        self._ready = False
        self._owed = False  # the end of an abandoned child is still to be read

    def _reply(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server stopped")
        data: dict[str, Any] = json.loads(line)
        return data

    def wait_ready(self) -> None:
        if not self._ready:
            self._reply()
            self._ready = True

    def run(self, args: list[str], cwd: Path, output: Path) -> int:
        self.start(args, cwd, output)
        return self.finish()

    def start(
        self, args: list[str], cwd: Path, output: Path, env: dict[str, str] | None = None
    ) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self.wait_ready()
        if self._owed:
            self._owed = False
            self.finish()  # the end of an abandoned child, which the server reports first
        request = {"args": args, "cwd": str(cwd), "output": str(output), "env": env or {}}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        self._reply()  # {"pid": ...}

    def finish(self) -> int:
        return int(self._reply()["rc"])

    def abandon(self) -> None:
        """The running child ends on its own (stopped at its gate): its end is read
        before the next request, not now."""
        self._owed = True

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            # Not reaped yet, so its pid (the group id) cannot have been reused.
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # the server and any test process it forked
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin:
                proc.stdin.close()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


# -- file watching ------------------------------------------------------------------


@dataclass
class Inputs:
    """What the config names, as files and folders, and the artifact each belongs to."""

    config_files: set[Path]
    folders: dict[Path, str]  # folder -> artifact name
    files: dict[Path, str]  # file -> artifact name
    rootdir: Path

    @classmethod
    def of(cls, config: Any, rootdir: Path) -> Inputs:
        folders: dict[Path, str] = {}
        files: dict[Path, str] = {}
        for c in config.charts:
            folders[Path(c.path).resolve()] = c.name
            for v in c.values:
                files[Path(v).resolve()] = c.name
        for m in config.manifests:
            p = Path(m.path).resolve()
            (folders if p.is_dir() else files)[p] = m.name
        for i in config.images:
            ctx = Path(i.context).resolve()
            folders[ctx] = i.name
            files[(ctx / i.dockerfile).resolve()] = i.name
        cfg_files = {Path(config.source).resolve()}
        for name in ("devloop.yaml", "skaffold.yaml"):
            cfg_files.add((rootdir / name).resolve())
        return cls(cfg_files, folders, files, rootdir.resolve())

    def missing(self) -> list[tuple[Path, str]]:
        """Folders and files the config names that are gone, with their artifact."""
        gone = [(p, name) for p, name in self.folders.items() if not p.exists()]
        folders = {p for p, _ in gone}
        gone += [
            (p, name)
            for p, name in self.files.items()
            if not p.exists() and not folders.intersection(p.parents)
        ]
        return gone

    def roots(self) -> list[Path]:
        """Folders to watch recursively (nested ones dropped)."""
        dirs = {self.rootdir, *self.folders, *(p.parent for p in self.files)}
        dirs |= {p.parent for p in self.config_files}
        dirs = {d for d in dirs if d.is_dir()}
        return sorted(d for d in dirs if not any(o != d and o in d.parents for o in dirs))

    def classify(self, path: Path) -> str | None:
        """`config`, `artifact:NAME`, `conftest`, `test`, or None (not an input)."""
        if ignored(str(path)):
            return None
        if path in self.config_files:
            return "config"
        if path in self.files:
            return f"artifact:{self.files[path]}"
        for folder, name in self.folders.items():
            if folder == path or folder in path.parents:
                return f"artifact:{name}"
        if path.suffix == ".py" and (self.rootdir in path.parents):
            return "conftest" if path.name == "conftest.py" else "test"
        if path.name in ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg") and (
            path.parent == self.rootdir
        ):
            return "conftest"
        return None

    def scan(self) -> Iterator[Path]:
        for root in self.roots():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
                for f in filenames:
                    p = Path(dirpath) / f
                    if self.classify(p) is not None:
                        yield p


_COMPLETE_EVENTS = frozenset({"closed", "moved", "deleted"})


class FileWatcher:
    """watchdog observers over the input roots; events go on the loop's queue."""

    def __init__(self, put: Callable[[tuple[str, Any]], None]) -> None:
        from watchdog.observers import Observer

        self._put = put
        self._observer = Observer()
        self._observer.daemon = True
        self._watched: set[Path] = set()
        self._observer.start()

    def watch(self, roots: Iterable[Path]) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler

        put = self._put

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                if event.event_type == "modified" and event.is_directory:
                    return
                paths = [event.src_path]
                dest = getattr(event, "dest_path", "")
                if dest:
                    paths.append(dest)
                # Closed after writing, renamed into place, deleted: the file is finished
                # (the coalescer then waits only to gather the rest of a "save all").
                complete = event.is_directory or event.event_type in _COMPLETE_EVENTS
                for p in paths:
                    text = os.fsdecode(p)
                    if not ignored(text):
                        put(("file", (time.monotonic(), text, complete)))

        for root in roots:
            if root in self._watched:
                continue
            self._observer.schedule(Handler(), str(root), recursive=True)
            self._watched.add(root)

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=1.0)


# -- drift watches ------------------------------------------------------------------


class DriftWatch:
    """One watch per (kind, namespace) on the objects devloop applied (by label)."""

    def __init__(self, target: Any, put: Callable[[tuple[str, Any]], None]) -> None:
        self._target = target
        self._put = put
        self._client: Any = None
        self._streams: dict[tuple[str, str, str], Any] = {}  # (path, ns, kind) -> response
        self._threads: dict[tuple[str, str, str], threading.Thread] = {}
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()
        self.busy = threading.Event()  # set while a cycle runs: our own writes are not drift
        self._stopped = False
        # Per connected stream's collection path: a number that changes with every line
        # the stream brings, and is new for each stream (the sync's `ChangeFeed`).
        self._events: dict[str, int] = {}
        self._seq = itertools.count(1)

    def version(self, path: str) -> int | None:
        """Events seen on the collection at `path` while its stream is connected; None
        when no stream on it is (see `sync.livecache.ChangeFeed`)."""
        with self._lock:
            return self._events.get(path)

    def _signature(self, obj: dict[str, Any]) -> str:
        m = obj.get("metadata") or {}
        if m.get("generation") is not None:
            return f"g{m['generation']}"
        rest = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
        rest["labels"] = m.get("labels")
        rest["annotations"] = {
            k: v
            for k, v in (m.get("annotations") or {}).items()
            if not k.startswith(("deployment.kubernetes.io/", "kubectl.kubernetes.io/"))
        }
        return hashlib.sha1(json.dumps(rest, sort_keys=True).encode()).hexdigest()

    def ensure(self, kube: Any, desired: dict[str, dict[str, Any]]) -> None:
        """Watch every (kind, namespace) of `desired`; restart watches that ended."""
        from pytest_devloop.sync.syncer import ARTIFACT_LABEL

        wanted: dict[tuple[str, str, str], str] = {}
        for obj in desired.values():
            res = kube.resource(str(obj.get("apiVersion")), str(obj.get("kind")))
            if res is None:
                continue
            ns = (obj.get("metadata") or {}).get("namespace") or "" if res.namespaced else ""
            base = f"/apis/{res.group_version}" if "/" in res.group_version else "/api/v1"
            path = f"{base}/namespaces/{ns}/{res.plural}" if ns else f"{base}/{res.plural}"
            wanted[(path, ns, res.kind)] = res.group_version
        if self._client is None:
            self._client = self._target.api_client()
        for key, gv in wanted.items():
            thread = self._threads.get(key)
            if thread is not None and thread.is_alive():
                continue
            t = threading.Thread(
                target=self._run, args=(key, gv, ARTIFACT_LABEL), daemon=True, name="drift"
            )
            self._threads[key] = t
            t.start()

    def _run(self, key: tuple[str, str, str], gv: str, label: str) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        from pytest_devloop.sync.plan import object_key, short_name

        path, _ns, kind = key
        try:
            # No resourceVersion: the server first sends every current object as ADDED.
            request = self._client.param_serialize(
                "GET",
                path,
                query_params=[("labelSelector", label), ("watch", "true")],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            resp = self._client.call_api(*request, _request_timeout=(5, None)).response
            self._streams[key] = resp
            with self._lock:
                self._events[path] = next(self._seq)
            for line in iter_resp_lines(resp):
                if self._stopped:
                    return
                event = json.loads(line)
                obj = event.get("object") or {}
                etype = event.get("type")
                if etype != "BOOKMARK":
                    with self._lock:
                        # Any other line (an ERROR too) may mean the collection moved.
                        self._events[path] = next(self._seq)
                if etype not in ("ADDED", "MODIFIED", "DELETED"):
                    continue
                k = object_key(dict(obj, apiVersion=gv, kind=kind))
                sig = self._signature(obj)
                with self._lock:
                    before = self._known.get(k)
                    if etype == "DELETED":
                        self._known.pop(k, None)
                    else:
                        self._known[k] = sig
                if self.busy.is_set():
                    continue
                if etype == "DELETED":
                    self._put(("drift", f"{short_name(k)} was deleted in the cluster"))
                elif etype == "MODIFIED" and before is not None and before != sig:
                    self._put(("drift", f"{short_name(k)} was edited in the cluster"))
        except Exception:
            return
        finally:
            with self._lock:
                self._events.pop(path, None)  # no stream: nothing listed may be reused

    def stop(self) -> None:
        self._stopped = True
        for resp in list(self._streams.values()):
            with contextlib.suppress(Exception):
                resp.shutdown() if hasattr(resp, "shutdown") else resp.close()


# -- pod logs -----------------------------------------------------------------------

COLOURS = (36, 33, 35, 32, 34, 31, 96, 93, 95, 92, 94, 91)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


class LogPrinter:
    """Prints log lines, holding them back while a cycle's block prints."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._held: list[str] | None = None

    def pause(self) -> None:
        with self._lock:
            if self._held is None:
                self._held = []

    def resume(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
            for line in held:
                self._write(line)

    def line(self, text: str) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(text)
            else:
                self._write(text)


class LogStreams:
    """`--devloop-logs`: follow the logs of the synced workloads' pods, one thread each."""

    def __init__(self, target: Any, printer: LogPrinter, *, colour: bool) -> None:
        self._target = target
        self._printer = printer
        self._colour = colour
        self._client: Any = None
        self._threads: dict[tuple[str, str, str], threading.Thread] = {}
        self._responses: list[Any] = []
        self._stopped = False

    def _prefix(self, pod: str, container: str, many: bool) -> str:
        name = f"{pod}/{container}" if many else pod
        if not self._colour:
            return f"[{name}] "
        colour = COLOURS[int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(COLOURS)]
        return f"\x1b[{colour}m[{name}]\x1b[0m "

    def ensure(self, kube: Any, desired: dict[str, dict[str, Any]]) -> None:
        """Follow every pod of every workload in `desired` not followed yet."""
        pod_res = kube.resource("v1", "Pod")
        if pod_res is None:
            return
        if self._client is None:
            self._client = self._target.api_client()
        for obj in desired.values():
            if obj.get("kind") not in WORKLOAD_KINDS:
                continue
            ns = (obj.get("metadata") or {}).get("namespace") or ""
            labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not labels:
                continue
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            for pod in kube.list(pod_res, ns, selector):
                name = str((pod.get("metadata") or {}).get("name"))
                containers = [
                    str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []
                ]
                for container in containers:
                    key = (ns, name, container)
                    if key in self._threads:
                        continue
                    t = threading.Thread(
                        target=self._follow,
                        args=(key, self._prefix(name, container, len(containers) > 1)),
                        daemon=True,
                        name="logs",
                    )
                    self._threads[key] = t
                    t.start()

    def _follow(self, key: tuple[str, str, str], prefix: str) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        ns, name, container = key
        try:
            request = self._client.param_serialize(
                "GET",
                f"/api/v1/namespaces/{ns}/pods/{name}/log",
                query_params=[("follow", "true"), ("container", container), ("tailLines", "20")],
                header_params={"Accept": "*/*"},
                auth_settings=["BearerToken"],
            )
            resp = self._client.call_api(*request, _request_timeout=(5, None)).response
            self._responses.append(resp)
            for line in iter_resp_lines(resp):
                if self._stopped:
                    return
                self._printer.line(prefix + line)
        except Exception:
            return

    def stop(self) -> None:
        self._stopped = True
        for resp in self._responses:
            with contextlib.suppress(Exception):
                resp.shutdown() if hasattr(resp, "shutdown") else resp.close()


# -- keys ---------------------------------------------------------------------------


class Keys:
    """Single-key input when stdin is a TTY (cbreak mode, restored on exit)."""

    def __init__(self, put: Callable[[tuple[str, Any]], None]) -> None:
        self._put = put
        self._saved: Any = None
        self.enabled = sys.stdin is not None and sys.stdin.isatty()
        if not self.enabled:
            return
        import termios
        import tty

        fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        threading.Thread(target=self._read, args=(fd,), daemon=True, name="keys").start()

    def _read(self, fd: int) -> None:
        while True:
            try:
                ch = os.read(fd, 1).decode(errors="replace")
            except OSError:
                return
            if not ch:
                return
            if ch in ("\n", "\r"):
                self._put(("key", "enter"))
            elif ch.lower() in ("a", "f", "q"):
                self._put(("key", ch.lower()))

    def restore(self) -> None:
        if self._saved is not None:
            import termios

            with contextlib.suppress(Exception):
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None


# -- the loop -----------------------------------------------------------------------


@dataclass
class Block:
    """One cycle's block: printed as it grows (header first), so a slow step is visible."""

    title: str
    say: Callable[[str], None]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.say(f"── devloop: {self.title}")

    def add(self, line: str) -> None:
        self.lines.append(line)
        self.say(line)

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.add(line)


@dataclass
class Cycle:
    """One cycle of the watch: why it runs, the saved files that changed (with their
    kinds: artifact input, test, conftest, config), the drift it restores, its block of
    output and its time split; what the steps of `Watch._cycle_body` share."""

    why: str  # files | start | key:enter | key:a | key:f
    changed: list[Path]
    kinds: dict[Path, str]
    block: Block
    timings: dict[str, float]
    drift_notes: list[str]
    detect_from: float

    @property
    def config_changed(self) -> bool:
        return "config" in self.kinds.values()

    @property
    def tests_changed(self) -> bool:
        return any(k in ("test", "conftest") for k in self.kinds.values())


@dataclass
class EarlyTests:
    """A save's test process started with the sync, waiting at its gate: its arguments
    and, once the sync's result is known, the summary it read."""

    args: list[str]
    gate: Gate
    summary: str | None = None
    went: bool = False  # told to run its tests (the sync ended as it expected)


# The time split of a cycle: `hooks` are Helm hooks run and waited for, `sync` the rest
# of the sync (connecting, fingerprints, plans, live reads, a `helm upgrade`, state), and
# `watch` the watch's own work; the parts add up to `total`.
STEPS = (
    "detect", "build", "render", "apply", "hooks", "ready", "sync", "tests", "watch", "total",
)  # fmt: skip
SYNC_STEPS = ("build", "render", "apply", "hooks", "ready")


class Watch:
    def __init__(self, pytest_config: pytest.Config, out: IO[str] | None = None) -> None:
        from pytest_devloop.run.testrun import TestRun

        self.pytest_config = pytest_config
        self.out = out or sys.stdout
        self.run = TestRun(pytest_config)
        self.options = self.run.options
        self.rootdir = Path(pytest_config.rootpath).resolve()
        self.cwd = Path(pytest_config.invocation_params.dir)
        self.args = args_for_test_process(pytest_config.invocation_params.args)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.coalescer = Coalescer(
            float(pytest_config.getoption("devloop_quiet_period")),
            float(pytest_config.getoption("devloop_max_wait")),
        )
        self.config: Any = self.run.config
        self.target: Any = None
        self.syncer: Any = None
        self.digests: dict[Path, str | None] = {}
        self.inputs: Inputs | None = None
        self.runner: ForkServerRunner | SubprocessRunner | None = None
        self.cycle_no = 0
        self.last_changed: list[tuple[str, list[str]]] = []
        self.last_failed: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="devloop-watch-"))
        self._first_event: float | None = None
        self._drift_notes: list[str] = []
        self.drift: DriftWatch | None = None
        self.logs: LogStreams | None = None
        self.logs_enabled = bool(pytest_config.getoption("devloop_logs"))
        self._out_lock = threading.Lock()
        from pytest_devloop.run import progress

        # The sync's live line (run.progress); every line printed erases it first.
        self.live = progress.for_stream(self.out)
        self.printer = LogPrinter(self._write)
        self.files: FileWatcher | None = None
        self._syncing: Cycle | None = None  # the cycle syncing (for `_expected`)
        self._early: EarlyTests | None = None

    # -- output

    def _write(self, line: str) -> None:
        with self._out_lock:
            self.live.line(line)

    def say(self, line: str) -> None:
        self._write(line)

    # -- setup

    def _setup(self) -> bool:
        if self.config is None:
            self.say(f"devloop: no devloop.yaml or skaffold.yaml in {self.rootdir}")
            return False
        self._watch_inputs()
        error = self._connect()
        if error is not None:
            self.say(f"devloop: {error}")
            return False
        return True

    def _connect(self) -> str | None:
        """Resolve the cluster (again after it was unreachable) and make the warm Syncer."""
        from pytest_devloop.cluster import session
        from pytest_devloop.cluster.providers import ClusterRefused, ClusterUnavailable
        from pytest_devloop.config.model import ConfigError

        try:
            target = session.target_for(self.config, self.options)
        except (ConfigError, ClusterRefused, ClusterUnavailable) as e:
            return str(e)
        if self.drift is not None and target != self.target:
            self.drift.stop()
            self.drift = None
        self.target = target
        if self.drift is None:
            self.drift = DriftWatch(target, self.events.put)
        self.syncer = self._make_syncer(self.config)
        if self.logs_enabled:
            if self.logs is not None:
                self.logs.stop()
            isatty = getattr(self.out, "isatty", None)
            colour = log_colour(
                str(self.pytest_config.getoption("color", "auto")),
                bool(isatty and isatty()),
                os.environ.get("NO_COLOR", ""),
            )
            self.logs = LogStreams(target, self.printer, colour=colour)
        return None

    def _make_syncer(self, config: Any) -> Any:
        from pytest_devloop.sync.syncer import Syncer

        syncer = Syncer.from_options(
            config, self.target, self.options, mode="dev", out=lambda line: None
        )
        if self.drift is not None:
            # The drift watch's streams vouch for what the last sync listed.
            syncer.use_change_feed(self.drift)
        syncer.on_expected, syncer.on_result = self._expected, self._synced
        syncer.progress, syncer.progress_done = self.live, self.live.done
        return syncer

    def _watch_inputs(self) -> None:
        self.inputs = Inputs.of(self.config, self.rootdir)
        fresh = {p: content_digest(p) for p in self.inputs.scan()}
        self.digests.update(fresh)
        if self.files is not None:
            self.files.watch(self.inputs.roots())

    def _start_runner(self) -> None:
        mode = os.environ.get("DEVLOOP_WATCH_RUNNER", "fork")
        if mode == "fork" and hasattr(os, "fork"):
            try:
                self.runner = ForkServerRunner()
                return
            except OSError as e:
                self.say(f"devloop: fork server unavailable ({e}); a fresh pytest per cycle")
        self.runner = SubprocessRunner()

    # -- main loop

    def loop(self) -> int:
        self.files = FileWatcher(self.events.put)
        self._start_runner()
        keys = Keys(self.events.put)
        try:
            if not self._setup():
                return int(pytest.ExitCode.USAGE_ERROR)
            how = (
                "Enter re-runs, a runs all, f the failed, q quits"
                if keys.enabled
                else "Ctrl-C quits"
            )
            assert self.runner is not None
            self.say(
                f"devloop: watching {', '.join(str(r) for r in self.inputs.roots()) if self.inputs else ''} "
                f"(tests in a {self.runner.name}; {how})"
            )
            self.cycle("start", [], initial=True)
            while True:
                timeout = self.coalescer.wait_time()
                try:
                    kind, payload = self.events.get(timeout=timeout)
                except queue.Empty:
                    kind, payload = "tick", None
                if kind == "file":
                    at, path, complete = payload
                    if self._first_event is None:
                        self._first_event = at
                    self.coalescer.add([path], complete=complete)
                elif kind == "drift":
                    if self._first_event is None:
                        self._first_event = time.monotonic()
                    self._drift_notes.append(str(payload))
                    self.coalescer.add([])
                elif kind == "key":
                    if payload == "q":
                        self.say("devloop: bye")
                        return 0
                    self.cycle(f"key:{payload}", [])
                    continue
                paths = self.coalescer.take()
                if paths is not None:
                    self.cycle("files", paths)
        except KeyboardInterrupt:
            self.say("devloop: interrupted; stopping")
            return int(pytest.ExitCode.INTERRUPTED)
        finally:
            keys.restore()
            self.close()

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        if self.drift is not None:
            self.drift.stop()
        if self.logs is not None:
            self.logs.stop()
        if self.files is not None:
            self.files.stop()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- one cycle

    def _changed_files(self, paths: list[str]) -> list[Path]:
        assert self.inputs is not None
        changed: list[Path] = []
        for raw in dict.fromkeys(paths):
            p = Path(raw).resolve() if not Path(raw).is_absolute() else Path(raw)
            if self.inputs.classify(p) is None:
                continue
            if p.is_dir():
                continue
            new = content_digest(p)
            if new != self.digests.get(p):
                changed.append(p)
            if new is None:
                self.digests.pop(p, None)
            else:
                self.digests[p] = new
        return changed

    def _is_input(self, raw: str) -> bool:
        assert self.inputs is not None
        p = Path(raw)
        return self.inputs.classify(p if p.is_absolute() else p.resolve()) is not None

    def _rel(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.rootdir))
        except ValueError:
            return str(p)

    def cycle(self, why: str, paths: list[str], *, initial: bool = False) -> None:
        t0 = time.monotonic()
        first, self._first_event = self._first_event, None
        drift_notes, self._drift_notes = self._drift_notes, []
        detect_from = first if first is not None else t0
        changed = self._changed_files(paths) if why == "files" else []
        if why == "files" and not changed and not drift_notes:
            # Only inputs are worth a line: a write elsewhere (an editor's file, a log of
            # this very output kept in the project) passes silently, or it would loop.
            saved = [p for p in paths if self._is_input(p)]
            if saved:
                self.say(f"devloop: nothing changed ({self._names(saved)} saved, same content)")
            return
        self.cycle_no += 1
        timings = dict.fromkeys(STEPS, 0.0)
        timings["detect"] = t0 - detect_from
        assert self.inputs is not None
        kinds = {p: self.inputs.classify(p) or "" for p in changed}
        title = f"cycle {self.cycle_no}"
        if initial:
            title += ": first sync and tests"
        elif why.startswith("key:"):
            title += {
                "key:enter": ": re-run (Enter)",
                "key:a": ": all tests (a)",
                "key:f": ": failed tests (f)",
            }[why]
        self.printer.pause()  # pod logs wait until the block is printed
        try:
            block = Block(title, self.say)
            self._cycle(Cycle(why, changed, kinds, block, timings, drift_notes, detect_from))
        finally:
            self.printer.resume()

    def _cycle(self, c: Cycle) -> None:
        block, timings = c.block, c.timings
        if c.changed:
            block.add(
                "devloop: changed: "
                + ", ".join(
                    f"{self._rel(p)} ({c.kinds[p].replace('artifact:', '')})" for p in c.changed
                )
            )
        for note in dict.fromkeys(c.drift_notes):
            block.add(f"devloop: drift: {note}; syncing to restore it")
        if self.drift is not None:
            self.drift.busy.set()
        try:
            self._cycle_body(c)
        finally:
            if self.drift is not None:
                self.drift.busy.clear()
        timings["total"] = time.monotonic() - c.detect_from
        timings["watch"] = max(
            0.0,
            timings["total"] - sum(v for k, v in timings.items() if k not in ("total", "watch")),
        )
        block.add("devloop: time: " + ", ".join(f"{s} {timings[s]:.3f}" for s in STEPS) + " s")

    def _cycle_body(self, c: Cycle) -> None:
        """Sync, then run the tests the sync affected and report them; each step may end
        the cycle with a line that says why. A save's test process starts with the sync
        and waits at its gate (`run.gate`): it reads the summary once the sync's result is
        known and runs its tests once the sync ended as it expected; otherwise it is
        stopped and the tests run in a process of their own."""
        if not self._ready_to_sync(c):
            return
        self._syncing = c
        try:
            self._begin_early(c)
            self._sync_and_test(c)
        finally:
            self._syncing = None
            early, self._early = self._early, None
            if early is not None:
                # Unwinding (Ctrl-C, an error): the process is not waited for.
                self._abort_early(early, unwinding=sys.exc_info()[0] is not None)

    def _sync_and_test(self, c: Cycle) -> None:
        result = self._sync(c)
        if result is None:
            return
        self._follow(result)
        if self._nothing_affected(c, result):
            return
        args = self._test_args(c)
        if args is None:
            return
        early, self._early = self._early, None
        if early is not None and early.went and early.summary is not None:
            # Let go at `on_result` with this very result (and remembered there).
            self._report_tests(c.block, self._finish_early(early, early.summary, c.timings))
            return
        summary = self._summary(c, result)
        if early is not None and early.args == args and early.summary in (None, summary):
            outcome = self._finish_early(early, summary, c.timings)
        else:
            if early is not None:
                self._abort_early(early)
            outcome = self._run_tests(args, summary, c.timings)
        self._report_tests(c.block, outcome)

    def _begin_early(self, c: Cycle) -> None:
        """A save's cycle: start its test process now; pytest sets up while the sync
        renders and plans, and waits at its gate for the summary."""
        if c.why != "files" or c.config_changed or self.runner is None:
            return
        args = self._test_args(c, say=False)
        if args is None:
            return
        try:
            gate = Gate(self.tmp)
        except OSError:
            return
        output, results = self._outputs()
        try:
            self.runner.start(
                [*args, f"--devloop-results-file={results}"], self.cwd, output, env=gate.env
            )
        except (RuntimeError, OSError, ValueError):
            gate.close()  # the fork server is gone: the cycle's own run falls back
            return
        self._early = EarlyTests(args, gate)

    def _expected(self, provisional: Any) -> None:
        """The syncer's `on_expected`: the result the sync will end with unless a later
        step fails or changes more. The early test process reads it as its summary and
        collects while the sync waits for readiness and records its state."""
        early, c = self._early, self._syncing
        if early is None or c is None or early.summary is not None:
            return
        if not provisional.ok or not provisional.changed:
            return  # the cycle may run no test: that is decided when the sync ends
        summary = self._summary(c, provisional, remember=False)
        (self.tmp / "summary.json").write_text(summary)
        early.gate.summary()
        early.summary = summary

    def _synced(self, result: Any) -> None:
        """The syncer's `on_result`: every artifact synced, the state not yet recorded.
        The early test process goes now if the result is the one it read (then the
        cycle runs its tests: something changed), so the tests overlap the recording."""
        early, c = self._early, self._syncing
        if early is None or c is None or early.summary is None:
            return
        # Remembered for Enter as the cycle would: a result that changed something is
        # one the cycle runs tests for.
        if self._summary(c, result) == early.summary:
            early.gate.go()
            early.went = True

    def _finish_early(
        self, early: EarlyTests, summary: str, timings: dict[str, float]
    ) -> RunOutcome:
        """Let the early test process run its tests; the cycle's `tests` step is the time
        from here to its end (what it did before overlapped the sync)."""
        assert self.runner is not None
        output, results = self.tmp / "tests.out", self.tmp / "results.json"
        t = time.monotonic()
        if early.summary is None:
            (self.tmp / "summary.json").write_text(summary)
            early.gate.summary()
        if not early.went:
            early.gate.go()
        try:
            rc = self.runner.finish()
        except (RuntimeError, OSError, ValueError):
            early.gate.close()
            return self._run_tests(early.args, summary, timings)  # falls back
        finally:
            early.gate.close()
        timings["tests"] = time.monotonic() - t
        return self._outcome(rc, output, results)

    def _abort_early(self, early: EarlyTests, *, unwinding: bool = False) -> None:
        """Stop the early test process at its gate: it ends without a result, a record or
        a line. The runner awaits its end before it starts the next one, not now. One
        already let go (the sync failed while recording its state) runs to its end here
        unless the cycle is unwinding; the cycle reports the failure, not its tests."""
        if early.went and not unwinding:
            with contextlib.suppress(RuntimeError, OSError, ValueError):
                if self.runner is not None:
                    self.runner.finish()
            early.gate.close()
            return
        early.gate.abort()
        early.gate.close()
        if self.runner is not None:
            self.runner.abandon()

    def _ready_to_sync(self, c: Cycle) -> bool:
        """The config reloaded if it changed, every input present, a cluster connected."""
        block = c.block
        if c.config_changed and not self._reload(block):
            return False
        assert self.inputs is not None
        gone = self.inputs.missing()
        if gone:
            # Said plainly instead of the renderer's `[Errno 2]` on the first file it misses.
            config_name = self._rel(Path(self.config.source))
            for path, artifact in gone:
                block.add(
                    f"devloop: {artifact}: {self._rel(path)} is gone; restore it, or remove "
                    f"{artifact} from {config_name}"
                )
            block.add("devloop: tests not run (an input is missing); the next save tries again")
            return False
        if self.syncer is None:
            problem = self._connect()
            if problem is not None:
                block.add(f"devloop: sync failed: {problem}")
                block.add("devloop: tests not run (no cluster); the next save tries again")
                return False
        return True

    def _sync(self, c: Cycle) -> Any:
        """One sync through the warm Syncer (again once after reconnecting to a cluster
        that did not answer); its step times go to the cycle's split. None when it failed
        (said in the block)."""
        from pytest_devloop.cluster.providers import ClusterUnavailable

        block, timings = c.block, c.timings
        result = None
        error: str | None = None
        self.syncer.out = lambda line: block.add(line) if line else None
        t_sync = time.monotonic()
        for attempt in (1, 2):
            try:
                # The saved files travel with the sync: each change names the file behind it.
                result = self.syncer.sync(changed_paths=c.changed)
            except KeyboardInterrupt:
                raise
            except ClusterUnavailable as e:
                # Resolved again at once: the embedded cluster starts anew (a new address
                # and identity, so the state store makes this sync a full one), and a real
                # cluster that answers again is used again.
                error = str(e)
                self.syncer = None
                if attempt == 1 and self._connect() is None:
                    block.add(
                        f"devloop: the cluster did not answer ({e}); reconnected to "
                        f"{self.target.server}, syncing again"
                    )
                    self.syncer.out = lambda line: block.add(line) if line else None
                    error = None
                    continue
            except Exception as e:
                error = str(e) or type(e).__name__
            break
        sync_seconds = time.monotonic() - t_sync
        if result is not None:
            for step in SYNC_STEPS:
                timings[step] = max(0.0, result.timings.get(step, 0.0))
        timings["sync"] = max(0.0, sync_seconds - sum(timings[s] for s in SYNC_STEPS))
        if error is not None:
            block.add(f"devloop: sync failed: {error}")
            block.add("devloop: tests not run (the sync failed); fix it and save again")
            return None
        assert result is not None
        return result

    def _follow(self, result: Any) -> None:
        """Drift watches and log streams follow the objects of this sync."""
        if self.drift is not None:
            with contextlib.suppress(Exception):
                self.drift.ensure(self.syncer.kube, result.desired())
        if self.logs is not None:
            with contextlib.suppress(Exception):
                self.logs.ensure(self.syncer.kube, result.desired())

    def _nothing_affected(self, c: Cycle, result: Any) -> bool:
        """A save that changed nothing in the cluster and no test: one line, no tests."""
        if (
            c.why != "files"
            or result.changed
            or result.opaque()  # a Helm command ran: devloop cannot say "nothing"
            or c.tests_changed
            or c.config_changed
        ):
            return False
        if result.ok:
            if c.drift_notes:
                c.block.add("devloop: drift: nothing to restore (the cluster matches)")
            else:
                c.block.add("devloop: nothing changed in the cluster; no test affected")
        else:
            c.block.add("devloop: tests not run (the sync failed); fix it and save again")
        return True

    def _test_args(self, c: Cycle, *, say: bool = True) -> list[str] | None:
        """The test process's arguments: which tests (affected, all, the failed ones);
        None when there is nothing to run (said in the block unless not `say`)."""
        args = [a for a in self.args if a != "--devloop-affected"]
        args.append(f"--devloop-summary-file={self.tmp / 'summary.json'}")
        if c.why == "key:f":
            if not self.last_failed:
                if say:
                    c.block.add("devloop: no failed tests to re-run")
                return None
            # Only the failed tests: the user's file/folder arguments would add the rest.
            positional = set(self.pytest_config.args)
            args = [a for a in args if a not in positional]
            args += self.last_failed  # pytest prints them relative to the invocation folder
        elif c.why == "key:a":
            pass
        elif any(k == "conftest" for k in c.kinds.values()):
            if say:
                c.block.add("devloop: a conftest or pytest config changed: running every test")
        else:
            args.append("--devloop-affected")
        return args

    def _summary(self, c: Cycle, result: Any, *, remember: bool = True) -> str:
        """The sync's summary as the test process reads it (`--devloop-summary-file`).
        Enter re-runs what the last change affected; `remember` keeps this one for it."""
        from pytest_devloop.run.testrun import TestRun

        summary = TestRun.summary_from_result(result, self.target, self.config.namespace)
        if c.why == "key:enter" and not summary.changed:
            summary.changed = list(self.last_changed)
        elif summary.changed and remember:
            self.last_changed = list(summary.changed)
        return json.dumps({"error": None, "ci_namespace": None, "summary": summary.to_json()})

    def _report_tests(self, block: Block, outcome: RunOutcome) -> None:
        block.extend(outcome.header)
        ran = sum(n for k, n in outcome.counts.items() if k not in ("deselected", "warnings"))
        if not ran and outcome.counts.get("deselected"):
            # A restarted watch finds nothing affected: say how to run them anyway.
            block.add("devloop: no test affected; press a to run all of them")
        if outcome.rc not in (0, 1, 5):
            block.add(f"devloop: the test process exited with {outcome.rc}:")
            block.extend(outcome.text.rstrip().splitlines()[-40:])
        elif outcome.counts.get("failed") or outcome.counts.get("errors"):
            block.extend(_failure_section(outcome.text))
        self.last_failed = outcome.failed
        block.add(f"devloop: tests: {outcome.summary_line or 'no tests ran'}")

    def _outputs(self) -> tuple[Path, Path]:
        """The test process's output and results files (the results of the last gone)."""
        results = self.tmp / "results.json"
        results.unlink(missing_ok=True)
        return self.tmp / "tests.out", results

    def _run_tests(self, args: list[str], summary: str, timings: dict[str, float]) -> RunOutcome:
        assert self.runner is not None
        (self.tmp / "summary.json").write_text(summary)
        output, results = self._outputs()
        args = [*args, f"--devloop-results-file={results}"]
        t = time.monotonic()
        try:
            rc = self.runner.run(args, self.cwd, output)
        except (RuntimeError, OSError, ValueError) as e:
            # The fork server died: fall back to a fresh process from now on.
            self.say(f"devloop: fork server failed ({e}); a fresh pytest per cycle from now on")
            self.runner.close()
            self.runner = SubprocessRunner()
            rc = self.runner.run(args, self.cwd, output)
        timings["tests"] = time.monotonic() - t
        return self._outcome(rc, output, results)

    def _outcome(self, rc: int, output: Path, results: Path) -> RunOutcome:
        try:
            text = output.read_text(errors="replace")
        except OSError:
            text = ""
        try:
            data = json.loads(results.read_text())
        except (OSError, ValueError):
            data = None  # the process died before its session finished
        return outcome_of(data, text, rc, self.rootdir, self.cwd)

    def _reload(self, block: Block) -> bool:
        from pytest_devloop.cluster import session
        from pytest_devloop.config.model import ConfigError

        try:
            config = session.load(self.options)
        except ConfigError as e:
            block.add(f"devloop: config error, keeping the previous config: {e}")
            return False
        if config is None:
            block.add("devloop: the config file is gone; keeping the previous config")
            return False
        self.config = config
        self.syncer = self._make_syncer(config) if self.target is not None else None
        self._watch_inputs()
        block.add("devloop: config reloaded")
        return True

    def _names(self, paths: list[str]) -> str:
        names = list(dict.fromkeys(self._rel(Path(p)) for p in paths))
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _failure_section(text: str) -> list[str]:
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if "FAILURES" in ln or "ERRORS" in ln), None)
    if start is None:
        return []
    end = next(
        (i for i in range(start, len(lines)) if "short test summary info" in lines[i]), len(lines)
    )
    section = lines[start:end]
    if len(section) > 60:
        section = [*section[:60], f"... ({len(section) - 60} more lines)"]
    return section


def run_watch(config: pytest.Config) -> int:
    """Entry point from `pytest_cmdline_main`."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # pytest's global capture keeps stdin on /dev/null even while suspended: the watch
    # process runs no test itself, so it gives the terminal back (keys, plain output).
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.stop_global_capturing()
    try:
        return Watch(config).loop()
    finally:
        signal.signal(signal.SIGTERM, previous)
