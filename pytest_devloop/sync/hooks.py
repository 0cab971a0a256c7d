"""Helm hooks, run as Helm runs them.

Owns one event's hooks (`pre-install`, `post-upgrade`, ...): their order (weight, then
install order of the kind, then name), the delete policies (`before-hook-creation`,
`hook-succeeded`, `hook-failed`), waiting for a hook to finish and what a failed hook
reports (its pods' last log lines and events). Test hooks (`helm.sh/hook: test`) belong
to no sync event, so they never run here.

A hook is waited for with a watch from the resourceVersion of its creation, never by
polling: a Job with `ttlSecondsAfterFinished: 0` is deleted by the TTL controller the
moment it completes, and a poll can only ever see "not found". Every event after the
creation reaches the watch, so the hook is known to have succeeded when it was seen
complete, or when it was deleted after having started (only its own success, its TTL or
someone else removes a running hook; Helm counts it as done too). Kinds other than Jobs
and Pods are ready once created, as in Helm.

Hooks re-run on upgrade only when their rendering changed since they last succeeded
(the digest kept in the artifact's record); unchanged ones are counted, not listed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pytest_devloop.artifacts.render import HOOK_DELETE_ANNOTATION, DesiredObject
from pytest_devloop.cluster.kube import ApiResource, Kube, KubeError
from pytest_devloop.sync import plan as planning
from pytest_devloop.sync.plan import object_key, short_name
from pytest_devloop.sync.state import ArtifactRecord

LOG_LINES = 5


class HookFailed(Exception):
    """A hook failed or did not finish; the message names it, its source and why."""


@dataclass
class HookReport:
    """What the hooks of one sync did: the hooks that ran, and how many were unchanged."""

    ran: list[str] = field(default_factory=list)
    unchanged: int = 0
    ran_keys: list[str] = field(default_factory=list)  # object keys of the hooks that ran

    def words(self) -> list[str]:
        out = list(self.ran)
        if self.unchanged:
            out.append(f"{self.unchanged} hook{'s' if self.unchanged != 1 else ''} unchanged")
        return out


def order(hooks: list[DesiredObject], event: str) -> list[DesiredObject]:
    """The hooks of `event` in the order Helm runs them."""
    chosen = [h for h in hooks if h.hook is not None and event in h.hook.events]
    chosen.sort(
        key=lambda h: (
            h.hook.weight if h.hook else 0,
            planning.install_rank(str(h.obj.get("kind"))),
            str((h.obj.get("metadata") or {}).get("name")),
        )
    )
    return chosen


class HookRunner:
    """Runs hooks on one cluster. `ensure_namespace` creates a namespace when missing
    (pre-install hooks run before the release's own Namespace objects exist);
    `digest_of` gives the digest a hook is remembered by (unstable fields left out)."""

    def __init__(
        self,
        kube: Kube,
        *,
        timeout: float,
        ensure_namespace: Callable[[str], None],
        digest_of: Callable[[str, dict[str, Any]], str] | None = None,
    ) -> None:
        self.kube = kube
        self.timeout = timeout
        self.ensure_namespace = ensure_namespace
        self.digest_of = digest_of or (lambda _key, obj: planning.digest(obj))

    def run(
        self,
        hooks: list[DesiredObject],
        event: str,
        record: ArtifactRecord,
        report: HookReport,
        *,
        force_all: bool,
    ) -> None:
        """Run the hooks of one event; a failure raises `HookFailed` after applying the
        hook's delete policy."""
        # As Helm does, `hook-succeeded` hooks are deleted once every hook of the event has
        # run: a hook Job may run as a hook ServiceAccount created before it.
        succeeded: list[tuple[ApiResource, str | None, str]] = []
        for h in order(hooks, event):
            assert h.hook is not None
            obj = h.obj
            key = object_key(obj)
            name = short_name(key)
            digest = self.digest_of(key, obj)
            if not force_all and event.endswith("upgrade") and record.hooks.get(key) == digest:
                report.unchanged += 1
                continue
            res = self.kube.resource(str(obj.get("apiVersion")), str(obj.get("kind")))
            if res is None:
                raise HookFailed(
                    f"{event} hook {name} ({h.source}): kind {obj.get('kind')} "
                    f"({obj.get('apiVersion')}) is not served by the cluster; is its "
                    "CustomResourceDefinition in the chart's crds/ folder?"
                )
            m = obj.get("metadata") or {}
            namespace = str(m.get("namespace") or "") or None
            if res.namespaced and namespace:
                self.ensure_namespace(namespace)
            policies = h.hook.delete_policies
            if "before-hook-creation" in policies:
                self._delete_and_wait(res, namespace, str(m.get("name")))
            try:
                live = self.kube.apply(res, obj, force=True)
                outcome = self._wait(res, live)
            except KubeError as e:
                outcome = f"could not be created: {e}"
                if e.status == 422 and "before-hook-creation" not in policies:
                    outcome += (
                        f". It exists from an earlier run and its {HOOK_DELETE_ANNOTATION} has "
                        "no before-hook-creation (Helm refuses it too: already exists): add "
                        "before-hook-creation, or delete it by hand"
                    )
            if outcome is not None:
                details = self._diagnose(obj)
                if "hook-failed" in policies:
                    self.kube.delete(res, namespace, str(m.get("name")))
                raise HookFailed(
                    "\n".join([f"{event} hook {name} ({h.source}) failed: {outcome}", *details])
                )
            record.hooks[key] = digest
            if "hook-succeeded" in policies:
                succeeded.append((res, namespace, str(m.get("name"))))
            report.ran.append(f"{name} ran ({event})")
            report.ran_keys.append(key)
        for res, namespace, hook_name in succeeded:
            self.kube.delete(res, namespace, hook_name)

    # -- waiting --------------------------------------------------------------------

    def _wait(self, res: ApiResource, live: dict[str, Any]) -> str | None:
        """None once the hook succeeded, else why it did not."""
        kind = live.get("kind") or res.kind
        if kind not in ("Job", "Pod"):
            return None
        verdict = _verdict(kind, live)
        if verdict is not None:
            return verdict or None
        m = live.get("metadata") or {}
        name = str(m.get("name"))
        rv = str(m.get("resourceVersion") or "")
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"not finished after {self.timeout:.0f} s ({_progress(kind, live)})"
            try:
                for etype, obj in self._watch(res, m.get("namespace"), name, rv, remaining):
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if etype == "DELETED":
                        # Started (we created it), then removed: a TTL of 0 after success.
                        verdict = _verdict(kind, obj)
                        return verdict or None
                    live = obj
                    verdict = _verdict(kind, obj)
                    if verdict is not None:
                        return verdict or None
            except _Expired:
                # Too old to resume from: the object itself says where it is.
                current = self.kube.get(res, m.get("namespace"), name)
                if current is None:
                    return None
                live = current
                verdict = _verdict(kind, current)
                if verdict is not None:
                    return verdict or None
                rv = str((current.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(
        self, res: ApiResource, namespace: str | None, name: str, rv: str, timeout: float
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        from kubernetes.watch.watch import iter_resp_lines

        client = self.kube.api_client
        query = [
            ("watch", "true"),
            ("fieldSelector", f"metadata.name={name}"),
            ("timeoutSeconds", str(max(1, int(timeout + 0.999)))),
        ]
        if rv:
            query.append(("resourceVersion", rv))
        request = client.param_serialize(
            "GET",
            self.kube.path(res, namespace),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = client.call_api(*request, _request_timeout=(5, timeout + 5)).response
        try:
            for line in iter_resp_lines(resp):
                event = json.loads(line)
                etype = str(event.get("type"))
                obj = event.get("object") or {}
                if etype == "ERROR":
                    if obj.get("code") == 410:
                        raise _Expired
                    raise KubeError(
                        int(obj.get("code") or 500),
                        str(obj.get("reason") or ""),
                        str(obj.get("message") or "watch failed"),
                    )
                if etype in ("ADDED", "MODIFIED", "DELETED"):
                    yield etype, obj
        finally:
            resp.release_conn()

    def _delete_and_wait(self, res: ApiResource, namespace: str | None, name: str) -> None:
        """Delete a previous run of the hook and wait until it is gone (Helm does the same
        before creating it again)."""
        if not self.kube.delete(res, namespace, name, propagation="Background"):
            return
        current = self.kube.get(res, namespace, name)
        if current is None:
            return
        rv = str((current.get("metadata") or {}).get("resourceVersion") or "")
        try:
            for etype, _obj in self._watch(res, namespace, name, rv, 30):
                if etype == "DELETED":
                    return
        except _Expired:
            pass
        if self.kube.get(res, namespace, name) is not None:
            raise HookFailed(
                f"{res.kind}/{name}: the previous run of this hook is still being deleted after "
                "30 s (a finalizer?); remove it by hand, then sync again"
            )

    # -- diagnostics ----------------------------------------------------------------

    def _diagnose(self, obj: dict[str, Any]) -> list[str]:
        """Pods, events and each pod's last log lines; a failing read becomes a line."""
        from pytest_devloop.sync.readiness import describe

        lines: list[str] = []
        try:
            lines += describe(self.kube.api_client, obj)
        except Exception as e:  # a report must not hide the failure it reports
            lines.append(f"  (diagnostics unavailable: {e})")
        m = obj.get("metadata") or {}
        namespace = str(m.get("namespace") or "default")
        pods_res = self.kube.resource("v1", "Pod")
        if pods_res is None:
            return lines
        if obj.get("kind") == "Pod":
            pods = [str(m.get("name"))]
        else:
            try:
                pods = [
                    str((p.get("metadata") or {}).get("name"))
                    for p in self.kube.list(pods_res, namespace, f"job-name={m.get('name')}")
                ]
            except KubeError as e:
                return [*lines, f"  (pods unavailable: {e})"]
        for pod in sorted(pods)[:3]:
            try:
                text = self.kube.request(
                    "GET",
                    f"{self.kube.path(pods_res, namespace, pod)}/log",
                    query=[("tailLines", str(LOG_LINES))],
                )
            except KubeError as e:
                lines.append(f"  logs of pod {pod}: unavailable ({e})")
                continue
            logs = [ln for ln in str(text or "").splitlines() if ln.strip()]
            if not logs:
                lines.append(f"  logs of pod {pod}: (empty)")
                continue
            lines.append(f"  last log lines of pod {pod}:")
            lines += [f"    {ln}" for ln in logs[-LOG_LINES:]]
        return lines


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone)."""


def _verdict(kind: str, obj: dict[str, Any]) -> str | None:
    """ "" when the hook succeeded, a reason when it failed, None while it runs."""
    status = obj.get("status") or {}
    if kind == "Pod":
        phase = status.get("phase")
        if phase == "Succeeded":
            return ""
        if phase == "Failed":
            return f"pod failed ({status.get('reason') or 'a container exited non-zero'})"
        return None
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return ""
        if cond.get("type") in ("Failed", "FailureTarget"):
            why = cond.get("reason") or cond.get("type")
            if cond.get("message"):
                why = f"{why}: {cond['message']}"
            return f"Job failed ({why})"
    return None


def _progress(kind: str, obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    if kind == "Pod":
        return f"phase {status.get('phase') or 'Pending'}"
    return f"{status.get('active') or 0} active, {status.get('succeeded') or 0} succeeded, {status.get('failed') or 0} failed"
