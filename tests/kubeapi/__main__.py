"""Command line: run the fake API server as its own process (``python -m tests.kubeapi``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from .kubeconfig import write_kubeconfig
from .server import KubeAPIServer


async def _serve(args: argparse.Namespace) -> None:
    server = KubeAPIServer(
        [Path(d) for d in args.crds],
        host=args.host,
        port=args.port,
        history_size=args.history,
        bookmark_period=args.bookmark_period,
        orphan_pod_gc_after=args.orphan_pod_gc_after,
    )
    await server.start_async()
    if args.kubeconfig_out:
        write_kubeconfig(args.kubeconfig_out, server.url)
    print(f"fake kube-apiserver listening on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop_async()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.kubeapi", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--crds", action="append", default=[], help="directory of CRD YAML files (repeatable)"
    )
    parser.add_argument("--kubeconfig-out", help="write a kubeconfig for this server here")
    parser.add_argument("--history", type=int, default=1000, help="watch events retained for resuming")
    parser.add_argument("--bookmark-period", type=float, default=2.0)
    parser.add_argument(
        "--orphan-pod-gc-after",
        type=float,
        default=None,
        help="delete pods bound to a missing Node after this many seconds (real PodGC: 40); default off",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if not args.crds:
        args.crds = ["crds"]
    logging.basicConfig(level=args.log_level)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
