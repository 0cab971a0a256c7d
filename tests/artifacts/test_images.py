"""Images: content-digest tags, builds only when the inputs changed, loaders per cluster,
and the chart values that carry the references.

Builds run against the real docker engine (`scripts/tools.sh` starts one) with images that
need no registry: `FROM scratch` plus context files, or the local busybox image. Every
image a test builds is tagged under a repository of its own (`devloop-test-<hex>-...`) and
removed at the end. The loaders (kind, minikube, k3d, registry) are checked against the
command lines they run, with a fake runner; the real tools are used where installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_devloop.artifacts.fingerprint import FileHasher
from pytest_devloop.artifacts.images import (
    Builder,
    CommandResult,
    DockerUnavailable,
    ImageBuildError,
    ImageInputError,
    ImagePlaceholderError,
    ImageRef,
    K3dLoader,
    KindLoader,
    MinikubeLoader,
    RegistryPusher,
    build_images,
    chart_image_values,
    check_image_placeholders,
    fingerprint_image,
    image_refs,
    loader_for,
    normalize_ref,
)
from pytest_devloop.artifacts.render import HelmTool, render_chart
from pytest_devloop.config.model import ChartRelease, Config, ConfigError, ImageSpec, parse_config

DATA = Path(__file__).resolve().parents[1] / "data" / "images"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_project"


def settled_clock() -> int:
    """A clock 10 s ahead: every file counts as written long ago, so digests are cached."""
    return time.time_ns() + 10_000_000_000


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def copy_context(tmp_path: Path, name: str = "app") -> Path:
    target = tmp_path / name
    shutil.copytree(DATA / name, target)
    return target


def config_for(root: Path, images_yaml: str, extra: str = "") -> Config:
    text = textwrap.dedent(images_yaml) + textwrap.dedent(extra)
    return parse_config(text, root / "devloop.yaml")


# --------------------------------------------------------------------------- a fake runner


class FakeRunner:
    """Answers command lines from a table of (argv prefix, result), and records them."""

    def __init__(self, answers: Sequence[tuple[Sequence[str], CommandResult]] = ()) -> None:
        self.answers = [(list(prefix), result) for prefix, result in answers]
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str]] = []

    def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        self.calls.append(list(argv))
        self.envs.append(dict(env or {}))
        for prefix, result in self.answers:
            if list(argv[: len(prefix)]) == prefix:
                if on_line is not None:
                    for line in (result.stdout + result.stderr).splitlines():
                        on_line(line)
                    return CommandResult(result.returncode)
                return result
        raise AssertionError(f"unexpected command: {argv}")


OK = CommandResult(0)
NO_SUCH_IMAGE = CommandResult(1, "[]\n", "Error response from daemon: No such image: x\n")


def crictl(*tags: str) -> CommandResult:
    return CommandResult(0, json.dumps({"images": [{"id": "sha256:1", "repoTags": list(tags)}]}))


# --------------------------------------------------------------------------- references


def test_tag_is_devloop_and_12_hex_of_the_digest() -> None:
    ref = ImageRef("sms-checker-app", "3f2a9c1b07de" + "0" * 52)
    assert ref.tag == "devloop-3f2a9c1b07de"
    assert ref.ref == "sms-checker-app:devloop-3f2a9c1b07de"
    pushed = ImageRef("sms-checker-app", "3f2a9c1b07de" + "0" * 52, "localhost:5000/team")
    assert pushed.repository == "localhost:5000/team/sms-checker-app"
    assert pushed.ref == "localhost:5000/team/sms-checker-app:devloop-3f2a9c1b07de"
    already = ImageRef("localhost:5000/app", "a" * 64, "localhost:5000")
    assert already.repository == "localhost:5000/app", "no second registry prefix"


@pytest.mark.parametrize(
    ("ref", "normalized"),
    [
        ("app:devloop-1", "docker.io/library/app:devloop-1"),
        ("team/app:v1", "docker.io/team/app:v1"),
        ("localhost:5000/app:v1", "localhost:5000/app:v1"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("ghcr.io/o/app:v", "ghcr.io/o/app:v"),
        ("docker.io/library/app:t", "docker.io/library/app:t"),
    ],
)
def test_normalize_ref_as_container_runtimes_list_images(ref: str, normalized: str) -> None:
    assert normalize_ref(ref) == normalized


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_follows_content_args_and_target_not_ignored_files_or_touches(
    tmp_path: Path,
) -> None:
    ctx = copy_context(tmp_path)
    hasher = FileHasher(clock=settled_clock)
    spec = ImageSpec(name="app", context=ctx)
    base = fingerprint_image(spec, hasher)
    assert fingerprint_image(spec, FileHasher()) == base, "same inputs, same digest"

    reads = hasher.reads
    (ctx / "app.py").touch()
    assert fingerprint_image(spec, hasher) == base, "a touch changes nothing"
    assert hasher.reads == reads + 1, "the touched file was re-read, and only it"

    write(ctx / "build.log", "noise\n")
    write(ctx / "tmp" / "scratch.txt", "noise\n")
    (ctx / "README.md").write_text("edited notes\n")
    assert fingerprint_image(spec, hasher) == base, ".dockerignored files do not count"

    (ctx / "app.py").write_text('print("changed")\n')
    changed = fingerprint_image(spec, hasher)
    assert changed != base, "a content change is a new digest"
    (ctx / "app.py").write_text('print("hello from the test image")\n')
    assert fingerprint_image(spec, hasher) == base, "back to the same content, back to the tag"

    with_args = ImageSpec(name="app", context=ctx, build_args={"GREETING": "hi"})
    assert fingerprint_image(with_args, hasher) != base
    assert fingerprint_image(
        ImageSpec(name="app", context=ctx, build_args={"GREETING": "hi"}), hasher
    ) == fingerprint_image(with_args, hasher)
    assert fingerprint_image(ImageSpec(name="app", context=ctx, target="base"), hasher) != base

    (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text() + "LABEL x=y\n")
    assert fingerprint_image(spec, hasher) != base, "the Dockerfile counts"


def test_fingerprint_counts_the_ignore_file_and_the_executable_bit(tmp_path: Path) -> None:
    ctx = copy_context(tmp_path)
    hasher = FileHasher(clock=settled_clock)
    spec = ImageSpec(name="app", context=ctx)
    base = fingerprint_image(spec, hasher)
    (ctx / "app.py").chmod(0o755)
    assert fingerprint_image(spec, hasher) != base, "docker copies the mode"
    (ctx / "app.py").chmod(0o644)
    assert fingerprint_image(spec, hasher) == base
    (ctx / ".dockerignore").write_text("*.log\ntmp/\n")  # README.md now sent
    assert fingerprint_image(spec, hasher) != base


def test_fingerprint_of_a_dockerfile_outside_the_context(tmp_path: Path) -> None:
    ctx = copy_context(tmp_path)
    outside = write(tmp_path / "build" / "Dockerfile.app", "FROM scratch\nCOPY . /app\n")
    spec = ImageSpec(name="app", context=ctx, dockerfile=outside)
    hasher = FileHasher(clock=settled_clock)
    base = fingerprint_image(spec, hasher)
    outside.write_text("FROM scratch\nCOPY app.py /app.py\n")
    assert fingerprint_image(spec, hasher) != base


def test_missing_context_or_dockerfile_names_the_file_and_key(tmp_path: Path) -> None:
    ctx = copy_context(tmp_path)
    with pytest.raises(ConfigError) as info:
        config_for(tmp_path, "images:\n  - name: app\n    context: nope\n")
    assert "images[0].context: nope does not exist" in str(info.value)
    with pytest.raises(ConfigError) as info:
        config_for(tmp_path, "images:\n  - {name: app, context: app, dockerfile: Dockerfile.dev}\n")
    assert "images[0].dockerfile: Dockerfile.dev does not exist in" in str(info.value)

    # Deleted after the config was read (watch mode): the same kind of message.
    config = config_for(tmp_path, "images:\n  - {name: app, context: app}\n")
    (ctx / "Dockerfile").unlink()
    with pytest.raises(ConfigError) as info:
        image_refs(config, FileHasher())
    message = str(info.value)
    assert message.startswith("devloop.yaml: images[0].dockerfile: ")
    assert f"{ctx / 'Dockerfile'} does not exist" in message
    shutil.rmtree(ctx)
    with pytest.raises(ImageInputError) as input_info:
        fingerprint_image(config.images[0], FileHasher())
    assert str(input_info.value) == f"image app: context: {ctx} does not exist"


def test_a_bad_dockerignore_pattern_is_an_input_error(tmp_path: Path) -> None:
    ctx = copy_context(tmp_path)
    (ctx / ".dockerignore").write_text("ok\n!\n")
    with pytest.raises(ImageInputError) as info:
        fingerprint_image(ImageSpec(name="app", context=ctx), FileHasher())
    assert ".dockerignore:2: invalid pattern '!'" in str(info.value)


def test_image_refs_cover_every_image_in_order_with_the_registry(tmp_path: Path) -> None:
    copy_context(tmp_path, "app")
    copy_context(tmp_path, "slow")
    config = config_for(
        tmp_path,
        """\
        image_registry: localhost:5000
        images:
          - {name: web, context: app}
          - {name: worker, context: slow}
        """,
    )
    refs = image_refs(config, FileHasher())
    assert list(refs) == ["web", "worker"]
    assert refs["web"].ref.startswith("localhost:5000/web:devloop-")
    assert len(refs["web"].digest) == 64


# --------------------------------------------------------------------------- building (fake runner)


def spec_and_ref(tmp_path: Path, name: str = "app") -> tuple[ImageSpec, ImageRef]:
    ctx = copy_context(tmp_path, name)
    spec = ImageSpec(name=name, context=ctx)
    return spec, ImageRef(name, fingerprint_image(spec, FileHasher()))


def test_build_command_line_legacy_builder_and_buildkit(tmp_path: Path) -> None:
    ctx = copy_context(tmp_path)
    spec = ImageSpec(name="app", context=ctx, build_args={"B": "2", "A": "1"}, target="release")
    ref = ImageRef("app", "ab" * 32)
    legacy = FakeRunner([(["docker", "buildx"], CommandResult(1)), (["docker", "build"], OK)])
    Builder(runner=legacy).build(spec, ref)
    assert legacy.calls[-1] == [
        "docker", "build", "--tag", f"app:devloop-{'ab' * 6}", "--file", str(ctx / "Dockerfile"),
        "--target", "release", "--build-arg", "A=1", "--build-arg", "B=2",
        "--label", "dev.devloop.image=app", "--label", f"dev.devloop.inputs={'ab' * 32}",
        "--force-rm", str(ctx),
    ]  # fmt: skip
    assert legacy.envs[-1]["DOCKER_BUILDKIT"] == "0", "no buildx: the legacy builder"

    kit = FakeRunner([(["docker", "buildx", "version"], OK), (["docker", "build"], OK)])
    Builder(runner=kit).build(spec, ref)
    assert kit.envs[-1]["DOCKER_BUILDKIT"] == "1"
    assert kit.calls[-1][-4:] == ["--progress", "plain", "--load", str(ctx)]

    told = FakeRunner([(["docker", "build"], OK)])
    Builder(runner=told, env={"DOCKER_BUILDKIT": "0"}).build(spec, ref)
    assert [c[1] for c in told.calls] == ["build"], "DOCKER_BUILDKIT set: nothing probed"


def test_exists_asks_docker_once_per_reference() -> None:
    runner = FakeRunner([(["docker", "image", "inspect"], CommandResult(0, "sha256:1\n"))])
    builder = Builder(runner=runner)
    assert builder.exists("app:devloop-1")
    assert builder.exists("app:devloop-1")
    assert runner.calls == [["docker", "image", "inspect", "--format", "{{.Id}}", "app:devloop-1"]]
    missing = Builder(runner=FakeRunner([(["docker", "image"], NO_SUCH_IMAGE)]))
    assert not missing.exists("app:devloop-2")


def test_long_builds_stream_their_log_and_short_ones_stay_quiet(tmp_path: Path) -> None:
    spec, ref = spec_and_ref(tmp_path)
    log = "\n".join(f"Step {i}/5" for i in range(1, 6))
    now = [0.0]

    class Clock:
        def __call__(self) -> float:
            now[0] += 0.75  # every reading is 0.75 s later: step 3 crosses 2 s
            return now[0]

    runner = FakeRunner([(["docker", "build"], CommandResult(0, log))])
    streamed: list[str] = []
    seconds = Builder(runner=runner, buildkit=False, clock=Clock()).build(
        spec, ref, stream=streamed.append
    )
    assert streamed == [f"Step {i}/5" for i in range(1, 6)], "earlier lines first, then live"
    assert seconds >= 2.0

    quick: list[str] = []
    Builder(runner=runner, buildkit=False, clock=lambda: 0.0).build(spec, ref, stream=quick.append)
    assert quick == []


def test_build_failure_keeps_the_last_30_lines(tmp_path: Path) -> None:
    spec, ref = spec_and_ref(tmp_path)
    log = "\n".join(f"line {i}" for i in range(1, 51))
    runner = FakeRunner([(["docker", "build"], CommandResult(2, log))])
    with pytest.raises(ImageBuildError) as info:
        Builder(runner=runner, buildkit=False).build(spec, ref)
    e = info.value
    assert e.tail == [f"line {i}" for i in range(21, 51)]
    assert e.dockerfile == spec.context / "Dockerfile"
    assert str(e).startswith(
        f"image app: docker build failed (exit 2) for {spec.context / 'Dockerfile'}; "
        "the last 30 lines of the build log:\n    line 21\n"
    )


def test_docker_missing_or_stopped_is_one_line_with_the_fix(tmp_path: Path) -> None:
    spec, ref = spec_and_ref(tmp_path)
    with pytest.raises(DockerUnavailable) as info:
        Builder(str(tmp_path / "no-docker")).exists(ref.ref)
    assert "docker is not installed" in str(info.value)

    stopped = FakeRunner(
        [
            (
                ["docker"],
                CommandResult(
                    1,
                    "",
                    "Cannot connect to the Docker daemon at unix:///x.sock. "
                    "Is the docker daemon running?\n",
                ),
            )
        ]
    )
    with pytest.raises(DockerUnavailable) as info:
        Builder(runner=stopped, buildkit=False).build(spec, ref)
    assert str(info.value) == (
        "docker is not running (nothing answers at unix:///x.sock): start it "
        "(e.g. `sudo dockerd &` or `bash scripts/tools.sh`)"
    )


def test_build_images_builds_only_what_is_missing_and_says_so(tmp_path: Path) -> None:
    copy_context(tmp_path, "app")
    copy_context(tmp_path, "slow")
    config = config_for(
        tmp_path, "images:\n  - {name: web, context: app}\n  - {name: worker, context: slow}\n"
    )
    refs = image_refs(config, FileHasher())
    runner = FakeRunner(
        [
            (["docker", "image", "inspect", "--format", "{{.Id}}", refs["web"].ref], OK),
            (["docker", "image", "inspect"], NO_SUCH_IMAGE),
            (["docker", "build"], OK),
        ]
    )
    lines: list[str] = []
    results = build_images(
        config, refs, out=lines.append, builder=Builder(runner=runner, buildkit=False)
    )
    assert [(r.name, r.action) for r in results] == [("web", "unchanged"), ("worker", "built")]
    assert f"devloop: image web: unchanged ({refs['web'].tag})" in lines
    assert any(
        line.startswith(f"devloop: image worker: built {refs['worker'].tag} (") for line in lines
    )
    builds = [c for c in runner.calls if c[1] == "build"]
    assert len(builds) == 1 and refs["worker"].ref in builds[0]

    only = build_images(
        config, refs, only={"web"}, out=lines.append, builder=Builder(runner=runner)
    )
    assert [r.name for r in only] == ["web"]


def test_embedded_cluster_builds_nothing_and_says_why(tmp_path: Path) -> None:
    copy_context(tmp_path, "app")
    config = config_for(tmp_path, "images:\n  - {name: web, context: app}\n")
    refs = image_refs(config, FileHasher())
    runner = FakeRunner()
    lines: list[str] = []
    results = build_images(
        config,
        refs,
        out=lines.append,
        builder=Builder(runner=runner),
        skip_reason="the embedded cluster runs no containers; --devloop-build builds it",
    )
    assert runner.calls == []
    assert results[0].action == "not built"
    assert lines == [
        f"devloop: image web: {refs['web'].tag}, not built "
        "(the embedded cluster runs no containers; --devloop-build builds it)"
    ]


def test_builds_run_concurrently_and_bounded(tmp_path: Path) -> None:
    names = ["a", "b", "c", "d"]
    for name in names:
        write(tmp_path / name / "Dockerfile", f"FROM scratch\nLABEL n={name}\n")
    config = config_for(
        tmp_path, "images:\n" + "".join(f"  - {{name: {n}, context: {n}}}\n" for n in names)
    )
    refs = image_refs(config, FileHasher())
    active = 0
    most = 0
    lock = threading.Lock()
    # Two builds must be in flight together to pass the barrier: a serial pass times out.
    barrier = threading.Barrier(2, timeout=10)

    class Runner(FakeRunner):
        def __call__(
            self,
            argv: Sequence[str],
            *,
            env: Mapping[str, str] | None = None,
            on_line: Callable[[str], None] | None = None,
        ) -> CommandResult:
            nonlocal active, most
            if argv[1] != "build":
                return super().__call__(argv, env=env, on_line=on_line)
            with lock:
                active += 1
                most = max(most, active)
            barrier.wait()
            with lock:
                active -= 1
            return OK

    runner = Runner([(["docker", "image", "inspect"], NO_SUCH_IMAGE)])
    lines: list[str] = []
    results = build_images(
        config,
        refs,
        out=lines.append,
        builder=Builder(runner=runner, buildkit=False),
        max_workers=2,
    )
    assert [r.action for r in results] == ["built"] * 4
    assert most == 2, "two at a time, never more"
    assert sorted(line.split(":")[1] for line in lines) == [f" image {n}" for n in names]


# --------------------------------------------------------------------------- loaders (recorded)


def test_kind_loads_only_when_a_node_lacks_the_image() -> None:
    runner = FakeRunner(
        [
            (["kind", "get", "nodes"], CommandResult(0, "dev-control-plane\ndev-worker\n")),
            (
                ["docker", "exec", "dev-control-plane"],
                crictl("docker.io/library/app:devloop-1", "docker.io/library/app:devloop-2"),
            ),
            (["docker", "exec", "dev-worker"], crictl("docker.io/library/app:devloop-1")),
            (["kind", "load"], OK),
        ]
    )
    kind = KindLoader("dev", runner=runner)
    assert kind.target == "kind-dev"
    assert kind.has("app:devloop-1")
    assert runner.calls == [
        ["kind", "get", "nodes", "--name", "dev"],
        ["docker", "exec", "dev-control-plane", "crictl", "images", "-o", "json"],
        ["docker", "exec", "dev-worker", "crictl", "images", "-o", "json"],
    ]
    runner.calls.clear()
    assert kind.has("app:devloop-1") and runner.calls == [], "known to be there: no question"
    assert not kind.has("app:devloop-2"), "the worker lacks it"
    kind.load("app:devloop-2")
    assert runner.calls[-1] == ["kind", "load", "docker-image", "app:devloop-2", "--name", "dev"]


def test_minikube_lists_then_loads_and_docker_env_needs_nothing() -> None:
    runner = FakeRunner(
        [
            (["minikube", "image", "ls"], CommandResult(0, "docker.io/library/app:devloop-1\n")),
            (["minikube", "image", "load"], OK),
        ]
    )
    minikube = MinikubeLoader("minikube", runner=runner, environ={})
    assert minikube.has("app:devloop-1") and not minikube.has("app:devloop-2")
    minikube.load("app:devloop-2")
    assert runner.calls == [
        ["minikube", "image", "ls", "-p", "minikube"],
        ["minikube", "image", "ls", "-p", "minikube"],
        ["minikube", "image", "load", "app:devloop-2", "-p", "minikube"],
    ]
    env_runner = FakeRunner()
    in_daemon = MinikubeLoader(
        "minikube", runner=env_runner, environ={"MINIKUBE_ACTIVE_DOCKERD": "minikube"}
    )
    assert in_daemon.builds_in_cluster and in_daemon.has("app:devloop-9")
    assert env_runner.calls == [], "docker-env: the build went into minikube's daemon"


def test_k3d_checks_the_server_node_then_imports() -> None:
    runner = FakeRunner(
        [
            (["docker", "exec", "k3d-dev-server-0"], crictl("docker.io/library/app:devloop-1")),
            (["k3d", "image", "import"], OK),
        ]
    )
    k3d = K3dLoader("dev", runner=runner)
    assert k3d.target == "k3d-dev"
    assert k3d.has("app:devloop-1") and not k3d.has("app:devloop-2")
    k3d.load("app:devloop-2")
    assert runner.calls[-1] == ["k3d", "image", "import", "app:devloop-2", "--cluster", "dev"]
    assert runner.calls[0] == [
        "docker", "exec", "k3d-dev-server-0", "crictl", "images", "-o", "json",
    ]  # fmt: skip


def test_registry_checks_the_manifest_then_pushes() -> None:
    runner = FakeRunner(
        [
            (["docker", "manifest", "inspect", "--insecure", "localhost:5000/app:devloop-1"], OK),
            (["docker", "manifest", "inspect"], CommandResult(1, "", "no such manifest")),
            (["docker", "push"], OK),
        ]
    )
    registry = RegistryPusher("localhost:5000", runner=runner)
    assert registry.has("localhost:5000/app:devloop-1")
    assert not registry.has("localhost:5000/app:devloop-2")
    registry.load("localhost:5000/app:devloop-2")
    assert runner.calls[-1] == ["docker", "push", "localhost:5000/app:devloop-2"]
    remote = FakeRunner([(["docker", "manifest"], OK)])
    RegistryPusher("ghcr.io/team", runner=remote).has("ghcr.io/team/app:devloop-1")
    assert remote.calls == [["docker", "manifest", "inspect", "ghcr.io/team/app:devloop-1"]]


def test_a_failed_load_names_the_command_and_its_error() -> None:
    runner = FakeRunner(
        [
            (["kind", "get"], CommandResult(0, "dev-control-plane\n")),
            (["docker", "exec"], crictl()),
            (["kind", "load"], CommandResult(1, "", "ERROR: image not present locally\n")),
        ]
    )
    with pytest.raises(Exception, match=r"`kind load docker-image app:x --name dev` failed"):
        KindLoader("dev", runner=runner).load("app:x")


def test_loader_for_each_provider() -> None:
    assert loader_for("embedded") is None
    assert loader_for("current") is None
    assert isinstance(loader_for("kind:dev"), KindLoader)
    assert isinstance(loader_for("minikube:minikube"), MinikubeLoader)
    assert isinstance(loader_for("k3d:dev"), K3dLoader)
    assert isinstance(loader_for("current", registry="localhost:5000"), RegistryPusher)


def test_build_images_loads_after_building_and_skips_what_the_node_has(tmp_path: Path) -> None:
    copy_context(tmp_path, "app")
    copy_context(tmp_path, "slow")
    config = config_for(
        tmp_path, "images:\n  - {name: web, context: app}\n  - {name: worker, context: slow}\n"
    )
    refs = image_refs(config, FileHasher())
    on_node = normalize_ref(refs["web"].ref)
    runner = FakeRunner(
        [
            (["docker", "image", "inspect"], OK),
            (["kind", "get", "nodes"], CommandResult(0, "dev-control-plane\n")),
            (["docker", "exec"], crictl(on_node)),
            (["kind", "load"], OK),
        ]
    )
    lines: list[str] = []
    results = build_images(
        config,
        refs,
        loader=KindLoader("dev", runner=runner),
        out=lines.append,
        builder=Builder(runner=runner),
        max_workers=1,
    )
    assert [(r.action, r.loaded) for r in results] == [("unchanged", False), ("unchanged", True)]
    assert lines[:2] == [
        f"devloop: image web: unchanged ({refs['web'].tag})",
        f"devloop: image worker: unchanged ({refs['worker'].tag})",
    ]
    assert lines[2].startswith("devloop: image worker: loaded into kind-dev (")
    assert [c for c in runner.calls if c[:2] == ["kind", "load"]] == [
        ["kind", "load", "docker-image", refs["worker"].ref, "--name", "dev"]
    ]


# --------------------------------------------------------------------------- chart values


def refs_of(*names: str) -> dict[str, ImageRef]:
    return {n: ImageRef(n, f"{i:012x}" + "f" * 52) for i, n in enumerate(names, start=1)}


def test_devloop_placeholders_in_set_values() -> None:
    refs = refs_of("sms-checker-app", "sms-checker-model")
    release = ChartRelease(
        name="sms-checker",
        path=Path("/charts/sms-checker"),
        set={
            "app.image.repository": "{{image.repo:sms-checker-app}}",
            "app.image.tag": "{{ image.tag : sms-checker-app }}",
            "model.image": "{{image:sms-checker-model}}",
            "sidecars": [{"image": "{{image:sms-checker-app}}"}],
            "replicas": 2,
            "greeting": "{{ .Release.Name }} stays for the chart's tpl",
        },
    )
    values, used = chart_image_values(release, refs)
    assert values == {
        "app.image.repository": "sms-checker-app",
        "app.image.tag": "devloop-000000000001",
        "model.image": "sms-checker-model:devloop-000000000002",
        "sidecars": [{"image": "sms-checker-app:devloop-000000000001"}],
        "replicas": 2,
        "greeting": "{{ .Release.Name }} stays for the chart's tpl",
    }
    assert used == ["sms-checker-app", "sms-checker-model"]


def test_skaffold_set_value_templates() -> None:
    refs = refs_of("sms-checker-app", "ghcr.io/team/model")
    release = ChartRelease(
        name="sms-checker",
        path=Path("/c"),
        set={"app.image.tag": "latest"},
        image_values={
            "app.image.repository": "{{.IMAGE_REPO_sms_checker_app}}",
            "app.image.tag": "{{ .IMAGE_TAG_sms_checker_app }}",
            "model.image": "{{.IMAGE_FULLY_QUALIFIED_ghcr_io_team_model}}",
            "model.registry": "{{.IMAGE_DOMAIN_ghcr_io_team_model}}",
            "model.repository": "{{.IMAGE_REPO_NO_DOMAIN_ghcr_io_team_model}}",
            "model.tag": "{{.IMAGE_TAG_ghcr_io_team_model}}@{{.IMAGE_DIGEST_ghcr_io_team_model}}",
        },
    )
    values, used = chart_image_values(release, refs)
    assert values == {
        "app.image.repository": "sms-checker-app",
        "app.image.tag": "devloop-000000000001",  # the template wins over set
        "model.image": "ghcr.io/team/model:devloop-000000000002",
        "model.registry": "ghcr.io",
        "model.repository": "team/model",
        "model.tag": "devloop-000000000002",  # no registry digest: no `@`
    }
    assert used == ["sms-checker-app", "ghcr.io/team/model"]

    single = ChartRelease(name="one", path=Path("/c"), image_values={"image": "{{.IMAGE_REPO}}"})
    assert chart_image_values(single, refs_of("only"))[0] == {"image": "only"}
    with pytest.raises(ImagePlaceholderError, match="needs exactly one image \\(there are 2\\)"):
        chart_image_values(single, refs)


def test_unknown_image_in_a_placeholder_names_release_key_and_images() -> None:
    refs = refs_of("sms-checker-app", "sms-checker-model")
    release = ChartRelease(
        name="sms-checker", path=Path("/c"), set={"app.image.tag": "{{image.tag:sms-checker-ap}}"}
    )
    with pytest.raises(ImagePlaceholderError) as info:
        chart_image_values(release, refs)
    assert str(info.value) == (
        "chart sms-checker: set.app.image.tag: {{image.tag:sms-checker-ap}} names no image "
        "(did you mean 'sms-checker-app'?); the images: sms-checker-app, sms-checker-model"
    )
    skaffold = ChartRelease(name="s", path=Path("/c"), image_values={"t": "{{.IMAGE_TAG_nope}}"})
    with pytest.raises(ImagePlaceholderError, match=r"image_values\.t: .*names no image"):
        chart_image_values(skaffold, refs)
    other = ChartRelease(name="s", path=Path("/c"), image_values={"t": "{{.Release.Name}}"})
    with pytest.raises(ImagePlaceholderError, match="is not an image placeholder"):
        chart_image_values(other, refs)
    part = ChartRelease(name="s", path=Path("/c"), set={"t": "{{image.digest:sms-checker-app}}"})
    with pytest.raises(ImagePlaceholderError, match="unknown part 'digest'"):
        chart_image_values(part, refs)


def test_check_image_placeholders_at_load_time(tmp_path: Path) -> None:
    copy_context(tmp_path, "app")
    write(tmp_path / "chart" / "Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n")
    config = config_for(
        tmp_path,
        """\
        charts:
          - name: web
            path: chart
            set: {image.tag: "{{image.tag:wbe}}"}
        images:
          - {name: web, context: app}
        """,
    )
    with pytest.raises(ConfigError) as info:
        check_image_placeholders(config)
    assert str(info.value) == (
        "devloop.yaml: charts[0].set.image.tag: {{image.tag:wbe}} names no image "
        "(did you mean 'web'?); the images: web"
    )


@pytest.fixture(params=["helm3", "helm4"])
def helm(request: pytest.FixtureRequest, tool: Callable[[str], str]) -> HelmTool:
    return HelmTool(tool(request.param))


def test_skaffold_templates_and_devloop_placeholders_reach_the_rendered_chart(
    helm: HelmTool, tmp_path: Path
) -> None:
    """The example chart, configured once from a skaffold.yaml and once from devloop.yaml:
    the Deployments run the digest-tagged images."""
    from pytest_devloop.config.skaffold import load_skaffold

    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".devloop", ".benchmarks"))
    skaffold = load_skaffold(
        textwrap.dedent(
            """\
            apiVersion: skaffold/v4beta11
            kind: Config
            build:
              artifacts:
                - {image: sms-checker-app, context: images/app}
                - {image: sms-checker-model, context: images/model}
            deploy:
              helm:
                releases:
                  - name: sms-checker
                    chartPath: charts/sms-checker
                    setValueTemplates:
                      app.image.repository: "{{.IMAGE_REPO_sms_checker_app}}"
                      app.image.tag: "{{.IMAGE_TAG_sms_checker_app}}"
                      model.image.repository: "{{.IMAGE_REPO_sms_checker_model}}"
                      model.image.tag: "{{.IMAGE_TAG_sms_checker_model}}"
            """
        ),
        project / "skaffold.yaml",
        None,
    )
    devloop = parse_config((project / "devloop.yaml").read_text(), project / "devloop.yaml")
    for config in (skaffold, devloop):
        refs = image_refs(config, FileHasher())
        values, used = chart_image_values(config.charts[0], refs)
        assert sorted(used) == ["sms-checker-app", "sms-checker-model"]
        objects = render_chart(
            helm,
            release="sms-checker",
            chart=config.charts[0].path,
            namespace="sms-checker",
            values_files=list(config.charts[0].values),
            set_values=values,
            set_string={},
            kube_version=None,
            api_versions=[],
        )
        images = {
            o.obj["metadata"]["name"]: o.obj["spec"]["template"]["spec"]["containers"][0]["image"]
            for o in objects
            if o.obj["kind"] == "Deployment"
        }
        assert images == {
            "sms-checker-app": refs["sms-checker-app"].ref,
            "sms-checker-model": refs["sms-checker-model"].ref,
        }
        assert all(":devloop-" in image for image in images.values())


# --------------------------------------------------------------------------- the example project


def test_example_project_declares_its_images_and_wires_them_into_the_chart() -> None:
    config = parse_config((EXAMPLE / "devloop.yaml").read_text(), EXAMPLE / "devloop.yaml")
    assert [i.name for i in config.images] == ["sms-checker-app", "sms-checker-model"]
    check_image_placeholders(config)
    refs = image_refs(config, FileHasher())
    values, used = chart_image_values(config.charts[0], refs)
    assert used == ["sms-checker-app", "sms-checker-model"]
    assert values["app.image.tag"] == refs["sms-checker-app"].tag
    assert values["model.image.repository"] == "sms-checker-model"
    for name in ("app", "model"):
        dockerfile = (EXAMPLE / "images" / name / "Dockerfile").read_text()
        assert "FROM python:3.12-slim" in dockerfile
        assert "USER 10001:10001" in dockerfile
        assert "EXPOSE 808" in dockerfile


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_app_metrics_are_prometheus_text() -> None:
    app = load_module(EXAMPLE / "images" / "app" / "app.py")
    metrics = app.Metrics("1.2.3")
    metrics.request("GET", "/healthz", 200)
    metrics.verdict("spam")
    metrics.model_latency(0.03)
    metrics.model_error("timeout")
    text = metrics.render()
    assert 'sms_checker_build_info{version="1.2.3"} 1' in text
    assert 'sms_checker_http_requests_total{method="GET",path="/healthz",code="200"} 1' in text
    assert 'sms_checker_model_request_seconds_bucket{le="0.025"} 0' in text
    assert 'sms_checker_model_request_seconds_bucket{le="0.05"} 1' in text
    assert 'sms_checker_model_errors_total{reason="timeout"} 1' in text
    assert "# TYPE sms_checker_model_request_seconds histogram" in text
    assert text.endswith("\n")


def test_example_services_answer_over_http() -> None:
    """Both services in-process on loopback ports: the app asks the model, both serve
    /healthz and /metrics; a model that is down is a 503 from the app."""
    from http.server import ThreadingHTTPServer
    from urllib.request import Request, urlopen

    app = load_module(EXAMPLE / "images" / "app" / "app.py")
    model = load_module(EXAMPLE / "images" / "model" / "model.py")
    servers: list[ThreadingHTTPServer] = []

    def serve(handler: Any) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    try:
        model_url = serve(model.make_handler(dict(model.WEIGHTS), model.Metrics()))
        settings = app.Settings({"MODEL_URL": model_url, "MODEL_TIMEOUT_SECONDS": "2"})
        metrics = app.Metrics(settings.version)
        app_url = serve(
            app.make_handler(settings, metrics, app.ModelClient(model_url, settings.model_timeout))
        )

        def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            request = Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
            try:
                with urlopen(request, timeout=5) as response:
                    return response.status, json.load(response)
            except Exception as e:  # HTTPError carries the status and body
                return int(getattr(e, "code", 0)), json.load(e)  # type: ignore[arg-type]

        for url in (app_url, model_url):
            with urlopen(f"{url}/healthz", timeout=5) as response:
                assert response.status == 200
        spam = "WINNER! Claim your FREE prize now, txt 80082"
        status, body = post(f"{app_url}/sms", {"sms": spam})
        assert (status, body["sms"], body["result"]) == (200, spam, "spam")
        assert 0.9 < body["score"] <= 1.0
        status, body = post(f"{app_url}/sms", {"sms": "sorry, home later for dinner"})
        assert (status, body["result"]) == (200, "ham")
        assert post(f"{app_url}/sms", {"text": "x"})[0] == 400
        with urlopen(f"{app_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'sms_checker_predictions_total{result="spam"} 1' in text
        with urlopen(f"{model_url}/metrics", timeout=5) as response:
            assert 'sms_model_predictions_total{result="ham"} 1' in response.read().decode()

        servers[0].shutdown()
        servers[0].server_close()
        status, body = post(f"{app_url}/sms", {"sms": "hello"})
        assert status == 503 and "the model service is unavailable" in body["error"]
        assert 'sms_checker_model_errors_total{reason="unreachable"} 1' in metrics.render()
    finally:
        for server in servers[1:]:
            server.shutdown()
            server.server_close()


def test_example_model_caches_its_weights(tmp_path: Path) -> None:
    model = load_module(EXAMPLE / "images" / "model" / "model.py")
    weights = model.load_model(tmp_path / "models")
    assert (tmp_path / "models" / f"{model.MODEL_VERSION}.json").is_file()
    assert model.load_model(tmp_path / "models") == weights
    assert model.classify("ok, see you at lunch", weights)["result"] == "ham"


# --------------------------------------------------------------------------- real docker


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def tools_env() -> dict[str, str]:
    """`.tools/tools.env` (written by scripts/tools.sh) as a mapping."""
    try:
        text = (ROOT / ".tools" / "tools.env").read_text()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines() if not line.startswith("#"))
    return {k.strip(): v.strip().strip("'\"") for k, sep, v in pairs if sep}


@pytest.fixture(scope="session")
def docker_cli(tool: Callable[[str], str]) -> str:
    """The docker CLI, with a daemon that answers (skip, or fail under CI, otherwise)."""
    docker = tool("docker")
    proc = subprocess.run([docker, "version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = f"docker is installed but its daemon does not answer: {proc.stderr.strip()}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(f"{message} (run `bash scripts/tools.sh`)")
    return docker


@pytest.fixture(scope="session")
def busybox(docker_cli: str) -> str:
    image = tools_env().get("DEVLOOP_BUSYBOX_IMAGE") or "devloop-busybox:latest"
    proc = subprocess.run([docker_cli, "image", "inspect", image], capture_output=True, check=False)
    if proc.returncode != 0:
        message = f"the local base image {image} is missing: run `bash scripts/tools.sh`"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return image


@pytest.fixture
def repo(docker_cli: str) -> Iterator[str]:
    """A repository prefix of the test's own; every image under it is removed afterwards."""
    prefix = f"devloop-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    listed = subprocess.run(
        [docker_cli, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    mine = [ref for ref in listed.stdout.split() if ref.startswith(prefix)]
    if mine:
        subprocess.run([docker_cli, "rmi", "--force", *mine], capture_output=True, check=False)


def inspect_ok(docker: str, ref: str) -> bool:
    proc = subprocess.run([docker, "image", "inspect", ref], capture_output=True, check=False)
    return proc.returncode == 0


def test_real_build_once_then_unchanged_new_tag_on_change_same_on_ignored(
    docker_cli: str, repo: str, tmp_path: Path
) -> None:
    ctx = copy_context(tmp_path)
    name = f"{repo}-app"
    config = config_for(tmp_path, f"images:\n  - {{name: {name}, context: app}}\n")
    hasher = FileHasher(clock=settled_clock)
    refs = image_refs(config, hasher)
    lines: list[str] = []
    first = build_images(config, refs, out=lines.append, builder=Builder(docker_cli))
    assert first[0].action == "built"
    assert inspect_ok(docker_cli, refs[name].ref), "docker image inspect finds the digest tag"
    print(f"\nbuild of a FROM-scratch image: {first[0].seconds:.2f} s")

    # A new process (a new Builder that remembers nothing) sees the tag and builds nothing.
    again = build_images(
        config, image_refs(config, hasher), out=lines.append, builder=Builder(docker_cli)
    )
    assert again[0].action == "unchanged"
    assert lines[-1] == f"devloop: image {name}: unchanged ({refs[name].tag})"

    (ctx / "app.py").touch()
    (ctx / "README.md").write_text("ignored by .dockerignore\n")
    write(ctx / "tmp" / "cache.bin", "ignored too\n")
    assert image_refs(config, hasher) == refs, "touch and ignored files: the same tag"

    (ctx / "app.py").write_text('print("v2")\n')
    changed = image_refs(config, hasher)
    assert changed[name].tag != refs[name].tag
    third = build_images(config, changed, out=lines.append, builder=Builder(docker_cli))
    assert third[0].action == "built"
    assert lines[-1].startswith(f"devloop: image {name}: built {changed[name].tag} (")
    assert inspect_ok(docker_cli, changed[name].ref)


def test_real_build_args_and_target_give_new_tags(
    docker_cli: str, repo: str, tmp_path: Path
) -> None:
    copy_context(tmp_path)
    name = f"{repo}-app"
    plain = config_for(tmp_path, f"images:\n  - {{name: {name}, context: app}}\n")
    staged = config_for(
        tmp_path,
        f"images:\n  - {{name: {name}, context: app, target: base, build_args: {{GREETING: hi}}}}\n",
    )
    hasher = FileHasher(clock=settled_clock)
    a, b = image_refs(plain, hasher)[name], image_refs(staged, hasher)[name]
    assert a.tag != b.tag
    results = build_images(staged, {name: b}, out=lambda _: None, builder=Builder(docker_cli))
    assert results[0].action == "built"
    proc = subprocess.run(
        [docker_cli, "image", "inspect", "--format", "{{json .Config.Labels}}", b.ref],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout)["dev.devloop.inputs"] == b.digest


def test_real_build_failure_shows_dockerfile_and_log_tail(
    docker_cli: str, busybox: str, repo: str, tmp_path: Path
) -> None:
    ctx = copy_context(tmp_path, "failing")
    name = f"{repo}-failing"
    config = config_for(
        tmp_path,
        f"images:\n  - {{name: {name}, context: failing, build_args: {{BASE: {busybox}}}}}\n",
    )
    refs = image_refs(config, FileHasher())
    lines: list[str] = []
    results = build_images(config, refs, out=lines.append, builder=Builder(docker_cli))
    error = results[0].error
    assert isinstance(error, ImageBuildError) and results[0].action == "failed"
    assert error.dockerfile == ctx / "Dockerfile"
    assert len(error.tail) == 30
    assert any(line.endswith("the step that fails") for line in error.tail)
    assert "build line 40" in error.tail
    assert "build line 5" not in error.tail, "only the tail of the log"
    message = str(error)
    assert f"for {ctx / 'Dockerfile'}; the last 30 lines of the build log:" in message
    assert lines[-1] == f"devloop: {message}"
    assert not inspect_ok(docker_cli, refs[name].ref)


def test_real_docker_not_running(
    docker_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_context(tmp_path)
    config = config_for(tmp_path, "images:\n  - {name: devloop-test-dead, context: app}\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/dead.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    with pytest.raises(DockerUnavailable) as info:
        build_images(
            config,
            image_refs(config, FileHasher()),
            out=lambda _: None,
            builder=Builder(docker_cli),
        )
    assert str(info.value) == (
        f"docker is not running (nothing answers at unix://{tmp_path}/dead.sock): "
        "start it (e.g. `sudo dockerd &` or `bash scripts/tools.sh`)"
    )
    assert "\n" not in str(info.value)


def test_real_concurrent_builds_of_two_changed_images(
    docker_cli: str, busybox: str, repo: str, tmp_path: Path
) -> None:
    for name in ("one", "two"):
        ctx = copy_context(tmp_path, "slow")
        ctx.rename(tmp_path / name)
        (tmp_path / name / "marker").write_text(f"{name} {uuid.uuid4()}\n")
    config = config_for(
        tmp_path,
        "images:\n"
        + "".join(
            f"  - {{name: {repo}-{n}, context: {n}, build_args: {{BASE: {busybox}}}}}\n"
            for n in ("one", "two")
        ),
    )
    refs = image_refs(config, FileHasher())
    spans: dict[str, tuple[float, float]] = {}

    class Timed(Builder):
        def build(
            self, spec: ImageSpec, ref: ImageRef, *, stream: Callable[[str], None] | None = None
        ) -> float:
            started = time.monotonic()
            seconds = super().build(spec, ref, stream=stream)
            spans[spec.name] = (started, time.monotonic())
            return seconds

    lines: list[str] = []
    started = time.monotonic()
    results = build_images(config, refs, out=lines.append, builder=Timed(docker_cli), max_workers=2)
    wall = time.monotonic() - started
    assert [r.action for r in results] == ["built", "built"]
    for n in ("one", "two"):
        name = f"{repo}-{n}"
        assert any(
            line.startswith(f"devloop: image {name}: built {refs[name].tag} (") for line in lines
        )
        assert inspect_ok(docker_cli, refs[name].ref)
    (a0, a1), (b0, b1) = spans.values()
    overlap = min(a1, b1) - max(a0, b0)
    print(
        f"\ntwo busybox builds (RUN sleep 1 each): {wall:.2f} s wall, overlapping {overlap:.2f} s"
    )
    assert overlap > 0, "the two builds ran at the same time"


def first_cluster(tool_name: str) -> str | None:
    """The name of a running cluster of `tool_name` (kind, minikube, k3d), if any."""
    listing = {
        "kind": ["kind", "get", "clusters"],
        "minikube": ["minikube", "profile", "list", "-o", "json"],
        "k3d": ["k3d", "cluster", "list", "-o", "json"],
    }[tool_name]
    proc = subprocess.run(listing, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    if tool_name == "kind":
        names = proc.stdout.split()
    elif tool_name == "minikube":
        names = [p["Name"] for p in json.loads(proc.stdout or "{}").get("valid") or []]
    else:
        names = [c["name"] for c in json.loads(proc.stdout or "[]")]
    return names[0] if names else None


@pytest.mark.parametrize("tool_name", ["kind", "minikube", "k3d"])
def test_real_cluster_tool_loads_an_image(
    tool_name: str, docker_cli: str, repo: str, tmp_path: Path
) -> None:
    """Exercised for real only where the tool and a cluster of it exist (the command lines
    are checked above in any case)."""
    if shutil.which(tool_name) is None:
        pytest.skip(f"{tool_name} is not installed: its loader is checked by command lines only")
    cluster = first_cluster(tool_name)
    if cluster is None:
        pytest.skip(f"{tool_name} is installed but runs no cluster: nothing to load into")
    write(tmp_path / "img" / "Dockerfile", f"FROM scratch\nLABEL test={repo}\n")
    config = config_for(tmp_path, f"images:\n  - {{name: {repo}-load, context: img}}\n")
    refs = image_refs(config, FileHasher())
    loader = loader_for(f"{tool_name}:{cluster}", docker=docker_cli)
    assert loader is not None
    lines: list[str] = []
    results = build_images(
        config, refs, loader=loader, out=lines.append, builder=Builder(docker_cli)
    )
    assert results[0].loaded, lines
    fresh = loader_for(f"{tool_name}:{cluster}", docker=docker_cli)
    assert fresh is not None and fresh.has(refs[f"{repo}-load"].ref), "the node lists it now"
    again = build_images(config, refs, loader=fresh, out=lines.append, builder=Builder(docker_cli))
    assert not again[0].loaded, "already on the node: no second load"


# --------------------------------------------------------------------------- performance


def test_fingerprint_speed_of_a_2000_file_context(tmp_path: Path) -> None:
    """Printed, not asserted: cold and warm fingerprint of 2,000 files (issue: warm <= 150 ms)."""
    ctx = tmp_path / "big"
    write(ctx / "Dockerfile", "FROM scratch\nCOPY . /app\n")
    write(ctx / ".dockerignore", "**/*.log\nnode_modules/\n!node_modules/keep\n")
    for i in range(2000):
        write(ctx / f"pkg{i // 100:02d}" / f"mod{i % 100:03d}.py", f"x = {i}\n" * 20)
    spec = ImageSpec(name="big", context=ctx)
    hasher = FileHasher(clock=settled_clock)
    t0 = time.perf_counter()
    digest = fingerprint_image(spec, hasher)
    cold = time.perf_counter() - t0
    warm_runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        assert fingerprint_image(spec, hasher) == digest
        warm_runs.append(time.perf_counter() - t0)
    warm = min(warm_runs)
    print(
        f"\nfingerprint of a 2,000-file context: cold {cold * 1000:.0f} ms, "
        f"warm {warm * 1000:.0f} ms (median {sorted(warm_runs)[2] * 1000:.0f} ms)"
    )
    assert hasher.reads == 2002, "warm passes read no file"


def test_no_change_pass_over_all_images(docker_cli: str, repo: str, tmp_path: Path) -> None:
    """Printed, not asserted: a watch cycle where no image changed (issue: <= 20 ms)."""
    copy_context(tmp_path, "app")
    for i in range(300):
        write(tmp_path / "app" / "lib" / f"m{i}.py", f"v = {i}\n")
    write(tmp_path / "worker" / "Dockerfile", "FROM scratch\nCOPY job.sh /job.sh\n")
    write(tmp_path / "worker" / "job.sh", "echo work\n")
    config = config_for(
        tmp_path,
        f"images:\n  - {{name: {repo}-web, context: app}}\n"
        f"  - {{name: {repo}-worker, context: worker}}\n",
    )
    hasher = FileHasher(clock=settled_clock)
    builder = Builder(docker_cli)
    refs = image_refs(config, hasher)
    build_images(config, refs, out=lambda _: None, builder=builder)
    t0 = time.perf_counter()
    cold_check = build_images(config, refs, out=lambda _: None, builder=Builder(docker_cli))
    first_process = time.perf_counter() - t0
    timings = []
    for _ in range(5):
        t0 = time.perf_counter()
        again = image_refs(config, hasher)
        results = build_images(config, again, out=lambda _: None, builder=builder)
        timings.append(time.perf_counter() - t0)
    assert again == refs
    assert [r.action for r in results] == ["unchanged", "unchanged"]
    assert [r.action for r in cold_check] == ["unchanged", "unchanged"]
    print(
        f"\nno-change pass over 2 images: {min(timings) * 1000:.1f} ms in watch mode "
        f"(fingerprints + remembered tags), {first_process * 1000:.0f} ms for a new process "
        "(one `docker image inspect` per image)"
    )
