"""The readiness waiter waits on watch events: requests it makes, fallbacks, expiry.

The waiter talks to an embedded cluster through a loopback proxy that records every
request (and can refuse watches, or expire the first one) so the tests count what the
waiter asked for, not how long it took.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.embedded.reconcile import SimulationConfig
from pytest_devloop.sync.readiness import Waiter, WaitTimeout, _dynamic_client

Obj = dict[str, Any]
_counter = itertools.count()


class Proxy:
    """A loopback HTTP proxy to the cluster that records requests and can misbehave."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = str(parts.hostname), int(parts.port or 80)
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.refuse_watch = False
        self.expire_watches = 0  # the next N watches answer 410 Gone as an ERROR event
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def do_PATCH(self) -> None:
                self._forward("PATCH")

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, method: str) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                proxy.requests.append((url.path, query))
                watching = query.get("watch") == ["true"]
                if watching and proxy.refuse_watch:
                    status = {"kind": "Status", "status": "Failure", "code": 405}
                    self._reply(405, json.dumps(status).encode())
                    return
                if watching and proxy.expire_watches:
                    proxy.expire_watches -= 1
                    gone = {
                        "type": "ERROR",
                        "object": {"kind": "Status", "code": 410, "reason": "Expired"},
                    }
                    self._reply(200, json.dumps(gone).encode() + b"\n")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "accept", "content-type")
                }
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                conn.request(method, self.path, body=body, headers=headers)
                response = conn.getresponse()
                self.send_response(response.status)
                self.send_header("Content-Type", response.getheader("Content-Type") or "")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    while chunk := response.read1(65536):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the waiter closed a watch it no longer needs
                finally:
                    conn.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def watches(self) -> list[str]:
        return [path for path, q in self.requests if q.get("watch") == ["true"]]

    def reads(self) -> list[str]:
        return [path for path, q in self.requests if q.get("watch") != ["true"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=0.05, job_duration=0.1),
        directory=tmp_path_factory.mktemp("cluster"),
        tls=False,
    )
    c.start()
    yield c
    c.stop()


@pytest.fixture
def proxy(cluster: EmbeddedCluster) -> Iterator[Proxy]:
    p = Proxy(cluster.url)
    yield p
    p.close()


@pytest.fixture
def api_client(cluster: EmbeddedCluster, proxy: Proxy) -> Iterator[Any]:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = proxy.url
    configuration.api_key = {"authorization": cluster.token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    api = client.ApiClient(configuration)
    yield api
    api.close()


@pytest.fixture
def namespace(api_client: Any) -> str:
    from kubernetes import client

    name = f"w-{next(_counter)}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": name}})
    return name


def apply(api_client: Any, obj: Obj) -> None:
    # The client the waiter uses, built once: discovery is not what the tests count.
    resource = _dynamic_client(api_client).resources.get(
        api_version=obj["apiVersion"], kind=obj["kind"]
    )
    resource.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"].get("namespace"),
        field_manager="devloop-test",
        force_conflicts=True,
    )


def deployment(name: str, namespace: str, replicas: int, delay: str = "0.05") -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"devloop.dev/ready-delay": delay}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
        },
    }


def pod(name: str, namespace: str, annotations: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]},
    }


def waiter(api_client: Any, timeout: float) -> Waiter:
    w = Waiter(api_client, timeout=timeout)
    _ = w.live.dynamic  # discovery before the requests the tests count
    return w


def test_a_slow_rollout_costs_one_list_and_one_watch(
    api_client: Any, namespace: str, proxy: Proxy
) -> None:
    # Pods Ready 0.6 s after binding: a poll would have read the Deployment about ten
    # times by then; the watch wakes on the status write that completes the rollout.
    apply(api_client, deployment("web", namespace, 1, delay="0.6"))
    w = waiter(api_client, timeout=10)
    assert w.wait([deployment("web", namespace, 1)]).ok
    apply(api_client, deployment("web", namespace, 3, delay="0.6"))
    proxy.requests.clear()

    result = w.wait([deployment("web", namespace, 3)])

    assert result.ok and result.ready == [f"Deployment/{namespace}/web"], result
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    assert proxy.reads() == [base] and proxy.watches() == [base]
    assert result.requests == 2
    # One object: the list and the watch name it, so no other Deployment is sent.
    assert all(q.get("fieldSelector") == ["metadata.name=web"] for _, q in proxy.requests)
    from kubernetes import client

    live = client.AppsV1Api(api_client).read_namespaced_deployment("web", namespace)
    assert live.status.ready_replicas == 3


def test_one_list_and_one_watch_per_collection(
    api_client: Any, namespace: str, proxy: Proxy
) -> None:
    objs = [
        deployment("a", namespace, 2, delay="1.5"),
        deployment("b", namespace, 1, delay="2"),
        pod("p", namespace, {"devloop.dev/ready-delay": "1.5"}),
    ]
    w = waiter(api_client, timeout=10)
    for obj in objs:
        apply(api_client, obj)
    proxy.requests.clear()

    result = w.wait(objs)

    assert result.ok and len(result.ready) == 3, result
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    pods = f"/api/v1/namespaces/{namespace}/pods"
    assert sorted(proxy.reads()) == sorted([deployments, pods])
    assert sorted(proxy.watches()) == sorted([deployments, pods])


def test_never_ready_times_out_after_one_watch(
    api_client: Any, namespace: str, proxy: Proxy
) -> None:
    never = pod("never", namespace, {"devloop.dev/never-ready": "true"})
    apply(api_client, never)
    w = waiter(api_client, timeout=0.5)
    proxy.requests.clear()

    with pytest.raises(WaitTimeout) as info:
        w.wait_or_raise([never])

    assert str(info.value).startswith("timed out after 0.5")
    assert len(proxy.watches()) == 1
    assert info.value.result.requests == 2


def test_a_refused_watch_falls_back_to_polling(
    api_client: Any, namespace: str, proxy: Proxy
) -> None:
    apply(api_client, pod("late", namespace, {"devloop.dev/ready-delay": "0.3"}))
    proxy.refuse_watch = True
    w = waiter(api_client, timeout=10)
    proxy.requests.clear()

    result = w.wait([pod("late", namespace, {})])

    assert result.ok, result
    assert len(proxy.watches()) == 1  # refused once, then only GETs
    assert len(proxy.reads()) > 2


def test_an_expired_watch_lists_again(api_client: Any, namespace: str, proxy: Proxy) -> None:
    apply(api_client, pod("late", namespace, {"devloop.dev/ready-delay": "0.3"}))
    proxy.expire_watches = 1
    w = waiter(api_client, timeout=10)
    proxy.requests.clear()

    result = w.wait([pod("late", namespace, {})])

    assert result.ok, result
    assert len(proxy.reads()) == 2 and len(proxy.watches()) == 2
