"""The `devloop` command line (`python -m pytest_devloop`).

Subcommands: `cluster up|down|status` manage the embedded cluster's background process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pytest_devloop import __version__

DEFAULT_CLUSTER_DIR = Path(".devloop") / "embedded"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devloop",
        description="pytest-devloop: test-driven iteration on Kubernetes infrastructure.",
    )
    parser.add_argument("--version", action="version", version=f"pytest-devloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cluster = sub.add_parser("cluster", help="manage the embedded cluster (up, down, status)")
    cluster_sub = cluster.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (
        (
            "up",
            "start the embedded cluster in the background (reuses a running one) and print its kubeconfig path",
        ),
        ("down", "stop the embedded cluster"),
        ("status", "print whether the embedded cluster runs, its URL, uptime and object counts"),
    ):
        p = cluster_sub.add_parser(action, help=text, description=text)
        p.add_argument(
            "--dir",
            type=Path,
            default=DEFAULT_CLUSTER_DIR,
            help=f"the cluster's folder: kubeconfig, state and log (default: {DEFAULT_CLUSTER_DIR})",
        )
        if action == "up":
            p.add_argument(
                "--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)"
            )
    return parser


def _cluster(action: str, directory: Path, port: int) -> int:
    from pytest_devloop.embedded import cluster

    if action == "up":
        try:
            state, started = cluster.up(directory, port=port)
        except RuntimeError as e:
            print(f"devloop: {e}", file=sys.stderr)
            return 1
        verb = "started" if started else "already running"
        print(f"devloop: embedded cluster {verb} at {state.url} (pid {state.pid})", file=sys.stderr)
        print(state.kubeconfig)
        return 0
    if action == "down":
        if cluster.down(directory):
            print(f"devloop: embedded cluster in {directory} stopped")
        else:
            print(f"devloop: no embedded cluster running in {directory}")
        return 0
    current = cluster.running(directory.resolve())
    if current is None:
        print(
            f"devloop: no embedded cluster running in {directory} (start one: devloop cluster up)"
        )
        return 3
    state = current
    info = cluster.query_status(state) or {}
    objects = info.get("objects") or {}
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(objects.items()))
    print(f"running: yes (pid {state.pid})")
    print(f"url: {state.url}")
    print(f"kubeconfig: {state.kubeconfig}")
    print(f"uid: {state.uid}")
    print(f"uptime: {time.time() - state.started:.0f} s")
    print(f"objects: {sum(objects.values())} ({counts})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "cluster":
        return _cluster(args.action, args.dir, getattr(args, "port", 0))
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
