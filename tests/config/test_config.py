"""devloop.yaml: the model, where the file is found, and the error for each kind of mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_devloop.config.load import load_config
from pytest_devloop.config.model import (
    ChartRelease,
    ClusterSpec,
    Config,
    ConfigError,
    ManifestSet,
    find_config,
    parse_config,
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project like the sms-checker example: a chart, values, manifests and two images."""
    chart = tmp_path / "charts" / "sms-checker"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: sms-checker\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicaCount: 1\n")
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "dev.yaml").write_text("replicaCount: 2\n")
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "servicemonitor.yaml").write_text("kind: CustomResourceDefinition\n")
    (tmp_path / "istio").mkdir()
    (tmp_path / "istio" / "kustomization.yaml").write_text("resources: []\n")
    for image in ("app", "model-service"):
        (tmp_path / image).mkdir()
        (tmp_path / image / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (tmp_path / "model-service" / "Dockerfile.dev").write_text("FROM python:3.11\n")
    return tmp_path


def write(folder: Path, text: str, name: str = "devloop.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load(folder: Path, text: str) -> Config:
    return parse_config(textwrap.dedent(text), folder / "devloop.yaml")


def error(folder: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(folder, text)
    return str(info.value)


# --------------------------------------------------------------------------- a good file


FULL = """\
    cluster:
      provider: current
      context: minikube
      allow_contexts: [team-dev]
    namespace: sms-checker
    charts:
      - name: sms-checker
        path: ./charts/sms-checker
        values: [charts/sms-checker/values.yaml, values/dev.yaml]
        set: {replicaCount: 3, ingress.enabled: true}
        set_string: {podAnnotations.build: "42"}
        image_values:
          app.image.repository: "{{.IMAGE_REPO_app}}"
          app.image.tag: "{{.IMAGE_TAG_app}}"
        create_namespace: false
        deployer: helm
        wait: false
    manifests:
      - name: crds
        path: crds
      - name: istio
        path: istio
        namespace: istio-system
    images:
      - name: app
        context: app
      - name: model-service
        context: model-service
        dockerfile: Dockerfile.dev
        build_args: {PYTHON_VERSION: "3.11"}
        target: runtime
    wait_timeout: 60
    prune: {pvcs: true}
    image_registry: localhost:5000
    prometheus: {url: http://127.0.0.1:9090}
"""


def test_full_devloop_yaml_is_read_with_absolute_paths(project: Path) -> None:
    config = load(project, FULL)

    assert config.source == project / "devloop.yaml"
    assert config.root == project
    assert config.cluster == ClusterSpec(
        provider="current", context="minikube", allow_contexts=["team-dev"]
    )
    assert config.namespace == "sms-checker"
    [chart] = config.charts
    assert chart.path == project / "charts" / "sms-checker"
    assert chart.values == [
        project / "charts" / "sms-checker" / "values.yaml",
        project / "values" / "dev.yaml",
    ]
    assert chart.set == {"replicaCount": 3, "ingress.enabled": True}
    assert chart.set_string == {"podAnnotations.build": "42"}
    assert chart.image_values == {
        "app.image.repository": "{{.IMAGE_REPO_app}}",
        "app.image.tag": "{{.IMAGE_TAG_app}}",
    }
    assert (chart.create_namespace, chart.deployer, chart.wait) == (False, "helm", False)
    assert [(m.name, m.path, m.namespace) for m in config.manifests] == [
        ("crds", project / "crds", None),
        ("istio", project / "istio", "istio-system"),
    ]
    assert [m.uses_kustomize() for m in config.manifests] == [False, True]
    app, model = config.images
    assert (app.context, app.dockerfile) == (project / "app", project / "app" / "Dockerfile")
    assert model.dockerfile == project / "model-service" / "Dockerfile.dev"
    assert (model.build_args, model.target) == ({"PYTHON_VERSION": "3.11"}, "runtime")
    assert config.wait_timeout == 60.0
    assert (config.prune.pvcs, config.prune.crds, config.prune.namespaces) == (True, False, False)
    assert config.image_registry == "localhost:5000"
    assert config.prometheus == {"url": "http://127.0.0.1:9090"}
    assert config.warnings == []
    assert config.artifact_names() == ["sms-checker", "crds", "istio", "app", "model-service"]
    assert config.namespace_for(chart) == "sms-checker"
    assert config.namespace_for(config.manifests[1]) == "istio-system"


def test_a_minimal_file_takes_the_defaults(project: Path) -> None:
    config = load(project, "charts: [{name: sms-checker, path: charts/sms-checker}]\n")

    assert config.cluster.provider == "embedded"
    assert config.cluster.split_provider() == ("embedded", None)
    assert config.namespace == "default"
    assert config.wait_timeout == 120.0
    chart = config.charts[0]
    assert (chart.namespace, chart.deployer, chart.create_namespace, chart.wait) == (
        None,
        "devloop",
        True,
        True,
    )


def test_an_image_may_share_its_name_with_a_chart(project: Path) -> None:
    # Skaffold's own Helm example builds image `skaffold-helm` for release `skaffold-helm`.
    config = load(
        project,
        """\
        charts: [{name: app, path: charts/sms-checker}]
        images: [{name: app, context: app}]
        """,
    )
    assert config.artifact_names() == ["app"]


def test_a_model_built_in_python_keeps_its_paths(tmp_path: Path) -> None:
    # Other modules build Configs directly in tests: nothing is resolved or checked on disk.
    config = Config(
        source=tmp_path / "devloop.yaml",
        root=tmp_path,
        charts=[ChartRelease(name="app", path=tmp_path / "nowhere")],
        manifests=[ManifestSet(name="crds", path=tmp_path / "crds")],
    )
    assert config.charts[0].path == tmp_path / "nowhere"


# --------------------------------------------------------------------------- each error form


def test_missing_chart_path_names_the_key_and_the_root(project: Path) -> None:
    message = error(project, "charts:\n  - name: app\n    path: ./chartz\n")
    assert message == (
        f"devloop.yaml: charts[0].path: ./chartz does not exist (paths are relative to {project})"
    )


def test_a_chart_folder_needs_a_chart_yaml(project: Path) -> None:
    message = error(project, "charts: [{name: app, path: crds}]\n")
    assert message == (
        f"devloop.yaml: charts[0].path: crds is not a Helm chart: {project / 'crds'} has no "
        "Chart.yaml (point path at the chart folder)"
    )


def test_missing_values_file_names_its_index(project: Path) -> None:
    message = error(
        project,
        """\
        charts:
          - name: app
            path: charts/sms-checker
            values: [values/dev.yaml, values/prod.yaml]
        """,
    )
    assert message == (
        "devloop.yaml: charts[0].values[1]: values/prod.yaml does not exist "
        f"(paths are relative to {project})"
    )


def test_unknown_key_suggests_the_closest_valid_key(project: Path) -> None:
    assert error(project, "chrts: []\n") == (
        "devloop.yaml: chrts: unknown key (did you mean 'charts'?)"
    )
    assert error(project, "charts: [{name: app, path: charts/sms-checker, valeus: []}]\n") == (
        "devloop.yaml: charts[0].valeus: unknown key (did you mean 'values'?)"
    )
    assert error(project, "cluster: {provder: embedded}\n") == (
        "devloop.yaml: cluster.provder: unknown key (did you mean 'provider'?)"
    )


def test_unknown_key_without_a_close_match_lists_the_valid_keys(project: Path) -> None:
    assert error(project, "prune: {everything: true}\n") == (
        "devloop.yaml: prune.everything: unknown key (valid keys: pvcs, crds, namespaces)"
    )


def test_keys_the_loader_fills_in_are_not_user_keys(project: Path) -> None:
    message = error(project, "root: /elsewhere\n")
    assert message.startswith("devloop.yaml: root: unknown key (valid keys: cluster, namespace,")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wait_timeout: soon\n", "devloop.yaml: wait_timeout: expected a number, got 'soon'"),
        ("namespace: [a]\n", "devloop.yaml: namespace: expected a string, got a list"),
        (
            "charts: {name: app}\n",
            "devloop.yaml: charts: expected a list, got a mapping",
        ),
        (
            "charts: [{name: app, path: charts/sms-checker, values: values/dev.yaml}]\n",
            "devloop.yaml: charts[0].values: expected a list, got 'values/dev.yaml' "
            "(write [values/dev.yaml] for a single item)",
        ),
        (
            "charts: [{name: app, path: charts/sms-checker, wait: maybe}]\n",
            "devloop.yaml: charts[0].wait: expected true or false, got 'maybe'",
        ),
        (
            "charts: [{name: app, path: charts/sms-checker, deployer: halm}]\n",
            "devloop.yaml: charts[0].deployer: 'halm' is not one of 'devloop' or 'helm'",
        ),
        (
            "charts: [{name: app}]\n",
            "devloop.yaml: charts[0].path: required key missing (add path:)",
        ),
        ("wait_timeout: 0\n", "devloop.yaml: wait_timeout: must be more than 0 seconds (got 0.0)"),
    ],
)
def test_wrong_types_say_what_was_expected(project: Path, text: str, expected: str) -> None:
    assert error(project, text) == expected


def test_invalid_yaml_reports_the_line(project: Path) -> None:
    message = error(
        project,
        """\
        namespace: dev
        charts:
          - name: app
           path: charts/sms-checker
        """,
    )
    assert message.startswith("devloop.yaml:4: invalid YAML: ")


def test_a_key_given_twice_is_an_error(project: Path) -> None:
    assert error(project, "namespace: a\nnamespace: b\n") == (
        "devloop.yaml:2: invalid YAML: duplicate key 'namespace' (first on line 1): keep one"
    )


def test_an_empty_file_or_a_list_is_explained(project: Path) -> None:
    assert error(project, "").startswith("devloop.yaml: the file is empty: list at least one of")
    assert error(project, "- charts\n") == (
        "devloop.yaml: expected a mapping of settings (charts:, manifests:, ...) at the top "
        "level, got a list"
    )


def test_duplicate_artifact_names_name_both_keys(project: Path) -> None:
    message = error(
        project,
        """\
        charts: [{name: sms-checker, path: charts/sms-checker}]
        manifests: [{name: crds, path: crds}, {name: sms-checker, path: istio}]
        images: [{name: app, context: app}, {name: app, context: model-service}]
        """,
    )
    assert message.splitlines() == [
        "devloop.yaml: manifests[1].name: 'sms-checker' is already the name of charts[0]: "
        "chart and manifest names must be unique, rename one",
        "devloop.yaml: images[1].name: 'app' is already built by images[0]: remove one",
    ]


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("kind", "'kind' needs a cluster name: write kind:<name>, e.g. kind:kind"),
        (
            "minikube",
            "'minikube' needs a cluster name: write minikube:<name>, e.g. minikube:minikube",
        ),
        (
            "docker-desktop",
            "'docker-desktop' is not a provider: use embedded, current, kind:<name>, "
            "minikube:<profile> or k3d:<name>",
        ),
        (
            "kind:",
            "'kind:' is not a provider: use embedded, current, kind:<name>, "
            "minikube:<profile> or k3d:<name>",
        ),
    ],
)
def test_bad_provider_forms_are_refused(project: Path, provider: str, expected: str) -> None:
    assert error(project, f"cluster: {{provider: '{provider}'}}\n") == (
        f"devloop.yaml: cluster.provider: {expected}"
    )


@pytest.mark.parametrize(
    ("provider", "parts"),
    [
        ("kind:dev", ("kind", "dev")),
        ("minikube:sms", ("minikube", "sms")),
        ("k3d:k3s-default", ("k3d", "k3s-default")),
    ],
)
def test_provider_forms_are_split(project: Path, provider: str, parts: tuple[str, str]) -> None:
    assert load(project, f"cluster: {{provider: '{provider}'}}\n").cluster.split_provider() == parts


def test_a_context_needs_the_current_provider(project: Path) -> None:
    assert error(project, "cluster: {provider: 'kind:dev', context: minikube}\n") == (
        "devloop.yaml: cluster.context: only used with provider 'current' (got provider "
        "'kind:dev'): set provider: current, or remove context"
    )


@pytest.mark.parametrize("name", ["App", "my_app", "-app", "a" * 54])
def test_release_names_follow_helm(project: Path, name: str) -> None:
    message = error(project, f"charts: [{{name: '{name}', path: charts/sms-checker}}]\n")
    assert message.startswith(f"devloop.yaml: charts[0].name: {name!r} is not a valid release name")


def test_every_problem_is_listed_on_its_own_line(project: Path) -> None:
    message = error(
        project,
        """\
        namespace: Dev
        charts: [{name: app, path: nowhere}]
        manifests: [{name: crds, path: crdz}]
        """,
    )
    assert [line.split(": ")[1] for line in message.splitlines()] == [
        "namespace",
        "charts[0].path",
        "manifests[0].path",
    ]


def test_image_context_and_dockerfile_are_checked(project: Path) -> None:
    message = error(
        project,
        """\
        images:
          - {name: app, context: ap}
          - {name: model-service, context: model-service, dockerfile: Dockerfile.prod}
          - {name: "app:v1", context: app}
        """,
    )
    assert message.splitlines() == [
        f"devloop.yaml: images[0].context: ap does not exist (paths are relative to {project})",
        "devloop.yaml: images[1].dockerfile: Dockerfile.prod does not exist in "
        f"{project / 'model-service'} (dockerfile is relative to the image context)",
        "devloop.yaml: images[2].name: 'app:v1' has a tag or digest: give the repository only "
        "(devloop tags images with the digest of their inputs)",
    ]


def test_kustomize_true_needs_a_kustomization(project: Path) -> None:
    assert error(project, "manifests: [{name: crds, path: crds, kustomize: true}]\n") == (
        f"devloop.yaml: manifests[0].kustomize: true, but {project / 'crds'} has no "
        "kustomization.yaml (add one, or remove kustomize: true)"
    )


def test_config_error_carries_path_key_and_problems(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(project, "chrts: []\nnamespace: Dev\n")
    assert info.value.path == project / "devloop.yaml"
    assert info.value.key == "chrts"
    assert [p.key for p in info.value.problems] == ["chrts", "namespace"]


# --------------------------------------------------------------------------- finding the file


def test_devloop_yaml_wins_over_skaffold_yaml(tmp_path: Path) -> None:
    write(tmp_path, "apiVersion: skaffold/v4beta11\nkind: Config\n", "skaffold.yaml")
    assert find_config(tmp_path) == tmp_path / "skaffold.yaml"
    write(tmp_path, "namespace: dev\n", "devloop.yml")
    assert find_config(tmp_path) == tmp_path / "devloop.yml"


def test_skaffold_yaml_is_read_before_skaffold_yml(tmp_path: Path) -> None:
    write(tmp_path, "", "skaffold.yml")
    assert find_config(tmp_path) == tmp_path / "skaffold.yml"
    write(tmp_path, "", "skaffold.yaml")
    assert find_config(tmp_path) == tmp_path / "skaffold.yaml"


def test_no_config_file_is_none(tmp_path: Path) -> None:
    assert find_config(tmp_path) is None
    assert load_config(tmp_path) is None


def test_an_explicit_file_is_relative_to_rootdir_and_must_exist(tmp_path: Path) -> None:
    write(tmp_path, "namespace: dev\n")
    (tmp_path / "ci").mkdir()
    explicit = write(tmp_path / "ci", "namespace: ci\n", "devloop-ci.yaml")
    assert find_config(tmp_path, Path("ci/devloop-ci.yaml")) == explicit
    with pytest.raises(ConfigError, match=r"config file .*nope\.yaml does not exist"):
        find_config(tmp_path, Path("nope.yaml"))


def test_devloop_yaml_and_devloop_yml_together_are_ambiguous(tmp_path: Path) -> None:
    write(tmp_path, "namespace: a\n")
    write(tmp_path, "namespace: b\n", "devloop.yml")
    with pytest.raises(ConfigError, match=r"both devloop\.yaml and devloop\.yml exist"):
        find_config(tmp_path)


def test_load_config_reads_the_file_found(project: Path) -> None:
    write(project, "namespace: dev\nmanifests: [{name: crds, path: crds}]\n")
    config = load_config(project)
    assert config is not None
    assert (config.namespace, config.source) == ("dev", project / "devloop.yaml")


def test_load_config_reads_an_explicit_skaffold_file_by_its_content(project: Path) -> None:
    write(
        project,
        """\
        apiVersion: skaffold/v4beta11
        kind: Config
        manifests:
          rawYaml: [crds/*.yaml]
        """,
        "pipeline.yaml",
    )
    config = load_config(project, Path("pipeline.yaml"))
    assert config is not None
    assert [m.path for m in config.manifests] == [project / "crds"]


def test_a_profile_with_devloop_yaml_is_an_error(project: Path) -> None:
    write(project, "namespace: dev\n")
    with pytest.raises(ConfigError) as info:
        load_config(project, profile="minikube")
    assert str(info.value) == (
        "devloop.yaml: --devloop-profile minikube: devloop.yaml has no profiles (profiles are "
        "read from skaffold.yaml only): drop --devloop-profile"
    )


def test_a_profile_without_any_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--devloop-profile minikube given, but there is no"):
        load_config(tmp_path, profile="minikube")
