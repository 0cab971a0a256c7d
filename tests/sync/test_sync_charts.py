"""Charts shaped like widely used public ones, on the per-object path (issue 14).

Each project under `tests/data/sync/` reproduces one pattern with a chart written for
the test: a subchart packed as `.tgz` that keeps a generated password with `lookup`;
values generated on each render without `lookup`; hook Jobs deleted by their TTL and
by each delete policy; an object gated on `.Capabilities.APIVersions.Has` of a CRD the
chart installs; a 150-object chart with CRDs and hooks. Every test runs with Helm 3 and
Helm 4 against its own embedded cluster and shows the per-object path (the sync line
names the objects), zero writes on the second sync, and exactly the edited object and
field reported changed after a one-field edit (what affected-test selection reads).
"""

from __future__ import annotations

import base64
import re
import shlex
import shutil
import tarfile
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
from pytest_devloop.sync.syncer import Syncer, SyncResult

DATA = Path(__file__).resolve().parents[1] / "data" / "sync"
SECONDS = r"\d+\.\d\d s"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(
        config=SimulationConfig(pod_ready_delay=0.02, job_duration=0.05),
        directory=tmp_path / "cluster",
    ).start()
    yield c
    c.stop()


@pytest.fixture(params=["helm3", "helm4"])
def helm(request: pytest.FixtureRequest, tool: Callable[[str], str], tmp_path: Path) -> HelmTool:
    """Real helm behind a wrapper that logs each subcommand with its flags."""
    real = tool(str(request.param))
    wrapper = tmp_path / "bin" / "helm"
    wrapper.parent.mkdir()
    log = tmp_path / "helm-calls.log"
    wrapper.write_text(
        f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\nexec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return HelmTool(str(wrapper))


def pack(chart: Path, into: Path) -> Path:
    """`helm package` as a tarball: `<name>/...` entries, named `<name>-<version>.tgz`."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    into.mkdir(parents=True, exist_ok=True)
    out = into / f"{meta['name']}-{meta['version']}.tgz"
    with tarfile.open(out, "w:gz") as tar:
        for path in sorted(chart.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=f"{meta['name']}/{path.relative_to(chart)}")
    return out


class Project:
    def __init__(self, root: Path, cluster: EmbeddedCluster, helm: HelmTool) -> None:
        self.root = root
        self.cluster = cluster
        self.helm = helm

    @property
    def target(self) -> Target:
        return Target(
            provider="current",
            context="devloop-embedded",
            kubeconfig=str(self.cluster.kubeconfig),
            server=self.cluster.url,
            display="embedded",
        )

    def helm_calls(self) -> list[str]:
        log = self.root.parent / "helm-calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def sync(self) -> tuple[SyncResult, list[str], int, list[str]]:
        """One sync as a fresh pytest run does it: result, lines, API writes, helm calls."""
        config = load_config(self.root)
        assert config is not None
        lines: list[str] = []
        syncer = Syncer(config, self.target, out=lines.append, helm=HelmTool(self.helm.executable))
        assert self.cluster.api is not None
        writes, calls = self.cluster.api.write_requests, len(self.helm_calls())
        result = syncer.sync()
        return (
            result,
            lines,
            self.cluster.api.write_requests - writes,
            self.helm_calls()[calls:],
        )

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert text.count(old) == 1, f"{rel} has no single {old!r}"
        path.write_text(text.replace(old, new))


@pytest.fixture
def make_project(
    tmp_path: Path, cluster: EmbeddedCluster, helm: HelmTool
) -> Callable[[str], Project]:
    def make(name: str) -> Project:
        root = tmp_path / "project"
        shutil.copytree(DATA / name, root)
        return Project(root, cluster, helm)

    return make


def kube_of(cluster: EmbeddedCluster) -> Kube:
    from kubernetes import config

    return Kube(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


def live(cluster: EmbeddedCluster, api_version: str, kind: str, ns: str | None, name: str) -> Any:
    kube = kube_of(cluster)
    res = kube.resource(api_version, kind)
    assert res is not None, kind
    return kube.get(res, ns, name)


def line_of(result: SyncResult) -> str:
    assert len(result.artifacts) == 1
    art = result.artifacts[0]
    assert art.error is None, art.line
    return art.line


# -- lookup in a packed subchart ------------------------------------------------------------


def test_lookup_subchart_goes_the_per_object_path_and_keeps_its_password(
    make_project: Callable[[str], Project], cluster: EmbeddedCluster
) -> None:
    project = make_project("lookup")
    app = project.root / "charts" / "app"
    pack(project.root / "subcharts" / "auth", app / "charts")

    result, lines, _writes, calls = project.sync()
    line = line_of(result)
    # Per object, not `helm upgrade`: the objects are named and counted.
    assert re.fullmatch(
        rf"devloop: app: 0 updated, 5 created, 0 pruned, 0 unchanged, {SECONDS}", line
    ), line
    assert not [c for c in calls if c.startswith("upgrade")]
    renders = [c for c in calls if c.startswith("template")]
    # A client-side render finds the subchart's CRD not served yet (it is applied
    # first); the objects come from renders against the cluster.
    assert ["--dry-run=server" in c for c in renders] == [False, True, True], calls
    assert (
        "devloop: app: Secret/app-auth: data.password is generated anew on each render; "
        "keeping the live value"
    ) in lines
    assert not [ln for ln in lines if "generated anew" in ln and "app-auth" not in ln], lines
    secret = live(cluster, "v1", "Secret", "lookup-release", "app-auth")
    password = secret["data"]["password"]
    assert len(base64.b64decode(password)) == 24
    # .Release.Namespace differs from the config's; other namespaces and cluster scope.
    assert live(cluster, "apps/v1", "Deployment", "lookup-release", "app-web")
    mirror = live(cluster, "v1", "ConfigMap", "lookup-other", "app-mirror")
    assert mirror["data"] == {"releaseNamespace": "lookup-release"}
    assert live(
        cluster, "rbac.authorization.k8s.io/v1", "ClusterRole", None, "app-lookup-release-reader"
    )
    assert live(
        cluster,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
        "tokens.auth.example.dev",
    ), "crds/ of a packed subchart"

    result, lines, writes, calls = project.sync()
    assert re.fullmatch(rf"devloop: app: unchanged \(\d+ objects\), {SECONDS}", line_of(result))
    assert (writes, calls) == (0, [])

    project.edit("charts/app/values.yaml", "replicas: 1", "replicas: 2")
    result, lines, writes, calls = project.sync()
    assert line_of(result).startswith(
        "devloop: app: 1 updated (Deployment/app-web: spec.replicas), 0 created, 0 pruned, 4 unchanged"
    ), line_of(result)
    assert result.changed == [("apps/Deployment/lookup-release/app-web", ["spec.replicas"])]
    assert writes == 1
    assert [c.split()[0] for c in calls] == ["template"] and "--dry-run=server" in calls[0]
    assert not [ln for ln in lines if "generated anew" in ln], "said once"
    assert (
        live(cluster, "v1", "Secret", "lookup-release", "app-auth")["data"]["password"] == password
    )


# -- generated values without lookup -----------------------------------------------------------


def test_values_generated_on_each_render_are_kept_and_never_rewritten(
    make_project: Callable[[str], Project], cluster: EmbeddedCluster
) -> None:
    project = make_project("random")
    ns = "random"

    result, lines, _writes, _calls = project.sync()
    assert re.fullmatch(
        rf"devloop: gen: 0 updated, 3 created, 0 pruned, 0 unchanged, {SECONDS}", line_of(result)
    )
    generated = sorted(ln for ln in lines if "generated anew" in ln)
    assert generated == [
        "devloop: gen: ConfigMap/gen-instance: data.id is generated anew on each render; keeping the live value",
        "devloop: gen: Deployment/gen-server: spec.template.metadata.annotations.checksum/secret is "
        "generated anew on each render; keeping the live value",
        "devloop: gen: Secret/gen-admin: data.admin-password is generated anew on each render; "
        "keeping the live value",
    ]
    assert not [ln for ln in lines if "admin-password" in ln and "=" in ln], "no value printed"
    password = live(cluster, "v1", "Secret", ns, "gen-admin")["data"]["admin-password"]
    instance = live(cluster, "v1", "ConfigMap", ns, "gen-instance")["data"]["id"]

    result, lines, writes, calls = project.sync()
    assert writes == 0 and calls == []

    # A one-field edit re-renders: only that field is written; the generated ones stay.
    project.edit("charts/gen/values.yaml", "replicas: 1", "replicas: 3")
    result, lines, writes, calls = project.sync()
    assert line_of(result).startswith(
        "devloop: gen: 1 updated (Deployment/gen-server: spec.replicas), 0 created, 0 pruned, 2 unchanged"
    ), line_of(result)
    assert result.changed == [(f"apps/Deployment/{ns}/gen-server", ["spec.replicas"])]
    assert writes == 1 and not [ln for ln in lines if "generated anew" in ln]
    assert live(cluster, "v1", "Secret", ns, "gen-admin")["data"]["admin-password"] == password
    assert live(cluster, "v1", "ConfigMap", ns, "gen-instance")["data"]["id"] == instance

    # A template edit touching another field of the Secret writes that field alone.
    project.edit("charts/gen/templates/all.yaml", '"admin" | b64enc', '"root" | b64enc')
    result, lines, writes, calls = project.sync()
    assert result.changed == [(f"/Secret/{ns}/gen-admin", ["data.admin-user"])]
    secret = live(cluster, "v1", "Secret", ns, "gen-admin")
    assert secret["data"]["admin-password"] == password
    assert base64.b64decode(secret["data"]["admin-user"]) == b"root"


# -- hooks ----------------------------------------------------------------------------------------


def test_hooks_deleted_by_ttl_and_by_each_delete_policy(
    make_project: Callable[[str], Project], cluster: EmbeddedCluster
) -> None:
    project = make_project("ttlhooks")
    ns = "ttlhooks"

    result, _lines, _writes, _calls = project.sync()
    line = line_of(result)
    assert line.startswith("devloop: ttl: 0 updated, 1 created, 0 pruned, 0 unchanged, hooks: "), (
        line
    )
    assert re.search(
        r"hooks: ConfigMap/ttl-hook-settings ran \(pre-install\), "
        r"Job/ttl-admission-create ran \(pre-install\), "
        r"Job/ttl-admission-patch ran \(post-install\), "
        r"Job/ttl-check ran \(post-install\), " + SECONDS + "$",
        line,
    ), line
    # TTL 0 and hook-succeeded: gone; no policy for success: kept; test hooks never run.
    assert live(cluster, "batch/v1", "Job", ns, "ttl-admission-create") is None
    assert live(cluster, "batch/v1", "Job", ns, "ttl-admission-patch") is None
    assert live(cluster, "batch/v1", "Job", ns, "ttl-check")["status"]["succeeded"] == 1
    assert live(cluster, "v1", "ConfigMap", ns, "ttl-hook-settings")
    assert live(cluster, "v1", "Pod", ns, "ttl-test") is None

    result, _lines, writes, calls = project.sync()
    assert (writes, calls) == (0, [])

    project.edit("charts/ttl/values.yaml", "replicas: 1", "replicas: 2")
    result, _lines, writes, calls = project.sync()
    assert re.fullmatch(
        r"devloop: ttl: 1 updated \(Deployment/ttl-controller: spec.replicas\), 0 created, "
        rf"0 pruned, 0 unchanged, hooks: 4 hooks unchanged, {SECONDS}",
        line_of(result),
    ), line_of(result)
    assert writes == 1
    # One render: the test hook (never run, never recorded) is not taken for a new object.
    assert [c.split()[0] for c in calls] == ["template"], calls

    # An input of the hooks changed: they run again, the TTL-0 ones included.
    project.edit("charts/ttl/values.yaml", 'certVersion: "1"', 'certVersion: "2"')
    result, _lines, writes, calls = project.sync()
    assert re.search(
        r"hooks: ConfigMap/ttl-hook-settings ran \(pre-upgrade\), "
        r"Job/ttl-admission-create ran \(pre-upgrade\), "
        r"Job/ttl-admission-patch ran \(post-upgrade\), Job/ttl-check ran \(post-upgrade\), ",
        line_of(result),
    ), line_of(result)

    # A failing hook: its pod's last log lines and events; `hook-failed` deletes it.
    project.edit("charts/ttl/values.yaml", "failCheck: false", "failCheck: true")
    result, _lines, writes, calls = project.sync()
    art = result.artifacts[0]
    assert art.error is not None
    message = art.error
    assert message.startswith(
        "post-upgrade hook Job/ttl-check (ttl/templates/hooks.yaml) failed: Job failed"
    ), message
    assert "last log lines of pod ttl-check-" in message, message
    assert "exit code 1" in message or "exited with code 1" in message, message
    assert re.search(r"event .* Warning .*", message) or "event " in message, message
    assert live(cluster, "batch/v1", "Job", ns, "ttl-check") is None, "hook-failed"


# -- capabilities -----------------------------------------------------------------------------------


def test_object_gated_on_its_own_crd_converges_in_one_sync(
    make_project: Callable[[str], Project], cluster: EmbeddedCluster
) -> None:
    project = make_project("capgate")
    ns = "capgate"

    result, _lines, _writes, _calls = project.sync()
    line = line_of(result)
    assert line.startswith("devloop: widgets: 0 updated, 3 created, 0 pruned, 0 unchanged"), line
    assert live(cluster, "capgate.example.dev/v1", "Widget", ns, "widgets-main")["spec"] == {
        "size": 1
    }

    result, _lines, writes, calls = project.sync()
    assert (writes, calls) == (0, []), "the capabilities it checks did not change"

    # Another CRD in the cluster changes the API list, not what this chart asks.
    kube = kube_of(cluster)
    crds = kube.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    assert crds is not None
    crd = yaml.safe_load((DATA / "capgate/charts/widgets/crds/widgets.yaml").read_text())
    crd["metadata"]["name"] = "others.unrelated.example.dev"
    crd["spec"]["group"] = "unrelated.example.dev"
    crd["spec"]["names"] = {"kind": "Other", "plural": "others", "singular": "other"}
    kube.apply(crds, crd, force=True, field_manager="someone")
    result, _lines, writes, calls = project.sync()
    assert re.fullmatch(rf"devloop: widgets: unchanged \(\d+ objects\), {SECONDS}", line_of(result))
    assert (writes, calls) == (0, [])

    project.edit("charts/widgets/values.yaml", "size: 1", "size: 2")
    result, _lines, writes, calls = project.sync()
    assert result.changed == [(f"capgate.example.dev/Widget/{ns}/widgets-main", ["spec.size"])]
    assert writes == 1


# -- 150 objects ------------------------------------------------------------------------------------


def test_150_object_chart_with_crds_hooks_and_lookup_no_op_writes_and_waits_nothing(
    make_project: Callable[[str], Project], cluster: EmbeddedCluster
) -> None:
    project = make_project("big")
    shutil.copytree(DATA / "lookup" / "subcharts", project.root / "subcharts")
    pack(project.root / "subcharts" / "auth", project.root / "charts" / "big" / "charts")
    ns = "big"

    result, _lines, _writes, _calls = project.sync()
    line = line_of(result)
    assert line.startswith(
        "devloop: big: 0 updated, 150 created, 0 pruned, 0 unchanged, hooks: "
    ), line

    result, _lines, writes, calls = project.sync()
    assert re.fullmatch(rf"devloop: big: unchanged \(\d+ objects\), {SECONDS}", line_of(result))
    assert (writes, calls) == (0, [])
    assert result.timings["ready"] == 0.0, "no wait"

    project.edit("charts/big/values.yaml", "svc0: 1", "svc0: 2")
    result, _lines, writes, calls = project.sync()
    assert result.changed == [(f"apps/Deployment/{ns}/big-svc0", ["spec.replicas"])]
    assert writes == 1
    assert "4 hooks unchanged" in line_of(result)


# -- affected-test selection, as a user runs it ----------------------------------------------------

SELECTION_TESTS = """\
def test_server_replicas(cluster, rendered, eventually):
    wanted = rendered.get("Deployment", "gen-server")["spec"]["replicas"]
    eventually(lambda: cluster.deployment("gen-server").ready_replicas == wanted)


def test_admin_secret_has_a_password(cluster):
    assert cluster.get("Secret", "gen-admin")["data"]["admin-password"]


def test_instance_id_is_set(cluster):
    assert cluster.get("ConfigMap", "gen-instance")["data"]["id"]
"""


@pytest.mark.slow
@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_a_one_field_edit_selects_exactly_the_tests_that_read_it(
    tmp_path: Path, tool: Callable[[str], str], helm_name: str
) -> None:
    import os
    import subprocess
    import sys

    root = tmp_path / "project"
    shutil.copytree(DATA / "random", root)
    (root / "tests").mkdir()
    (root / "tests" / "test_gen.py").write_text(SELECTION_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["DEVLOOP_HELM"] = tool(helm_name)
    env.pop("PYTEST_XDIST_WORKER", None)

    def pytest_run(*args: str, status: tuple[int, ...] = (0,)) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:benchmark", "-rA", *args],
            cwd=root, env=env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert proc.returncode in status, proc.stdout + proc.stderr
        return proc.stdout

    try:
        full = pytest_run()
        assert "3 passed" in full, full
        assert "generated anew on each render" in full, full

        again = pytest_run("--devloop-affected", status=(0, 5))  # 5: pytest ran no test
        assert "3 deselected" in again and "PASSED" not in again, again

        (root / "charts/gen/values.yaml").write_text("replicas: 2\n")
        edited = pytest_run("--devloop-affected")
        assert "PASSED tests/test_gen.py::test_server_replicas" in edited, edited
        assert "1 passed, 2 deselected" in edited, edited
        assert "generated anew" not in edited, "said once"
    finally:
        subprocess.run(
            [sys.executable, "-m", "pytest_devloop", "cluster", "down", "--dir",
             str(root / ".devloop" / "embedded")],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
