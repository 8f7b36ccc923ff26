"""Backtest mode: drive the shared lifecycle over a historical frame, as fast as the rules allow.

Reading top to bottom: build the frame's ticks, load the minute candles ahead, then walk the
ticks. An idle tick either asks the strategy (first tick of a new interval bucket) or is
skipped: nothing can happen on it. A signal it opens or schedules is played to its end by the
lifecycle (``backtest_episode``, vectorised over its candles) and time resumes after its close
(docs/ENGINE.md item 21). This module only moves time and hands the lifecycle's transitions on:
every decision is the lifecycle's. Each run keeps its own :class:`~backtest_kit.reports.RunRecord`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .candles import MINUTE_MS
from .config import EngineConfig
from .errors import BacktestKitError
from .events import DoneEvent, EventBus, PerformanceEvent, ProgressEvent
from .lifecycle import SignalState, StrategyInstance, Transition, announce, run_hooks
from .market import ExchangeClient, MinuteFeed
from .position import commit_at
from .registry import FrameSchema, Registry
from .reports import RunRecord
from .risks import RiskBook
from .signals import SignalResult


class _FewerCollections:
    """While any backtest runs, the cyclic garbage collector runs less often.

    A backtest keeps every result it makes, so the young generations fill with survivors and the
    default threshold (700 allocations) collects them over and over: about 15 % of a year's run.
    Nothing a backtest makes forms cycles that need prompt collection; the thresholds come back
    when the last concurrent run ends.
    """

    THRESHOLDS = (50_000, 20, 100)

    def __init__(self) -> None:
        self.depth = 0
        self.saved: tuple[int, int, int] = gc.get_threshold()

    def __enter__(self) -> None:
        if self.depth == 0:
            self.saved = gc.get_threshold()
            gc.set_threshold(*(max(a, b) for a, b in zip(self.saved, self.THRESHOLDS, strict=True)))
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            gc.set_threshold(*self.saved)


_fewer_collections = _FewerCollections()


def frame_ticks(frame: FrameSchema, now_ms: int | None = None) -> np.ndarray:
    """Item 13: from the minute-aligned start, every ``interval`` while ``<= min(end, now)``."""
    start = frame.start_ms // MINUTE_MS * MINUTE_MS
    stop = min(frame.end_ms, now_ms if now_ms is not None else int(time.time() * 1000))
    if stop < start:
        raise BacktestKitError(
            f"frame {frame.name!r} has no ticks (it ends before it starts or in the future)"
        )
    return np.arange(start, stop + 1, frame.step_ms, dtype=np.int64)


@dataclass
class BacktestRun:
    """One backtest: what it ran and what it produced (its results stay its own)."""

    record: RunRecord
    config: EngineConfig
    status: str = "running"
    stop_requested: bool = False
    asks: int = 0  # get_signal calls
    signal_errors: int = 0  # asks that raised, timed out or returned an invalid signal
    instance: StrategyInstance | None = None  # while running: where a managed position is held

    def stats(self) -> dict[str, Any]:
        return self.record.stats()

    def signals(self) -> list[dict[str, Any]]:
        return self.record.signals()

    def report(self, columns: Sequence[str] | None = None, *, config: EngineConfig | None = None) -> str:
        """The markdown report; ``config`` (default: the run's) decides rows and the note column."""
        cfg = config or self.config
        return self.record.report(
            title=f"Backtest Report: {self.record.strategy_name}",
            columns=columns,
            max_rows=cfg.max_backtest_markdown_rows,
            show_note=cfg.report_show_signal_note,
        )


class BacktestMode:
    """``Backtest`` of one engine: run, execute, background, stop, and what the runs produced."""

    def __init__(
        self, *, registry: Registry, risks: RiskBook, bus: EventBus, config: Callable[[], EngineConfig]
    ) -> None:
        self._registry = registry
        self._risks = risks
        self._bus = bus
        self._config = config
        self._runs: dict[tuple[str, str], BacktestRun] = {}  # the latest run per symbol:strategy

    async def run(
        self,
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        frame: str | FrameSchema,
        config: EngineConfig | None = None,
        run: BacktestRun | None = None,
    ) -> AsyncIterator[SignalResult]:
        """Yield ``scheduled``, ``opened``, ``closed`` and ``cancelled`` results in time order.

        ``config`` defaults to the engine's configuration at the start of the run; ``run`` lets
        a caller hold the run's record itself (see :meth:`execute`).
        """
        cfg = config or self._config()
        reg = self._registry
        strat = reg.strategies.get(strategy)
        frame_schema = frame if isinstance(frame, FrameSchema) else reg.frames.get(frame)
        client = ExchangeClient(reg.exchanges.get(exchange), backtest=True, config=cfg)
        risk = reg.risks.get(strat.risk) if strat.risk else None
        ticks = frame_ticks(frame_schema)
        record = RunRecord(symbol, strategy, exchange, frame_schema.name)
        current = run or BacktestRun(record, cfg)
        current.record, current.config, current.status = record, cfg, "running"
        self._runs[(symbol, strategy)] = current
        inst = StrategyInstance(
            strat,
            client,
            symbol,
            backtest=True,
            config=cfg,
            risks=self._risks,
            risk_schema=risk,
            bus=self._bus,
            frame_name=frame_schema.name,
        )
        current.instance = inst
        feed = MinuteFeed(
            client,
            symbol,
            start_ms=int(ticks[0]),
            horizon_ms=int(ticks[-1]) + MINUTE_MS,
            avg=cfg.avg_price_candles_count,
        )
        started = time.perf_counter()
        await self._bus.hook(inst.callback("on_init"), symbol)
        try:
            with _fewer_collections:
                async for result in self._walk(inst, feed, ticks, current):
                    yield result
        except BaseException as exc:
            current.status = "done"
            if isinstance(exc, Exception):
                await self._bus.error.emit(exc)
            raise
        current.status = "done"
        await self._bus.performance.emit(
            PerformanceEvent(
                "backtest_total",
                time.perf_counter() - started,
                symbol,
                strategy,
                exchange,
                int(ticks[-1]),
                True,
            )
        )
        await self._bus.done_backtest.emit(DoneEvent(symbol, strategy, exchange, frame_schema.name, True))

    async def _walk(
        self, inst: StrategyInstance, feed: MinuteFeed, ticks: np.ndarray, run: BacktestRun
    ) -> AsyncIterator[SignalResult]:
        """Move time over ``ticks``: skip what cannot matter, let the lifecycle decide the rest."""
        progress = _Progress(self._bus, inst, len(ticks))
        frame_end = int(ticks[-1])
        state = SignalState()
        i, n = 0, len(ticks)
        turns = 0
        while i < n and not run.stop_requested:
            when = int(ticks[i])
            turns += 1
            if not turns & 1023:
                # a backtest rarely waits for anything; let the loop run (Ctrl-C, other tasks)
                await asyncio.sleep(0)
            if progress.enabled:
                await progress.at(i)
            if inst.throttled(state, when):
                i = int(np.searchsorted(ticks, inst.next_bucket(when)))
                continue
            step = await inst.ask(state, when, await feed.price_at(when), feed)
            run.asks += 1
            run.signal_errors += len(step.errors)
            state = await self._adopt(inst, run, step)
            for result in step.results:
                if isinstance(result, SignalResult):
                    yield result
            await run_hooks(self._bus, inst, step)
            if state.flat:
                i += 1
                continue
            async for step in inst.backtest_episode(state, feed, frame_end):
                state = await self._adopt(inst, run, step)
                for result in step.results:
                    if isinstance(result, SignalResult):
                        yield result
                await run_hooks(self._bus, inst, step)
            assert step.resume_after is not None and state.flat
            i = int(np.searchsorted(ticks, step.resume_after, side="right"))
        if progress.enabled:
            await progress.at(n)

    async def _adopt(self, inst: StrategyInstance, run: BacktestRun, step: Transition) -> SignalState:
        """Take a transition at once (nothing is persisted in backtest) and report what it produced."""
        inst.apply_risk(step)
        await announce(self._bus, step, run.record)
        return step.state

    async def execute(
        self,
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        frame: str | FrameSchema,
        config: EngineConfig | None = None,
    ) -> BacktestRun:
        """Run to the end and return the run, which holds its own results and statistics."""
        held = BacktestRun(RunRecord(symbol, strategy, exchange), config or self._config())
        async for _ in self.run(
            symbol, strategy=strategy, exchange=exchange, frame=frame, config=config, run=held
        ):
            pass
        return held

    def background(
        self, symbol: str, *, strategy: str, exchange: str, frame: str | FrameSchema
    ) -> Callable[[], None]:
        """Run in a task of the current loop; the returned callable cancels it."""

        async def consume() -> None:
            await self.execute(symbol, strategy=strategy, exchange=exchange, frame=frame)

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

    # ------------------------------------------------------------------ commits from listeners
    # A listener of a position event runs outside the candle's context; these variants name the
    # run and take the price explicitly (POSITION.md item 5). They act on the position the run
    # is managing right now and return False when there is none; ``exchange=``/``frame=`` are
    # accepted for the reference's shape (a run is named by symbol and strategy here).
    def _commit(self, symbol: str, strategy: str, action: str, price: float, value: float | None) -> bool:
        run = self._runs.get((symbol, strategy))
        desk = run.instance.desk if run is not None and run.instance is not None else None
        return desk is not None and commit_at(desk, action, price, value)

    async def commit_partial_profit(
        self, symbol: str, percent: float, current_price: float, *, strategy: str, **context: str
    ) -> bool:
        return self._commit(symbol, strategy, "partial-profit", current_price, percent)

    async def commit_partial_loss(
        self, symbol: str, percent: float, current_price: float, *, strategy: str, **context: str
    ) -> bool:
        return self._commit(symbol, strategy, "partial-loss", current_price, percent)

    async def commit_trailing_stop(
        self, symbol: str, percent_shift: float, current_price: float, *, strategy: str, **context: str
    ) -> bool:
        return self._commit(symbol, strategy, "trailing-stop", current_price, percent_shift)

    async def commit_trailing_take(
        self, symbol: str, percent_shift: float, current_price: float, *, strategy: str, **context: str
    ) -> bool:
        return self._commit(symbol, strategy, "trailing-take", current_price, percent_shift)

    async def commit_breakeven(
        self, symbol: str, current_price: float, *, strategy: str, **context: str
    ) -> bool:
        return self._commit(symbol, strategy, "breakeven", current_price, None)

    async def commit_average_buy(
        self, symbol: str, current_price: float, *, strategy: str, cost: float | None = None, **context: str
    ) -> bool:
        return self._commit(symbol, strategy, "average-buy", current_price, cost)

    def latest(self, symbol: str, strategy: str) -> BacktestRun | None:
        """The latest run of ``symbol:strategy`` in this engine (``None`` before any)."""
        return self._runs.get((symbol, strategy))

    def _record(self, symbol: str, strategy: str) -> RunRecord:
        run = self._runs.get((symbol, strategy))
        return run.record if run is not None else RunRecord(symbol, strategy)

    async def get_data(self, symbol: str, strategy: str) -> dict[str, Any]:
        """Statistics over every closed signal of the latest run (no "enable" call needed)."""
        return self._record(symbol, strategy).stats()

    def get_signals(self, symbol: str, strategy: str) -> list[dict[str, Any]]:
        return self._record(symbol, strategy).signals()

    async def get_report(self, symbol: str, strategy: str, columns: Sequence[str] | None = None) -> str:
        cfg = self._config()
        run = self._runs.get((symbol, strategy)) or BacktestRun(RunRecord(symbol, strategy), cfg)
        return run.report(columns, config=cfg)

    async def dump(self, symbol: str, strategy: str, path: str | os.PathLike[str] | None = None) -> Path:
        report = await self.get_report(symbol, strategy)
        return self._record(symbol, strategy).dump(report, Path(path or "./dump/backtest"), "backtest")

    def list(self) -> list[dict[str, str]]:
        return [
            {"symbol": s, "strategyName": st, "status": run.status}
            for (s, st), run in sorted(self._runs.items())
        ]


class _Progress:
    """Backtest progress events, one per percent, only when someone listens."""

    def __init__(self, bus: EventBus, inst: StrategyInstance, total: int) -> None:
        self._bus = bus
        self.enabled = bool(bus.progress_backtest)
        self._names = (inst.symbol, inst.strategy.name, inst.client.name, inst.frame_name)
        self._total = total
        self._last = -1

    async def at(self, done: int) -> None:
        pct = done * 100 // self._total
        if pct == self._last and done < self._total:
            return
        self._last = pct
        await self._bus.progress_backtest.emit(ProgressEvent(*self._names, self._total, done))
