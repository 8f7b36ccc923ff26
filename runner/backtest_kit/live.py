"""Live mode: the shared lifecycle driven one minute at a time, with state that survives crashes.

Each tick reads the last closed 1m candles, then either watches the open signal (SL by the
last candle's wick, TP and expiry by VWAP), watches the scheduled one (activation and cancel by
VWAP), or, when idle, asks the strategy for a signal once per interval bucket. Every state
change is written as one atomic record before the result is yielded, so a crash at any point
neither opens a position twice nor forgets one. A failing tick is reported and retried on the
next minute; only ``stop`` ends the loop, after the open signal has closed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .candles import MINUTE_MS, candle_vwap, iso
from .clock import Clock, WallClock
from .config import get_config
from .errors import CorruptStateError, PersistenceError
from .events import (
    DoneEvent,
    PerformanceEvent,
    done_live_subject,
    error_subject,
    exit_subject,
    performance_subject,
    signal_live_subject,
    signal_subject,
)
from .lifecycle import Outcome, StrategyInstance
from .market import ExchangeClient
from .persistence import FilePersistence, PersistenceAdapter
from .registry import registry
from .reports import ReportStore
from .signals import ActiveResult, AnyResult, IdleResult, SignalRow, build

store = ReportStore(signal_live_subject)
STATE_VERSION = 1


def state_key(symbol: str, strategy: str, exchange: str) -> str:
    return f"live/{symbol}_{strategy}_{exchange}"


@dataclass
class LiveSession:
    """What one running ``symbol:strategy`` is doing, for ``list`` and ``get_status``."""

    symbol: str
    strategy: str
    exchange: str = ""
    phase: str = "idle"  # idle | running | draining | done
    stop_requested: bool = False
    frozen: str | None = None  # why no new signal may open (corrupt state moved aside)
    ticks: int = 0
    tick_errors: int = 0
    last_tick_ms: int | None = None
    last_tick_wall_ms: int | None = None
    core: StrategyInstance | None = None
    last_result: dict[str, Any] | None = None
    resume_after: int | None = None  # the minute of the last persisted change: never ticked again
    done: asyncio.Event = field(default_factory=asyncio.Event)


class LiveMode:
    """``Live``: run, background, stop, status, and what the runs produced."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str], LiveSession] = {}

    # ------------------------------------------------------------------ the loop
    async def run(
        self,
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        clock: Clock | None = None,
        persistence: PersistenceAdapter | None = None,
        until: int | None = None,
        on_restore: Callable[[dict[str, Any] | None], Any] | None = None,
        tick_ms: int = MINUTE_MS,
    ) -> AsyncIterator[AnyResult]:
        """Yield ``opened``, ``closed`` and ``cancelled`` results until stopped (or ``until`` ms).

        ``on_restore`` receives the last result recorded in the restored state (or ``None``)
        before the first tick, so a consumer can make up for a result it never received
        because the process died between persisting and yielding it. ``tick_ms`` is the tick
        period (a whole number of minutes; ticks are aligned to it).
        """
        cfg = get_config()
        if tick_ms <= 0 or tick_ms % MINUTE_MS:
            from .errors import ConfigurationError

            raise ConfigurationError(f"tick_ms must be a positive whole number of minutes, got {tick_ms}")
        strat = registry.strategies.get(strategy)
        client = ExchangeClient(registry.exchanges.get(exchange), backtest=False, config=cfg)
        store_ = persistence or FilePersistence(cfg.state_dir)
        store_.init()
        clock = clock or WallClock()
        key = (symbol, strategy)
        current = self._sessions.get(key)
        if current is not None and current.phase in ("running", "draining"):
            from .errors import ConfigurationError

            raise ConfigurationError(f"live {symbol}:{strategy} is already running in this process")
        session = LiveSession(symbol, strategy, exchange)
        # a stop asked for before the run started applies to it; a finished run's does not
        session.stop_requested = current is not None and current.phase == "idle" and current.stop_requested
        self._sessions[key] = session
        core = StrategyInstance(strat, client, symbol, backtest=False, config=cfg)
        session.core = core
        skey = state_key(symbol, strategy, exchange)
        await self._restore(session, core, store_, skey)
        if on_restore is not None:
            on_restore(session.last_result)
        session.phase = "draining" if session.stop_requested else "running"
        await core.callback("on_init", symbol)
        try:
            while True:
                when = clock.now_ms() // tick_ms * tick_ms
                if until is not None and when >= until:
                    break
                if session.resume_after is not None and when <= session.resume_after:
                    # a restart within a minute whose change is already durable: do not redo it
                    clock.advanced(session.resume_after)
                    await clock.sleep_until(session.resume_after + tick_ms + cfg.live_settle_delay_ms)
                    continue
                started = time.perf_counter()
                results: Sequence[AnyResult] = ()
                finished = False
                try:
                    results, finished = await self._tick(session, core, store_, skey, when)
                except Exception as exc:
                    session.tick_errors += 1
                    await error_subject.emit(exc)
                session.ticks += 1
                session.last_tick_ms = when
                session.last_tick_wall_ms = int(time.time() * 1000)
                await performance_subject.emit(
                    PerformanceEvent(
                        "live_tick", time.perf_counter() - started, symbol, strategy, exchange, when, False
                    )
                )
                for result in results:
                    if result.action in ("opened", "closed", "cancelled"):
                        yield result
                if finished:
                    break
                clock.advanced(when)
                await clock.sleep_until(when + tick_ms + cfg.live_settle_delay_ms)
        except BaseException as exc:
            if not isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
                await exit_subject.emit(exc)
            session.phase = "done" if session.phase == "draining" else "idle"
            session.done.set()
            raise
        session.phase = "done"
        session.done.set()
        await done_live_subject.emit(DoneEvent(symbol, strategy, exchange, "", False))

    async def _restore(
        self, session: LiveSession, core: StrategyInstance, store_: PersistenceAdapter, skey: str
    ) -> None:
        """Item 43: restore the open/scheduled signal and the guards, without calling get_signal."""
        if store_.quarantined(skey):
            session.frozen = (
                f"state moved aside ({', '.join(store_.quarantined(skey))}); resolve it before new signals"
            )
        try:
            record = store_.read(skey)
        except CorruptStateError as exc:
            session.frozen = str(exc)
            await error_subject.emit(exc)
            return
        if not record:
            return
        try:
            core.pending = SignalRow.from_json(record["pending"]) if record.get("pending") else None
            core.scheduled = SignalRow.from_json(record["scheduled"]) if record.get("scheduled") else None
        except (KeyError, TypeError, ValueError) as exc:
            session.frozen = f"state {skey} does not describe a signal: {exc!r}"
            await error_subject.emit(CorruptStateError(session.frozen))
            core.pending = core.scheduled = None
            return
        core.last_pending_id = record.get("lastPendingId")
        core.last_bucket = record.get("lastBucket")
        session.last_result = record.get("lastResult")
        session.resume_after = record.get("lastTickMs")
        if core.pending is not None:
            schema = core._risk_schema
            if schema is not None:
                core.risks.reserve(schema.name, core.risk_key, core.pending.to_json())
            await core.callback("on_active", core.symbol, core.pending)

    def _persist(
        self,
        session: LiveSession,
        core: StrategyInstance,
        store_: PersistenceAdapter,
        skey: str,
        when: int,
        last: AnyResult | None = None,
        *,
        durable: bool = True,
    ) -> None:
        last_row = last.flat() if last is not None else session.last_result  # type: ignore[union-attr]
        record: dict[str, Any] = {
            "version": STATE_VERSION,
            "symbol": core.symbol,
            "strategyName": core.strategy.name,
            "exchangeName": core.client.name,
            "pending": core.pending.to_json() if core.pending else None,
            "scheduled": core.scheduled.to_json() if core.scheduled else None,
            "lastPendingId": core.last_pending_id,
            "lastBucket": core.last_bucket,
            "lastResult": last_row,
            "lastTickMs": when,
            "updatedAt": iso(int(time.time() * 1000)),
        }
        store_.write(skey, record, durable=durable)
        if last is not None:
            session.last_result = last_row

    async def _tick(
        self, session: LiveSession, core: StrategyInstance, store_: PersistenceAdapter, skey: str, when: int
    ) -> tuple[list[AnyResult], bool]:
        """One minute. Returns what happened and whether the session is finished."""
        cfg = core.config
        candles = (
            await core.client.historical(core.symbol, "1m", when, cfg.avg_price_candles_count)
        ).to_candles()
        vwap = candle_vwap(candles)
        out: list[AnyResult] = []
        if core.pending is not None:
            row = core.pending
            outcome = core.step_pending(row, when, vwap, candles[-1])
            if outcome is not None:
                closed = core.closed_result(row, outcome)
                core.pending = None
                try:
                    self._persist(session, core, store_, skey, when, closed)
                except PersistenceError:
                    core.pending = row  # not closed until it is durable; retried next tick
                    raise
                core.release_risk()
                out.append(await self._emit(closed))
                await core.callback("on_close", core.symbol, closed.signal, closed.pnl)
                return out, session.stop_requested
            update = core.track_update(row, [vwap])
            if update:
                core.pending = row.model_copy(update=update)
                # peak/drawdown bookkeeping: atomic (a crash keeps it) but not fsynced, since
                # losing the latest extreme to a power cut changes statistics, not positions
                self._persist(session, core, store_, skey, when, durable=False)
            await self._emit(build(ActiveResult, signal=core.pending, **core._meta(when, vwap)))
            return out, False
        if core.scheduled is not None:
            row = core.scheduled
            outcome = core.step_scheduled(row, when, vwap)
            if outcome is None:
                return out, False
            if outcome.reason == "activate":
                opened_row = await core.activate(row, when)
                if opened_row is not None:
                    opened = core.opened_result(opened_row, when, row.price_open)
                    core.pending, core.scheduled, core.last_pending_id = opened_row, None, opened_row.id
                    try:
                        self._persist(session, core, store_, skey, when, opened)
                    except PersistenceError:
                        core.pending, core.scheduled = None, row
                        core.release_risk()
                        raise
                    out.append(await self._emit(opened))
                    await core.callback("on_open", core.symbol, opened_row)
                    return out, False
                outcome = Outcome(when, "user", vwap)
            cancelled = core.cancelled_result(row, outcome)
            core.scheduled = None
            try:
                self._persist(session, core, store_, skey, when, cancelled)
            except PersistenceError:
                core.scheduled = row
                raise
            out.append(await self._emit(cancelled))
            await core.callback("on_cancel", core.symbol, row)
            return out, session.stop_requested
        # idle
        if session.stop_requested:
            return out, True
        if session.frozen is not None or core.throttled(when):
            await self._emit(build(IdleResult, **core._meta(when, vwap)))
            return out, False
        previous_bucket = core.last_bucket
        new_row = await core.request_signal(when, vwap)
        if new_row is None:
            if core.last_bucket != previous_bucket:
                try:
                    self._persist(session, core, store_, skey, when)
                except PersistenceError as exc:
                    await error_subject.emit(exc)
            await self._emit(build(IdleResult, **core._meta(when, vwap)))
            return out, False
        row = new_row
        if row.is_scheduled:
            core.scheduled = row
            result: AnyResult = core.scheduled_result(row, when, vwap)
        else:
            core.pending, core.last_pending_id = row, row.id
            result = core.opened_result(row, when, vwap)
        try:
            self._persist(session, core, store_, skey, when, result)
        except PersistenceError:
            core.pending = core.scheduled = None
            core.last_pending_id = None if not row.is_scheduled else core.last_pending_id
            core.release_risk()
            raise
        out.append(await self._emit(result))
        await core.callback("on_schedule" if row.is_scheduled else "on_open", core.symbol, row)
        return out, False

    @staticmethod
    async def _emit(result: AnyResult) -> AnyResult:
        if signal_subject:
            await signal_subject.emit(result)
        await signal_live_subject.emit(result)
        return result

    # ------------------------------------------------------------------ control
    def background(
        self,
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        clock: Clock | None = None,
        persistence: PersistenceAdapter | None = None,
    ) -> Callable[[], asyncio.Task[None]]:
        """Run in a task; the returned callable asks it to drain and returns the task to await."""

        async def consume() -> None:
            async for _ in self.run(
                symbol, strategy=strategy, exchange=exchange, clock=clock, persistence=persistence
            ):
                pass

        task = asyncio.get_running_loop().create_task(consume())

        def cancel() -> asyncio.Task[None]:
            self.request_stop(symbol, strategy)
            return task

        return cancel

    def request_stop(self, symbol: str, strategy: str) -> None:
        session = self._sessions.setdefault((symbol, strategy), LiveSession(symbol, strategy))
        session.stop_requested = True
        if session.phase == "running":
            session.phase = "draining"

    async def stop(self, symbol: str, strategy: str) -> None:
        """Drain: no new signal; an open one closes first, a scheduled one activates and closes or
        is cancelled. Idempotent; returns once the request is recorded."""
        self.request_stop(symbol, strategy)

    async def wait_done(self, symbol: str, strategy: str) -> None:
        session = self._sessions.get((symbol, strategy))
        if session is not None:
            await session.done.wait()

    # ------------------------------------------------------------------ what happened
    def get_status(self, symbol: str, strategy: str) -> dict[str, Any]:
        s = self._sessions.get((symbol, strategy)) or LiveSession(symbol, strategy)
        core = s.core
        return {
            "phase": s.phase,
            "symbol": symbol,
            "strategy": strategy,
            "exchange": s.exchange,
            "openSignal": core.pending.to_json() if core and core.pending else None,
            "scheduledSignal": core.scheduled.to_json() if core and core.scheduled else None,
            "lastTickAt": iso(s.last_tick_ms) if s.last_tick_ms is not None else None,
            "lastTickWallAt": iso(s.last_tick_wall_ms) if s.last_tick_wall_ms is not None else None,
            "ticks": s.ticks,
            "tickErrors": s.tick_errors,
            "frozen": s.frozen,
            "stopRequested": s.stop_requested,
            "lastResult": s.last_result,
        }

    def last_result(self, symbol: str, strategy: str) -> dict[str, Any] | None:
        s = self._sessions.get((symbol, strategy))
        return s.last_result if s else None

    async def get_data(self, symbol: str, strategy: str) -> dict[str, Any]:
        return store.stats(symbol, strategy)

    def get_signals(self, symbol: str, strategy: str) -> list[dict[str, Any]]:
        return [r.flat() for r in store.record(symbol, strategy).ended]

    async def get_report(self, symbol: str, strategy: str, columns: Sequence[str] | None = None) -> str:
        return store.report(
            symbol,
            strategy,
            title=f"Live Report: {strategy}",
            columns=columns,
            max_rows=get_config().max_live_markdown_rows,
        )

    async def dump(self, symbol: str, strategy: str, path: str | os.PathLike[str] | None = None) -> Path:
        report = await self.get_report(symbol, strategy)
        return store.dump(symbol, strategy, report, Path(path or "./dump/live"), "live")

    def list(self) -> list[dict[str, str]]:
        return [
            {"symbol": s, "strategyName": st, "status": sess.phase}
            for (s, st), sess in sorted(self._sessions.items())
        ]


Live = LiveMode()
