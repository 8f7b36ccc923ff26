"""Exchange adapters: where the runner's candles come from (Binance over HTTP, or local files).

The engine asks an adapter for ``limit`` consecutive candles from ``since`` and trusts the answer;
everything that can go wrong on the way (network trouble, rate limits, bad or missing data) is
handled here and surfaces as one of the engine's error groups. Register an adapter with the
engine with :func:`register` (``add_exchange(name, get_candles=adapter.get_candles)``, plus the
columnar ``get_candle_arrays`` fast path when the adapter has one).

* :class:`BinanceKlinesExchange`: Binance spot klines over HTTP (aiohttp).
* :class:`CandleFileExchange`: 1m candles from CSV/Parquet files, aggregated to any interval.
* :class:`CcxtExchange`: any exchange ccxt supports (needs the optional ``ccxt`` package).
"""

from __future__ import annotations

from typing import Any

from ._common import CandleRequest, CandleSource, check_request
from .binance import BINANCE_INTERVALS, BinanceHTTPError, BinanceKlinesExchange
from .ccxt_adapter import CcxtExchange
from .errors import ExchangeRateLimitedError, ExchangeRequestError
from .files import CandleFileError, CandleFileExchange

__all__ = [
    "BINANCE_INTERVALS",
    "BinanceHTTPError",
    "BinanceKlinesExchange",
    "CandleFileError",
    "CandleFileExchange",
    "CandleRequest",
    "CandleSource",
    "CcxtExchange",
    "ExchangeRateLimitedError",
    "ExchangeRequestError",
    "check_request",
    "register",
]


def register(name: str, adapter: CandleSource, *, replace: bool = False) -> None:
    """Register ``adapter`` with the engine as exchange ``name``."""
    from backtest_kit import add_exchange

    extra: dict[str, Any] = {}
    arrays = getattr(adapter, "get_candle_arrays", None)
    if arrays is not None:
        extra["get_candle_arrays"] = arrays
    add_exchange(name, get_candles=adapter.get_candles, replace=replace, **extra)
