"""The in-process Helm of the `[helm]` extra renders exactly what the helm CLI renders.

Each chart is rendered twice through `render_chart`: by the Helm 4 CLI, and by a
`HelmTool` that has no executable at all, so that a silent fallback to the CLI cannot make
a comparison pass. Charts the library cannot render exactly go to the CLI when there is
one, and fail naming the fix when there is none.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.artifacts import helmlib
from pytest_devloop.artifacts.render import HelmTool, RenderError, render_chart

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "tests" / "data" / "render" / "charts"
EXAMPLE = ROOT / "example_project" / "charts" / "sms-checker"
API_VERSIONS = [
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "networking.istio.io/v1",
    "shop.devloop.dev/v1",
]


@pytest.fixture
def library() -> helmlib.HelmLibrary:
    if importlib.util.find_spec("helm_python") is None:
        message = "the [helm] extra is not installed: python3 -m pip install -e '.[helm]'"
        if os.environ.get("CI"):
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return helmlib.HelmLibrary()


def rendered(helm: HelmTool, chart: Path, **kw: Any) -> list[tuple[str, int, dict[str, Any]]]:
    args: dict[str, Any] = {
        "release": chart.name,
        "chart": chart,
        "namespace": "ns1",
        "values_files": [],
        "set_values": {},
        "set_string": {},
        "kube_version": "v1.32.3",
        "api_versions": API_VERSIONS,
    }
    args.update(kw)
    return [(d.source, d.doc_index, d.obj) for d in render_chart(helm, **args)]


CASES: dict[str, tuple[Path, dict[str, Any]]] = {
    "example": (
        EXAMPLE,
        {
            "release": "sms-checker",
            "namespace": "sms-checker",
            "values_files": [EXAMPLE / "values.yaml"],
            "set_string": {"app.image.tag": "devloop-0123456789ab"},
            "set_values": {"app.image.repository": "registry.invalid/app"},
        },
    ),
    "example-upgrade-old-cluster": (
        EXAMPLE,
        {"is_upgrade": True, "kube_version": "v1.27.1", "api_versions": []},
    ),
    "shop": (CHARTS / "shop", {"set_values": {"tier": "gold", "ratio": 0.25, "debug": True}}),
    "shop-subchart-off": (CHARTS / "shop", {"set_values": {"cache": {"enabled": False}}}),
    "many": (CHARTS / "many", {}),
    "lib": (CHARTS / "lib", {}),
    "hooks": (ROOT / "tests/data/sync/hooks/charts/jobs", {"is_upgrade": True}),
    "web": (ROOT / "tests/data/sync/web/charts/web", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_in_process_render_equals_the_cli(
    case: str, library: helmlib.HelmLibrary, tool: Callable[[str], str]
) -> None:
    chart, kw = CASES[case]
    cli = rendered(HelmTool(tool("helm4")), chart, **kw)
    in_process = rendered(HelmTool("", library), chart, **kw)
    assert cli, "the chart renders objects"
    assert in_process == cli


def test_the_bench_chart_renders_in_process_like_the_cli(
    library: helmlib.HelmLibrary, tool: Callable[[str], str]
) -> None:
    chart = ROOT / "bench" / "projects" / "course" / "charts" / "course-app"
    if not chart.is_dir():
        pytest.skip("no bench chart")
    kw = {"values_files": [chart / "values.yaml"], "release": "course"}
    cli = rendered(HelmTool(tool("helm4")), chart, **kw)
    in_process = rendered(HelmTool("", library), chart, **kw)
    assert len(cli) >= 140
    assert in_process == cli


@pytest.mark.parametrize(
    ("chart", "kw", "why"),
    [
        (CHARTS / "lookup", {}, "calls lookup"),
        (CHARTS / "shop", {"set_values": {"memoryBytes": 1000000}}, "--set value is an integer"),
        (CHARTS / "broken-template", {}, "error"),
    ],
)
def test_what_it_cannot_render_exactly_goes_to_the_cli(
    chart: Path,
    kw: dict[str, Any],
    why: str,
    library: helmlib.HelmLibrary,
    tool: Callable[[str], str],
) -> None:
    def outcome(helm: HelmTool) -> Any:
        # Names only: the lookup chart makes a random password on each render.
        try:
            return [
                (s, i, o["kind"], o["metadata"]["name"]) for s, i, o in rendered(helm, chart, **kw)
            ]
        except RenderError as e:
            return str(e)

    assert outcome(HelmTool(tool("helm4"), library)) == outcome(HelmTool(tool("helm4")))
    # Without a CLI, the user is told what to install instead of getting other output.
    with pytest.raises(RenderError, match=r"cannot render this chart exactly .*install Helm"):
        rendered(HelmTool("", library), chart, **kw)


def test_find_prefers_the_cli_and_falls_back_to_the_library(
    library: helmlib.HelmLibrary,
    tool: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEVLOOP_HELM", raising=False)
    monkeypatch.delenv("DEVLOOP_HELM_BACKEND", raising=False)
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty-bin"
    monkeypatch.setenv("PATH", str(empty))
    found = HelmTool.find(start=tmp_path)
    assert found.executable == "" and found.library is not None
    assert found.version.startswith("v4.")
    with pytest.raises(RenderError, match=r"needs the helm CLI, which is not installed"):
        found.run(["dependency", "build", "x"])

    empty.mkdir()
    (empty / "helm").symlink_to(tool("helm4"))
    assert HelmTool.find(start=tmp_path).library is None  # the CLI when present
    monkeypatch.setenv("DEVLOOP_HELM_BACKEND", "inprocess")
    both = HelmTool.find(start=tmp_path)
    assert both.executable == str(empty / "helm") and both.library is not None
    # Both renderers' versions, so that fingerprints change when either does.
    assert re.fullmatch(r"v4\.\d+\.\d+ \(in-process v4\.\d+\.\d+\)", both.version)
    monkeypatch.setenv("DEVLOOP_HELM_BACKEND", "cli")
    assert HelmTool.find(start=tmp_path).library is None
    monkeypatch.setenv("DEVLOOP_HELM_BACKEND", "fast")
    with pytest.raises(RenderError, match=r"DEVLOOP_HELM_BACKEND=fast .* auto, cli or inprocess"):
        HelmTool.find(start=tmp_path)


@pytest.mark.pure
def test_documents_are_split_and_sorted_as_helm_does() -> None:
    files = {
        "c/templates/_helpers.tpl": "",
        "c/templates/NOTES.txt": "hello",
        "c/templates/b.yaml": "kind: Service\nmetadata:\n  name: s\n---\n\n---\nkind: Widget\n",
        "c/templates/a.yaml": (
            "# leading comment\nkind: Deployment\n---\nkind: Job\nmetadata:\n  annotations:\n"
            '    "helm.sh/hook": post-install\n---\nkind: Pod\nmetadata:\n  annotations:\n'
            "    helm.sh/hook: not-a-hook\n---\nkind: ConfigMap\nmetadata:\n  annotations:\n"
            "    helm.sh/hook: pre-install,pre-upgrade\n"
        ),
        "c/templates/empty.yaml": "  \n",
    }
    manifests, hooks = helmlib.sort_manifests(files)
    assert [(n, d.splitlines()[-1]) for n, d in manifests] == [
        ("c/templates/b.yaml", "  name: s"),
        ("c/templates/a.yaml", "kind: Deployment"),
        ("c/templates/b.yaml", "kind: Widget"),
    ]
    assert [d.split("kind: ")[1].split("\n")[0] for _, d in hooks] == ["ConfigMap", "Job"]


def test_a_chart_reading_the_kube_version_renders_like_the_cli_when_none_is_given(
    tmp_path: Path, library: helmlib.HelmLibrary, tool: Callable[[str], str]
) -> None:
    # The library's Helm and the CLI default to different Kubernetes versions: with no
    # version given (a render without a cluster), the CLI renders such a chart when
    # there is one; without one, the library renders it with its own default.
    chart = tmp_path / "kv"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: kv\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kv}\n"
        "data: {version: {{ .Capabilities.KubeVersion.Version | quote }}}\n"
    )
    cli = rendered(HelmTool(tool("helm4")), chart, kube_version=None)
    both = rendered(HelmTool(tool("helm4"), library), chart, kube_version=None)
    assert both == cli
    alone = rendered(HelmTool("", library), chart, kube_version=None)
    assert alone[0][2]["data"]["version"].startswith("v1.")
