"""Event subjects and the ``listen_*`` functions.

Reports, the runner's metrics and user code learn what the engine did only through these
subjects; nothing outside the engine reaches into its state. A listener may be a plain or an
async function; a listener that raises is reported on the error subject and never breaks a run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Unsubscribe = Callable[[], None]

log = logging.getLogger("backtest_kit")


class Subject(Generic[T]):
    """A list of listeners called in subscription order, awaited one after the other."""

    __slots__ = ("_listeners", "name")

    def __init__(self, name: str) -> None:
        self.name = name
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
                if self is error_subject:
                    log.exception("error listener failed")
                else:
                    log.warning("listener of %s raised %r", self.name, exc)
                    await error_subject.emit(exc)


async def call_hook(fn: Callable[..., Any] | None, *args: Any) -> None:
    """Call a user hook (plain or async); a hook that raises is reported, never propagated."""
    if fn is None:
        return
    try:
        out = fn(*args)
        if inspect.isawaitable(out):
            await out
    except Exception as exc:
        log.warning("hook %s raised %r", getattr(fn, "__name__", fn), exc)
        await error_subject.emit(exc)


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


signal_subject: Subject[Any] = Subject("signal")
signal_backtest_subject: Subject[Any] = Subject("signal_backtest")
signal_live_subject: Subject[Any] = Subject("signal_live")
error_subject: Subject[BaseException] = Subject("error")
exit_subject: Subject[BaseException] = Subject("exit")
done_backtest_subject: Subject[DoneEvent] = Subject("done_backtest")
done_live_subject: Subject[DoneEvent] = Subject("done_live")
done_walker_subject: Subject[Any] = Subject("done_walker")
progress_backtest_subject: Subject[ProgressEvent] = Subject("progress_backtest")
performance_subject: Subject[PerformanceEvent] = Subject("performance")
risk_subject: Subject[RiskEvent] = Subject("risk")
walker_subject: Subject[Any] = Subject("walker")
walker_complete_subject: Subject[Any] = Subject("walker_complete")


def _listen(subject: Subject[Any]) -> tuple[Callable[..., Unsubscribe], Callable[..., Unsubscribe]]:
    def listen(fn: Callable[[Any], Any]) -> Unsubscribe:
        return subject.subscribe(fn)

    def listen_once(fn: Callable[[Any], Any]) -> Unsubscribe:
        return subject.subscribe(fn, once=True)

    listen.__doc__ = f"Call ``fn`` for every {subject.name} event; returns an unsubscribe callable."
    listen_once.__doc__ = f"Call ``fn`` for the next {subject.name} event only."
    return listen, listen_once


listen_signal, listen_signal_once = _listen(signal_subject)
listen_signal_backtest, listen_signal_backtest_once = _listen(signal_backtest_subject)
listen_signal_live, listen_signal_live_once = _listen(signal_live_subject)
listen_error, listen_error_once = _listen(error_subject)
listen_exit, listen_exit_once = _listen(exit_subject)
listen_done_backtest, listen_done_backtest_once = _listen(done_backtest_subject)
listen_done_live, listen_done_live_once = _listen(done_live_subject)
listen_done_walker, listen_done_walker_once = _listen(done_walker_subject)
listen_progress_backtest, listen_progress_backtest_once = _listen(progress_backtest_subject)
listen_performance, listen_performance_once = _listen(performance_subject)
listen_risk, listen_risk_once = _listen(risk_subject)
listen_walker, listen_walker_once = _listen(walker_subject)
listen_walker_complete, listen_walker_complete_once = _listen(walker_complete_subject)
