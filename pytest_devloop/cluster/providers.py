"""Which cluster a sync talks to, and the guard that keeps devloop off clusters that matter.

Owns the cluster providers (`embedded`, `current`, `kind:<name>`, `minikube:<profile>`,
`k3d:<name>`) and the safety check that runs before anything is written or any
connection is made: a context that does not look local is refused unless
`allow_contexts` lists it. For `current`, local means a local-looking name (kind-*,
minikube, k3d-*, docker-desktop, rancher-desktop, orbstack) or an API server on a loopback
address; a named provider checks that the context really is one of its kind (kind and
k3d: `kind-<name>`/`k3d-<name>` with an API server on this machine; minikube: a profile
that exists or an API server on this machine or minikube's own networks). A context
reached through a `proxy-url` is never local. The decision reads only the merged
kubeconfig files.
"""

from __future__ import annotations

import ipaddress
import os
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
    kubeconfig: str | None  # kubeconfig path list (None: $KUBECONFIG or ~/.kube/config)
    server: str
    display: str
    proxy_url: str = ""  # the context's cluster `proxy-url`, if any

    def api_client(self) -> Any:
        from pytest_devloop.cluster.kube import client_from_kubeconfig

        return client_from_kubeconfig(self.kubeconfig, self.context)


def _host(server: str) -> str:
    try:
        return (urlsplit(server).hostname or "").lower()
    except ValueError:
        return ""


def _is_loopback(server: str) -> bool:
    host = _host(server)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Names a container runtime on this machine gives its published ports (Docker Desktop,
# k3d's in-cluster view of the host).
_THIS_MACHINE_NAMES = ("host.docker.internal", "kubernetes.docker.internal", "host.k3d.internal")


def _on_this_machine(server: str) -> bool:
    """An API server address that only reaches this machine (loopback or unspecified)."""
    host = _host(server)
    if _is_loopback(server) or host in _THIS_MACHINE_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def minikube_profile_exists(profile: str) -> bool:
    """Whether minikube has a profile of this name on this machine (its config file)."""
    home = os.environ.get("MINIKUBE_HOME")
    base = Path(home).expanduser() if home else Path.home()
    if base.name != ".minikube":
        base = base / ".minikube"
    return (base / "profiles" / profile / "config.json").is_file()


def looks_local(context: str, server: str) -> bool:
    return (
        context.startswith(LOCAL_CONTEXT_PREFIXES)
        or context in LOCAL_CONTEXTS
        or _is_loopback(server)
    )


_LOCAL_LOOK = (
    "it does not look like a local development cluster (kind-*, minikube, k3d-*, "
    "docker-desktop, rancher-desktop, orbstack, or an API server on a loopback address)"
)


def refusal_reason(target: Target) -> str | None:
    """Why the guard refuses `target` (None: it is local). Reads no network, only names."""
    if target.provider == "embedded":
        return None
    name = target.context or ""
    reason = _not_of_its_kind(target, name)
    if reason is None and target.proxy_url:
        return (
            f"it is reached through the proxy {target.proxy_url} (proxy-url), so it is not a "
            "cluster on this machine"
        )
    return reason


def _not_of_its_kind(target: Target, name: str) -> str | None:
    tool, _, cluster = target.provider.partition(":")
    if tool in {"kind", "k3d"}:
        if name == f"{tool}-{cluster}" and _on_this_machine(target.server):
            return None
        return (
            f"it is not the {tool} cluster {cluster!r} (that is context {tool}-{cluster} with "
            "an API server on this machine)"
        )
    if tool == "minikube":
        if name == cluster and (
            # Its VM's address says nothing about whose it is: the profile on this
            # machine does (every minikube cluster has one).
            minikube_profile_exists(cluster) or _on_this_machine(target.server)
        ):
            return None
        return (
            f"it is not the minikube cluster {cluster!r} (no minikube profile {cluster!r} on "
            "this machine, and the API server is not on this machine)"
        )
    return None if looks_local(name, target.server) else _LOCAL_LOOK


def check_allowed(target: Target, allow_contexts: list[str]) -> None:
    """Refuse a non-local context not listed in `allow_contexts` (before any connection)."""
    name = target.context or ""
    if name in allow_contexts:
        return
    reason = refusal_reason(target)
    if reason is None:
        return
    raise ClusterRefused(
        f"refusing kubeconfig context {name!r} (API server {target.server or 'not set'}): "
        f"{reason}, and devloop creates, updates and deletes objects. If it is a cluster you "
        f"may change, allow it in devloop.yaml:\n  cluster:\n    allow_contexts: [{name}]"
    )


def _kubeconfig(kubeconfig: str | None) -> Any:
    """The merged kubeconfig; an unreadable file is a one-line error naming it."""
    from pytest_devloop.cluster.kube import kubeconfig_location, read_kubeconfig

    try:
        return read_kubeconfig(kubeconfig)
    except Exception as e:  # the client raises ConfigException, YAML and file errors alike
        raise ClusterUnavailable(
            f"cannot read kubeconfig {kubeconfig_location(kubeconfig)}: {e} (fix the file, or "
            "point KUBECONFIG at another one)"
        ) from e


def _kube_target(
    provider: str, context: str | None, kubeconfig: str | None, display: str | None = None
) -> Target:
    merged = _kubeconfig(kubeconfig)
    name = context or merged.current_context
    if not name or name not in merged.contexts:
        known = ", ".join(sorted(merged.contexts)) or "none"
        where = ", ".join(merged.files) or f"{merged.location} (no such file)"
        if not name:
            raise ClusterUnavailable(
                f"no current kubeconfig context in {where} (contexts: {known}); choose one with "
                "--devloop-context or `cluster: context:` in devloop.yaml"
            )
        raise ClusterUnavailable(
            f"kubeconfig context {name!r} not found in {where} (contexts: {known})"
        )
    cluster = merged.cluster(name)
    return Target(
        provider,
        name,
        kubeconfig,
        str(cluster.get("server") or ""),
        display or name,
        proxy_url=str(cluster.get("proxy-url") or ""),
    )


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
    """The Target for a provider string of the config or the command line (no connection)."""
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
    if ctx not in _kubeconfig(kubeconfig).contexts:
        command = [part.format(name) for part in _TOOL_CREATE[tool]]
        if not create:
            raise ClusterUnavailable(
                f"no {tool} cluster {name!r} exists (no kubeconfig context {ctx!r}); create it "
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
