"""The `devloop` command line (`python -m pytest_devloop`).

Subcommands: `cluster up|down|status` manage the embedded cluster's background process;
`sync` and `status` sync or compare; `gc` deletes this project's stale CI namespaces.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_devloop import __version__

if TYPE_CHECKING:
    from pytest_devloop.cluster.session import Options
    from pytest_devloop.config.model import Config

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
    for name, text in (
        (
            "sync",
            "render and apply what changed since the last sync (the same lines pytest prints)",
        ),
        ("status", "print what devloop deployed to the cluster and whether it drifted"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        _add_sync_options(p, plan=name == "sync")
    text = (
        "delete this project's CI namespaces (left by killed --devloop-ci runs) older than "
        "ci.stale_after (default 1 h)"
    )
    p = sub.add_parser("gc", help=text, description=text)
    p.add_argument("--rootdir", type=Path, default=Path(), help="project folder (default: .)")
    p.add_argument("--config", type=Path, default=None, help="config file (default: devloop.yaml)")
    p.add_argument(
        "--cluster",
        default=None,
        help="provider: embedded, current, kind:<name>, minikube:<profile>, k3d:<name>",
    )
    p.add_argument("--context", default=None, help="kubeconfig context (provider current)")
    p.add_argument(
        "--older-than",
        type=float,
        default=None,
        metavar="SECONDS",
        help="age in seconds (default: ci.stale_after of devloop.yaml)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted, delete nothing"
    )
    return parser


def _add_sync_options(p: argparse.ArgumentParser, *, plan: bool) -> None:
    p.add_argument("--rootdir", type=Path, default=Path(), help="project folder (default: .)")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: devloop.yaml, else skaffold.yaml)",
    )
    p.add_argument(
        "--cluster",
        default=None,
        help="provider: embedded, current, kind:<name>, minikube:<profile>, k3d:<name>",
    )
    p.add_argument("--context", default=None, help="kubeconfig context (provider current)")
    if plan:
        # status is read-only: it compares with what the last sync applied (its profile
        # included) and creates no cluster.
        p.add_argument("--profile", default=None, help="skaffold.yaml profile(s) to apply")
        p.add_argument(
            "--create-cluster",
            action="store_true",
            help="create the kind/minikube/k3d cluster when missing",
        )
        p.add_argument("--plan", action="store_true", help="print the plan, apply nothing")
        p.add_argument(
            "--force-conflicts",
            action="store_true",
            help="take over fields another field manager owns",
        )
        p.add_argument(
            "--adopt",
            action="store_true",
            help="take over objects owned by another devloop project, Helm or a person",
        )
        p.add_argument(
            "--prune",
            action="append",
            default=[],
            help="also prune these kinds: pvcs, crds, namespaces",
        )
        p.add_argument(
            "--ci",
            action="store_true",
            help="clean mode: ignore and keep no state, apply everything",
        )


def _sync(args: argparse.Namespace, *, status_only: bool) -> int:
    from pytest_devloop.cluster.providers import ClusterRefused, ClusterUnavailable
    from pytest_devloop.cluster.session import Options, load, parse_prune, target_for
    from pytest_devloop.config.model import ConfigError

    try:
        options = Options(
            rootdir=args.rootdir.resolve(),
            config=args.config,
            profile=getattr(args, "profile", None),
            cluster=args.cluster,
            context=args.context,
            create_cluster=getattr(args, "create_cluster", False),
            force_conflicts=getattr(args, "force_conflicts", False),
            adopt=getattr(args, "adopt", False),
            prune=parse_prune(getattr(args, "prune", []), "--prune"),
            mode="ci" if getattr(args, "ci", False) else "dev",
            build=getattr(args, "build", False),
        )
        config = load(options)
        if config is None:
            print(
                f"devloop: no devloop.yaml or skaffold.yaml in {options.rootdir} "
                "(write a devloop.yaml; see docs/configuration.md)",
                file=sys.stderr,
            )
            return 2
        for warning in config.warnings:
            print(f"devloop: warning: {warning}", file=sys.stderr)
        if status_only and _no_embedded_cluster(config, options):
            return 0
        target = target_for(config, options)
    except (ConfigError, ClusterRefused, ClusterUnavailable) as e:
        print(f"devloop: {e}", file=sys.stderr)
        return 2
    from pytest_devloop.sync.syncer import Syncer

    syncer = Syncer.from_options(config, target, options)
    from pytest_devloop.run.progress import Progress

    def write(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    progress = Progress(write, tty=sys.stderr.isatty() and os.environ.get("TERM") != "dumb")
    syncer.progress, syncer.progress_done = progress, progress.done
    from pytest_devloop.sync.state import StateLocked

    try:
        if status_only:
            rc = syncer.status()
            _prometheus_warnings(config, target)
            return rc
        result = syncer.sync(plan_only=getattr(args, "plan", False))
    except (ClusterRefused, ClusterUnavailable, StateLocked) as e:
        print(f"devloop: {e}", file=sys.stderr)
        return 2
    return 0 if result.ok else 1


def _prometheus_warnings(config: Config, target: Any) -> None:
    """What the embedded Prometheus ignored on this cluster (said once, by the run that met it)."""
    from pytest_devloop.cluster.kube import Kube, KubeError
    from pytest_devloop.prometheus import warned

    try:
        uid = Kube(target.api_client()).cluster_uid()
    except KubeError:
        return
    for line in warned.load(warned.path_for(config.root, target.server, uid)):
        print(f"devloop: embedded Prometheus: {line}")


def _no_embedded_cluster(config: Config, options: Options) -> bool:
    """True (and said) when the project's embedded cluster does not run: `status` reads,
    it never starts one (its objects would all be missing, which is no news)."""
    if (options.cluster or config.cluster.provider) != "embedded" or options.context:
        return False
    from pytest_devloop.embedded import cluster

    folder = config.root / ".devloop" / "embedded"
    if cluster.running(folder.resolve()) is not None:
        return False
    print(
        f"devloop: no embedded cluster running in {folder}: nothing deployed "
        "(devloop sync or pytest starts one)"
    )
    return True


def _gc(args: argparse.Namespace) -> int:
    from pytest_devloop.cluster.kube import Kube, KubeError
    from pytest_devloop.cluster.providers import ClusterRefused, ClusterUnavailable
    from pytest_devloop.cluster.session import Options, load, target_for
    from pytest_devloop.config.model import ConfigError
    from pytest_devloop.run import teardown

    try:
        options = Options(
            rootdir=args.rootdir.resolve(),
            config=args.config,
            cluster=args.cluster,
            context=args.context,
        )
        config = load(options)
        if config is None:
            print(
                f"devloop: no devloop.yaml or skaffold.yaml in {options.rootdir}", file=sys.stderr
            )
            return 2
        if (options.cluster or config.cluster.provider) == "embedded" and not options.context:
            from pytest_devloop.embedded import cluster

            # Its objects live in memory: a cluster that does not run holds nothing to
            # collect, and gc must not start one.
            folder = config.root / ".devloop" / "embedded"
            if cluster.running(folder.resolve()) is None:
                print(f"devloop: gc: no embedded cluster running in {folder}; nothing to collect")
                return 0
        target = target_for(config, options)
    except (ConfigError, ClusterRefused, ClusterUnavailable) as e:
        print(f"devloop: {e}", file=sys.stderr)
        return 2
    older = args.older_than if args.older_than is not None else config.ci.stale_after
    kube = Kube(target.api_client())
    project = teardown.project_identity(config)
    try:
        found = teardown.collect(kube, project, older, dry_run=args.dry_run)
        # After the namespaces: what their runs created outside them goes with them.
        left = teardown.collect_leftovers(
            kube, project, dry_run=args.dry_run, gone=[s.name for s in found]
        )
    except KubeError as e:
        print(f"devloop: gc: {e}", file=sys.stderr)
        return 1
    if not found and not left:
        print(f"devloop: gc: no CI namespace of this project is older than {older:.0f} s")
    return 0


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
        try:
            result = cluster.down(directory)
        except TimeoutError as e:
            print(f"devloop: embedded cluster in {directory}: {e}", file=sys.stderr)
            return 1
        if result.outcome == "stopped":
            print(f"devloop: embedded cluster in {directory} stopped")
        elif result.outcome == "stale":
            print(
                f"devloop: the record {directory / cluster.STATE_FILE} was stale ({result.reason}); "
                "removed it and signalled nothing"
            )
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
    if args.command == "gc":
        return _gc(args)
    if args.command in ("sync", "status"):
        return _sync(args, status_only=args.command == "status")
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
