"""The README's position-management examples run as written, and the spec's edge cases hold.

The README section "Managing an open position" holds a strategy file and a script that runs it;
the "Live mode" section a manual-control script. They are taken from the README itself (the
``readme-test`` markers), written into a fresh directory and run with this interpreter, so a
reader who copies them gets what is asserted here. The edge cases run a probing strategy on one
day of the synthetic market and look at what each commit returned and at the closed rows.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

import backtest_kit as bk
from backtest_kit.registry import FrameSchema
from tests.engine.helpers import SYM, day

ROOT = Path(__file__).resolve().parents[2]
MARKED = re.compile(r"<!-- readme-test: (\w+) ?([^>]*?) -->\n```(\w+)\n(.*?)```", re.S)
DAY2 = FrameSchema("day2", "1m", int(day(2).timestamp() * 1000), int(day(2, 23, 59).timestamp() * 1000))

Ping = Callable[[str, bk.SignalRow, float, datetime], Awaitable[None]]


def readme_section(heading: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = (
        text.index(f"\n### {heading}\n") if f"\n### {heading}\n" in text else text.index(f"\n## {heading}\n")
    )
    nxt = re.search(r"\n##+ ", text[start + 1 :])
    return text[start : start + 1 + nxt.start()] if nxt else text[start:]


def section_blocks(heading: str) -> dict[str, str]:
    return {m.group(2).strip(): m.group(4) for m in MARKED.finditer(readme_section(heading))}


def run_script(script: Path, cwd: Path) -> str:
    res = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert res.returncode == 0, (
        f"{script.name}: exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    )
    return res.stdout


CHECK = """
import asyncio, json
import backtest_kit as bk
import managed

async def main():
    out = {}
    for name in ("scale_out", "trail", "dca"):
        engine = bk.default_engine()
        run = await engine.backtest.execute("SYNUSDT", strategy=name, exchange="synthetic", frame="jan")
        out[name] = [r for r in run.signals() if r["action"] == "closed"]
    print(json.dumps(out))

asyncio.run(main())
"""


def test_the_readme_position_examples_run_as_written_and_manage_their_positions(tmp_path: Path) -> None:
    blocks = section_blocks("Managing an open position")
    assert set(blocks) == {"managed.py", "managed_run"}
    (tmp_path / "managed.py").write_text(blocks["managed.py"], encoding="utf-8")
    (tmp_path / "managed_run.py").write_text(blocks["managed_run"], encoding="utf-8")
    printed = run_script(tmp_path / "managed_run.py", tmp_path).splitlines()
    assert [line.split(":")[0] for line in printed[:3]] == ["scale_out", "trail", "dca"]
    heard = eval(printed[3], {})  # the listener's count of accepted commits, by strategy and action
    assert set(heard) == {
        "scale_out partial-profit",
        "scale_out partial-loss",
        "trail breakeven",
        "trail trailing-stop",
        "trail trailing-take",
        "dca average-buy",
    }
    (tmp_path / "check.py").write_text(CHECK, encoding="utf-8")
    rows = json.loads(run_script(tmp_path / "check.py", tmp_path))

    scale = rows["scale_out"]
    assert len(scale) >= 50
    assert any(r["partialExecuted"] == pytest.approx(75) and r["totalPartials"] == 2 for r in scale)
    cut = [r for r in scale if any(p["type"] == "loss" for p in r["partials"])]
    assert cut and all(p["percent"] == 30 for r in cut for p in r["partials"] if p["type"] == "loss")
    assert all(
        p["currentPrice"] > r["priceOpen"] for r in scale for p in r["partials"] if p["type"] == "profit"
    )

    trail = rows["trail"]
    trailed = [r for r in trail if r["trailingPriceStopLoss"] is not None]
    assert trailed and all(r["priceStopLoss"] == r["trailingPriceStopLoss"] for r in trailed)
    assert all(r["trailingPriceStopLoss"] >= r["priceOpen"] for r in trailed)  # breakeven or better
    assert any(r["trailingPriceStopLoss"] > r["priceOpen"] for r in trailed)  # trailed into profit
    locked = [r for r in trailed if r["closeReason"] == "stop_loss" and r["pnlPercentage"] > 0]
    assert locked, "a trailing stop in profit closes as stop_loss with a gain"
    pulled = [r for r in trail if r["trailingPriceTakeProfit"] is not None]
    assert pulled and all(r["trailingPriceTakeProfit"] < r["originalPriceTakeProfit"] for r in pulled)

    dca = rows["dca"]
    three = [r for r in dca if r["totalEntries"] == 3]
    assert three and all([e["cost"] for e in r["entries"]] == [100, 100, 200] for r in three)
    assert all(r["pnlEntries"] == 400 and r["priceOpen"] < r["originalPriceOpen"] for r in three)
    assert all(r["entries"][2]["price"] < r["entries"][1]["price"] < r["entries"][0]["price"] for r in three)


def test_the_readme_manual_control_example_closes_now_then_pauses_then_resumes(tmp_path: Path) -> None:
    blocks = section_blocks("Live mode")
    assert "live_control" in blocks
    (tmp_path / "live_control.py").write_text(blocks["live_control"], encoding="utf-8")
    printed = run_script(tmp_path / "live_control.py", tmp_path).splitlines()
    assert printed == ["opened ", "closed closed", "paused: True open: None"]
    record = json.loads((tmp_path / "state" / "live" / "SYNUSDT_a_long_tp1_sl1_synthetic.json").read_text())
    assert record["paused"] is True  # the pause was stored while running; the resume waits for a run


# --------------------------------------------------------------------------- edge cases


async def long_entry(symbol: str, when: datetime, price: float) -> bk.SignalDto:
    return bk.SignalDto(
        position="long",
        price_take_profit=price * 1.02,
        price_stop_loss=price * 0.985,
        minute_estimated_time=240,
    )


async def backtest(ping: Ping, **config: Any) -> tuple[list[dict[str, Any]], list[bk.CommitEvent]]:
    """One day with ``ping`` as ``on_active_ping``; the closed rows and the commit events."""
    engine = bk.Engine()
    if config:
        engine.set_config(**config)
    engine.registry.add_strategy(
        "probe", interval="5m", get_signal=long_entry, callbacks={"on_active_ping": ping}
    )
    commits: list[bk.CommitEvent] = []
    engine.events.strategy_commit.subscribe(commits.append)
    run = await engine.backtest.execute(SYM, strategy="probe", exchange="synthetic", frame=DAY2)
    return [r for r in run.signals() if r["action"] == "closed"], commits


def first_position(rows: list[dict[str, Any]], signal_id: str) -> dict[str, Any]:
    return next(r for r in rows if r["id"] == signal_id)


async def test_a_partial_close_of_more_than_100_or_at_most_0_or_nan_percent_is_refused() -> None:
    got: dict[str, bool] = {}

    async def ping(symbol: str, signal: bk.SignalRow, price: float, when: datetime) -> None:
        if not got:
            for p in (100.5, 150, 0, -10, math.nan, math.inf):
                got[str(p)] = await bk.commit_partial_profit(symbol, p)
                got[f"loss {p}"] = await bk.commit_partial_loss(symbol, p)
            got["id"] = signal.id  # type: ignore[assignment]

    rows, commits = await backtest(ping, enable_pppl_everywhere=True)
    signal_id = got.pop("id")
    assert got and not any(got.values())
    assert first_position(rows, str(signal_id))["partials"] == []
    assert commits == []


async def test_50_then_50_percent_of_the_rest_closes_75_percent_of_the_position() -> None:
    seen: dict[str, Any] = {}

    async def ping(symbol: str, signal: bk.SignalRow, price: float, when: datetime) -> None:
        if not seen:
            seen["id"] = signal.id
            seen["ok"] = [
                await bk.commit_partial_profit(symbol, 50),
                await bk.commit_partial_profit(symbol, 50),
            ]
            seen["closed"] = await bk.get_total_percent_closed(symbol)

    rows, _ = await backtest(ping, enable_pppl_everywhere=True)
    assert seen["ok"] == [True, True] and seen["closed"] == pytest.approx(75)
    row = first_position(rows, seen["id"])
    assert row["partialExecuted"] == pytest.approx(75)
    assert [p["costBasisAtClose"] for p in row["partials"]] == pytest.approx([100, 50])
    assert row["closeNote"] is None and row["closeReason"] != "closed"


async def test_a_second_trailing_stop_that_loosens_is_refused_while_the_first_may_loosen() -> None:
    seen: dict[str, Any] = {}

    async def ping(symbol: str, signal: bk.SignalRow, price: float, when: datetime) -> None:
        if not seen:
            seen["id"] = signal.id
            seen["ok"] = [
                await bk.commit_trailing_stop(symbol, 0.5, price),  # first move: looser, accepted
                await bk.commit_trailing_stop(symbol, 0.7, price),  # looser again: refused
                await bk.commit_trailing_stop(symbol, 0.5, price),  # the same level: refused
                await bk.commit_trailing_stop(symbol, -0.2, price),  # tighter: accepted
                await bk.commit_trailing_stop(symbol, 0, price),  # no shift: refused
            ]
            seen["stop"] = (await bk.get_pending_signal(symbol)).trailing_price_stop_loss  # type: ignore[union-attr]

    rows, commits = await backtest(ping)
    assert seen["ok"] == [True, False, False, True, False]
    row = first_position(rows, seen["id"])
    po = row["priceOpen"]
    original = abs(po - row["originalPriceStopLoss"]) / po * 100
    assert seen["stop"] == pytest.approx(po * (1 - (original - 0.2) / 100), rel=1e-12)
    assert row["trailingPriceStopLoss"] == seen["stop"]
    assert [c.action for c in commits if c.signal.id == seen["id"]] == ["trailing-stop", "trailing-stop"]


async def test_commit_breakeven_returns_true_without_change_when_the_stop_is_already_in_profit() -> None:
    seen: dict[str, Any] = {}

    async def ping(symbol: str, signal: bk.SignalRow, price: float, when: datetime) -> None:
        if seen or price < signal.open_eff * 1.003:
            return
        seen["id"] = signal.id
        original = abs(signal.open_eff - signal.price_stop_loss) / signal.open_eff * 100
        seen["trail"] = await bk.commit_trailing_stop(symbol, -(original + 0.1), price)  # stop +0.1 %
        before = await bk.get_pending_signal(symbol)
        seen["breakeven"] = await bk.commit_breakeven(symbol)
        seen["same"] = await bk.get_pending_signal(symbol) == before

    rows, commits = await backtest(ping)
    assert seen["trail"] and seen["breakeven"] and seen["same"]
    row = first_position(rows, seen["id"])
    assert row["trailingPriceStopLoss"] == pytest.approx(row["priceOpen"] * 1.001, rel=1e-12)
    assert [c.action for c in commits if c.signal.id == seen["id"]] == ["trailing-stop"]


async def test_an_average_buy_at_or_above_the_lowest_entry_is_refused_for_a_long() -> None:
    seen: dict[str, Any] = {"refused": [], "accepted": []}

    async def ping(symbol: str, signal: bk.SignalRow, price: float, when: datetime) -> None:
        avg = await bk.get_average_price(symbol)
        lowest = min(e.price for e in signal.entries) if signal.entries else signal.price_open
        ok = await bk.commit_average_buy(symbol, cost=50)
        (seen["accepted"] if ok else seen["refused"]).append((avg, lowest))

    rows, commits = await backtest(ping)
    assert seen["refused"] and seen["accepted"]
    assert all(avg >= lowest for avg, lowest in seen["refused"])
    assert all(avg < lowest for avg, lowest in seen["accepted"])
    grown = [r for r in rows if r["totalEntries"] > 1]
    assert grown and all(r["priceOpen"] < r["originalPriceOpen"] for r in grown)
    assert all(e["price"] > f["price"] for r in grown for e, f in pairwise(r["entries"]))
    assert len(commits) == len(seen["accepted"]) and {c.action for c in commits} == {"average-buy"}


async def test_a_full_partial_close_closes_on_the_next_candle_with_reason_closed() -> None:
    seen: dict[str, Any] = {}

    async def ping(symbol: str, signal: bk.SignalRow, price: float, when: datetime) -> None:
        if not seen:
            seen["id"], seen["at"] = signal.id, int(when.timestamp() * 1000)
            seen["full"] = await bk.commit_partial_loss(symbol, 100)
            seen["after"] = [
                await bk.commit_trailing_stop(symbol, -0.1, price),
                await bk.commit_partial_loss(symbol, 10),
                await bk.commit_average_buy(symbol),
            ]
        elif signal.id == seen["id"]:
            seen["called again"] = True

    rows, commits = await backtest(ping, enable_pppl_everywhere=True)
    assert seen["full"] and seen["after"] == [False, False, False]
    assert "called again" not in seen  # the closing candle runs no callback
    row = first_position(rows, seen["id"])
    assert row["closeReason"] == "closed" and row["closeNote"] == "full_partial_close"
    assert row["closeTimestamp"] == seen["at"] + 60_000
    assert row["partialExecuted"] == pytest.approx(100)
    assert [c.action for c in commits if c.signal.id == seen["id"]] == ["partial-loss"]


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("commit_partial_profit", (SYM, 10)),
        ("commit_partial_loss", (SYM, 10)),
        ("commit_partial_profit_cost", (SYM, 10)),
        ("commit_trailing_stop", (SYM, -0.5, 100.0)),
        ("commit_trailing_take", (SYM, -0.5, 100.0)),
        ("commit_trailing_stop_cost", (SYM, 100.0)),
        ("commit_breakeven", (SYM,)),
        ("commit_average_buy", (SYM,)),
        ("get_pending_signal", (SYM,)),
    ],
)
async def test_commit_functions_outside_an_execution_context_raise(name: str, args: tuple[Any, ...]) -> None:
    with pytest.raises(bk.BacktestKitError, match=f"{name} requires an execution context"):
        await getattr(bk, name)(*args)


def test_the_module_level_api_offers_the_position_listeners() -> None:
    for name in (
        "listen_active_ping",
        "listen_partial_profit_available",
        "listen_partial_loss_available",
        "listen_breakeven_available",
        "listen_strategy_commit",
        "listen_control",
    ):
        assert callable(getattr(bk, name, None)), name
        assert callable(getattr(bk, f"{name}_once", None)), name
