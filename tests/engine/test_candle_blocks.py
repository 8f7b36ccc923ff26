"""History served from blocks in a backtest: the same candles and the same refusals as fetching
each request on its own, for a fraction of the exchange calls.

A live client never uses blocks (its candles may still change), so it is the reference: every
test walks the same requests through a backtest client and a live client over one exchange.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pytest

from backtest_kit.candles import Candle, CandleArrays, to_ms
from backtest_kit.config import EngineConfig
from backtest_kit.errors import CandleDataError
from backtest_kit.market import ExchangeClient
from backtest_kit.registry import ExchangeSchema
from backtest_kit.synthetic import SYMBOL, SyntheticExchange

MINUTE = 60_000
START = 1_704_067_200_000  # 2024-01-01T00:00:00Z


class Counted:
    """The synthetic market behind both exchange paths, counting the calls that reach it and able
    to damage one 1m candle (which every interval aggregated over it then carries)."""

    def __init__(self, *, wick_at: int | None = None, end_ms: int | None = None) -> None:
        self.source = SyntheticExchange()
        self.calls = 0
        self.wick_at = wick_at
        self.end_ms = end_ms

    def arrays(self, symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays:
        self.calls += 1
        arr = self.source.candle_arrays(symbol, interval, since_ms, limit)
        step = int(arr.ts[1] - arr.ts[0]) if len(arr) > 1 else MINUTE
        if self.end_ms is not None:  # the data stops here: a request past it gets fewer candles
            keep = max(0, min(len(arr), (self.end_ms - since_ms) // step))
            arr = arr.slice(0, keep)
        if self.wick_at is not None:
            low = arr.low.copy()
            low[(arr.ts <= self.wick_at) & (arr.ts + step > self.wick_at)] = 0.001
            arr = CandleArrays(arr.ts, arr.open, arr.high, low, arr.close, arr.volume)
        return arr

    async def candles(self, symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Candle]:
        return self.arrays(symbol, interval, to_ms(since), limit).to_candles()


def clients(source: Counted, *, columns: bool) -> tuple[ExchangeClient, ExchangeClient]:
    schema = ExchangeSchema("counted", source.candles, get_candle_arrays=source.arrays if columns else None)
    config = EngineConfig(get_candles_retry_delay_ms=0)  # a refused load is retried: not slowly here
    return (
        ExchangeClient(schema, backtest=True, config=config),
        ExchangeClient(schema, backtest=False, config=config),
    )


async def answer(client: ExchangeClient, interval: str, when: int, limit: int) -> list[Candle] | str:
    try:
        return await client.historical_candles(SYMBOL, interval, when, limit)
    except CandleDataError as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "list"])
async def test_every_minute_of_a_day_gets_the_candles_a_request_of_its_own_gets(columns: bool) -> None:
    source = Counted()
    backtest, live = clients(source, columns=columns)
    for minute in range(0, 24 * 60, 7):
        when = START + minute * MINUTE + 17_000  # mid-minute: the open candle is never served
        for interval, limit in (("1m", 5), ("15m", 21), ("1h", 3)):
            direct = await answer(live, interval, when, limit)
            assert await answer(backtest, interval, when, limit) == direct
            arr = await backtest.historical(SYMBOL, interval, when, limit)
            assert arr.to_candles() == direct
    asked = len(range(0, 24 * 60, 7)) * 3 * 2
    assert source.calls < asked  # the live client's requests alone are half of them
    blocks_only = source.calls - asked // 2
    assert blocks_only <= 3 if columns else blocks_only <= 6


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "list"])
async def test_a_wick_is_refused_exactly_by_the_requests_that_would_see_it(columns: bool) -> None:
    wick = START + 300 * MINUTE
    source = Counted(wick_at=wick)
    backtest, live = clients(source, columns=columns)
    refused = 0
    for minute in range(200, 420, 3):
        when = START + minute * MINUTE
        for interval, limit in (("1m", 30), ("15m", 4)):
            direct = await answer(live, interval, when, limit)
            refused += isinstance(direct, str)
            assert await answer(backtest, interval, when, limit) == direct
    assert refused > 0  # the damaged candle was in reach of some requests, not of all
    assert refused < len(range(200, 420, 3)) * 2


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "list"])
async def test_where_the_data_ends_each_request_is_answered_as_on_its_own(columns: bool) -> None:
    end = START + 2 * 24 * 60 * MINUTE
    source = Counted(end_ms=end)
    backtest, live = clients(source, columns=columns)
    for minute in range(2 * 24 * 60 - 120, 2 * 24 * 60 + 30, 5):
        when = START + minute * MINUTE
        for interval, limit in (("1m", 10), ("15m", 3)):
            assert await answer(backtest, interval, when, limit) == await answer(live, interval, when, limit)
