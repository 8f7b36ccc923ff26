"""Walker mode: backtest several strategies on one exchange and frame, and rank them by a metric.

Each strategy is an ordinary backtest (so Walker statistics equal the per-strategy backtest
statistics); strategies can run in parallel processes with results identical to sequential.
Ranking (ENGINE.md "deliberately differ" 5): higher is better except ``maxDrawdown``; ties keep
the earlier strategy; ``None`` never wins.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backtest import Backtest
from .config import get_config
from .errors import BacktestKitError, ConfigurationError
from .events import call_hook, done_walker_subject, error_subject, walker_complete_subject, walker_subject
from .registry import METRICS, FrameSchema, WalkerSchema, registry


def usable(value: object) -> float | None:
    """The value as a float if it can be ranked, else ``None`` (bools, NaN and infinities cannot)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metric_value(stats: Mapping[str, Any] | None, metric: str) -> float | None:
    """The metric of ``stats`` as a finite float, or ``None``."""
    if metric not in METRICS:
        raise ConfigurationError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    if stats is None:
        return None
    return usable(stats.get("totalSignals") if metric == "totalTrades" else stats.get(metric))


def better(candidate: float | None, best: float | None, metric: str) -> bool:
    """Strictly better; ``None`` never wins and never loses its place to an equal value."""
    if candidate is None:
        return False
    if best is None:
        return True
    return candidate > best if METRICS.get(metric, True) else candidate < best


def rank_order(metric: str, values: Sequence[object]) -> list[int]:
    """Indices of ``values`` best first; unusable values last; ties keep input order.

    The one statement of the ranking rule: the Walker here and the operator's Walker status
    both rank with it.
    """
    lower = not METRICS.get(metric, True)
    scored = [(i, usable(v)) for i, v in enumerate(values)]
    real = [(i, v) for i, v in scored if v is not None]
    real.sort(key=lambda item: item[1] if lower else -item[1])  # stable: ties keep input order
    return [i for i, _ in real] + [i for i, v in scored if v is None]


def best_index(metric: str, values: Sequence[object]) -> int | None:
    """Index of the winning value, or ``None`` when no value is usable."""
    order = rank_order(metric, values)
    if not order or usable(values[order[0]]) is None:
        return None
    return order[0]


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


async def _backtest_stats(symbol: str, strategy: str, exchange: str, frame: FrameSchema) -> dict[str, Any]:
    async for _ in Backtest.run(symbol, strategy=strategy, exchange=exchange, frame=frame):
        pass
    return await Backtest.get_data(symbol, strategy)


def _child_backtest(symbol: str, strategy: str, exchange: str, frame: FrameSchema) -> dict[str, Any]:
    """Runs in a forked worker process: one strategy's backtest statistics."""
    asyncio.events._set_running_loop(None)  # the fork copied the parent's running-loop marker
    return asyncio.run(_backtest_stats(symbol, strategy, exchange, frame))


class WalkerMode:
    """``Walker``: run, stop, and the comparison each walk produced."""

    def __init__(self) -> None:
        self._walks: dict[tuple[str, str], WalkRecord] = {}

    async def run(
        self,
        symbol: str,
        *,
        walker: str | WalkerSchema,
        jobs: int = 1,
        callbacks: Mapping[str, Callable[..., Any]] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the progress contract after each strategy, with that strategy's stats."""
        schema = walker if isinstance(walker, WalkerSchema) else registry.walkers.get(walker)
        frame = registry.frames.get(schema.frame)
        registry.exchanges.get(schema.exchange)
        for name in schema.strategies:
            registry.strategies.get(name)
        if jobs < 1:
            raise ConfigurationError(f"jobs must be >= 1, got {jobs}")
        cbs = {**schema.callbacks, **(callbacks or {})}
        rec = WalkRecord(schema, symbol, status="running")
        self._walks[(symbol, schema.name)] = rec
        total = len(schema.strategies)
        pool: ProcessPoolExecutor | None = None
        futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        if jobs > 1 and total > 1:
            pool = ProcessPoolExecutor(
                max_workers=min(jobs, total), mp_context=multiprocessing.get_context("fork")
            )
            loop = asyncio.get_running_loop()
            for name in schema.strategies:
                futures[name] = loop.run_in_executor(
                    pool, _child_backtest, symbol, name, schema.exchange, frame
                )
        try:
            for tested, name in enumerate(schema.strategies, start=1):
                if rec.stop_requested:
                    break
                await call_hook(cbs.get("on_strategy_start"), name, symbol)
                started = time.perf_counter()
                stats: dict[str, Any] | None
                error: str | None = None
                try:
                    if name in futures:
                        stats = await futures[name]
                    else:
                        stats = await _backtest_stats(symbol, name, schema.exchange, frame)
                except (BacktestKitError, Exception) as exc:
                    stats, error = None, f"{type(exc).__name__}: {exc}"
                    await error_subject.emit(exc)
                    await call_hook(cbs.get("on_strategy_error"), name, symbol, exc)
                value = metric_value(stats, schema.metric)
                if better(value, rec.best_metric, schema.metric):
                    rec.best_strategy, rec.best_metric, rec.best_stats = name, value, stats
                rec.when = int(time.time() * 1000)
                entry = {
                    "strategyName": name,
                    "stats": stats,
                    "metricValue": value,
                    "error": error,
                    "durationSeconds": time.perf_counter() - started,
                }
                rec.results.append(entry)
                progress = {
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
                    "totalStrategies": total,
                    "error": error,
                    "when": rec.when,
                }
                if error is None:
                    await call_hook(cbs.get("on_strategy_complete"), name, symbol, stats, value)
                await walker_subject.emit(progress)
                yield progress
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            rec.status = "done"
        data = self._data(rec)
        await walker_complete_subject.emit(data)
        await done_walker_subject.emit(data)

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
        return render_walker(data, top_n=get_config().walker_markdown_top_n)

    async def dump(self, symbol: str, walker: str, path: str | os.PathLike[str] | None = None) -> Path:
        data = await self.get_data(symbol, walker)
        folder = Path(path or "./dump/walker")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{symbol}_{walker}_walker-{data['when']}.md"
        target.write_text(render_walker(data, top_n=get_config().walker_markdown_top_n), encoding="utf-8")
        return target

    def list(self) -> list[dict[str, str]]:
        return [
            {"symbol": s, "walkerName": w, "status": rec.status}
            for (s, w), rec in sorted(self._walks.items())
        ]


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
        f"({'higher' if METRICS[metric] else 'lower'} is better).",
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


Walker = WalkerMode()
