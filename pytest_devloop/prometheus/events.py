"""Cluster change events for the embedded mode's waits.

Owns `ClusterChanges`: watches (server-side, one stream per resource, all namespaces) on
what decides scrape targets, and an event that any change sets. `wait_for_targets`
re-resolves targets when the cluster changed instead of re-reading it on a fixed poll; the
streams start lazily, on the first wait, so a test that never waits opens none.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

__all__ = ["WATCHED", "ClusterChanges"]

# The paths whose changes move targets: endpoints (readiness), pods (IPs, readiness,
# PodMonitors), services and the monitors themselves.
WATCHED = (
    "/apis/discovery.k8s.io/v1/endpointslices",
    "/api/v1/pods",
    "/api/v1/services",
    "/apis/monitoring.coreos.com/v1/servicemonitors",
    "/apis/monitoring.coreos.com/v1/podmonitors",
)


class ClusterChanges:
    """`wait(timeout)` returns True as soon as a watched object changed since `clear()`."""

    def __init__(self, api_client: Any, paths: tuple[str, ...] = WATCHED) -> None:
        self._client = api_client
        self._paths = paths
        self._event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: list[Any] = []
        self._stopped = False
        self._started = threading.Event()

    def start(self) -> None:
        if self._threads:
            return
        ready = [threading.Event() for _ in self._paths]
        for path, seen in zip(self._paths, ready, strict=True):
            t = threading.Thread(
                target=self._run, args=(path, seen), daemon=True, name="devloop-prom-watch"
            )
            self._threads.append(t)
            t.start()
        # The initial ADDED events of each stream say it is open: from here on no change is
        # missed (a change before that is seen by the refresh that follows anyway).
        for seen in ready:
            seen.wait(timeout=2.0)
        self._started.set()

    def _run(self, path: str, seen: threading.Event) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        try:
            request = self._client.param_serialize(
                "GET",
                path,
                query_params=[("watch", "true"), ("allowWatchBookmarks", "true")],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            resp = self._client.call_api(*request, _request_timeout=(5, None)).response
            self._responses.append(resp)
            seen.set()
            for line in iter_resp_lines(resp):
                if self._stopped:
                    return
                with contextlib.suppress(ValueError):
                    if json.loads(line).get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._event.set()
        except Exception:
            seen.set()  # a kind the cluster does not serve (no CRD): nothing to wait for

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float) -> bool:
        """True when something changed (the caller re-reads), False on timeout."""
        self.start()
        changed = self._event.wait(timeout)
        self._event.clear()
        return changed

    def stop(self) -> None:
        self._stopped = True
        for resp in self._responses:
            with contextlib.suppress(Exception):
                resp.close()
