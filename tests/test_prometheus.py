"""The `prometheus` fixture's machinery against Debian's real `prometheus` and the
embedded cluster: ServiceMonitor targets following a scale, a wrong port name failing
with the targets seen, annotation scraping, `url:` and `service:` modes (the latter
through the embedded API server's service proxy), configuration errors naming their
monitor, simulated pods answering HTTP only while Ready, and affected-test selection
after a ServiceMonitor edit.

The objects mirror the example project's chart (`sms-checker`: app Deployment, Service
with port `http`, ServiceMonitor with `jobLabel: app.kubernetes.io/name`) and use its
ServiceMonitor CRD.
"""

from __future__ import annotations

import os
import random
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_devloop.cluster.kube import Kube, client_from_kubeconfig
from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.prometheus.targets import (
    INSTALL_HINT,
    ClusterObjects,
    ClusterReader,
    EmbeddedPrometheus,
    LocalPrometheus,
    Prometheus,
    PrometheusConfigRejected,
    PrometheusHttp,
    PrometheusUnavailable,
    ScrapePlan,
    _service_http,
    prometheus_for,
    record_reads,
    resolve,
)
from pytest_devloop.selection import impact
from pytest_devloop.selection.records import Recorder

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "example_project" / "crds" / "monitoring-servicemonitor.yaml"
NS = "sms-checker"
JOB = "sms-checker"  # the Service's app.kubernetes.io/name (the monitor's jobLabel)
PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason=INSTALL_HINT)

APP_LABELS = {"app.kubernetes.io/name": "sms-checker", "app.kubernetes.io/component": "app"}


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sms-checker-app", "namespace": NS, "labels": APP_LABELS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": APP_LABELS},
            "template": {
                "metadata": {"labels": APP_LABELS},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "sms-checker-app:dev",
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "sms-checker-app", "namespace": NS, "labels": APP_LABELS},
    "spec": {
        "selector": APP_LABELS,
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
    },
}


def monitor(port: str = "http", **endpoint: Any) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": "sms-checker-app",
            "namespace": NS,
            "labels": {**APP_LABELS, "release": "prometheus"},
        },
        "spec": {
            "jobLabel": "app.kubernetes.io/name",
            "namespaceSelector": {"matchNames": [NS]},
            "selector": {"matchLabels": APP_LABELS},
            "endpoints": [
                {"port": port, "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
                | endpoint
            ],
        },
    }


class Env:
    def __init__(self, cluster: EmbeddedCluster) -> None:
        self.cluster = cluster
        self.api_client = client_from_kubeconfig(str(cluster.kubeconfig))
        self.kube = Kube(self.api_client)

    def apply(self, obj: dict[str, Any]) -> None:
        res = self.kube.resource(obj["apiVersion"], obj["kind"])
        if res is None:
            self.kube.refresh()
            res = self.kube.resource(obj["apiVersion"], obj["kind"])
        assert res is not None, obj["kind"]
        self.kube.apply(res, obj, force=True)

    def delete(self, api_version: str, kind: str, name: str, ns: str = NS) -> None:
        res = self.kube.resource(api_version, kind)
        assert res is not None
        self.kube.delete(res, ns, name)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with EmbeddedCluster() as cluster:
        e = Env(cluster)
        e.apply(yaml.safe_load(CRD.read_text()))
        e.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        deadline = time.monotonic() + 10
        while e.kube.resource("monitoring.coreos.com/v1", "ServiceMonitor") is None:
            assert time.monotonic() < deadline, "the ServiceMonitor CRD was not served"
            time.sleep(0.05)
            e.kube.refresh()
        e.apply(deployment(1))
        e.apply(SERVICE)
        e.apply(monitor())
        yield e


@pytest.fixture(scope="module")
def embedded(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPrometheus]:
    if PROMETHEUS is None:
        pytest.skip(INSTALL_HINT)
    local = LocalPrometheus(PROMETHEUS, tmp_path_factory.mktemp("prom"))
    warnings: list[str] = []
    emb = EmbeddedPrometheus(ClusterReader(env.kube).read, local, warn=warnings.append)
    emb.warnings = warnings  # type: ignore[attr-defined]
    emb.refresh()
    yield emb
    emb.stop()


@pytest.fixture
def prom(embedded: EmbeddedPrometheus) -> Prometheus:
    return Prometheus(embedded.local.http(), refresh=embedded.refresh, mode="embedded")


# -- embedded mode ----------------------------------------------------------------------------


@needs_prometheus
def test_servicemonitor_gives_one_up_target_per_replica_and_follows_a_scale(
    env: Env, prom: Prometheus
) -> None:
    [target] = prom.wait_for_targets(job=JOB, count=1, health="up", timeout=40)
    assert target.scrape_pool == "serviceMonitor/sms-checker/sms-checker-app/0"
    assert target.labels["service"] == "sms-checker-app"
    assert target.labels["namespace"] == NS
    assert target.labels["endpoint"] == "http"
    assert target.instance.startswith("127.2.") and target.instance.endswith(":8080")
    assert target.scrape_url == f"http://{target.instance}/metrics"

    env.apply(deployment(3))
    targets = prom.wait_for_targets(job=JOB, count=3, health="up", timeout=40)
    pods = {t.labels["pod"] for t in targets}
    assert len(pods) == 3 and all(p.startswith("sms-checker-app-") for p in pods)
    # The scraped series are the simulated pods' own, labelled with the pod.
    deadline = time.monotonic() + 15
    while True:
        samples = prom.query(f'devloop_simulated_up{{job="{JOB}"}}')
        if len(samples) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {s.labels["pod"] for s in samples} == pods
    assert all(s.value == 1.0 for s in samples)
    env.apply(deployment(1))
    prom.wait_for_targets(job=JOB, count=1, health="up", timeout=40)


@needs_prometheus
def test_wrong_port_name_fails_listing_the_discovered_targets(env: Env, prom: Prometheus) -> None:
    annotated = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "annotated",
            "namespace": NS,
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"},
        },
        "spec": {"containers": [{"name": "x", "image": "x", "ports": [{"containerPort": 9100}]}]},
    }
    env.apply(annotated)
    try:
        # An annotation-scraped pod appears as a target of the kubernetes-pods job.
        [pod_target] = prom.wait_for_targets(job="kubernetes-pods", count=1, timeout=40)
        assert pod_target.labels["pod"] == "annotated"
        env.apply(monitor(port="metrics"))
        prom.wait_for_targets(job=JOB, count=0, health=None, timeout=40)
        with pytest.raises(AssertionError) as info:
            prom.wait_for_targets(job=JOB, count=1, timeout=1.5)
        message = str(info.value)
        assert "expected 1 target(s) of job 'sms-checker' with health 'up'" in message
        assert "found 0" in message
        assert f"kubernetes-pods {pod_target.instance} up" in message
        assert "no target has job 'sms-checker'; jobs seen: kubernetes-pods" in message
    finally:
        env.apply(monitor())
        env.delete("v1", "Pod", "annotated")
    prom.wait_for_targets(job=JOB, count=1, timeout=40)


@needs_prometheus
def test_a_config_prometheus_rejects_names_the_monitor(
    env: Env, prom: Prometheus, embedded: EmbeddedPrometheus
) -> None:
    # The example's CRD refuses such a duration at the API (as a real server does); an older
    # CRD without the duration pattern lets it through to Prometheus, which rejects it.
    crd = yaml.safe_load(CRD.read_text())
    lenient = yaml.safe_load(
        CRD.read_text().replace("pattern: ^(0|", "x-devloop-was-pattern: ^(0|")
    )
    for version in lenient["spec"]["versions"]:
        _drop_key(version, "x-devloop-was-pattern")
    env.apply(lenient)
    try:
        env.apply(monitor(interval="15 seconds"))
        with pytest.raises(PrometheusConfigRejected) as info:
            prom.targets()
        message = str(info.value)
        assert "ServiceMonitor sms-checker/sms-checker-app endpoints[0]" in message
        assert "15 seconds" in message or "duration" in message
    finally:
        env.apply(monitor())
        env.apply(crd)
    prom.wait_for_targets(job=JOB, count=1, timeout=40)


def _drop_key(node: Any, key: str) -> None:
    if isinstance(node, dict):
        node.pop(key, None)
        for value in node.values():
            _drop_key(value, key)
    elif isinstance(node, list):
        for value in node:
            _drop_key(value, key)


@needs_prometheus
def test_unsupported_monitor_fields_are_named_in_one_warning(
    env: Env, prom: Prometheus, embedded: EmbeddedPrometheus
) -> None:
    env.apply(monitor(relabelings=[{"action": "drop"}], bearerTokenFile="/x"))
    try:
        prom.targets()
        prom.targets()
        warnings = [w for w in embedded.warnings if "sms-checker-app" in w]  # type: ignore[attr-defined]
        assert warnings == [
            "devloop: warning: ServiceMonitor sms-checker/sms-checker-app: not supported by "
            "devloop's embedded Prometheus, ignored: spec.endpoints[0].bearerTokenFile, "
            "spec.endpoints[0].relabelings"
        ]
    finally:
        env.apply(monitor())


def test_a_prometheus_resource_selects_monitors_by_its_selector() -> None:
    objs = ClusterObjects(
        service_monitors=[monitor()],
        services=[SERVICE],
        prometheuses=[
            {
                "metadata": {"name": "k8s", "namespace": "monitoring"},
                "spec": {
                    "serviceMonitorSelector": {"matchLabels": {"release": "other"}},
                    "serviceMonitorNamespaceSelector": {},
                },
            }
        ],
    )
    plan = resolve(objs)
    assert [j.name for j in plan.jobs] == ["kubernetes-pods"]
    assert plan.prometheus_key == "monitoring.coreos.com/Prometheus/monitoring/k8s"
    objs.prometheuses[0]["spec"]["serviceMonitorSelector"] = {
        "matchExpressions": [{"key": "release", "operator": "In", "values": ["prometheus"]}]
    }
    plan = resolve(objs)
    assert [j.name for j in plan.jobs] == [
        "serviceMonitor/sms-checker/sms-checker-app/0",
        "kubernetes-pods",
    ]


# -- url: and service: modes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    if PROMETHEUS is None:
        pytest.skip(INSTALL_HINT)
    local = LocalPrometheus(PROMETHEUS, tmp_path_factory.mktemp("plain"))
    local.apply(ScrapePlan())
    yield local
    local.stop()


@needs_prometheus
def test_url_mode_reads_a_running_prometheus(plain_prometheus: LocalPrometheus) -> None:
    prom = Prometheus(PrometheusHttp(plain_prometheus.url), mode="url")
    assert prom.targets() == []
    [sample] = prom.query("1 + 1")
    assert sample.value == 2.0


def test_unreachable_url_names_the_url() -> None:
    prom = Prometheus(PrometheusHttp("http://127.0.0.1:9", timeout=1), mode="url")
    with pytest.raises(
        PrometheusUnavailable, match=r"Prometheus at http://127.0.0.1:9 did not answer"
    ):
        prom.targets()


@needs_prometheus
def test_service_mode_goes_through_the_api_servers_service_proxy(
    env: Env, plain_prometheus: LocalPrometheus
) -> None:
    env.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "prometheus-operated", "namespace": NS},
            "spec": {"ports": [{"name": "web", "port": 9090}]},
        }
    )
    env.apply(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "prometheus-operated", "namespace": NS},
            "subsets": [
                {
                    "addresses": [{"ip": "127.0.0.1"}],
                    "ports": [{"name": "web", "port": plain_prometheus.port}],
                }
            ],
        }
    )
    http = _service_http(env.api_client, f"{NS}/prometheus-operated:web")
    prom = Prometheus(http, mode="service")
    [sample] = prom.query("3 * 7")
    assert sample.value == 21.0
    assert prom.targets() == []


def test_service_proxy_refuses_addresses_outside_loopback(env: Env) -> None:
    env.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "elsewhere", "namespace": NS},
            "spec": {"ports": [{"name": "web", "port": 9090}]},
        }
    )
    env.apply(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "elsewhere", "namespace": NS},
            "subsets": [
                {"addresses": [{"ip": "192.0.2.3"}], "ports": [{"name": "web", "port": 9090}]}
            ],
        }
    )
    prom = Prometheus(_service_http(env.api_client, f"{NS}/elsewhere:web"), mode="service")
    with pytest.raises(PrometheusUnavailable) as info:
        prom.targets()
    message = str(info.value)
    assert f"service {NS}/elsewhere:web" in message
    assert "outside 127.0.0.0/8 are not proxied to (192.0.2.3)" in message


# -- simulated pods answer HTTP while Ready ---------------------------------------------------


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=2) as resp:
        return int(resp.status)


def test_pods_answer_on_their_ip_only_while_ready(env: Env) -> None:
    # Embedded clusters of other processes allocate the same pod IPs: a rare port avoids
    # answering from another cluster's pod.
    port = random.randint(20000, 40000)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "containers": [{"name": "web", "image": "web", "ports": [{"containerPort": port}]}]
        },
    }
    env.apply(pod)
    pods = env.kube.resource("v1", "Pod")
    assert pods is not None
    deadline = time.monotonic() + 10
    while True:
        obj = env.kube.get(pods, NS, "web") or {}
        ip = (obj.get("status") or {}).get("podIP")
        if ip and obj["status"].get("phase") == "Running":
            try:
                if _get(f"http://{ip}:{port}/healthz") == 200:
                    break
            except OSError:
                pass
        assert time.monotonic() < deadline, "the pod never answered"
        time.sleep(0.05)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = opener.open(f"http://{ip}:{port}/metrics", timeout=2).read().decode()
    assert f'devloop_simulated_up{{namespace="{NS}",pod="web"}} 1' in body
    env.delete("v1", "Pod", "web")
    deadline = time.monotonic() + 10
    while True:
        try:
            _get(f"http://{ip}:{port}/metrics")
        except OSError:  # refused, reset or timed out: not answering
            break
        assert time.monotonic() < deadline, "a deleted pod still answers"
        time.sleep(0.05)


def test_pod_network_can_be_turned_off() -> None:
    from pytest_devloop.embedded.controllers import SimulationConfig

    with EmbeddedCluster(config=SimulationConfig(pod_network=False)) as cluster:
        assert cluster.controllers is not None
        assert cluster.controllers.pod_network is None


# -- missing binary ---------------------------------------------------------------------------


class _FakeRun:
    def __init__(self, cluster: EmbeddedCluster) -> None:
        from types import SimpleNamespace

        self.summary = SimpleNamespace(
            kubeconfig=str(cluster.kubeconfig), context=None, server=cluster.url, uid="fake"
        )
        # root: where warnings said once per cluster are kept (the cluster's own folder).
        self.config = SimpleNamespace(prometheus=None, root=Path(cluster.kubeconfig).parent)
        self.recorder = Recorder()
        self.lines: list[str] = []

    def require_cluster(self) -> Any:
        return self.summary

    def write(self, line: str) -> None:
        self.lines.append(line)


def test_no_binary_skips_with_the_install_hint_and_fails_in_ci(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "pytest_devloop.prometheus.targets.find_binary", lambda name="prometheus": None
    )
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no `prometheus` binary on PATH: install"):
        prometheus_for(_FakeRun(env.cluster))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no `prometheus` binary on PATH"):
        prometheus_for(_FakeRun(env.cluster))


@needs_prometheus
def test_prometheus_for_embedded_records_what_decides_the_targets(env: Env) -> None:
    run = _FakeRun(env.cluster)
    prom = prometheus_for(run)
    try:
        run.recorder.start("t::reads_targets")
        prom.wait_for_targets(job=JOB, count=1, timeout=40)
        data = run.recorder.stop()
    finally:
        assert prom.embedded is not None
        prom.embedded.stop()
    assert data.objects["monitoring.coreos.com/ServiceMonitor/sms-checker/sms-checker-app"] == [
        "status.targets"
    ]
    assert data.objects["/Service/sms-checker/sms-checker-app"] == ["spec"]
    assert any(r.group_kind == "/Pod" and r.namespace == NS for r in data.lists)


# -- impact: editing the monitor selects the tests that read targets --------------------------


def test_a_servicemonitor_edit_selects_the_target_tests_and_not_the_others() -> None:
    objects = {
        "apps/Deployment/sms-checker/sms-checker-app": deployment(1),
        "/Service/sms-checker/sms-checker-app": SERVICE,
        "monitoring.coreos.com/ServiceMonitor/sms-checker/sms-checker-app": monitor(),
    }
    plan = resolve(ClusterObjects(service_monitors=[monitor()], services=[SERVICE]))
    recorder = Recorder()
    recorder.start("tests/test_metrics.py::test_targets")
    record_reads(recorder, plan, JOB)
    targets = recorder.stop()
    recorder.start("tests/test_app.py::test_replicas")
    recorder.object_read("apps/Deployment/sms-checker/sms-checker-app", "spec.replicas")
    replicas = recorder.stop()
    records = {
        d.nodeid: impact.TestRecord.from_json({**d.to_json(), "outcome": "passed"})
        for d in (targets, replicas)
    }
    graph = impact.Graph.build(objects.items())

    edit = graph.closure(
        {"monitoring.coreos.com/ServiceMonitor/sms-checker/sms-checker-app": ["spec.endpoints"]}
    )
    decisions = {d.nodeid: d for d in impact.select(records, list(records), edit)}
    assert decisions["tests/test_metrics.py::test_targets"].run
    assert not decisions["tests/test_app.py::test_replicas"].run

    scale = graph.closure({"apps/Deployment/sms-checker/sms-checker-app": ["spec.replicas"]})
    decisions = {d.nodeid: d for d in impact.select(records, list(records), scale)}
    assert decisions["tests/test_metrics.py::test_targets"].run
    assert decisions["tests/test_app.py::test_replicas"].run


def test_an_unselected_monitor_and_the_prometheus_selectors_are_read_by_target_tests() -> None:
    # The Prometheus selects `release: prometheus`; the monitor says `release: nobody`.
    unselected = monitor()
    unselected["metadata"]["labels"] = {**APP_LABELS, "release": "nobody"}
    prom = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": "k8s", "namespace": NS},
        "spec": {"serviceMonitorSelector": {"matchLabels": {"release": "prometheus"}}},
    }
    sm_key = "monitoring.coreos.com/ServiceMonitor/sms-checker/sms-checker-app"
    prom_key = "monitoring.coreos.com/Prometheus/sms-checker/k8s"
    plan = resolve(
        ClusterObjects(service_monitors=[unselected], services=[SERVICE], prometheuses=[prom])
    )
    assert [j.monitor_key for j in plan.jobs if j.monitor_key] == []
    recorder = Recorder()
    recorder.start("tests/test_metrics.py::test_targets")
    record_reads(recorder, plan, JOB)
    targets = recorder.stop()
    assert targets.objects[sm_key] == ["metadata.labels", "spec"]
    assert targets.objects[prom_key] == ["spec"]
    records = {targets.nodeid: targets}
    graph = impact.Graph.build(
        [(sm_key, unselected), ("/Service/sms-checker/sms-checker-app", SERVICE), (prom_key, prom)]
    )
    for change in (
        {sm_key: ["spec.endpoints[0].port"]},  # its port
        {sm_key: ['metadata.labels["release"]']},  # relabelled so that it is selected
        {prom_key: ["spec.serviceMonitorSelector"]},  # the Prometheus' selector
        {"monitoring.coreos.com/ServiceMonitor/sms-checker/another": None},  # a new monitor
    ):
        decisions = impact.select(records, list(records), graph.closure(change))
        assert decisions[0].run, change


# -- end to end: the fixture through the plugin, on a copy of the example project -------------

SCRAPE_TESTS = """
def test_every_app_replica_is_scraped(prometheus):
    [target] = prometheus.wait_for_targets(job="sms-checker", count=1, timeout=30)
    assert target.labels["service"] == "sms-checker-app"


def test_a_monitor_scraping_nothing_fails_with_the_targets_seen(prometheus):
    prometheus.wait_for_targets(job="no-such-job", count=1, timeout=1)
"""


@pytest.mark.slow
@needs_prometheus
def test_example_project_scrape_test_is_selected_after_a_servicemonitor_edit(
    tmp_path: Path, tool: Any
) -> None:
    import subprocess
    import sys

    project = tmp_path / "example_project"
    shutil.copytree(
        ROOT / "example_project", project, ignore=shutil.ignore_patterns(".devloop", "__pycache__")
    )
    (project / "tests" / "test_scrape.py").write_text(SCRAPE_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["DEVLOOP_HELM"] = tool("helm4")

    def pytest_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:benchmark", "-rA", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    try:
        full = pytest_run()
        text = full.stdout + full.stderr
        assert "PASSED tests/test_scrape.py::test_every_app_replica_is_scraped" in text, text
        assert "FAILED tests/test_scrape.py::test_a_monitor_scraping_nothing_fails" in text, text
        assert "expected 1 target(s) of job 'no-such-job' with health 'up'" in text, text
        assert "sms-checker 127.2." in text  # the discovered target is listed
        monitor_file = project / "charts/sms-checker/templates/servicemonitor.yaml"
        monitor_file.write_text(
            monitor_file.read_text().replace(
                "scrapeTimeout: {{ .Values.monitoring.scrapeTimeout }}",
                "scrapeTimeout: {{ .Values.monitoring.scrapeTimeout }}\n      honorLabels: true",
            )
        )
        again = pytest_run("--devloop-affected")
        text = again.stdout + again.stderr
        assert "PASSED tests/test_scrape.py::test_every_app_replica_is_scraped" in text, text
        assert "tests/test_manifests.py" not in "\n".join(
            line for line in text.splitlines() if line.startswith(("PASSED", "FAILED"))
        ), text
    finally:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest_devloop",
                "cluster",
                "down",
                "--dir",
                str(project / ".devloop" / "embedded"),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )


# -- VictoriaMetrics as the scraper, waits on cluster events, count="ready" -------------------

VICTORIA_METRICS = shutil.which("victoria-metrics") or os.environ.get("DEVLOOP_VICTORIA_METRICS")


@pytest.fixture
def vm_prom(env: Env, tmp_path: Path) -> Iterator[Prometheus]:
    from pytest_devloop.prometheus.events import ClusterChanges
    from pytest_devloop.prometheus.victoria import LocalVictoriaMetrics

    if VICTORIA_METRICS is None:
        message = "victoria-metrics is not installed: apt-get install victoria-metrics"
        if os.environ.get("CI"):
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    local = LocalVictoriaMetrics(VICTORIA_METRICS, tmp_path / "vm")
    emb = EmbeddedPrometheus(ClusterReader(env.kube).read, local)
    emb.changes = ClusterChanges(env.api_client)
    emb.refresh()
    try:
        yield Prometheus(local.http(), refresh=emb.refresh, mode="embedded", changes=emb.changes)
    finally:
        emb.stop()
        env.apply(deployment(1))


def test_victoria_metrics_follows_a_scale_and_count_ready_counts_the_ready_pods(
    env: Env, vm_prom: Prometheus
) -> None:
    [one] = vm_prom.wait_for_targets(job=JOB, count="ready", timeout=20)
    assert one.health == "up" and one.scrape_pool == "serviceMonitor/sms-checker/sms-checker-app/0"

    env.apply(deployment(3))
    # "ready" follows the cluster: once the Deployment is 3/3 Ready, 3 targets are up.
    deadline = time.monotonic() + 20
    while True:
        targets = vm_prom.wait_for_targets(job=JOB, count="ready", timeout=20)
        if len(targets) == 3 or time.monotonic() > deadline:
            break
    pods = {
        p["metadata"]["name"]
        for p in env.kube.list(env.kube.resource("v1", "Pod"), NS)  # type: ignore[arg-type]
        if p["metadata"]["name"].startswith("sms-checker-app-")
    }
    assert {t.labels["pod"] for t in targets} == pods and len(pods) == 3
    assert all(t.health == "up" for t in targets)
    # The same queries the fixture offers, answered by VictoriaMetrics.
    deadline = time.monotonic() + 15
    while True:
        samples = vm_prom.query(f'up{{job="{JOB}"}}')
        if len(samples) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {s.labels["pod"] for s in samples} == pods


def test_count_ready_needs_the_embedded_mode() -> None:
    prom = Prometheus(PrometheusHttp("http://127.0.0.1:9"), mode="url")
    with pytest.raises(ValueError, match=r'count="ready"\) needs the embedded mode'):
        prom.wait_for_targets(count="ready", timeout=0.1)


@pytest.mark.pure
def test_ready_count_counts_ready_endpoints_per_scrape_pool() -> None:
    from pytest_devloop.prometheus.targets import ready_count

    def endpoint(ip: str, ready: bool | None) -> dict[str, Any]:
        e: dict[str, Any] = {"addresses": [ip], "targetRef": {"kind": "Pod", "name": ip}}
        if ready is not None:
            e["conditions"] = {"ready": ready}
        return e

    slices = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "sms-checker-app-x",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": "sms-checker-app"},
        },
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            endpoint("127.2.0.1", True),
            endpoint("127.2.0.2", None),
            endpoint("127.2.0.3", False),
        ],
    }
    plan = resolve(
        ClusterObjects(service_monitors=[monitor()], services=[SERVICE], endpoint_slices=[slices])
    )
    [job] = [j for j in plan.jobs if j.monitor_key]
    assert len(job.groups) == 3  # every endpoint is a target, as Prometheus discovers them
    assert ready_count(plan, JOB) == 2  # the not-ready one is not waited for
    assert ready_count(plan, "other") == 0
    assert ready_count(plan, None) == 2
