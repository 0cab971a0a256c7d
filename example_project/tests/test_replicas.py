"""Replica counts: what values.yaml asks for is what runs."""


def test_app_runs_the_requested_replicas(cluster, rendered, eventually):
    wanted = rendered.get("Deployment", "sms-checker-app")["spec"]["replicas"]
    eventually(lambda: cluster.deployment("sms-checker-app").ready_replicas == wanted)


def test_model_runs_the_requested_replicas(cluster, rendered, eventually):
    wanted = rendered.get("Deployment", "sms-checker-model")["spec"]["replicas"]
    eventually(lambda: cluster.deployment("sms-checker-model").ready_replicas == wanted)
