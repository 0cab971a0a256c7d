"""Watch mode's sync lists only the collections where something happened.

A Syncer fed by the watch's drift streams (`DriftWatch`, the real one, over HTTPS to an
embedded cluster) reuses what it listed last time for a collection whose stream saw no
event, and lists again where an object moved: its own apply, someone's delete, a stream
that went away. Proofs: the list requests the API server received, and the objects in the
cluster (a change made by hand is never missed).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.cluster.providers import Target
from pytest_devloop.config.load import load_config
from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.embedded.controllers import SimulationConfig
from pytest_devloop.sync.syncer import Syncer
from pytest_devloop.watch.loop import DriftWatch

OBJECTS = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{level: "{level}"}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "nginx:1.27"}}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=0.0),
        directory=tmp_path_factory.mktemp("cluster"),
    ).start()
    yield c
    c.stop()


@pytest.fixture
def lists(cluster: EmbeddedCluster) -> Iterator[list[str]]:
    """Paths of the list requests the API server answers (watches and gets excluded)."""
    seen: list[str] = []
    api = cluster.api
    assert api is not None
    route = api.route

    def observe(req: Any) -> Any:
        last = req.path.rstrip("/").rsplit("/", 1)[-1]
        watch = any(k == "watch" for k, _ in _pairs(req.query))
        if req.method == "GET" and not watch and last in ("configmaps", "services", "deployments"):
            seen.append(req.path)
        return route(req)

    api.route = observe  # type: ignore[method-assign]
    yield seen
    api.route = route  # type: ignore[method-assign]


def _pairs(query: Any) -> list[tuple[str, str]]:
    if isinstance(query, dict):
        return [(k, v if isinstance(v, str) else ",".join(v)) for k, v in query.items()]
    return list(query)


class Loop:
    """A project, its Syncer and the drift watch that feeds it, as watch mode wires them."""

    def __init__(self, root: Path, cluster: EmbeddedCluster, namespace: str) -> None:
        self.root = root
        self.namespace = namespace
        (root / "k8s").mkdir(parents=True)
        self.write(level="1")
        (root / "devloop.yaml").write_text(
            f"cluster: {{provider: embedded}}\nnamespace: {namespace}\n"
            "manifests:\n  - name: web\n    path: k8s\n"
        )
        assert cluster.kubeconfig is not None
        target = Target(
            "current", "devloop-embedded", str(cluster.kubeconfig), cluster.url, "embedded"
        )
        config = load_config(root)
        assert config is not None
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.drift = DriftWatch(target, self.events.put)
        self.lines: list[str] = []
        self.syncer = Syncer(config, target, out=self.lines.append)
        self.syncer.use_change_feed(self.drift)

    def write(self, **values: str) -> None:
        (self.root / "k8s" / "objects.yaml").write_text(OBJECTS.format(**values))

    def sync(self) -> Any:
        self.drift.busy.set()
        try:
            result = self.syncer.sync()
        finally:
            self.drift.busy.clear()
        assert result.ok, self.lines
        self.drift.ensure(self.syncer.kube, result.desired())
        return result

    def paths(self) -> list[str]:
        base = f"namespaces/{self.namespace}"
        return [
            f"/api/v1/{base}/configmaps",
            f"/api/v1/{base}/services",
            f"/apis/apps/v1/{base}/deployments",
        ]

    def wait_streams(self) -> None:
        """Until every collection's stream is connected and quiet for a moment (the
        objects' own events, e.g. the Deployment's status, have arrived)."""
        deadline = time.monotonic() + 20
        last: list[int | None] = []
        while time.monotonic() < deadline:
            now = [self.drift.version(p) for p in self.paths()]
            if None not in now and now == last:
                return
            last = now
            time.sleep(0.3)
        raise AssertionError(f"drift streams not settled: {last}")

    def settle(self) -> None:
        """First sync, then one with the streams connected, as a watch's first cycles."""
        self.sync()  # the drift streams start after it
        self.wait_streams()
        self.sync()  # lists with the streams connected
        self.wait_streams()

    def stop(self) -> None:
        self.drift.stop()


@pytest.fixture
def loop(
    tmp_path: Path, cluster: EmbeddedCluster, request: pytest.FixtureRequest
) -> Iterator[Loop]:
    name = request.node.name.split("[")[0].replace("_", "-")[-40:].strip("-")
    lp = Loop(tmp_path / "project", cluster, f"lc-{name}")
    yield lp
    lp.stop()


def test_a_change_lists_only_its_own_collection(loop: Loop, lists: list[str]) -> None:
    loop.settle()
    lists.clear()
    loop.write(level="2")
    result = loop.sync()
    changed = [key for a in result.artifacts for key, _ in a.changed]
    assert changed == [f"/ConfigMap/{loop.namespace}/settings"]
    assert lists == [], "the streams saw nothing move: what was listed last time holds"
    # The sync's own write moved the ConfigMaps: that collection, and only it, is listed.
    loop.sync()
    assert lists == [f"/api/v1/namespaces/{loop.namespace}/configmaps"]


def test_an_object_deleted_by_hand_is_listed_again_and_restored(
    loop: Loop, lists: list[str], cluster: EmbeddedCluster
) -> None:
    loop.settle()
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        client.CoreV1Api(api).delete_namespaced_service("web", loop.namespace)
        kind, note = loop.events.get(timeout=10)  # the drift event watch mode reacts to
        assert (kind, note) == ("drift", "Service/web was deleted in the cluster")
        lists.clear()
        loop.sync()
        assert f"/api/v1/namespaces/{loop.namespace}/services" in lists
        assert client.CoreV1Api(api).read_namespaced_service("web", loop.namespace)
    finally:
        api.close()


def test_without_a_connected_stream_every_collection_is_listed(
    loop: Loop, lists: list[str]
) -> None:
    loop.settle()
    loop.drift.stop()
    deadline = time.monotonic() + 10
    while any(loop.drift.version(p) is not None for p in loop.paths()):
        assert time.monotonic() < deadline, "the streams did not end"
        time.sleep(0.05)
    lists.clear()
    loop.write(level="3")
    loop.sync()
    assert sorted(lists) == sorted(loop.paths())
