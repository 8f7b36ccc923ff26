"""Backtest Kit: strategies, signals, and the Backtest / Live / Walker modes that drive them."""

from .candles import Candle
from .errors import (
    BacktestKitError,
    CandleDataError,
    ConfigurationError,
    ExchangeUnavailableError,
    PersistenceError,
    SignalValidationError,
    UnknownNameError,
)

__all__ = [
    "BacktestKitError",
    "Candle",
    "CandleDataError",
    "ConfigurationError",
    "ExchangeUnavailableError",
    "PersistenceError",
    "SignalValidationError",
    "UnknownNameError",
]
