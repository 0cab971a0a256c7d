"""The project's private folder `.devloop/` and its identity.

Owns `private_dir` (`.devloop/` created 0700), `secure_tree` (every folder under it 0700,
every file 0600) and `project_id`: the `project:` key of devloop.yaml when set, else a
random id written once into `.devloop/project-id`. The config model and every later stage
read the identity from here; `sync.ownership` labels objects with it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

PROJECT_ID_FILE = "project-id"


# -- private files --------------------------------------------------------------------


def private_dir(root: Path) -> Path:
    """`.devloop/` of the project, created 0700 (and made 0700 if it was not)."""
    folder = root / ".devloop"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if stat.S_IMODE(folder.stat().st_mode) != 0o700:
            folder.chmod(0o700)
    except OSError:
        pass
    return folder


def secure_tree(root: Path) -> None:
    """Every folder under `.devloop/` 0700, every file 0600 (state, records, caches,
    kubeconfigs, logs: whatever any part of devloop wrote there)."""
    top = root / ".devloop"
    if not top.is_dir():
        return
    private_dir(root)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames:
            _chmod(Path(dirpath) / name, 0o700)
        for name in filenames:
            _chmod(Path(dirpath) / name, 0o600)


def _chmod(path: Path, mode: int) -> None:
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            return
        if stat.S_IMODE(st.st_mode) != mode:
            path.chmod(mode)
    except OSError:
        pass  # removed meanwhile (a temporary file): nothing to protect


# -- identity -------------------------------------------------------------------------


def project_id(root: Path, configured: str | None) -> str:
    """This project's identity (see the module docstring for which wins)."""
    if configured:
        return configured
    path = private_dir(root) / PROJECT_ID_FILE
    try:
        found = path.read_text().strip()
        if found:
            return found
    except OSError:
        pass
    new = secrets.token_hex(8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new + "\n")
    try:
        # Two processes starting at once: the first id written wins for both.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip() or new
