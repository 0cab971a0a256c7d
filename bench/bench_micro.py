"""Micro-benchmarks that used to be timed assertions in tests: each prints a figure and its target.

Run: `python bench/bench_micro.py`

- loading a full `devloop.yaml` (target ≤ 20 ms, best of 5 after a warm-up);
- recording a `cluster.get` plus two field reads, HTTP left out (target ≤ 0.2 ms);
- decoding a protobuf body of a Helm release Secret (target ≤ 0.5 ms).

Prints a table; asserts nothing.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def best_per_call(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):  # best of rounds: the figure is for the code, not the scheduler
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def config_load() -> float:
    from pytest_devloop.config.load import load_config

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        for src in (ROOT / "example_project").rglob("*"):
            rel = src.relative_to(ROOT / "example_project")
            if ".devloop" in rel.parts or src.is_dir():
                continue
            dst = project / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
        load_config(project)  # the first call pays for pydantic's lazy schema work
        return best_per_call(lambda: load_config(project), 1)


def recording_per_get() -> float:
    """Recording cost of `cluster.get` + two field reads: an embedded cluster answers the
    first GET, then the adapter answers from memory so that only recording is timed."""
    from kubernetes import client

    from pytest_devloop.cluster.kube import Kube, client_from_kubeconfig
    from pytest_devloop.embedded.cluster import EmbeddedCluster
    from pytest_devloop.run.view import Cluster
    from pytest_devloop.selection.records import Recorder

    with tempfile.TemporaryDirectory() as tmp:
        embedded = EmbeddedCluster(directory=Path(tmp)).start()
        api = client_from_kubeconfig(str(embedded.kubeconfig))
        try:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench"}})
            client.CoreV1Api(api).create_namespaced_config_map(
                "bench", {"metadata": {"name": "web", "labels": {"app": "web"}}, "data": {"k": "v"}}
            )
            kube = Kube(api)
            res = kube.resource("v1", "ConfigMap")
            answer = kube.get(res, "bench", "web")

            class NoHttp:
                api_client = kube.api_client

                def get(self, res: Any, namespace: str | None, name: str) -> Any:
                    return answer

                def __getattr__(self, name: str) -> Any:
                    return getattr(kube, name)

            recorder = Recorder()
            recorder.start("bench::t")
            cluster = Cluster(NoHttp(), recorder, namespace="bench")  # type: ignore[arg-type]

            def get_and_read() -> None:
                view = cluster.get("ConfigMap", "web")
                assert view is not None
                view.data["k"]
                view.metadata.labels["app"]

            get_and_read()
            return best_per_call(get_and_read, 5000, rounds=3)
        finally:
            api.close()
            embedded.stop()


def protobuf_decode() -> float:
    from pytest_devloop.embedded.protobuf import decode_request

    body = (ROOT / "tests/embedded/data/protobuf/helm4-install-secret-create.bin").read_bytes()
    decode_request(body)
    return best_per_call(lambda: decode_request(body), 100)


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    for label, fn, target in (
        ("load devloop.yaml (example project)", config_load, 20e-3),
        ("cluster.get + 2 field reads, no HTTP", recording_per_get, 0.2e-3),
        ("protobuf decode, Helm release Secret", protobuf_decode, 0.5e-3),
    ):
        try:
            value = fn()
            rows.append((label, f"{value * 1e3:.4f} ms", f"≤ {target * 1e3:g} ms"))
        except Exception as e:
            rows.append((label, f"failed: {e}", f"≤ {target * 1e3:g} ms"))
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print(f"| {'measure':<40} | {'best':>14} | {'target':>10} |")
    print(f"| {'-' * 40} | {'-' * 14}:| {'-' * 10}:|")
    for label, value, target in rows:
        print(f"| {label:<40} | {value:>14} | {target:>10} |")


if __name__ == "__main__":
    main()
