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

import numpy as np

from .candles import CANDLE_INTERVALS, MINUTE_MS, Candle, CandleArrays, to_ms
from .errors import CandleDataError

SYMBOL = "SYNUSDT"
T0_MS = 1_703_030_400_000  # 2023-12-20T00:00:00Z
N_CANDLES = 564_480  # up to 2025-01-15T00:00:00Z (exclusive)
END_MS = T0_MS + N_CANDLES * MINUTE_MS

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


def _round(x: np.ndarray, scale: float) -> np.ndarray:
    return np.floor(x * scale + 0.5) / scale


_BLOCK = 720 * 64  # candles per generation block (a whole number of drift periods)


@lru_cache(maxsize=1)
def market() -> CandleArrays:
    """All 1m candles of the synthetic market (computed once per process, ~0.1 s).

    Generated block by block so that temporaries stay small: per block the LCG draws come from
    precomputed affine powers, every column but the close is vectorised, and the close path is
    a plain loop (each close is rounded from the previous one).
    """
    n = N_CANDLES
    out = [np.empty(n) for _ in range(5)]
    open_a, high_a, low_a, close_a, vol_a = out
    draws_per_block = 5 * _BLOCK + _BLOCK // 720
    pow_a, pow_c = _affine_powers(draws_per_block)
    state = np.uint64(42)
    mask = np.uint64(_MASK)
    price = 100.0
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
        closes: list[float] = []
        append = closes.append
        for g in growth.tolist():
            price = floor(price * g * 100 + 0.5) / 100
            append(price)
        close = np.array(closes)
        opens = np.empty(count)
        opens[0] = 100.0 if b0 == 0 else close_a[b0 - 1]
        opens[1:] = close[:-1]
        sl = slice(b0, b0 + count)
        open_a[sl] = opens
        close_a[sl] = close
        high_a[sl] = _round(np.maximum(opens, close) * (1 + u[pos + 2] * 0.001 * m), 100)
        low_a[sl] = _round(np.minimum(opens, close) * (1 - u[pos + 3] * 0.001 * m), 100)
        vol_a[sl] = _round(1 + u[pos + 4] * 99, 1000)
    ts = T0_MS + np.arange(n, dtype=np.int64) * MINUTE_MS
    return CandleArrays(ts, open_a, high_a, low_a, close_a, vol_a)


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
        return aggregate(market().slice(int(first), int(last)), minutes)

    async def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Candle]:
        return self.candle_arrays(symbol, interval, to_ms(since), limit).to_candles()
