"""The ``backtest-kit`` command line: backtest, live (or replay) and walker runs.

It only parses, loads user modules, calls the public API and writes files; every decision is
the engine's. Exit codes: 0 done, 1 the run failed (bad data, exchange down), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import registry as reg
from .backtest import Backtest
from .charts import equity_curve, write_chart
from .errors import BacktestKitError, ConfigurationError
from .events import ProgressEvent, listen_error, listen_progress_backtest
from .registry import FrameSchema
from .reports import trade_of


def parse_time(text: str, *, end: bool = False) -> datetime:
    """ISO-8601 (``Z`` allowed); a bare date means its first minute, or its last when ``end``."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = datetime.fromisoformat(raw).replace(tzinfo=UTC)
            return day + timedelta(days=1, minutes=-1) if end else day
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigurationError(f"not an ISO-8601 date or time: {text!r}") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def resolve_frame(text: str, interval: str = "1m") -> FrameSchema:
    """A registered frame name, or inline ``START..END`` (end inclusive)."""
    if ".." in text:
        start_s, end_s = text.split("..", 1)
        start, end = parse_time(start_s), parse_time(end_s, end=True)
        if end < start:
            raise ConfigurationError(f"frame {text!r}: end is before start")
        from .candles import FRAME_INTERVALS, to_ms

        if interval not in FRAME_INTERVALS:
            raise ConfigurationError(
                f"unknown frame interval {interval!r}; allowed: {', '.join(FRAME_INTERVALS)}"
            )
        return FrameSchema(text, interval, to_ms(start), to_ms(end))
    return reg.registry.frames.get(text)


def load_module(spec: str) -> None:
    """Import a ``.py`` file or a module path; it registers strategies, exchanges, frames, risks."""
    if spec.endswith(".py") or "/" in spec or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise ConfigurationError(f"--load: no such file {spec!r}")
        name = f"backtest_kit_user_{abs(hash(path.resolve()))}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ConfigurationError(f"--load: cannot import {spec!r}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except BacktestKitError:
            raise
        except Exception as exc:
            raise ConfigurationError(f"--load {spec}: importing it failed: {exc!r}") from exc
        return
    try:
        importlib.import_module(spec)
    except ImportError as exc:
        raise ConfigurationError(f"--load: cannot import module {spec!r}: {exc}") from exc


class _Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        width = 30
        done = int(event.progress * width)
        sys.stderr.write(
            f"\r[{'#' * done}{'.' * (width - done)}] {event.progress * 100:5.1f}% "
            f"{event.processed_frames}/{event.total_frames} ticks"
        )
        if event.processed_frames >= event.total_frames:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _errors_to_stderr(exc: BaseException) -> None:
    sys.stderr.write(f"error: {exc}\n")


async def cmd_backtest(args: argparse.Namespace) -> int:
    frame = resolve_frame(args.frame, args.frame_interval)
    reg.registry.strategies.get(args.strategy)
    reg.registry.exchanges.get(args.exchange)
    unsubscribe = [listen_error(_errors_to_stderr)]
    unsubscribe.append(listen_progress_backtest(_Progress(sys.stderr.isatty() and not args.quiet)))
    try:
        async for _ in Backtest.run(args.symbol, strategy=args.strategy, exchange=args.exchange, frame=frame):
            pass
    finally:
        for u in unsubscribe:
            u()
    stats = await Backtest.get_data(args.symbol, args.strategy)
    if args.json:
        payload = {"signals": Backtest.get_signals(args.symbol, args.strategy), "stats": stats}
        _write(Path(args.json), json.dumps(payload, indent=1, allow_nan=False) + "\n")
    report = await Backtest.get_report(args.symbol, args.strategy)
    if args.report:
        _write(Path(args.report), report)
    if args.chart:
        from .backtest import store

        trades = [trade_of(r) for r in store.record(args.symbol, args.strategy).closed]
        write_chart(Path(args.chart), equity_curve(trades), f"{args.strategy} on {args.symbol}")
    if not args.quiet:
        sys.stdout.write(report)
    return 0


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backtest-kit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bt = sub.add_parser("backtest", help="run a strategy over a historical frame")
    bt.add_argument("--symbol", required=True)
    bt.add_argument("--strategy", required=True)
    bt.add_argument("--exchange", required=True)
    bt.add_argument("--frame", required=True, help="registered frame name or START..END (end inclusive)")
    bt.add_argument("--frame-interval", default="1m", help="tick interval of an inline frame")
    bt.add_argument("--load", action="append", default=[], help=".py file or module to import (repeatable)")
    bt.add_argument("--json", help="write {signals, stats} here")
    bt.add_argument("--report", help="write the markdown report here")
    bt.add_argument("--chart", help="write the equity curve (.html, .svg or .png)")
    bt.add_argument("--quiet", action="store_true", help="print nothing on success")
    bt.set_defaults(handler=cmd_backtest)

    from .commands import add_live_and_walker

    add_live_and_walker(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for spec in getattr(args, "load", []) or []:
            load_module(spec)
        code: int = asyncio.run(args.handler(args))
        return code
    except ConfigurationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except BacktestKitError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
