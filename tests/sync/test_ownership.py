"""Whose objects a sync may touch: project identity, foreign owners, removed artifacts,
write-ahead, and the upgrade from state written before identities.

Projects are written into tmp folders (one chart `app` each, real helm 4) and synced to
one namespace of an embedded cluster shared by the module. Proofs are the objects in the
cluster and the lines a user reads.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_devloop.artifacts.render import HelmTool
from pytest_devloop.cluster.kube import Kube
from pytest_devloop.cluster.providers import Target
from pytest_devloop.config.load import load_config
from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.embedded.controllers import SimulationConfig
from pytest_devloop.embedded.store import Change
from pytest_devloop.sync.ownership import PROJECT_LABEL
from pytest_devloop.sync.syncer import INVENTORY_PREFIX, Syncer, SyncResult

_counter = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=0.05, job_duration=0.1),
        directory=tmp_path_factory.mktemp("cluster"),
    ).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def k8s(cluster: EmbeddedCluster) -> Iterator[Kube]:
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield Kube(api)
    api.close()


@pytest.fixture
def helm(tool: Callable[[str], str]) -> HelmTool:
    return HelmTool(tool("helm4"))


@pytest.fixture
def namespace() -> str:
    return f"own-{next(_counter)}"


def target(c: EmbeddedCluster) -> Target:
    return Target(
        provider="current",
        context="devloop-embedded",
        kubeconfig=str(c.kubeconfig),
        server=c.url,
        display="embedded",
    )


def configmaps(names: list[str], extra: str = "") -> str:
    docs = [
        f'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "{n}"\ndata:\n  k: "{n}"\n'
        for n in names
    ]
    return "---\n".join(docs) + extra


def write_project(
    root: Path,
    namespace: str,
    charts: dict[str, str],
    *,
    project: str | None = None,
    manifests: dict[str, str] | None = None,
) -> Path:
    """A project with one chart per entry (name -> the text of its one template)."""
    doc: dict[str, Any] = {"cluster": {"provider": "embedded"}, "namespace": namespace}
    if project:
        doc["project"] = project
    doc["charts"] = []
    for name, template in charts.items():
        chart = root / "charts" / name
        (chart / "templates").mkdir(parents=True, exist_ok=True)
        (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n")
        (chart / "templates" / "all.yaml").write_text(template)
        doc["charts"].append({"name": name, "path": f"charts/{name}"})
    if manifests:
        doc["manifests"] = []
        for name, text in manifests.items():
            (root / "manifests").mkdir(parents=True, exist_ok=True)
            (root / "manifests" / f"{name}.yaml").write_text(text)
            doc["manifests"].append({"name": name, "path": f"manifests/{name}.yaml"})
    root.mkdir(parents=True, exist_ok=True)
    (root / "devloop.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def sync(
    root: Path, c: EmbeddedCluster, helm: HelmTool, **options: Any
) -> tuple[SyncResult, list[str]]:
    lines: list[str] = []
    config = load_config(root)
    assert config is not None
    syncer = Syncer(config, target(c), out=lines.append, helm=helm, **options)
    return syncer.sync(), lines


def names(k8s: Kube, namespace: str, kind: str = "ConfigMap") -> set[str]:
    res = k8s.resource("v1", kind)
    assert res is not None
    return {
        str(o["metadata"]["name"])
        for o in k8s.list(res, namespace)
        if not str(o["metadata"]["name"]).startswith((INVENTORY_PREFIX, "kube-root-ca"))
    }


def get(k8s: Kube, namespace: str, name: str, kind: str = "ConfigMap") -> dict[str, Any] | None:
    res = k8s.resource("v1", kind)
    assert res is not None
    return k8s.get(res, namespace, name)


# -- 1. identity and ownership -----------------------------------------------------------


def test_two_projects_sharing_a_namespace_keep_each_others_objects(
    cluster: EmbeddedCluster, k8s: Kube, helm: HelmTool, namespace: str, tmp_path: Path
) -> None:
    a = write_project(tmp_path / "a", namespace, {"app": configmaps(["a-1", "a-2"])})
    b = write_project(tmp_path / "b", namespace, {"app": configmaps(["b-1", "b-2"])})
    for root in (a, b, a, b):
        result, _lines = sync(root, cluster, helm)
        assert result.ok, [a.error for a in result.artifacts]
        # After every sync, both projects' objects are there (B's first sync used to
        # read A's inventory, named by artifact and namespace only, and prune A's).
        assert names(k8s, namespace) >= {"a-1", "a-2"}
    assert names(k8s, namespace) == {"a-1", "a-2", "b-1", "b-2"}
    ids = {(tmp_path / p / ".devloop" / "project-id").read_text().strip() for p in "ab"}
    assert len(ids) == 2, "each checkout has an identity of its own"
    assert get(k8s, namespace, "a-1")["metadata"]["labels"][PROJECT_LABEL] in ids  # type: ignore[index]

    # A removes one of its objects: only that one is pruned.
    (a / "charts/app/templates/all.yaml").write_text(configmaps(["a-1"]))
    result, _lines = sync(a, cluster, helm)
    assert result.ok, [a.error for a in result.artifacts]
    assert "1 pruned" in result.artifacts[0].line
    assert names(k8s, namespace) == {"a-1", "b-1", "b-2"}


def test_taking_over_another_projects_object_stops_for_it_until_adopted(
    cluster: EmbeddedCluster, k8s: Kube, helm: HelmTool, namespace: str, tmp_path: Path
) -> None:
    a = write_project(tmp_path / "a", namespace, {"app": configmaps(["shared", "a-own"])})
    # Same artifact name: only the project identity tells them apart.
    b = write_project(tmp_path / "b", namespace, {"app": configmaps(["shared", "b-own"])})
    assert sync(a, cluster, helm)[0].ok
    a_id = (a / ".devloop" / "project-id").read_text().strip()

    result, lines = sync(b, cluster, helm)
    assert not result.ok
    error = result.artifacts[0].error or ""
    assert f"ConfigMap/shared in namespace {namespace} belongs to devloop project {a_id!r}" in error
    assert "--devloop-adopt" in error and "devloop sync --adopt" in error
    assert get(k8s, namespace, "b-own") is not None, "the rest of the artifact is applied"
    shared = get(k8s, namespace, "shared")
    assert shared is not None and shared["metadata"]["labels"][PROJECT_LABEL] == a_id

    # B goes away from `shared`: nothing of A's is deleted.
    (b / "charts/app/templates/all.yaml").write_text(configmaps(["b-own"]))
    assert sync(b, cluster, helm)[0].ok
    assert get(k8s, namespace, "shared") is not None

    # B takes it over explicitly.
    (b / "charts/app/templates/all.yaml").write_text(configmaps(["shared", "b-own"]))
    result, lines = sync(b, cluster, helm, adopt=True)
    assert result.ok, [a.error for a in result.artifacts]
    assert any("adopting ConfigMap/shared" in line and a_id in line for line in lines), lines
    b_id = (b / ".devloop" / "project-id").read_text().strip()
    assert get(k8s, namespace, "shared")["metadata"]["labels"][PROJECT_LABEL] == b_id  # type: ignore[index]

    # A removes it now: it is B's, so A does not prune it.
    (a / "charts/app/templates/all.yaml").write_text(configmaps(["a-own"]))
    result, lines = sync(a, cluster, helm)
    assert result.ok, [a.error for a in result.artifacts]
    assert any("ConfigMap/shared: not pruned: it belongs to devloop project" in x for x in lines)
    assert get(k8s, namespace, "shared") is not None


def test_helm_and_hand_made_objects_are_not_taken_over(
    cluster: EmbeddedCluster, k8s: Kube, helm: HelmTool, namespace: str, tmp_path: Path
) -> None:
    res = k8s.resource("v1", "ConfigMap")
    assert res is not None
    _ensure_ns(k8s, namespace)
    k8s.create(
        res,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "by-helm",
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {"meta.helm.sh/release-name": "shop"},
            },
            "data": {"k": "helm"},
        },
    )
    k8s.create(
        res,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "by-hand", "namespace": namespace},
            "data": {"k": "hand"},
        },
    )
    root = write_project(tmp_path / "p", namespace, {"app": configmaps(["by-helm", "by-hand"])})
    result, _lines = sync(root, cluster, helm)
    error = result.artifacts[0].error or ""
    assert "ConfigMap/by-helm in namespace" in error and "belongs to Helm release 'shop'" in error
    assert "ConfigMap/by-hand in namespace" in error and "created by hand" in error
    assert get(k8s, namespace, "by-helm")["data"] == {"k": "helm"}  # type: ignore[index]
    assert get(k8s, namespace, "by-hand")["data"] == {"k": "hand"}  # type: ignore[index]

    # The config key adopts, as the option does.
    doc = yaml.safe_load((root / "devloop.yaml").read_text())
    doc["adopt"] = True
    (root / "devloop.yaml").write_text(yaml.safe_dump(doc))
    result, _lines = sync(root, cluster, helm)
    assert result.ok, [a.error for a in result.artifacts]
    assert get(k8s, namespace, "by-hand")["data"] == {"k": "by-hand"}  # type: ignore[index]


def _ensure_ns(k8s: Kube, namespace: str) -> None:
    ns = k8s.resource("v1", "Namespace")
    assert ns is not None
    if k8s.get(ns, None, namespace) is None:
        k8s.create(ns, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})


def test_two_charts_rendering_one_object_is_an_error_naming_both(
    cluster: EmbeddedCluster, helm: HelmTool, namespace: str, tmp_path: Path
) -> None:
    root = write_project(
        tmp_path / "p",
        namespace,
        {"one": configmaps(["same", "one-own"]), "two": configmaps(["same"])},
    )
    result, _lines = sync(root, cluster, helm)
    errors = [a.error for a in result.artifacts if a.error]
    assert len(errors) == 1
    assert f"ConfigMap/same in namespace {namespace} is rendered by both 'one' and 'two'" in (
        errors[0] or ""
    )


def test_the_project_key_wins_over_the_random_id(
    cluster: EmbeddedCluster, k8s: Kube, helm: HelmTool, namespace: str, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "p", namespace, {"app": configmaps(["x"])}, project="shop")
    assert sync(root, cluster, helm)[0].ok
    assert get(k8s, namespace, "x")["metadata"]["labels"][PROJECT_LABEL] == "shop"  # type: ignore[index]
    assert not (root / ".devloop" / "project-id").exists()


def test_lost_state_without_a_project_key_names_the_owner_and_adopt_recovers(
    cluster: EmbeddedCluster, k8s: Kube, helm: HelmTool, namespace: str, tmp_path: Path
) -> None:
    import shutil

    root = write_project(tmp_path / "p", namespace, {"app": configmaps(["x", "y"])})
    assert sync(root, cluster, helm)[0].ok
    shutil.rmtree(root / ".devloop")
    (root / "charts/app/templates/all.yaml").write_text(configmaps(["x"]))
    result, _ = sync(root, cluster, helm)
    assert "ConfigMap/x in namespace" in (result.artifacts[0].error or "")
    assert names(k8s, namespace) == {"x", "y"}, "a project that cannot tell deletes nothing"
    result, _lines = sync(root, cluster, helm, adopt=True)
    assert result.ok, [a.error for a in result.artifacts]


# -- upgrade: state and inventories written before project identities --------------------


def test_state_and_inventory_of_the_previous_version_are_adopted(
    cluster: EmbeddedCluster, k8s: Kube, helm: HelmTool, namespace: str, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "p", namespace, {"app": configmaps(["x", "y", "z"])})
    assert sync(root, cluster, helm)[0].ok
    # Make it look as the previous version left it: no project labels, a legacy inventory
    # named by artifact only, no identity file, state without project labels.
    res = k8s.resource("v1", "ConfigMap")
    assert res is not None
    for name in ("x", "y", "z"):
        k8s.apply(
            res,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"devloop.dev/artifact": "app"},
                },
                "data": {"k": name},
            },
            force=True,
        )
        labels = get(k8s, namespace, name)["metadata"]["labels"]  # type: ignore[index]
        assert PROJECT_LABEL not in labels
    inventories = [
        o["metadata"]["name"]
        for o in k8s.list(res, namespace)
        if o["metadata"]["name"].startswith(INVENTORY_PREFIX)
    ]
    for inv in inventories:
        k8s.delete(res, namespace, inv)
    keys = [{"key": f"/ConfigMap/{namespace}/{n}", "apiVersion": "v1"} for n in ("x", "y", "z")]
    k8s.create(
        res,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": INVENTORY_PREFIX + "app", "namespace": namespace},
            "data": {"objects": json.dumps(keys)},
        },
    )
    import shutil

    shutil.rmtree(root / ".devloop")
    (root / "charts/app/templates/all.yaml").write_text(configmaps(["x", "y"]))
    result, lines = sync(root, cluster, helm)
    assert result.ok, [a.error for a in result.artifacts]
    assert any("adopting the inventory devloop-inventory-app" in x for x in lines), lines
    assert names(k8s, namespace) == {"x", "y"}, "its own legacy object z is pruned"
    project = (root / ".devloop" / "project-id").read_text().strip()
    for name in ("x", "y"):
        assert get(k8s, namespace, name)["metadata"]["labels"][PROJECT_LABEL] == project  # type: ignore[index]


# -- 2. an artifact removed from the config ----------------------------------------------


def test_an_artifact_removed_from_the_config_is_pruned_and_a_pvc_is_named(
    cluster: EmbeddedCluster, k8s: Kube, helm: HelmTool, namespace: str, tmp_path: Path
) -> None:
    pvc = textwrap.dedent(
        """\
        ---
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata:
          name: data
        spec:
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 1Mi}}
        """
    )
    root = write_project(
        tmp_path / "p",
        namespace,
        {"keep": configmaps(["stays"]), "gone": configmaps(["g-1", "g-2"], pvc)},
    )
    result, lines = sync(root, cluster, helm, wait=False)
    assert result.ok, [a.error for a in result.artifacts]
    doc = yaml.safe_load((root / "devloop.yaml").read_text())
    doc["charts"] = [c for c in doc["charts"] if c["name"] != "gone"]
    (root / "devloop.yaml").write_text(yaml.safe_dump(doc))

    result, lines = sync(root, cluster, helm, wait=False)
    assert result.ok, [a.error for a in result.artifacts]
    line = next(x for x in lines if x.startswith("devloop: gone:"))
    assert line == (
        "devloop: gone: removed from the config: 2 pruned; 1 left (PersistentVolumeClaim/data; "
        "never pruned implicitly): remove them with devloop sync --prune=pvcs"
    )
    assert names(k8s, namespace) == {"stays"}
    assert get(k8s, namespace, "data", "PersistentVolumeClaim") is not None

    result, lines = sync(root, cluster, helm, wait=False, allow_prune=["pvcs"])
    assert any(x.startswith("devloop: gone: removed from the config: 1 pruned") for x in lines)
    assert get(k8s, namespace, "data", "PersistentVolumeClaim") is None
    result, lines = sync(root, cluster, helm, wait=False)
    assert not any("gone" in x for x in lines), "nothing left to say"


# -- 5. write-ahead ------------------------------------------------------------------------

_SYNC_SCRIPT = """
import sys
from pathlib import Path
from pytest_devloop.artifacts.render import HelmTool
from pytest_devloop.cluster.providers import Target
from pytest_devloop.config.load import load_config
from pytest_devloop.sync.syncer import Syncer
root, kubeconfig, server, helm = sys.argv[1:5]
t = Target(provider="current", context="devloop-embedded", kubeconfig=kubeconfig,
           server=server, display="embedded")
Syncer(load_config(Path(root)), t, helm=HelmTool(helm)).sync()
"""


def test_a_sync_killed_mid_create_converges_on_the_next_sync(
    cluster: EmbeddedCluster, k8s: Kube, helm: HelmTool, namespace: str, tmp_path: Path
) -> None:
    many = [f"cm-{i:03d}" for i in range(60)]
    root = write_project(tmp_path / "p", namespace, {"app": configmaps(many)})
    seen: list[str] = []
    proc: subprocess.Popen[bytes] | None = None
    killed = threading.Event()

    def on_change(change: Change) -> None:
        m = change.new.get("metadata") or {}
        if change.type != "ADDED" or m.get("namespace") != namespace:
            return
        if str(m.get("name", "")).startswith("cm-"):
            seen.append(str(m["name"]))
            if len(seen) == 5 and proc is not None and not killed.is_set():
                os.kill(proc.pid, signal.SIGKILL)
                killed.set()

    cluster.store.add_listener(on_change)  # stays registered; inert once killed
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _SYNC_SCRIPT,
                str(root),
                str(cluster.kubeconfig),
                cluster.url,
                helm.executable,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc.wait(timeout=120)
    finally:
        killed.set()
    assert len(seen) >= 5 and proc.returncode == -signal.SIGKILL
    created = names(k8s, namespace)
    assert 5 <= len(created) < len(many), "killed mid-create"

    # status names what the interrupted sync left.
    lines: list[str] = []
    config = load_config(root)
    assert config is not None
    Syncer(config, target(cluster), out=lines.append, helm=helm).status()
    assert any("objects recorded by an interrupted sync" in x for x in lines), lines

    # Desired now: the second half only (the objects created before the kill are not):
    # the next sync leaves exactly that.
    (root / "charts/app/templates/all.yaml").write_text(configmaps(many[30:]))
    result, lines = sync(root, cluster, helm)
    assert result.ok, [a.error for a in result.artifacts]
    assert names(k8s, namespace) == set(many[30:])
    assert f"{len(created)} pruned" in result.artifacts[0].line


def test_a_project_key_that_is_no_label_value_names_the_key_and_the_fix(tmp_path: Path) -> None:
    from pytest_devloop.config.model import ConfigError

    (tmp_path / "devloop.yaml").write_text("project: Shop Backend!\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    text = str(e.value)
    assert "project" in text and "'Shop Backend!' is not a label value" in text, text
    assert "e.g. shop-backend" in text
