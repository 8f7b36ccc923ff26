"""Typed event subjects, one set per engine (:class:`EventBus`), and the records they carry.

Reports, the runner's metrics and user code learn what an engine did only through its bus;
nothing outside the engine reaches into its state. Each :class:`~backtest_kit.engine.Engine`
owns its own bus, so two engines in one process (tests, a Walker worker) never hear each
other. A listener may be a plain or an async function; a listener that raises is reported on
the bus's error subject and never breaks a run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .signals import AnyResult, SignalRow

T = TypeVar("T")
Unsubscribe = Callable[[], None]
#: What the Walker reports after each strategy and at the end (the progress contract, camelCase).
WalkerReport = Mapping[str, Any]

log = logging.getLogger("backtest_kit")


class Subject(Generic[T]):
    """A list of listeners called in subscription order, awaited one after the other.

    ``errors`` is where a failing listener is reported (the bus's error subject); the error
    subject itself has none, so a failing error listener is only logged.
    """

    __slots__ = ("_listeners", "errors", "name")

    def __init__(self, name: str, errors: Subject[BaseException] | None = None) -> None:
        self.name = name
        self.errors = errors
        self._listeners: list[Callable[[T], Any]] = []

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def subscribe(self, fn: Callable[[T], Any], *, once: bool = False) -> Unsubscribe:
        if not callable(fn):
            raise TypeError(f"listener for {self.name} must be callable, got {fn!r}")
        if once:
            fired = False

            def wrapper(value: T) -> Any:
                nonlocal fired
                if fired:
                    return None
                fired = True
                unsubscribe()
                return fn(value)

            target: Callable[[T], Any] = wrapper
        else:
            target = fn
        self._listeners.append(target)

        def unsubscribe() -> None:
            try:
                self._listeners.remove(target)
            except ValueError:
                pass

        return unsubscribe

    async def emit(self, value: T) -> None:
        for fn in tuple(self._listeners):
            try:
                out = fn(value)
                if inspect.isawaitable(out):
                    await out
            except Exception as exc:  # a broken listener must not break the run
                if self.errors is None:
                    log.exception("listener of %s failed", self.name)
                else:
                    log.warning("listener of %s raised %r", self.name, exc)
                    await self.errors.emit(exc)


@dataclass(frozen=True, slots=True)
class PerformanceEvent:
    """How long one step took (``metric`` is e.g. ``live_tick`` or ``backtest_total``)."""

    metric: str
    duration_s: float
    symbol: str
    strategy_name: str
    exchange_name: str
    timestamp: int
    backtest: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "metricType": self.metric,
            "duration": self.duration_s * 1000,
            "symbol": self.symbol,
            "strategyName": self.strategy_name,
            "exchangeName": self.exchange_name,
            "timestamp": self.timestamp,
            "backtest": self.backtest,
        }


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    symbol: str
    strategy_name: str
    exchange_name: str
    frame_name: str
    total_frames: int
    processed_frames: int

    @property
    def progress(self) -> float:
        return self.processed_frames / self.total_frames if self.total_frames else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategyName": self.strategy_name,
            "exchangeName": self.exchange_name,
            "frameName": self.frame_name,
            "totalFrames": self.total_frames,
            "processedFrames": self.processed_frames,
            "progress": self.progress,
        }


@dataclass(frozen=True, slots=True)
class DoneEvent:
    symbol: str
    strategy_name: str
    exchange_name: str
    frame_name: str
    backtest: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategyName": self.strategy_name,
            "exchangeName": self.exchange_name,
            "frameName": self.frame_name,
            "backtest": self.backtest,
        }


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """A signal the risk profile rejected; ``note`` says why."""

    symbol: str
    strategy_name: str
    exchange_name: str
    risk_name: str
    note: str
    current_price: float
    timestamp: int
    signal: dict[str, Any]
    active_position_count: int
    backtest: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategyName": self.strategy_name,
            "exchangeName": self.exchange_name,
            "riskName": self.risk_name,
            "comment": self.note,
            "currentPrice": self.current_price,
            "timestamp": self.timestamp,
            "pendingSignal": self.signal,
            "activePositionCount": self.active_position_count,
            "backtest": self.backtest,
        }


@dataclass(frozen=True, slots=True)
class PositionEvent:
    """A moment in the life of an open position: a ping, a milestone, breakeven within reach.

    ``kind`` is ``active_ping``, ``partial_profit``, ``partial_loss`` or ``breakeven``; ``level``
    is the milestone (10, 20, ... 100 percent of the way to the take-profit or the stop-loss).
    """

    kind: str
    symbol: str
    strategy_name: str
    exchange_name: str
    frame_name: str
    signal: SignalRow
    current_price: float
    backtest: bool
    timestamp: int
    level: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategyName": self.strategy_name,
            "exchangeName": self.exchange_name,
            "frameName": self.frame_name,
            "data": self.signal.to_json(),
            "currentPrice": self.current_price,
            "level": self.level,
            "backtest": self.backtest,
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class CommitEvent:
    """A commit a strategy made on its open position (partial close, trailing, breakeven, DCA)."""

    action: str
    symbol: str
    strategy_name: str
    exchange_name: str
    frame_name: str
    backtest: bool
    timestamp: int
    current_price: float
    signal: SignalRow
    details: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dict(self.details)


@dataclass(frozen=True, slots=True)
class ControlEvent:
    """A manual control of a live trader: ``drain``, ``pause``, ``resume`` or ``close``."""

    action: str
    symbol: str
    strategy_name: str
    exchange_name: str
    timestamp: int  # wall clock, epoch ms

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "symbol": self.symbol,
            "strategyName": self.strategy_name,
            "exchangeName": self.exchange_name,
            "timestamp": self.timestamp,
        }


class EventBus:
    """Every subject of one engine; listener failures go to its own ``error`` subject."""

    def __init__(self) -> None:
        self.error: Subject[BaseException] = Subject("error")
        err = self.error
        self.signal: Subject[AnyResult] = Subject("signal", err)
        self.signal_backtest: Subject[AnyResult] = Subject("signal_backtest", err)
        self.signal_live: Subject[AnyResult] = Subject("signal_live", err)
        self.exit: Subject[BaseException] = Subject("exit", err)
        self.done_backtest: Subject[DoneEvent] = Subject("done_backtest", err)
        self.done_live: Subject[DoneEvent] = Subject("done_live", err)
        self.done_walker: Subject[WalkerReport] = Subject("done_walker", err)
        self.progress_backtest: Subject[ProgressEvent] = Subject("progress_backtest", err)
        self.performance: Subject[PerformanceEvent] = Subject("performance", err)
        self.risk: Subject[RiskEvent] = Subject("risk", err)
        self.walker: Subject[WalkerReport] = Subject("walker", err)
        self.walker_complete: Subject[WalkerReport] = Subject("walker_complete", err)
        self.active_ping: Subject[PositionEvent] = Subject("active_ping", err)
        self.partial_profit_available: Subject[PositionEvent] = Subject("partial_profit_available", err)
        self.partial_loss_available: Subject[PositionEvent] = Subject("partial_loss_available", err)
        self.breakeven_available: Subject[PositionEvent] = Subject("breakeven_available", err)
        self.strategy_commit: Subject[CommitEvent] = Subject("strategy_commit", err)
        self.control: Subject[ControlEvent] = Subject("control", err)

    @property
    def position_listeners(self) -> bool:
        """Whether anyone listens to position events (then every candle of a position is played)."""
        return bool(
            self.active_ping
            or self.partial_profit_available
            or self.partial_loss_available
            or self.breakeven_available
            or self.strategy_commit
        )

    def position_subject(self, kind: str) -> Subject[PositionEvent]:
        return {
            "active_ping": self.active_ping,
            "partial_profit": self.partial_profit_available,
            "partial_loss": self.partial_loss_available,
            "breakeven": self.breakeven_available,
        }[kind]

    async def hook(self, fn: Callable[..., Any] | None, *args: Any) -> None:
        """Call a user hook (plain or async); a hook that raises is reported, never propagated."""
        if fn is None:
            return
        try:
            out = fn(*args)
            if inspect.isawaitable(out):
                await out
        except Exception as exc:
            log.warning("hook %s raised %r", getattr(fn, "__name__", fn), exc)
            await self.error.emit(exc)

    async def result(self, result: AnyResult) -> AnyResult:
        """A tick result goes to ``signal`` and to the subject of its mode."""
        if self.signal:
            await self.signal.emit(result)
        mode = self.signal_backtest if result.backtest else self.signal_live
        if mode:  # most results of a backtest have no listener: skip the call
            await mode.emit(result)
        return result


#: The subject names, which are also the ``listen_<name>`` function names of the facade.
SUBJECTS: tuple[str, ...] = (
    "signal",
    "signal_backtest",
    "signal_live",
    "error",
    "exit",
    "done_backtest",
    "done_live",
    "done_walker",
    "progress_backtest",
    "performance",
    "risk",
    "walker",
    "walker_complete",
    "active_ping",
    "partial_profit_available",
    "partial_loss_available",
    "breakeven_available",
    "strategy_commit",
    "control",
)
