"""The fork server as the watch drives it: one JSON request a line, a child per cycle.

Its children are forked ahead of their request with pytest's config half built; these
tests check that such a child behaves as a fresh `pytest.main` would: it imports the
test files as they are now, honours `-p no:<plugin>` from the request, and sees the
request's folder as pytest's invocation folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class Server:
    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "CI")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_devloop.watch.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,
        )
        assert "ready" in self._reply()

    def _reply(self) -> dict[str, int]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the fork server exited"
        reply: dict[str, int] = json.loads(line)
        return reply

    def run(self, args: list[str], cwd: Path, output: Path) -> int:
        assert self.proc.stdin is not None
        request = {"args": args, "cwd": str(cwd), "output": str(output)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        assert "pid" in self._reply()
        return self._reply()["rc"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


def test_each_cycle_imports_the_test_file_as_it_is_now(server: Server, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    test = tmp_path / "test_x.py"
    test.write_text("def test_x():\n    assert 1 == 1\n")
    out = tmp_path / "out.txt"
    assert server.run(["-q"], tmp_path, out) == 0, out.read_text()
    test.write_text("def test_x():\n    assert 1 == 2\n")
    assert server.run(["-q"], tmp_path, out) == 1, out.read_text()
    assert "assert 1 == 2" in out.read_text()
    test.write_text("def test_x():\n    assert 2 == 2\n")
    assert server.run(["-q"], tmp_path, out) == 0, out.read_text()


def test_a_plugin_disabled_by_the_request_is_not_loaded(server: Server, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    out = tmp_path / "out.txt"
    assert server.run(["-q", "--junitxml=j.xml"], tmp_path, out) == 0, out.read_text()
    assert (tmp_path / "j.xml").exists()
    # Without the junitxml plugin its option does not exist: a usage error, as pytest says.
    rc = server.run(["-q", "-p", "no:junitxml", "--junitxml=k.xml"], tmp_path, out)
    assert rc == 4, out.read_text()
    assert "unrecognized arguments: --junitxml" in out.read_text()
    assert server.run(["-q"], tmp_path, out) == 0, out.read_text()


def test_the_request_folder_is_the_invocation_folder(server: Server, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "test_here.py").write_text(
        "def test_here(pytestconfig):\n"
        "    open('seen.txt', 'w').write(str(pytestconfig.invocation_params.dir))\n"
    )
    (tmp_path / "test_elsewhere.py").write_text("def test_elsewhere():\n    assert False\n")
    out = tmp_path / "out.txt"
    assert server.run(["-q", "."], sub, out) == 0, out.read_text()
    assert (sub / "seen.txt").read_text() == str(sub)
    assert server.run(["-q"], tmp_path, out) == 1  # from the root: both files


def test_a_child_that_dies_without_saying_its_code_is_answered_with_its_exit_status(
    server: Server, tmp_path: Path
) -> None:
    # The answer normally comes from the child itself once its output is flushed; a child
    # that never gets there (killed, or exiting from inside a test) is answered by the
    # kernel's exit status, and the server goes on serving.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    test = tmp_path / "test_x.py"
    test.write_text(
        "import os, signal\n\ndef test_x():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = tmp_path / "out.txt"
    assert server.run(["-q"], tmp_path, out) == -9
    test.write_text("import os\n\ndef test_x():\n    os._exit(3)\n")
    assert server.run(["-q"], tmp_path, out) == 3
    test.write_text("def test_x():\n    pass\n")
    assert server.run(["-q"], tmp_path, out) == 0, out.read_text()
    assert "1 passed" in out.read_text()


def test_a_child_killed_while_a_process_it_forked_lives_on_is_still_answered(
    server: Server, tmp_path: Path
) -> None:
    # The forked process inherits the pipe the child would have said its code on; the
    # child's death is seen anyway.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_x.py").write_text(
        "import os, signal\n\n"
        "def test_x():\n"
        "    if os.fork() == 0:\n"
        "        signal.alarm(5)  # ends it in 5 s\n"
        "        signal.pause()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = tmp_path / "out.txt"
    started = time.monotonic()
    assert server.run(["-q"], tmp_path, out) == -9
    assert time.monotonic() - started < 4
