"""``python -m cluster up | down | status | kubeconfig`` (``scripts/cluster.sh``; as root)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from cluster import lifecycle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cluster",
        description="A single-node Kubernetes cluster built on this machine (docs/kubernetes.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="compile the components (cached by version)")
    commands.add_parser("up", help="build if needed, start, and print the kubeconfig's path")
    commands.add_parser("down", help="stop everything and remove the cluster's state")
    commands.add_parser("status", help="which components run; the node and system Pods")
    commands.add_parser("kubeconfig", help="print the admin kubeconfig's path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="cluster: %(message)s", stream=sys.stderr)
    if args.command in {"build", "up", "down"} and os.geteuid() != 0:
        parser.error(f"{args.command} needs root (containers, iptables, a bridge)")
    started = time.monotonic()
    try:
        if args.command == "build":
            lifecycle.build()
        elif args.command == "up":
            print(lifecycle.up())
        elif args.command == "down":
            lifecycle.down()
        elif args.command == "status":
            return lifecycle.status()
        else:
            print(lifecycle.admin_kubeconfig())
    except lifecycle.ClusterError as error:
        print(f"cluster: {args.command} failed: {error}", file=sys.stderr)
        return 1
    logging.info("%s took %.1f s", args.command, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
