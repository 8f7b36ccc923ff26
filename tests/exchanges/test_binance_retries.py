"""Binance adapter, when the network or Binance misbehaves: retries, backoff, rate limits, refusals."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import pytest

from backtest_kit.errors import ConfigurationError, ExchangeUnavailableError
from backtest_kit_runner.exchanges import (
    BinanceHTTPError,
    BinanceKlinesExchange,
    ExchangeRateLimitedError,
    ExchangeRequestError,
)

from .fake_binance import Cut, FakeBinance, FakeTime, Slow, Status, Truncated

SINCE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SINCE_TEXT = "2024-03-01T12:00:00Z"
SINCE_MS = int(SINCE.timestamp() * 1000)
MINUTE = 60_000

MakeExchange = Callable[..., BinanceKlinesExchange]


def names_the_request(error: BaseException, symbol: str = "BTCUSDT", interval: str = "1m") -> bool:
    text = str(error)
    return f"symbol={symbol}" in text and f"interval={interval}" in text and f"since={SINCE_TEXT}" in text


class TestServerErrors:
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_server_errors_are_retried_with_exponential_backoff_until_one_succeeds(
        self, status: int, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Status(status, "oops"), Status(status, "oops"))
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 5)
        assert len(candles) == 5
        assert len(binance.requests) == 3
        # ceiling = 0.5·2ⁿ; jitter fixed at 0.5 gives 3/4 of the ceiling
        assert fake_time.sleeps == [0.375, 0.75]

    async def test_every_retry_asks_for_the_same_page_again(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.queue(Status(503, ""))
        await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 5)
        assert binance.requests[0] == binance.requests[1]

    async def test_the_backoff_never_exceeds_backoff_max(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(*[Status(500, "")] * 6)
        await make_exchange(max_retries=6, backoff_base=1, backoff_max=5, rng=lambda: 1.0).get_candles(
            "BTCUSDT", "1m", SINCE, 1
        )
        assert fake_time.sleeps == [1, 2, 4, 5, 5, 5]

    @pytest.mark.parametrize(("rng", "first_sleep"), [(0.0, 0.25), (0.5, 0.375), (0.999, 0.49975)])
    async def test_jitter_spreads_each_wait_over_the_upper_half_of_its_backoff(
        self,
        rng: float,
        first_sleep: float,
        make_exchange: MakeExchange,
        binance: FakeBinance,
        fake_time: FakeTime,
    ) -> None:
        binance.queue(Status(500, ""))
        await make_exchange(rng=lambda: rng).get_candles("BTCUSDT", "1m", SINCE, 1)
        assert fake_time.sleeps == [pytest.approx(first_sleep)]

    async def test_exhausted_retries_raise_exchange_unavailable_from_the_last_error(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(
            *[Status(502, "bad gateway")] * 2, Status(503, {"code": -1001, "msg": "Internal error"})
        )
        with pytest.raises(ExchangeUnavailableError) as caught:
            await make_exchange(max_retries=2).get_candles("BTCUSDT", "1m", SINCE, 5)
        error = caught.value
        assert type(error) is ExchangeUnavailableError
        assert len(binance.requests) == 3
        assert len(fake_time.sleeps) == 2  # no pointless sleep after the last attempt
        assert isinstance(error.__cause__, BinanceHTTPError) and error.__cause__.status == 503
        assert names_the_request(error)
        assert "after 3 attempts" in str(error) and "-1001" in str(error)
        assert (error.symbol, error.interval) == ("BTCUSDT", "1m")

    async def test_no_retries_means_one_attempt(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.queue(Status(500, ""))
        with pytest.raises(ExchangeUnavailableError):
            await make_exchange(max_retries=0).get_candles("BTCUSDT", "1m", SINCE, 5)
        assert len(binance.requests) == 1

    async def test_a_failure_on_a_later_page_retries_only_that_page(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.at[1] = Status(503, "")
        candles = await make_exchange(limit_per_request=2).get_candles("BTCUSDT", "1m", SINCE, 5)
        assert len(candles) == 5
        first, second, third = SINCE_MS, SINCE_MS + 2 * MINUTE, SINCE_MS + 4 * MINUTE
        assert binance.start_times == [first, second, second, third]


class TestTimeoutsAndBrokenConnections:
    async def test_a_response_slower_than_the_timeout_is_abandoned_and_retried(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Slow(2.0))
        candles = await make_exchange(request_timeout=0.2).get_candles("BTCUSDT", "1m", SINCE, 3)
        assert len(candles) == 3
        assert len(binance.requests) == 2
        assert fake_time.sleeps == [0.375]

    async def test_timeouts_on_every_attempt_end_in_exchange_unavailable_from_a_timeout(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.queue(Slow(2.0), Slow(2.0))
        with pytest.raises(ExchangeUnavailableError) as caught:
            await make_exchange(request_timeout=0.1, max_retries=1).get_candles("BTCUSDT", "1m", SINCE, 3)
        assert isinstance(caught.value.__cause__, TimeoutError)
        assert "TimeoutError" in str(caught.value)
        assert names_the_request(caught.value)

    async def test_a_refused_connection_is_retried_then_reported_from_the_connection_error(
        self, make_exchange: MakeExchange, fake_time: FakeTime
    ) -> None:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        exchange = make_exchange(base_url=f"http://127.0.0.1:{port}", max_retries=2)
        with pytest.raises(ExchangeUnavailableError) as caught:
            await exchange.get_candles("BTCUSDT", "1m", SINCE, 3)
        assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)
        assert len(fake_time.sleeps) == 2
        assert names_the_request(caught.value)

    async def test_a_connection_dropped_half_way_through_the_body_is_retried(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.queue(Cut())
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 50)
        assert len(candles) == 50
        assert len(binance.requests) == 2

    async def test_a_truncated_json_body_is_retried(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.queue(Truncated())
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 50)
        assert len(candles) == 50
        assert len(binance.requests) == 2

    async def test_json_that_stays_truncated_ends_in_exchange_unavailable_from_the_decode_error(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.queue(*[Truncated()] * 4)
        with pytest.raises(ExchangeUnavailableError) as caught:
            await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 50)
        assert isinstance(caught.value.__cause__, json.JSONDecodeError)
        assert len(binance.requests) == 4


class TestRateLimits:
    async def test_429_waits_for_retry_after_before_asking_again(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Status(429, {"code": -1003, "msg": "Too many requests"}, {"Retry-After": "7"}))
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 3)
        assert len(candles) == 3
        assert fake_time.sleeps == [7.0]
        assert len(binance.requests) == 2

    async def test_a_retry_after_shorter_than_the_backoff_still_waits_the_backoff(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Status(429, "", {"Retry-After": "0"}))
        await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 3)
        assert fake_time.sleeps == [0.375]

    async def test_429_without_retry_after_backs_off_exponentially(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Status(429, ""), Status(429, "", {"Retry-After": "soon"}))
        await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 3)
        assert fake_time.sleeps == [0.375, 0.75]

    async def test_418_waits_out_the_ban_then_asks_once_more(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(
            Status(418, {"code": -1003, "msg": "Way too many requests; IP banned"}, {"Retry-After": "120"})
        )
        candles = await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 3)
        assert len(candles) == 3
        assert fake_time.sleeps == [120.0]
        assert len(binance.requests) == 2

    async def test_418_without_retry_after_waits_the_longest_backoff(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Status(418, ""))
        await make_exchange(backoff_max=30).get_candles("BTCUSDT", "1m", SINCE, 3)
        assert fake_time.sleeps == [30.0]

    async def test_a_ban_longer_than_max_retry_after_fails_at_once_without_waiting(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(Status(418, {"code": -1003, "msg": "IP banned until later"}, {"Retry-After": "7200"}))
        with pytest.raises(ExchangeRateLimitedError) as caught:
            await make_exchange(max_retry_after=300).get_candles("BTCUSDT", "1m", SINCE, 3)
        error = caught.value
        assert isinstance(error, ExchangeUnavailableError)
        assert (error.status, error.retry_after_s) == (418, 7200.0)
        assert isinstance(error.__cause__, BinanceHTTPError) and error.__cause__.status == 418
        assert fake_time.sleeps == []
        assert len(binance.requests) == 1
        assert names_the_request(error)

    async def test_while_banned_no_caller_sends_anything_until_the_ban_is_over(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        exchange = make_exchange(max_retry_after=60)
        binance.queue(Status(418, "", {"Retry-After": "600"}))
        with pytest.raises(ExchangeRateLimitedError):
            await exchange.get_candles("BTCUSDT", "1m", SINCE, 3)
        with pytest.raises(ExchangeRateLimitedError, match="not sending") as again:
            await exchange.get_candles("ETHUSDT", "5m", SINCE, 3)
        assert names_the_request(again.value, "ETHUSDT", "5m")
        assert len(binance.requests) == 1
        fake_time.now += 560  # 40 s of ban left: within max_retry_after, so the adapter waits them out
        candles = await exchange.get_candles("ETHUSDT", "5m", SINCE, 3)
        assert len(candles) == 3
        assert fake_time.sleeps == [pytest.approx(40.0)]
        assert len(binance.requests) == 2

    async def test_a_ban_on_the_last_attempt_still_holds_back_the_next_call(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        exchange = make_exchange(max_retries=0)
        binance.queue(Status(418, "", {"Retry-After": "60"}))
        with pytest.raises(ExchangeRateLimitedError):
            await exchange.get_candles("BTCUSDT", "1m", SINCE, 3)
        assert fake_time.sleeps == []
        await exchange.get_candles("BTCUSDT", "1m", SINCE, 3)
        assert fake_time.sleeps == [60.0]
        assert len(binance.requests) == 2

    async def test_a_rate_limit_seen_by_one_caller_holds_back_a_concurrent_caller(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        gate = asyncio.Event()
        sleeps: list[float] = []

        async def gated_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            await gate.wait()

        async def until(condition: Callable[[], bool]) -> None:
            for _ in range(500):
                if condition():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("condition never became true")

        exchange = make_exchange(sleep=gated_sleep)
        binance.queue(Status(429, "", {"Retry-After": "100"}))
        first = asyncio.create_task(exchange.get_candles("BTCUSDT", "1m", SINCE, 3))
        await until(lambda: len(sleeps) == 1)
        second = asyncio.create_task(exchange.get_candles("ETHUSDT", "1m", SINCE, 3))
        await until(lambda: len(sleeps) == 2)
        assert sleeps == [100.0, 100.0]
        assert len(binance.requests) == 1  # the second caller has sent nothing
        fake_time.now += 100
        gate.set()
        assert [len(c) for c in await asyncio.gather(first, second)] == [3, 3]
        assert len(binance.requests) == 3

    async def test_rate_limits_that_never_lift_end_in_exchange_rate_limited_after_the_retries(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        binance.queue(*[Status(429, "", {"Retry-After": "2"})] * 3)
        with pytest.raises(ExchangeRateLimitedError) as caught:
            await make_exchange(max_retries=2).get_candles("BTCUSDT", "1m", SINCE, 3)
        assert caught.value.status == 429 and caught.value.retry_after_s == 2.0
        assert len(binance.requests) == 3
        assert fake_time.sleeps == [2.0, 2.0]


class TestRefusals:
    async def test_an_unknown_symbol_is_refused_at_once_with_binance_code_and_message(
        self, make_exchange: MakeExchange, binance: FakeBinance, fake_time: FakeTime
    ) -> None:
        with pytest.raises(ExchangeRequestError) as caught:
            await make_exchange().get_candles("NOPEUSDT", "1m", SINCE, 3)
        error = caught.value
        assert isinstance(error, ConfigurationError)
        assert (error.status, error.code, error.msg) == (400, -1121, "Invalid symbol.")
        assert "HTTP 400" in str(error) and "-1121" in str(error) and "Invalid symbol." in str(error)
        assert names_the_request(error, "NOPEUSDT")
        assert isinstance(error.__cause__, BinanceHTTPError)
        assert len(binance.requests) == 1
        assert fake_time.sleeps == []

    @pytest.mark.parametrize("status", [401, 403, 404, 451])
    async def test_other_client_errors_are_not_retried_and_quote_the_body(
        self, status: int, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        binance.queue(Status(status, "<html>go away</html>"))
        with pytest.raises(ExchangeRequestError, match="go away") as caught:
            await make_exchange().get_candles("BTCUSDT", "1m", SINCE, 3)
        assert caught.value.status == status and caught.value.code is None
        assert len(binance.requests) == 1

    async def test_a_refusal_is_reported_to_the_request_hook(
        self, make_exchange: MakeExchange, binance: FakeBinance
    ) -> None:
        seen: list[BaseException | None] = []
        with pytest.raises(ExchangeRequestError):
            await make_exchange(on_request=lambda i, d, e: seen.append(e)).get_candles("NOPE", "1m", SINCE, 3)
        assert len(seen) == 1 and isinstance(seen[0], ExchangeRequestError)
