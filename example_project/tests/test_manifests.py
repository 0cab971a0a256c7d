"""Fast checks on the rendered manifests: no cluster needed (they also run with --devloop-static)."""


def test_every_container_has_requests_and_limits(rendered):
    for workload, container in rendered.containers():
        resources = container["resources"]
        assert resources["requests"], (
            f"{workload['metadata']['name']}/{container['name']}: no requests"
        )
        assert resources["limits"], f"{workload['metadata']['name']}/{container['name']}: no limits"


def test_images_are_tagged_with_their_source_digest(rendered):
    for _workload, container in rendered.containers():
        assert ":devloop-" in container["image"], container["image"]


def test_services_select_their_own_deployment(rendered):
    for name in ("sms-checker-app", "sms-checker-model"):
        service = rendered.get("Service", name)
        deployment = rendered.get("Deployment", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        for key, value in service["spec"]["selector"].items():
            assert pod_labels.get(key) == value, f"Service/{name} selects {key}={value}"
