"""Rendering charts (real Helm 3 and Helm 4) and manifest sets into desired objects, with
the errors a user sees when a template, a manifest or a dependency is wrong."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.artifacts.render import (
    ChartRenderError,
    DesiredObject,
    HelmTool,
    HookSpec,
    ManifestError,
    ObjectRef,
    RenderError,
    find_kubectl,
    helm_values_args,
    load_yaml,
    parse_stream,
    render_chart,
    render_manifests,
    uses_lookup,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "render"
CHARTS = DATA / "charts"
SHOP = CHARTS / "shop"


@pytest.fixture(params=["helm3", "helm4"])
def helm(request: pytest.FixtureRequest, tool: Callable[[str], str]) -> HelmTool:
    return HelmTool(tool(request.param))


def render(
    helm: HelmTool, chart: Path, release: str = "shop", **kwargs: Any
) -> list[DesiredObject]:
    args: dict[str, Any] = {
        "namespace": "shop-ns",
        "values_files": [],
        "set_values": {},
        "set_string": {},
        "kube_version": None,
        "api_versions": [],
    }
    args.update(kwargs)
    return render_chart(helm, release=release, chart=chart, **args)


def by_name(objects: list[DesiredObject]) -> dict[str, DesiredObject]:
    return {str(o.ref): o for o in objects}


# -- charts ----------------------------------------------------------------------------------


def test_chart_with_subchart_crd_hooks_and_list(helm: HelmTool) -> None:
    objects = render(helm, SHOP)
    assert [(o.source, str(o.ref)) for o in objects] == [
        ("shop/crds/widgets.yaml", "CustomResourceDefinition/widgets.shop.devloop.dev"),
        ("shop/templates/configmap.yaml", "ConfigMap/shop-settings"),
        ("shop/charts/cache/templates/service.yaml", "Service/shop-cache"),
        ("shop/templates/service.yaml", "Service/shop-web"),
        ("shop/templates/deployment.yaml", "Deployment/shop-web"),
        ("shop/templates/list.yaml", "ConfigMap/shop-list-a"),
        ("shop/templates/list.yaml", "ConfigMap/shop-list-b"),
        ("shop/templates/widget.yaml", "Widget/shop-widget"),
        ("shop/templates/tests/test-connection.yaml", "Pod/shop-test-connection"),
        ("shop/templates/migrate-job.yaml", "Job/shop-migrate"),
    ], "helm's order (CRDs, kinds in install order, hooks last) is kept"
    assert all(o.artifact == "shop" for o in objects)
    assert all("namespace" not in o.obj["metadata"] for o in objects), "left to the sync engine"

    objs = by_name(objects)
    job = objs["Job/shop-migrate"].hook
    assert job == HookSpec(
        events=("pre-install", "pre-upgrade"),
        weight=-5,
        delete_policies=("before-hook-creation", "hook-succeeded"),
    )
    test_hook = objs["Pod/shop-test-connection"].hook
    assert test_hook is not None and test_hook.is_test
    assert test_hook.delete_policies == ("before-hook-creation",) and test_hook.weight == 0
    assert [str(o.ref) for o in objects if o.hook is None][-1] == "Widget/shop-widget"

    # List items keep their list's source and document index; YAML reads as Kubernetes does.
    a, b = objs["ConfigMap/shop-list-a"], objs["ConfigMap/shop-list-b"]
    assert a.doc_index == b.doc_index == 0
    assert a.obj["data"] == {"date": "2024-01-01", "time": "12:30"}
    settings = objs["ConfigMap/shop-settings"].obj["data"]
    assert settings["namespace"] == "shop-ns"
    assert settings["isUpgrade"] == "false"
    assert "ConfigMap/should-not-render" not in objs, "templates/.scratch.yaml is helmignored"


def test_set_values_keep_their_types(helm: HelmTool) -> None:
    objects = render(
        helm,
        SHOP,
        set_values={
            "replicas": 3,
            "config": {"debug": True, "limits": {"memoryBytes": 2000000, "ratio": 0.75}},
            "image.tag": "1.0,beta=x {y}",
        },
        set_string={"config.tier": "true"},
    )
    objs = by_name(objects)
    assert objs["Deployment/shop-web"].obj["spec"]["replicas"] == 3
    image = objs["Deployment/shop-web"].obj["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.local/shop:1.0,beta=x {y}"
    data = objs["ConfigMap/shop-settings"].obj["data"]
    assert (data["replicas"], data["replicasType"]) == ("3", "int64")
    assert (data["debug"], data["debugType"]) == ("true", "bool")
    assert data["memoryBytes"] == "2000000", "an int set through --set-json would print 2e+06"
    assert data["ratio"] == "0.75"
    assert data["retries"] == "3", "a nested set merges into the chart's values"
    assert (data["tier"], data["tierType"]) == ("true", "string")


def test_values_file_outside_the_chart_and_capabilities(helm: HelmTool) -> None:
    objects = render(
        helm,
        SHOP,
        values_files=[DATA / "values" / "outside.yaml"],
        kube_version="v1.31.4",
        api_versions=["shop.devloop.dev/v1", "example.dev/v1"],
        is_upgrade=True,
    )
    objs = by_name(objects)
    assert objs["Deployment/shop-web"].obj["spec"]["replicas"] == 2
    data = objs["ConfigMap/shop-settings"].obj["data"]
    assert data["extra"] == "from-outside"
    assert data["kubeVersion"] == "v1.31.4"
    assert data["hasWidgets"] == "true"
    assert data["isUpgrade"] == "true"


def test_without_crds(helm: HelmTool) -> None:
    kinds = [o.obj["kind"] for o in render(helm, SHOP, include_crds=False)]
    assert "CustomResourceDefinition" not in kinds


def test_template_error_names_template_and_line(helm: HelmTool) -> None:
    chart = CHARTS / "broken-template"
    with pytest.raises(ChartRenderError) as info:
        render(helm, chart, release="web")
    e = info.value
    assert e.template == "broken-template/templates/deployment.yaml"
    assert e.line == 7
    assert e.template_path == chart / "templates" / "deployment.yaml"
    assert e.artifact == "web"
    message = str(e)
    assert message.startswith(f"chart web ({chart}): ")
    assert "nil pointer evaluating interface {}.paused" in message
    assert "Use --debug" not in message and "Error: " not in message


def test_yaml_error_in_a_template(helm: HelmTool) -> None:
    chart = CHARTS / "broken-yaml"
    with pytest.raises(ChartRenderError) as info:
        render(helm, chart, release="api")
    e = info.value
    assert e.template == "broken-yaml/templates/service.yaml"
    assert e.line == 6  # of the rendered output, as helm counts it
    assert "YAML parse error on broken-yaml/templates/service.yaml" in str(e)
    assert f"`helm template api {chart} --debug`" in str(e)


def test_error_in_an_included_template_points_at_the_include(
    helm: HelmTool, tmp_path: Path
) -> None:
    chart = tmp_path / "inc"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: inc\nversion: 0.1.0\n")
    (chart / "templates" / "_helpers.tpl").write_text(
        '{{- define "inc.name" -}}\nname: {{ .Values.a.b }}\n{{- end -}}\n'
    )
    (chart / "templates" / "cm.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  {{- include "inc.name" . | nindent 2 }}\n'
    )
    with pytest.raises(ChartRenderError) as info:
        render(helm, chart, release="inc")
    assert info.value.locations == [("inc/templates/cm.yaml", 4), ("inc/templates/_helpers.tpl", 2)]
    assert (info.value.template, info.value.line) == ("inc/templates/_helpers.tpl", 2)


def test_local_dependency_is_built(helm: HelmTool, tmp_path: Path) -> None:
    shutil.copytree(CHARTS / "local-dep", tmp_path / "local-dep")
    shutil.copytree(CHARTS / "lib", tmp_path / "lib")
    objects = render(helm, tmp_path / "local-dep", release="app")
    assert sorted(str(o.ref) for o in objects) == ["ConfigMap/app-lib", "ConfigMap/app-main"]
    assert (tmp_path / "local-dep" / "charts" / "lib-0.2.0.tgz").is_file()

    # Chart.yaml changed after Chart.lock was written: the lock is updated, still offline.
    chart_yaml = tmp_path / "local-dep" / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("0.2.0", "~0.2.0"))
    shutil.rmtree(tmp_path / "local-dep" / "charts")
    assert len(render(helm, tmp_path / "local-dep", release="app")) == 2


def test_remote_dependency_is_not_fetched(helm: HelmTool) -> None:
    with pytest.raises(RenderError) as info:
        render(helm, CHARTS / "remote-dep", release="app")
    message = str(info.value)
    assert f"run `helm dependency update {CHARTS / 'remote-dep'}`" in message
    assert "dependencies redis are missing" in message
    assert not (CHARTS / "remote-dep" / "charts").exists()


def test_missing_chart_and_values_file(helm: HelmTool, tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="the chart folder does not exist"):
        render(helm, tmp_path / "nope")
    with pytest.raises(RenderError, match=r"values file .*missing\.yaml does not exist"):
        render(helm, SHOP, values_files=[tmp_path / "missing.yaml"])


def test_helm3_and_helm4_render_the_same_objects(tool: Callable[[str], str]) -> None:
    helms = [HelmTool(tool(name)) for name in ("helm3", "helm4")]
    rendered = [
        [(o.source, o.ref.key(), o.digest, o.hook) for o in render(h, SHOP, kube_version="1.31.0")]
        for h in helms
    ]
    assert rendered[0] == rendered[1]
    # Without --kube-version each assumes its own Kubernetes version: pass the cluster's.
    defaults = [
        by_name(render(h, SHOP))["ConfigMap/shop-settings"].obj["data"]["kubeVersion"]
        for h in helms
    ]
    assert defaults[0] != defaults[1]


def test_render_speed_of_a_150_object_chart(
    helm: HelmTool, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = CHARTS / "many"
    helm.version  # noqa: B018 - asked once, outside the timing
    render(helm, chart)  # warm the page cache
    totals, helm_runs, parses = [], [], []
    for _ in range(5):
        started = time.perf_counter()
        objects = render(helm, chart)
        totals.append(time.perf_counter() - started)
        started = time.perf_counter()
        out = helm.run(["template", "shop", str(chart), "--namespace", "shop-ns", "--include-crds"])
        helm_runs.append(time.perf_counter() - started)
        started = time.perf_counter()
        parse_stream(out.stdout, artifact="shop", default_source=str(chart))
        parses.append(time.perf_counter() - started)
    assert len(objects) == 150
    with capsys.disabled():
        print(
            f"\n{helm.version}: render_chart of 150 objects ({len(out.stdout) // 1024} KiB): "
            f"best {min(totals) * 1000:.0f} ms = helm template best "
            f"{min(helm_runs) * 1000:.0f} ms + parse best {min(parses) * 1000:.1f} ms "
            f"(medians {sorted(totals)[2] * 1000:.0f} / {sorted(helm_runs)[2] * 1000:.0f} / "
            f"{sorted(parses)[2] * 1000:.1f} ms)"
        )


# -- lookup ----------------------------------------------------------------------------------


def test_uses_lookup() -> None:
    assert uses_lookup(CHARTS / "lookup")
    assert uses_lookup(CHARTS / "lookup-in-subchart"), "a subchart's helper calls lookup"
    assert not uses_lookup(CHARTS / "no-lookup"), "comments, strings, fields and text"
    assert not uses_lookup(SHOP)


def test_uses_lookup_in_a_packaged_subchart(tool: Callable[[str], str], tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    shutil.copytree(CHARTS / "no-lookup", parent)
    (parent / "charts").mkdir()
    subprocess.run(
        [tool("helm4"), "package", str(CHARTS / "lookup"), "-d", str(parent / "charts")],
        check=True,
        capture_output=True,
    )
    assert uses_lookup(parent)


# -- finding the tools -----------------------------------------------------------------------


def test_helm_version_and_major(helm: HelmTool) -> None:
    assert helm.version.startswith(f"v{helm.major}.")
    assert helm.major in (3, 4)
    assert helm.version_info >= (3, 13, 0)


def test_find_helm(
    tool: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = tool("helm4")
    monkeypatch.setenv("DEVLOOP_HELM", exe)
    assert HelmTool.find().executable == exe

    monkeypatch.setenv("DEVLOOP_HELM", str(tmp_path / "no-helm"))
    with pytest.raises(RenderError, match=r"DEVLOOP_HELM=.* is not an executable file"):
        HelmTool.find()

    # No variable, nothing on PATH: the project's .tools/ folder, helm 4 before helm 3.
    monkeypatch.delenv("DEVLOOP_HELM")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    project = tmp_path / "project"
    for version in ("helm3", "helm4"):
        (project / ".tools" / version).mkdir(parents=True)
        (project / ".tools" / version / "helm").symlink_to(exe)
    (project / "charts").mkdir()
    assert HelmTool.find(start=project / "charts").executable == str(
        project / ".tools" / "helm4" / "helm"
    )
    monkeypatch.chdir(tmp_path)
    # (Without the in-process Helm of the [helm] extra: tests/artifacts/test_helmlib.py covers it.)
    monkeypatch.setenv("DEVLOOP_HELM_BACKEND", "cli")
    with pytest.raises(RenderError) as info:
        HelmTool.find(start=tmp_path / "elsewhere")
    assert "helm is not installed" in str(info.value) and "DEVLOOP_HELM" in str(info.value)


def test_find_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVLOOP_KUBECTL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RenderError, match="kubectl is not installed"):
        find_kubectl(start=tmp_path)


# -- values flags ----------------------------------------------------------------------------


def test_helm_values_args_pick_the_flag_that_keeps_each_type(tmp_path: Path) -> None:
    args = helm_values_args(
        [tmp_path / "a.yaml"],
        {
            "replicas": 3,
            "debug": False,
            "gone": None,
            "ratio": 0.5,
            "hosts": ["a", "b"],
            "tag": "1.0,x",
            "image": {"pull.policy": "Always", "registry": {}},
        },
        {"name": "true"},
    )
    assert args == [
        "-f", str(tmp_path / "a.yaml"),
        "--set", "replicas=3",
        "--set", "debug=false",
        "--set", "gone=null",
        "--set-json", "ratio=0.5",
        "--set-json", 'hosts=["a","b"]',
        "--set-literal", "tag=1.0,x",
        "--set-literal", "image.pull\\.policy=Always",
        "--set-json", "image.registry={}",
        "--set-literal", "name=true",
    ]  # fmt: skip


# -- parsing streams -------------------------------------------------------------------------


def test_parse_stream_sources_empty_documents_and_lines() -> None:
    text = (
        "---\n# Source: app/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "metadata:\n  name: a\n"
        "---\n# Source: app/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "metadata:\n  name: a2\n"
        "---\n\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"
    )
    objects = parse_stream(text, artifact="app", default_source="charts/app")
    assert [(o.source, o.doc_index, str(o.ref)) for o in objects] == [
        ("app/templates/a.yaml", 0, "ConfigMap/a"),
        ("app/templates/a.yaml", 1, "ConfigMap/a2"),
        ("charts/app", 0, "Secret/s"),
    ]


def test_parse_stream_errors_count_lines_from_the_source_comment() -> None:
    text = (
        "---\n# Source: app/templates/ok.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "metadata:\n  name: ok\n"
        "---\n# Source: app/templates/bad.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "metadata:\n  name: bad\ndata:\n  a: b\n   c: d\n"
    )
    with pytest.raises(ManifestError) as info:
        parse_stream(text, artifact="app", default_source="x")
    assert (info.value.file, info.value.line) == ("app/templates/bad.yaml", 7)
    assert str(info.value).startswith("app/templates/bad.yaml:7: invalid YAML: ")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- a\n- b\n", "document 1 is a list, not a Kubernetes object"),
        ("just text\n", "document 1 is a string"),
        ("kind: ConfigMap\nmetadata: {name: x}\n", "has no apiVersion"),
        (
            "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: x-}\n",
            "has no metadata.name: every object needs apiVersion, kind and metadata.name "
            "(generateName cannot be applied",
        ),
        ("apiVersion: v1\nkind: List\nitems:\n- {kind: X}\n", "item 1 of the List in document 1"),
    ],
)
def test_parse_stream_rejects_non_objects(text: str, problem: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_stream(text, artifact="m", default_source="m.yaml")
    assert problem in str(info.value)
    assert info.value.doc_index == 0 and info.value.line == 1


def test_yaml_is_read_as_kubernetes_reads_it() -> None:
    (doc,) = load_yaml(
        "date: 2024-01-01\ntime: 12:30\nop: =\nyes_word: y\nno_word: No\nexp: 1e3\n"
        "octal: 0755\nnot_octal: 08\nhex: 0x1F\nunder: 1_000\ninf: -.inf\nnull_word: ~\n"
        "quoted: '123'\ntagged: !!str 123\ntagged_int: !!int '7'\n8080: port\n"
        "base: &b {x: 1, z: 2}\nmerged: {<<: *b, z: 3}\n"
    )
    assert doc == {
        "date": "2024-01-01",
        "time": "12:30",
        "op": "=",
        "yes_word": True,
        "no_word": False,
        "exp": 1000.0,
        "octal": 493,
        "not_octal": 8.0,
        "hex": 31,
        "under": 1000,
        "inf": float("-inf"),
        "null_word": None,
        "quoted": "123",
        "tagged": "123",
        "tagged_int": 7,
        "8080": "port",
        "base": {"x": 1, "z": 2},
        "merged": {"x": 1, "z": 3},
    }
    json.dumps(doc)  # everything serializes: no dates, no non-string keys


# -- objects ---------------------------------------------------------------------------------


def test_object_ref_identity_and_names() -> None:
    deploy = ObjectRef("apps/v1", "Deployment", "shop", "web")
    assert deploy.group() == "apps"
    assert deploy.key() == "apps/Deployment/shop/web"
    assert str(deploy) == "Deployment/web"
    assert deploy.long() == "Deployment.apps shop/web"
    assert deploy == ObjectRef("apps/v1beta2", "Deployment", "shop", "web"), "one object"
    assert len({deploy, ObjectRef("apps/v1beta2", "Deployment", "shop", "web")}) == 1
    assert deploy != ObjectRef("apps/v1", "Deployment", "other", "web")
    svc = ObjectRef("v1", "Service", None, "api")
    assert (svc.group(), svc.key(), svc.long()) == ("", "/Service//api", "Service api")
    role = ObjectRef.from_object(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "r"},
        }
    )
    assert role.key() == "rbac.authorization.k8s.io/ClusterRole//r"
    assert role.long() == "ClusterRole.rbac.authorization.k8s.io r"


def test_desired_object_digest_is_canonical_and_follows_changes() -> None:
    a = DesiredObject(
        "app", {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}}, "s", 0
    )
    b = DesiredObject(
        "app", {"apiVersion": "v1", "metadata": {"name": "x"}, "kind": "ConfigMap"}, "s", 0
    )
    assert a.digest == b.digest
    canonical = json.dumps(a.obj, sort_keys=True, separators=(",", ":")).encode()
    assert a.digest == hashlib.sha256(canonical).hexdigest()
    a.obj["metadata"]["namespace"] = "shop"
    assert a.digest != b.digest and a.ref.namespace == "shop"


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, None),
        ({"helm.sh/hook": "post-install"}, HookSpec(("post-install",))),
        ({"helm.sh/hook": " Test-Success "}, HookSpec(("test",))),
        (
            {"helm.sh/hook": "pre-delete", "helm.sh/hook-weight": "+3"},
            HookSpec(("pre-delete",), 3),
        ),
        ({"helm.sh/hook": "pre-delete", "helm.sh/hook-weight": "1.5"}, HookSpec(("pre-delete",))),
        (
            {"helm.sh/hook": "post-upgrade", "helm.sh/hook-delete-policy": "Hook-Failed, "},
            HookSpec(("post-upgrade",), 0, ("hook-failed",)),
        ),
    ],
)
def test_hook_annotations(annotations: dict[str, str], expected: HookSpec | None) -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": annotations}}
    assert DesiredObject("app", obj, "s", 0).hook == expected


# -- manifests -------------------------------------------------------------------------------


def test_manifest_folder() -> None:
    folder = DATA / "manifests" / "good"
    objects = render_manifests(folder, kustomize=None, artifact="base")
    assert [(o.source, o.doc_index, str(o.ref)) for o in objects] == [
        (str(folder / "00-namespace.yaml"), 0, "Namespace/shop"),
        (str(folder / "app" / "deployment.yaml"), 0, "Deployment/api"),
        (str(folder / "app" / "deployment.yaml"), 1, "Service/api"),
        (str(folder / "app" / "settings.yml"), 0, "ConfigMap/settings"),
        (str(folder / "list.json"), 0, "ConfigMap/from-json-a"),
        (str(folder / "list.json"), 0, "ConfigMap/from-json-b"),
    ], "sorted, recursive; hidden folders and non-manifest files skipped"
    settings = objects[3].obj["data"]
    assert settings == {
        "released": "2024-01-01",
        "window": "12:30",
        "operator": "=",
        "debug": "false",
    }


def test_manifest_file() -> None:
    path = DATA / "manifests" / "good" / "app" / "deployment.yaml"
    objects = render_manifests(path, kustomize=None, artifact="api")
    assert [str(o.ref) for o in objects] == ["Deployment/api", "Service/api"]


def test_manifest_folder_with_invalid_yaml_names_file_and_line() -> None:
    with pytest.raises(ManifestError) as info:
        render_manifests(DATA / "manifests" / "bad-yaml", kustomize=None, artifact="base")
    broken = DATA / "manifests" / "bad-yaml" / "b-broken.yaml"
    assert (info.value.file, info.value.line) == (str(broken), 12)
    assert str(info.value).startswith(f"{broken}:12: invalid YAML: ")
    assert info.value.artifact == "base"


def test_manifest_without_a_name_names_file_and_document() -> None:
    with pytest.raises(ManifestError) as info:
        render_manifests(DATA / "manifests" / "no-name", kustomize=None, artifact="base")
    objects = DATA / "manifests" / "no-name" / "objects.yaml"
    assert (info.value.file, info.value.doc_index, info.value.line) == (str(objects), 1, 6)
    assert str(info.value) == (
        f"{objects}:6: document 2 has no metadata.name: every object needs apiVersion, kind "
        "and metadata.name"
    )


def test_invalid_json_manifest(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{\n  "apiVersion": "v1",\n  "kind": }\n')
    with pytest.raises(ManifestError, match=r"x\.json:3: invalid JSON: Expecting value"):
        render_manifests(tmp_path, kustomize=False, artifact="m")


def test_missing_manifest_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        render_manifests(tmp_path / "nope", kustomize=None, artifact="m")


@pytest.mark.parametrize("kustomize", [None, True])
def test_kustomize_folder(
    kustomize: bool | None, tool: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVLOOP_KUBECTL", tool("kubectl"))
    folder = DATA / "kustomize" / "base"
    objects = render_manifests(folder, kustomize=kustomize, artifact="web")
    assert sorted(str(o.ref) for o in objects) == ["Deployment/dev-web", "Service/dev-web"]
    assert all(o.obj["metadata"]["labels"] == {"env": "dev"} for o in objects)
    assert {o.source for o in objects} == {str(folder / "kustomization.yaml")}


def test_kustomize_false_reads_the_files_and_skips_the_kustomization() -> None:
    objects = render_manifests(DATA / "kustomize" / "base", kustomize=False, artifact="web")
    assert [str(o.ref) for o in objects] == ["Deployment/web", "Service/web"]


def test_kustomize_error(
    tool: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVLOOP_KUBECTL", tool("kubectl"))
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(RenderError) as info:
        render_manifests(tmp_path, kustomize=None, artifact="web")
    message = str(info.value)
    assert message.startswith(f"manifests web ({tmp_path}): `kubectl kustomize` failed: ")
    assert "missing.yaml" in message and "E1" not in message


def test_parse_cache_reads_a_large_document_once_and_gives_the_same_objects(
    tmp_path: Path,
) -> None:
    from pytest_devloop.artifacts.parsecache import ParseCache

    big = "\n".join(f"    key{i}: value {i}" for i in range(400))
    text = (
        "---\n# Source: c/templates/small.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: small}\ndata: {a: '012', b: 012, c: y}\n"
        "---\n# Source: c/crds/big.yaml\napiVersion: v1\nkind: ConfigMap\n"
        f"metadata: {{name: big}}\ndata:\n{big}\n"
        "---\n# Source: c/templates/broken.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: late}\ndata: {x: 1}\n"
    )
    plain = parse_stream(text, artifact="c", default_source="c")
    cache = ParseCache(tmp_path / "parsed")
    first = parse_stream(text, artifact="c", default_source="c", cache=cache)
    fresh = ParseCache(tmp_path / "parsed")  # a new pytest run: from the files
    second = parse_stream(text, artifact="c", default_source="c", cache=fresh)
    for objs in (first, second):
        assert [(d.obj, d.source, d.doc_index) for d in objs] == [
            (d.obj, d.source, d.doc_index) for d in plain
        ]
    assert (cache.hits, fresh.hits) == (0, 1), "only the large document is cached"
    assert len(list((tmp_path / "parsed").glob("*.json"))) == 1
    second[1].obj["data"]["key0"] = "changed"
    assert (
        parse_stream(text, artifact="c", default_source="c", cache=fresh)[1].obj["data"]["key0"]
        == "value 0"
    ), "a cached value is never shared"
    bad = text.replace("data: {x: 1}", "data: {x: 1")
    with pytest.raises(ManifestError) as err:
        parse_stream(bad, artifact="c", default_source="c", cache=fresh)
    assert err.value.file == "c/templates/broken.yaml"


def test_parse_cache_keeps_small_documents_in_memory_and_reparses_only_a_changed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A watch renders the whole chart per save: only the documents whose text changed
    # are read as YAML again; small ones never go to disk.
    from pytest_devloop.artifacts import render
    from pytest_devloop.artifacts.parsecache import ParseCache

    docs = [
        f"---\n# Source: c/templates/cm{i}.yaml\napiVersion: v1\nkind: ConfigMap\n"
        f"metadata: {{name: cm{i}}}\ndata: {{a: '012', b: 012, c: y, i: '{i}'}}\n"
        for i in range(5)
    ]
    text = "".join(docs)
    cache = ParseCache(tmp_path / "parsed")
    first = parse_stream(text, artifact="c", default_source="c", cache=cache)
    composed: list[str] = []
    real = render._compose_all
    monkeypatch.setattr(render, "_compose_all", lambda t: composed.append(t) or real(t))
    changed = text.replace("i: '3'", "i: 'three'")
    second = parse_stream(changed, artifact="c", default_source="c", cache=cache)
    assert composed == [docs[3].replace("i: '3'", "i: 'three'")]
    assert [d.obj for d in second] == [
        d.obj for d in parse_stream(changed, artifact="c", default_source="c")
    ]
    assert second[0].obj == first[0].obj and second[0].obj is not first[0].obj
    assert second[3].obj["data"]["i"] == "three"
    assert [(d.source, d.doc_index) for d in second] == [(d.source, d.doc_index) for d in first]
    assert not (tmp_path / "parsed").exists()


def test_chart_queries_name_only_the_capabilities_the_templates_read(tmp_path: Path) -> None:
    from pytest_devloop.artifacts.render import chart_queries

    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "a.yaml").write_text(
        '{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}x{{ end }}\n'
        '{{/* .Capabilities.KubeVersion in a comment */}}{{ "APIVersions in a string" }}\n'
    )
    found = chart_queries(chart)
    assert (found.lookup, found.api_versions, found.kube_version) == (
        False,
        frozenset({"monitoring.coreos.com/v1"}),
        False,
    )
    caps = found.capabilities(["v1", "apps/v1"], "v1.32.0")
    assert caps == ["has:monitoring.coreos.com/v1=False"], (
        "the rest of the API list is not an input"
    )
    assert found.capabilities(["v1", "monitoring.coreos.com/v1"], "v1.33.0") != caps

    # A packed subchart reads KubeVersion and tests a version through a variable: the
    # whole API list and the server version become inputs.
    sub = tmp_path / "sub"
    (sub / "templates").mkdir(parents=True)
    (sub / "Chart.yaml").write_text("apiVersion: v2\nname: sub\nversion: 0.1.0\n")
    (sub / "templates" / "b.yaml").write_text(
        '{{ if semverCompare ">=1.30" .Capabilities.KubeVersion.Version }}{{ end }}\n'
        "{{ $v := .Values.api }}{{ if .Capabilities.APIVersions.Has $v }}{{ end }}\n"
    )
    (chart / "charts").mkdir()
    with tarfile.open(chart / "charts" / "sub-0.1.0.tgz", "w:gz") as tar:
        tar.add(sub, arcname="sub")
    found = chart_queries(chart)
    assert (found.api_versions, found.kube_version) == (None, True)
    assert found.capabilities(["v1"], "v1.32.0") == ["api-versions:v1", "kube-version:v1.32.0"]
