"""skaffold.yaml import: realistic v2beta29, v3 and v4beta11 files, profiles, and warnings."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_devloop.config.load import load_config
from pytest_devloop.config.model import Config, ConfigError
from pytest_devloop.config.skaffold import load_skaffold, template_image_key


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The sms-checker layout: two images, a chart, Istio and monitoring manifests."""
    files = {
        "app/Dockerfile": "FROM python:3.11-slim\n",
        "app/Dockerfile.dev": "FROM python:3.11\n",
        "model-service/Dockerfile": "FROM python:3.11-slim\n",
        "charts/sms-checker/Chart.yaml": "apiVersion: v2\nname: sms-checker\nversion: 0.1.0\n",
        "charts/sms-checker/values.yaml": "replicaCount: 1\n",
        "charts/sms-checker/templates/deployment.yaml": "kind: Deployment\n",
        "values/dev.yaml": "replicaCount: 2\n",
        "values/ci.yaml": "replicaCount: 1\n",
        "k8s/istio/gateway.yaml": "kind: Gateway\n",
        "k8s/istio/virtualservice.yaml": "kind: VirtualService\n",
        "k8s/monitoring/servicemonitor.yaml": "kind: ServiceMonitor\n",
        "k8s/monitoring/prometheusrule.yaml": "kind: PrometheusRule\n",
        "k8s/monitoring/README.md": "not a manifest\n",
        "overlays/dev/kustomization.yaml": "resources: []\n",
        "overlays/prod/kustomization.yaml": "resources: []\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def skaffold(folder: Path, text: str, profile: str | None = None) -> Config:
    return load_skaffold(textwrap.dedent(text), folder / "skaffold.yaml", profile)


def error(folder: Path, text: str, profile: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        skaffold(folder, text, profile)
    return str(info.value)


# --------------------------------------------------------------------------- v4beta11

V4 = """\
    apiVersion: skaffold/v4beta11
    kind: Config
    metadata:
      name: sms-checker
    build:
      tagPolicy:
        inputDigest: {}
      local:
        push: false
        useBuildkit: true
      artifacts:
        - image: sms-checker-app
          context: app
          docker:
            dockerfile: Dockerfile
            buildArgs:
              PYTHON_VERSION: "3.11"
          sync:
            infer: ["**/*.py"]
        - image: model-service
          context: model-service
    manifests:
      rawYaml:
        - k8s/istio/*.yaml
        - k8s/monitoring/servicemonitor.yaml
      helm:
        releases:
          - name: sms-checker
            chartPath: charts/sms-checker
            namespace: sms
            createNamespace: true
            valuesFiles:
              - charts/sms-checker/values.yaml
            setValues:
              replicaCount: 1
              ingress:
                enabled: true
            setValueTemplates:
              app.image.repository: "{{.IMAGE_REPO_sms_checker_app}}"
              app.image.tag: "{{.IMAGE_TAG_sms_checker_app}}@{{.IMAGE_DIGEST_sms_checker_app}}"
              model.image: "{{.IMAGE_FULLY_QUALIFIED_model_service}}"
              app.logLevel: debug
            skipBuildDependencies: true
          - name: grafana
            remoteChart: grafana/grafana
            repo: https://grafana.github.io/helm-charts
            version: 7.3.0
    deploy:
      kubectl:
        flags:
          apply: ["--server-side"]
      statusCheckDeadlineSeconds: 180
    portForward:
      - resourceType: service
        resourceName: sms-checker-app
        port: 8080
        localPort: 8080
    profiles:
      - name: minikube
        activation:
          - kubeContext: minikube
        deploy:
          kubeContext: minikube
        patches:
          - op: replace
            path: /manifests/helm/releases/0/valuesFiles/0
            value: values/dev.yaml
          - op: add
            path: /manifests/helm/releases/0/setValues/replicaCount
            value: 3
          - op: add
            path: /build/artifacts/0/docker/target
            value: dev
          - op: remove
            path: /manifests/rawYaml/1
      - name: ci
        build:
          artifacts:
            - image: sms-checker-app
              context: app
              docker:
                dockerfile: Dockerfile.dev
        manifests:
          rawYaml:
            - k8s/monitoring/*.yaml
"""


def test_v4beta11_maps_images_chart_and_manifests(project: Path) -> None:
    config = skaffold(project, V4)

    app, model = config.images
    assert (app.name, app.context, app.dockerfile) == (
        "sms-checker-app",
        project / "app",
        project / "app" / "Dockerfile",
    )
    assert app.build_args == {"PYTHON_VERSION": "3.11"}
    assert (model.name, model.dockerfile) == (
        "model-service",
        project / "model-service" / "Dockerfile",
    )

    [chart] = config.charts
    assert chart.name == "sms-checker"
    assert chart.path == project / "charts" / "sms-checker"
    assert chart.namespace == "sms"
    assert chart.values == [project / "charts" / "sms-checker" / "values.yaml"]
    assert chart.set == {"replicaCount": 1, "ingress.enabled": True, "app.logLevel": "debug"}
    assert chart.image_values == {
        "app.image.repository": "{{.IMAGE_REPO_sms_checker_app}}",
        "app.image.tag": "{{.IMAGE_TAG_sms_checker_app}}@{{.IMAGE_DIGEST_sms_checker_app}}",
        "model.image": "{{.IMAGE_FULLY_QUALIFIED_model_service}}",
    }
    assert chart.deployer == "devloop"

    # The glob takes the whole istio folder; the single file stays a file.
    assert [(m.name, m.path, m.kustomize) for m in config.manifests] == [
        ("k8s-istio", project / "k8s" / "istio", False),
        ("k8s-monitoring-servicemonitor", project / "k8s/monitoring/servicemonitor.yaml", False),
    ]
    assert config.cluster.provider == "embedded"
    assert config.wait_timeout == 180.0


def test_v4beta11_names_exactly_the_unsupported_fields_in_one_line(project: Path) -> None:
    config = skaffold(project, V4)

    assert config.warnings == [
        "skaffold.yaml: not supported (ignored): build.tagPolicy, build.local.push, "
        "build.local.useBuildkit, build.artifacts[0].sync, "
        "manifests.helm.releases[0].skipBuildDependencies, "
        "manifests.helm.releases[1].remoteChart, deploy.kubectl.flags, portForward[0]",
        "skaffold.yaml: profiles[0].activation ignored: devloop applies a profile only when it "
        "is named with --devloop-profile NAME",
    ]


def test_a_profile_applies_its_patches(project: Path) -> None:
    config = skaffold(project, V4, profile="minikube")

    [chart] = config.charts
    assert chart.values == [project / "values" / "dev.yaml"]
    assert chart.set["replicaCount"] == 3
    assert config.images[0].target == "dev"
    assert [m.name for m in config.manifests] == ["k8s-istio"]
    # The profile's deploy section is laid over the top-level one: kubeContext is added,
    # statusCheckDeadlineSeconds is kept.
    assert (config.cluster.provider, config.cluster.context) == ("current", "minikube")
    assert config.wait_timeout == 180.0


def test_a_profile_replaces_the_sections_it_sets(project: Path) -> None:
    config = skaffold(project, V4, profile="ci")

    # build.artifacts is replaced as a whole: model-service is gone, the Dockerfile changed.
    assert [(i.name, i.dockerfile.name) for i in config.images] == [
        ("sms-checker-app", "Dockerfile.dev")
    ]
    # manifests.rawYaml is replaced, manifests.helm (not in the profile) is kept. The glob
    # takes every YAML file of the monitoring folder (its README is not a manifest).
    assert [m.path for m in config.manifests] == [project / "k8s" / "monitoring"]
    assert [c.name for c in config.charts] == ["sms-checker"]


def test_profiles_apply_in_the_order_given(project: Path) -> None:
    config = skaffold(project, V4, profile="minikube,ci")
    # minikube set the target of the first artifact, then ci replaced the artifacts.
    assert [(i.dockerfile.name, i.target) for i in config.images] == [("Dockerfile.dev", None)]
    assert config.cluster.context == "minikube"
    # A patch written for the top-level file may not fit after another profile.
    with pytest.raises(
        ConfigError, match=r"profiles\[0\]\.patches\[3\]\.path: /manifests/rawYaml/1"
    ):
        skaffold(project, V4, profile="ci,minikube")


def test_an_unknown_profile_lists_the_available_ones(project: Path) -> None:
    assert error(project, V4, profile="staging") == (
        "skaffold.yaml: profiles: no profile named 'staging' (available: minikube, ci): "
        "check --devloop-profile"
    )


def test_load_config_applies_the_profile_of_a_skaffold_project(project: Path) -> None:
    (project / "skaffold.yaml").write_text(textwrap.dedent(V4))
    config = load_config(project, profile="minikube")
    assert config is not None
    assert config.source == project / "skaffold.yaml"
    assert config.cluster.context == "minikube"


# --------------------------------------------------------------------------- v2beta29

V2 = """\
    apiVersion: skaffold/v2beta29
    kind: Config
    build:
      artifacts:
        - image: localhost:5000/sms-checker-app
          context: app
        - image: jib-service
          jib: {}
    deploy:
      kubeContext: kind-sms
      statusCheck: true
      statusCheckDeadlineSeconds: 300
      helm:
        flags:
          upgrade: ["--atomic"]
        releases:
          - name: sms-checker
            chartPath: charts/sms-checker
            valuesFiles: [charts/sms-checker/values.yaml, values/dev.yaml]
            artifactOverrides:
              app.image: localhost:5000/sms-checker-app
            imageStrategy:
              helm: {}
            setValueTemplates:
              owner: "{{.USER}}"
            recreatePods: true
          - name: sms-checker-fqn
            chartPath: charts/sms-checker
            artifactOverrides:
              image: localhost:5000/sms-checker-app
      kubectl:
        defaultNamespace: istio-system
        manifests:
          - k8s/istio/*.yaml
      kustomize:
        paths: [overlays/dev]
        buildArgs: ["--enable-helm"]
"""


def test_v2beta29_maps_artifact_overrides_kubectl_and_kustomize(project: Path) -> None:
    config = skaffold(project, V2)

    assert [i.name for i in config.images] == ["localhost:5000/sms-checker-app"]
    helm, fqn = config.charts
    key = template_image_key("localhost:5000/sms-checker-app")
    assert key == "localhost_5000_sms_checker_app"
    # imageStrategy helm: repository and tag, as `skaffold fix` writes them.
    assert helm.image_values == {
        "app.image.tag": f"{{{{.IMAGE_TAG_{key}}}}}@{{{{.IMAGE_DIGEST_{key}}}}}",
        "app.image.repository": f"{{{{.IMAGE_REPO_{key}}}}}",
    }
    assert fqn.image_values == {"image": f"{{{{.IMAGE_FULLY_QUALIFIED_{key}}}}}"}
    assert helm.values == [
        project / "charts" / "sms-checker" / "values.yaml",
        project / "values" / "dev.yaml",
    ]
    assert [(m.name, m.namespace, m.kustomize) for m in config.manifests] == [
        ("k8s-istio", "istio-system", False),
        ("overlays-dev", None, True),
    ]
    assert (config.cluster.provider, config.cluster.context) == ("current", "kind-sms")
    assert config.wait_timeout == 300.0


def test_v2beta29_warnings(project: Path) -> None:
    config = skaffold(project, V2)

    assert config.warnings == [
        "skaffold.yaml: not supported (ignored): build.artifacts[1].jib, deploy.helm.flags, "
        "deploy.helm.releases[0].recreatePods, deploy.kustomize.buildArgs",
        "skaffold.yaml: deploy.helm.releases[0].setValueTemplates.owner: Skaffold template "
        "'{{.USER}}' not supported (ignored): devloop fills in only {{.IMAGE_...}} "
        "placeholders; write the value itself",
    ]


def test_v2_deploys_k8s_yaml_when_no_deployer_is_configured(project: Path) -> None:
    (project / "k8s" / "service.yaml").write_text("kind: Service\n")
    config = skaffold(project, "apiVersion: skaffold/v2beta29\nkind: Config\n")
    assert [m.path for m in config.manifests] == [project / "k8s" / "service.yaml"]


# --------------------------------------------------------------------------- v3

V3 = """\
    apiVersion: skaffold/v3
    kind: Config
    build:
      artifacts:
        - image: sms-checker-app
          context: app
    manifests:
      kustomize:
        paths: [overlays/dev]
      helm:
        releases:
          - name: sms-checker
            chartPath: charts/sms-checker
            setValueTemplates:
              image.repository: "{{.IMAGE_REPO_sms_checker_app}}"
              image.tag: "{{.IMAGE_TAG_sms_checker_app}}"
    deploy:
      kubectl:
        defaultNamespace: sms
      helm:
        releases:
          - name: sms-checker
            chartPath: charts/sms-checker
            setValueTemplates:
              image.repository: "{{.IMAGE_REPO_sms_checker_app}}"
              image.tag: "{{.IMAGE_TAG_sms_checker_app}}"
"""


def test_v3_release_copied_by_skaffold_fix_is_deployed_once(project: Path) -> None:
    config = skaffold(project, V3)

    [chart] = config.charts
    assert chart.image_values["image.tag"] == "{{.IMAGE_TAG_sms_checker_app}}"
    # deploy.helm releases are installed by helm, not by kubectl: no default namespace.
    assert chart.namespace is None
    [overlay] = config.manifests
    assert (overlay.path, overlay.kustomize, overlay.namespace) == (
        project / "overlays" / "dev",
        True,
        "sms",
    )
    assert overlay.uses_kustomize()
    assert config.warnings == []


def test_v3_differing_copies_of_a_release_are_reported(project: Path) -> None:
    text = V3.replace(
        "          - name: sms-checker\n            chartPath: charts/sms-checker\n"
        "            setValueTemplates:\n",
        "          - name: sms-checker\n            chartPath: charts/sms-checker\n"
        "            valuesFiles: [values/dev.yaml]\n            setValueTemplates:\n",
        1,
    )
    assert text != V3
    config = skaffold(project, text)
    assert [c.values for c in config.charts] == [[]]
    assert config.warnings == [
        "skaffold.yaml: manifests.helm.releases[0]: release 'sms-checker' is also "
        "deploy.helm.releases[0], with other settings: using deploy.helm.releases[0]"
    ]


# --------------------------------------------------------------------------- errors and edges


def test_unsupported_api_versions_are_named(project: Path) -> None:
    assert error(project, "apiVersion: skaffold/v1\nkind: Config\n") == (
        "skaffold.yaml: apiVersion: skaffold/v1 is not supported: devloop reads "
        "skaffold/v2beta*, skaffold/v3*, skaffold/v4beta* (`skaffold fix` upgrades an older file)"
    )
    assert error(project, "kind: Config\n").startswith("skaffold.yaml: apiVersion: missing")


@pytest.mark.parametrize(
    "version", ["skaffold/v2beta1", "skaffold/v3alpha1", "skaffold/v3", "skaffold/v4beta13"]
)
def test_supported_api_versions(project: Path, version: str) -> None:
    config = skaffold(project, f"apiVersion: {version}\nkind: Config\n")
    assert isinstance(config, Config)


def test_errors_name_the_skaffold_key(project: Path) -> None:
    message = error(
        project,
        """\
        apiVersion: skaffold/v4beta11
        kind: Config
        build:
          artifacts:
            - image: sms-checker-app
              context: ap
        manifests:
          helm:
            releases:
              - name: sms-checker
                chartPath: charts/sms-chekcer
                valuesFiles: [values/dev.yaml, "{{.ENV}}.yaml", values/prod.yaml]
              - chartPath: charts/sms-checker
              - name: no-chart
        deploy:
          kubectl: {}
        """,
    )
    assert message.splitlines() == [
        f"skaffold.yaml: manifests.helm.releases[0].chartPath: charts/sms-chekcer does not "
        f"exist (paths are relative to {project})",
        "skaffold.yaml: manifests.helm.releases[0].valuesFiles[2]: values/prod.yaml does not "
        f"exist (paths are relative to {project})",
        "skaffold.yaml: manifests.helm.releases[1].name: required key missing (add name:)",
        "skaffold.yaml: manifests.helm.releases[2].chartPath: required key missing (add chartPath:)",
        f"skaffold.yaml: build.artifacts[0].context: ap does not exist (paths are relative to {project})",
    ]


def test_a_wrong_type_in_skaffold_yaml_names_the_key(project: Path) -> None:
    assert error(
        project, "apiVersion: skaffold/v4beta11\nkind: Config\nmanifests:\n  rawYaml: k8s/*.yaml\n"
    ) == ("skaffold.yaml: manifests.rawYaml: expected a list, got 'k8s/*.yaml'")


def test_globs_matching_nothing_are_reported(project: Path) -> None:
    config = skaffold(
        project,
        """\
        apiVersion: skaffold/v4beta11
        kind: Config
        manifests:
          rawYaml: [k8s/istio/*.yaml, k8s/kafka/*.yaml, k8s/istio/gateway.yaml]
        """,
    )
    assert [m.name for m in config.manifests] == ["k8s-istio"]
    assert config.warnings == [
        "skaffold.yaml: manifests.rawYaml[1]: k8s/kafka/*.yaml matches no files (skipped)",
        "skaffold.yaml: manifests.rawYaml[2]: k8s/istio/gateway.yaml: already deployed with "
        "manifests.rawYaml[0] (skipped)",
    ]


def test_skaffold_default_manifests_are_used_when_nothing_deploys(project: Path) -> None:
    config = skaffold(project, "apiVersion: skaffold/v4beta11\nkind: Config\n")
    assert config.manifests == []
    assert config.warnings == [
        "skaffold.yaml: manifests.rawYaml: k8s/*.yaml (Skaffold's default when no manifests "
        "are configured) matches no files (skipped)"
    ]


def test_a_recursive_glob_becomes_one_set_per_file(project: Path) -> None:
    config = skaffold(
        project,
        "apiVersion: skaffold/v4beta11\nkind: Config\nmanifests:\n  rawYaml: ['k8s/**/*.yaml']\n",
    )
    assert [m.name for m in config.manifests] == [
        "k8s-istio-gateway",
        "k8s-istio-virtualservice",
        "k8s-monitoring-prometheusrule",
        "k8s-monitoring-servicemonitor",
    ]


def test_a_glob_taking_part_of_a_folder_becomes_one_set_per_file(project: Path) -> None:
    config = skaffold(
        project,
        "apiVersion: skaffold/v4beta11\nkind: Config\nmanifests:\n  rawYaml: [k8s/istio/v*.yaml]\n",
    )
    assert [(m.name, m.path) for m in config.manifests] == [
        ("k8s-istio-virtualservice", project / "k8s" / "istio" / "virtualservice.yaml")
    ]


def test_patch_errors_name_the_patch(project: Path) -> None:
    base = (
        "apiVersion: skaffold/v4beta11\nkind: Config\nmanifests:\n  rawYaml: [k8s/istio/*.yaml]\n"
    )
    bad_path = base + (
        "profiles:\n  - name: dev\n    patches:\n      - {op: replace, path: /manifests/rawYaml/5, value: x}\n"
    )
    assert error(project, bad_path, "dev") == (
        "skaffold.yaml: profiles[0].patches[0].path: /manifests/rawYaml/5 does not exist in the "
        "config when profile 'dev' is applied (check the keys and list indexes)"
    )
    bad_op = (
        base + "profiles:\n  - name: dev\n    patches:\n      - {op: move, from: /a, path: /b}\n"
    )
    assert error(project, bad_op, "dev") == (
        "skaffold.yaml: profiles[0].patches[0].op: 'move' is not supported by devloop: use add, "
        "replace, remove"
    )


def test_a_profile_patch_without_op_replaces(project: Path) -> None:
    config = skaffold(
        project,
        """\
        apiVersion: skaffold/v4beta11
        kind: Config
        manifests:
          rawYaml: [k8s/istio/*.yaml]
        profiles:
          - name: monitoring
            patches:
              - path: /manifests/rawYaml/0
                value: k8s/monitoring/servicemonitor.yaml
              - op: add
                path: /manifests/rawYaml/-
                value: k8s/monitoring/prometheusrule.yaml
        """,
        profile="monitoring",
    )
    assert [m.path.name for m in config.manifests] == [
        "servicemonitor.yaml",
        "prometheusrule.yaml",
    ]


def test_a_profile_build_type_replaces_the_other(project: Path) -> None:
    config = skaffold(
        project,
        """\
        apiVersion: skaffold/v4beta11
        kind: Config
        build:
          local: {push: false}
          artifacts: [{image: sms-checker-app, context: app}]
        manifests:
          rawYaml: [k8s/istio/*.yaml]
        profiles:
          - name: gcb
            build:
              googleCloudBuild: {}
        """,
        profile="gcb",
    )
    assert [i.name for i in config.images] == ["sms-checker-app"]
    assert config.warnings == ["skaffold.yaml: not supported (ignored): build.googleCloudBuild"]


def test_a_multi_config_file_is_merged(project: Path) -> None:
    config = skaffold(
        project,
        """\
        apiVersion: skaffold/v4beta11
        kind: Config
        metadata: {name: app}
        build:
          artifacts: [{image: sms-checker-app, context: app}]
        manifests:
          helm:
            releases: [{name: sms-checker, chartPath: charts/sms-checker}]
        ---
        apiVersion: skaffold/v2beta29
        kind: Config
        metadata: {name: mesh}
        build:
          artifacts: [{image: sms-checker-app, context: app}]
        deploy:
          kubectl:
            manifests: [k8s/istio/*.yaml]
        portForward:
          - {resourceType: service, resourceName: gateway, port: 80}
        """,
    )
    assert [i.name for i in config.images] == ["sms-checker-app"]
    assert [c.name for c in config.charts] == ["sms-checker"]
    assert [m.name for m in config.manifests] == ["k8s-istio"]
    assert config.warnings == [
        "skaffold.yaml: not supported (ignored): documents[1].portForward[0]"
    ]


def test_a_release_repeated_across_documents_is_an_error(project: Path) -> None:
    release = (
        "manifests:\n  helm:\n    releases: [{name: sms-checker, chartPath: charts/sms-checker}]\n"
    )
    head = "apiVersion: skaffold/v4beta11\nkind: Config\n"
    assert error(project, head + release + "---\n" + head + release) == (
        "skaffold.yaml: documents[1].manifests.helm.releases[0].name: 'sms-checker' is already "
        "the name of documents[0].manifests.helm.releases[0]: chart and manifest names must be "
        "unique, rename one"
    )


def test_a_remote_chart_is_skipped_and_named(project: Path) -> None:
    config = skaffold(
        project,
        """\
        apiVersion: skaffold/v4beta11
        kind: Config
        deploy:
          helm:
            releases:
              - name: prometheus
                remoteChart: prometheus-community/kube-prometheus-stack
                version: 56.0.0
                namespace: monitoring
        """,
    )
    assert config.charts == []
    assert config.warnings == [
        "skaffold.yaml: not supported (ignored): deploy.helm.releases[0].remoteChart"
    ]


def test_status_check_false_turns_off_waiting_for_releases(project: Path) -> None:
    config = skaffold(
        project,
        """\
        apiVersion: skaffold/v4beta11
        kind: Config
        manifests:
          helm:
            releases: [{name: sms-checker, chartPath: charts/sms-checker, wait: true}]
        deploy:
          statusCheck: false
          kubectl: {}
        """,
    )
    assert [c.wait for c in config.charts] == [False]
    assert config.warnings == []


def test_template_image_key_follows_skaffold() -> None:
    assert template_image_key("gcr.io/team/sms-checker-app") == "gcr_io_team_sms_checker_app"
