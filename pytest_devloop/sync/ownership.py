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
from collections.abc import Mapping
from typing import Any

# Private files and the identity live with the config (`config.project`), which every
# layer may read; re-exported here for the sync's callers.
from pytest_devloop.config.project import PROJECT_ID_FILE, private_dir, project_id, secure_tree

__all__ = [
    "ADOPT_HINT", "ARTIFACT_LABEL", "CI_CREATED_LABEL", "CI_RUN_LABEL", "PROJECT_ID_FILE", "PROJECT_LABEL", "REDACTED_PREFIX",
    "is_redacted", "is_secret", "legacy", "owner_of", "private_dir", "project_id", "redact",
    "secure_tree", "value_digest",
]  # fmt: skip

PROJECT_LABEL = "devloop.dev/project"
ARTIFACT_LABEL = "devloop.dev/artifact"
# A CI run's namespace and the cluster-scoped objects it creates carry the run's id and
# start time, so what a killed run left outside its namespace can be collected later.
CI_RUN_LABEL = "devloop.dev/ci-run"
CI_CREATED_LABEL = "devloop.dev/ci-created"
REDACTED_PREFIX = "devloop-sha256:"
HELM_MANAGED = ("app.kubernetes.io/managed-by", "Helm")
HELM_RELEASE_ANNOTATION = "meta.helm.sh/release-name"
ADOPT_HINT = "--devloop-adopt (pytest), devloop sync --adopt, or `adopt: true` in devloop.yaml"


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
