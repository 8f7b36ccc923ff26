"""The ``backtest-kit`` command (also ``python -m backtest_kit_runner``): options, mode, exit code.

One command line serves a person at a shell and a pod the operator starts: ``backtest``,
``walker``, ``live`` (the default, so a pod's bare ``python -m backtest_kit_runner`` is a trader)
and ``walker-task``; ``run X`` is an alias of ``X`` kept for older manifests. The options are
the table in :mod:`.options`. Exit codes are a contract with the operator (docs/CONTRACTS.md)
and this module is the one place that maps what happened to them: 0 done, 1 the run failed (bad
data, exchange down, storage failing, anything unexpected), 2 bad input (reported before any
tick), 130/143 SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from backtest_kit.errors import BacktestKitError, ConfigurationError

from .options import (
    CONTROL_COMMAND,
    DATA_COMMAND,
    RUN_ALIAS,
    BacktestOptions,
    OptionsError,
    RunnerOptions,
    TraderOptions,
    WalkerOptions,
    WalkerTaskOptions,
    parse_options,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

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
    from . import batch

    if isinstance(options, BacktestOptions):
        return await batch.run_backtest(options)
    if isinstance(options, WalkerOptions):
        return await batch.run_walker(options)
    if isinstance(options, WalkerTaskOptions):
        return await batch.run_walker_task(options)
    raise AssertionError(f"no mode for {type(options).__name__}")


def _parse(argv: Sequence[str], environ: Mapping[str, str]) -> RunnerOptions | int:
    """The options, or the exit code when there is nothing to run (help, bad input)."""
    try:
        return parse_options(argv, environ)
    except OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK


def _report(exc: BaseException, debug: bool) -> None:
    """One line about a failure (the error listener may already have printed it: not again)."""
    from .reporting import failure_line, was_reported

    if debug or not was_reported(exc):
        sys.stderr.write(failure_line(exc, debug=debug))


def _run(options: RunnerOptions) -> int:
    try:
        return asyncio.run(run_options(options))
    except ConfigurationError as exc:
        _report(exc, options.debug)
        return EXIT_BAD_INPUT
    except BacktestKitError as exc:
        _report(exc, options.debug)
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; no result files were written\n")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if options.debug:
            log.exception("the run failed")
        _report(exc, options.debug)
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and ``environ``, run, and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] == ["state", "show"]:  # read-only volume inspection the operator runs (state_show.py)
        from .state_show import main as state_show

        return state_show(args[2:])
    if args[:1] == [RUN_ALIAS] and args[1:2] == [DATA_COMMAND]:
        args = args[1:]
    if args[:1] == [DATA_COMMAND]:  # 'data download' runs no strategy: its own parser
        from .data import main as data_main

        return data_main(args[1:])
    if args[:1] == [CONTROL_COMMAND]:  # talks to a running runner's HTTP API: its own parser too
        from .control import main as control_main

        return control_main(args[1:])
    parsed = _parse(args, os.environ if environ is None else environ)
    if isinstance(parsed, int):
        return parsed
    configure_logging(parsed.log_level)
    if not isinstance(parsed, TraderOptions):
        _exit_on_sigterm()  # a backtest may not yield to the event loop for seconds
    return _run(parsed)


if __name__ == "__main__":
    raise SystemExit(main())
