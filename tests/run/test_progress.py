"""Progress of long work: a live line in a terminal that gives way to the summary, a line
every few seconds elsewhere, nothing for short work off a terminal; image builds show the
step they are at. (Watch mode's live line: tests/watch/test_watch_progress.py.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.artifacts.fingerprint import FileHasher
from pytest_devloop.artifacts.images import (
    Builder,
    CommandResult,
    build_images,
    build_step,
    image_refs,
)
from pytest_devloop.config.model import parse_config
from pytest_devloop.run.progress import ERASE, Progress
from tests.terminal import in_a_pty, screen

ROOT = Path(__file__).resolve().parents[2]


def test_terminal_line_is_rewritten_then_erased() -> None:
    out: list[str] = []
    p = Progress(out.append, tty=True)
    p("sms-checker: objects applied 0/10")
    p("sms-checker: objects applied 9/10")
    p.done()
    assert out == [
        "\r\x1b[Kdevloop: sms-checker: objects applied 0/10",
        "\r\x1b[Kdevloop: sms-checker: objects applied 9/10",
        "\r\x1b[K",
    ]


def test_off_a_terminal_a_line_every_interval_and_none_for_short_work() -> None:
    now = [0.0]
    out: list[str] = []
    p = Progress(out.append, tty=False, interval=5.0, clock=lambda: now[0])
    p("web: workloads ready 0/2, waiting for Deployment/a, Deployment/b")
    now[0] = 4.9
    p("web: workloads ready 1/2, waiting for Deployment/b")
    assert out == []  # short work says nothing beyond its summary
    now[0] = 5.0
    p("web: workloads ready 1/2, waiting for Deployment/b")
    now[0] = 7.0
    p("web: workloads ready 1/2, waiting for Deployment/b")
    p.done()
    assert out == ["devloop: ... web: workloads ready 1/2, waiting for Deployment/b\n"]


def test_off_a_terminal_a_lasting_state_is_repeated_though_nothing_new_is_told() -> None:
    lines: list[str] = []
    two = threading.Event()

    def write(text: str) -> None:
        lines.append(text)
        if len(lines) >= 2:
            two.set()

    p = Progress(write, tty=False, interval=0.05)
    # Told once: a watch-based wait tells a state only when it changes.
    p("web: workloads ready 0/1, waiting for Deployment/web")
    assert two.wait(30), lines
    p.done()
    assert set(lines) == {"devloop: ... web: workloads ready 0/1, waiting for Deployment/web\n"}
    assert not [t for t in threading.enumerate() if t.name == "devloop-progress"], "stopped"


def test_a_lasting_live_line_counts_its_seconds_though_nothing_new_is_told() -> None:
    now = [0.0]
    out: list[str] = []
    counted = threading.Event()

    def write(text: str) -> None:
        out.append(text)
        if "(12 s)" in text:
            counted.set()

    p = Progress(write, tty=True, clock=lambda: now[0], columns=lambda: 66)
    p("web: workloads ready 0/2, waiting for Deployment/a")
    now[0] = 4.0
    p("web: workloads ready 1/2, waiting for Deployment/b")
    now[0] = 12.0  # told nothing more: the ticker redraws the line with its seconds
    assert counted.wait(30), out
    p.done()
    assert out[:2] == [
        ERASE + "devloop: web: workloads ready 0/2, waiting for Deployment/a",
        ERASE + "devloop: web: workloads ready 1/2, waiting for Deployment/b (4 s)",
    ]
    # Cut to the width before its seconds, which always show: 65 columns in all.
    assert ERASE + "devloop: web: workloads ready 1/2, waiting for Deployme... (12 s)" in out, out
    assert out[-1] == ERASE
    assert not [t for t in threading.enumerate() if t.name == "devloop-progress"], "stopped"


def test_a_printed_line_erases_the_live_line_and_the_next_update_draws_it_again() -> None:
    out: list[str] = []
    p = Progress(out.append, tty=True, columns=lambda: 200)
    p("web: workloads ready 0/2, waiting for Deployment/a, Deployment/b")
    p.line("devloop: image web: built devloop-0123456789ab (1.2 s)")
    p.line("devloop: another line")  # nothing to erase now
    p("web: workloads ready 1/2, waiting for Deployment/b")
    p.done()
    assert out == [
        ERASE + "devloop: web: workloads ready 0/2, waiting for Deployment/a, Deployment/b",
        ERASE,
        "devloop: image web: built devloop-0123456789ab (1.2 s)\n",
        "devloop: another line\n",
        ERASE + "devloop: web: workloads ready 1/2, waiting for Deployment/b",
        ERASE,
    ]
    assert screen("".join(out)) == [
        "devloop: image web: built devloop-0123456789ab (1.2 s)",
        "devloop: another line",
        "",
    ]


def test_the_live_line_is_cut_to_the_terminal_width() -> None:
    out: list[str] = []
    p = Progress(out.append, tty=True, columns=lambda: 40)
    p("building app: step 3/7 RUN apt-get update && apt-get install -y curl")
    p.done()
    assert out[0] == ERASE + "devloop: building app: step 3/7 RUN ..."
    assert len(out[0]) - len(ERASE) == 39  # a full-width line would wrap, and stay


@pytest.mark.parametrize(
    ("line", "step"),
    [
        ("Step 3/7 : COPY . /app", "step 3/7 COPY . /app"),
        ("Step 1/2 : FROM scratch AS base", "step 1/2 FROM scratch AS base"),
        ("#7 [3/7] COPY . /app", "step 3/7 COPY . /app"),
        ("#9 [base 2/4] RUN make", "step 2/4 RUN make (stage base)"),
        ("#6 [ 3/12] COPY . /app", "step 3/12 COPY . /app"),
        ("#6 [build  3/12] RUN go build", "step 3/12 RUN go build (stage build)"),
        (
            "#8 [linux/arm64 base 1/2] FROM docker.io/library/alpine",
            "step 1/2 FROM docker.io/library/alpine (stage linux/arm64 base)",
        ),
        ("#12 exporting to image", "exporting to image"),
        ("#1 [internal] load build definition from Dockerfile", None),
        ("#7 DONE 0.1s", None),
        ("#7 CACHED", None),
        ("#8 0.412 compiling", None),
        (" ---> Running in 9e1273545c19", None),
        ("Sending build context to Docker daemon  6.656kB", None),
    ],
)
def test_build_steps_from_the_legacy_builder_and_buildkit(line: str, step: str | None) -> None:
    assert build_step(line) == step


class ScriptedDocker:
    """A docker CLI that has no image yet and builds with the legacy builder's log."""

    LOG = "Sending build context\nStep 1/2 : FROM scratch\n ---> \nStep 2/2 : COPY a.txt /a\n"

    def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        if argv[1:3] == ["image", "inspect"]:
            return CommandResult(1, "", "Error: No such image: x")
        assert argv[1] == "build" and on_line is not None
        for line in self.LOG.splitlines():
            on_line(line)
        return CommandResult(0)


def test_a_build_shows_its_step_live_then_collapses_into_the_built_line(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a\n")
    config = parse_config("images:\n  - {name: web, context: web}\n", tmp_path / "devloop.yaml")
    refs = image_refs(config, FileHasher())
    terminal: list[str] = []  # the lines and the live line, as they reach one terminal
    progress = Progress(terminal.append, tty=True, columns=lambda: 200)
    results = build_images(
        config,
        refs,
        out=lambda line: terminal.append(line + "\n"),
        # The clock reads 0 at the start, 1 at the end: a build of a second.
        builder=Builder(runner=ScriptedDocker(), buildkit=False, clock=iter(range(100)).__next__),
        progress=progress,
        progress_done=progress.done,
        stream_log=False,
    )
    assert results[0].action == "built"
    assert terminal[:4] == [
        ERASE + "devloop: building web: starting",
        ERASE + "devloop: building web: step 1/2 FROM scratch",
        ERASE + "devloop: building web: step 2/2 COPY a.txt /a",
        ERASE,
    ]
    assert screen("".join(terminal)) == [f"devloop: image web: built {refs['web'].tag} (1.0 s)", ""]


def test_off_a_terminal_a_long_build_streams_its_log_as_before(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a\n")
    config = parse_config("images:\n  - {name: web, context: web}\n", tmp_path / "devloop.yaml")
    refs = image_refs(config, FileHasher())
    log: list[str] = []
    progress = Progress(log.append, tty=False)
    build_images(
        config,
        refs,
        out=lambda line: log.append(line + "\n"),
        # Each reading of the clock a second later: past 2 s, the build streams its log.
        builder=Builder(runner=ScriptedDocker(), buildkit=False, clock=iter(range(100)).__next__),
        progress=progress,
        progress_done=progress.done,
        stream_log=True,
    )
    assert log == [
        "devloop: image web | Sending build context\n",
        "devloop: image web | Step 1/2 : FROM scratch\n",
        "devloop: image web |  ---> \n",
        "devloop: image web | Step 2/2 : COPY a.txt /a\n",
        f"devloop: image web: built {refs['web'].tag} (3.0 s)\n",
    ]


def _project(tmp_path: Path, tool: Callable[[str], str]) -> tuple[Path, dict[str, str]]:
    copy = tmp_path / "example_project"
    shutil.copytree(
        ROOT / "example_project", copy, ignore=shutil.ignore_patterns(".devloop", ".benchmarks")
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "KUBECONFIG")}
    env["DEVLOOP_HELM"] = shutil.which("helm") or tool("helm4")
    env["TERM"] = "xterm"
    return copy, env


def test_sync_in_a_terminal_shows_a_live_line_that_collapses_into_the_summary(
    tmp_path: Path, tool: Callable[[str], str]
) -> None:
    project, env = _project(tmp_path, tool)
    try:
        text = in_a_pty([sys.executable, "-m", "pytest_devloop", "sync"], project, env)
        assert "\r\x1b[Kdevloop: sms-checker: objects applied 0/10" in text, repr(text[-2000:])
        assert re.search(
            r"\r\x1b\[Kdevloop: sms-checker: workloads ready [01]/2, waiting for "
            r"Deployment/sms-checker-(app|model)",
            text,
        ), repr(text[-2000:])
        # The live line is erased, and the usual summary line takes its place.
        assert re.search(
            r"\r\x1b\[Kdevloop: sms-checker: 0 updated, 10 created, 0 pruned, 0 unchanged, "
            r"[\d.]+ s\r\n$",
            text,
        ), repr(text[-2000:])
        # Off a terminal (a pipe, CI): a short sync prints its summary lines and nothing else.
        piped = subprocess.run(
            [sys.executable, "-m", "pytest_devloop", "sync"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert piped.returncode == 0
        assert "\x1b[K" not in piped.stderr + piped.stdout
        assert "objects applied" not in piped.stderr + piped.stdout

        # An apply that fails midway: its error line replaces the live line, whole.
        (project / "crds" / "zz-bad.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: default}\n"
            "data: {size: 1}\n"  # a number where a string must be: the server refuses it
        )
        text = in_a_pty([sys.executable, "-m", "pytest_devloop", "sync"], project, env)
        assert "\r\x1b[Kdevloop: crds: objects applied 0/1" in text, repr(text[-2000:])
        shown = screen(text)
        error = [ln for ln in shown if "ConfigMap/bad" in ln]
        assert error and error[0].startswith("devloop: crds: error: "), shown
        assert not [ln for ln in shown if "objects applied" in ln], shown
    finally:
        subprocess.run(
            [sys.executable, "-m", "pytest_devloop", "cluster", "down"],
            cwd=project,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def image_project(tmp_path: Path, tool: Callable[[str], str]) -> Iterator[tuple[Path, str]]:
    """A project with one image (FROM scratch, three steps) of a name of its own, and a
    ConfigMap; the image is removed afterwards."""
    docker = tool("docker")
    if subprocess.run([docker, "version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("the docker daemon does not answer")
    name = f"devloop-test-{uuid.uuid4().hex[:10]}"
    root = tmp_path / "project"
    (root / "img").mkdir(parents=True)
    (root / "img" / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n")
    (root / "img" / "a.txt").write_text(f"{name}\n")
    (root / "img" / "b.txt").write_text("b\n")
    (root / "manifests").mkdir()
    (root / "manifests" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"
    )
    (root / "devloop.yaml").write_text(
        "cluster: {provider: embedded}\nnamespace: progress\n"
        f"images:\n  - {{name: {name}, context: img}}\n"
        "manifests:\n  - {name: settings, path: manifests}\n"
    )
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (root / "test_it.py").write_text("def test_it():\n    pass\n")
    try:
        yield root, name
    finally:
        listed = subprocess.run(
            [docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if listed.stdout.split():
            subprocess.run(
                [docker, "rmi", "-f", *listed.stdout.split()], capture_output=True, check=False
            )
        subprocess.run(
            [sys.executable, "-m", "pytest_devloop", "cluster", "down"],
            cwd=root,
            capture_output=True,
            timeout=60,
            check=False,
        )


def test_an_image_build_in_a_terminal_shows_its_step_live_then_the_built_line(
    image_project: tuple[Path, str],
) -> None:
    root, name = image_project
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "NO_COLOR")}
    env["TERM"] = "xterm"
    text = in_a_pty([sys.executable, "-m", "pytest", "--devloop-build"], root, env)
    # The legacy builder counts the `--label`s devloop adds as steps too, BuildKit does not.
    for step in (r"1/\d FROM scratch", r"2/\d COPY a\.txt /a\.txt", r"3/\d COPY b\.txt /b\.txt"):
        assert re.search(rf"\r\x1b\[Kdevloop: building {name}: step {step}", text), repr(text)
    shown = screen(text)
    built = [ln for ln in shown if ln.startswith(f"devloop: image {name}: built devloop-")]
    assert len(built) == 1, shown
    # Collapsed: the live line left nothing behind, and no build log was streamed.
    assert not [ln for ln in shown if "building" in ln or " | " in ln], shown
    assert any(re.search(r"1 passed", ln) for ln in shown), shown


def test_an_image_build_in_a_watch_cycle_shows_its_step_live_then_the_block(
    image_project: tuple[Path, str],
) -> None:
    root, name = image_project
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "NO_COLOR")}
    env["TERM"] = "xterm"
    text = in_a_pty(
        [sys.executable, "-m", "pytest", "--devloop-watch", "--devloop-build"],
        root,
        env,
        until=r"devloop: time: [^\n]* s\r?\n",
        timeout=90,
    )
    assert re.search(rf"\r\x1b\[Kdevloop: building {name}: step 2/\d COPY a\.txt", text), repr(text)
    shown = screen(text)
    header = next(i for i, ln in enumerate(shown) if ln.startswith("── devloop: cycle 1"))
    built = next(
        i for i, ln in enumerate(shown) if ln.startswith(f"devloop: image {name}: built devloop-")
    )
    assert header < built, shown
    assert not [ln for ln in shown if "building" in ln or " | " in ln], shown
    assert any(ln.startswith("devloop: time: ") for ln in shown), shown


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pytest_devloop.embedded.cluster import EmbeddedCluster

    c = EmbeddedCluster(directory=tmp_path_factory.mktemp("cluster")).start()
    yield c
    c.stop()


def test_a_sync_that_dies_midway_leaves_no_live_line_nor_ticker(
    cluster: Any, tmp_path: Path
) -> None:
    from pytest_devloop.cluster.kube import Kube, client_from_kubeconfig
    from pytest_devloop.cluster.providers import Target
    from pytest_devloop.config.load import load_config
    from pytest_devloop.sync.syncer import Syncer

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "cms.yaml").write_text(
        "".join(
            f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}}}\ndata: {{a: b}}\n"
            for n in ("one", "two")
        )
    )
    (tmp_path / "devloop.yaml").write_text(
        "namespace: dies\nmanifests:\n  - {name: things, path: m}\n"
    )
    config = load_config(tmp_path)
    assert config is not None
    target = Target("current", "devloop-embedded", str(cluster.kubeconfig), cluster.url, "local")

    class ConnectionDrops(Kube):
        """The real cluster, but the connection drops on the second object's apply."""

        def apply(self, res: Any, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            if obj["metadata"]["name"] == "two":
                raise ConnectionResetError("the connection dropped")
            return super().apply(res, obj, **kwargs)

    for tty in (True, False):
        out: list[str] = []
        progress = Progress(out.append, tty=tty, interval=0.05, columns=lambda: 200)
        syncer = Syncer(
            config,
            target,
            kube=ConnectionDrops(client_from_kubeconfig(str(cluster.kubeconfig))),
            out=lambda line: None,
        )
        syncer.progress, syncer.progress_done = progress, progress.done
        with pytest.raises(ConnectionResetError):
            syncer.sync(full=True)
        if tty:
            assert out[0] == ERASE + "devloop: things: objects applied 0/2", out
            assert out[-1] == ERASE, "the live line is erased before the error is shown"
        assert not [t for t in threading.enumerate() if t.name == "devloop-progress"], (
            "no ticker outlives the sync"
        )
