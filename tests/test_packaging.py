"""Packaging: the wheel and sdist build, and the wheel alone runs the example suite.

`python -m build` (from the `test` extra) builds both from a copy of the sources; the
wheel is installed with `--no-deps` into a fresh `python -m venv` that sees the site
folders of the interpreter running this test (a venv or not: its dependencies come from
there, so nothing but the build backend is downloaded) and a copy of `example_project/` runs its suite with the venv's
python on the embedded cluster.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def source_version() -> str:
    """`__version__` as written in pytest_devloop/__init__.py (the one place it lives)."""
    tree = ast.parse((ROOT / "pytest_devloop" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, str)
            return value
    raise AssertionError("no __version__ in pytest_devloop/__init__.py")


def running_site_packages() -> list[str]:
    """The site folders of the interpreter running the tests (venv or not, user site too)."""
    import site
    import sysconfig

    folders = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    folders += site.getsitepackages()
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return list(dict.fromkeys(folders))


def test_the_version_lives_in_one_place() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    dynamic = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert dynamic["dynamic"]["version"] == {"attr": "pytest_devloop.__version__"}
    assert (ROOT / "pytest_devloop" / "py.typed").is_file()


def test_wheel_installs_in_a_fresh_venv_and_runs_the_example_suite(
    tmp_path: Path, tool: Callable[[str], str]
) -> None:
    helm = shutil.which("helm") or tool("helm4")
    version = source_version()

    # Build from a copy, so nothing (egg-info, build/) is written into the work tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "pytest_devloop",
        src / "pytest_devloop",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = dist / f"pytest_devloop-{version}-py3-none-any.whl"
    sdist = dist / f"pytest_devloop-{version}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"pytest_devloop-{version}.dist-info"
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    assert "pytest_devloop/py.typed" in names
    assert "pytest_devloop/embedded/cluster.py" in names
    assert not any(n.startswith(("tests/", "example_project/", "bench/")) for n in names)
    assert "[pytest11]\ndevloop = pytest_devloop.plugin" in entry_points
    assert "devloop = pytest_devloop.__main__:main" in entry_points
    assert f"\nVersion: {version}\n" in metadata
    with tarfile.open(sdist) as tf:
        members = set(tf.getnames())
    base = f"pytest_devloop-{version}"
    assert {f"{base}/pyproject.toml", f"{base}/pytest_devloop/py.typed"} <= members

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = venv / "bin" / "python"
    # The dependencies come from the interpreter running this test, wherever it is (a
    # system python, a venv, a CI image): `--system-site-packages` would give the *base*
    # interpreter's packages when this one is a venv. Its site folders are appended as
    # plain paths (their own .pth files, an editable install among them, are not run).
    site_dir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site_dir) / "devloop-test-deps.pth").write_text(
        "\n".join(p for p in running_site_packages() if Path(p).is_dir()) + "\n"
    )
    installed = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"),
            *("--disable-pip-version-check", "--no-input", "-q", str(wheel)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    where = subprocess.run(
        [str(python), "-c", "import pytest_devloop; print(pytest_devloop.__file__)"],
        cwd=tmp_path,  # not the work tree, whose pytest_devloop/ would shadow the wheel
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), f"imported {where}, not the wheel in {venv}"

    example = tmp_path / "example_project"
    shutil.copytree(
        ROOT / "example_project", example, ignore=shutil.ignore_patterns(".devloop", ".benchmarks")
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["DEVLOOP_HELM"] = helm
    try:
        r = subprocess.run(
            [str(python), "-m", "pytest"],
            cwd=example,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert "devloop: crds: 0 updated, 3 created, 0 pruned, 0 unchanged" in out, out
        assert "devloop: sms-checker: 0 updated, 10 created, 0 pruned, 0 unchanged" in out, out
        assert f"devloop-{version}" in out, out  # the plugins line
        assert "12 passed" in out, out
        console = venv / "bin" / "devloop"
        assert console.is_file()
        status = subprocess.run(
            [str(console), "status"],
            cwd=example,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert "sms-checker: 10 objects, no drift" in status.stdout, status.stdout + status.stderr
    finally:
        subprocess.run(
            [str(python), "-m", "pytest_devloop", "cluster", "down"],
            cwd=example,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
