"""The Deployment status rules as data: facts in, conditions and wake-up out (pure)."""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded.deployment_status import (
    Rollout,
    conditions_for,
    counts_for,
    wake_after,
)

NOW = "2026-01-01T00:00:10Z"
EPOCH_10 = 1767225610.0  # NOW as seconds


def rs(name: str, replicas: int, ready: int, available: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available},
    }


def deployment(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "generation": 3},
        "spec": {"replicas": 2, "progressDeadlineSeconds": 5},
        "status": status,
    }


def rollout(d: dict[str, Any], new: dict[str, Any], olds: list[dict[str, Any]]) -> Rollout:
    return Rollout.of(
        d, new, olds, replicas=2, max_unavailable=0, created=False, wall=lambda: EPOCH_10
    )


def test_a_finished_rollout_is_available_and_complete() -> None:
    d = deployment(replicas=2, updatedReplicas=1, readyReplicas=1, availableReplicas=1)
    r = rollout(d, rs("web-2", 2, 2, 2), [])
    conds = {c["type"]: c for c in conditions_for(d, r, now=NOW)}
    assert (conds["Available"]["status"], conds["Available"]["reason"]) == (
        "True",
        "MinimumReplicasAvailable",
    )
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Progressing"]["message"] == 'ReplicaSet "web-2" has successfully progressed.'
    assert counts_for(d, r) == {
        "observedGeneration": 3,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
    }
    assert wake_after(r) is None


def test_a_stalled_rollout_waits_for_its_deadline_then_exceeds_it() -> None:
    stalled = {
        "type": "Progressing",
        "status": "True",
        "reason": "ReplicaSetUpdated",
        "lastUpdateTime": "2026-01-01T00:00:08Z",  # 2 s ago, deadline 5 s
    }
    d = deployment(
        replicas=3, updatedReplicas=1, readyReplicas=2, availableReplicas=2, conditions=[stalled]
    )
    r = rollout(d, rs("web-2", 1, 0, 0), [rs("web-1", 2, 2, 1)])
    assert wake_after(r) == 3.0  # no rule holds yet: the controller re-checks at the deadline
    assert {c["type"]: c["reason"] for c in conditions_for(d, r, now=NOW)} == {
        "Available": "MinimumReplicasUnavailable",
        "Progressing": "ReplicaSetUpdated",  # kept as it was
    }
    stalled["lastUpdateTime"] = "2026-01-01T00:00:04Z"  # 6 s ago
    late = rollout(d, rs("web-2", 1, 0, 0), [rs("web-1", 2, 2, 1)])
    progressing = next(c for c in conditions_for(d, late, now=NOW) if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert wake_after(late) is None
