"""The devloop configuration: its model, where it is found, and how `devloop.yaml` is read.

This module owns the `Config` model every other part reads (charts, manifests, images,
cluster, pruning), the search for the config file (`find_config`), the reading of
`devloop.yaml` (`parse_config`, `load_config`) and the checks that make a bad file fail at
load time with one line per problem that names the file, the key and the fix:

    devloop.yaml: charts[0].path: ./chartz does not exist (paths are relative to /abs/dir)
    devloop.yaml: chrts: unknown key (did you mean 'charts'?)
    devloop.yaml:3: invalid YAML: mapping values are not allowed here

Every relative path in the file is resolved against the folder of the file and checked
while the model is validated, so the rest of the plugin only ever sees absolute paths that
existed when the config was read. Importing an existing `skaffold.yaml` is the job of
`pytest_devloop.config.skaffold`, which produces the same `Config` through `build_config`.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

try:  # libyaml is several times faster; fall back to the pure-Python parser without it
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

DEVLOOP_FILES = ("devloop.yaml", "devloop.yml")
SKAFFOLD_FILES = ("skaffold.yaml", "skaffold.yml")

# A key path inside the config, as pydantic reports it: ("charts", 0, "path").
Loc = tuple[str | int, ...]
# Turns a key path into the text shown to the user; the Skaffold importer passes its own so
# that errors name the skaffold.yaml key the user wrote, not the devloop key it became.
KeyNamer = Callable[[Loc], str]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IMAGE_NAME = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$"
)
_PROVIDER_KINDS = ("kind", "minikube", "k3d")
# The name each tool gives its cluster when none is chosen: the fix offered for "kind".
_DEFAULT_CLUSTER_NAMES = {"kind": "kind", "minikube": "minikube", "k3d": "k3s-default"}
_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file: where (`key`, or a YAML `line`) and what to do."""

    key: str
    message: str
    line: int | None = None

    def render(self, path: Path) -> str:
        where = f"{path.name}:{self.line}" if self.line is not None else path.name
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """A config file that cannot be used, with one line per problem, each with its fix.

    `path` is the config file, `key` the key path of the first problem (`charts[0].path`,
    empty for the file as a whole), `problems` all of them; `str(error)` is the message.
    """

    def __init__(self, path: Path, key: str, message: str, *, line: int | None = None) -> None:
        self._init(path, (ConfigProblem(key, message, line),))

    @classmethod
    def of(cls, path: Path, problems: Sequence[ConfigProblem]) -> ConfigError:
        if not problems:
            raise ValueError("a ConfigError needs at least one problem")
        error = cls.__new__(cls)
        error._init(path, tuple(problems))
        return error

    def _init(self, path: Path, problems: tuple[ConfigProblem, ...]) -> None:
        self.path = path
        self.problems = problems
        self.key = problems[0].key
        self.message = "\n".join(p.render(path) for p in problems)
        Exception.__init__(self, self.message)


# --------------------------------------------------------------------------- path checks
#
# Relative paths are resolved while the model is validated, against the `root` passed in
# the validation context. A model built directly in Python (tests, other modules) has no
# context: its paths are taken as given.


def _fail(kind: str, message: str) -> PydanticCustomError:
    """A validation error of our own `kind` (always `devloop_...`) whose text is final."""
    # The message goes in through the context so braces in user values cannot break it.
    return PydanticCustomError(kind, "{message}", {"message": message})


def _root(info: ValidationInfo) -> Path | None:
    context = info.context
    if isinstance(context, Mapping):
        root = context.get("root")
        if isinstance(root, Path):
            return root
    return None


def _resolve(value: object, info: ValidationInfo) -> tuple[str, Path] | None:
    """(the path as written, the absolute path), or None when there is nothing to resolve."""
    root = _root(info)
    if root is None or not isinstance(value, str | os.PathLike):
        return None
    written = os.fspath(value)
    if not isinstance(written, str):
        return None
    if not written.strip():
        raise _fail("devloop_path_empty", f"is empty: give a path relative to {root}")
    return written, Path(os.path.normpath(root / Path(written).expanduser()))


def _missing(written: str, info: ValidationInfo) -> PydanticCustomError:
    return _fail(
        "devloop_path_missing",
        f"{written} does not exist (paths are relative to {_root(info)})",
    )


def _chart_folder(value: object, info: ValidationInfo) -> object:
    resolved = _resolve(value, info)
    if resolved is None:
        return value
    written, path = resolved
    if not path.exists():
        raise _missing(written, info)
    if not path.is_dir():
        raise _fail(
            "devloop_chart_not_folder",
            f"{written} is a file: devloop renders chart folders (unpack a packaged chart with "
            "`tar xzf` or `helm pull --untar`)",
        )
    if not (path / "Chart.yaml").is_file():
        raise _fail(
            "devloop_chart_without_chart_yaml",
            f"{written} is not a Helm chart: {path} has no Chart.yaml (point path at the chart folder)",
        )
    return path


def _existing_file(value: object, info: ValidationInfo) -> object:
    resolved = _resolve(value, info)
    if resolved is None:
        return value
    written, path = resolved
    if not path.exists():
        raise _missing(written, info)
    if path.is_dir():
        raise _fail("devloop_path_is_folder", f"{written} is a folder, not a file")
    return path


def _existing_path(value: object, info: ValidationInfo) -> object:
    resolved = _resolve(value, info)
    if resolved is None:
        return value
    written, path = resolved
    if not path.exists():
        raise _missing(written, info)
    return path


def _existing_folder(value: object, info: ValidationInfo) -> object:
    resolved = _resolve(value, info)
    if resolved is None:
        return value
    written, path = resolved
    if not path.exists():
        raise _missing(written, info)
    if not path.is_dir():
        raise _fail("devloop_path_not_folder", f"{written} is a file, not a folder")
    return path


ChartFolder = Annotated[Path, BeforeValidator(_chart_folder)]
ExistingFile = Annotated[Path, BeforeValidator(_existing_file)]
ExistingPath = Annotated[Path, BeforeValidator(_existing_path)]
ExistingFolder = Annotated[Path, BeforeValidator(_existing_folder)]


def _check_namespace(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise _fail(
            "devloop_namespace",
            f"{value!r} is not a valid namespace: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters",
        )
    return value


def _check_artifact_name(value: str) -> str:
    if len(value) > 63 or not _ARTIFACT_NAME.match(value):
        raise _fail(
            "devloop_artifact_name",
            f"{value!r} is not a valid name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 63 characters",
        )
    return value


# --------------------------------------------------------------------------- the model


class _Model(BaseModel):
    # An unknown key is an error, not a silently ignored typo.
    model_config = ConfigDict(extra="forbid")


class ClusterSpec(_Model):
    """Which cluster to sync to.

    `provider` is `embedded` (the in-process API server, the default), `current` (the
    current kubeconfig context, or `context`), or `kind:<name>`, `minikube:<profile>`,
    `k3d:<name>`. `allow_contexts` lists contexts that do not look local but may be used.
    """

    provider: str = "embedded"
    context: str | None = None
    allow_contexts: list[str] = []

    @field_validator("provider")
    @classmethod
    def _provider_form(cls, value: str) -> str:
        if value in ("embedded", "current"):
            return value
        kind, sep, name = value.partition(":")
        if kind in _PROVIDER_KINDS and not sep:
            raise _fail(
                "devloop_provider_name",
                f"{value!r} needs a cluster name: write {value}:<name>, e.g. {value}:{_DEFAULT_CLUSTER_NAMES[kind]}",
            )
        if kind in _PROVIDER_KINDS and _ARTIFACT_NAME.match(name):
            return value
        raise _fail(
            "devloop_provider",
            f"{value!r} is not a provider: use embedded, current, kind:<name>, "
            "minikube:<profile> or k3d:<name>",
        )

    @field_validator("context")
    @classmethod
    def _context_needs_current(cls, value: str | None, info: ValidationInfo) -> str | None:
        provider = info.data.get("provider")  # absent when the provider itself is wrong
        if value is not None and provider is not None and provider != "current":
            raise _fail(
                "devloop_context_without_current",
                f"only used with provider 'current' (got provider {provider!r}): "
                "set provider: current, or remove context",
            )
        return value

    def split_provider(self) -> tuple[str, str | None]:
        """("kind", "dev") for `kind:dev`; ("current", context) and ("embedded", None)."""
        if self.provider == "current":
            return "current", self.context
        kind, _, name = self.provider.partition(":")
        return kind, name or None


class ChartRelease(_Model):
    """A local Helm chart installed as one release.

    `set` is like `helm --set` (keys are dotted paths, `a.b.c`); `image_values` holds
    Skaffold-style templates (`{"image.tag": "{{.IMAGE_TAG_app}}"}`) filled in with the
    image built for this run. `deployer: helm` goes through `helm upgrade --install`
    instead of devloop's own apply.
    """

    name: str
    path: ChartFolder
    namespace: str | None = None
    values: list[ExistingFile] = []
    set: dict[str, Any] = {}
    set_string: dict[str, str] = {}
    image_values: dict[str, str] = {}
    create_namespace: bool = True
    deployer: Literal["devloop", "helm"] = "devloop"
    wait: bool = True

    @field_validator("name")
    @classmethod
    def _release_name(cls, value: str) -> str:
        # Helm refuses longer names: they would not fit in the labels it writes.
        if len(value) > 53 or not _DNS_LABEL.match(value):
            raise _fail(
                "devloop_release_name",
                f"{value!r} is not a valid release name: use lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 53 characters (like helm)",
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else _check_namespace(value)


class ManifestSet(_Model):
    """Plain Kubernetes YAML: one file, a folder of files, or a kustomization.

    `kustomize`: None detects a kustomization file in the folder (see `uses_kustomize`).
    """

    name: str
    path: ExistingPath
    namespace: str | None = None
    kustomize: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_artifact_name(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else _check_namespace(value)

    @field_validator("kustomize")
    @classmethod
    def _kustomization_present(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        path = info.data.get("path")
        if value and _root(info) is not None and isinstance(path, Path):
            if not path.is_dir():
                raise _fail(
                    "devloop_kustomize_file", f"kustomize needs a folder, and {path} is a file"
                )
            if not any((path / name).is_file() for name in _KUSTOMIZATION_FILES):
                raise _fail(
                    "devloop_kustomize_missing",
                    f"true, but {path} has no kustomization.yaml (add one, or remove kustomize: true)",
                )
        return value

    def uses_kustomize(self) -> bool:
        """Whether the set is built with `kubectl kustomize` (explicit, else auto-detected)."""
        if self.kustomize is not None:
            return self.kustomize
        return self.path.is_dir() and any(
            (self.path / name).is_file() for name in _KUSTOMIZATION_FILES
        )


class ImageSpec(_Model):
    """A container image built with docker; `dockerfile` is relative to `context`."""

    name: str
    context: ExistingFolder = Field(default=Path(), validate_default=True)
    dockerfile: Path = Field(default=Path("Dockerfile"), validate_default=True)
    build_args: dict[str, str] = {}
    target: str | None = None

    @field_validator("name")
    @classmethod
    def _image_name(cls, value: str) -> str:
        last = value.rsplit("/", 1)[-1]
        if ":" in last or "@" in last:
            raise _fail(
                "devloop_image_tag",
                f"{value!r} has a tag or digest: give the repository only "
                "(devloop tags images with the digest of their inputs)",
            )
        if not _IMAGE_NAME.match(value):
            raise _fail(
                "devloop_image_name",
                f"{value!r} is not an image repository name: use lowercase letters, digits and "
                "'.', '_', '-' separated by '/', e.g. sms-checker-app or localhost:5000/team/app",
            )
        return value

    @field_validator("dockerfile", mode="before")
    @classmethod
    def _dockerfile_in_context(cls, value: object, info: ValidationInfo) -> object:
        context = info.data.get("context")
        if _root(info) is None or not isinstance(context, Path):
            return value  # no root to resolve against, or the context itself is wrong
        if not isinstance(value, str | os.PathLike):
            return value
        written = os.fspath(value)
        if not isinstance(written, str):
            return value
        path = Path(os.path.normpath(context / written))
        if not path.is_file():
            raise _fail(
                "devloop_dockerfile_missing",
                f"{written} does not exist in {context} (dockerfile is relative to the image context)",
            )
        return path


class PruneSpec(_Model):
    """Kinds devloop may delete when they leave an artifact's output (off: data or cluster-wide)."""

    pvcs: bool = False
    crds: bool = False
    namespaces: bool = False


class CiSpec(_Model):
    """CI mode (`--devloop-ci`): `stale_after` seconds after which this project's CI
    namespaces left by killed runs are deleted (by the next CI run and `devloop gc`)."""

    stale_after: float = 3600.0

    @field_validator("stale_after")
    @classmethod
    def _positive_age(cls, value: float) -> float:
        if value <= 0:
            raise _fail("devloop_stale_after", f"must be more than 0 seconds (got {value})")
        return value


class EmbeddedPrometheusSpec(_Model):
    """`prometheus: embedded:`: devloop runs a local `prometheus` (see docs/prometheus.md)."""

    scrape_interval: float = 0.25
    evaluation_interval: float = 0.5
    binary: str | None = None

    @field_validator("scrape_interval", "evaluation_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 0.05 <= value <= 60:
            raise _fail("devloop_interval", f"must be 0.05..60 seconds (got {value})")
        return value


class PrometheusSpec(_Model):
    """Where the `prometheus` fixture finds Prometheus: exactly one of `url`, `service`,
    `embedded` (the default: a local Prometheus devloop configures from the cluster)."""

    url: str | None = None
    service: str | None = None
    embedded: EmbeddedPrometheusSpec | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise _fail("devloop_url", f"expected http(s)://host:port, got {value!r}")
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?:[A-Za-z0-9-]+", value
        ):
            raise _fail(
                "devloop_service",
                f"expected <namespace>/<service>:<port> (prometheus/prometheus-operated:9090), "
                f"got {value!r}",
            )
        return value

    def model_post_init(self, context: Any) -> None:
        chosen = [k for k in ("url", "service", "embedded") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise _fail("devloop_prometheus_mode", f"choose one of {', '.join(chosen)}")

    @property
    def scrape_interval(self) -> float:
        return (self.embedded or EmbeddedPrometheusSpec()).scrape_interval

    @property
    def evaluation_interval(self) -> float:
        return (self.embedded or EmbeddedPrometheusSpec()).evaluation_interval

    @property
    def binary(self) -> str | None:
        return (self.embedded or EmbeddedPrometheusSpec()).binary

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> PrometheusSpec:
        """The spec of `Config.prometheus` (validated at load time; None: embedded)."""
        return cls.model_validate(dict(raw or {}))


class Config(_Model):
    """Everything devloop syncs, read from `source`; relative paths are resolved against `root`.

    `warnings` are the loader's remarks (for example Skaffold fields it ignores), for the
    caller to print; they are not an error.
    """

    source: Path
    root: Path
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    namespace: str = "default"
    charts: list[ChartRelease] = []
    manifests: list[ManifestSet] = []
    images: list[ImageSpec] = []
    wait_timeout: float = 120.0
    prune: PruneSpec = Field(default_factory=PruneSpec)
    ci: CiSpec = Field(default_factory=CiSpec)
    image_registry: str | None = None
    prometheus: dict[str, Any] | None = None
    # This project's identity on the cluster (label `devloop.dev/project`); unset: a
    # random id written once to `.devloop/project-id`. Set, it wins over that file.
    project: str | None = None
    # Take over objects owned by someone else (another devloop project, Helm, by hand).
    adopt: bool = False
    warnings: list[str] = []

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return _check_namespace(value)

    @field_validator("project")
    @classmethod
    def _project(cls, value: str | None) -> str | None:
        if value is None:
            return None
        ok = (
            0 < len(value) <= 63
            and value[0].isalnum()
            and value[-1].isalnum()
            and all((c.isascii() and c.isalnum()) or c in "._-" for c in value)
        )
        if not ok:
            raise _fail(
                "devloop_project",
                f"{value!r} is not a label value: use at most 63 letters, digits, '-', '_' "
                "or '.', starting and ending with a letter or digit (e.g. shop-backend)",
            )
        return value

    def project_id(self) -> str:
        """This project's identity: `project:` when set, else `.devloop/project-id`."""
        from pytest_devloop.config.project import project_id

        return project_id(self.root, self.project)

    @field_validator("prometheus", mode="before")
    @classmethod
    def _prometheus(cls, value: Any) -> Any:
        # Kept as the mapping written (readers call PrometheusSpec.from_config); checked here
        # so a bad value fails at load time with its key path.
        if value is None:
            return None
        if isinstance(value, Mapping) and value.get("embedded") is True:
            value = {**value, "embedded": {}}
        try:
            PrometheusSpec.model_validate(value)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise _fail(
                "devloop_prometheus", f"{where + ': ' if where else ''}{first['msg']}"
            ) from e
        return dict(value)

    @field_validator("wait_timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value <= 0:
            raise _fail("devloop_timeout", f"must be more than 0 seconds (got {value})")
        return value

    @field_validator("image_registry")
    @classmethod
    def _registry_host(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            raise _fail(
                "devloop_registry_scheme",
                f"{value!r}: give the registry as host[:port][/path], without a scheme "
                "(e.g. localhost:5000)",
            )
        return value

    def artifact_names(self) -> list[str]:
        """Names of the charts, manifest sets and images, each once, in that order.

        Chart and manifest names are unique (checked at load). An image may share a name with
        a chart (Skaffold's own Helm example builds image `skaffold-helm` for release
        `skaffold-helm`); the name is then listed once.
        """
        names = [c.name for c in self.charts] + [m.name for m in self.manifests]
        names += [i.name for i in self.images]
        return list(dict.fromkeys(names))

    def namespace_for(self, artifact: ChartRelease | ManifestSet) -> str:
        """The namespace an artifact deploys to: its own, else the config's."""
        return artifact.namespace or self.namespace


# Keys a user may write in devloop.yaml; `source`, `root` and `warnings` are filled by the loader.
_LOADER_FIELDS = frozenset({"source", "root", "warnings"})


# --------------------------------------------------------------------------- YAML


class _Loader(_BaseLoader):
    """Safe YAML that refuses a key given twice: PyYAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key_node.value!r} (first on line {seen[key]}): keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_error(source: Path, error: yaml.YAMLError) -> ConfigError:
    line: int | None = None
    text = str(error)
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        if mark is not None:
            line = mark.line + 1
        text = error.problem or error.context or text
        if error.problem and error.context:
            text = f"{error.problem} ({error.context})"
    return ConfigError(source, "", f"invalid YAML: {text}", line=line)


def read_yaml(text: str, source: Path) -> Any:
    """The single YAML document in `text`; a syntax error is a ConfigError with its line."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as e:
        raise _yaml_error(source, e) from e


def read_yaml_documents(text: str, source: Path) -> list[Any]:
    """Every YAML document in `text` (`---` separated), empty ones as None."""
    try:
        return list(yaml.load_all(text, Loader=_Loader))  # _Loader is a SafeLoader
    except yaml.YAMLError as e:
        raise _yaml_error(source, e) from e


# --------------------------------------------------------------------------- errors from pydantic


def default_key(loc: Loc) -> str:
    """`("charts", 0, "values", 1)` -> `charts[0].values[1]`; odd keys are quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def describe_value(value: object) -> str:
    """A short phrase for a value the user wrote, for `expected ..., got <this>`."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        found = _model_in(field.annotation) if field is not None else None
        if found is None:
            return None
        model = found
    return model


def _valid_keys(loc: Loc) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return []
    keys = list(model.model_fields)
    return [k for k in keys if k not in _LOADER_FIELDS] if model is Config else keys


def _unknown_key(loc: Loc) -> str:
    valid = _valid_keys(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    if valid:
        return f"unknown key (valid keys: {', '.join(valid)})"
    return "unknown key"


_EXPECTED = {
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "path_type": "a path",
}


def _problem_text(error: Mapping[str, Any], key: str) -> str:
    kind = error["type"]
    value = error.get("input")
    loc: Loc = tuple(error["loc"])
    if kind == "missing":
        # The key as the user knows it: a Skaffold import names `chartPath`, not `path`.
        return f"required key missing (add {re.split(r'[.[]', key)[-1]}:)"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in _EXPECTED:
        text = f"expected {_EXPECTED[kind]}, got {describe_value(value)}"
        if kind == "list_type" and isinstance(value, str):
            text += f" (write [{value}] for a single item)"
        return text
    if kind == "literal_error":
        return f"{describe_value(value)} is not one of {error.get('ctx', {}).get('expected', '')}"
    if kind == "value_error":  # a plain ValueError from a validator
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if kind.startswith("devloop_"):  # our own checks: the message already says what to do
        return str(error["msg"])
    return f"{error['msg'][:1].lower()}{error['msg'][1:]} (got {describe_value(value)})"


def _file_order(data: object, loc: Loc) -> tuple[int, ...]:
    """Where `loc` is in the file, for listing problems top to bottom (a missing key sorts
    after the keys present beside it)."""
    order = []
    for part in loc:
        if isinstance(data, Mapping):
            keys = list(data)
            order.append(keys.index(part) if part in keys else len(keys))
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            order.append(part)
            data = data[part]
        else:
            break
    return tuple(order)


def _problems(
    error: ValidationError, data: Mapping[str, Any], key_of: KeyNamer
) -> list[ConfigProblem]:
    errors = sorted(
        error.errors(include_url=False), key=lambda e: _file_order(data, tuple(e["loc"]))
    )
    problems = []
    for e in errors:
        key = key_of(tuple(e["loc"]))
        problems.append(ConfigProblem(key, _problem_text(e, key)))
    return problems


# --------------------------------------------------------------------------- building a Config


def _duplicates(config: Config, key_of: KeyNamer) -> list[ConfigProblem]:
    problems = []
    first: dict[str, Loc] = {}
    named: Iterable[tuple[Loc, str]] = [
        *((("charts", i), c.name) for i, c in enumerate(config.charts)),
        *((("manifests", i), m.name) for i, m in enumerate(config.manifests)),
    ]
    for loc, name in named:
        if name in first:
            problems.append(
                ConfigProblem(
                    key_of((*loc, "name")),
                    f"{name!r} is already the name of {key_of(first[name])}: "
                    "chart and manifest names must be unique, rename one",
                )
            )
        else:
            first[name] = loc
    images: dict[str, int] = {}
    for i, image in enumerate(config.images):
        if image.name in images:
            problems.append(
                ConfigProblem(
                    key_of(("images", i, "name")),
                    f"{image.name!r} is already built by {key_of(('images', images[image.name]))}: "
                    "remove one",
                )
            )
        else:
            images[image.name] = i
    return problems


def build_config(
    data: Mapping[str, Any],
    source: Path,
    *,
    warnings: Sequence[str] = (),
    key_of: KeyNamer = default_key,
) -> Config:
    """Validate `data` (devloop.yaml's shape) into a Config whose paths are absolute and exist.

    For loaders: `source` is the file the data came from (its folder is the root of relative
    paths); `key_of` names keys in errors. Raises ConfigError listing every problem.
    """
    source = source.absolute()
    root = source.parent
    problems = [
        ConfigProblem(key_of((key,)), _unknown_key((key,))) for key in data if key in _LOADER_FIELDS
    ]
    fields = {k: v for k, v in data.items() if k not in _LOADER_FIELDS}
    fields.update(source=source, root=root, warnings=list(warnings))
    config: Config | None = None
    try:
        config = Config.model_validate(fields, context={"root": root})
    except ValidationError as e:
        problems += _problems(e, data, key_of)
    if config is not None:
        problems += _duplicates(config, key_of)
    if problems or config is None:
        raise ConfigError.of(source, problems) from None
    return config


def parse_config(text: str, source: Path) -> Config:
    """Read the text of a devloop.yaml that lives at `source` (which names it in errors)."""
    source = source.absolute()
    data = read_yaml(text, source)
    if data is None:
        raise ConfigError(
            source,
            "",
            "the file is empty: list at least one of charts, manifests or images "
            "(e.g. `charts: [{name: app, path: ./chart}]`)",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            "",
            f"expected a mapping of settings (charts:, manifests:, ...) at the top level, "
            f"got {describe_value(data)}",
        )
    problems = [
        ConfigProblem(default_key((key,)), f"expected a key name, got {describe_value(key)}")
        for key in data
        if not isinstance(key, str)
    ]
    if problems:
        raise ConfigError.of(source, problems)
    return build_config(data, source)


# --------------------------------------------------------------------------- finding and loading


def find_config(rootdir: Path, explicit: Path | None = None) -> Path | None:
    """The config file to use: `explicit` (relative to `rootdir`), else `rootdir/devloop.yaml`
    (or `.yml`), else `rootdir/skaffold.yaml` (or `.yml`); None when there is none.

    A devloop file wins over a skaffold file: a project that has both wrote devloop.yaml on
    purpose. Both devloop.yaml and devloop.yml is ambiguous, hence a ConfigError.
    """
    if explicit is not None:
        path = explicit if explicit.is_absolute() else rootdir / explicit
        if not path.is_file():
            raise ConfigError(
                path,
                "",
                f"config file {path} does not exist (give a devloop.yaml or skaffold.yaml)",
            )
        return path
    devloop = [rootdir / name for name in DEVLOOP_FILES if (rootdir / name).is_file()]
    if len(devloop) > 1:
        raise ConfigError(
            devloop[1],
            "",
            f"both {DEVLOOP_FILES[0]} and {DEVLOOP_FILES[1]} exist in {rootdir}: remove one",
        )
    if devloop:
        return devloop[0]
    # Skaffold itself reads skaffold.yaml before skaffold.yml.
    for name in SKAFFOLD_FILES:
        if (rootdir / name).is_file():
            return rootdir / name
    return None
