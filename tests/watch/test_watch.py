"""Watch mode as a user drives it: `pytest --devloop-watch` on a copy of the example project.

Every wait is a bounded wait on a printed line (stdout is read by a thread into a queue);
the process group is killed and the copy's embedded cluster stopped in a `finally`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import find_tool

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_project"

pytestmark = pytest.mark.skipif(find_tool("helm4") is None, reason="helm4 is not installed")


class WatchProcess:
    """`python -m pytest --devloop-watch` in `project`, its output read line by line."""

    def __init__(self, project: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.project = project
        full_env = {k: v for k, v in os.environ.items() if k != "CI"}
        full_env["DEVLOOP_HELM"] = str(find_tool("helm4"))
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "--devloop-watch",
                "--devloop-quiet-period=0.05",
                *args,
            ],
            cwd=project,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=full_env,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, pattern: str, timeout: float = 30.0) -> str:
        """The next line matching `pattern` (regex search), within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(
                    f"watch exited ({self.proc.poll()}) before {pattern!r}:\n"
                    + "\n".join(self.seen[-40:])
                )
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(
            f"no line matching {pattern!r} in {timeout} s:\n" + "\n".join(self.seen[-40:])
        )

    def wait_block(self, timeout: float = 30.0) -> list[str]:
        """The lines of the next complete cycle block (header to time line)."""
        start = len(self.seen)
        self.wait_line(r"^── devloop: cycle", timeout)
        header_at = len(self.seen) - 1
        self.wait_line(r"^devloop: time: ", timeout)
        del start
        return self.seen[header_at:]

    def descendants(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        out: list[int] = []
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            for c in children.get(pid, []):
                out.append(c)
                todo.append(c)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            for pid in self.descendants():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(timeout=10)


def cmdline(pid: int) -> bytes:
    """The process's command line; empty when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    dest = tmp_path / "example_project"
    shutil.copytree(
        EXAMPLE, dest, ignore=shutil.ignore_patterns(".devloop", ".benchmarks", "__pycache__")
    )
    try:
        yield dest
    finally:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest_devloop",
                "cluster",
                "down",
                "--dir",
                str(dest / ".devloop" / "embedded"),
            ],
            cwd=dest,
            capture_output=True,
            check=False,
            timeout=30,
        )


@pytest.fixture
def watch(project: Path) -> Iterator[Callable[..., WatchProcess]]:
    started: list[WatchProcess] = []

    def start(*args: str) -> WatchProcess:
        w = WatchProcess(project, *args)
        started.append(w)
        return w

    try:
        yield start
    finally:
        for w in started:
            w.stop()


def kube_for(project: Path) -> Any:
    from pytest_devloop.cluster.kube import Kube, client_from_kubeconfig

    return Kube(client_from_kubeconfig(str(project / ".devloop" / "embedded" / "kubeconfig")))


def get(project: Path, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
    kube = kube_for(project)
    res = kube.resource(api_version, kind)
    assert res is not None
    found: dict[str, Any] | None = kube.get(res, "sms-checker", name)
    return found


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def first_cycle(w: WatchProcess) -> list[str]:
    block = w.wait_block(timeout=60)
    assert any(re.search(r"tests: \d+ passed", ln) for ln in block), block
    return block


def line(block: list[str], pattern: str) -> str:
    found = [ln for ln in block if re.search(pattern, ln)]
    assert found, f"no {pattern!r} in:\n" + "\n".join(block)
    return found[0]


VALUES = Path("charts/sms-checker/values.yaml")
VS = Path("charts/sms-checker/templates/virtualservice.yaml")
FAULT = """    - name: app
      fault:
        delay:
          percentage:
            value: 50
          fixedDelay: 2s
"""


def assert_time_split_adds_up(text: str) -> None:
    """The cycle's `devloop: time:` line names every part and they sum to the total."""
    parts = re.match(
        r"devloop: time: detect ([\d.]+), build ([\d.]+), render ([\d.]+), apply ([\d.]+), "
        r"hooks ([\d.]+), ready ([\d.]+), sync ([\d.]+), tests ([\d.]+), watch ([\d.]+), "
        r"total ([\d.]+) s$",
        text,
    )
    assert parts, text
    *steps, total = (float(v) for v in parts.groups())
    assert total > 0 and abs(sum(steps) - total) <= 0.05 * total, text


def test_values_template_test_file_config_and_image_edits_in_turn(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    w = watch()
    first_cycle(w)

    # 1. values.yaml: app replicas 1 -> 3: only the app Deployment, only its tests.
    edit(project / VALUES, "app:\n  replicas: 1", "app:\n  replicas: 3")
    block = w.wait_block()
    assert line(block, r"^devloop: changed: ").endswith(
        "charts/sms-checker/values.yaml (sms-checker)"
    )
    synced = line(block, r"^devloop: sms-checker: ")
    assert "1 updated (Deployment/sms-checker-app: spec.replicas)" in synced
    assert "crds: unchanged" in line(block, r"^devloop: crds: ")
    header = line(block, r"tests (affected|selected)")
    assert "Deployment/sms-checker-app" in header and "sms-checker-model" not in header
    # The saved file travels to the header.
    assert "by charts/sms-checker/values.yaml → Deployment/sms-checker-app" in header, header
    assert re.search(r"tests: \d+ passed", line(block, r"^devloop: tests: "))
    assert "failed" not in line(block, r"^devloop: tests: ")
    dep = get(project, "apps/v1", "Deployment", "sms-checker-app")
    assert dep is not None and dep["spec"]["replicas"] == 3
    assert_time_split_adds_up(block[-1])

    # 2. the VirtualService template: a 50% fault delay; the routing tests run.
    edit(project / VS, "    - name: app\n", FAULT)
    block = w.wait_block()
    assert_time_split_adds_up(block[-1])
    assert "1 updated (VirtualService/sms-checker-app" in line(block, r"^devloop: sms-checker: ")
    header = line(block, r"tests (affected|selected)")
    assert f"by {VS} → VirtualService/sms-checker-app" in header, header
    assert "failed" not in line(block, r"^devloop: tests: ")
    vs = get(project, "networking.istio.io/v1beta1", "VirtualService", "sms-checker-app")
    assert vs is not None and vs["spec"]["http"][0]["fault"]["delay"]["percentage"]["value"] == 50

    # 3. a test file: a new test runs, no sync work.
    services = project / "tests" / "test_services.py"
    services.write_text(
        services.read_text() + "\n\ndef test_added_while_watching():\n    assert 1 + 1 == 2\n"
    )
    block = w.wait_block()
    assert line(block, r"^devloop: changed: ").endswith("tests/test_services.py (test)")
    assert "unchanged" in line(block, r"^devloop: sms-checker: ")
    assert re.search(r"tests: \d+ passed", line(block, r"^devloop: tests: "))
    # A failing edit of the same file is picked up too (fresh import every cycle).
    edit(project / "tests" / "test_services.py", "1 + 1 == 2", "1 + 1 == 3")
    block = w.wait_block()
    assert "1 failed" in line(block, r"^devloop: tests: ")
    assert any("test_added_while_watching" in ln for ln in block)

    # 4. devloop.yaml: a --set in the config re-renders the chart.
    edit(project / "devloop.yaml", "    set:\n", "    set:\n      app.replicas: 2\n")
    block = w.wait_block()
    assert "config reloaded" in line(block, r"config reloaded")
    assert "Deployment/sms-checker-app: spec.replicas" in line(block, r"^devloop: sms-checker: ")
    dep = get(project, "apps/v1", "Deployment", "sms-checker-app")
    assert dep is not None and dep["spec"]["replicas"] == 2

    # 5. an image's build context: its digest tag changes, the Deployment using it rolls.
    ctx = project / "images" / "app"
    some = sorted(p for p in ctx.iterdir() if p.is_file() and p.name != "Dockerfile")[0]
    some.write_text(some.read_text() + "\n# edited while watching\n")
    block = w.wait_block()
    assert "(sms-checker-app)" in line(block, r"^devloop: changed: ")
    synced = line(block, r"^devloop: sms-checker: ")
    assert "Deployment/sms-checker-app" in synced and "sms-checker-model" not in synced

    # 6. a save with the same content: one line, nothing else.
    (project / VALUES).write_text((project / VALUES).read_text())
    w.wait_line(r"^devloop: nothing changed \(charts/sms-checker/values.yaml saved, same content\)")


@pytest.mark.parametrize(("runner", "delay"), [("fork", 1.0), ("subprocess", 3.0)])
def test_the_test_process_collects_during_the_readiness_wait_and_tests_after_it(
    project: Path, runner: str, delay: float
) -> None:
    # The app's pods take `delay` seconds to become Ready. The cycle's test process
    # starts with the sync (a fork of the warm server, or a fresh `python -m pytest`) and
    # collects while the sync waits for them; its tests run once they are Ready: the test
    # module is imported well before the test runs, and the test, reading the live count
    # without retrying, sees 3 ready.
    edit(
        project / VALUES,
        "  podAnnotations: {}",
        f'  podAnnotations:\n    devloop.dev/ready-delay: "{delay}"',
    )
    (project / "tests" / "test_overlap.py").write_text(
        "import time\n"
        "from pathlib import Path\n\n"
        "IMPORTED = time.time()\n\n\n"
        "def test_app_ready_when_the_test_runs(cluster, rendered):\n"
        "    wanted = rendered.get('Deployment', 'sms-checker-app')['spec']['replicas']\n"
        "    assert cluster.deployment('sms-checker-app').ready_replicas == wanted\n"
        "    Path('overlap.txt').write_text(f'{wanted} {IMPORTED} {time.time()}')\n"
    )
    w = WatchProcess(project, env={"DEVLOOP_WATCH_RUNNER": runner})
    try:
        first_cycle(w)
        edit(project / VALUES, "app:\n  replicas: 1", "app:\n  replicas: 3")

        block = w.wait_block(timeout=60)
    finally:
        w.stop()

    assert re.search(r"tests: \d+ passed", line(block, r"^devloop: tests: ")), block
    wanted, imported, ran = (project / "overlap.txt").read_text().split()
    assert wanted == "3"
    assert float(ran) - float(imported) >= delay / 2, block
    ready = float(re.search(r"ready ([\d.]+)", line(block, r"^devloop: time: ")).group(1))
    assert ready >= delay - 0.1, block
    assert_time_split_adds_up(line(block, r"^devloop: time: "))


def test_a_rollout_that_times_out_runs_the_tests_against_the_failed_sync_then_recovers(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    # The test process started with the sync read a summary that expected the wait to
    # succeed; the wait times out instead, so that process is stopped at its gate and the
    # tests run in a fresh one that knows the sync failed.
    config = project / "devloop.yaml"
    config.write_text(config.read_text() + "wait_timeout: 1\n")
    w = watch()
    first_cycle(w)
    edit(
        project / VALUES,
        "app:\n  replicas: 1",
        'app:\n  replicas: 3\n  podAnnotations:\n    devloop.dev/ready-delay: "30"',
    )
    edit(project / VALUES, "  podAnnotations: {}\n", "", count=1)

    block = w.wait_block()

    assert "error" in line(block, r"^devloop: sms-checker: "), block
    # The tests were told: each errors at set-up with the sync's failure (a process
    # that expected success would have waited for 3 ready replicas and failed).
    tests = line(block, r"^devloop: tests: ")
    assert re.search(r"\b2 errors\b", tests) and "failed" not in tests, block
    line(block, r"^devloop: the sync failed:")
    assert_time_split_adds_up(line(block, r"^devloop: time: "))
    edit(project / VALUES, '    devloop.dev/ready-delay: "30"', '    devloop.dev/ready-delay: "0"')
    block = w.wait_block(timeout=60)
    assert re.search(r"tests: \d+ passed", line(block, r"^devloop: tests: ")), block
    assert "failed" not in line(block, r"^devloop: tests: "), block


def test_broken_template_is_reported_then_its_fix_syncs(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    w = watch()
    first_cycle(w)
    good = (project / VS).read_text()
    (project / VS).write_text(
        good.replace(
            "{{- if .Values.istio.enabled }}",
            "{{- if .Values.istio.enabled }}\n{{ .Values.nope.nope }}",
            1,
        )
    )
    block = w.wait_block()
    assert "error" in line(block, r"^devloop: sms-checker: ")
    assert "tests not run" in line(block, r"tests not run")
    (project / VS).write_text(good.replace("    - name: app\n", FAULT, 1))
    block = w.wait_block()
    assert "1 updated (VirtualService/sms-checker-app" in line(block, r"^devloop: sms-checker: ")
    assert "failed" not in line(block, r"^devloop: tests: ")


def test_a_deployment_deleted_by_hand_is_restored(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    w = watch()
    first_cycle(w)
    kube = kube_for(project)
    res = kube.resource("apps/v1", "Deployment")
    assert res is not None
    deleted_at = time.monotonic()
    assert kube.delete(res, "sms-checker", "sms-checker-model")
    w.wait_line(
        r"devloop: drift: Deployment/sms-checker-model was deleted in the cluster", timeout=5
    )
    restored = w.wait_line(
        r"^devloop: sms-checker: .*drift corrected|^devloop: sms-checker: .*1 created", timeout=5
    )
    assert "sms-checker-model" in restored
    assert time.monotonic() - deleted_at < 2.0 + 1.0  # restored within 2 s (+ slack for CI)
    assert kube.get(res, "sms-checker", "sms-checker-model") is not None
    w.wait_line(r"^devloop: time: ")

    # Edited by hand (like `kubectl scale`): restored to what the chart says.
    kube.request(
        "PATCH",
        "/apis/apps/v1/namespaces/sms-checker/deployments/sms-checker-app",
        body={"spec": {"replicas": 7}},
        content_type="application/merge-patch+json",
    )
    w.wait_line(r"devloop: drift: Deployment/sms-checker-app was edited in the cluster", timeout=5)
    w.wait_line(r"^devloop: sms-checker: .*drift corrected", timeout=5)
    dep = kube.get(res, "sms-checker", "sms-checker-app")
    assert dep is not None and dep["spec"]["replicas"] == 1


def test_two_saves_during_one_cycle_queue_exactly_one_more(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    gate = project / "gate"
    (project / "tests" / "test_gate.py").write_text(
        "import time\nfrom pathlib import Path\n\n\n"
        "def test_gate():\n"
        f"    Path({str(gate)!r} + '.started').write_text('x')\n"
        "    deadline = time.monotonic() + 30\n"
        f"    while not Path({str(gate)!r}).exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
    )
    w = watch()
    w.wait_line(r"^── devloop: cycle 1", timeout=60)
    # The first cycle now waits in test_gate for the gate file: save twice meanwhile.
    w.wait_line(r"^devloop: \d+ of \d+ tests", timeout=60)
    edit(project / VALUES, "app:\n  replicas: 1", "app:\n  replicas: 4")
    edit(project / VALUES, "app:\n  replicas: 4", "app:\n  replicas: 5")
    gate.write_text("go")
    w.wait_line(r"^devloop: time: ", timeout=60)
    block = w.wait_block()
    assert block[0].startswith("── devloop: cycle 2")
    assert "Deployment/sms-checker-app: spec.replicas" in line(block, r"^devloop: sms-checker: ")
    dep = get(project, "apps/v1", "Deployment", "sms-checker-app")
    assert dep is not None and dep["spec"]["replicas"] == 5
    # Nothing else queued: the next thing printed is this no-op save's line, no cycle 3.
    (project / VALUES).write_text((project / VALUES).read_text())
    w.wait_line(r"^devloop: nothing changed|^── devloop: cycle 3")
    assert w.seen[-1].startswith("devloop: nothing changed"), w.seen[-5:]


def test_api_server_stopped_then_back_resyncs_fully(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    w = watch()
    first_cycle(w)
    cluster_dir = str(project / ".devloop" / "embedded")
    subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "cluster", "down", "--dir", cluster_dir],
        check=True,
        capture_output=True,
        timeout=30,
    )
    edit(project / VALUES, "app:\n  replicas: 1", "app:\n  replicas: 2")
    # The same cycle resolves the cluster again (the embedded one starts anew: a new
    # identity), says so, and syncs everything to it.
    block = w.wait_block(timeout=60)
    said = line(block, r"^devloop: the cluster did not answer")
    assert "cannot reach" in said and "reconnected to https://127.0.0.1:" in said, said
    assert not [ln for ln in block if "sync failed" in ln], block
    assert re.search(r"\d+ created", line(block, r"^devloop: sms-checker: "))
    assert "failed" not in line(block, r"^devloop: tests: ")
    dep = get(project, "apps/v1", "Deployment", "sms-checker-app")
    assert dep is not None and dep["spec"]["replicas"] == 2


def test_ctrl_c_exits_within_2s_and_leaves_no_child(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    w = watch()
    first_cycle(w)
    # The embedded cluster's background server outlives the watch by design. A process
    # gone while it is listed (the last cycle's test process, answered before its exit
    # was complete) is not one left behind.
    children = [
        pid
        for pid in w.descendants()
        if b"pytest_devloop.embedded" not in cmdline(pid) and alive(pid)
    ]
    assert children, "the fork server should be running"
    started = time.monotonic()
    os.kill(w.proc.pid, signal.SIGINT)
    w.proc.wait(timeout=5)
    assert time.monotonic() - started < 2.0
    left = [pid for pid in children if alive(pid)]
    assert not left, f"children left behind: {left}"


def test_logs_of_the_synced_pods_stream_prefixed_and_wait_for_the_block(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    w = watch("--devloop-logs")
    first_cycle(w)
    w.wait_line(r"^\[sms-checker-app-[a-z0-9-]+\] .*app ready")
    edit(project / VALUES, "app:\n  replicas: 1", "app:\n  replicas: 2")
    block = w.wait_block()
    assert not [ln for ln in block if ln.startswith("[")], "log lines inside the block"
    # The new pod of the scaled Deployment is followed too (its logs print after the block).
    pods = {ln.split("]")[0] for ln in w.seen if ln.startswith("[sms-checker-app-")}
    while len(pods) < 2:
        ln = w.wait_line(r"^\[sms-checker-app-")
        pods.add(ln.split("]")[0])


def test_keys_in_a_terminal_rerun_all_failed_and_quit(project: Path) -> None:
    """Enter/a/f/q when stdin is a TTY; run from the parent folder (`pytest example_project`)."""
    import pty
    import select

    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["DEVLOOP_HELM"] = str(find_tool("helm4"))
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.chdir(project.parent)
        os.execvpe(
            sys.executable,
            # -rs: the short summary names no failed test; `f` must still find it (the
            # watch reads the test process's JSON results, not its terminal text).
            [sys.executable, "-m", "pytest", "example_project", "--devloop-watch", "-rs"],
            env,
        )
    buf = ""

    def wait(pattern: str, timeout: float = 30) -> str:
        nonlocal buf
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, buf)
            if m:
                found, buf = buf[: m.end()], buf[m.end() :]
                return found
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    buf += os.read(fd, 65536).decode(errors="replace")
                except OSError:
                    break
        raise AssertionError(f"no {pattern!r} in {timeout} s:\n{buf[-3000:]}")

    try:
        assert "Enter re-runs, a runs all, f the failed, q quits" in wait(r"q quits\)")
        first = wait(r"devloop: time:", timeout=60)
        # The fork server's warm-up imports are not the user's: no assertion-rewrite warning.
        assert re.search(r"devloop: tests: 12 passed in [\d.]+s\r?\n", first), first
        assert "PytestAssertRewriteWarning" not in first
        routing = project / "tests" / "test_routing.py"
        routing.write_text(
            routing.read_text() + "\n\ndef test_broken_on_purpose():\n    assert False\n"
        )
        block = wait(r"devloop: time:[^\n]*\n")
        assert "1 failed" in block
        assert "FAILED" not in block  # -rs: pytest's text does not name it
        os.write(fd, b"f")
        block = wait(r"cycle \d+: failed tests \(f\)[\s\S]*?devloop: time:[^\n]*\n")
        assert re.search(r"devloop: tests: 1 failed in", block), block
        os.write(fd, b"a")
        block = wait(r"cycle \d+: all tests \(a\)[\s\S]*?devloop: time:[^\n]*\n")
        assert re.search(r"devloop: tests: 1 failed, 12 passed in", block), block
        os.write(fd, b"\n")
        wait(r"cycle \d+: re-run \(Enter\)[\s\S]*?devloop: time:[^\n]*\n")
        os.write(fd, b"q")
        wait(r"devloop: bye")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
        os.close(fd)


def test_writes_to_non_inputs_pass_silently_and_a_log_in_the_project_does_not_loop(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    w = watch()
    first_cycle(w)
    # The watch's own output kept in the project: each line written is a new event.
    log = project / "watch.log"
    for n in range(5):
        with log.open("a") as f:
            f.write(f"devloop: nothing changed (watch.log saved, same content) {n}\n")
        time.sleep(0.1)
    (project / "notes.txt").write_text("not an input\n")
    # An input saved with the same content is still worth its line, and the first to come.
    (project / VALUES).write_text((project / VALUES).read_text())
    said = w.wait_line(r"^devloop: nothing changed")
    assert said == "devloop: nothing changed (charts/sms-checker/values.yaml saved, same content)"
    assert not [ln for ln in w.seen if "watch.log" in ln or "notes.txt" in ln], w.seen


def test_a_restarted_watch_says_the_tests_passed_last_time_and_how_to_run_them(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    first = watch()
    first_cycle(first)
    os.kill(first.proc.pid, signal.SIGINT)  # Ctrl-C: the embedded cluster stays up
    first.proc.wait(timeout=10)

    block = watch().wait_block(timeout=60)

    line(block, r"^devloop: nothing affected; 12 tests passed last time")
    line(block, r"^devloop: no test affected; press a to run all of them$")
    assert line(block, r"^devloop: tests: ").startswith(
        "devloop: tests: no tests ran, 12 deselected"
    )
    assert not [ln for ln in block if "warning" in ln.lower()], block


def test_a_deleted_chart_folder_is_named_with_the_fix(
    project: Path, watch: Callable[..., WatchProcess]
) -> None:
    w = watch()
    first_cycle(w)
    shutil.rmtree(project / "charts" / "sms-checker")

    block = w.wait_block()

    said = line(block, r"^devloop: sms-checker: ")
    assert said == (
        "devloop: sms-checker: charts/sms-checker is gone; restore it, or remove sms-checker "
        "from devloop.yaml"
    ), block
    assert not [ln for ln in block if "Errno" in ln], block
    assert len([ln for ln in block if " is gone" in ln]) == 1, block  # not its values.yaml too


def _pty_watch_until(project: Path, args: list[str], env: dict[str, str], pattern: str) -> str:
    """Run the watch in a terminal (pty) until `pattern` shows; the raw text it printed."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(project)
        os.execvpe(sys.executable, [sys.executable, "-m", "pytest", *args], env)
    buf = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not re.search(pattern, buf):
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    buf += os.read(fd, 65536).decode(errors="replace")
                except OSError:
                    break
        assert re.search(pattern, buf), buf[-3000:]
        return buf
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGINT)
            time.sleep(0.5)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_pod_logs_are_coloured_per_pod_in_a_terminal_unless_no_color(
    project: Path, no_color: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
    env["DEVLOOP_HELM"] = str(find_tool("helm4"))
    if no_color:
        env["NO_COLOR"] = "1"
    pod_line = r"\[sms-checker-app-[a-z0-9-]+\](\x1b\[0m)? [^\n]*app ready"
    text = _pty_watch_until(project, ["--devloop-watch", "--devloop-logs"], env, pod_line)
    found = re.search(r"(\x1b\[[0-9;]+m)?" + pod_line, text)
    assert found is not None
    if no_color:
        assert found.group(1) is None and "\x1b[0m" not in found.group(0), repr(found.group(0))
    else:
        assert found.group(1) is not None, repr(found.group(0))
