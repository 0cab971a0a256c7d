"""Robustness of the embedded API server: concurrent writers, bad input, many watches.

Everything goes over real HTTPS sockets. `http.client` with the cluster's CA is used where
the test needs control of the bytes (bodies, headers, one connection reused after an
error) or the throughput (1600 read-modify-write cycles); the `kubernetes` client where
its own behaviour is under test (410 on an expired watch).
"""

from __future__ import annotations

import functools
import http.client
import json
import random
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from pytest_devloop.embedded.cluster import EmbeddedCluster

MiB = 1024 * 1024


@functools.cache
def _tls_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: Any  # parsed JSON for application/json, else bytes


class Conn:
    """One keep-alive HTTPS connection to a cluster, speaking JSON."""

    def __init__(self, cluster: EmbeddedCluster, *, timeout: float = 10.0) -> None:
        split = urlsplit(cluster.url)
        assert split.hostname and split.port and cluster.ca_file
        self.http = http.client.HTTPSConnection(
            split.hostname, split.port, context=_tls_context(str(cluster.ca_file)), timeout=timeout
        )
        self.token = cluster.token

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        token: str | None = "",
    ) -> http.client.HTTPResponse:
        """Send a request and return the response unread; token None sends no credentials."""
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token or self.token}"
        if data is not None:
            headers["Content-Type"] = content_type
        self.http.request(method, path, body=data, headers=headers)
        return self.http.getresponse()

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Response:
        resp = self.send(method, path, body, **kw)
        raw = resp.read()
        ctype = resp.getheader("Content-Type", "")
        parsed = json.loads(raw) if ctype.startswith("application/json") and raw else raw
        return Response(resp.status, resp.headers, parsed)

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        r = self.request(method, path, body, **kw)
        assert 200 <= r.status < 300, (method, path, r.status, r.body)
        return r.body


def events(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The events of a watch response, one per line, until the server ends the stream."""
    for line in iter(resp.readline, b""):
        if line.strip():
            yield json.loads(line)


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


# Every namespace holds the cluster's root CA bundle, as on a real cluster; lists and
# watches of "the test's ConfigMaps" leave it out.
OURS = {"fieldSelector": "metadata.name!=kube-root-ca.crt"}


def cm_path(namespace: str, name: str = "", **query: str) -> str:
    path = f"/api/v1/namespaces/{namespace}/configmaps" + (f"/{name}" if name else "")
    return path + (f"?{urlencode(query)}" if query else "")


def make_namespace(conn: Conn, name: str) -> None:
    conn.ok("POST", "/api/v1/namespaces", {"metadata": {"name": name}})


# -- 1. concurrent conflicting writers -----------------------------------------------


def test_concurrent_conflicting_updates_lose_nothing(
    cluster: EmbeddedCluster, namespace: str
) -> None:
    """8 writers x 200 optimistic read-increment-replace cycles of one ConfigMap.

    Each writer thread has its own keep-alive connection. Through the `kubernetes`
    client (one ApiClient per thread) the same test takes 13-18 s: a GET+PUT costs
    ~2 ms of client-side Python there against ~0.3 ms with `http.client`.
    """
    writers, updates = 8, 200
    path = cm_path(namespace, "counter")
    with Conn(cluster) as conn:
        conn.ok("POST", cm_path(namespace), {"metadata": {"name": "counter"}, "data": {"n": "0"}})

    conflicts = [0] * writers
    written: list[list[int]] = [[] for _ in range(writers)]
    failures: list[BaseException] = []
    start = threading.Barrier(writers)

    def writer(i: int) -> None:
        rng = random.Random(i)
        try:
            with Conn(cluster) as conn:
                start.wait(timeout=10)
                for _ in range(updates):
                    for _attempt in range(1000):
                        current = conn.ok("GET", path)
                        current["data"]["n"] = str(int(current["data"]["n"]) + 1)
                        r = conn.request("PUT", path, current)
                        if r.status == 200:
                            written[i].append(int(r.body["data"]["n"]))
                            break
                        assert r.status == 409, r.body
                        assert r.body["reason"] == "Conflict", r.body
                        conflicts[i] += 1
                        # Jittered backoff, as client-go's RetryOnConflict: fewer writers
                        # collide again, so the test spends its time on progress.
                        time.sleep(rng.uniform(0, 0.02))
                    else:
                        raise AssertionError("1000 conflicts in a row")
        except BaseException as e:
            failures.append(e)
            start.abort()

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "writers still running after 60 s"
    assert not failures, failures

    with Conn(cluster) as conn:
        final = conn.ok("GET", path)
    assert final["data"]["n"] == str(writers * updates)
    # Every successful replace wrote a distinct value: no two writers both "won" the
    # same read, so no increment was lost and none was applied twice.
    assert sorted(n for values in written for n in values) == list(range(1, writers * updates + 1))
    assert sum(conflicts) > 0, "the writers never conflicted: the test did not test anything"


# -- 2. bad requests ---------------------------------------------------------------

OVERSIZED = json.dumps(
    {"metadata": {"name": "big"}, "data": {"blob": "x" * (3 * MiB + 1024)}}
).encode()
CM_BODY = json.dumps({"metadata": {"name": "cfg"}, "data": {"a": "1"}}).encode()


@dataclass(frozen=True)
class BadRequest:
    method: str
    path: str  # relative to the test's namespace, or absolute with {ns}
    body: bytes | None
    content_type: str
    token: str | None  # "" the cluster's, None no credentials
    status: int
    reason: str


BAD_REQUESTS = {
    "malformed-json": BadRequest(
        "POST",
        "configmaps",
        b'{"metadata": {"name": "cfg"}, "data": {',
        "application/json",
        "",
        400,
        "BadRequest",
    ),
    "malformed-apply-yaml": BadRequest(
        "PATCH",
        "configmaps/cfg?fieldManager=robustness",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [cfg\n",
        "application/apply-patch+yaml",
        "",
        400,
        "BadRequest",
    ),
    "unknown-content-type": BadRequest(
        "POST",
        "configmaps",
        b"name=cfg&a=1",
        "application/x-www-form-urlencoded",
        "",
        415,
        "UnsupportedMediaType",
    ),
    "unknown-resource": BadRequest(
        "POST", "widgets", CM_BODY, "application/json", "", 404, "NotFound"
    ),
    "unknown-group": BadRequest(
        "POST",
        "/apis/example.com/v1/namespaces/{ns}/widgets",
        CM_BODY,
        "application/json",
        "",
        404,
        "NotFound",
    ),
    "oversized-body": BadRequest(
        "POST", "configmaps", OVERSIZED, "application/json", "", 413, "RequestEntityTooLarge"
    ),
    "unauthenticated": BadRequest("GET", "configmaps", None, "", None, 401, "Unauthorized"),
    "wrong-token": BadRequest(
        "POST", "configmaps", CM_BODY, "application/json", "not-the-token", 401, "Unauthorized"
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_bad_request_gets_status_and_server_keeps_serving(
    cluster: EmbeddedCluster, namespace: str, case: BadRequest
) -> None:
    if case.path.startswith("/"):
        url = case.path.format(ns=namespace)
    else:
        url = f"/api/v1/namespaces/{namespace}/{case.path}"
    with Conn(cluster) as conn:
        r = conn.request(
            case.method, url, case.body, content_type=case.content_type, token=case.token
        )
        assert r.status == case.status, r.body
        assert r.headers["Content-Type"] == "application/json"
        assert isinstance(r.body, dict), r.body
        assert r.body["kind"] == "Status" and r.body["apiVersion"] == "v1"
        assert r.body["status"] == "Failure"
        assert r.body["reason"] == case.reason and r.body["code"] == case.status
        assert r.body["message"]
        if case.status == 401:
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        # The same connection still serves (the server consumed the whole request) ...
        assert conn.ok("GET", f"/api/v1/namespaces/{namespace}")["metadata"]["name"] == namespace
        listed = conn.ok("GET", cm_path(namespace, **OURS))
    # ... and so does a new one; the refused request stored nothing.
    with Conn(cluster) as fresh:
        assert fresh.ok("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"
    assert listed["items"] == []


# -- 3. many concurrent watches ----------------------------------------------------


def test_fifty_concurrent_watches_see_every_event_in_order(
    cluster: EmbeddedCluster, namespace: str
) -> None:
    watchers, objects, updates = 50, 20, 3
    total = objects * (2 + updates)  # ADDED, MODIFIED x updates, DELETED per object
    assert total == 100
    with Conn(cluster) as conn:
        start_rv = rv(conn.ok("GET", cm_path(namespace)))

    ready = [threading.Event() for _ in range(watchers)]
    seen: list[list[tuple[str, str, int]]] = [[] for _ in range(watchers)]
    failures: list[BaseException] = []

    def watcher(i: int) -> None:
        try:
            with Conn(cluster) as conn:
                resp = conn.send(
                    "GET",
                    cm_path(
                        namespace, watch="1", resourceVersion=str(start_rv), timeoutSeconds="10"
                    ),
                )
                assert resp.status == 200
                # The server registers the watch before it sends the headers.
                ready[i].set()
                for event in events(resp):
                    obj = event["object"]
                    seen[i].append((event["type"], obj["metadata"]["name"], rv(obj)))
                    if len(seen[i]) == total:
                        break
        except BaseException as e:
            failures.append(e)
        finally:
            ready[i].set()

    threads = [threading.Thread(target=watcher, args=(i,), daemon=True) for i in range(watchers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    for r in ready:
        assert r.wait(max(0.0, deadline - time.monotonic())), "a watch did not start"
    assert not failures, failures

    expected: list[tuple[str, str, int | None]] = []
    with Conn(cluster) as conn:
        for k in range(objects):
            name = f"cm-{k:02d}"
            created = conn.ok("POST", cm_path(namespace), {"metadata": {"name": name}})
            expected.append(("ADDED", name, rv(created)))
            for u in range(updates):
                created["data"] = {"u": str(u)}
                created = conn.ok("PUT", cm_path(namespace, name), created)
                expected.append(("MODIFIED", name, rv(created)))
            conn.ok("DELETE", cm_path(namespace, name))
            expected.append(("DELETED", name, None))  # a deletion's rv is the server's

    # Each stream ends by itself after timeoutSeconds=10 at the latest.
    deadline = time.monotonic() + 15
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "watches still reading after 15 s"
    assert not failures, failures
    for got in seen:
        assert [(kind, name) for kind, name, _ in got] == [(k, n) for k, n, _ in expected]
        rvs = [v for _, _, v in got]
        assert rvs == sorted(set(rvs)) and rvs[0] > start_rv  # strictly increasing
        for got_rv, (_, _, want_rv) in zip(rvs, expected, strict=True):
            assert want_rv is None or got_rv == want_rv


# -- 4. expired resourceVersion ----------------------------------------------------


def test_watch_from_compacted_resource_version_is_expired(tmp_path: Path) -> None:
    c = EmbeddedCluster(directory=tmp_path, history=50).start()
    api = config.new_client_from_config(config_file=str(c.kubeconfig))
    try:
        with Conn(c) as conn:
            make_namespace(conn, "history")
            cm = conn.ok("POST", cm_path("history"), {"metadata": {"name": "cm"}, "data": {}})
            rvs = []
            for i in range(199):
                cm["data"] = {"i": str(i)}
                cm = conn.ok("PUT", cm_path("history", "cm"), cm)
                rvs.append(rv(cm))

            # Raw HTTP: a 200 stream carrying exactly one ERROR event with a 410 Status.
            resp = conn.send("GET", cm_path("history", watch="1", resourceVersion="2"))
            assert resp.status == 200
            assert resp.getheader("Content-Type") == "application/json"
            got = list(events(resp))
            assert len(got) == 1 and got[0]["type"] == "ERROR"
            status = got[0]["object"]
            assert status["kind"] == "Status" and status["status"] == "Failure"
            assert status["code"] == 410 and status["reason"] == "Expired"

            # A resourceVersion still in the history resumes as usual on the same connection.
            resp = conn.send("GET", cm_path("history", watch="1", resourceVersion=str(rvs[-11])))
            assert resp.status == 200
            stream = events(resp)
            resumed = [next(stream) for _ in range(10)]
            assert [(e["type"], rv(e["object"])) for e in resumed] == [
                ("MODIFIED", v) for v in rvs[-10:]
            ]

        core = client.CoreV1Api(api)
        assert c.api is not None
        # With a timeout the client does not retry: the 410 surfaces at once ...
        before = c.api.request_count
        with pytest.raises(ApiException) as exc:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map, "history", resource_version="2", timeout_seconds=5
            ):
                pass
        assert exc.value.status == 410 and "Expired" in str(exc.value.reason)
        assert c.api.request_count - before == 1
        # ... without one it retries once from the same resourceVersion, then raises.
        before = c.api.request_count
        with pytest.raises(ApiException) as exc:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map,
                "history",
                resource_version="2",
                _request_timeout=10,  # a read timeout only: the client still retries a 410
            ):
                pass
        assert exc.value.status == 410
        assert c.api.request_count - before == 2
    finally:
        api.close()
        c.stop()


# -- 5. watch-list (sendInitialEvents) ---------------------------------------------

WATCH_LIST = {
    "watch": "1",
    "sendInitialEvents": "true",
    "resourceVersionMatch": "NotOlderThan",
    "allowWatchBookmarks": "true",
    "timeoutSeconds": "10",
}


def read_initial_events(
    stream: Iterator[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The events up to the initial-events-end bookmark, and that bookmark."""
    before = []
    for event in stream:
        if event["type"] == "BOOKMARK":
            return before, event
        before.append(event)
    raise AssertionError(f"the stream ended without a bookmark after {before}")


def test_watch_list_sends_initial_events_then_bookmark_then_live(
    cluster: EmbeddedCluster, namespace: str
) -> None:
    names = [f"cm-{k}" for k in range(5)]
    with Conn(cluster) as conn, Conn(cluster) as writer:
        for name in names:
            conn.ok("POST", cm_path(namespace), {"metadata": {"name": name}, "data": {}})
        listed_rv = rv(conn.ok("GET", cm_path(namespace)))

        resp = conn.send("GET", cm_path(namespace, **WATCH_LIST, **OURS))
        assert resp.status == 200
        stream = events(resp)
        initial, bookmark = read_initial_events(stream)
        assert sorted(e["object"]["metadata"]["name"] for e in initial) == names
        assert {e["type"] for e in initial} == {"ADDED"}
        assert bookmark["object"]["kind"] == "ConfigMap"
        assert bookmark["object"]["metadata"]["annotations"] == {
            "k8s.io/initial-events-end": "true"
        }
        bookmark_rv = rv(bookmark["object"])
        assert bookmark_rv >= listed_rv
        assert all(rv(e["object"]) <= bookmark_rv for e in initial)

        added = writer.ok("POST", cm_path(namespace), {"metadata": {"name": "live"}})
        changed = writer.ok(
            "PATCH",
            cm_path(namespace, "cm-0"),
            {"data": {"x": "1"}},
            content_type="application/merge-patch+json",
        )
        live = [next(stream), next(stream)]
        assert [(e["type"], e["object"]["metadata"]["name"], rv(e["object"])) for e in live] == [
            ("ADDED", "live", rv(added)),
            ("MODIFIED", "cm-0", rv(changed)),
        ]
        assert rv(added) > bookmark_rv


def test_watch_list_bookmark_is_not_overtaken_by_concurrent_writes(
    cluster: EmbeddedCluster, namespace: str
) -> None:
    """Writes racing a watch-list's start come after the initial-events-end bookmark.

    The initial events are the state at the bookmark's resourceVersion: a write that
    lands while the server starts the stream is a live event, delivered after it. The
    window is short, so three writers hammer objects while 60 watch-lists start.
    """
    names = [f"cm-{k}" for k in range(5)]
    hammered = names[:3]
    stop = threading.Event()
    failures: list[BaseException] = []

    def hammer(name: str) -> None:
        try:
            with Conn(cluster) as w:
                i = 0
                while not stop.is_set():
                    i += 1
                    w.ok(
                        "PATCH",
                        cm_path(namespace, name),
                        {"data": {"i": str(i)}},
                        content_type="application/merge-patch+json",
                    )
        except BaseException as e:
            failures.append(e)

    with Conn(cluster) as conn:
        for name in names:
            conn.ok("POST", cm_path(namespace), {"metadata": {"name": name}, "data": {}})
    writers = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in hammered]
    for t in writers:
        t.start()
    try:
        for attempt in range(60):
            with Conn(cluster) as conn:
                resp = conn.send("GET", cm_path(namespace, **WATCH_LIST, **OURS))
                assert resp.status == 200
                stream = events(resp)
                initial, bookmark = read_initial_events(stream)
                bookmark_rv = rv(bookmark["object"])
                seen = [
                    (e["type"], e["object"]["metadata"]["name"], rv(e["object"])) for e in initial
                ]
                context = (attempt, bookmark_rv, seen)
                assert sorted(n for _, n, _ in seen) == names, context
                assert all(t == "ADDED" and v <= bookmark_rv for t, _, v in seen), context
                after = next(stream)
                assert after["type"] == "MODIFIED" and rv(after["object"]) > bookmark_rv
    finally:
        stop.set()
        for t in writers:
            t.join(timeout=10)
    assert not failures, failures


# -- 6. timeoutSeconds ---------------------------------------------------------------


def test_watch_timeout_seconds_closes_stream(cluster: EmbeddedCluster, namespace: str) -> None:
    """timeoutSeconds=1 ends the stream cleanly after ~1 s, with and without bookmarks."""
    durations: dict[str, float] = {}
    failures: list[BaseException] = []

    def run(label: str, query: dict[str, str]) -> None:
        try:
            with Conn(cluster) as conn:
                t0 = time.monotonic()
                resp = conn.send(
                    "GET", cm_path(namespace, watch="1", timeoutSeconds="1", **query, **OURS)
                )
                assert resp.status == 200
                assert [e["type"] for e in events(resp)] in ([], ["BOOKMARK"])
                durations[label] = time.monotonic() - t0
                # The stream ended with its last chunk: the connection is still usable.
                assert conn.ok("GET", f"/api/v1/namespaces/{namespace}")
        except BaseException as e:
            failures.append(e)

    threads = [
        threading.Thread(target=run, args=("plain", {}), daemon=True),
        threading.Thread(
            target=run, args=("bookmarks", {"allowWatchBookmarks": "true"}), daemon=True
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not failures, failures
    assert set(durations) == {"plain", "bookmarks"}
    for label, took in durations.items():
        assert 0.9 <= took < 3.0, (label, took)
