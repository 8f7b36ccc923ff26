"""Errors the exchange adapters add, each a subclass of the engine's group it belongs to.

The engine sorts failures by what the caller should do (``backtest_kit.errors``); the adapters keep
that sorting and only add detail an operator needs to act: the HTTP status and the exchange's own
error code and message, or how long the exchange asked us to stay away.
"""

from __future__ import annotations

from backtest_kit.errors import ConfigurationError, ExchangeUnavailableError

from ._common import since_text


class ExchangeRequestError(ConfigurationError):
    """The exchange refused the request itself (HTTP 4xx such as an unknown symbol); not retried.

    ``status`` is the HTTP status (``None`` when a library hid it), ``code`` and ``msg`` the
    exchange's own error code and message when it sent them.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        code: int | None,
        msg: str | None,
        symbol: str,
        interval: str,
        since_ms: int,
    ) -> None:
        super().__init__(f"{message} (symbol={symbol}, interval={interval}, since={since_text(since_ms)})")
        self.status = status
        self.code = code
        self.msg = msg
        self.symbol = symbol
        self.interval = interval
        self.since_ms = since_ms


class ExchangeRateLimitedError(ExchangeUnavailableError):
    """The exchange rate-limited (429) or banned (418) us for longer than we are willing to wait.

    ``retry_after_s`` is how long it asked us to wait (``None`` when it did not say).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after_s: float | None,
        symbol: str,
        interval: str,
        since_ms: int,
    ) -> None:
        super().__init__(message, symbol=symbol, interval=interval, since_ms=since_ms)
        self.status = status
        self.retry_after_s = retry_after_s
