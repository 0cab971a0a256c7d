"""Whether affected-test selection is on for a run, and why: a pure decision with its reason.

The decision is a value (`Decision`), computed from plain inputs with no pytest object and
no I/O, so that it is tested alone, printed by the run as one line, and overridable by a
user's `pytest_devloop_selection_mode` hook (see `pytest_devloop.hookspecs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    on: bool
    reason: str


def selection_mode(
    *,
    affected: bool,
    keyword: str = "",
    markexpr: str = "",
    last_failed: bool = False,
    args: Sequence[str] = (),
    mode: str = "dev",
    synced: bool = True,
    sync_error: str | None = None,
) -> Decision:
    """Selection runs only what a change affects; anything that narrows or widens the run
    by other means turns it off, and the reason says which."""
    if not affected:
        return Decision(False, "--devloop-affected not given")
    if keyword:
        return Decision(False, "-k was given")
    if markexpr:
        return Decision(False, "-m was given")
    if last_failed:
        return Decision(False, "--lf/--ff was given")
    if any("::" in str(a) for a in args):
        return Decision(False, "test ids were given")
    if mode != "dev":
        return Decision(False, f"{mode} mode runs every test")
    if not synced:
        return Decision(False, "there was no sync" + (f" ({sync_error})" if sync_error else ""))
    return Decision(True, "--devloop-affected: tests the last sync's changes can affect")
