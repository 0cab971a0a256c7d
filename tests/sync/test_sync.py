"""The sync engine end to end: real helm, the embedded cluster over real HTTPS, and the lines
a user reads.

Every test copies a small project from `tests/data/sync/` into its own folder, gives it a
namespace of its own on the module's cluster, and runs `Syncer.sync()` as a fresh pytest
run would (a new Syncer each time, state read from `.devloop/`). Proofs are observable:
the printed lines, the objects in the cluster, the number of write requests the API
server received (`api.write_requests`) and the helm subcommands that ran (helm is called
through a wrapper script that logs them before running the real binary).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_devloop.artifacts.render import HelmTool
from pytest_devloop.cluster.kube import FIELD_MANAGER, Kube, client_from_kubeconfig
from pytest_devloop.cluster.providers import (
    ClusterRefused,
    Target,
    check_allowed,
    looks_local,
    resolve,
)
from pytest_devloop.cluster.session import Options, target_for
from pytest_devloop.config.load import load_config
from pytest_devloop.config.model import Config, ConfigError
from pytest_devloop.embedded.cluster import EmbeddedCluster
from pytest_devloop.embedded.controllers import SimulationConfig
from pytest_devloop.embedded.store import Change
from pytest_devloop.sync.state import SCHEMA_VERSION, ClusterState, StateStore
from pytest_devloop.sync.syncer import INVENTORY_PREFIX, Syncer, SyncResult

DATA = Path(__file__).resolve().parents[1] / "data" / "sync"
SECONDS = r"\d+\.\d\d s"
PROD_SERVER = "https://api.prod.example.com:443"

_counter = itertools.count()


def config_of(root: Path) -> Config:
    config = load_config(root)
    assert config is not None, f"no devloop.yaml in {root}"
    return config


# -- fixtures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: str  # ADDED | MODIFIED | DELETED
    namespace: str
    kind: str
    name: str
    uid: str
    rv: int


@pytest.fixture(scope="module")
def events_log() -> list[Event]:
    return []


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, events_log: list[Event]
) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=0.05, job_duration=0.1),
        directory=tmp_path_factory.mktemp("cluster"),
    ).start()

    def record(change: Change) -> None:
        if change.type == "MODIFIED":
            return  # only creations and deletions order a sync's steps
        m = change.new.get("metadata") or {}
        events_log.append(
            Event(
                change.type,
                str(m.get("namespace") or ""),
                str(change.new.get("kind")),
                str(m.get("name")),
                str(m.get("uid")),
                change.rv,
            )
        )

    c.store.add_listener(record)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def k8s(cluster: EmbeddedCluster) -> Iterator[Any]:
    """A `kubernetes` ApiClient for changes made "by hand", as kubectl would."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def helm_log(tmp_path: Path) -> Path:
    return tmp_path / "helm-calls.log"


@pytest.fixture
def helm(tool: Callable[[str], str], tmp_path: Path, helm_log: Path) -> HelmTool:
    """Real helm 4 behind a wrapper that logs each subcommand, so tests can say "no render"."""
    return _logging_helm(tool("helm4"), tmp_path / "bin", helm_log)


def _logging_helm(real: str, folder: Path, log: Path) -> HelmTool:
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "helm"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$1" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return HelmTool(str(wrapper))


@dataclass
class Run:
    """One sync: its result, the lines it printed, the API writes and helm calls it caused."""

    result: SyncResult
    lines: list[str]
    writes: int
    helm: list[str]

    @property
    def line(self) -> str:
        """The one artifact line of a single-artifact project."""
        assert len(self.result.artifacts) == 1, self.lines
        return self.result.artifacts[0].line

    def of(self, artifact: str) -> str:
        return next(a.line for a in self.result.artifacts if a.name == artifact)


class Project:
    """A copy of a project under `tests/data/sync/`, synced to one namespace of a cluster."""

    def __init__(
        self,
        root: Path,
        cluster: EmbeddedCluster,
        namespace: str,
        helm: HelmTool,
        helm_log: Path,
    ) -> None:
        self.root = root
        self.cluster = cluster
        self.namespace = namespace
        self.helm = helm
        self.helm_log = helm_log

    @property
    def target(self) -> Target:
        return embedded_target(self.cluster)

    def config_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load((self.root / "devloop.yaml").read_text())
        return doc

    def write_config(self, doc: dict[str, Any]) -> None:
        (self.root / "devloop.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def helm_calls(self) -> list[str]:
        try:
            return self.helm_log.read_text().split()
        except FileNotFoundError:
            return []

    def sync(self, *, target: Target | None = None, **options: Any) -> Run:
        """One sync as a new pytest run does it: fresh Syncer, fresh HelmTool."""
        lines: list[str] = []
        cluster = self.cluster
        syncer = Syncer(
            config_of(self.root),
            target or self.target,
            out=lines.append,
            helm=HelmTool(self.helm.executable),
            **options,
        )
        assert cluster.api is not None
        writes, calls = cluster.api.write_requests, len(self.helm_calls())
        result = syncer.sync()
        return Run(result, lines, cluster.api.write_requests - writes, self.helm_calls()[calls:])

    def status(self) -> tuple[list[str], int]:
        lines: list[str] = []
        assert self.cluster.api is not None
        writes = self.cluster.api.write_requests
        Syncer(config_of(self.root), self.target, out=lines.append, helm=self.helm).status()
        return lines, self.cluster.api.write_requests - writes

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{rel} has no {old!r}"
        path.write_text(text.replace(old, new))


def embedded_target(c: EmbeddedCluster, *, context: str = "devloop-embedded") -> Target:
    return Target(
        provider="current",
        context=context,
        kubeconfig=str(c.kubeconfig),
        server=c.url,
        display="embedded",
    )


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    base = request.node.name.lower().removeprefix("test_")
    base = re.sub(r"[^a-z0-9]+", "-", base)[:40].strip("-")
    return f"{base}-{next(_counter)}"


@pytest.fixture
def make_project(
    tmp_path: Path,
    cluster: EmbeddedCluster,
    namespace: str,
    helm: HelmTool,
    helm_log: Path,
) -> Callable[..., Project]:
    def make(name: str = "web", *extra: str) -> Project:
        root = tmp_path / "project"
        shutil.copytree(DATA / name, root)
        for more in extra:
            shutil.copytree(DATA / more, root, dirs_exist_ok=True)
        project = Project(root, cluster, namespace, helm, helm_log)
        doc = project.config_doc()
        doc["namespace"] = namespace
        project.write_config(doc)
        return project

    return make


# -- small readers of the cluster -----------------------------------------------------------


def read(k8s: Any, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The live object as plain JSON, or None when it does not exist."""
    api_version = "apps/v1" if kind == "Deployment" else "batch/v1" if kind == "Job" else "v1"
    kube = Kube(k8s)
    res = kube.resource(api_version, kind)
    assert res is not None
    return kube.get(res, namespace, name)


def must_read(k8s: Any, kind: str, namespace: str, name: str) -> dict[str, Any]:
    obj = read(k8s, kind, namespace, name)
    assert obj is not None, f"{kind} {namespace}/{name} does not exist"
    return obj


def inventory_cm(k8s: Any, namespace: str, artifact: str) -> dict[str, Any]:
    """The one inventory ConfigMap of `artifact` (named per project: `-<digest of its id>`)."""
    from kubernetes import client

    found = client.CoreV1Api(k8s).list_namespaced_config_map(
        namespace, label_selector=f"devloop.dev/artifact={artifact}"
    )
    names = [
        cm.metadata.name
        for cm in found.items
        if cm.metadata.name.startswith(INVENTORY_PREFIX + artifact + "-")
    ]
    assert len(names) == 1, f"inventories of {artifact} in {namespace}: {names}"
    return must_read(k8s, "ConfigMap", namespace, names[0])


def inventory(k8s: Any, namespace: str, artifact: str) -> list[str]:
    cm = inventory_cm(k8s, namespace, artifact)
    return [entry["key"] for entry in json.loads(cm["data"]["objects"])]


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


WEB_OBJECTS = {
    ("Deployment", "web-web"),
    ("Service", "web-web"),
    ("ConfigMap", "web-settings"),
    ("ConfigMap", "web-extra-a"),
    ("Secret", "web-extra-b"),
}


# -- 1. first sync, no-op sync ----------------------------------------------------------


def test_first_sync_creates_everything_and_a_second_renders_and_writes_nothing(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project()
    ns = project.namespace

    first = project.sync()
    assert re.fullmatch(
        rf"devloop: web: 0 updated, 5 created, 0 pruned, 0 unchanged, {SECONDS}", first.line
    )
    assert first.result.ok and first.result.artifacts[0].rendered
    # Rendered twice: fields that differ between two renders are generated (none here).
    assert first.helm == ["version", "template", "template"]
    # The namespace, the five objects and the in-cluster inventory: one request each.
    assert first.writes == 7
    for kind, name in WEB_OBJECTS:
        obj = must_read(k8s, kind, ns, name)
        assert obj["metadata"]["labels"]["devloop.dev/artifact"] == "web"
        managers = {(f["manager"], f["operation"]) for f in obj["metadata"]["managedFields"]}
        assert (FIELD_MANAGER, "Apply") in managers, managers
    assert sorted(inventory(k8s, ns, "web")) == sorted(
        f"{'apps' if kind == 'Deployment' else ''}/{kind}/{ns}/{name}" for kind, name in WEB_OBJECTS
    )
    # The sync waited for the workload: it is ready when the sync returns.
    assert must_read(k8s, "Deployment", ns, "web-web")["status"].get("readyReplicas") == 1

    second = project.sync()
    assert re.fullmatch(rf"devloop: web: unchanged \(5 objects\), {SECONDS}", second.line)
    assert second.result.ok
    assert not second.result.artifacts[0].rendered
    assert second.helm == [], "nothing rendered, and helm's version came from the cache"
    assert second.writes == 0

    # Touching a file without changing it is not a change either.
    values = project.root / "charts/web/values.yaml"
    os.utime(values, (time.time() + 5, time.time() + 5))
    third = project.sync()
    assert not third.result.artifacts[0].rendered
    assert (third.writes, third.helm) == (0, [])
    assert "unchanged (5 objects)" in third.line


# -- 2. what a change writes ------------------------------------------------------------


def test_replicas_change_writes_exactly_the_deployment(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project()
    ns = project.namespace
    project.sync()
    cm_before = inventory_cm(k8s, ns, "web")

    project.edit("charts/web/values.yaml", "replicas: 1", "replicas: 3")
    run = project.sync()

    assert re.fullmatch(
        rf"devloop: web: 1 updated \(Deployment/web-web: spec\.replicas\), 0 created, "
        rf"0 pruned, 4 unchanged, {SECONDS}",
        run.line,
    )
    assert run.helm == ["template"]
    assert run.writes == 1, "only the Deployment: the inventory is written when the set changes"
    assert run.result.changed == [("apps/Deployment/" + ns + "/web-web", ["spec.replicas"])]
    deployment = must_read(k8s, "Deployment", ns, "web-web")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["status"].get("readyReplicas") == 3, "the sync waited for the rollout"
    cm_after = inventory_cm(k8s, ns, "web")
    assert cm_after["metadata"]["resourceVersion"] == cm_before["metadata"]["resourceVersion"]


def test_template_change_writes_only_the_objects_it_renders(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project()
    ns = project.namespace
    project.sync()
    before = {
        (kind, name): must_read(k8s, kind, ns, name)["metadata"]["resourceVersion"]
        for kind, name in WEB_OBJECTS
    }

    project.edit("charts/web/templates/extra.yaml", "k: a", "k: a2")
    project.edit("charts/web/templates/extra.yaml", "k: b", "k: b2")
    run = project.sync()

    assert run.writes == 2
    assert "2 updated (" in run.line
    assert "ConfigMap/web-extra-a: data.k" in run.line
    assert "Secret/web-extra-b: stringData.k" in run.line
    assert ", 0 created, 0 pruned, 3 unchanged, " in run.line
    after = {
        (kind, name): must_read(k8s, kind, ns, name)["metadata"]["resourceVersion"]
        for kind, name in WEB_OBJECTS
    }
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {("ConfigMap", "web-extra-a"), ("Secret", "web-extra-b")}
    assert must_read(k8s, "ConfigMap", ns, "web-extra-a")["data"] == {"k": "a2"}


def test_removing_a_template_prunes_its_objects(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project()
    ns = project.namespace
    project.sync()

    (project.root / "charts/web/templates/extra.yaml").unlink()
    run = project.sync()

    assert re.fullmatch(
        rf"devloop: web: 0 updated, 0 created, 2 pruned, 3 unchanged, {SECONDS}", run.line
    )
    assert run.writes == 3, "two deletes, and the inventory (its set changed)"
    assert read(k8s, "ConfigMap", ns, "web-extra-a") is None
    assert read(k8s, "Secret", ns, "web-extra-b") is None
    assert must_read(k8s, "ConfigMap", ns, "web-settings")
    assert sorted(inventory(k8s, ns, "web")) == sorted(
        [f"apps/Deployment/{ns}/web-web", f"/Service/{ns}/web-web", f"/ConfigMap/{ns}/web-settings"]
    )
    again = project.sync()
    assert (again.writes, again.helm) == (0, [])
    assert "unchanged (3 objects)" in again.line


def test_values_file_outside_the_chart_is_an_input(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project()
    ns = project.namespace
    project.sync()

    project.edit("env/dev.yaml", "logLevel: info", "logLevel: debug")
    run = project.sync()

    assert run.result.artifacts[0].rendered
    assert run.helm == ["template"]
    assert run.writes == 1
    assert (
        "1 updated (Deployment/web-web: spec.template.spec.containers[name=web]"
        ".env[name=LOG_LEVEL].value)" in run.line
    )
    container = must_read(k8s, "Deployment", ns, "web-web")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["env"] == [{"name": "LOG_LEVEL", "value": "debug"}]


def test_a_conflict_with_another_field_manager_names_it_until_forced(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project()
    ns = project.namespace
    project.sync()
    # Something else (an autoscaler, say) takes over spec.replicas with server-side apply.
    kube = Kube(k8s)
    res = kube.resource("apps/v1", "Deployment")
    assert res is not None
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web-web", "namespace": ns},
        "spec": {"replicas": 5},
    }
    kube.apply(res, body, force=True, field_manager="autoscaler")

    project.edit("charts/web/values.yaml", "replicas: 1", "replicas: 2")
    refused = project.sync()
    assert not refused.result.ok
    assert refused.line.startswith("devloop: web: error: Deployment/web-web: ")
    assert 'conflict with "autoscaler"' in refused.line
    assert ".spec.replicas" in refused.line
    assert "--devloop-force-conflicts" in refused.line
    assert must_read(k8s, "Deployment", ns, "web-web")["spec"]["replicas"] == 5

    forced = project.sync(force_conflicts=True)
    assert "1 updated (Deployment/web-web: spec.replicas)" in forced.line
    assert must_read(k8s, "Deployment", ns, "web-web")["spec"]["replicas"] == 2


# -- 3. drift ------------------------------------------------------------------------------


def test_a_deployment_deleted_by_hand_is_recreated(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    from kubernetes import client

    project = make_project()
    ns = project.namespace
    project.sync()
    old_uid = must_read(k8s, "Deployment", ns, "web-web")["metadata"]["uid"]

    client.AppsV1Api(k8s).delete_namespaced_deployment("web-web", ns)
    run = project.sync()

    assert re.fullmatch(
        rf"devloop: web: 0 updated, 0 created, 0 pruned, "
        rf"1 drift corrected \(Deployment/web-web\), 4 unchanged, {SECONDS}",
        run.line,
    )
    assert not run.result.artifacts[0].rendered, "drift needs no render"
    assert run.writes == 1
    deployment = must_read(k8s, "Deployment", ns, "web-web")
    assert deployment["metadata"]["uid"] != old_uid
    assert deployment["status"].get("readyReplicas") == 1
    again = project.sync()
    assert again.writes == 0
    assert "unchanged (5 objects)" in again.line


def test_fields_devloop_applied_and_someone_edited_are_corrected(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    from kubernetes import client

    project = make_project()
    ns = project.namespace
    project.sync()

    client.AppsV1Api(k8s).patch_namespaced_deployment_scale(
        "web-web", ns, {"spec": {"replicas": 4}}, field_manager="kubectl-scale"
    )
    client.CoreV1Api(k8s).patch_namespaced_config_map(
        "web-settings",
        ns,
        {"metadata": {"annotations": {"web.example/owner": "someone-else"}}},
        field_manager="kubectl-annotate",
    )
    run = project.sync()

    assert run.line.startswith("devloop: web: 0 updated, 0 created, 0 pruned, 2 drift corrected (")
    assert "Deployment/web-web: spec.replicas" in run.line
    assert 'ConfigMap/web-settings: metadata.annotations["web.example/owner"]' in run.line
    assert not run.result.artifacts[0].rendered
    assert run.writes == 2
    assert must_read(k8s, "Deployment", ns, "web-web")["spec"]["replicas"] == 1
    annotations = must_read(k8s, "ConfigMap", ns, "web-settings")["metadata"]["annotations"]
    assert annotations["web.example/owner"] == "team-web"
    again = project.sync()
    assert again.writes == 0, again.line


def test_fields_the_server_and_controllers_add_are_not_drift(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    from kubernetes import client

    project = make_project()
    ns = project.namespace
    project.sync()
    apps = client.AppsV1Api(k8s)
    # `kubectl rollout restart`: a pod template annotation devloop never set, a new
    # ReplicaSet, new pods, new status; plus Endpoints and the Service's cluster IP.
    apps.patch_namespaced_deployment(
        "web-web",
        ns,
        {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}
                    }
                }
            }
        },
        field_manager="kubectl-rollout",
    )

    def rolled_out() -> bool:
        d = must_read(k8s, "Deployment", ns, "web-web")
        s = d.get("status") or {}
        return (
            s.get("observedGeneration") == d["metadata"]["generation"]
            and s.get("updatedReplicas") == 1
            and s.get("readyReplicas") == 1
            and s.get("replicas") == 1
        )

    wait_for("the rollout restart to finish", rolled_out)
    assert must_read(k8s, "Service", ns, "web-web")["spec"].get("clusterIP")

    run = project.sync()
    assert run.writes == 0, run.line
    assert re.fullmatch(rf"devloop: web: unchanged \(5 objects\), {SECONDS}", run.line)
    lines, writes = project.status()
    assert writes == 0
    assert lines[-1] == "devloop: web: 5 objects, no drift, inputs unchanged"


def test_status_reports_drift_and_writes_nothing(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project()
    ns = project.namespace
    lines, writes = project.status()
    assert lines[-1] == "devloop: web: not deployed by devloop to this cluster"
    project.sync()
    # Through the adapter: the embedded server answers a Service DELETE with a Status,
    # which CoreV1Api.delete_namespaced_service cannot deserialize into a V1Service.
    kube = Kube(k8s)
    services = kube.resource("v1", "Service")
    assert services is not None and kube.delete(services, ns, "web-web")
    project.edit("charts/web/values.yaml", "replicas: 1", "replicas: 2")

    lines, writes = project.status()

    assert writes == 0
    assert re.fullmatch(
        r"devloop: cluster embedded \(https://127\.0\.0\.1:\d+, uid \w{8}\)", lines[0]
    )
    assert lines[-1] == (
        "devloop: web: 5 objects, 1 drifted (Service/web-web deleted since the last sync), "
        "inputs changed since the last sync"
    )
    assert read(k8s, "Service", ns, "web-web") is None, "status never corrects anything"


# -- 4. state: other clusters, corrupt files ---------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is corrupt (JSONDecodeError)"),
        ("", "is corrupt (JSONDecodeError)"),
        (json.dumps({"schema": 99}), "has schema 99, this devloop writes 1"),
        ("[1, 2]", "has schema None, this devloop writes 1"),
        (None, "is corrupt (KeyError)"),  # the right schema, an object record without a body
    ],
    ids=["garbage", "empty", "other-schema", "not-an-object", "missing-key"],
)
def test_corrupt_state_gives_a_full_sync_with_a_warning(
    make_project: Callable[..., Project], k8s: Any, content: str | None, problem: str
) -> None:
    project = make_project()
    project.sync()
    store = StateStore(project.root)
    path = store.path(project.cluster.url, project.cluster.uid)
    assert path.is_file()
    if content is None:
        data = json.loads(path.read_text())
        record = next(iter(data["artifacts"]["web"]["objects"].values()))
        del record["applied"]
        content = json.dumps(data)
    path.write_text(content)

    run = project.sync()

    assert run.lines[0] == f"devloop: warning: state file {path} {problem}: full sync"
    assert run.result.warnings == [run.lines[0].removeprefix("devloop: warning: ")]
    assert run.result.ok and run.result.artifacts[0].rendered
    # Everything is re-applied (the in-cluster inventory says what devloop owns); no field
    # paths are claimed, as there is no record of what was applied before.
    assert re.fullmatch(
        rf"devloop: web: 5 updated \([A-Za-z]+/[\w-]+; [A-Za-z]+/[\w-]+; [A-Za-z]+/[\w-]+; \.\.\.\), "
        rf"0 created, 0 pruned, 0 unchanged, {SECONDS}",
        run.line,
    )
    assert run.writes == 6, "five applies and the inventory"
    assert json.loads(path.read_text())["schema"] == SCHEMA_VERSION, "the file is rebuilt"
    again = project.sync()
    assert again.lines == [again.line] and again.writes == 0


def test_lost_state_still_prunes_through_the_in_cluster_inventory(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project()
    ns = project.namespace
    # The identity lives in devloop.yaml, so it survives the loss of `.devloop/` (without
    # `project:`, see test_ownership: the objects are then another project's until adopted).
    doc = project.config_doc()
    doc["project"] = f"lost-state-{ns}"[:63].rstrip("-")
    project.write_config(doc)
    project.sync()
    shutil.rmtree(project.root / ".devloop")  # another machine, or a `git clean`
    (project.root / "charts/web/templates/extra.yaml").unlink()

    run = project.sync()

    assert ", 0 created, 2 pruned, " in run.line
    assert read(k8s, "ConfigMap", ns, "web-extra-a") is None
    assert read(k8s, "Secret", ns, "web-extra-b") is None
    assert len(inventory(k8s, ns, "web")) == 3


def test_state_is_kept_per_cluster_and_a_reset_cluster_is_noticed(
    make_project: Callable[..., Project], k8s: Any, tmp_path: Path
) -> None:
    project = make_project()
    ns = project.namespace
    assert "5 created" in project.sync().line

    other = EmbeddedCluster(directory=tmp_path / "other").start()
    port = int(other.url.rsplit(":", 1)[1])
    try:
        run = project.sync(target=embedded_target(other))
        assert run.result.warnings == [], "a cluster never synced to has no state to distrust"
        assert "0 updated, 5 created" in run.line
        kube = Kube(client_from_kubeconfig(str(other.kubeconfig)))
        deployments = kube.resource("apps/v1", "Deployment")
        assert deployments is not None and kube.get(deployments, ns, "web-web") is not None
    finally:
        other.stop()
    # The first cluster's state is untouched by syncs to another one.
    back = project.sync()
    assert back.writes == 0 and "unchanged (5 objects)" in back.line

    # A new cluster on the old address (a `kind delete` + `kind create`, a restarted
    # embedded cluster): same server URL, new kube-system uid.
    reset = EmbeddedCluster(directory=tmp_path / "reset", port=port).start()
    try:
        assert reset.url == other.url and reset.uid != other.uid
        run = project.sync(target=embedded_target(reset))
        assert run.lines[0] == (
            f"devloop: warning: the cluster at {reset.url} is a new cluster (kube-system uid "
            f"{reset.uid[:8]}..., was {other.uid[:8]}...): full sync"
        )
        assert "0 updated, 5 created" in run.line
        assert project.sync(target=embedded_target(reset)).writes == 0
    finally:
        reset.stop()


def test_state_store_index_and_foreign_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    server = "https://127.0.0.1:6443"
    state, warning = store.load(server, "uid-1")
    assert (state.artifacts, warning) == ({}, None)
    store.save(ClusterState(server, "uid-1"))
    assert json.loads((store.dir / "index.json").read_text()) == {server: "uid-1"}

    assert store.load(server, "uid-1")[1] is None
    _, warning = store.load(server, "uid-2")
    assert warning is not None and "is a new cluster" in warning
    assert store.load("https://127.0.0.1:7443", "uid-2")[1] is None

    # A file that names another cluster than its name says is not trusted.
    path = store.path(server, "uid-3")
    path.write_text(
        json.dumps({"schema": SCHEMA_VERSION, "cluster": {"server": server, "uid": "uid-9"}})
    )
    _, warning = store.load(server, "uid-3")
    assert warning == f"state file {path} belongs to another cluster: full sync"
    store.save(ClusterState(server, "uid-3"))
    assert json.loads((store.dir / "index.json").read_text()) == {server: "uid-3"}


# -- 5. the safety guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "server", "local"),
    [
        ("kind-dev", PROD_SERVER, True),
        ("k3d-dev", PROD_SERVER, True),
        ("minikube", PROD_SERVER, True),
        ("docker-desktop", PROD_SERVER, True),
        ("rancher-desktop", PROD_SERVER, True),
        ("orbstack", PROD_SERVER, True),
        ("prod-eks", "https://127.0.0.1:6443", True),
        ("prod-eks", "https://127.0.0.53:6443", True),
        ("prod-eks", "https://[::1]:6443", True),
        ("prod-eks", "https://localhost:6443", True),
        ("prod-eks", PROD_SERVER, False),
        ("kind", PROD_SERVER, False),
        ("minikube-prod", PROD_SERVER, False),
        ("prod-kind-dev", PROD_SERVER, False),
        ("prod-eks", "https://192.0.2.1:6443", False),
        ("prod-eks", "https://localhost.example.com:6443", False),
        ("prod-eks", "", False),
    ],
)
def test_looks_local(context: str, server: str, local: bool) -> None:
    assert looks_local(context, server) is local


def test_check_allowed_refuses_a_remote_context_and_names_the_fix() -> None:
    prod = Target("current", "prod-eks", None, PROD_SERVER, "prod-eks")
    with pytest.raises(ClusterRefused) as refused:
        check_allowed(prod, [])
    message = str(refused.value)
    assert "'prod-eks'" in message and PROD_SERVER in message
    assert "allow_contexts: [prod-eks]" in message
    with pytest.raises(ClusterRefused):
        check_allowed(prod, ["staging-eks"])
    check_allowed(prod, ["prod-eks"])
    check_allowed(Target("current", "kind-dev", None, PROD_SERVER, "kind-dev"), [])


def _kubeconfig_with_context(
    source: Path, dest: Path, context: str, server: str | None = None
) -> Path:
    """A copy of `source` (one context) whose context is named `context`."""
    doc = yaml.safe_load(source.read_text())
    doc["contexts"][0]["name"] = context
    doc["current-context"] = context
    if server is not None:
        doc["clusters"][0]["cluster"]["server"] = server
    dest.write_text(yaml.safe_dump(doc))
    return dest


def test_a_remote_looking_context_is_refused_before_any_request(
    make_project: Callable[..., Project], cluster: EmbeddedCluster, k8s: Any, tmp_path: Path
) -> None:
    """The kubeconfig leads to the embedded cluster, so a missing guard would show up as
    requests there; the target says the server is a production one."""
    project = make_project()
    assert cluster.kubeconfig is not None and cluster.api is not None
    kubeconfig = _kubeconfig_with_context(
        cluster.kubeconfig, tmp_path / "prod.kubeconfig", "prod-eks"
    )
    prod = Target("current", "prod-eks", str(kubeconfig), PROD_SERVER, "prod-eks")
    requests = cluster.api.request_count

    with pytest.raises(ClusterRefused, match="refusing kubeconfig context 'prod-eks'"):
        project.sync(target=prod)
    with pytest.raises(ClusterRefused):
        Syncer(config_of(project.root), prod, out=lambda _: None, helm=project.helm).status()
    assert cluster.api.request_count == requests, "not a single request, not even a GET"
    assert not (project.root / ".devloop" / "state").exists()

    # Listed in allow_contexts: the guard lets it through, and the sync goes on.
    doc = project.config_doc()
    doc["cluster"]["allow_contexts"] = ["prod-eks"]
    project.write_config(doc)
    run = project.sync(target=prod)
    assert "5 created" in run.line
    assert must_read(k8s, "Deployment", project.namespace, "web-web")


def test_a_remote_context_from_the_kubeconfig_is_refused(
    make_project: Callable[..., Project],
    cluster: EmbeddedCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resolved as the plugin and the CLI resolve it: the server comes from the kubeconfig."""
    project = make_project()
    assert cluster.kubeconfig is not None
    kubeconfig = _kubeconfig_with_context(
        cluster.kubeconfig, tmp_path / "prod.kubeconfig", "prod-eks", PROD_SERVER
    )
    target = resolve("current", root=project.root, context="prod-eks", kubeconfig=str(kubeconfig))
    assert (target.context, target.server) == ("prod-eks", PROD_SERVER)
    with pytest.raises(ClusterRefused):
        project.sync(target=target)

    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    options = Options(rootdir=project.root, cluster="current", context="prod-eks")
    with pytest.raises(ClusterRefused, match=r"allow_contexts: \[prod-eks\]"):
        target_for(config_of(project.root), options)


# -- 6. Helm hooks and the helm deployer ------------------------------------------------------------


def _hook_words(line: str) -> list[str]:
    match = re.search(rf", hooks: (.*), {SECONDS}$", line)
    assert match, line
    return match.group(1).split(", ")


def test_install_hooks_run_in_weight_order_around_the_release(
    make_project: Callable[..., Project], k8s: Any, events_log: list[Event]
) -> None:
    project = make_project("hooks")
    ns = project.namespace

    run = project.sync()

    assert run.result.ok, run.lines
    assert run.line.startswith("devloop: jobs: 0 updated, 1 created, 0 pruned, 0 unchanged, ")
    assert _hook_words(run.line) == [
        "Job/jobs-certgen-create ran (pre-install)",
        "Job/jobs-migrate ran (pre-install)",
        "Job/jobs-certgen-patch ran (post-install)",
    ]
    order = [
        (e.type, e.kind, e.name)
        for e in events_log
        if e.namespace == ns and e.kind in ("Job", "Deployment")
    ]
    assert order == [
        ("ADDED", "Job", "jobs-certgen-create"),  # weight -5
        ("ADDED", "Job", "jobs-migrate"),  # weight 1
        ("DELETED", "Job", "jobs-migrate"),  # hook-succeeded: deleted once complete
        ("ADDED", "Deployment", "jobs-app"),
        ("ADDED", "Job", "jobs-certgen-patch"),  # post-install
    ]
    for name in ("jobs-certgen-create", "jobs-certgen-patch"):
        job = must_read(k8s, "Job", ns, name)
        assert job["status"].get("succeeded") == 1, "hook Jobs are waited for"
        assert "devloop.dev/artifact" not in (job["metadata"].get("labels") or {})
    assert read(k8s, "Pod", ns, "jobs-test-connection") is None, "test hooks are never applied"
    assert not [e for e in events_log if e.namespace == ns and e.name == "jobs-test-connection"]
    assert inventory(k8s, ns, "jobs") == [f"apps/Deployment/{ns}/jobs-app"]


def test_hook_succeeded_hooks_are_deleted_after_every_hook_of_the_event_ran(
    make_project: Callable[..., Project], k8s: Any, events_log: list[Event]
) -> None:
    # As Helm does: the Job still needs the ServiceAccount hook that ran before it.
    project = make_project("hook-account")
    ns = project.namespace

    run = project.sync()

    assert run.result.ok, run.lines
    assert _hook_words(run.line) == [
        "ServiceAccount/certs-certgen ran (pre-install)",
        "Job/certs-certgen ran (pre-install)",
    ]
    order = [
        (e.type, e.kind, e.name)
        for e in events_log
        if e.namespace == ns and e.kind in ("ServiceAccount", "Job", "ConfigMap")
        and e.name.startswith("certs-")
    ]  # fmt: skip
    assert order[:2] == [
        ("ADDED", "ServiceAccount", "certs-certgen"),
        ("ADDED", "Job", "certs-certgen"),
    ]
    assert sorted(order[2:4]) == [
        ("DELETED", "Job", "certs-certgen"),
        ("DELETED", "ServiceAccount", "certs-certgen"),
    ]
    assert order[4:] == [("ADDED", "ConfigMap", "certs-settings")]


def test_upgrade_hooks_rerun_only_when_their_rendering_changed(
    make_project: Callable[..., Project], k8s: Any, events_log: list[Event]
) -> None:
    project = make_project("hooks")
    ns = project.namespace
    project.sync()
    uids = {
        n: must_read(k8s, "Job", ns, n)["metadata"]["uid"]
        for n in ("jobs-certgen-create", "jobs-certgen-patch")
    }

    def jobs_added_since(mark: int) -> list[str]:
        return [
            e.name
            for e in events_log[mark:]
            if e.namespace == ns and e.type == "ADDED" and e.kind == "Job"
        ]

    mark = len(events_log)
    project.edit("charts/jobs/values.yaml", "replicas: 1", "replicas: 2")
    run = project.sync()
    assert run.line.startswith("devloop: jobs: 1 updated (Deployment/jobs-app: spec.replicas), ")
    assert _hook_words(run.line) == ["3 hooks unchanged"]
    assert run.writes == 1
    assert jobs_added_since(mark) == []

    mark = len(events_log)
    project.edit(
        "charts/jobs/templates/certgen-create.yaml", "args: [create]", "args: [create, --ttl=1h]"
    )
    run = project.sync()
    assert run.result.ok, run.lines
    assert run.line.startswith("devloop: jobs: 0 updated, 0 created, 0 pruned, 1 unchanged, ")
    assert _hook_words(run.line) == [
        "Job/jobs-certgen-create ran (pre-upgrade)",
        "2 hooks unchanged",
    ]
    assert jobs_added_since(mark) == ["jobs-certgen-create"]
    create = must_read(k8s, "Job", ns, "jobs-certgen-create")
    assert create["metadata"]["uid"] != uids["jobs-certgen-create"], "before-hook-creation"
    assert create["spec"]["template"]["spec"]["containers"][0]["args"] == ["create", "--ttl=1h"]
    assert (
        must_read(k8s, "Job", ns, "jobs-certgen-patch")["metadata"]["uid"]
        == uids["jobs-certgen-patch"]
    )

    # CI mode keeps no state: a clean run, every hook runs.
    ci = project.sync(mode="ci")
    assert [w.split(" ran ")[0] for w in _hook_words(ci.line)] == [
        "Job/jobs-certgen-create",
        "Job/jobs-migrate",
        "Job/jobs-certgen-patch",
    ]


def test_deployer_helm_goes_through_helm_upgrade_install(
    make_project: Callable[..., Project],
    k8s: Any,
    cluster: EmbeddedCluster,
    tool: Callable[[str], str],
) -> None:
    project = make_project()
    ns = project.namespace
    doc = project.config_doc()
    doc["charts"][0]["deployer"] = "helm"
    project.write_config(doc)

    def helm_list() -> list[dict[str, Any]]:
        proc = subprocess.run(
            [
                tool("helm4"),
                "list",
                "-n",
                ns,
                "-o",
                "json",
                "--kubeconfig",
                str(cluster.kubeconfig),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        releases: list[dict[str, Any]] = json.loads(proc.stdout)
        return releases

    run = project.sync()
    assert run.line == (
        "devloop: web: helm upgrade --install (deployer: helm): 0 updated, 5 created, "
        "0 removed, 0 unchanged"
    )
    # Helm installs; devloop then reads what it installed, and renders nothing itself.
    assert run.helm == ["version", "upgrade", "get", "get"]
    assert [(r["name"], r["revision"], r["status"]) for r in helm_list()] == [
        ("web", "1", "deployed")
    ]
    assert must_read(k8s, "Deployment", ns, "web-web")

    again = project.sync()
    assert again.line == "devloop: web: unchanged (5 objects; deployed with helm)"
    assert (again.writes, again.helm) == (0, [])
    # Status knows the release's objects and their drift, as for any chart.
    lines, writes = project.status()
    assert (lines[-1], writes) == ("devloop: web: 5 objects, no drift, inputs unchanged", 0)

    project.edit("charts/web/values.yaml", "replicas: 1", "replicas: 2")
    upgraded = project.sync()
    assert upgraded.line == (
        "devloop: web: helm upgrade --install (deployer: helm): 1 updated "
        "(Deployment/web-web: spec.replicas), 0 created, 0 removed, 4 unchanged"
    )
    # Affected-test selection sees exactly the object and field that changed.
    assert upgraded.result.changed == [(f"apps/Deployment/{ns}/web-web", ["spec.replicas"])]
    assert [(r["name"], r["revision"]) for r in helm_list()] == [("web", "2")]
    assert must_read(k8s, "Deployment", ns, "web-web")["spec"]["replicas"] == 2

    kube = Kube(k8s)
    deployments = kube.resource("apps/v1", "Deployment")
    assert deployments is not None
    kube.apply(
        deployments,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web-web", "namespace": ns},
            "spec": {"replicas": 5},
        },
        force=True,
        field_manager="someone",
    )
    lines, _ = project.status()
    assert "1 drifted (Deployment/web-web" in lines[-1], lines


# -- 7. bad input ------------------------------------------------------------------------------------


def test_bad_inputs_are_reported_per_artifact_and_the_sync_goes_on(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project("web", "broken")
    ns = project.namespace
    doc = project.config_doc()
    doc["manifests"] = [{"name": "bad-yaml", "path": "manifests/bad-yaml"}]
    doc["charts"] += [
        {"name": "template-error", "path": "charts/template-error"},
        {"name": "needs-crd", "path": "charts/needs-crd"},
    ]
    project.write_config(doc)

    run = project.sync()

    assert not run.result.ok
    assert [a.name for a in run.result.artifacts] == [
        "bad-yaml",
        "web",
        "template-error",
        "needs-crd",
    ]
    bad_yaml = project.root / "manifests/bad-yaml/bad.yaml"
    assert run.of("bad-yaml").startswith(f"devloop: bad-yaml: error: {bad_yaml}:7: invalid YAML: ")
    assert read(k8s, "ConfigMap", ns, "good") is None, "a set with a broken file applies nothing"
    assert "0 updated, 5 created" in run.of("web")
    template_error = run.of("template-error")
    assert template_error.startswith(
        f"devloop: template-error: error: chart template-error ({project.root / 'charts/template-error'}): "
    )
    assert "template-error/templates/configmap.yaml:6:19" in template_error
    assert "nil pointer evaluating interface {}.level" in template_error
    assert run.of("needs-crd") == (
        "devloop: needs-crd: error: needs-crd/templates/widget.yaml: kind Widget "
        "(shop.devloop.dev/v1) is not served by the cluster: its CustomResourceDefinition is "
        "missing. Put the CRD in the chart's crds/ folder, or in a manifests entry listed in "
        "devloop.yaml (manifests are applied before charts)"
    )

    # Following the advice fixes each one; the healthy artifact stays untouched.
    project.edit("manifests/bad-yaml/bad.yaml", "key: [unclosed", "key: closed")
    project.edit(
        "charts/template-error/templates/configmap.yaml", ".Values.logging.level", '"info"'
    )
    crds = project.root / "charts/needs-crd/crds"
    crds.mkdir()
    (crds / "widgets.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": "widgets.shop.devloop.dev"},
                "spec": {
                    "group": "shop.devloop.dev",
                    "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    ],
                },
            }
        )
    )
    fixed = project.sync()
    assert fixed.result.ok, fixed.lines
    assert "0 updated, 2 created" in fixed.of("bad-yaml")
    assert "unchanged (5 objects)" in fixed.of("web")
    assert "0 updated, 1 created" in fixed.of("template-error")
    assert "0 updated, 2 created" in fixed.of("needs-crd")
    kube = Kube(k8s)
    widgets = kube.resource("shop.devloop.dev/v1", "Widget")
    assert widgets is not None
    assert kube.get(widgets, ns, "needs-crd-widget") is not None


@pytest.mark.parametrize("version", ["helm3", "helm4"])
def test_template_error_names_the_template_and_line(
    make_project: Callable[..., Project], tool: Callable[[str], str], tmp_path: Path, version: str
) -> None:
    project = make_project("web", "broken")
    project.helm = _logging_helm(tool(version), tmp_path / version, project.helm_log)
    doc = project.config_doc()
    doc["charts"] = [{"name": "template-error", "path": "charts/template-error"}]
    project.write_config(doc)

    run = project.sync()

    assert run.writes == 0
    assert run.line.startswith("devloop: template-error: error: chart template-error (")
    assert "template-error/templates/configmap.yaml:6:19" in run.line
    assert "<.Values.logging.level>" in run.line
    assert "nil pointer evaluating interface {}.level" in run.line


def test_missing_values_file_is_a_config_error(make_project: Callable[..., Project]) -> None:
    project = make_project()
    doc = project.config_doc()
    doc["charts"][0]["values"].append("env/prod.yaml")
    project.write_config(doc)
    with pytest.raises(ConfigError) as error:
        load_config(project.root)
    assert str(error.value) == (
        f"devloop.yaml: charts[0].values[2]: env/prod.yaml does not exist "
        f"(paths are relative to {project.root})"
    )


def test_unknown_config_key_suggests_the_right_one(make_project: Callable[..., Project]) -> None:
    project = make_project()
    doc = project.config_doc()
    doc["charts"][0]["valuse"] = doc["charts"][0].pop("values")
    doc["namepsace"] = doc.pop("namespace")
    project.write_config(doc)
    with pytest.raises(ConfigError) as error:
        load_config(project.root)
    message = str(error.value)
    assert "devloop.yaml: namepsace: unknown key (did you mean 'namespace'?)" in message
    assert "devloop.yaml: charts[0].valuse: unknown key (did you mean 'values'?)" in message


# -- 8. the command line -------------------------------------------------------------------------


def devloop(
    *args: str, helm: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_devloop", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DEVLOOP_HELM": helm, **(env or {})},
    )


def test_cli_sync_and_status(tmp_path: Path, tool: Callable[[str], str]) -> None:
    root = tmp_path / "project"
    shutil.copytree(DATA / "web", root)
    helm = tool("helm4")
    cluster_dir = root / ".devloop" / "embedded"
    try:
        first = devloop("sync", "--rootdir", str(root), helm=helm)
        assert first.returncode == 0, first.stderr
        assert re.fullmatch(
            rf"devloop: web: 0 updated, 5 created, 0 pruned, 0 unchanged, {SECONDS}\n", first.stdout
        )
        assert (cluster_dir / "cluster.json").is_file(), "the embedded cluster runs in the project"

        second = devloop("sync", "--rootdir", str(root), helm=helm)
        assert re.fullmatch(rf"devloop: web: unchanged \(5 objects\), {SECONDS}\n", second.stdout)

        values = root / "charts/web/values.yaml"
        values.write_text(values.read_text().replace("replicas: 1", "replicas: 2"))
        plan = devloop("sync", "--rootdir", str(root), "--plan", helm=helm)
        assert plan.returncode == 0, plan.stderr
        assert plan.stdout.splitlines() == [
            "devloop: plan: web: update Deployment/web-web (spec.replicas): rendered differently",
            "devloop: web: plan only, nothing applied: 1 to update, 0 to create, 0 to prune, "
            "0 drifted, 4 unchanged",
        ]

        status = devloop("status", "--rootdir", str(root), helm=helm)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert re.fullmatch(
            r"devloop: cluster embedded \(https://127\.0\.0\.1:\d+, uid \w{8}\)", lines[0]
        )
        assert lines[1:] == [
            "devloop: web: 5 objects, no drift, inputs changed since the last sync"
        ]

        third = devloop("sync", "--rootdir", str(root), helm=helm)
        assert re.fullmatch(
            rf"devloop: web: 1 updated \(Deployment/web-web: spec\.replicas\), 0 created, "
            rf"0 pruned, 4 unchanged, {SECONDS}\n",
            third.stdout,
        )
    finally:
        down = devloop("cluster", "down", "--dir", str(cluster_dir), helm=helm)
        assert down.returncode == 0, down.stderr


def test_cli_refuses_a_remote_context(
    tmp_path: Path, tool: Callable[[str], str], cluster: EmbeddedCluster
) -> None:
    root = tmp_path / "project"
    shutil.copytree(DATA / "web", root)
    assert cluster.kubeconfig is not None and cluster.api is not None
    kubeconfig = _kubeconfig_with_context(
        cluster.kubeconfig, tmp_path / "prod.kubeconfig", "prod-eks", PROD_SERVER
    )
    proc = devloop(
        "sync", "--rootdir", str(root), "--cluster", "current", "--context", "prod-eks",
        helm=tool("helm4"),
        env={"KUBECONFIG": str(kubeconfig)},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(
        f"devloop: refusing kubeconfig context 'prod-eks' (API server {PROD_SERVER})"
    )
    assert "allow_contexts: [prod-eks]" in proc.stderr
    assert not (root / ".devloop").exists(), "refused before anything was started or written"


def test_namespaces_are_kept_unless_pruning_them_is_allowed(
    make_project: Callable[..., Project], k8s: Any
) -> None:
    project = make_project()
    scratch = f"{project.namespace}-scratch"
    template = project.root / "charts/web/templates/namespace.yaml"
    template.write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ .Release.Namespace }}-scratch\n"
    )
    assert "0 updated, 6 created" in project.sync().line
    template.unlink()

    kept_line = (
        rf"devloop: web: 0 updated, 0 created, 0 pruned, 1 kept \(never pruned implicitly; "
        rf"allow with --devloop-prune=namespaces\), 5 unchanged, {SECONDS}"
    )
    kept = project.sync()
    assert re.fullmatch(kept_line, kept.line)
    assert kept.writes == 0
    assert must_read(k8s, "Namespace", "", scratch)
    # Still kept, still said, on the next sync with nothing changed.
    again = project.sync()
    assert re.fullmatch(kept_line, again.line)
    assert (again.writes, again.helm) == (0, [])

    pruned = project.sync(allow_prune=["namespaces"])
    assert re.fullmatch(
        rf"devloop: web: 0 updated, 0 created, 1 pruned, 5 unchanged, {SECONDS}", pruned.line
    )
    wait_for(f"namespace {scratch} to go", lambda: read(k8s, "Namespace", "", scratch) is None)
    assert re.fullmatch(rf"devloop: web: unchanged \(5 objects\), {SECONDS}", project.sync().line)
