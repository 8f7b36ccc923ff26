"""Batch modes: one backtest, or one task of a Walker run as an indexed Kubernetes Job.

A Walker compares strategies over the same frame; the operator runs each strategy as one
completion of an indexed Job, so each pod backtests exactly one ``{label, strategy, params}`` and
reports its statistics through the pod's termination message, which the operator reads back
without any storage or network between them. That message is capped by Kubernetes at 4096 bytes,
so the result is written as compact JSON and trimmed to the comparison metrics if it would not fit.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import backtest_kit
from backtest_kit.candles import to_ms
from backtest_kit.errors import ConfigurationError
from backtest_kit.eventlog import EventLog
from backtest_kit.walker import metric_value

from .exchange_setup import prepare_exchange
from .loading import load_modules, resolve_strategy
from .options import WALKER_METRICS, BacktestOptions, Frame, WalkerTaskOptions

log = logging.getLogger("backtest_kit_runner.batch")

#: Kubernetes truncates a termination message to 4096 bytes.
TERMINATION_MESSAGE_LIMIT = 4096
#: Statistics kept when the full set would not fit.
ESSENTIAL_STATS = ("totalSignals", "winCount", "lossCount", *WALKER_METRICS)


def result_message(payload: dict[str, Any], limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """Compact JSON of ``payload``; its ``stats`` trimmed to the essentials if it exceeds ``limit``."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) <= limit:
        return text
    stats = payload.get("stats") or {}
    trimmed = {k: stats[k] for k in ESSENTIAL_STATS if k in stats}
    text = json.dumps({**payload, "stats": trimmed, "statsTruncated": True}, separators=(",", ":"))
    if len(text.encode()) > limit:
        text = json.dumps({**payload, "stats": {}, "statsTruncated": True}, separators=(",", ":"))
    return text


def check_output(path: Path) -> None:
    """Refuse, before any work, an output the result could not be written to."""
    target = path if path.exists() else path.parent
    if not target.exists() or not os.access(target, os.W_OK):
        raise ConfigurationError(f"--output {path}: cannot write there ({target} is missing or read-only)")


def write_result(path: Path, text: str) -> None:
    """Write the result where the operator collects it, and to stdout for people and logs."""
    print(text, flush=True)
    try:
        with path.open("w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise OSError(f"cannot write the result to {path}: {exc.strerror or exc}") from exc


def _frame_name(symbol: str, strategy: str) -> str:
    return f"runner-{symbol}-{strategy}"


async def backtest_once(
    *,
    symbol: str,
    strategy: str,
    params: Mapping[str, Any],
    exchange: str,
    exchange_options: Mapping[str, object],
    load: tuple[str, ...],
    frame: Frame,
    frame_interval: str,
    metric: str,
    events: Path | None,
) -> dict[str, Any]:
    """Load, validate, run the backtest and return ``{strategy, metric, metricValue, stats, ...}``."""
    modules = load_modules(load)
    chosen = resolve_strategy(strategy, params, modules, registered=backtest_kit.list_strategies)
    prepared = prepare_exchange(
        exchange,
        on_request=None,
        register=backtest_kit.add_exchange,
        registered=backtest_kit.list_exchanges,
        settings=exchange_options,
    )
    frame_name = _frame_name(symbol, chosen.name)
    backtest_kit.add_frame(
        frame_name, start=frame.start, end=frame.end, interval=frame_interval, replace=True
    )
    log.info(
        "backtest %s %s on %s from %s to %s (%s)",
        symbol,
        chosen.name,
        prepared.name,
        frame.start.isoformat(),
        frame.end.isoformat(),
        frame_interval,
    )
    event_log = EventLog(events) if events is not None else None
    try:
        async for result in backtest_kit.Backtest.run(
            symbol, strategy=chosen.name, exchange=prepared.name, frame=frame_name
        ):
            if event_log is not None:
                event_log.append(result.flat())  # type: ignore[union-attr]
    finally:
        if event_log is not None:
            event_log.close()
        await prepared.aclose()
    stats = await backtest_kit.Backtest.get_data(symbol, chosen.name)
    return {
        "strategy": chosen.name,
        "symbol": symbol,
        "exchange": prepared.name,
        "frame": {"start": to_ms(frame.start), "end": to_ms(frame.end), "interval": frame_interval},
        "params": dict(chosen.params),
        "metric": metric,
        "metricValue": metric_value(stats, metric),
        "stats": stats,
    }


async def run_backtest(options: BacktestOptions) -> int:
    check_output(options.output)
    result = await backtest_once(
        symbol=options.symbol,
        strategy=options.strategy,
        params=options.params,
        exchange=options.exchange,
        exchange_options=options.exchange_options,
        load=options.load,
        frame=options.frame,
        frame_interval=options.frame_interval,
        metric=options.metric,
        events=options.events,
    )
    payload = {"label": options.strategy, **result}
    write_result(options.output, result_message(payload))
    return 0


async def run_walker_task(options: WalkerTaskOptions) -> int:
    task = options.task
    check_output(options.output)
    log.info("walker task %d of %d: %s", options.job_completion_index, len(options.tasks), task.label)
    result = await backtest_once(
        symbol=options.symbol,
        strategy=task.strategy,
        params=task.params,
        exchange=options.exchange,
        exchange_options=options.exchange_options,
        load=options.load,
        frame=options.frame,
        frame_interval=options.frame_interval,
        metric=options.metric,
        events=None,
    )
    payload = {
        "label": task.label,
        "strategy": result["strategy"],
        "metric": result["metric"],
        "metricValue": result["metricValue"],
        "stats": result["stats"],
    }
    write_result(options.output, result_message(payload))
    return 0
