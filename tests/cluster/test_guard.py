"""The guard: every provider is checked before any connection, from the merged kubeconfig.

The in-process tests run in the fast tier, whose guard makes any `socket.connect` fail the
test: a refusal there is proof that nothing connected before the guard decided. The
end-to-end tests run pytest on a project with a loopback listener as the context's proxy
and count the connections it receives. Every server is on loopback or in `.invalid`.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_devloop.cluster.providers import (
    ClusterRefused,
    ClusterUnavailable,
    check_allowed,
    resolve,
)

PROD = "https://gke-prod.invalid:443"


def kubeconfig(
    path: Path,
    contexts: dict[str, str],
    *,
    current: str | None = None,
    proxy: dict[str, str] | None = None,
    clusters: bool = True,
) -> Path:
    """A kubeconfig with one cluster per context (`name -> server`), token users."""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "contexts": [
            {"name": name, "context": {"cluster": f"c-{name}", "user": f"u-{name}"}}
            for name in contexts
        ],
        "users": [{"name": f"u-{name}", "user": {"token": "t"}} for name in contexts],
    }
    if clusters:
        doc["clusters"] = [
            {
                "name": f"c-{name}",
                "cluster": {
                    "server": server,
                    **({"proxy-url": proxy[name]} if proxy and name in proxy else {}),
                },
            }
            for name, server in contexts.items()
        ]
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def guard(provider: str, config: Path | str, allow: list[str] | None = None, **kw: Any) -> Any:
    target = resolve(provider, root=Path(), kubeconfig=str(config), **kw)
    check_allowed(target, allow or [])
    return target


@pytest.fixture(autouse=True)
def _no_minikube_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "minikube-home"
    monkeypatch.setenv("MINIKUBE_HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return home


# -- named providers --------------------------------------------------------------


def test_minikube_provider_refuses_a_production_looking_context(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "kc", {"gke_prod_europe-west1_main": PROD})
    with pytest.raises(ClusterRefused) as refused:
        guard("minikube:gke_prod_europe-west1_main", config)
    message = str(refused.value)
    assert message.startswith(
        f"refusing kubeconfig context 'gke_prod_europe-west1_main' (API server {PROD}): "
        "it is not the minikube cluster 'gke_prod_europe-west1_main'"
    )
    assert "allow_contexts: [gke_prod_europe-west1_main]" in message
    # Listed in allow_contexts, it passes (the user said so).
    target = guard(
        "minikube:gke_prod_europe-west1_main", config, allow=["gke_prod_europe-west1_main"]
    )
    assert target.server == PROD


def test_minikube_provider_accepts_an_existing_profile_or_a_local_server(
    tmp_path: Path, _no_minikube_home: Path
) -> None:
    config = kubeconfig(
        tmp_path / "kc", {"dev": "https://minikube-vm.invalid:8443", "local": "https://127.0.0.1:1"}
    )
    with pytest.raises(ClusterRefused, match="no minikube profile 'dev'"):
        guard("minikube:dev", config)
    profile = _no_minikube_home / ".minikube" / "profiles" / "dev" / "config.json"
    profile.parent.mkdir(parents=True)
    profile.write_text("{}")
    assert guard("minikube:dev", config).context == "dev"
    assert guard("minikube:local", config).context == "local"


@pytest.mark.parametrize("flavor", ["kind", "k3d"])
def test_kind_and_k3d_need_their_context_on_this_machine(tmp_path: Path, flavor: str) -> None:
    config = kubeconfig(
        tmp_path / "kc",
        {
            f"{flavor}-dev": "https://127.0.0.1:6443",
            f"{flavor}-all": "https://0.0.0.0:6443",
            f"{flavor}-prod": PROD,
        },
    )
    assert guard(f"{flavor}:dev", config).context == f"{flavor}-dev"
    assert guard(f"{flavor}:all", config).context == f"{flavor}-all"
    with pytest.raises(ClusterRefused) as refused:
        guard(f"{flavor}:prod", config)
    assert f"it is not the {flavor} cluster 'prod'" in str(refused.value)
    assert f"allow_contexts: [{flavor}-prod]" in str(refused.value)


def test_a_missing_kind_cluster_is_one_line_with_the_fix(tmp_path: Path) -> None:
    # No kubeconfig file at all (a fresh machine): not an error about ~/.kube/config.
    with pytest.raises(ClusterUnavailable) as missing:
        guard("kind:nope", tmp_path / "absent")
    message = str(missing.value)
    assert "\n" not in message
    assert message.startswith("no kind cluster 'nope' exists (no kubeconfig context 'kind-nope')")
    assert "`kind create cluster --name nope`" in message
    assert "--devloop-create-cluster" in message


# -- proxy-url and merged kubeconfigs -----------------------------------------------------


def test_a_context_behind_a_proxy_is_remote(tmp_path: Path) -> None:
    config = kubeconfig(
        tmp_path / "kc",
        {"kind-dev": "https://127.0.0.1:6443"},
        current="kind-dev",
        proxy={"kind-dev": "http://127.0.0.1:3128"},
    )
    for provider in ("current", "kind:dev"):
        with pytest.raises(ClusterRefused) as refused:
            guard(provider, config)
        assert "through the proxy http://127.0.0.1:3128 (proxy-url)" in str(refused.value)
    assert guard("kind:dev", config, allow=["kind-dev"]).proxy_url == "http://127.0.0.1:3128"


def test_several_kubeconfig_files_merge_as_kubectl_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The contexts in one file, their clusters in another: the server comes from the merge.
    first = kubeconfig(tmp_path / "a", {"prod-eks": PROD}, current="prod-eks", clusters=False)
    second = kubeconfig(tmp_path / "b", {"prod-eks": PROD, "kind-dev": "https://127.0.0.1:1"})
    doc = yaml.safe_load(second.read_text())
    doc["current-context"] = "kind-dev"  # kubectl: the first file that sets it wins
    second.write_text(yaml.safe_dump(doc))
    paths = os.pathsep.join([str(first), str(tmp_path / "missing"), str(second)])

    target = resolve("current", root=tmp_path, kubeconfig=paths)
    assert (target.context, target.server) == ("prod-eks", PROD)
    with pytest.raises(ClusterRefused, match=r"API server https://gke-prod\.invalid:443"):
        check_allowed(target, [])
    # Read from $KUBECONFIG when it was set after the client was imported.
    monkeypatch.setenv("KUBECONFIG", paths)
    assert resolve("current", root=tmp_path).server == PROD
    assert resolve("kind:dev", root=tmp_path).server == "https://127.0.0.1:1"


# -- end to end: pytest with the plugin, a listener counting connections -------------------


class Listener:
    """A loopback TCP listener that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self._stop:
                conn.close()
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        socket.create_connection(("127.0.0.1", self.port)).close()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    counting = Listener()
    yield counting
    counting.close()


def _project(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        devloop="namespace: guarded\nmanifests:\n  - name: app\n    path: manifests\n",
    )
    (pytester.path / "manifests").mkdir()
    (pytester.path / "manifests" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: '1'\n"
    )
    pytester.makepyfile(
        test_app="""
        def test_one(cluster):
            assert cluster.get("ConfigMap", "app")

        def test_two(cluster):
            assert cluster.get("ConfigMap", "app")
        """
    )


@pytest.mark.parametrize(
    "provider, context",
    [("minikube:gke_prod_main", "gke_prod_main"), ("current", "kind-dev")],
)
def test_refused_runs_make_no_connection(
    pytester: pytest.Pytester,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    context: str,
) -> None:
    _project(pytester)
    proxy = f"http://127.0.0.1:{listener.port}"
    # The minikube context is production-looking (and proxied); the kind-looking one
    # goes through a proxy. A missing guard would connect to the listener.
    config = kubeconfig(
        pytester.path / "kubeconfig",
        {context: PROD},
        current=context,
        proxy={context: proxy},
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    result = pytester.runpytest_subprocess(f"--devloop-cluster={provider}", "-p", "no:xdist")
    result.stdout.fnmatch_lines([f"devloop: refusing kubeconfig context '{context}'*"])
    result.assert_outcomes(errors=2)
    assert listener.accepted == 0


def test_missing_kind_cluster_says_so_in_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(pytester)
    monkeypatch.setenv("HOME", str(pytester.path / "home"))
    result = pytester.runpytest_subprocess("--devloop-cluster=kind:nope", "-p", "no:xdist")
    result.stdout.fnmatch_lines(
        ["devloop: no kind cluster 'nope' exists (no kubeconfig context 'kind-nope'); create*"]
    )
    assert ".kube/config" not in result.stdout.str()
    assert "--devloop-create-cluster" in result.stdout.str()
