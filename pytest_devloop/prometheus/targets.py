"""Prometheus scrape targets and queries as test assertions (the `prometheus` fixture).

Owns the fixture object (`Prometheus`: `targets`, `query`, `wait_for_targets`), the
three ways of reaching a Prometheus (`url:`, `service: ns/name:port` through the API
server's service proxy, and `embedded`), and the embedded mode's local Prometheus.

Embedded mode, plainly: Debian's `prometheus` is built without `kubernetes_sd_configs`,
so devloop itself plays the part of prometheus-operator plus Kubernetes discovery. It
reads ServiceMonitors, PodMonitors, an optional `Prometheus` resource, Services,
EndpointSlices and Pods from the cluster, resolves the scrape targets (`resolve`, a pure
function), writes them to `file_sd` JSON files that Prometheus re-reads, and regenerates
the configuration (then `POST /-/reload`) when the set of scrape jobs changes. Targets
are re-resolved on every `targets()` call, so a wait sees changes as they happen.

Every read is recorded for affected-test selection: the monitors that decide a job's
targets (`status.targets`), the Services they select (`spec`), the pods those select
(a `/Pod` list read) and the `Prometheus` resource (`spec`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tenacity
import yaml

from pytest_devloop.k8s import selectors
from pytest_devloop.selection.records import ListRead, normalize_selector

__all__ = [
    "INSTALL_HINT",
    "ClusterObjects",
    "LocalPrometheus",
    "Prometheus",
    "PrometheusConfigRejected",
    "PrometheusError",
    "PrometheusUnavailable",
    "Sample",
    "ScrapeJob",
    "ScrapePlan",
    "Target",
    "find_binary",
    "prometheus_for",
    "render_config",
    "resolve",
]

INSTALL_HINT = (
    "no `prometheus` binary on PATH: install it (`apt-get install prometheus`, or "
    "scripts/tools.sh; `apt-get install victoria-metrics` applies target changes at once) "
    "or set `prometheus: url:` in devloop.yaml"
)
ENGINE_VARIABLE = "DEVLOOP_PROMETHEUS_ENGINE"
POOL_LABEL = "__devloop_scrape_pool__"  # dropped after relabelling, kept in discoveredLabels
MONITORING = "monitoring.coreos.com"
ANNOTATION_JOB = "kubernetes-pods"
_SUPPORTED_ENDPOINT = frozenset(
    {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels"}
)
_SUPPORTED_SPEC = frozenset(
    {"selector", "namespaceSelector", "endpoints", "podMetricsEndpoints", "jobLabel"}
)

Obj = dict[str, Any]


# -- errors -----------------------------------------------------------------------------------


class PrometheusError(Exception):
    """Something about Prometheus the test cannot go on without."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus did not answer (the message names the URL or service tried)."""


class PrometheusConfigRejected(PrometheusError):
    """Prometheus refused the configuration devloop generated (names the monitor)."""


# -- what the API returns ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One active scrape target, as `/api/v1/targets` reports it."""

    job: str
    instance: str
    health: str  # "up", "down", "unknown"
    last_error: str
    scrape_url: str
    scrape_pool: str
    labels: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        error = f" ({self.last_error})" if self.last_error else ""
        return f"{self.job} {self.instance} {self.health}{error}"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Target:
        labels = {str(k): str(v) for k, v in (data.get("labels") or {}).items()}
        return cls(
            job=labels.get("job", ""),
            instance=labels.get("instance", ""),
            health=str(data.get("health") or "unknown"),
            last_error=str(data.get("lastError") or ""),
            scrape_url=str(data.get("scrapeUrl") or ""),
            # VictoriaMetrics names a pool by its job label; devloop's generated
            # configuration for it carries the pool's name as a discovered label.
            scrape_pool=str(
                (data.get("discoveredLabels") or {}).get(POOL_LABEL) or data.get("scrapePool") or ""
            ),
            labels=labels,
        )


@dataclass(frozen=True)
class Sample:
    """One series of an instant query: its labels, value and timestamp."""

    labels: dict[str, str]
    value: float
    timestamp: float


# -- talking to a Prometheus ------------------------------------------------------------------


class PrometheusHttp:
    """The HTTP API of one Prometheus: a base URL, headers and TLS (an adapter)."""

    def __init__(
        self,
        base_url: str,
        *,
        describe: str | None = None,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.describe = describe or self.base_url
        self.headers = dict(headers or {})
        self.timeout = timeout
        handlers: list[Any] = [urllib.request.ProxyHandler({})]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    def request(self, method: str, path: str, params: Mapping[str, str] | None = None) -> bytes:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, method=method, headers=self.headers)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                body: bytes = resp.read()
                return body
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace").strip()
            if e.code in (502, 503, 504) or (e.code == 404 and "/proxy/" in self.base_url):
                raise PrometheusUnavailable(
                    f"Prometheus at {self.describe} did not answer ({e.code}: {_short(detail)})"
                ) from e
            raise PrometheusError(
                f"Prometheus at {self.describe}: {method} {path}: {e.code} {_short(detail)}"
            ) from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise PrometheusUnavailable(
                f"Prometheus at {self.describe} did not answer: {reason}"
            ) from e

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        raw = self.request("GET", path, params)
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise PrometheusError(
                f"{self.describe}{path} is not a Prometheus API (answer: {_short(raw.decode(errors='replace'))})"
            ) from e
        if not isinstance(doc, dict) or doc.get("status") != "success":
            raise PrometheusError(f"{self.describe}{path}: {_short(json.dumps(doc))}")
        return doc.get("data")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the fixture object -----------------------------------------------------------------------


class Prometheus:
    """What a test asks Prometheus: targets, queries, and a wait for targets.

    `refresh` (embedded mode) re-resolves targets from the cluster before each read and
    returns the plan; `record` writes the read's dependencies for a given job.
    """

    def __init__(
        self,
        http: PrometheusHttp,
        *,
        refresh: Callable[[], ScrapePlan] | None = None,
        record: Callable[[ScrapePlan | None, str | None], None] | None = None,
        mode: str = "url",
        changes: Any = None,
    ) -> None:
        self.http = http
        self.mode = mode
        self._refresh = refresh
        self._record = record
        # Embedded mode: cluster change events (`events.ClusterChanges`), so a wait
        # re-resolves targets when the cluster changed rather than on every poll.
        self._changes = changes
        self.embedded: EmbeddedPrometheus | None = None  # embedded mode's local Prometheus

    @property
    def url(self) -> str:
        return self.http.base_url

    def _before_read(self, job: str | None) -> None:
        plan = self._refresh() if self._refresh is not None else None
        if self._record is not None:
            self._record(plan, job)

    def targets(self, job: str | None = None, health: str | None = None) -> list[Target]:
        """Active targets, optionally only those of `job` and/or with this `health`."""
        self._before_read(job)
        return self._active_targets(job, health)

    def _active_targets(self, job: str | None, health: str | None) -> list[Target]:
        data = self.http.get_json("/api/v1/targets", {"state": "active"})
        found = [Target.from_api(t) for t in (data or {}).get("activeTargets") or []]
        return [
            t
            for t in sorted(found, key=lambda t: (t.job, t.instance))
            if (job is None or t.job == job) and (health is None or t.health == health)
        ]

    def query(self, promql: str) -> list[Sample]:
        """An instant query; vector and scalar results become samples."""
        self._before_read(None)
        data = self.http.get_json("/api/v1/query", {"query": promql}) or {}
        kind, result = data.get("resultType"), data.get("result")
        if kind in ("scalar", "string"):
            ts, value = result or (0, "nan")
            return [Sample({}, _float(value), float(ts))]
        samples = []
        for item in result or []:
            ts, value = item.get("value") or (0, "nan")
            samples.append(Sample(dict(item.get("metric") or {}), _float(value), float(ts)))
        return samples

    def wait_for_targets(
        self,
        job: str | None = None,
        count: int | Literal["ready"] = 1,
        health: str | None = "up",
        timeout: float = 30.0,
        interval: float = 0.05,
    ) -> list[Target]:
        """Wait until exactly `count` targets of `job` have `health`; returns them.

        `count="ready"` (embedded mode): as many as there are ready endpoints (or Ready
        pods, for PodMonitors) behind the job's monitors, re-counted as the cluster
        changes. The scraper's targets are read every `interval`; the cluster is re-read
        only when a watched object changed (and at least every second). On timeout:
        AssertionError listing every target seen (job, instance, health, last error)
        against what was expected.
        """
        if count == "ready" and self._refresh is None:
            raise ValueError(
                'wait_for_targets(count="ready") needs the embedded mode, where devloop '
                "resolves the endpoints behind each monitor: pass the number of targets"
            )
        wait = _TargetsWait(self, job, count, health)

        def pause_for(state: tenacity.RetryCallState) -> float:
            # Never past the deadline: the last read happens at it.
            return max(0.0, min(interval, timeout - (state.seconds_since_start or 0.0)))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(timeout),
            wait=pause_for,
            retry=tenacity.retry_if_result(lambda found: found is None),
            sleep=wait.pause,
        )
        try:
            found = retrying(wait.attempt)
            assert found is not None  # tenacity returns only an accepted result
        except tenacity.RetryError:
            raise AssertionError(
                describe_mismatch(
                    wait.seen, job=job, count=wait.wanted, health=health, timeout=timeout
                )
                + (
                    " (count='ready': the ready endpoints behind the monitors)"
                    if count == "ready"
                    else ""
                )
            ) from None
        return found


class _TargetsWait:
    """One `wait_for_targets` call: what it has seen, and when the cluster is re-read.

    The scraper's targets are read on every attempt; the cluster only when a watched
    object changed since the last pause (or a second has passed), or on every attempt
    when there are no change events (`url:` and `service:` modes).
    """

    def __init__(
        self, prom: Prometheus, job: str | None, count: int | Literal["ready"], health: str | None
    ) -> None:
        self.prom = prom
        self.job = job
        self.count = count
        self.health = health
        self.wanted = count if isinstance(count, int) else 0
        self.seen: list[Target] = []
        self._refresh_due = True
        self._refreshed = 0.0

    def attempt(self) -> list[Target] | None:
        """The matching targets when there are exactly as many as wanted, else None."""
        prom = self.prom
        if self._refresh_due or time.monotonic() - self._refreshed > 1.0:
            if prom._changes is not None:
                prom._changes.clear()
            plan = prom._refresh() if prom._refresh is not None else None
            self._refreshed = time.monotonic()
            if prom._record is not None:
                prom._record(plan, self.job)
            if self.count == "ready":
                self.wanted = ready_count(plan, self.job)
        self.seen = prom._active_targets(None, None)
        matching = [
            t
            for t in self.seen
            if (self.job is None or t.job == self.job)
            and (self.health is None or t.health == self.health)
        ]
        return matching if len(matching) == self.wanted else None

    def pause(self, seconds: float) -> None:
        """Tenacity's sleep: returns early when the cluster changed (then re-read it)."""
        if self.prom._changes is not None:
            self._refresh_due = bool(self.prom._changes.wait(seconds))
        else:
            time.sleep(seconds)
            self._refresh_due = True


def ready_count(plan: ScrapePlan | None, job: str | None) -> int:
    """Targets behind ready endpoints, per scrape pool, of `job` (None: every job)."""
    if plan is None:
        return 0
    return sum(len({r for r in j.ready if job is None or r[1] == job}) for j in plan.jobs)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def describe_mismatch(
    seen: list[Target], *, job: str | None, count: int, health: str | None, timeout: float
) -> str:
    want = f"{count} target(s)" + (f" of job {job!r}" if job else "")
    want += f" with health {health!r}" if health else ""
    matching = [
        t for t in seen if (job is None or t.job == job) and (health is None or t.health == health)
    ]
    lines = [
        f"prometheus: expected {want} within {timeout:g} s; found {len(matching)}",
        f"  targets seen ({len(seen)}):" if seen else "  targets seen: none",
    ]
    lines += [f"    {t.line()}" for t in seen[:30]]
    if len(seen) > 30:
        lines.append(f"    … and {len(seen) - 30} more")
    jobs = sorted({t.job for t in seen})
    if job and job not in jobs:
        lines.append(f"  no target has job {job!r}; jobs seen: {', '.join(jobs) or 'none'}")
    return "\n".join(lines)


# -- resolving targets from cluster objects (pure) --------------------------------------------


@dataclass
class ClusterObjects:
    """The objects that decide scrape targets, as read from the cluster."""

    service_monitors: list[Obj] = field(default_factory=list)
    pod_monitors: list[Obj] = field(default_factory=list)
    prometheuses: list[Obj] = field(default_factory=list)
    services: list[Obj] = field(default_factory=list)
    endpoint_slices: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)
    namespaces: list[Obj] = field(default_factory=list)


@dataclass
class ScrapeJob:
    """One generated scrape job (a scrape pool) and the targets devloop resolved for it."""

    name: str  # the pool, as the operator names it: serviceMonitor/<ns>/<name>/<i>
    source: str  # where it came from: "ServiceMonitor sms/app endpoints[0]"
    path: str = "/metrics"
    scheme: str = "http"
    interval: str | None = None
    scrape_timeout: str | None = None
    honor_labels: bool = False
    groups: list[Obj] = field(default_factory=list)  # file_sd target groups
    # (address, job label) of the targets behind a ready endpoint or a Ready pod
    ready: set[tuple[str, str]] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)  # the `job` label values it can produce
    monitor_key: str | None = None
    service_keys: set[str] = field(default_factory=set)
    pod_reads: set[ListRead] = field(default_factory=set)


@dataclass
class ScrapePlan:
    jobs: list[ScrapeJob] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    prometheus_key: str | None = None
    # Every monitor in the namespaces the Prometheus watches, selected or not (a port
    # or label edit of an unselected one can make it scrape), and those namespaces (None:
    # all): what a target read depends on besides its own jobs.
    candidate_monitors: set[str] = field(default_factory=set)
    monitor_namespaces: dict[str, set[str] | None] = field(default_factory=dict)

    def config_shape(self) -> list[tuple[str, str, str, str | None, str | None, bool]]:
        """What the configuration file depends on (targets live in file_sd files)."""
        return [
            (j.name, j.path, j.scheme, j.interval, j.scrape_timeout, j.honor_labels)
            for j in self.jobs
        ]


def _meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def _labels(obj: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_meta(obj).get("labels") or {}).items()}


def _ns(obj: Obj) -> str:
    return str(_meta(obj).get("namespace") or "")


def _name(obj: Obj) -> str:
    return str(_meta(obj).get("name") or "")


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions); None or {} matches everything."""
    if not selector:
        return True
    try:
        return selectors.labels_match(selectors.requirements_of(selector) or [], labels)
    except selectors.SelectorError:
        return True  # cannot tell: count it as selected, so the target read is kept


def selector_text(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector as normalized label-selector text (for list-read records)."""
    if not selector:
        return ""
    return selectors.normalize(selector)


def _namespaces_selected(monitor: Obj) -> Callable[[str], bool]:
    """The monitor's `namespaceSelector`: its own namespace, `any`, or `matchNames`."""
    ns_sel = (monitor.get("spec") or {}).get("namespaceSelector")
    own = _ns(monitor)
    if not ns_sel:
        return lambda ns: ns == own
    if ns_sel.get("any"):
        return lambda ns: True
    names = {str(n) for n in ns_sel.get("matchNames") or []}
    return lambda ns: ns in names


def _key(group: str, kind: str, ns: str, name: str) -> str:
    return f"{group}/{kind}/{ns}/{name}"


def _unsupported(kind: str, monitor: Obj, endpoints_field: str) -> list[str]:
    spec = monitor.get("spec") or {}
    fields = [f"spec.{k}" for k in sorted(spec) if k not in _SUPPORTED_SPEC]
    for i, ep in enumerate(spec.get(endpoints_field) or []):
        fields += [
            f"spec.{endpoints_field}[{i}].{k}" for k in sorted(ep) if k not in _SUPPORTED_ENDPOINT
        ]
    return fields


def _select_monitors(
    kind: str, monitors: list[Obj], objs: ClusterObjects, plan: ScrapePlan
) -> list[Obj]:
    """The monitors the `Prometheus` resource (when there is one) selects."""
    plan.candidate_monitors.update(_key(MONITORING, kind, _ns(m), _name(m)) for m in monitors)
    if not objs.prometheuses:
        plan.monitor_namespaces[kind] = None
        return monitors
    prom = sorted(objs.prometheuses, key=lambda p: (_ns(p), _name(p)))[0]
    plan.prometheus_key = _key(MONITORING, "Prometheus", _ns(prom), _name(prom))
    spec = prom.get("spec") or {}
    field_name = "serviceMonitorSelector" if kind == "ServiceMonitor" else "podMonitorSelector"
    ns_field = field_name.replace("Selector", "NamespaceSelector")
    selector = spec.get(field_name)
    ns_selector = spec.get(ns_field)
    ns_labels = {_name(n): _labels(n) for n in objs.namespaces}
    plan.monitor_namespaces[kind] = None if ns_selector is not None else {_ns(prom)}
    if ns_selector is None:
        plan.candidate_monitors.difference_update(
            _key(MONITORING, kind, _ns(m), _name(m)) for m in monitors if _ns(m) != _ns(prom)
        )
    if selector is None:
        return []  # the operator selects no monitor without a selector
    out = []
    for m in monitors:
        if ns_selector is None and _ns(m) != _ns(prom):
            continue
        if ns_selector is not None and not label_selector_matches(
            ns_selector, ns_labels.get(_ns(m), {})
        ):
            continue
        if label_selector_matches(selector, _labels(m)):
            out.append(m)
    return out


def resolve(objs: ClusterObjects) -> ScrapePlan:
    """Scrape jobs and their targets, the way prometheus-operator and kubernetes_sd would.

    One job per ServiceMonitor endpoint (`serviceMonitor/<ns>/<name>/<i>`, `job` label =
    the Service's `jobLabel` label value or its name), per PodMonitor endpoint
    (`podMonitor/<ns>/<name>/<i>`, `job` = `<ns>/<name>`), and `kubernetes-pods` for pods
    annotated `prometheus.io/scrape: "true"`. Fields outside the supported subset are
    named in one warning per monitor.
    """
    plan = ScrapePlan()
    index = _ClusterIndex.of(objs)
    for kind in ("ServiceMonitor", "PodMonitor"):
        source = _MONITOR_SOURCES[kind]
        for monitor in sorted(
            _select_monitors(kind, getattr(objs, source.attr), objs, plan),
            key=lambda m: (_ns(m), _name(m)),
        ):
            warning = _unsupported_warning(kind, monitor, source.endpoints_field)
            if warning:
                plan.warnings.append(warning)
            plan.jobs += source.jobs(monitor, objs, index)
    plan.jobs.append(_annotated_pods_job(objs.pods))
    return plan


@dataclass(frozen=True)
class _ClusterIndex:
    """Lookups `resolve` makes per target: pods by name, EndpointSlices by Service."""

    pods_by_name: dict[tuple[str, str], Obj]
    slices_by_service: dict[tuple[str, str], list[Obj]]

    @classmethod
    def of(cls, objs: ClusterObjects) -> _ClusterIndex:
        slices: dict[tuple[str, str], list[Obj]] = {}
        for s in objs.endpoint_slices:
            svc_name = _labels(s).get("kubernetes.io/service-name")
            if svc_name:
                slices.setdefault((_ns(s), svc_name), []).append(s)
        return cls({(_ns(p), _name(p)): p for p in objs.pods}, slices)


@dataclass(frozen=True)
class _MonitorSource:
    """One monitor kind: where its objects and endpoints are, and how its jobs resolve."""

    attr: str  # the `ClusterObjects` field holding the monitors
    endpoints_field: str  # the spec field listing its endpoints
    jobs: Callable[[Obj, ClusterObjects, _ClusterIndex], list[ScrapeJob]]


def _unsupported_warning(kind: str, monitor: Obj, endpoints_field: str) -> str | None:
    fields = _unsupported(kind, monitor, endpoints_field)
    if not fields:
        return None
    return (
        f"{kind} {_ns(monitor)}/{_name(monitor)}: not supported by devloop's embedded "
        f"Prometheus, ignored: {', '.join(fields)}"
    )


def _service_monitor_jobs(sm: Obj, objs: ClusterObjects, index: _ClusterIndex) -> list[ScrapeJob]:
    """One job per endpoint of a ServiceMonitor, its targets from the Services' slices."""
    spec = sm.get("spec") or {}
    in_ns = _namespaces_selected(sm)
    services = [
        s
        for s in objs.services
        if in_ns(_ns(s)) and label_selector_matches(spec.get("selector") or {}, _labels(s))
    ]
    job_label = spec.get("jobLabel")
    jobs = []
    for i, ep in enumerate(spec.get("endpoints") or []):
        job = ScrapeJob(
            name=f"serviceMonitor/{_ns(sm)}/{_name(sm)}/{i}",
            source=f"ServiceMonitor {_ns(sm)}/{_name(sm)} endpoints[{i}]",
            monitor_key=_key(MONITORING, "ServiceMonitor", _ns(sm), _name(sm)),
        )
        _endpoint_options(job, ep)
        for svc in services:
            _add_service_targets(job, svc, ep, job_label, index)
        jobs.append(job)
    return jobs


def _add_service_targets(
    job: ScrapeJob, svc: Obj, ep: Obj, job_label: Any, index: _ClusterIndex
) -> None:
    """A selected Service's part of a ServiceMonitor job: its reads, job value, targets."""
    job.service_keys.add(_key("", "Service", _ns(svc), _name(svc)))
    sel = (svc.get("spec") or {}).get("selector") or {}
    if sel:
        job.pod_reads.add(ListRead("/Pod", _ns(svc), normalize_selector(sel)))
    job_value = _labels(svc).get(str(job_label)) if job_label else None
    job_value = job_value or _name(svc)
    job.jobs.add(job_value)
    slices = index.slices_by_service.get((_ns(svc), _name(svc)), [])
    targets = _service_targets(svc, ep, slices, index.pods_by_name)
    ready = _ready_addresses(slices)
    for address, labels in targets:
        job.groups.append({"targets": [address], "labels": {**labels, "job": job_value}})
        if address in ready:
            job.ready.add((address, job_value))


def _pod_monitor_jobs(pm: Obj, objs: ClusterObjects, index: _ClusterIndex) -> list[ScrapeJob]:
    """One job per podMetricsEndpoint of a PodMonitor, its targets the selected pods."""
    spec = pm.get("spec") or {}
    in_ns = _namespaces_selected(pm)
    selector = spec.get("selector") or {}
    pods = [p for p in objs.pods if in_ns(_ns(p)) and label_selector_matches(selector, _labels(p))]
    job_label = spec.get("jobLabel")
    jobs = []
    for i, ep in enumerate(spec.get("podMetricsEndpoints") or []):
        job = ScrapeJob(
            name=f"podMonitor/{_ns(pm)}/{_name(pm)}/{i}",
            source=f"PodMonitor {_ns(pm)}/{_name(pm)} podMetricsEndpoints[{i}]",
            monitor_key=_key(MONITORING, "PodMonitor", _ns(pm), _name(pm)),
        )
        _endpoint_options(job, ep)
        job.pod_reads.add(ListRead("/Pod", None, selector_text(selector)))
        job.jobs.add(f"{_ns(pm)}/{_name(pm)}")
        for pod in pods:
            value = (_labels(pod).get(str(job_label)) if job_label else None) or (
                f"{_ns(pm)}/{_name(pm)}"
            )
            job.jobs.add(value)
            for address, labels in _pod_targets(pod, ep.get("port"), ep.get("targetPort")):
                job.groups.append({"targets": [address], "labels": {**labels, "job": value}})
                if _pod_ready(pod):
                    job.ready.add((address, value))
        jobs.append(job)
    return jobs


_MONITOR_SOURCES = {
    "ServiceMonitor": _MonitorSource("service_monitors", "endpoints", _service_monitor_jobs),
    "PodMonitor": _MonitorSource("pod_monitors", "podMetricsEndpoints", _pod_monitor_jobs),
}


def _annotated_pods_job(pods: list[Obj]) -> ScrapeJob:
    """`kubernetes-pods`: the pods annotated `prometheus.io/scrape: "true"`."""
    annotated = ScrapeJob(name=ANNOTATION_JOB, source="pods annotated prometheus.io/scrape")
    annotated.jobs.add(ANNOTATION_JOB)
    annotated.pod_reads.add(ListRead("/Pod", None, ""))
    for pod in sorted(pods, key=lambda p: (_ns(p), _name(p))):
        ann = _meta(pod).get("annotations") or {}
        if str(ann.get("prometheus.io/scrape", "")).lower() != "true":
            continue
        port = ann.get("prometheus.io/port")
        for address, labels in _pod_targets(pod, None, port, any_port=port is None):
            extra = {"job": ANNOTATION_JOB}
            if ann.get("prometheus.io/path"):
                extra["__metrics_path__"] = str(ann["prometheus.io/path"])
            if ann.get("prometheus.io/scheme"):
                extra["__scheme__"] = str(ann["prometheus.io/scheme"])
            annotated.groups.append({"targets": [address], "labels": {**labels, **extra}})
            if _pod_ready(pod):
                annotated.ready.add((address, ANNOTATION_JOB))
    return annotated


def _endpoint_options(job: ScrapeJob, ep: Obj) -> None:
    job.path = str(ep.get("path") or "/metrics")
    job.scheme = str(ep.get("scheme") or "http")
    job.interval = str(ep["interval"]) if ep.get("interval") else None
    job.scrape_timeout = str(ep["scrapeTimeout"]) if ep.get("scrapeTimeout") else None
    job.honor_labels = bool(ep.get("honorLabels", False))


def _service_targets(
    svc: Obj, ep: Obj, slices: list[Obj], pods: Mapping[tuple[str, str], Obj]
) -> list[tuple[str, dict[str, str]]]:
    """(address, labels) per endpoint of the Service's slices that the endpoint selects."""
    out = []
    svc_ports = (svc.get("spec") or {}).get("ports") or []
    for sl in sorted(slices, key=_name):
        for port in sl.get("ports") or []:
            if not _port_selected(ep, port, svc_ports):
                continue
            for endpoint in sl.get("endpoints") or []:
                ref = endpoint.get("targetRef") or {}
                labels = {
                    "namespace": _ns(svc),
                    "service": _name(svc),
                    "endpoint": str(port.get("name") or port.get("port")),
                }
                if ref.get("kind") == "Pod":
                    labels["pod"] = str(ref.get("name"))
                    pod = pods.get((_ns(svc), str(ref.get("name"))))
                    container = _container_of(pod, int(port.get("port") or 0)) if pod else None
                    if container:
                        labels["container"] = container
                for address in endpoint.get("addresses") or []:
                    out.append((f"{address}:{port.get('port')}", labels))
    return out


def _ready_addresses(slices: list[Obj]) -> set[str]:
    """`ip:port` of the slices' endpoints that are ready (an unset condition counts as
    ready, as Kubernetes documents for EndpointSlice consumers)."""
    out = set()
    for sl in slices:
        for endpoint in sl.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for port in sl.get("ports") or []:
                for address in endpoint.get("addresses") or []:
                    out.add(f"{address}:{port.get('port')}")
    return out


def _pod_ready(pod: Obj) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _port_selected(ep: Obj, slice_port: Obj, svc_ports: list[Obj]) -> bool:
    if ep.get("port") is not None:
        return bool(slice_port.get("name") == ep.get("port"))
    target = ep.get("targetPort")
    if target is not None:
        if isinstance(target, int) or str(target).isdigit():
            return bool(int(slice_port.get("port") or 0) == int(target))
        return any(
            sp.get("targetPort") == target and sp.get("name", "") == slice_port.get("name", "")
            for sp in svc_ports
        )
    return True


def _container_of(pod: Obj | None, port: int) -> str | None:
    for c in ((pod or {}).get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("containerPort") == port:
                return str(c.get("name"))
    return None


def _pod_targets(
    pod: Obj, port_name: Any, port: Any, *, any_port: bool = False
) -> list[tuple[str, dict[str, str]]]:
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or status.get("phase") in ("Succeeded", "Failed"):
        return []
    labels = {"namespace": _ns(pod), "pod": _name(pod)}
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            number = p.get("containerPort")
            chosen = (
                any_port
                or (port_name is not None and p.get("name") == port_name)
                or (port is not None and str(port) in (str(number), str(p.get("name"))))
            )
            if chosen:
                out.append(
                    (
                        f"{ip}:{number}",
                        {
                            **labels,
                            "container": str(c.get("name")),
                            "endpoint": str(p.get("name") or number),
                        },
                    )
                )
    if port is not None and str(port).isdigit() and not out:
        out.append((f"{ip}:{port}", dict(labels)))
    return out


# -- the generated configuration (pure) -------------------------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _seconds(duration: str | None) -> float | None:
    """A Prometheus duration ("30s", "1m", "500ms") in seconds; None when unparsable."""
    if not duration:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration.strip())
    if not m:
        return None
    factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
    return float(m.group(1)) * factor


def render_config(
    plan: ScrapePlan, *, sd_dir: Path, scrape_interval: float, evaluation_interval: float
) -> str:
    """The prometheus.yml for a plan: one job per scrape pool, targets from file_sd.

    A monitor's interval is honoured when it is shorter than `scrape_interval`; a longer
    one is shortened to it (tests wait for scrapes; a real operator keeps 30 s).
    Anything Prometheus would reject (a bad duration, an unknown scheme) is passed on
    as written, so Prometheus's own message reaches the user.
    """

    def dur(seconds: float) -> str:
        return f"{max(1, round(seconds * 1000))}ms"

    jobs = []
    for job in plan.jobs:
        entry: dict[str, Any] = {
            "job_name": job.name,
            "metrics_path": job.path,
            "scheme": job.scheme,
            "honor_labels": job.honor_labels,
            "file_sd_configs": [
                {"files": [str(sd_dir / f"{_safe(job.name)}.json")], "refresh_interval": "1s"}
            ],
        }
        wanted = _seconds(job.interval)
        if job.interval and wanted is None:
            entry["scrape_interval"] = job.interval  # Prometheus names the problem
        else:
            interval = min(wanted or scrape_interval, scrape_interval)
            entry["scrape_interval"] = dur(interval)
            timeout = _seconds(job.scrape_timeout)
            if job.scrape_timeout and timeout is None:
                entry["scrape_timeout"] = job.scrape_timeout
            else:
                entry["scrape_timeout"] = dur(min(timeout or interval, interval))
        jobs.append(entry)
    doc = {
        "global": {
            "scrape_interval": dur(scrape_interval),
            "scrape_timeout": dur(scrape_interval),
            "evaluation_interval": dur(evaluation_interval),
        },
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _write_atomic(path: Path, text: str) -> bool:
    """Write when different; True when the file changed."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


# -- the local Prometheus process -------------------------------------------------------------


def find_binary(name: str = "prometheus") -> str | None:
    return shutil.which(name)


def find_scraper() -> str | None:
    """The embedded mode's scraper: `victoria-metrics` when installed (it applies target
    changes at once; Prometheus 2.x on 5 s ticks), else `prometheus`.
    `$DEVLOOP_PROMETHEUS_ENGINE` (`prometheus` or `victoria-metrics`) picks one."""
    engine = os.environ.get(ENGINE_VARIABLE, "auto").strip() or "auto"
    if engine not in ("auto", "prometheus", "victoria-metrics"):
        raise PrometheusError(
            f"{ENGINE_VARIABLE}={engine}: expected prometheus, victoria-metrics or auto"
        )
    if engine != "prometheus":
        found = find_binary("victoria-metrics")
        if found or engine == "victoria-metrics":
            return found
    return find_binary()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class LocalPrometheus:
    """A `prometheus` process on a free loopback port, configured from a `ScrapePlan`."""

    # What differs between scrapers (see victoria.py): how the process is started and
    # logs, and which path says it is up.
    log_name = "prometheus.log"
    ready_path = "/-/ready"
    startup_poll = 0.05
    scraper_name = "devloop's embedded Prometheus"

    def __init__(
        self,
        binary: str,
        directory: Path | None = None,
        *,
        scrape_interval: float = 0.25,
        evaluation_interval: float = 0.5,
        startup_timeout: float = 20.0,
    ) -> None:
        self.binary = binary
        self.directory = directory or Path(tempfile.mkdtemp(prefix="devloop-prometheus-"))
        self.sd_dir = self.directory / "file_sd"
        self.config_file = self.directory / "prometheus.yml"
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._shape: Any = None
        self._plan: ScrapePlan | None = None
        self.reloads = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self) -> PrometheusHttp:
        return PrometheusHttp(self.url, describe=f"{self.url} (devloop's embedded Prometheus)")

    def apply(self, plan: ScrapePlan) -> None:
        """Write the plan's targets; rewrite the configuration and reload when it changed."""
        self.sd_dir.mkdir(parents=True, exist_ok=True)
        shape = plan.config_shape()
        if shape != self._shape:
            text = render_config(
                plan,
                sd_dir=self.sd_dir,
                scrape_interval=self.scrape_interval,
                evaluation_interval=self.evaluation_interval,
            )
            self._write_targets(plan)
            _write_atomic(self.config_file, text)
            if self.process is None:
                self._start(plan)
            else:
                self._reload(plan)
            self._shape = shape
        else:
            self._write_targets(plan)
        self._plan = plan

    def _write_targets(self, plan: ScrapePlan) -> None:
        for job in plan.jobs:
            _write_atomic(
                self.sd_dir / f"{_safe(job.name)}.json", json.dumps(job.groups, sort_keys=True)
            )

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_file}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            "--storage.tsdb.retention.time=1h",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def _start(self, plan: ScrapePlan) -> None:
        self.port = free_port()
        log = (self.directory / self.log_name).open("wb")
        self.process = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._await_ready(plan)

    def _await_ready(self, plan: ScrapePlan) -> None:
        """Until `ready_path` answers; a process that exits has rejected the configuration."""
        http = PrometheusHttp(self.url, timeout=1.0)

        def probe() -> None:
            assert self.process is not None
            if self.process.poll() is not None:
                text = self._log()
                self.process = None
                raise PrometheusConfigRejected(self._rejection(text, plan))
            http.request("GET", self.ready_path)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(self.startup_timeout),
            wait=tenacity.wait_fixed(self.startup_poll),
            # Not answering yet is retried; a rejected configuration is final.
            retry=tenacity.retry_if_exception(
                lambda e: (
                    isinstance(e, PrometheusError) and not isinstance(e, PrometheusConfigRejected)
                )
            ),
        )
        try:
            retrying(probe)
        except tenacity.RetryError as e:
            self.stop()
            raise PrometheusUnavailable(
                f"{self.scraper_name} ({self.binary}) was not ready on {self.url} "
                f"within {self.startup_timeout:g} s; see {self.directory / self.log_name}"
            ) from e.last_attempt.exception()

    def _log(self) -> str:
        try:
            return (self.directory / self.log_name).read_text(errors="replace")
        except OSError:
            return ""

    def _rejection(self, text: str, plan: ScrapePlan) -> str:
        return _rejection(text, plan, self.config_file)

    def _reload(self, plan: ScrapePlan) -> None:
        try:
            PrometheusHttp(self.url, timeout=10.0).request("POST", "/-/reload")
        except PrometheusError as e:
            # The running configuration stays in force; say which monitor broke the new one.
            raise PrometheusConfigRejected(_rejection(str(e), plan, self.config_file)) from e
        self.reloads += 1

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalPrometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _rejection(text: str, plan: ScrapePlan, config_file: Path) -> str:
    """Prometheus's complaint, with the monitors whose jobs it names (or all, if none)."""
    lines = [
        line for line in text.splitlines() if "level=error" in line or "err=" in line
    ] or text.strip().splitlines()[-3:]
    message = _short(" ".join(lines), 800)
    named = [j.source for j in plan.jobs if j.name in text]
    if not named:
        named = [j.source for j in plan.jobs if j.monitor_key and _suspect(j)]
    where = "; from " + ", ".join(named) if named else ""
    return (
        f"Prometheus rejected the configuration devloop generated ({config_file}){where}: {message}"
    )


def _suspect(job: ScrapeJob) -> bool:
    """A job carrying a value devloop passed on unchecked (the likely culprit)."""
    return (
        (job.interval is not None and _seconds(job.interval) is None)
        or (job.scrape_timeout is not None and _seconds(job.scrape_timeout) is None)
        or job.scheme not in ("http", "https")
        or not job.path.startswith("/")
    )


# -- embedded mode: reading the cluster -------------------------------------------------------


class ClusterReader:
    """Reads the objects `resolve` needs from a cluster (through `kube.Kube`)."""

    _KINDS = (
        ("service_monitors", f"{MONITORING}/v1", "ServiceMonitor"),
        ("pod_monitors", f"{MONITORING}/v1", "PodMonitor"),
        ("prometheuses", f"{MONITORING}/v1", "Prometheus"),
        ("services", "v1", "Service"),
        ("endpoint_slices", "discovery.k8s.io/v1", "EndpointSlice"),
        ("pods", "v1", "Pod"),
        ("namespaces", "v1", "Namespace"),
    )

    def __init__(self, kube: Any, *, rediscover: float = 2.0) -> None:
        self.kube = kube
        self.rediscover = rediscover
        self._discovered = 0.0

    def read(self) -> ClusterObjects:
        objs = ClusterObjects()
        for attr, api_version, kind in self._KINDS:
            res = self.kube.resource(api_version, kind)
            now = time.monotonic()
            if (
                res is None
                and api_version.startswith(MONITORING)
                and now - self._discovered > self.rediscover
            ):
                # The CRD may have been installed since discovery (not on every read).
                self._discovered = now
                self.kube.refresh()
                res = self.kube.resource(api_version, kind)
            if res is None:
                continue
            setattr(objs, attr, self.kube.list(res, None))
        return objs


class EmbeddedPrometheus:
    """Devloop's stand-in for prometheus-operator: cluster objects → local Prometheus."""

    def __init__(
        self,
        reader: Callable[[], ClusterObjects],
        local: LocalPrometheus,
        *,
        warn: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.reader = reader
        self.local = local
        self.warn = warn
        self._warned: set[str] = set()
        self.plan = ScrapePlan()
        self.changes: Any = None  # events.ClusterChanges, when waits should follow the cluster

    def refresh(self) -> ScrapePlan:
        plan = resolve(self.reader())
        for w in plan.warnings:
            if w not in self._warned:
                self._warned.add(w)
                self.warn(f"devloop: warning: {w}")
        self.local.apply(plan)
        self.plan = plan
        return plan

    def stop(self) -> None:
        if self.changes is not None:
            self.changes.stop()
        self.local.stop()


# -- recording what a read depends on ---------------------------------------------------------


def record_reads(recorder: Any, plan: ScrapePlan | None, job: str | None) -> None:
    """Record, for affected-test selection, the objects that decide `job`'s targets."""
    if plan is None:
        return
    jobs = [j for j in plan.jobs if job is None or job in j.jobs]
    if not jobs:
        jobs = plan.jobs  # a monitor edit could produce the job: every monitor counts
    for j in jobs:
        if j.monitor_key:
            recorder.object_read(j.monitor_key, "status.targets")
        for key in sorted(j.service_keys):
            recorder.object_read(key, "spec")
        for read in sorted(j.pod_reads, key=lambda r: (r.namespace or "", r.selector)):
            recorder.list_read(read)
    if plan.prometheus_key:
        recorder.object_read(plan.prometheus_key, "spec")
    # Monitors no Prometheus selects today count too: an edit of their port, endpoints or
    # labels (the fix of a monitor that is not picked up) changes the targets.
    own = {j.monitor_key for j in jobs}
    for key in sorted(plan.candidate_monitors - own):
        recorder.object_paths(key, ("spec", "metadata.labels"))
    for kind, namespaces in sorted(plan.monitor_namespaces.items()):
        for ns in sorted(namespaces) if namespaces is not None else [None]:
            recorder.list_read(ListRead(f"{MONITORING}/{kind}", ns, ""))


# -- the fixture's factory --------------------------------------------------------------------


def _service_http(kube_client: Any, service: str) -> PrometheusHttp:
    """`ns/name:port` reached through the API server's service proxy."""
    m = re.fullmatch(r"([a-z0-9-]+)/([a-z0-9-]+):([A-Za-z0-9-]+)", service.strip())
    if not m:
        raise PrometheusError(
            f"prometheus.service: expected <namespace>/<service>:<port>, got {service!r}"
        )
    ns, name, port = m.groups()
    cfg = kube_client.configuration
    headers = {k: str(v) for k, v in (kube_client.default_headers or {}).items()}
    token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    if token:
        prefix = cfg.api_key_prefix.get("authorization", "")
        headers["Authorization"] = f"{prefix} {token}".strip() if prefix else str(token)
        if not str(headers["Authorization"]).lower().startswith("bearer"):
            headers["Authorization"] = f"Bearer {token}"
    context: ssl.SSLContext | None = None
    if cfg.host.startswith("https"):
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
        if not cfg.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
    base = f"{cfg.host.rstrip('/')}/api/v1/namespaces/{ns}/services/{name}:{port}/proxy"
    return PrometheusHttp(
        base,
        describe=f"service {ns}/{name}:{port} (via {cfg.host})",
        headers=headers,
        ssl_context=context,
    )


def prometheus_for(run: Any) -> Prometheus:
    """The session's `prometheus` fixture object for a `TestRun` (see the module docstring)."""
    import pytest

    from pytest_devloop.config.model import PrometheusSpec

    summary = run.require_cluster()
    spec = PrometheusSpec.from_config(getattr(run.config, "prometheus", None))
    recorder = run.recorder
    from pytest_devloop.cluster.kube import Kube, client_from_kubeconfig

    api_client = client_from_kubeconfig(summary.kubeconfig, summary.context)
    prom: Prometheus
    if spec.url:
        prom = Prometheus(PrometheusHttp(spec.url), mode="url")
    elif spec.service:
        prom = Prometheus(_service_http(api_client, spec.service), mode="service")
    else:
        binary = spec.binary or find_scraper()
        if binary is None:
            from pytest_devloop.run.testrun import is_ci_env

            if is_ci_env():
                pytest.fail(f"devloop: {INSTALL_HINT}", pytrace=False)
            pytest.skip(f"devloop: {INSTALL_HINT}")
        from pytest_devloop.prometheus.events import ClusterChanges
        from pytest_devloop.prometheus.victoria import LocalVictoriaMetrics, engine_of

        scraper = (
            LocalVictoriaMetrics if engine_of(binary) == "victoria-metrics" else LocalPrometheus
        )
        local = scraper(
            binary,
            scrape_interval=spec.scrape_interval,
            evaluation_interval=spec.evaluation_interval,
        )
        from pytest_devloop.prometheus import warned

        seen, say = warned.once(
            warned.path_for(run.config.root, summary.server, summary.uid), run.write
        )
        embedded = EmbeddedPrometheus(ClusterReader(Kube(api_client)).read, local, warn=say)
        embedded._warned.update(seen)  # said on this cluster by an earlier run or cycle
        embedded.changes = ClusterChanges(api_client)
        try:
            embedded.refresh()
        except PrometheusError as e:
            local.stop()
            pytest.fail(f"devloop: {e}", pytrace=False)
        import atexit

        atexit.register(embedded.stop)
        prom = Prometheus(
            local.http(),
            refresh=embedded.refresh,
            record=lambda plan, job: record_reads(recorder, plan, job),
            mode="embedded",
            changes=embedded.changes,
        )
        prom.embedded = embedded
        return prom
    try:
        prom.http.request("GET", "/-/ready")
    except PrometheusError as e:
        pytest.fail(f"devloop: {e}", pytrace=False)
    return prom


def plan_reads(plan: ScrapePlan) -> Iterable[str]:
    """The object keys a plan depends on (for docs and `--devloop-explain`)."""
    for j in plan.jobs:
        if j.monitor_key:
            yield j.monitor_key
        yield from sorted(j.service_keys)
