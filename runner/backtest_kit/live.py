"""Live mode: the shared lifecycle driven one minute at a time, with state that survives crashes.

Each tick reads the last closed 1m candles and hands them to the lifecycle (``live_tick``),
which returns the next state and what happened as one :class:`~backtest_kit.lifecycle.Transition`.
This driver then does the one thing it exists for, in one place: it writes the transition as one
atomic record *before* adopting it, yielding its results or running any hook. A crash at any
point therefore neither opens a position twice nor forgets one, and a failed write leaves the
previous state in force (nothing to roll back: the transition is simply not adopted). A failing
tick is reported and retried on the next minute; only ``stop`` ends the loop, after the open
signal has closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .candles import MINUTE_MS, Candle, anomaly_free, iso
from .clock import Clock, WallClock
from .config import EngineConfig
from .errors import CandleDataError, ConfigurationError, CorruptStateError, PersistenceError
from .events import ControlEvent, DoneEvent, EventBus, PerformanceEvent
from .lifecycle import SignalState, StrategyInstance, Transition, announce, run_hooks
from .market import ExchangeClient
from .persistence import FilePersistence, PersistenceAdapter
from .registry import Registry
from .reports import RunRecord
from .risks import RiskBook
from .signals import SignalResult, SignalRow, row_problems

STATE_VERSION = 1
#: Results ``Live.run`` yields (the others only reach the listeners).
YIELDED = frozenset({"opened", "closed", "cancelled"})
#: A bookkeeping change (peak and fall of an open signal) waits this long (wall time) for the next
#: write of the record instead of writing one of its own: a real-time trader still writes it in
#: the minute it happened, a fast replay writes about once a second (item 41).
BOOKKEEPING_DELAY_S = 1.0
#: At maximum replay speed over stored history (an exchange with the columnar path), the candles
#: of this many minutes come in one request and each minute is served its window from them.
READ_AHEAD_MINUTES = 1440


def state_key(symbol: str, strategy: str, exchange: str) -> str:
    return f"live/{symbol}_{strategy}_{exchange}"


@dataclass
class LiveSession:
    """What one running ``symbol:strategy`` is doing, for ``list`` and ``get_status``."""

    symbol: str
    strategy: str
    exchange: str = ""
    phase: str = "idle"  # idle | running | draining | done
    stop_requested: bool = False  # drain: no new signal; ends once flat (persisted)
    paused: bool = False  # no new signal until resumed; the open one is still watched (persisted)
    close_requested: bool = False  # close the open (or cancel the scheduled) signal next tick (persisted)
    frozen: str | None = None  # why no new signal may open (corrupt state moved aside)
    ticks: int = 0
    tick_errors: int = 0
    data_errors: int = 0  # candles refused or corrected
    last_tick_ms: int | None = None
    last_tick_wall_ms: int | None = None
    state: SignalState = field(default_factory=SignalState)
    last_result: dict[str, Any] | None = None
    resume_after: int | None = None  # the minute of the last persisted change: never ticked again
    record: RunRecord = field(default_factory=RunRecord)
    wiring: _Wiring | None = None  # while running: where the state is stored
    seen_ms: int | None = None  # the last minute watched: time never goes back past it
    seen_candles: dict[int, Candle] = field(default_factory=dict)  # what recent ticks acted on
    seen_last: int = -1  # the newest minute ever added to ``seen_candles``
    seen_ordered: bool = True  # no minute was added behind a newer one: its keys are in time order
    reported: set[int] = field(default_factory=set)  # candles already reported as refused or changed
    pending: dict[str, bool] = field(default_factory=dict)  # controls asked while not running
    totals: Totals = field(default_factory=lambda: Totals())  # counts and realised PnL (persisted)
    persisted_ms: int | None = None  # ``lastTickMs`` of the record last written
    unsaved_ms: int | None = None  # the minute of a bookkeeping change not written yet
    saved_at: float = -math.inf  # ``time.monotonic()`` of the last record written
    ahead: _ReadAhead | None = None  # while replaying stored history at maximum speed


class LiveStatus:
    """One moment of a session's status, taken from its immutable values (rows, state and totals
    are frozen, a session replaces them rather than changing them): cheap to take on every tick,
    safe to render from another thread, and rendered (:meth:`to_json`) only when someone asks."""

    __slots__ = (
        "close_requested",
        "data_errors",
        "exchange",
        "frozen",
        "last_result",
        "last_tick_ms",
        "last_tick_wall_ms",
        "paused",
        "phase",
        "state",
        "stop_requested",
        "strategy",
        "symbol",
        "tick_errors",
        "ticks",
        "totals",
    )

    def __init__(self, s: LiveSession) -> None:
        self.phase = s.phase
        self.symbol, self.strategy, self.exchange = s.symbol, s.strategy, s.exchange
        self.state = s.state
        self.last_tick_ms, self.last_tick_wall_ms = s.last_tick_ms, s.last_tick_wall_ms
        self.ticks, self.tick_errors, self.data_errors = s.ticks, s.tick_errors, s.data_errors
        self.totals = s.totals
        self.frozen = s.frozen
        self.stop_requested, self.paused, self.close_requested = s.stop_requested, s.paused, s.close_requested
        self.last_result = s.last_result

    def to_json(self) -> dict[str, Any]:
        state = self.state
        return {
            "phase": self.phase,
            "symbol": self.symbol,
            "strategy": self.strategy,
            "exchange": self.exchange,
            "openSignal": state.pending.to_json() if state.pending else None,
            "scheduledSignal": state.scheduled.to_json() if state.scheduled else None,
            "lastTickAt": iso(self.last_tick_ms) if self.last_tick_ms is not None else None,
            "lastTickWallAt": iso(self.last_tick_wall_ms) if self.last_tick_wall_ms is not None else None,
            "ticks": self.ticks,
            "tickErrors": self.tick_errors,
            "dataErrors": self.data_errors,
            **self.totals.to_json(),
            "frozen": self.frozen,
            "stopRequested": self.stop_requested,
            "paused": self.paused,
            "closeRequested": self.close_requested,
            "lastResult": self.last_result,
        }


@dataclass
class _ReadAhead:
    """Candles fetched ahead for a replay at maximum speed: many minutes in one request.

    Each minute is served exactly the candles its own request would have returned (stored history
    does not change while a replay reads it), and only from a block proven to pass, window by
    window, the validation each of those requests would have passed; otherwise that minute asks
    the exchange itself, as always.
    """

    until: int | None
    since_ms: int = 0
    rows: list[Candle] = field(default_factory=list)
    retry_ms: int = 0  # a block that failed or was not proven: no new block before this minute
    #: The block passes the anomaly band's quick test as a whole, so every window of it does
    #: (a window's lowest close is no lower and its highest high no higher): none has an outlier.
    banded: bool = False

    def serve(self, since_ms: int, count: int) -> list[Candle] | None:
        i = (since_ms - self.since_ms) // MINUTE_MS
        if since_ms < self.since_ms or i + count > len(self.rows):
            return None
        return self.rows[i : i + count]


@dataclass(frozen=True)
class _Wiring:
    """What one run works with: the instance, where its state lives, and under which key."""

    inst: StrategyInstance
    store: PersistenceAdapter
    key: str
    config: EngineConfig


class LiveMode:
    """``Live`` of one engine: run, background, stop, status, and what the runs produced."""

    def __init__(
        self, *, registry: Registry, risks: RiskBook, bus: EventBus, config: Callable[[], EngineConfig]
    ) -> None:
        self._registry = registry
        self._risks = risks
        self._bus = bus
        self._config = config
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
        config: EngineConfig | None = None,
    ) -> AsyncIterator[SignalResult]:
        """Yield ``opened``, ``closed`` and ``cancelled`` results until stopped (or ``until`` ms).

        ``on_restore`` receives the last result recorded in the restored state (or ``None``)
        before the first tick, so a consumer can make up for a result it never received
        because the process died between persisting and yielding it. ``tick_ms`` is the tick
        period (a whole number of minutes; ticks are aligned to it). ``config`` defaults to the
        engine's configuration when the run starts.
        """
        cfg = config or self._config()
        if tick_ms <= 0 or tick_ms % MINUTE_MS:
            raise ConfigurationError(f"tick_ms must be a positive whole number of minutes, got {tick_ms}")
        session = self._open_session(symbol, strategy, exchange)
        wiring = self._wire(symbol, strategy, exchange, persistence, cfg)
        check_state(wiring.store, symbol, strategy, exchange)
        await self._restore(session, wiring)
        problem = getattr(clock, "problem", None)  # a replay clock whose anchor was moved aside
        if isinstance(problem, str):
            session.frozen = session.frozen or problem
            await self._bus.error.emit(CorruptStateError(problem))
        session.wiring = wiring
        if session.pending:  # controls asked before the run started override the record
            for name, value in session.pending.items():
                setattr(session, name, value)
            session.pending.clear()
            self._save_controls(session)
        if on_restore is not None:
            on_restore(session.last_result)
        session.phase = "draining" if session.stop_requested else "running"
        if getattr(clock, "max_speed", False) and wiring.inst.client.schema.get_candle_arrays is not None:
            session.ahead = _ReadAhead(until)
        await self._bus.hook(wiring.inst.callback("on_init"), symbol)
        try:
            async for result in self._loop(session, wiring, clock or WallClock(), until, tick_ms):
                yield result
        except BaseException as exc:
            with contextlib.suppress(PersistenceError):  # the record on disk stays valid if this fails
                self._flush(session, wiring)
            if not isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
                await self._bus.exit.emit(exc)
            session.phase = "done" if session.phase == "draining" else "idle"
            session.wiring = session.ahead = None
            raise
        try:
            self._flush(session, wiring)
        except PersistenceError as failure:
            await self._bus.error.emit(failure)
        if session.stop_requested and session.state.flat:
            # the drain is complete: a later run on this state (a new spec) starts afresh
            self._write(
                session,
                wiring,
                _latest(session.persisted_ms, session.unsaved_ms),
                session.state,
                session.last_result,
                durable=True,
                drain=False,
            )
        session.wiring = session.ahead = None
        session.phase = "done"
        await self._bus.done_live.emit(DoneEvent(symbol, strategy, exchange, "", False))

    def _open_session(self, symbol: str, strategy: str, exchange: str) -> LiveSession:
        key = (symbol, strategy)
        current = self._sessions.get(key)
        if current is not None and current.phase in ("running", "draining"):
            raise ConfigurationError(f"live {symbol}:{strategy} is already running in this process")
        rows = self._config().live_history_rows
        session = LiveSession(
            symbol, strategy, exchange, record=RunRecord(symbol, strategy, exchange, max_rows=rows)
        )
        # controls asked for since the last run apply to this one (a finished run's own do not)
        if current is not None:
            session.pending = dict(current.pending)
        self._sessions[key] = session
        return session

    def _wire(
        self,
        symbol: str,
        strategy: str,
        exchange: str,
        persistence: PersistenceAdapter | None,
        cfg: EngineConfig,
    ) -> _Wiring:
        reg = self._registry
        strat = reg.strategies.get(strategy)
        client = ExchangeClient(reg.exchanges.get(exchange), backtest=False, config=cfg)
        inst = StrategyInstance(
            strat,
            client,
            symbol,
            backtest=False,
            config=cfg,
            risks=self._risks,
            risk_schema=reg.risks.get(strat.risk) if strat.risk else None,
            bus=self._bus,
        )
        store = persistence or FilePersistence(cfg.state_dir)
        store.init()
        return _Wiring(inst, store, state_key(symbol, strategy, exchange), cfg)

    async def _loop(
        self, session: LiveSession, wiring: _Wiring, clock: Clock, until: int | None, tick_ms: int
    ) -> AsyncIterator[SignalResult]:
        settle = wiring.config.live_settle_delay_ms
        while True:
            when = clock.now_ms() // tick_ms * tick_ms
            if until is not None and when >= until:
                return
            last = _latest(session.resume_after, session.seen_ms)
            if last is not None and when <= last:
                # a minute already watched (a restart, or the clock stepped back): never again
                clock.advanced(last)
                await clock.sleep_until(last + tick_ms + settle)
                continue
            steps, finished = await self._timed_tick(session, wiring, when)
            for step in steps:
                for result in step.results:
                    if isinstance(result, SignalResult) and result.action in YIELDED:
                        yield result
            if finished:
                return
            clock.advanced(when)
            await clock.sleep_until(when + tick_ms + settle)

    async def _timed_tick(
        self, session: LiveSession, wiring: _Wiring, when: int
    ) -> tuple[list[Transition], bool]:
        """One tick with its bookkeeping; a failing tick is reported and changes nothing more."""
        started = time.perf_counter()
        steps: list[Transition] = []
        finished = False
        try:
            finished = await self._tick(session, wiring, when, steps)
        except Exception as exc:
            session.tick_errors += 1
            await self._bus.error.emit(exc)
        session.ticks += 1
        session.last_tick_ms = when
        session.last_tick_wall_ms = int(time.time() * 1000)
        inst = wiring.inst
        await self._bus.performance.emit(
            PerformanceEvent(
                "live_tick",
                time.perf_counter() - started,
                session.symbol,
                session.strategy,
                inst.client.name,
                when,
                False,
            )
        )
        return steps, finished

    async def _tick(self, session: LiveSession, wiring: _Wiring, when: int, steps: list[Transition]) -> bool:
        """Every minute not watched yet, up to ``when``: the lifecycle decides, this persists,
        then adopts and reports. Returns whether the run is finished (drained).

        After a pause in ticking (a restart, a slow exchange, the clock stepping forward) an open or
        scheduled signal is watched over each minute it missed, in order, with the candles and
        prices an uninterrupted watch would have used, so the first hit wins at its own minute.
        Minutes without a signal are not replayed: a new signal is only ever asked for now.
        """
        inst = wiring.inst
        n = wiring.config.avg_price_candles_count
        first = self._first_unwatched(session, when)
        since, count = first - n * MINUTE_MS, (when - first) // MINUTE_MS + n
        fetched = await self._read_ahead(session, wiring, since, count)
        banded = fetched is not None and session.ahead is not None and session.ahead.banded
        if fetched is None:
            fetched = (await inst.client.fetch(inst.symbol, "1m", since, count)).to_candles()
        candles, refused, fresh = self._checked(session, wiring, fetched, when, banded=banded)
        bad = {p.since_ms for p in refused}
        for problem in fresh:
            await self._bus.error.emit(problem)
        for k, minute in enumerate(range(first, when + 1, MINUTE_MS)):
            present = minute == when
            window = candles[k : k + n]
            if (not present and session.state.flat) or (bad and any(c.timestamp in bad for c in window)):
                # nothing to watch in the past (the present may ask); or a refused candle is in
                # this minute's window: no decision is made on it, and time moves on
                session.seen_ms = minute
                continue
            step = await self._step(session, wiring, minute, window, present)
            steps.append(step)
            session.seen_ms = minute
        if session.unsaved_ms is not None and time.monotonic() - session.saved_at >= BOOKKEEPING_DELAY_S:
            try:
                self._flush(session, wiring)
            except PersistenceError as failure:
                # the record on disk is still a valid older one; the next write carries the change
                await self._bus.error.emit(failure)
        return session.stop_requested and session.state.flat

    async def _read_ahead(
        self, session: LiveSession, wiring: _Wiring, since: int, count: int
    ) -> list[Candle] | None:
        """The ``count`` candles from ``since`` out of a block fetched ahead, or ``None``: ask."""
        ahead = session.ahead
        if ahead is None:
            return None
        served = ahead.serve(since, count)
        if served is not None or since < ahead.retry_ms:
            return served
        # never ask for a candle the run cannot watch, nor one that has not closed for real
        end = min(
            since + (count + READ_AHEAD_MINUTES) * MINUTE_MS, int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
        )
        if ahead.until is not None:
            end = min(end, ahead.until)
        limit = (end - since) // MINUTE_MS
        if limit <= count:
            return None
        inst, cfg = wiring.inst, wiring.config
        try:
            arr = await inst.client.fetch(inst.symbol, "1m", since, limit)
        except Exception:
            arr = None  # this minute asks for its own candles: its request reports what is wrong
        # served only if every window passes the anomaly check its own request would make
        if arr is None or not anomaly_free(arr, cfg.get_candles_price_anomaly_threshold_factor):
            ahead.retry_ms = since + limit * MINUTE_MS
            return None
        ahead.since_ms, ahead.rows = since, arr.to_candles()
        band = cfg.candle_anomaly_band_percent
        up, down = 1 + band / 100, 1 - band / 100
        ahead.banded = 0 < band <= 100 and (
            float(arr.high.max()) <= float(arr.close.min()) * up
            and float(arr.low.min()) >= float(arr.close.max()) * down
        )
        return ahead.serve(since, count)

    def _first_unwatched(self, session: LiveSession, when: int) -> int:
        """The first minute to watch: ``when``, or earlier when a signal missed some minutes."""
        state = session.state
        watched = _latest(session.seen_ms, session.resume_after)
        if state.flat or watched is None or when - watched <= MINUTE_MS:
            return when
        row = state.pending or state.scheduled
        assert row is not None
        since = row.pending_at if state.pending is not None else row.scheduled_at
        # never before the signal existed: a signal closes only on candles after it opened
        return max(watched, since) + MINUTE_MS

    def _checked(
        self, session: LiveSession, wiring: _Wiring, candles: list[Candle], when: int, *, banded: bool = False
    ) -> tuple[list[Candle], list[CandleProblem], list[CandleProblem]]:
        """Refuse candles far outside their neighbours; keep acting on what was already seen.

        A candle whose high or low lies beyond ``candle_anomaly_band_percent`` of the median close
        of its neighbours is refused: no decision is made on a minute whose window holds it. A
        candle that differs from the values an earlier tick acted on for the same minute (a
        correction after it closed) is reported, and the values acted on are kept, so decisions
        stay consistent. Returns the candles to use, the refused ones, and the problems not
        reported before (each is reported once).
        """
        symbol = wiring.inst.symbol
        band = wiring.config.candle_anomaly_band_percent
        refused = band_outliers(candles, band, symbol=symbol) if band > 0 and not banded else []
        problems: list[CandleProblem] = list(refused)
        seen = session.seen_candles
        out: list[Candle] = []
        for c in candles:
            ts = c.timestamp
            before = seen.get(ts)
            if before is None:
                seen[ts] = c
                if ts > session.seen_last:
                    session.seen_last = ts
                else:
                    session.seen_ordered = False
            elif before is not c and before != c:  # the same minute, so this compares the values
                problems.append(
                    CandleProblem(
                        "the candle changed after the engine acted on it; the values acted on are kept",
                        symbol=symbol,
                        interval="1m",
                        since_ms=c.timestamp,
                    )
                )
                c = before
            out.append(c)
        horizon = when - 60 * MINUTE_MS  # a bounded memory of what was acted on and reported
        _forget_before(session, horizon)
        if session.reported:
            session.reported = {t for t in session.reported if t >= horizon}
        fresh = [p for p in problems if p.since_ms not in session.reported]
        session.reported.update(p.since_ms for p in fresh)
        session.data_errors += len(fresh)
        return out, refused, fresh

    async def _step(
        self, session: LiveSession, wiring: _Wiring, when: int, candles: list[Candle], present: bool
    ) -> Transition:
        """One watched minute: decide, persist, adopt, report (one place for all of it)."""
        inst = wiring.inst
        may_open = present and not (session.stop_requested or session.paused) and session.frozen is None
        closing = session.close_requested and present
        step = await inst.live_tick(session.state, when, candles, may_open=may_open, close_now=closing)
        if closing:  # done by this step, so the record written with it no longer asks for it
            session.close_requested = False
        if self._bookkeeping_only(inst, step):
            session.unsaved_ms = when  # written with the next record, or once it is due (end of tick)
        elif step.persist != "none":
            try:
                self._persist(session, wiring, when, step)
            except PersistenceError as failure:
                if step.persist_required:
                    session.close_requested = closing
                    raise  # not adopted: the previous state stays in force and the tick is retried
                await self._bus.error.emit(failure)
        session.state = step.state
        session.totals = session.totals.after(step.results)
        inst.apply_risk(step)
        last = step.last_signal_result
        if last is not None:
            session.last_result = last.flat()
        await announce(self._bus, step, session.record)
        await run_hooks(self._bus, inst, step)
        return step

    @staticmethod
    def _bookkeeping_only(inst: StrategyInstance, step: Transition) -> bool:
        """A step whose only change is the open signal's peak and fall (item 41): it may wait.

        Losing it to a crash changes nothing: the restarted run watches the minutes after the
        record's ``lastSeenMs`` again, with the same candles, and finds the same extremes. A step
        with position events or hooks, or of a managed position (whose callbacks a re-watch would
        run again), is written before it is adopted, as every other change.
        """
        return step.persist == "lazy" and not (step.notices or step.hooks or inst.manages)

    def _flush(self, session: LiveSession, wiring: _Wiring) -> None:
        """Write the bookkeeping changes still waiting (atomic, not fsynced), if there are any."""
        when = session.unsaved_ms
        if when is not None:  # the record the change's own write would have been (lastSeenMs too)
            state, last = session.state, session.last_result
            self._write(session, wiring, when, state, last, durable=False, seen=when)

    def _persist(self, session: LiveSession, wiring: _Wiring, when: int, step: Transition) -> None:
        last = step.last_signal_result
        self._write(
            session,
            wiring,
            when,
            step.state,
            last.flat() if last is not None else session.last_result,
            durable=step.persist == "durable",
            totals=session.totals.after(step.results),
        )

    def _save_controls(self, session: LiveSession) -> None:
        """Write the controls (drain, pause, close) into the record now: a restart keeps them."""
        wiring = session.wiring
        if wiring is None:
            return  # not running: the run persists them when it starts
        when = _latest(session.persisted_ms, session.unsaved_ms)
        self._write(session, wiring, when, session.state, session.last_result, durable=True)

    def _write(
        self,
        session: LiveSession,
        wiring: _Wiring,
        when: int | None,
        state: SignalState,
        last_row: dict[str, Any] | None,
        *,
        durable: bool,
        drain: bool | None = None,
        totals: Totals | None = None,
        seen: int | None = None,
    ) -> None:
        record: dict[str, Any] = {
            "version": STATE_VERSION,
            "symbol": wiring.inst.symbol,
            "strategyName": wiring.inst.strategy.name,
            "exchangeName": wiring.inst.client.name,
            "pending": state.pending.to_json() if state.pending else None,
            "scheduled": state.scheduled.to_json() if state.scheduled else None,
            "lastPendingId": state.last_pending_id,
            "lastBucket": state.last_bucket,
            "milestones": sorted(state.milestones),
            "lastResult": last_row,
            "lastTickMs": when,
            "lastSeenMs": _latest(session.seen_ms, when) if seen is None else seen,
            "drain": session.stop_requested if drain is None else drain,
            "totals": session.totals.to_json() if totals is None else totals.to_json(),
            "paused": session.paused,
            "closeRequested": session.close_requested,
            "updatedAt": iso(int(time.time() * 1000)),
        }
        wiring.store.write(wiring.key, record, durable=durable)
        session.persisted_ms = when
        session.unsaved_ms = None  # the record holds the whole state, waiting bookkeeping included
        session.saved_at = time.monotonic()

    async def _restore(self, session: LiveSession, wiring: _Wiring) -> None:
        """Item 43: restore the open/scheduled signal and the guards, without calling get_signal."""
        store, key = wiring.store, wiring.key
        if store.quarantined(key):
            session.frozen = (
                f"state moved aside ({', '.join(store.quarantined(key))}); resolve it before new signals"
            )
            await self._bus.error.emit(CorruptStateError(session.frozen))
        try:
            record = store.read(key)
        except CorruptStateError as exc:
            session.frozen = str(exc)
            await self._bus.error.emit(exc)
            return
        if not record:
            return
        inst = wiring.inst
        check_own_record(record, key, inst.symbol, inst.strategy.name, inst.client.name)
        try:
            restored = parse_record(record)
        except (KeyError, TypeError, ValueError) as exc:
            aside = store.quarantine(key, str(exc))
            session.frozen = (
                f"state {key} is not a valid live record ({exc}); moved aside to {aside}. No new signal "
                "opens for this key until you inspect it and delete or restore it."
            )
            await self._bus.error.emit(CorruptStateError(session.frozen))
            return
        state = restored.state
        session.state = state
        session.last_result = restored.last_result
        session.resume_after = session.persisted_ms = restored.last_tick_ms
        session.seen_ms = restored.last_seen_ms
        session.stop_requested = restored.drain
        session.paused = restored.paused
        session.close_requested = restored.close_requested
        session.totals = restored.totals
        if state.pending is not None:
            inst = wiring.inst
            inst.apply_risk(Transition(state, reserve=state.pending.to_json()))
            await self._bus.hook(inst.callback("on_active"), inst.symbol, state.pending)

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

    _CONTROLS: ClassVar[dict[str, tuple[str, bool]]] = {
        "drain": ("stop_requested", True),
        "pause": ("paused", True),
        "resume": ("paused", False),
        "close": ("close_requested", True),
    }

    def _control(self, symbol: str, strategy: str, action: str) -> LiveSession:
        session = self._sessions.setdefault((symbol, strategy), LiveSession(symbol, strategy))
        name, value = self._CONTROLS[action]
        changed = getattr(session, name) != value
        setattr(session, name, value)
        if session.wiring is None:
            session.pending[name] = value  # applied (and persisted) when the next run starts
        elif changed:  # asking again for what is in force already changes nothing to write
            self._save_controls(session)
        if action == "drain" and session.phase == "running":
            session.phase = "draining"
        return session

    async def _announce(self, session: LiveSession, action: str) -> None:
        await self._bus.control.emit(
            ControlEvent(action, session.symbol, session.strategy, session.exchange, int(time.time() * 1000))
        )

    def request_stop(self, symbol: str, strategy: str) -> None:
        """Drain, without waiting (see :meth:`stop`); persisted, so a restart comes back draining."""
        self._control(symbol, strategy, "drain")

    async def stop(self, symbol: str, strategy: str) -> None:
        """Drain: no new signal; an open one closes first, a scheduled one activates and closes or
        is cancelled. Idempotent; returns once the request is recorded (and durable, if running)."""
        await self._announce(self._control(symbol, strategy, "drain"), "drain")

    async def pause(self, symbol: str, strategy: str) -> None:
        """No new signal until :meth:`resume`; an open or scheduled one is still watched. Persisted."""
        await self._announce(self._control(symbol, strategy, "pause"), "pause")

    async def resume(self, symbol: str, strategy: str) -> None:
        """New signals again after :meth:`pause`. Persisted."""
        await self._announce(self._control(symbol, strategy, "resume"), "resume")

    async def close_pending(self, symbol: str, strategy: str) -> None:
        """Close the open position at the next tick's price (reason ``closed``), or cancel the
        scheduled signal (reason ``user``). Persisted until the tick that does it."""
        await self._announce(self._control(symbol, strategy, "close"), "close")

    # ------------------------------------------------------------------ what happened
    def get_status(self, symbol: str, strategy: str) -> dict[str, Any]:
        return self.status_view(symbol, strategy).to_json()

    def status_view(self, symbol: str, strategy: str) -> LiveStatus:
        """The session's status now, rendered only when read (``to_json`` is ``get_status``)."""
        return LiveStatus(self._sessions.get((symbol, strategy)) or LiveSession(symbol, strategy))

    def _record(self, symbol: str, strategy: str) -> RunRecord:
        s = self._sessions.get((symbol, strategy))
        return s.record if s is not None else RunRecord(symbol, strategy)

    async def get_data(self, symbol: str, strategy: str) -> dict[str, Any]:
        return self._record(symbol, strategy).stats()

    def get_signals(self, symbol: str, strategy: str) -> list[dict[str, Any]]:
        return self._record(symbol, strategy).signals()

    async def get_report(self, symbol: str, strategy: str, columns: Sequence[str] | None = None) -> str:
        cfg = self._config()
        return self._record(symbol, strategy).report(
            title=f"Live Report: {strategy}",
            columns=columns,
            max_rows=cfg.max_live_markdown_rows,
            show_note=cfg.report_show_signal_note,
        )

    async def dump(self, symbol: str, strategy: str, path: str | os.PathLike[str] | None = None) -> Path:
        report = await self.get_report(symbol, strategy)
        return self._record(symbol, strategy).dump(report, Path(path or "./dump/live"), "live")

    def list(self) -> list[dict[str, str]]:
        return [
            {"symbol": s, "strategyName": st, "status": sess.phase}
            for (s, st), sess in sorted(self._sessions.items())
        ]


class StateConflictError(ConfigurationError):
    """The state directory cannot be used by this trader; nothing in it was changed."""


def check_state(store: PersistenceAdapter, symbol: str, strategy: str, exchange: str) -> None:
    """Refuse a state this trader must not touch: a record from a newer engine version, one that
    names another trader, or another trader's open or scheduled signal in the same directory
    (a restart with another strategy would silently abandon it). Raises :class:`StateConflictError`.
    """
    ours = state_key(symbol, strategy, exchange)
    for key in store.keys("live/"):
        if key == ours:
            continue  # read (and checked by check_own_record) when the run restores it
        try:
            record = store.read(key)
        except CorruptStateError:
            continue  # moved aside; the run that owns it reports it
        if not record:
            continue
        named = (record.get("symbol"), record.get("strategyName"), record.get("exchangeName"))
        if record.get("pending") or record.get("scheduled"):
            raise StateConflictError(
                f"the state directory holds an open or scheduled signal of another trader ({key}: "
                f"{':'.join(map(str, named))}); this {symbol}:{strategy}:{exchange} would abandon it. Use "
                "another state directory, or drain that trader first; nothing was changed"
            )


def check_own_record(record: Mapping[str, Any], key: str, symbol: str, strategy: str, exchange: str) -> None:
    """Refuse our own record if a newer engine wrote it, or if it names another trader."""
    version = record.get("version")
    if isinstance(version, int) and version > STATE_VERSION:
        raise StateConflictError(
            f"state {key} was written by a newer version of the engine (record version {version}; this "
            f"one reads up to {STATE_VERSION}); it is kept as it is: run the newer version"
        )
    named = (record.get("symbol"), record.get("strategyName"), record.get("exchangeName"))
    if None not in named and named != (symbol, strategy, exchange):
        raise StateConflictError(
            f"state {key} belongs to {':'.join(map(str, named))}, not {symbol}:{strategy}:{exchange}; "
            "it is kept as it is"
        )


def _latest(*stamps: int | None) -> int | None:
    known = [s for s in stamps if s is not None]
    return max(known) if known else None


class CandleProblem(CandleDataError):
    """A live candle the engine will not trade on (``refused``) or that changed after it was used."""

    def __init__(
        self, message: str, *, symbol: str, interval: str, since_ms: int, refused: bool = False
    ) -> None:
        super().__init__(message, symbol=symbol, interval=interval, since_ms=since_ms)
        self.refused = refused


def _forget_before(session: LiveSession, horizon: int) -> None:
    """Drop the candles acted on before ``horizon``: from the front while they were inserted in
    time order (every tick adds newer minutes), otherwise by a full pass that restores the order."""
    seen = session.seen_candles
    if session.seen_ordered:
        stale = []
        for ts in seen:
            if ts >= horizon:
                break
            stale.append(ts)
        for ts in stale:
            del seen[ts]
        return
    session.seen_candles = {
        ts: c for ts, c in sorted(seen.items(), key=lambda item: item[0]) if ts >= horizon
    }
    session.seen_ordered = True


def band_outliers(
    candles: Sequence[Candle], band_percent: float, *, symbol: str, reach: int = 5
) -> list[CandleProblem]:
    """Candles whose high or low is beyond ``band_percent`` of the median close of the candles
    around them (``reach`` on each side): up and down wicks alike."""
    closes = [c.close for c in candles]
    out: list[CandleProblem] = []
    up, down = 1 + band_percent / 100, 1 - band_percent / 100
    if closes and (
        max(c.high for c in candles) <= min(closes) * up and min(c.low for c in candles) >= max(closes) * down
    ):
        return out  # every median lies between the lowest and the highest close: nothing is beyond
    for i, c in enumerate(candles):
        around = sorted(closes[max(0, i - reach) : i + reach + 1])
        median = around[len(around) // 2]
        if c.high > median * (1 + band_percent / 100) or c.low < median * (1 - band_percent / 100):
            out.append(
                CandleProblem(
                    f"candle at {iso(c.timestamp)} (high {c.high}, low {c.low}) is beyond {band_percent:g} % "
                    f"of the median close {median} around it; no decision is made on it",
                    symbol=symbol,
                    interval="1m",
                    since_ms=c.timestamp,
                    refused=True,
                )
            )
    return out


#: The actions that change a trader's totals.
_COUNTED = frozenset({"opened", "closed", "cancelled"})


@dataclass(frozen=True, slots=True)
class Totals:
    """What a trader did over its whole life: counts and realised PnL, kept in its live record."""

    opened: int = 0
    closed: int = 0
    cancelled: int = 0
    realized_pnl_percentage: float = 0.0
    realized_pnl_cost: float = 0.0

    def after(self, results: Sequence[Any]) -> Totals:
        for r in results:
            if r.action in _COUNTED:
                break
        else:
            return self  # most minutes: nothing opened, closed or cancelled
        opened, closed, cancelled = self.opened, self.closed, self.cancelled
        pct, cost = self.realized_pnl_percentage, self.realized_pnl_cost
        for r in results:
            if r.action == "opened":
                opened += 1
            elif r.action == "cancelled":
                cancelled += 1
            elif r.action == "closed":
                closed += 1
                pct += r.pnl.pnl_percentage
                cost += r.pnl.pnl_cost
        return Totals(opened, closed, cancelled, pct, cost)

    def to_json(self) -> dict[str, Any]:
        return {
            "signalsOpened": self.opened,
            "signalsClosed": self.closed,
            "signalsCancelled": self.cancelled,
            "realizedPnlPercentage": self.realized_pnl_percentage,
            "realizedPnlCost": self.realized_pnl_cost,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Totals:
        counts = [_typed(data, k, int, 0) for k in ("signalsOpened", "signalsClosed", "signalsCancelled")]
        money = [
            float(_typed(data, k, (int, float), 0.0)) for k in ("realizedPnlPercentage", "realizedPnlCost")
        ]
        if any(c < 0 for c in counts) or not all(math.isfinite(m) for m in money):
            raise ValueError(f"totals out of range: {dict(data)}")
        return Totals(counts[0], counts[1], counts[2], money[0], money[1])


@dataclass(frozen=True, slots=True)
class RestoredRecord:
    state: SignalState
    last_result: dict[str, Any] | None
    last_tick_ms: int | None
    last_seen_ms: int | None
    drain: bool
    paused: bool
    close_requested: bool
    totals: Totals


def _typed(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """``data[key]`` if it has the ``kind`` a live record promises (``default`` if absent)."""
    value = data.get(key, default)
    if value is None or value is default:
        return value
    if isinstance(value, bool) and kind is not bool:
        raise TypeError(f"{key} must be {kind}, got a boolean")
    if not isinstance(value, kind):
        raise TypeError(f"{key} must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def parse_record(record: Mapping[str, Any]) -> RestoredRecord:
    """A persisted live record, checked as strictly as the engine checks what it writes.

    Raises ``KeyError``/``TypeError``/``ValueError`` naming what is wrong (the caller moves the
    record aside and freezes the key).
    """
    pending = _typed(record, "pending", dict, None)
    scheduled = _typed(record, "scheduled", dict, None)
    rows = [SignalRow.from_json(r) for r in (pending, scheduled) if r]
    for row in rows:
        problems = row_problems(row)
        if problems:
            raise ValueError(f"signal {row.id}: {'; '.join(problems)}")
    milestones = _typed(record, "milestones", list, [])
    if not all(isinstance(m, str) for m in milestones):
        raise TypeError("milestones must be a list of strings")
    state = SignalState(
        pending=rows[0] if pending else None,
        scheduled=rows[-1] if scheduled else None,
        last_bucket=_typed(record, "lastBucket", int, None),
        last_pending_id=_typed(record, "lastPendingId", str, None),
        milestones=frozenset(milestones),
    )
    return RestoredRecord(
        state=state,
        last_result=_typed(record, "lastResult", dict, None),
        last_tick_ms=_typed(record, "lastTickMs", int, None),
        last_seen_ms=_typed(record, "lastSeenMs", int, None),
        drain=bool(_typed(record, "drain", bool, False)),
        paused=bool(_typed(record, "paused", bool, False)),
        close_requested=bool(_typed(record, "closeRequested", bool, False)),
        totals=Totals.from_json(_typed(record, "totals", dict, {})),
    )
