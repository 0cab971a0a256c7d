"""The selection-mode decision (`selection.policy`) and the hooks that override devloop's policies."""

from __future__ import annotations

import pytest

from pytest_devloop.selection.policy import Decision, selection_mode


@pytest.mark.parametrize(
    ("kwargs", "on", "reason"),
    [
        ({"affected": False}, False, "--devloop-affected not given"),
        ({"affected": True, "keyword": "replicas"}, False, "-k was given"),
        ({"affected": True, "markexpr": "slow"}, False, "-m was given"),
        ({"affected": True, "last_failed": True}, False, "--lf/--ff was given"),
        ({"affected": True, "args": ["tests/test_x.py::test_y"]}, False, "test ids were given"),
        ({"affected": True, "mode": "ci"}, False, "ci mode runs every test"),
        (
            {"affected": True, "synced": False, "sync_error": "refused"},
            False,
            "there was no sync (refused)",
        ),
        ({"affected": True, "args": ["tests"]}, True, "--devloop-affected"),
    ],
)
def test_selection_mode_is_a_decision_with_its_reason(
    kwargs: dict[str, object], on: bool, reason: str
) -> None:
    decision = selection_mode(**kwargs)  # type: ignore[arg-type]
    assert isinstance(decision, Decision)
    assert decision.on is on
    assert reason in decision.reason
