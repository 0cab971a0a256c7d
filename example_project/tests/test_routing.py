"""Istio routing: the VirtualService sends traffic to the app, with sane weights and faults."""


def test_routes_go_to_the_app_service(cluster):
    vs = cluster.get("VirtualService", "sms-checker-app")
    destinations = [r["destination"]["host"] for http in vs["spec"]["http"] for r in http["route"]]
    assert destinations and all(h.startswith("sms-checker-app") for h in destinations)


def test_route_weights_add_up_to_100(cluster):
    vs = cluster.get("VirtualService", "sms-checker-app")
    for http in vs["spec"]["http"]:
        assert sum(r.get("weight", 100) for r in http["route"]) == 100


def test_fault_delay_hits_at_most_half_the_requests(cluster):
    vs = cluster.get("VirtualService", "sms-checker-app")
    for http in vs["spec"]["http"]:
        fault = http.get("fault")
        if fault and "delay" in fault:
            assert fault["delay"]["percentage"]["value"] <= 50
