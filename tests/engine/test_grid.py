"""Parameter grids: the axes people write, the members they expand to, and a grid's walk over one
prepared market giving exactly what each member's own backtest gives."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import backtest_kit as bk
from backtest_kit.grid import GridError, grid_from, member_label, parse_grid, shards
from backtest_kit.prepared import PreparedCandles
from backtest_kit.synthetic import SyntheticExchange
from backtest_kit_runner.example_strategies import sma_cross
from tests.engine.helpers import SYM, day

FRAME = "2024-01-01..2024-01-03"


def test_a_grid_is_the_cartesian_product_of_its_axes_in_the_order_written() -> None:
    grid = parse_grid("fast=3,5,8,10 slow=20..50:10")
    members = grid.members()
    assert len(grid) == 16 and members[:2] == [{"fast": 3, "slow": 20}, {"fast": 3, "slow": 30}]
    assert members[-1] == {"fast": 10, "slow": 50}
    assert all(type(m["fast"]) is int and type(m["slow"]) is int for m in members)


def test_a_range_includes_its_end_only_when_a_step_lands_on_it_and_counts_decimals_exactly() -> None:
    assert parse_grid("n=20..50:10").members()[-1] == {"n": 50}
    assert [m["n"] for m in parse_grid("n=20..45:10")] == [20, 30, 40]
    assert [m["tp"] for m in parse_grid("tp=0.1..0.3:0.1")] == [0.1, 0.2, 0.3]
    assert [m["n"] for m in parse_grid("n=1..3")] == [1, 2, 3]
    assert parse_grid("iv=15m,1h flag=true").members()[0] == {"iv": "15m", "flag": True}


def test_the_mapping_form_and_the_text_form_are_the_same_grid() -> None:
    mapping = grid_from({"fast": [3, 5, 8, 10], "slow": {"from": 20, "to": 50, "step": 10}})
    assert mapping == parse_grid("fast=3,5,8,10 slow=20..50:10")
    assert grid_from({"fast": {"values": [3, 5]}}) == parse_grid("fast=3,5")
    assert parse_grid(mapping.to_text()) == mapping


def test_a_bad_grid_names_every_bad_axis_at_once() -> None:
    with pytest.raises(GridError) as caught:
        parse_grid("fast=3,,5 slow=50..20 step=1..5:0 lonely fast2=1,1")
    text = str(caught.value)
    for part in ("'fast=3,,5'", "ends (20) before it starts (50)", "step must be positive", "'lonely'"):
        assert part in text
    assert "repeats a value" in text
    with pytest.raises(GridError, match="given twice"):
        parse_grid("fast=3 fast=5")
    with pytest.raises(GridError, match="no axes"):
        parse_grid("  ")


def test_members_are_named_by_their_grid_values_in_axis_order() -> None:
    assert member_label("sma-cross", {"fast": 3, "slow": 20}) == "sma-cross[fast=3,slow=20]"
    assert member_label("s", {"tp": 0.5, "iv": "15m", "x": 1}, ("iv", "tp")) == "s[iv=15m,tp=0.5]"


def test_shares_deal_members_round_robin_and_cover_each_once() -> None:
    assert shards(5, 2) == [[0, 2, 4], [1, 3]]
    assert shards(2, 4) == [[0], [1]]
    assert sorted(i for share in shards(64, 8) for i in share) == list(range(64))


def test_prepared_candles_serve_exactly_what_the_exchange_serves_from_one_fetch_per_interval() -> None:
    market = SyntheticExchange()
    exchange = bk.default_engine().registry.exchanges.get("synthetic")
    horizon = int(day(5).timestamp() * 1000)
    prepared = PreparedCandles(exchange, horizon_ms=horizon, per_request=1000)
    start = int(day(1).timestamp() * 1000)
    for k in range(0, 200, 7):
        since = start + k * 15 * 60_000
        served = prepared.candle_arrays(SYM, "15m", since, 21)
        for got, want in zip(served, market.candle_arrays(SYM, "15m", since, 21), strict=True):
            assert got.tolist() == want.tolist()
    earlier = prepared.candle_arrays(SYM, "15m", start - 30 * 15 * 60_000, 51)  # extends backwards
    assert (
        earlier.close.tolist()
        == market.candle_arrays(SYM, "15m", start - 30 * 15 * 60_000, 51).close.tolist()
    )
    assert prepared.fetches == 2
    with pytest.raises(ValueError):
        earlier.close[0] = 1.0  # read-only: no run can change what the next one is served


def test_prepared_candles_serve_the_list_path_from_request_sized_fetches() -> None:
    inner = SyntheticExchange()
    bk.add_exchange("listonly", get_candles=inner.get_candles)
    schema = bk.default_engine().registry.exchanges.get("listonly")
    prepared = PreparedCandles(schema, horizon_ms=int(day(2).timestamp() * 1000), per_request=500)
    since = int(day(1).timestamp() * 1000)
    rows = asyncio.run(prepared.get_candles(SYM, "1m", day(1, 3), 10))
    assert list(rows) == inner.candle_arrays(SYM, "1m", since + 180 * 60_000, 10).to_candles()
    assert prepared.fetches == 3  # 1,261 candles from 03:00 to the horizon (day 2 00:01), 500 a call
    asyncio.run(prepared.get_candles(SYM, "1m", day(1, 12), 60))
    assert prepared.fetches == 3


def _register_grid(grid: Any = "fast=3,5 slow=12,20", **kwargs: Any) -> list[bk.GridMember]:
    bk.add_frame("grid_days", start=day(1), end=day(3, 23, 59), replace=True)
    return bk.Walker.add_grid(
        "grid_walk",
        strategy=sma_cross.STRATEGY,
        grid=grid,
        register=sma_cross.register,
        params=sma_cross.Params,
        exchange="synthetic",
        frame="grid_days",
        metric="totalPnl",
        **kwargs,
    )


async def test_each_grid_member_gets_exactly_its_own_backtests_stats_over_the_shared_market() -> None:
    original = bk.default_engine().registry.exchanges.get("synthetic")
    members = _register_grid(base={"minutes": 120})
    assert [m.label for m in members][:2] == ["sma-cross[fast=3,slow=12]", "sma-cross[fast=3,slow=20]"]
    assert members[0].params["minutes"] == 120 and members[0].params["fast"] == 3
    walked = [p async for p in bk.Walker.run(SYM, walker="grid_walk")]
    data = await bk.Walker.get_data(SYM, "grid_walk")
    assert [p["strategyName"] for p in walked] == [m.label for m in members]
    for member, progress in zip(members, walked, strict=True):
        sma_cross.register(sma_cross.Params(**member.params))
        own = await bk.default_engine().backtest.execute(
            SYM, strategy=sma_cross.STRATEGY, exchange="synthetic", frame="grid_days"
        )
        assert progress["stats"] == own.stats()
    values = [r["metricValue"] for r in data["strategyResults"]]
    assert data["bestMetric"] == max(values)
    assert bk.default_engine().registry.exchanges.get("synthetic") is original  # put back after the walk


async def test_a_grid_refuses_every_bad_member_before_registering_any() -> None:
    with pytest.raises(bk.ConfigurationError) as caught:
        _register_grid("fast=3,30 slow=12,20")
    text = str(caught.value)
    assert "2 of 4 members" in text
    assert "sma-cross[fast=30,slow=12]: fast (30) must be shorter than slow (12)" in text
    assert "sma-cross[fast=30,slow=20]" in text and "sma-cross[fast=3,slow=12]:" not in text
    assert not [n for n in bk.list_strategies() if n.startswith("sma-cross[")]


def test_run_grid_returns_the_members_ranked_and_jobs_do_not_change_them() -> None:
    kwargs: dict[str, Any] = {
        "strategy": sma_cross.STRATEGY,
        "grid": {"fast": [3, 5], "slow": {"from": 12, "to": 20, "step": 8}},
        "register": sma_cross.register,
        "params": sma_cross.Params,
        "frame": FRAME,
        "metric": "totalPnl",
    }
    sequential = bk.run_grid(SYM, **kwargs)
    parallel = bk.run_grid(SYM, jobs=2, **kwargs)
    values = [row["metricValue"] for row in sequential.ranking]
    assert values == sorted(values, reverse=True) and [r["rank"] for r in sequential.ranking] == [1, 2, 3, 4]
    assert sequential.best is not None and sequential.best["label"] == sequential.data["bestStrategy"]
    assert sequential.best["values"] == {k: sequential.best["params"][k] for k in ("fast", "slow")}
    strip = [{k: v for k, v in row.items() if k != "stats"} for row in sequential.ranking]
    assert strip == [{k: v for k, v in row.items() if k != "stats"} for row in parallel.ranking]
    assert [r["stats"] for r in sequential.ranking] == [r["stats"] for r in parallel.ranking]
