"""The explicit engine: one object owning registry, configuration, risk book, event bus and runs.

Everything a backtest, a live trader or a Walker needs is held by an :class:`Engine` and handed
down to the modes explicitly, so two engines in one process share nothing: a test builds its own,
a runner builds one from its frozen options, a Walker worker is given one. The module-level API
(``backtest_kit.add_strategy``, ``backtest_kit.Backtest.run``, ``backtest_kit.set_config``,
``backtest_kit.listen_*``) is a facade over a *default* engine, the way kopf offers a default
registry with an explicit override: :func:`default_engine` returns it and :func:`use_engine`
replaces it (and returns the previous one, so a test can put it back).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast

from .backtest import BacktestMode
from .candles import CandleArrays
from .config import EngineConfig, merge_config
from .events import EventBus, Subject, Unsubscribe
from .examples import register_builtins
from .market import ExchangeClient
from .registry import Registry
from .risks import RiskBook

if TYPE_CHECKING:
    from .live import LiveMode
    from .walker import WalkerMode

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Engine:
    """Registry, frozen configuration, risk book, typed event bus, and the three modes over them.

    ``config`` is a frozen :class:`EngineConfig`; :meth:`set_config` replaces it with a validated
    merge (runs already started keep the value they started with). ``builtins`` registers the
    synthetic exchange and the example strategies.
    """

    def __init__(self, config: EngineConfig | None = None, *, builtins: bool = True) -> None:
        self.config: EngineConfig = config or EngineConfig()
        self.registry = Registry()
        self.risks = RiskBook()
        self.events = EventBus()
        current = self._current_config
        self.backtest = BacktestMode(
            registry=self.registry, risks=self.risks, bus=self.events, config=current
        )
        if builtins:
            register_builtins(self.registry)

    # Live and Walker are made on first use: their modules (state files, clocks, process pools)
    # cost start-up time a backtest does not need.
    @functools.cached_property
    def live(self) -> LiveMode:
        from .live import LiveMode

        return LiveMode(
            registry=self.registry, risks=self.risks, bus=self.events, config=self._current_config
        )

    @functools.cached_property
    def walker(self) -> WalkerMode:
        from .walker import WalkerMode

        return WalkerMode(
            registry=self.registry, bus=self.events, backtests=self.backtest, config=self._current_config
        )

    def _current_config(self) -> EngineConfig:
        return self.config

    def set_config(self, partial: dict[str, Any] | None = None, /, **changes: Any) -> EngineConfig:
        """Merge ``changes`` (snake_case or ``CC_*`` names) into the configuration, validated whole;
        on error the configuration in force stays."""
        self.config = merge_config(self.config, partial, **changes)
        return self.config

    def reset_config(self) -> EngineConfig:
        self.config = EngineConfig()
        return self.config

    async def fetch_candles(
        self, exchange: str, symbol: str, interval: str, since_ms: int, limit: int, *, backtest: bool = True
    ) -> CandleArrays:
        """Exactly ``limit`` candles of a registered exchange from ``since_ms``: chunked, retried and
        validated as every run reads them (raises ``CandleDataError`` / ``ExchangeUnavailableError``)."""
        client = ExchangeClient(self.registry.exchanges.get(exchange), backtest=backtest, config=self.config)
        return await client.fetch(symbol, interval, since_ms, limit)


_default: list[Engine] = []


def default_engine() -> Engine:
    """The engine behind the module-level API (created on first use)."""
    if not _default:
        _default.append(Engine())
    return _default[0]


def use_engine(engine: Engine) -> Engine:
    """Make ``engine`` the default behind the module-level API; returns the previous default."""
    previous = default_engine()
    _default[0] = engine
    return previous


def on_default_registry(method: Callable[Concatenate[Registry, P], R]) -> Callable[P, R]:
    """The module-level form of a :class:`Registry` method: it acts on the default engine."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(default_engine().registry, *args, **kwargs)

    functools.update_wrapper(call, method)
    return call


class ModeProxy(Generic[T]):
    """``Backtest`` / ``Live`` / ``Walker`` of the module-level API: the default engine's mode,
    looked up on every use, so :func:`use_engine` takes effect everywhere at once."""

    __slots__ = ("_pick",)

    def __init__(self, pick: Callable[[Engine], T]) -> None:
        self._pick = pick

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pick(default_engine()), name)


def mode_proxy(pick: Callable[[Engine], T]) -> T:
    return cast(T, ModeProxy(pick))


def listener(
    name: str, pick: Callable[[EventBus], Subject[T]]
) -> tuple[Callable[[Callable[[T], Any]], Unsubscribe], Callable[[Callable[[T], Any]], Unsubscribe]]:
    """``listen_<x>`` and ``listen_<x>_once`` of the module-level API (on the default engine's bus)."""

    def listen(fn: Callable[[T], Any]) -> Unsubscribe:
        return pick(default_engine().events).subscribe(fn)

    def listen_once(fn: Callable[[T], Any]) -> Unsubscribe:
        return pick(default_engine().events).subscribe(fn, once=True)

    listen.__doc__ = (
        f"Call ``fn`` for every {name} event of the default engine; returns an unsubscribe callable."
    )
    listen_once.__doc__ = f"Call ``fn`` for the next {name} event of the default engine only."
    return listen, listen_once
