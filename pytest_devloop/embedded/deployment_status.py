"""A Deployment's status, computed from its ReplicaSets: counts, then conditions as data.

Owns what the simulated Deployment controller writes to `status`: the replica counts
summed over its ReplicaSets, and the `Available` and `Progressing` conditions. The
conditions are a table (`CONDITION_RULES`): per condition type, rules tried in order,
the first whose test holds sets the condition's status, reason and message, the way
KWOK describes simulated lifecycles as stages. The facts the rules test are computed
once (`Rollout`), so a rule reads as the sentence the real controller's code spells out
(deployment/util and sync.go of kube-controller-manager).

The progress deadline is the one rule with a side effect on time: while a rollout has
neither progressed nor run out of time, the controller asks to be woken when the
deadline passes (`Rollout.deadline_remaining`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_devloop.embedded.reconcile import condition, get_int, parse_time, set_condition
from pytest_devloop.embedded.store import meta

__all__ = [
    "CONDITION_RULES",
    "ConditionRule",
    "Rollout",
    "conditions_for",
    "counts_for",
    "wake_after",
]

Obj = dict[str, Any]

_COUNTS = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")


def _status_int(obj: Obj, field: str) -> int:
    return get_int((obj.get("status") or {}).get(field), 0)


@dataclass(frozen=True)
class Rollout:
    """What the condition rules test, read once from a Deployment and its ReplicaSets."""

    replicas: int  # desired
    max_unavailable: int
    created: bool  # a new ReplicaSet was created in this pass
    paused: bool
    rs_name: str  # the new ReplicaSet's name ("" when there is none)
    total: int
    updated: int
    ready: int
    available: int
    old_total: int  # pods of the old ReplicaSets
    has_new_rs: bool
    progressed: bool  # any count moved forward since the last status
    previous_reason: str | None  # the Progressing condition's reason before this pass
    # Seconds left before progressDeadlineSeconds passes without progress; None when
    # no deadline applies (none set, or already exceeded).
    deadline_remaining: float | None

    @classmethod
    def of(
        cls,
        d: Obj,
        new_rs: Obj | None,
        olds: list[Obj],
        *,
        replicas: int,
        max_unavailable: int,
        created: bool,
        wall: Callable[[], float],
    ) -> Rollout:
        all_rs = ([new_rs] if new_rs is not None else []) + olds
        old_status = d.get("status") or {}
        spec = d.get("spec") or {}
        updated = _status_int(new_rs, "replicas") if new_rs is not None else 0
        ready = sum(_status_int(r, "readyReplicas") for r in all_rs)
        available = sum(_status_int(r, "availableReplicas") for r in all_rs)
        old_total = sum(_status_int(r, "replicas") for r in olds)
        progressed = (
            updated > get_int(old_status.get("updatedReplicas"), 0)
            or ready > get_int(old_status.get("readyReplicas"), 0)
            or available > get_int(old_status.get("availableReplicas"), 0)
            or old_total
            < get_int(old_status.get("replicas"), 0) - get_int(old_status.get("updatedReplicas"), 0)
        )
        prev = condition(d, "Progressing") or {}
        deadline = spec.get("progressDeadlineSeconds")
        remaining: float | None = None
        if prev.get("reason") != "ProgressDeadlineExceeded" and isinstance(deadline, int):
            last = parse_time(prev.get("lastUpdateTime")) or wall()
            remaining = last + deadline - wall()
        return cls(
            replicas=replicas,
            max_unavailable=max_unavailable,
            created=created,
            paused=bool(spec.get("paused")),
            rs_name=str(meta(new_rs).get("name")) if new_rs is not None else "",
            total=sum(_status_int(r, "replicas") for r in all_rs),
            updated=updated,
            ready=ready,
            available=available,
            old_total=old_total,
            has_new_rs=new_rs is not None,
            progressed=progressed,
            previous_reason=prev.get("reason"),
            deadline_remaining=remaining,
        )

    @property
    def complete(self) -> bool:
        """Every desired pod is updated and available, and no old pod is left."""
        return (
            self.has_new_rs
            and self.updated == self.replicas
            and self.total == self.replicas
            and self.available == self.replicas
            and self.old_total == 0
        )

    @property
    def minimum_available(self) -> bool:
        return self.available >= self.replicas - self.max_unavailable

    @property
    def deadline_passed(self) -> bool:
        return self.deadline_remaining is not None and self.deadline_remaining <= 0


@dataclass(frozen=True)
class ConditionRule:
    """Set condition `type` to `status`/`reason`/`message` when `when` holds.

    `message` may name the new ReplicaSet as `{rs}`. `touch`: the rule moves
    `lastUpdateTime` even when reason and message stay (progress was made).
    """

    type: str
    when: Callable[[Rollout], bool]
    status: str
    reason: str
    message: str
    touch: Callable[[Rollout], bool] = lambda r: False


def _always(r: Rollout) -> bool:
    return True


CONDITION_RULES: tuple[ConditionRule, ...] = (
    ConditionRule(
        "Available",
        lambda r: r.minimum_available,
        "True",
        "MinimumReplicasAvailable",
        "Deployment has minimum availability.",
    ),
    ConditionRule(
        "Available",
        _always,
        "False",
        "MinimumReplicasUnavailable",
        "Deployment does not have minimum availability.",
    ),
    ConditionRule(
        "Progressing", lambda r: r.paused, "Unknown", "DeploymentPaused", "Deployment is paused"
    ),
    ConditionRule(
        "Progressing",
        lambda r: r.complete,
        "True",
        "NewReplicaSetAvailable",
        'ReplicaSet "{rs}" has successfully progressed.',
    ),
    ConditionRule(
        "Progressing",
        lambda r: r.created,
        "True",
        "NewReplicaSetCreated",
        'Created new replica set "{rs}"',
    ),
    # Progress made, or a rollout that starts (nothing said yet, or after completion or
    # a pause): the deadline is measured from here.
    ConditionRule(
        "Progressing",
        lambda r: (
            r.progressed
            or r.previous_reason in (None, "NewReplicaSetAvailable", "DeploymentPaused")
        ),
        "True",
        "ReplicaSetUpdated",
        'ReplicaSet "{rs}" is progressing.',
        touch=lambda r: r.progressed,
    ),
    ConditionRule(
        "Progressing",
        lambda r: r.deadline_passed,
        "False",
        "ProgressDeadlineExceeded",
        'ReplicaSet "{rs}" has timed out progressing.',
    ),
)


def counts_for(d: Obj, rollout: Rollout) -> Obj:
    """The status without conditions: counts (zeros left out, as the API server does)."""
    status: Obj = {
        "observedGeneration": meta(d).get("generation", 1),
        "replicas": rollout.total,
        "updatedReplicas": rollout.updated,
        "readyReplicas": rollout.ready,
        "availableReplicas": rollout.available,
        "unavailableReplicas": max(rollout.replicas - rollout.available, 0),
    }
    for field in (*_COUNTS, "unavailableReplicas"):
        if status.get(field) == 0:
            del status[field]
    collisions = (d.get("status") or {}).get("collisionCount")
    if collisions:
        status["collisionCount"] = collisions
    return status


def conditions_for(
    d: Obj, rollout: Rollout, *, now: str, rules: tuple[ConditionRule, ...] = CONDITION_RULES
) -> list[Obj]:
    """The Deployment's conditions after this pass: per type, the first rule that holds.

    A type no rule matches keeps its condition as it was (a rollout that has neither
    progressed nor reached its deadline).
    """
    conds = list((d.get("status") or {}).get("conditions") or [])
    decided: set[str] = set()
    for rule in rules:
        if rule.type in decided or not rule.when(rollout):
            continue
        decided.add(rule.type)
        conds = set_condition(
            conds,
            rule.type,
            rule.status,
            rule.reason,
            rule.message.format(rs=rollout.rs_name),
            now=now,
            update_time=True,
            touch=rule.touch(rollout),
        )
    return conds


def wake_after(
    rollout: Rollout, rules: tuple[ConditionRule, ...] = CONDITION_RULES
) -> float | None:
    """Seconds until the progress deadline passes, while no Progressing rule holds yet
    (the controller re-checks then); None when nothing waits on the clock."""
    if rollout.deadline_remaining is None:
        return None
    if any(rule.type == "Progressing" and rule.when(rollout) for rule in rules):
        return None
    return rollout.deadline_remaining
