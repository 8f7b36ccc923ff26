"""Live faults that must not lose, double or invent a position: gaps in ticking, time going
backwards, bad candles, corrected candles.

The clocks and exchanges here are real implementations of the engine's protocols: a replay
clock that jumps (an outage, a forward or backward clock step) and the synthetic market served
with a wick or a correction at one minute.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, Candle, to_ms
from backtest_kit.synthetic import SyntheticExchange
from tests.engine.helpers import day

SYM = "SYNUSDT"
START = to_ms(day(3))


class JumpingClock:
    """A max-speed replay clock whose time jumps once from ``at`` to ``to`` (forward or back)."""

    def __init__(self, start: int, at: int, to: int) -> None:
        self.position = start
        self.at, self.to = at, to
        self.jumped = False

    def now_ms(self) -> int:
        return self.position

    async def sleep_until(self, ms: int) -> None:
        self.position = max(self.position, ms)

    def advanced(self, when_ms: int) -> None:
        self.position = max(self.position, when_ms + MINUTE_MS)
        if not self.jumped and self.position >= self.at:
            self.jumped = True
            self.position = self.to


async def run_live(e: bk.Engine, clock: Any, until: int, strategy: str = "long_1h") -> list[Any]:
    return [
        r
        async for r in e.live.run(
            SYM,
            strategy=strategy,
            exchange="synthetic",
            clock=clock,
            persistence=bk.MemoryPersistence(),
            until=until,
        )
    ]


def engine() -> bk.Engine:
    e = bk.Engine()

    async def long_1h(symbol: str, when: datetime, price: float) -> bk.SignalDto:
        return bk.SignalDto(
            position="long",
            price_take_profit=price * 1.02,
            price_stop_loss=price * 0.98,
            minute_estimated_time=60,
        )

    e.registry.add_strategy("long_1h", interval="5m", get_signal=long_1h)
    return e


def flat(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.flat().items() if k != "id"} for r in rows]


async def test_a_signal_open_across_a_gap_longer_than_its_life_closes_as_in_an_uninterrupted_run() -> None:
    until = START + 600 * MINUTE_MS
    clean = await run_live(engine(), bk.ReplayClock(START, float("inf")), until)
    # the first signal opens at START; ticking stops 10 minutes later for three hours
    gap_from, gap_to = START + 10 * MINUTE_MS, START + 190 * MINUTE_MS
    gapped = await run_live(engine(), JumpingClock(START, gap_from, gap_to), until)
    assert [r.action for r in gapped[:2]] == ["opened", "closed"]
    assert flat(gapped[:2]) == flat(clean[:2])  # same close minute, reason and price
    assert gapped[1].close_timestamp < gap_to  # recorded where it happened, inside the gap
    # no new signal was asked for in the past: the next one opens at the present
    assert gapped[2].action == "opened" and gapped[2].signal.pending_at >= gap_to


async def test_a_forward_clock_jump_cannot_stretch_a_signal_beyond_its_life() -> None:
    gapped = await run_live(
        engine(), JumpingClock(START, START + 5 * MINUTE_MS, START + 700 * MINUTE_MS), START + 800 * MINUTE_MS
    )
    closed = [r for r in gapped if r.action == "closed"]
    assert closed and all((r.close_timestamp - r.signal.pending_at) <= 60 * MINUTE_MS for r in closed)


async def test_time_going_backwards_never_closes_a_signal_before_it_opened_or_ticks_a_minute_twice() -> None:
    until = START + 400 * MINUTE_MS
    clean = await run_live(engine(), bk.ReplayClock(START, float("inf")), until)
    back = await run_live(
        engine(), JumpingClock(START, START + 30 * MINUTE_MS, START - 120 * MINUTE_MS), until
    )
    for r in back:
        if r.action == "closed":
            assert r.close_timestamp > r.signal.pending_at
    assert flat(back) == flat(clean)


def faulty_exchange(e: bk.Engine, name: str, fault: Any) -> None:
    """The synthetic market with ``fault(candle, fetch_number) -> candle`` applied to each candle."""
    market = SyntheticExchange()
    fetches = 0

    async def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Candle]:
        nonlocal fetches
        fetches += 1
        return [fault(c, fetches) for c in await market.get_candles(symbol, interval, since, limit)]

    e.registry.add_exchange(name, get_candles=get_candles)


async def run_on(e: bk.Engine, exchange: str, until: int) -> tuple[list[Any], list[BaseException]]:
    errors: list[BaseException] = []
    e.events.error.subscribe(errors.append)
    results = [
        r
        async for r in e.live.run(
            SYM,
            strategy="long_1h",
            exchange=exchange,
            clock=bk.ReplayClock(START, float("inf")),
            persistence=bk.MemoryPersistence(),
            until=until,
        )
    ]
    return results, errors


async def test_a_hundredfold_wick_opens_and_closes_nothing_and_is_reported() -> None:
    bad_minute = START + 47 * MINUTE_MS
    e = engine()
    faulty_exchange(
        e, "wick100", lambda c, n: c._replace(high=c.high * 100) if c.timestamp == bad_minute else c
    )
    results, errors = await run_on(e, "wick100", START + 300 * MINUTE_MS)
    band_errors = [x for x in errors if isinstance(x, bk.CandleDataError) and "beyond" in str(x)]
    assert band_errors  # each tick whose window holds the wick fails and says why
    assert len(band_errors) == 1  # reported once, though five ticks' windows hold it
    blind = range(bad_minute + MINUTE_MS, bad_minute + 6 * MINUTE_MS)  # minutes whose window holds it
    for r in results:
        assert r.current_price < 200  # nothing traded at a price the wick invented (the market is ~120)
        decided = r.close_timestamp if r.action == "closed" else r.signal.pending_at
        assert decided not in blind, f"{r.action} decided on the wick at {decided}"


async def test_a_fifty_percent_down_wick_causes_no_stop_out() -> None:
    e = engine()
    clean = await run_live(engine(), bk.ReplayClock(START, float("inf")), START + 300 * MINUTE_MS)
    opened = next(r for r in clean if r.action == "opened")
    bad_minute = opened.signal.pending_at + 3 * MINUTE_MS
    faulty_exchange(e, "wick50", lambda c, n: c._replace(low=c.low * 0.5) if c.timestamp == bad_minute else c)
    results, errors = await run_on(e, "wick50", START + 300 * MINUTE_MS)
    assert any(isinstance(x, bk.CandleDataError) for x in errors)
    first_close = next(r for r in results if r.action == "closed")
    clean_close = next(r for r in clean if r.action == "closed")
    assert clean_close.close_reason != "stop_loss" or clean_close.close_timestamp > bad_minute + 6 * MINUTE_MS
    assert (first_close.close_reason, first_close.close_timestamp) == (
        clean_close.close_reason,
        clean_close.close_timestamp,
    )


async def test_a_candle_corrected_after_it_closed_is_reported_and_the_values_acted_on_are_kept() -> None:
    clean = await run_live(engine(), bk.ReplayClock(START, float("inf")), START + 300 * MINUTE_MS)
    opened = next(r for r in clean if r.action == "opened")
    minute = opened.signal.pending_at + 2 * MINUTE_MS
    stop = opened.signal.price_stop_loss

    def correct_later(c: Candle, fetch: int) -> Candle:
        # served normally at first; from a later fetch on, the minute "is corrected" below the stop
        if c.timestamp == minute and fetch > (minute - START) // MINUTE_MS + 3:
            return c._replace(low=min(c.low, stop * 0.999), open=max(c.open, stop), close=max(c.close, stop))
        return c

    e = engine()
    faulty_exchange(e, "corrected", correct_later)
    results, errors = await run_on(e, "corrected", START + 300 * MINUTE_MS)
    assert any("changed after the engine acted on it" in str(x) for x in errors)
    assert flat(results) == flat(clean)  # the correction changed nothing that was decided
