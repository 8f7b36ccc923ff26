"""Candles prepared once per process and served to every run of a parameter grid.

A grid runs the same strategy many times over one frame on one exchange. Each run asks the
exchange for the same candles: the minute feed of the whole frame, and at every ask the strategy's
lookback window, tens of thousands of small requests per run. :class:`PreparedCandles` wraps the
exchange so that each ``(symbol, interval)`` is fetched from it once, as one span reaching ahead to
the end of the frame, and every later request inside that span is a slice of it. A Walker worker
process keeps one such wrapper for all the members it runs, so the market is fetched (and, for the
synthetic market, aggregated) once per process instead of once per member.

What a run sees does not change: the wrapper serves exactly the candles the exchange would have
served for that request (a span is only kept when it has exactly the candles asked for, aligned,
one per step), and the engine validates each served window as it validates any exchange answer.
A span the exchange refuses (it would reach past its data, say) falls back to the exact request,
and a request the spans cannot serve goes to the exchange unchanged. Spans are read-only arrays,
so a run cannot alter what the next one sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from .candles import CANDLE_INTERVALS, MINUTE_MS, Candle, CandleArrays, from_ms, interval_ms, to_ms
from .registry import ExchangeSchema

#: How far past the requested end a span is extended when a request falls beyond it, in steps.
EXTEND_STEPS = 50_000


def _as_candle(raw: Any) -> Candle | None:
    if isinstance(raw, Candle):
        return raw
    if isinstance(raw, dict):
        try:
            return Candle(
                int(raw["timestamp"]),
                float(raw["open"]),
                float(raw["high"]),
                float(raw["low"]),
                float(raw["close"]),
                float(raw["volume"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
    return None


def _frozen(arr: CandleArrays) -> CandleArrays:
    """A read-only copy: what one run is served can never be changed for the next."""
    ts = np.array(arr.ts, dtype=np.int64, copy=True)
    floats = [np.array(col, dtype=np.float64, copy=True) for col in arr[1:]]
    for col in (ts, *floats):
        col.flags.writeable = False
    return CandleArrays(ts, *floats)


def _join(first: CandleArrays, second: CandleArrays) -> CandleArrays:
    return _frozen(CandleArrays(*(np.concatenate((a, b)) for a, b in zip(first, second, strict=True))))


class _Span:
    """Candles of one ``(symbol, interval)`` from ``start_ms``, one per ``step_ms``, no gap."""

    __slots__ = ("arrays", "start_ms", "step_ms")

    def __init__(self, start_ms: int, step_ms: int, arrays: CandleArrays) -> None:
        self.start_ms = start_ms
        self.step_ms = step_ms
        self.arrays = arrays

    @property
    def end_ms(self) -> int:
        return self.start_ms + len(self.arrays) * self.step_ms

    def serve(self, since_ms: int, limit: int) -> CandleArrays | None:
        offset = since_ms - self.start_ms
        if offset < 0 or offset % self.step_ms:
            return None
        i = offset // self.step_ms
        if i + limit > len(self.arrays):
            return None
        return self.arrays.slice(i, i + limit)


class PreparedCandles:
    """One exchange, its candles fetched once per ``(symbol, interval)`` and served by slicing.

    ``horizon_ms``: the first fetch of an interval reaches at least this far (the frame's end), so
    one fetch serves a whole run. :meth:`schema` is the exchange to register in its place.
    """

    def __init__(self, schema: ExchangeSchema, *, horizon_ms: int, per_request: int) -> None:
        self.exchange = schema
        self.horizon_ms = horizon_ms
        self.per_request = per_request
        self.fetches = 0  # calls made to the wrapped exchange (a test and the benchmark read it)
        self._spans: dict[tuple[str, str], _Span] = {}

    def schema(self) -> ExchangeSchema:
        """The wrapped exchange's schema, serving through this object (same name and formats)."""
        inner = self.exchange
        arrays = self.candle_arrays if inner.get_candle_arrays is not None else None
        return ExchangeSchema(inner.name, self.get_candles, inner.format_price, inner.format_quantity, arrays)

    # -- serving ------------------------------------------------------------------------------------

    def candle_arrays(self, symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays:
        """The columnar path: a slice of the prepared span (fetching or extending it first)."""
        fn = self.exchange.get_candle_arrays
        assert fn is not None, "only offered when the wrapped exchange has the columnar path"
        served = self._lookup(symbol, interval, since_ms, limit)
        if served is not None:
            return served
        step = interval_ms(interval)
        for start, end in self._plans(symbol, interval, since_ms, limit, step):
            try:
                self.fetches += 1
                got = fn(symbol, interval, start, (end - start) // step)
            except Exception:
                continue
            if self._keep(symbol, interval, start, step, got):
                served = self._lookup(symbol, interval, since_ms, limit)
                if served is not None:
                    return served
        self.fetches += 1
        return fn(symbol, interval, since_ms, limit)

    async def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Any]:
        """The list path, for exchanges without the columnar one (fetched in request-sized calls)."""
        since_ms = to_ms(since)
        served = self._lookup(symbol, interval, since_ms, limit)
        if served is not None:
            return served.to_candles()
        step = interval_ms(interval)
        for start, end in self._plans(symbol, interval, since_ms, limit, step):
            try:
                got = await self._fetch_list(symbol, interval, start, (end - start) // step, step)
            except Exception:
                continue
            if got is not None and self._keep(symbol, interval, start, step, got):
                served = self._lookup(symbol, interval, since_ms, limit)
                if served is not None:
                    return served.to_candles()
        self.fetches += 1
        return await self.exchange.get_candles(symbol, interval, since, limit)

    # -- spans --------------------------------------------------------------------------------------

    def _lookup(self, symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays | None:
        span = self._spans.get((symbol, interval))
        return span.serve(since_ms, limit) if span is not None and limit > 0 else None

    def _plans(
        self, symbol: str, interval: str, since_ms: int, limit: int, step: int
    ) -> list[tuple[int, int]]:
        """The ranges to fetch for a missed request, widest first: ``[(start, end), ...]``.

        Each range joins the existing span without a gap, so what is kept stays one span.
        """
        if interval not in CANDLE_INTERVALS or limit <= 0:
            return []
        want_end = since_ms + limit * step
        span = self._spans.get((symbol, interval))
        if span is None or (since_ms - span.start_ms) % step:
            ahead = max(want_end, self.horizon_ms // step * step + step)
            return [(since_ms, ahead), (since_ms, want_end)] if ahead > want_end else [(since_ms, want_end)]
        plans: list[tuple[int, int]] = []
        if since_ms < span.start_ms:
            plans.append((since_ms, span.start_ms))
        if want_end > span.end_ms:
            ahead = max(want_end, span.end_ms + EXTEND_STEPS * step, self.horizon_ms // step * step + step)
            plans += [(span.end_ms, ahead), (span.end_ms, want_end)]
        return plans

    def _keep(self, symbol: str, interval: str, start_ms: int, step: int, got: CandleArrays) -> bool:
        """Join ``got`` (fetched from ``start_ms``) to the span when it is exactly one per step."""
        n = len(got)
        expected = start_ms + np.arange(n, dtype=np.int64) * step
        if n == 0 or not np.array_equal(np.asarray(got.ts), expected):
            return False
        fresh = _frozen(got)
        key = (symbol, interval)
        span = self._spans.get(key)
        if span is None or (start_ms - span.start_ms) % step:
            self._spans[key] = _Span(start_ms, step, fresh)
        elif start_ms + n * step == span.start_ms:
            self._spans[key] = _Span(start_ms, step, _join(fresh, span.arrays))
        elif start_ms == span.end_ms:
            self._spans[key] = _Span(span.start_ms, step, _join(span.arrays, fresh))
        else:
            self._spans[key] = _Span(start_ms, step, fresh)
        return True

    async def _fetch_list(
        self, symbol: str, interval: str, since_ms: int, count: int, step: int
    ) -> CandleArrays | None:
        """``count`` candles through the list path, ``per_request`` at a time; None if unusable."""
        rows: list[Candle] = []
        done = 0
        while done < count:
            n = min(self.per_request, count - done)
            self.fetches += 1
            raw = await self.exchange.get_candles(symbol, interval, from_ms(since_ms + done * step), n)
            part = [_as_candle(c) for c in raw]
            if len(part) != n or any(c is None for c in part):
                return None
            rows.extend(c for c in part if c is not None)
            done += n
        return CandleArrays.from_candles(rows) if rows else None


def prepared_horizon(end_ms: int) -> int:
    """The span horizon of a frame ending at ``end_ms``: its last minute's close."""
    return end_ms // MINUTE_MS * MINUTE_MS + MINUTE_MS
