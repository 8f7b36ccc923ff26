"""Fixtures: the fake Binance server on 127.0.0.1, a fake clock, and adapters pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from backtest_kit_runner.exchanges import BinanceKlinesExchange

from .fake_binance import FakeBinance, FakeTime


@pytest.fixture
async def binance() -> AsyncIterator[FakeBinance]:
    fake = FakeBinance()
    app = web.Application()
    app.router.add_get("/api/v3/klines", fake.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    yield fake
    await runner.cleanup()


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
