"""Server-side Table printing: what `kubectl get` shows for each kind.

Owns the `meta.k8s.io` Table form of lists and objects (asked for with
`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`, or `v1beta1`): the column
definitions, cell values and cell formats kube-apiserver's printers produce for the
built-in kinds, the `additionalPrinterColumns` of custom resources, and NAME/AGE for
everything else. The server always prints every column (wide ones carry priority 1);
kubectl hides the priority-1 columns unless `-o wide`.

Cells are computed from the stored JSON objects; times are rendered as the API server's
human durations (`5s`, `3m20s`, `2d4h`) at the moment of the request.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from pytest_devloop.k8s.selectors import format_label_selector

Obj = dict[str, Any]
Column = tuple[str, str, int, str]  # name, type, priority, format
Printer = Callable[[Obj, float], list[Any]]

_NAME: Column = ("Name", "string", 0, "name")
_AGE: Column = ("Age", "string", 0, "")
_DESCRIPTIONS = {
    "Name": "Name must be unique within a namespace. Is required when creating resources, "
    "although some resources may allow a client to request the generation of an "
    "appropriate name automatically. Name is primarily intended for creation idempotence "
    "and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object "
    "was created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is "
    "in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
}


def _c(name: str, type_: str = "string", priority: int = 0, fmt: str = "") -> Column:
    return (name, type_, priority, fmt)


# -- formatting helpers (the API server's conventions) -------------------------------


def human_duration(seconds: float) -> str:
    """The API server's short human duration (apimachinery `duration.HumanDuration`)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


_EPOCH_CACHE: dict[str, float] = {}


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, or None when unset/invalid."""
    if not isinstance(value, str) or not value:
        return None
    cached = _EPOCH_CACHE.get(value)
    if cached is not None:
        return cached
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    out = moment.timestamp()
    if len(_EPOCH_CACHE) > 100_000:
        _EPOCH_CACHE.clear()
    _EPOCH_CACHE[value] = out
    return out


class Since:
    """A cell that depends on the time of the request: `prefix + age of t + suffix`.

    Printers given `DEFERRED` as `now` return these instead of text, so that the rest of
    a row can be computed once per stored object and the ages at each request.
    """

    __slots__ = ("prefix", "suffix", "t")

    def __init__(self, t: float, prefix: str = "", suffix: str = "") -> None:
        self.t = t
        self.prefix = prefix
        self.suffix = suffix

    def render(self, now: float) -> str:
        return self.prefix + human_duration(now - self.t) + self.suffix


DEFERRED = -1.0  # the `now` that asks printers for `Since` cells


def elapsed(t: float, now: float, prefix: str = "", suffix: str = "") -> Any:
    if now == DEFERRED:
        return Since(t, prefix, suffix)
    return prefix + human_duration(now - t) + suffix


def since(value: Any, now: float) -> Any:
    """`translateTimestampSince`: the age of a timestamp, `<unknown>` when unset."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return elapsed(t, now)


def _age(obj: Obj, now: float) -> Any:
    return since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Obj) -> dict[str, Any]:
    return obj.get("status") or {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _labels(labels: Any) -> str:
    """`labels.FormatLabels`: sorted `k=v` joined by commas, `<none>` when empty."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector(selector: Any) -> str:
    """A LabelSelector as `metav1.FormatLabelSelector` shows it."""
    if not isinstance(selector, dict):
        return "<none>"
    text = format_label_selector(selector)
    return text or "<none>"


def _template_columns(template: Any) -> tuple[str, str]:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    names = ",".join(str(c.get("name", "")) for c in containers)
    images = ",".join(str(c.get("image", "")) for c in containers)
    return names, images


def _bool_ptr(value: Any) -> str:
    if value is None:
        return "<unset>"
    return "True" if value else "False"


def _conditions(obj: Obj) -> list[dict[str, Any]]:
    return [c for c in _status(obj).get("conditions") or [] if isinstance(c, dict)]


def _has_condition(obj: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in _conditions(obj))


# -- core/v1 ------------------------------------------------------------------------

_POD_COLUMNS = [
    _NAME,
    _c("Ready"),
    _c("Status"),
    _c("Restarts"),
    _AGE,
    _c("IP", priority=1),
    _c("Node", priority=1),
    _c("Nominated Node", priority=1),
    _c("Readiness Gates", priority=1),
]


def _terminated_reason(term: dict[str, Any], prefix: str = "") -> str:
    if term.get("reason"):
        return prefix + str(term["reason"])
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{_int(term.get('exitCode'))}"


def print_pod(pod: Obj, now: float) -> list[Any]:
    spec = _spec(pod)
    status = _status(pod)
    meta = pod.get("metadata") or {}
    containers = spec.get("containers") or []
    init_specs = spec.get("initContainers") or []
    sidecars = {
        c.get("name")
        for c in init_specs
        if isinstance(c, dict) and c.get("restartPolicy") == "Always"
    }
    total = len(containers) + len(sidecars)
    ready = 0
    restarts = 0
    last_restart = 0.0
    reason = str(status.get("phase") or "")
    if status.get("reason"):
        reason = str(status["reason"])
    conds: dict[Any, Any] = {}
    for cond in status.get("conditions") or []:
        ctype = cond.get("type")
        conds[ctype] = cond.get("status")
        if ctype == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    def note_restart(cs: dict[str, Any]) -> None:
        nonlocal last_restart
        term = (cs.get("lastState") or {}).get("terminated")
        if isinstance(term, dict):
            t = parse_time(term.get("finishedAt"))
            if t is not None and t > last_restart:
                last_restart = t

    initializing = False
    sidecar_restarts = 0
    sidecar_last = 0.0
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += _int(cs.get("restartCount"))
        note_restart(cs)
        state = cs.get("state") or {}
        if cs.get("name") in sidecars:
            sidecar_restarts += _int(cs.get("restartCount"))
            sidecar_last = last_restart
            if cs.get("started") and cs.get("ready"):
                ready += 1
                continue
            if cs.get("started"):
                continue
        term = state.get("terminated")
        waiting = state.get("waiting")
        if isinstance(term, dict) and _int(term.get("exitCode")) == 0:
            continue
        if isinstance(term, dict):
            reason = _terminated_reason(term, "Init:")
        elif (
            isinstance(waiting, dict)
            and waiting.get("reason")
            and waiting.get("reason") != "PodInitializing"
        ):
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing or conds.get("Initialized") == "True":
        restarts = sidecar_restarts
        last_restart = sidecar_last
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            note_restart(cs)
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            term = state.get("terminated")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(term, dict):
                reason = _terminated_reason(term)
            elif cs.get("ready") and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if conds.get("Ready") == "True" else "NotReady"
    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    restarts_text: Any = str(restarts)
    if restarts and last_restart:
        restarts_text = elapsed(last_restart, now, f"{restarts} (", " ago)")
    ips = status.get("podIPs") or []
    pod_ip = (ips[0].get("ip") if ips else "") or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_text = f"{true}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _age(pod, now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


def _pod_row_conditions(pod: Obj) -> list[dict[str, str]] | None:
    phase = _status(pod).get("phase")
    if phase == "Succeeded":
        return [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Succeeded",
                "message": "The pod has completed successfully.",
            }
        ]
    if phase == "Failed":
        return [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Failed",
                "message": "The pod failed.",
            }
        ]
    return None


def _service_external_ip(svc: Obj) -> str:
    spec = _spec(svc)
    stype = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if stype == "LoadBalancer":
        ingress = (_status(svc).get("loadBalancer") or {}).get("ingress") or []
        ips = [
            i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")
        ]
        ips += external
        if ips:
            text = ",".join(str(i) for i in ips)
            return text if len(text) <= 16 else text[:13] + "..."
        return "<pending>"
    if stype == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def _service_ports(svc: Obj) -> str:
    out = []
    for p in _spec(svc).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            out.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            out.append(f"{p.get('port')}/{proto}")
    return ",".join(out) if out else "<none>"


def print_service(svc: Obj, now: float) -> list[Any]:
    spec = _spec(svc)
    return [
        _name(svc),
        spec.get("type") or "ClusterIP",
        spec.get("clusterIP") or "<none>",
        _service_external_ip(svc),
        _service_ports(svc),
        _age(svc, now),
        _labels(spec.get("selector")),
    ]


def _join_more(items: list[str], limit: int = 3) -> str:
    if len(items) > limit:
        return ",".join(items[:limit]) + f" + {len(items) - limit} more..."
    return ",".join(items)


def print_endpoints(ep: Obj, now: float) -> list[Any]:
    addresses: list[str] = []
    for subset in ep.get("subsets") or []:
        for port in subset.get("ports") or []:
            for addr in subset.get("addresses") or []:
                ip = str(addr.get("ip", ""))
                host = f"[{ip}]" if ":" in ip else ip
                addresses.append(f"{host}:{port.get('port')}")
    return [_name(ep), _join_more(addresses) if addresses else "<none>", _age(ep, now)]


def print_endpointslice(es: Obj, now: float) -> list[Any]:
    ports = [str(p.get("port")) for p in es.get("ports") or [] if p.get("port") is not None]
    addresses = [str(a) for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return [
        _name(es),
        es.get("addressType") or "",
        _join_more(ports) if ports else "<unset>",
        _join_more(addresses) if addresses else "<unset>",
        _age(es, now),
    ]


def print_configmap(cm: Obj, now: float) -> list[Any]:
    return [_name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), _age(cm, now)]


def print_secret(secret: Obj, now: float) -> list[Any]:
    # Only the number of keys: a Table never shows a Secret's values.
    count = len(secret.get("data") or {})
    return [_name(secret), secret.get("type") or "Opaque", count, _age(secret, now)]


def print_service_account(sa: Obj, now: float) -> list[Any]:
    return [_name(sa), len(sa.get("secrets") or []), _age(sa, now)]


def _access_modes(modes: Any) -> str:
    short = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    seen: list[str] = []
    for mode in ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"):
        if mode in (modes or []):
            seen.append(short[mode])
    return ",".join(seen)


def _storage_class(obj: Obj) -> str:
    name = _spec(obj).get("storageClassName")
    if name is None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        name = annotations.get("volume.beta.kubernetes.io/storage-class")
    return str(name) if name else "<unset>"


def print_pvc(pvc: Obj, now: float) -> list[Any]:
    spec = _spec(pvc)
    status = _status(pvc)
    phase = status.get("phase") or ""
    if (pvc.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    capacity = ""
    modes = ""
    if spec.get("volumeName"):
        capacity = str((status.get("capacity") or {}).get("storage", ""))
        modes = _access_modes(status.get("accessModes"))
    return [
        _name(pvc),
        phase,
        spec.get("volumeName") or "",
        capacity,
        modes,
        _storage_class(pvc),
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(pvc, now),
        spec.get("volumeMode") or "<unset>",
    ]


def print_pv(pv: Obj, now: float) -> list[Any]:
    spec = _spec(pv)
    status = _status(pv)
    claim = spec.get("claimRef") or {}
    claim_text = f"{claim.get('namespace')}/{claim.get('name')}" if claim else ""
    phase = status.get("phase") or ""
    if (pv.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    return [
        _name(pv),
        str((spec.get("capacity") or {}).get("storage", "")),
        _access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy") or "",
        phase,
        claim_text,
        _storage_class(pv) if _storage_class(pv) != "<unset>" else "",
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason") or "",
        _age(pv, now),
        spec.get("volumeMode") or "<unset>",
    ]


def print_node(node: Obj, now: float) -> list[Any]:
    status = _status(node)
    spec = _spec(node)
    meta = node.get("metadata") or {}
    states = []
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if "Ready" in conditions:
        states.append("Ready" if conditions["Ready"] == "True" else "NotReady")
    else:
        states.append("Unknown")
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = sorted(
        {
            k.removeprefix("node-role.kubernetes.io/")
            for k in (meta.get("labels") or {})
            if k.startswith("node-role.kubernetes.io/") and k != "node-role.kubernetes.io/"
        }
        | {v for k, v in (meta.get("labels") or {}).items() if k == "kubernetes.io/role" and v}
    )
    info = status.get("nodeInfo") or {}
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        for a in addresses:
            if a.get("type") == kind:
                return str(a.get("address", ""))
        return "<none>"

    return [
        _name(node),
        ",".join(states),
        ",".join(roles) if roles else "<none>",
        _age(node, now),
        info.get("kubeletVersion") or "",
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def print_namespace(ns: Obj, now: float) -> list[Any]:
    return [_name(ns), _status(ns).get("phase") or "", _age(ns, now)]


def _event_source(ev: Obj) -> str:
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent") or ""
    host = source.get("host") or ev.get("reportingInstance") or ""
    if not component and ev.get("reportingController"):
        component = ev.get("reportingController")
    if host:
        return f"{component}, {host}"
    return str(component)


def print_event(ev: Obj, now: float) -> list[Any]:
    # events.k8s.io/v1 objects are printed through the same columns, as the API server
    # converts both to one internal type; their fields are mapped here.
    regarding = ev.get("involvedObject") or ev.get("regarding") or {}
    series = ev.get("series") or {}
    if series:
        last = since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif ev.get("lastTimestamp") or ev.get("deprecatedLastTimestamp"):
        last = since(ev.get("lastTimestamp") or ev.get("deprecatedLastTimestamp"), now)
        count = _int(ev.get("count") or ev.get("deprecatedCount"))
    else:
        last = since(ev.get("eventTime"), now)
        count = _int(ev.get("count") or ev.get("deprecatedCount"))
    first_value = (
        ev.get("firstTimestamp") or ev.get("deprecatedFirstTimestamp") or ev.get("eventTime")
    )
    kind = str(regarding.get("kind", "")).lower()
    return [
        last,
        ev.get("type") or "",
        ev.get("reason") or "",
        f"{kind}/{regarding.get('name', '')}",
        regarding.get("fieldPath") or "",
        _event_source(ev),
        ev.get("message") or ev.get("note") or "",
        since(first_value, now),
        count,
        _name(ev),
    ]


def print_resource_quota(rq: Obj, now: float) -> list[Any]:
    hard = _status(rq).get("hard") or _spec(rq).get("hard") or {}
    used = _status(rq).get("used") or {}
    requests = []
    limits = []
    for key in sorted(hard):
        text = f"{key}: {used.get(key, '0')}/{hard[key]}"
        if key.startswith("limits."):
            limits.append(text)
        else:
            requests.append(text)
    return [_name(rq), _age(rq, now), ", ".join(requests), ", ".join(limits)]


def print_created_at(obj: Obj, now: float) -> list[Any]:
    created = (obj.get("metadata") or {}).get("creationTimestamp") or ""
    return [_name(obj), created]


def print_replication_controller(rc: Obj, now: float) -> list[Any]:
    spec = _spec(rc)
    status = _status(rc)
    names, images = _template_columns(spec.get("template"))
    return [
        _name(rc),
        _int(spec.get("replicas")),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _age(rc, now),
        names,
        images,
        _labels(spec.get("selector")),
    ]


def print_pod_template(pt: Obj, now: float) -> list[Any]:
    template = pt.get("template") or {}
    names, images = _template_columns(template)
    return [_name(pt), names, images, _labels((template.get("metadata") or {}).get("labels"))]


# -- apps, batch, autoscaling, policy ---------------------------------------------------


def print_deployment(d: Obj, now: float) -> list[Any]:
    spec = _spec(d)
    status = _status(d)
    names, images = _template_columns(spec.get("template"))
    desired = _int(spec.get("replicas"))
    return [
        _name(d),
        f"{_int(status.get('readyReplicas'))}/{desired}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _age(d, now),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def print_replicaset(rs: Obj, now: float) -> list[Any]:
    spec = _spec(rs)
    status = _status(rs)
    names, images = _template_columns(spec.get("template"))
    return [
        _name(rs),
        _int(spec.get("replicas")),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _age(rs, now),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def print_statefulset(ss: Obj, now: float) -> list[Any]:
    spec = _spec(ss)
    status = _status(ss)
    names, images = _template_columns(spec.get("template"))
    return [
        _name(ss),
        f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
        _age(ss, now),
        names,
        images,
    ]


def print_daemonset(ds: Obj, now: float) -> list[Any]:
    spec = _spec(ds)
    status = _status(ds)
    names, images = _template_columns(spec.get("template"))
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector")
    return [
        _name(ds),
        _int(status.get("desiredNumberScheduled")),
        _int(status.get("currentNumberScheduled")),
        _int(status.get("numberReady")),
        _int(status.get("updatedNumberScheduled")),
        _int(status.get("numberAvailable")),
        _labels(node_selector),
        _age(ds, now),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def _job_status(job: Obj) -> str:
    if _has_condition(job, "Complete"):
        return "Complete"
    if _has_condition(job, "Failed"):
        return "Failed"
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    if _has_condition(job, "Suspended"):
        return "Suspended"
    if _has_condition(job, "FailureTarget"):
        return "FailureTarget"
    if _has_condition(job, "SuccessCriteriaMet"):
        return "SuccessCriteriaMet"
    return "Running"


def print_job(job: Obj, now: float) -> list[Any]:
    spec = _spec(job)
    status = _status(job)
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec.get('completions'))}"
    else:
        parallelism = _int(spec.get("parallelism"))
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start = parse_time(status.get("startTime"))
    end = parse_time(status.get("completionTime"))
    duration: Any = ""
    if start is not None:
        duration = human_duration(end - start) if end is not None else elapsed(start, now)
    names, images = _template_columns(spec.get("template"))
    return [
        _name(job),
        _job_status(job),
        completions,
        duration,
        _age(job, now),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def print_cronjob(cj: Obj, now: float) -> list[Any]:
    spec = _spec(cj)
    status = _status(cj)
    template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    names, images = _template_columns(template)
    last = status.get("lastScheduleTime")
    selector = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("selector")
    return [
        _name(cj),
        spec.get("schedule") or "",
        spec.get("timeZone") or "<none>",
        _bool_ptr(spec.get("suspend")),
        len(status.get("active") or []),
        since(last, now) if last else "<none>",
        _age(cj, now),
        names,
        images,
        _selector(selector),
    ]


def _hpa_targets(hpa: Obj) -> str:
    spec = _spec(hpa)
    current = _status(hpa).get("currentMetrics") or []
    metrics = spec.get("metrics")
    if metrics is None and "targetCPUUtilizationPercentage" in spec:
        now_cpu = _status(hpa).get("currentCPUUtilizationPercentage")
        cur = f"{now_cpu}%" if now_cpu is not None else "<unknown>"
        return f"cpu: {cur}/{spec['targetCPUUtilizationPercentage']}%"
    if not metrics:
        return "<none>"
    parts = []
    for i, metric in enumerate(metrics):
        if metric.get("type") != "Resource":
            cur_text = "<unknown>"
            target = (metric.get(_lower_first(str(metric.get("type")))) or {}).get("target") or {}
            value = target.get("averageValue") or target.get("value") or ""
            parts.append(f"{cur_text}/{value}")
            continue
        resource = metric.get("resource") or {}
        target = resource.get("target") or {}
        cur_metric = (current[i].get("resource") or {}) if i < len(current) else {}
        cur_target = cur_metric.get("current") or {}
        if target.get("averageUtilization") is not None:
            util = cur_target.get("averageUtilization")
            cur = f"{util}%" if util is not None else "<unknown>"
            parts.append(f"{resource.get('name')}: {cur}/{target['averageUtilization']}%")
        else:
            value = target.get("averageValue") or target.get("value") or ""
            cur = cur_target.get("averageValue") or cur_target.get("value") or "<unknown>"
            parts.append(f"{resource.get('name')}: {cur}/{value}")
    if len(parts) > 2:
        return ", ".join(parts[:2]) + f" + {len(parts) - 2} more..."
    return ", ".join(parts)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def print_hpa(hpa: Obj, now: float) -> list[Any]:
    spec = _spec(hpa)
    ref = spec.get("scaleTargetRef") or {}
    min_pods = spec.get("minReplicas")
    return [
        _name(hpa),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _hpa_targets(hpa),
        str(min_pods) if min_pods is not None else "<unset>",
        _int(spec.get("maxReplicas")),
        _int(_status(hpa).get("currentReplicas")),
        _age(hpa, now),
    ]


def print_pdb(pdb: Obj, now: float) -> list[Any]:
    spec = _spec(pdb)
    min_a = spec.get("minAvailable")
    max_u = spec.get("maxUnavailable")
    return [
        _name(pdb),
        str(min_a) if min_a is not None else "N/A",
        str(max_u) if max_u is not None else "N/A",
        _int(_status(pdb).get("disruptionsAllowed")),
        _age(pdb, now),
    ]


def print_controller_revision(cr: Obj, now: float) -> list[Any]:
    owner = next(
        (o for o in (cr.get("metadata") or {}).get("ownerReferences") or [] if o.get("controller")),
        None,
    )
    controller = "<none>"
    if owner:
        group = (
            str(owner.get("apiVersion", "")).split("/")[0]
            if "/" in str(owner.get("apiVersion", ""))
            else ""
        )
        kind = str(owner.get("kind", "")).lower()
        controller = (
            f"{kind}.{group}/{owner.get('name')}" if group else f"{kind}/{owner.get('name')}"
        )
    return [_name(cr), controller, _int(cr.get("revision")), _age(cr, now)]


# -- networking, rbac, storage, scheduling, the rest ----------------------------------------


def print_ingress(ing: Obj, now: float) -> list[Any]:
    spec = _spec(ing)
    hosts = [str(r.get("host")) for r in spec.get("rules") or [] if r.get("host")]
    hosts_text = "*"
    if hosts:
        hosts_text = ",".join(hosts[:4]) + (
            f" + {len(hosts) - 4} more..." if len(hosts) > 4 else ""
        )
    ingress = (_status(ing).get("loadBalancer") or {}).get("ingress") or []
    address = ",".join(
        str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")
    )
    return [
        _name(ing),
        spec.get("ingressClassName") or "<none>",
        hosts_text,
        address,
        "80, 443" if spec.get("tls") else "80",
        _age(ing, now),
    ]


def print_ingress_class(ic: Obj, now: float) -> list[Any]:
    spec = _spec(ic)
    params = spec.get("parameters")
    params_text = "<none>"
    if isinstance(params, dict):
        group = params.get("apiGroup")
        kind = params.get("kind", "")
        params_text = (
            f"{kind}.{group}/{params.get('name')}" if group else f"{kind}/{params.get('name')}"
        )
    return [_name(ic), spec.get("controller") or "", params_text, _age(ic, now)]


def print_network_policy(np: Obj, now: float) -> list[Any]:
    return [_name(np), _selector(_spec(np).get("podSelector")), _age(np, now)]


def _binding_cells(rb: Obj) -> list[Any]:
    ref = rb.get("roleRef") or {}
    users = [s.get("name") for s in rb.get("subjects") or [] if s.get("kind") == "User"]
    groups = [s.get("name") for s in rb.get("subjects") or [] if s.get("kind") == "Group"]
    sas = [
        f"{s.get('namespace', '')}/{s.get('name')}"
        for s in rb.get("subjects") or []
        if s.get("kind") == "ServiceAccount"
    ]
    return [
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        ", ".join(str(u) for u in users),
        ", ".join(str(g) for g in groups),
        ", ".join(sas),
    ]


def print_binding(rb: Obj, now: float) -> list[Any]:
    role, users, groups, sas = _binding_cells(rb)
    return [_name(rb), role, _age(rb, now), users, groups, sas]


def print_storage_class(sc: Obj, now: float) -> list[Any]:
    annotations = (sc.get("metadata") or {}).get("annotations") or {}
    name = _name(sc)
    if "true" in (
        annotations.get("storageclass.kubernetes.io/is-default-class"),
        annotations.get("storageclass.beta.kubernetes.io/is-default-class"),
    ):
        name += " (default)"
    return [
        name,
        sc.get("provisioner") or "",
        sc.get("reclaimPolicy") or "Delete",
        sc.get("volumeBindingMode") or "Immediate",
        bool(sc.get("allowVolumeExpansion")),
        _age(sc, now),
    ]


def print_priority_class(pc: Obj, now: float) -> list[Any]:
    return [
        _name(pc),
        _int(pc.get("value")),
        bool(pc.get("globalDefault")),
        _age(pc, now),
        pc.get("preemptionPolicy") or "",
    ]


def print_lease(lease: Obj, now: float) -> list[Any]:
    return [_name(lease), _spec(lease).get("holderIdentity") or "", _age(lease, now)]


def print_webhook_configuration(wc: Obj, now: float) -> list[Any]:
    return [_name(wc), len(wc.get("webhooks") or []), _age(wc, now)]


def print_validating_admission_policy(vap: Obj, now: float) -> list[Any]:
    spec = _spec(vap)
    param = spec.get("paramKind")
    param_text = "<unset>"
    if isinstance(param, dict):
        param_text = f"{param.get('apiVersion', '')}/{param.get('kind', '')}"
    return [_name(vap), len(spec.get("validations") or []), param_text, _age(vap, now)]


def print_validating_admission_policy_binding(b: Obj, now: float) -> list[Any]:
    spec = _spec(b)
    param = spec.get("paramRef")
    param_text = "<unset>"
    if isinstance(param, dict):
        ns = param.get("namespace")
        param_text = f"{ns}/{param.get('name')}" if ns else str(param.get("name") or "*")
    return [_name(b), spec.get("policyName") or "", param_text, _age(b, now)]


def print_runtime_class(rc: Obj, now: float) -> list[Any]:
    return [_name(rc), rc.get("handler") or "", _age(rc, now)]


def print_csi_driver(d: Obj, now: float) -> list[Any]:
    spec = _spec(d)
    modes = spec.get("volumeLifecycleModes") or ["Persistent"]
    tokens = spec.get("tokenRequests") or []
    token_text = (
        ",".join(f"{t.get('audience')}:{t.get('expirationSeconds', '<unset>')}" for t in tokens)
        if tokens
        else "<unset>"
    )
    return [
        _name(d),
        spec.get("attachRequired", True) is not False,
        bool(spec.get("podInfoOnMount")),
        bool(spec.get("storageCapacity")),
        token_text,
        bool(spec.get("requiresRepublish")),
        ",".join(modes),
        _age(d, now),
    ]


def print_api_service(svc: Obj, now: float) -> list[Any]:
    ref = _spec(svc).get("service")
    service = f"{ref.get('namespace')}/{ref.get('name')}" if isinstance(ref, dict) else "Local"
    available = "Unknown"
    for cond in _conditions(svc):
        if cond.get("type") == "Available":
            available = str(cond.get("status"))
            if available != "True":
                available = f"{available} ({cond.get('reason', '')})"
    return [_name(svc), service, available, _age(svc, now)]


def print_flow_schema(fs: Obj, now: float) -> list[Any]:
    spec = _spec(fs)
    dist = (spec.get("distinguisherMethod") or {}).get("type") or "<none>"
    missing = "?"
    for cond in _conditions(fs):
        if cond.get("type") == "Dangling":
            missing = str(cond.get("status"))
    return [
        _name(fs),
        (spec.get("priorityLevelConfiguration") or {}).get("name") or "",
        _int(spec.get("matchingPrecedence")),
        dist,
        _age(fs, now),
        missing,
    ]


def print_priority_level(pl: Obj, now: float) -> list[Any]:
    spec = _spec(pl)
    limited = spec.get("limited") or {}
    queuing = (limited.get("limitResponse") or {}).get("queuing") or {}
    shares: Any = limited.get("nominalConcurrencyShares", "<none>") if limited else "<none>"
    return [
        _name(pl),
        spec.get("type") or "",
        shares,
        queuing.get("queues", "<none>") if queuing else "<none>",
        queuing.get("handSize", "<none>") if queuing else "<none>",
        queuing.get("queueLengthLimit", "<none>") if queuing else "<none>",
        _age(pl, now),
    ]


def print_name_age(obj: Obj, now: float) -> list[Any]:
    return [_name(obj), _age(obj, now)]


_CREATED_AT = _c("Created At", fmt="date")
_TEMPLATE_WIDE = [_c("Containers", priority=1), _c("Images", priority=1)]

# resource key (group/plural) -> (columns, printer)
PRINTERS: dict[str, tuple[list[Column], Printer]] = {
    "pods": (_POD_COLUMNS, print_pod),
    "services": (
        [
            _NAME,
            _c("Type"),
            _c("Cluster-IP"),
            _c("External-IP"),
            _c("Port(s)"),
            _AGE,
            _c("Selector", priority=1),
        ],
        print_service,
    ),
    "endpoints": ([_NAME, _c("Endpoints"), _AGE], print_endpoints),
    "configmaps": ([_NAME, _c("Data", "integer"), _AGE], print_configmap),
    "secrets": ([_NAME, _c("Type"), _c("Data", "integer"), _AGE], print_secret),
    "serviceaccounts": ([_NAME, _c("Secrets", "integer"), _AGE], print_service_account),
    "persistentvolumeclaims": (
        [
            _NAME,
            _c("Status"),
            _c("Volume"),
            _c("Capacity"),
            _c("Access Modes"),
            _c("StorageClass"),
            _c("VolumeAttributesClass"),
            _AGE,
            _c("VolumeMode", priority=1),
        ],
        print_pvc,
    ),
    "persistentvolumes": (
        [
            _NAME,
            _c("Capacity"),
            _c("Access Modes"),
            _c("Reclaim Policy"),
            _c("Status"),
            _c("Claim"),
            _c("StorageClass"),
            _c("VolumeAttributesClass"),
            _c("Reason"),
            _AGE,
            _c("VolumeMode", priority=1),
        ],
        print_pv,
    ),
    "nodes": (
        [
            _NAME,
            _c("Status"),
            _c("Roles"),
            _AGE,
            _c("Version"),
            _c("Internal-IP", priority=1),
            _c("External-IP", priority=1),
            _c("OS-Image", priority=1),
            _c("Kernel-Version", priority=1),
            _c("Container-Runtime", priority=1),
        ],
        print_node,
    ),
    "namespaces": ([_NAME, _c("Status"), _AGE], print_namespace),
    "events": (
        [
            _c("Last Seen"),
            _c("Type"),
            _c("Reason"),
            _c("Object"),
            _c("Subobject", priority=1),
            _c("Source", priority=1),
            _c("Message"),
            _c("First Seen", priority=1),
            _c("Count", "integer", priority=1),
            _c("Name", priority=1, fmt="name"),
        ],
        print_event,
    ),
    "limitranges": ([_NAME, _CREATED_AT], print_created_at),
    "resourcequotas": ([_NAME, _AGE, _c("Request"), _c("Limit")], print_resource_quota),
    "replicationcontrollers": (
        [
            _NAME,
            _c("Desired", "integer"),
            _c("Current", "integer"),
            _c("Ready", "integer"),
            _AGE,
            *_TEMPLATE_WIDE,
            _c("Selector", priority=1),
        ],
        print_replication_controller,
    ),
    "podtemplates": (
        [_NAME, _c("Containers"), _c("Images"), _c("Pod Labels")],
        print_pod_template,
    ),
    "apps/deployments": (
        [
            _NAME,
            _c("Ready"),
            _c("Up-to-date", "integer"),
            _c("Available", "integer"),
            _AGE,
            *_TEMPLATE_WIDE,
            _c("Selector", priority=1),
        ],
        print_deployment,
    ),
    "apps/replicasets": (
        [
            _NAME,
            _c("Desired", "integer"),
            _c("Current", "integer"),
            _c("Ready", "integer"),
            _AGE,
            *_TEMPLATE_WIDE,
            _c("Selector", priority=1),
        ],
        print_replicaset,
    ),
    "apps/statefulsets": ([_NAME, _c("Ready"), _AGE, *_TEMPLATE_WIDE], print_statefulset),
    "apps/daemonsets": (
        [
            _NAME,
            _c("Desired", "integer"),
            _c("Current", "integer"),
            _c("Ready", "integer"),
            _c("Up-to-date", "integer"),
            _c("Available", "integer"),
            _c("Node Selector"),
            _AGE,
            *_TEMPLATE_WIDE,
            _c("Selector", priority=1),
        ],
        print_daemonset,
    ),
    "apps/controllerrevisions": (
        [_NAME, _c("Controller"), _c("Revision", "integer"), _AGE],
        print_controller_revision,
    ),
    "batch/jobs": (
        [
            _NAME,
            _c("Status"),
            _c("Completions"),
            _c("Duration"),
            _AGE,
            *_TEMPLATE_WIDE,
            _c("Selector", priority=1),
        ],
        print_job,
    ),
    "batch/cronjobs": (
        [
            _NAME,
            _c("Schedule"),
            _c("Timezone"),
            _c("Suspend", "boolean"),
            _c("Active", "integer"),
            _c("Last Schedule"),
            _AGE,
            *_TEMPLATE_WIDE,
            _c("Selector", priority=1),
        ],
        print_cronjob,
    ),
    "networking.k8s.io/ingresses": (
        [_NAME, _c("Class"), _c("Hosts"), _c("Address"), _c("Ports"), _AGE],
        print_ingress,
    ),
    "networking.k8s.io/ingressclasses": (
        [_NAME, _c("Controller"), _c("Parameters"), _AGE],
        print_ingress_class,
    ),
    "networking.k8s.io/networkpolicies": (
        [_NAME, _c("Pod-Selector"), _AGE],
        print_network_policy,
    ),
    "discovery.k8s.io/endpointslices": (
        [_NAME, _c("AddressType"), _c("Ports"), _c("Endpoints"), _AGE],
        print_endpointslice,
    ),
    "autoscaling/horizontalpodautoscalers": (
        [
            _NAME,
            _c("Reference"),
            _c("Targets"),
            _c("MinPods"),
            _c("MaxPods", "integer"),
            _c("Replicas", "integer"),
            _AGE,
        ],
        print_hpa,
    ),
    "policy/poddisruptionbudgets": (
        [
            _NAME,
            _c("Min Available"),
            _c("Max Unavailable"),
            _c("Allowed Disruptions", "integer"),
            _AGE,
        ],
        print_pdb,
    ),
    "rbac.authorization.k8s.io/roles": ([_NAME, _CREATED_AT], print_created_at),
    "rbac.authorization.k8s.io/clusterroles": ([_NAME, _CREATED_AT], print_created_at),
    "rbac.authorization.k8s.io/rolebindings": (
        [
            _NAME,
            _c("Role"),
            _AGE,
            _c("Users", priority=1),
            _c("Groups", priority=1),
            _c("ServiceAccounts", priority=1),
        ],
        print_binding,
    ),
    "rbac.authorization.k8s.io/clusterrolebindings": (
        [
            _NAME,
            _c("Role"),
            _AGE,
            _c("Users", priority=1),
            _c("Groups", priority=1),
            _c("ServiceAccounts", priority=1),
        ],
        print_binding,
    ),
    "storage.k8s.io/storageclasses": (
        [
            _NAME,
            _c("Provisioner"),
            _c("ReclaimPolicy"),
            _c("VolumeBindingMode"),
            _c("AllowVolumeExpansion", "boolean"),
            _AGE,
        ],
        print_storage_class,
    ),
    "storage.k8s.io/csidrivers": (
        [
            _NAME,
            _c("AttachRequired", "boolean"),
            _c("PodInfoOnMount", "boolean"),
            _c("StorageCapacity", "boolean"),
            _c("TokenRequests"),
            _c("RequiresRepublish", "boolean"),
            _c("Modes"),
            _AGE,
        ],
        print_csi_driver,
    ),
    "scheduling.k8s.io/priorityclasses": (
        [
            _NAME,
            _c("Value", "integer"),
            _c("Global-Default", "boolean"),
            _AGE,
            _c("PreemptionPolicy"),
        ],
        print_priority_class,
    ),
    "coordination.k8s.io/leases": ([_NAME, _c("Holder"), _AGE], print_lease),
    "admissionregistration.k8s.io/mutatingwebhookconfigurations": (
        [_NAME, _c("Webhooks", "integer"), _AGE],
        print_webhook_configuration,
    ),
    "admissionregistration.k8s.io/validatingwebhookconfigurations": (
        [_NAME, _c("Webhooks", "integer"), _AGE],
        print_webhook_configuration,
    ),
    "admissionregistration.k8s.io/validatingadmissionpolicies": (
        [_NAME, _c("Validations", "integer"), _c("ParamKind"), _AGE],
        print_validating_admission_policy,
    ),
    "admissionregistration.k8s.io/validatingadmissionpolicybindings": (
        [_NAME, _c("PolicyName"), _c("ParamRef"), _AGE],
        print_validating_admission_policy_binding,
    ),
    "node.k8s.io/runtimeclasses": ([_NAME, _c("Handler"), _AGE], print_runtime_class),
    "apiregistration.k8s.io/apiservices": (
        [_NAME, _c("Service"), _c("Available"), _AGE],
        print_api_service,
    ),
    "flowcontrol.apiserver.k8s.io/flowschemas": (
        [
            _NAME,
            _c("PriorityLevel"),
            _c("MatchingPrecedence", "integer"),
            _c("DistinguisherMethod"),
            _AGE,
            _c("MissingPL"),
        ],
        print_flow_schema,
    ),
    "flowcontrol.apiserver.k8s.io/prioritylevelconfigurations": (
        [
            _NAME,
            _c("Type"),
            _c("NominalConcurrencyShares"),
            _c("Queues"),
            _c("HandSize"),
            _c("QueueLengthLimit"),
            _AGE,
        ],
        print_priority_level,
    ),
    "apiextensions.k8s.io/customresourcedefinitions": ([_NAME, _CREATED_AT], print_created_at),
}
# events.k8s.io Events are printed as core Events.
PRINTERS["events.k8s.io/events"] = PRINTERS["events"]

_DEFAULT: tuple[list[Column], Printer] = ([_NAME, _AGE], print_name_age)


# -- custom resources: additionalPrinterColumns ----------------------------------------------

_JSONPATH_RE = re.compile(r"^\.?[A-Za-z0-9_\-.\[\]\\*'\"]*$")


def _jsonpath_get(obj: Any, path: str) -> list[Any]:
    """The values a CRD column's simple JSONPath (`.spec.replicas`, `.a.b[0].c`) selects."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.removeprefix("$")
    tokens: list[str | int] = []
    for part in re.findall(r"\.([^.\[]+)|\[(\d+|\*|'[^']*'|\"[^\"]*\")\]", path):
        name, index = part
        if name:
            tokens.append(name)
        elif index == "*":
            tokens.append("*")
        elif index.isdigit():
            tokens.append(int(index))
        else:
            tokens.append(index[1:-1])
    values = [obj]
    for token in tokens:
        nxt: list[Any] = []
        for v in values:
            if isinstance(v, list) and token == "*":
                nxt.extend(v)
            elif isinstance(v, list) and isinstance(token, int):
                nxt.extend(v[token : token + 1])
            elif isinstance(v, dict) and isinstance(token, str) and token in v:
                nxt.append(v[token])
        values = nxt
    return values


def crd_columns(crd: Obj, version: str) -> list[dict[str, Any]]:
    """The `additionalPrinterColumns` of one served version of a CRD."""
    for v in _spec(crd).get("versions") or []:
        if v.get("name") == version:
            return list(v.get("additionalPrinterColumns") or [])
    return list(_spec(crd).get("additionalPrinterColumns") or [])


def _custom_printer(columns: list[dict[str, Any]]) -> tuple[list[Column], Printer]:
    defs: list[Column] = [_NAME]
    for col in columns:
        ctype = str(col.get("type") or "string")
        defs.append(
            (
                str(col.get("name", "")),
                ctype,
                _int(col.get("priority")),
                str(col.get("format") or ""),
            )
        )

    def printer(obj: Obj, now: float) -> list[Any]:
        cells: list[Any] = [_name(obj)]
        for col in columns:
            values = _jsonpath_get(obj, str(col.get("jsonPath", "")))
            if not values:
                cells.append(None)
                continue
            value = values[0] if len(values) == 1 else values
            if col.get("type") == "date":
                cells.append(since(value, now) if isinstance(value, str) else None)
            elif isinstance(value, (dict, list)):
                cells.append(json.dumps(value, separators=(",", ":")))
            else:
                cells.append(value)
        return cells

    return defs, printer


# -- the Table -----------------------------------------------------------------------------


def wants_table(accept: str) -> str | None:
    """The Table version (`v1`/`v1beta1`) an Accept header asks for first, or None."""
    if "as=Table" not in accept:
        return None
    for media in accept.split(","):
        params = {}
        for part in media.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            params[key] = value
        if (
            params.get("as") == "Table"
            and params.get("g") == "meta.k8s.io"
            and params.get("v") in ("v1", "v1beta1")
        ):
            return params["v"]
    return None


def printer_for(key: str, crd: Obj | None, version: str) -> tuple[list[Column], Printer]:
    if crd is not None:
        columns = crd_columns(crd, version)
        if columns:
            return _custom_printer(columns)
        return _DEFAULT
    return PRINTERS.get(key, _DEFAULT)


def column_definitions(columns: list[Column]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "type": type_,
            "format": fmt,
            "description": _DESCRIPTIONS.get(name, ""),
            "priority": priority,
        }
        for name, type_, priority, fmt in columns
    ]


def _partial(obj: Obj, api_version: str) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{api_version}",
        "metadata": obj.get("metadata") or {},
    }


_ENCODED: dict[int, tuple[Obj, str, bytes]] = {}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _object_bytes(obj: Obj, include: str, table_version: str) -> bytes:
    """A row's object, encoded once per stored version (stored objects never change)."""
    tag = include + table_version
    hit = _ENCODED.get(id(obj))
    if hit is not None and hit[0] is obj and hit[1] == tag:
        return hit[2]
    data = _dumps(obj if include == "Object" else _partial(obj, table_version))
    if len(_ENCODED) > 100_000:
        _ENCODED.clear()
    _ENCODED[id(obj)] = (obj, tag, data)
    return data


# A row is encoded once per stored object version as byte segments around its
# time-dependent cells: (segments, Since cells), joined with the ages at each request.
_ROWS: dict[int, tuple[Obj, str, list[bytes], list[Since]]] = {}
_HOLE = "\u0000devloop-age\u0000"


def _row(
    obj: Obj, key: str, printer: Printer, tag: str, include: str, table_version: str
) -> tuple[list[bytes], list[Since]]:
    hit = _ROWS.get(id(obj))
    if hit is not None and hit[0] is obj and hit[1] == tag:
        return hit[2], hit[3]
    template = printer(obj, DEFERRED)
    ages = [c for c in template if isinstance(c, Since)]
    row: Obj = {"cells": [_HOLE if isinstance(c, Since) else c for c in template]}
    if key == "pods":
        conditions = _pod_row_conditions(obj)
        if conditions:
            row["conditions"] = conditions
    encoded = _dumps(row)[:-1]
    if include != "None":
        encoded += b',"object":' + _object_bytes(obj, include, table_version)
    segments = (encoded + b"}").split(_dumps(_HOLE))
    if len(_ROWS) > 100_000:
        _ROWS.clear()
    _ROWS[id(obj)] = (obj, tag, segments, ages)
    return segments, ages


def table_json(
    key: str,
    items: Iterable[Obj],
    *,
    table_version: str,
    include_object: str = "",
    crd: Obj | None = None,
    version: str = "",
    list_meta: dict[str, Any] | None = None,
    now: float | None = None,
    headers: bool = True,
) -> bytes:
    """`table(...)` encoded as JSON; rows are encoded once per stored object version."""
    columns, printer = printer_for(key, crd, version)
    moment = time.time() if now is None else now
    include = include_object or "PartialObjectMetadata"
    head_doc: Obj = {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": dict(list_meta or {}),
    }
    if headers:
        head_doc["columnDefinitions"] = column_definitions(columns)
    head = _dumps(head_doc)
    crd_version = (crd.get("metadata") or {}).get("resourceVersion", "") if crd else ""
    tag = f"{key}/{version}/{crd_version}/{include}/{table_version}"
    rows = []
    for obj in items:
        segments, ages = _row(obj, key, printer, tag, include, table_version)
        if not ages:
            rows.append(segments[0])
            continue
        parts = [segments[0]]
        for age, segment in zip(ages, segments[1:], strict=True):
            parts.append(b'"' + age.render(moment).encode() + b'"')
            parts.append(segment)
        rows.append(b"".join(parts))
    return head[:-1] + b',"rows":[' + b",".join(rows) + b"]}"


def table(
    key: str,
    items: Iterable[Obj],
    *,
    table_version: str,
    include_object: str = "",
    crd: Obj | None = None,
    version: str = "",
    list_meta: dict[str, Any] | None = None,
    now: float | None = None,
    no_headers: bool = False,
) -> Obj:
    """The meta.k8s.io Table of `items` (all of one resource type)."""
    columns, printer = printer_for(key, crd, version)
    moment = time.time() if now is None else now
    include = include_object or "PartialObjectMetadata"
    rows = []
    for obj in items:
        row: Obj = {"cells": printer(obj, moment)}
        if key == "pods":
            conditions = _pod_row_conditions(obj)
            if conditions:
                row["conditions"] = conditions
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = _partial(obj, table_version)
        rows.append(row)
    out: Obj = {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": dict(list_meta or {}),
    }
    if not no_headers:
        out["columnDefinitions"] = column_definitions(columns)
    out["rows"] = rows
    return out
