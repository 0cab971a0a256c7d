"""CI mode's namespace lifecycle: labelled creation, teardown on every way a run ends, stale collection.

Owns three things a CI job needs so that nothing is left behind:

- the labels of a CI namespace (`devloop.dev/ci-run`, `devloop.dev/ci-created`,
  `devloop.dev/project`), set when devloop creates it before the sync;
- the signals a CI job ends with: SIGTERM (CI cancellation, `timeout`, the xdist
  controller killed) and SIGHUP (a closed terminal) become a KeyboardInterrupt in the main
  thread, so pytest unwinds exactly as on Ctrl-C and the run's teardown deletes the
  namespace; while the teardown runs, further signals wait until it is done;
- collecting stale CI namespaces of this project (a run that was SIGKILLed, a runner that
  died): older than `ci.stale_after` seconds, deleted before a CI run creates its own, and
  on demand by `devloop gc`.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pytest_devloop.sync.ownership import CI_CREATED_LABEL, CI_RUN_LABEL, PROJECT_LABEL

DEFAULT_STALE_AFTER = 3600.0

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def project_identity(config: Any) -> str:
    """This project's identity for labels: the project id when the config has one, else a
    digest of the config file's resolved path (stable across runs of one checkout)."""
    for attr in ("project_id", "project_identity", "identity", "project"):
        value = getattr(config, attr, None)
        if callable(value):
            value = value()
        if isinstance(value, str) and value:
            return _label_value(value)
    source = getattr(config, "source", None) or getattr(config, "root", "")
    return hashlib.sha256(str(source).encode()).hexdigest()[:16]


def _label_value(value: str) -> str:
    """A label value (<= 63 of [A-Za-z0-9._-], alphanumeric at both ends); a digest if not."""
    ok = (
        len(value) <= 63
        and value[:1].isalnum()
        and value[-1:].isalnum()
        and all(c.isalnum() or c in "._-" for c in value)
    )
    return value if ok else hashlib.sha256(value.encode()).hexdigest()[:16]


def namespace_manifest(name: str, run_id: str, project: str, now: float) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                CI_RUN_LABEL: run_id,
                CI_CREATED_LABEL: str(int(now)),
                PROJECT_LABEL: project,
            },
        },
    }


def create_namespace(kube: Any, name: str, project: str, *, now: float | None = None) -> None:
    """Create the run's namespace with its labels (before the sync, which then finds it)."""
    res = kube.resource("v1", "Namespace")
    assert res is not None
    run_id = name.rsplit("-", 1)[-1]
    kube.create(res, namespace_manifest(name, run_id, project, time.time() if now is None else now))


@dataclass(frozen=True)
class Stale:
    name: str
    age: float  # seconds


def stale_namespaces(
    kube: Any, project: str, older_than: float, *, now: float | None = None, keep: str = ""
) -> list[Stale]:
    """This project's CI namespaces created more than `older_than` seconds ago.

    Only namespaces carrying both the CI label and this project's label are candidates: a
    namespace of another project, or one not made by a CI run, is never touched. One that
    is already terminating is skipped (its deletion is under way).
    """
    res = kube.resource("v1", "Namespace")
    assert res is not None
    now = time.time() if now is None else now
    out: list[Stale] = []
    for ns in kube.list(res, label_selector=f"{CI_RUN_LABEL},{PROJECT_LABEL}={project}"):
        meta = ns.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name or name == keep or meta.get("deletionTimestamp"):
            continue
        try:
            created = float((meta.get("labels") or {}).get(CI_CREATED_LABEL, ""))
        except ValueError:
            continue  # not a time devloop wrote: leave it
        if now - created > older_than:
            out.append(Stale(name, now - created))
    return sorted(out, key=lambda s: s.name)


def collect(
    kube: Any,
    project: str,
    older_than: float,
    *,
    dry_run: bool = False,
    out: Callable[[str], None] = print,
    now: float | None = None,
    keep: str = "",
) -> list[Stale]:
    """Delete (or, dry run, list) this project's stale CI namespaces; one line each."""
    from pytest_devloop.cluster.kube import KubeError

    res = kube.resource("v1", "Namespace")
    assert res is not None
    found = stale_namespaces(kube, project, older_than, now=now, keep=keep)
    for stale in found:
        age = _age(stale.age)
        if dry_run:
            out(f"devloop: gc: would delete stale CI namespace {stale.name} (created {age} ago)")
            continue
        try:
            kube.delete(res, None, stale.name)
            out(f"devloop: gc: deleted stale CI namespace {stale.name} (created {age} ago)")
        except KubeError as e:
            out(f"devloop: gc: could not delete CI namespace {stale.name}: {e}")
    return found


def collect_leftovers(
    kube: Any,
    project: str,
    *,
    dry_run: bool = False,
    out: Callable[[str], None] = print,
    keep: str = "",
    gone: Iterable[str] = (),
) -> int:
    """Delete (or, dry run, list) the cluster-scoped objects this project's CI runs
    created whose run namespace is gone, terminating or in `gone` (the stale ones being
    collected: a run killed before its teardown, or a teardown that could not delete
    them); one line each; returns how many.

    Only objects with the CI labels and this project's label are candidates, and of those
    only ones created at or after their run started: an object that existed before and
    that the run merely applied to (its labels then say so too) is kept.
    """
    from pytest_devloop.cluster.kube import KubeError

    ns_res = kube.resource("v1", "Namespace")
    assert ns_res is not None
    alive: dict[str, bool] = dict.fromkeys(gone, False)  # being collected with them

    def run_alive(run_id: str) -> bool:
        name = f"devloop-{run_id}"
        if name == keep:
            return True
        if name not in alive:
            ns = kube.get(ns_res, None, name)
            alive[name] = ns is not None and not (ns.get("metadata") or {}).get("deletionTimestamp")
        return alive[name]

    count = 0
    for gv in kube.group_versions():
        for res in kube.resources(gv).values():
            if (
                res.namespaced
                or res.kind == "Namespace"
                or not {"list", "delete"} <= set(res.verbs)
            ):
                continue  # namespaces are `collect`'s
            try:
                items = kube.list(res, None, f"{CI_RUN_LABEL},{PROJECT_LABEL}={project}")
            except KubeError:
                continue
            for obj in items:
                meta = obj.get("metadata") or {}
                labels = meta.get("labels") or {}
                run_id = str(labels.get(CI_RUN_LABEL) or "")
                started = _float(labels.get(CI_CREATED_LABEL))
                created = created_at(obj)
                if not run_id or started is None or created is None or created < started:
                    continue
                if meta.get("deletionTimestamp") or run_alive(run_id):
                    continue
                what = f"{res.kind}/{meta.get('name')}"
                why = f"left by CI run devloop-{run_id}, whose namespace is gone"
                count += 1
                if dry_run:
                    out(f"devloop: gc: would delete {what} ({why})")
                    continue
                try:
                    kube.delete(res, None, str(meta.get("name")))
                    out(f"devloop: gc: deleted {what} ({why})")
                except KubeError as e:
                    out(f"devloop: gc: could not delete {what}: {e}")
    return count


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def created_at(obj: dict[str, Any] | None) -> float | None:
    """An object's `creationTimestamp` in seconds since the epoch (None if unreadable)."""
    from datetime import datetime

    stamp = ((obj or {}).get("metadata") or {}).get("creationTimestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _age(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


# -- signals ----------------------------------------------------------------------


class CiInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: pytest unwinds as on Ctrl-C, and the teardown runs."""


class SignalTeardown:
    """Turns SIGTERM/SIGHUP into an interrupt of the main thread while a CI run is active."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._deferring = False
        self.received: int | None = None

    def install(self) -> bool:
        """Install the handlers (main thread only); False where that is not possible."""
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return False
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return True

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        first = self.received is None
        self.received = signum
        if self._deferring or not first:
            return  # the teardown is running (or the interrupt is already unwinding)
        raise CiInterrupted(f"devloop: {signal.Signals(signum).name} received")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Signals wait while the teardown runs: noted, not raised (Ctrl-C too, which would
        otherwise cut the teardown short)."""
        self._deferring = True
        previous_int = None
        if threading.current_thread() is threading.main_thread():
            previous_int = signal.signal(signal.SIGINT, self._note)
        try:
            yield
        finally:
            self._deferring = False
            if previous_int is not None:
                signal.signal(signal.SIGINT, previous_int)

    def _note(self, signum: int, _frame: Any) -> None:
        self.received = signum
