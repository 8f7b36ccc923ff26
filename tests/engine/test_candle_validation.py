"""Candle validation: one set of rules, whichever way an exchange serves its candles.

An exchange gives the engine candles either as a list (``get_candles``) or as columns
(``get_candle_arrays``, the bulk path a backtest loads its minutes through). Both must refuse the
same candles with the same words, the price-anomaly check included.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from backtest_kit.candles import (
    Candle,
    CandleArrays,
    anomaly_reference,
    candle_arrays_checked,
    validate_candle_arrays,
)
from backtest_kit.config import EngineConfig
from backtest_kit.errors import CandleDataError
from backtest_kit.market import ExchangeClient
from backtest_kit.registry import ExchangeSchema

SINCE = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MINUTE = 60_000


def market(n: int) -> list[Candle]:
    return [Candle(SINCE + i * MINUTE, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 2.0) for i in range(n)]


def damaged(n: int, at: int, **fields: Any) -> list[Candle]:
    candles = market(n)
    candles[at] = candles[at]._replace(**fields)
    return candles


def exchange_serving(candles: list[Candle], *, columns: bool) -> ExchangeClient:
    async def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Candle]:
        return candles

    def get_candle_arrays(symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays:
        return CandleArrays.from_candles(candles)

    schema = ExchangeSchema("served", get_candles, None, None, get_candle_arrays if columns else None)
    config = EngineConfig(get_candles_retry_count=1, get_candles_retry_delay_ms=0)
    return ExchangeClient(schema, backtest=True, config=config)


async def refusal(candles: list[Candle], *, columns: bool, limit: int = 8) -> str:
    with pytest.raises(CandleDataError) as info:
        await exchange_serving(candles, columns=columns).fetch("BTCUSDT", "1m", SINCE, limit)
    return str(info.value)


DEFECTS = [
    (damaged(8, 3, close=math.nan), "candle 3 has a non-finite close: nan"),
    (damaged(8, 2, volume=math.inf), "candle 2 has a non-finite volume: inf"),
    (damaged(8, 5, low=-1.0), "candle 5 has a non-positive price"),
    (damaged(8, 1, volume=-3.0), "candle 1 has a negative volume -3.0"),
    (damaged(8, 4, high=50.0), "candle 4 has high 50.0 below low 103.0"),
    (damaged(8, 6, close=200.0), "candle 6 has open/close outside its high/low range"),
    (damaged(8, 7, low=0.05), "candle 7 has a price below reference/1000 (anomaly)"),
    (damaged(8, 3, timestamp=SINCE + 3 * MINUTE + 1), "candle 3 opens at 2024-01-01T00:03:00.001Z"),
    (market(8)[:7], "exchange returned 7 candles, expected 8"),
]


class TestBothPathsRefuseAlike:
    @pytest.mark.parametrize(("candles", "reason"), DEFECTS)
    async def test_a_defect_is_refused_with_the_same_words_by_the_list_and_the_column_path(
        self, candles: list[Candle], reason: str
    ) -> None:
        as_list = await refusal(candles, columns=False)
        as_columns = await refusal(candles, columns=True)
        assert reason in as_list
        assert as_columns == as_list
        assert "symbol=BTCUSDT" in as_list and "interval=1m" in as_list

    async def test_the_column_path_refuses_a_price_anomaly(self) -> None:
        candles = damaged(50_000, 31_337, low=0.01)
        text = await refusal(candles, columns=True, limit=50_000)
        assert "candle 31337 has a price below reference/1000 (anomaly)" in text

    async def test_clean_candles_pass_both_paths_unchanged(self) -> None:
        candles = market(12)
        for columns in (False, True):
            arr = await exchange_serving(candles, columns=columns).fetch("BTCUSDT", "1m", SINCE, 12)
            assert arr.to_candles() == candles

    async def test_a_candle_holding_text_is_refused_rather_than_read_as_a_number(self) -> None:
        candles = damaged(8, 2, open="100.5")
        assert "candle 2 has a non-finite open: '100.5'" in await refusal(candles, columns=False)


class TestFirstProblemWins:
    def test_the_earliest_bad_candle_is_named_and_on_it_the_first_rule_it_breaks(self) -> None:
        candles = damaged(10, 6, volume=-1.0)
        candles[4] = candles[4]._replace(open=math.nan, high=1.0)  # non-finite and inconsistent
        with pytest.raises(CandleDataError, match=r"candle 4 has a non-finite open: nan"):
            validate(candles)

    def test_no_candles_asked_for_and_none_served_is_fine(self) -> None:
        validate([], limit=0)


class TestAnomalyReference:
    @pytest.mark.parametrize("n", [1, 4, 5, 6, 7, 50, 51])
    def test_the_reference_is_the_upper_median_of_all_prices_or_their_mean_when_few(self, n: int) -> None:
        rng = random.Random(n)
        candles = []
        for i in range(n):
            o, h, lo, cl = (rng.uniform(1, 1000) for _ in range(4))
            candles.append(Candle(SINCE + i * MINUTE, o, h, lo, cl, 1.0))
        values = [x for c in candles for x in (c.open, c.high, c.low, c.close)]
        expected = sorted(values)[len(values) // 2] if n >= 5 else sum(values) / len(values)
        assert anomaly_reference(CandleArrays.from_candles(candles), 5) == expected

    def test_a_load_with_one_price_far_below_the_median_is_refused_however_the_threshold_is_reached(
        self,
    ) -> None:
        candles = damaged(20, 9, low=0.001)  # any price below the median leaves the median where it is
        ref = sorted(x for c in candles for x in (c.open, c.high, c.low, c.close))[40]
        just_below = np.nextafter(ref / 1000, 0)
        candles[9] = candles[9]._replace(low=float(just_below))
        with pytest.raises(CandleDataError, match=r"candle 9 .*anomaly"):
            validate(candles)
        candles[9] = candles[9]._replace(low=ref / 1000)
        validate(candles)


def validate(candles: list[Candle], *, limit: int | None = None) -> None:
    arr = candle_arrays_checked(candles, symbol="BTCUSDT", interval="1m", since_ms=SINCE)
    validate_candle_arrays(
        arr,
        symbol="BTCUSDT",
        interval="1m",
        since_ms=SINCE,
        limit=len(candles) if limit is None else limit,
        anomaly_factor=1000,
        min_for_median=5,
    )
