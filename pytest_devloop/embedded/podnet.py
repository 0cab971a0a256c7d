"""Simulated pods answering HTTP on their pod IP, so scraping and probing are real.

Owns the listeners of the embedded cluster's "pod network": while a pod is Ready, each
TCP `containerPort` it declares is served on `podIP:port` (the pod IPs are loopback
addresses, 127.2.x.y, which Linux lets any process bind). `/metrics` answers in the
Prometheus text format with a few synthetic series labelled with the pod; any other GET
(readiness and liveness paths) answers 200. A pod that is not Ready, has crashed or is
deleted stops answering (its listeners are closed, so connections are refused).

All listeners share one asyncio loop in one daemon thread: hundreds of pods cost one
thread and a socket per port. The controller side (`PodNetwork.observe`) only computes
which listeners should exist and hands the difference to that loop; it never blocks the
controller loop. Turn the whole thing off with `SimulationConfig.pod_network = False`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from pytest_devloop.embedded.reconcile import Context, Controller
from pytest_devloop.embedded.store import Change, meta

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Listener = tuple[str, int]  # (pod IP, port)

# A listener may never be opened outside loopback: the simulation must not expose anything.
_LOOPBACK_PREFIX = "127."
_MAX_HEAD = 16 * 1024
RETRY = 1.0  # seconds between attempts to bind a taken address


def pod_is_ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or meta(pod).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def listeners_of(pod: Obj) -> set[Listener]:
    """The (IP, port) pairs a Ready pod answers on: each TCP containerPort."""
    if not pod_is_ready(pod):
        return set()
    ip = str((pod.get("status") or {}).get("podIP") or "")
    if not ip.startswith(_LOOPBACK_PREFIX):
        return set()
    out: set[Listener] = set()
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            tcp = str(port.get("protocol") or "TCP") == "TCP"
            if isinstance(number, int) and 0 < number < 65536 and tcp:
                out.add((ip, number))
    return out


def metrics_text(pod: Mapping[str, str], requests: int, started: float) -> str:
    """Synthetic metrics of one pod, in the Prometheus text exposition format."""
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(pod.items()))
    return (
        "# HELP devloop_simulated_up 1 while the simulated pod serves.\n"
        "# TYPE devloop_simulated_up gauge\n"
        f"devloop_simulated_up{{{labels}}} 1\n"
        "# HELP devloop_simulated_requests_total Requests the simulated pod answered.\n"
        "# TYPE devloop_simulated_requests_total counter\n"
        f"devloop_simulated_requests_total{{{labels}}} {requests}\n"
        "# HELP devloop_simulated_start_time_seconds When the listener started.\n"
        "# TYPE devloop_simulated_start_time_seconds gauge\n"
        f"devloop_simulated_start_time_seconds{{{labels}}} {started:.3f}\n"
    )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Served:
    """One open listener and what its responses say."""

    def __init__(self, server: asyncio.base_events.Server, labels: dict[str, str]) -> None:
        self.server = server
        self.labels = labels
        self.requests = 0
        self.started = time.time()


class PodNetwork(Controller):
    """Opens and closes pod listeners as pods become Ready, not ready or deleted."""

    watches = ("pods",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._wanted: dict[str, tuple[set[Listener], dict[str, str]]] = {}  # pod uid -> ...
        self._served: dict[Listener, _Served] = {}  # touched only in the loop thread
        # Listeners whose address was taken (another process's cluster on the same pod
        # IP): retried every RETRY seconds while wanted. Loop thread only.
        self._pending: dict[Listener, dict[str, str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- controller side -------------------------------------------------------------

    def observe(self, change: Change) -> None:
        pod = change.new
        m = meta(pod)
        uid = str(m.get("uid"))
        wanted = set() if change.type == "DELETED" else listeners_of(pod)
        labels = {"namespace": str(m.get("namespace", "")), "pod": str(m.get("name", ""))}
        before = self._wanted.get(uid, (set(), labels))[0]
        if wanted == before:
            return
        if wanted:
            self._wanted[uid] = (wanted, labels)
        else:
            self._wanted.pop(uid, None)
        for listener in before - wanted:
            self._submit(self._close(listener))
        for listener in wanted - before:
            self._submit(self._open(listener, labels))

    def listening(self) -> set[Listener]:
        """The listeners wanted now (for tests and status)."""
        return {x for wanted, _ in self._wanted.values() for x in wanted}

    def close(self) -> None:
        """Close every listener and end the loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        self._wanted.clear()
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(timeout=2.0)
        except Exception:  # closing must never fail the cluster's stop
            log.debug("pod network: closing listeners failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=2.0)

    # -- loop side -------------------------------------------------------------------

    def _submit(self, coro: Any) -> None:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="devloop-podnet", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            loop = self._loop
        # Waited for (binding is quick) so a pod answers soon after it is seen Ready.
        try:
            asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=1.0)
        except Exception:
            log.debug("pod network: listener change failed", exc_info=True)

    async def _open(self, listener: Listener, labels: dict[str, str]) -> None:
        if listener in self._served:
            return
        ip, port = listener

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(listener, reader, writer)

        try:
            server = await asyncio.start_server(handle, ip, port, reuse_address=True)
        except OSError as e:
            if listener not in self._pending:
                log.warning(
                    "pod network: cannot listen on %s:%s for %s (retrying): %s", ip, port, labels, e
                )
                self._pending[listener] = labels
                asyncio.get_running_loop().call_later(RETRY, self._retry, listener)
            return
        self._pending.pop(listener, None)
        self._served[listener] = _Served(server, labels)

    def _retry(self, listener: Listener) -> None:
        labels = self._pending.pop(listener, None)
        if labels is None:
            return  # no longer wanted
        self._pending[listener] = labels
        task = asyncio.ensure_future(self._open(listener, labels))
        task.add_done_callback(lambda t: self._reschedule(listener))

    def _reschedule(self, listener: Listener) -> None:
        if listener in self._pending and listener not in self._served:
            asyncio.get_running_loop().call_later(RETRY, self._retry, listener)

    async def _close(self, listener: Listener) -> None:
        self._pending.pop(listener, None)
        served = self._served.pop(listener, None)
        if served is not None:
            served.server.close()
            # Open keep-alive connections (a scraper's) end too: a gone pod stops answering.
            close_clients = getattr(served.server, "close_clients", None)
            if close_clients is not None:
                close_clients()

    async def _close_all(self) -> None:
        for listener in list(self._served):
            await self._close(listener)

    async def _serve(
        self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                if len(head) > _MAX_HEAD:
                    return
                served = self._served.get(listener)
                if served is None:
                    return  # closed while the connection was open
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                method, path = [*parts, "", ""][:2]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                length = int(headers.get("content-length") or 0)
                if length:
                    await reader.readexactly(min(length, 1 << 20))
                served.requests += 1
                if path.split("?")[0] == "/metrics":
                    body = metrics_text(served.labels, served.requests, served.started).encode()
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                else:
                    body = b"ok\n"
                    ctype = "text/plain; charset=utf-8"
                payload = b"" if method == "HEAD" else body
                keep = headers.get("connection", "").lower() != "close"
                writer.write(
                    (
                        "HTTP/1.1 200 OK\r\n"
                        f"Content-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\n"
                        f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
                    ).encode()
                    + payload
                )
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()
