"""The execution context a strategy runs in: which symbol, which minute, which mode.

``get_candles``, ``get_average_price``, ``get_date`` and ``get_mode`` read it from a context
variable, so a strategy never passes time around and can never see a candle that had not
closed at ``when``.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NamedTuple

from .candles import Candle, from_ms
from .errors import BacktestKitError

if TYPE_CHECKING:
    from .market import ExchangeClient, MinuteFeed


class ExecutionContext(NamedTuple):
    symbol: str
    when_ms: int
    backtest: bool
    client: ExchangeClient
    feed: MinuteFeed | None = None
    #: The open position a callback may manage (a ``position.PositionDesk``), if any.
    desk: object | None = None
    #: The tick's price when the caller already knows it (live: the VWAP it just computed).
    average: float | None = None


current: ContextVar[ExecutionContext | None] = ContextVar("backtest_kit_context", default=None)


class NoContextError(BacktestKitError, RuntimeError):
    """A context function was called outside ``get_signal`` (or another engine callback)."""


def _ctx(fn: str) -> ExecutionContext:
    ctx = current.get()
    if ctx is None:
        raise NoContextError(f"{fn}() needs an execution context: call it from inside get_signal")
    return ctx


async def get_candles(symbol: str, interval: str, limit: int) -> list[Candle]:
    """The ``limit`` candles of ``interval`` that closed before the current minute, oldest first."""
    ctx = _ctx("get_candles")
    return await ctx.client.historical_candles(symbol, interval, ctx.when_ms, limit)


async def get_average_price(symbol: str) -> float:
    """VWAP of the last closed 1m candles (``avg_price_candles_count`` of them)."""
    ctx = _ctx("get_average_price")
    if ctx.average is not None and ctx.symbol == symbol:
        return ctx.average
    if ctx.feed is not None and ctx.feed.symbol == symbol:
        return await ctx.feed.price_at(ctx.when_ms)
    return await ctx.client.average_price(symbol, ctx.when_ms)


def get_date() -> datetime:
    """The current minute (UTC) of the run: simulated in backtest and replay, real in live."""
    return from_ms(_ctx("get_date").when_ms)


def get_mode() -> Literal["backtest", "live"]:
    return "backtest" if _ctx("get_mode").backtest else "live"
