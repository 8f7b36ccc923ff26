"""Registered exchanges, strategies, frames, risk profiles and walkers.

Registration validates eagerly (ENGINE.md "deliberately differ" 4): unknown intervals, duplicate
names, missing callables and inverted frames are refused at ``add_*`` time, with a message that
lists what is registered. The schemas are frozen values; modes receive them explicitly.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from .candles import FRAME_INTERVALS, MINUTE_MS, STRATEGY_INTERVALS, Candle, CandleArrays, to_ms
from .errors import ConfigurationError, UnknownNameError
from .metrics import HIGHER_IS_BETTER
from .signals import SignalDto

GetCandles = Callable[[str, str, datetime, int], Awaitable[Sequence[Candle]]]
GetCandleArrays = Callable[[str, str, int, int], CandleArrays]
GetSignal = Callable[[str, datetime, float], Coroutine[Any, Any, "SignalDto | Mapping[str, Any] | None"]]

#: metric name -> higher is better (defined in ``metrics``; kept here for older imports).
METRICS: Mapping[str, bool] = HIGHER_IS_BETTER


@dataclass(frozen=True, slots=True)
class ExchangeSchema:
    name: str
    get_candles: GetCandles
    format_price: Callable[[str, float], str] | None = None
    format_quantity: Callable[[str, float], str] | None = None
    get_candle_arrays: GetCandleArrays | None = None


@dataclass(frozen=True, slots=True)
class StrategySchema:
    name: str
    interval: str
    get_signal: GetSignal
    risk: str | None = None
    callbacks: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    note: str = ""

    @property
    def interval_ms(self) -> int:
        return STRATEGY_INTERVALS[self.interval] * MINUTE_MS


@dataclass(frozen=True, slots=True)
class FrameSchema:
    name: str
    interval: str
    start_ms: int
    end_ms: int

    @property
    def step_ms(self) -> int:
        return FRAME_INTERVALS[self.interval] * MINUTE_MS


@dataclass(frozen=True, slots=True)
class RiskValidation:
    validate: Callable[[dict[str, Any]], Any]
    note: str = ""


@dataclass(frozen=True, slots=True)
class RiskSchema:
    name: str
    validations: tuple[RiskValidation, ...]


@dataclass(frozen=True, slots=True)
class WalkerSchema:
    name: str
    strategies: tuple[str, ...]
    exchange: str
    frame: str
    metric: str = "sharpeRatio"
    callbacks: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    #: Each process of the walk fetches the candles once for all its strategies (a grid does).
    shared_market: bool = False


S = TypeVar("S")


class _Table(Generic[S]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, S] = {}

    def add(self, name: str, item: S, *, replace: bool = False) -> S:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self.items and not replace:
            plural = self.kind[:-1] + "ies" if self.kind.endswith("y") else self.kind + "s"
            raise ConfigurationError(
                f"{self.kind} {name!r} is already registered; registered {plural}: "
                f"{', '.join(sorted(self.items))}"
            )
        self.items[name] = item
        return item

    def get(self, name: str) -> S:
        try:
            return self.items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.items) from None

    def names(self) -> list[str]:
        return sorted(self.items)


def _require_callable(kind: str, name: str, what: str, fn: object) -> None:
    if not callable(fn):
        raise ConfigurationError(f"{kind} {name!r}: {what} must be callable, got {type(fn).__name__}")


class Registry:
    """Everything an engine has registered, by kind; each :class:`~backtest_kit.engine.Engine`
    owns one (the module-level ``add_*`` functions use the default engine's)."""

    def __init__(self) -> None:
        self.exchanges: _Table[ExchangeSchema] = _Table("exchange")
        self.strategies: _Table[StrategySchema] = _Table("strategy")
        self.frames: _Table[FrameSchema] = _Table("frame")
        self.risks: _Table[RiskSchema] = _Table("risk")
        self.walkers: _Table[WalkerSchema] = _Table("walker")

    def add_exchange(
        self,
        name: str,
        *,
        get_candles: GetCandles,
        format_price: Callable[[str, float], str] | None = None,
        format_quantity: Callable[[str, float], str] | None = None,
        get_candle_arrays: GetCandleArrays | None = None,
        replace: bool = False,
    ) -> ExchangeSchema:
        """Register an exchange whose ``get_candles(symbol, interval, since, limit)`` serves candles.

        ``get_candle_arrays(symbol, interval, since_ms, limit) -> CandleArrays`` is an optional
        columnar fast path that must serve the same data.
        """
        _require_callable("exchange", name, "get_candles", get_candles)
        if not inspect.iscoroutinefunction(get_candles) and not inspect.iscoroutinefunction(
            getattr(get_candles, "__call__", None)  # noqa: B004
        ):
            raise ConfigurationError(f"exchange {name!r}: get_candles must be an async function")
        for what, fn in (
            ("format_price", format_price),
            ("format_quantity", format_quantity),
            ("get_candle_arrays", get_candle_arrays),
        ):
            if fn is not None:
                _require_callable("exchange", name, what, fn)
        return self.exchanges.add(
            name,
            ExchangeSchema(name, get_candles, format_price, format_quantity, get_candle_arrays),
            replace=replace,
        )

    def add_strategy(
        self,
        name: str,
        *,
        interval: str,
        get_signal: GetSignal,
        risk: str | None = None,
        callbacks: Mapping[str, Callable[..., Any]] | object | None = None,
        note: str = "",
        replace: bool = False,
    ) -> StrategySchema:
        """Register a strategy; ``get_signal(symbol, when, current_price)`` is called at most once per
        ``interval`` bucket while no signal is open or scheduled."""
        if interval not in STRATEGY_INTERVALS:
            raise ConfigurationError(
                f"strategy {name!r}: unknown interval {interval!r}; allowed: {', '.join(STRATEGY_INTERVALS)}"
            )
        _require_callable("strategy", name, "get_signal", get_signal)
        if not inspect.iscoroutinefunction(get_signal) and not inspect.iscoroutinefunction(
            getattr(get_signal, "__call__", None)  # noqa: B004
        ):
            raise ConfigurationError(f"strategy {name!r}: get_signal must be an async function")
        if risk is not None and not isinstance(risk, str):
            raise ConfigurationError(f"strategy {name!r}: risk must be the name of a registered risk profile")
        cbs: dict[str, Callable[..., Any]] = {}
        if callbacks is not None:
            source = (
                callbacks
                if isinstance(callbacks, Mapping)
                else {k: getattr(callbacks, k) for k in dir(callbacks) if k.startswith("on_")}
            )
            for key, fn in source.items():
                _require_callable("strategy", name, f"callback {key}", fn)
                cbs[key] = fn
        return self.strategies.add(
            name, StrategySchema(name, interval, get_signal, risk, cbs, note), replace=replace
        )

    def add_frame(
        self,
        name: str,
        *,
        start: datetime,
        end: datetime,
        interval: str = "1m",
        replace: bool = False,
    ) -> FrameSchema:
        """Register a backtest period; both ends are inclusive."""
        if interval not in FRAME_INTERVALS:
            raise ConfigurationError(
                f"frame {name!r}: unknown interval {interval!r}; allowed: {', '.join(FRAME_INTERVALS)}"
            )
        if not isinstance(start, datetime) or not isinstance(end, datetime):
            raise ConfigurationError(f"frame {name!r}: start and end must be datetimes")
        start_ms, end_ms = to_ms(start), to_ms(end)
        if end_ms < start_ms:
            raise ConfigurationError(
                f"frame {name!r}: end {end.isoformat()} is before start {start.isoformat()}"
            )
        return self.frames.add(name, FrameSchema(name, interval, start_ms, end_ms), replace=replace)

    def add_risk(
        self,
        name: str,
        *,
        validations: Sequence[Callable[[dict[str, Any]], Any] | Mapping[str, Any]],
        replace: bool = False,
    ) -> RiskSchema:
        """Register a risk profile: each validation rejects by raising or returning a non-empty string."""
        items: list[RiskValidation] = []
        for i, v in enumerate(validations):
            if isinstance(v, Mapping):
                fn = v.get("validate")
                _require_callable("risk", name, f"validations[{i}].validate", fn)
                items.append(
                    RiskValidation(cast(Callable[[dict[str, Any]], Any], fn), str(v.get("note", "")))
                )
            else:
                _require_callable("risk", name, f"validations[{i}]", v)
                items.append(RiskValidation(v))
        return self.risks.add(name, RiskSchema(name, tuple(items)), replace=replace)

    def add_walker(
        self,
        name: str,
        *,
        strategies: Sequence[str],
        exchange: str,
        frame: str,
        metric: str = "sharpeRatio",
        callbacks: Mapping[str, Callable[..., Any]] | None = None,
        replace: bool = False,
        shared_market: bool = False,
    ) -> WalkerSchema:
        """Register a comparison of ``strategies`` on one exchange and frame by ``metric``.

        ``callbacks``: ``on_strategy_start(name, symbol)``, ``on_strategy_complete(name, symbol,
        stats, metric_value)``, ``on_strategy_error(name, symbol, exc)``. ``shared_market``: each
        process of the walk serves every strategy from candles it fetched once (see
        ``backtest_kit.prepared``).
        """
        if metric not in METRICS:
            raise ConfigurationError(
                f"walker {name!r}: unknown metric {metric!r}; allowed: {', '.join(METRICS)}"
            )
        if not strategies:
            raise ConfigurationError(f"walker {name!r}: needs at least one strategy")
        if len(set(strategies)) != len(strategies):
            raise ConfigurationError(f"walker {name!r}: a strategy is listed twice")
        known = {"on_strategy_start", "on_strategy_complete", "on_strategy_error"}
        cbs = dict(callbacks or {})
        unknown = sorted(set(cbs) - known)
        if unknown:
            raise ConfigurationError(f"walker {name!r}: unknown callbacks {unknown}; known: {sorted(known)}")
        for key, fn in cbs.items():
            _require_callable("walker", name, f"callback {key}", fn)
        return self.walkers.add(
            name,
            WalkerSchema(name, tuple(strategies), exchange, frame, metric, cbs, shared_market),
            replace=replace,
        )

    def copy_strategy(self, name: str, as_name: str, *, replace: bool = False) -> StrategySchema:
        """Register the strategy now named ``name`` again as ``as_name`` (a grid member keeps the
        strategy its parameters registered, under its own name, before the next member's replace it)."""
        schema = self.strategies.get(name)
        return self.strategies.add(as_name, dataclasses.replace(schema, name=as_name), replace=replace)

    def list_exchanges(self) -> list[str]:
        return self.exchanges.names()

    def list_strategies(self) -> list[str]:
        return self.strategies.names()

    def list_frames(self) -> list[str]:
        return self.frames.names()

    def list_risks(self) -> list[str]:
        return self.risks.names()

    def list_walkers(self) -> list[str]:
        return self.walkers.names()
