"""Walker: strategies compared by a metric, with results equal to their own backtests."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import backtest_kit as bk
from backtest_kit.walker import better, metric_value
from tests.engine.helpers import SYM, day, registered, run_all

PARITY = ["a_long_tp1_sl1", "c_limit_sched", "d_sma_cross"]


@pytest.fixture
def week() -> Any:
    with registered() as made:
        bk.add_frame("wk_week", start=day(1), end=day(7, 23, 59))
        made.append(("frames", "wk_week"))
        yield made


async def test_walker_stats_equal_each_strategys_own_backtest(week: list[Any]) -> None:
    bk.add_walker("wk_parity", strategies=PARITY, exchange="synthetic", frame="wk_week", metric="totalPnl")
    week.append(("walkers", "wk_parity"))
    progress = await run_all(bk.Walker.run(SYM, walker="wk_parity"))
    assert [p["strategiesTested"] for p in progress] == [1, 2, 3]
    assert {p["totalStrategies"] for p in progress} == {3}
    by_name = {p["strategyName"]: p for p in progress}
    for name in PARITY:
        await run_all(bk.Backtest.run(SYM, strategy=name, exchange="synthetic", frame="wk_week"))
        assert by_name[name]["stats"] == await bk.Backtest.get_data(SYM, name)
    best = max(PARITY, key=lambda n: by_name[n]["stats"]["totalPnl"])
    data = await bk.Walker.get_data(SYM, "wk_parity")
    assert data["bestStrategy"] == best and progress[-1]["bestStrategy"] == best
    assert data["bestMetric"] == by_name[best]["stats"]["totalPnl"]
    report = await bk.Walker.get_report(SYM, "wk_parity")
    assert report.splitlines()[0] == f"# Walker Report: wk_parity ({SYM})" and f"| 1 | {best} |" in report


async def test_parallel_jobs_give_results_identical_to_sequential(week: list[Any]) -> None:
    bk.add_walker("wk_jobs", strategies=PARITY, exchange="synthetic", frame="wk_week", metric="winRate")
    week.append(("walkers", "wk_jobs"))
    sequential = await run_all(bk.Walker.run(SYM, walker="wk_jobs"))
    parallel = await run_all(bk.Walker.run(SYM, walker="wk_jobs", jobs=2))

    def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in ("when",)} for r in rows]

    assert strip(sequential) == strip(parallel)


async def test_a_failing_strategy_is_reported_and_the_walk_goes_on(week: list[Any]) -> None:
    async def boom(symbol: str, when: datetime, price: float) -> None:
        raise RuntimeError("strategy bug")

    events: dict[str, list[Any]] = {"start": [], "complete": [], "error": []}

    async def broken_exchange(symbol: str, interval: str, since: datetime, limit: int) -> list[bk.Candle]:
        raise OSError("no route")

    bk.set_config(get_candles_retry_count=1, get_candles_retry_delay_ms=0)
    bk.add_strategy("wk_boom", interval="1h", get_signal=boom)
    week.append(("strategies", "wk_boom"))
    bk.add_walker(
        "wk_fail",
        strategies=["wk_boom", "a_long_tp1_sl1"],
        exchange="synthetic",
        frame="wk_week",
        metric="maxDrawdown",
    )
    week.append(("walkers", "wk_fail"))
    callbacks = {
        "on_strategy_start": lambda name, symbol: events["start"].append(name),
        "on_strategy_complete": lambda name, symbol, stats, value: events["complete"].append(name),
        "on_strategy_error": lambda name, symbol, exc: events["error"].append(name),
    }
    progress = await run_all(bk.Walker.run(SYM, walker="wk_fail", callbacks=callbacks))
    # a strategy whose get_signal raises just never trades: its stats exist but its metric is null
    assert progress[0]["metricValue"] is None and progress[0]["stats"]["totalSignals"] == 0
    assert progress[1]["bestStrategy"] == "a_long_tp1_sl1"
    assert events["start"] == ["wk_boom", "a_long_tp1_sl1"]

    bk.add_exchange("wk_down", get_candles=broken_exchange)
    week.append(("exchanges", "wk_down"))
    bk.add_walker(
        "wk_fail2", strategies=["a_long_tp1_sl1", "d_sma_cross"], exchange="wk_down", frame="wk_week"
    )
    week.append(("walkers", "wk_fail2"))
    progress = await run_all(bk.Walker.run(SYM, walker="wk_fail2", callbacks=callbacks))
    assert [p["error"] is not None for p in progress] == [True, True]
    assert events["error"] == ["a_long_tp1_sl1", "d_sma_cross"]
    assert (await bk.Walker.get_data(SYM, "wk_fail2"))["bestStrategy"] is None


def test_ranking_rules_ties_keep_the_earlier_and_null_never_wins() -> None:
    assert better(1.0, None, "sharpeRatio") and not better(None, 1.0, "sharpeRatio")
    assert not better(1.0, 1.0, "sharpeRatio") and better(2.0, 1.0, "sharpeRatio")
    assert better(1.0, 2.0, "maxDrawdown") and not better(2.0, 1.0, "maxDrawdown")
    assert metric_value({"totalSignals": 12}, "totalTrades") == 12.0
    assert metric_value({"sharpeRatio": None}, "sharpeRatio") is None
    with pytest.raises(bk.ConfigurationError):
        metric_value({}, "bogus")


def test_the_walker_cli_writes_the_comparison_as_json(tmp_path: Path) -> None:
    out = tmp_path / "walk.json"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "backtest_kit_runner",
            "walker",
            "--symbol",
            SYM,
            "--strategies",
            "a_long_tp1_sl1,d_sma_cross",
            "--exchange",
            "synthetic",
            "--frame",
            "2024-01-01..2024-01-03",
            "--metric",
            "totalPnl",
            "--jobs",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["metric"] == "totalPnl" and len(data["strategyResults"]) == 2
    assert data["bestStrategy"] in ("a_long_tp1_sl1", "d_sma_cross")
    assert "# Walker Report" in res.stdout


async def test_a_parameter_grid_of_one_strategy_is_walked_and_ranked(week: list[Any]) -> None:
    def make(tp: float) -> Any:
        async def grid(symbol: str, when: datetime, price: float) -> bk.SignalDto:
            return bk.SignalDto(
                position="long",
                price_take_profit=price * (1 + tp),
                price_stop_loss=price * 0.99,
                minute_estimated_time=120,
            )

        return grid

    names = []
    for tp in (0.006, 0.01, 0.02):
        name = f"grid_tp{tp}"
        bk.add_strategy(name, interval="15m", get_signal=make(tp))
        week.append(("strategies", name))
        names.append(name)
    completed: list[str] = []
    bk.add_walker(
        "wk_grid",
        strategies=names,
        exchange="synthetic",
        frame="wk_week",
        metric="totalPnl",
        callbacks={"on_strategy_complete": lambda n, s, st, v: completed.append(n)},
    )
    week.append(("walkers", "wk_grid"))
    await run_all(bk.Walker.run(SYM, walker="wk_grid"))
    data = await bk.Walker.get_data(SYM, "wk_grid")
    totals = {r["strategyName"]: r["stats"]["totalPnl"] for r in data["strategyResults"]}
    assert len(set(totals.values())) == 3, "different parameters must trade differently"
    assert data["bestStrategy"] == max(totals, key=lambda n: totals[n])
    assert completed == names
    with pytest.raises(bk.ConfigurationError, match="unknown callbacks"):
        bk.add_walker(
            "wk_bad_cb", strategies=names, exchange="synthetic", frame="wk_week", callbacks={"on_done": print}
        )
