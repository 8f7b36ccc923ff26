"""Manual control of a live trader (pause, resume, close now, drain) and managed positions live.

Each control is persisted in the live record, so a restarted process (here: a new engine on the
same state directory, as a new pod would be) keeps it; each is also a ``control`` event.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, to_ms
from tests.engine.helpers import day

SYM = "SYNUSDT"
START = to_ms(day(2))


def engine() -> bk.Engine:
    e = bk.Engine()
    e.registry.add_strategy("every_5m", interval="5m", get_signal=bk.examples.a_long_tp1_sl1)
    return e


async def replay(
    e: bk.Engine, state: Path, *, until: int, strategy: str = "every_5m", stop_at: str | None = None
) -> list[Any]:
    """Run live on a max-speed replay clock over ``state`` until ``until`` (or a result ``stop_at``)."""
    store = bk.FilePersistence(state)
    store.init()
    clock = bk.ReplayClock(START, float("inf"), persistence=store)
    out: list[Any] = []
    gen = e.live.run(
        SYM, strategy=strategy, exchange="synthetic", clock=clock, persistence=store, until=until
    )
    try:
        async for result in gen:
            out.append(result)
            if result.action == stop_at:
                break
    finally:
        await gen.aclose()
    return out


def record(state: Path, strategy: str = "every_5m") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "live" / f"{SYM}_{strategy}_synthetic.json").read_text())
    return data


async def test_a_paused_trader_opens_nothing_and_stays_paused_after_a_restart(tmp_path: Path) -> None:
    first = engine()
    heard: list[Any] = []
    first.events.control.subscribe(heard.append)
    await first.live.pause(SYM, "every_5m")
    assert await replay(first, tmp_path, until=START + 60 * MINUTE_MS) == []
    assert record(tmp_path)["paused"] is True
    assert [c.action for c in heard] == ["pause"]
    # a new process on the same state directory comes back paused
    second = engine()
    assert await replay(second, tmp_path, until=START + 120 * MINUTE_MS) == []
    assert second.live.get_status(SYM, "every_5m")["paused"] is True
    await second.live.resume(SYM, "every_5m")
    after = await replay(second, tmp_path, until=START + 180 * MINUTE_MS)
    assert after and after[0].action == "opened"
    assert record(tmp_path)["paused"] is False


async def test_close_now_closes_the_open_position_at_the_next_tick_with_reason_closed(tmp_path: Path) -> None:
    first = engine()
    opened = await replay(first, tmp_path, until=START + 600 * MINUTE_MS, stop_at="opened")
    assert [r.action for r in opened] == ["opened"]
    position = opened[0].signal
    await first.live.close_pending(SYM, "every_5m")  # not running any more: kept for its next run
    assert first.live.get_status(SYM, "every_5m")["closeRequested"] is True
    results = await replay(first, tmp_path, until=START + 600 * MINUTE_MS, stop_at="closed")
    closed = results[0]
    assert closed.action == "closed" and closed.close_reason == "closed" and closed.signal.id == position.id
    restart_minute = record(tmp_path)["lastTickMs"]
    assert closed.close_timestamp == restart_minute
    assert record(tmp_path)["closeRequested"] is False


async def test_a_drain_survives_a_restart_and_is_cleared_once_done(tmp_path: Path) -> None:
    first = engine()
    opened = await replay(first, tmp_path, until=START + 600 * MINUTE_MS, stop_at="opened")
    await first.live.stop(SYM, "every_5m")
    assert record(tmp_path)["drain"] is False  # asked while not running: recorded by the next run
    second = engine()
    await second.live.stop(SYM, "every_5m")
    results = await replay(second, tmp_path, until=START + 6000 * MINUTE_MS)
    # the open signal closes, nothing new opens, and the run ends on its own (well before until)
    assert [r.action for r in results] == ["closed"] and results[0].signal.id == opened[0].signal.id
    assert second.live.get_status(SYM, "every_5m")["phase"] == "done"
    assert record(tmp_path)["drain"] is False and record(tmp_path)["pending"] is None


async def test_a_drain_asked_while_running_is_in_the_record_at_once(tmp_path: Path) -> None:
    e = engine()
    store = bk.FilePersistence(tmp_path)
    store.init()
    clock = bk.ReplayClock(START, float("inf"), persistence=store)
    gen = e.live.run(SYM, strategy="every_5m", exchange="synthetic", clock=clock, persistence=store)
    async for result in gen:
        if result.action == "opened":
            await e.live.stop(SYM, "every_5m")
            assert record(tmp_path)["drain"] is True  # durable before the next tick
            break
    await gen.aclose()
    # a crash now: the next process drains
    restarted = engine()
    results = await replay(restarted, tmp_path, until=START + 6000 * MINUTE_MS)
    assert [r.action for r in results] == ["closed"]


async def test_a_managed_position_is_managed_live_and_survives_a_restart_with_its_partials(
    tmp_path: Path,
) -> None:
    async def ping(symbol: str, signal: bk.SignalRow, price: float, when: datetime) -> None:
        if not signal.partials and (price - signal.open_eff) / signal.open_eff * 100 >= 0.2:
            await bk.commit_partial_profit(symbol, 40)

    def managed() -> bk.Engine:
        e = engine()
        e.registry.add_strategy(
            "managed",
            interval="5m",
            get_signal=bk.examples.a_long_tp1_sl1,
            callbacks={"on_active_ping": ping},
        )
        return e

    first = managed()
    commits: list[Any] = []
    first.events.strategy_commit.subscribe(commits.append)
    until = START + 3000 * MINUTE_MS
    results = await replay(first, tmp_path, until=until, strategy="managed")
    closed = [r for r in results if r.action == "closed"]
    partial = next(r for r in closed if r.signal.partials)
    assert partial.signal.partials[0].percent == 40 and partial.signal.partial_executed == 40
    assert commits and commits[0].action == "partial-profit" and not commits[0].backtest
    # stop right after the first partial close (the position still open), then restart on the state
    second_dir = tmp_path / "again"
    cut = commits[0].timestamp + MINUTE_MS
    before = await replay(managed(), second_dir, until=cut, strategy="managed")
    held = record(second_dir, "managed")["pending"]
    assert held is not None and [p["timestamp"] for p in held["partials"]] == [commits[0].timestamp]
    resumed = await replay(managed(), second_dir, until=until, strategy="managed")
    assert resumed[0].action == "closed" and resumed[0].signal.id == held["id"]
    assert len(resumed[0].signal.partials) == 1  # restored, not applied again

    def rows(results: list[Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.flat().items() if k != "id"} for r in results]

    assert rows(before + resumed) == rows(results)  # the same as one uninterrupted run


async def test_a_close_asked_while_running_survives_a_crash_and_closes_on_the_next_process(
    tmp_path: Path,
) -> None:
    first = engine()
    store = bk.FilePersistence(tmp_path)
    store.init()
    clock = bk.ReplayClock(START, float("inf"), persistence=store)
    gen = first.live.run(SYM, strategy="every_5m", exchange="synthetic", clock=clock, persistence=store)
    position = None
    async for result in gen:
        if result.action == "opened":
            position = result.signal
            await first.live.close_pending(SYM, "every_5m")
            assert record(tmp_path)["closeRequested"] is True  # durable before the next tick
            break
    await gen.aclose()  # the process dies before the tick that would close
    assert position is not None
    restarted = engine()
    results = await replay(restarted, tmp_path, until=START + 600 * MINUTE_MS, stop_at="closed")
    assert results[0].action == "closed" and results[0].close_reason == "closed"
    assert results[0].signal.id == position.id and record(tmp_path)["closeRequested"] is False
