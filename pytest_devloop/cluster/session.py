"""From command-line options to a config and a cluster: shared by the pytest plugin and the CLI.

Owns the option set both front ends accept (config file, profile, cluster provider,
context, create, force, prune, build) and their resolution into a loaded `Config` and a
guarded `Target`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_devloop.cluster.providers import Target, check_allowed, resolve
from pytest_devloop.config.load import load_config
from pytest_devloop.config.model import Config, ConfigError

PRUNE_KINDS = ("pvcs", "crds", "namespaces")


@dataclass
class Options:
    rootdir: Path
    config: Path | None = None
    profile: str | None = None
    cluster: str | None = None  # provider override
    context: str | None = None
    create_cluster: bool = False
    force_conflicts: bool = False
    adopt: bool = False
    prune: list[str] = field(default_factory=list)
    mode: str = "dev"
    build: bool = False


def parse_prune(values: list[str], option: str = "--devloop-prune") -> list[str]:
    """Kinds to prune from `values`; an error names `option`, the flag the user typed."""
    out: list[str] = []
    for value in values:
        for raw in value.split(","):
            part = raw.strip()
            if not part:
                continue
            if part not in PRUNE_KINDS:
                raise ConfigError(
                    Path(option),
                    part,
                    f"{option}: unknown kind {part!r}; use one or more of {', '.join(PRUNE_KINDS)}",
                )
            out.append(part)
    return out


def run_mode(config: pytest.Config) -> str:
    """The mode of a pytest run: `static`, `ci` (flag or `CI=true`) or `dev`; `--devloop-mode` wins."""
    if config.getoption("devloop_static"):
        return "static"
    mode = config.getoption("devloop_mode")
    if mode is not None:
        return str(mode)
    ci_env = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return "ci" if config.getoption("devloop_ci") or ci_env else "dev"


def _provider(config: pytest.Config) -> str | None:
    """`--devloop-cluster`, unless a `pytest_devloop_cluster_provider` hook chooses another."""
    configured = config.getoption("devloop_cluster")
    hook = getattr(config.hook, "pytest_devloop_cluster_provider", None)
    chosen = hook(config=config, configured=configured) if hook is not None else None
    return str(chosen) if chosen is not None else configured


def options_from_pytest(config: pytest.Config) -> Options:
    """The one translation of pytest's devloop options into `Options` (plugin, run, watch)."""
    explicit = config.getoption("devloop_config") or config.getini("devloop_config") or None
    return Options(
        rootdir=Path(config.rootpath),
        config=Path(explicit) if explicit else None,
        profile=config.getoption("devloop_profile"),
        cluster=_provider(config),
        context=config.getoption("devloop_context"),
        create_cluster=config.getoption("devloop_create_cluster"),
        force_conflicts=config.getoption("devloop_force_conflicts"),
        adopt=config.getoption("devloop_adopt", False),
        prune=parse_prune(config.getoption("devloop_prune")),
        mode="ci" if run_mode(config) == "ci" else "dev",
        build=config.getoption("devloop_build"),
    )


def load(options: Options) -> Config | None:
    return load_config(options.rootdir, options.config, options.profile)


def target_for(config: Config, options: Options) -> Target:
    provider = options.cluster or config.cluster.provider
    if options.context and provider == "embedded" and not options.cluster:
        provider = "current"
    context = options.context or config.cluster.context
    target = resolve(
        provider,
        root=config.root,
        context=context,
        kubeconfig=os.environ.get("KUBECONFIG") if provider != "embedded" else None,
        create=options.create_cluster,
    )
    check_allowed(target, config.cluster.allow_contexts)
    return target
