"""One pytest run with devloop: sync once, record reads, select affected tests, clean up.

Owns what `plugin.py` delegates: the run's mode (dev, ci, static), the single sync of
the session (the xdist controller, or the only process, syncs; workers receive its
summary), the per-test dependency records and their file under `.devloop/records/`,
affected-test selection with a reason per test, the `devloop: cluster` section of a
failed test's report, and CI mode's fresh namespace and guaranteed teardown.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

RECORDS_SCHEMA = 1
WORKER_KEY = "devloop_sync"
WORKER_RECORDS = "devloop_records"


class SyncFailed(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """The cluster a test needs was not synced: an error of the test, even under xfail."""


def is_ci_env() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@dataclass
class SyncSummary:
    """What every process of the run needs from the one sync (sent to xdist workers)."""

    ok: bool
    errors: list[str]
    kubeconfig: str | None
    context: str | None
    server: str
    uid: str
    namespace: str
    changed: list[tuple[str, list[str]]]
    desired: dict[str, dict[str, Any]]
    artifact_of: dict[str, str]
    created_cluster_scoped: list[str] = field(default_factory=list)
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> old body
    opaque: dict[str, str] = field(default_factory=dict)  # artifact -> why changes unknown
    causes: dict[str, str] = field(default_factory=dict)  # key -> the file that changed it
    namespaces: dict[str, str] = field(default_factory=dict)  # artifact -> live namespace
    changed_files: list[str] = field(default_factory=list)  # inputs changed (rootdir-relative)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncSummary:
        data = dict(data)
        data["changed"] = [(k, list(f)) for k, f in data.get("changed", [])]
        return cls(**data)


def _stat_of(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class _SelectionInputs:
    on: bool
    reason: str
    records: dict[str, Any] | None = None
    warning: str | None = None
    change_set: Any = None  # selection.changes.ChangeSet
    impact: Any = None  # selection.impact.Impact; None when off or uncertain
    typed: Mapping[str, Any] = field(default_factory=dict)  # nodeid -> TestRecord | None


class _LazyRecords(Mapping[str, Any]):
    """nodeid -> TestRecord (None when unreadable: the test runs), parsed when first
    asked for: a run whose unaffected files are not collected reads few of them."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw
        self._parsed: dict[str, Any] = {}

    def __getitem__(self, nodeid: str) -> Any:
        if nodeid in self._parsed:
            return self._parsed[nodeid]
        from pytest_devloop.selection import impact

        raw = self._raw[nodeid]
        try:
            rec: Any = impact.TestRecord.from_json(raw, nodeid)
        except impact.RecordError:
            rec = None
        self._parsed[nodeid] = rec
        return rec

    def __contains__(self, nodeid: object) -> bool:
        return nodeid in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class TestRun:
    """The devloop side of one pytest process."""

    def __init__(self, config: pytest.Config) -> None:
        from pytest_devloop.cluster import session

        self.pytest_config = config
        self.mode: str = session.run_mode(config)
        self.options = session.options_from_pytest(config)
        self.config = session.load(self.options)
        self.is_worker = hasattr(config, "workerinput")
        self.summary: SyncSummary | None = None
        self.sync_error: str | None = None
        self.result: Any = None
        self.target: Any = None
        self.ci_namespace: str | None = None
        # Wall-clock second the CI sync started: cluster-scoped objects created before it
        # existed already (CI mode reads no state, so its plan calls everything "create").
        self.ci_started: float | None = None
        self.signals: Any = None  # run.teardown.SignalTeardown in CI mode
        self._torn_down = False
        self._recorder: Any = None
        self.records: dict[str, dict[str, Any]] = {}  # nodeid -> TestRecord json (this run)
        self.outcomes: dict[str, str] = {}
        self._file_digests: dict[str, str] = {}
        self.decisions: list[Any] = []
        self.selection_note: str | None = None
        self.nothing_affected = False  # --devloop-affected deselected every test
        self.explain_lines: list[str] = []
        self.impact: Any = None  # selection.impact.Impact of this run's selection
        # Read once per session (selection, the uncollected files, the final merge).
        self._records_file: tuple[Path, dict[str, Any] | None, str | None] | None = None
        self._records_stat: tuple[int, int, int] | None = None
        self._selection: Any = None  # _SelectionInputs, computed once
        self.prefilter: Any = None  # selection.prefilter.Prefilter: files left uncollected
        # selection.prefilter.CollectionReads: data files read while collecting
        self.collection_reads: Any = None
        self.not_collected = 0  # tests of those files (deselected without being collected)
        self.collected_files: dict[str, list[str]] = {}  # file -> node ids (whole files)
        self.collect_skipped: set[str] = set()  # files skipped or failed at collection
        self._warm_view: Any = None  # a Future of the cluster view (warm_cluster_view)
        if self.is_worker:
            raw = config.workerinput.get(WORKER_KEY)  # type: ignore[attr-defined]
            if raw:
                data = json.loads(raw)
                self.sync_error = data.get("error")
                self.ci_namespace = data.get("ci_namespace")
                if data.get("summary"):
                    self.summary = SyncSummary.from_json(data["summary"])

    # -- output ---------------------------------------------------------------------

    def write(self, line: str) -> None:
        terminal = self.pytest_config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            print(line)
            return
        capman = self.pytest_config.pluginmanager.getplugin("capturemanager")
        if capman is None:
            terminal.write_line(line)
            return
        with capman.global_and_fixture_disabled():
            terminal.write_line(line)

    def _progress(self) -> tuple[Callable[[str], None], Callable[[], None]]:
        """The live progress line on pytest's terminal (run.progress)."""
        from pytest_devloop.run.progress import Progress

        terminal = self.pytest_config.pluginmanager.get_plugin("terminalreporter")
        capman = self.pytest_config.pluginmanager.getplugin("capturemanager")
        if terminal is None:
            return (lambda text: None), (lambda: None)

        def write(text: str) -> None:
            with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
                terminal.write(text, flush=True)

        tty = bool(terminal.isatty) and os.environ.get("TERM") != "dumb"
        progress = Progress(write, tty=tty)
        return progress, progress.done

    @property
    def enabled(self) -> bool:
        return self.config is not None

    # -- the one sync ---------------------------------------------------------------

    def sync_once(self) -> None:
        """Sync at session start (not in workers: they get the controller's summary)."""
        if self.is_worker or not self.enabled or self.mode == "static":
            return
        handed = self.pytest_config.getoption("devloop_summary_file")
        if handed:
            # Watch mode synced already (in its own process) and hands over the result.
            data = json.loads(Path(handed).read_text())
            self.sync_error = data.get("error")
            self.ci_namespace = data.get("ci_namespace")
            if data.get("summary"):
                self.summary = SyncSummary.from_json(data["summary"])
            return
        from pytest_devloop.cluster import session as session_mod
        from pytest_devloop.cluster.providers import ClusterRefused, ClusterUnavailable
        from pytest_devloop.config.model import ConfigError
        from pytest_devloop.sync.state import StateLocked
        from pytest_devloop.sync.syncer import Syncer

        assert self.config is not None
        for warning in self.config.warnings:
            self.write(f"devloop: warning: {warning}")
        if self.mode == "ci":
            from pytest_devloop.run.teardown import SignalTeardown

            # From here on SIGTERM/SIGHUP unwind like Ctrl-C, so the teardown runs.
            self.signals = SignalTeardown()
            self.signals.install()
            self.ci_namespace = f"devloop-{secrets.token_hex(3)}"
            self.ci_started = float(int(time.time()))
            self.write(
                f"devloop: CI mode: fresh namespace {self.ci_namespace}, full sync, no state"
            )
        try:
            self.target = session_mod.target_for(self.config, self.options)
            if self.mode == "ci":
                self._prepare_ci_namespace()
            syncer = Syncer.from_options(
                self.config,
                self.target,
                self.options,
                namespace_override=self.ci_namespace,
                ci_labels=self._ci_labels(),
                out=self.write,
                # Every cluster that runs containers builds anyway; the embedded one runs
                # none, so CI mode builds there only with --devloop-build (as dev mode).
            )
            syncer.progress, syncer.progress_done = self._progress()
            self.result = syncer.sync()
        except (ConfigError, ClusterRefused, ClusterUnavailable, StateLocked) as e:
            self.sync_error = str(e)
            self.write(f"devloop: {e}")
            return
        self.summary = self.summary_from_result(
            self.result, self.target, self.ci_namespace or self.config.namespace
        )

    @classmethod
    def summary_from_result(cls, result: Any, target: Any, namespace: str) -> SyncSummary:
        """The summary of a SyncResult (what test processes need of a sync)."""
        # Every path reports a creation the same way (the per-object plan and the Helm
        # path's read-back alike): what CI teardown may remove outside the namespace.
        created = [
            key
            for art in result.artifacts
            for key, fields in art.changed
            if fields == ["create"] and key.split("/")[2] == ""
        ]
        return SyncSummary(
            ok=result.ok,
            errors=[a.line for a in result.artifacts if a.error],
            kubeconfig=target.kubeconfig,
            context=target.context,
            server=target.server,
            uid=result.cluster_uid,
            namespace=namespace,
            changed=result.changed,
            desired=result.desired(),
            artifact_of=result.artifact_of(),
            created_cluster_scoped=created,
            previous=result.previous(),
            opaque=result.opaque(),
            causes=result.causes(),
            namespaces=result.namespaces(),
            changed_files=list(getattr(result, "changed_files", [])),
        )

    def worker_input(self) -> str:
        return json.dumps(
            {
                "error": self.sync_error,
                "ci_namespace": self.ci_namespace,
                "summary": self.summary.to_json() if self.summary else None,
            }
        )

    # -- fixtures' objects ----------------------------------------------------------

    @property
    def recorder(self) -> Any:
        if self._recorder is None:
            from pytest_devloop.selection.records import Recorder

            self._recorder = Recorder()
        return self._recorder

    def require_cluster(self) -> SyncSummary:
        if not self.enabled:
            pytest.fail(
                f"devloop: no devloop.yaml or skaffold.yaml in {self.options.rootdir} "
                "(write one, or pass --devloop-config)",
                pytrace=False,
            )
        if self.mode == "static":
            pytest.skip("--devloop-static: this test reads the cluster, and the cluster is skipped")
        if self.sync_error:
            raise SyncFailed(f"devloop: {self.sync_error}", pytrace=False)
        if self.summary is None:
            raise SyncFailed("devloop: the cluster was not synced", pytrace=False)
        if not self.summary.ok:
            raise SyncFailed(
                "devloop: the sync failed:\n" + "\n".join(self.summary.errors), pytrace=False
            )
        return self.summary

    def cluster_view(self) -> Any:
        if self._warm_view is not None:
            with contextlib.suppress(Exception):
                return self._warm_view.result()
        return self._new_cluster_view()

    def _new_cluster_view(self, *, warm: bool = False) -> Any:
        return self._cluster_view_of(
            self.require_cluster(),
            self.recorder,
            self.default_namespace(),
            self._state_file("discovery"),
            warm=warm,
        )

    @staticmethod
    def _cluster_view_of(
        s: SyncSummary, recorder: Any, namespace: str, cache: Path | None, *, warm: bool
    ) -> Any:
        from pytest_devloop.cluster.kube import Kube, client_from_kubeconfig
        from pytest_devloop.run.view import Cluster

        kube = Kube(client_from_kubeconfig(s.kubeconfig, s.context))
        if warm:
            with contextlib.suppress(Exception):
                kube.group_versions()
                for gv in sorted({str(o.get("apiVersion")) for o in s.desired.values()}):
                    kube.resources(gv)
        return Cluster(kube, recorder, namespace=namespace, discovery_cache=cache)

    def warm_cluster_view(self) -> None:
        """While a watch cycle's test process waits for its sync to end (`run.gate`):
        build the `cluster` view in a thread, with the discovery documents of the group
        versions the sync deployed, so the first test's reads find them. The cluster's
        kinds do not change past that point: the sync has written what it writes. What
        the view shares with the tests (the recorder) is made here, not in the thread."""
        if self._warm_view is not None or not self.enabled or self.summary is None:
            return
        from concurrent.futures import ThreadPoolExecutor

        try:
            parts = (
                self.require_cluster(),
                self.recorder,
                self.default_namespace(),
                self._state_file("discovery"),
            )
        except Exception:
            return  # the fixture says it when a test asks for the view
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devloop-warm")
        self._warm_view = pool.submit(self._cluster_view_of, *parts, warm=True)
        pool.shutdown(wait=False)

    def _state_file(self, name: str) -> Path | None:
        """`.devloop/cache/<name>-<cluster>.json`: dev mode only (CI mode keeps no state)."""
        if self.summary is None or self.config is None or self.mode != "dev":
            return None
        from pytest_devloop.sync.state import cluster_key

        key = cluster_key(self.summary.server, self.summary.uid)
        return self.config.root / ".devloop" / "cache" / f"{name}-{key}.json"

    def default_namespace(self) -> str:
        """The namespace `cluster` reads default to: the one namespace every namespaced
        object of the artifacts lives in (the only release's, in dev and CI mode alike;
        artifacts of cluster-scoped objects only, such as CRDs, do not count), else the
        config's top-level `namespace` (CI mode: the run's namespace)."""
        s = self.require_cluster()
        live = {key.split("/")[2] for key in s.desired} - {""}
        if not live:
            live = set(s.namespaces.values())
        return live.pop() if len(live) == 1 else s.namespace

    def namespace(self, artifact: str) -> str:
        """The live namespace of a chart or manifest artifact, in every mode
        (`devloop.namespace("sms-checker")`; CI mode moves every release into its own)."""
        s = self.require_cluster()
        found = s.namespaces.get(artifact)
        if found is None:
            known = ", ".join(sorted(s.namespaces)) or "none"
            raise KeyError(
                f"devloop.namespace({artifact!r}): no artifact {artifact!r} in the config "
                f"(artifacts: {known}); name a chart or manifests entry of devloop.yaml"
            )
        return found

    def rendered_view(self) -> Any:
        from pytest_devloop.run.view import Rendered

        if not self.enabled:
            pytest.fail("devloop: no devloop.yaml or skaffold.yaml", pytrace=False)
        if self.summary is not None and self.mode != "static":
            objects = self.summary.desired
            objects = self._with_secret_values(objects)
        else:
            from pytest_devloop.artifacts.render import RenderError
            from pytest_devloop.sync.syncer import render_static

            assert self.config is not None
            try:
                objects = render_static(self.config)
            except RenderError as e:
                pytest.fail(f"devloop: {e}", pytrace=False)
        return Rendered(list(objects.items()), self.recorder)

    def _with_secret_values(self, objects: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """A sync with unchanged inputs knows a Secret only as recorded: values as digests
        (nothing of a Secret's values is kept at rest). Such Secrets are rendered again
        here, without the cluster, for the `rendered` view."""
        from pytest_devloop.sync.ownership import is_redacted

        redacted = [k for k, o in objects.items() if o.get("kind") == "Secret" and is_redacted(o)]
        if not redacted or self.config is None:
            return objects
        from pytest_devloop.artifacts.render import RenderError
        from pytest_devloop.sync.syncer import render_static

        try:
            fresh = render_static(self.config)
        except RenderError as e:
            pytest.fail(f"devloop: {e}", pytrace=False)
        return {**objects, **{k: fresh[k] for k in redacted if k in fresh}}

    # -- records --------------------------------------------------------------------

    def records_path(self) -> Path | None:
        if self.summary is None or self.config is None:
            return None
        from pytest_devloop.sync.state import cluster_key

        key = cluster_key(self.summary.server, self.summary.uid)
        return self.config.root / ".devloop" / "records" / f"{key}.json"

    def _read_records(self) -> tuple[dict[str, Any] | None, str | None]:
        """(the records file's data, warning); None data = unusable. Read once a session."""
        path = self.records_path()
        if path is None:
            return None, "no sync this run"
        if self._records_file is not None and self._records_file[0] == path:
            return self._records_file[1], self._records_file[2]
        data: dict[str, Any] | None
        warning = None
        try:
            with path.open("rb") as f:
                st = os.fstat(f.fileno())
                self._records_stat = (st.st_ino, st.st_size, st.st_mtime_ns)
                loaded = json.loads(f.read())
        except FileNotFoundError:
            self._records_stat = None
            loaded = {"schema": RECORDS_SCHEMA, "tests": {}}
        except (OSError, ValueError) as e:
            loaded = None
            warning = (
                f"records file {path} is unreadable ({e.__class__.__name__}): running every test"
            )
        data = loaded if isinstance(loaded, dict) else None
        if warning is None:
            if data is None or data.get("schema") != RECORDS_SCHEMA:
                data = None
                warning = f"records file {path} is from another devloop version: running every test"
            elif not isinstance(data.get("tests"), dict):
                data = None
                warning = f"records file {path} is corrupt: running every test"
        self._records_file = (path, data, warning)
        return data, warning

    def load_records(self) -> tuple[dict[str, Any] | None, str | None]:
        """(records by nodeid, warning); None records = unusable, run everything."""
        data, warning = self._read_records()
        return (None, warning) if data is None else (data["tests"], None)

    def save_records(self, merged: dict[str, dict[str, Any]]) -> None:
        path = self.records_path()
        if path is None or self.mode != "dev":
            return
        from filelock import FileLock

        from pytest_devloop.selection import prefilter

        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=60):
            if self._records_file is not None and self._records_stat != _stat_of(path):
                self._records_file = None  # another process wrote since: read it again
            old, _ = self._read_records()
            tests = dict((old or {}).get("tests") or {})
            unchanged = old is not None and all(tests.get(k) == v for k, v in merged.items())
            tests.update(merged)
            data: dict[str, Any] = {"schema": RECORDS_SCHEMA, "tests": tests}
            index = self._index_update(old or {}, merged, tests)
            if index is not None:
                data[prefilter.INDEX_KEY], data[prefilter.MODULES_KEY] = index
            for key in (prefilter.INDEX_KEY, prefilter.MODULES_KEY):
                unchanged = unchanged and data.get(key) == (old or {}).get(key)
            if unchanged:
                return  # a cycle that re-ran tests with the same reads writes nothing
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
            self._records_file = None

    def _index_update(
        self, old: dict[str, Any], merged: dict[str, Any], tests: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The file index after this session (`selection.prefilter`).

        Only a session that collected whole files in one process knows every node id of
        a file: an xdist run or a run given test ids drops the entries of the files whose
        tests it recorded, and keeps the others."""
        import sys

        from pytest_devloop.selection import prefilter

        cfg = self.pytest_config
        old_index = old.get(prefilter.INDEX_KEY)
        old_modules = old.get(prefilter.MODULES_KEY)
        if not isinstance(old_index, dict) or not isinstance(old_modules, dict):
            old_index, old_modules = {}, {}
        if (
            self.is_worker
            or cfg.pluginmanager.hasplugin("dsession")
            or any("::" in str(a) for a in cfg.args)
        ):
            touched = {n.split("::", 1)[0] for n in merged}
            return {k: v for k, v in old_index.items() if k not in touched}, old_modules
        root = Path(cfg.rootpath)
        collected = {}
        for file, nodeids in self.collected_files.items():
            if file not in self.collect_skipped:
                digest = self.digest_of_file(file)
                collected[file] = (digest, nodeids, prefilter.summarize(tests, nodeids, digest))
        skipped = self.prefilter.skip if self.prefilter is not None else set()
        index_files = set(collected) | set(old_index)
        modules = prefilter.project_modules(list(sys.modules.items()), root, index_files)
        if self.collection_reads is not None:
            modules.update(self.collection_reads.digests(root))
        return prefilter.merge(
            old_index,
            old_modules,
            collected,
            self.collect_skipped,
            modules,
            complete=not skipped,
        )

    def digest_of_file(self, file: str) -> str:
        """`file_digest` of a node id path (rootdir-relative)."""
        return self._digest_of_path(Path(self.pytest_config.rootpath) / file)

    def file_digest(self, item: pytest.Item) -> str:
        """Digest of the test's file and every conftest.py above it (up to the rootdir)."""
        return self._digest_of_path(Path(str(item.path)))

    def _digest_of_path(self, path: Path) -> str:
        cached = self._file_digests.get(str(path))
        if cached is not None:
            return cached
        h = hashlib.sha256()
        root = Path(self.pytest_config.rootpath)
        files = [path]
        for parent in path.parents:
            conftest = parent / "conftest.py"
            if conftest.is_file():
                files.append(conftest)
            if parent == root:
                break
        for f in files:
            try:
                h.update(f.read_bytes())
            except OSError:
                h.update(b"?")
        digest = h.hexdigest()[:16]
        self._file_digests[str(path)] = digest
        return digest

    def record_test(self, item: pytest.Item, data: Any, outcome: str) -> None:
        marker = item.get_closest_marker("devloop")
        declared = list(data.declared)
        always = False
        if marker is not None:
            declared += [str(d) for d in marker.kwargs.get("depends_on", ())]
            always = bool(marker.kwargs.get("always", False))
        self.records[item.nodeid] = {
            "objects": data.objects,
            "lists": [r.to_json() for r in data.lists],
            "declared": declared,
            "always": always,
            "outcome": outcome,
            "file_digest": self.file_digest(item),
        }

    # -- selection ------------------------------------------------------------------

    def _selection_inputs(self) -> _SelectionInputs:
        """What selection needs before any item exists (once a session): whether it is on,
        the records, and the change's impact; the uncollected files and the final
        selection both read it."""
        if self._selection is not None:
            selection: _SelectionInputs = self._selection
            return selection
        from pytest_devloop.selection import changes, impact

        cfg = self.pytest_config
        decision = cfg.hook.pytest_devloop_selection_mode(
            config=cfg,
            mode=self.mode,
            synced=self.summary is not None,
            sync_error=self.sync_error,
        )
        out = _SelectionInputs(on=decision.on, reason=decision.reason)
        self._selection = out
        if not decision.on:
            return out
        assert self.summary is not None
        out.records, out.warning = self.load_records()
        if out.records is None:
            return out
        s = self.summary
        out.change_set = cs = changes.change_set(
            s.changed, opaque=s.opaque, causes=s.causes, artifact_of=s.artifact_of
        )
        if cs.uncertain is not None:
            return out
        # Pruned objects join the graph with their last applied body: their old labels
        # and selectors decide which lists held them and whom they fed.
        objects = dict(s.desired)
        for key, body in s.previous.items():
            objects.setdefault(key, body)
        graph = impact.Graph.build(objects.items(), artifact_of=s.artifact_of)
        # A restored drift's old labels are the live ones, which no record holds: unknown.
        drifted = any(op == "drift" for op in cs.ops.values())
        out.impact = graph.closure(
            cs.changed, cause=cs.causes, previous=None if drifted else s.previous
        )
        out.typed = _LazyRecords(out.records)
        return out

    def skip_collecting(self, path: Path) -> bool:
        """Whether to leave a test file uncollected: every test it held is unaffected
        (`selection.prefilter`). Also takes a file's digest before pytest imports it, so
        an edit during the run is never taken for the collected content."""
        if path.suffix == ".py" and path.name != "conftest.py":
            self._digest_of_path(path)
        if self.is_worker or self.pytest_config.pluginmanager.hasplugin("dsession"):
            return False
        if self.prefilter is None:
            # Its own reads (the index's files) are not the test modules' data reads.
            reads = self.collection_reads
            active = reads is not None and reads.active
            if reads is not None:
                reads.active = False
            try:
                self.prefilter = self._plan_prefilter()
            finally:
                if reads is not None:
                    reads.active = active
        if not self.prefilter.skip:
            return False
        try:
            rel = path.relative_to(self.pytest_config.rootpath).as_posix()
        except ValueError:
            return False
        return rel in self.prefilter.skip

    def _plan_prefilter(self) -> Any:
        from pytest_devloop.selection import prefilter

        if not self.pytest_config.getoption("devloop_affected") or self.summary is None:
            return prefilter.Prefilter(reason="selection is off")
        inputs = self._selection_inputs()
        if inputs.impact is None:
            return prefilter.Prefilter(reason="selection is off or uncertain")
        data, _ = self._read_records()
        index = (data or {}).get(prefilter.INDEX_KEY)
        modules = (data or {}).get(prefilter.MODULES_KEY)
        if not isinstance(index, dict) or not isinstance(modules, dict):
            return prefilter.Prefilter(reason="no file index yet")
        return prefilter.plan(
            index,
            modules,
            inputs.typed,
            inputs.impact,
            root=Path(self.pytest_config.rootpath),
            digest_of=self.digest_of_file,
            changed_files=self.summary.changed_files,
        )

    def select(self, items: list[pytest.Item]) -> tuple[list[pytest.Item], list[pytest.Item]]:
        """(selected, deselected) for --devloop-affected, with one reason per test. The
        tests of files left uncollected (`skip_collecting`) count as deselected."""
        from pytest_devloop.selection import changes, impact

        inputs = self._selection_inputs()
        if not inputs.on:
            self.selection_note = (
                f"devloop: affected-test selection is off: {inputs.reason}; "
                f"running all {len(items)} tests"
            )
            return items, []
        records = inputs.records
        if records is None:
            self.selection_note = f"devloop: warning: {inputs.warning}"
            return items, []
        assert self.summary is not None and inputs.change_set is not None
        s = self.summary
        cs = inputs.change_set
        if cs.uncertain is not None:
            self.decisions = [
                impact.Decision(i.nodeid, True, cs.uncertain, "uncertain") for i in items
            ]
            self.selection_note = (
                f"devloop: running all {len(items)} tests: {cs.uncertain} "
                "(devloop cannot tell which tests it affects)"
            )
            return items, []
        imp = inputs.impact
        current = {item.nodeid: self.file_digest(item) for item in items}
        uncollected = list(self.prefilter.decisions) if self.prefilter is not None else []
        self.decisions = [
            *impact.select(
                inputs.typed,
                [i.nodeid for i in items],
                imp,
                current_file_digests=current,
                changed_files=s.changed_files,
            ),
            *uncollected,
        ]
        self.impact = imp
        run = {d.nodeid for d in self.decisions if d.run}
        selected = [i for i in items if i.nodeid in run]
        deselected = [i for i in items if i.nodeid not in run]
        self.not_collected = len(uncollected)
        self.selection_note = impact.summary(self.decisions, changes.describe(cs))
        if (deselected or uncollected) and not selected:
            # pytest would exit 5 ("no tests collected"); the suite is green as far as
            # devloop knows, so the session exits 0 and the header says what it knows.
            self.nothing_affected = True
            unselected = [i.nodeid for i in deselected] + [d.nodeid for d in uncollected]
            passed = sum(
                1
                for nodeid in unselected
                if (records.get(nodeid) or {}).get("outcome") in ("passed", "xfailed")
            )
            self.selection_note = (
                f"devloop: nothing affected; {passed} tests passed last time"
                + ("" if passed == len(unselected) else f" (of {len(unselected)})")
                + " (run all with: pytest without --devloop-affected)"
            )
        return selected, deselected

    def explain(self) -> list[str]:
        """One line per test for --devloop-explain; a skipped test also says what it read
        and the nearest change it was compared against."""
        from pytest_devloop.selection import impact

        records, _ = self.load_records() if self.impact is not None else (None, None)
        lines: list[str] = []
        for d in self.decisions:
            line = f"devloop: {'run ' if d.run else 'skip'} {d.nodeid}: {d.reason}"
            raw = (records or {}).get(d.nodeid)
            if not d.run and raw is not None:
                try:
                    rec = impact.TestRecord.from_json(raw, d.nodeid)
                except impact.RecordError:
                    rec = None
                if rec is not None:
                    line += f" ({impact.nearest_change(rec, self.impact)})"
            lines.append(line)
        return lines

    # -- diagnostics ----------------------------------------------------------------

    def diagnostics(self, item: pytest.Item) -> str | None:
        # The report is made while the test's record is still open (it is stored after
        # teardown), so the reads come from the recorder; a finished record otherwise.
        if self.recorder.nodeid == item.nodeid:
            keys = self.recorder.objects_so_far()
        else:
            keys = list((self.records.get(item.nodeid) or {}).get("objects") or {})
        if not keys or self.summary is None:
            return None
        from pytest_devloop.cluster.kube import client_from_kubeconfig
        from pytest_devloop.sync.readiness import describe

        client = client_from_kubeconfig(self.summary.kubeconfig, self.summary.context)
        lines: list[str] = []
        for key in keys[:5]:
            group, kind, ns, name = key.split("/", 3)
            if kind == "Secret":
                lines.append(f"{kind}/{name}: (Secret contents are never shown)")
                continue
            obj = {
                "apiVersion": _api_version_of(self.summary.desired.get(key), group),
                "kind": kind,
                "metadata": {"name": name, **({"namespace": ns} if ns else {})},
            }
            try:
                lines += [f"{kind}/{name}:"] + [f"  {line}" for line in describe(client, obj)]
            except Exception as e:  # diagnostics must never hide the test's own failure
                lines.append(f"{kind}/{name}: (could not describe: {e})")
        return "\n".join(lines)

    # -- CI teardown ----------------------------------------------------------------

    def _created_by_this_run(self, kube: Any, res: Any, name: str) -> bool:
        """Whether a cluster-scoped object was created by this run (and may be deleted).

        CI mode keeps no state, so its plan says "create" for CRDs that existed long
        before (a developer's, or another run's): deleting those would wipe every custom
        object of their kind. When in doubt the object is kept.
        """
        if self.ci_started is None:
            return False
        from pytest_devloop.run.teardown import created_at

        created = created_at(kube.get(res, None, name))
        return created is not None and created >= self.ci_started

    def _ci_labels(self) -> dict[str, str]:
        """The run's labels for the cluster-scoped objects it creates (CI mode only)."""
        from pytest_devloop.sync.ownership import CI_CREATED_LABEL, CI_RUN_LABEL

        if self.ci_namespace is None or self.ci_started is None:
            return {}
        return {
            CI_RUN_LABEL: self.ci_namespace.rsplit("-", 1)[-1],
            CI_CREATED_LABEL: str(int(self.ci_started)),
        }

    def _prepare_ci_namespace(self) -> None:
        """Collect this project's stale CI namespaces, then create this run's, labelled."""
        from pytest_devloop.cluster.kube import Kube, KubeError
        from pytest_devloop.run import teardown as ci

        assert self.config is not None and self.ci_namespace is not None
        kube = Kube(self.target.api_client())
        project = ci.project_identity(self.config)
        try:
            stale = ci.collect(
                kube, project, self.config.ci.stale_after, out=self.write, keep=self.ci_namespace
            )
            ci.collect_leftovers(
                kube, project, out=self.write, keep=self.ci_namespace, gone=[s.name for s in stale]
            )
            self._collect_cluster_scoped_leftovers(kube)
            ci.create_namespace(kube, self.ci_namespace, project, now=self.ci_started)
        except KubeError as e:
            # The sync that follows meets the same cluster and reports it in its own words.
            self.write(f"devloop: CI namespace {self.ci_namespace}: {e}")

    def _collect_cluster_scoped_leftovers(self, kube: Any) -> None:
        """Remove cluster-scoped objects that a Helm release of an earlier CI run left
        behind (its `devloop-<hex>` namespace is gone): they would make this run's
        `helm upgrade --install` fail on ownership. Objects of a live namespace are kept
        (another run is using them) and Helm's error then names them."""
        from pytest_devloop.cluster.kube import KubeError

        releases = {c.name for c in self.config.charts} if self.config else set()
        ns_res = kube.resource("v1", "Namespace")
        for api_version, kind in _LEFTOVER_KINDS:
            res = kube.resource(api_version, kind)
            if res is None or ns_res is None:
                continue
            try:
                items = kube.list(res)
            except KubeError:
                continue
            for obj in items:
                meta = obj.get("metadata") or {}
                notes = meta.get("annotations") or {}
                owner_ns = str(notes.get("meta.helm.sh/release-namespace") or "")
                release = str(notes.get("meta.helm.sh/release-name") or "")
                if not re.fullmatch(r"devloop-[0-9a-f]{6}", owner_ns) or release not in releases:
                    continue
                if owner_ns == self.ci_namespace or kube.get(ns_res, None, owner_ns) is not None:
                    continue
                name = str(meta.get("name"))
                with contextlib.suppress(KubeError):
                    kube.delete(res, None, name)
                    self.write(
                        f"devloop: CI: removed {kind}/{name}, left by release {release} of an "
                        f"earlier CI run (namespace {owner_ns} is gone)"
                    )

    def teardown(self, *, wait: float = 60.0) -> None:
        """Delete the CI namespace and what the run created outside it (always, once).

        Also after an interrupted sync (no summary yet): the namespace may exist already.
        """
        if self.is_worker or self.ci_namespace is None or self._torn_down:
            return
        if self.summary is None and self.target is None:
            return  # the guard did not even pass: nothing was created
        self._torn_down = True
        with self.signals.deferred() if self.signals else contextlib.nullcontext():
            self._teardown(wait)

    def _teardown(self, wait: float) -> None:
        assert self.ci_namespace is not None
        where_obj: Any = self.summary or self.target
        if self.pytest_config.getoption("devloop_keep"):
            # The run's cluster is often not kubectl's current one (the embedded cluster
            # never is): the command names it.
            where = "".join(
                f" --{flag} {shlex.quote(value)}"
                for flag, value in (
                    ("kubeconfig", where_obj.kubeconfig),
                    ("context", where_obj.context),
                )
                if value
            )
            self.write(
                f"devloop: --devloop-keep: namespace {self.ci_namespace} kept; delete it with "
                f"`kubectl{where} delete namespace {self.ci_namespace}`"
            )
            return
        from pytest_devloop.cluster.kube import Kube, KubeError, client_from_kubeconfig
        from pytest_devloop.sync.plan import install_rank

        kube = Kube(client_from_kubeconfig(where_obj.kubeconfig, where_obj.context))
        leftovers: list[str] = []
        ns_res = kube.resource("v1", "Namespace")
        assert ns_res is not None
        try:
            kube.delete(ns_res, None, self.ci_namespace)
        except KubeError as e:
            leftovers.append(f"Namespace/{self.ci_namespace} ({e})")
        created = self.summary.created_cluster_scoped if self.summary else []
        desired = self.summary.desired if self.summary else {}
        for key in sorted(created, key=lambda k: -install_rank(k.split("/")[1])):
            group, kind, _, name = key.split("/", 3)
            obj = desired.get(key) or {}
            res = kube.resource(str(obj.get("apiVersion") or _api_version_of(None, group)), kind)
            if res is None or not self._created_by_this_run(kube, res, name):
                continue
            try:
                kube.delete(res, None, name)
            except KubeError as e:
                leftovers.append(f"{kind}/{name} ({e})")
        namespace = self.ci_namespace
        assert namespace is not None
        if not _gone_within(lambda: kube.get(ns_res, None, namespace) is None, wait):
            leftovers.append(
                f"Namespace/{self.ci_namespace} (still terminating after {wait:.0f} s)"
            )
        if leftovers:
            self.write("devloop: teardown left: " + ", ".join(leftovers))
        else:
            self.write(f"devloop: CI teardown: namespace {self.ci_namespace} deleted")


# Cluster-scoped kinds a chart commonly creates and Helm refuses to adopt from another
# release. CRDs are not among them: deleting one deletes every object of its kind.
_LEFTOVER_KINDS = (
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("storage.k8s.io/v1", "StorageClass"),
)


def _api_version_of(obj: dict[str, Any] | None, group: str) -> str:
    if obj and obj.get("apiVersion"):
        return str(obj["apiVersion"])
    return f"{group}/v1" if group else "v1"


def _gone_within(gone: Callable[[], bool], seconds: float) -> bool:
    """Poll `gone` every 50 ms (tenacity) until it holds or `seconds` pass; its last answer."""
    import tenacity

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(seconds),
        wait=tenacity.wait_fixed(0.05),
        retry=tenacity.retry_if_result(lambda done: not done),
        retry_error_callback=lambda state: False,
    )
    return bool(retrying(gone))
