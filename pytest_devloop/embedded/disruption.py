"""The eviction subresource's budget check: PodDisruptionBudgets honoured as on a real server.

Owns the verdict on `POST pods/NAME/eviction`: the budgets of the pod's namespace whose
selector matches it are counted from the live pods (not from a status that may lag), and
an eviction that would leave fewer healthy pods than a budget wants is refused with the
real 429 (`Cannot evict pod as it would violate the pod's disruption budget.`) and a
`DisruptionBudget` cause, which `kubectl drain` retries. A pod that is not Ready may be
evicted while its budget is met (the default `IfHealthyBudget` policy); more than one
matching budget is a 500, as on a real server.
"""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded.errors import ApiError
from pytest_devloop.embedded.reconcile import (
    int_or_percent,
    is_deleting,
    labels_of,
    pod_is_ready,
    pod_is_terminal,
)
from pytest_devloop.embedded.store import Store, meta
from pytest_devloop.k8s.validation import selector_is_empty, selector_matches

Obj = dict[str, Any]


def _selects(pdb: Obj, pod: Obj) -> bool:
    selector = (pdb.get("spec") or {}).get("selector")
    if selector is None:
        return False  # policy/v1: a missing selector selects nothing
    if selector_is_empty(selector):
        return True
    return selector_matches(selector, labels_of(pod))


def check_eviction(store: Store, pod: Obj) -> None:
    """Raise the 429 (or 500) a real server answers when evicting `pod` breaks a budget."""
    ns = str(meta(pod).get("namespace", ""))
    pdb_rt = store.registry.get("policy", "poddisruptionbudgets")
    pods_rt = store.registry.get("", "pods")
    if pdb_rt is None or pods_rt is None or pod_is_terminal(pod):
        return
    budgets, _ = store.list(pdb_rt, ns)
    matching = [b for b in budgets if _selects(b, pod)]
    if not matching:
        return
    if len(matching) > 1:
        raise ApiError(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource "
            "does not support.",
        )
    pdb = matching[0]
    spec = pdb.get("spec") or {}
    pods, _ = store.list(pods_rt, ns)
    selected = [
        p for p in pods if _selects(pdb, p) and not pod_is_terminal(p) and not is_deleting(p)
    ]
    expected = len(selected)
    healthy = sum(pod_is_ready(p) for p in selected)
    if spec.get("minAvailable") is not None:
        desired = int_or_percent(spec["minAvailable"], expected, round_up=True)
    elif spec.get("maxUnavailable") is not None:
        desired = max(expected - int_or_percent(spec["maxUnavailable"], expected, round_up=True), 0)
    else:
        desired = expected
    if not pod_is_ready(pod) and healthy >= desired:
        return
    if healthy - desired > 0:
        return
    name = str(meta(pdb).get("name", ""))
    raise ApiError(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
        details={
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": f"The disruption budget {name} needs {desired} healthy pods "
                    f"and has {healthy} currently",
                }
            ]
        },
    )
