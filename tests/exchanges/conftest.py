"""Fixtures: the fake Binance server on 127.0.0.1, a fake clock, and adapters pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from backtest_kit_runner.exchanges import BinanceKlinesExchange

from .fake_binance import FakeBinance, FakeTime, serve_fake_binance


@pytest.fixture
async def binance() -> AsyncIterator[FakeBinance]:
    async with serve_fake_binance() as fake:
        yield fake


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def make_exchange(
    binance: FakeBinance, fake_time: FakeTime
) -> AsyncIterator[Callable[..., BinanceKlinesExchange]]:
    """Adapters on the fake server and clock, with jitter fixed at the middle (rng = 0.5)."""
    made: list[BinanceKlinesExchange] = []

    def make(**overrides: Any) -> BinanceKlinesExchange:
        options: dict[str, Any] = {
            "clock": fake_time.clock,
            "sleep": fake_time.sleep,
            "rng": lambda: 0.5,
            "max_retries": 3,
            "request_timeout": 2.0,
        }
        options.update(overrides)
        exchange = BinanceKlinesExchange(options.pop("base_url", binance.url), **options)
        made.append(exchange)
        return exchange

    yield make
    for exchange in made:
        await exchange.close()
