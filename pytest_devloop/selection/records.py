"""What one test read: the one record model, and the recorder that fills it.

Owns the per-test dependency record (`TestRecord`) and its parts (`ListRead`), shared by
the `Recorder` that the `cluster` and `rendered` views write into while a test runs, the
records file under `.devloop/records/` (`to_json`/`from_json`, validated: a bad entry is
a `RecordError` and the caller runs the test), and the selection in `impact`.

The format, as the impact module reads it:

- `objects`: object key (`plan.object_key`: `group/Kind/namespace/name`) -> the field
  paths read, or None for "the whole object". Paths are rendered like
  `k8s.apply.dotted_path` renders changed paths (`spec.replicas`,
  `metadata.labels["app.kubernetes.io/name"]`, `spec.template.spec.containers`), so a
  read meets a change when one path is a prefix of the other at a `.` or `[` boundary
  (`impact.paths_intersect`). An empty list means the test saw the object exist and read nothing in
  it: only its creation or deletion meets it. Paths are minimal: a path whose ancestor
  is also recorded is dropped.
- `lists`: the collections read (`ListRead`), by `group/Kind`, namespace (None: every
  namespace) and normalized selector text ("": everything). `group_kind` "*" means every
  kind (`rendered.all()`).
- `declared`: dependencies declared by hand that are not object keys (`chart:shop`,
  `image:web`, or an object reference the cluster could not resolve), and the
  `depends_on` entries of the test's `devloop` marker.
- `always`, `outcome` (as pytest reports it: passed, failed, error, skipped, xfailed,
  xpassed), `file_digest` (the test file and the conftest.py files above it): filled in
  when the test's outcome is known.

Recording is cheap by design (a lock, a dict and a set per read): it happens on every
field a test touches. Reads while no test is running are counted in `unattributed` and
otherwise dropped, so a fixture that reads outside any test is visible, not silent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pytest_devloop.k8s import selectors

__all__ = [
    "ANY_KIND",
    "ListRead",
    "RecordError",
    "Recorder",
    "TestRecord",
    "minimal_paths",
    "normalize_selector",
    "selector_matches",
]

# Every kind (used by `rendered.all()` and `rendered.list()` without a kind).
ANY_KIND = "*"
# Prefix of list reads made on the rendered objects: only rendered objects can join such
# a list (no controller creates Pods or ReplicaSets there).
RENDERED = "rendered:"


class RecordError(ValueError):
    """A stored dependency record that cannot be read; the caller runs the test."""


@dataclass(frozen=True)
class ListRead:
    """One collection read: `group/Kind` ("apps/Deployment", "/Pod"), namespace, selector.

    `namespace` None means every namespace (or a cluster-scoped kind); `selector` is the
    normalized label selector text, "" for everything. `group_kind` "*" is any kind (the
    recorder's fallback for reads it cannot describe); a `rendered:` prefix marks a list
    of the rendered objects.
    """

    group_kind: str
    namespace: str | None
    selector: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "group_kind": self.group_kind,
            "namespace": self.namespace,
            "selector": self.selector,
        }

    @classmethod
    def from_json(cls, data: Any) -> ListRead:
        if not isinstance(data, Mapping):
            raise RecordError(f"a list read is an object, not {type(data).__name__}")
        gk, ns, sel = data.get("group_kind"), data.get("namespace"), data.get("selector", "")
        if not isinstance(gk, str) or not (ns is None or isinstance(ns, str)):
            raise RecordError(f"list read needs group_kind (text) and namespace: {dict(data)!r}")
        if not isinstance(sel, str):
            raise RecordError(f"list read selector is text, not {type(sel).__name__}")
        return cls(gk, ns, sel)


@dataclass
class TestRecord:
    """What one test read from the cluster (and `rendered`) on its last run.

    `objects` maps an object key (`group/Kind/namespace/name`) to the field paths read,
    or None when the test had the whole object; an empty list means it only saw the
    object exist, which only a creation or deletion changes. `declared` holds
    `@pytest.mark.devloop(depends_on=[...])` entries: `Kind/name`, `Kind/ns/name`, a full
    key, `chart:<artifact>` or `image:<name>`. `nodeid` is not stored (the records file
    is keyed by it).
    """

    __test__: ClassVar[bool] = False  # a name starting with "Test": not a pytest test class

    objects: dict[str, list[str] | None] = field(default_factory=dict)
    lists: list[ListRead] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)
    always: bool = False
    outcome: str = "passed"
    file_digest: str = ""
    nodeid: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": {
                k: (None if v is None else list(v)) for k, v in sorted(self.objects.items())
            },
            "lists": [r.to_json() for r in self.lists],
            "declared": list(self.declared),
            "always": self.always,
            "outcome": self.outcome,
            "file_digest": self.file_digest,
        }

    @classmethod
    def from_json(cls, data: Any, nodeid: str = "") -> TestRecord:
        """The record from its JSON form; `RecordError` names what is wrong."""
        if not isinstance(data, Mapping):
            raise RecordError(f"a test record is an object, not {type(data).__name__}")
        objects_in = data.get("objects", {})
        if not isinstance(objects_in, Mapping):
            raise RecordError("objects: expected a mapping of object key to field paths")
        objects: dict[str, list[str] | None] = {}
        for key, paths in objects_in.items():
            if paths is not None and not (
                isinstance(paths, list) and all(isinstance(p, str) for p in paths)
            ):
                raise RecordError(f"objects[{key!r}]: expected a list of field paths or null")
            objects[str(key)] = None if paths is None else list(paths)
        lists_in = data.get("lists", [])
        declared = data.get("declared", [])
        if not isinstance(lists_in, list):
            raise RecordError("lists: expected a list")
        if not (isinstance(declared, list) and all(isinstance(d, str) for d in declared)):
            raise RecordError("declared: expected a list of text")
        always, outcome, digest = (
            data.get("always", False),
            data.get("outcome", "passed"),
            data.get("file_digest", ""),
        )
        if not isinstance(always, bool):
            raise RecordError("always: expected true or false")
        if not isinstance(outcome, str) or not isinstance(digest, str):
            raise RecordError("outcome and file_digest: expected text")
        return cls(
            objects=objects,
            lists=[ListRead.from_json(r) for r in lists_in],
            declared=list(declared),
            always=always,
            outcome=outcome,
            file_digest=digest,
            nodeid=nodeid,
        )


_MISSING: Any = object()


class Recorder:
    """Collects the reads of the current test. Thread-safe; one per pytest process.

    The views hold the recorder, not a test: a view kept from an earlier test (a
    module-scoped fixture's object) records into whichever test reads it now, which is
    the test whose outcome depends on it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodeid: str | None = None
        self._objects: dict[str, set[str] | None] = {}
        self._lists: dict[ListRead, None] = {}  # a dict keeps the reading order
        self._declared: dict[str, None] = {}
        self.unattributed = 0

    @property
    def nodeid(self) -> str | None:
        return self._nodeid

    def start(self, nodeid: str) -> None:
        """Begin recording for `nodeid`; an unfinished record is discarded."""
        with self._lock:
            self._nodeid = nodeid
            self._objects = {}
            self._lists = {}
            self._declared = {}

    def stop(self) -> TestRecord:
        """End the current record and return it (an empty record when none was started)."""
        with self._lock:
            nodeid, objects, lists, declared = (
                self._nodeid,
                self._objects,
                self._lists,
                self._declared,
            )
            self._nodeid = None
            self._objects, self._lists, self._declared = {}, {}, {}
        return TestRecord(
            nodeid=nodeid or "",
            objects={
                key: None if paths is None else minimal_paths(paths)
                for key, paths in sorted(objects.items())
            },
            lists=list(lists),
            declared=list(declared),
        )

    def objects_so_far(self) -> list[str]:
        """Keys of the objects the current test has read so far (for its failure report)."""
        with self._lock:
            return sorted(self._objects)

    def object_seen(self, key: str) -> None:
        """The test learnt that the object exists (it read no field yet)."""
        with self._lock:
            if self._nodeid is None:
                self.unattributed += 1
            elif key not in self._objects:
                self._objects[key] = set()

    def object_read(self, key: str, path: str | None) -> None:
        """The test read `path` of the object (None: the whole object)."""
        with self._lock:
            if self._nodeid is None:
                self.unattributed += 1
                return
            paths = self._objects.get(key, _MISSING)
            if paths is None:
                return  # already the whole object
            if path is None or not path:
                self._objects[key] = None
            elif paths is _MISSING:
                self._objects[key] = {path}
            else:
                paths.add(path)

    def object_paths(self, key: str, paths: Iterable[str]) -> None:
        """Several paths of one object under one lock (what one derived read depends on)."""
        with self._lock:
            if self._nodeid is None:
                self.unattributed += 1
                return
            current = self._objects.get(key, _MISSING)
            if current is None:
                return
            if current is _MISSING:
                current = self._objects[key] = set()
            current.update(paths)

    def list_read(self, read: ListRead) -> None:
        with self._lock:
            if self._nodeid is None:
                self.unattributed += 1
            else:
                self._lists[read] = None

    def declare(self, dep: str) -> None:
        """A dependency the views cannot see (`chart:shop`, `image:web`, ...)."""
        with self._lock:
            if self._nodeid is None:
                self.unattributed += 1
            else:
                self._declared[dep] = None


# -- paths ------------------------------------------------------------------------------------


def _boundaries(path: str) -> Iterable[str]:
    """The proper prefixes of `path` that are paths themselves (cut before `.` or `[`).

    A cut inside a quoted key (`labels["a.b"]`) yields a string that is never a recorded
    path, so it can never match by accident.
    """
    for i, ch in enumerate(path):
        if i and ch in ".[":
            yield path[:i]


def minimal_paths(paths: Iterable[str]) -> list[str]:
    """Sorted paths without those whose ancestor is present (`spec` covers `spec.replicas`)."""
    unique = set(paths)
    return sorted(p for p in unique if not any(q in unique for q in _boundaries(p)))


# -- label selectors --------------------------------------------------------------------------


def normalize_selector(selector: Mapping[str, str] | str | None) -> str:
    """Canonical selector text (`k8s.selectors.normalize`), so two spellings compare equal."""
    return selectors.normalize(selector)


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics over a label map, with the one shared parser.

    An unparsable selector matches everything: a read that cannot be understood must
    count as affected, never as unaffected.
    """
    try:
        return selectors.matches(selector, labels)
    except selectors.SelectorError:
        return True
