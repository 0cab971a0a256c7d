"""Container images: their content tag, whether they must be built, and how they reach the cluster.

Owns, for the images of a `Config`:

- the **fingerprint** of an image's inputs (`fingerprint_image`): the Dockerfile, every
  file of the build context that `.dockerignore` keeps (docker's own pattern rules, from
  `pytest_devloop.artifacts.fingerprint`), the build args and the target. The tag is
  `devloop-<first 12 hex of that digest>` (`ImageRef`), so the same inputs always give the
  same tag, touching a file changes nothing, and a workload restarts only when the image it
  runs really changed;
- the **build** with the docker CLI (`Builder`, BuildKit when the CLI has buildx), skipped
  when the tag already exists locally, several changed images at a time (`build_images`);
- getting the image **to the cluster** (`Loader`: kind, minikube, k3d, a registry), each
  asking the node first whether it already has the image;
- the **chart values** that carry the references (`chart_image_values`): Skaffold's
  `setValueTemplates` (`{{.IMAGE_TAG_app}}`) and devloop's own placeholder for `set`.

The devloop placeholder, for `set:` values in devloop.yaml (anywhere in a string value, and
in lists and mappings under it)::

    {{image:NAME}}        the full reference   sms-checker-app:devloop-3f2a9c1b07de
    {{image.repo:NAME}}   the repository       sms-checker-app (registry/sms-checker-app)
    {{image.tag:NAME}}    the tag              devloop-3f2a9c1b07de

NAME is an image's `name` in the config. Skaffold's templates are read from `image_values`
(what `setValueTemplates` becomes): `IMAGE_FULLY_QUALIFIED`, `IMAGE_REPO`, `IMAGE_TAG`,
`IMAGE_DIGEST`, `IMAGE_DOMAIN`, `IMAGE_REPO_NO_DOMAIN`, each `_<name>` with `.`, `-`, `/`,
`:` written `_`, or without a suffix when the config has exactly one image. devloop never
pushes for a digest: `IMAGE_DIGEST` is empty, and the `tag@` that
`{{.IMAGE_TAG_x}}@{{.IMAGE_DIGEST_x}}` leaves is written as the tag alone.

Everything that runs a tool goes through a `Runner` (a function from a command line to its
result), so that the command lines are unit-tested with a fake one; `run_command` is the real
one. Nothing here decides *when* to build: the sync does (see the module's users).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pytest_devloop.artifacts.fingerprint import (
    FileHasher,
    IgnoreFileError,
    combine,
    dockerignore_matcher,
)
from pytest_devloop.config.model import (
    ChartRelease,
    Config,
    ConfigError,
    ConfigProblem,
    ImageSpec,
    default_key,
)
from pytest_devloop.config.skaffold import template_image_key

__all__ = [
    "TAG_PREFIX",
    "Builder",
    "CommandResult",
    "DockerUnavailable",
    "ImageBuildError",
    "ImageError",
    "ImageInputError",
    "ImageLoadError",
    "ImagePlaceholderError",
    "ImageRef",
    "ImageResult",
    "K3dLoader",
    "KindLoader",
    "Loader",
    "MinikubeLoader",
    "RegistryPusher",
    "Runner",
    "build_images",
    "build_step",
    "chart_image_values",
    "check_image_placeholders",
    "dockerfile_path",
    "fingerprint_image",
    "image_refs",
    "loader_for",
    "normalize_ref",
    "run_command",
]

TAG_PREFIX = "devloop-"
TAG_HEX_DIGITS = 12
# Part of every image digest: bump it when what the digest covers changes, so that old tags
# are not mistaken for images of the new inputs.
_FINGERPRINT_VERSION = "devloop-image-v1"
# How much of a failed build's log the error shows.
LOG_TAIL_LINES = 30
# A build that has run this long streams its progress (a short one stays one line).
STREAM_AFTER_SECONDS = 2.0
DOCKER_START_HINT = "start it (e.g. `sudo dockerd &` or `bash scripts/tools.sh`)"


# --------------------------------------------------------------------------- errors


class ImageError(Exception):
    """An image could not be fingerprinted, built or made reachable; the message says what
    to do."""


class ImageInputError(ImageError):
    """An image's inputs are missing or unreadable: `field` is `context` or `dockerfile`."""

    def __init__(self, image: str, field: str, message: str) -> None:
        self.image = image
        self.field = field
        super().__init__(f"image {image}: {field}: {message}")
        self.message = message


class ImageBuildError(ImageError):
    """`docker build` failed: the Dockerfile and the last lines of the build log."""

    def __init__(self, image: str, dockerfile: Path, returncode: int, tail: Sequence[str]) -> None:
        self.image = image
        self.dockerfile = dockerfile
        self.returncode = returncode
        self.tail = list(tail)
        log = "\n".join(f"    {line}" for line in self.tail) or "    (no output)"
        super().__init__(
            f"image {image}: docker build failed (exit {returncode}) for {dockerfile}; "
            f"the last {len(self.tail)} lines of the build log:\n{log}"
        )


class DockerUnavailable(ImageError):
    """docker cannot be used at all (not installed, not running, no permission)."""


class ImageLoadError(ImageError):
    """The image was built but could not be put where the cluster can run it."""


class ImagePlaceholderError(ImageError, ValueError):
    """A chart value has an image placeholder that cannot be filled in: `release`, the
    value's `key` (`set.app.image.tag`, `image_values.image.repository`) and why."""

    def __init__(self, release: str, key: str, reason: str) -> None:
        self.release = release
        self.key = key
        self.reason = reason
        super().__init__(f"chart {release}: {key}: {reason}")


# --------------------------------------------------------------------------- running tools


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str = ""
    stderr: str = ""


class Runner(Protocol):
    """Runs a command line. With `on_line`, stdout and stderr are merged and handed over line
    by line as they come (the result's stdout and stderr are then empty). `env` is laid over
    the process environment. Raises FileNotFoundError when the program does not exist."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult: ...


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> CommandResult:
    """The real Runner: a subprocess."""
    full_env = {**os.environ, **env} if env else None
    if on_line is None:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, errors="replace", env=full_env, check=False
        )
        return CommandResult(done.returncode, done.stdout, done.stderr)
    with subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=full_env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\r\n"))
        returncode = proc.wait()
    return CommandResult(returncode)


# What the docker CLI prints when no daemon answers (the address follows "at").
_NO_DAEMON = re.compile(
    r"Cannot connect to the Docker daemon(?: at (\S+?))?\.? Is the docker", re.I
)
_NO_PERMISSION = re.compile(r"permission denied while trying to connect to the Docker daemon", re.I)


def _docker_unavailable(output: str) -> DockerUnavailable | None:
    """The DockerUnavailable that docker's error output means, if it means one."""
    m = _NO_DAEMON.search(output)
    if m:
        where = f" (nothing answers at {m.group(1)})" if m.group(1) else ""
        return DockerUnavailable(f"docker is not running{where}: {DOCKER_START_HINT}")
    if _NO_PERMISSION.search(output):
        return DockerUnavailable(
            "docker is running but this user may not use it (permission denied on its socket): "
            "add the user to the `docker` group, or run the daemon rootless"
        )
    if "error during connect" in output:
        line = next(ln for ln in output.splitlines() if "error during connect" in ln)
        return DockerUnavailable(f"docker is not reachable ({line.strip()}): {DOCKER_START_HINT}")
    return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class ImageRef:
    """The reference an image gets: `name:devloop-<first 12 hex of digest>`, under
    `registry/` when the config has an `image_registry`."""

    name: str
    digest: str  # full sha256 hex of the image's inputs
    registry: str | None = None

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.digest[:TAG_HEX_DIGITS]

    @property
    def repository(self) -> str:
        if not self.registry:
            return self.name
        prefix = self.registry.rstrip("/") + "/"
        return self.name if self.name.startswith(prefix) else prefix + self.name

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def _split_domain(repository: str) -> tuple[str, str]:
    """(domain, path) as docker normalizes a repository: `app` is docker.io/library/app."""
    first, sep, rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    path = repository if sep else f"library/{repository}"
    return "docker.io", path


def normalize_ref(ref: str) -> str:
    """A reference as container runtimes list it: `app:t` -> `docker.io/library/app:t`."""
    repository, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:  # no tag: a registry port, not a tag separator
        repository, tag = ref, "latest"
    domain, path = _split_domain(repository)
    return f"{domain}/{path}:{tag}"


def dockerfile_path(spec: ImageSpec) -> Path:
    """The Dockerfile of an image (absolute once the config was loaded from a file)."""
    dockerfile = Path(spec.dockerfile)
    return dockerfile if dockerfile.is_absolute() else Path(spec.context) / dockerfile


def fingerprint_image(spec: ImageSpec, hasher: FileHasher) -> str:
    """sha256 of what an image is built from: the Dockerfile, every file of the context that
    `.dockerignore` keeps (symlinks by their target, as docker sends them, and the executable
    bit), the build args and the target. The base image (`FROM`) is not an input: a new base
    under the same tag is picked up only by a forced rebuild, as with Skaffold's inputDigest.

    Raises ImageInputError when the context or the Dockerfile is missing, or the ignore file
    has a pattern docker rejects.
    """
    context = Path(spec.context).absolute()
    dockerfile = dockerfile_path(spec).absolute()
    if not context.is_dir():
        what = "is a file, not a folder" if context.exists() else "does not exist"
        raise ImageInputError(spec.name, "context", f"{context} {what}")
    if not dockerfile.is_file():
        raise ImageInputError(spec.name, "dockerfile", f"{dockerfile} does not exist")
    try:
        relative = dockerfile.relative_to(context).as_posix()
    except ValueError:
        relative = "Dockerfile"  # outside the context: docker's ignore rules never see it
    try:
        ignore = dockerignore_matcher(context, dockerfile=relative)
    except IgnoreFileError as e:
        raise ImageInputError(spec.name, "context", str(e)) from e
    try:
        tree = hasher.tree_digest(context, ignore=ignore, follow_symlinks=False)
        dockerfile_digest = hasher.file_digest(dockerfile)
    except OSError as e:  # deleted while we walked: the next cycle sees the new state
        raise ImageInputError(
            spec.name, "context", f"cannot read {e.filename}: {e.strerror}"
        ) from e
    return combine(
        _FINGERPRINT_VERSION,
        dockerfile_digest,
        tree,
        json.dumps(sorted(spec.build_args.items())),
        spec.target or "",
    )


def _image_key(config: Config, index: int, field_name: str) -> str:
    if config.source.name.startswith("skaffold"):
        return f"build.artifacts[image={config.images[index].name}].{field_name}"
    return f"images[{index}].{field_name}"


def image_refs(config: Config, hasher: FileHasher) -> dict[str, ImageRef]:
    """The reference of every image of the config, in config order; builds nothing.

    A missing context or Dockerfile is a ConfigError naming the file and the key."""
    refs: dict[str, ImageRef] = {}
    for i, spec in enumerate(config.images):
        try:
            digest = fingerprint_image(spec, hasher)
        except ImageInputError as e:
            raise ConfigError(config.source, _image_key(config, i, e.field), e.message) from e
        refs[spec.name] = ImageRef(spec.name, digest, config.image_registry)
    return refs


# --------------------------------------------------------------------------- building

# A step as docker's build output starts it. The legacy builder: `Step 3/7 : COPY . /app`;
# BuildKit's plain progress: `#7 [3/7] COPY . /app`, `#9 [base 2/4] RUN make` (the stage's
# name, and the platform when building for several, before the number, which is padded to
# the total's width: `[ 3/12]`) and `#12 exporting to image`. BuildKit's `[internal]` steps
# (loading the Dockerfile, the context, metadata) and its DONE/CACHED/log lines are no step.
_LEGACY_STEP = re.compile(r"^Step (\d+)/(\d+) : (.+)$")
_BUILDKIT_STEP = re.compile(r"^#\d+ \[([^\]]*?) *(\d+)/(\d+)\] (.+)$")
_BUILDKIT_EXPORT = re.compile(r"^#\d+ (exporting to image|exporting layers|writing image)\b")


def build_step(line: str) -> str | None:
    """The build step a line of docker's build output starts (`step 3/7 COPY . /app`,
    `step 2/4 RUN make (stage base)`, `exporting to image`), or None."""
    line = line.strip()
    m = _LEGACY_STEP.match(line)
    if m:
        return f"step {m.group(1)}/{m.group(2)} {m.group(3).strip()}"
    m = _BUILDKIT_STEP.match(line)
    if m:
        stage, n, total, what = m.groups()
        text = f"step {n}/{total} {what.strip()}"
        return f"{text} (stage {stage.strip()})" if stage.strip() else text
    m = _BUILDKIT_EXPORT.match(line)
    if m:
        return m.group(1)
    return None


class Builder:
    """The docker CLI, for what images need: does a tag exist, build one.

    Remembers the references it found or built, so that a no-change cycle of the watch loop
    asks docker nothing (an image removed behind its back is rebuilt by the next process).
    Thread-safe: `build_images` uses one Builder from several threads.
    """

    def __init__(
        self,
        docker: str = "docker",
        *,
        runner: Runner = run_command,
        env: Mapping[str, str] | None = None,
        buildkit: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        stream_after: float = STREAM_AFTER_SECONDS,
    ) -> None:
        self.docker = docker
        self.runner = runner
        self.env = dict(env or {})
        self.clock = clock
        self.stream_after = stream_after
        self._buildkit = buildkit
        self._present: set[str] = set()
        self._lock = threading.Lock()

    def _run(
        self, args: Sequence[str], *, on_line: Callable[[str], None] | None = None
    ) -> CommandResult:
        env = dict(self.env)
        if args and args[0] == "build":
            env["DOCKER_BUILDKIT"] = "1" if self.buildkit() else "0"
        try:
            return self.runner([self.docker, *args], env=env or None, on_line=on_line)
        except FileNotFoundError as e:
            raise DockerUnavailable(
                f"docker is not installed ({self.docker} not found): install Docker Engine, "
                "or put the docker CLI on PATH"
            ) from e

    def buildkit(self) -> bool:
        """Whether builds use BuildKit: as DOCKER_BUILDKIT says when it is set, else when the
        CLI has buildx (a CLI without it refuses DOCKER_BUILDKIT=1 instead of falling back)."""
        with self._lock:
            if self._buildkit is None:
                setting = {**os.environ, **self.env}.get("DOCKER_BUILDKIT")
                if setting is not None and setting.strip():
                    self._buildkit = setting.strip().lower() not in ("0", "false", "no")
                else:
                    try:
                        probe = self.runner(
                            [self.docker, "buildx", "version"], env=self.env or None
                        )
                    except FileNotFoundError:
                        probe = CommandResult(127)
                    self._buildkit = probe.returncode == 0
            return self._buildkit

    def exists(self, ref: str) -> bool:
        """Whether the local daemon has an image with this reference (`docker image inspect`)."""
        if ref in self._present:
            return True
        result = self._run(["image", "inspect", "--format", "{{.Id}}", ref])
        if result.returncode == 0:
            self._present.add(ref)
            return True
        output = result.stderr + result.stdout
        unavailable = _docker_unavailable(output)
        if unavailable is not None:
            raise unavailable
        if "no such image" in output.lower():
            return False
        raise ImageError(f"`docker image inspect {ref}` failed: {_last_line(output)}")

    def forget(self, ref: str) -> None:
        """Ask docker again next time (after the image was removed on purpose)."""
        self._present.discard(ref)

    def build_command(self, spec: ImageSpec, ref: ImageRef) -> list[str]:
        """The `docker build` arguments (after `docker`) for an image."""
        args = ["build", "--tag", ref.ref, "--file", str(dockerfile_path(spec).absolute())]
        if spec.target:
            args += ["--target", spec.target]
        for key, value in sorted(spec.build_args.items()):
            args += ["--build-arg", f"{key}={value}"]
        # The labels let a later cleanup find devloop's images and what they were built from.
        args += ["--label", f"dev.devloop.image={spec.name}"]
        args += ["--label", f"dev.devloop.inputs={ref.digest}"]
        if self.buildkit():
            # plain: one line per step, readable when streamed through `out`; --load: a
            # non-default buildx builder would otherwise leave the image in its cache only.
            args += ["--progress", "plain", "--load"]
        else:
            # The legacy builder keeps the container of a failed step: one more per failed
            # edit-save-build round, on a machine that builds all day.
            args.append("--force-rm")
        args.append(str(Path(spec.context).absolute()))
        return args

    def build(
        self,
        spec: ImageSpec,
        ref: ImageRef,
        *,
        stream: Callable[[str], None] | None = None,
        step: Callable[[str], None] | None = None,
    ) -> float:
        """Build `spec` as `ref.ref`; the seconds it took.

        With `stream`, a build still running after `stream_after` seconds hands its log lines
        to `stream` (the earlier ones first), so a long build shows progress and a short one
        stays quiet. With `step=`, each build step docker starts is handed over as it starts
        (`step 2/3 COPY app.py /app/`, see `build_step`), for the live progress line.
        Raises ImageBuildError with the last lines of the log, DockerUnavailable.
        """
        started = self.clock()
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        held: list[str] = []
        streaming = False

        def on_line(line: str) -> None:
            nonlocal streaming
            tail.append(line)
            if step is not None:
                text = build_step(line)
                if text is not None:
                    step(text)
            if stream is None:
                return
            if streaming:
                stream(line)
                return
            held.append(line)
            if self.clock() - started >= self.stream_after:
                streaming = True
                for earlier in held:
                    stream(earlier)
                held.clear()

        result = self._run(self.build_command(spec, ref), on_line=on_line)
        seconds = self.clock() - started
        if result.returncode != 0:
            log = "\n".join(tail)
            unavailable = _docker_unavailable(log)
            if unavailable is not None:
                raise unavailable
            raise ImageBuildError(
                spec.name, dockerfile_path(spec).absolute(), result.returncode, tail
            )
        self._present.add(ref.ref)
        return seconds


# --------------------------------------------------------------------------- loaders


class Loader(Protocol):
    """Makes a locally built image runnable by the cluster's nodes."""

    @property
    def target(self) -> str:
        """What the output calls the destination: `kind-dev`, `minikube`, `localhost:5000`."""
        ...

    @property
    def builds_in_cluster(self) -> bool:
        """True when the local docker daemon *is* the cluster's (minikube docker-env)."""
        ...

    def has(self, ref: str) -> bool:
        """Whether the cluster can already run `ref` without a load."""
        ...

    def load(self, ref: str) -> None:
        """Put `ref` (present in the local daemon) where the cluster can run it."""
        ...


class _CliLoader:
    """What the CLI loaders share: a runner, the tool, and the refs known to be in place."""

    tool = ""

    def __init__(self, executable: str | None, docker: str, runner: Runner) -> None:
        self.executable = executable or self.tool
        self.docker = docker
        self.runner = runner
        self._in_place: set[str] = set()

    @property
    def builds_in_cluster(self) -> bool:
        return False

    def _run(self, argv: Sequence[str]) -> CommandResult:
        try:
            return self.runner(argv)
        except FileNotFoundError as e:
            raise ImageLoadError(
                f"{argv[0]} is not installed: it is needed to load images into {self.describe()}"
            ) from e

    def describe(self) -> str:
        return self.tool

    def _check(self, result: CommandResult, what: str) -> None:
        if result.returncode != 0:
            output = result.stderr + result.stdout
            unavailable = _docker_unavailable(output)
            if unavailable is not None:
                raise unavailable
            raise ImageLoadError(
                f"`{what}` failed (exit {result.returncode}): {_last_line(output)}"
            )

    def _node_has(self, node: str, ref: str) -> bool:
        """Whether a kind or k3d node container lists `ref` in its containerd (crictl)."""
        argv = [self.docker, "exec", node, "crictl", "images", "-o", "json"]
        result = self._run(argv)
        self._check(result, " ".join(argv))
        try:
            images = json.loads(result.stdout or "{}").get("images") or []
        except ValueError as e:
            raise ImageLoadError(f"`{' '.join(argv)}` printed no JSON: {e}") from e
        wanted = normalize_ref(ref)
        return any(
            normalize_ref(tag) == wanted for image in images for tag in image.get("repoTags") or []
        )

    def has(self, ref: str) -> bool:
        if ref in self._in_place:
            return True
        if self._has(ref):
            self._in_place.add(ref)
            return True
        return False

    def load(self, ref: str) -> None:
        self._load(ref)
        self._in_place.add(ref)

    def _has(self, ref: str) -> bool:
        raise NotImplementedError

    def _load(self, ref: str) -> None:
        raise NotImplementedError


class KindLoader(_CliLoader):
    """kind: `kind load docker-image`, unless every node's containerd already lists the image."""

    tool = "kind"

    def __init__(
        self,
        cluster_name: str,
        *,
        kind: str | None = None,
        docker: str = "docker",
        runner: Runner = run_command,
    ) -> None:
        super().__init__(kind, docker, runner)
        self.cluster_name = cluster_name
        self._nodes: list[str] | None = None

    @property
    def target(self) -> str:
        return f"kind-{self.cluster_name}"

    def describe(self) -> str:
        return f"kind cluster {self.cluster_name}"

    def nodes(self) -> list[str]:
        if self._nodes is None:
            argv = [self.executable, "get", "nodes", "--name", self.cluster_name]
            result = self._run(argv)
            self._check(result, " ".join(argv))
            self._nodes = [n.strip() for n in result.stdout.splitlines() if n.strip()]
            if not self._nodes:
                raise ImageLoadError(
                    f"kind cluster {self.cluster_name!r} has no nodes (is it created? "
                    f"`kind create cluster --name {self.cluster_name}`)"
                )
        return self._nodes

    def _has(self, ref: str) -> bool:
        return all(self._node_has(node, ref) for node in self.nodes())

    def _load(self, ref: str) -> None:
        argv = [self.executable, "load", "docker-image", ref, "--name", self.cluster_name]
        self._check(self._run(argv), " ".join(argv))


class MinikubeLoader(_CliLoader):
    """minikube: nothing to do when its docker-env is active (the build went straight into
    minikube's daemon, the proposal's preferred way), else `minikube image load` unless
    `minikube image ls` lists the image."""

    tool = "minikube"

    def __init__(
        self,
        profile: str,
        *,
        minikube: str | None = None,
        docker: str = "docker",
        runner: Runner = run_command,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(minikube, docker, runner)
        self.profile = profile
        env = os.environ if environ is None else environ
        # `eval $(minikube -p P docker-env)` exports MINIKUBE_ACTIVE_DOCKERD=P with DOCKER_HOST.
        self.docker_env_active = env.get("MINIKUBE_ACTIVE_DOCKERD") == profile

    @property
    def target(self) -> str:
        return self.profile

    @property
    def builds_in_cluster(self) -> bool:
        return self.docker_env_active

    def describe(self) -> str:
        return f"minikube profile {self.profile}"

    def _has(self, ref: str) -> bool:
        if self.docker_env_active:
            return True
        argv = [self.executable, "image", "ls", "-p", self.profile]
        result = self._run(argv)
        self._check(result, " ".join(argv))
        wanted = normalize_ref(ref)
        return any(normalize_ref(line.strip()) == wanted for line in result.stdout.splitlines())

    def _load(self, ref: str) -> None:
        argv = [self.executable, "image", "load", ref, "-p", self.profile]
        self._check(self._run(argv), " ".join(argv))


class K3dLoader(_CliLoader):
    """k3d: `k3d image import`, unless the server node's containerd already lists the image."""

    tool = "k3d"

    def __init__(
        self,
        cluster: str,
        *,
        k3d: str | None = None,
        docker: str = "docker",
        runner: Runner = run_command,
    ) -> None:
        super().__init__(k3d, docker, runner)
        self.cluster = cluster

    @property
    def target(self) -> str:
        return f"k3d-{self.cluster}"

    def describe(self) -> str:
        return f"k3d cluster {self.cluster}"

    def _has(self, ref: str) -> bool:
        # `k3d image import` loads every node at once: the first server stands for all.
        return self._node_has(f"k3d-{self.cluster}-server-0", ref)

    def _load(self, ref: str) -> None:
        argv = [self.executable, "image", "import", ref, "--cluster", self.cluster]
        self._check(self._run(argv), " ".join(argv))


def _insecure_registry(registry: str) -> bool:
    host = registry.split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("localhost", "127.0.0.1", "[::1]") or host.endswith(".localhost")


class RegistryPusher(_CliLoader):
    """A registry (`image_registry`): `docker push`, unless the registry has the tag already
    (`docker manifest inspect`). Content tags make the push idempotent; the check saves it."""

    tool = "docker"

    def __init__(self, registry: str, *, docker: str = "docker", runner: Runner = run_command):
        super().__init__(docker, docker, runner)
        self.registry = registry

    @property
    def target(self) -> str:
        return self.registry

    def describe(self) -> str:
        return f"registry {self.registry}"

    def _has(self, ref: str) -> bool:
        argv = [self.docker, "manifest", "inspect"]
        if _insecure_registry(self.registry):
            argv.append("--insecure")  # a local registry speaks plain HTTP
        # Any failure (missing tag, registry down, no credentials) means "push": the push
        # then fails with the registry's own message if it really cannot be reached.
        return self._run([*argv, ref]).returncode == 0

    def _load(self, ref: str) -> None:
        argv = [self.docker, "push", ref]
        self._check(self._run(argv), " ".join(argv))


def loader_for(
    provider: str,
    *,
    registry: str | None = None,
    docker: str = "docker",
    runner: Runner = run_command,
) -> Loader | None:
    """The loader for a cluster provider string (`kind:dev`, `minikube:minikube`, `k3d:dev`,
    `current`, `embedded`); with a registry, pushing to it. None: the images need no loading
    (the embedded cluster runs no containers; `current` without a registry is assumed to share
    the local daemon, as Docker Desktop does)."""
    if registry:
        return RegistryPusher(registry, docker=docker, runner=runner)
    kind, _, name = provider.partition(":")
    if kind == "kind" and name:
        return KindLoader(name, docker=docker, runner=runner)
    if kind == "minikube" and name:
        return MinikubeLoader(name, docker=docker, runner=runner)
    if kind == "k3d" and name:
        return K3dLoader(name, docker=docker, runner=runner)
    return None


# --------------------------------------------------------------------------- a build pass


@dataclass
class ImageResult:
    """What happened to one image in a pass: `action` is built, unchanged, not built
    (a `skip_reason` was given) or failed (`error` says why)."""

    name: str
    ref: ImageRef
    action: Literal["built", "unchanged", "not built", "failed"]
    seconds: float = 0.0
    loaded: bool = False
    error: ImageError | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def build_images(
    config: Config,
    refs: Mapping[str, ImageRef],
    *,
    only: set[str] | None = None,
    loader: Loader | None = None,
    out: Callable[[str], None] = print,
    max_workers: int = 2,
    builder: Builder | None = None,
    skip_reason: str | None = None,
    progress: Callable[[str], None] | None = None,
    progress_done: Callable[[], None] | None = None,
    stream_log: bool = True,
) -> list[ImageResult]:
    """Build the images whose tag the local daemon lacks, at most `max_workers` at a time,
    and make each reachable through `loader`; results in config order.

    `only` limits the pass to these image names (watch mode: the changed ones). With
    `skip_reason`, nothing is built and each image gets one line saying so (the embedded
    cluster without --devloop-build). A build or load failure is kept in its result (the
    other images go on); DockerUnavailable is raised, once. Lines, printed as they happen:

        devloop: image sms-checker-app: built devloop-3f2a9c1b07de (2.4 s)
        devloop: image sms-checker-app: unchanged (devloop-3f2a9c1b07de)
        devloop: image sms-checker-app: loaded into kind-dev (0.8 s)

    `progress` is told the step each running build is at (`building sms-checker-app: step
    2/3 COPY app.py /app/`, the builds running at once joined by `; `); `progress_done`
    erases that live line before each line above and when the pass ends (run.progress).
    A long build's log is streamed only with `stream_log`, which says that no live line
    shows (off a terminal); a failed build always shows the last lines of its log.
    """
    specs = [s for s in config.images if only is None or s.name in only]
    lock = threading.Lock()
    steps: dict[str, str] = {}  # image name -> what it is at, while it builds or loads

    def show_steps() -> None:
        if progress is not None and steps:
            progress("; ".join(steps.values()))

    def say(result: ImageResult, line: str) -> None:
        result.lines.append(line)
        with lock:  # whole lines, even from two builds at once
            steps.pop(result.name, None)
            if progress_done is not None:
                progress_done()
            out(line)
            show_steps()

    if skip_reason is not None:
        skipped = []
        for spec in specs:
            result = ImageResult(spec.name, refs[spec.name], "not built")
            say(
                result,
                f"devloop: image {spec.name}: {refs[spec.name].tag}, not built ({skip_reason})",
            )
            skipped.append(result)
        return skipped

    docker = builder or Builder()

    def one(spec: ImageSpec) -> ImageResult:
        ref = refs[spec.name]
        result = ImageResult(spec.name, ref, "unchanged")
        prefix = f"devloop: image {spec.name}"

        def stream(line: str) -> None:
            # Only without a live line (`stream_log`): nothing to erase before a log line.
            with lock:
                out(f"{prefix} | {line}")

        def step(text: str) -> None:
            with lock:
                steps[spec.name] = text
                show_steps()

        def at_step(text: str) -> None:
            step(f"building {spec.name}: {text}")

        try:
            if docker.exists(ref.ref):
                say(result, f"{prefix}: unchanged ({ref.tag})")
            else:
                at_step("starting")
                # Only when asked: a Builder whose build() predates `step` still works.
                hooks: dict[str, Callable[[str], None]] = {}
                if progress is not None:
                    hooks["step"] = at_step
                result.seconds = docker.build(
                    spec, ref, stream=stream if stream_log else None, **hooks
                )
                result.action = "built"
                where = (
                    f" in {loader.target}'s docker" if loader and loader.builds_in_cluster else ""
                )
                say(result, f"{prefix}: built {ref.tag}{where} ({result.seconds:.1f} s)")
            if loader is not None and not loader.has(ref.ref):
                started = docker.clock()
                step(f"loading {spec.name} into {loader.target}")
                loader.load(ref.ref)
                result.loaded = True
                say(
                    result,
                    f"{prefix}: loaded into {loader.target} ({docker.clock() - started:.1f} s)",
                )
        except DockerUnavailable:
            raise
        except ImageError as e:
            # A failed load keeps "built": the image exists, only the cluster lacks it.
            if result.action != "built":
                result.action = "failed"
            result.error = e
            say(result, f"devloop: {e}")
        return result

    try:
        return _build_all(specs, one, max_workers)
    finally:
        if progress_done is not None:
            progress_done()


def _build_all(
    specs: Sequence[ImageSpec], one: Callable[[ImageSpec], ImageResult], max_workers: int
) -> list[ImageResult]:
    if len(specs) <= 1 or max_workers <= 1:
        return [one(spec) for spec in specs]
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="devloop-image") as pool:
        futures: list[Future[ImageResult]] = [pool.submit(one, spec) for spec in specs]
        results: list[ImageResult] = []
        unavailable: DockerUnavailable | None = None
        for future in futures:
            try:
                results.append(future.result())
            except DockerUnavailable as e:
                unavailable = unavailable or e
    if unavailable is not None:
        raise unavailable
    return results


# --------------------------------------------------------------------------- chart values

# `{{image:NAME}}`, `{{image.repo:NAME}}`, `{{image.tag:NAME}}` (spaces allowed inside).
_DEVLOOP_PLACEHOLDER = re.compile(r"\{\{\s*image(?:\.([a-z]+))?\s*:\s*([^{}\s]*)\s*\}\}")
_DEVLOOP_FIELDS = ("repo", "tag")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
# Longest first: IMAGE_REPO_NO_DOMAIN_x must not be read as IMAGE_REPO_ of "NO_DOMAIN_x".
_SKAFFOLD_FIELD = re.compile(
    r"^\s*\.IMAGE_(FULLY_QUALIFIED|REPO_NO_DOMAIN|DOMAIN|DIGEST|REPO|TAG)(?:_([A-Za-z0-9_]+))?\s*$"
)
_SKAFFOLD_FIELDS = (
    "IMAGE_FULLY_QUALIFIED, IMAGE_REPO, IMAGE_TAG, IMAGE_DIGEST, IMAGE_DOMAIN, IMAGE_REPO_NO_DOMAIN"
)


class _Resolver:
    """Fills the image placeholders of one chart release, recording the images it used."""

    def __init__(self, release: ChartRelease, refs: Mapping[str, ImageRef]) -> None:
        self.release = release
        self.refs = refs
        self.by_key = {template_image_key(name): name for name in refs}
        self.used: dict[str, None] = {}

    def _fail(self, where: str, text: str) -> ImagePlaceholderError:
        return ImagePlaceholderError(self.release.name, where, text)

    def _image(self, where: str, placeholder: str, name: str) -> ImageRef:
        ref = self.refs.get(name)
        if ref is None:
            known = ", ".join(self.refs) or "none are declared (add an `images:` entry)"
            close = difflib.get_close_matches(name, list(self.refs), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self._fail(where, f"{placeholder} names no image{hint}; the images: {known}")
        self.used[name] = None
        return ref

    def devloop(self, where: str, value: str) -> str:
        def one(m: re.Match[str]) -> str:
            part, name = m.group(1), m.group(2)
            if part is not None and part not in _DEVLOOP_FIELDS:
                raise self._fail(
                    where,
                    f"{m.group(0)}: unknown part {part!r} (use {{{{image:NAME}}}}, "
                    "{{image.repo:NAME}} or {{image.tag:NAME}})",
                )
            if not name:
                raise self._fail(where, f"{m.group(0)}: give an image name, e.g. {{{{image:app}}}}")
            ref = self._image(where, m.group(0), name)
            return ref.repository if part == "repo" else ref.tag if part == "tag" else ref.ref

        return _DEVLOOP_PLACEHOLDER.sub(one, value)

    def skaffold(self, where: str, value: str) -> str:
        digest_used = False

        def one(m: re.Match[str]) -> str:
            nonlocal digest_used
            f = _SKAFFOLD_FIELD.match(m.group(1))
            if f is None:
                raise self._fail(
                    where,
                    f"{m.group(0)} is not an image placeholder devloop fills in "
                    f"(supported: {_SKAFFOLD_FIELDS}, each with _<image>)",
                )
            kind, key = f.group(1), f.group(2)
            if key is None:
                if len(self.refs) != 1:
                    raise self._fail(
                        where,
                        f"{m.group(0)} without an image suffix needs exactly one image "
                        f"(there are {len(self.refs)}): write {{{{.IMAGE_{kind}_<image>}}}}",
                    )
                name = next(iter(self.refs))
            else:
                name = self.by_key.get(key, key)
            ref = self._image(where, m.group(0), name)
            domain, path = _split_domain(ref.repository)
            if kind == "DIGEST":
                digest_used = True
            return {
                "FULLY_QUALIFIED": ref.ref,
                "REPO": ref.repository,
                "TAG": ref.tag,
                "DIGEST": "",  # no registry digest: devloop's tags are content addresses
                "DOMAIN": domain,
                "REPO_NO_DOMAIN": path,
            }[kind]

        text = _TEMPLATE.sub(one, value)
        # `{{.IMAGE_TAG_x}}@{{.IMAGE_DIGEST_x}}` (Skaffold's helm image strategy): no digest,
        # so no `@` either, or the reference would be invalid.
        return text[:-1] if digest_used and text.endswith("@") else text

    def walk(self, where: str, value: Any) -> Any:
        if isinstance(value, str):
            return self.devloop(where, value) if "{{" in value else value
        if isinstance(value, list):
            return [self.walk(f"{where}[{i}]", v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.walk(f"{where}.{k}", v) for k, v in value.items()}
        return value


def chart_image_values(
    release: ChartRelease, refs: Mapping[str, ImageRef]
) -> tuple[dict[str, Any], list[str]]:
    """The `--set` values of a release with its image placeholders filled in, and the names
    of the images it uses (in the order first used).

    The values are the release's `set` (devloop placeholders resolved; any other `{{...}}`
    is left alone, as a chart may `tpl` it) with its `image_values` (Skaffold templates, or
    devloop placeholders) laid over it. Raises ImagePlaceholderError naming the release, the
    key and the images that exist.
    """
    resolver = _Resolver(release, refs)
    values = {key: resolver.walk(f"set.{key}", value) for key, value in release.set.items()}
    for key, template in release.image_values.items():
        where = f"image_values.{key}"
        values[key] = resolver.skaffold(where, resolver.devloop(where, template))
    return values, list(resolver.used)


def check_image_placeholders(config: Config) -> None:
    """Check every chart's image placeholders against the config's images, at load time:
    a ConfigError with one line per chart that names an unknown image."""
    # The digest does not matter here, only which names resolve.
    refs = {
        spec.name: ImageRef(spec.name, "0" * 64, config.image_registry) for spec in config.images
    }
    problems: list[ConfigProblem] = []
    for i, release in enumerate(config.charts):
        try:
            chart_image_values(release, refs)
        except ImagePlaceholderError as e:
            problems.append(ConfigProblem(f"{default_key(('charts', i))}.{e.key}", e.reason))
    if problems:
        raise ConfigError.of(config.source, problems)
