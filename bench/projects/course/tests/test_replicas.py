"""Replica counts of the stable versions: what values.yaml asks for is what runs."""


def test_app_runs_the_requested_replicas(cluster, rendered, eventually):
    wanted = rendered.get("Deployment", "course-app-stable")["spec"]["replicas"]
    eventually(lambda: cluster.deployment("course-app-stable").ready_replicas == wanted)


def test_model_runs_the_requested_replicas(cluster, rendered, eventually):
    wanted = rendered.get("Deployment", "course-model-stable")["spec"]["replicas"]
    eventually(lambda: cluster.deployment("course-model-stable").ready_replicas == wanted)
