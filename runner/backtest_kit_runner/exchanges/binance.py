"""Binance spot klines as an exchange adapter, for live trading and for backtests on real data.

The engine trusts its adapter to hand back exactly ``limit`` clean, consecutive candles or to fail
loudly; Binance, seen over the network, sometimes answers slowly, with 5xx, with rate limits
(429) or an IP ban (418), and its data can have gaps. This module turns that into the engine's
contract: it pages over Binance's 1000-kline limit, retries transport trouble with exponential
backoff and jitter, respects ``Retry-After`` (and, after a ban, stops every caller of the adapter
from sending anything until the ban is over), refuses other 4xx at once with Binance's own
``{"code", "msg"}``, and validates every candle before the engine sees it.

Endpoint: ``GET /api/v3/klines?symbol=&interval=&startTime=&endTime=&limit=``; each kline is
``[openTime, "open", "high", "low", "close", "volume", closeTime, ...]`` with prices as strings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Final, Self

import aiohttp

from backtest_kit.candles import CANDLE_INTERVALS, Candle, iso
from backtest_kit.errors import ConfigurationError, ExchangeUnavailableError

from ._common import CandleRequest, check_request, page_candles
from .errors import ExchangeRateLimitedError, ExchangeRequestError

__all__ = [
    "BINANCE_INTERVALS",
    "BINANCE_MAX_LIMIT",
    "BinanceHTTPError",
    "BinanceKlinesExchange",
    "OnRequest",
]

log = logging.getLogger(__name__)

#: Our interval names → Binance's (they happen to be spelled the same).
BINANCE_INTERVALS: Final[Mapping[str, str]] = {name: name for name in CANDLE_INTERVALS}

#: The most klines Binance returns for one request.
BINANCE_MAX_LIMIT: Final = 1000

#: ``on_request(interval, duration_s, error)``: called once per HTTP attempt, ``error`` is ``None``
#: on success; meant for the ``backtest_kit_exchange_request_*`` metrics.
OnRequest = Callable[[str, float, BaseException | None], None]

_RATE_LIMIT_STATUSES: Final = frozenset({418, 429})


class BinanceHTTPError(Exception):
    """An HTTP answer other than 200 (kept as the ``__cause__`` of what the adapter raises)."""

    def __init__(
        self, status: int, *, code: int | None, msg: str | None, body: str, retry_after_s: float | None
    ) -> None:
        detail = f"code {code}: {msg}" if code is not None or msg is not None else (body[:200] or "(empty)")
        super().__init__(f"HTTP {status}, {detail}")
        self.status = status
        self.code = code
        self.msg = msg
        self.body = body
        self.retry_after_s = retry_after_s


class _RetryableFailure(Exception):
    """One attempt failed in a way that may pass if we try again; ``error`` is the real cause."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class BinanceKlinesExchange:
    """Fetches validated candles from Binance's ``/api/v3/klines``.

    Use as ``await adapter.get_candles(symbol, interval, since, limit)``;
    close with ``await adapter.close()`` or ``async with BinanceKlinesExchange() as adapter``.

    * ``max_retries``: retries after the first attempt of each page (so ``max_retries + 1`` tries).
    * ``backoff_base``/``backoff_max``: the n-th retry waits ``min(max, base·2ⁿ)``, of which the
      upper half is jitter; a ``Retry-After`` longer than that wins.
    * ``max_retry_after``: a 429/418 asking us to wait longer than this fails at once with
      :class:`ExchangeRateLimitedError`, and so does every call until that time has passed.
    * ``clock``/``sleep``/``rng``: injectable for tests (monotonic seconds, async sleep, [0, 1)).
    """

    def __init__(
        self,
        base_url: str = "https://api.binance.com",
        *,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        request_timeout: float = 5.0,
        limit_per_request: int = BINANCE_MAX_LIMIT,
        max_retry_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] | None = None,
        on_request: OnRequest | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        for name, value in (
            ("backoff_base", backoff_base),
            ("backoff_max", backoff_max),
            ("request_timeout", request_timeout),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        if not (isinstance(max_retry_after, (int, float)) and max_retry_after >= 0):
            raise ConfigurationError(f"max_retry_after must be >= 0 seconds, got {max_retry_after!r}")
        if (
            isinstance(limit_per_request, bool)
            or not isinstance(limit_per_request, int)
            or not 1 <= limit_per_request <= BINANCE_MAX_LIMIT
        ):
            raise ConfigurationError(
                f"limit_per_request must be between 1 and {BINANCE_MAX_LIMIT}, got {limit_per_request!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.request_timeout = float(request_timeout)
        self.limit_per_request = limit_per_request
        self.max_retry_after = float(max_retry_after)
        self._session_factory = session_factory
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random().random
        self._on_request = on_request
        self._session: aiohttp.ClientSession | None = None
        # After a 429/418 nobody sends until this clock time; the error that caused it, for chaining.
        self._blocked_until = -math.inf
        self._block_cause: BinanceHTTPError | None = None

    # -- lifecycle -------------------------------------------------------------------------------

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
        """Close the HTTP session (a later request opens a new one)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            factory = self._session_factory
            self._session = factory() if factory is not None else aiohttp.ClientSession()
        return self._session

    # -- the adapter -----------------------------------------------------------------------------

    async def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> list[Candle]:
        """Exactly ``limit`` validated candles, the first opening at ``since`` (aware UTC).

        Raises :class:`ConfigurationError` for bad input, :class:`ExchangeRequestError` when
        Binance refuses the request (4xx), :class:`CandleDataError` for unusable data and
        :class:`ExchangeUnavailableError` (or its :class:`ExchangeRateLimitedError`) when Binance
        cannot be reached after the retries.
        """
        req = check_request(symbol, interval, since, limit)
        candles: list[Candle] = []
        while len(candles) < req.limit:
            count = min(self.limit_per_request, req.limit - len(candles))
            start, end = req.open_time(len(candles)), req.open_time(len(candles) + count - 1)
            payload = await self._fetch_page(req, start, end, count)
            # never empty: a page without its first candle is a CandleDataError
            candles.extend(page_candles("Binance klines", req, payload, start, end, count))
        return candles

    # -- HTTP ------------------------------------------------------------------------------------

    async def _fetch_page(self, req: CandleRequest, start: int, end: int, count: int) -> object:
        params = {
            "symbol": req.symbol,
            "interval": BINANCE_INTERVALS[req.interval],
            "startTime": str(start),
            "endTime": str(end),
            "limit": str(count),
        }
        failures = 0
        while True:
            await self._wait_out_block(req)
            started = self._clock()
            try:
                payload = await self._attempt(req, params)
            except _RetryableFailure as failure:
                error = failure.error
                self._report(req.interval, started, error)
                failures += 1
                delay = self._backoff(failures - 1)
                limited = (
                    error
                    if isinstance(error, BinanceHTTPError) and error.status in _RATE_LIMIT_STATUSES
                    else None
                )
                if limited is not None:
                    if limited.retry_after_s is not None:
                        delay = max(delay, limited.retry_after_s)
                    elif limited.status == 418:
                        delay = max(delay, self.backoff_max)  # banned and not told for how long
                    self._block(delay, limited)  # even after the last attempt: other callers must wait too
                if failures > self.max_retries:
                    raise self._exhausted(req, start, failures, error) from error
                if limited is not None:
                    log.warning(
                        "Binance answered HTTP %s for %s %s; nobody sends for %.1f s",
                        limited.status, req.symbol, req.interval, delay,
                    )  # fmt: skip
                    continue  # _wait_out_block does the waiting, for every caller alike
                log.warning(
                    "Binance klines %s %s from %s failed (%s); retry %d/%d in %.2f s",
                    req.symbol, req.interval, iso(start), _describe(error),
                    failures, self.max_retries, delay,
                )  # fmt: skip
                await self._sleep(delay)
            except ExchangeRequestError as refused:
                self._report(req.interval, started, refused)
                raise
            else:
                self._report(req.interval, started, None)
                return payload

    async def _attempt(self, req: CandleRequest, params: Mapping[str, str]) -> object:
        """One GET; returns decoded JSON of a 200, raises _RetryableFailure or ExchangeRequestError."""
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        try:
            async with session.get(f"{self.base_url}/api/v3/klines", params=params, timeout=timeout) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _RetryableFailure(exc) from exc
        if status == 200:
            try:
                return json.loads(body)
            except ValueError as exc:  # truncated or garbled body: a transport fault, try again
                raise _RetryableFailure(exc) from exc
        text = body.decode("utf-8", "replace")
        code, msg = _error_body(text)
        error = BinanceHTTPError(
            status, code=code, msg=msg, body=text, retry_after_s=_retry_after(retry_after)
        )
        if status in _RATE_LIMIT_STATUSES or status == 408 or status >= 500 or status < 400:
            raise _RetryableFailure(error)
        refused = ExchangeRequestError(
            f"Binance refused GET /api/v3/klines with {error}",
            status=status,
            code=code,
            msg=msg,
            symbol=req.symbol,
            interval=req.interval,
            since_ms=req.since_ms,
        )
        raise refused from error

    # -- retries and rate limits -----------------------------------------------------------------

    def _backoff(self, retry: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(retry, 64))
        return ceiling / 2 + self._rng() * ceiling / 2

    def _block(self, seconds: float, cause: BinanceHTTPError) -> None:
        until = self._clock() + seconds
        if until > self._blocked_until:
            self._blocked_until = until
            self._block_cause = cause

    async def _wait_out_block(self, req: CandleRequest) -> None:
        while (remaining := self._blocked_until - self._clock()) > 0:
            cause = self._block_cause
            if remaining > self.max_retry_after:
                status = cause.status if cause is not None else 429
                raise ExchangeRateLimitedError(
                    f"Binance answered HTTP {status} and asked us to stay away for {remaining:.0f} s "
                    f"more, longer than max_retry_after={self.max_retry_after:g} s; not sending",
                    status=status,
                    retry_after_s=remaining,
                    symbol=req.symbol,
                    interval=req.interval,
                    since_ms=req.since_ms,
                ) from cause
            await self._sleep(remaining)

    def _exhausted(
        self, req: CandleRequest, start: int, attempts: int, error: BaseException
    ) -> ExchangeUnavailableError:
        message = (
            f"Binance klines unavailable after {attempts} attempts "
            f"(page starting {iso(start)}); last error {_describe(error)}"
        )
        if isinstance(error, BinanceHTTPError) and error.status in _RATE_LIMIT_STATUSES:
            return ExchangeRateLimitedError(
                message,
                status=error.status,
                retry_after_s=error.retry_after_s,
                symbol=req.symbol,
                interval=req.interval,
                since_ms=req.since_ms,
            )
        return ExchangeUnavailableError(
            message, symbol=req.symbol, interval=req.interval, since_ms=req.since_ms
        )

    def _report(self, interval: str, started: float, error: BaseException | None) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(interval, max(0.0, self._clock() - started), error)
        except Exception:  # a broken metrics hook must not break trading
            log.exception("on_request callback failed")


# -- parsing and validation ------------------------------------------------------------------------


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _error_body(text: str) -> tuple[int | None, str | None]:
    """Binance's ``{"code": -1121, "msg": "Invalid symbol."}``, when the body is one."""
    try:
        body = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    code = body.get("code")
    msg = body.get("msg")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        msg if isinstance(msg, str) else None,
    )


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (Binance sends seconds; HTTP dates are ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
