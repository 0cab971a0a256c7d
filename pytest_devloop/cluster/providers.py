"""Which cluster a sync talks to, and the guard that keeps devloop off clusters that matter.

Owns the cluster providers (`embedded`, `current`, `kind:<name>`, `minikube:<profile>`,
`k3d:<name>`) and the safety check that runs before anything is written: a context that
does not look local (kind-*, minikube, k3d-*, docker-desktop, rancher-desktop, orbstack,
or an API server on a loopback address) is refused unless `allow_contexts` lists it.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOCAL_CONTEXT_PREFIXES = ("kind-", "k3d-")
LOCAL_CONTEXTS = ("minikube", "docker-desktop", "docker-for-desktop", "rancher-desktop", "orbstack")


class ClusterRefused(Exception):
    """devloop will not write to this cluster; the message says how to allow it."""


class ClusterUnavailable(Exception):
    """The configured cluster cannot be reached or found; the message says what to do."""


@dataclass(frozen=True)
class Target:
    """A resolved cluster: how to connect and what to call it in output."""

    provider: str
    context: str | None  # kubeconfig context (None: the file's current context)
    kubeconfig: str | None  # kubeconfig path (None: the default loading rules)
    server: str
    display: str

    def api_client(self) -> Any:
        from pytest_devloop.cluster.kube import client_from_kubeconfig

        return client_from_kubeconfig(self.kubeconfig, self.context)


def _is_loopback(server: str) -> bool:
    host = urlsplit(server).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def looks_local(context: str, server: str) -> bool:
    return (
        context.startswith(LOCAL_CONTEXT_PREFIXES)
        or context in LOCAL_CONTEXTS
        or _is_loopback(server)
    )


def check_allowed(target: Target, allow_contexts: list[str]) -> None:
    """Refuse a non-local context not listed in `allow_contexts` (before any write)."""
    if target.provider != "current":
        return
    name = target.context or ""
    if looks_local(name, target.server) or name in allow_contexts:
        return
    raise ClusterRefused(
        f"refusing kubeconfig context {name!r} (API server {target.server}): it does not "
        f"look like a local development cluster (kind-*, minikube, k3d-*, docker-desktop, "
        f"rancher-desktop, orbstack, or an API server on a loopback address), and devloop "
        f"creates, updates and deletes objects. If it is a cluster you may change, allow it in "
        f"devloop.yaml:\n  cluster:\n    allow_contexts: [{name}]"
    )


def _contexts(
    kubeconfig: str | None,
) -> tuple[dict[str, dict[str, Any]], str | None, dict[str, str]]:
    """(context name -> context, current context, cluster name -> server) of a kubeconfig."""
    from kubernetes.config import kube_config

    try:
        contexts, current = kube_config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception as e:  # the client raises ConfigException and file errors alike
        raise ClusterUnavailable(
            f"cannot read kubeconfig {kubeconfig or '~/.kube/config'}: {e}"
        ) from e
    import yaml

    servers: dict[str, str] = {}
    paths = [kubeconfig] if kubeconfig else kube_config.KUBE_CONFIG_DEFAULT_LOCATION.split(":")
    for p in paths:
        try:
            doc = yaml.safe_load(Path(p).expanduser().read_text()) or {}
        except OSError:
            continue
        for c in doc.get("clusters") or []:
            servers.setdefault(c.get("name"), (c.get("cluster") or {}).get("server", ""))
    by_name = {c["name"]: c for c in contexts}
    return by_name, (current or {}).get("name"), servers


def _kube_target(
    provider: str, context: str | None, kubeconfig: str | None, display: str | None = None
) -> Target:
    contexts, current, servers = _contexts(kubeconfig)
    name = context or current
    if not name or name not in contexts:
        known = ", ".join(sorted(contexts)) or "none"
        raise ClusterUnavailable(f"kubeconfig context {name!r} not found (contexts: {known})")
    cluster = (contexts[name].get("context") or {}).get("cluster", "")
    return Target(provider, name, kubeconfig, servers.get(cluster, ""), display or name)


_TOOL_CONTEXT = {"kind": "kind-{}", "minikube": "{}", "k3d": "k3d-{}"}
_TOOL_CREATE = {
    "kind": ["kind", "create", "cluster", "--name", "{}"],
    "minikube": ["minikube", "start", "-p", "{}"],
    "k3d": ["k3d", "cluster", "create", "{}"],
}


def resolve(
    provider: str,
    *,
    root: Path,
    context: str | None = None,
    kubeconfig: str | None = None,
    create: bool = False,
) -> Target:
    """The Target for a provider string of the config or the command line."""
    if provider == "embedded":
        from pytest_devloop.embedded import cluster as embedded

        state, _started = embedded.up(root / ".devloop" / "embedded")
        return Target("embedded", None, state.kubeconfig, state.url, "embedded")
    if provider == "current":
        return _kube_target("current", context, kubeconfig)
    tool, _, name = provider.partition(":")
    if tool not in _TOOL_CONTEXT or not name:
        raise ClusterUnavailable(
            f"unknown cluster provider {provider!r}: use embedded, current, kind:<name>, "
            f"minikube:<profile> or k3d:<name>"
        )
    ctx = _TOOL_CONTEXT[tool].format(name)
    contexts, _, _ = _contexts(kubeconfig)
    if ctx not in contexts:
        command = [part.format(name) for part in _TOOL_CREATE[tool]]
        if not create:
            raise ClusterUnavailable(
                f"{tool} cluster {name!r} not found (no kubeconfig context {ctx!r}); create it "
                f"with `{' '.join(command)}`, or let devloop do it with --devloop-create-cluster"
            )
        if shutil.which(tool) is None:
            raise ClusterUnavailable(
                f"{tool} is not installed; it is needed to create cluster {name!r}"
            )
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ClusterUnavailable(f"`{' '.join(command)}` failed:\n{proc.stderr[-2000:]}")
    return _kube_target(provider, ctx, kubeconfig, display=ctx)
