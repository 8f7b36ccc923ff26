"""A max-speed replay over stored history fetches many minutes at once and decides the same.

Both runs below replay the same synthetic market: once through its columnar path (which a replay
at maximum speed reads ahead, a day per request) and once through the plain ``get_candles`` path
(one request per minute, as a live trader makes them). Everything they decide must be equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, Candle, CandleArrays, to_ms
from backtest_kit.synthetic import SyntheticExchange
from tests.engine.helpers import day

SYM = "SYNUSDT"
START = to_ms(day(3))


async def test_a_max_speed_replay_reads_a_day_per_request_and_decides_as_minute_by_minute_requests() -> None:
    market = SyntheticExchange()
    requests = {"columnar": 0, "plain": 0}

    def arrays(symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays:
        requests["columnar"] += 1
        return market.candle_arrays(symbol, interval, since_ms, limit)

    async def candles(symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Candle]:
        requests["plain"] += 1
        return await market.get_candles(symbol, interval, since, limit)

    e = bk.Engine()
    e.registry.add_strategy("every_5m", interval="5m", get_signal=bk.examples.a_long_tp1_sl1)
    e.registry.add_exchange("stored", get_candles=candles, get_candle_arrays=arrays)
    e.registry.add_exchange("per_minute", get_candles=candles)

    async def run(exchange: str) -> list[dict[str, Any]]:
        rows = [
            r
            async for r in e.live.run(
                SYM,
                strategy="every_5m",
                exchange=exchange,
                clock=bk.ReplayClock(START, float("inf")),
                persistence=bk.MemoryPersistence(),
                until=START + 2 * 1440 * MINUTE_MS,
            )
        ]
        return [{k: v for k, v in r.flat().items() if k != "id"} for r in rows]

    ahead = await run("stored")
    assert requests == {"columnar": 2, "plain": 0}  # two days, one request each
    minute_by_minute = await run("per_minute")
    assert requests["plain"] == 2 * 1440
    assert len(ahead) > 20 and ahead == minute_by_minute


async def test_a_wick_inside_a_block_read_ahead_is_refused_and_reported_as_minute_by_minute() -> None:
    market = SyntheticExchange()
    bad_minute = START + 600 * MINUTE_MS  # a 50 % down wick: inside the anomaly factor, beyond the band
    blocks: list[int] = []

    def arrays(symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays:
        blocks.append(limit)
        a = market.candle_arrays(symbol, interval, since_ms, limit)
        low = a.low.copy()
        low[a.ts == bad_minute] *= 0.5
        return CandleArrays(a.ts, a.open, a.high, low, a.close, a.volume)

    async def candles(symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Candle]:
        rows = await market.get_candles(symbol, interval, since, limit)
        return [c._replace(low=c.low * 0.5) if c.timestamp == bad_minute else c for c in rows]

    e = bk.Engine()
    e.registry.add_strategy("every_5m", interval="5m", get_signal=bk.examples.a_long_tp1_sl1)
    e.registry.add_exchange("stored", get_candles=candles, get_candle_arrays=arrays)
    e.registry.add_exchange("per_minute", get_candles=candles)
    errors: list[str] = []
    e.events.error.subscribe(lambda x: errors.append(str(x)))

    async def run(exchange: str) -> list[dict[str, Any]]:
        errors.clear()
        rows = [
            r.flat()
            async for r in e.live.run(
                SYM,
                strategy="every_5m",
                exchange=exchange,
                clock=bk.ReplayClock(START, float("inf")),
                persistence=bk.MemoryPersistence(),
                until=START + 1440 * MINUTE_MS,
            )
        ]
        return [{k: v for k, v in r.items() if k != "id"} for r in rows]

    ahead, ahead_errors = await run("stored"), list(errors)
    minute_by_minute = await run("per_minute")
    assert len(blocks) <= 2  # the wick came inside a block read ahead (a day per request)
    assert len([x for x in ahead_errors if "beyond" in x]) == 1
    assert ahead == minute_by_minute and ahead_errors == errors
