"""ccxt adapter: the real ccxt Binance client talking to the local fake Binance server.

Skipped where ccxt is not installed (it is an optional dependency), except the test that checks
the error a missing ccxt gives.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from backtest_kit.errors import CandleDataError, ConfigurationError, ExchangeUnavailableError
from backtest_kit_runner.exchanges import CcxtExchange, ExchangeRequestError

from .fake_binance import FakeBinance, FakeTime, Status, expected_candle, market_kline

SINCE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SINCE_MS = int(SINCE.timestamp() * 1000)
SINCE_TEXT = "2024-03-01T12:00:00Z"
MINUTE = 60_000

needs_ccxt = pytest.mark.skipif(importlib.util.find_spec("ccxt") is None, reason="ccxt is not installed")

MakeAdapter = Callable[..., CcxtExchange]


def at(i: int) -> int:
    return SINCE_MS + i * MINUTE


def spot_market(market_id: str, base: str, quote: str) -> dict[str, Any]:
    return {
        "id": market_id,
        "symbol": f"{base}/{quote}",
        "base": base,
        "quote": quote,
        "baseId": base,
        "quoteId": quote,
        "type": "spot",
        "spot": True,
        "margin": False,
        "swap": False,
        "future": False,
        "option": False,
        "contract": False,
        "linear": None,
        "inverse": None,
        "active": True,
        "precision": {},
        "limits": {},
        "info": {},
    }


@pytest.fixture
async def ccxt_binance(binance: FakeBinance) -> AsyncIterator[Any]:
    """ccxt's own Binance client, its public API pointed at the fake server, markets preset."""
    ccxt = pytest.importorskip("ccxt.async_support")
    exchange = ccxt.binance({"enableRateLimit": False, "timeout": 2000})
    exchange.urls["api"]["public"] = f"{binance.url}/api/v3"
    exchange.timeout_on_exit = 0  # ccxt otherwise lingers 250 ms in close()
    exchange.set_markets([spot_market("BTCUSDT", "BTC", "USDT"), spot_market("ETHUSDT", "ETH", "USDT")])
    yield exchange
    await exchange.close()


@pytest.fixture
def make_adapter(ccxt_binance: Any, fake_time: FakeTime) -> MakeAdapter:
    def make(**overrides: Any) -> CcxtExchange:
        options: dict[str, Any] = {
            "clock": fake_time.clock,
            "sleep": fake_time.sleep,
            "rng": lambda: 0.5,
            "max_retries": 3,
        }
        options.update(overrides)
        return CcxtExchange(ccxt_binance, **options)

    return make


@needs_ccxt
class TestFetching:
    async def test_candles_come_through_ccxt_exactly_as_the_market_has_them(
        self, make_adapter: MakeAdapter, binance: FakeBinance
    ) -> None:
        candles = await make_adapter().get_candles("BTCUSDT", "1m", SINCE, 10)
        assert [tuple(c) for c in candles] == [expected_candle(at(i), MINUTE) for i in range(10)]
        assert binance.requests[0]["symbol"] == "BTCUSDT"

    async def test_a_unified_symbol_works_too(self, make_adapter: MakeAdapter, binance: FakeBinance) -> None:
        candles = await make_adapter().get_candles("ETH/USDT", "1h", SINCE, 3)
        assert len(candles) == 3 and binance.requests[0]["symbol"] == "ETHUSDT"

    async def test_pages_follow_limit_per_request(
        self, make_adapter: MakeAdapter, binance: FakeBinance
    ) -> None:
        candles = await make_adapter(limit_per_request=4).get_candles("BTCUSDT", "1m", SINCE, 10)
        assert [c.timestamp for c in candles] == [at(i) for i in range(10)]
        assert binance.start_times == [at(0), at(4), at(8)]
        assert [r["limit"] for r in binance.requests] == ["4", "4", "2"]

    async def test_an_exchange_page_shorter_than_asked_is_continued_from_the_next_open_time(
        self, make_adapter: MakeAdapter, binance: FakeBinance
    ) -> None:
        binance.page_cap = 4
        candles = await make_adapter().get_candles("BTCUSDT", "1m", SINCE, 10)
        assert [c.timestamp for c in candles] == [at(i) for i in range(10)]
        assert binance.start_times == [at(0), at(4), at(8)]

    async def test_rows_running_past_the_page_are_dropped(
        self, make_adapter: MakeAdapter, binance: FakeBinance
    ) -> None:
        binance.extra = [market_kline(at(50), MINUTE)]
        candles = await make_adapter().get_candles("BTCUSDT", "1m", SINCE, 5)
        assert [c.timestamp for c in candles] == [at(i) for i in range(5)]

    async def test_the_end_of_the_data_is_a_candle_data_error(
        self, make_adapter: MakeAdapter, binance: FakeBinance
    ) -> None:
        binance.end_ms = at(6)
        with pytest.raises(CandleDataError, match="returned no candles") as caught:
            await make_adapter().get_candles("BTCUSDT", "1m", SINCE, 10)
        assert f"since={SINCE_TEXT}" in str(caught.value) and "binance OHLCV" in str(caught.value)

    async def test_a_gap_is_a_candle_data_error(
        self, make_adapter: MakeAdapter, binance: FakeBinance
    ) -> None:
        binance.missing = {at(3)}
        with pytest.raises(CandleDataError, match="gap"):
            await make_adapter().get_candles("BTCUSDT", "1m", SINCE, 10)

    async def test_a_timeframe_the_exchange_lacks_is_refused_before_asking(
        self, make_adapter: MakeAdapter, ccxt_binance: Any, binance: FakeBinance
    ) -> None:
        ccxt_binance.timeframes = {"1m": "1m", "1h": "1h"}
        with pytest.raises(ConfigurationError, match="binance has no 5m candles"):
            await make_adapter().get_candles("BTCUSDT", "5m", SINCE, 3)
        assert binance.requests == []


@needs_ccxt
class TestFailures:
    async def test_server_errors_are_retried_with_backoff(
        self, make_adapter: MakeAdapter, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Status(503, "busy"), Status(502, "busy"))
        candles = await make_adapter().get_candles("BTCUSDT", "1m", SINCE, 3)
        assert len(candles) == 3 and len(binance.requests) == 3
        assert fake_time.sleeps == [0.375, 0.75]

    async def test_rate_limits_are_retried(
        self, make_adapter: MakeAdapter, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Status(429, {"code": -1003, "msg": "Too many requests"}))
        assert len(await make_adapter().get_candles("BTCUSDT", "1m", SINCE, 3)) == 3
        assert len(fake_time.sleeps) == 1

    async def test_exhausted_retries_raise_exchange_unavailable_from_the_ccxt_error(
        self, make_adapter: MakeAdapter, binance: FakeBinance
    ) -> None:
        import ccxt

        binance.queue(*[Status(503, "busy")] * 3)
        with pytest.raises(ExchangeUnavailableError) as caught:
            await make_adapter(max_retries=2).get_candles("BTCUSDT", "1m", SINCE, 3)
        assert isinstance(caught.value.__cause__, ccxt.NetworkError)
        assert "after 3 attempts" in str(caught.value)
        assert f"symbol=BTCUSDT, interval=1m, since={SINCE_TEXT}" in str(caught.value)

    async def test_a_symbol_binance_refuses_is_not_retried(
        self, make_adapter: MakeAdapter, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Status(400, {"code": -1121, "msg": "Invalid symbol."}))
        with pytest.raises(ExchangeRequestError, match="Invalid symbol") as caught:
            await make_adapter().get_candles("BTCUSDT", "1m", SINCE, 3)
        assert isinstance(caught.value, ConfigurationError)
        assert len(binance.requests) == 1 and fake_time.sleeps == []

    async def test_a_symbol_ccxt_does_not_know_is_refused_without_a_request(
        self, make_adapter: MakeAdapter, binance: FakeBinance
    ) -> None:
        with pytest.raises(ExchangeRequestError, match="BadSymbol"):
            await make_adapter().get_candles("NOPEUSDT", "1m", SINCE, 3)
        assert binance.requests == []


@needs_ccxt
class TestMaking:
    async def test_an_exchange_made_from_its_id_is_closed_by_the_adapter(self) -> None:
        async with CcxtExchange("binance", config={"timeout": 1000, "timeout_on_exit": 0}) as adapter:
            assert adapter.name == "binance"
            assert adapter.exchange.enableRateLimit is True
            assert adapter.exchange.timeout == 1000

    async def test_a_borrowed_exchange_is_left_open(self) -> None:
        class Borrowed:
            id = "borrowed"
            closed = False

            async def fetch_ohlcv(self, *args: Any) -> list[Any]:
                return []

            async def close(self) -> None:
                self.closed = True

        borrowed = Borrowed()
        async with CcxtExchange(borrowed) as adapter:
            assert adapter.name == "borrowed"
        assert borrowed.closed is False

    def test_an_unknown_exchange_id_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="ccxt has no exchange 'nopex'"):
            CcxtExchange("nopex")

    def test_an_object_without_fetch_ohlcv_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="no fetch_ohlcv"):
            CcxtExchange(object())


def test_without_ccxt_making_the_adapter_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ccxt", None)
    monkeypatch.setitem(sys.modules, "ccxt.async_support", None)
    with pytest.raises(ConfigurationError, match="pip install ccxt"):
        CcxtExchange("binance")
