"""Backtest Kit: strategies return signals; Backtest, Live and Walker drive one signal lifecycle.

The public API (a contract the runner and the operator build on). An :class:`Engine` owns
everything: registrations, a frozen configuration, the risk book, the event bus and the runs.
The module-level functions below are a facade over the default engine (:func:`default_engine`,
replaced with :func:`use_engine`): register with ``add_*``, run with ``Backtest`` / ``Live`` /
``Walker``, observe with ``listen_*``, and inside a strategy read the market with
``get_candles``, ``get_average_price``, ``get_date`` and ``get_mode``. A parameter grid over a
parametrised strategy is ``Walker.add_grid`` (or ``run_grid``, synchronous, ranked).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .backtest import BacktestMode, BacktestRun
from .candles import Candle
from .config import EngineConfig
from .context import get_average_price, get_candles, get_date, get_mode
from .engine import Engine, default_engine, listener, mode_proxy, on_default_registry, use_engine
from .errors import (
    BacktestKitError,
    CandleDataError,
    ConfigurationError,
    CorruptStateError,
    ExchangeUnavailableError,
    PersistenceError,
    SignalValidationError,
    UnknownNameError,
)
from .events import (
    CommitEvent,
    ControlEvent,
    DoneEvent,
    EventBus,
    PerformanceEvent,
    PositionEvent,
    ProgressEvent,
    RiskEvent,
)
from .grid import Grid, GridError, grid_from, member_label, parse_grid
from .position import (
    commit_average_buy,
    commit_breakeven,
    commit_partial_loss,
    commit_partial_loss_cost,
    commit_partial_profit,
    commit_partial_profit_cost,
    commit_trailing_stop,
    commit_trailing_stop_cost,
    commit_trailing_take,
    commit_trailing_take_cost,
    get_pending_signal,
    get_position_effective_price,
    get_total_cost_closed,
    get_total_percent_closed,
)
from .registry import Registry
from .signals import Entry, Partial, SignalDto, SignalRow

if TYPE_CHECKING:
    from .clock import Clock, ReplayClock, WallClock
    from .eventlog import EventLog
    from .live import LiveMode
    from .notebook import BacktestResult, GridResult, run_backtest, run_grid
    from .persistence import FilePersistence, MemoryPersistence, PersistenceAdapter
    from .walker import GridMember, WalkerMode

#: Names of modules a backtest does not need, imported on first use (``import backtest_kit``
#: stays cheap for a script or a runner process that only backtests).
_LAZY = {
    "Clock": "clock",
    "ReplayClock": "clock",
    "WallClock": "clock",
    "EventLog": "eventlog",
    "LiveMode": "live",
    "BacktestResult": "notebook",
    "GridResult": "notebook",
    "run_backtest": "notebook",
    "run_grid": "notebook",
    "FilePersistence": "persistence",
    "MemoryPersistence": "persistence",
    "PersistenceAdapter": "persistence",
    "GridMember": "walker",
    "WalkerMode": "walker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


Backtest: BacktestMode = mode_proxy(lambda engine: engine.backtest)
Live: LiveMode = mode_proxy(lambda engine: engine.live)
Walker: WalkerMode = mode_proxy(lambda engine: engine.walker)

add_exchange = on_default_registry(Registry.add_exchange)
add_strategy = on_default_registry(Registry.add_strategy)
add_frame = on_default_registry(Registry.add_frame)
add_risk = on_default_registry(Registry.add_risk)
add_walker = on_default_registry(Registry.add_walker)
list_exchanges = on_default_registry(Registry.list_exchanges)
list_strategies = on_default_registry(Registry.list_strategies)
list_frames = on_default_registry(Registry.list_frames)
list_risks = on_default_registry(Registry.list_risks)
list_walkers = on_default_registry(Registry.list_walkers)


def get_config() -> EngineConfig:
    """The default engine's configuration."""
    return default_engine().config


def get_default_config() -> EngineConfig:
    return EngineConfig()


def set_config(partial: dict[str, Any] | None = None, /, **changes: Any) -> EngineConfig:
    """Merge ``changes`` into the default engine's configuration (see :meth:`Engine.set_config`).

    >>> set_config(percent_fee=0.2)  # doctest: +SKIP
    >>> set_config({"CC_PERCENT_SLIPPAGE": 0})  # doctest: +SKIP
    """
    return default_engine().set_config(partial, **changes)


def reset_config() -> EngineConfig:
    """The default engine back to the default configuration."""
    return default_engine().reset_config()


listen_signal, listen_signal_once = listener("signal", lambda bus: bus.signal)
listen_signal_backtest, listen_signal_backtest_once = listener(
    "signal_backtest", lambda bus: bus.signal_backtest
)
listen_signal_live, listen_signal_live_once = listener("signal_live", lambda bus: bus.signal_live)
listen_error, listen_error_once = listener("error", lambda bus: bus.error)
listen_exit, listen_exit_once = listener("exit", lambda bus: bus.exit)
listen_done_backtest, listen_done_backtest_once = listener("done_backtest", lambda bus: bus.done_backtest)
listen_done_live, listen_done_live_once = listener("done_live", lambda bus: bus.done_live)
listen_done_walker, listen_done_walker_once = listener("done_walker", lambda bus: bus.done_walker)
listen_progress_backtest, listen_progress_backtest_once = listener(
    "progress_backtest", lambda bus: bus.progress_backtest
)
listen_performance, listen_performance_once = listener("performance", lambda bus: bus.performance)
listen_risk, listen_risk_once = listener("risk", lambda bus: bus.risk)
listen_walker, listen_walker_once = listener("walker", lambda bus: bus.walker)
listen_walker_complete, listen_walker_complete_once = listener(
    "walker_complete", lambda bus: bus.walker_complete
)
listen_active_ping, listen_active_ping_once = listener("active_ping", lambda bus: bus.active_ping)
listen_partial_profit_available, listen_partial_profit_available_once = listener(
    "partial_profit_available", lambda bus: bus.partial_profit_available
)
listen_partial_loss_available, listen_partial_loss_available_once = listener(
    "partial_loss_available", lambda bus: bus.partial_loss_available
)
listen_breakeven_available, listen_breakeven_available_once = listener(
    "breakeven_available", lambda bus: bus.breakeven_available
)
listen_strategy_commit, listen_strategy_commit_once = listener(
    "strategy_commit", lambda bus: bus.strategy_commit
)
listen_control, listen_control_once = listener("control", lambda bus: bus.control)

__all__ = [
    "Backtest",
    "BacktestKitError",
    "BacktestMode",
    "BacktestResult",
    "BacktestRun",
    "Candle",
    "CandleDataError",
    "Clock",
    "CommitEvent",
    "ConfigurationError",
    "ControlEvent",
    "CorruptStateError",
    "DoneEvent",
    "Engine",
    "EngineConfig",
    "Entry",
    "EventBus",
    "EventLog",
    "ExchangeUnavailableError",
    "FilePersistence",
    "Grid",
    "GridError",
    "GridMember",
    "GridResult",
    "Live",
    "LiveMode",
    "MemoryPersistence",
    "Partial",
    "PerformanceEvent",
    "PersistenceAdapter",
    "PersistenceError",
    "PositionEvent",
    "ProgressEvent",
    "Registry",
    "ReplayClock",
    "RiskEvent",
    "SignalDto",
    "SignalRow",
    "SignalValidationError",
    "UnknownNameError",
    "Walker",
    "WalkerMode",
    "WallClock",
    "add_exchange",
    "add_frame",
    "add_risk",
    "add_strategy",
    "add_walker",
    "commit_average_buy",
    "commit_breakeven",
    "commit_partial_loss",
    "commit_partial_loss_cost",
    "commit_partial_profit",
    "commit_partial_profit_cost",
    "commit_trailing_stop",
    "commit_trailing_stop_cost",
    "commit_trailing_take",
    "commit_trailing_take_cost",
    "default_engine",
    "get_average_price",
    "get_candles",
    "get_config",
    "get_date",
    "get_default_config",
    "get_mode",
    "get_pending_signal",
    "get_position_effective_price",
    "get_total_cost_closed",
    "get_total_percent_closed",
    "grid_from",
    "list_exchanges",
    "list_frames",
    "list_risks",
    "list_strategies",
    "list_walkers",
    "listen_active_ping",
    "listen_active_ping_once",
    "listen_breakeven_available",
    "listen_breakeven_available_once",
    "listen_control",
    "listen_control_once",
    "listen_done_backtest",
    "listen_done_backtest_once",
    "listen_done_live",
    "listen_done_live_once",
    "listen_done_walker",
    "listen_done_walker_once",
    "listen_error",
    "listen_error_once",
    "listen_exit",
    "listen_exit_once",
    "listen_partial_loss_available",
    "listen_partial_loss_available_once",
    "listen_partial_profit_available",
    "listen_partial_profit_available_once",
    "listen_performance",
    "listen_performance_once",
    "listen_progress_backtest",
    "listen_progress_backtest_once",
    "listen_risk",
    "listen_risk_once",
    "listen_signal",
    "listen_signal_backtest",
    "listen_signal_backtest_once",
    "listen_signal_live",
    "listen_signal_live_once",
    "listen_signal_once",
    "listen_strategy_commit",
    "listen_strategy_commit_once",
    "listen_walker",
    "listen_walker_complete",
    "listen_walker_complete_once",
    "listen_walker_once",
    "member_label",
    "parse_grid",
    "reset_config",
    "run_backtest",
    "run_grid",
    "set_config",
    "use_engine",
]
