"""Binance adapter, when Binance answers with data the engine must not trade on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from backtest_kit.errors import CandleDataError
from backtest_kit_runner.exchanges import BinanceKlinesExchange

from .fake_binance import FakeBinance, FakeTime, Status, market_kline

SINCE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SINCE_MS = int(SINCE.timestamp() * 1000)
SINCE_TEXT = "2024-03-01T12:00:00Z"
MINUTE = 60_000

MakeExchange = Callable[..., BinanceKlinesExchange]


def at(i: int, step: int = MINUTE) -> int:
    return SINCE_MS + i * step


def row(i: int, o: Any = "100", h: Any = "101", lo: Any = "99", c: Any = "100.5", v: Any = "3") -> list[Any]:
    return [at(i), o, h, lo, c, v, at(i + 1) - 1, "0", 1, "0", "0", "0"]


async def data_error(
    exchange: BinanceKlinesExchange, limit: int = 10, interval: str = "1m"
) -> CandleDataError:
    with pytest.raises(CandleDataError) as caught:
        await exchange.get_candles("BTCUSDT", interval, SINCE, limit)
    error = caught.value
    assert f"symbol=BTCUSDT, interval={interval}, since={SINCE_TEXT}" in str(error)
    assert (error.symbol, error.interval, error.since_ms) == ("BTCUSDT", interval, SINCE_MS)
    return error


class TestGapsAndShortAnswers:
    async def test_a_missing_candle_is_a_gap_naming_the_first_missing_open_time(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.missing = {at(4), at(5)}
        error = await data_error(make_exchange())
        assert "gap" in str(error) and "2 of 10" in str(error) and "2024-03-01T12:04:00.000Z" in str(error)

    async def test_a_missing_first_candle_is_a_gap_too(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.missing = {at(0)}
        error = await data_error(make_exchange())
        assert "2024-03-01T12:00:00.000Z" in str(error)

    async def test_fewer_candles_than_asked_at_the_end_of_the_data_is_refused(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.end_ms = at(7)
        error = await data_error(make_exchange())
        assert "returned 7 of 10" in str(error) and "data ends" in str(error)
        assert "2024-03-01T12:06:00.000Z" in str(error)

    async def test_an_empty_answer_is_refused(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.end_ms = at(0)
        error = await data_error(make_exchange())
        assert "no candles" in str(error)

    async def test_the_data_ending_on_a_later_page_stops_paging_there(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.end_ms = at(1500)
        error = await data_error(make_exchange(), limit=2500)
        assert "returned 500 of 1000" in str(error)
        assert len(binance.requests) == 2

    async def test_data_errors_are_not_retried(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.missing = {at(3)}
        await data_error(make_exchange())
        assert len(binance.requests) == 1 and fake_time.sleeps == []


class TestDuplicates:
    async def test_identical_duplicate_candles_are_dropped(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        rows = [market_kline(at(i), MINUTE) for i in range(5)]
        binance.queue(Status(200, [rows[0], rows[1], rows[1], rows[2], rows[3], rows[3], rows[4]]))
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 5)
        assert [c.timestamp for c in candles] == [at(i) for i in range(5)]
        assert len(binance.requests) == 1

    async def test_when_duplicates_fill_an_answer_the_rest_is_asked_for_from_the_next_minute(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.duplicates = {at(2), at(3)}  # the server stops at `limit` rows, duplicates included
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 10)
        assert [c.timestamp for c in candles] == [at(i) for i in range(10)]
        assert binance.start_times == [at(0), at(8)]
        assert [r["limit"] for r in binance.requests] == ["10", "2"]

    async def test_two_different_candles_for_the_same_minute_are_refused(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.extra = [row(5)]
        error = await data_error(make_exchange())
        assert "two different candles" in str(error) and "12:05:00" in str(error)

    async def test_candles_sent_out_of_order_come_back_in_order(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        rows = [market_kline(at(i), MINUTE) for i in range(5)]
        binance.queue(Status(200, list(reversed(rows))))
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 5)
        assert [c.timestamp for c in candles] == [at(i) for i in range(5)]


class TestBadValues:
    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            ({"o": "NaN"}, "non-finite open"),
            ({"h": "Infinity"}, "non-finite high"),
            ({"v": "nan"}, "non-finite volume"),
            ({"lo": "-1"}, "non-positive price"),
            ({"o": "0", "lo": "0"}, "non-positive price"),
            ({"v": "-3"}, "negative volume"),
            ({"h": "98"}, "high 98.0 below low 99.0"),
            ({"c": "102"}, "outside its high/low range"),
            ({"o": "98.5"}, "outside its high/low range"),
            ({"c": "abc"}, "close 'abc', not a number"),
            ({"o": None}, "open None, not a number"),
            ({"v": True}, "volume True, not a number"),
            ({"v": 10**400}, "not a number"),
        ],
    )
    async def test_a_candle_with_unusable_values_is_refused_naming_it(
        self, fields: dict[str, Any], reason: str, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.overrides[at(3)] = row(3, **fields)
        error = await data_error(make_exchange())
        assert reason in str(error)
        assert "2024-03-01T12:03:00.000Z" in str(error)
        assert len(binance.requests) == 1

    async def test_numbers_sent_as_json_numbers_are_accepted(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.overrides[at(1)] = row(1, 100, 101.5, 99, 100.25, 0)
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 3)
        assert tuple(candles[1]) == (at(1), 100.0, 101.5, 99.0, 100.25, 0.0)

    @pytest.mark.parametrize(
        ("bad_row", "reason"),
        [
            ("not a list", "is not an [openTime, open, high, low, close, volume, ...] array"),
            ([1, 2, 3], "is not an [openTime"),
            (["123", "1", "1", "1", "1", "1"], "expected integer epoch milliseconds"),
            ([1.5, "1", "1", "1", "1", "1"], "expected integer epoch milliseconds"),
            ([10**20, "1", "1", "1", "1", "1"], "outside 1970..9999"),
            ([-60_000, "1", "1", "1", "1", "1"], "outside 1970..9999"),
        ],
    )
    async def test_a_row_that_is_not_a_kline_is_refused(
        self, bad_row: Any, reason: str, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.overrides[at(2)] = bad_row
        error = await data_error(make_exchange())
        assert reason in str(error) and "row 2" in str(error)

    @pytest.mark.parametrize("body", [{"code": 0, "msg": "ok"}, "null", 42])
    async def test_an_answer_that_is_not_an_array_of_klines_is_refused(
        self, body: Any, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.queue(Status(200, body))
        error = await data_error(make_exchange())
        assert "expected a list of candle rows" in str(error)


class TestAlignment:
    async def test_a_candle_off_the_interval_grid_is_refused(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        shifted = market_kline(at(4, 300_000), 300_000)
        shifted[0] += 60_000
        binance.overrides[at(4, 300_000)] = shifted
        error = await data_error(make_exchange(), interval="5m")
        assert "not on the 5m grid" in str(error)

    async def test_a_candle_outside_the_requested_page_is_refused(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.extra = [market_kline(at(10), MINUTE)]
        error = await data_error(make_exchange())
        assert "outside the requested page" in str(error)
