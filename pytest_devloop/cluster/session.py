"""From command-line options to a config and a cluster: shared by the pytest plugin and the CLI.

Owns the option set both front ends accept (config file, profile, cluster provider,
context, create, force, prune, build) and their resolution into a loaded `Config` and a
guarded `Target`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    prune: list[str] = field(default_factory=list)
    mode: str = "dev"
    build: bool = False


def parse_prune(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for raw in value.split(","):
            part = raw.strip()
            if not part:
                continue
            if part not in PRUNE_KINDS:
                raise ConfigError(
                    Path("--devloop-prune"),
                    part,
                    f"--devloop-prune: unknown kind {part!r}; use one or more of {', '.join(PRUNE_KINDS)}",
                )
            out.append(part)
    return out


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
