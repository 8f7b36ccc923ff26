"""The deterministic synthetic market of the parity fixtures, as a built-in exchange.

It lets the README demo, the tests and the benchmarks run with no network: 564,480 one-minute
candles of ``SYNUSDT`` from 2023-12-20 (LCG seed 42). The random stream is generated with an
LCG jump-ahead in numpy; only the close path (each close rounds the previous one) is a loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .candles import CANDLE_INTERVALS, MINUTE_MS, Candle, CandleArrays, to_ms
from .errors import CandleDataError

SYMBOL = "SYNUSDT"
T0_MS = 1_703_030_400_000  # 2023-12-20T00:00:00Z
N_CANDLES = 564_480  # up to 2025-01-15T00:00:00Z (exclusive)

_A = 1664525
_C = 1013904223
_MASK = 0xFFFFFFFF


def _affine_powers(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A_j, C_j)`` for ``j = 1..k`` such that ``j`` LCG steps map ``s`` to ``A_j*s + C_j``."""
    block = 512
    a = np.empty(block, dtype=np.uint64)
    c = np.empty(block, dtype=np.uint64)
    aj, cj = 1, 0
    for j in range(block):
        aj, cj = (_A * aj) & _MASK, (_A * cj + _C) & _MASK
        a[j], c[j] = aj, cj
    out_a = np.empty(((k + block - 1) // block) * block, dtype=np.uint64)
    out_c = np.empty_like(out_a)
    mask, jump_a, jump_c = np.uint64(_MASK), np.uint64(aj), np.uint64(cj)
    cur_a, cur_c = a, c
    for b in range(out_a.shape[0] // block):
        out_a[b * block : (b + 1) * block] = cur_a
        out_c[b * block : (b + 1) * block] = cur_c
        # one more jump of ``block`` steps: s -> jump_a*s + jump_c composed after (cur_a, cur_c)
        cur_a = (cur_a * jump_a) & mask
        cur_c = (cur_c * jump_a + jump_c) & mask
    return out_a[:k], out_c[:k]


_BLOCK = 720 * 64  # candles per generation block (a whole number of drift periods)


class _Compact(NamedTuple):
    """The market as integers: prices in cents, volume in thousandths (11 MB instead of 27)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def _floor_int(x: np.ndarray, scale: float) -> np.ndarray:
    # round2/round3 without the final division: the division happens when a window is served,
    # and ``k / 100`` is the very float ``floor(x*100 + 0.5) / 100`` would have produced
    return np.floor(x * scale + 0.5).astype(np.int32)


@lru_cache(maxsize=1)
def _compact() -> _Compact:
    """Generate the market once per process (~0.2 s), block by block so temporaries stay small.

    Per block the LCG draws come from precomputed affine powers, every column but the close is
    vectorised, and the close path is a plain loop (each close is rounded from the previous one).
    """
    n = N_CANDLES
    open_c, high_c, low_c, close_c, vol_c = (np.empty(n, dtype=np.int32) for _ in range(5))
    draws_per_block = 5 * _BLOCK + _BLOCK // 720
    pow_a, pow_c = _affine_powers(draws_per_block)
    state = np.uint64(42)
    mask = np.uint64(_MASK)
    price = 100.0
    cents = 10_000
    floor = math.floor
    for b0 in range(0, n, _BLOCK):
        count = min(_BLOCK, n - b0)
        periods = (count + 719) // 720
        k = 5 * count + periods
        stream = (pow_a[:k] * state + pow_c[:k]) & mask
        state = stream[-1]
        u = stream.astype(np.float64) / 4294967296.0
        # draw layout per period of 720 candles: drift, then 5 per candle
        local = np.arange(count)
        pos = local // 720 * (720 * 5 + 1) + 1 + (local % 720) * 5
        drift = np.repeat((2 * u[np.arange(periods) * (720 * 5 + 1)] - 1) * 0.00003, 720)[:count]
        m = np.where(u[pos] < 0.0005, 8.0, 1.0)
        growth = 1 + ((2 * u[pos + 1] - 1) * 0.002 * m + drift)
        steps: list[int] = [cents]
        append = steps.append
        for g in growth.tolist():
            cents = floor(price * g * 100 + 0.5)
            price = cents / 100
            append(cents)
        path = np.array(steps, dtype=np.int32)
        sl = slice(b0, b0 + count)
        open_c[sl] = path[:-1]
        close_c[sl] = path[1:]
        opens, closes = path[:-1] / 100, path[1:] / 100
        high_c[sl] = _floor_int(np.maximum(opens, closes) * (1 + u[pos + 2] * 0.001 * m), 100)
        low_c[sl] = _floor_int(np.minimum(opens, closes) * (1 - u[pos + 3] * 0.001 * m), 100)
        vol_c[sl] = _floor_int(1 + u[pos + 4] * 99, 1000)
    return _Compact(open_c, high_c, low_c, close_c, vol_c)


def window(first: int, last: int) -> CandleArrays:
    """1m candles ``first`` (inclusive) to ``last`` (exclusive), counted from 2023-12-20."""
    c = _compact()
    return CandleArrays(
        T0_MS + np.arange(first, last, dtype=np.int64) * MINUTE_MS,
        c.open[first:last] / 100,
        c.high[first:last] / 100,
        c.low[first:last] / 100,
        c.close[first:last] / 100,
        c.volume[first:last] / 1000,
    )


def market() -> CandleArrays:
    """All 1m candles of the synthetic market as floats (a fresh 27 MB copy: prefer ``window``)."""
    return window(0, N_CANDLES)


def aggregate(arr: CandleArrays, minutes: int) -> CandleArrays:
    """Aggregate consecutive 1m candles (``len`` a multiple of ``minutes``) into one per bucket."""
    if minutes == 1:
        return arr
    n = len(arr) // minutes
    shape = (n, minutes)
    return CandleArrays(
        arr.ts[::minutes][:n].copy(),
        arr.open[::minutes][:n].copy(),
        arr.high[: n * minutes].reshape(shape).max(axis=1),
        arr.low[: n * minutes].reshape(shape).min(axis=1),
        arr.close[minutes - 1 :: minutes][:n].copy(),
        _sum_rows(arr.volume[: n * minutes].reshape(shape)),
    )


def _sum_rows(block: np.ndarray) -> np.ndarray:
    # left-to-right, like a plain loop over the bucket
    out = block[:, 0].copy()
    for k in range(1, block.shape[1]):
        out += block[:, k]
    return out


class SyntheticExchange:
    """Serves the synthetic market for symbol ``SYNUSDT`` at every candle interval."""

    symbol = SYMBOL

    def candle_arrays(self, symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays:
        minutes = CANDLE_INTERVALS.get(interval)
        if minutes is None:
            raise CandleDataError(
                f"unknown interval {interval!r}", symbol=symbol, interval=interval, since_ms=since_ms
            )
        if symbol != SYMBOL:
            raise CandleDataError(
                f"the synthetic exchange only serves {SYMBOL}",
                symbol=symbol,
                interval=interval,
                since_ms=since_ms,
            )
        step = minutes * MINUTE_MS
        if since_ms % step != 0 and minutes < 1440:
            raise CandleDataError(
                "since is not aligned to the interval", symbol=symbol, interval=interval, since_ms=since_ms
            )
        first = (since_ms - T0_MS) // MINUTE_MS
        last = first + limit * minutes
        if first < 0 or last > N_CANDLES or (since_ms - T0_MS) % MINUTE_MS:
            raise CandleDataError(
                f"the synthetic market has no {limit} candles there (it covers 2023-12-20 to 2025-01-15)",
                symbol=symbol,
                interval=interval,
                since_ms=since_ms,
            )
        return aggregate(window(int(first), int(last)), minutes)

    async def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Candle]:
        return self.candle_arrays(symbol, interval, to_ms(since), limit).to_candles()
