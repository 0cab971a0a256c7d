"""In-process Helm: `helm template` without a process, through the optional `[helm]` extra.

Owns `HelmLibrary`, the adapter over `helm-python-sdk` (Helm 4 compiled into a shared
library, called through ctypes), and `render_template`, which gives the same text as
`helm template --include-crds` for the charts it can render exactly, and None (with the
reason, logged) for the others, which the helm CLI then renders. The CLI stays the
reference: tests compare both on the example project and the test charts.

How the CLI's output is rebuilt (Helm 4's `action.Install` with a client-only dry run):
values are merged as helm merges `-f`/`--set*` flags (files, then `--set-json`, `--set`,
`--set-literal`), the library's engine renders every template with the same
Capabilities (`--kube-version`, `--api-versions`) and release options, then NOTES and
partials are dropped, documents are split and sorted by kind in Helm's install order,
hooks set apart and sorted the same way, and the chart's CRDs go first.

What it does not render itself (the CLI does, so that nothing differs): charts that call
`lookup` (they need the cluster), charts with a values schema (validation messages are
the CLI's), charts whose subcharts are switched by `condition`/`tags` and ship CRDs,
`--set` integers (the CLI keeps them int64; values cross the library as JSON numbers,
float64), list indexes in `--set` keys, and any error (the CLI's message is the one users
know).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from pytest_devloop.k8s.install_order import RANK as _ORDER

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # PyYAML without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = ["HelmLibrary", "available", "render_template"]

log = logging.getLogger(__name__)

MODULE = "helm_python"

_HOOK_EVENTS = frozenset(
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
        "test-success",
    }
)
# Helm's document separator (releaseutil.SplitManifests); Go's \s is ASCII whitespace.
_SEPARATOR = re.compile(r"(?:^|[\t\n\f\r ]*\n)---[\t\n\f\r ]*")
_WS = "\t\n\f\r "
_KIND_LINE = re.compile(r"^kind:[ \t]*([A-Za-z][A-Za-z0-9]*)[ \t]*(?:#.*)?$", re.M)


class Unsupported(Exception):
    """The library cannot render this chart exactly like the CLI: the CLI renders it."""


def available() -> bool:
    """Whether the `[helm]` extra (helm-python-sdk) is installed."""
    return importlib.util.find_spec(MODULE) is not None


class HelmLibrary:
    """Helm 4 loaded into this process (`pip install 'pytest-devloop[helm]'`).

    Loading the library costs about 0.05 s once; a render of the example chart then
    costs milliseconds, against a process start and a chart load per `helm template`.
    """

    _lock = threading.Lock()

    @cached_property
    def module(self) -> Any:
        return importlib.import_module(MODULE)

    @cached_property
    def version(self) -> str:
        """The embedded Helm's version, e.g. `v4.2.3`."""
        return str(self.module.helm_sdk_version())

    def __repr__(self) -> str:
        return "HelmLibrary(helm-python-sdk)"

    def values_from_yaml(self, text: str) -> dict[str, Any]:
        return dict(self.module.values_from_yaml(text))

    def parse_flag(self, flag: str, expression: str) -> dict[str, Any]:
        parse = {
            "--set": self.module.parse_set_string,
            "--set-json": self.module.parse_set_json,
            "--set-literal": self.module.parse_set_literal,
        }[flag]
        return dict(parse(expression))

    def render(
        self, chart: Path, values: Mapping[str, Any], options: Mapping[str, Any]
    ) -> tuple[dict[str, str], list[dict[str, str]], set[str]]:
        """The engine's output (template path -> text), the chart's CRD files and the
        names of the subcharts present in `charts/`."""
        native = importlib.import_module(f"{MODULE}._native")
        with self._lock, self.module.Chart.load(str(chart)) as loaded:
            # Before rendering: the render drops disabled subcharts from the loaded chart.
            present = {str(d.get("name")) for d in loaded.dependencies}
            rendered = native.call_string(
                "helm_render", loaded._raw(), json.dumps(values), json.dumps(options)
            )
            crds = loaded.crds
        return dict(json.loads(rendered)), list(crds), present


def render_template(
    library: HelmLibrary,
    *,
    release: str,
    chart: Path,
    namespace: str,
    values_args: Sequence[str],
    set_values: Mapping[str, Any],
    kube_version: str | None,
    api_versions: Sequence[str],
    include_crds: bool,
    is_upgrade: bool,
    cli_fallback: bool = False,
) -> str | None:
    """The text `helm template` prints for these arguments, or None when the CLI must
    render this chart (the reason is logged at debug level). `cli_fallback`: a helm CLI
    is there to render instead, so a chart that reads `.Capabilities.KubeVersion` with no
    version given goes to it (the library's Helm and the CLI default to different
    Kubernetes versions)."""
    started = time.perf_counter()
    try:
        text = _render(
            library,
            release=release,
            chart=Path(chart),
            namespace=namespace,
            values_args=values_args,
            set_values=set_values,
            kube_version=kube_version,
            api_versions=api_versions,
            include_crds=include_crds,
            is_upgrade=is_upgrade,
            cli_fallback=cli_fallback,
        )
    except Unsupported as e:
        log.debug("chart %s: rendered by the helm CLI: %s", release, e)
        return None
    except Exception as e:  # the library's errors: the CLI gives its own message
        log.debug("chart %s: in-process helm failed (%s); the helm CLI renders it", release, e)
        return None
    log.debug("chart %s: in-process helm %.3f s", release, time.perf_counter() - started)
    return text


def _render(
    library: HelmLibrary,
    *,
    release: str,
    chart: Path,
    namespace: str,
    values_args: Sequence[str],
    set_values: Mapping[str, Any],
    kube_version: str | None,
    api_versions: Sequence[str],
    include_crds: bool,
    is_upgrade: bool,
    cli_fallback: bool = False,
) -> str:
    from pytest_devloop.artifacts.render import chart_queries

    if not chart.is_dir():
        raise Unsupported("not a chart folder (packaged charts go to the CLI)")
    queries = chart_queries(chart)
    if queries.lookup:
        raise Unsupported("the chart calls lookup")
    if cli_fallback and not kube_version and queries.kube_version:
        raise Unsupported("the chart reads the Kubernetes version and none was given")
    if any(chart.rglob("values.schema.json")):
        raise Unsupported("the chart has a values schema")
    if _has_int(set_values):
        raise Unsupported("a --set value is an integer (the CLI keeps int64)")
    values = merge_values(library, values_args)
    options: dict[str, Any] = {
        "name": release,
        "namespace": namespace,
        "revision": 1,
        "is_install": not is_upgrade,
        "is_upgrade": is_upgrade,
    }
    if kube_version:
        options["kube_version"] = kube_version
    if api_versions:
        options["api_versions"] = list(api_versions)
    files, crds, present = library.render(chart, values, options)
    declared = _dependencies(chart)
    missing = sorted({str(d.get("name")) for d in declared} - present)
    if missing:
        raise Unsupported(f"dependencies missing from charts/: {', '.join(missing)}")
    switched = any(d.get("condition") or d.get("tags") for d in declared)
    if include_crds and switched and any("/charts/" in c["filename"] for c in crds):
        raise Unsupported("subcharts switched by condition/tags ship CRDs")
    manifests, hooks = sort_manifests(files)
    out: list[str] = []
    if include_crds:
        out += [f"---\n# Source: {c['filename']}\n{c['data']}\n" for c in crds]
    out += [f"---\n# Source: {name}\n{content}\n" for name, content in manifests]
    out += [f"---\n# Source: {name}\n{content}\n" for name, content in hooks]
    return "".join(out)


def merge_values(library: HelmLibrary, values_args: Sequence[str]) -> dict[str, Any]:
    """The user values helm builds from `-f`/`--set*` flags: values files merged in
    order, then each kind of flag in helm's order (JSON, plain, literal)."""
    files: list[str] = []
    flags: dict[str, list[str]] = {"--set-json": [], "--set": [], "--set-literal": []}
    args = list(values_args)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag == "-f":
            files.append(value)
        elif flag in flags:
            key = value.split("=", 1)[0]
            if "[" in key:
                raise Unsupported("a --set key indexes a list")
            flags[flag].append(value)
        else:
            raise Unsupported(f"flag {flag}")
    base: dict[str, Any] = {}
    for path in files:
        base = _merge(base, library.values_from_yaml(Path(path).read_text(encoding="utf-8")))
    for flag, expressions in flags.items():
        for expression in expressions:
            base = _merge(base, library.parse_flag(flag, expression))
    return base


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    # helm's values.MergeMaps: maps merge key by key, anything else replaces.
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _has_int(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_has_int(v) for v in value.values())
    return isinstance(value, int) and not isinstance(value, bool)


def _dependencies(chart: Path) -> list[dict[str, Any]]:
    try:
        meta = yaml.load((chart / "Chart.yaml").read_text(encoding="utf-8"), _Loader) or {}
    except (OSError, yaml.YAMLError) as e:
        raise Unsupported(f"Chart.yaml unreadable: {e}") from e
    deps = (meta.get("dependencies") or []) if isinstance(meta, dict) else []
    return [d for d in deps if isinstance(d, dict)]


def split_manifests(text: str) -> list[str]:
    """The documents of a rendered template, as releaseutil.SplitManifests cuts them."""
    docs = []
    for doc in _SEPARATOR.split(text.strip(_WS)):
        if doc == "":
            continue
        docs.append(doc.strip(_WS))
    return docs


def _kind_key(kind: str) -> tuple[int, str]:
    # Known kinds by install order; unknown kinds after them, alphabetically.
    position = _ORDER.get(kind)
    return (0, f"{position:04d}") if position is not None else (1, kind)


@functools.lru_cache(maxsize=4096)
def _kind_and_hook(name: str, doc: str) -> tuple[str, str | None]:
    """A document's kind and `helm.sh/hook` annotation (read once per text: a watch
    renders the same hook documents on every save)."""
    try:
        head = yaml.load(doc, _Loader)
    except yaml.YAMLError as e:
        raise Unsupported(f"YAML parse error on {name}") from e
    if head is not None and not isinstance(head, dict):
        raise Unsupported(f"{name}: a document is not a mapping")
    head = head or {}
    metadata = head.get("metadata") or {}
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    hook = annotations.get("helm.sh/hook") if isinstance(annotations, dict) else None
    return str(head.get("kind") or ""), None if hook is None else str(hook)


def sort_manifests(
    files: Mapping[str, str],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(manifests, hooks) as (template path, document) in the order helm prints them."""
    generic: list[tuple[str, str, str]] = []
    hooks: list[tuple[str, str, str]] = []
    for name in sorted(files):
        content = files[name]
        if name.endswith("NOTES.txt") or Path(name).name.startswith("_"):
            continue
        if not content.strip(_WS):
            continue
        for doc in split_manifests(content):
            kinds = _KIND_LINE.findall(doc)
            if len(kinds) == 1 and "helm.sh/hook" not in doc:
                # Most documents: a plain top-level kind and no hook; no YAML parse needed.
                generic.append((kinds[0], name, doc))
                continue
            kind, hook = _kind_and_hook(name, doc)
            if hook is None:
                generic.append((kind, name, doc))
                continue
            events = [e.strip().lower() for e in str(hook).split(",")]
            if not all(e in _HOOK_EVENTS for e in events):
                continue  # helm skips unknown hooks
            hooks.append((kind, name, doc))
    generic.sort(key=lambda m: _kind_key(m[0]))
    hooks.sort(key=lambda m: _kind_key(m[0]))
    return [(n, d) for _, n, d in generic], [(n, d) for _, n, d in hooks]
