"""From the ``--exchange`` option to a registered engine exchange, with request metrics attached.

A LiveTrader says where candles come from in one string: ``synthetic`` (the engine's built-in
market), ``binance`` or ``binance:<base URL>`` (e.g. the testnet), ``csv:<path>`` (a file or a
directory of CSV/Parquet candles), ``ccxt:<exchange id>`` (any exchange ccxt reaches, when ccxt is
installed), or the name of an exchange a ``--load`` module registered. This
module builds the adapter for the kinds the runner knows, wires its request timings into the
metrics, registers it under a stable name (the ``exchange`` metric label) and closes it at exit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from backtest_kit.candles import Candle
from backtest_kit.errors import ConfigurationError

from .options import EXCHANGE_KINDS

if TYPE_CHECKING:  # the adapters are imported when one is built: aiohttp alone takes 0.15 s
    from .exchanges.binance import BinanceKlinesExchange

log = logging.getLogger("backtest_kit_runner.exchange")

#: ``on_request(interval, duration_s, error)``, as the adapters call it.
OnRequest = Callable[[str, float, BaseException | None], None]
GetCandles = Callable[[str, str, datetime, int], Awaitable[Sequence[Candle]]]
Register = Callable[..., object]

BINANCE = "binance"
CSV = "csv"
CCXT = "ccxt"


@dataclass(frozen=True)
class ExchangeSpec:
    """The parsed ``--exchange`` value: what to build and the name it is registered under."""

    kind: str  # "binance", "csv", "ccxt" or "registered"
    name: str
    argument: str | None = None

    @staticmethod
    def parse(text: str) -> ExchangeSpec:
        kind, sep, arg = text.strip().partition(":")
        if kind == BINANCE:
            if sep and not arg.startswith(("http://", "https://")):
                raise ConfigurationError(f"--exchange {text!r}: binance:<URL> needs an http(s) URL")
            return ExchangeSpec(BINANCE, BINANCE, arg or None)
        if kind == CSV:
            if not arg:
                raise ConfigurationError(
                    f"--exchange {text!r}: give the candle file or directory, csv:<path>"
                )
            return ExchangeSpec(CSV, CSV, arg)
        if kind == CCXT:
            if not arg.strip():
                raise ConfigurationError(f"--exchange {text!r}: give ccxt's exchange id, ccxt:<id>")
            return ExchangeSpec(CCXT, exchange_label(text), arg.strip())
        if sep:
            raise ConfigurationError(
                f"--exchange {text!r}: unknown kind {kind!r}; use {', '.join(EXCHANGE_KINDS)} "
                "or the name of an exchange a --load module registers"
            )
        return ExchangeSpec("registered", text.strip())


def exchange_label(text: str) -> str:
    """The name ``text`` registers under (the ``exchange`` metric label), without validating it."""
    kind, _, arg = text.strip().partition(":")
    if kind == CCXT:
        return f"{CCXT}-{arg.strip()}"  # a file-name-safe label (state files carry it)
    return kind if kind in (BINANCE, CSV) else text.strip()


@dataclass
class PreparedExchange:
    """A registered exchange; ``close`` releases what the runner opened for it."""

    name: str
    close: Callable[[], Awaitable[None]] | None = None
    #: The longest a healthy request may keep the tick silent: one attempt, its backoff, a
    #: rate-limit wait (the liveness window never gets shorter than this).
    silence_s: float = 0.0

    async def aclose(self) -> None:
        if self.close is not None:
            await self.close()


def timed(get_candles: GetCandles, on_request: OnRequest) -> GetCandles:
    """``get_candles`` reporting each call's duration and error to ``on_request``."""

    async def get_candles_timed(symbol: str, interval: str, since: datetime, limit: int) -> Sequence[Candle]:
        started = time.perf_counter()
        try:
            candles = await get_candles(symbol, interval, since, limit)
        except Exception as exc:
            on_request(interval, time.perf_counter() - started, exc)
            raise
        on_request(interval, time.perf_counter() - started, None)
        return candles

    return get_candles_timed


#: ``--exchange-options`` keys each kind understands (camelCase, as the LiveTrader spec writes them).
SETTINGS: dict[str, frozenset[str]] = {
    BINANCE: frozenset({"baseUrl", "requestTimeout", "maxRetries", "maxRetryAfter"}),
    CSV: frozenset({"path"}),
    CCXT: frozenset({"maxRetries"}),
    "registered": frozenset(),
}


def _check_settings(spec: ExchangeSpec, settings: Mapping[str, object]) -> None:
    allowed = SETTINGS[spec.kind]
    unknown = sorted(set(settings) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise ConfigurationError(
            f"--exchange-options {', '.join(unknown)} not understood by exchange {spec.name!r} "
            f"(accepted: {accepted})"
        )


def _number(settings: Mapping[str, object], key: str, kind: type[int] | type[float]) -> dict[str, Any]:
    if key not in settings:
        return {}
    try:
        return {_SNAKE[key]: kind(str(settings[key]))}
    except ValueError:
        raise ConfigurationError(
            f"--exchange-options {key} must be a number, got {settings[key]!r}"
        ) from None


_SNAKE = {
    "requestTimeout": "request_timeout",
    "maxRetries": "max_retries",
    "maxRetryAfter": "max_retry_after",
}

#: A rate limit asking the runner to wait longer than this fails the tick at once (it is retried
#: next minute, and nobody sends until the limit is over) instead of keeping it silent.
RUNNER_MAX_RETRY_AFTER_S = 20.0


def binance_silence_s(adapter: BinanceKlinesExchange) -> float:
    """The longest an adapter call goes without reporting an attempt (see ``PreparedExchange``)."""
    retries = adapter.max_retries
    backoff = min(adapter.backoff_max, adapter.backoff_base * 2.0 ** (retries - 1)) if retries else 0.0
    return max(adapter.request_timeout + backoff, adapter.max_retry_after)


def _binance(spec: ExchangeSpec, settings: Mapping[str, object], on_request: OnRequest | None) -> Any:
    from .exchanges.binance import BinanceKlinesExchange

    kwargs: dict[str, Any] = {
        "max_retry_after": RUNNER_MAX_RETRY_AFTER_S,
        **_number(settings, "requestTimeout", float),
        **_number(settings, "maxRetries", int),
        **_number(settings, "maxRetryAfter", float),
    }
    base_url = str(settings.get("baseUrl") or spec.argument or "")
    if base_url:
        return BinanceKlinesExchange(base_url, on_request=on_request, **kwargs)
    return BinanceKlinesExchange(on_request=on_request, **kwargs)


def prepare_exchange(
    text: str,
    *,
    on_request: OnRequest | None,
    register: Register,
    registered: Callable[[], Iterable[str]],
    settings: Mapping[str, object] | None = None,
) -> PreparedExchange:
    """Build and register the exchange ``text`` names (``register`` is ``add_exchange``).

    ``settings`` are the ``--exchange-options``; a key the exchange does not understand is an error.
    """
    settings = settings or {}
    if text.strip() == CSV and settings.get("path"):
        text = f"{CSV}:{settings['path']}"
    spec = ExchangeSpec.parse(text)
    _check_settings(spec, settings)
    if spec.kind == BINANCE:
        binance = _binance(spec, settings, on_request)
        register(spec.name, get_candles=binance.get_candles, replace=True)
        return PreparedExchange(spec.name, binance.close, silence_s=binance_silence_s(binance))
    if spec.kind == CCXT:
        from .exchanges.ccxt_adapter import CcxtExchange

        ccxt = CcxtExchange(
            spec.argument or "", on_request=on_request, **_number(settings, "maxRetries", int)
        )
        register(spec.name, get_candles=ccxt.get_candles, replace=True)
        return PreparedExchange(spec.name, ccxt.close)
    if spec.kind == CSV:
        from .exchanges.files import CandleFileExchange

        files = CandleFileExchange(spec.argument or "")
        fetch: GetCandles = files.get_candles
        if on_request is not None:  # a live trader times each request: the list path only
            register(spec.name, get_candles=timed(fetch, on_request), replace=True)
        else:  # batch runs take the columnar path too: the same candles without building lists
            register(spec.name, get_candles=fetch, get_candle_arrays=files.get_candle_arrays, replace=True)
        return PreparedExchange(spec.name)
    known = sorted(registered())
    if spec.name not in known:
        raise ConfigurationError(
            f"unknown exchange {spec.name!r}; registered: {', '.join(known) or '(none)'}; "
            f"the runner also builds {', '.join(EXCHANGE_KINDS[1:])}"
        )
    return PreparedExchange(spec.name)
