"""Candles: the value type, interval arithmetic, validation and the VWAP the engine prices with.

Everything the engine knows about a market passes through here, so the rules that make a candle
usable (finite, positive, consistent, aligned, not an anomaly) live in one place, and so does the
exact summation order of the volume-weighted average price that parity depends on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .errors import CandleDataError, ConfigurationError

MINUTE_MS = 60_000

#: Candle intervals an exchange can be asked for.
CANDLE_INTERVALS: dict[str, int] = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "1d": 1440,
}

#: Intervals a frame can step by (adds 12h).
FRAME_INTERVALS: dict[str, int] = {**CANDLE_INTERVALS, "12h": 720}

#: Intervals a strategy can be throttled to.
STRATEGY_INTERVALS: dict[str, int] = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Candle(NamedTuple):
    """One OHLCV candle; ``timestamp`` is its open time in epoch milliseconds (UTC)."""

    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "timestamp": self.timestamp,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
        }


def interval_ms(interval: str, table: dict[str, int] = CANDLE_INTERVALS) -> int:
    """Milliseconds in ``interval``; a clear error names the allowed ones."""
    try:
        return table[interval] * MINUTE_MS
    except KeyError:
        raise ConfigurationError(f"unknown interval {interval!r}; allowed: {', '.join(table)}") from None


def to_ms(when: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive is refused: the engine is UTC-only)."""
    if when.tzinfo is None:
        raise ConfigurationError(f"datetime {when.isoformat()} has no timezone; use UTC")
    return round(when.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def iso(ms: int) -> str:
    """ISO-8601 with milliseconds and ``Z``, as the reference prints timestamps."""
    dt = from_ms(ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def candle_vwap(candles: Sequence[Candle]) -> float:
    """VWAP of ``candles``: Σ((h+l+c)/3·v) / Σv summed left to right; mean close if Σv == 0."""
    num = 0.0
    for c in candles:
        num += (c.high + c.low + c.close) / 3 * c.volume
    den = 0.0
    for c in candles:
        den += c.volume
    if den == 0:
        total = 0.0
        for c in candles:
            total += c.close
        return total / len(candles)
    return num / den


class CandleArrays(NamedTuple):
    """Columnar candles (one interval) for the vectorised parts of the engine."""

    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def candle(self, i: int) -> Candle:
        return Candle(
            int(self.ts[i]),
            float(self.open[i]),
            float(self.high[i]),
            float(self.low[i]),
            float(self.close[i]),
            float(self.volume[i]),
        )

    def to_candles(self, start: int = 0, stop: int | None = None) -> list[Candle]:
        stop = len(self) if stop is None else stop
        cols = zip(
            self.ts[start:stop].tolist(),
            self.open[start:stop].tolist(),
            self.high[start:stop].tolist(),
            self.low[start:stop].tolist(),
            self.close[start:stop].tolist(),
            self.volume[start:stop].tolist(),
            strict=True,
        )
        return [Candle(*row) for row in cols]

    @staticmethod
    def from_candles(candles: Sequence[Candle]) -> CandleArrays:
        n = len(candles)
        ts = np.fromiter((c[0] for c in candles), dtype=np.int64, count=n)
        cols = np.array([c[1:6] for c in candles], dtype=np.float64).reshape(n, 5)
        return CandleArrays(
            ts,
            np.ascontiguousarray(cols[:, 0]),
            np.ascontiguousarray(cols[:, 1]),
            np.ascontiguousarray(cols[:, 2]),
            np.ascontiguousarray(cols[:, 3]),
            np.ascontiguousarray(cols[:, 4]),
        )

    def slice(self, start: int, stop: int) -> CandleArrays:
        return CandleArrays(
            self.ts[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
        )


def rolling_vwap(arr: CandleArrays, window: int) -> FloatArray:
    """``out[i]`` = VWAP of candles ``i-window+1 .. i`` (NaN for ``i < window-1``).

    Bit-identical to :func:`candle_vwap` on the same window: the products are formed the same
    way and the window sums are added left to right, one shifted slice at a time.
    """
    n = len(arr)
    out = np.full(n, np.nan)
    if n < window:
        return out
    tp = (arr.high + arr.low + arr.close) / 3 * arr.volume
    m = n - window + 1
    num = tp[0:m].copy()
    den = arr.volume[0:m].copy()
    for k in range(1, window):
        num += tp[k : k + m]
        den += arr.volume[k : k + m]
    with np.errstate(divide="ignore", invalid="ignore"):
        res = num / den
    zero = den == 0
    if zero.any():
        closes = arr.close[0:m].copy()
        for k in range(1, window):
            closes += arr.close[k : k + m]
        res[zero] = (closes / window)[zero]
    out[window - 1 :] = res
    return out


def validate_candles(
    candles: Sequence[Candle],
    *,
    symbol: str,
    interval: str,
    since_ms: int,
    limit: int,
    anomaly_factor: float,
    min_for_median: int,
) -> None:
    """Reject candles the engine must not trade on, naming symbol, interval and since."""

    def fail(msg: str) -> CandleDataError:
        return CandleDataError(msg, symbol=symbol, interval=interval, since_ms=since_ms)

    if len(candles) != limit:
        raise fail(f"exchange returned {len(candles)} candles, expected {limit}")
    if limit == 0:
        return
    step = interval_ms(interval)
    values: list[float] = []
    for i, c in enumerate(candles):
        if not isinstance(c, Candle):
            raise fail(f"candle {i} is {type(c).__name__}, expected Candle")
        expected_ts = since_ms + i * step
        if c.timestamp != expected_ts:
            raise fail(f"candle {i} opens at {iso(int(c.timestamp))}, expected {iso(expected_ts)}")
        o, h, lo, cl, v = c.open, c.high, c.low, c.close, c.volume
        for name, x in (("open", o), ("high", h), ("low", lo), ("close", cl), ("volume", v)):
            if not isinstance(x, (int, float)) or not math.isfinite(x):
                raise fail(f"candle {i} has a non-finite {name}: {x!r}")
        if o <= 0 or h <= 0 or lo <= 0 or cl <= 0:
            raise fail(f"candle {i} has a non-positive price")
        if v < 0:
            raise fail(f"candle {i} has a negative volume {v}")
        if h < lo:
            raise fail(f"candle {i} has high {h} below low {lo}")
        if h < max(o, cl) or lo > min(o, cl):
            raise fail(f"candle {i} has open/close outside its high/low range")
        values.extend((o, h, lo, cl))
    if len(candles) >= min_for_median:
        ref = sorted(values)[len(values) // 2]
    else:
        ref = sum(values) / len(values)
    floor = ref / anomaly_factor
    for i, c in enumerate(candles):
        if min(c.open, c.high, c.low, c.close) < floor:
            raise fail(f"candle {i} has a price below reference/{anomaly_factor:g} (anomaly)")


def validate_arrays(
    arr: CandleArrays,
    *,
    symbol: str,
    interval: str,
    since_ms: int,
    limit: int,
) -> None:
    """Vectorised form of the structural checks for bulk loads (finite, positive, aligned)."""

    def fail(msg: str) -> CandleDataError:
        return CandleDataError(msg, symbol=symbol, interval=interval, since_ms=since_ms)

    if len(arr) != limit:
        raise fail(f"exchange returned {len(arr)} candles, expected {limit}")
    step = interval_ms(interval)
    expected = since_ms + np.arange(limit, dtype=np.int64) * step
    bad = np.nonzero(arr.ts != expected)[0]
    if bad.size:
        i = int(bad[0])
        raise fail(f"candle {i} opens at {iso(int(arr.ts[i]))}, expected {iso(int(expected[i]))}")
    prices = np.stack([arr.open, arr.high, arr.low, arr.close])
    if not (np.isfinite(prices).all() and np.isfinite(arr.volume).all()):
        raise fail("candles contain non-finite values")
    if (prices <= 0).any():
        raise fail("candles contain non-positive prices")
    if (arr.volume < 0).any():
        raise fail("candles contain negative volume")
    if (
        (arr.high < arr.low).any()
        or (arr.high < np.maximum(arr.open, arr.close)).any()
        or (arr.low > np.minimum(arr.open, arr.close)).any()
    ):
        raise fail("candles contain open/close outside their high/low range")
