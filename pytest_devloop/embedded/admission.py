"""Admission steps of a real API server that need more than the object itself.

Owns the writes' rules a chart relies on without saying so:

- rbac/v1 defaults: a binding's `roleRef.apiGroup` and its User/Group subjects'
  `apiGroup` default to `rbac.authorization.k8s.io`.

- Secret `stringData` is write-only: on every write path it is merged into `data`
  (base64, `stringData` winning on a shared key) and never stored or returned.
- ServiceAccount admission: a Pod naming a ServiceAccount its namespace lacks is refused
  with the real 403 (`error looking up service account ns/name: serviceaccount "name" not
  found`), so the controller that tried to create it reports `FailedCreate`. The `default`
  ServiceAccount is the exception: the embedded cluster creates it a moment after its
  namespace, and refusing pods in that moment would make tests flaky where a real cluster
  is only rarely slow.
"""

from __future__ import annotations

import base64
from typing import Any

from pytest_devloop.embedded.errors import ApiError
from pytest_devloop.embedded.store import Store, meta
from pytest_devloop.k8s.resources import ResourceType

Obj = dict[str, Any]


def merge_string_data(secret: Obj) -> None:
    """Fold `stringData` into `data` in place, as the Secret's conversion does."""
    string_data = secret.pop("stringData", None)
    if not isinstance(string_data, dict) or not string_data:
        return
    data = secret.get("data")
    if not isinstance(data, dict):
        data = secret["data"] = {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()


def check_service_account(store: Store, pod: Obj) -> None:
    spec = pod.get("spec") or {}
    name = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if not name or name == "default":
        return
    namespace = str(meta(pod).get("namespace", ""))
    rt = store.registry.get("", "serviceaccounts")
    if rt is None or store.get(rt, namespace, str(name)) is not None:
        return
    pod_name = meta(pod).get("name") or meta(pod).get("generateName") or ""
    raise ApiError(
        403,
        "Forbidden",
        f'pods "{pod_name}" is forbidden: error looking up service account '
        f'{namespace}/{name}: serviceaccount "{name}" not found',
        details={"name": pod_name, "kind": "pods"},
    )


_RBAC_GROUP = "rbac.authorization.k8s.io"


def default_binding(binding: Obj) -> None:
    """rbac/v1 defaults: roleRef and User/Group subjects name the RBAC API group."""
    ref = binding.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = _RBAC_GROUP
    for subject in binding.get("subjects") or []:
        if (
            isinstance(subject, dict)
            and not subject.get("apiGroup")
            and subject.get("kind") in ("User", "Group")
        ):
            subject["apiGroup"] = _RBAC_GROUP


def admit(store: Store | None, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    if rt.key in (f"{_RBAC_GROUP}/rolebindings", f"{_RBAC_GROUP}/clusterrolebindings"):
        default_binding(obj)
    elif rt.key == "secrets":
        merge_string_data(obj)
    elif rt.key == "pods" and old is None and store is not None:
        check_service_account(store, obj)
