"""Hostile request bodies against the embedded API server (issue 12, item 8).

Run: `python bench/bench_hostile_bodies.py [--rounds 5]`

An embedded cluster in this process gets, on one connection after another, a YAML alias
bomb (a few hundred bytes that expand to tens of MB), a JSON body nested 1.5 million
levels, YAML flow nesting of 1 million levels and a self-referencing alias. Meanwhile a
second thread keeps reading a namespace with the `kubernetes` client. Printed: each hostile
body's size, answer and server time, and the latency of the concurrent reads during the
attack against the same reads with no attack (p50 / p99 / max). Expected: every hostile
body 4xx in milliseconds, the reads' p99 within a few milliseconds of the quiet case, and
the process's peak RSS growing by far less than the 69 MB the bomb used to store.
"""

from __future__ import annotations

import argparse
import http.client
import resource
import ssl
import statistics
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from pytest_devloop.embedded.cluster import EmbeddedCluster


def bomb(levels: int = 9, width: int = 9) -> bytes:
    lines = ['    a0: &a0 ["lol-lol-lol-lol"]']
    for i in range(1, levels):
        lines.append(f"    a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nx:\n" + "\n".join(lines)
    ).encode()


HOSTILE: list[tuple[str, bytes, str]] = [
    ("YAML alias bomb (9^8 leaves)", bomb(), "application/yaml"),
    ("JSON nested 1.5M levels", b"[" * 1_500_000 + b"]" * 1_500_000, "application/json"),
    (
        "YAML flow nested 1M levels",
        b"a: " + b"[" * 1_000_000 + b"]" * 1_000_000,
        "application/yaml",
    ),
    ("YAML alias cycle", b"apiVersion: v1\nkind: ConfigMap\nx: &s [*s]\n", "application/yaml"),
]


def post(cluster: EmbeddedCluster, body: bytes, ctype: str) -> tuple[int, float]:
    split = urlsplit(cluster.url)
    assert split.hostname and split.port and cluster.ca_file
    conn = http.client.HTTPSConnection(
        split.hostname,
        split.port,
        context=ssl.create_default_context(cafile=str(cluster.ca_file)),
        timeout=120,
    )
    t0 = time.perf_counter()
    conn.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        body=body,
        headers={"Authorization": f"Bearer {cluster.token}", "Content-Type": ctype},
    )
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    return resp.status, elapsed


def reads(api: Any, stop: threading.Event) -> list[float]:
    from kubernetes import client

    core = client.CoreV1Api(api)
    out: list[float] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        core.read_namespace("default")
        out.append(time.perf_counter() - t0)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from kubernetes import config

    with EmbeddedCluster() as cluster:
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        stop = threading.Event()
        quiet: list[float] = []
        t = threading.Thread(target=lambda: quiet.extend(reads(api, stop)))
        t.start()
        time.sleep(2.0)
        stop.set()
        t.join()

        stop = threading.Event()
        loaded: list[float] = []
        t = threading.Thread(target=lambda: loaded.extend(reads(api, stop)))
        t.start()
        rows: list[tuple[str, int, int, float]] = []
        for _ in range(args.rounds):
            for name, body, ctype in HOSTILE:
                status, elapsed = post(cluster, body, ctype)
                rows.append((name, len(body), status, elapsed))
        stop.set()
        t.join()
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        from kubernetes import client

        items = client.CoreV1Api(api).list_namespaced_config_map("default").items
        stored = sum(1 for cm in items if cm.metadata.name == "bomb")

    print(f"{'hostile body':32} {'bytes':>9} {'status':>6} {'median ms':>10} {'max ms':>8}")
    for name, size, _, _ in rows[: len(HOSTILE)]:
        mine = [r for r in rows if r[0] == name]
        statuses = sorted({r[2] for r in mine})
        times = [r[3] * 1000 for r in mine]
        print(
            f"{name:32} {size:>9} {','.join(map(str, statuses)):>6} "
            f"{statistics.median(times):>10.1f} {max(times):>8.1f}"
        )
    print()
    print(f"{'concurrent GET namespace':32} {'n':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, values in (("quiet", quiet), ("during the attack", loaded)):
        ms = [v * 1000 for v in values]
        print(f"{label:32} {len(ms):>9} {pct(ms, 0.5):>8.2f} {pct(ms, 0.99):>8.2f} {max(ms):>8.2f}")
    print()
    print(
        f"peak RSS growth during the attack: {(rss1 - rss0) / 1024:.1f} MB; bombs stored: {stored}"
    )


if __name__ == "__main__":
    main()
