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


def _lcg_stream(seed: int, n: int) -> np.ndarray:
    """The first ``n`` states after ``seed`` of ``s = (A*s + C) mod 2^32`` as uint64."""
    block = 1024
    first = np.empty(block, dtype=np.uint64)
    s = seed
    for k in range(block):
        s = (_A * s + _C) & _MASK
        first[k] = s
    jump_a, jump_c = 1, 0
    for _ in range(block):
        jump_a = (_A * jump_a) & _MASK
        jump_c = (_A * jump_c + _C) & _MASK
    nblocks = (n + block - 1) // block
    out = np.empty(nblocks * block, dtype=np.uint64)
    cur = first
    ja, jc, mask = np.uint64(jump_a), np.uint64(jump_c), np.uint64(_MASK)
    for j in range(nblocks):
        out[j * block : (j + 1) * block] = cur
        cur = (cur * ja + jc) & mask  # operands < 2^32: the product fits in 64 bits
    return out[:n]


def _round(x: np.ndarray, scale: float) -> np.ndarray:
    return np.floor(x * scale + 0.5) / scale


@lru_cache(maxsize=1)
def market() -> CandleArrays:
    """All 1m candles of the synthetic market (computed once per process, ~0.1 s)."""
    n = N_CANDLES
    idx = np.arange(n)
    has_drift = idx % 720 == 0
    per = 5 + has_drift.astype(np.int64)
    start = np.concatenate(([0], np.cumsum(per)[:-1]))
    u = _lcg_stream(42, int(per.sum())).astype(np.float64) / 4294967296.0
    base = start + has_drift  # position of the "m" draw
    drift_blocks = (2 * u[start[has_drift]] - 1) * 0.00003
    drift = np.repeat(drift_blocks, 720)[:n]
    m = np.where(u[base] < 0.0005, 8.0, 1.0)
    r = (2 * u[base + 1] - 1) * 0.002 * m + drift
    growth = (1 + r).tolist()
    closes = [0.0] * n
    price = 100.0
    floor = math.floor
    for i in range(n):
        price = floor(price * growth[i] * 100 + 0.5) / 100
        closes[i] = price
    close = np.array(closes)
    open_ = np.empty(n)
    open_[0] = 100.0
    open_[1:] = close[:-1]
    high = _round(np.maximum(open_, close) * (1 + u[base + 2] * 0.001 * m), 100)
    low = _round(np.minimum(open_, close) * (1 - u[base + 3] * 0.001 * m), 100)
    volume = _round(1 + u[base + 4] * 99, 1000)
    ts = T0_MS + idx.astype(np.int64) * MINUTE_MS
    return CandleArrays(ts, open_, high, low, close, volume)


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
                f"the synthetic exchange only serves {SYMBOL}", symbol=symbol, interval=interval,
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
                symbol=symbol, interval=interval, since_ms=since_ms,
            )
        return aggregate(market().slice(int(first), int(last)), minutes)

    async def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Candle]:
        return self.candle_arrays(symbol, interval, to_ms(since), limit).to_candles()
