"""The semantic rules a real API server enforces on the built-in kinds charts use most.

Owns `validate_object` (what `Validate<Kind>` checks on a create) and `validate_update`
(immutable fields and forbidden updates), each returning `field.Error`s in the server's
wording. The rules are a table keyed by resource (`RULES`, `UPDATE_RULES`): one function
per kind, each reading the object as plain JSON data after defaults were applied.
Kinds absent from the tables get the metadata rules only (names per kind, labels,
annotations, owner references); docs/embedded-cluster.md lists what is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_devloop.embedded.validation import events
from pytest_devloop.k8s import validation as v
from pytest_devloop.k8s.validation import FieldError

Obj = dict[str, Any]
Rule = Callable[[Obj], list[FieldError]]
UpdateRule = Callable[[Obj, Obj], list[FieldError]]

# How each kind's name is checked (`ValidateObjectMeta`'s name function per kind).
_PATH_SEGMENT_NAMES = frozenset(
    {
        "rbac.authorization.k8s.io/roles",
        "rbac.authorization.k8s.io/clusterroles",
        "rbac.authorization.k8s.io/rolebindings",
        "rbac.authorization.k8s.io/clusterrolebindings",
        "scheduling.k8s.io/priorityclasses",
        "flowcontrol.apiserver.k8s.io/flowschemas",
        "flowcontrol.apiserver.k8s.io/prioritylevelconfigurations",
        "apiregistration.k8s.io/apiservices",
        "certificates.k8s.io/certificatesigningrequests",
        "authentication.k8s.io/tokenreviews",
    }
)
_DNS1123_LABEL_NAMES = frozenset({"namespaces", "apps/statefulsets"})
_DNS1035_LABEL_NAMES = frozenset({"services"})


def name_check(key: str, builtin: bool) -> v.NameCheck:
    if not builtin:
        return v.dns1123_subdomain
    if key in _PATH_SEGMENT_NAMES:
        return v.path_segment
    if key in _DNS1123_LABEL_NAMES:
        return v.dns1123_label
    if key in _DNS1035_LABEL_NAMES:
        return v.dns1035_label
    return v.dns1123_subdomain


def validate_metadata(key: str, builtin: bool, obj: Obj) -> list[FieldError]:
    m = obj.get("metadata") or {}
    errs: list[FieldError] = []
    check = name_check(key, builtin)
    name = m.get("name")
    if isinstance(name, str) and name:
        errs += [v.invalid("metadata.name", name, msg) for msg in check(name)]
    generate = m.get("generateName")
    if isinstance(generate, str) and generate and not name:
        # A generated name gets a suffix: only the prefix's characters are checked.
        errs += [v.invalid("metadata.generateName", generate, msg) for msg in check(generate + "a")]
    errs += v.check_labels(m.get("labels"), "metadata.labels")
    errs += v.check_annotations(m.get("annotations"), "metadata.annotations")
    for i, ref in enumerate(m.get("ownerReferences") or []):
        path = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            continue
        if not ref.get("apiVersion"):
            errs.append(v.invalid(f"{path}.apiVersion", "", "version must not be empty"))
        if not ref.get("kind"):
            errs.append(v.invalid(f"{path}.kind", "", "kind must not be empty"))
        if not ref.get("name"):
            errs.append(v.invalid(f"{path}.name", "", "name must not be empty"))
        if not ref.get("uid"):
            errs.append(v.invalid(f"{path}.uid", "", "uid must not be empty"))
    controllers = [
        r for r in m.get("ownerReferences") or [] if isinstance(r, dict) and r.get("controller")
    ]
    if len(controllers) > 1:
        errs.append(
            v.invalid(
                "metadata.ownerReferences",
                m.get("ownerReferences"),
                'Only one reference can have Controller set to true. Found "true" in references '
                f"for {' and '.join(str(r.get('kind', '')) + '/' + str(r.get('name', '')) for r in controllers)}",
            )
        )
    return errs


# -- pods and templates -------------------------------------------------------------

_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


def _port_range(path: str, value: Any) -> list[FieldError]:
    if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= 65535:
        return [v.invalid(path, value, "must be between 1 and 65535, inclusive")]
    return []


def _int_or_port_name(path: str, value: Any) -> list[FieldError]:
    if isinstance(value, str):
        # A string is a port name, even "8080" (which has no letter, so it is refused).
        return [v.invalid(path, value, msg) for msg in v.port_name(value)]
    return _port_range(path, value)


def _containers(
    spec: Obj, path: str, kind: str, names: set[str], volumes: set[str]
) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, c in enumerate(spec.get(kind) or []):
        p = f"{path}.{kind}[{i}]"
        if not isinstance(c, dict):
            continue
        name = c.get("name")
        if not name:
            errs.append(v.required(f"{p}.name"))
        else:
            errs += [v.invalid(f"{p}.name", name, msg) for msg in v.dns1123_label(str(name))]
            if name in names:
                errs.append(v.duplicate(f"{p}.name", name))
            names.add(str(name))
        if not c.get("image"):
            errs.append(v.required(f"{p}.image"))
        policy = c.get("imagePullPolicy")
        if policy is not None and policy not in _PULL_POLICIES:
            errs.append(v.not_supported(f"{p}.imagePullPolicy", policy, _PULL_POLICIES))
        port_names: set[str] = set()
        for j, port in enumerate(c.get("ports") or []):
            pp = f"{p}.ports[{j}]"
            if not isinstance(port, dict):
                continue
            if port.get("containerPort") is None:
                errs.append(v.required(f"{pp}.containerPort"))
            errs += _port_range(f"{pp}.containerPort", port.get("containerPort"))
            errs += _port_range(f"{pp}.hostPort", port.get("hostPort") or None)
            pname = port.get("name")
            if pname:
                errs += [v.invalid(f"{pp}.name", pname, msg) for msg in v.port_name(str(pname))]
                if pname in port_names:
                    errs.append(v.duplicate(f"{pp}.name", pname))
                port_names.add(str(pname))
            proto = port.get("protocol")
            if proto is not None and proto not in _PROTOCOLS:
                errs.append(v.not_supported(f"{pp}.protocol", proto, _PROTOCOLS))
        for j, env in enumerate(c.get("env") or []):
            ep = f"{p}.env[{j}]"
            if not isinstance(env, dict):
                continue
            ename = env.get("name")
            if not ename:
                errs.append(v.required(f"{ep}.name"))
            else:
                errs += [v.invalid(f"{ep}.name", ename, m) for m in v.env_var_name(str(ename))]
            source = env.get("valueFrom")
            if isinstance(source, dict):
                if env.get("value"):
                    errs.append(
                        v.invalid_no_value(
                            f"{ep}.valueFrom",
                            "may not be specified when `value` is not empty",
                        )
                    )
                for ref in ("configMapKeyRef", "secretKeyRef"):
                    r = source.get(ref)
                    if isinstance(r, dict):
                        if not r.get("key"):
                            errs.append(v.required(f"{ep}.valueFrom.{ref}.key"))
                        if not r.get("name"):
                            errs.append(v.required(f"{ep}.valueFrom.{ref}.name"))
        for j, mount in enumerate(c.get("volumeMounts") or []):
            mp = f"{p}.volumeMounts[{j}]"
            if not isinstance(mount, dict):
                continue
            mname = mount.get("name")
            if not mname:
                errs.append(v.required(f"{mp}.name"))
            elif mname not in volumes:
                errs.append(FieldError(f"{mp}.name", "FieldValueNotFound", f'Not found: "{mname}"'))
            if not mount.get("mountPath"):
                errs.append(v.required(f"{mp}.mountPath"))
    return errs


def validate_pod_spec(
    spec: Any,
    path: str,
    *,
    restart: tuple[str, ...] = _RESTART_POLICIES,
    claims: frozenset[str] = frozenset(),
) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [v.required(path)]
    errs: list[FieldError] = []
    volumes: set[str] = set()
    for i, vol in enumerate(spec.get("volumes") or []):
        if not isinstance(vol, dict):
            continue
        vname = vol.get("name")
        vp = f"{path}.volumes[{i}].name"
        if not vname:
            errs.append(v.required(vp))
            continue
        errs += [v.invalid(vp, vname, msg) for msg in v.dns1123_label(str(vname))]
        if vname in volumes:
            errs.append(v.duplicate(vp, vname))
        volumes.add(str(vname))
    # A StatefulSet's volumeClaimTemplates are volumes its pods will have.
    volumes |= claims
    if not spec.get("containers"):
        errs.append(v.required(f"{path}.containers"))
    names: set[str] = set()
    errs += _containers(spec, path, "initContainers", names, volumes)
    errs += _containers(spec, path, "containers", names, volumes)
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in restart:
        if policy in _RESTART_POLICIES:
            errs.append(v.not_supported(f"{path}.restartPolicy", policy, restart))
        else:
            errs.append(v.not_supported(f"{path}.restartPolicy", policy, _RESTART_POLICIES))
    dns = spec.get("dnsPolicy")
    if dns is not None and dns not in _DNS_POLICIES:
        errs.append(v.not_supported(f"{path}.dnsPolicy", dns, _DNS_POLICIES))
    sa = spec.get("serviceAccountName")
    if sa:
        errs += [
            v.invalid(f"{path}.serviceAccountName", sa, m) for m in v.dns1123_subdomain(str(sa))
        ]
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        errs.append(
            v.invalid(
                f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    return errs


def _non_negative(obj: Obj, path: str, field: str) -> list[FieldError]:
    value = obj.get(field)
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [v.invalid(f"{path}.{field}", value, "must be greater than or equal to 0")]
    return []


def _template_labels(template: Obj) -> dict[str, str]:
    return dict(((template.get("metadata") or {}).get("labels")) or {})


def _workload(obj: Obj, kind: str, restart: tuple[str, ...] = ("Always",)) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs = _non_negative(spec, "spec", "replicas")
    errs += _non_negative(spec, "spec", "minReadySeconds")
    errs += _non_negative(spec, "spec", "revisionHistoryLimit")
    selector = spec.get("selector")
    template = spec.get("template")
    if selector is None:
        errs.append(v.required("spec.selector"))
    else:
        errs += v.check_selector_labels(selector, "spec.selector")
        if v.selector_is_empty(selector):
            errs.append(
                v.invalid("spec.selector", selector, f"empty selector is invalid for {kind}")
            )
    if not isinstance(template, dict):
        errs.append(v.required("spec.template"))
        return errs
    labels = _template_labels(template)
    errs += v.check_labels(labels, "spec.template.metadata.labels")
    if selector is not None and not v.selector_matches(selector, labels):
        errs.append(
            v.invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
        )
    claims = frozenset(
        str((c.get("metadata") or {}).get("name", ""))
        for c in spec.get("volumeClaimTemplates") or []
        if isinstance(c, dict)
    )
    errs += validate_pod_spec(
        template.get("spec"), "spec.template.spec", restart=restart, claims=claims
    )
    return errs


def _deployment(obj: Obj) -> list[FieldError]:
    errs = _workload(obj, "deployment")
    spec = obj.get("spec") or {}
    strategy = spec.get("strategy") or {}
    stype = strategy.get("type")
    if stype is not None and stype not in ("Recreate", "RollingUpdate"):
        errs.append(v.not_supported("spec.strategy.type", stype, ["Recreate", "RollingUpdate"]))
    rolling = strategy.get("rollingUpdate")
    if stype == "Recreate" and rolling:
        errs.append(
            v.forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        )
    if (
        isinstance(rolling, dict)
        and rolling.get("maxUnavailable") in (0, "0%")
        and rolling.get("maxSurge") in (0, "0%")
    ):
        errs.append(
            v.invalid(
                "spec.strategy.rollingUpdate.maxUnavailable",
                rolling.get("maxUnavailable"),
                "may not be 0 when `maxSurge` is 0",
            )
        )
    errs += _non_negative(spec, "spec", "progressDeadlineSeconds")
    return errs


def _statefulset(obj: Obj) -> list[FieldError]:
    errs = _workload(obj, "statefulset")
    spec = obj.get("spec") or {}
    policy = spec.get("podManagementPolicy")
    if policy is not None and policy not in ("OrderedReady", "Parallel"):
        errs.append(
            v.not_supported("spec.podManagementPolicy", policy, ["OrderedReady", "Parallel"])
        )
    return errs


def _job_spec(spec: Any, path: str) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [v.required(path)]
    errs: list[FieldError] = []
    for f in (
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ):
        errs += _non_negative(spec, path, f)
    template = spec.get("template")
    if not isinstance(template, dict):
        return [*errs, v.required(f"{path}.template")]
    restart = (template.get("spec") or {}).get("restartPolicy")
    if restart is None:
        errs.append(
            v.required(f"{path}.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"')
        )
    errs += validate_pod_spec(
        template.get("spec"), f"{path}.template.spec", restart=("OnFailure", "Never")
    )
    return errs


def _job(obj: Obj) -> list[FieldError]:
    errs = _job_spec(obj.get("spec"), "spec")
    name = str((obj.get("metadata") or {}).get("name", ""))
    if len(name) > 63:
        # The name becomes the value of the template's job-name labels.
        errs.append(v.invalid("spec.template.labels", name, "must be no more than 63 characters"))
    return errs


def _cronjob(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs: list[FieldError] = []
    if not spec.get("schedule"):
        errs.append(v.required("spec.schedule"))
    elif len(str(spec["schedule"]).split()) not in (5, 6) and not str(spec["schedule"]).startswith(
        "@"
    ):
        errs.append(
            v.invalid(
                "spec.schedule",
                spec["schedule"],
                f"Expected exactly 5 fields, found {len(str(spec['schedule']).split())}: {spec['schedule']}",
            )
        )
    policy = spec.get("concurrencyPolicy")
    if policy is not None and policy not in ("Allow", "Forbid", "Replace"):
        errs.append(
            v.not_supported("spec.concurrencyPolicy", policy, ["Allow", "Forbid", "Replace"])
        )
    name = str((obj.get("metadata") or {}).get("name", ""))
    if len(name) > 52:
        errs.append(v.invalid("metadata.name", name, "must be no more than 52 characters"))
    job_template = spec.get("jobTemplate") or {}
    errs += _job_spec(job_template.get("spec"), "spec.jobTemplate.spec")
    return errs


def _pod(obj: Obj) -> list[FieldError]:
    return validate_pod_spec(obj.get("spec"), "spec")


_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _service(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs: list[FieldError] = []
    stype = spec.get("type", "ClusterIP")
    if stype not in _SERVICE_TYPES:
        errs.append(v.not_supported("spec.type", stype, _SERVICE_TYPES))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not ports and stype != "ExternalName" and not headless:
        errs.append(v.required("spec.ports"))
    if stype == "ExternalName" and not spec.get("externalName"):
        errs.append(v.required("spec.externalName"))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            continue
        pname = port.get("name")
        if len(ports) > 1 and not pname:
            errs.append(v.required(f"{p}.name"))
        elif pname:
            errs += [v.invalid(f"{p}.name", pname, m) for m in v.dns1123_label(str(pname))]
            if pname in names:
                errs.append(v.duplicate(f"{p}.name", pname))
            names.add(str(pname))
        if port.get("port") is None:
            errs.append(v.required(f"{p}.port"))
        errs += _port_range(f"{p}.port", port.get("port"))
        proto = port.get("protocol", "TCP")
        if proto not in _PROTOCOLS:
            errs.append(v.not_supported(f"{p}.protocol", proto, _PROTOCOLS))
        key = (port.get("port"), proto)
        if key in seen:
            errs.append(v.duplicate(p, {"port": port.get("port"), "protocol": proto}))
        seen.add(key)
        errs += _int_or_port_name(f"{p}.targetPort", port.get("targetPort"))
        if stype in ("ClusterIP",) and port.get("nodePort"):
            errs.append(v.forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'"))
    selector = spec.get("selector")
    if isinstance(selector, dict):
        errs += v.check_labels(selector, "spec.selector")
    return errs


_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")


def _backend(backend: Any, path: str) -> list[FieldError]:
    if not isinstance(backend, dict):
        return [v.required(path)]
    service = backend.get("service")
    resource = backend.get("resource")
    if service and resource:
        return [v.invalid(path, "", "cannot set both resource and service backends")]
    if not service and not resource:
        return [v.invalid(path, "", "resource or service backend is required")]
    if not isinstance(service, dict):
        return []
    errs: list[FieldError] = []
    if not service.get("name"):
        errs.append(v.required(f"{path}.service.name"))
    port = service.get("port")
    if not isinstance(port, dict) or (port.get("name") is None and port.get("number") is None):
        errs.append(v.required(f"{path}.service.port", "port name or number is required"))
    elif port.get("name") and port.get("number"):
        errs.append(
            v.invalid(f"{path}.service.port", port, "cannot set both port name & port number")
        )
    elif port.get("number") is not None:
        errs += _port_range(f"{path}.service.port.number", port.get("number"))
    return errs


def _ingress(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs: list[FieldError] = []
    rules = spec.get("rules") or []
    if spec.get("defaultBackend") is not None:
        errs += _backend(spec.get("defaultBackend"), "spec.defaultBackend")
    elif not rules:
        errs.append(
            v.invalid("spec.rules", rules, "either `defaultBackend` or `rules` must be specified")
        )
    for i, rule in enumerate(rules):
        p = f"spec.rules[{i}]"
        if not isinstance(rule, dict):
            continue
        host = rule.get("host")
        if host:
            check = host[2:] if host.startswith("*.") else host
            errs += [v.invalid(f"{p}.host", host, m) for m in v.dns1123_subdomain(check)]
        http = rule.get("http")
        if http is None:
            continue
        paths = (http or {}).get("paths") or []
        if not paths:
            errs.append(v.required(f"{p}.http.paths"))
        for j, hp in enumerate(paths):
            pp = f"{p}.http.paths[{j}]"
            if not isinstance(hp, dict):
                continue
            ptype = hp.get("pathType")
            if ptype is None:
                errs.append(v.required(f"{pp}.pathType", "pathType must be specified"))
            elif ptype not in _PATH_TYPES:
                errs.append(v.not_supported(f"{pp}.pathType", ptype, _PATH_TYPES))
            path = hp.get("path", "")
            if ptype in ("Exact", "Prefix") and not str(path).startswith("/"):
                errs.append(v.invalid(f"{pp}.path", path, "must be an absolute path"))
            errs += _backend(hp.get("backend"), f"{pp}.backend")
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate((tls or {}).get("hosts") or []):
            check = host[2:] if str(host).startswith("*.") else str(host)
            errs += [
                v.invalid(f"spec.tls[{i}].hosts[{j}]", host, m) for m in v.dns1123_subdomain(check)
            ]
    return errs


def _hpa(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs: list[FieldError] = []
    max_r = spec.get("maxReplicas")
    min_r = spec.get("minReplicas")
    if isinstance(min_r, int) and min_r < 1:
        errs.append(v.invalid("spec.minReplicas", min_r, "must be greater than or equal to 1"))
    if not isinstance(max_r, int) or max_r < 1:
        errs.append(v.invalid("spec.maxReplicas", max_r, "must be greater than or equal to 1"))
    elif isinstance(min_r, int) and min_r > max_r:
        errs.append(
            v.invalid("spec.maxReplicas", max_r, "must be greater than or equal to `minReplicas`")
        )
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind"):
        errs.append(v.required("spec.scaleTargetRef.kind"))
    if not ref.get("name"):
        errs.append(v.required("spec.scaleTargetRef.name"))
    return errs


def _pdb(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    errs: list[FieldError] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.append(v.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for f in ("minAvailable", "maxUnavailable"):
        value = spec.get(f)
        if isinstance(value, int) and value < 0:
            errs.append(v.invalid(f"spec.{f}", value, "must be greater than or equal to 0"))
        if isinstance(value, str):
            pct = value[:-1] if value.endswith("%") else None
            if pct is None or not pct.isdigit():
                errs.append(
                    v.invalid(
                        f"spec.{f}",
                        value,
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    )
                )
            elif int(pct) > 100:
                errs.append(v.invalid(f"spec.{f}", value, "must be no more than 100%"))
    if spec.get("selector") is not None:
        errs += v.check_selector_labels(spec["selector"], "spec.selector")
    return errs


def _policy_rules(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, rule in enumerate(obj.get("rules") or []):
        p = f"rules[{i}]"
        if not isinstance(rule, dict):
            continue
        if not rule.get("verbs"):
            errs.append(v.required(f"{p}.verbs", "verbs must contain at least one value"))
        if rule.get("nonResourceURLs"):
            if obj.get("kind") == "Role":
                errs.append(
                    v.invalid(
                        f"{p}.nonResourceURLs",
                        rule["nonResourceURLs"],
                        "namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                errs.append(
                    v.invalid(
                        f"{p}.nonResourceURLs",
                        rule["nonResourceURLs"],
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not rule.get("apiGroups"):
            errs.append(
                v.required(f"{p}.apiGroups", "resource rules must supply at least one api group")
            )
        if not rule.get("resources"):
            errs.append(
                v.required(f"{p}.resources", "resource rules must supply at least one resource")
            )
    return errs


def _binding(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        return [v.required("roleRef")]
    allowed = (
        ["ClusterRole"] if obj.get("kind") == "ClusterRoleBinding" else ["ClusterRole", "Role"]
    )
    if ref.get("apiGroup") != "rbac.authorization.k8s.io":
        errs.append(
            v.not_supported(
                "roleRef.apiGroup", ref.get("apiGroup", ""), ["rbac.authorization.k8s.io"]
            )
        )
    if ref.get("kind") not in allowed:
        errs.append(v.not_supported("roleRef.kind", ref.get("kind", ""), allowed))
    if not ref.get("name"):
        errs.append(v.required("roleRef.name"))
    else:
        errs += [
            v.invalid("roleRef.name", ref["name"], m) for m in v.path_segment(str(ref["name"]))
        ]
    for i, subject in enumerate(obj.get("subjects") or []):
        p = f"subjects[{i}]"
        if not isinstance(subject, dict):
            continue
        kind = subject.get("kind")
        if not subject.get("name"):
            errs.append(v.required(f"{p}.name"))
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                errs.append(v.not_supported(f"{p}.apiGroup", subject["apiGroup"], [""]))
            if obj.get("kind") == "ClusterRoleBinding" and not subject.get("namespace"):
                errs.append(v.required(f"{p}.namespace"))
        elif kind in ("User", "Group"):
            if subject.get("apiGroup") != "rbac.authorization.k8s.io":
                errs.append(
                    v.not_supported(
                        f"{p}.apiGroup", subject.get("apiGroup", ""), ["rbac.authorization.k8s.io"]
                    )
                )
        else:
            errs.append(v.not_supported(f"{p}.kind", kind, ["ServiceAccount", "User", "Group"]))
    return errs


_CONFIG_KEY = "[-._a-zA-Z0-9]+"
MAX_DATA_SIZE = 1024 * 1024


def _config_keys(obj: Obj, fields: tuple[str, ...]) -> list[FieldError]:
    import re

    errs: list[FieldError] = []
    seen: set[str] = set()
    total = 0
    for f in fields:
        data = obj.get(f)
        if not isinstance(data, dict):
            continue
        for key, value in data.items():
            if not re.fullmatch(_CONFIG_KEY, str(key)) or len(str(key)) > 253:
                errs.append(
                    v.invalid(
                        f"{f}[{key}]",
                        key,
                        "a valid config key must consist of alphanumeric characters, '-', '_' or "
                        "'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                        f"validation is '{_CONFIG_KEY}')",
                    )
                )
            if key in seen:
                errs.append(v.duplicate(f"{f}[{key}]", key))
            seen.add(str(key))
            total += len(str(value))
    if total > MAX_DATA_SIZE:
        errs.append(v.too_long("", MAX_DATA_SIZE))
    return errs


def _configmap(obj: Obj) -> list[FieldError]:
    return _config_keys(obj, ("data", "binaryData"))


def _secret(obj: Obj) -> list[FieldError]:
    import base64

    errs = _config_keys(obj, ("data",))
    total = 0
    for value in (obj.get("data") or {}).values():
        try:
            total += len(base64.b64decode(str(value)))
        except ValueError:
            total += len(str(value))
    if total > MAX_DATA_SIZE:
        errs = [e for e in errs if e.reason != v.TOO_LONG] + [v.too_long("data", MAX_DATA_SIZE)]
    stype = obj.get("type")
    data = obj.get("data") or {}
    if stype == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                errs.append(v.required(f"data[{key}]"))
    elif stype == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" not in data:
        errs.append(v.required("data[.dockerconfigjson]"))
    return errs


def _namespace(obj: Obj) -> list[FieldError]:
    return []


def _pvc(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs: list[FieldError] = []
    modes = spec.get("accessModes") or []
    if not modes and not spec.get("dataSource"):
        errs.append(v.required("spec.accessModes", "at least 1 access mode is required"))
    allowed = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
    for mode in modes:
        if mode not in allowed:
            errs.append(v.not_supported("spec.accessModes", mode, allowed))
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        errs.append(v.required("spec.resources[storage]"))
    return errs


RULES: dict[str, Rule] = {
    "pods": _pod,
    "apps/deployments": _deployment,
    "apps/replicasets": lambda o: _workload(o, "replicaset"),
    "apps/daemonsets": lambda o: _workload(o, "daemonset"),
    "apps/statefulsets": _statefulset,
    "batch/jobs": _job,
    "batch/cronjobs": _cronjob,
    "services": _service,
    "networking.k8s.io/ingresses": _ingress,
    "autoscaling/horizontalpodautoscalers": _hpa,
    "policy/poddisruptionbudgets": _pdb,
    "rbac.authorization.k8s.io/roles": _policy_rules,
    "rbac.authorization.k8s.io/clusterroles": _policy_rules,
    "rbac.authorization.k8s.io/rolebindings": _binding,
    "rbac.authorization.k8s.io/clusterrolebindings": _binding,
    "configmaps": _configmap,
    "secrets": _secret,
    "persistentvolumeclaims": _pvc,
    "events": events.core_create,
    "events.k8s.io/events": events.events_create,
}


# Kinds whose update validation replaces (rather than adds to) their create rules.
_CREATE_ONLY = frozenset({"events", "events.k8s.io/events"})


def validate_object(
    key: str, builtin: bool, obj: Obj, *, creating: bool = True
) -> list[FieldError]:
    errs = validate_metadata(key, builtin, obj)
    rule = RULES.get(key) if builtin and (creating or key not in _CREATE_ONLY) else None
    if rule is not None:
        errs += rule(obj)
    return errs


# -- updates ------------------------------------------------------------------------


def _immutable(path: str, old: Any, new: Any) -> list[FieldError]:
    if old != new:
        return [v.invalid(path, new, "field is immutable")]
    return []


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _selector_immutable(old: Obj, new: Obj) -> list[FieldError]:
    return _immutable("spec.selector", _spec(old).get("selector"), _spec(new).get("selector"))


_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def _statefulset_update(old: Obj, new: Obj) -> list[FieldError]:
    a = {k: val for k, val in _spec(old).items() if k not in _STS_MUTABLE}
    b = {k: val for k, val in _spec(new).items() if k not in _STS_MUTABLE}
    if a != b:
        return [
            v.forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                "'minReadySeconds' are forbidden",
            )
        ]
    return []


def _strip_job_labels(template: Any) -> Any:
    return template


def _job_update(old: Obj, new: Obj) -> list[FieldError]:
    errs = _selector_immutable(old, new)
    errs += _immutable(
        "spec.completions", _spec(old).get("completions"), _spec(new).get("completions")
    )
    old_t = _spec(old).get("template")
    new_t = _spec(new).get("template")
    if old_t != new_t and not _spec(new).get("suspend"):
        errs.append(v.invalid("spec.template", new_t, "field is immutable"))
    return errs


def _immutable_data(old: Obj, new: Obj, fields: tuple[str, ...]) -> list[FieldError]:
    errs: list[FieldError] = []
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            errs.append(v.forbidden("immutable", "field is immutable when `immutable` is set"))
        for f in fields:
            if (old.get(f) or {}) != (new.get(f) or {}):
                errs.append(v.forbidden(f, "field is immutable when `immutable` is set"))
    return errs


def _secret_update(old: Obj, new: Obj) -> list[FieldError]:
    errs = _immutable("type", old.get("type"), new.get("type"))
    return errs + _immutable_data(old, new, ("data",))


def _binding_update(old: Obj, new: Obj) -> list[FieldError]:
    if old.get("roleRef") != new.get("roleRef"):
        return [v.invalid("roleRef", new.get("roleRef"), "cannot change roleRef")]
    return []


_QTY_SUFFIX = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "m": 10**-3,
}


def quantity(value: Any) -> float | None:
    """A resource quantity as a number (None when it does not parse)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    for suffix in sorted(_QTY_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * _QTY_SUFFIX[suffix]
            except ValueError:
                return None
    try:
        return float(text)
    except ValueError:
        return None


def _pvc_update(old: Obj, new: Obj) -> list[FieldError]:
    old_spec, new_spec = _spec(old), _spec(new)
    before = quantity(((old_spec.get("resources") or {}).get("requests") or {}).get("storage"))
    after = quantity(((new_spec.get("resources") or {}).get("requests") or {}).get("storage"))
    if before is not None and after is not None and after < before:
        return [
            v.forbidden(
                "spec.resources.requests.storage", "field can not be less than previous value"
            )
        ]
    keep = ("resources", "volumeAttributesClassName", "volumeName")
    a = {k: val for k, val in old_spec.items() if k not in keep}
    b = {k: val for k, val in new_spec.items() if k not in keep}
    if a != b:
        return [
            v.forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
            )
        ]
    return []


def _pod_update(old: Obj, new: Obj) -> list[FieldError]:
    def strip(spec: Obj) -> Obj:
        out = dict(spec)
        for f in (
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "schedulingGates",
            "nodeName",
        ):
            out.pop(f, None)
        out["containers"] = [
            dict(c, image=None) for c in out.get("containers") or [] if isinstance(c, dict)
        ]
        out["initContainers"] = [
            dict(c, image=None) for c in out.get("initContainers") or [] if isinstance(c, dict)
        ]
        return out

    if strip(_spec(old)) != strip(_spec(new)):
        return [
            v.forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,"
                "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                "(allow it to be set to 1 if it was previously negative)",
            )
        ]
    return []


UPDATE_RULES: dict[str, UpdateRule] = {
    "apps/deployments": _selector_immutable,
    "apps/replicasets": _selector_immutable,
    "apps/daemonsets": _selector_immutable,
    "apps/statefulsets": _statefulset_update,
    "batch/jobs": _job_update,
    "configmaps": lambda o, n: _immutable_data(o, n, ("data", "binaryData")),
    "secrets": _secret_update,
    "rbac.authorization.k8s.io/rolebindings": _binding_update,
    "rbac.authorization.k8s.io/clusterrolebindings": _binding_update,
    "persistentvolumeclaims": _pvc_update,
    "pods": _pod_update,
    "events": events.core_update,
    "events.k8s.io/events": events.events_update,
}


def validate_update(key: str, builtin: bool, old: Obj, new: Obj) -> list[FieldError]:
    rule = UPDATE_RULES.get(key) if builtin else None
    return rule(old, new) if rule is not None else []
