"""Rendering: from a chart release or a manifest set to the desired objects it declares.

Owns the helm and kubectl command-line adapters (`HelmTool`, `find_kubectl`),
`render_chart` (`helm template`, plus the `helm dependency build` a chart with local
dependencies may need), `render_manifests` (files, folders, kustomize), the parsing of a
rendered stream into `DesiredObject`s, Helm hook annotations (`HookSpec`), the static
`uses_lookup` check, and the typed errors that name the template, file and line to fix.

Objects come out as rendered: filling in namespaces (only the sync engine knows from
discovery which kinds are namespaced), labelling, planning and applying belong to the
sync engine. Rendered YAML is read as Kubernetes clients read it (sigs.k8s.io/yaml, that
is YAML 1.1 as go-yaml v2 resolves it), not as PyYAML does by default: see `load_yaml`.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pytest_devloop.artifacts.helmlib import HelmLibrary
    from pytest_devloop.artifacts.parsecache import ParseCache

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml: same results, about 10x slower
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = [
    "HOOK_EVENTS",
    "ChartQueries",
    "ChartRenderError",
    "ClusterAccess",
    "DesiredObject",
    "HelmTool",
    "HookSpec",
    "ManifestError",
    "ObjectRef",
    "RenderError",
    "chart_queries",
    "find_kubectl",
    "helm_values_args",
    "load_yaml",
    "parse_stream",
    "render_chart",
    "render_manifests",
    "uses_lookup",
]

log = logging.getLogger(__name__)

HELM_TIMEOUT = 120.0
DEPENDENCY_TIMEOUT = 300.0
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


# -- errors -----------------------------------------------------------------------------


class RenderError(Exception):
    """Rendering an artifact failed; `str()` is one paragraph naming the artifact and the fix."""

    def __init__(self, artifact: str, message: str) -> None:
        super().__init__(message)
        self.artifact = artifact
        self.message = message

    def __str__(self) -> str:
        return self.message


class ChartRenderError(RenderError):
    """`helm template` failed. The message is helm's own text after
    `chart <release> (<chart path>): `; `template` and `line` locate the fault when helm
    names one (the innermost location when templates include each other).

    For a YAML parse error, `line` counts lines of that template's *rendered* output;
    for template parse and execution errors, lines of the template source.
    """

    def __init__(
        self,
        release: str,
        chart: Path,
        helm_message: str,
        *,
        hint: str = "",
        template: str | None = None,
        line: int | None = None,
    ) -> None:
        self.release = release
        self.chart = chart
        self.helm_message = helm_message
        self.locations = _error_locations(helm_message)
        if template is not None:
            self.locations.append((template, line or 0))
        self.template: str | None = self.locations[-1][0] if self.locations else None
        self.line: int | None = (
            line if template is not None else (self.locations[-1][1] if self.locations else None)
        )
        message = f"chart {release} ({chart}): {helm_message}"
        if hint:
            message += f"\n{hint}"
        super().__init__(release, message)

    @property
    def template_path(self) -> Path | None:
        """The file on disk behind `template` (helm names it `<chart name>/templates/...`),
        when it exists: None for templates inside packaged subcharts."""
        if self.template is None or "/" not in self.template:
            return None
        path = self.chart / self.template.split("/", 1)[1]
        return path if path.is_file() else None


class ManifestError(RenderError):
    """A manifest document is not valid YAML or not a Kubernetes object.

    `file` and `line` (1-based) locate it; `doc_index` is the 0-based index of the
    document among the non-empty documents of the file, when the problem is one document.
    """

    def __init__(
        self,
        artifact: str,
        file: str,
        problem: str,
        *,
        line: int | None = None,
        doc_index: int | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.doc_index = doc_index
        self.problem = problem
        where = f"{file}:{line}" if line is not None else file
        super().__init__(artifact, f"{where}: {problem}")


# -- objects ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ObjectRef:
    """Identity of a Kubernetes object: group, kind, namespace and name.

    Equality and hashing follow `key()`, so the same object served under two versions of
    its group (`apps/v1`, `apps/v1beta2`) is one ref. `namespace` is None for
    cluster-scoped objects and for namespaced ones not yet given a namespace.
    """

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(
            str(obj.get("apiVersion", "")),
            str(obj.get("kind", "")),
            meta.get("namespace") or None,
            str(meta.get("name", "")),
        )

    def group(self) -> str:
        """API group: `apps` for `apps/v1`, "" for the core group (`v1`)."""
        return self.api_version.rpartition("/")[0]

    def key(self) -> str:
        """`group/Kind/namespace/name`, e.g. `apps/Deployment/shop/web` or
        `/ConfigMap/shop/settings` (core group) or `rbac.authorization.k8s.io/ClusterRole//x`
        (cluster-scoped): the same key as `pytest_devloop.sync.plan.object_key`."""
        return f"{self.group()}/{self.kind}/{self.namespace or ''}/{self.name}"

    def long(self) -> str:
        """`Deployment.apps shop/web`, `Service shop/api`, `ClusterRole.rbac.authorization.k8s.io x`."""
        group = self.group()
        kind = f"{self.kind}.{group}" if group else self.kind
        return f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


HOOK_ANNOTATION = "helm.sh/hook"
HOOK_WEIGHT_ANNOTATION = "helm.sh/hook-weight"
HOOK_DELETE_ANNOTATION = "helm.sh/hook-delete-policy"
HOOK_EVENTS = frozenset(
    {
        "pre-install",
        "post-install",
        "pre-delete",
        "post-delete",
        "pre-upgrade",
        "post-upgrade",
        "pre-rollback",
        "post-rollback",
        "test",
    }
)
_GO_ATOI = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class HookSpec:
    """A Helm hook, read from its annotations as Helm reads them: events lower-cased and
    trimmed (`test-success` is the old name of `test`), the weight parsed like Go's Atoi
    (anything else counts as 0), delete policies defaulting to `before-hook-creation`."""

    events: tuple[str, ...]
    weight: int = 0
    delete_policies: tuple[str, ...] = ("before-hook-creation",)

    @property
    def is_test(self) -> bool:
        return "test" in self.events

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> HookSpec | None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(HOOK_ANNOTATION)
        if raw is None:
            return None
        events = []
        for part in str(raw).split(","):
            event = part.strip().lower()
            events.append("test" if event == "test-success" else event)
        weight_text = str(annotations.get(HOOK_WEIGHT_ANNOTATION, ""))
        weight = int(weight_text) if _GO_ATOI.fullmatch(weight_text) else 0
        policies = tuple(
            p.strip().lower()
            for p in str(annotations.get(HOOK_DELETE_ANNOTATION, "")).split(",")
            if p.strip()
        )
        return cls(tuple(events), weight, policies or ("before-hook-creation",))


@dataclass
class DesiredObject:
    """One object rendered from an artifact.

    `obj` is the object as rendered: its namespace is not filled in yet. `source` is the
    template path as helm names it (`shop/templates/deployment.yaml`,
    `shop/charts/cache/templates/svc.yaml`, `shop/crds/widgets.yaml`) or the manifest
    file. `doc_index` is the object's position among the non-empty documents rendered from
    that source (items of a `kind: List` share their list's index). `hook` is parsed from
    the `helm.sh/hook*` annotations when the object is a Helm hook.
    """

    artifact: str
    obj: dict[str, Any]
    source: str
    doc_index: int
    hook: HookSpec | None = field(default=None)

    def __post_init__(self) -> None:
        if self.hook is None:
            self.hook = HookSpec.from_object(self.obj)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef.from_object(self.obj)

    @property
    def digest(self) -> str:
        """sha256 of the object's canonical JSON (sorted keys), the same digest as
        `pytest_devloop.sync.plan.digest`. Computed on each access: `obj` may change."""
        data = json.dumps(self.obj, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(data.encode()).hexdigest()


# -- YAML as Kubernetes reads it ------------------------------------------------------------
#
# Kubernetes clients (helm and kubectl, through sigs.k8s.io/yaml) read YAML 1.1 as go-yaml
# v2 resolves it, and PyYAML's safe loader differs where it matters for objects sent to an
# API server: it turns `2024-01-01` into a date (go-yaml keeps the string; a date would not
# even serialize to JSON), reads `12:30` as the base-60 int 750, fails on a bare `=`, and
# keeps `y`/`n` and `1e3` as strings (go-yaml: booleans and a float). Mapping keys that are
# not strings become strings, as in the JSON the clients send.
#
# It is also faster to resolve scalars here: PyYAML's C parser composes the node tree
# (most of the cost), and one plain recursive function builds the objects, instead of
# PyYAML's generic constructor machinery (about half the time of `yaml.load_all`).

_PLAIN = "!devloop/plain"  # a plain (unquoted, untagged) scalar: typed by _plain_scalar
_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_MERGE_TAGS = (_PLAIN, "tag:yaml.org,2002:merge")  # `<<` plain or explicitly tagged


class _NodeLoader(_BaseLoader):
    """PyYAML's parser and composer, with every plain scalar marked for _plain_scalar."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _STR_TAG
        return _SEQ_TAG if kind is yaml.SequenceNode else _MAP_TAG


_TRUE = ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")
_FALSE = ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")
_WORDS: dict[str, Any] = {
    **dict.fromkeys(_TRUE, True),
    **dict.fromkeys(_FALSE, False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL")),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
}
_NOT_A_WORD = object()
# go-yaml strips `_` and parses ints like Go's base-0 ParseInt (0x, 0o, 0b, leading-0
# octal); `08` is no int, so it falls through to float, as there.
_INT = re.compile(
    r"[-+]?(?:0[xX][0-9a-fA-F][0-9a-fA-F_]*|0[oO][0-7][0-7_]*|0[bB][01][01_]*|0[0-7_]*|[1-9][0-9_]*)"
)
_FLOAT = re.compile(r"[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?")


def _plain_scalar(value: str) -> Any:
    word = _WORDS.get(value, _NOT_A_WORD)
    if word is not _NOT_A_WORD:
        return word
    if value[0] in "0123456789+-.":
        if _INT.fullmatch(value):
            return _to_int(value)
        if _FLOAT.fullmatch(value):
            return float(value.replace("_", ""))
    return value


def _to_int(value: str) -> int:
    text = value.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        return sign * int(body, 8)  # Go's base-0 parsing: a leading 0 means octal
    return sign * int(body, 0)


def _tagged_scalar(tag: str, value: str) -> Any:
    """A scalar with an explicit tag (`!!int "3"`); unknown tags keep the text."""
    kind = tag.rpartition(":")[2]
    try:
        if kind == "int":
            return _to_int(value)
        if kind == "float":
            word = _WORDS.get(value, _NOT_A_WORD)
            return word if isinstance(word, float) else float(value.replace("_", ""))
        if kind == "bool":
            return value in _TRUE
        if kind == "null":
            return None
    except ValueError:
        pass
    return value


def _key_text(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _build(node: yaml.Node, memo: dict[int, Any]) -> Any:
    """The Python value of a composed node (aliases share their anchor's value)."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _PLAIN:
            return _plain_scalar(node.value)
        if node.tag == _STR_TAG:
            return node.value
        return _tagged_scalar(node.tag, node.value)
    known = memo.get(id(node))
    if known is not None:
        return known
    if isinstance(node, yaml.SequenceNode):
        items: list[Any] = []
        memo[id(node)] = items
        items.extend(_build(child, memo) for child in node.value)
        return items
    mapping: dict[str, Any] = {}
    memo[id(node)] = mapping
    merged: list[dict[str, Any]] = []
    for key_node, value_node in node.value:
        if (
            isinstance(key_node, yaml.ScalarNode)
            and key_node.value == "<<"
            and key_node.tag in _MERGE_TAGS
        ):
            value = _build(value_node, memo)
            merged += [
                m for m in (value if isinstance(value, list) else [value]) if isinstance(m, dict)
            ]
            continue
        key = _build(key_node, memo)
        mapping[key if type(key) is str else _key_text(key)] = _build(value_node, memo)
    if merged:
        # `<<` merges: keys written in the mapping win, then earlier merged mappings.
        combined: dict[str, Any] = {}
        for m in reversed(merged):
            combined.update(m)
        combined.update(mapping)
        mapping.clear()
        mapping.update(combined)
    return mapping


def load_yaml(text: str) -> list[Any]:
    """The documents of a YAML stream, read as Kubernetes clients read them (empty
    documents are None). Raises yaml.YAMLError."""
    return [_build(node, {}) for node in _compose_all(text)]


def _compose_all(text: str) -> list[yaml.Node]:
    loader = _NodeLoader(text)
    try:
        nodes: list[yaml.Node] = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                nodes.append(node)
        return nodes
    finally:
        loader.dispose()


# -- parsing a rendered stream ----------------------------------------------------------------

# Lines that head a document in helm's output: `---` markers and `# Source:` comments.
_HEAD_LINE = re.compile(r"^(?:(---)(?=[ \t\r\n]|\Z)|# Source: (.*?)[ \t\r]*$)", re.M)


class _Sources:
    """Which `# Source:` comment heads the document starting at a given line: the last
    comment after that document's `---` marker."""

    def __init__(self, text: str, enabled: bool) -> None:
        self.markers: list[int] = []
        self.lines: list[int] = []
        self.names: list[str] = []
        if not enabled or "# Source: " not in text:
            return
        line, pos = 0, 0
        for m in _HEAD_LINE.finditer(text):
            line += text.count("\n", pos, m.start())
            pos = m.start()
            if m.group(1):
                self.markers.append(line)
            else:
                self.lines.append(line)
                self.names.append(m.group(2))

    def at(self, line: int) -> tuple[str, int] | None:
        """(source, line of its comment) for the document holding `line` (0-based)."""
        i = bisect.bisect_left(self.lines, line) - 1
        if i < 0:
            return None
        j = bisect.bisect_right(self.markers, line) - 1
        if j >= 0 and self.lines[i] < self.markers[j]:
            return None
        return self.names[i], self.lines[i]


_DOC_MARKER = re.compile(r"^---(?=[ \t\r\n]|\Z)", re.M)


def _chunks(text: str) -> list[tuple[int, str]]:
    """(first line, text) of each document of a stream, split at its `---` lines (a
    line starting with `---` ends any document in YAML, block scalars included)."""
    bounds = [0, *(m.start() for m in _DOC_MARKER.finditer(text) if m.start() > 0), len(text)]
    out: list[tuple[int, str]] = []
    line = 0
    for start, end in itertools.pairwise(bounds):
        chunk = text[start:end]
        out.append((line, chunk))
        line += chunk.count("\n")
    return out


def parse_stream(
    text: str,
    *,
    artifact: str,
    default_source: str,
    sources: bool = True,
    cache: ParseCache | None = None,
) -> list[DesiredObject]:
    """The objects of a multi-document YAML stream, in stream order.

    With `sources`, a `# Source: <path>` comment heading a document (as `helm template`
    writes them) names its source, and lines in errors count from that comment, as helm
    counts lines of a rendered template; other documents get `default_source` and lines
    of the stream. Empty documents are dropped; `kind: List` (and any `*List` with
    `items`) is expanded into its items. Raises ManifestError for invalid YAML (file and
    line) and for documents that are not objects with apiVersion, kind and metadata.name
    (file, line and document index). With `cache`, large documents are read once per
    text (see `artifacts.parsecache`).
    """
    heads = _Sources(text, sources)

    def locate(line0: int) -> tuple[str, int]:
        head = heads.at(line0)
        if head is None:
            return default_source, line0 + 1
        return head[0], line0 - head[1]

    docs: list[tuple[int, Any]] = []  # (first line in the stream, value)
    for first, chunk in _chunks(text) if cache is not None else [(0, text)]:
        key = cache.key(chunk) if cache is not None else None
        cached = cache.get(key) if cache is not None and key is not None else None
        if isinstance(cached, list):
            docs += [(first + int(line), value) for line, value in cached]
            continue
        try:
            nodes = _compose_all(chunk)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            source, line = locate(first + mark.line) if mark is not None else (default_source, None)
            problem = ", ".join(p for p in (e.context, e.problem) if p)
            raise ManifestError(artifact, source, f"invalid YAML: {problem}", line=line) from e
        except yaml.YAMLError as e:
            raise ManifestError(artifact, default_source, f"invalid YAML: {e}") from e
        built = [(node.start_mark.line, _build(node, {})) for node in nodes]
        if cache is not None and key is not None:
            cache.put(key, built)
        docs += [(first + line, value) for line, value in built]

    out: list[DesiredObject] = []
    counts: dict[str, int] = {}
    for start, doc in docs:
        if doc is None:
            continue
        source, line = locate(start)
        index = counts.get(source, 0)
        counts[source] = index + 1
        out.extend(_objects(doc, artifact, source, index, line))
    return out


def _objects(
    doc: Any, artifact: str, source: str, index: int, line: int
) -> Iterator[DesiredObject]:
    where = f"document {index + 1}"
    if not isinstance(doc, dict):
        raise ManifestError(
            artifact,
            source,
            f"{where} is a {_yaml_kind(doc)}, not a Kubernetes object "
            "(a mapping with apiVersion, kind and metadata.name)",
            line=line,
            doc_index=index,
        )
    kind = doc.get("kind")
    items = doc.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        for n, item in enumerate(items):
            where_item = f"item {n + 1} of the {kind} in {where}"
            _check_object(item, artifact, source, index=index, line=line, where=where_item)
            yield DesiredObject(artifact, item, source, index)
        return
    _check_object(doc, artifact, source, index=index, line=line, where=where)
    yield DesiredObject(artifact, doc, source, index)


def _check_object(
    obj: Any, artifact: str, source: str, *, index: int, line: int, where: str
) -> None:
    if not isinstance(obj, dict):
        raise ManifestError(
            artifact,
            source,
            f"{where} is a {_yaml_kind(obj)}, not a Kubernetes object",
            line=line,
            doc_index=index,
        )
    missing = [k for k in ("apiVersion", "kind") if not isinstance(obj.get(k), str) or not obj[k]]
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        missing.append("metadata.name")
    if missing:
        hint = (
            " (generateName cannot be applied: give the object a fixed name)"
            if isinstance(meta, dict) and meta.get("generateName")
            else ""
        )
        raise ManifestError(
            artifact,
            source,
            f"{where} has no {', '.join(missing)}: every object needs apiVersion, kind and "
            f"metadata.name{hint}",
            line=line,
            doc_index=index,
        )


def _yaml_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


# -- tools ----------------------------------------------------------------------------------


def _project_tool(start: Path | None, candidates: Sequence[str]) -> str | None:
    """The first of `candidates` (paths under `.tools/`) in the nearest folder above
    `start` that has a `.tools/` folder: where `scripts/tools.sh` installs them."""
    # The project's folder first, then the working directory's (a project kept outside
    # the folder that holds the tools, as in tests).
    starts = dict.fromkeys(p.absolute() for p in (start or Path.cwd(), Path.cwd()))
    for here in starts:
        for folder in (here, *here.parents):
            tools = folder / ".tools"
            if tools.is_dir():
                for rel in candidates:
                    path = tools / rel
                    if path.is_file() and os.access(path, os.X_OK):
                        return str(path)
                break
    return None


class HelmTool:
    """The helm CLI: its version, and running it with a timeout; and, with the `[helm]`
    extra, the in-process Helm (`artifacts.helmlib`) that `render_chart` tries first.

    Helm 3 (>= 3.13) and Helm 4 render the same way for devloop's purposes; see
    `render_chart` for the flags used. `executable` is empty when only the in-process
    Helm is available.
    """

    def __init__(self, executable: str, library: HelmLibrary | None = None) -> None:
        self.executable = executable
        self.library = library

    def __repr__(self) -> str:
        if self.library is not None:
            return f"HelmTool({self.executable!r}, {self.library!r})"
        return f"HelmTool({self.executable!r})"

    @classmethod
    def find(cls, *, start: Path | None = None) -> HelmTool:
        """`$DEVLOOP_HELM`, then `helm` on PATH, then the project's `.tools/helm4/helm`,
        then `.tools/helm3/helm` (the project is the nearest folder above `start`, by
        default the working directory, that has a `.tools/` folder).

        `$DEVLOOP_HELM_BACKEND` picks who renders: `auto` (default) the CLI when one is
        found, else the in-process Helm of the `[helm]` extra; `inprocess` the
        in-process Helm for every chart it renders exactly like the CLI, the CLI for the
        others; `cli` the CLI only."""
        backend = os.environ.get("DEVLOOP_HELM_BACKEND", "auto").strip().lower() or "auto"
        if backend not in {"auto", "cli", "inprocess"}:
            raise RenderError(
                "",
                f"DEVLOOP_HELM_BACKEND={backend} is not a helm backend: use auto, cli or inprocess",
            )
        from pytest_devloop.artifacts import helmlib

        library = helmlib.HelmLibrary() if backend != "cli" and helmlib.available() else None
        if backend == "inprocess" and library is None:
            raise RenderError(
                "",
                "DEVLOOP_HELM_BACKEND=inprocess needs the in-process Helm: "
                "`python3 -m pip install 'pytest-devloop[helm]'`",
            )
        env = os.environ.get("DEVLOOP_HELM")
        if env:
            if Path(env).is_file() and os.access(env, os.X_OK):
                return cls(env, library if backend == "inprocess" else None)
            raise RenderError(
                "", f"DEVLOOP_HELM={env} is not an executable file: point it at a helm binary"
            )
        found = shutil.which("helm") or _project_tool(start, ("helm4/helm", "helm3/helm"))
        if found is not None and backend != "inprocess":
            return cls(found)
        if library is not None:
            return cls(found or "", library)
        if found is None:
            raise RenderError(
                "",
                "helm is not installed: install Helm 3.13+ or 4 (https://helm.sh/docs/intro/install/), "
                "put it on PATH or set DEVLOOP_HELM to its path, or install the in-process "
                "Helm with `python3 -m pip install 'pytest-devloop[helm]'`; in this project "
                "`bash scripts/tools.sh` installs it into .tools/",
            )
        return cls(found)

    def run(
        self, args: Sequence[str], *, timeout: float = HELM_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        if not self.executable:
            raise RenderError(
                "",
                f"`helm {' '.join(args[:2])}` needs the helm CLI, which is not installed (the "
                "in-process Helm only renders charts): install Helm 3.13+ or 4 "
                "(https://helm.sh/docs/intro/install/) or set DEVLOOP_HELM to its path",
            )
        try:
            return subprocess.run(
                [self.executable, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except OSError as e:
            raise RenderError("", f"helm ({self.executable}) cannot run: {e}") from e
        except subprocess.TimeoutExpired as e:
            raise RenderError(
                "", f"`helm {' '.join(args)}` did not finish within {timeout:.0f} s"
            ) from e

    @cached_property
    def version(self) -> str:
        """Helm's version, e.g. `v3.17.2` (asked once; the in-process Helm's without a CLI,
        and both when both render: fingerprints then change with either)."""
        if not self.executable and self.library is not None:
            return self.library.version
        if self.library is not None:
            return f"{HelmTool(self.executable).version} (in-process {self.library.version})"
        proc = self.run(["version", "--template", "{{.Version}}"], timeout=30)
        text = proc.stdout.strip()
        if proc.returncode != 0 or not text.startswith("v"):
            raise RenderError(
                "",
                f"`{self.executable} version` failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()}",
            )
        return text

    @property
    def version_info(self) -> tuple[int, int, int]:
        major, minor, patch = ([int(n) for n in re.findall(r"\d+", self.version)] + [0, 0, 0])[:3]
        return major, minor, patch

    @property
    def major(self) -> int:
        return self.version_info[0]


def find_kubectl(*, start: Path | None = None) -> str:
    """`$DEVLOOP_KUBECTL`, then `kubectl` on PATH, then the project's `.tools/helm4/kubectl`
    or `.tools/helm3/kubectl`."""
    env = os.environ.get("DEVLOOP_KUBECTL")
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return env
        raise RenderError(
            "", f"DEVLOOP_KUBECTL={env} is not an executable file: point it at a kubectl binary"
        )
    found = shutil.which("kubectl") or _project_tool(start, ("helm4/kubectl", "helm3/kubectl"))
    if found is None:
        raise RenderError(
            "",
            "kubectl is not installed (kustomize folders are rendered with `kubectl kustomize`): "
            "install it (https://kubernetes.io/docs/tasks/tools/), put it on PATH or set "
            "DEVLOOP_KUBECTL to its path",
        )
    return found


# -- charts ---------------------------------------------------------------------------------


def helm_values_args(
    values_files: Sequence[Path],
    set_values: Mapping[str, Any],
    set_string: Mapping[str, str],
) -> list[str]:
    """The `-f`/`--set*` flags that give helm these values with their types kept.

    Keys of `set_values` and `set_string` are helm key paths (`image.tag`, `a[0]`).
    Helm's flags type values differently, so each value takes the flag that keeps it:

    - int, bool, None: `--set` (ints stay int64: `--set-json` and values files make
      every number a float64, which templates print as `1e+06`; None removes the key);
    - str: `--set-literal` (no parsing at all: commas, `=`, braces, "true" stay text);
    - float and list: `--set-json` (`--set` would turn 1.5 into the string "1.5";
      numbers inside a list become float64, as from a values file);
    - dict: one flag per leaf, its keys escaped, so it merges into the chart's values
      like a values file does.

    `set_string` uses `--set-literal`, which helm applies after every other flag: it wins
    over `set_values` for the same key.
    """
    args: list[str] = []
    for f in values_files:
        args += ["-f", str(f)]
    for key, value in set_values.items():
        _set_flags(key, value, args)
    for key, text in set_string.items():
        args += ["--set-literal", f"{key}={text}"]
    return args


def _set_flags(path: str, value: Any, out: list[str]) -> None:
    if value is None:
        out += ["--set", f"{path}=null"]
    elif isinstance(value, bool):
        out += ["--set", f"{path}={'true' if value else 'false'}"]
    elif isinstance(value, int) and -(2**63) <= value < 2**63:
        out += ["--set", f"{path}={value}"]
    elif isinstance(value, str):
        out += ["--set-literal", f"{path}={value}"]
    elif isinstance(value, Mapping) and value:
        for k, v in value.items():
            _set_flags(f"{path}.{_escape_key(str(k))}", v, out)
    else:
        out += ["--set-json", f"{path}={json.dumps(value, separators=(',', ':'))}"]


def _escape_key(key: str) -> str:
    # Helm's key parser splits at `.` `[` `=` `,` and unescapes `\x` to x.
    return re.sub(r"([\\.\[\]=,])", r"\\\1", key)


@dataclass(frozen=True)
class ClusterAccess:
    """How helm reaches the target cluster for a render against it (`lookup`)."""

    kubeconfig: str | None = None
    context: str | None = None

    def helm_flags(self) -> list[str]:
        flags: list[str] = []
        if self.kubeconfig:
            flags += ["--kubeconfig", self.kubeconfig]
        if self.context:
            flags += ["--kube-context", self.context]
        return flags


def render_chart(
    helm: HelmTool,
    *,
    release: str,
    chart: Path,
    namespace: str,
    values_files: list[Path],
    set_values: dict[str, Any],
    set_string: dict[str, str],
    kube_version: str | None,
    api_versions: list[str],
    include_crds: bool = True,
    is_upgrade: bool = False,
    cluster: ClusterAccess | None = None,
    parse_cache: ParseCache | None = None,
) -> list[DesiredObject]:
    """The objects of a chart release, by `helm template`, in helm's output order (CRDs
    first, then manifests sorted by kind in install order, then hooks).

    With `cluster`, the render runs against that cluster (`--dry-run=server`): `lookup`
    returns its live objects (only reads; nothing is written) and `.Capabilities` are
    the cluster's. Charts that call `lookup` need it to render what a `helm upgrade`
    would install (`chart_queries` tells).

    Values are passed as `helm_values_args` explains. `kube_version` and `api_versions`
    set `.Capabilities` (give the cluster's, so that charts render for it). A chart whose
    `charts/` lacks a dependency named in Chart.yaml gets a `helm dependency build` when
    all missing dependencies are local (`file://`); otherwise the error says to run
    `helm dependency update`, as devloop never reaches chart repositories during a sync.
    """
    chart = Path(chart)
    if not chart.exists():
        raise RenderError(
            release,
            f"chart {release} ({chart}): the chart folder does not exist: fix the release's "
            "path in the devloop config",
        )
    for values_file in values_files:
        if not Path(values_file).is_file():
            raise RenderError(
                release,
                f"chart {release} ({chart}): values file {values_file} does not exist: fix "
                "the release's values list in the devloop config",
            )
    args = ["template", release, str(chart), "--namespace", namespace]
    if include_crds:
        args.append("--include-crds")
    values = helm_values_args(values_files, set_values, set_string)
    if "--set-literal" in values and helm.version_info < (3, 13, 0):
        raise RenderError(
            release,
            f"chart {release} ({chart}): helm {helm.version} has no --set-literal, which "
            "string values need: install Helm 3.13 or newer",
        )
    args += values
    if kube_version:
        args += ["--kube-version", kube_version]
    if api_versions:
        args += ["--api-versions", ",".join(api_versions)]
    if is_upgrade:
        args.append("--is-upgrade")
    if cluster is not None:
        # No client-side OpenAPI validation: the API server validates each object when
        # devloop applies it, and Helm 4 spends seconds on the schemas of large CRDs.
        args += ["--dry-run=server", "--disable-openapi-validation", *cluster.helm_flags()]

    started = time.perf_counter()
    if helm.library is not None and cluster is None:
        objects = _render_in_process(
            helm, release, chart, namespace, values, set_values, kube_version, api_versions,
            include_crds=include_crds, is_upgrade=is_upgrade, started=started,
            parse_cache=parse_cache,
        )  # fmt: skip
        if objects is not None:
            return objects
    proc = helm.run(args)
    if proc.returncode != 0:
        missing = _missing_dependencies(proc.stderr)
        if missing:
            _build_dependencies(helm, release, chart, missing)
            proc = helm.run(args)
    if proc.returncode != 0:
        raise ChartRenderError(
            release, chart, _helm_error_text(proc.stderr), hint=_hint(release, chart, proc.stderr)
        )
    helm_seconds = time.perf_counter() - started
    _log_warnings(release, proc.stderr)
    parse_started = time.perf_counter()
    try:
        objects = parse_stream(
            proc.stdout, artifact=release, default_source=str(chart), cache=parse_cache
        )
    except ManifestError as e:
        where = f"{e.file} (line {e.line} of its rendered output)" if e.line else e.file
        raise ChartRenderError(
            release, chart, f"{where}: {e.problem}", template=e.file, line=e.line
        ) from e
    log.debug(
        "rendered chart %s: %d objects, helm template %.3f s, parse %.3f s",
        release,
        len(objects),
        helm_seconds,
        time.perf_counter() - parse_started,
    )
    return objects


def _render_in_process(
    helm: HelmTool,
    release: str,
    chart: Path,
    namespace: str,
    values_args: list[str],
    set_values: Mapping[str, Any],
    kube_version: str | None,
    api_versions: list[str],
    *,
    include_crds: bool,
    is_upgrade: bool,
    started: float,
    parse_cache: ParseCache | None = None,
) -> list[DesiredObject] | None:
    """The chart's objects from the in-process Helm, or None for the CLI to render (a
    chart it cannot render exactly like the CLI, or an error, whose message is the CLI's)."""
    from pytest_devloop.artifacts import helmlib

    assert helm.library is not None
    text = helmlib.render_template(
        helm.library,
        release=release,
        chart=chart,
        namespace=namespace,
        values_args=values_args,
        set_values=set_values,
        kube_version=kube_version,
        api_versions=api_versions,
        include_crds=include_crds,
        is_upgrade=is_upgrade,
        cli_fallback=bool(helm.executable),
    )
    if text is None:
        if not helm.executable:
            raise RenderError(
                release,
                f"chart {release} ({chart}): the in-process Helm cannot render this chart "
                "exactly like the helm CLI (run with --log-level=debug for why): install "
                "Helm 3.13+ or 4 (https://helm.sh/docs/intro/install/) or set DEVLOOP_HELM",
            )
        return None
    try:
        objects = parse_stream(text, artifact=release, default_source=str(chart), cache=parse_cache)
    except ManifestError:
        if helm.executable:
            return None  # the CLI names the template as helm users know it
        raise
    log.debug(
        "rendered chart %s in-process: %d objects, %.3f s",
        release,
        len(objects),
        time.perf_counter() - started,
    )
    return objects


_LOCATION_PATTERNS = (
    # helm 3: `template: demo/templates/x.yaml:7:20: executing ...` (repeated per include)
    re.compile(r"template: (?P<t>[^\s:()]+):(?P<l>\d+)(?::\d+)?:"),
    # `parse error at (demo/templates/x.yaml:3): ...`, `execution error at (x.yaml:4:11): ...`
    re.compile(r"\((?P<t>[^\s:()]+):(?P<l>\d+)(?::\d+)?\)"),
    # `YAML parse error on demo/templates/svc.yaml: ... yaml: line 4: ...`
    re.compile(r"YAML parse error on (?P<t>[^\s:()]+): .*?\bline (?P<l>\d+)"),
    # helm 4 puts each location of an execution error on a line of its own
    re.compile(r"^(?:Error: )?(?P<t>[^\s:()]+/[^\s:()]+):(?P<l>\d+)(?::\d+)?[ \t]*$", re.M),
)


def _error_locations(message: str) -> list[tuple[str, int]]:
    """(template, line) pairs named in a helm error, in the order they appear."""
    found: list[tuple[int, str, int]] = []
    for pattern in _LOCATION_PATTERNS:
        for m in pattern.finditer(message):
            found.append((m.start(), m.group("t"), int(m.group("l"))))
    found.sort()
    out: list[tuple[str, int]] = []
    for _, template, line in found:
        if (template, line) not in out:
            out.append((template, line))
    return out


def _helm_error_text(stderr: str) -> str:
    """helm's error as it wrote it, less what does not apply: the `Error: ` prefix, the
    advice to rerun with --debug, and blank lines."""
    lines = []
    for raw in stderr.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("Use --debug flag"):
            continue
        lines.append(line.removeprefix("Error: "))
    return "\n".join(lines) or "helm template failed without a message"


def _hint(release: str, chart: Path, stderr: str) -> str:
    if "YAML parse error on" in stderr:
        return (
            "The line counts lines of that template's rendered output: "
            f"`helm template {release} {chart} --debug` prints it."
        )
    return ""


def _log_warnings(release: str, stderr: str) -> None:
    for line in stderr.splitlines():
        if not line.strip():
            continue
        # Helm 4 warns of CRDs on each render against a cluster; devloop applies a
        # chart's CRDs before its other objects, so the warning does not apply.
        if "contains CRDs. Rendering may fail" in line:
            log.debug("helm template %s: %s", release, line.strip())
            continue
        log.warning("helm template %s: %s", release, line.strip())


_MISSING_DEPENDENCIES = re.compile(r"missing in charts/ directory: (?P<names>[^\n]+)")


def _missing_dependencies(stderr: str) -> list[str]:
    m = _MISSING_DEPENDENCIES.search(stderr)
    if m is None:
        return []
    return [n.strip() for n in m.group("names").split(",") if n.strip()]


def _chart_dependencies(chart: Path) -> list[dict[str, Any]]:
    """The `dependencies` of Chart.yaml (or requirements.yaml, for apiVersion v1 charts)."""
    deps: list[dict[str, Any]] = []
    for name in ("Chart.yaml", "requirements.yaml"):
        try:
            docs = load_yaml((chart / name).read_text(encoding="utf-8"))
            data = docs[0] if docs else None
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("dependencies"), list):
            deps += [d for d in data["dependencies"] if isinstance(d, dict)]
    return deps


def _build_dependencies(helm: HelmTool, release: str, chart: Path, missing: list[str]) -> None:
    repos = {str(d.get("name")): str(d.get("repository") or "") for d in _chart_dependencies(chart)}
    remote = [n for n in missing if not repos.get(n, "").startswith("file://")]
    if remote:
        unmanaged = [n for n in remote if not repos.get(n)]
        fix = (
            f"put {', '.join(unmanaged)} into {chart}/charts/ (no repository is named for "
            + ("it" if len(unmanaged) == 1 else "them")
            + ")"
            if unmanaged
            else f"run `helm dependency update {chart}`"
        )
        raise RenderError(
            release,
            f"chart {release} ({chart}): dependencies {', '.join(missing)} are missing from "
            f"{chart}/charts/: {fix}. devloop builds only local (file://) dependencies by "
            "itself, so that a sync never reaches a chart repository.",
        )
    log.info("chart %s: building local dependencies %s", release, ", ".join(missing))
    proc = helm.run(
        ["dependency", "build", str(chart), "--skip-refresh"], timeout=DEPENDENCY_TIMEOUT
    )
    if proc.returncode != 0 and "out of sync" in proc.stderr:
        # Chart.yaml changed since Chart.lock was written; with local charts only,
        # updating the lock touches no network.
        proc = helm.run(
            ["dependency", "update", str(chart), "--skip-refresh"], timeout=DEPENDENCY_TIMEOUT
        )
    if proc.returncode != 0:
        raise RenderError(
            release,
            f"chart {release} ({chart}): `helm dependency build` failed for the local "
            f"dependencies {', '.join(missing)}: {_helm_error_text(proc.stderr)}",
        )


# `lookup` called as a template function: not a field (`.lookup`), variable (`$lookup`) or
# part of a longer name.
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_TEMPLATE_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_STRING_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`')
_LOOKUP_CALL = re.compile(r"(?<![\w.$])lookup(?!\w)")


# `.Capabilities.APIVersions.Has "x"` with a literal: the render depends on x alone.
_HAS_LITERAL = re.compile(r'Capabilities\.APIVersions\.Has\s+"((?:[^"\\\n]|\\.)*)"')
_API_VERSIONS = re.compile(r"(?<!\w)APIVersions(?!\w)")
_KUBE_VERSION = re.compile(r"(?<!\w)KubeVersion(?!\w)")
# `.Capabilities` not followed by one of its fields read here: passed on whole.
_CAPABILITIES_WHOLE = re.compile(
    r"(?<!\w)Capabilities(?!\.(?:APIVersions|KubeVersion|HelmVersion)\b)"
)
_CHART_KUBE_VERSION = re.compile(r"^kubeVersion\s*:", re.M)


@dataclass(frozen=True)
class ChartQueries:
    """What a chart's templates (and its subcharts', folders or `.tgz`) ask of the cluster.

    `lookup`: a template calls `lookup`, so the render needs the live cluster.
    `api_versions`: the API versions tested with a literal `.Capabilities.APIVersions.Has
    "x"`; None when a template reads the list any other way (a variable, `printf`, the
    whole `.Capabilities`), so that the render may depend on all of it. `kube_version`:
    a template reads `.Capabilities.KubeVersion` (or the whole `.Capabilities`), or a
    Chart.yaml constrains `kubeVersion`.
    """

    lookup: bool = False
    api_versions: frozenset[str] | None = frozenset()
    kube_version: bool = False

    def merge(self, other: ChartQueries) -> ChartQueries:
        versions = (
            None
            if self.api_versions is None or other.api_versions is None
            else self.api_versions | other.api_versions
        )
        return ChartQueries(
            self.lookup or other.lookup, versions, self.kube_version or other.kube_version
        )

    def capabilities(self, api_versions: Sequence[str], kube_version: str) -> list[str]:
        """The part of a cluster's capabilities the chart's render can depend on, as text
        for a fingerprint: a change elsewhere in the cluster's API list leaves it as is."""
        out: list[str] = []
        if self.api_versions is None:
            out.append("api-versions:" + ",".join(api_versions))
        else:
            served = set(api_versions)
            out += [f"has:{v}={v in served}" for v in sorted(self.api_versions)]
        if self.kube_version:
            out.append(f"kube-version:{kube_version}")
        return out


def _template_queries(text: str) -> ChartQueries:
    lookup = False
    versions: set[str] = set()
    whole = False
    kube = False
    for m in _ACTION.finditer(text):
        raw = _TEMPLATE_COMMENT.sub(" ", m.group(1))
        if "Capabilities" in raw or "APIVersions" in raw or "KubeVersion" in raw:
            versions |= {json.loads(f'"{v}"') for v in _HAS_LITERAL.findall(raw)}
            rest = _STRING_LITERAL.sub('""', _HAS_LITERAL.sub(" ", raw))
            if _API_VERSIONS.search(rest):
                whole = True
            if _KUBE_VERSION.search(rest):
                kube = True
            if _CAPABILITIES_WHOLE.search(rest):
                whole = kube = True
        if not lookup and "lookup" in raw:
            lookup = bool(_LOOKUP_CALL.search(_STRING_LITERAL.sub('""', raw)))
    return ChartQueries(lookup, None if whole else frozenset(versions), kube)


def chart_queries(chart: Path) -> ChartQueries:
    """What the chart and its subcharts (folders or packaged `.tgz` in `charts/`) ask of
    the cluster: see `ChartQueries`."""
    chart = Path(chart)
    found = ChartQueries()
    for path in sorted(chart.rglob("*")):
        rel = path.relative_to(chart).parts
        if not path.is_file():
            continue
        if _is_template_path(rel):
            try:
                found = found.merge(
                    _template_queries(path.read_text(encoding="utf-8", errors="replace"))
                )
            except OSError:
                continue
        elif rel[-1] == "Chart.yaml":
            try:
                if _CHART_KUBE_VERSION.search(path.read_text(encoding="utf-8", errors="replace")):
                    found = found.merge(ChartQueries(kube_version=True))
            except OSError:
                continue
        elif path.suffix == ".tgz" and len(rel) >= 2 and rel[-2] == "charts":
            with path.open("rb") as f:
                found = found.merge(_archive_queries(f))
    return found


def uses_lookup(chart: Path) -> bool:
    """Whether a template of the chart or of one of its subcharts (folders or packaged
    `.tgz` in `charts/`) calls `lookup`: `helm template` renders `lookup` as empty, so
    such charts render against the cluster (`render_chart(cluster=...)`)."""
    return chart_queries(chart).lookup


def _is_template_path(parts: tuple[str, ...]) -> bool:
    # templates/ of the chart itself, or charts/<sub>/templates/ at any depth.
    for i, part in enumerate(parts[:-1]):
        if part == "templates" and (i == 0 or (i >= 2 and parts[i - 2] == "charts")):
            return True
    return False


def _archive_queries(fileobj: IO[bytes]) -> ChartQueries:
    found = ChartQueries()
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                parts = tuple(member.name.split("/"))
                data = archive.extractfile(member)
                if data is None:
                    continue
                if member.name.endswith(".tgz") and "charts" in parts:
                    found = found.merge(_archive_queries(data))
                elif _is_template_path(parts[1:]):
                    text = data.read().decode("utf-8", errors="replace")
                    found = found.merge(_template_queries(text))
                elif parts[-1] == "Chart.yaml" and _CHART_KUBE_VERSION.search(
                    data.read().decode("utf-8", errors="replace")
                ):
                    found = found.merge(ChartQueries(kube_version=True))
    except (tarfile.TarError, OSError):
        # Unreadable archive: helm will say so when it renders; assume the worst here.
        return ChartQueries(False, None, True)
    return found


# -- manifests ------------------------------------------------------------------------------


def render_manifests(path: Path, *, kustomize: bool | None, artifact: str) -> list[DesiredObject]:
    """The objects of a manifest set.

    A file: its documents. A folder: the documents of every `*.yaml`, `*.yml` and `*.json`
    file in it and below, in sorted order (names sorted per folder, as `kubectl apply -R`
    walks); hidden files and folders (editor swap files, `.git`) and kustomization files
    are skipped. With `kustomize` (or, when it is None, when the folder has a
    kustomization file), the output of `kubectl kustomize <folder>`.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(
            artifact,
            str(path),
            "does not exist: fix the manifest set's path in the devloop config",
        )
    if kustomize is None:
        kustomize = path.is_dir() and any((path / n).is_file() for n in KUSTOMIZATION_FILES)
    if kustomize:
        return _render_kustomize(path, artifact)
    files = [path] if path.is_file() else list(_manifest_files(path))
    out: list[DesiredObject] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ManifestError(artifact, str(file), f"cannot be read: {e}") from e
        if file.suffix == ".json":
            out += _parse_json(text, artifact, str(file))
        else:
            out += parse_stream(text, artifact=artifact, default_source=str(file), sources=False)
    return out


def _manifest_files(folder: Path) -> Iterator[Path]:
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _manifest_files(entry)
        elif entry.suffix in MANIFEST_SUFFIXES and entry.name not in KUSTOMIZATION_FILES:
            yield entry


def _parse_json(text: str, artifact: str, file: str) -> list[DesiredObject]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(artifact, file, f"invalid JSON: {e.msg}", line=e.lineno) from e
    if doc is None:
        return []
    return list(_objects(doc, artifact, file, 0, 1))


def _render_kustomize(folder: Path, artifact: str) -> list[DesiredObject]:
    if not folder.is_dir():
        raise ManifestError(
            artifact, str(folder), "is a file, but kustomize renders folders: point at its folder"
        )
    kubectl = find_kubectl()
    try:
        proc = subprocess.run(
            [kubectl, "kustomize", str(folder)],
            capture_output=True,
            text=True,
            timeout=HELM_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RenderError(
            artifact, f"manifests {artifact} ({folder}): kubectl kustomize: {e}"
        ) from e
    if proc.returncode != 0:
        raise RenderError(
            artifact,
            f"manifests {artifact} ({folder}): `kubectl kustomize` failed: "
            f"{_kubectl_error_text(proc.stderr)}",
        )
    source = next(
        (str(folder / n) for n in KUSTOMIZATION_FILES if (folder / n).is_file()), str(folder)
    )
    return parse_stream(proc.stdout, artifact=artifact, default_source=source, sources=False)


def _kubectl_error_text(stderr: str) -> str:
    # kubectl logs through klog: `E1126 07:28:24.456130 6497 run.go:72] "command failed" err="..."`
    lines = []
    for raw in stderr.splitlines():
        m = re.search(r'err="(.*)"\s*$', raw)
        lines.append(m.group(1).replace('\\"', '"') if m else raw.strip())
    return " ".join(line for line in lines if line) or "no message"
