"""What every adapter shares, so they refuse the same bad input and bad data with the same words.

An adapter promises ``limit`` candles, the first opening at ``since``; that promise only makes
sense for a known interval, an aware ``since`` on the interval grid and a non-negative ``limit``
(``check_request``). Exchanges that send candles as ``[openTime, open, high, low, close, volume]``
rows (Binance klines, ccxt's OHLCV) are checked row by row and page by page in one place
(``parse_ohlcv_row``, ``page_candles``): finite, positive, consistent, on the grid, no gaps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from backtest_kit.candles import CANDLE_INTERVALS, Candle, interval_ms, iso, to_ms
from backtest_kit.errors import CandleDataError, ConfigurationError


def since_text(ms: int) -> str:
    """``since`` as the engine's errors print it (ISO-8601, ``Z``)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class CandleRequest:
    """A checked request: the open time of the first candle and the interval length, in ms."""

    symbol: str
    interval: str
    since_ms: int
    step_ms: int
    limit: int

    def open_time(self, i: int) -> int:
        return self.since_ms + i * self.step_ms


def check_request(symbol: str, interval: str, since: datetime | int, limit: int) -> CandleRequest:
    """Refuse requests no adapter can answer, with a :class:`ConfigurationError` saying why.

    ``since`` is an aware datetime, or epoch milliseconds (the engine's columnar fast path).
    """
    if not isinstance(symbol, str) or not symbol:
        raise ConfigurationError(f"symbol must be a non-empty string, got {symbol!r}")
    if interval not in CANDLE_INTERVALS:
        raise ConfigurationError(
            f"unknown interval {interval!r} for symbol {symbol}; allowed: {', '.join(CANDLE_INTERVALS)}"
        )
    if isinstance(since, datetime):
        since_ms = to_ms(since)
    elif isinstance(since, int) and not isinstance(since, bool):
        since_ms = since
    else:
        raise ConfigurationError(f"since must be a datetime, got {type(since).__name__}")
    step = interval_ms(interval)
    if since_ms % step:
        raise ConfigurationError(
            f"since {since_text(since_ms)} is not on the {interval} grid "
            f"(symbol={symbol}); candles of that interval open at multiples of {step} ms"
        )
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigurationError(f"limit must be a non-negative integer, got {limit!r}")
    return CandleRequest(symbol, interval, since_ms, step, limit)


# -- rows of candles, as exchanges send them ------------------------------------------------------

_PRICE_FIELDS: Final = ("open", "high", "low", "close", "volume")
_LAST_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant datetime can show


class _BadRow(ValueError):
    pass


def parse_ohlcv_row(row: object) -> Candle:
    """``[openTime, open, high, low, close, volume, ...]`` (numbers or numeric strings), checked."""
    if not isinstance(row, list) or len(row) < 6:
        raise _BadRow(f"is not an [openTime, open, high, low, close, volume, ...] array: {str(row)[:80]}")
    ts = row[0]
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise _BadRow(f"has open time {ts!r}, expected integer epoch milliseconds")
    if not 0 <= ts <= _LAST_MS:
        raise _BadRow(f"has open time {ts}, outside 1970..9999 in epoch milliseconds")
    values: list[float] = []
    for name, raw in zip(_PRICE_FIELDS, row[1:6], strict=True):
        if isinstance(raw, str) or (isinstance(raw, (int, float)) and not isinstance(raw, bool)):
            try:
                value = float(raw)
            except (ValueError, OverflowError):
                raise _BadRow(f"opening at {iso(ts)} has {name} {raw!r}, not a number") from None
        else:
            raise _BadRow(f"opening at {iso(ts)} has {name} {raw!r}, not a number")
        if not math.isfinite(value):
            raise _BadRow(f"opening at {iso(ts)} has a non-finite {name}: {raw!r}")
        values.append(value)
    o, h, lo, c, v = values
    if min(o, h, lo, c) <= 0:
        raise _BadRow(f"opening at {iso(ts)} has a non-positive price")
    if v < 0:
        raise _BadRow(f"opening at {iso(ts)} has a negative volume {v}")
    if h < lo:
        raise _BadRow(f"opening at {iso(ts)} has high {h} below low {lo}")
    if not (lo <= o <= h and lo <= c <= h):
        raise _BadRow(f"opening at {iso(ts)} has open/close outside its high/low range")
    return Candle(ts, o, h, lo, c, v)


def page_candles(
    source: str,
    req: CandleRequest,
    payload: object,
    start: int,
    end: int,
    count: int,
    *,
    short_pages: bool = False,
) -> list[Candle]:
    """The consecutive candles from ``start`` in one answer of ``source`` (at most ``count``, at least one).

    Fewer than ``count`` come back when duplicates used up the answer's ``limit`` rows, or, with
    ``short_pages`` (exchanges whose own page limit may be lower than asked), whenever the answer
    simply stops early; the caller then asks again from the next open time. A gap, an empty
    answer or (without ``short_pages``) an early end of the data is a :class:`CandleDataError`.
    """

    def fail(message: str) -> CandleDataError:
        return CandleDataError(
            f"{source} {message}", symbol=req.symbol, interval=req.interval, since_ms=req.since_ms
        )

    if not isinstance(payload, list):
        raise fail(f"answered with {type(payload).__name__!r}, expected a list of candle rows")
    by_time = _candles_by_time(payload, req, start, end, fail)
    run: list[Candle] = []
    for k in range(count):
        candle_or_none = by_time.get(start + k * req.step_ms)
        if candle_or_none is None:
            break
        run.append(candle_or_none)
    if len(run) == count:
        return run
    missing = start + len(run) * req.step_ms
    last = max(by_time, default=None)
    if last is None:
        raise fail(f"returned no candles for {iso(start)}..{iso(end)} ({count} expected)")
    if last > missing:
        absent = sum(1 for k in range(count) if start + k * req.step_ms not in by_time)
        raise fail(
            f"have a gap: {absent} of {count} candles missing in {iso(start)}..{iso(end)}, "
            f"the first opening at {iso(missing)}"
        )
    if run and (short_pages or len(payload) >= count):  # the rest is on the next page
        return run
    raise fail(
        f"returned {len(by_time)} of {count} candles for {iso(start)}..{iso(end)}: "
        f"data ends with the candle opening at {iso(last)}"
    )


def _candles_by_time(
    payload: list[object], req: CandleRequest, start: int, end: int, fail: Callable[[str], CandleDataError]
) -> dict[int, Candle]:
    """The page's rows, checked and keyed by open time; a repeated row is dropped, a changed one refused."""
    by_time: dict[int, Candle] = {}
    for i, row in enumerate(payload):
        try:
            candle = parse_ohlcv_row(row)
        except _BadRow as exc:
            raise fail(f"row {i} of the page from {iso(start)} {exc}") from None
        ts = candle.timestamp
        if (ts - req.since_ms) % req.step_ms:
            raise fail(f"candle opening at {iso(ts)} is not on the {req.interval} grid")
        if not start <= ts <= end:
            raise fail(f"candle opening at {iso(ts)} is outside the requested page {iso(start)}..{iso(end)}")
        seen = by_time.get(ts)
        if seen is None:
            by_time[ts] = candle
        elif seen != candle:
            raise fail(f"sent two different candles opening at {iso(ts)}: {seen} and {candle}")
    return by_time
