"""Binance adapter, when Binance behaves: what is asked, how it pages, what comes back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import aiohttp
import pytest

from backtest_kit.candles import Candle
from backtest_kit.errors import ConfigurationError
from backtest_kit_runner.exchanges import BINANCE_INTERVALS, BinanceKlinesExchange

from .fake_binance import INTERVAL_MS, FakeBinance, Status, expected_candle

SINCE = datetime(2024, 3, 1, tzinfo=UTC)
SINCE_MS = int(SINCE.timestamp() * 1000)
MINUTE = 60_000

MakeExchange = Callable[..., BinanceKlinesExchange]


class TestAnswers:
    async def test_returns_exactly_limit_candles_the_first_opening_at_since(
        self, make_exchange: MakeExchange
    ) -> None:
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 10)
        assert len(candles) == 10
        assert all(isinstance(c, Candle) for c in candles)
        assert [c.timestamp for c in candles] == [SINCE_MS + i * MINUTE for i in range(10)]

    async def test_string_prices_are_parsed_into_the_market_values(self, make_exchange: MakeExchange) -> None:
        candles = await make_exchange().get_candles("BTCUSDT", "5m", SINCE, 20)
        step = INTERVAL_MS["5m"]
        assert [tuple(c) for c in candles] == [expected_candle(SINCE_MS + i * step, step) for i in range(20)]
        assert all(isinstance(c.open, float) for c in candles)

    async def test_the_request_carries_symbol_interval_start_end_and_limit(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        await make_exchange().get_candles("ETHUSDT", "15m", SINCE, 4)
        assert binance.requests == [
            {
                "symbol": "ETHUSDT",
                "interval": "15m",
                "startTime": str(SINCE_MS),
                "endTime": str(SINCE_MS + 3 * 15 * MINUTE),
                "limit": "4",
            }
        ]

    async def test_a_limit_of_zero_returns_nothing_without_asking(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        assert await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 0) == []
        assert binance.requests == []


class TestPaging:
    async def test_2500_candles_take_three_requests_with_consecutive_start_times(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 2500)
        assert len(candles) == 2500
        assert binance.start_times == [SINCE_MS, SINCE_MS + 1000 * MINUTE, SINCE_MS + 2000 * MINUTE]
        assert [r["limit"] for r in binance.requests] == ["1000", "1000", "500"]
        assert [int(r["endTime"]) for r in binance.requests] == [
            SINCE_MS + 999 * MINUTE,
            SINCE_MS + 1999 * MINUTE,
            SINCE_MS + 2499 * MINUTE,
        ]
        assert [c.timestamp for c in candles] == [SINCE_MS + i * MINUTE for i in range(2500)]

    async def test_exactly_1000_candles_take_one_request(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        await make_exchange().get_candles("BTCUSDT", "1h", SINCE, 1000)
        assert len(binance.requests) == 1

    async def test_pages_follow_a_smaller_limit_per_request_and_the_interval_length(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        candles = await make_exchange(limit_per_request=3).get_candles("BTCUSDT", "4h", SINCE, 7)
        step = INTERVAL_MS["4h"]
        assert binance.start_times == [SINCE_MS, SINCE_MS + 3 * step, SINCE_MS + 6 * step]
        assert [r["limit"] for r in binance.requests] == ["3", "3", "1"]
        assert [c.timestamp for c in candles] == [SINCE_MS + i * step for i in range(7)]

    @pytest.mark.parametrize("bad", [0, 1001, -5])
    def test_a_page_size_outside_1_to_1000_is_refused(self, bad: int) -> None:
        with pytest.raises(ConfigurationError, match="limit_per_request"):
            BinanceKlinesExchange(limit_per_request=bad)


class TestIntervals:
    @pytest.mark.parametrize("interval", list(BINANCE_INTERVALS))
    async def test_every_supported_interval_is_asked_for_by_binance_name(
        self, interval: str, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        candles = await make_exchange().get_candles("BTCUSDT", interval, SINCE, 3)
        assert binance.requests[0]["interval"] == BINANCE_INTERVALS[interval] == interval
        step = INTERVAL_MS[interval]
        assert [c.timestamp for c in candles] == [SINCE_MS + i * step for i in range(3)]

    @pytest.mark.parametrize("interval", ["12h", "1w", "1M", "2m", "", "1 m"])
    async def test_an_interval_outside_the_contract_is_refused_before_any_request(
        self, interval: str, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        with pytest.raises(ConfigurationError, match="unknown interval"):
            await make_exchange().get_candles("BTCUSDT", interval, SINCE, 3)
        assert binance.requests == []


class TestInputChecks:
    async def test_a_naive_since_is_refused(self, make_exchange: MakeExchange, binance: FakeBinance) -> None:
        with pytest.raises(ConfigurationError, match="timezone"):
            await make_exchange().get_candles("BTCUSDT", "1m", datetime(2024, 3, 1), 3)
        assert binance.requests == []

    async def test_a_since_off_the_interval_grid_is_refused(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        with pytest.raises(ConfigurationError, match=r"not on the 1h grid"):
            await make_exchange().get_candles("BTCUSDT", "1h", SINCE + timedelta(minutes=5), 3)
        assert binance.requests == []

    async def test_a_since_in_another_timezone_means_the_same_instant(
        self, make_exchange: MakeExchange
    ) -> None:
        paris = SINCE.astimezone(timezone(timedelta(hours=1)))
        candles = await make_exchange().get_candles("BTCUSDT", "1m", paris, 2)
        assert candles[0].timestamp == SINCE_MS

    @pytest.mark.parametrize("limit", [-1, 2.5, True])
    async def test_a_limit_that_is_not_a_non_negative_integer_is_refused(
        self, limit: object, make_exchange: MakeExchange
    ) -> None:
        with pytest.raises(ConfigurationError, match="limit"):
            await make_exchange().get_candles("BTCUSDT", "1m", SINCE, limit)  # type: ignore[arg-type]

    async def test_an_empty_symbol_is_refused(self, make_exchange: MakeExchange) -> None:
        with pytest.raises(ConfigurationError, match="symbol"):
            await make_exchange().get_candles("", "1m", SINCE, 2)

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("max_retries", -1),
            ("backoff_base", 0),
            ("backoff_max", float("inf")),
            ("request_timeout", -2),
            ("max_retry_after", -1),
        ],
    )
    def test_nonsense_settings_are_refused_when_the_adapter_is_made(self, option: str, value: float) -> None:
        with pytest.raises(ConfigurationError, match=option):
            BinanceKlinesExchange(**{option: value})  # type: ignore[arg-type]

    def test_a_base_url_that_is_not_http_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="base_url"):
            BinanceKlinesExchange("api.binance.com")


class TestSession:
    async def test_one_session_serves_every_request_and_close_closes_it(
        self, make_exchange: MakeExchange
    ) -> None:
        made: list[aiohttp.ClientSession] = []

        def factory() -> aiohttp.ClientSession:
            made.append(aiohttp.ClientSession())
            return made[-1]

        exchange = make_exchange(session_factory=factory, limit_per_request=5)
        assert made == []  # created lazily
        await exchange.get_candles("BTCUSDT", "1m", SINCE, 12)
        await exchange.get_candles("ETHUSDT", "1m", SINCE, 3)
        assert len(made) == 1
        await exchange.close()
        assert made[0].closed
        await exchange.close()  # idempotent

    async def test_the_async_context_manager_closes_the_session(self, binance: FakeBinance) -> None:
        made: list[aiohttp.ClientSession] = []

        def factory() -> aiohttp.ClientSession:
            made.append(aiohttp.ClientSession())
            return made[-1]

        async with BinanceKlinesExchange(binance.url, session_factory=factory) as exchange:
            await exchange.get_candles("BTCUSDT", "1m", SINCE, 2)
        assert len(made) == 1 and made[0].closed

    async def test_the_default_session_is_created_and_closed_by_the_adapter(
        self, binance: FakeBinance
    ) -> None:
        exchange = BinanceKlinesExchange(binance.url + "/")
        candles = await exchange.get_candles("BTCUSDT", "1m", SINCE, 2)
        assert len(candles) == 2
        session = exchange._session
        assert session is not None
        await exchange.close()
        assert session.closed


class TestRequestHook:
    async def test_on_request_reports_every_attempt_with_its_interval_duration_and_error(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        seen: list[tuple[str, float, BaseException | None]] = []
        binance.queue(Status(503, {"code": -1, "msg": "busy"}))
        await make_exchange(on_request=lambda *a: seen.append(a)).get_candles("BTCUSDT", "5m", SINCE, 3)
        assert [(interval, type(error).__name__) for interval, _, error in seen] == [
            ("5m", "BinanceHTTPError"),
            ("5m", "NoneType"),
        ]
        assert all(duration >= 0 for _, duration, _ in seen)

    async def test_a_failing_hook_does_not_break_fetching(self, make_exchange: MakeExchange) -> None:
        def hook(interval: str, duration: float, error: BaseException | None) -> None:
            raise RuntimeError("metrics down")

        candles = await make_exchange(on_request=hook).get_candles("BTCUSDT", "1m", SINCE, 2)
        assert len(candles) == 2
