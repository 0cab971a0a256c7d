"""Istio routing: both versions are routed, weights add up, faults stay bounded."""


def test_app_routes_go_to_the_app_service(cluster):
    vs = cluster.get("VirtualService", "course-app")
    hosts = [r["destination"]["host"] for http in vs["spec"]["http"] for r in http["route"]]
    assert hosts and all(h == "course-app" for h in hosts)


def test_route_weights_add_up_to_100(cluster):
    vs = cluster.get("VirtualService", "course-app")
    for http in vs["spec"]["http"]:
        assert sum(r.get("weight", 100) for r in http["route"]) == 100


def test_fault_delay_hits_at_most_half_the_requests(cluster):
    vs = cluster.get("VirtualService", "course-app")
    for http in vs["spec"]["http"]:
        fault = http.get("fault")
        if fault and "delay" in fault:
            assert fault["delay"]["percentage"]["value"] <= 50
