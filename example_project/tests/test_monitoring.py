"""Prometheus: the ServiceMonitor scrapes the app's Service on a port it really has."""


def test_service_monitor_selects_the_app_service(cluster):
    monitor = cluster.get("ServiceMonitor", "sms-checker-app")
    service = cluster.get("Service", "sms-checker-app")
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert service["metadata"]["labels"].get(key) == value


def test_service_monitor_port_exists_on_the_service(cluster):
    monitor = cluster.get("ServiceMonitor", "sms-checker-app")
    ports = {p["name"] for p in cluster.get("Service", "sms-checker-app")["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports, (
            f"ServiceMonitor scrapes port {endpoint['port']!r}; the Service has {sorted(ports)}"
        )
