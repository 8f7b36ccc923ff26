"""Errors grouped by what the caller should do about them.

* ``ConfigurationError``: the caller's input is wrong (unknown or duplicate name, bad frame,
  bad parameters); fix the input and call again.
* ``CandleDataError``: the exchange answered, but with candles the engine cannot use; the data
  source must be fixed.
* ``ExchangeUnavailableError``: the exchange could not be reached after retries; try later.
* ``PersistenceError``: live state could not be read or written; nothing already stored is lost.
* ``SignalValidationError``: a strategy produced a signal that breaks the rules; reported as an
  error event, never raised out of a run.
"""

from __future__ import annotations

from collections.abc import Iterable


class BacktestKitError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigurationError(BacktestKitError, ValueError):
    """Bad registration, unknown or duplicate name, invalid frame or parameters."""


class UnknownNameError(ConfigurationError, KeyError):
    """A name that was never registered; the message lists what is registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        names = sorted(known)
        listed = ", ".join(names) if names else "(none)"
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        super().__init__(f"unknown {kind} {name!r}; registered {plural}: {listed}")
        self.kind = kind
        self.name = name
        self.known = names

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CandleDataError(BacktestKitError):
    """The exchange returned candles that cannot be used (too few, misaligned, non-finite...)."""

    def __init__(self, message: str, *, symbol: str, interval: str, since_ms: int) -> None:
        from datetime import UTC, datetime

        since_iso = datetime.fromtimestamp(since_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
        super().__init__(f"{message} (symbol={symbol}, interval={interval}, since={since_iso})")
        self.symbol = symbol
        self.interval = interval
        self.since_ms = since_ms


class ExchangeUnavailableError(BacktestKitError):
    """The exchange adapter kept failing after every retry."""

    def __init__(self, message: str, *, symbol: str, interval: str, since_ms: int) -> None:
        from datetime import UTC, datetime

        since_iso = datetime.fromtimestamp(since_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
        super().__init__(f"{message} (symbol={symbol}, interval={interval}, since={since_iso})")
        self.symbol = symbol
        self.interval = interval
        self.since_ms = since_ms


class SignalValidationError(BacktestKitError, ValueError):
    """A signal broke the validation rules; ``messages`` holds every rule it broke."""

    def __init__(self, position: str, symbol: str, messages: list[str]) -> None:
        body = "\n".join(messages)
        super().__init__(f"Invalid signal for {position} position ({symbol}):\n{body}")
        self.messages = messages


class PersistenceError(BacktestKitError):
    """Live state could not be read or written."""


class CorruptStateError(PersistenceError):
    """A state file could not be parsed; it was moved aside and the key is frozen."""
