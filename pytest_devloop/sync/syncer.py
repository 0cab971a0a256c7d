"""One sync: bring a cluster to the rendered state, touching only what changed.

Owns the order of a sync and its report. Per artifact (manifest sets first, then charts,
in config order): fingerprint its inputs and skip rendering when unchanged; render; fill
in namespaces; plan against the state devloop recorded for this cluster and the live
objects (drift); run Helm hooks as Helm runs them; apply with server-side apply under one
field manager, CRDs and Namespaces first; prune what left the inventory; wait until the
touched workloads are ready; record the result and print one line per artifact.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_devloop.artifacts.fingerprint import (
    FileHasher,
    helmignore_matcher,
    walk_files,
)
from pytest_devloop.artifacts.parsecache import ParseCache
from pytest_devloop.artifacts.render import (
    ChartQueries,
    ClusterAccess,
    DesiredObject,
    HelmTool,
    RenderError,
    chart_queries,
    helm_values_args,
    parse_stream,
    render_chart,
    render_manifests,
)
from pytest_devloop.cluster.kube import ApiResource, Kube, KubeError
from pytest_devloop.cluster.providers import Target, check_allowed
from pytest_devloop.cluster.session import Options
from pytest_devloop.config.model import ChartRelease, Config, ManifestSet
from pytest_devloop.sync import ownership
from pytest_devloop.sync import plan as planning
from pytest_devloop.sync.hooks import HookFailed, HookReport, HookRunner
from pytest_devloop.sync.inputs import InputStore, changed_inputs
from pytest_devloop.sync.inputs import attribute as inputs_attribute
from pytest_devloop.sync.livecache import ChangeFeed, LiveCache
from pytest_devloop.sync.plan import Plan, Recorded, object_key, project, short_name
from pytest_devloop.sync.state import ArtifactRecord, ObjectRecord, StateStore, cluster_key
from pytest_devloop.sync.strategies import ArtifactStrategy, strategy_for
from pytest_devloop.sync.unstable import diff_paths, keep_values, path_text, without

ARTIFACT_LABEL = ownership.ARTIFACT_LABEL
SYNC_HOOK_EVENTS = frozenset({"pre-install", "post-install", "pre-upgrade", "post-upgrade"})
PROJECT_LABEL = ownership.PROJECT_LABEL
INVENTORY_PREFIX = "devloop-inventory-"
HELM_VERSION_CACHE = "helm-version.json"


def inventory_name(artifact: str, project: str) -> str:
    """The in-cluster inventory of one artifact of one project (keyed by both, so two
    projects with an artifact of the same name in one namespace keep theirs apart)."""
    return f"{INVENTORY_PREFIX}{artifact}-{hashlib.sha256(project.encode()).hexdigest()[:10]}"


class SyncError(Exception):
    """A sync step failed; the message names the artifact, the object and the fix."""


@dataclass
class ArtifactResult:
    name: str
    kind: str  # chart | manifests
    line: str = ""
    rendered: bool = False
    plan: Plan | None = None
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # (key, fields): the changed field paths, or one op word for a whole-object change
    # (`selection.changes.OPS`: create, prune, drift, hook, ...).
    changed: list[tuple[str, list[str]]] = field(default_factory=list)
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> object
    namespace: str = ""  # the artifact's live namespace (CI mode: the run's)
    # key -> the body applied before this sync (updated and pruned objects): old labels
    # and selectors for selection, and a pruned object's fields.
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Why the object-level changes of this sync are not all known (a Helm command ran):
    # selection then runs every test that reads anything of the artifact.
    opaque: str | None = None
    # key -> the input file whose change produced the object's change (when known).
    causes: dict[str, str] = field(default_factory=dict)


@dataclass
class SyncResult:
    target: Target
    cluster_uid: str
    artifacts: list[ArtifactResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    writes: int = 0
    changed_files: list[str] = field(default_factory=list)  # inputs changed since last sync

    @property
    def ok(self) -> bool:
        return all(a.error is None for a in self.artifacts)

    @property
    def changed(self) -> list[tuple[str, list[str]]]:
        return [c for a in self.artifacts for c in a.changed]

    def desired(self) -> dict[str, dict[str, Any]]:
        """Every desired object of every artifact (rendered now or as last applied)."""
        return {k: v for a in self.artifacts for k, v in a.desired.items()}

    def artifact_of(self) -> dict[str, str]:
        out = {k: a.name for a in self.artifacts for k in a.previous}
        out.update({k: a.name for a in self.artifacts for k in a.desired})
        return out

    def previous(self) -> dict[str, dict[str, Any]]:
        return {k: v for a in self.artifacts for k, v in a.previous.items()}

    def opaque(self) -> dict[str, str]:
        return {a.name: a.opaque for a in self.artifacts if a.opaque}

    def namespaces(self) -> dict[str, str]:
        return {a.name: a.namespace for a in self.artifacts if a.namespace}

    def causes(self) -> dict[str, str]:
        return {k: c for a in self.artifacts for k, c in a.causes.items()}


@dataclass
class _Desired:
    key: str
    obj: dict[str, Any]
    source: str
    res: ApiResource | None


@dataclass
class _ArtifactSync:
    """One artifact's sync: its inputs, the record of its last sync, and what each step
    (fingerprint, render and resolve, plan, hooks with apply and prune, wait, record)
    hands to the next."""

    strategy: ArtifactStrategy  # what differs by kind of artifact
    records: dict[str, ArtifactRecord]  # the state's records of every artifact
    res: ArtifactResult
    api_versions: list[str]  # refreshed in place when this sync's CRDs become served
    server_version: str
    crd_scopes: dict[tuple[str, str], bool]  # kinds of the CRDs rendered in this sync
    plan_only: bool
    full: bool
    # The fingerprint step:
    namespace: str = ""
    record: ArtifactRecord | None = None
    fingerprint: str = ""
    # The render step (or the record, when the inputs are unchanged):
    desired: dict[str, _Desired] = field(default_factory=dict)
    hooks: list[DesiredObject] = field(default_factory=list)
    unstable: dict[str, list[list[str | int]]] = field(default_factory=dict)
    # The plan step:
    recorded: dict[str, Recorded] = field(default_factory=dict)
    live: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def entry(self) -> ChartRelease | ManifestSet:
        return self.strategy.entry

    @property
    def unchanged_inputs(self) -> bool:
        return (
            self.record is not None
            and self.record.fingerprint == self.fingerprint
            and self.record.namespace == self.namespace
        )


class Syncer:
    """Syncs one config to one cluster. Reusable across syncs (watch mode keeps one)."""

    def __init__(
        self,
        config: Config,
        target: Target,
        *,
        force_conflicts: bool = False,
        adopt: bool = False,
        allow_prune: Iterable[str] = (),
        mode: str = "dev",
        namespace_override: str | None = None,
        out: Callable[[str], None] = print,
        helm: HelmTool | None = None,
        kube: Kube | None = None,
        wait: bool = True,
        build: bool = False,
        ci_labels: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        # CI mode: labels of the run for the cluster-scoped objects it creates (the
        # namespaced ones go with the run's namespace), see `run.teardown`.
        self.ci_labels = dict(ci_labels or {})
        self.target = target
        self.force_conflicts = force_conflicts
        self.adopt = adopt or config.adopt
        # This project's identity: its objects carry it, its inventories are keyed by it,
        # and only objects carrying it are pruned (see sync.ownership).
        self.project = config.project_id()
        # Object key -> the artifact that rendered it in this sync (one owner per object).
        self._claimed: dict[str, str] = {}
        self._adopting: set[str] = set()
        self._state: Any = None
        self.allow_prune = frozenset(allow_prune) | frozenset(
            k for k, v in config.prune.model_dump().items() if v
        )
        self.mode = mode
        self.namespace_override = namespace_override
        self.out = out
        # The live progress line (run.progress.Progress); silent unless a caller sets one.
        self.progress: Callable[[str], None] = lambda text: None
        self.progress_done: Callable[[], None] = lambda: None
        # Called once a sync, as soon as the result it will return is known unless a
        # step after fails or changes more: after the last artifact's writes, before it
        # waits for its workloads to become ready (watch mode's test process goes on from
        # there; see `_announce`). An error in it only switches it off for the sync.
        self.on_expected: Callable[[SyncResult], None] | None = None
        # Called with the result once every artifact is synced, before the state is
        # recorded (watch mode lets its test process go then); errors as above.
        self.on_result: Callable[[SyncResult], None] | None = None
        self._pending: tuple[SyncResult, list[str]] | None = None
        self._root: Path | None = None  # the config's root, resolved (see _relative)
        self._helm = helm
        self._kube = kube
        self.wait = wait
        self.build = build
        self._builder: Any = None
        self._last_refs: dict[str, Any] = {}
        # Per chart: (resolved --set values, image names it uses), or the placeholder error.
        self._chart_values: dict[str, tuple[dict[str, Any], list[str]] | Exception] = {}
        self._failed_images: set[str] = set()
        self.state_store = StateStore(config.root)
        self.hasher = FileHasher.load(config.root / ".devloop" / "filestats.json")
        self._helm_version_text: str | None = None
        self._chart_queries: dict[str, ChartQueries] = {}
        self._plan_only = False
        self._parse_cache = ParseCache(config.root / ".devloop" / "parsed")
        # Charts whose renders against the cluster must be upgrade renders (see _render).
        self._upgrade_renders: set[str] = set()
        # Charts whose CRDs are known to be served (no client-side render to check).
        self._crds_served: set[str] = set()
        self._unstable: dict[str, list[list[str | int]]] = {}
        self._timings: dict[str, float] = {}
        # Watch mode: listed live objects reused while its watch streams vouch for them.
        self._live_cache: LiveCache | None = None
        self._live_uid: str | None = None

    @classmethod
    def from_options(
        cls, config: Config, target: Target, options: Options, **overrides: Any
    ) -> Syncer:
        """The one way front ends build a Syncer: every option the user gave is honoured;
        `overrides` carry what only the caller knows (output, CI namespace, watch mode)."""
        settings: dict[str, Any] = {
            "force_conflicts": options.force_conflicts,
            "adopt": options.adopt,
            "allow_prune": options.prune,
            "mode": options.mode,
            "build": options.build,
        }
        settings.update(overrides)
        return cls(config, target, **settings)

    # -- connections ------------------------------------------------------------

    @property
    def helm(self) -> HelmTool:
        if self._helm is None:
            self._helm = HelmTool.find(start=self.config.root)
        return self._helm

    def _helm_version(self) -> str:
        """helm's version for fingerprints, remembered under `.devloop/` by the binary's
        path, size, mtime and inode: `helm version` is a subprocess (~50 ms), a third of
        the budget of a sync with nothing to do in a fresh process."""
        if self._helm_version_text is not None:
            return self._helm_version_text
        cache = self.config.root / ".devloop" / HELM_VERSION_CACHE
        key: list[object] | None
        try:
            exe = Path(self.helm.executable).resolve()
            st = exe.stat()
            key = [str(exe), st.st_size, st.st_mtime_ns, st.st_ino]
        except OSError:
            key = None
        if key is not None:
            try:
                data = json.loads(cache.read_text())
                if isinstance(data, dict) and data.get("key") == key:
                    self._helm_version_text = str(data["version"])
                    return self._helm_version_text
            except (OSError, ValueError, KeyError):
                pass
        version = self.helm.version
        self._helm_version_text = version
        if key is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"key": key, "version": version}))
                tmp.replace(cache)
            except OSError:
                pass  # only a cache: the next process asks helm again
        return version

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(self.target.api_client())
        return self._kube

    def use_change_feed(self, feed: ChangeFeed) -> None:
        """Reuse live listings while `feed` saw no event on their collection (watch mode;
        see `sync.livecache`)."""
        self._live_cache = LiveCache(feed)
        self.kube.write_listeners.append(self._live_cache.wrote)

    def namespace_for(self, declared: str | None) -> str:
        if self.namespace_override:
            return self.namespace_override
        return declared or self.config.namespace

    # -- the sync -----------------------------------------------------------------

    def sync(
        self,
        *,
        plan_only: bool = False,
        full: bool = False,
        changed_paths: Iterable[str | Path] = (),
    ) -> SyncResult:
        """One sync. `changed_paths`: the files saved since the last sync (watch mode);
        the input digests find the others, so every change is attributed to the file
        that caused it (`ArtifactResult.causes`)."""
        try:
            return self._sync_all(plan_only=plan_only, full=full, changed_paths=changed_paths)
        finally:
            # However the sync ended (an error mid-apply too), its live line and the
            # progress ticker end with it: nothing is drawn over what its caller prints.
            self.progress_done()

    def _sync_all(
        self, *, plan_only: bool, full: bool, changed_paths: Iterable[str | Path]
    ) -> SyncResult:
        check_allowed(self.target, self.config.cluster.allow_contexts)
        self._plan_only = plan_only
        t0 = time.perf_counter()
        kube = self.kube
        uid = self._connect()
        if self._live_cache is not None and (full or uid != self._live_uid):
            self._live_cache.clear()  # a full sync trusts nothing; another cluster either
            self._live_uid = uid
        result = SyncResult(self.target, uid)
        timings = result.timings
        # Per step, summed over artifacts (watch mode prints the split of each cycle).
        timings.update(render=0.0, apply=0.0, hooks=0.0, ready=0.0)
        self._timings = timings
        stateful = self.mode == "dev"
        self._claimed = {}
        with self.state_store.locked(self.target.server, uid):
            state, warning = self.state_store.load(self.target.server, uid)
            self._state = state if stateful and not plan_only else None
            if warning and stateful:
                result.warnings.append(warning)
                self.out(f"devloop: warning: {warning}")
            if not stateful:
                state.artifacts.clear()
            api_versions = kube.api_versions_with_kinds()
            server_version = kube.server_version()
            timings["connect"] = time.perf_counter() - t0
            t_images = time.perf_counter()
            self._prepare_images(plan_only=plan_only)
            timings["build"] = time.perf_counter() - t_images
            crd_scopes: dict[tuple[str, str], bool] = {}
            # Manifest sets first (they may hold the CRDs a chart needs), then charts.
            strategies = [strategy_for(m) for m in self.config.manifests]
            strategies += [strategy_for(c) for c in self.config.charts]
            inputs = InputStore(
                self.config.root
                / ".devloop"
                / "inputs"
                / f"{cluster_key(self.target.server, uid)}.json"
            )
            touched = [self._relative(Path(p)) for p in changed_paths]
            announce = self.on_expected is not None and stateful and not plan_only
            for n, strategy in enumerate(strategies, 1):
                entry = strategy.entry
                started = time.perf_counter()
                res = ArtifactResult(entry.name, strategy.kind)
                files = self._input_files(strategy)
                changed_files = changed_inputs(
                    files, inputs.get(entry.name) if stateful else None, touched
                )
                # The last artifact: what `_announce` completes into the result as it
                # will read (before it, a later artifact adds to the result).
                last = n == len(strategies)
                self._pending = (result, changed_files) if announce and last else None
                try:
                    self._sync_artifact(
                        _ArtifactSync(
                            strategy,
                            state.artifacts,
                            res,
                            api_versions,
                            server_version,
                            crd_scopes,
                            plan_only=plan_only,
                            full=full or not stateful,
                        )
                    )
                except (RenderError, SyncError, KubeError, ValueError) as e:
                    res.error = str(e)
                    res.line = f"devloop: {entry.name}: error: {e}"
                self._attribute(res, state.artifacts.get(entry.name), changed_files)
                result.changed_files += [f for f in changed_files if f not in result.changed_files]
                if res.error is None and stateful and not plan_only:
                    inputs.put(entry.name, files)
                res.seconds = time.perf_counter() - started
                if res.error is None and not res.line:
                    res.line = self._line(res)
                # A step that failed midway left its live line: the artifact's line replaces it.
                self.progress_done()
                self.out(res.line)
                result.artifacts.append(res)
            self._pending = None
            if stateful:
                self._removed_artifacts(state.artifacts, result, plan_only=plan_only)
            if not plan_only:
                self._tell(self.on_result, result)
            if stateful and not plan_only:
                self.state_store.save(state)
                inputs.save()
            self._state = None
        self.hasher.save(self.config.root / ".devloop" / "filestats.json")
        ownership.secure_tree(self.config.root)
        timings["total"] = time.perf_counter() - t0
        return result

    def _removed_artifacts(
        self, records: dict[str, ArtifactRecord], result: SyncResult, *, plan_only: bool
    ) -> None:
        """Artifacts gone from the config: prune what they applied (same rules as any
        prune), or say what is left and the command that removes it."""
        names = {m.name for m in self.config.manifests} | {c.name for c in self.config.charts}
        for name in sorted(set(records) - names):
            record = records[name]
            res = ArtifactResult(name, "removed", namespace="")
            recorded = {
                k: Recorded(r.digest, r.applied, r.observed, r.pending)
                for k, r in record.objects.items()
            }
            the_plan = planning.plan_artifact(
                name, {}, recorded, None, allow_prune=self.allow_prune
            )
            res.plan = the_plan
            kept = [a.key for a in the_plan.by_op("keep")]
            if plan_only:
                res.line = (
                    f"devloop: {name}: removed from the config: plan only, "
                    f"{len(the_plan.prunes)} to prune, {len(kept)} to keep"
                )
            else:
                live = self._live(name, recorded, {}, labelled=True)
                pruned = self._prune(the_plan, recorded, live, name)
                for key in pruned:
                    res.changed.append((key, ["prune"]))
                    res.previous[key] = recorded[key].applied
                line = f"devloop: {name}: removed from the config: {len(pruned)} pruned"
                unlabelled = [
                    a.key
                    for a in the_plan.prunes
                    # (an object another artifact renders now was taken over by it)
                    if live.get(a.key) is None
                    and a.key not in pruned
                    and a.key not in self._claimed
                ]
                if unlabelled:
                    line += (
                        f"; {len(unlabelled)} not found with its labels (deployed by helm? "
                        f"remove with: helm uninstall {name} --namespace {record.namespace})"
                    )
                if kept:
                    flags = sorted({planning.PROTECTED.get(planning.kind_of(k), "") for k in kept})
                    shown = ", ".join(short_name(k) for k in kept[:5])
                    more = f" and {len(kept) - 5} more" if len(kept) > 5 else ""
                    line += (
                        f"; {len(kept)} left ({shown}{more}; never pruned implicitly): "
                        f"remove them with devloop sync --prune={','.join(f for f in flags if f)}"
                    )
                    records[name] = ArtifactRecord(
                        "", record.namespace, {k: record.objects[k] for k in kept}, kept=kept
                    )
                else:
                    records.pop(name, None)
                    self._delete_inventory(name, record.namespace)
                res.line = line
            self.out(res.line)
            result.artifacts.append(res)

    def _relative(self, path: Path) -> str:
        """A path as the input store names it: relative to the config's root, with `/`."""
        full = path if path.is_absolute() else self.config.root / path
        if self._root is None:
            self._root = self.config.root.resolve()
        try:
            return full.resolve().relative_to(self._root).as_posix()
        except ValueError:
            return full.as_posix()

    def _input_files(self, strategy: ArtifactStrategy) -> dict[str, str]:
        """Digest of every input file of an artifact (the files its fingerprint reads)."""
        out: dict[str, str] = {}
        root = strategy.entry.path
        if root.is_dir():
            for rel in walk_files(root, ignore=strategy.ignore()):
                out[self._relative(root / rel)] = self.hasher.file_digest(root / rel)
        elif root.exists():
            out[self._relative(root)] = self.hasher.file_digest(root)
        for values in strategy.values_files():
            if values.exists():
                out[self._relative(values)] = self.hasher.file_digest(values)
        return out

    def _attribute(
        self, res: ArtifactResult, record: ArtifactRecord | None, changed_files: list[str]
    ) -> None:
        """Name, per changed object, the input file that caused its change."""
        if not changed_files:
            return
        for key, _ in res.changed:
            obj = record.objects.get(key) if record else None
            cause = inputs_attribute(obj.source if obj else "", changed_files)
            if cause:
                res.causes[key] = cause

    def status(self) -> int:
        """Print, per artifact, what is deployed and whether it drifted; never writes."""
        check_allowed(self.target, self.config.cluster.allow_contexts)
        kube = self.kube
        uid = self._connect()
        state, warning = self.state_store.load(self.target.server, uid)
        self.out(f"devloop: cluster {self.target.display} ({self.target.server}, uid {uid[:8]})")
        if warning:
            self.out(f"devloop: warning: {warning}")
        api_versions = kube.api_versions_with_kinds()
        server_version = kube.server_version()
        self._prepare_images(plan_only=True)
        entries: list[ChartRelease | ManifestSet] = [*self.config.manifests, *self.config.charts]
        for name in sorted(set(state.artifacts) - {e.name for e in entries}):
            self.out(
                f"devloop: {name}: removed from the config, {len(state.artifacts[name].objects)} "
                "objects still applied (the next sync prunes them)"
            )
        for entry in entries:
            record = state.artifacts.get(entry.name)
            if record is None:
                self.out(f"devloop: {entry.name}: not deployed by devloop to this cluster")
                continue
            pending = sorted(k for k, r in record.objects.items() if r.pending)
            if pending:
                shown = ", ".join(short_name(k) for k in pending[:5])
                self.out(
                    f"devloop: {entry.name}: {len(pending)} objects recorded by an interrupted "
                    f"sync ({shown}{', ...' if len(pending) > 5 else ''}): the next sync "
                    "re-applies or prunes them"
                )
            namespace = self.namespace_for(entry.namespace)
            strategy = strategy_for(entry)
            current = strategy.fingerprint(self, namespace, api_versions, server_version)
            recorded = {
                k: Recorded(r.digest, r.applied, r.observed, r.pending)
                for k, r in record.objects.items()
                if not r.pending
            }
            desired = {
                k: _Desired(k, r.applied, r.source, None)
                for k, r in record.objects.items()
                if k not in record.kept
            }
            live = self._live(entry.name, recorded, desired, labelled=strategy.labelled)
            the_plan = planning.plan_artifact(
                entry.name, {k: d.obj for k, d in desired.items()}, recorded, live
            )
            drift = the_plan.by_op("drift")
            inputs = (
                "inputs unchanged"
                if current == record.fingerprint
                else "inputs changed since the last sync"
            )
            if drift:
                what = "; ".join(f"{a.name} {a.reason}" for a in drift[:5])
                self.out(
                    f"devloop: {entry.name}: {len(record.objects)} objects, {len(drift)} drifted ({what}), {inputs}"
                )
            else:
                self.out(
                    f"devloop: {entry.name}: {len(record.objects)} objects, no drift, {inputs}"
                )
        self.hasher.save(self.config.root / ".devloop" / "filestats.json")
        ownership.secure_tree(self.config.root)
        return 0

    def _connect(self) -> str:
        """The cluster's identity; an unreachable API server is one clear error."""
        from pytest_devloop.cluster.providers import ClusterUnavailable

        try:
            return self.kube.cluster_uid()
        except KubeError as e:
            raise ClusterUnavailable(
                f"cannot reach the API server of {self.target.display} ({self.target.server}): {e}"
            ) from e

    def _line(self, res: ArtifactResult) -> str:
        t = f"{res.seconds:.2f} s"
        if res.plan is None:
            return f"devloop: {res.name}: unchanged (inputs unchanged), {t}"
        counts = res.plan.counts()
        updated = res.plan.by_op("update")
        drift = res.plan.by_op("drift")
        parts = []
        upd = f"{len(updated)} updated"
        if updated:
            upd += f" ({'; '.join(a.describe() for a in updated[:3])}{'; ...' if len(updated) > 3 else ''})"
        parts.append(upd)
        parts.append(f"{counts.get('create', 0)} created")
        parts.append(f"{counts.get('prune', 0)} pruned")
        if drift:
            parts.append(
                f"{len(drift)} drift corrected ({'; '.join(a.describe() for a in drift[:3])})"
            )
        kept = res.plan.by_op("keep")
        if kept:
            flags = sorted({planning.PROTECTED.get(a.kind, "") for a in kept} - {""})
            parts.append(
                f"{len(kept)} kept (never pruned implicitly; allow with "
                f"--devloop-prune={','.join(flags)})"
            )
        parts.append(f"{counts.get('unchanged', 0)} unchanged")
        if res.hooks:
            parts.append(f"hooks: {', '.join(res.hooks)}")
        # A hook that ran is a change even when every object is unchanged: say so.
        hooks_ran = any(" ran (" in h for h in res.hooks)
        if (
            not updated
            and not drift
            and not counts.get("create")
            and not counts.get("prune")
            and not kept
            and not hooks_ran
        ):
            return f"devloop: {res.name}: unchanged ({counts.get('unchanged', 0)} objects), {t}"
        return f"devloop: {res.name}: {', '.join(parts)}, {t}"

    # -- one artifact ---------------------------------------------------------------

    def _prepare_images(self, *, plan_only: bool) -> None:
        """Digest-tag every image, resolve chart image values, build what changed.

        On the embedded cluster no container runs, so images are only built when asked
        (`--devloop-build`); their tags are still the input digests, so a source change
        still rolls the workloads that use them.
        """
        from pytest_devloop.artifacts.images import (
            Builder,
            DockerUnavailable,
            ImagePlaceholderError,
            build_images,
            chart_image_values,
            image_refs,
            loader_for,
        )

        refs = image_refs(self.config, self.hasher) if self.config.images else {}
        for c in self.config.charts:
            try:
                self._chart_values[c.name] = chart_image_values(c, refs)
            except ImagePlaceholderError as e:
                self._chart_values[c.name] = e
        self._failed_images = set()
        if not refs or plan_only:
            return
        changed = {n for n, r in refs.items() if self._last_refs.get(n) != r}
        if not changed:
            return
        skip = None
        if self.target.provider == "embedded" and not self.build:
            skip = "the embedded cluster runs no containers; --devloop-build builds it"
        if self._builder is None and skip is None:
            self._builder = Builder()
        try:
            results = build_images(
                self.config,
                refs,
                only=changed if self._last_refs else None,
                loader=None
                if skip
                else loader_for(self.target.provider, registry=self.config.image_registry),
                out=self.out,
                builder=self._builder,
                skip_reason=skip,
                # The live line shows each build's step; off a terminal the log streams.
                progress=self.progress,
                progress_done=self.progress_done,
                stream_log=not getattr(self.progress, "tty", False),
            )
            self._failed_images = {r.name for r in results if not r.ok}
        except DockerUnavailable as e:
            self.out(f"devloop: {e}")
            self._failed_images = set(refs)
        self._last_refs = {n: r for n, r in refs.items() if n not in self._failed_images}

    def _values(self, entry: ChartRelease) -> dict[str, Any]:
        """The chart's --set values with image placeholders resolved to digest tags."""
        found = self._chart_values.get(entry.name)
        if found is None:
            return dict(entry.set)
        if isinstance(found, Exception):
            raise SyncError(str(found))
        values, used = found
        failed = sorted(set(used) & self._failed_images)
        if failed:
            raise SyncError(
                f"not applied: image {', '.join(failed)} did not build (see the image lines above)"
            )
        return values

    def _queries(self, entry: ChartRelease) -> ChartQueries:
        """What the chart asks of the cluster, read once per content of its folder."""
        digest = self.hasher.tree_digest(entry.path, ignore=helmignore_matcher(entry.path))
        found = self._chart_queries.get(digest)
        if found is None:
            found = chart_queries(entry.path)
            self._chart_queries[digest] = found
        return found

    def _sync_artifact(self, job: _ArtifactSync, *, force_render: bool = False) -> None:
        """One artifact's sync, step by step: fingerprint (or skip the render), render and
        resolve, plan, hooks with apply and prune, wait, record."""
        entry, res = job.entry, job.res
        self._fingerprint_step(job)
        if isinstance(entry, ChartRelease) and job.strategy.helm_deployed:
            self._sync_helm(
                entry, job.namespace, job.fingerprint, job.records, res, job.crd_scopes,
                unchanged=job.unchanged_inputs and not job.full, plan_only=job.plan_only,
            )  # fmt: skip
            return
        if job.unchanged_inputs and not job.full and not force_render:
            self._desired_as_applied(job)
        else:
            self._render_step(job)
        self._claim(entry, job.desired)
        the_plan = self._plan_step(job)
        if not res.rendered and any(
            ownership.is_redacted(job.desired[a.key].obj) for a in the_plan.writes
        ):
            # The state holds digests of a Secret's values, not the values: to write the
            # Secret again (drift), render it.
            self._sync_artifact(job, force_render=True)
            return
        conflicts = self._check_owners(entry.name, the_plan, job.live, job.desired)
        res.plan = the_plan
        res.desired = {k: d.obj for k, d in job.desired.items()}
        if job.plan_only:
            self._report_plan(job, the_plan)
            return
        new_record, ahead, touched = self._write_step(job, the_plan)
        self._announce(job, new_record, touched)
        self._wait_step(job, touched, ahead)
        if conflicts:
            # Not synced as rendered: the next sync renders again (an adopt, a rename).
            new_record.fingerprint = ""
        job.records[entry.name] = new_record
        if conflicts:
            raise SyncError("\n".join(conflicts))
        if job.strategy.converges and res.rendered:
            self._converge(job)

    def _fingerprint_step(self, job: _ArtifactSync) -> None:
        """The artifact's namespace, its record of the last sync and its fingerprint now."""
        job.namespace = self.namespace_for(job.entry.namespace)
        job.res.namespace = job.namespace
        job.record = job.records.get(job.entry.name)
        job.fingerprint = job.strategy.fingerprint(
            self, job.namespace, job.api_versions, job.server_version
        )

    def _desired_as_applied(self, job: _ArtifactSync) -> None:
        """Nothing to render: the desired state is what was applied; only drift remains."""
        record = job.record
        assert record is not None
        job.desired = {
            key: _Desired(key, rec.applied, rec.source, None)
            for key, rec in record.objects.items()
            if key not in record.kept
        }
        job.hooks = []
        job.unstable = dict(record.unstable)

    def _render_step(self, job: _ArtifactSync) -> None:
        """Render, resolve (namespaces, labels, hooks set apart), keep generated values."""
        t_render = time.perf_counter()
        rendered = job.strategy.render(self, job)
        self._timings["render"] = self._timings.get("render", 0.0) + (
            time.perf_counter() - t_render
        )
        job.res.rendered = True
        job.desired, job.hooks = self._resolve(
            job.entry.name, rendered, job.namespace, job.crd_scopes
        )
        job.unstable = self._stabilize(job)

    def _plan_step(self, job: _ArtifactSync) -> Plan:
        """The plan against what devloop recorded (or the in-cluster inventory when the
        state is gone) and the live objects."""
        record = job.record
        job.recorded = {
            key: Recorded(rec.digest, rec.applied, _observed(rec), rec.pending)
            for key, rec in (record.objects.items() if record else [])
        }
        if record is None and not job.full:
            job.recorded.update(self._inventory(job.entry.name, job.namespace))
        job.live = self._live(job.entry.name, job.recorded, job.desired)
        return planning.plan_artifact(
            job.entry.name,
            {k: d.obj for k, d in job.desired.items()},
            job.recorded,
            job.live,
            allow_prune=self.allow_prune,
        )

    def _report_plan(self, job: _ArtifactSync, the_plan: Plan) -> None:
        name = job.entry.name
        for a in the_plan.actions:
            if a.op != "unchanged":
                fields = f" ({', '.join(a.fields)})" if a.fields else ""
                self.out(f"devloop: plan: {name}: {a.op} {a.name}{fields}: {a.reason}")
        # The summary must not read as if something had been applied.
        counts = the_plan.counts()
        job.res.line = (
            f"devloop: {name}: plan only, nothing applied: "
            f"{counts.get('update', 0)} to update, {counts.get('create', 0)} to create, "
            f"{counts.get('prune', 0)} to prune, {counts.get('drift', 0)} drifted, "
            f"{counts.get('unchanged', 0)} unchanged"
        )

    def _write_step(
        self, job: _ArtifactSync, the_plan: Plan
    ) -> tuple[ArtifactRecord, ArtifactRecord | None, list[dict[str, Any]]]:
        """Write ahead, run the pre hooks, apply, prune, run the post hooks, write the
        inventory; returns the new record, the write-ahead record and the objects to wait
        for."""
        entry, record, res = job.entry, job.record, job.res
        new_record = ArtifactRecord(
            job.fingerprint,
            job.namespace,
            {},
            dict(record.hooks) if record else {},
            unstable=job.unstable,
        )
        self._unstable = job.unstable
        first_install = record is None or not record.fingerprint
        ahead = self._write_ahead(
            entry.name, job.namespace, the_plan, job.desired, job.records, record
        )
        t_apply = time.perf_counter()
        event = "install" if first_install else "upgrade"
        hook_report = HookReport()
        hooks_started = self._timings.get("hooks", 0.0)
        try:
            self._run_hooks(job, f"pre-{event}", new_record, hook_report)
            touched = self._apply(entry.name, the_plan, job.desired, new_record, record, res)
            for key in self._prune(the_plan, job.recorded, job.live, entry.name):
                # A pruned object is a change with all its fields: tests reading it, and
                # lists that held it (by its old labels), are affected.
                res.changed.append((key, ["prune"]))
                res.previous[key] = job.recorded[key].applied
            self._run_hooks(job, f"post-{event}", new_record, hook_report)
        except HookFailed as e:
            raise SyncError(str(e)) from e
        finally:
            res.hooks += hook_report.words()
            # A hook that ran is a new object (its Job, its pods) whatever it did.
            res.changed += [(key, ["hook"]) for key in hook_report.ran_keys]
        self._write_inventory(entry.name, job.namespace, new_record, ahead or record)
        # Hooks are a step of their own in the time split.
        hook_seconds = self._timings.get("hooks", 0.0) - hooks_started
        self._timings["apply"] = self._timings.get("apply", 0.0) + (
            time.perf_counter() - t_apply - hook_seconds
        )
        return new_record, ahead, touched

    def _run_hooks(
        self, job: _ArtifactSync, event: str, new_record: ArtifactRecord, report: HookReport
    ) -> None:
        if not job.hooks:
            return
        t_hooks = time.perf_counter()
        self._hooks().run(job.hooks, event, new_record, report, force_all=job.full)
        self._timings["hooks"] = self._timings.get("hooks", 0.0) + (time.perf_counter() - t_hooks)

    def _waits(self, job: _ArtifactSync, touched: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The touched objects this artifact's sync waits for (none if it says not to)."""
        from pytest_devloop.sync.readiness import needs_wait

        if not (self.wait and getattr(job.entry, "wait", True)):
            return []
        return [o for o in touched if needs_wait(o)]

    def _announce(
        self, job: _ArtifactSync, new_record: ArtifactRecord, touched: list[dict[str, Any]]
    ) -> None:
        """After the last artifact's writes, before its readiness wait, hand
        `on_expected` the result as it will read if the wait succeeds and nothing after
        changes more: this artifact's changes attributed to their files as the loop of
        `_sync_all` does it. Its caller compares it with the result returned in the end
        before relying on it."""
        pending, self._pending = self._pending, None
        if pending is None or self.on_expected is None:
            return
        result, changed_files = pending
        res = copy.copy(job.res)
        res.causes = dict(res.causes)
        self._attribute(res, new_record, changed_files)
        provisional = copy.copy(result)
        provisional.artifacts = [*result.artifacts, res]
        provisional.changed_files = [
            *result.changed_files,
            *(f for f in changed_files if f not in result.changed_files),
        ]
        self._tell(self.on_expected, provisional)

    def _tell(self, callback: Callable[[SyncResult], None] | None, result: SyncResult) -> None:
        """A caller's callback: whatever goes wrong in it is not the sync's failure."""
        if callback is None:
            return
        try:
            callback(result)
        except Exception:
            self.on_expected = self.on_result = None  # until the caller sets them again

    def _wait_step(
        self, job: _ArtifactSync, touched: list[dict[str, Any]], ahead: ArtifactRecord | None
    ) -> None:
        """Wait until the touched workloads are ready (unless the artifact says not to)."""
        touched = self._waits(job, touched)
        if not touched:
            return
        t_ready = time.perf_counter()
        try:
            self._wait(job.entry.name, touched)
            self._timings["ready"] = self._timings.get("ready", 0.0) + (
                time.perf_counter() - t_ready
            )
        except SyncError:
            # Not recorded as synced: the next sync re-applies (a no-op on the
            # server) and waits again instead of calling a broken rollout unchanged.
            # Created objects stay known (write-ahead), so nothing is forgotten.
            if ahead is not None:
                job.records[job.entry.name] = ahead
            elif job.record is not None:
                job.records[job.entry.name] = job.record
            else:
                job.records.pop(job.entry.name, None)
            raise

    def _converge(self, job: _ArtifactSync) -> None:
        """Render once more when the CRDs this sync created change what the chart's
        `.Capabilities.APIVersions.Has` checks answer (an operator chart that renders its
        ServiceMonitor only once the CRD is served): one sync installs what two `helm
        upgrade`s would, and the next sync has nothing to do."""
        entry, res = job.entry, job.res
        assert isinstance(entry, ChartRelease)
        created = [
            key
            for key, fields in res.changed
            if planning.kind_of(key) == "CustomResourceDefinition" and fields == ["create"]
        ]
        if not created:
            return
        queries = self._queries(entry)
        if queries.api_versions == frozenset():
            return
        groups = {str((res.desired.get(k) or {}).get("spec", {}).get("group", "")) for k in created}
        if queries.api_versions is not None and not any(
            v.split("/")[0] in groups for v in queries.api_versions
        ):
            return
        self.kube.refresh()
        job.api_versions[:] = self.kube.api_versions_with_kinds()
        record = job.records[entry.name]
        namespace = self.namespace_for(entry.namespace)
        if job.strategy.fingerprint(self, namespace, job.api_versions, job.server_version) == (
            record.fingerprint
        ):
            return
        again = ArtifactResult(entry.name, job.strategy.kind)
        self._sync_artifact(
            _ArtifactSync(
                job.strategy, job.records, again, job.api_versions, job.server_version,
                job.crd_scopes, plan_only=False, full=False,
            )
        )  # fmt: skip
        res.changed += again.changed
        res.previous = {**again.previous, **res.previous}
        res.desired = again.desired
        res.hooks = [*res.hooks, *(h for h in again.hooks if " ran (" in h)]
        if res.plan is not None and again.plan is not None:
            seen = {a.key for a in res.plan.actions}
            res.plan.actions += [a for a in again.plan.actions if a.key not in seen]

    def _render_chart(self, entry: ChartRelease, job: _ArtifactSync) -> list[DesiredObject]:
        """A chart's render: against the cluster when it uses `lookup` (its own CRDs
        installed first, as Helm does), and as an upgrade once its objects exist."""
        namespace, record = job.namespace, job.record
        api_versions, server_version = job.api_versions, job.server_version
        set_values = self._values(entry)

        def render(
            cluster: ClusterAccess | None, *, upgrade: bool = record is not None
        ) -> list[DesiredObject]:
            return render_chart(
                self.helm,
                release=entry.name,
                chart=entry.path,
                namespace=namespace,
                values_files=list(entry.values),
                set_values=set_values,
                set_string=dict(entry.set_string),
                kube_version=server_version or None,
                api_versions=api_versions,
                is_upgrade=upgrade,
                cluster=cluster,
                parse_cache=self._parse_cache,
            )

        def render_live(access: ClusterAccess) -> list[DesiredObject]:
            if entry.name not in self._upgrade_renders:
                try:
                    return render(access)
                except RenderError as e:
                    # An install render against the cluster refuses objects that
                    # exist without Helm's release metadata (devloop applied them, or
                    # its state is gone): render as the upgrade it is.
                    if "cannot be imported into the current release" not in str(e):
                        raise
                self._upgrade_renders.add(entry.name)
            return render(access, upgrade=True)

        if not self._queries(entry).lookup:
            return render(None)
        # `lookup` sees live objects only in a render against the cluster.
        access = ClusterAccess(self.target.kubeconfig, self.target.context)
        # Helm maps each rendered object to a served kind, and the chart's own CRDs
        # are not served before its first install: install them first, as Helm does.
        # On a first sync a client-side render (a tenth of a render against the
        # cluster) tells whether any is missing; later, Helm's refusal does.
        offline: list[DesiredObject] | None = None
        if record is None and entry.name not in self._crds_served:
            offline = render(None)
            served = set(api_versions)
            if not [d for d in offline if _unserved_crd(d.obj, served)]:
                self._crds_served.add(entry.name)
                return render_live(access)
        else:
            try:
                return render_live(access)
            except RenderError as e:
                if "resource mapping not found" not in str(e):
                    raise
            offline = render(None)
        crds = [d for d in offline if d.obj.get("kind") == "CustomResourceDefinition"]
        if not crds:
            raise SyncError(
                f"chart {entry.name}: rendering against the cluster failed: a kind it "
                "renders is not served and its CRD is not in the chart; apply the CRD first "
                "(a manifests entry listed before the chart)"
            )
        if self._plan_only:
            self.out(
                f"devloop: {entry.name}: planned without `lookup` results: the chart's "
                "CRDs are not installed yet"
            )
            return offline
        self._install_crds(entry.name, crds)
        self._upgrade_renders.add(entry.name)  # its CRDs exist now
        self._crds_served.add(entry.name)
        api_versions[:] = self.kube.api_versions_with_kinds()
        return render_live(access)

    def _install_crds(self, artifact: str, crds: list[DesiredObject]) -> None:
        """Apply a chart's CRDs ahead of its render and wait until they are served."""
        res = self.kube.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        assert res is not None
        applied = []
        for d in crds:
            obj = dict(d.obj)
            meta = dict(obj.get("metadata") or {})
            meta["labels"] = {
                **(meta.get("labels") or {}),
                ARTIFACT_LABEL: artifact,
                PROJECT_LABEL: self.project,
            }
            meta.pop("namespace", None)
            obj["metadata"] = meta
            # Same ownership rule as every write: someone else's CRD is not taken over.
            current = self.kube.get(res, None, str(meta.get("name")))
            owner = ownership.owner_of(current, self.project, artifact) if current else None
            if owner is not None and not self.adopt:
                raise SyncError(
                    f"CustomResourceDefinition/{meta.get('name')} belongs to {owner}: not "
                    f"taken over, nothing of it deleted; take it over with "
                    f"{ownership.ADOPT_HINT}, or rename it in the chart"
                )
            force = self.force_conflicts or owner is not None
            applied.append(self.kube.apply(res, obj, force=force))
        self._wait(artifact, applied)
        self.kube.refresh()

    def _stabilize(self, job: _ArtifactSync) -> dict[str, list[list[str | int]]]:
        """Find the fields a chart generates anew on each render and keep their applied
        values; returns the unstable paths per object key (see `sync.unstable`).

        An object devloop has not rendered before (all of them on a first sync) is
        rendered a second time with the same inputs: where the two renders differ, the
        value is generated. This is said once, when found; later renders keep the value
        applied before there, so nothing is written unless an input changed it.
        """
        entry, record, desired, hooks = job.entry, job.record, job.desired, job.hooks
        unstable = dict(record.unstable) if record else {}
        if not job.strategy.generates_values:
            return unstable
        known = set(record.objects) | set(record.hooks) if record else set()
        # Hooks a sync never runs (test, delete, rollback) are never recorded: leave them
        # out, or every render would count them new and render twice.
        hook_objs = {
            object_key(h.obj): h.obj
            for h in hooks
            if h.hook is not None and SYNC_HOOK_EVENTS.intersection(h.hook.events)
        }
        fresh = [k for k in [*desired, *hook_objs] if k not in known]
        if fresh:
            again = job.strategy.render(self, job)
            desired2, hooks2 = self._resolve(entry.name, again, job.namespace, job.crd_scopes)
            second = {k: d.obj for k, d in desired2.items()}
            second.update({object_key(h.obj): h.obj for h in hooks2})
            for key in fresh:
                first = desired[key].obj if key in desired else hook_objs[key]
                paths = diff_paths(first, second[key]) if key in second else []
                if paths:
                    unstable[key] = paths
                    shown = ", ".join(path_text(p) for p in paths[:3])
                    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
                    self.out(
                        f"devloop: {entry.name}: {short_name(key)}: {shown}{more} "
                        f"{'is' if len(paths) == 1 else 'are'} generated anew on each render; "
                        "keeping the live value"
                    )
                else:
                    unstable.pop(key, None)
        for key, paths in unstable.items():
            prev = record.objects.get(key) if record else None
            if key not in desired or prev is None:
                continue
            # The live value: the state keeps only digests of a Secret's values, and the
            # value in the cluster is the one workloads use.
            live = self._get_live(desired[key])
            if live is not None:
                keep_values(desired[key].obj, paths, live)
            elif not ownership.is_redacted(prev.applied):
                keep_values(desired[key].obj, paths, prev.applied)
        return {k: v for k, v in unstable.items() if k in desired or k in hook_objs}

    def _get_live(self, d: _Desired) -> dict[str, Any] | None:
        obj = d.obj
        res = d.res or self.kube.resource(str(obj.get("apiVersion")), str(obj.get("kind")))
        if res is None:
            return None
        m = obj.get("metadata") or {}
        return self.kube.get(res, m.get("namespace"), str(m.get("name")))

    def _resolve(
        self,
        artifact: str,
        rendered: list[DesiredObject],
        namespace: str,
        crd_scopes: dict[tuple[str, str], bool],
        *,
        label: bool = True,
    ) -> tuple[dict[str, _Desired], list[DesiredObject]]:
        """Namespaces filled in, the artifact label added (unless not `label`: objects
        Helm installed are read as they are), hooks set apart."""
        # CRDs rendered here define kinds the cluster may not serve yet.
        for d in rendered:
            if d.obj.get("kind") == "CustomResourceDefinition":
                spec = d.obj.get("spec") or {}
                for v in spec.get("versions") or []:
                    gv = f"{spec.get('group')}/{v.get('name')}"
                    crd_scopes[(gv, str((spec.get("names") or {}).get("kind")))] = (
                        spec.get("scope", "Namespaced") == "Namespaced"
                    )
        desired: dict[str, _Desired] = {}
        hooks: list[DesiredObject] = []
        for d in rendered:
            obj = d.obj
            api_version = str(obj.get("apiVersion", ""))
            kind = str(obj.get("kind", ""))
            res = self.kube.resource(api_version, kind)
            if res is not None:
                namespaced = res.namespaced
            elif (api_version, kind) in crd_scopes:
                namespaced = crd_scopes[(api_version, kind)]
            else:
                raise SyncError(
                    f"{d.source}: kind {kind} ({api_version}) is not served by the cluster: its "
                    f"CustomResourceDefinition is missing. Put the CRD in the chart's crds/ folder, "
                    f"or in a manifests entry listed in devloop.yaml (manifests are applied before charts)"
                )
            m = obj.setdefault("metadata", {})
            if namespaced:
                if self.namespace_override or not m.get("namespace"):
                    m["namespace"] = namespace
            else:
                m.pop("namespace", None)
            if d.hook is not None:
                hooks.append(d)
                continue
            if label:
                labels = m.setdefault("labels", {})
                labels[ARTIFACT_LABEL] = artifact
                labels[PROJECT_LABEL] = self.project
                if not namespaced:
                    labels.update(self.ci_labels)
            key = object_key(obj)
            if key in desired:
                raise SyncError(
                    f"{d.source}: {short_name(key)} is rendered twice (also by {desired[key].source})"
                )
            desired[key] = _Desired(key, obj, d.source, res)
        return desired, hooks

    # -- live state -----------------------------------------------------------------

    def _live(
        self,
        artifact: str,
        recorded: dict[str, Recorded],
        desired: dict[str, _Desired],
        *,
        labelled: bool = True,
    ) -> dict[str, dict[str, Any] | None]:
        """Live objects of the inventory, one list request per kind and namespace
        (`labelled`: only those with devloop's artifact label; Helm-path objects have none)."""
        wanted: dict[tuple[str, str, str], list[str]] = {}
        for key, rec in recorded.items():
            obj = rec.applied or desired.get(key, _Desired(key, {}, "", None)).obj
            if not obj:
                continue
            m = obj.get("metadata") or {}
            wanted.setdefault(
                (str(obj.get("apiVersion")), str(obj.get("kind")), m.get("namespace") or ""), []
            ).append(key)
        live: dict[str, dict[str, Any] | None] = dict.fromkeys(recorded)
        # Only devloop-labelled collections: the watch streams see those (Helm-path
        # objects carry no label of ours).
        cache = self._live_cache if labelled else None
        for (api_version, kind, namespace), keys in wanted.items():
            res = self.kube.resource(api_version, kind)
            if res is None:
                continue
            selector = f"{ARTIFACT_LABEL}={artifact}" if labelled else None
            items = None
            if cache is not None:
                path = self.kube.path(res, namespace or None)
                items = cache.get(path, selector or "")
                if items is None:
                    version = cache.before_list(path)
                    items = self.kube.list(res, namespace or None, selector)
                    cache.put(path, selector or "", version, items)
            else:
                items = self.kube.list(res, namespace or None, selector)
            for item in items:
                k = object_key(dict(item, apiVersion=api_version))
                if k in live:
                    live[k] = item
            del keys
        return live

    def _inventory(self, artifact: str, namespace: str) -> dict[str, Recorded]:
        """Objects this project applied for the artifact from another checkout of the
        same `project:` or with lost state (its own inventory), or by a devloop from
        before project identities (the legacy inventory, adopted with one line)."""
        cm_res = self.kube.resource("v1", "ConfigMap")
        assert cm_res is not None
        cm = self.kube.get(cm_res, namespace, inventory_name(artifact, self.project))
        if cm is None:
            cm = self.kube.get(cm_res, namespace, INVENTORY_PREFIX + artifact)
            labels = ((cm or {}).get("metadata") or {}).get("labels") or {}
            if cm is None or PROJECT_LABEL in labels:
                return {}
            self.out(
                f"devloop: {artifact}: adopting the inventory {INVENTORY_PREFIX + artifact} "
                "written by an earlier devloop (objects without a project label)"
            )
        try:
            keys = json.loads((cm.get("data") or {}).get("objects", "[]"))
        except ValueError:
            return {}
        out: dict[str, Recorded] = {}
        for entry in keys:
            if isinstance(entry, dict) and "key" in entry:
                applied = {
                    "apiVersion": entry.get("apiVersion"),
                    "kind": entry["key"].split("/")[1],
                    "metadata": {"name": entry["key"].split("/", 3)[3]},
                }
                ns = entry["key"].split("/")[2]
                if ns:
                    applied["metadata"]["namespace"] = ns
                out[entry["key"]] = Recorded("", applied, None)
        return out

    def _write_inventory(
        self, artifact: str, namespace: str, new: ArtifactRecord, old: ArtifactRecord | None
    ) -> None:
        if old is not None and sorted(old.objects) == sorted(new.objects):
            return
        cm_res = self.kube.resource("v1", "ConfigMap")
        assert cm_res is not None
        objects = [
            {"key": k, "apiVersion": rec.applied.get("apiVersion")}
            for k, rec in sorted(new.objects.items())
        ]
        self._ensure_namespace(namespace)
        self.kube.apply(
            cm_res,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": inventory_name(artifact, self.project),
                    "namespace": namespace,
                    "labels": {
                        "app.kubernetes.io/managed-by": "pytest-devloop",
                        ARTIFACT_LABEL: artifact,
                        PROJECT_LABEL: self.project,
                    },
                },
                "data": {"objects": json.dumps(objects), "project": self.project},
            },
            force=True,
        )

    def _delete_inventory(self, artifact: str, namespace: str) -> None:
        cm_res = self.kube.resource("v1", "ConfigMap")
        if cm_res is not None and namespace:
            self.kube.delete(cm_res, namespace, inventory_name(artifact, self.project))

    def _ensure_namespace(self, namespace: str) -> None:
        ns_res = self.kube.resource("v1", "Namespace")
        assert ns_res is not None
        if self.kube.get(ns_res, None, namespace) is None:
            try:
                self.kube.create(
                    ns_res,
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                )
            except KubeError as e:
                if e.status != 409:
                    raise

    # -- writes -----------------------------------------------------------------------

    def _apply(
        self,
        artifact: str,
        the_plan: Plan,
        desired: dict[str, _Desired],
        new_record: ArtifactRecord,
        old_record: ArtifactRecord | None,
        res: ArtifactResult,
    ) -> list[dict[str, Any]]:
        """Apply the plan's writes; returns the applied objects to wait for."""
        touched: list[dict[str, Any]] = []
        namespaces = {
            (d.obj.get("metadata") or {}).get("namespace")
            for d in desired.values()
            if (d.obj.get("metadata") or {}).get("namespace")
        }
        writes = the_plan.writes
        if any(a.op != "unchanged" for a in writes):
            for ns in sorted(n for n in namespaces if n):
                if not any(
                    a.kind == "Namespace" and a.key.endswith(f"/{ns}") for a in the_plan.actions
                ):
                    self._ensure_namespace(ns)
        write_keys = {a.key for a in writes}
        crds_applied: list[dict[str, Any]] = []
        for n, action in enumerate(writes, 1):
            self.progress(f"{artifact}: objects applied {n - 1}/{len(writes)}")
            d = desired[action.key]
            if crds_applied and action.kind != "CustomResourceDefinition":
                # Custom resources of a CRD applied moments ago are refused until the
                # CRD is Established (on a real API server, about a second later).
                self._wait(artifact, crds_applied)
                self.kube.refresh()
                crds_applied = []
            api_res = d.res or self.kube.resource(
                str(d.obj.get("apiVersion")), str(d.obj.get("kind"))
            )
            if api_res is None:
                raise SyncError(
                    f"{d.source}: kind {d.obj.get('kind')} ({d.obj.get('apiVersion')}) is not served "
                    f"by the cluster; is its CustomResourceDefinition applied and Established?"
                )
            force = self.force_conflicts or action.op == "drift" or action.key in self._adopting
            try:
                live = self.kube.apply(api_res, d.obj, force=force)
            except KubeError as e:
                if e.status == 409:
                    raise SyncError(
                        f"{action.name}: {e.message}. Another field manager owns these fields; "
                        f"take them over with --devloop-force-conflicts, or stop changing them outside "
                        f"devloop"
                    ) from e
                raise SyncError(f"{d.source}: applying {action.name} failed: {e}") from e
            if action.kind == "CustomResourceDefinition":
                crds_applied.append(live)
            new_record.objects[action.key] = ObjectRecord(
                planning.digest(d.obj), d.obj, d.source, project(d.obj, live)
            )
            res.changed.append((action.key, action.fields or [action.op]))
            prev = old_record.objects.get(action.key) if old_record else None
            if prev is not None:
                res.previous[action.key] = prev.applied
            touched.append(live)
        # Unchanged objects keep their record (and their observed baseline).
        for action in the_plan.actions:
            if action.op == "unchanged" and action.key not in write_keys:
                prev = old_record.objects.get(action.key) if old_record else None
                d = desired[action.key]
                if prev is not None:
                    new_record.objects[action.key] = prev
                else:
                    new_record.objects[action.key] = ObjectRecord(
                        planning.digest(d.obj), d.obj, d.source, None
                    )
            elif action.op == "keep" and old_record and action.key in old_record.objects:
                new_record.objects[action.key] = old_record.objects[action.key]
                new_record.kept.append(action.key)
        self.progress_done()
        return touched

    def _prune(
        self,
        the_plan: Plan,
        recorded: dict[str, Recorded],
        live: dict[str, dict[str, Any] | None],
        artifact: str,
    ) -> list[str]:
        """Delete what left the artifact, only where the live object is this project's;
        returns the keys deleted."""
        pruned = []
        for action in the_plan.prunes:
            current = live.get(action.key)
            if current is None:
                # Gone already (or never created), or no longer this artifact's.
                action.op, action.reason = "gone", "not found with this artifact's label"
                continue
            owner = ownership.owner_of(current, self.project, artifact)
            if owner is not None:
                action.op, action.reason = "foreign", f"belongs to {owner}"
                self.out(
                    f"devloop: {artifact}: {action.name}: not pruned: it belongs to {owner} now"
                )
                continue
            obj = recorded[action.key].applied
            res = self.kube.resource(str(obj.get("apiVersion")), action.kind)
            if res is None:
                continue
            m = obj.get("metadata") or {}
            self.kube.delete(res, m.get("namespace"), str(m.get("name")))
            pruned.append(action.key)
        return pruned

    # -- ownership ----------------------------------------------------------------------

    def _claim(self, entry: ChartRelease | ManifestSet, desired: dict[str, _Desired]) -> None:
        """One object, one artifact: two artifacts of this project rendering the same
        object would overwrite and prune each other."""
        for key, d in desired.items():
            other = self._claimed.setdefault(key, entry.name)
            if other != entry.name:
                ns = key.split("/")[2]
                where = f" in namespace {ns}" if ns else ""
                raise SyncError(
                    f"{short_name(key)}{where} is rendered by both {other!r} and "
                    f"{entry.name!r} ({d.source}); keep it in one of them (rename it in the "
                    "other, or disable it there with a value)"
                )

    def _check_owners(
        self,
        artifact: str,
        the_plan: Plan,
        live: dict[str, dict[str, Any] | None],
        desired: dict[str, _Desired],
    ) -> list[str]:
        """Writes that would take over someone else's object: with adopt, taken over
        (one line each); without, left alone (op `foreign`), one line each returned."""
        creates = [a for a in the_plan.writes if a.op == "create"]
        existing = self._existing([a.key for a in creates], desired)
        lines: list[str] = []
        self._adopting = set()
        for action in the_plan.writes:
            current = existing.get(action.key) if action.op == "create" else live.get(action.key)
            if current is None:
                continue
            owner = ownership.owner_of(current, self.project, artifact)
            if owner is None:
                continue
            ns = action.key.split("/")[2]
            where = f" in namespace {ns}" if ns else ""
            if self.adopt:
                self._adopting.add(action.key)
                self.out(f"devloop: {artifact}: adopting {action.name}{where} from {owner}")
                continue
            action.op = "foreign"
            action.reason = f"belongs to {owner}"
            lines.append(
                f"{action.name}{where} belongs to {owner}: not taken over, nothing of it "
                f"deleted; take it over with {ownership.ADOPT_HINT}, or rename it in the chart"
            )
        return lines

    def _existing(self, keys: list[str], desired: dict[str, _Desired]) -> dict[str, dict[str, Any]]:
        """Live objects at these keys, whoever owns them (one list per kind and namespace)."""
        wanted: dict[tuple[str, str, str], set[str]] = {}
        for key in keys:
            obj = desired[key].obj
            m = obj.get("metadata") or {}
            wanted.setdefault(
                (str(obj.get("apiVersion")), str(obj.get("kind")), m.get("namespace") or ""),
                set(),
            ).add(key)
        found: dict[str, dict[str, Any]] = {}
        for (api_version, kind, namespace), group in wanted.items():
            res = self.kube.resource(api_version, kind)
            if res is None:
                continue
            for item in self.kube.list(res, namespace or None):
                k = object_key(dict(item, apiVersion=api_version))
                if k in group:
                    found[k] = item
        return found

    def _write_ahead(
        self,
        artifact: str,
        namespace: str,
        the_plan: Plan,
        desired: dict[str, _Desired],
        records: dict[str, ArtifactRecord],
        record: ArtifactRecord | None,
    ) -> ArtifactRecord | None:
        """Record the objects about to be created before creating them (state and
        in-cluster inventory), so a sync killed mid-create leaves nothing unknown."""
        creates = [a for a in the_plan.writes if a.op == "create"]
        if not creates or self._state is None:
            return None
        ahead = ArtifactRecord(
            record.fingerprint if record else "",
            namespace,
            dict(record.objects) if record else {},
            dict(record.hooks) if record else {},
            list(record.kept) if record else [],
            dict(record.unstable) if record else {},
        )
        for a in creates:
            d = desired[a.key]
            ahead.objects[a.key] = ObjectRecord("", d.obj, d.source, None, pending=True)
        records[artifact] = ahead
        self.state_store.save(self._state)
        self._write_inventory(artifact, namespace, ahead, record)
        return ahead

    def _wait(self, artifact: str, objects: list[dict[str, Any]]) -> None:
        from pytest_devloop.sync.readiness import Waiter, WaitTimeout, needs_wait

        todo = [o for o in objects if needs_wait(o)]
        if not todo:
            return
        waiter = Waiter(self.kube.api_client, timeout=self.config.wait_timeout)
        waiter.progress = lambda text: self.progress(f"{artifact}: {text}")
        try:
            waiter.wait_or_raise(todo)
        except WaitTimeout as e:
            raise SyncError(str(e)) from e
        finally:
            self.progress_done()

    # -- hooks ------------------------------------------------------------------------

    def _hooks(self) -> HookRunner:
        return HookRunner(
            self.kube,
            timeout=self.config.wait_timeout,
            ensure_namespace=self._ensure_namespace,
            digest_of=self._hook_digest,
        )

    def _hook_digest(self, key: str, obj: dict[str, Any]) -> str:
        # A hook with a generated value (a random token) is the same hook on each render.
        return planning.digest(without(obj, self._unstable.get(key, [])))

    # -- helm deployer ------------------------------------------------------------------

    def _sync_helm(
        self,
        entry: ChartRelease,
        namespace: str,
        fingerprint: str,
        records: dict[str, ArtifactRecord],
        res: ArtifactResult,
        crd_scopes: dict[tuple[str, str], bool],
        *,
        unchanged: bool,
        plan_only: bool,
    ) -> None:
        """`deployer: helm`: Helm installs the release; devloop then reads what it
        installed (`helm get manifest` and `hooks`) and records it as for any chart, so
        status, drift and affected-test selection know its objects. A release whose
        inputs did not change runs no Helm command at all."""
        record = records.get(entry.name)
        why = "deployer: helm"
        drifted: list[tuple[str, str]] = []
        if unchanged:
            assert record is not None
            drifted = self._helm_drift(entry.name, record)
            if drifted:
                # Helm's upgrade restores what its release holds (deleted objects are
                # created again, edited fields merged back), as a per-object sync would.
                unchanged = False
                why = (
                    "drift corrected: "
                    + ", ".join(f"{short_name(k)} {w}" for k, w in drifted[:3])
                    + (f" +{len(drifted) - 3}" if len(drifted) > 3 else "")
                )
        if unchanged:
            assert record is not None
            res.desired = {k: r.applied for k, r in record.objects.items()}
            res.line = (
                f"devloop: {entry.name}: unchanged ({len(record.objects)} objects; "
                "deployed with helm)"
            )
            return
        if plan_only:
            res.line = f"devloop: {entry.name}: would run helm upgrade --install ({why})"
            return
        self._helm_upgrade(entry, namespace)
        # Helm writes what its three-way merge decides and re-runs every hook on each
        # upgrade; the manifest diff below names the intended changes, not all of them.
        res.opaque = f"helm upgrade --install {entry.name} ran (Helm does not list what it wrote)"
        rendered = self._helm_release_objects(entry, namespace)
        desired, hooks = self._resolve(entry.name, rendered, namespace, crd_scopes, label=False)
        new_record = ArtifactRecord(fingerprint, namespace)
        recorded = {k: Recorded(planning.digest(d.obj), d.obj, None) for k, d in desired.items()}
        live = self._live(entry.name, recorded, desired, labelled=False)
        updated: list[str] = []
        created = removed = 0
        for key, d in desired.items():
            prev = record.objects.get(key) if record else None
            digest = planning.digest(d.obj)
            current = live.get(key)
            observed = project(d.obj, current) if current is not None else None
            new_record.objects[key] = ObjectRecord(digest, d.obj, d.source, observed)
            if prev is None:
                res.changed.append((key, ["create"]))
                created += 1
            elif prev.digest != digest:
                paths = [path_text(p) for p in diff_paths(prev.applied, d.obj)]
                res.changed.append((key, paths))
                res.previous[key] = prev.applied
                updated.append(f"{short_name(key)}: {', '.join(paths[:3])}")
        for h in hooks:
            new_record.hooks[object_key(h.obj)] = planning.digest(h.obj)
        seen = {k for k, _ in res.changed}
        res.changed += [(k, ["drift"]) for k, _ in drifted if k not in seen]
        gone = (
            {k: r.applied for k, r in record.objects.items() if k not in desired} if record else {}
        )
        for key in sorted(gone):
            res.changed.append((key, ["prune"]))
            res.previous[key] = gone[key]
            removed += 1
        res.desired = {k: d.obj for k, d in desired.items()}
        records[entry.name] = new_record
        upd = f"{len(updated)} updated"
        if updated:
            upd += f" ({'; '.join(updated[:3])}{'; ...' if len(updated) > 3 else ''})"
        unchanged_count = len(desired) - created - len(updated)
        res.line = (
            f"devloop: {entry.name}: helm upgrade --install ({why}): {upd}, {created} created, "
            f"{removed} removed, {unchanged_count} unchanged"
            + (f", {len(hooks)} hooks run by helm" if hooks else "")
        )

    def _helm_drift(self, artifact: str, record: ArtifactRecord) -> list[tuple[str, str]]:
        """Objects of a Helm release that were deleted or edited since the last sync."""
        recorded = {k: Recorded(r.digest, r.applied, r.observed) for k, r in record.objects.items()}
        live = self._live(artifact, recorded, {}, labelled=False)
        out: list[tuple[str, str]] = []
        for key, rec in sorted(record.objects.items()):
            current = live.get(key)
            if current is None:
                out.append((key, "deleted"))
            elif rec.observed is not None and (
                ownership.redact(project(rec.applied, current), ownership.is_secret(rec.applied))
                != rec.observed
            ):
                # A Secret's values are recorded as digests: compare what was recorded.
                out.append((key, "edited"))
        return out

    def _helm_release_objects(self, entry: ChartRelease, namespace: str) -> list[DesiredObject]:
        """The release's objects and hooks as Helm recorded them."""
        out: list[DesiredObject] = []
        for what in ("manifest", "hooks"):
            cmd = [
                self.helm.executable, "get", what, entry.name, "--namespace", namespace,
                *ClusterAccess(self.target.kubeconfig, self.target.context).helm_flags(),
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
            if proc.returncode != 0:
                raise SyncError(
                    f"helm get {what} {entry.name} failed after the upgrade:\n{proc.stderr.strip()}"
                )
            out += parse_stream(proc.stdout, artifact=entry.name, default_source=str(entry.path))
        return out

    def _helm_upgrade(self, entry: ChartRelease, namespace: str) -> None:
        cmd = [
            self.helm.executable, "upgrade", "--install", entry.name, str(entry.path),
            "--namespace", namespace,
        ]  # fmt: skip
        if entry.create_namespace:
            cmd.append("--create-namespace")
        cmd += helm_values_args(list(entry.values), self._values(entry), dict(entry.set_string))
        if entry.wait:
            cmd += ["--wait", "--timeout", f"{int(self.config.wait_timeout)}s"]
        cmd += ClusterAccess(self.target.kubeconfig, self.target.context).helm_flags()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SyncError(f"helm upgrade --install {entry.name} failed:\n{proc.stderr.strip()}")


def _unserved_crd(obj: dict[str, Any], served: set[str]) -> bool:
    """A CustomResourceDefinition with a served version the cluster does not serve yet."""
    if obj.get("kind") != "CustomResourceDefinition":
        return False
    spec = obj.get("spec") or {}
    kind = str((spec.get("names") or {}).get("kind"))
    return any(
        f"{spec.get('group')}/{v.get('name')}/{kind}" not in served
        for v in spec.get("versions") or []
        if isinstance(v, dict) and v.get("served", True)
    )


# Built-in kinds that have no namespace; anything else rendered without a namespace is
# given the artifact's (the static tier cannot ask a cluster).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace", "Node", "PersistentVolume", "StorageClass", "CustomResourceDefinition",
        "ClusterRole", "ClusterRoleBinding", "PriorityClass", "IngressClass", "CSIDriver",
        "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService",
        "RuntimeClass", "VolumeAttachment", "CSINode",
    }
)  # fmt: skip


def render_static(config: Config, *, helm: HelmTool | None = None) -> dict[str, dict[str, Any]]:
    """Every artifact's desired objects without a cluster (the `rendered` fixture's tier).

    Helm's default Kubernetes version and API versions apply, and image placeholders
    resolve to the digest tags of the current sources, so these objects are what a sync
    would apply unless a chart inspects the cluster (`.Capabilities`, `lookup`).
    """
    from pytest_devloop.artifacts.images import chart_image_values, image_refs

    helm_tool = helm or HelmTool.find(start=config.root)
    hasher = FileHasher.load(config.root / ".devloop" / "filestats.json")
    refs = image_refs(config, hasher) if config.images else {}
    out: dict[str, dict[str, Any]] = {}
    rendered: list[tuple[str, DesiredObject]] = []
    for m in config.manifests:
        ns = m.namespace or config.namespace
        rendered += [
            (ns, d) for d in render_manifests(m.path, kustomize=m.kustomize, artifact=m.name)
        ]
    for c in config.charts:
        ns = c.namespace or config.namespace
        values, _used = chart_image_values(c, refs)
        objs = render_chart(
            helm_tool,
            release=c.name,
            chart=c.path,
            namespace=ns,
            values_files=list(c.values),
            set_values=values,
            set_string=dict(c.set_string),
            kube_version=None,
            api_versions=[],
        )
        rendered += [(ns, d) for d in objs]
    for ns, d in rendered:
        if d.hook is not None:
            continue
        m = d.obj.setdefault("metadata", {})
        if d.obj.get("kind") in CLUSTER_SCOPED:
            m.pop("namespace", None)
        elif not m.get("namespace"):
            m["namespace"] = ns
        out[object_key(d.obj)] = d.obj
    return out


def _observed(rec: ObjectRecord) -> Any:
    return rec.observed
