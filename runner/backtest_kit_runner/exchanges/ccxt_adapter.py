"""Any exchange ccxt supports, as an adapter, for markets the Binance adapter does not reach.

ccxt speaks to 100+ exchanges with one ``fetch_ohlcv`` call; this module adds what the engine's
contract needs on top: exactly ``limit`` consecutive candles from ``since`` (paging, and asking
again when an exchange's own page is shorter than asked), retries with backoff for ccxt's network
errors, refusals (bad symbol, bad request, no permission) turned into the engine's error groups,
and the same row validation as the Binance adapter. ccxt is optional: without it, making a
:class:`CcxtExchange` raises a :class:`ConfigurationError` that says how to install it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import ModuleType, TracebackType
from typing import Any, Self

from backtest_kit.candles import Candle, iso
from backtest_kit.errors import ConfigurationError, ExchangeUnavailableError

from ._common import CandleRequest, check_request, page_candles
from .binance import OnRequest
from .errors import ExchangeRequestError

__all__ = ["CcxtExchange", "import_ccxt"]

log = logging.getLogger(__name__)


def import_ccxt() -> ModuleType:
    """``ccxt.async_support``, or a :class:`ConfigurationError` telling how to install it."""
    try:
        return importlib.import_module("ccxt.async_support")
    except ImportError as exc:
        raise ConfigurationError(
            "the ccxt exchange adapter needs the ccxt package, which is not installed; "
            "install it with: pip install ccxt"
        ) from exc


class CcxtExchange:
    """Candles through ccxt: ``CcxtExchange("kraken")`` or ``CcxtExchange(ccxt_exchange_object)``.

    With an exchange id the adapter creates the ccxt exchange (``config`` is passed to it,
    ``enableRateLimit`` on by default) and closes it in :meth:`close`; an exchange object passed in
    stays the caller's to close. Symbols are handed to ccxt as given: unified (``BTC/USDT``) or
    the exchange's own id (``BTCUSDT``) both work. Retry settings mean what they mean for
    :class:`~backtest_kit_runner.exchanges.BinanceKlinesExchange`.
    """

    def __init__(
        self,
        exchange: str | Any,
        *,
        config: Mapping[str, Any] | None = None,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        limit_per_request: int = 500,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] | None = None,
        on_request: OnRequest | None = None,
    ) -> None:
        ccxt = import_ccxt()
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        if not (backoff_base > 0 and backoff_max > 0):
            raise ConfigurationError("backoff_base and backoff_max must be positive numbers of seconds")
        if (
            isinstance(limit_per_request, bool)
            or not isinstance(limit_per_request, int)
            or limit_per_request < 1
        ):
            raise ConfigurationError(
                f"limit_per_request must be a positive integer, got {limit_per_request!r}"
            )
        if isinstance(exchange, str):
            if exchange not in ccxt.exchanges:
                raise ConfigurationError(
                    f"ccxt has no exchange {exchange!r}; it has {', '.join(ccxt.exchanges[:12])}, ..."
                )
            self.exchange: Any = getattr(ccxt, exchange)({"enableRateLimit": True, **(config or {})})
            self._owns_exchange = True
        else:
            if config:
                raise ConfigurationError("config applies only when CcxtExchange creates the exchange")
            if not callable(getattr(exchange, "fetch_ohlcv", None)):
                raise ConfigurationError(f"{exchange!r} has no fetch_ohlcv; pass a ccxt exchange or an id")
            self.exchange = exchange
            self._owns_exchange = False
        self.name = str(getattr(self.exchange, "id", None) or type(self.exchange).__name__)
        self._ccxt = ccxt
        self.max_retries = max_retries
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.limit_per_request = limit_per_request
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random().random
        self._on_request = on_request

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the ccxt exchange if this adapter created it."""
        if self._owns_exchange:
            await self.exchange.close()

    async def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> list[Candle]:
        """Exactly ``limit`` validated candles, the first opening at ``since`` (aware UTC)."""
        req = check_request(symbol, interval, since, limit)
        timeframes = getattr(self.exchange, "timeframes", None)
        if isinstance(timeframes, Mapping) and timeframes and req.interval not in timeframes:
            raise ConfigurationError(
                f"{self.name} has no {req.interval} candles (symbol={symbol}); "
                f"it offers {', '.join(map(str, timeframes))}"
            )
        source = f"{self.name} OHLCV"
        candles: list[Candle] = []
        while len(candles) < req.limit:
            count = min(self.limit_per_request, req.limit - len(candles))
            start, end = req.open_time(len(candles)), req.open_time(len(candles) + count - 1)
            rows = _within(await self._fetch_page(req, start, count), end)
            candles.extend(page_candles(source, req, rows, start, end, count, short_pages=True))
        return candles

    async def _fetch_page(self, req: CandleRequest, start: int, count: int) -> object:
        ccxt = self._ccxt
        failures = 0
        while True:
            started = self._clock()
            try:
                rows: object = await self.exchange.fetch_ohlcv(req.symbol, req.interval, start, count)
            except ccxt.OperationFailed as exc:  # network trouble, rate limits, garbled answers
                self._report(req.interval, started, exc)
                failures += 1
                if failures > self.max_retries:
                    raise ExchangeUnavailableError(
                        f"{self.name} OHLCV unavailable after {failures} attempts (page starting "
                        f"{iso(start)}); last error {type(exc).__name__}: {exc}",
                        symbol=req.symbol,
                        interval=req.interval,
                        since_ms=req.since_ms,
                    ) from exc
                ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(failures - 1, 64))
                delay = ceiling / 2 + self._rng() * ceiling / 2
                log.warning(
                    "%s OHLCV %s %s from %s failed (%s); retry %d/%d in %.2f s",
                    self.name, req.symbol, req.interval, iso(start), type(exc).__name__,
                    failures, self.max_retries, delay,
                )  # fmt: skip
                await self._sleep(delay)
            except ccxt.ExchangeError as exc:  # the exchange refused: bad symbol, request, permission
                self._report(req.interval, started, exc)
                raise ExchangeRequestError(
                    f"{self.name} refused fetch_ohlcv with {type(exc).__name__}: {exc}",
                    status=None,
                    code=None,
                    msg=str(exc),
                    symbol=req.symbol,
                    interval=req.interval,
                    since_ms=req.since_ms,
                ) from exc
            else:
                self._report(req.interval, started, None)
                return rows

    def _report(self, interval: str, started: float, error: BaseException | None) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(interval, max(0.0, self._clock() - started), error)
        except Exception:
            log.exception("on_request callback failed")


def _within(rows: object, end: int) -> object:
    """Drop rows opening after ``end`` (ccxt has no end time, so answers run past the page).

    Integral float open times (some exchanges send them) become ints; anything odd is left for
    the row validation to name.
    """
    if not isinstance(rows, list):
        return rows
    kept: list[object] = []
    for row in rows:
        if isinstance(row, list) and row and isinstance(row[0], float) and row[0].is_integer():
            row = [int(row[0]), *row[1:]]
        if isinstance(row, list) and row and isinstance(row[0], int) and row[0] > end:
            continue
        kept.append(row)
    return kept
