"""The gate a watch cycle's test process waits at (`run.gate`), end to end between real
processes: the words come through in order, a closed gate stops the process instead of
hanging it, and the priority it gave up is back for all its threads at `summary`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pytest_devloop.run.gate import ENV, Gate


def _child(code: str, gate: Path, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ENV: str(gate)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


WAIT = """
    import os, sys
    from pytest_devloop.run.gate import GO, SUMMARY, Waiting
    w = Waiting.take()
    assert "DEVLOOP_GATE" not in os.environ
    w.until(SUMMARY)
    print("summary", flush=True)
    w.until(GO)
    print("go", flush=True)
"""


def test_the_words_said_before_the_process_reads_them_come_through_in_order(
    tmp_path: Path,
) -> None:
    gate = Gate(tmp_path)
    try:
        gate.summary()
        gate.go()
        done = _child(WAIT, gate.path)
    finally:
        gate.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["summary", "go"]


def test_abort_ends_the_process_silently_at_its_gate(tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    try:
        gate.summary()
        gate.abort()
        done = _child(WAIT, gate.path)
    finally:
        gate.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["summary"]


def test_a_gate_without_a_writer_stops_the_process_instead_of_hanging_it(
    tmp_path: Path,
) -> None:
    # The watch closed its end while the name still existed: opening the pipe must not
    # wait for a writer that never comes.
    path = tmp_path / "gate"
    os.mkfifo(path, 0o600)
    done = _child(WAIT, path, timeout=5)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    gone = tmp_path / "gone"  # and one already removed
    assert _child(WAIT, gone, timeout=5).stdout == ""


def test_the_priority_given_up_until_summary_is_back_for_every_thread(tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    code = """
        import os, threading
        from pytest_devloop.run import gate
        base = os.getpriority(os.PRIO_PROCESS, 0)
        gate.yield_cpu()
        lowered = os.getpriority(os.PRIO_PROCESS, 0)
        seen = {}
        started = threading.Event()
        stop = threading.Event()
        def worker():
            seen["tid"] = threading.get_native_id()
            started.set()
            stop.wait()
        t = threading.Thread(target=worker)
        t.start()
        started.wait()
        w = gate.Waiting.take()
        w.until(gate.SUMMARY)
        print(base, lowered, os.getpriority(os.PRIO_PROCESS, 0),
              os.getpriority(os.PRIO_PROCESS, seen["tid"]))
        stop.set()
        t.join()
    """
    try:
        gate.summary()
        done = _child(code, gate.path)
    finally:
        gate.close()
    assert done.returncode == 0, done.stderr
    base, lowered, main, thread = (int(v) for v in done.stdout.split())
    if lowered == base:
        return  # this process may not return to its priority here: it kept it throughout
    assert lowered == 19
    assert (main, thread) == (base, base)
