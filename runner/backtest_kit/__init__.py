"""Backtest Kit: strategies return signals; Backtest, Live and Walker drive one signal lifecycle.

The public API (a contract the runner and the operator build on): register with ``add_*``,
run with ``Backtest`` / ``Live`` / ``Walker``, observe with ``listen_*``, and inside a strategy
read the market with ``get_candles``, ``get_average_price``, ``get_date`` and ``get_mode``.
"""

from .backtest import Backtest
from .candles import Candle
from .clock import Clock, ReplayClock, WallClock
from .config import EngineConfig, get_config, get_default_config, reset_config, set_config
from .context import get_average_price, get_candles, get_date, get_mode
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
from .eventlog import EventLog
from .events import (
    listen_done_backtest,
    listen_done_backtest_once,
    listen_done_live,
    listen_done_live_once,
    listen_done_walker,
    listen_done_walker_once,
    listen_error,
    listen_error_once,
    listen_exit,
    listen_exit_once,
    listen_performance,
    listen_performance_once,
    listen_progress_backtest,
    listen_progress_backtest_once,
    listen_risk,
    listen_risk_once,
    listen_signal,
    listen_signal_backtest,
    listen_signal_backtest_once,
    listen_signal_live,
    listen_signal_live_once,
    listen_signal_once,
    listen_walker,
    listen_walker_complete,
    listen_walker_once,
)
from .examples import register_builtins
from .live import Live
from .persistence import FilePersistence, MemoryPersistence, PersistenceAdapter
from .registry import (
    add_exchange,
    add_frame,
    add_risk,
    add_strategy,
    add_walker,
    list_exchanges,
    list_frames,
    list_risks,
    list_strategies,
    list_walkers,
)
from .signals import SignalDto, SignalRow
from .walker import Walker

register_builtins()

__all__ = [
    "Backtest",
    "BacktestKitError",
    "Candle",
    "CandleDataError",
    "Clock",
    "ConfigurationError",
    "CorruptStateError",
    "EngineConfig",
    "EventLog",
    "ExchangeUnavailableError",
    "FilePersistence",
    "Live",
    "MemoryPersistence",
    "PersistenceAdapter",
    "PersistenceError",
    "ReplayClock",
    "SignalDto",
    "SignalRow",
    "SignalValidationError",
    "UnknownNameError",
    "Walker",
    "WallClock",
    "add_exchange",
    "add_frame",
    "add_risk",
    "add_strategy",
    "add_walker",
    "get_average_price",
    "get_candles",
    "get_config",
    "get_date",
    "get_default_config",
    "get_mode",
    "list_exchanges",
    "list_frames",
    "list_risks",
    "list_strategies",
    "list_walkers",
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
    "listen_walker",
    "listen_walker_complete",
    "listen_walker_once",
    "register_builtins",
    "reset_config",
    "set_config",
]
