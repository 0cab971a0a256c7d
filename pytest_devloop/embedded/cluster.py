"""Starting, stopping and addressing one embedded cluster.

Owns the assembly of store, controllers and HTTP server into an `EmbeddedCluster`
(in a thread of the calling process), the kubeconfig it writes, and the background
process behind `python -m pytest_devloop cluster up|down|status` (state file with pid,
URL and identity under the cluster's directory).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pytest_devloop import processes
from pytest_devloop.embedded.controllers import ControllerManager, SimulationConfig
from pytest_devloop.embedded.server import ApiServer, make_http_server
from pytest_devloop.embedded.store import Store
from pytest_devloop.k8s.resources import Registry

CONTEXT_NAME = "devloop-embedded"
STATE_FILE = "cluster.json"
KUBECONFIG_FILE = "kubeconfig"


def write_kubeconfig(
    path: Path, url: str, token: str, ca_pem: bytes | None, context: str = CONTEXT_NAME
) -> Path:
    """Write a kubeconfig for the cluster atomically (never a half-written file)."""
    cluster: dict[str, Any] = {"server": url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": "default"},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


class EmbeddedCluster:
    """An embedded Kubernetes API server with simulated controllers, in this process.

    >>> with EmbeddedCluster() as c:          # doctest: +SKIP
    ...     subprocess.run(["kubectl", "--kubeconfig", c.kubeconfig, "get", "ns"])
    """

    def __init__(
        self,
        *,
        port: int = 0,
        token: str | None = None,
        config: SimulationConfig | None = None,
        directory: Path | str | None = None,
        history: int = 50_000,
        tls: bool = True,
    ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.registry = Registry()
        self.store = Store(self.registry, history=history)
        self.config = config or SimulationConfig()
        self._port = port
        self._dir = Path(directory) if directory else None
        self.api: ApiServer | None = None
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self.controllers: ControllerManager | None = None
        self.kubeconfig: Path | None = None
        self.ca_file: Path | None = None
        self._tls = tls
        self._certs: Any = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "cluster not started"
        host, port = self._httpd.server_address[:2]
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{host}:{port}"

    @property
    def uid(self) -> str:
        """The cluster's identity: the kube-system namespace UID, new for every cluster."""
        return self.store.cluster_uid

    def start(self) -> EmbeddedCluster:
        ssl_context = None
        if self._tls:
            from pytest_devloop.embedded import tls

            self._certs = tls.generate()
            ssl_context = self._certs.server_context()
        self._httpd = make_http_server(
            ApiServer(self.store, self.token), "127.0.0.1", self._port, ssl_context
        )
        self.api = self._httpd.api
        host, port = self._httpd.server_address[:2]
        self.config.api_server_host = str(host)
        self.config.api_server_port = int(port)
        from pytest_devloop.embedded import bootstrap

        ca_pem = self._certs.ca_pem if self._certs is not None else None
        self.controllers = ControllerManager(
            self.store, self.config, extra=[bootstrap.factory(ca_pem, self.api.signer)]
        )
        self.api.admit = self.controllers.admit
        self.controllers.bootstrap()
        self.controllers.start()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="devloop-apiserver",
            daemon=True,
        )
        self._thread.start()
        directory = self._dir
        if directory is None:
            import tempfile

            directory = Path(tempfile.mkdtemp(prefix="devloop-embedded-"))
            self._dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        ca_pem = self._certs.ca_pem if self._certs is not None else None
        if ca_pem is not None:
            self.ca_file = directory / "ca.crt"
            self.ca_file.write_bytes(ca_pem)
        self.kubeconfig = write_kubeconfig(
            directory / KUBECONFIG_FILE, self.url, self.token, ca_pem
        )
        return self

    def stop(self) -> None:
        if self.api is not None:
            self.api.stopping.set()
        self.store.close_all_watches()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self.controllers is not None:
            self.controllers.stop()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> dict[str, Any]:
        assert self.api is not None
        return {
            "url": self.url,
            "uid": self.uid,
            "uptime": round(time.time() - self.api.started, 1),
            "objects": self.store.counts(),
            "requests": self.api.request_count,
            "writes": self.store.write_count,
        }


# -- background process (`cluster up|down|status`) -------------------------------


@dataclass
class ClusterState:
    pid: int
    url: str
    uid: str
    kubeconfig: str
    started: float
    # The server process's start time as the OS reports it (processes.identify): with the
    # pid, it tells the server from a later process that reused the pid.
    proc_start: str = ""

    @classmethod
    def read(cls, directory: Path) -> ClusterState | None:
        try:
            data = json.loads((directory / STATE_FILE).read_text())
            state = cls(**{k: data[k] for k in ("pid", "url", "uid", "kubeconfig", "started")})
            state.proc_start = str(data.get("proc_start") or "")
            return state
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, directory: Path) -> None:
        tmp = directory / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.replace(directory / STATE_FILE)


def _alive(pid: int) -> bool:
    # A server that has exited stays a zombie until its parent reaps it, and `cluster up`
    # leaves it to init, which may reap late or (a container's PID 1) never: not alive.
    return processes.alive(pid)


def why_not_ours(state: ClusterState, directory: Path) -> str | None:
    """Why the process `state` names is not this directory's embedded cluster (None: it is).

    Checked before any signal: the pid in the record may belong to anyone by now. The
    process must have the recorded start time and run `pytest_devloop.embedded --dir
    <directory>`; a record from before start times were kept must also answer the status
    handshake (token and CA of this directory) with the recorded cluster uid.
    """
    now = processes.identify(state.pid)
    if now is None:
        return f"pid {state.pid} is not running"
    if state.proc_start and now.start != state.proc_start:
        return f"pid {state.pid} is a process started later (the pid was reused)"
    argv = processes.command_line(state.pid)
    if argv and ("pytest_devloop.embedded" not in argv or str(directory) not in argv):
        return f"pid {state.pid} runs `{' '.join(argv)[:200]}`"
    if not state.proc_start:
        info = query_status(state)
        if info is None or info.get("uid") != state.uid:
            return f"pid {state.pid} does not answer as cluster {state.uid} at {state.url}"
    return None


def _token_of(kubeconfig: Path) -> str:
    doc = yaml.safe_load(kubeconfig.read_text())
    return str(doc["users"][0]["user"]["token"])


def query_status(state: ClusterState, timeout: float = 2.0) -> dict[str, Any] | None:
    """Ask a running cluster for its status; None when it does not answer."""
    try:
        token = _token_of(Path(state.kubeconfig))
        req = urllib.request.Request(
            f"{state.url}/devloop/status", headers={"Authorization": f"Bearer {token}"}
        )
        context = None
        ca_file = Path(state.kubeconfig).with_name("ca.crt")
        if state.url.startswith("https:"):
            context = ssl.create_default_context(cafile=str(ca_file))
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None


def running(directory: Path) -> ClusterState | None:
    state = ClusterState.read(directory)
    if state is None or not _alive(state.pid):
        return None
    if query_status(state) is None:
        return None
    return state


def up(directory: Path, *, port: int = 0, timeout: float = 15.0) -> tuple[ClusterState, bool]:
    """Start the background cluster for `directory`, or reuse the running one.

    Returns (state, started_now).
    """
    directory = directory.resolve()
    existing = running(directory)
    if existing is not None:
        return existing, False
    directory.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    # Two processes asking at once (a watch and its test run, parallel CLIs) must end up
    # with one cluster: the second waits, then finds the first one's.
    with FileLock(str(directory / "up.lock"), timeout=timeout + 5):
        existing = running(directory)
        if existing is not None:
            return existing, False
        return _start(directory, port=port, timeout=timeout)


def _start(directory: Path, *, port: int, timeout: float) -> tuple[ClusterState, bool]:
    (directory / STATE_FILE).unlink(missing_ok=True)
    log_path = directory / "server.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_devloop.embedded",
                "--dir",
                str(directory),
                "--port",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = ClusterState.read(directory)
        if state is not None and state.pid == proc.pid and query_status(state) is not None:
            return state, True
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    tail = log_path.read_text(errors="replace").splitlines()[-20:]
    code = proc.poll()
    what = (
        f"exited with code {code}" if code is not None else f"did not start within {timeout:.0f} s"
    )
    raise RuntimeError(
        f"the embedded cluster {what}; its log ({log_path}) ends with:\n" + "\n".join(tail)
    )


@dataclass(frozen=True)
class Down:
    """What `down` did: `stopped` (and the server has exited), `not-running`, or `stale`
    (the record named a process that is not this cluster: nothing was signalled)."""

    outcome: str
    pid: int | None = None
    reason: str = ""


def down(directory: Path, *, timeout: float = 5.0) -> Down:
    """Stop the background cluster and return once it has exited; never signal a stranger."""
    directory = directory.resolve()
    state_file = directory / STATE_FILE
    state = ClusterState.read(directory)
    if state is None:
        if state_file.exists():
            state_file.unlink(missing_ok=True)
            return Down("stale", None, f"{state_file} was unreadable")
        return Down("not-running")
    reason = why_not_ours(state, directory)
    if reason is not None:
        state_file.unlink(missing_ok=True)
        if not _alive(state.pid):
            return Down("not-running", state.pid, reason)
        return Down("stale", state.pid, reason)
    recorded = (
        processes.ProcessId(state.pid, state.proc_start)
        if state.proc_start
        else processes.identify(state.pid)
    )
    if recorded is None or not processes.stop(recorded, timeout=timeout):
        # It exited between the check and the signal: nothing left to stop.
        state_file.unlink(missing_ok=True)
        return Down("not-running", state.pid)
    state_file.unlink(missing_ok=True)
    return Down("stopped", state.pid)


def serve(directory: Path, port: int) -> int:
    """Body of the background process: run until SIGTERM/SIGINT."""
    directory = directory.resolve()
    cluster = EmbeddedCluster(port=port, directory=directory)
    cluster.start()
    assert cluster.kubeconfig is not None
    me = processes.identify(os.getpid())
    ClusterState(
        pid=os.getpid(),
        url=cluster.url,
        uid=cluster.uid,
        kubeconfig=str(cluster.kubeconfig),
        started=time.time(),
        proc_start=me.start if me else "",
    ).write(directory)
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print(
        f"devloop: embedded cluster serving at {cluster.url} (kubeconfig {cluster.kubeconfig})",
        flush=True,
    )
    stop.wait()
    cluster.stop()
    return 0
