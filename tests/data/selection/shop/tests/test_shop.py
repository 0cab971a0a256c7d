"""The scenario suite: each test reads one thing a chart edit can change."""


def test_v2_service_routes_to_v2(cluster):
    svc = cluster.must_get("Service", "shop-v2")
    assert svc["spec"]["selector"]["version"] == "v2"


def test_replicas(cluster, rendered):
    wanted = rendered.get("Deployment", "shop-v1")["spec"]["replicas"]
    assert cluster.must_get("Deployment", "shop-v1")["spec"]["replicas"] == wanted


def test_routes_annotation(cluster):
    svc = cluster.must_get("Service", "shop-v1")
    assert svc["metadata"]["annotations"]["shop/routes"].startswith("/")


def test_greeting(cluster):
    data = cluster.must_get("ConfigMap", "shop-config")["data"]
    assert dict(data)["greeting"]


def test_monitor_port(cluster):
    sm = cluster.must_get("ServiceMonitor", "shop")
    assert sm["spec"]["endpoints"][0]["port"] == "http"


def test_high_tier_pods(cluster, eventually):
    eventually(lambda: len(cluster.list("Pod", selector="tier>3")) >= 2)
