"""``run_backtest``: one synchronous call from a script or a notebook cell to a result to look at.

The engine's API is async (a live trader and a backtest share one lifecycle), which is a hurdle
for a first script and an analysis notebook. :func:`run_backtest` runs a backtest on its own
event loop and returns a :class:`BacktestResult`: the summary (typed), the reference statistics,
the trades as a pandas DataFrame, the equity series, and ``.plot()`` for the interactive chart.
Inside a running loop (Jupyter) it refuses and says what to await instead. The helpers that read
the frame's market for the summary and the chart (:func:`frame_info`, :func:`chart_candles`) live
here too, so the command line and notebooks show the same numbers and the same chart.
:func:`run_grid` does the same for a parameter grid: every member backtested (in ``jobs``
processes), returned ranked as a :class:`GridResult`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .candles import CANDLE_INTERVALS, MINUTE_MS, CandleArrays, interval_ms, to_ms
from .charts import EquityPoint, equity_curve
from .engine import Engine, default_engine
from .errors import BacktestKitError, ConfigurationError
from .grid import Grid
from .market import ExchangeClient
from .metrics import DEFAULT_METRIC
from .registry import FrameSchema
from .reports import trade_of
from .signals import ClosedResult
from .summary import DEFAULT_STAKE, FrameInfo, Summary
from .walker import GridMember, rank

#: The chart draws at most about this many candles (a longer frame uses a longer interval).
MAX_CHART_CANDLES = 2000
_IN_LOOP = (
    "run_backtest() runs its own event loop and cannot be called inside a running one "
    "(Jupyter, an async function); there, use "
    "'run = await bk.default_engine().backtest.execute(symbol, strategy=..., exchange=..., frame=...)'"
)


def _day_or_time(text: str, *, end: bool) -> datetime:
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigurationError(f"frame {text!r}: not an ISO-8601 date or time") from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value + timedelta(days=1, minutes=-1) if end and len(raw) == len("2024-01-01") else value


def resolve_frame(frame: str | FrameSchema, engine: Engine) -> FrameSchema:
    """``"2024-01-01..2024-01-30"`` (both days whole), a registered frame's name, or a schema."""
    if isinstance(frame, FrameSchema):
        return frame
    start, sep, end = frame.partition("..")
    if not sep:
        return engine.registry.frames.get(frame)
    first, last = _day_or_time(start, end=False), _day_or_time(end, end=True)
    if last <= first:
        raise ConfigurationError(f"frame {frame!r}: the end is not after the start")
    return FrameSchema(f"notebook-{frame}", "1m", to_ms(first), to_ms(last))


def _client(engine: Engine, exchange: str) -> ExchangeClient:
    return ExchangeClient(engine.registry.exchanges.get(exchange), backtest=True, config=engine.config)


def _last_minute(frame: FrameSchema, now_ms: int | None = None) -> int:
    stop = min(frame.end_ms, now_ms if now_ms is not None else int(datetime.now(UTC).timestamp() * 1000))
    return stop // MINUTE_MS * MINUTE_MS


async def frame_info(engine: Engine, symbol: str, exchange: str, frame: FrameSchema) -> FrameInfo:
    """The frame's range with the market's first open and last close (``None`` if unavailable)."""
    client = _client(engine, exchange)
    start = frame.start_ms // MINUTE_MS * MINUTE_MS
    last = _last_minute(frame)
    first_price = last_price = None
    try:
        first_price = float((await client.fetch(symbol, "1m", start, 1)).open[0])
        last_price = float((await client.fetch(symbol, "1m", last, 1)).close[0])
    except BacktestKitError:
        pass  # buy-and-hold then says why it is missing
    return FrameInfo(start, last + MINUTE_MS, first_price, last_price)


def chart_interval(minutes: int, max_candles: int = MAX_CHART_CANDLES) -> str:
    """The shortest candle interval that draws ``minutes`` in at most ``max_candles`` candles."""
    for name, per in CANDLE_INTERVALS.items():
        if minutes / per <= max_candles:
            return name
    return next(reversed(CANDLE_INTERVALS))


async def chart_candles(engine: Engine, symbol: str, exchange: str, frame: FrameSchema) -> CandleArrays:
    """The frame's candles at :func:`chart_interval` (whole candles inside the frame)."""
    start, last = frame.start_ms, _last_minute(frame)
    interval = chart_interval((last - start) // MINUTE_MS + 1)
    step = interval_ms(interval)
    first = -(-start // step) * step
    count = (last + MINUTE_MS - first) // step
    if count <= 0:
        interval, step, first, count = "1m", MINUTE_MS, start, (last - start) // MINUTE_MS + 1
    return await _client(engine, exchange).fetch(symbol, interval, first, max(int(count), 1))


@dataclass(frozen=True)
class BacktestResult:
    """One backtest, ready to look at. ``summary`` and ``stats`` are plain values; ``trades`` and
    ``equity`` are pandas objects (pandas is optional: ``pip install 'backtest-kit-operator[notebook]'``)."""

    symbol: str
    strategy: str
    exchange: str
    frame: FrameSchema
    summary: Summary
    stats: Mapping[str, Any]
    closed: tuple[ClosedResult, ...]
    signals: tuple[Mapping[str, Any], ...]
    asks: int
    signal_errors: int
    candles: CandleArrays

    @property
    def equity_points(self) -> list[EquityPoint]:
        return equity_curve([trade_of(r) for r in self.closed])

    @property
    def trades(self) -> Any:
        """The closed trades as a DataFrame, one row per trade (the ``--json`` rows, flattened)."""
        pd = _pandas()
        frame = pd.DataFrame([dict(row) for row in self.signals if row.get("action") == "closed"])
        for column in ("pendingAt", "closeTimestamp", "scheduledAt"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
        return frame

    @property
    def equity(self) -> Any:
        """Equity on the stake after each trade, indexed by close time (starts at the stake)."""
        pd = _pandas()
        points = self.equity_points
        index = pd.to_datetime([self.frame.start_ms, *(p.timestamp for p in points)], unit="ms", utc=True)
        values = [self.summary.stake, *(p.equity * self.summary.stake for p in points)]
        return pd.Series(values, index=index, name="equity")

    def figure(self) -> Any:
        """The Plotly figure of the chart (shown inline by Jupyter)."""
        from .chart_html import build_figure

        return build_figure(
            self.candles,
            self.closed,
            self.equity_points,
            title=f"{self.strategy} on {self.symbol} ({self.exchange})",
            stake=self.summary.stake,
            start_ms=self.frame.start_ms,
        )

    def plot(self, path: str | Path | None = None) -> Any:
        """Write the interactive HTML chart to ``path`` (returns the path), or return the figure."""
        figure = self.figure()
        if path is None:
            return figure
        from .chart_html import write_chart

        target = Path(path)
        write_chart(target, figure)
        return target


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            "BacktestResult.trades and .equity need pandas, which is not installed: "
            "pip install 'backtest-kit-operator[notebook]' (or pip install pandas)"
        ) from exc
    return pd


async def backtest_result(
    engine: Engine, symbol: str, *, strategy: str, exchange: str, frame: FrameSchema, stake: float
) -> BacktestResult:
    """Run the backtest on ``engine`` (in the current loop) and gather the result."""
    run = await engine.backtest.execute(symbol, strategy=strategy, exchange=exchange, frame=frame)
    record = run.record
    record.frame_info = await frame_info(engine, symbol, exchange, frame)
    record.stake = stake
    candles = await chart_candles(engine, symbol, exchange, frame)
    return BacktestResult(
        symbol=symbol,
        strategy=strategy,
        exchange=exchange,
        frame=frame,
        summary=record.summary(),
        stats=run.stats(),
        closed=tuple(record.closed),
        signals=tuple(run.signals()),
        asks=run.asks,
        signal_errors=run.signal_errors,
        candles=candles,
    )


def run_backtest(
    symbol: str,
    *,
    strategy: str,
    exchange: str = "synthetic",
    frame: str | FrameSchema,
    engine: Engine | None = None,
    stake: float = DEFAULT_STAKE,
) -> BacktestResult:
    """Backtest ``strategy`` on ``symbol`` over ``frame`` and return the result (synchronous).

    ``frame`` is ``"2024-01-01..2024-01-30"`` (both days whole), a registered frame's name or a
    :class:`FrameSchema`; ``engine`` defaults to the one behind ``bk.add_strategy`` & co.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(_IN_LOOP)
    chosen = engine or default_engine()
    schema = resolve_frame(frame, chosen)
    return asyncio.run(
        backtest_result(chosen, symbol, strategy=strategy, exchange=exchange, frame=schema, stake=stake)
    )


@dataclass(frozen=True)
class GridResult:
    """A parameter grid's walk, ranked: ``ranking`` is every member best first (failed last),
    each ``{rank, label, values, params, metricValue, stats, error}``; ``data`` is the walker's
    comparison as ``Walker.get_data`` gives it."""

    symbol: str
    strategy: str
    metric: str
    members: tuple[GridMember, ...]
    ranking: tuple[Mapping[str, Any], ...]
    data: Mapping[str, Any]

    @property
    def best(self) -> Mapping[str, Any] | None:
        """The best member's row, or None when no member produced a usable metric."""
        top = self.ranking[0] if self.ranking else None
        return top if top is not None and top["rank"] is not None else None

    def table(self) -> Any:
        """The ranking as a DataFrame: one row per member, its grid values and key statistics."""
        pd = _pandas()
        rows = []
        for row in self.ranking:
            stats = row["stats"] or {}
            rows.append(
                {
                    "rank": row["rank"],
                    "label": row["label"],
                    **row["values"],
                    self.metric: row["metricValue"],
                    "totalSignals": stats.get("totalSignals"),
                    "winRate": stats.get("winRate"),
                    "totalPnl": stats.get("totalPnl"),
                    "error": row["error"],
                }
            )
        return pd.DataFrame(rows).set_index("label")


def ranked_members(data: Mapping[str, Any], members: Sequence[GridMember]) -> list[dict[str, Any]]:
    """The walk's results best first, each with its member's values and parameters."""
    by_label = {m.label: m for m in members}
    rows = []
    ranked = rank(data)
    for position, result in enumerate(ranked, start=1):
        member = by_label[result["strategyName"]]
        usable_value = result["metricValue"] is not None and result["error"] is None
        rows.append(
            {
                "rank": position if usable_value else None,
                "label": member.label,
                "values": dict(member.values),
                "params": dict(member.params),
                "metricValue": result["metricValue"],
                "stats": result["stats"],
                "error": result["error"],
            }
        )
    return rows


async def grid_result(
    engine: Engine,
    symbol: str,
    *,
    strategy: str,
    grid: Grid | str | Mapping[str, Any],
    register: Callable[[Any], Any],
    params: type[BaseModel] | None = None,
    base: Mapping[str, Any] | None = None,
    exchange: str = "synthetic",
    frame: str | FrameSchema,
    metric: str = DEFAULT_METRIC,
    jobs: int = 1,
    name: str | None = None,
) -> GridResult:
    """:func:`run_grid` in the current loop (``await`` it in Jupyter)."""
    schema = resolve_frame(frame, engine)
    engine.registry.frames.add(schema.name, schema, replace=True)
    walker = name or f"grid-{strategy}"
    members = engine.walker.add_grid(
        walker,
        strategy=strategy,
        grid=grid,
        register=register,
        params=params,
        base=base,
        exchange=exchange,
        frame=schema.name,
        metric=metric,
        replace=True,
    )
    async for _ in engine.walker.run(symbol, walker=walker, jobs=jobs):
        pass
    data = await engine.walker.get_data(symbol, walker)
    return GridResult(symbol, strategy, metric, tuple(members), tuple(ranked_members(data, members)), data)


def run_grid(
    symbol: str,
    *,
    strategy: str,
    grid: Grid | str | Mapping[str, Any],
    register: Callable[[Any], Any],
    params: type[BaseModel] | None = None,
    base: Mapping[str, Any] | None = None,
    exchange: str = "synthetic",
    frame: str | FrameSchema,
    metric: str = DEFAULT_METRIC,
    jobs: int = 1,
    engine: Engine | None = None,
) -> GridResult:
    """Backtest every member of ``grid`` over a parametrised strategy; the members ranked.

    ``register(params)`` registers ``strategy`` with one member's parameters and ``params``
    validates each member first (a module's ``register`` and ``Params``)::

        from backtest_kit_runner.example_strategies import sma_cross
        result = bk.run_grid("SYNUSDT", strategy="sma-cross", grid="fast=3,5,8,10 slow=20..50:10",
                             register=sma_cross.register, params=sma_cross.Params,
                             frame="2024-01-01..2024-01-30", jobs=2)
        result.best["label"], result.table()

    ``jobs`` runs members in that many processes, each fetching the market once for its members.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(_IN_LOOP.replace("run_backtest()", "run_grid()"))
    chosen = engine or default_engine()
    return asyncio.run(
        grid_result(
            chosen,
            symbol,
            strategy=strategy,
            grid=grid,
            register=register,
            params=params,
            base=base,
            exchange=exchange,
            frame=frame,
            metric=metric,
            jobs=jobs,
        )
    )


__all__: Sequence[str] = (
    "BacktestResult",
    "GridResult",
    "chart_candles",
    "frame_info",
    "grid_result",
    "resolve_frame",
    "run_backtest",
    "run_grid",
)
