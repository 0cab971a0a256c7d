"""`python -m pytest_devloop cluster up|status|down`, run as a user runs it: subprocesses."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

NOT_RUNNING = 3  # exit code of `cluster status` when no cluster runs


def devloop(action: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "cluster", action, "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def status(directory: Path) -> dict[str, str]:
    """`cluster status` of a running cluster, as its `key: value` lines."""
    proc = devloop("status", directory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fields = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert set(fields) >= {"running", "url", "kubeconfig", "uid", "uptime", "objects"}, fields
    return fields


def status_pid(fields: dict[str, str]) -> int:
    match = re.fullmatch(r"yes \(pid (\d+)\)", fields["running"])
    assert match, fields["running"]
    return int(match.group(1))


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie: it has exited and waits to be reaped by init."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return state in ("Z", "X")


def kube_system_uid(kubectl: str, kubeconfig: Path) -> str:
    proc = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(kubeconfig),
            "get",
            "namespace",
            "kube-system",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_cluster_up_reuse_status_down(tmp_path: Path, tool: Callable[[str], str]) -> None:
    kubectl = tool("kubectl")
    directory = tmp_path / "cluster"
    pids: list[int] = []
    try:
        up = devloop("up", directory)
        assert up.returncode == 0, up.stderr
        assert "embedded cluster started at https://127.0.0.1:" in up.stderr
        kubeconfig = Path(up.stdout.strip())
        assert up.stdout.strip().splitlines() == [str(kubeconfig)]
        assert kubeconfig.is_file() and kubeconfig.parent == directory.resolve()

        first = status(directory)
        pid = status_pid(first)
        pids.append(pid)
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", first["url"])
        assert first["kubeconfig"] == str(kubeconfig)
        assert re.fullmatch(r"\d+ s", first["uptime"])
        objects = re.fullmatch(r"(\d+) \((.*)\)", first["objects"])
        assert objects and int(objects.group(1)) > 0
        counts = {
            kind: int(n)
            for n, kind in (part.split(" ", 1) for part in objects.group(2).split(", "))
        }
        assert counts["Namespace"] >= 4  # default, kube-system, kube-public, kube-node-lease
        assert sum(counts.values()) == int(objects.group(1))

        again = devloop("up", directory)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr and f"(pid {pid})" in again.stderr
        assert again.stdout.strip() == str(kubeconfig)
        second = status(directory)
        assert (status_pid(second), second["url"], second["uid"]) == (
            pid,
            first["url"],
            first["uid"],
        )

        namespaces = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "get", "ns", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert namespaces.returncode == 0, namespaces.stderr
        assert {"namespace/default", "namespace/kube-system"} <= set(namespaces.stdout.split())
        assert kube_system_uid(kubectl, kubeconfig) == first["uid"]

        down = devloop("down", directory)
        assert down.returncode == 0, down.stderr
        assert "stopped" in down.stdout
        assert process_gone(pid)
        stopped = devloop("status", directory)
        assert stopped.returncode == NOT_RUNNING, stopped.stdout + stopped.stderr
        assert "no embedded cluster running" in stopped.stdout

        # A new cluster: new process, new identity, same kubeconfig path rewritten.
        up = devloop("up", directory)
        assert up.returncode == 0, up.stderr
        assert "started" in up.stderr
        assert up.stdout.strip() == str(kubeconfig)
        third = status(directory)
        pids.append(status_pid(third))
        assert third["uid"] != first["uid"]
        assert kube_system_uid(kubectl, kubeconfig) == third["uid"]
    finally:
        devloop("down", directory)
        for pid in pids:  # only if `down` itself failed: the servers this test started
            if not process_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert all(process_gone(pid) for pid in pids)
