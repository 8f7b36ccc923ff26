"""A local HTTP server that speaks Binance's ``/api/v3/klines`` and misbehaves when told to.

The adapter under test uses its real aiohttp client against this real server on 127.0.0.1, so
timeouts, cut connections and status codes are the genuine article. The market is a pure function
of the open time (``market_kline``), so tests can compute what they should have received.

Per-request misbehaviour is queued in ``FakeBinance.script`` (one entry per request, in order;
an empty queue means behave) or pinned to a request number in ``FakeBinance.at``; data faults
(``missing``, ``duplicates``, ``overrides``, ``extra``, ``end_ms``) apply to every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

INTERVAL_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}


def market_kline(ts: int, step: int) -> list[Any]:
    """The deterministic market: a sawtooth around 100 with a volume pattern."""
    i = ts // step
    o = 100 + (i % 40) * 0.25
    c = o + (0.5 if i % 3 else -0.5)
    h = max(o, c) + 0.25
    lo = min(o, c) - 0.25
    v = 1 + (i % 7) * 1.5
    return [
        ts,
        f"{o:.8f}",
        f"{h:.8f}",
        f"{lo:.8f}",
        f"{c:.8f}",
        f"{v:.8f}",
        ts + step - 1,
        "0",
        3,
        "0",
        "0",
        "0",
    ]


def expected_candle(ts: int, step: int) -> tuple[int, float, float, float, float, float]:
    row = market_kline(ts, step)
    return (row[0], float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]))


@dataclass
class Status:
    """Answer with this status, JSON body (or raw text) and headers instead of klines."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Slow:
    """Wait this long before answering normally."""

    seconds: float


@dataclass
class Truncated:
    """A complete HTTP answer whose JSON text stops half way."""


@dataclass
class Cut:
    """Announce the full body, send half of it, then drop the connection."""


Action = Status | Slow | Truncated | Cut


@dataclass
class FakeBinance:
    url: str = ""
    symbols: set[str] = field(default_factory=lambda: {"BTCUSDT", "ETHUSDT"})
    script: deque[Action] = field(default_factory=deque)
    at: dict[int, Action] = field(default_factory=dict)  # by request number (0-based), before script
    missing: set[int] = field(default_factory=set)
    duplicates: set[int] = field(default_factory=set)
    overrides: dict[int, list[Any]] = field(default_factory=dict)
    extra: list[list[Any]] = field(default_factory=list)
    end_ms: int | None = None
    page_cap: int | None = None  # answer at most this many rows, whatever the limit
    requests: list[dict[str, str]] = field(default_factory=list)

    def queue(self, *actions: Action) -> None:
        self.script.extend(actions)

    @property
    def start_times(self) -> list[int]:
        return [int(r["startTime"]) for r in self.requests]

    def klines(self, interval: str, start: int, end: int, limit: int) -> list[list[Any]]:
        step = INTERVAL_MS[interval]
        ts = -(-start // step) * step
        rows: list[list[Any]] = []
        cap = min(limit, self.page_cap or limit)
        while ts <= end and len(rows) < cap:
            if self.end_ms is not None and ts >= self.end_ms:
                break
            if ts not in self.missing:
                row = self.overrides.get(ts, market_kline(ts, step))
                rows.append(row)
                if ts in self.duplicates:
                    rows.append(list(row))
            ts += step
        return rows + self.extra

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(query)
        number = len(self.requests) - 1
        action = self.at.pop(number) if number in self.at else self.script.popleft() if self.script else None
        if isinstance(action, Status):
            text = action.body if isinstance(action.body, str) else json.dumps(action.body)
            return web.Response(
                status=action.status, text=text, content_type="application/json", headers=action.headers
            )
        if isinstance(action, Slow):
            await asyncio.sleep(action.seconds)
        if query.get("symbol") not in self.symbols:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        interval = query.get("interval", "")
        if interval not in INTERVAL_MS:
            return web.json_response({"code": -1120, "msg": "Invalid interval."}, status=400)
        limit = int(query.get("limit", "500"))
        if not 1 <= limit <= 1000:
            return web.json_response({"code": -1130, "msg": "Invalid data sent for a parameter."}, status=400)
        start = int(query["startTime"])
        end = int(query.get("endTime", str(2**62)))
        body = json.dumps(self.klines(interval, start, end, limit))
        if isinstance(action, Truncated):
            return web.Response(text=body[: len(body) // 2], content_type="application/json")
        if isinstance(action, Cut):
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2].encode())
            assert request.transport is not None
            request.transport.close()
            return resp
        return web.Response(text=body, content_type="application/json")


class FakeTime:
    """A monotonic clock that only moves when the adapter sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def serve_fake_binance(fake: FakeBinance | None = None) -> AsyncIterator[FakeBinance]:
    """Serve ``fake`` (a new one by default) on a free port of 127.0.0.1 while the block runs."""
    fake = fake or FakeBinance()
    app = web.Application()
    app.router.add_get("/api/v3/klines", fake.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
