"""No Secret value at rest, every file private: a project with a Secret is run with pytest
(the embedded cluster it starts, real helm 4) as a user runs it (a first run, an affected
run with --devloop-explain, a plan, a change of the Secret, `devloop status`), then every
file under `.devloop/` is searched for the value, in clear and base64, and its mode is
checked.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

VALUE = "Sup3r-S3cret-Valu3-4711"
NEW_VALUE = "An0ther-S3cret-Valu3-0815"

CHART = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: {{ .Values.password | quote }}
---
apiVersion: v1
kind: Secret
metadata:
  name: db-data
data:
  password: {{ .Values.password | b64enc }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
"""

TESTS = """\
import base64


def test_the_secret_is_there(cluster):
    secret = cluster.get("Secret", "db")
    assert base64.b64decode(secret["data"]["password"]).decode().startswith(("Sup3r", "An0ther"))


def test_the_rendered_secret_has_its_value(rendered):
    password = rendered.get("Secret", "db")["stringData"]["password"]
    assert password.startswith(("Sup3r", "An0ther")) and len(password) > 20


def test_the_settings(cluster):
    assert cluster.get("ConfigMap", "settings")["data"]["mode"] == "fast"
"""


@pytest.fixture
def project(tmp_path: Path, tool: Callable[[str], str]) -> Iterator[Path]:
    root = tmp_path / "proj"
    (root / "charts/app/templates").mkdir(parents=True)
    (root / "charts/app/Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 0.1.0\n")
    (root / "charts/app/values.yaml").write_text(f"password: {VALUE}\n")
    (root / "charts/app/templates/all.yaml").write_text(CHART)
    (root / "tests").mkdir()
    (root / "tests/test_app.py").write_text(TESTS)
    (root / "devloop.yaml").write_text(
        "cluster:\n  provider: embedded\nnamespace: secrets\n"
        "charts:\n  - name: app\n    path: charts/app\n"
    )
    (root / "pytest.ini").write_text("[pytest]\n")
    yield root
    subprocess.run(
        [sys.executable, "-m", "pytest_devloop", "cluster", "down", "--dir",
         str(root / ".devloop" / "embedded")],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip


def run(root: Path, helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env.pop("PYTEST_XDIST_WORKER", None)
    env["DEVLOOP_HELM"] = helm
    return subprocess.run(
        [sys.executable, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def forms(value: str) -> list[bytes]:
    raw = value.encode()
    return [raw, base64.b64encode(raw)]


def test_no_secret_value_under_devloop_and_every_file_private(
    project: Path, tool: Callable[[str], str]
) -> None:
    helm = tool("helm4")
    pytest_ = ["-m", "pytest", "-p", "no:benchmark", "-p", "no:randomly", "-q"]
    first = run(project, helm, *pytest_)
    assert first.returncode == 0, first.stdout + first.stderr
    again = run(project, helm, *pytest_, "--devloop-explain")
    assert again.returncode in (0, 5), again.stdout + again.stderr
    (project / "charts/app/values.yaml").write_text(f"password: {NEW_VALUE}\n")
    plan = run(project, helm, "-m", "pytest_devloop", "sync", "--plan")
    changed = run(project, helm, *pytest_, "--devloop-explain")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    status = run(project, helm, "-m", "pytest_devloop", "status")
    # Inputs unchanged: the sync knows the Secret only by digests; `rendered` still has
    # its value.
    rendered = run(
        project, helm, *pytest_, "tests/test_app.py::test_the_rendered_secret_has_its_value"
    )
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert "unchanged" in rendered.stdout + rendered.stderr

    outputs = [first, again, plan, changed, status, rendered]
    for proc in outputs:
        for value in (VALUE, NEW_VALUE):
            for form in forms(value):
                assert form.decode() not in proc.stdout + proc.stderr, (
                    f"{value} printed:\n{proc.stdout}{proc.stderr}"
                )

    devloop = project / ".devloop"
    assert stat.S_IMODE(devloop.stat().st_mode) == 0o700
    files = [p for p in devloop.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.parent.name == "state" for p in files), sorted(map(str, files))
    leaks = [
        str(p.relative_to(project))
        for p in files
        for value in (VALUE, NEW_VALUE)
        for form in forms(value)
        if form in p.read_bytes()
    ]
    assert leaks == [], f"Secret values at rest in {leaks}"
    loose = {
        str(p.relative_to(project)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in files
        if stat.S_IMODE(p.stat().st_mode) != 0o600
    }
    assert loose == {}, "every file under .devloop/ is 0600"
    folders = {
        str(p.relative_to(project)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in devloop.rglob("*")
        if p.is_dir() and stat.S_IMODE(p.stat().st_mode) != 0o700
    }
    assert folders == {}, "every folder under .devloop/ is 0700"
