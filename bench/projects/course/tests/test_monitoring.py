"""Monitoring: the app is scraped on a port its Service has; the stack's rules exist."""


def test_service_monitor_port_exists_on_the_service(cluster):
    monitor = cluster.get("ServiceMonitor", "course-app")
    ports = {p["name"] for p in cluster.get("Service", "course-app")["spec"]["ports"]}
    assert all(e["port"] in ports for e in monitor["spec"]["endpoints"])


def test_every_rule_group_is_installed(rendered, cluster):
    wanted = {o["metadata"]["name"] for o in rendered.list("PrometheusRule")}
    assert len(wanted) >= 20
    for name in wanted:
        cluster.get("PrometheusRule", name)
