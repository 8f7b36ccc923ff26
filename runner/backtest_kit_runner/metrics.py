"""Prometheus metrics of one runner: what the engine did, how fast, and what the exchange cost.

The names and labels are a contract with dashboards and alerts (docs/CONTRACTS.md), so they are
spelled exactly once, here. Every metric lives in a registry of its own rather than the
prometheus-client global one, so that two recorders (tests, a benchmark) never collide and
``/metrics`` shows nothing a library registered behind our back.

The recorder is fed with plain events: tick results (anything with ``action`` and ``signal``),
``live_tick`` performance events, tick errors and the exchange adapter's ``on_request`` hook. It
never calls the engine; the unrealised PnL of an open position is the engine's own PnL formula
(:mod:`backtest_kit.pnl`) applied to the tick's signal and price, with the fee and slippage of the
engine configuration.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

import backtest_kit
from backtest_kit import EngineConfig, SignalRow

from . import __version__

PREFIX = "backtest_kit_"
BASE_LABELS = ("symbol", "strategy", "exchange")

#: A live tick is a few candle reads and one strategy call: sub-millisecond to seconds (retries).
TICK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: One HTTP round trip to an exchange, or a file read for the CSV adapter.
EXCHANGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

SIDES = ("long", "short")
#: Close reasons known in advance, exported at zero so ``rate()`` works from the first scrape.
CLOSE_REASONS = ("take_profit", "stop_loss", "time_expired")
OPEN_ACTIONS = frozenset({"opened", "active"})


class SignalLike(Protocol):
    @property
    def position(self) -> str: ...


class TickResultLike(Protocol):
    """What the recorder reads from an engine tick result."""

    @property
    def action(self) -> str: ...


def unrealized_pnl_percent(signal: SignalRow, price: float, config: EngineConfig) -> float:
    """The PnL in percent ``signal`` would close with at ``price``: the engine's formula, fees and
    slippage included (partial closes weighted as the engine weighs them)."""
    return signal.pnl_percentage_at(
        price, slippage_percent=config.percent_slippage, fee_percent=config.percent_fee
    )


class PerformanceLike(Protocol):
    @property
    def metric(self) -> str: ...

    @property
    def duration_s(self) -> float: ...

    @property
    def timestamp(self) -> int:
        """Clock time of the tick, epoch milliseconds."""
        ...


class RunnerMetrics:
    """The runner's metrics for one ``(symbol, strategy, exchange)``, in an isolated registry."""

    def __init__(
        self,
        *,
        symbol: str,
        strategy: str,
        exchange: str,
        registry: CollectorRegistry | None = None,
        process_metrics: bool = True,
        config: Callable[[], EngineConfig] = backtest_kit.get_config,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._wall_clock = wall_clock
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        base = {"symbol": symbol, "strategy": strategy, "exchange": exchange}
        reg = self.registry
        self._tick_duration = Histogram(
            PREFIX + "live_tick_duration_seconds",
            "Wall time of one live tick (candle reads, strategy call, persistence).",
            BASE_LABELS,
            buckets=TICK_BUCKETS,
            registry=reg,
        ).labels(**base)
        self._ticks = Counter(
            PREFIX + "live_ticks", "Live ticks completed.", BASE_LABELS, registry=reg
        ).labels(**base)
        self._tick_errors = Counter(
            PREFIX + "live_tick_errors", "Live ticks that reported an error.", BASE_LABELS, registry=reg
        ).labels(**base)
        self._opened = Counter(
            PREFIX + "signals_opened", "Signals opened (positions entered).", BASE_LABELS, registry=reg
        ).labels(**base)
        self._closed = Counter(
            PREFIX + "signals_closed",
            "Signals closed, by close reason.",
            (*BASE_LABELS, "reason"),
            registry=reg,
        )
        self._cancelled = Counter(
            PREFIX + "signals_cancelled",
            "Scheduled signals cancelled before opening, by reason.",
            (*BASE_LABELS, "reason"),
            registry=reg,
        )
        self._open_position = Gauge(
            PREFIX + "open_position",
            "1 while a position of this side is open.",
            (*BASE_LABELS, "side"),
            registry=reg,
        )
        self._realized_pnl = Gauge(
            PREFIX + "realized_pnl_percent",
            "Sum of the PnL percentages of the closed signals.",
            BASE_LABELS,
            registry=reg,
        ).labels(**base)
        self._unrealized_pnl = Gauge(
            PREFIX + "unrealized_pnl_percent",
            "PnL percentage the open position would close with at the last tick's price "
            "(fees and slippage included); 0 while flat.",
            BASE_LABELS,
            registry=reg,
        ).labels(**base)
        self._last_tick = Gauge(
            PREFIX + "last_tick_timestamp_seconds",
            "Clock time (epoch seconds; simulated when replaying) of the last completed tick.",
            BASE_LABELS,
            registry=reg,
        ).labels(**base)
        self._last_tick_wall = Gauge(
            PREFIX + "last_tick_wall_timestamp_seconds",
            "Wall-clock time (epoch seconds, never simulated) at which the last live tick completed.",
            BASE_LABELS,
            registry=reg,
        ).labels(**base)
        self._exchange_duration = Histogram(
            PREFIX + "exchange_request_duration_seconds",
            "Duration of one exchange adapter request, by candle interval.",
            (*BASE_LABELS, "interval"),
            buckets=EXCHANGE_BUCKETS,
            registry=reg,
        )
        self._exchange_errors = Counter(
            PREFIX + "exchange_request_errors",
            "Exchange adapter requests that failed.",
            BASE_LABELS,
            registry=reg,
        ).labels(**base)
        self._draining = Gauge(
            PREFIX + "runner_draining",
            "1 once a drain was requested (POST /stop).",
            BASE_LABELS,
            registry=reg,
        ).labels(**base)
        self._frozen = Gauge(
            PREFIX + "state_frozen",
            "1 while no new signal may open: the state was quarantined or is invalid (/status frozen).",
            BASE_LABELS,
            registry=reg,
        ).labels(**base)
        Info(PREFIX + "runner", "Runner build and Python version.", BASE_LABELS, registry=reg).labels(
            **base
        ).info({"version": __version__, "python": platform.python_version()})
        if process_metrics:
            ProcessCollector(registry=reg)
        # values that change on most ticks are read when scraped, not written into the registry
        # on every tick: the tick stores a plain value (one assignment), the gauge reads it
        self._open: tuple[SignalRow, float] | None = None  # the open signal and the last price
        self._last_tick_s = self._last_tick_wall_s = self._realized_pnl_value = 0.0
        self._frozen_value = False
        self._unrealized_pnl.set_function(self._unrealized_pnl_now)
        self._last_tick.set_function(lambda: self._last_tick_s)
        self._last_tick_wall.set_function(lambda: self._last_tick_wall_s)
        self._realized_pnl.set_function(lambda: self._realized_pnl_value)
        self._frozen.set_function(lambda: 1.0 if self._frozen_value else 0.0)
        self._base = base
        self._closed_by_reason: dict[str, Any] = {}
        self._cancelled_by_reason: dict[str, Any] = {}
        self._sides = {side: self._open_position.labels(**base, side=side) for side in SIDES}
        for side in self._sides.values():
            side.set(0)
        self._side: str | None = None  # the side the open-position gauges show
        for reason in CLOSE_REASONS:
            self._closed_child(reason)
        self._draining.set(0)

    # -- engine events ------------------------------------------------------------------------

    def record_tick_result(self, result: TickResultLike) -> None:
        """A tick result (``listen_signal_live``): what the tick did to the signal."""
        action = result.action
        signal: SignalLike | None = getattr(result, "signal", None)
        side = signal.position if signal is not None and action in OPEN_ACTIONS else None
        if side != self._side:  # the same side again (most ticks) leaves the gauges as they are
            self._side = side
            for name, child in self._sides.items():
                child.set(1 if name == side else 0)
        price = getattr(result, "current_price", None)
        if side is None:
            self._open = None
        elif isinstance(signal, SignalRow) and isinstance(price, int | float):
            self._open = (signal, float(price))
        if action == "opened":
            self._opened.inc()
        elif action == "closed":
            self._closed_child(str(getattr(result, "close_reason", None) or "unknown")).inc()
        elif action == "cancelled":
            self._cancelled_child(str(getattr(result, "cancel_reason", None) or "unknown")).inc()

    def record_performance(self, event: PerformanceLike) -> None:
        """A performance event; a ``live_tick`` one is a completed tick (even a failed one)."""
        if event.metric != "live_tick":
            return
        self._ticks.inc()
        self._tick_duration.observe(max(0.0, float(event.duration_s)))
        self._last_tick_s = event.timestamp / 1000
        self._last_tick_wall_s = self._wall_clock()

    def record_tick_errors(self, count: int = 1) -> None:
        if count > 0:
            self._tick_errors.inc(count)

    def set_realized_pnl_percent(self, value: float) -> None:
        self._realized_pnl_value = float(value)

    def set_draining(self, draining: bool) -> None:
        self._draining.set(1 if draining else 0)

    def set_frozen(self, frozen: bool) -> None:
        """Whether a quarantined or invalid state keeps new signals from opening."""
        self._frozen_value = frozen

    def _unrealized_pnl_now(self) -> float:
        """The open position's PnL at the last tick's price (0 while flat), when scraped."""
        open_ = self._open
        if open_ is None:
            return 0.0
        return unrealized_pnl_percent(open_[0], open_[1], self._config())

    # -- exchange adapter hook ----------------------------------------------------------------

    def on_exchange_request(self, interval: str, duration_s: float, error: BaseException | None) -> None:
        """The exchange adapter's ``on_request(interval, duration_s, error)`` hook."""
        self._exchange_duration.labels(**self._base, interval=interval).observe(max(0.0, duration_s))
        if error is not None:
            self._exchange_errors.inc()

    # -- exposition ---------------------------------------------------------------------------

    #: The classic text format: every Prometheus 2.x and 3.x server parses it.
    content_type = CONTENT_TYPE_PLAIN_0_0_4

    def render(self) -> bytes:
        """The text exposition format of every metric in this registry."""
        return generate_latest(self.registry)

    def _closed_child(self, reason: str) -> Any:
        child = self._closed_by_reason.get(reason)
        if child is None:
            child = self._closed_by_reason[reason] = self._closed.labels(**self._base, reason=reason)
        return child

    def _cancelled_child(self, reason: str) -> Any:
        child = self._cancelled_by_reason.get(reason)
        if child is None:
            child = self._cancelled_by_reason[reason] = self._cancelled.labels(**self._base, reason=reason)
        return child
