"""Real Kubernetes service discovery finds the embedded cluster's simulated pods.

A scraper runs as a subprocess on a loopback port with three `kubernetes_sd_configs` jobs
against the module's cluster: role `pod` in the test's namespace, role `pod` cluster-wide,
and role `endpointslice` (through a Service), each keeping only the app's pods. The pods
answer no HTTP, so their targets are `down`; only discovery is asserted, through the
Prometheus `/api/v1/targets` API: the target count follows the Deployment's scale
(1, 3, 0), and the discovered addresses are exactly the API's pod IPs. Everything stays
on 127.0.0.0/8: the API server, the scraper, and the pod IPs (127.2.0.0/16), which the
test checks.

Two scrapers, the same config and assertions:
- `prometheus`: the `tool("prometheus")` binary. Debian builds Prometheus without
  Kubernetes discovery (its config parser rejects `kubernetes_sd_configs`), so with
  Debian's 2.42 this case skips, naming why; an upstream build runs it. Its discovery
  manager forwards target groups every 5 s and its scrape manager reloads every 5 s, so
  each step may take ~10 s; the polls are bounded.
- `victoria-metrics`: Debian's `victoria-metrics` package (single-node server with
  Prometheus-compatible scraping and its own Kubernetes client), when installed.

Both send plain list+watch (Prometheus 2.42 is client-go 0.26). Newer Prometheus builds
(client-go >= 0.35) use watch-list; the last test drives that request directly.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from pytest_devloop.embedded.cluster import EmbeddedCluster

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
APP = "sd-web"
DISCOVERY_TIMEOUT = 30.0
# job -> role; "pods-all" discovers cluster-wide (no `namespaces`), the others per namespace.
JOBS = {"pods": "pod", "slices": "endpointslice", "pods-all": "pod"}
# Neither the scraper nor urllib here may use a proxy: all traffic stays on loopback.
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# What Prometheus says when it was built without Kubernetes discovery (Debian's build).
_NO_KUBERNETES_SD = "field kubernetes_sd_configs not found"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Flavor:
    """How to run one Prometheus-compatible scraper."""

    name: str
    ready_path: str
    args: Callable[[Path, int, Path], list[str]]  # (config, port, workdir) -> argv tail


FLAVORS = {
    "prometheus": Flavor(
        "prometheus",
        "/-/ready",
        lambda config, port, work: [
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={work / 'data'}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=debug",
        ],
    ),
    "victoria-metrics": Flavor(
        "victoria-metrics",
        "/health",
        lambda config, port, work: [
            f"-promscrape.config={config}",
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={work / 'data'}",
            "-retentionPeriod=1d",
            "-promscrape.kubernetesSDCheckInterval=1s",
        ],
    ),
}


class Scraper:
    """A running scraper subprocess; `fail()` builds errors carrying its log's tail."""

    def __init__(self, flavor: Flavor, exe: str, config: dict[str, Any], work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.flavor = flavor
        self.config_file = work / "config.yml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_file = work / f"{flavor.name}.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [exe, *flavor.args(self.config_file, self.port, work)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=work,
            )

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"

    def fail(self, message: str, lines: int = 40) -> AssertionError:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return AssertionError(f"{message}\n--- {self.flavor.name} log (tail) ---\n{tail}")

    def check_alive(self) -> None:
        if self.proc.poll() is None:
            return
        if _NO_KUBERNETES_SD in self.log_text():
            pytest.skip(
                f"this {self.flavor.name} build has no Kubernetes service discovery "
                f"(Debian strips it): {_NO_KUBERNETES_SD}"
            )
        raise self.fail(f"{self.flavor.name} exited with {self.proc.returncode}")

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with _DIRECT.open(self.url + self.flavor.ready_path, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise self.fail(f"{self.flavor.name} not ready on {self.url} within {timeout} s")

    def active_targets(self, job: str) -> list[dict[str, Any]]:
        with _DIRECT.open(f"{self.url}/api/v1/targets", timeout=5) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise self.fail(f"/api/v1/targets answered {body}")
        return [t for t in body["data"]["activeTargets"] if t["scrapePool"] == job]

    def wait_targets(
        self, job: str, count: int, expected_ips: Callable[[], set[str]]
    ) -> list[dict[str, Any]]:
        """Poll until `job` has `count` targets whose addresses' IPs are `expected_ips()`.

        Discovery is eventually consistent, so the IPs are part of the condition, not
        checked once.
        """
        deadline = time.monotonic() + DISCOVERY_TIMEOUT
        targets: list[dict[str, Any]] = []
        expected: set[str] = set()
        while time.monotonic() < deadline:
            self.check_alive()
            targets = self.active_targets(job)
            if len(targets) == count:
                expected = expected_ips()
                if address_ips(targets) == expected:
                    return targets
            time.sleep(0.2)
        found = sorted((t["discoveredLabels"].get("__address__", "?"), pod_ip(t)) for t in targets)
        raise self.fail(
            f"job {job!r}: expected {count} targets with pod IPs {sorted(expected)} "
            f"within {DISCOVERY_TIMEOUT} s, found {len(targets)}: {found}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def find_victoria_metrics() -> str:
    path = os.environ.get("DEVLOOP_VICTORIA_METRICS") or shutil.which("victoria-metrics")
    if not path:
        pytest.skip("victoria-metrics is not installed: apt-get install victoria-metrics")
    return path


@pytest.fixture(params=sorted(FLAVORS))
def start_scraper(
    request: pytest.FixtureRequest, tool: Callable[[str], str], tmp_path: Path
) -> Iterator[Callable[[dict[str, Any]], Scraper]]:
    """`start_scraper(config)` -> a ready scraper of this flavor; all stopped at teardown."""
    flavor = FLAVORS[request.param]
    exe = tool("prometheus") if flavor.name == "prometheus" else find_victoria_metrics()
    started: list[Scraper] = []

    def start(config: dict[str, Any]) -> Scraper:
        scraper = Scraper(flavor, exe, config, tmp_path / f"{flavor.name}-{len(started)}")
        started.append(scraper)
        scraper.wait_ready()
        return scraper

    yield start
    for scraper in started:
        scraper.stop()


def sd_job(job: str, cluster: EmbeddedCluster, namespace: str) -> dict[str, Any]:
    """A scrape job discovering `JOBS[job]` objects, kept only for the app's pods."""
    sd: dict[str, Any] = {
        "role": JOBS[job],
        "api_server": cluster.url,
        "authorization": {"credentials": cluster.token},
        "tls_config": {"ca_file": str(cluster.ca_file)},
    }
    if job != "pods-all":
        sd["namespaces"] = {"names": [namespace]}
    return {
        "job_name": job,
        "scrape_interval": "1h",
        "scrape_timeout": "1s",
        "kubernetes_sd_configs": [sd],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_label_app"],
                "regex": f"{namespace};{APP}",
                "action": "keep",
            }
        ],
    }


def deployment(replicas: int) -> dict[str, Any]:
    labels = {"app": APP}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        }
                    ]
                },
            },
        },
    }


def address_ip(target: dict[str, Any]) -> str:
    return str(target["discoveredLabels"].get("__address__", "")).rsplit(":", 1)[0]


def address_ips(targets: list[dict[str, Any]]) -> set[str]:
    return {address_ip(t) for t in targets}


def pod_ip(target: dict[str, Any]) -> str:
    return str(target["discoveredLabels"].get("__meta_kubernetes_pod_ip", ""))


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in LOOPBACK
    except ValueError:
        return False


def check_targets(scraper: Scraper, job: str, targets: list[dict[str, Any]]) -> None:
    """Every target's address and `__meta_kubernetes_pod_ip` are on 127.0.0.0/8.

    Role `pod` builds the address from the pod IP, so the two must agree. Role
    `endpointslice` takes the address from the slice and the pod labels from its pod
    cache as it was when the slice event was handled; a scraper may not refresh them when
    only the pod changes (VictoriaMetrics 1.79 does not; prometheus/prometheus#11305 is
    the like for role endpoints), so there the pod IP may stay "" until the slice changes.
    """
    for t in targets:
        ip, host = pod_ip(t), address_ip(t)
        consistent = ip == host if JOBS[job] == "pod" else ip in ("", host)
        if not (is_loopback(host) and consistent):
            raise scraper.fail(
                f"job {job!r}: address {host!r} / pod IP {ip!r} not on 127.0.0.0/8 "
                f"or not consistent: {t['discoveredLabels']}"
            )


def api_pod_ips(core: Any, namespace: str) -> set[str]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={APP}").items
    return {p.status.pod_ip for p in pods if p.status.pod_ip and not p.metadata.deletion_timestamp}


def test_kubernetes_sd_discovers_deployment_pods_and_follows_scaling(
    cluster: EmbeddedCluster,
    api_client: Any,
    namespace: str,
    start_scraper: Callable[[dict[str, Any]], Scraper],
) -> None:
    # Any: the client takes plain dicts for bodies, which its model-typed stubs reject.
    core: Any = client.CoreV1Api(api_client)
    apps: Any = client.AppsV1Api(api_client)
    scraper = start_scraper(
        {
            "global": {"scrape_interval": "1h"},
            "scrape_configs": [sd_job(job, cluster, namespace) for job in JOBS],
        }
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": APP},
            "spec": {
                "selector": {"app": APP},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
    )
    apps.create_namespaced_deployment(namespace, deployment(replicas=1))
    for replicas in (1, 3, 0):
        if replicas != 1:
            apps.patch_namespaced_deployment_scale(APP, namespace, {"spec": {"replicas": replicas}})
        for job in JOBS:
            targets = scraper.wait_targets(job, replicas, lambda: api_pod_ips(core, namespace))
            check_targets(scraper, job, targets)


def watch_lines(resp: Any) -> Iterator[dict[str, Any]]:
    """The JSON events of a raw watch response, one per line."""
    buf = b""
    for chunk in resp.stream(4096, decode_content=True):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


def test_pod_watch_list_as_newer_prometheus_sends_it(api_client: Any, namespace: str) -> None:
    """The informer request of client-go >= 0.35 (newer Prometheus builds; 2.42 lists).

    `sendInitialEvents=true&resourceVersionMatch=NotOlderThan` must stream ADDED for each
    existing pod, then a BOOKMARK annotated `k8s.io/initial-events-end`, then live events.
    """
    # Any: the client takes plain dicts for bodies, which its model-typed stubs reject.
    core: Any = client.CoreV1Api(api_client)
    apps: Any = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment(replicas=2))
    deadline = time.monotonic() + DISCOVERY_TIMEOUT
    while len(api_pod_ips(core, namespace)) < 2:
        assert time.monotonic() < deadline, "the Deployment's 2 pods never got IPs"
        time.sleep(0.05)
    existing = {p.metadata.name for p in core.list_namespaced_pod(namespace).items}

    resp = core.list_namespaced_pod(
        namespace,
        watch=True,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
        timeout_seconds=10,
        _preload_content=False,
    )
    try:
        initial: list[dict[str, Any]] = []
        events = watch_lines(resp)
        for ev in events:
            if ev["type"] == "BOOKMARK":
                bookmark = ev["object"]["metadata"]
                break
            initial.append(ev)
        else:
            raise AssertionError(f"stream ended without the initial-events-end bookmark: {initial}")
        assert bookmark.get("annotations") == {"k8s.io/initial-events-end": "true"}
        assert [e["type"] for e in initial] == ["ADDED"] * len(existing)
        assert {e["object"]["metadata"]["name"] for e in initial} == existing
        assert all(e["object"]["kind"] == "Pod" for e in initial)
        assert all(is_loopback(e["object"]["status"]["podIP"]) for e in initial)
        assert int(bookmark["resourceVersion"]) >= max(
            int(e["object"]["metadata"]["resourceVersion"]) for e in initial
        )

        apps.patch_namespaced_deployment_scale(APP, namespace, {"spec": {"replicas": 3}})
        for ev in events:
            obj = ev["object"]
            if ev["type"] == "ADDED":
                assert obj["metadata"]["name"] not in existing
                break
        else:
            raise AssertionError("no live ADDED event for the scaled-up pod")
    finally:
        resp.close()
        resp.release_conn()
