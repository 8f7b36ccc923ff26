"""The explicit Engine: engines share nothing, runs keep their own results, transitions are values."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest

import backtest_kit as bk
from backtest_kit.lifecycle import SignalState, StrategyInstance
from backtest_kit.market import ExchangeClient, MinuteFeed
from backtest_kit.registry import FrameSchema
from tests.engine.helpers import SYM, day, run_all

WEEK = FrameSchema("week", "1m", int(day(1).timestamp() * 1000), int(day(7, 23, 59).timestamp() * 1000))
DAY2 = FrameSchema("day2", "1m", int(day(2).timestamp() * 1000), int(day(2, 23, 59).timestamp() * 1000))


async def always_long(symbol: str, when: datetime, price: float) -> bk.SignalDto:
    return bk.SignalDto(
        position="long",
        price_take_profit=price * 1.01,
        price_stop_loss=price * 0.99,
        minute_estimated_time=30,
    )


async def test_two_engines_share_no_registration_configuration_or_listener() -> None:
    one, two = bk.Engine(), bk.Engine()
    one.registry.add_strategy("only_in_one", interval="5m", get_signal=always_long)
    one.set_config(percent_fee=0.2)
    heard_one: list[Any] = []
    heard_two: list[Any] = []
    one.events.signal_backtest.subscribe(heard_one.append)
    two.events.signal_backtest.subscribe(heard_two.append)
    assert "only_in_one" in one.registry.list_strategies()
    assert "only_in_one" not in two.registry.list_strategies()
    assert two.config.percent_fee == 0.1 and one.config.percent_fee == 0.2
    run = await one.backtest.execute(SYM, strategy="only_in_one", exchange="synthetic", frame=DAY2)
    assert run.stats()["totalSignals"] > 0
    assert heard_one and not heard_two
    with pytest.raises(bk.UnknownNameError, match="only_in_one"):
        await two.backtest.execute(SYM, strategy="only_in_one", exchange="synthetic", frame=DAY2)


async def test_the_module_level_api_acts_on_the_engine_put_in_place_with_use_engine() -> None:
    mine = bk.Engine()
    previous = bk.use_engine(mine)
    try:
        bk.add_strategy("via_facade", interval="5m", get_signal=always_long)
        bk.set_config(percent_slippage=0.05)
        assert "via_facade" in mine.registry.list_strategies()
        assert mine.config.percent_slippage == 0.05
        assert bk.default_engine() is mine and bk.get_config() is mine.config
    finally:
        bk.use_engine(previous)
    assert "via_facade" not in bk.list_strategies()
    assert bk.get_config().percent_slippage == 0.1


async def test_two_runs_of_one_strategy_keep_their_own_results() -> None:
    engine = bk.Engine()
    week = await engine.backtest.execute(SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame=WEEK)
    day2 = await engine.backtest.execute(SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame=DAY2)
    assert 0 < day2.stats()["totalSignals"] < week.stats()["totalSignals"]
    week_ids = {row["id"] for row in week.signals()}
    assert week_ids.isdisjoint(row["id"] for row in day2.signals())
    # the facade's get_data keeps answering for the latest run of the key
    assert await engine.backtest.get_data(SYM, "a_long_tp1_sl1") == day2.stats()


async def test_a_run_reads_the_configuration_it_started_with() -> None:
    engine = bk.Engine()
    cheap = await engine.backtest.execute(SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame=DAY2)
    engine.set_config(percent_fee=0.3)
    dear = await engine.backtest.execute(SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame=DAY2)
    assert cheap.config.percent_fee == 0.1 and dear.config.percent_fee == 0.3
    assert dear.stats()["totalPnl"] < cheap.stats()["totalPnl"]


async def test_parallel_walker_workers_use_the_engine_they_are_given_not_the_default_one() -> None:
    engine = bk.Engine()  # not the default engine: a worker reading globals would not know these
    engine.registry.add_strategy("wk_long", interval="5m", get_signal=always_long)
    engine.registry.add_frame("wk_days", start=day(2), end=day(3, 23, 59))
    engine.registry.add_walker(
        "wk_own",
        strategies=["wk_long", "a_long_tp1_sl1", "d_sma_cross"],
        exchange="synthetic",
        frame="wk_days",
    )
    assert "wk_long" not in bk.list_strategies()
    sequential = await run_all(engine.walker.run(SYM, walker="wk_own"))
    parallel = await run_all(engine.walker.run(SYM, walker="wk_own", jobs=2))
    assert [p["error"] for p in parallel] == [None, None, None]
    assert [p["stats"] for p in parallel] == [p["stats"] for p in sequential]
    assert parallel[0]["stats"]["totalSignals"] > 0


def _instance(engine: bk.Engine, strategy: str) -> tuple[StrategyInstance, MinuteFeed]:
    reg = engine.registry
    schema = reg.strategies.get(strategy)
    client = ExchangeClient(reg.exchanges.get("synthetic"), backtest=True, config=engine.config)
    inst = StrategyInstance(
        schema,
        client,
        SYM,
        backtest=True,
        config=engine.config,
        risks=engine.risks,
        risk_schema=reg.risks.get(schema.risk) if schema.risk else None,
        bus=engine.events,
    )
    feed = MinuteFeed(client, SYM, start_ms=DAY2.start_ms, horizon_ms=DAY2.end_ms, avg=5)
    return inst, feed


async def test_asking_returns_the_opened_signal_as_a_value_and_changes_nothing_by_itself() -> None:
    engine = bk.Engine()
    engine.registry.add_risk(
        "one_at_a_time", validations=[lambda p: "full" if p["activePositionCount"] else None]
    )
    engine.registry.add_strategy("risky_long", interval="5m", get_signal=always_long, risk="one_at_a_time")
    inst, feed = _instance(engine, "risky_long")
    before = SignalState()
    when = DAY2.start_ms + 10 * 60_000
    step = await inst.ask(before, when, await feed.price_at(when), feed)
    assert before == SignalState()  # the old state is a value: untouched
    assert step.state.pending is not None and step.state.last_pending_id == step.state.pending.id
    assert [r.action for r in step.results] == ["opened"] and step.persist == "durable"
    assert step.reserve is not None and engine.risks.active("one_at_a_time") == {}  # not adopted yet
    inst.apply_risk(step)
    assert list(engine.risks.active("one_at_a_time")) == [inst.risk_key]
    # with the slot taken, the next ask is refused: the throttle rolls back, a risk event is a value
    refused = await inst.ask(SignalState(), when + 5 * 60_000, await feed.price_at(when + 5 * 60_000), feed)
    assert refused.state == SignalState(last_bucket=None) and refused.risk_events
    assert refused.risk_events[0].note == "full" and refused.reserve is None


async def test_a_backtest_episode_is_a_sequence_of_transitions_ending_flat() -> None:
    engine = bk.Engine()
    inst, feed = _instance(engine, "c_limit_sched")
    when = DAY2.start_ms + 15 * 60_000
    first = await inst.ask(SignalState(), when, await feed.price_at(when), feed)
    assert [r.action for r in first.results] == ["scheduled"] and first.state.scheduled is not None
    steps = [step async for step in inst.backtest_episode(first.state, feed, DAY2.end_ms)]
    actions = [r.action for step in steps for r in step.results]
    assert actions in (["cancelled"], ["opened", "closed"])
    assert steps[-1].state.flat and steps[-1].resume_after is not None
    assert steps[-1].resume_after >= when


async def test_the_built_in_risk_example_opens_in_even_hours_and_asks_each_minute_it_is_refused() -> None:
    engine = bk.Engine()
    refusals: list[bk.RiskEvent] = []
    engine.events.risk.subscribe(refusals.append)
    run = await engine.backtest.execute(SYM, strategy="g_risk_even_hours", exchange="synthetic", frame=DAY2)
    opened = [r.signal.pending_at for r in run.record.closed]
    assert opened and all(ts // 3_600_000 % 2 == 0 for ts in opened)
    assert refusals and all(e.timestamp // 3_600_000 % 2 == 1 for e in refusals)
    # a refusal rolls the throttle back: in an odd hour the strategy is asked every minute
    times = [e.timestamp for e in refusals]
    assert run.asks == len(refusals) + len(opened) and len(set(times)) == len(times)
    assert sum(b - a == 60_000 for a, b in itertools.pairwise(times)) > len(times) * 0.9
    plain = await engine.backtest.execute(SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame=DAY2)
    assert plain.asks < run.asks
