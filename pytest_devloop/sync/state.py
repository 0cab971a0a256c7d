"""What devloop last applied to each cluster: the state under `.devloop/`.

Owns the state file of one cluster identity (server URL + `kube-system` UID): per
artifact its fingerprint, and per object the digest and the body devloop applied (the
inventory, which pruning and drift checks use), plus the hooks that last succeeded. Objects are recorded before they are created
(`pending`, write-ahead), and a Secret's values are stored as digests only. The
file carries a schema version, is written atomically under a file lock (one writer
across processes and xdist workers), and is rebuilt with a warning when unreadable,
from another schema version or from another cluster, never touching anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pytest_devloop.sync.ownership import is_secret, private_dir, redact

SCHEMA_VERSION = 1


class StateLocked(RuntimeError):
    """Another process holds the state lock for too long; the message says what to do."""


@dataclass
class ObjectRecord:
    digest: str
    applied: dict[str, Any]  # the body devloop applied (its applied fields)
    source: str = ""
    # The live values at the applied paths right after the apply: the drift baseline,
    # in the server's canonical form (quantities, defaults), so only real edits differ.
    observed: Any = None
    # Written ahead of its create (write-ahead): the object may or may not exist; the
    # next sync re-applies or prunes it.
    pending: bool = False

    def to_json(self) -> dict[str, Any]:
        # A Secret's values never reach the disk: digests stand in for them.
        secret = is_secret(self.applied)
        out = {
            "digest": self.digest,
            "applied": redact(self.applied, secret),
            "source": self.source,
            "observed": redact(self.observed, secret),
        }
        if self.pending:
            out["pending"] = True
        return out


@dataclass
class ArtifactRecord:
    fingerprint: str = ""
    namespace: str = ""
    objects: dict[str, ObjectRecord] = field(default_factory=dict)  # ref key -> record
    hooks: dict[str, str] = field(
        default_factory=dict
    )  # hook ref key -> digest that last succeeded
    # Keys of `objects` no longer rendered but of a kind never pruned implicitly: still
    # devloop's (prunable once allowed), but not part of the desired state.
    kept: list[str] = field(default_factory=list)
    # Per object or hook key: paths (keys and list indexes) whose rendered value differs
    # between two renders of the same inputs (`randAlphaNum`, `now`): the applied value
    # is kept there.
    unstable: dict[str, list[list[str | int]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "namespace": self.namespace,
            "objects": {k: v.to_json() for k, v in sorted(self.objects.items())},
            "hooks": dict(sorted(self.hooks.items())),
            "kept": sorted(self.kept),
            "unstable": dict(sorted(self.unstable.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactRecord:
        return cls(
            fingerprint=str(data.get("fingerprint", "")),
            namespace=str(data.get("namespace", "")),
            objects={
                k: ObjectRecord(
                    str(v["digest"]),
                    dict(v["applied"]),
                    str(v.get("source", "")),
                    v.get("observed"),
                    bool(v.get("pending", False)),
                )
                for k, v in (data.get("objects") or {}).items()
            },
            hooks={str(k): str(v) for k, v in (data.get("hooks") or {}).items()},
            kept=[str(k) for k in data.get("kept") or []],
            unstable={
                str(k): [list(path) for path in v if isinstance(path, list)]
                for k, v in (data.get("unstable") or {}).items()
                if isinstance(v, list)
            },
        )


@dataclass
class ClusterState:
    server: str
    uid: str
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "cluster": {"server": self.server, "uid": self.uid},
            "artifacts": {k: v.to_json() for k, v in sorted(self.artifacts.items())},
        }


def cluster_key(server: str, uid: str) -> str:
    return hashlib.sha256(f"{server}\0{uid}".encode()).hexdigest()[:16]


class StateStore:
    """The `.devloop/state/` folder of one project."""

    def __init__(self, root: Path) -> None:
        self.dir = root / ".devloop" / "state"

    def path(self, server: str, uid: str) -> Path:
        return self.dir / f"{cluster_key(server, uid)}.json"

    def lock(self, server: str, uid: str) -> FileLock:
        private_dir(self.dir.parent.parent)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return FileLock(str(self.path(server, uid)) + ".lock", timeout=120, mode=0o600)

    @contextmanager
    def locked(self, server: str, uid: str) -> Iterator[None]:
        """Hold the state's lock: one writer across processes and xdist workers."""
        lock = self.lock(server, uid)
        try:
            lock.acquire()
        except Timeout as e:
            raise StateLocked(
                f"another devloop process has held {lock.lock_file} for {lock.timeout:.0f} s; "
                "wait for it to finish, or delete the file if no devloop process runs"
            ) from e
        try:
            yield
        finally:
            lock.release()

    def load(self, server: str, uid: str) -> tuple[ClusterState, str | None]:
        """(state, warning): a fresh state plus a one-line warning when the file was unusable."""
        path = self.path(server, uid)
        fresh = ClusterState(server, uid)
        try:
            text = path.read_text()
        except FileNotFoundError:
            previous = self._index().get(server)
            if previous and previous != uid:
                return fresh, (
                    f"the cluster at {server} is a new cluster (kube-system uid {uid[:8]}..., "
                    f"was {previous[:8]}...): full sync"
                )
            return fresh, None
        except OSError as e:
            return fresh, f"state file {path} is unreadable ({e}): full sync"
        try:
            data = json.loads(text)
        except ValueError as e:
            return fresh, f"state file {path} is corrupt ({e.__class__.__name__}): full sync"
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            found = data.get("schema") if isinstance(data, dict) else None
            return (
                fresh,
                f"state file {path} has schema {found!r}, this devloop writes {SCHEMA_VERSION}: full sync",
            )
        cluster = data.get("cluster") or {}
        if cluster.get("uid") != uid or cluster.get("server") != server:
            return fresh, f"state file {path} belongs to another cluster: full sync"
        try:
            artifacts = {
                str(k): ArtifactRecord.from_json(v)
                for k, v in (data.get("artifacts") or {}).items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            return fresh, f"state file {path} is corrupt ({e.__class__.__name__}): full sync"
        return ClusterState(server, uid, artifacts), None

    def _index(self) -> dict[str, str]:
        """Server URL -> uid of the cluster last synced there (tells a reset cluster apart)."""
        try:
            data = json.loads((self.dir / "index.json").read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def save(self, state: ClusterState) -> None:
        path = self.path(state.server, state.uid)
        private_dir(self.dir.parent.parent)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(state.to_json(), separators=(",", ":")))
        index = self._index()
        if index.get(state.server) != state.uid:
            index[state.server] = state.uid
            _atomic_write(self.dir / "index.json", json.dumps(index, indent=1))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)
