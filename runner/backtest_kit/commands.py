"""The ``live`` and ``walker`` subcommands of ``backtest-kit`` (``backtest`` is in ``cli``).

``live`` runs live mode for real, on the wall clock or on a replay clock over history, and can
append every yielded result to a JSON-lines file (``eventlog.EventLog``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .candles import to_ms
from .clock import Clock, ReplayClock, WallClock
from .config import set_config
from .errors import ConfigurationError
from .eventlog import EventLog
from .events import listen_error
from .live import Live
from .persistence import FilePersistence
from .registry import WalkerSchema, registry
from .walker import Walker


def parse_speed(text: str) -> float:
    if text.lower() in ("max", "inf", "infinity"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"--speed must be a number > 0 or 'max', got {text!r}") from None
    if not value > 0 or math.isnan(value):
        raise ConfigurationError(f"--speed must be a number > 0 or 'max', got {text!r}")
    return value


def build_clock(replay_from: str | None, speed: str | None, persistence: FilePersistence) -> Clock:
    from .cli import parse_time

    if replay_from is None:
        if speed is not None:
            raise ConfigurationError("--speed needs --replay-from")
        return WallClock()
    return ReplayClock(to_ms(parse_time(replay_from)), parse_speed(speed or "1"), persistence=persistence)


async def cmd_live(args: argparse.Namespace) -> int:
    from .cli import parse_time

    registry.strategies.get(args.strategy)
    registry.exchanges.get(args.exchange)
    set_config(state_dir=args.state_dir)
    persistence = FilePersistence(args.state_dir)
    persistence.init()
    clock = build_clock(args.replay_from, args.speed, persistence)
    until = to_ms(parse_time(args.until)) if args.until else None
    log = EventLog(Path(args.events)) if args.events else None
    unsubscribe = listen_error(lambda exc: sys.stderr.write(f"error: {exc}\n"))
    try:
        async for result in Live.run(
            args.symbol,
            strategy=args.strategy,
            exchange=args.exchange,
            clock=clock,
            persistence=persistence,
            until=until,
            on_restore=log.append if log else None,
        ):
            if log is not None:
                log.append(result.flat())  # type: ignore[union-attr]
            if not args.quiet:
                sys.stdout.write(json.dumps(result.flat()) + "\n")  # type: ignore[union-attr]
                sys.stdout.flush()
    finally:
        unsubscribe()
        if log is not None:
            log.close()
    return 0


async def cmd_walker(args: argparse.Namespace) -> int:
    if args.walker:
        schema = registry.walkers.get(args.walker)
    else:
        missing = [o for o in ("strategies", "exchange", "frame") if not getattr(args, o)]
        if missing:
            raise ConfigurationError(
                "give --walker NAME, or --strategies, --exchange and --frame (missing: "
                + ", ".join("--" + m for m in missing)
                + ")"
            )
        from .cli import resolve_frame

        frame = resolve_frame(args.frame)
        if frame.name not in registry.frames.items:
            registry.frames.add(frame.name, frame)
        strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
        from .registry import METRICS

        if args.metric not in METRICS:
            raise ConfigurationError(f"unknown metric {args.metric!r}; allowed: {', '.join(METRICS)}")
        schema = WalkerSchema("inline", strategies, args.exchange, frame.name, args.metric)
    unsubscribe = listen_error(lambda exc: sys.stderr.write(f"error: {exc}\n"))
    try:
        async for progress in Walker.run(args.symbol, walker=schema, jobs=args.jobs):
            if not args.quiet:
                value = progress["metricValue"]
                sys.stderr.write(
                    f"[{progress['strategiesTested']}/{progress['totalStrategies']}] "
                    f"{progress['strategyName']}: "
                    f"{progress['metric']}={'N/A' if value is None else format(value, '.6g')} "
                    f"(best {progress['bestStrategy']})\n"
                )
    finally:
        unsubscribe()
    data = await Walker.get_data(args.symbol, schema.name)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if not args.quiet:
        sys.stdout.write(await Walker.get_report(args.symbol, schema.name))
    return 0


def add_live_and_walker(sub: Any) -> None:
    lv = sub.add_parser("live", help="run live mode (wall clock, or --replay-from for a simulated clock)")
    lv.add_argument("--symbol", required=True)
    lv.add_argument("--strategy", required=True)
    lv.add_argument("--exchange", required=True)
    lv.add_argument("--load", action="append", default=[], help=".py file or module to import (repeatable)")
    lv.add_argument("--state-dir", required=True, help="where open/scheduled signals are kept")
    lv.add_argument("--replay-from", help="replay history from this ISO time on a simulated clock")
    lv.add_argument("--speed", help="replay speed: N times real time, or 'max'")
    lv.add_argument("--until", help="stop (exit 0) when the clock reaches this ISO time")
    lv.add_argument("--events", help="append every yielded result to this JSON-lines file")
    lv.add_argument("--quiet", action="store_true", help="do not print results to stdout")
    lv.set_defaults(handler=cmd_live)

    wk = sub.add_parser("walker", help="compare strategies by a metric")
    wk.add_argument("--symbol", required=True)
    wk.add_argument("--walker", help="a walker registered with add_walker")
    wk.add_argument("--strategies", help="inline: comma-separated strategy names")
    wk.add_argument("--exchange", help="inline: exchange name")
    wk.add_argument("--frame", help="inline: frame name or START..END")
    wk.add_argument("--metric", default="sharpeRatio", help="inline: metric to rank by")
    wk.add_argument("--load", action="append", default=[], help=".py file or module to import (repeatable)")
    wk.add_argument("--jobs", type=int, default=1, help="strategies in parallel processes")
    wk.add_argument("--json", help="write the comparison (get_data) here")
    wk.add_argument("--quiet", action="store_true")
    wk.set_defaults(handler=cmd_walker)
