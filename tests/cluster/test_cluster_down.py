"""`cluster down` stops only its own server, and returns once that server has exited.

A stale `cluster.json` (a server that died, then its PID reused) must never make devloop
signal the process that now has that PID: the stranger here is a `sleep` this test starts,
and it must survive `down`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_devloop import processes

NOT_RUNNING = 3


def devloop(action: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "cluster", action, "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process of the user's (it would die of SIGTERM or SIGKILL)."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def write_record(directory: Path, pid: int, **extra: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "pid": pid,
        "url": "https://127.0.0.1:9",
        "uid": "5e1f0000-0000-0000-0000-000000000000",
        "kubeconfig": str(directory / "kubeconfig"),
        "started": 0.0,
        **extra,
    }
    path = directory / "cluster.json"
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("with_start_time", [True, False], ids=["reused-pid", "old-record"])
def test_down_with_a_stale_record_leaves_the_other_process_alive(
    tmp_path: Path, stranger: subprocess.Popen[bytes], with_start_time: bool
) -> None:
    directory = tmp_path / "embedded"
    extra = {"proc_start": "1"} if with_start_time else {}  # a start time the PID never had
    record = write_record(directory, stranger.pid, **extra)

    down = devloop("down", directory)

    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith(f"devloop: the record {record} was stale (pid {stranger.pid} ")
    assert "removed it and signalled nothing" in down.stdout
    assert stranger.poll() is None, "the unrelated process was signalled"
    assert not record.exists()
    status = devloop("status", directory)
    assert status.returncode == NOT_RUNNING, status.stdout


def test_down_of_a_dead_server_is_not_running(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    record = write_record(tmp_path / "embedded", proc.pid, proc_start="1")

    down = devloop("down", tmp_path / "embedded")

    assert down.stdout.strip() == f"devloop: no embedded cluster running in {tmp_path / 'embedded'}"
    assert not record.exists()


def test_down_returns_after_the_server_has_exited(tmp_path: Path) -> None:
    directory = tmp_path / "embedded"
    up = devloop("up", directory)
    assert up.returncode == 0, up.stderr
    record = json.loads((directory / "cluster.json").read_text())
    pid = int(record["pid"])
    try:
        assert record["proc_start"], record  # the server recorded its own start time
        assert processes.is_same(processes.ProcessId(pid, record["proc_start"]))

        down = devloop("down", directory)

        assert down.returncode == 0, down.stderr
        assert down.stdout.strip() == f"devloop: embedded cluster in {directory} stopped"
        # Checked right after `down` returned: no waiting here.
        assert not processes.alive(pid)
        assert not (directory / "cluster.json").exists()
    finally:
        if processes.alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_stop_refuses_a_process_that_is_not_the_recorded_one(
    stranger: subprocess.Popen[bytes],
) -> None:
    now = processes.identify(stranger.pid)
    assert now is not None
    assert processes.stop(processes.ProcessId(stranger.pid, "1")) is False
    assert processes.stop(now, still_ours=lambda: False) is False
    assert stranger.poll() is None
    assert processes.stop(now, timeout=5) is True
    assert stranger.wait(timeout=5) == -signal.SIGTERM
