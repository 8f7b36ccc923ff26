"""Exchange adapters: where the runner's candles come from (Binance over HTTP, or local files).

The engine asks an adapter for ``limit`` consecutive candles from ``since`` and trusts the answer;
everything that can go wrong on the way (network trouble, rate limits, bad or missing data) is
handled here and surfaces as one of the engine's error groups. Hand an adapter to the engine with
``add_exchange(name, get_candles=adapter.get_candles)``; the file adapter also offers the columnar
fast path (``get_candle_arrays=adapter.get_candle_arrays``). The runner does this in
``exchange_setup``.

* :class:`BinanceKlinesExchange`: Binance spot klines over HTTP (aiohttp).
* :class:`CandleFileExchange`: 1m candles from CSV/Parquet files, aggregated to any interval.
* :class:`CcxtExchange`: any exchange ccxt supports (needs the optional ``ccxt`` package).
"""

from __future__ import annotations

from ._common import CandleRequest, check_request
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
    "CcxtExchange",
    "ExchangeRateLimitedError",
    "ExchangeRequestError",
    "check_request",
]
