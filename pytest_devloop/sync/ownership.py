"""Whose objects are whose: this project's identity, the owner of a live object, and
Secret values kept out of everything written to disk.

Pure functions except `project_id` (which writes the random id once under `.devloop/`)
and `secure_tree` (which makes `.devloop/` private).

- Identity: the `project:` key of devloop.yaml when set (it wins: two checkouts that set
  the same key are one project to the cluster), else a random id written once to
  `.devloop/project-id` (each checkout, each git worktree, its own project).
- Ownership: every object devloop applies carries the label `devloop.dev/project`; a live
  object belongs to this project when it carries this project's id, or, written by a
  devloop from before identities, when it carries this artifact's label and no project
  label (adopted on the next apply). Anything else (another devloop project, a Helm
  release, a hand-made object) is foreign: never taken over, never pruned, unless adopted.
- Secrets at rest: the values of a Secret's `data`/`stringData` become digests.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_LABEL = "devloop.dev/project"
ARTIFACT_LABEL = "devloop.dev/artifact"
PROJECT_ID_FILE = "project-id"
REDACTED_PREFIX = "devloop-sha256:"
HELM_MANAGED = ("app.kubernetes.io/managed-by", "Helm")
HELM_RELEASE_ANNOTATION = "meta.helm.sh/release-name"
ADOPT_HINT = "--devloop-adopt (pytest), devloop sync --adopt, or `adopt: true` in devloop.yaml"


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


def owner_of(live: Mapping[str, Any], project: str, artifact: str) -> str | None:
    """None when `live` is this project's (or this artifact's from a devloop without
    identities); else words naming its owner for a one-line message."""
    m = live.get("metadata") or {}
    labels = m.get("labels") or {}
    annotations = m.get("annotations") or {}
    found = labels.get(PROJECT_LABEL)
    if found == project:
        return None
    if found:
        return f"devloop project {found!r} (label {PROJECT_LABEL}; artifact {labels.get(ARTIFACT_LABEL, '?')!r})"
    if labels.get(ARTIFACT_LABEL) == artifact:
        return None  # written by a devloop from before project identities: ours
    release = annotations.get(HELM_RELEASE_ANNOTATION)
    if release or labels.get(HELM_MANAGED[0]) == HELM_MANAGED[1]:
        return f"Helm release {release!r}" if release else "Helm (managed-by: Helm)"
    if labels.get(ARTIFACT_LABEL):
        return f"devloop artifact {labels[ARTIFACT_LABEL]!r} (no project label)"
    return "someone else (created by hand or by another tool)"


def legacy(live: Mapping[str, Any]) -> bool:
    """Written by a devloop from before project identities (no project label)."""
    labels = (live.get("metadata") or {}).get("labels") or {}
    return PROJECT_LABEL not in labels


# -- Secrets at rest ------------------------------------------------------------------


def value_digest(value: Any) -> str:
    if isinstance(value, str) and value.startswith(REDACTED_PREFIX):
        return value
    text = value if isinstance(value, str) else repr(value)
    return REDACTED_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]


def is_secret(obj_or_key: Mapping[str, Any] | str) -> bool:
    if isinstance(obj_or_key, str):
        return obj_or_key.split("/", 3)[1:2] == ["Secret"] and obj_or_key.startswith("/")
    return obj_or_key.get("kind") == "Secret" and str(obj_or_key.get("apiVersion", "v1")) == "v1"


def redact(value: Any, secret: bool) -> Any:
    """A Secret body (or its projection) with each `data`/`stringData` value replaced by
    its digest; anything else as it is. Idempotent."""
    if not secret or not isinstance(value, dict):
        return value
    out = dict(value)
    for field in ("data", "stringData"):
        values = out.get(field)
        if isinstance(values, dict):
            out[field] = {k: value_digest(v) for k, v in values.items()}
    return out


def is_redacted(obj: Mapping[str, Any]) -> bool:
    for field in ("data", "stringData"):
        values = obj.get(field)
        if isinstance(values, dict) and any(
            isinstance(v, str) and v.startswith(REDACTED_PREFIX) for v in values.values()
        ):
            return True
    return False
