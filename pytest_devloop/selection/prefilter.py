"""Which test files an affected-test run need not even collect, and the index that says so.

pytest collects (imports) every test file before devloop deselects, so a cycle that runs
two tests of a 2,000-test suite would pay for importing all of them. The records file
therefore keeps a *file index* beside the per-test records: per test file (its node id
path), the digest of the file and its conftests and every node id it held when it was
last collected whole; plus the digests of the project's other Python modules the test
process imported (helpers a test file imports, which the file digest does not cover).

A file is left uncollected only when devloop can tell all of its tests are unaffected:
its digest is the indexed one (no test added, removed or edited, no conftest above it
changed), none of the project's indexed helper modules changed, and `impact.select`
skips every one of its indexed node ids (each has a record, passed last time, is not
marked always and read nothing the change touches). Anything else, a new file, a file
that failed or was skipped at collection last time, an unreadable index, is collected as
before. Node ids generated from data files (a parametrize list read from YAML) are not
seen by the digest: mark such tests `@pytest.mark.devloop(always=True)`, or their file
is re-collected only when it or a Python module it imports changes.

Files a test module reads while it is imported (a parametrize list from `cases.yaml`)
are seen too: `CollectionReads`, an audit hook, notes every file under the rootdir opened
for reading during collection, and their digests join the index's modules, so a changed
data file collects every file again. What the hook cannot see (environment variables,
network, files outside the rootdir) still needs `always=True`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pytest_devloop.selection import impact
from pytest_devloop.selection.records import ListRead, RecordError

# Outcomes after which an unaffected test is skipped (impact.select runs the others).
_SKIPPABLE_OUTCOMES = frozenset({"passed", "skipped", "xfailed", "xpassed"})
INDEX_KEY = "files"
MODULES_KEY = "modules"


@dataclass
class Prefilter:
    """The outcome for one session: files to leave uncollected and their tests' decisions."""

    skip: set[str] = field(default_factory=set)  # node id paths ("tests/test_a.py")
    decisions: list[impact.Decision] = field(default_factory=list)
    reason: str = ""  # why nothing is skipped, when that is so


def module_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def plan(
    index: Mapping[str, Any],
    modules: Mapping[str, Any],
    records: Mapping[str, impact.TestRecord | None],
    imp: impact.Impact,
    *,
    root: Path,
    digest_of: Callable[[str], str],
    changed_files: Iterable[str] = (),
) -> Prefilter:
    """The files of `index` whose every test is unaffected (see the module docstring).

    `digest_of(file)` is the current digest of a test file and its conftests, as the
    records' `file_digest`; `modules` maps rootdir-relative helper modules to digests.
    """
    for rel, digest in modules.items():
        if module_digest(root / rel) != digest:
            return Prefilter(reason=f"{rel} changed")
    changed = list(changed_files)
    changed_set = {str(PurePosixPath(f)) for f in changed}
    conftest_dirs = {
        str(PurePosixPath(f).parent) for f in changed_set if PurePosixPath(f).name == "conftest.py"
    }
    matcher = impact.ReadsMatcher(imp)
    out = Prefilter()
    for file, entry in index.items():
        if not isinstance(entry, Mapping):
            continue
        nodeids = entry.get("nodeids")
        if not isinstance(nodeids, list) or not all(isinstance(n, str) for n in nodeids):
            continue
        current = digest_of(file)
        if current != entry.get("digest"):
            continue
        if "reads" in entry:
            # The file's tests' reads, merged when it was last collected (`summarize`):
            # one check for the file instead of one per test.
            reads = entry["reads"]
            if reads is None or not all(n in records for n in nodeids):
                continue  # one of its tests runs whatever changed
            if impact._changed_file_reason(PurePosixPath(file), changed_set, conftest_dirs):
                continue
            try:
                hit = matcher.affected(
                    [str(d) for d in reads["declared"]],
                    [(str(k), None if p is None else list(p)) for k, p in reads["objects"]],
                    [ListRead.from_json(lr) for lr in reads["lists"]],
                )
            except (KeyError, TypeError, ValueError, RecordError):
                continue  # unreadable: collect it
            if hit:
                continue
            out.skip.add(file)
            out.decisions.extend(impact.Decision(n, False, "not affected", "none") for n in nodeids)
            continue
        decisions = impact.select(
            records,
            nodeids,
            imp,
            current_file_digests=dict.fromkeys(nodeids, current),
            changed_files=changed,
        )
        if any(d.run for d in decisions):
            continue
        out.skip.add(file)
        out.decisions.extend(decisions)
    return out


def summarize(
    records: Mapping[str, Any], nodeids: Iterable[str], digest: str
) -> dict[str, Any] | None:
    """The distinct reads of a file's tests (declared dependencies, objects with their
    paths, lists), from their raw records; None when one of them runs whatever changed
    (no or an unreadable record, not passed last time, marked always, recorded with
    another file digest)."""
    declared: set[str] = set()
    objects: dict[tuple[str, tuple[str, ...] | None], None] = {}
    lists: dict[str, Any] = {}
    for nodeid in nodeids:
        raw = records.get(nodeid)
        try:
            rec = impact.TestRecord.from_json(raw, nodeid)
        except RecordError:
            return None
        if rec.outcome not in _SKIPPABLE_OUTCOMES or rec.always or rec.file_digest != digest:
            return None
        declared.update(rec.declared)
        for key, paths in rec.objects.items():
            objects[(key, None if paths is None else tuple(paths))] = None
        for lr in rec.lists:
            data = lr.to_json()
            lists[json.dumps(data, sort_keys=True)] = data
    return {
        "declared": sorted(declared),
        "objects": [[k, None if p is None else list(p)] for k, p in objects],
        "lists": list(lists.values()),
    }


def merge(
    old_index: Mapping[str, Any],
    old_modules: Mapping[str, Any],
    collected: Mapping[str, tuple[str, list[str], dict[str, Any] | None]],
    failed: Iterable[str],
    modules: Mapping[str, str],
    *,
    complete: bool,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The index after a session: files collected whole replace their entries, files
    that failed or were skipped at collection leave it; helper modules are replaced when
    the session collected every file (`complete`), else added to."""
    index = {k: v for k, v in old_index.items() if isinstance(v, Mapping)}
    for file in failed:
        index.pop(file, None)
    for file, (digest, nodeids, reads) in collected.items():
        index[file] = {"digest": digest, "nodeids": nodeids, "reads": reads}
    merged = (
        dict(modules)
        if complete
        else {**{str(k): str(v) for k, v in old_modules.items()}, **modules}
    )
    return index, merged


# Modules the watch's fork server imported before forking the test process (set there):
# never the project's (the child imports those afresh), so not scanned.
WARM_MODULES: frozenset[str] = frozenset()


def project_modules(
    loaded: Iterable[tuple[str, Any]], root: Path, exclude: set[str]
) -> dict[str, str]:
    """rootdir-relative path -> digest of the project's own Python modules in `loaded`
    (name, module), without test files of the index (`exclude`), conftests, and
    anything under a hidden folder or `site-packages` (a virtualenv in the project)."""
    out: dict[str, str] = {}
    prefixes = tuple({f"{root}/", f"{root.resolve()}/"})
    for name, module in loaded:
        if name in WARM_MODULES:
            continue
        file = getattr(module, "__file__", None)
        # A prefix test first: a session has thousands of modules, few of them ours.
        if not isinstance(file, str) or not file.endswith(".py") or not file.startswith(prefixes):
            continue
        try:
            rel = PurePosixPath(Path(file).resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            continue
        if rel.name == "conftest.py" or str(rel) in exclude:
            continue
        if any(p.startswith(".") or p in ("site-packages", "__pycache__") for p in rel.parts):
            continue
        digest = module_digest(root / rel)
        if digest is not None:
            out[str(rel)] = digest
    return out


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class CollectionReads:
    """Files under `root` opened for reading while pytest collects (one per process; see
    the module docstring). `active` is set around collection by the plugin."""

    _current: CollectionReads | None = None
    _hooked = False

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root) + os.sep
        self.active = False
        self.paths: set[str] = set()

    @classmethod
    def install(cls, root: Path) -> CollectionReads:
        reads = cls(root)
        cls._current = reads
        if not cls._hooked:
            # An audit hook cannot be removed: one per process, reading `_current`.
            sys.addaudithook(_audit)
            cls._hooked = True
        return reads

    def note(self, path: object, mode: object, flags: object) -> None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return  # a file descriptor
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            return
        if isinstance(flags, int) and flags & _WRITE_FLAGS:
            return
        if path.endswith((".py", ".pyc")):
            return  # modules: `project_modules` covers them (and imports open many)
        full = os.path.realpath(path)
        if not full.startswith(self.root):
            return
        rel = full[len(self.root) :]
        parts = PurePosixPath(rel).parts
        if any(p.startswith(".") or p in ("__pycache__", "site-packages") for p in parts):
            return
        self.paths.add(PurePosixPath(*parts).as_posix())

    def digests(self, root: Path) -> dict[str, str]:
        """rootdir-relative path -> digest of each file read during collection."""
        out: dict[str, str] = {}
        for rel in sorted(self.paths):
            digest = module_digest(root / rel)
            if digest is not None:
                out[rel] = digest
        return out


def _audit(event: str, args: tuple[Any, ...]) -> None:
    reads = CollectionReads._current
    if reads is None or not reads.active or event != "open" or not args:
        return
    try:
        reads.note(args[0], args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else None)
    except Exception:
        pass  # never break the open of a test module
