"""``python -m backtest_kit_operator`` / ``backtest-kit-operator``: run the operator with kopf.

Flags and ``BACKTEST_KIT_OPERATOR_*`` variables choose the namespaces (one, a list, or the whole
cluster), standalone or peering mode and the peering priority (default: the start time, so the
newest operator leads), the liveness endpoint, the metrics port and the poll interval. The
settings are exported to the environment before :mod:`.handlers` is imported, since
kopf decorators read some of them (the timer interval) at import time.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Sequence

from .settings import ENV_PREFIX
from .traders import DRAIN_WAIT_MARK

DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backtest-kit-operator",
        description=(
            "Kubernetes operator for LiveTrader and Walker resources (backtestkit.dev/v1alpha1). "
            f"Options can also be given as {ENV_PREFIX}<OPTION> variables; flags win."
        ),
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help=f"serve this namespace (repeatable, or comma separated) [env {ENV_PREFIX}NAMESPACES]",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        default=None,
        help=f"serve the whole cluster (the default; env {ENV_PREFIX}NAMESPACES='*')",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        default=os.environ.get(ENV_PREFIX + "PEERING") or None,
        help="coordinate with other operator replicas through this KopfPeering (default: standalone)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=int(os.environ[ENV_PREFIX + "PRIORITY"]) if os.environ.get(ENV_PREFIX + "PRIORITY") else None,
        help="kopf peering priority; default: the start time in seconds, so the newest operator leads "
        f"and older ones pause [env {ENV_PREFIX}PRIORITY]",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=os.environ.get(ENV_PREFIX + "LIVENESS") or DEFAULT_LIVENESS,
        help=f"kopf liveness endpoint, '' disables (default {DEFAULT_LIVENESS})",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="port of /metrics (default 9090, 0: off)"
    )
    parser.add_argument("--poll-interval", type=float, default=None, help="seconds between runner polls (5)")
    parser.add_argument("--runner-image", default=None, help="default runner image")
    parser.add_argument("--verbose", action="store_true", help="verbose kopf logging")
    parser.add_argument("--debug", action="store_true", help="debug kopf logging")
    return parser


def namespaces_from(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """The namespaces to serve; an empty list means cluster-wide."""
    if args.all_namespaces:
        return []
    raw: list[str] = list(args.namespace or [])
    if not raw:
        raw = [environ.get(ENV_PREFIX + "NAMESPACES", "")]
    names = [part.strip() for item in raw for part in item.split(",") if part.strip()]
    return [] if "*" in names else names


class QuietTimers(logging.Filter):
    """Drop kopf's "Timer '...' succeeded." lines: one per LiveTrader per poll is pure noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Timer ") and message.endswith(" succeeded."))


class DrainWaitsAreInfo(logging.Filter):
    """A drain waiting for its signal is normal: kopf logs each retry as an ERROR (and posts it as a
    Kubernetes event); downgrade those to INFO so that real errors stand out and no event is posted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and DRAIN_WAIT_MARK in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, env in (
        ("metrics_port", "METRICS_PORT"),
        ("poll_interval", "POLL_INTERVAL"),
        ("runner_image", "RUNNER_IMAGE"),
    ):
        value = getattr(args, flag)
        if value is not None:
            os.environ[ENV_PREFIX + env] = str(value)
    namespaces = namespaces_from(args, os.environ)

    import kopf

    from . import handlers

    kopf.configure(verbose=args.verbose, debug=args.debug)
    objects_log = logging.getLogger("kopf.objects")
    objects_log.addFilter(DrainWaitsAreInfo())
    if not (args.verbose or args.debug):
        objects_log.addFilter(QuietTimers())
    handlers.log.info(
        "serving %s, %s",
        ", ".join(namespaces) if namespaces else "all namespaces",
        f"peering {args.peering}" if args.peering else "standalone",
    )
    # One active operator: kopf pauses every peer below the highest priority (and all of them when
    # two share it), so each operator takes its start time as priority — the newest leads.
    priority = args.priority if args.priority is not None else int(time.time()) % 2**31
    # Everything imported so far lives as long as the process: keep it out of the collector's
    # generations, so a collection walks only the objects the traders make (less time paused).
    gc.freeze()
    kopf.run(
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
