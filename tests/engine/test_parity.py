"""The engine reproduces the reference implementation's outputs on the synthetic market.

Signals field by field (except ``id``) in emission order, statistics (price profile included)
to 1e-9 relative.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import backtest_kit as bk

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
STRATEGIES = ["a_long_tp1_sl1", "c_limit_sched", "d_sma_cross"]


def close_enough(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=0.0) or got == want
    return bool(got == want)


@pytest.fixture(autouse=True)
def frame_f30(fresh_engine: bk.Engine) -> None:
    fresh_engine.registry.add_frame(
        "f30", start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2024, 1, 30, 23, 59, tzinfo=UTC)
    )


async def run(strategy: str) -> list[dict[str, Any]]:
    yielded = []
    async for result in bk.Backtest.run("SYNUSDT", strategy=strategy, exchange="synthetic", frame="f30"):
        yielded.append(result)
    assert [r.action for r in yielded if r.action in ("closed", "cancelled")]
    return bk.Backtest.get_signals("SYNUSDT", strategy)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_every_closed_and_cancelled_signal_matches_the_reference(strategy: str) -> None:
    expected = json.loads((FIXTURES / f"{strategy}__f30" / "signals.json").read_text())
    got = await run(strategy)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        diffs = {k: (g.get(k), v) for k, v in e.items() if not close_enough(g.get(k), v)}
        assert not diffs, f"signal {i}: {diffs}"


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_statistics_match_the_reference_over_every_signal(strategy: str) -> None:
    expected = json.loads((FIXTURES / f"{strategy}__f30" / "stats.json").read_text())
    await run(strategy)
    stats = await bk.Backtest.get_data("SYNUSDT", strategy)
    for key, want in expected.items():
        assert close_enough(stats[key], want), f"{key}: got {stats[key]!r}, want {want!r}"


async def test_signal_ids_are_unique_uuids() -> None:
    got = await run("a_long_tp1_sl1")
    ids = [row["id"] for row in got]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 36 and i.count("-") == 4 for i in ids)


async def test_a_second_run_in_the_same_process_gives_the_same_signals() -> None:
    first = [{k: v for k, v in r.items() if k != "id"} for r in await run("c_limit_sched")]
    second = [{k: v for k, v in r.items() if k != "id"} for r in await run("c_limit_sched")]
    assert first == second
