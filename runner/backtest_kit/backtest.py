"""Backtest mode: drive the shared lifecycle over a historical frame, as fast as the rules allow.

Reading top to bottom: build the frame's ticks, load the minute candles ahead, then walk the
ticks. An idle tick either asks the strategy (first tick of a new interval bucket) or is
skipped: nothing can happen on it. An opened or scheduled signal is resolved over its candles
in one vectorised pass, and the walk resumes after its close (ENGINE.md item 21).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .candles import MINUTE_MS
from .config import get_config
from .errors import BacktestKitError
from .events import (
    DoneEvent,
    PerformanceEvent,
    ProgressEvent,
    done_backtest_subject,
    error_subject,
    performance_subject,
    progress_backtest_subject,
    signal_backtest_subject,
    signal_subject,
)
from .lifecycle import Outcome, StrategyInstance
from .market import ExchangeClient, MinuteFeed
from .registry import FrameSchema, registry
from .reports import ReportStore
from .signals import AnyResult

store = ReportStore(signal_backtest_subject)


def frame_ticks(frame: FrameSchema, now_ms: int | None = None) -> np.ndarray:
    """Item 13: from the minute-aligned start, every ``interval`` while ``<= min(end, now)``."""
    start = frame.start_ms // MINUTE_MS * MINUTE_MS
    stop = min(frame.end_ms, now_ms if now_ms is not None else int(time.time() * 1000))
    if stop < start:
        raise BacktestKitError(
            f"frame {frame.name!r} has no ticks (it ends before it starts or in the future)"
        )
    return np.arange(start, stop + 1, frame.step_ms, dtype=np.int64)


class _Run:
    def __init__(self) -> None:
        self.status = "idle"
        self.stop_requested = False


class BacktestMode:
    """``Backtest``: run, background, stop, and what the runs produced."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], _Run] = {}

    async def run(
        self,
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        frame: str | FrameSchema,
    ) -> AsyncIterator[AnyResult]:
        """Yield ``scheduled``, ``opened``, ``closed`` and ``cancelled`` results in time order."""
        cfg = get_config()
        strat = registry.strategies.get(strategy)
        frame_schema = frame if isinstance(frame, FrameSchema) else registry.frames.get(frame)
        client = ExchangeClient(registry.exchanges.get(exchange), backtest=True, config=cfg)
        ticks = frame_ticks(frame_schema)
        frame_end = int(ticks[-1])
        key = (symbol, strategy)
        state = self._runs.setdefault(key, _Run())
        state.status, state.stop_requested = "running", False
        store.reset(symbol, strategy)
        inst = StrategyInstance(
            strat, client, symbol, backtest=True, config=cfg, frame_name=frame_schema.name
        )
        feed = MinuteFeed(
            client,
            symbol,
            start_ms=int(ticks[0]),
            horizon_ms=frame_end + MINUTE_MS,
            avg=cfg.avg_price_candles_count,
        )
        progress = bool(progress_backtest_subject)
        started = time.perf_counter()
        await inst.callback("on_init", symbol)
        try:
            n = len(ticks)
            i = 0
            last_progress = -1
            while i < n and not state.stop_requested:
                when = int(ticks[i])
                if progress and i * 100 // n != last_progress:
                    last_progress = i * 100 // n
                    await progress_backtest_subject.emit(
                        ProgressEvent(symbol, strategy, exchange, frame_schema.name, n, i)
                    )
                if inst.throttled(when):
                    i = int(np.searchsorted(ticks, inst.next_bucket(when)))
                    continue
                price = await feed.price_at(when)
                row = await inst.request_signal(when, price, feed)
                if row is None:
                    i += 1
                    continue
                activated = False
                if row.is_scheduled:
                    yield await self._emit(inst.scheduled_result(row, when, price))
                    await inst.callback("on_schedule", symbol, row)
                    verdict, ts, at = await inst.resolve_scheduled(feed, row, frame_end)
                    opened = await inst.activate(row, ts) if verdict == "activate" else None
                    if opened is None:
                        if verdict == "activate":  # the risk profile refused at activation
                            verdict, at = "user", float(feed.vwap[feed.index(ts)])
                        yield await self._emit(inst.cancelled_result(row, Outcome(ts, verdict, at)))
                        await inst.callback("on_cancel", symbol, row)
                        i = int(np.searchsorted(ticks, ts, side="right"))
                        continue
                    row, activated = opened, True
                    yield await self._emit(inst.opened_result(row, ts, row.price_open))
                else:
                    yield await self._emit(inst.opened_result(row, when, price))
                inst.last_pending_id = row.id
                await inst.callback("on_open", symbol, row)
                row, outcome = await inst.resolve_pending(feed, row, frame_end, activated=activated)
                closed = inst.closed_result(row, outcome)
                inst.release_risk()
                yield await self._emit(closed)
                await inst.callback("on_close", symbol, row, closed.pnl)
                i = int(np.searchsorted(ticks, outcome.timestamp, side="right"))
            if progress:
                await progress_backtest_subject.emit(
                    ProgressEvent(symbol, strategy, exchange, frame_schema.name, n, n)
                )
        except BaseException as exc:
            state.status = "done"
            if isinstance(exc, Exception):
                await error_subject.emit(exc)
            raise
        state.status = "done"
        await performance_subject.emit(
            PerformanceEvent(
                "backtest_total", time.perf_counter() - started, symbol, strategy, exchange, frame_end, True
            )
        )
        await done_backtest_subject.emit(DoneEvent(symbol, strategy, exchange, frame_schema.name, True))

    @staticmethod
    async def _emit(result: AnyResult) -> AnyResult:
        if signal_subject:
            await signal_subject.emit(result)
        await signal_backtest_subject.emit(result)
        return result

    def background(
        self, symbol: str, *, strategy: str, exchange: str, frame: str | FrameSchema
    ) -> Callable[[], None]:
        """Run in a task of the current loop; the returned callable cancels it."""

        async def consume() -> None:
            async for _ in self.run(symbol, strategy=strategy, exchange=exchange, frame=frame):
                pass

        task = asyncio.get_running_loop().create_task(consume())

        def cancel() -> None:
            self.stop(symbol, strategy)
            task.cancel()

        return cancel

    def stop(self, symbol: str, strategy: str) -> None:
        """Graceful: no new signal after the current one (which a backtest resolves at once)."""
        run = self._runs.get((symbol, strategy))
        if run is not None:
            run.stop_requested = True

    async def get_data(self, symbol: str, strategy: str) -> dict[str, Any]:
        """Statistics over every closed signal of the latest run (no "enable" call needed)."""
        return store.stats(symbol, strategy)

    def get_signals(self, symbol: str, strategy: str) -> list[dict[str, Any]]:
        rec = store.record(symbol, strategy)
        return [r.flat() for r in rec.ended]

    async def get_report(self, symbol: str, strategy: str, columns: Sequence[str] | None = None) -> str:
        return store.report(
            symbol,
            strategy,
            title=f"Backtest Report: {strategy}",
            columns=columns,
            max_rows=get_config().max_backtest_markdown_rows,
        )

    async def dump(self, symbol: str, strategy: str, path: str | os.PathLike[str] | None = None) -> Path:
        report = await self.get_report(symbol, strategy)
        return store.dump(symbol, strategy, report, Path(path or "./dump/backtest"), "backtest")

    def list(self) -> list[dict[str, str]]:
        return [
            {"symbol": s, "strategyName": st, "status": run.status}
            for (s, st), run in sorted(self._runs.items())
        ]


Backtest = BacktestMode()
