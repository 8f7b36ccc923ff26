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


DAY_MS = 86_400_000
_DAY_TEXT: dict[int, str] = {}  # "YYYY-MM-DDT" per day number: reports print many per day


def iso(ms: int) -> str:
    """ISO-8601 with milliseconds and ``Z``, as the reference prints timestamps."""
    day, rest = divmod(int(ms), DAY_MS)
    date = _DAY_TEXT.get(day)
    if date is None:
        date = from_ms(day * DAY_MS).strftime("%Y-%m-%dT")
        if len(_DAY_TEXT) < 100_000:
            _DAY_TEXT[day] = date
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, MINUTE_MS)
    seconds, millis = divmod(rest, 1000)
    return f"{date}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


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


_FIELDS = ("open", "high", "low", "close", "volume")


def candle_arrays_checked(
    candles: Sequence[Candle], *, symbol: str, interval: str, since_ms: int
) -> CandleArrays:
    """Columns of ``candles``, refusing anything that is not a :class:`Candle` of real numbers.

    The list path accepts whatever an exchange's ``get_candles`` returned; numpy would quietly turn
    a string or ``None`` into a number or an object column, so the types are checked here, before
    the columns exist, and the values by :func:`validate_candle_arrays` afterwards.
    """

    def fail(msg: str) -> CandleDataError:
        return CandleDataError(msg, symbol=symbol, interval=interval, since_ms=since_ms)

    for i, c in enumerate(candles):
        if not isinstance(c, Candle):
            raise fail(f"candle {i} is {type(c).__name__}, expected Candle")
        for name, x in zip(_FIELDS, c[1:], strict=True):
            if not isinstance(x, (int, float)):
                raise fail(f"candle {i} has a non-finite {name}: {x!r}")
    return CandleArrays.from_candles(candles)


def validate_candle_arrays(
    arr: CandleArrays,
    *,
    symbol: str,
    interval: str,
    since_ms: int,
    limit: int,
    anomaly_factor: float,
    min_for_median: int,
) -> None:
    """Reject candles the engine must not trade on, naming symbol, interval and since.

    The one validation both exchange paths use (``get_candles`` after conversion, and the columnar
    ``get_candle_arrays``). Checks, in this order: count, alignment, then per candle finite, positive
    prices, volume >= 0, high >= low, open/close inside high/low; the first failing candle (and its
    first failing check) is the one reported. Last, the price-anomaly check against the reference of
    the whole load (see :func:`anomaly_reference`).
    """

    def fail(msg: str) -> CandleDataError:
        return CandleDataError(msg, symbol=symbol, interval=interval, since_ms=since_ms)

    if len(arr) != limit:
        raise fail(f"exchange returned {len(arr)} candles, expected {limit}")
    if limit == 0:
        return
    step = interval_ms(interval)
    expected = np.arange(since_ms, since_ms + limit * step, step, dtype=np.int64)
    if not np.array_equal(arr.ts, expected):
        i = int(np.flatnonzero(arr.ts != expected)[0])
        raise fail(f"candle {i} opens at {iso(int(arr.ts[i]))}, expected {iso(int(expected[i]))}")
    if not all_usable(arr):
        problem = _first_bad_candle(arr)
        if problem is not None:
            raise fail(problem)
    low_min = float(arr.low.min())
    if len(arr) >= min_for_median and low_min >= float(arr.high.max()) / anomaly_factor:
        return  # the median is one of the values, so at most the highest high: nothing is below
    floor = anomaly_reference(arr, min_for_median) / anomaly_factor
    if low_min < floor:
        # Once the checks above pass, low is the smallest of a candle's four prices.
        i = int(np.argmax(arr.low < floor))
        raise fail(f"candle {i} has a price below reference/{anomaly_factor:g} (anomaly)")


def all_usable(arr: CandleArrays) -> bool:
    """True when every candle passes the per-candle checks: few numpy passes for the common case.

    ``0 < low <= min(open, close)`` and ``max(open, close) <= high`` with high and volume finite
    imply all the checks of :func:`_first_bad_candle` (a NaN fails every comparison).
    """
    o, h, lo, cl, v = arr.open, arr.high, arr.low, arr.close, arr.volume
    with np.errstate(invalid="ignore"):
        return bool(
            (lo > 0).all()
            and (lo <= np.minimum(o, cl)).all()
            and (np.maximum(o, cl) <= h).all()
            and np.isfinite(h).all()
            and (v >= 0).all()
            and np.isfinite(v).all()
        )


def anomaly_free(arr: CandleArrays, factor: float) -> bool:
    """True when no window of ``arr`` can fail the price-anomaly check, whatever its length.

    A window's reference (its median, or its mean when it is short) is at most its highest high,
    so a lowest low at or above the highest high / ``factor`` clears every window. The margin
    covers a mean rounded up past the highest value. Callers that serve many windows out of one
    load (a backtest's history blocks, a replay's read-ahead) check the load once with this.
    """
    return len(arr) > 0 and float(arr.low.min()) * factor >= float(arr.high.max()) * (1 + 1e-9)


def anomaly_reference(arr: CandleArrays, min_for_median: int) -> float:
    """The typical price of a load: the median of all its OHLC values, their mean when few.

    The median is element ``n // 2`` of the sorted values (the upper one when ``n`` is even);
    the mean is Python's ``sum`` over the values candle by candle (open, high, low, close).
    """
    values = np.stack([arr.open, arr.high, arr.low, arr.close], axis=1).ravel()
    if len(arr) >= min_for_median:
        k = values.size // 2
        return float(np.partition(values, k)[k])
    return sum(values.tolist()) / values.size


def _first_bad_candle(arr: CandleArrays) -> str | None:
    """What is wrong with the first unusable candle (checks in order), or None if none is."""
    o, h, lo, cl, v = arr.open, arr.high, arr.low, arr.close, arr.volume
    with np.errstate(invalid="ignore"):
        checks = (
            ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(cl) & np.isfinite(v)),
            (o <= 0) | (h <= 0) | (lo <= 0) | (cl <= 0),
            v < 0,
            h < lo,
            (h < np.maximum(o, cl)) | (lo > np.minimum(o, cl)),
        )
    firsts = [int(np.argmax(bad)) if bad.any() else len(arr) for bad in checks]
    i = min(firsts)
    if i == len(arr):
        return None
    check = firsts.index(i)  # on a tie, the earlier check names the problem
    c = arr.candle(i)
    if check == 0:
        name, x = next((n, x) for n, x in zip(_FIELDS, c[1:], strict=True) if not math.isfinite(x))
        return f"candle {i} has a non-finite {name}: {x!r}"
    if check == 1:
        return f"candle {i} has a non-positive price"
    if check == 2:
        return f"candle {i} has a negative volume {c.volume}"
    if check == 3:
        return f"candle {i} has high {c.high} below low {c.low}"
    return f"candle {i} has open/close outside its high/low range"
