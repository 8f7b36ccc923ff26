"""The runner process from start to exit code: options, logging, the chosen mode, and failures.

Exit codes are a contract with the operator (docs/CONTRACTS.md): 0 drained/done, 2 bad
configuration (reported before any tick), 143/130 SIGTERM/SIGINT, 1 anything unexpected. This
module is the one place that maps what happened to those numbers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from backtest_kit.errors import ConfigurationError

from .options import (
    BacktestOptions,
    OptionsError,
    RunnerOptions,
    TraderOptions,
    WalkerTaskOptions,
    parse_options,
)

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_CONFIGURATION = 2

log = logging.getLogger("backtest_kit_runner")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def _exit_on_sigterm() -> None:
    """Batch modes: SIGTERM ends the process at once with 143 (the Job retries the index)."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


async def run_options(options: RunnerOptions) -> int:
    """Run the mode the options select; returns its exit code."""
    if isinstance(options, TraderOptions):
        from .live_trader import run_live

        return await run_live(options)
    from .batch import run_backtest, run_walker_task

    if isinstance(options, BacktestOptions):
        return await run_backtest(options)
    if isinstance(options, WalkerTaskOptions):
        return await run_walker_task(options)
    raise AssertionError(f"no mode for {type(options).__name__}")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """``python -m backtest_kit_runner``: parse, run, and return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    env = os.environ if environ is None else environ
    try:
        options = parse_options(args, env)
    except OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIGURATION
    configure_logging(options.log_level)
    if not isinstance(options, TraderOptions):
        _exit_on_sigterm()  # a backtest may not yield to the event loop for seconds
    try:
        return asyncio.run(run_options(options))
    except ConfigurationError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("runner failed")
        return EXIT_UNEXPECTED
