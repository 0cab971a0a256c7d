"""Loading a project's config: find the file, then read it as devloop.yaml or skaffold.yaml.

This module is the one door to both readers, so that the model (`config.model`) and the
Skaffold import (`config.skaffold`) never import each other in a circle.
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_devloop.config.model import (
    SKAFFOLD_FILES,
    Config,
    ConfigError,
    find_config,
    parse_config,
)
from pytest_devloop.config.skaffold import load_skaffold

_SKAFFOLD_API = re.compile(r"^apiVersion:\s*[\"']?skaffold/", re.MULTILINE)


def _is_skaffold(path: Path, text: str) -> bool:
    return path.name.startswith("skaffold") or bool(_SKAFFOLD_API.search(text))


def load_config(
    rootdir: Path, explicit: Path | None = None, profile: str | None = None
) -> Config | None:
    """Find and read the config of the project in `rootdir`; None when it has none.

    `profile` names Skaffold profiles to apply (comma separated, like `skaffold -p`); a
    devloop.yaml has no profiles, so a profile with one is an error.
    """
    path = find_config(rootdir, explicit)
    if path is None:
        if profile is not None:
            raise ConfigError(
                rootdir.absolute() / SKAFFOLD_FILES[0],
                "",
                f"--devloop-profile {profile} given, but there is no skaffold.yaml or "
                f"devloop.yaml in {rootdir}: add one, or drop --devloop-profile",
            )
        return None
    path = path.absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, "", f"cannot read the file: {e}") from e
    if _is_skaffold(path, text):
        return load_skaffold(text, path, profile)
    if profile is not None:
        raise ConfigError(
            path,
            "",
            f"--devloop-profile {profile}: {path.name} has no profiles (profiles are read "
            "from skaffold.yaml only): drop --devloop-profile",
        )
    return parse_config(text, path)
