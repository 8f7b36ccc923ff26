"""The signal lifecycle every mode drives: ask for a signal, open or schedule it, watch it, close it.

Backtest and live share everything here: throttling, the whipsaw guard, validation, risk,
row building, peak/drawdown tracking, PnL and result building. Every transition is a pure
step: it takes the current :class:`SignalState` and returns a :class:`Transition` holding the
next state together with the results, hooks, risk changes and errors it produced, as values.
Nothing here changes a state in place or emits an event. The drivers decide what to do with a
transition: live persists it first and adopts it only once it is durable (a failed write
changes nothing, so there is nothing to roll back); backtest adopts it at once and moves time
on. Backtest resolves an open signal over its candles in one vectorised pass
(:meth:`StrategyInstance.backtest_episode`), live advances it one tick at a time
(:meth:`StrategyInstance.live_tick`). Item numbers refer to docs/ENGINE.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar, cast, get_args

import numpy as np

from . import context as ctxmod
from .candles import MINUTE_MS, Candle, candle_vwap, from_ms
from .config import EngineConfig
from .errors import BacktestKitError, SignalValidationError
from .events import CommitEvent, EventBus, PositionEvent, RiskEvent
from .market import ExchangeClient, MinuteFeed
from .pnl import Pnl
from .position import FULL_PARTIAL_CLOSE, Commit, PositionDesk, commit_json
from .registry import RiskSchema, StrategySchema
from .reports import RunRecord
from .risks import RiskBook
from .signals import (
    ActiveResult,
    AnyResult,
    CancelledResult,
    CancelReason,
    ClosedResult,
    CloseReason,
    Entry,
    IdleResult,
    OpenedResult,
    ScheduledResult,
    SignalDto,
    SignalResult,
    SignalRow,
    build,
    new_id,
    updated,
    validate_signal,
)

log = logging.getLogger("backtest_kit")
# the ufunc reductions themselves: np.max/np.min add a Python wrapper per call (a few per signal)
_MAX = np.maximum.reduce
_MIN = np.minimum.reduce
_T = TypeVar("_T")
_CLOSE_REASONS: dict[str, CloseReason] = {r: r for r in get_args(CloseReason)}
_CANCEL_REASONS: dict[str, CancelReason] = {r: r for r in get_args(CancelReason)}


class SignalGenerationError(BacktestKitError):
    """``get_signal`` raised, timed out or returned something that is not a signal."""


class Outcome(NamedTuple):
    """Where a watched signal ended: candle index/time, reason and price."""

    timestamp: int
    reason: str
    price: float
    tracking: dict[str, float] | None = None  # peak/fall fields the watched candles changed
    record_excursion: bool = True  # False: the close point does not update peak/fall (item 11)


class _Keep:
    """The type of :data:`KEEP`: "leave this field as it is" in :meth:`SignalState.evolve`."""


KEEP = _Keep()


class SignalState(NamedTuple):
    """Everything one ``symbol:strategy`` remembers between ticks (and live persists).

    This and the other per-step values (:class:`Transition`, :class:`Outcome`) are named tuples:
    immutable like frozen dataclasses, but made without a ``__setattr__`` call per field (a
    backtest makes several per signal, a refusing strategy several per minute).
    """

    pending: SignalRow | None = None
    scheduled: SignalRow | None = None
    last_bucket: int | None = None  # the throttle: the interval bucket last asked in
    last_pending_id: str | None = None  # the whipsaw guard: the id last opened
    milestones: frozenset[str] = frozenset()  # position events already sent for the open signal

    @property
    def flat(self) -> bool:
        return self.pending is None and self.scheduled is None

    def evolve(
        self,
        *,
        pending: SignalRow | _Keep | None = KEEP,
        scheduled: SignalRow | _Keep | None = KEEP,
        last_bucket: int | _Keep | None = KEEP,
        last_pending_id: str | _Keep | None = KEEP,
        milestones: frozenset[str] | _Keep = KEEP,
    ) -> SignalState:
        """A copy with some fields changed (``dataclasses.replace``, without its per-call
        introspection: the engine makes a few per signal)."""
        return SignalState(
            self.pending if isinstance(pending, _Keep) else pending,
            self.scheduled if isinstance(scheduled, _Keep) else scheduled,
            self.last_bucket if isinstance(last_bucket, _Keep) else last_bucket,
            self.last_pending_id if isinstance(last_pending_id, _Keep) else last_pending_id,
            self.milestones if isinstance(milestones, _Keep) else milestones,
        )


#: A user callback to run once the transition is adopted: (callback name, arguments).
Hook = tuple[str, tuple[Any, ...]]
#: How a live driver must store a transition: not at all, atomically, or atomically and fsynced.
Persist = Literal["none", "lazy", "durable"]


class Transition(NamedTuple):
    """One step of the lifecycle, as values: the next state and everything the step produced.

    ``reserve`` is the risk slot to take (the signal's JSON) and ``release`` frees it; they are
    applied with the state, so a step that is never adopted holds no slot. ``errors`` and
    ``risk_events`` are reported by the driver; ``resume_after`` (backtest) is the minute the
    signal ended, after which time moves on.
    """

    state: SignalState
    results: tuple[AnyResult, ...] = ()
    hooks: tuple[Hook, ...] = ()
    errors: tuple[BaseException, ...] = ()
    risk_events: tuple[RiskEvent, ...] = ()
    reserve: dict[str, Any] | None = None
    release: bool = False
    persist: Persist = "none"
    persist_required: bool = True  # False: a failed write is reported and the step adopted anyway
    resume_after: int | None = None
    notices: tuple[PositionEvent | CommitEvent, ...] = ()  # position events, sent once adopted

    @property
    def last_signal_result(self) -> SignalResult | None:
        """The result a live record keeps as ``lastResult`` (scheduled, opened, closed, cancelled)."""
        for result in reversed(self.results):
            if isinstance(result, SignalResult) and result.action != "active":
                return result
        return None


#: Callbacks that make the engine play an open position candle by candle (POSITION.md item 2).
POSITION_CALLBACKS = frozenset({"on_active_ping", "on_partial_profit", "on_partial_loss", "on_breakeven"})
MILESTONE_LEVELS = tuple(range(10, 101, 10))


class StrategyInstance:
    """One ``symbol:strategy`` on one exchange with its collaborators; it holds no mutable state."""

    def __init__(
        self,
        strategy: StrategySchema,
        client: ExchangeClient,
        symbol: str,
        *,
        backtest: bool,
        config: EngineConfig,
        risks: RiskBook,
        risk_schema: RiskSchema | None,
        bus: EventBus,
        frame_name: str = "",
    ) -> None:
        self.bus = bus
        #: Whether every candle of an open position is played (callbacks or listeners want it).
        self.manages = bool(POSITION_CALLBACKS & set(strategy.callbacks)) or bus.position_listeners
        #: The position being managed right now (the context-explicit commits reach it here).
        self.desk: PositionDesk | None = None
        self.strategy = strategy
        self.client = client
        self.symbol = symbol
        self.backtest = backtest
        self.config = config
        self.frame_name = frame_name
        self.risks = risks
        self.risk_schema = risk_schema
        self.interval_ms = strategy.interval_ms
        self.risk_key = f"{strategy.name}_{client.name}_{symbol}"

    def callback(self, name: str) -> Callable[..., Any] | None:
        return self.strategy.callbacks.get(name)

    # ------------------------------------------------------------------ risk slots
    def apply_risk(self, step: Transition) -> None:
        """Take or free the risk slot a transition asks for (when the driver adopts it)."""
        schema = self.risk_schema
        if schema is None:
            return
        if step.release:
            self.risks.release(schema.name, self.risk_key)
        if step.reserve is not None:
            self.risks.reserve(schema.name, self.risk_key, step.reserve)

    # ------------------------------------------------------------------ asking for a signal
    def throttled(self, state: SignalState, when_ms: int) -> bool:
        return when_ms // self.interval_ms * self.interval_ms == state.last_bucket

    def next_bucket(self, when_ms: int) -> int:
        return (when_ms // self.interval_ms + 1) * self.interval_ms

    async def ask(
        self, state: SignalState, when_ms: int, price: float, feed: MinuteFeed | None = None
    ) -> Transition:
        """Items 15-18 and 20: call ``get_signal`` for this bucket; schedule, open, or stay idle."""
        asked = state.evolve(last_bucket=when_ms // self.interval_ms * self.interval_ms)
        idle = (self.idle_result(when_ms, price),) if not self.backtest else ()
        try:
            dto = await self._get_signal(when_ms, price, feed)
        except (SignalValidationError, SignalGenerationError) as exc:
            return Transition(asked, idle, errors=(exc,), persist="durable", persist_required=False)
        if dto is None or (dto.id is not None and dto.id == state.last_pending_id):
            # nothing, or the whipsaw guard: the signal last opened, again
            return Transition(asked, idle, persist="durable", persist_required=False)
        row = self._build_row(dto, when_ms, price)
        if row.is_scheduled:  # a limit order reserves its risk slot only when it activates
            rejected = await self._risk_rejection(row, when_ms, price)
            if rejected is not None:
                return self._rejected(state, rejected, idle)
            scheduled = asked.evolve(scheduled=row)
            return Transition(
                scheduled,
                (self.scheduled_result(row, when_ms, price),),
                (("on_schedule", (self.symbol, row)),),
                persist="durable",
            )
        rejected = await self._risk_rejection(row, when_ms, price)
        if rejected is not None:
            return self._rejected(state, rejected, idle)
        opened = asked.evolve(pending=row, last_pending_id=row.id)
        return Transition(
            opened,
            (self.opened_result(row, when_ms, price),),
            (("on_open", (self.symbol, row)),),
            reserve=row.to_json() if self.risk_schema is not None else None,
            persist="durable",
        )

    def _rejected(self, state: SignalState, event: RiskEvent, idle: tuple[AnyResult, ...]) -> Transition:
        # a risk rejection rolls the throttle back (item 18): ask again on the next tick
        return Transition(state.evolve(last_bucket=None), idle, risk_events=(event,))

    async def _get_signal(self, when_ms: int, price: float, feed: MinuteFeed | None) -> SignalDto | None:
        """The strategy's answer, validated; raises the two errors a bad answer is reported as."""
        token = ctxmod.current.set(
            ctxmod.ExecutionContext(self.symbol, when_ms, self.backtest, self.client, feed)
        )
        try:
            raw: object = await call_with_timeout(
                self.strategy.get_signal(self.symbol, from_ms(when_ms), price),
                self.config.max_signal_generation_seconds,
            )
        except TimeoutError as exc:
            raise SignalGenerationError(
                f"strategy {self.strategy.name!r} get_signal took longer than "
                f"{self.config.max_signal_generation_seconds} s"
            ) from exc
        except (SignalValidationError, SignalGenerationError):
            raise
        except Exception as exc:
            raise SignalGenerationError(
                f"strategy {self.strategy.name!r} get_signal raised: {exc!r}"
            ) from exc
        finally:
            ctxmod.current.reset(token)
        if raw is None:
            return None
        try:
            dto = raw if isinstance(raw, SignalDto) else _to_dto(raw, self.strategy.name)
        except SignalGenerationError:
            raise
        except Exception as exc:
            raise SignalGenerationError(
                f"strategy {self.strategy.name!r} get_signal returned an invalid signal: {exc!r}"
            ) from exc
        if dto.symbol is not None and dto.symbol != self.symbol:
            raise SignalGenerationError(
                f"Symbol mismatch: signal for {dto.symbol!r} returned while running {self.symbol!r}"
            )
        validate_signal(dto, symbol=self.symbol, current_price=price, config=self.config)
        return dto

    def _build_row(self, dto: SignalDto, when_ms: int, price: float) -> SignalRow:
        cfg = self.config
        life = dto.minute_estimated_time
        long = dto.position == "long"
        if dto.price_open is None:
            raw_open, pending_at, scheduled = price, when_ms, False
        elif (long and price <= dto.price_open) or (not long and price >= dto.price_open):
            raw_open, pending_at, scheduled = dto.price_open, when_ms, False
        else:
            raw_open, pending_at, scheduled = dto.price_open, 0, True
        cost = dto.cost or cfg.position_entry_cost
        row = build(
            SignalRow,
            id=dto.id or new_id(),
            symbol=self.symbol,
            strategy_name=self.strategy.name,
            exchange_name=self.client.name,
            position=dto.position,
            price_open=raw_open,
            price_take_profit=dto.price_take_profit,
            price_stop_loss=dto.price_stop_loss,
            minute_estimated_time=cfg.max_signal_lifetime_minutes if life is None else life,
            scheduled_at=when_ms,
            pending_at=pending_at,
            note=dto.note or self.strategy.note,
            cost=cost,
            multiplier=dto.multiplier if dto.multiplier is not None else cfg.signal_leverage_multiplier,
            isolated=dto.isolated if dto.isolated is not None else cfg.signal_isolated_margin,
            is_scheduled=scheduled,
            entries=(build(Entry, price=raw_open, cost=cost, timestamp=when_ms),),  # the opening entry
            peak_price=raw_open,
            peak_pnl=0.0,
            fall_price=raw_open,
            fall_pnl=0.0,
        )
        if scheduled:
            return row
        # item 6b.1 in place (the row is not shared yet): fall starts at the cost of entering
        object.__setattr__(row, "fall_pnl", self.pnl_at(row, raw_open))
        return row

    def start_tracking(self, row: SignalRow, pending_at: int) -> SignalRow:
        """Item 6b.1: peak at the entry with 0, fall at the entry with the cost of entering."""
        po = row.price_open
        return updated(
            row,
            {
                "pending_at": pending_at,
                "peak_price": po,
                "peak_pnl": 0.0,
                "fall_price": po,
                "fall_pnl": self.pnl_at(row, po),
            },
        )

    async def _risk_rejection(self, row: SignalRow, when_ms: int, price: float) -> RiskEvent | None:
        """Item 34: ``None`` when the risk profile accepts ``row``, else the event saying why."""
        schema = self.risk_schema
        if schema is None:
            return None
        signal = row.to_json()
        payload = {
            "symbol": self.symbol,
            "currentSignal": signal,
            "strategyName": self.strategy.name,
            "exchangeName": self.client.name,
            "frameName": self.frame_name,
            "currentPrice": price,
            "timestamp": when_ms,
        }
        note = await self.risks.check(schema, payload)
        if note is None:
            return None
        return RiskEvent(
            self.symbol,
            self.strategy.name,
            self.client.name,
            schema.name,
            note,
            price,
            when_ms,
            signal,
            len(self.risks.active(schema.name)),
            self.backtest,
        )

    async def activate(self, state: SignalState, when_ms: int, vwap: float) -> Transition:
        """A scheduled signal reached its price: risk check at ``priceOpen``, then open (or cancel)."""
        row = state.scheduled
        assert row is not None
        rejected = await self._risk_rejection(row, when_ms, row.price_open)
        if rejected is not None:
            cancelled = self.cancelled_result(row, Outcome(when_ms, "user", vwap))
            return Transition(
                state.evolve(scheduled=None),
                (cancelled,),
                (("on_cancel", (self.symbol, row)),),
                risk_events=(rejected,),
                persist="durable",
                resume_after=when_ms,
            )
        opened_row = self.start_tracking(updated(row, {"is_scheduled": False}), when_ms)
        return Transition(
            state.evolve(scheduled=None, pending=opened_row, last_pending_id=opened_row.id),
            (self.opened_result(opened_row, when_ms, row.price_open),),
            (("on_open", (self.symbol, opened_row)),),
            reserve=opened_row.to_json() if self.risk_schema is not None else None,
            persist="durable",
        )

    def close(self, state: SignalState, outcome: Outcome) -> Transition:
        row = state.pending
        assert row is not None
        closed = self.closed_result(row, outcome)
        return Transition(
            state.evolve(pending=None, milestones=frozenset()),
            (closed,),
            (("on_close", (self.symbol, closed.signal, closed.pnl)),),
            release=True,
            persist="durable",
            resume_after=outcome.timestamp,
        )

    def cancel(self, state: SignalState, outcome: Outcome) -> Transition:
        row = state.scheduled
        assert row is not None
        return Transition(
            state.evolve(scheduled=None),
            (self.cancelled_result(row, outcome),),
            (("on_cancel", (self.symbol, row)),),
            persist="durable",
            resume_after=outcome.timestamp,
        )

    # ------------------------------------------------------------------ backtest: one signal's episode
    async def backtest_episode(
        self, state: SignalState, feed: MinuteFeed, frame_end_ms: int
    ) -> AsyncIterator[Transition]:
        """Items 21, 22 and 24: from a just scheduled or opened signal to its end, step by step."""
        activated = False
        if state.scheduled is not None:
            verdict, ts, at = await self.resolve_scheduled(feed, state.scheduled, frame_end_ms)
            if verdict != "activate":
                yield self.cancel(state, Outcome(ts, verdict, at))
                return
            step = await self.activate(state, ts, float(feed.vwap[feed.index(ts)]))
            yield step
            state = step.state
            if state.pending is None:  # the risk profile refused at activation
                return
            activated = True
        assert state.pending is not None
        if self.manages:
            row, outcome = await self.resolve_managed(feed, state.pending, frame_end_ms, activated=activated)
        else:
            row, outcome = await self.resolve_pending(feed, state.pending, frame_end_ms, activated=activated)
        yield self.close(state.evolve(pending=row), outcome)

    # ------------------------------------------------------------------ live: one tick
    async def _live_manage(self, state: SignalState, row: SignalRow, when_ms: int, vwap: float) -> Transition:
        """A tick of an open managed position: the same candle step as a backtest, its events
        and commits kept as values (sent once the new row is durable)."""
        desk = PositionDesk(row, self.config, when_ms)
        marks = set(state.milestones)
        sink = _Collect()
        await self.manage(desk, marks, when_ms, vwap, None, sink)
        new = desk.row
        active = build(ActiveResult, signal=new, **self._meta(when_ms, vwap))
        if sink.commits:
            persist: Persist = "durable"
        else:
            persist = "lazy" if new != row or marks != state.milestones else "none"
        return Transition(
            state.evolve(pending=new, milestones=frozenset(marks)),
            (active,),
            persist=persist,
            notices=(*sink.events, *sink.commits),
        )

    async def live_tick(
        self,
        state: SignalState,
        when_ms: int,
        candles: list[Candle],
        *,
        may_open: bool,
        close_now: bool = False,
    ) -> Transition:
        """Items 23 and 25, and asking when idle (only if ``may_open``): one minute of live mode.

        ``close_now`` (a manual close) closes the open position at this tick's price with reason
        ``closed``, or cancels the scheduled one with reason ``user``.
        """
        vwap = candle_vwap(candles)
        if close_now and state.pending is not None:
            return self.close(state, Outcome(when_ms, "closed", vwap))
        if close_now and state.scheduled is not None:
            return self.cancel(state, Outcome(when_ms, "user", vwap))
        if state.pending is not None:
            row = state.pending
            outcome = self.step_pending(row, when_ms, vwap, candles[-1])
            if outcome is not None:
                return self.close(state, outcome)
            if self.manages:
                return await self._live_manage(state, row, when_ms, vwap)
            # one price moves the peak or the fall only beyond them and the entry (track_update's
            # own conditions, checked here without its numpy calls on most minutes)
            po_eff = row.open_eff
            beyond = (
                (vwap - po_eff > 0 and vwap > row.peak_price) or (vwap - po_eff < 0 and vwap < row.fall_price)
                if row.is_long
                else (po_eff - vwap > 0 and vwap < row.peak_price)
                or (po_eff - vwap < 0 and vwap > row.fall_price)
            )
            update = self.track_update(row, [vwap]) if beyond else None
            if update:
                row = updated(row, update)
            active = build(ActiveResult, signal=row, **self._meta(when_ms, vwap))
            # peak/drawdown bookkeeping: atomic (a crash keeps it) but not fsynced, since losing
            # the latest extreme to a power cut changes statistics, not positions
            return Transition(state.evolve(pending=row), (active,), persist="lazy" if update else "none")
        if state.scheduled is not None:
            outcome = self.step_scheduled(state.scheduled, when_ms, vwap)
            if outcome is None:
                return Transition(state)
            if outcome.reason == "activate":
                return await self.activate(state, when_ms, vwap)
            return self.cancel(state, outcome)
        if not may_open or self.throttled(state, when_ms):
            return Transition(state, (self.idle_result(when_ms, vwap),))
        return await self.ask(state, when_ms, vwap)

    # ------------------------------------------------------------------ prices and results
    def pnl_at(self, row: SignalRow, price: float) -> float:
        cfg = self.config
        return row.pnl_percentage_at(
            price, slippage_percent=cfg.percent_slippage, fee_percent=cfg.percent_fee
        )

    def _pnl(self, row: SignalRow, price: float, pct: float | None = None) -> Pnl:
        """Item 27 at ``price``; ``pct`` when the caller already has ``pnl_at(row, price)`` (the
        same number: the peak and fall fields a close point updates do not enter it)."""
        if pct is None:
            pct = self.pnl_at(row, price)
        invested = row.invested
        return Pnl(pct, row.open_eff, price, pct / 100 * invested, invested)

    def _meta(self, when_ms: int, price: float) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategy_name": self.strategy.name,
            "exchange_name": self.client.name,
            "frame_name": self.frame_name,
            "current_price": price,
            "backtest": self.backtest,
            "when": when_ms,
        }

    def idle_result(self, when_ms: int, price: float) -> IdleResult:
        return build(IdleResult, **self._meta(when_ms, price))

    def scheduled_result(self, row: SignalRow, when_ms: int, price: float) -> ScheduledResult:
        return build(ScheduledResult, signal=row, action="scheduled", **self._meta(when_ms, price))

    def opened_result(self, row: SignalRow, when_ms: int, price: float) -> OpenedResult:
        return build(OpenedResult, signal=row, action="opened", **self._meta(when_ms, price))

    def closed_result(self, row: SignalRow, outcome: Outcome) -> ClosedResult:
        """Item 6b.4 then item 27: record the close point, then the PnL at the exact price."""
        update: dict[str, float] = dict(outcome.tracking or {})
        pc: float | None = None
        if outcome.record_excursion:
            pc = self.pnl_at(row, outcome.price)
            if pc < update.get("fall_pnl", row.fall_pnl):
                update["fall_pnl"] = pc
            if pc > 0 and pc > update.get("peak_pnl", row.peak_pnl):
                update["peak_pnl"] = pc
        if update:
            row = updated(row, update)
        reason = _CLOSE_REASONS[outcome.reason]
        return build(
            ClosedResult,
            signal=row,
            action="closed",
            close_reason=reason,
            close_timestamp=outcome.timestamp,
            pnl=self._pnl(row, outcome.price, pc),
            **self._meta(outcome.timestamp, outcome.price),
        )

    def cancelled_result(self, row: SignalRow, outcome: Outcome) -> CancelledResult:
        reason = _CANCEL_REASONS[outcome.reason]
        return build(
            CancelledResult,
            signal=row,
            action="cancelled",
            cancel_reason=reason,
            close_timestamp=outcome.timestamp,
            **self._meta(outcome.timestamp, outcome.price),
        )

    def track(self, row: SignalRow, vwaps: np.ndarray | list[float]) -> SignalRow:
        """Item 6b.3 over the VWAPs of candles (or ticks) that did not close the signal."""
        update = self.track_update(row, vwaps)
        return updated(row, update) if update else row

    def track_update(self, row: SignalRow, vwaps: np.ndarray | list[float]) -> dict[str, float]:
        """The peak/fall fields that ``vwaps`` change (empty when none)."""
        update: dict[str, float] = {}
        if len(vwaps) == 0:
            return update
        po_eff = row.open_eff
        if row.is_long:
            hi = float(_MAX(vwaps))
            if hi - po_eff > 0 and hi > row.peak_price:
                p = self.pnl_at(row, hi)
                if p > 0:
                    update["peak_price"], update["peak_pnl"] = hi, p
            lo = float(_MIN(vwaps))
            if lo - po_eff < 0 and lo < row.fall_price:
                update["fall_price"], update["fall_pnl"] = lo, self.pnl_at(row, lo)
        else:
            lo = float(_MIN(vwaps))
            if po_eff - lo > 0 and lo < row.peak_price:
                p = self.pnl_at(row, lo)
                if p > 0:
                    update["peak_price"], update["peak_pnl"] = lo, p
            hi = float(_MAX(vwaps))
            if po_eff - hi < 0 and hi > row.fall_price:
                update["fall_price"], update["fall_pnl"] = hi, self.pnl_at(row, hi)
        return update

    # ------------------------------------------------------------------ backtest: vectorised passes
    async def resolve_pending(
        self, feed: MinuteFeed, row: SignalRow, frame_end_ms: int, *, activated: bool
    ) -> tuple[SignalRow, Outcome]:
        """Item 22 over the candles from ``pending_at`` (the next one after an activation)."""
        p = feed.index(row.pending_at)
        first = p + 1 if activated else p
        end_idx = feed.index(frame_end_ms) + 1  # first candle with ts > frame end
        life = row.minute_estimated_time
        long = row.is_long
        sl, tp = row.stop_loss_eff, row.take_profit_eff
        chunk_start = first
        while True:
            if math.isinf(life):
                forced = end_idx
                chunk_stop = min(forced, chunk_start + 1000)
            else:
                forced = min(p + int(life), end_idx)
                chunk_stop = forced
            await feed.ensure(chunk_stop + 1)
            vw = feed.vwap[chunk_start:chunk_stop]
            if long:
                sl_hit = feed.low[chunk_start:chunk_stop] <= sl
                hit = sl_hit | (vw >= tp)
            else:
                sl_hit = feed.high[chunk_start:chunk_stop] >= sl
                hit = sl_hit | (vw <= tp)
            k = int(hit.argmax()) if hit.size else 0
            if hit.size and hit[k]:
                idx = chunk_start + k
                update = self.track_update(row, vw[:k])
                if sl_hit[k]:
                    return row, Outcome(feed.ts(idx), "stop_loss", sl, update)
                return row, Outcome(feed.ts(idx), "take_profit", tp, update)
            if chunk_stop >= forced:
                update = self.track_update(row, vw)
                return row, Outcome(feed.ts(forced), "time_expired", float(feed.vwap[forced]), update)
            row = self.track(row, vw)  # an endless signal, replayed 1000 candles at a time
            chunk_start = chunk_stop

    async def resolve_managed(
        self, feed: MinuteFeed, row: SignalRow, frame_end_ms: int, *, activated: bool
    ) -> tuple[SignalRow, Outcome]:
        """POSITION.md item 3: candle by candle, with the strategy's callbacks between candles.

        Each candle first checks, in order, the frame end, a full partial close, the expiry and
        the SL (wick) / TP (VWAP) of the levels in force; a candle that closes nothing then runs
        the tracking, the callbacks and the commits (:meth:`manage`), which act from the next one.
        """
        p = feed.index(row.pending_at)
        i = p + 1 if activated else p
        end_idx = feed.index(frame_end_ms) + 1  # first candle with ts > frame end
        desk = self.desk = PositionDesk(row, self.config, row.pending_at)
        marks: set[str] = set()
        sink = _Emit(self)
        try:
            while True:
                if i >= feed.loaded:
                    await feed.ensure(i + 1)
                ts, vw = feed.ts(i), float(feed.vwap[i])
                if i >= end_idx:
                    return desk.row, Outcome(ts, "time_expired", vw)
                outcome = self._candle_close(desk.row, ts, vw, float(feed.low[i]), float(feed.high[i]))
                if outcome is not None:
                    return desk.row, outcome
                await self.manage(desk, marks, ts, vw, feed, sink)
                i += 1
        finally:
            self.desk = None

    def _candle_close(self, row: SignalRow, ts: int, vw: float, low: float, high: float) -> Outcome | None:
        """Steps b-d of item 3: a full partial close, then the expiry at ``vw``, the SL on the wick
        ``low``/``high``, the TP on ``vw``, with the levels in force (trailing included)."""
        if row.close_note == FULL_PARTIAL_CLOSE:
            return Outcome(ts, "closed", vw, record_excursion=False)
        if ts - row.pending_at >= row.minute_estimated_time * MINUTE_MS:
            return Outcome(ts, "time_expired", vw)
        sl, tp = row.stop_loss_eff, row.take_profit_eff
        if row.is_long:
            if low <= sl:
                return Outcome(ts, "stop_loss", sl)
            if vw >= tp:
                return Outcome(ts, "take_profit", tp)
        else:
            if high >= sl:
                return Outcome(ts, "stop_loss", sl)
            if vw <= tp:
                return Outcome(ts, "take_profit", tp)
        return None

    async def manage(
        self,
        desk: PositionDesk,
        marks: set[str],
        ts: int,
        vw: float,
        feed: MinuteFeed | None,
        sink: _Sink,
    ) -> None:
        """Step e of item 3 for one candle (live: one tick) that closed nothing: peak/fall, the
        callbacks in the reference's order, milestone events, then the commits as events."""
        row = desk.row
        d = vw - row.open_eff if row.is_long else row.open_eff - vw
        desk.when_ms = ts
        ctx = ctxmod.ExecutionContext(
            self.symbol, ts, self.backtest, self.client, feed, desk, None if self.backtest else vw
        )
        token = ctxmod.current.set(ctx)
        try:
            when = from_ms(ts)
            if d > 0:
                desk.row = self._peak(desk.row, vw)
            elif d < 0:
                desk.row = self._fall(desk.row, vw)
            await self._ping(desk, ts, vw, when, sink)
            if d > 0:
                await self._breakeven_offer(desk, marks, ts, vw, when, sink)
                await self._progress(desk, marks, "profit", ts, vw, when, sink)
            elif d < 0:
                await self._progress(desk, marks, "loss", ts, vw, when, sink)
        finally:
            ctxmod.current.reset(token)
        for commit in desk.take_commits():
            await sink.commit(self._commit_event(commit, ts))

    def _peak(self, row: SignalRow, vw: float) -> SignalRow:
        if vw > row.peak_price if row.is_long else vw < row.peak_price:
            p = self.pnl_at(row, vw)
            if p > 0:
                return updated(row, {"peak_price": vw, "peak_pnl": p})
        return row

    def _fall(self, row: SignalRow, vw: float) -> SignalRow:
        if vw < row.fall_price if row.is_long else vw > row.fall_price:
            return updated(row, {"fall_price": vw, "fall_pnl": self.pnl_at(row, vw)})
        return row

    async def _ping(self, desk: PositionDesk, ts: int, vw: float, when: Any, sink: _Sink) -> None:
        row = desk.row
        await sink.position(self._position_event("active_ping", row, vw, ts))
        await self.bus.hook(self.callback("on_active_ping"), self.symbol, row, vw, when)

    async def _breakeven_offer(
        self, desk: PositionDesk, marks: set[str], ts: int, vw: float, when: Any, sink: _Sink
    ) -> None:
        """Item 18: once per signal, when the candle's VWAP clears the breakeven threshold."""
        row = desk.row
        if "breakeven" in marks or not desk.breakeven_reached(row, vw):
            return
        marks.add("breakeven")
        await sink.position(self._position_event("breakeven", row, vw, ts))
        await self.bus.hook(self.callback("on_breakeven"), self.symbol, row, vw, when)

    async def _progress(
        self, desk: PositionDesk, marks: set[str], kind: str, ts: int, vw: float, when: Any, sink: _Sink
    ) -> None:
        """Item 12: the milestones reached (events) and the partial callback with the progress."""
        row = desk.row
        progress = _progress_percent(row, kind, vw)
        for level in MILESTONE_LEVELS:
            mark = f"{kind}:{level}"
            if level <= progress and mark not in marks:
                marks.add(mark)
                await sink.position(self._position_event(f"partial_{kind}", row, vw, ts, level))
        name = "on_partial_profit" if kind == "profit" else "on_partial_loss"
        await self.bus.hook(self.callback(name), self.symbol, row, progress, vw, when)

    def _position_event(
        self, kind: str, row: SignalRow, price: float, ts: int, level: int | None = None
    ) -> PositionEvent:
        return PositionEvent(
            kind,
            self.symbol,
            self.strategy.name,
            self.client.name,
            self.frame_name,
            row,
            price,
            self.backtest,
            ts,
            level,
        )

    def _commit_event(self, commit: Commit, ts: int) -> CommitEvent:
        meta = {
            "symbol": self.symbol,
            "strategyName": self.strategy.name,
            "exchangeName": self.client.name,
            "frameName": self.frame_name,
            "backtest": self.backtest,
            "timestamp": ts,
            "pnl": self.pnl_at(commit.row, commit.price),
        }
        return CommitEvent(
            commit.action,
            self.symbol,
            self.strategy.name,
            self.client.name,
            self.frame_name,
            self.backtest,
            ts,
            commit.price,
            commit.row,
            commit_json(commit, **meta),
        )

    async def resolve_scheduled(
        self, feed: MinuteFeed, row: SignalRow, frame_end_ms: int
    ) -> tuple[str, int, float]:
        """Item 24: ``("activate", ts, price)`` or ``("timeout" | "price_reject", ts, vwap)``."""
        s = feed.index(row.scheduled_at)
        end_idx = feed.index(frame_end_ms) + 1
        last = min(s + self.config.schedule_await_minutes, end_idx)
        await feed.ensure(last + 1)
        if row.is_long:
            rej = feed.low[s:last] <= row.price_stop_loss
            act = feed.low[s:last] <= row.price_open
        else:
            rej = feed.high[s:last] >= row.price_stop_loss
            act = feed.high[s:last] >= row.price_open
        hit = rej | act
        if hit.size and hit.any():
            k = int(hit.argmax())
            idx = s + k
            if rej[k]:
                return "price_reject", feed.ts(idx), float(feed.vwap[idx])
            return "activate", feed.ts(idx), row.price_open
        return "timeout", feed.ts(last), float(feed.vwap[last])

    # ------------------------------------------------------------------ live: one tick at a time
    def step_pending(self, row: SignalRow, when_ms: int, vwap: float, last: Candle) -> Outcome | None:
        """Item 23: the backtest candle rules with what live sees at ``when``: the VWAP of the
        closed candles and the wick of the last closed one (trailing levels included)."""
        return self._candle_close(row, when_ms, vwap, last.low, last.high)

    def step_scheduled(self, row: SignalRow, when_ms: int, vwap: float) -> Outcome | None:
        """Item 25: timeout after the wait, cancel/activate on VWAP (not wick)."""
        if when_ms - row.scheduled_at >= self.config.schedule_await_minutes * MINUTE_MS:
            return Outcome(when_ms, "timeout", vwap)
        if row.is_long:
            if vwap <= row.price_stop_loss:
                return Outcome(when_ms, "price_reject", vwap)
            if vwap <= row.price_open:
                return Outcome(when_ms, "activate", row.price_open)
        else:
            if vwap >= row.price_stop_loss:
                return Outcome(when_ms, "price_reject", vwap)
            if vwap >= row.price_open:
                return Outcome(when_ms, "activate", row.price_open)
        return None


async def announce(bus: EventBus, step: Transition, record: RunRecord) -> None:
    """What an adopted transition produced goes out, in order: errors, risk events, results (also
    kept in the run's record), position events. Both drivers report through here."""
    for exc in step.errors:
        await bus.error.emit(exc)
    for event in step.risk_events:
        await bus.risk.emit(event)
    for result in step.results:
        record.add(result)
        if bus.signal or bus.signal_backtest or bus.signal_live:
            await bus.result(result)
    for notice in step.notices:
        if isinstance(notice, CommitEvent):
            await bus.strategy_commit.emit(notice)
        else:
            await bus.position_subject(notice.kind).emit(notice)


async def run_hooks(bus: EventBus, inst: StrategyInstance, step: Transition) -> None:
    """The strategy callbacks a transition asks for (after it is adopted and announced)."""
    for name, args in step.hooks:
        fn = inst.callback(name)
        if fn is not None:
            await bus.hook(fn, *args)


def _progress_percent(row: SignalRow, kind: str, vw: float) -> float:
    """How far the price went toward the take-profit (``profit``) or the stop (``loss``), 0-100."""
    po = row.open_eff
    if kind == "profit":
        target = row.take_profit_eff
        num, den = (vw - po, target - po) if row.is_long else (po - vw, po - target)
    else:
        target = row.stop_loss_eff
        num, den = (po - vw, po - target) if row.is_long else (vw - po, target - po)
    if den <= 0:
        return 100.0
    return min(100.0, max(0.0, num / den * 100))


class _Sink:
    """Where the position events of a candle go."""

    async def position(self, event: PositionEvent) -> None:
        raise NotImplementedError

    async def commit(self, event: CommitEvent) -> None:
        raise NotImplementedError


class _Emit(_Sink):
    """Backtest: events go out at once (a listener may commit through the context-explicit API)."""

    def __init__(self, inst: StrategyInstance) -> None:
        self._bus = inst.bus

    async def position(self, event: PositionEvent) -> None:
        subject = self._bus.position_subject(event.kind)
        if subject:
            await subject.emit(event)

    async def commit(self, event: CommitEvent) -> None:
        if self._bus.strategy_commit:
            await self._bus.strategy_commit.emit(event)


@dataclass
class _Collect(_Sink):
    """Live: events are kept and sent once the tick's new state is durable."""

    events: list[PositionEvent] = field(default_factory=list)
    commits: list[CommitEvent] = field(default_factory=list)

    async def position(self, event: PositionEvent) -> None:
        self.events.append(event)

    async def commit(self, event: CommitEvent) -> None:
        self.commits.append(event)


class _Resume:
    """Drive a coroutine that already ran up to its first suspension (``first`` is what it yielded)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, Any, Any]:
        value = self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancellation (the timeout) goes into the coroutine
                try:
                    value = self.coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = self.coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def call_with_timeout(coro: Coroutine[Any, Any, _T], seconds: float) -> _T:
    """Await ``coro`` with a timeout, without arming a timer when it finishes without suspending.

    Most strategies compute and return (a backtest's candle reads do not wait), so the first
    step usually completes the call; only a coroutine that really waits gets the timeout.
    """
    try:
        first = coro.send(None)
    except StopIteration as stop:
        return cast(_T, stop.value)
    async with asyncio.timeout(seconds):
        return cast(_T, await _Resume(coro, first))


def _to_dto(raw: object, strategy: str) -> SignalDto:
    if isinstance(raw, Mapping):
        return SignalDto.model_validate(dict(raw))
    raise SignalGenerationError(
        f"strategy {strategy!r} get_signal returned {type(raw).__name__}; expected SignalDto, a dict or None"
    )
