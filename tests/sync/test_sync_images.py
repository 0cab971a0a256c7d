"""Images through the sync: digest tags reach the chart, only changed images build, and
only the workloads whose image changed roll (a new ReplicaSet on the embedded cluster)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.cluster.kube import Kube, client_from_kubeconfig
from pytest_devloop.cluster.providers import Target
from pytest_devloop.config.load import load_config
from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.sync.syncer import Syncer

CHART = """\
{{- range $name := list "front" "back" }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: {{ $name }}}
spec:
  replicas: {{ index $.Values $name "replicas" }}
  selector: {matchLabels: {app: {{ $name }}}}
  template:
    metadata: {labels: {app: {{ $name }}}}
    spec:
      containers:
      - name: main
        image: "{{ index $.Values $name "image" }}"
{{- end }}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(directory=tmp_path_factory.mktemp("cluster")).start()
    yield c
    c.stop()


@pytest.fixture
def project(tmp_path: Path, tool: Callable[[str], str]) -> Iterator[tuple[Path, str]]:
    """A chart with two Deployments, each running its own image built from a context."""
    docker = tool("docker")
    repo = f"devloop-test-{uuid.uuid4().hex[:8]}"
    ns = f"img-{uuid.uuid4().hex[:6]}"
    (tmp_path / "chart" / "templates").mkdir(parents=True)
    (tmp_path / "chart" / "Chart.yaml").write_text("apiVersion: v2\nname: two\nversion: 0.1.0\n")
    (tmp_path / "chart" / "templates" / "deploy.yaml").write_text(CHART)
    (tmp_path / "values.yaml").write_text("front: {replicas: 1}\nback: {replicas: 1}\n")
    for name in ("front", "back"):
        ctx = tmp_path / "images" / name
        ctx.mkdir(parents=True)
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY message.txt /message.txt\n")
        (ctx / "message.txt").write_text(f"{name} v1\n")
        (ctx / ".dockerignore").write_text("notes.md\n")
        (ctx / "notes.md").write_text("not part of the image\n")
    (tmp_path / "devloop.yaml").write_text(
        f"""\
namespace: {ns}
images:
  - name: {repo}-front
    context: images/front
  - name: {repo}-back
    context: images/back
charts:
  - name: two
    path: chart
    values: [values.yaml]
    set:
      front.image: "{{{{image:{repo}-front}}}}"
      back.image: "{{{{image:{repo}-back}}}}"
"""
    )
    yield tmp_path, repo
    out = subprocess.run(
        [docker, "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    mine = [line for line in out.stdout.split() if line.startswith(repo)]
    if mine:
        subprocess.run([docker, "rmi", "-f", *mine], capture_output=True, check=False)


def syncer(root: Path, cluster: EmbeddedCluster, lines: list[str]) -> Syncer:
    config = load_config(root)
    assert config is not None
    # A real-cluster provider (not "embedded"), so images are really built with docker.
    target = Target("current", "devloop-embedded", str(cluster.kubeconfig), cluster.url, "local")
    return Syncer(config, target, out=lines.append)


def replicasets(cluster: EmbeddedCluster, namespace: str, app: str) -> list[dict[str, Any]]:
    kube = Kube(client_from_kubeconfig(str(cluster.kubeconfig)))
    res = kube.resource("apps/v1", "ReplicaSet")
    assert res is not None
    return kube.list(res, namespace, f"app={app}")


def image_of(cluster: EmbeddedCluster, namespace: str, name: str) -> str:
    kube = Kube(client_from_kubeconfig(str(cluster.kubeconfig)))
    res = kube.resource("apps/v1", "Deployment")
    assert res is not None
    dep = kube.get(res, namespace, name)
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def test_images_build_once_and_roll_only_their_workloads(
    project: tuple[Path, str], cluster: EmbeddedCluster
) -> None:
    root, repo = project
    lines: list[str] = []
    config = load_config(root)
    assert config is not None
    ns = config.namespace

    assert syncer(root, cluster, lines).sync().ok, lines
    built = [line for line in lines if ": built devloop-" in line]
    assert len(built) == 2, lines
    front_v1 = image_of(cluster, ns, "front")
    back_v1 = image_of(cluster, ns, "back")
    assert front_v1.startswith(f"{repo}-front:devloop-") and len(front_v1.rsplit("-", 1)[1]) == 12

    # Same inputs, fresh engine (a new pytest run): nothing built, nothing applied.
    lines.clear()
    assert syncer(root, cluster, lines).sync().ok
    assert not any(": built " in line for line in lines), lines
    assert any(f"image {repo}-front: unchanged" in line for line in lines), lines
    assert any("two: unchanged" in line for line in lines), lines

    # An ignored file and a touch without a change: same tags.
    (root / "images" / "front" / "notes.md").write_text("edited notes\n")
    (root / "images" / "back" / "message.txt").touch()
    lines.clear()
    assert syncer(root, cluster, lines).sync().ok
    assert not any(": built " in line for line in lines), lines
    assert image_of(cluster, ns, "front") == front_v1

    # A values-only change: no build, only the Deployment's replicas.
    (root / "values.yaml").write_text("front: {replicas: 2}\nback: {replicas: 1}\n")
    lines.clear()
    assert syncer(root, cluster, lines).sync().ok
    assert not any(": built " in line for line in lines), lines
    assert any("1 updated (Deployment/front: spec.replicas)" in line for line in lines), lines

    # A content change of one image: one build, one rollout (a second ReplicaSet).
    (root / "images" / "back" / "message.txt").write_text("back v2\n")
    lines.clear()
    assert syncer(root, cluster, lines).sync().ok, lines
    assert [line for line in lines if ": built " in line] == [
        line for line in lines if f"image {repo}-back: built devloop-" in line
    ]
    assert any(f"image {repo}-back: built" in line for line in lines), lines
    back_v2 = image_of(cluster, ns, "back")
    assert back_v2 != back_v1 and back_v2.startswith(f"{repo}-back:devloop-")
    assert image_of(cluster, ns, "front") == front_v1
    assert len(replicasets(cluster, ns, "back")) == 2
    assert len(replicasets(cluster, ns, "front")) == 1


def test_build_failure_applies_nothing_for_the_chart(
    project: tuple[Path, str], cluster: EmbeddedCluster
) -> None:
    root, _repo = project
    (root / "images" / "front" / "Dockerfile").write_text("FROM scratch\nCOPY missing.txt /x\n")
    lines: list[str] = []
    result = syncer(root, cluster, lines).sync()
    assert not result.ok
    text = "\n".join(lines)
    assert "Dockerfile" in text and "docker build failed" in text, text
    assert "two: error: not applied: image" in text, text
    config = load_config(root)
    assert config is not None
    kube = Kube(client_from_kubeconfig(str(cluster.kubeconfig)))
    res = kube.resource("apps/v1", "Deployment")
    assert res is not None
    assert kube.list(res, config.namespace) == []
