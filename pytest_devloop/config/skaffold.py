"""Import of an existing `skaffold.yaml`, so that Skaffold users need no second file.

This module owns the mapping from Skaffold's schema (`skaffold/v2beta*`, `skaffold/v3*`,
`skaffold/v4beta*`) onto `Config`:

- `build.artifacts[]` built with docker become `images`;
- `deploy.helm.releases[]` and (v3 and later) `manifests.helm.releases[]` with a local
  `chartPath` become `charts` (image templates in `setValueTemplates`, and v2's
  `artifactOverrides`, become `image_values`);
- `manifests.rawYaml` (v3 and later) and `deploy.kubectl.manifests` (v2) globs become
  `manifests`, one per folder when the glob takes the whole folder, else one per file;
  `manifests.kustomize.paths` and v2's `deploy.kustomize.paths` become kustomize sets;
- `deploy.kubeContext` selects the current kubeconfig provider with that context, and
  `deploy.statusCheckDeadlineSeconds` the wait timeout.

`--devloop-profile NAME[,NAME...]` applies profiles as Skaffold does: each section of the
profile is laid over the top-level one (mappings merge key by key, lists and values
replace), then the profile's JSON `patches` (`add`, `replace`, `remove`) are applied.
Profiles are never activated automatically (`activation` is ignored, with a warning).

A file with several YAML documents (a Skaffold multi-config) is merged: the images, charts
and manifests of every document end up in one Config, and keys in messages start with
`documents[N].`. Everything devloop does not act on (`portForward`, `build.tagPolicy`,
`test`, a `remoteChart` release, a jib artifact, ...) is named in one warning line of
`Config.warnings`; nothing is ignored silently. Errors are ConfigErrors that name the
skaffold.yaml key the user wrote (`deploy.helm.releases[0].chartPath: ...`).
"""

from __future__ import annotations

import copy
import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_devloop.config.model import (
    Config,
    ConfigError,
    Loc,
    build_config,
    default_key,
    describe_value,
    read_yaml_documents,
)
from pytest_devloop.k8s.patch import PatchError, json_patch

SUPPORTED_API_VERSIONS = ("skaffold/v2beta*", "skaffold/v3*", "skaffold/v4beta*")
_API_VERSION = re.compile(r"^skaffold/(v2beta\d+|v3(?:alpha\d+)?|v4beta\d+)$")
# What Skaffold deploys when a config names no manifests at all.
DEFAULT_MANIFESTS = "k8s/*.yaml"
# Exactly one builder type may be set: a profile that sets one drops the others (Skaffold's
# `oneOf` overlay rule).
_BUILD_TYPES = ("local", "googleCloudBuild", "cluster")
_OTHER_BUILDERS = ("bazel", "ko", "jib", "kaniko", "buildpacks", "custom")
_PROFILE_KEYS = ("name", "activation", "requiresAllActivations", "patches")
_PATCH_OPS = ("add", "replace", "remove")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_IMAGE_PLACEHOLDER = re.compile(r"^\s*\.IMAGE_[A-Za-z0-9_]+\s*$")
_YAML_SUFFIXES = (".yaml", ".yml")
_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def template_image_key(image: str) -> str:
    """The suffix Skaffold uses for an image in template names (`IMAGE_TAG_<this>`).

    Skaffold replaces `.`, `-`, `/` and `:` with `_`: image `sms-checker-app` is
    `{{.IMAGE_TAG_sms_checker_app}}`.
    """
    return re.sub(r"[.\-/:]", "_", image)


def load_skaffold(text: str, source: Path, profile: str | None) -> Config:
    """Read the text of the skaffold.yaml at `source` into a Config.

    `profile` names the profiles to apply, comma separated and in order, like
    `skaffold -p`. Every YAML document of a multi-config file is read and merged into one
    Config. Raises ConfigError for a file devloop cannot use.
    """
    source = source.absolute()
    documents = [(i, d) for i, d in enumerate(read_yaml_documents(text, source)) if d is not None]
    if not documents:
        raise ConfigError(
            source, "", "the file is empty: a skaffold.yaml needs apiVersion, kind and build/deploy"
        )
    names = [n.strip() for n in (profile or "").split(",") if n.strip()]
    importer = _Importer(source, multi=len(documents) > 1)
    for index, document in documents:
        importer.add_document(index, document, names)
    missing = [n for n in names if n not in importer.profiles_found]
    if missing:
        available = ", ".join(importer.profiles_available) or f"{source.name} defines none"
        raise ConfigError(
            source,
            "profiles",
            f"no profile named {missing[0]!r} (available: {available}): check --devloop-profile",
        )
    return importer.finish()


# --------------------------------------------------------------------------- reading one mapping


class _Node:
    """One mapping of the Skaffold document being mapped.

    Keys are popped as they are understood, and every container that was looked into is
    recorded in `touched`: whatever is left at the end is what devloop ignores, and is
    reported (see `_leftovers`).
    """

    def __init__(self, data: dict[str, Any], key: str, touched: set[int], source: Path) -> None:
        self.data = data
        self.key = key
        self.touched = touched
        self.source = source
        touched.add(id(data))

    def child(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, key, message)

    def present(self, name: str) -> bool:
        return self.data.get(name) not in (None, {}, [])

    def take(self, name: str) -> Any:
        return self.data.pop(name, None)

    def string(self, name: str) -> str | None:
        value = self.take(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # `namespace: 2024` is still a name
        raise self.error(self.child(name), f"expected a string, got {describe_value(value)}")

    def boolean(self, name: str) -> bool | None:
        value = self.take(name)
        if value is None or isinstance(value, bool):
            return value
        raise self.error(self.child(name), f"expected true or false, got {describe_value(value)}")

    def number(self, name: str) -> float | None:
        value = self.take(name)
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            return value
        raise self.error(self.child(name), f"expected a number, got {describe_value(value)}")

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.take(name)
        if value is None or isinstance(value, dict):
            return value
        raise self.error(
            self.child(name), f"expected a mapping (key: value), got {describe_value(value)}"
        )

    def section(self, name: str) -> _Node | None:
        """The mapping under `name`, left in place so its unread keys get reported."""
        value = self.data.get(name)
        if value is None:
            self.data.pop(name, None)
            return None
        if not isinstance(value, dict):
            raise self.error(
                self.child(name), f"expected a mapping (key: value), got {describe_value(value)}"
            )
        return _Node(value, self.child(name), self.touched, self.source)

    def entries(self, name: str) -> list[Any]:
        """The list under `name`, left in place: set an entry to None once it is used."""
        value = self.data.get(name)
        if value is None:
            self.data.pop(name, None)
            return []
        if not isinstance(value, list):
            raise self.error(self.child(name), f"expected a list, got {describe_value(value)}")
        self.touched.add(id(value))
        return value

    def strings(self, name: str) -> list[tuple[int, str]]:
        entries = self.entries(name)
        out = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, str):
                raise self.error(
                    f"{self.child(name)}[{i}]", f"expected a string, got {describe_value(entry)}"
                )
            out.append((i, entry))
        return out

    def items(self, name: str) -> list[_Node]:
        nodes = []
        for i, entry in enumerate(self.entries(name)):
            if not isinstance(entry, dict):
                raise self.error(
                    f"{self.child(name)}[{i}]",
                    f"expected a mapping (key: value), got {describe_value(entry)}",
                )
            nodes.append(_Node(entry, f"{self.child(name)}[{i}]", self.touched, self.source))
        return nodes


def _leftovers(value: Any, key: str, touched: set[int]) -> list[str]:
    """Keys under `value` that were not read: an untouched mapping or scalar list is named
    as a whole, an untouched list of mappings item by item (`portForward[0]`)."""
    # An empty mapping still selects something (`jib: {}`, `googleCloudBuild: {}`).
    if value is None or (isinstance(value, list) and not value):
        return []
    if isinstance(value, dict) and id(value) in touched:
        out: list[str] = []
        for k, v in value.items():
            out += _leftovers(v, f"{key}.{k}" if key else str(k), touched)
        return out
    if isinstance(value, list) and (
        id(value) in touched or all(isinstance(v, dict) for v in value)
    ):
        return [x for i, v in enumerate(value) for x in _leftovers(v, f"{key}[{i}]", touched)]
    return [key]


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys, like Skaffold's FlatMap: {a: {b: 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _non_image_templates(value: str) -> list[str]:
    """The `{{...}}` placeholders in `value` that are not Skaffold image placeholders."""
    return [
        "{{" + inner + "}}"
        for inner in _TEMPLATE.findall(value)
        if not _IMAGE_PLACEHOLDER.match(inner)
    ]


# --------------------------------------------------------------------------- profiles


def _unset(value: Any) -> bool:
    """A profile value that leaves the config's own in place: Skaffold keeps the config's
    value for a nil pointer, an empty string and an empty list (but `{}` sets a section)."""
    return value is None or value == "" or (isinstance(value, list) and not value)


def _overlay(base: Any, over: Any) -> Any:
    """Skaffold's profile overlay: mappings merge key by key; a set list or value replaces."""
    if _unset(over):
        return base
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = _overlay(base.get(k), v)
        return merged
    return copy.deepcopy(over)


def _overlay_profile(document: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    merged = dict(document)
    for section, value in profile.items():
        if section in _PROFILE_KEYS:
            continue
        base = document.get(section)
        if (
            section == "build"
            and isinstance(value, dict)
            and isinstance(base, dict)
            and any(value.get(t) is not None for t in _BUILD_TYPES)
        ):
            base = {k: v for k, v in base.items() if k not in _BUILD_TYPES}
        merged[section] = _overlay(base, value)
    return merged


def _apply_patch(document: dict[str, Any], op: str, path: str, value: Any) -> bool:
    """Apply one JSON-patch operation in place (the one RFC 6902 implementation, `k8s.patch`);
    False when `path` does not exist."""
    operation: dict[str, Any] = {"op": op, "path": path}
    if op != "remove":
        operation["value"] = value
    try:
        patched = json_patch(document, [operation])
    except PatchError:
        return False
    assert isinstance(patched, dict)
    document.clear()
    document.update(patched)
    return True


# --------------------------------------------------------------------------- the import


@dataclass
class _Origin:
    """Where a devloop artifact came from, to name skaffold.yaml keys in errors."""

    whole: str
    fields: dict[str, str] = field(default_factory=dict)
    # For list fields whose entries were filtered: devloop index -> skaffold.yaml index.
    indices: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class _Manifests:
    base_name: str
    data: dict[str, Any]
    origin: _Origin


class _Importer:
    """Collects the artifacts of every document, then builds one Config in `finish`."""

    def __init__(self, source: Path, *, multi: bool) -> None:
        self.source = source
        self.root = source.parent
        self.multi = multi
        self.charts: list[tuple[dict[str, Any], _Origin]] = []
        self.manifests: list[_Manifests] = []
        self.images: list[tuple[dict[str, Any], _Origin]] = []
        self.unsupported: list[str] = []
        self.notes: list[str] = []
        self.activations: list[str] = []
        self.profiles_found: set[str] = set()
        self.profiles_available: list[str] = []
        self.kube_context: tuple[str, str] | None = None  # (context, key)
        self.deadline: tuple[float, str] | None = None  # (seconds, key)
        self.top_keys: dict[Loc, str] = {}
        self.covered: dict[Path, str] = {}  # manifest file -> the entry that deploys it

    # ---- messages

    def note(self, key: str, message: str) -> None:
        self.notes.append(f"{self.source.name}: {key}: {message}")

    def template(self, key: str, value: str) -> None:
        self.note(
            key,
            f"Skaffold template {value!r} not supported (ignored): devloop fills in only "
            "{{.IMAGE_...}} placeholders; write the value itself",
        )

    # ---- one document

    def add_document(self, index: int, document: Any, profiles: list[str]) -> None:
        prefix = f"documents[{index}]" if self.multi else ""
        if not isinstance(document, dict):
            raise ConfigError(
                self.source,
                prefix,
                f"expected a mapping (apiVersion:, kind:, build:, ...), got {describe_value(document)}",
            )
        version = self._api_version(document, prefix)
        document = self._apply_profiles(copy.deepcopy(document), prefix, profiles)
        # They identify the config (and `metadata.name` selects modules with `skaffold -m`);
        # they change nothing that is deployed.
        for key in ("apiVersion", "kind", "metadata"):
            document.pop(key, None)
        touched: set[int] = set()
        top = _Node(document, prefix, touched, self.source)
        self._document(top, v2=version.startswith("v2"))
        self.unsupported += _leftovers(document, prefix, touched)

    def _api_version(self, document: dict[str, Any], prefix: str) -> str:
        key = f"{prefix}.apiVersion" if prefix else "apiVersion"
        version = document.get("apiVersion")
        supported = ", ".join(SUPPORTED_API_VERSIONS)
        if version is None:
            raise ConfigError(self.source, key, f"missing: devloop reads {supported}")
        match = _API_VERSION.match(str(version))
        if match is None:
            raise ConfigError(
                self.source,
                key,
                f"{version} is not supported: devloop reads {supported} "
                "(`skaffold fix` upgrades an older file)",
            )
        kind = document.get("kind")
        if kind not in (None, "Config"):
            raise ConfigError(
                self.source,
                f"{prefix}.kind" if prefix else "kind",
                f"{kind!r}: a skaffold.yaml document has kind: Config",
            )
        return match.group(1)

    def _apply_profiles(
        self, document: dict[str, Any], prefix: str, names: list[str]
    ) -> dict[str, Any]:
        key = f"{prefix}.profiles" if prefix else "profiles"
        profiles = document.pop("profiles", None) or []
        if not isinstance(profiles, list):
            raise ConfigError(self.source, key, f"expected a list, got {describe_value(profiles)}")
        by_name: dict[str, tuple[int, dict[str, Any]]] = {}
        for i, profile in enumerate(profiles):
            if not isinstance(profile, dict) or not isinstance(profile.get("name"), str):
                raise ConfigError(
                    self.source, f"{key}[{i}]", "a profile is a mapping with a name: and sections"
                )
            by_name[profile["name"]] = (i, profile)
            if profile["name"] not in self.profiles_available:
                self.profiles_available.append(profile["name"])
            if profile.get("activation"):
                self.activations.append(f"{key}[{i}].activation")
        for name in names:
            if name not in by_name:
                continue
            i, profile = by_name[name]
            self.profiles_found.add(name)
            document = _overlay_profile(document, profile)
            self._apply_patches(document, profile.get("patches"), f"{key}[{i}]", name)
        return document

    def _apply_patches(
        self, document: dict[str, Any], patches: Any, key: str, profile: str
    ) -> None:
        if patches is None:
            return
        if not isinstance(patches, list):
            raise ConfigError(
                self.source, f"{key}.patches", f"expected a list, got {describe_value(patches)}"
            )
        for j, patch in enumerate(patches):
            pkey = f"{key}.patches[{j}]"
            if not isinstance(patch, dict):
                raise ConfigError(
                    self.source, pkey, "a patch is a mapping with op:, path: and value:"
                )
            op = patch.get("op") or "replace"  # Skaffold's default
            if op not in _PATCH_OPS:
                raise ConfigError(
                    self.source,
                    f"{pkey}.op",
                    f"{op!r} is not supported by devloop: use {', '.join(_PATCH_OPS)}",
                )
            path = patch.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(
                    self.source,
                    f"{pkey}.path",
                    f"expected a JSON pointer such as /build/artifacts/0/context, got {describe_value(path)}",
                )
            if op != "remove" and "value" not in patch:
                raise ConfigError(
                    self.source, f"{pkey}.value", f"required by op {op!r}: add value:"
                )
            if not _apply_patch(document, op, path, patch.get("value")):
                raise ConfigError(
                    self.source,
                    f"{pkey}.path",
                    f"{path} does not exist in the config when profile {profile!r} is applied "
                    "(check the keys and list indexes)",
                )

    def _document(self, top: _Node, *, v2: bool) -> None:
        deploy = top.section("deploy")
        wait = self._deploy_settings(deploy) if deploy is not None else True
        # v3+: deploy.kubectl applies what `manifests` rendered, with its default namespace.
        namespace: tuple[str | None, str] = (None, "")
        kubectl = deploy.section("kubectl") if deploy is not None and not v2 else None
        if kubectl is not None:
            namespace = self._namespace(kubectl, "defaultNamespace")

        build = top.section("build")
        if build is not None:
            for artifact in build.items("artifacts"):
                self._artifact(artifact)
            build.section("local")  # looked into only to name its settings (build.local.push)

        manifest_sets = len(self.manifests)
        releases: dict[str, int] = {}
        helm = deploy.section("helm") if deploy is not None else None
        if helm is not None:
            for release in helm.items("releases"):
                self._release(release, v2=v2, wait=wait, namespace=None, deployed=releases)
        if v2:
            self._v2_manifests(top, deploy)
        else:
            self._v3_manifests(top, deploy, namespace, wait=wait, deployed=releases)
        if not wait and len(self.manifests) > manifest_sets and deploy is not None:
            self.note(
                deploy.child("statusCheck"),
                "false applies to Helm releases only; devloop still waits for the workloads "
                "of raw and kustomize manifests",
            )

    def _deploy_settings(self, deploy: _Node) -> bool:
        wait = deploy.boolean("statusCheck")
        deadline = deploy.number("statusCheckDeadlineSeconds")
        if deadline is not None and (self.deadline is None or deadline > self.deadline[0]):
            self.deadline = (deadline, deploy.child("statusCheckDeadlineSeconds"))
            self.top_keys[("wait_timeout",)] = self.deadline[1]
        context = deploy.string("kubeContext")
        if context is not None:
            key = deploy.child("kubeContext")
            if "{{" in context:
                self.template(key, context)
            elif self.kube_context is not None and self.kube_context[0] != context:
                raise ConfigError(
                    self.source,
                    key,
                    f"{context!r} differs from {self.kube_context[1]} ({self.kube_context[0]!r}): "
                    "devloop deploys a config to one cluster",
                )
            else:
                self.kube_context = (context, key)
                for loc in (("cluster",), ("cluster", "provider"), ("cluster", "context")):
                    self.top_keys[loc] = key
        return wait is not False

    def _namespace(self, node: _Node, name: str) -> tuple[str | None, str]:
        key = node.child(name)
        value = node.string(name)
        if value is not None and "{{" in value:
            self.template(key, value)
            return None, key
        return value, key

    # ---- images

    def _artifact(self, node: _Node) -> None:
        builders = [b for b in _OTHER_BUILDERS if node.data.get(b) is not None]
        if builders:
            # devloop builds with docker only: keep the builder key for the warning line,
            # and drop the rest of the artifact with it.
            for key in list(node.data):
                if key not in builders:
                    del node.data[key]
            return
        spec: dict[str, Any] = {}
        origin = _Origin(
            node.key,
            {
                "name": node.child("image"),
                "context": node.child("context"),
                "dockerfile": node.child("docker.dockerfile"),
                "build_args": node.child("docker.buildArgs"),
                "target": node.child("docker.target"),
            },
        )
        image = node.string("image")
        if image is not None:
            spec["name"] = image
        context = node.string("context")
        if context is not None:
            spec["context"] = context
        docker = node.section("docker")
        if docker is not None:
            dockerfile = docker.string("dockerfile")
            if dockerfile is not None:
                spec["dockerfile"] = dockerfile
            target = docker.string("target")
            if target is not None:
                spec["target"] = target
            args = docker.section("buildArgs")
            if args is not None:
                spec["build_args"] = self._build_args(args)
        self.images.append((spec, origin))

    def _build_args(self, args: _Node) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in list(args.data):
            value = args.data[name]
            key = args.child(str(name))
            if value is None:
                # docker would read the value from the environment: leave it for the warning
                # line rather than make the config depend on the shell it is loaded in.
                continue
            if isinstance(value, dict | list):
                raise ConfigError(
                    self.source, key, f"expected a string, got {describe_value(value)}"
                )
            text = str(value).lower() if isinstance(value, bool) else str(value)
            del args.data[name]
            if "{{" in text:
                self.template(key, text)
                continue
            out[str(name)] = text
        return out

    # ---- charts

    def _release(
        self,
        node: _Node,
        *,
        v2: bool,
        wait: bool,
        namespace: tuple[str | None, str] | None,
        deployed: dict[str, int],
    ) -> None:
        """Map one Helm release. `namespace` is None for deploy.helm releases, which record
        their names in `deployed`; manifests.helm releases (the default namespace of the
        kubectl deployer in `namespace`) that repeat one of them are skipped."""
        if node.data.get("remoteChart") is not None:
            # devloop renders local charts only: the release is skipped, and named by its
            # remoteChart key in the warning line (version and repo go with it).
            for key in list(node.data):
                if key != "remoteChart":
                    del node.data[key]
            return
        chart: dict[str, Any] = {}
        origin = _Origin(
            node.key,
            {
                "name": node.child("name"),
                "path": node.child("chartPath"),
                "values": node.child("valuesFiles"),
                "namespace": node.child("namespace"),
                "create_namespace": node.child("createNamespace"),
                "set": node.child("setValues"),
                "image_values": node.child("setValueTemplates"),
                "wait": node.key,
            },
        )
        name = node.string("name")
        if name is not None:
            chart["name"] = name
        path = node.string("chartPath")
        if path is not None:
            chart["path"] = path
        values: list[str] = []
        origin.indices["values"] = []
        for j, file in node.strings("valuesFiles"):
            node.data["valuesFiles"][j] = None
            if "{{" in file:
                self.template(f"{node.child('valuesFiles')}[{j}]", file)
                continue
            values.append(file)
            origin.indices["values"].append(j)
        if values:
            chart["values"] = values
        own_namespace, _ = self._namespace(node, "namespace")
        if own_namespace is not None:
            chart["namespace"] = own_namespace
        create = node.boolean("createNamespace")
        if create is not None:
            chart["create_namespace"] = create
        # Skaffold's `wait` makes helm block until ready; devloop always waits for what it
        # applied (unless deploy.statusCheck is false), so the setting changes nothing.
        node.take("wait")
        sets: dict[str, Any] = {}
        overrides = node.mapping("overrides")  # an inline values file, given before setValues
        if overrides:
            sets.update(_flatten(overrides))
        set_values = node.mapping("setValues")
        if set_values:
            sets.update(_flatten(set_values))
        image_values: dict[str, str] = {}
        templates = node.mapping("setValueTemplates")
        for key, value in _flatten(templates or {}).items():
            tkey = f"{node.child('setValueTemplates')}.{key}"
            if not isinstance(value, str) or "{{" not in value:
                sets[key] = value
            elif _non_image_templates(value):
                self.template(tkey, value)
            else:
                image_values[key] = value
        if v2:
            image_values.update(self._artifact_overrides(node))
        if sets:
            chart["set"] = sets
        if image_values:
            chart["image_values"] = image_values
        if not wait:
            chart["wait"] = False
        from_deploy = namespace is None
        if name is not None and not from_deploy and name in deployed:
            # `skaffold fix` copies v2 releases into both manifests.helm and deploy.helm; the
            # helm deployer's copy is the one `skaffold dev` deploys.
            first, first_origin = self.charts[deployed[name]]
            if first != chart:
                self.note(
                    node.key,
                    f"release {name!r} is also {first_origin.whole}, with other settings: "
                    f"using {first_origin.whole}",
                )
            return
        if name is not None and from_deploy:
            deployed.setdefault(name, len(self.charts))
        if own_namespace is None and namespace is not None and namespace[0] is not None:
            chart["namespace"] = namespace[0]
            origin.fields["namespace"] = namespace[1]
        self.charts.append((chart, origin))

    def _artifact_overrides(self, node: _Node) -> dict[str, str]:
        overrides = node.mapping("artifactOverrides") or {}
        strategy = node.section("imageStrategy")
        helm = strategy.section("helm") if strategy is not None else None
        explicit = helm.boolean("explicitRegistry") if helm is not None else None
        if strategy is not None:
            strategy.section("fqn")  # the default: nothing to read, its settings get reported
        out: dict[str, str] = {}
        # The same values `skaffold fix` writes when it upgrades v2 artifactOverrides.
        for key, image in _flatten(overrides).items():
            name = template_image_key(str(image))
            if helm is None:
                out[key] = f"{{{{.IMAGE_FULLY_QUALIFIED_{name}}}}}"
                continue
            out[f"{key}.tag"] = f"{{{{.IMAGE_TAG_{name}}}}}@{{{{.IMAGE_DIGEST_{name}}}}}"
            if explicit:
                out[f"{key}.registry"] = f"{{{{.IMAGE_DOMAIN_{name}}}}}"
                out[f"{key}.repository"] = f"{{{{.IMAGE_REPO_NO_DOMAIN_{name}}}}}"
            else:
                out[f"{key}.repository"] = f"{{{{.IMAGE_REPO_{name}}}}}"
        return out

    # ---- manifests

    def _v2_manifests(self, top: _Node, deploy: _Node | None) -> None:
        # Skaffold v2 deploys k8s/*.yaml with kubectl when kubectl names no manifests, and
        # when no deployer is configured at all.
        deployers = ("helm", "kubectl", "kustomize", "kpt", "docker")
        kubectl = deploy.section("kubectl") if deploy is not None else None
        if kubectl is not None:
            namespace = self._namespace(kubectl, "defaultNamespace")
            globs = kubectl.strings("manifests")
            if globs:
                self._globs(globs, kubectl.child("manifests"), kubectl.data["manifests"], namespace)
            else:
                self._default_manifests(kubectl.child("manifests"), namespace)
        elif deploy is None or not any(deploy.data.get(d) is not None for d in deployers):
            self._default_manifests(top.child("deploy.kubectl.manifests"), (None, ""))
        kustomize = deploy.section("kustomize") if deploy is not None else None
        if kustomize is not None:
            self._kustomize(kustomize, self._namespace(kustomize, "defaultNamespace"))

    def _v3_manifests(
        self,
        top: _Node,
        deploy: _Node | None,
        namespace: tuple[str | None, str],
        *,
        wait: bool,
        deployed: dict[str, int],
    ) -> None:
        manifests = top.section("manifests")
        # Skaffold's SetDefaultRenderer: k8s/*.yaml when nothing else renders or deploys.
        renders = manifests is not None and (
            manifests.present("rawYaml")
            or manifests.present("kpt")
            or manifests.data.get("kustomize") is not None
            or manifests.data.get("helm") is not None
        )
        deploys = deploy is not None and any(
            deploy.data.get(d) is not None for d in ("helm", "docker", "cloudrun")
        )
        if not renders and not deploys:
            self._default_manifests(top.child("manifests.rawYaml"), namespace)
        if manifests is None:
            return
        globs = manifests.strings("rawYaml")
        if globs:
            self._globs(globs, manifests.child("rawYaml"), manifests.data["rawYaml"], namespace)
        kustomize = manifests.section("kustomize")
        if kustomize is not None:
            self._kustomize(kustomize, namespace)
        helm = manifests.section("helm")
        if helm is not None:
            for release in helm.items("releases"):
                self._release(release, v2=False, wait=wait, namespace=namespace, deployed=deployed)

    def _default_manifests(self, key: str, namespace: tuple[str | None, str]) -> None:
        self._globs([(0, DEFAULT_MANIFESTS)], key, None, namespace, default=True)

    def _globs(
        self,
        globs: list[tuple[int, str]],
        key: str,
        entries: list[Any] | None,
        namespace: tuple[str | None, str],
        *,
        default: bool = False,
    ) -> None:
        for j, pattern in globs:
            entry_key = key if default else f"{key}[{j}]"
            if pattern.startswith(("http://", "https://")):
                continue  # a remote manifest: left in place, so named in the warning line
            if entries is not None:
                entries[j] = None
            sets, taken_by = self._expand(pattern, entry_key)
            if taken_by is not None:
                self.note(entry_key, f"{pattern}: already deployed with {taken_by} (skipped)")
            elif not sets:
                why = " (Skaffold's default when no manifests are configured)" if default else ""
                self.note(entry_key, f"{pattern}{why} matches no files (skipped)")
            for path in sets:
                fields = {"path": entry_key, "name": entry_key, "kustomize": entry_key}
                if namespace[1]:
                    fields["namespace"] = namespace[1]
                data: dict[str, Any] = {"path": self._relative(path), "kustomize": False}
                if namespace[0] is not None:
                    data["namespace"] = namespace[0]
                self.manifests.append(
                    _Manifests(self._name_for(path), data, _Origin(entry_key, fields))
                )

    def _expand(self, pattern: str, key: str) -> tuple[list[Path], str | None]:
        """The folders and files a rawYaml glob stands for, and, when everything it matches
        is already in a set, the key of the entry that took it."""
        if not glob.has_magic(pattern):
            path = self.root / pattern
            files = [path] if path.exists() else []
        else:
            # glob.glob, not Path.glob: a pattern may be absolute, which Path.glob refuses.
            matches = glob.glob(pattern, root_dir=self.root, recursive=True)  # noqa: PTH207
            files = [self.root / m for m in sorted(matches) if (self.root / m).is_file()]
        fresh = [f for f in files if f not in self.covered]
        if not fresh:
            return [], (self.covered[files[0]] if files else None)
        for f in fresh:
            self.covered[f] = key
        folder = fresh[0].parent
        if len(fresh) == 1 and fresh[0].is_dir():
            return fresh, None
        in_folder = [p for p in folder.iterdir() if p.is_file() and p.suffix in _YAML_SUFFIXES]
        # The whole folder is one set only when that is exactly what the glob matched: the
        # same files, and no subfolder that a recursive reader could pick up as well.
        if set(fresh) == set(in_folder) and not any(p.is_dir() for p in folder.iterdir()):
            return [folder], None
        return fresh, None

    def _kustomize(self, kustomize: _Node, namespace: tuple[str | None, str]) -> None:
        paths = kustomize.strings("paths") or [(0, ".")]  # Skaffold's default
        entries = kustomize.data.get("paths")
        for j, path in paths:
            key = f"{kustomize.child('paths')}[{j}]"
            if isinstance(entries, list):
                entries[j] = None
            folder = self.root / path
            if folder.is_dir() and not any(
                (folder / name).is_file() for name in _KUSTOMIZATION_FILES
            ):
                raise ConfigError(
                    self.source,
                    key,
                    f"{path} has no kustomization.yaml (kustomize paths are folders with one)",
                )
            fields = {"path": key, "name": key, "kustomize": key}
            if namespace[1]:
                fields["namespace"] = namespace[1]
            data: dict[str, Any] = {"path": path, "kustomize": True}
            if namespace[0] is not None:
                data["namespace"] = namespace[0]
            self.manifests.append(_Manifests(self._name_for(folder), data, _Origin(key, fields)))

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root)) or "."
        except ValueError:
            return str(path)

    def _name_for(self, path: Path) -> str:
        relative = self._relative(path.with_suffix("") if path.is_file() else path)
        if relative == ".":
            relative = self.root.name
        name = re.sub(r"[^a-z0-9.-]+", "-", relative.lower()).strip("-.")
        return name[:63].rstrip("-.") or "manifests"

    # ---- the Config

    def key_of(self, loc: Loc) -> str:
        """Name a devloop key path by the skaffold.yaml key it came from."""
        if len(loc) >= 2 and isinstance(loc[1], int):
            origins = {
                "charts": [o for _, o in self.charts],
                "manifests": [m.origin for m in self.manifests],
                "images": [o for _, o in self.images],
            }.get(str(loc[0]))
            if origins is not None and loc[1] < len(origins):
                origin = origins[loc[1]]
                if len(loc) == 2:
                    return origin.whole
                name, rest = str(loc[2]), loc[3:]
                base = origin.fields.get(name, f"{origin.whole}.{name}")
                if rest and isinstance(rest[0], int) and name in origin.indices:
                    base += f"[{origin.indices[name][rest[0]]}]"
                    rest = rest[1:]
                tail = default_key(rest)
                return f"{base}{tail}" if tail.startswith("[") or not tail else f"{base}.{tail}"
        for size in range(len(loc), 0, -1):
            if loc[:size] in self.top_keys:
                return self.top_keys[loc[:size]]
        return default_key(loc)

    def finish(self) -> Config:
        names = {c.get("name") for c, _ in self.charts}
        for manifests in self.manifests:
            name, n = manifests.base_name, 1
            while name in names:
                n += 1
                name = f"{manifests.base_name}-{n}"
            names.add(name)
            manifests.data["name"] = name
        # The same image in two documents of a multi-config is built once.
        unique: list[tuple[dict[str, Any], _Origin]] = []
        for spec, origin in self.images:
            if not any(spec == other for other, _ in unique):
                unique.append((spec, origin))
        self.images = unique

        data: dict[str, Any] = {
            "charts": [c for c, _ in self.charts],
            "manifests": [m.data for m in self.manifests],
            "images": [i for i, _ in self.images],
        }
        if self.kube_context is not None:
            data["cluster"] = {"provider": "current", "context": self.kube_context[0]}
        if self.deadline is not None:
            data["wait_timeout"] = self.deadline[0]
        warnings = []
        if self.unsupported:
            warnings.append(
                f"{self.source.name}: not supported (ignored): {', '.join(self.unsupported)}"
            )
        warnings += self.notes
        if self.activations:
            warnings.append(
                f"{self.source.name}: {', '.join(self.activations)} ignored: devloop applies a "
                "profile only when it is named with --devloop-profile NAME"
            )
        return build_config(data, self.source, warnings=warnings, key_of=self.key_of)
