"""What differs between kinds of artifact in a sync: one small strategy per kind.

Owns, per kind (a chart devloop applies, a chart Helm installs, a set of manifests or a
kustomization), the facts the syncer asks instead of switching on the config entry's
type: its inputs (and their ignore rule), the parts of its fingerprint, how it renders,
whether a render may generate values anew, whether its objects carry devloop's label,
and whether CRDs it creates can change its next render.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_devloop.artifacts.fingerprint import IgnoreFn, combine, helmignore_matcher
from pytest_devloop.artifacts.render import DesiredObject, render_manifests
from pytest_devloop.config.model import ChartRelease, ManifestSet

if TYPE_CHECKING:
    from pytest_devloop.sync.syncer import Syncer, _ArtifactSync


class ArtifactStrategy:
    kind = ""  # chart | manifests (the word in `ArtifactResult.kind` and fingerprints)
    # Objects carry devloop's artifact label (live reads select by it).
    labelled = True
    # Helm installs it (devloop reads back what Helm installed).
    helm_deployed = False
    # A render may generate values anew (random tokens): a first render is done twice.
    generates_values = False
    # CRDs this sync creates may change what its next render gives (`.Capabilities`).
    converges = False

    def __init__(self, entry: ChartRelease | ManifestSet) -> None:
        self.entry = entry

    def ignore(self) -> IgnoreFn | None:
        """The rule for files of its folder that are not inputs."""
        return None

    def values_files(self) -> list[Path]:
        return []

    def fingerprint(
        self, syncer: Syncer, namespace: str, api_versions: list[str], server_version: str
    ) -> str:
        raise NotImplementedError

    def render(self, syncer: Syncer, job: _ArtifactSync) -> list[DesiredObject]:
        raise NotImplementedError


class Manifests(ArtifactStrategy):
    """A file or folder of manifests, or a kustomization (`kustomize:`)."""

    kind = "manifests"

    def fingerprint(
        self, syncer: Syncer, namespace: str, api_versions: list[str], server_version: str
    ) -> str:
        entry = self.entry
        assert isinstance(entry, ManifestSet)
        digest = (
            syncer.hasher.tree_digest(entry.path)
            if entry.path.is_dir()
            else syncer.hasher.file_digest(entry.path)
        )
        return combine(
            "manifests", entry.name, namespace, syncer.project, digest, str(entry.kustomize)
        )

    def render(self, syncer: Syncer, job: _ArtifactSync) -> list[DesiredObject]:
        entry = self.entry
        assert isinstance(entry, ManifestSet)
        return render_manifests(entry.path, kustomize=entry.kustomize, artifact=entry.name)


class Chart(ArtifactStrategy):
    """A Helm chart devloop renders and applies object by object."""

    kind = "chart"
    generates_values = True
    converges = True

    def __init__(self, entry: ChartRelease) -> None:
        super().__init__(entry)
        self.chart = entry

    def ignore(self) -> IgnoreFn | None:
        return helmignore_matcher(self.chart.path)

    def values_files(self) -> list[Path]:
        return [Path(v) for v in self.chart.values]

    def fingerprint(
        self, syncer: Syncer, namespace: str, api_versions: list[str], server_version: str
    ) -> str:
        entry = self.chart
        return combine(
            "chart",
            entry.name,
            namespace,
            syncer.project,
            syncer.hasher.tree_digest(entry.path, ignore=helmignore_matcher(entry.path)),
            *(syncer.hasher.file_digest(v) for v in entry.values),
            *(str(v) for v in entry.values),
            json.dumps(syncer._values(entry), sort_keys=True, default=str),
            json.dumps(entry.set_string, sort_keys=True),
            entry.deployer,
            syncer._helm_version(),
            *syncer._queries(entry).capabilities(api_versions, server_version),
        )

    def render(self, syncer: Syncer, job: _ArtifactSync) -> list[DesiredObject]:
        # Stateful across syncs (upgrade renders, CRDs installed first): the syncer's.
        return syncer._render_chart(self.chart, job)


class HelmRelease(Chart):
    """A chart with `deployer: helm`: Helm installs the release, devloop reads it back."""

    labelled = False
    helm_deployed = True
    generates_values = False
    converges = False


def strategy_for(entry: ChartRelease | ManifestSet) -> ArtifactStrategy:
    if isinstance(entry, ChartRelease):
        return HelmRelease(entry) if entry.deployer == "helm" else Chart(entry)
    return Manifests(entry)
