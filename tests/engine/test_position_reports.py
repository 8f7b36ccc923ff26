"""Reports and charts show how each trade managed its position: entries, partial closes, trailing."""

from __future__ import annotations

import pytest

import backtest_kit as bk
from backtest_kit.chart_html import build_figure
from backtest_kit.charts import equity_curve
from backtest_kit.notebook import chart_candles
from backtest_kit.registry import FrameSchema
from backtest_kit.reports import trade_of
from tests.engine import position_strategies
from tests.engine.helpers import SYM, day

DAYS = FrameSchema("days", "1m", int(day(2).timestamp() * 1000), int(day(6, 23, 59).timestamp() * 1000))


async def managed_run(strategy: str) -> tuple[bk.Engine, bk.BacktestRun]:
    engine = bk.Engine()
    position_strategies.register(engine.registry)
    return engine, await engine.backtest.execute(SYM, strategy=strategy, exchange="synthetic", frame=DAYS)


async def test_the_report_of_a_managed_strategy_shows_entries_partial_closes_and_trailing_levels() -> None:
    _, partial = await managed_run("p_partial_tp")
    report = partial.report()
    assert "| DCA Entries | Partial Closes | Trailing SL / TP |" in report
    assert "% closed)" in report and "↑" in report
    _, dca = await managed_run("s_dca")
    assert any(cell.startswith(" 3 (100@") for cell in dca.report().split("|"))


async def test_a_plain_strategy_keeps_the_plain_table() -> None:
    run = await bk.Engine().backtest.execute(SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame=DAYS)
    assert "Partial Closes" not in run.report()


async def test_the_chart_marks_partial_exits_and_added_entries() -> None:
    pytest.importorskip("plotly")
    for strategy, trace, count in (
        ("p_partial_tp", "partial exits", lambda rows: sum(len(r.signal.partials) for r in rows)),
        ("s_dca", "added entries", lambda rows: sum(len(r.signal.all_entries) - 1 for r in rows)),
    ):
        engine, run = await managed_run(strategy)
        closed = run.record.closed
        candles = await chart_candles(engine, SYM, "synthetic", DAYS)
        figure = build_figure(candles, closed, equity_curve([trade_of(r) for r in closed]), title=strategy)
        traces = {t.name: t for t in figure.data}
        assert trace in traces and len(traces[trace].x) == count(closed) > 0
