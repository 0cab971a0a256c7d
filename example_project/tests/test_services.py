"""Services reach the pods they are meant to."""


def test_app_service_has_an_endpoint_per_ready_pod(cluster, eventually):
    app = cluster.deployment("sms-checker-app")
    eventually(lambda: len(cluster.service("sms-checker-app").endpoints()) == app.ready_replicas)


def test_model_service_selects_model_pods(cluster):
    selector = cluster.get("Service", "sms-checker-model")["spec"]["selector"]
    pods = cluster.list("Pod", selector=selector)
    assert pods, "the model Service selects no pod"
    assert all(p["metadata"]["labels"]["app.kubernetes.io/component"] == "model" for p in pods)
