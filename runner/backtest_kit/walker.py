"""Walker mode: backtest several strategies on one exchange and frame, and rank them by a metric.

Each strategy is an ordinary backtest of the same engine (so Walker statistics equal the
per-strategy backtest statistics, and each run holds its own results, so strategies never share
a report store). Strategies can run in parallel worker processes with results identical to
sequential: each worker is handed the engine's backtest mode explicitly when it starts (the pool
forks, so the registrations, including strategies defined in a script, come along), never through
a process-wide global. Ranking (docs/ENGINE.md "deliberately differ" 5): higher is better except
``maxDrawdown``; ties keep the earlier strategy; ``None`` never wins (``metrics``).

A parameter grid (:meth:`WalkerMode.add_grid`) is a walker whose strategies are the members of
one parametrised strategy, validated together before anything is registered. Its walks share the
market: each process (this one, or each worker) serves all the members it runs from candles it
fetched once (``prepared``), instead of every member fetching the whole frame again.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .backtest import BacktestMode
from .config import EngineConfig
from .errors import ConfigurationError
from .events import EventBus
from .grid import Grid, GridError, grid_from, member_label
from .metrics import DEFAULT_METRIC, HIGHER_IS_BETTER
from .metrics import best_index as best_index  # the ranking rule, re-exported from its old home
from .metrics import better as better
from .metrics import metric_value as metric_value
from .metrics import rank_order as rank_order
from .metrics import usable as usable
from .prepared import PreparedCandles, prepared_horizon
from .registry import ExchangeSchema, FrameSchema, Registry, WalkerSchema


@dataclass
class WalkRecord:
    schema: WalkerSchema
    symbol: str
    results: list[dict[str, Any]] = field(default_factory=list)
    best_strategy: str | None = None
    best_metric: float | None = None
    best_stats: dict[str, Any] | None = None
    status: str = "idle"
    stop_requested: bool = False
    when: int = 0


#: The backtest mode a worker process was started with (set once per worker, by ``_adopt``).
_worker_backtests: list[BacktestMode] = []


@dataclass(frozen=True)
class SharedMarket:
    """A walk's request to share prepared candles: which exchange, up to when, in what chunks."""

    exchange: str
    horizon_ms: int
    per_request: int

    def install(self, registry: Registry) -> tuple[ExchangeSchema, PreparedCandles]:
        """Register a :class:`PreparedCandles` in the exchange's place; returns what it replaced."""
        original = registry.exchanges.get(self.exchange)
        prepared = PreparedCandles(original, horizon_ms=self.horizon_ms, per_request=self.per_request)
        registry.exchanges.add(self.exchange, prepared.schema(), replace=True)
        return original, prepared


def _adopt(
    backtests: BacktestMode, registry: Registry | None = None, share: SharedMarket | None = None
) -> None:
    """Worker initializer: remember the engine's backtest mode this worker runs for.

    With ``share`` the worker's own copy of the registry serves the exchange through one
    :class:`PreparedCandles` for as long as the worker lives: every strategy this process runs
    reads the candles it prepared once.
    """
    _worker_backtests[:] = [backtests]
    if share is not None and registry is not None:
        share.install(registry)


def _worker_stats(
    symbol: str, strategy: str, exchange: str, frame: FrameSchema, config: EngineConfig
) -> dict[str, Any]:
    """Runs in a worker process: one strategy's backtest statistics.

    The event loop runs in a fresh thread: a forked worker's main thread still carries the
    parent's "a loop is running here" marker, and a new thread starts without it.
    """
    (backtests,) = _worker_backtests

    async def one() -> dict[str, Any]:
        run = await backtests.execute(
            symbol, strategy=strategy, exchange=exchange, frame=frame, config=config
        )
        return run.stats()

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, one()).result()


class WalkerMode:
    """``Walker`` of one engine: run, stop, and the comparison each walk produced."""

    def __init__(
        self,
        *,
        registry: Registry,
        bus: EventBus,
        backtests: BacktestMode,
        config: Callable[[], EngineConfig],
    ) -> None:
        self._registry = registry
        self._bus = bus
        self._backtests = backtests
        self._config = config
        self._walks: dict[tuple[str, str], WalkRecord] = {}

    def _schema(self, walker: str | WalkerSchema) -> tuple[WalkerSchema, FrameSchema]:
        reg = self._registry
        schema = walker if isinstance(walker, WalkerSchema) else reg.walkers.get(walker)
        frame = reg.frames.get(schema.frame)
        reg.exchanges.get(schema.exchange)
        for name in schema.strategies:
            reg.strategies.get(name)
        return schema, frame

    async def run(
        self,
        symbol: str,
        *,
        walker: str | WalkerSchema,
        jobs: int = 1,
        callbacks: Mapping[str, Callable[..., Any]] | None = None,
        config: EngineConfig | None = None,
        shared_market: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the progress contract after each strategy, with that strategy's stats.

        ``shared_market``: every process of the walk (this one, or each worker with ``jobs``)
        fetches the exchange's candles once and serves every strategy it runs from them
        (:class:`~backtest_kit.prepared.PreparedCandles`); a parameter grid walks this way.
        """
        schema, frame = self._schema(walker)
        if jobs < 1:
            raise ConfigurationError(f"jobs must be >= 1, got {jobs}")
        cfg = config or self._config()
        cbs = {**schema.callbacks, **(callbacks or {})}
        rec = WalkRecord(schema, symbol, status="running")
        self._walks[(symbol, schema.name)] = rec
        share = (
            SharedMarket(schema.exchange, prepared_horizon(frame.end_ms), cfg.max_candles_per_request)
            if shared_market or schema.shared_market
            else None
        )
        pool: ProcessPoolExecutor | None = None
        restore: ExchangeSchema | None = None
        futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        if jobs > 1 and len(schema.strategies) > 1:
            pool = ProcessPoolExecutor(
                max_workers=min(jobs, len(schema.strategies)),
                mp_context=multiprocessing.get_context("fork"),
                initializer=_adopt,
                initargs=(self._backtests, self._registry, share),
            )
            loop = asyncio.get_running_loop()
            for name in schema.strategies:
                futures[name] = loop.run_in_executor(
                    pool, _worker_stats, symbol, name, schema.exchange, frame, cfg
                )
        elif share is not None:
            restore, _ = share.install(self._registry)
        try:
            for tested, name in enumerate(schema.strategies, start=1):
                if rec.stop_requested:
                    break
                progress = await self._one(rec, tested, name, frame, cfg, cbs, futures.get(name))
                await self._bus.walker.emit(progress)
                yield progress
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            if restore is not None:
                self._registry.exchanges.add(schema.exchange, restore, replace=True)
            rec.status = "done"
        data = self._data(rec)
        await self._bus.walker_complete.emit(data)
        await self._bus.done_walker.emit(data)

    async def _one(
        self,
        rec: WalkRecord,
        tested: int,
        name: str,
        frame: FrameSchema,
        cfg: EngineConfig,
        cbs: Mapping[str, Callable[..., Any]],
        future: asyncio.Future[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        """Test one strategy (or collect its worker's answer) and fold it into the walk."""
        schema, symbol, bus = rec.schema, rec.symbol, self._bus
        await bus.hook(cbs.get("on_strategy_start"), name, symbol)
        started = time.perf_counter()
        stats: dict[str, Any] | None
        error: str | None = None
        try:
            if future is not None:
                stats = await future
            else:
                run = await self._backtests.execute(
                    symbol, strategy=name, exchange=schema.exchange, frame=frame, config=cfg
                )
                stats = run.stats()
        except Exception as exc:
            stats, error = None, f"{type(exc).__name__}: {exc}"
            await bus.error.emit(exc)
            await bus.hook(cbs.get("on_strategy_error"), name, symbol, exc)
        value = metric_value(stats, schema.metric)
        if better(value, rec.best_metric, schema.metric):
            rec.best_strategy, rec.best_metric, rec.best_stats = name, value, stats
        rec.when = int(time.time() * 1000)
        rec.results.append(
            {
                "strategyName": name,
                "stats": stats,
                "metricValue": value,
                "error": error,
                "durationSeconds": time.perf_counter() - started,
            }
        )
        if error is None:
            await bus.hook(cbs.get("on_strategy_complete"), name, symbol, stats, value)
        return {
            "walkerName": schema.name,
            "exchangeName": schema.exchange,
            "frameName": schema.frame,
            "symbol": symbol,
            "strategyName": name,
            "stats": stats,
            "metricValue": value,
            "currentMetric": value,
            "metric": schema.metric,
            "bestMetric": rec.best_metric,
            "bestStrategy": rec.best_strategy,
            "strategiesTested": tested,
            "totalStrategies": len(schema.strategies),
            "error": error,
            "when": rec.when,
        }

    def add_grid(
        self,
        name: str,
        *,
        strategy: str,
        grid: Grid | str | Mapping[str, Any],
        register: Callable[[Any], Any],
        params: type[BaseModel] | None = None,
        base: Mapping[str, Any] | None = None,
        exchange: str,
        frame: str,
        metric: str = DEFAULT_METRIC,
        replace: bool = False,
    ) -> list[GridMember]:
        """Register every member of ``grid`` over a parametrised strategy, and a walker ``name``
        comparing them (each process of its walks fetches the candles once for all its members).

        ``register(params)`` registers ``strategy`` with one member's parameters (the
        ``STRATEGY``/``Params``/``register`` convention); ``params`` (a pydantic model) validates
        every member, ``base`` merged under the grid's values, before anything is registered: a
        bad grid raises one :class:`ConfigurationError` naming every bad member. Members are named
        ``strategy[axis=value,...]`` (:func:`~backtest_kit.grid.member_label`).
        """
        members = grid_members(strategy, grid_from(grid), base=base, params=params)
        for member in members:
            register(member.validated if member.validated is not None else dict(member.params))
            if strategy not in self._registry.strategies.items:
                raise ConfigurationError(
                    f"register() of strategy {strategy!r} did not register a strategy named {strategy!r}"
                    " on this engine"
                )
            self._registry.copy_strategy(strategy, member.label, replace=True)
        self._registry.add_walker(
            name,
            strategies=[m.label for m in members],
            exchange=exchange,
            frame=frame,
            metric=metric,
            replace=replace,
            shared_market=True,
        )
        return members

    def stop(self, symbol: str, walker: str) -> None:
        """No further strategy starts; the running one finishes."""
        rec = self._walks.get((symbol, walker))
        if rec is not None:
            rec.stop_requested = True

    def _data(self, rec: WalkRecord) -> dict[str, Any]:
        s = rec.schema
        return {
            "walkerName": s.name,
            "symbol": rec.symbol,
            "exchangeName": s.exchange,
            "frameName": s.frame,
            "metric": s.metric,
            "totalStrategies": len(s.strategies),
            "strategiesTested": len(rec.results),
            "bestStrategy": rec.best_strategy,
            "bestMetric": rec.best_metric,
            "bestStats": rec.best_stats,
            "strategyResults": [dict(r) for r in rec.results],
            "when": rec.when,
        }

    async def get_data(self, symbol: str, walker: str) -> dict[str, Any]:
        rec = self._walks.get((symbol, walker))
        if rec is None:
            raise ConfigurationError(f"walker {walker!r} has not run for {symbol}")
        return self._data(rec)

    async def get_report(self, symbol: str, walker: str) -> str:
        data = await self.get_data(symbol, walker)
        return render_walker(data, top_n=self._config().walker_markdown_top_n)

    async def dump(self, symbol: str, walker: str, path: str | os.PathLike[str] | None = None) -> Path:
        report = await self.get_report(symbol, walker)
        data = await self.get_data(symbol, walker)
        folder = Path(path or "./dump/walker")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{symbol}_{walker}_walker-{data['when']}.md"
        target.write_text(report, encoding="utf-8")
        return target

    def list(self) -> list[dict[str, str]]:
        return [
            {"symbol": s, "walkerName": w, "status": rec.status}
            for (s, w), rec in sorted(self._walks.items())
        ]


@dataclass(frozen=True)
class GridMember:
    """One member of a grid: its name, its grid values and the parameters it runs with."""

    label: str
    values: Mapping[str, Any]
    params: Mapping[str, Any]
    #: The ``Params`` instance the strategy is registered with (None without a model).
    validated: BaseModel | None = field(default=None, compare=False, repr=False)


def grid_members(
    strategy: str,
    grid: Grid,
    *,
    base: Mapping[str, Any] | None = None,
    params: type[BaseModel] | None = None,
) -> list[GridMember]:
    """Every member of ``grid``, validated by ``params``; raises naming each member it refuses."""
    out: list[GridMember] = []
    problems: list[str] = []
    for values in grid.members():
        label = member_label(strategy, values, grid.names)
        merged = {**(base or {}), **values}
        if params is None:
            out.append(GridMember(label, values, merged))
            continue
        try:
            model = params.model_validate(merged)
        except ValidationError as exc:
            reasons = []
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err.get("loc", ()))
                message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
                reasons.append(f"{loc}: {message}" if loc else message)
            problems.append(f"{label}: {'; '.join(reasons)}")
            continue
        out.append(GridMember(label, values, model.model_dump(mode="json"), model))
    if problems:
        raise GridError(
            f"invalid grid for strategy {strategy!r}: {len(problems)} of {len(grid)} members refused by "
            f"{params.__name__ if params else 'its parameters'}:\n" + "\n".join(f"  {p}" for p in problems)
        )
    return out


def rank(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Strategy results best first (``None`` last; ties keep walk order)."""
    results = data["strategyResults"]
    return [results[i] for i in rank_order(data["metric"], [r["metricValue"] for r in results])]


def render_walker(data: Mapping[str, Any], *, top_n: int = 10) -> str:
    metric = data["metric"]
    lines = [
        f"# Walker Report: {data['walkerName']} ({data['symbol']})",
        "",
        f"Exchange `{data['exchangeName']}`, frame `{data['frameName']}`, metric `{metric}` "
        f"({'higher' if HIGHER_IS_BETTER[metric] else 'lower'} is better).",
        "",
        f"**Best strategy:** {data['bestStrategy'] or 'none'} "
        f"({metric} = {'N/A' if data['bestMetric'] is None else format(data['bestMetric'], '.6g')})",
        "",
        "| Rank | Strategy | Metric | Signals | Win rate | Total PNL | Sharpe |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(rank(data)[:top_n], start=1):
        st = r["stats"] or {}

        def f(v: Any, fmt: str) -> str:
            return "N/A" if v is None else format(v, fmt)

        lines.append(
            f"| {i} | {r['strategyName']} | {f(r['metricValue'], '.6g')} | {st.get('totalSignals', 'N/A')} | "
            f"{f(st.get('winRate'), '.2f')}% | {f(st.get('totalPnl'), '+.2f')}% | "
            f"{f(st.get('sharpeRatio'), '.3f')} |"
        )
    failed = [r for r in data["strategyResults"] if r.get("error")]
    if failed:
        lines += ["", "## Failed strategies", ""]
        lines += [f"- {r['strategyName']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"
