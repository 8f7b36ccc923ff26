"""Market data as the engine sees it: an exchange client with retries and validation, the
historical window a strategy may look at, and the columnar 1m feed a backtest runs over.

The one rule that matters everywhere: a candle that has not closed at ``when`` is never
returned (the range served is ``[since, floor(when))``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .candles import (
    CANDLE_INTERVALS,
    MINUTE_MS,
    Candle,
    CandleArrays,
    all_usable,
    anomaly_free,
    candle_arrays_checked,
    candle_vwap,
    from_ms,
    interval_ms,
    rolling_vwap,
    validate_candle_arrays,
)
from .config import EngineConfig
from .errors import CandleDataError, ConfigurationError, ExchangeUnavailableError
from .registry import ExchangeSchema

#: How much history one block load covers (in 1m candles, so the same work at every interval).
BLOCK_MINUTES = 50_000


@dataclass(slots=True)
class _Block:
    """Candles of one (symbol, interval) loaded once and served as slices to every request inside.

    ``checked`` is True when the load proved that every slice passes validation (every candle is
    usable and no price can be an anomaly against any slice's reference); otherwise each slice is
    validated as a request of its own would be, so errors appear at the same request as before.
    """

    since_ms: int
    step: int
    arr: CandleArrays
    checked: bool
    rows: list[Candle] | None = None  # the block as candles, made on the first list request

    def slice(self, since_ms: int, limit: int) -> CandleArrays | None:
        i, off = divmod(since_ms - self.since_ms, self.step)
        if off or i < 0 or i + limit > len(self.arr):
            return None
        return self.arr.slice(i, i + limit)

    def candles(self, since_ms: int, limit: int) -> list[Candle]:
        if self.rows is None:
            self.rows = self.arr.to_candles()
        i = (since_ms - self.since_ms) // self.step
        return self.rows[i : i + limit]


class ExchangeClient:
    """Calls one registered exchange the way the engine needs: chunked, retried, validated.

    In a backtest, the history a strategy asks for (``historical``) is served from blocks
    loaded once per (symbol, interval), so a strategy calling ``get_candles`` every minute costs a
    slice, not a new load, aggregation and validation of the same candles (historical candles do
    not change while a backtest reads them).
    """

    def __init__(self, schema: ExchangeSchema, *, backtest: bool, config: EngineConfig) -> None:
        self.schema = schema
        self.name = schema.name
        self.backtest = backtest
        self.config = config
        self._blocks: dict[tuple[str, str], _Block] = {}
        self._block_cap: dict[tuple[str, str], int] = {}  # shrinks when a block load fails

    async def fetch(self, symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays:
        """Exactly ``limit`` candles from ``since_ms`` (validated), in request-sized chunks."""
        if interval not in CANDLE_INTERVALS:
            raise ConfigurationError(
                f"unknown candle interval {interval!r}; allowed: {', '.join(CANDLE_INTERVALS)}"
            )
        if limit <= 0:
            raise ConfigurationError(f"candle limit must be positive, got {limit}")
        step = interval_ms(interval)
        arrays_fn = self.schema.get_candle_arrays
        if arrays_fn is not None:
            arr = await self._attempt_arrays(symbol, interval, since_ms, limit)
            return arr
        per = self.config.max_candles_per_request
        parts: list[Candle] = []
        done = 0
        while done < limit:
            n = min(per, limit - done)
            parts.extend(await self._attempt(symbol, interval, since_ms + done * step, n))
            done += n
        return CandleArrays.from_candles(parts)

    async def _attempt_arrays(self, symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays:
        fn = self.schema.get_candle_arrays
        assert fn is not None
        try:
            arr = fn(symbol, interval, since_ms, limit)
        except CandleDataError:
            raise
        except Exception as exc:
            raise ExchangeUnavailableError(
                f"exchange {self.name!r} failed: {exc}", symbol=symbol, interval=interval, since_ms=since_ms
            ) from exc
        validate_candle_arrays(
            arr,
            symbol=symbol,
            interval=interval,
            since_ms=since_ms,
            limit=limit,
            anomaly_factor=self.config.get_candles_price_anomaly_threshold_factor,
            min_for_median=self.config.get_candles_min_candles_for_median,
        )
        return arr

    async def _attempt(self, symbol: str, interval: str, since_ms: int, limit: int) -> list[Candle]:
        cfg = self.config
        last: Exception | None = None
        for attempt in range(cfg.get_candles_retry_count):
            if attempt:
                await asyncio.sleep(cfg.get_candles_retry_delay_ms / 1000)
            try:
                raw = await self.schema.get_candles(symbol, interval, from_ms(since_ms), limit)
            except Exception as exc:
                last = exc
                continue
            candles = _dedupe(_coerce(raw))
            try:
                validate_candle_arrays(
                    candle_arrays_checked(candles, symbol=symbol, interval=interval, since_ms=since_ms),
                    symbol=symbol,
                    interval=interval,
                    since_ms=since_ms,
                    limit=limit,
                    anomaly_factor=cfg.get_candles_price_anomaly_threshold_factor,
                    min_for_median=cfg.get_candles_min_candles_for_median,
                )
            except CandleDataError as exc:
                if len(candles) != limit or (candles and candles[0].timestamp != since_ms):
                    raise  # count and alignment mismatches are the data source's fault: not retried
                last = exc
                continue
            return candles
        if isinstance(last, CandleDataError):
            raise last
        raise ExchangeUnavailableError(
            f"exchange {self.name!r} failed {cfg.get_candles_retry_count} times: {last!r}",
            symbol=symbol,
            interval=interval,
            since_ms=since_ms,
        ) from last

    async def historical(self, symbol: str, interval: str, when_ms: int, limit: int) -> CandleArrays:
        """The ``limit`` candles that closed before ``when`` (never the one opening at it)."""
        since, found = await self._history(symbol, interval, when_ms, limit)
        if found is not None:
            return found[1]
        return await self.fetch(symbol, interval, since, limit)

    async def historical_candles(self, symbol: str, interval: str, when_ms: int, limit: int) -> list[Candle]:
        """:meth:`historical` as a list of candles (what ``get_candles`` gives a strategy)."""
        since, found = await self._history(symbol, interval, when_ms, limit)
        if found is not None:
            return found[0].candles(since, limit)
        return (await self.fetch(symbol, interval, since, limit)).to_candles()

    async def _history(
        self, symbol: str, interval: str, when_ms: int, limit: int
    ) -> tuple[int, tuple[_Block, CandleArrays] | None]:
        """The request's ``since`` (``limit`` steps before the step holding ``when``) and, in a
        backtest, the block serving it with the request's slice (None: fetch it on its own)."""
        step = interval_ms(interval)
        since = when_ms // step * step - limit * step
        if not self.backtest or limit <= 0:
            return since, None
        return since, await self._block_for(symbol, interval, since, limit, step)

    async def _block_for(
        self, symbol: str, interval: str, since_ms: int, limit: int, step: int
    ) -> tuple[_Block, CandleArrays] | None:
        """The block holding the request and the request's slice (validated unless the block
        proved it needs no check), or None to fetch the request on its own."""
        key = (symbol, interval)
        block = self._blocks.get(key)
        part = block.slice(since_ms, limit) if block is not None else None
        if block is None or part is None:
            block = await self._load_block(key, since_ms, limit, step)
            if block is None:
                return None
            part = block.slice(since_ms, limit)
            assert part is not None
        if not block.checked:
            self._validate(part, symbol, interval, since_ms, limit)
        return block, part

    async def _load_block(self, key: tuple[str, str], since_ms: int, limit: int, step: int) -> _Block | None:
        """One attempt at a block from ``since_ms``; None (and a smaller next try) on any failure.

        A failure here is never reported: the request is then fetched on its own, with the usual
        retries and errors. Blocks usually fail only where the data ends.
        """
        symbol, interval = key
        n = max(limit * 2, BLOCK_MINUTES * MINUTE_MS // step)
        if self.schema.get_candle_arrays is None:
            n = min(n, self.config.max_candles_per_request)
        n = min(n, self._block_cap.get(key, n))
        if n <= limit:
            return None
        try:
            fn = self.schema.get_candle_arrays
            if fn is not None:
                arr = fn(symbol, interval, since_ms, n)
            else:
                raw = await self.schema.get_candles(symbol, interval, from_ms(since_ms), n)
                candles = _dedupe(_coerce(raw))
                arr = candle_arrays_checked(candles, symbol=symbol, interval=interval, since_ms=since_ms)
            expected = np.arange(since_ms, since_ms + n * step, step, dtype=np.int64)
            if len(arr) != n or not np.array_equal(arr.ts, expected):
                raise CandleDataError(
                    "short or misaligned block", symbol=symbol, interval=interval, since_ms=since_ms
                )
        except Exception:
            self._block_cap[key] = n // 2
            return None
        factor = self.config.get_candles_price_anomaly_threshold_factor
        checked = all_usable(arr) and anomaly_free(arr, factor)
        block = _Block(since_ms, step, arr, checked)
        self._blocks[key] = block
        return block

    def _validate(self, arr: CandleArrays, symbol: str, interval: str, since_ms: int, limit: int) -> None:
        validate_candle_arrays(
            arr,
            symbol=symbol,
            interval=interval,
            since_ms=since_ms,
            limit=limit,
            anomaly_factor=self.config.get_candles_price_anomaly_threshold_factor,
            min_for_median=self.config.get_candles_min_candles_for_median,
        )

    async def average_price(self, symbol: str, when_ms: int) -> float:
        n = self.config.avg_price_candles_count
        arr = await self.historical(symbol, "1m", when_ms, n)
        return candle_vwap(arr.to_candles())


def _coerce(raw: Sequence[Any]) -> list[Candle]:
    out: list[Candle] = []
    for c in raw:
        if isinstance(c, Candle):
            out.append(c)
        elif isinstance(c, dict):
            out.append(
                Candle(
                    int(c["timestamp"]),
                    float(c["open"]),
                    float(c["high"]),
                    float(c["low"]),
                    float(c["close"]),
                    float(c["volume"]),
                )
            )
        else:
            out.append(Candle(*c))
    return out


def _dedupe(candles: list[Candle]) -> list[Candle]:
    seen: set[int] = set()
    out: list[Candle] = []
    for c in candles:
        if c.timestamp not in seen:
            seen.add(c.timestamp)
            out.append(c)
    return out


class MinuteFeed:
    """The 1m candles a backtest runs over, loaded ahead in large chunks, with rolling VWAP.

    Index ``i`` is the candle opening at ``base_ms + i*60_000`` (loads are validated to be
    aligned, so timestamps are not stored). Only what the fast loop reads is kept: high, low and
    ``vwap[i]``, the VWAP of the ``avg`` candles ending with ``i`` (inclusive).
    """

    def __init__(
        self,
        client: ExchangeClient,
        symbol: str,
        *,
        start_ms: int,
        horizon_ms: int,
        avg: int,
        chunk: int = 50_000,
    ) -> None:
        self.client = client
        self.symbol = symbol
        self.avg = avg
        self.base_ms = start_ms - avg * MINUTE_MS
        self.horizon = (horizon_ms - self.base_ms) // MINUTE_MS + 1  # speculative loads stop here
        self.chunk = chunk
        cap = max(self.horizon, 16)
        self.high = np.empty(cap)
        self.low = np.empty(cap)
        self.vwap = np.full(cap, math.nan)
        self._tail: CandleArrays | None = None  # the last avg-1 candles, to continue the VWAP
        self.loaded = 0

    def index(self, ts_ms: int) -> int:
        return (ts_ms - self.base_ms) // MINUTE_MS

    def ts(self, i: int) -> int:
        return self.base_ms + i * MINUTE_MS

    async def ensure(self, stop: int) -> None:
        """Make candles ``[0, stop)`` available (loads ahead up to the horizon)."""
        if stop <= self.loaded:
            return
        target = stop
        if stop <= self.horizon:
            target = min(self.horizon, max(stop, self.loaded + self.chunk))
        if target > self.high.shape[0]:
            self._grow(target)
        s, e = self.loaded, target
        arr = await self.client.fetch(self.symbol, "1m", self.ts(s), e - s)
        self.high[s:e] = arr.high
        self.low[s:e] = arr.low
        tail = self._tail
        window = (
            arr
            if tail is None
            else CandleArrays(*(np.concatenate((a, b)) for a, b in zip(tail, arr, strict=True)))
        )
        lead = 0 if tail is None else len(tail)
        self.vwap[s:e] = rolling_vwap(window, self.avg)[lead:]
        keep = self.avg - 1
        self._tail = window.slice(len(window) - keep, len(window)) if keep else None
        self.loaded = e

    def _grow(self, need: int) -> None:
        cap = max(need, self.high.shape[0] * 2)
        for name in ("high", "low", "vwap"):
            old = getattr(self, name)
            new = np.full(cap, math.nan)
            new[: self.loaded] = old[: self.loaded]
            setattr(self, name, new)

    async def price_at(self, when_ms: int) -> float:
        """The tick price at ``when``: VWAP of the ``avg`` 1m candles that closed before it."""
        i = (when_ms - self.base_ms) // MINUTE_MS - 1
        if i >= self.loaded:
            await self.ensure(i + 1)
        return float(self.vwap[i])
