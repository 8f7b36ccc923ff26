"""How often live mode writes its record: once per state change, never for a minute that changed
nothing, and the same decisions and records whatever the replay's speed.

The runs are real max-speed replays over the synthetic market with the default file state; what
was written is read from the persistence layer's own counters and from the file on disk.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, to_ms
from tests.engine.helpers import day

SYM = "SYNUSDT"
START = to_ms(day(2))
KEY = f"live/{SYM}_every_5m_synthetic"


def engine() -> bk.Engine:
    e = bk.Engine()
    e.registry.add_strategy("every_5m", interval="5m", get_signal=bk.examples.a_long_tp1_sl1)
    return e


def state_fields(record: dict[str, Any]) -> dict[str, Any]:
    """What a record says about the trader, without the stamps of when it was written."""
    return {k: v for k, v in record.items() if k not in ("updatedAt", "lastTickMs", "lastSeenMs")}


async def test_a_replay_writes_once_per_state_change_and_nothing_on_a_minute_that_changed_nothing(
    tmp_path: Path,
) -> None:
    e = engine()
    store = bk.FilePersistence(tmp_path)
    store.init()
    path = tmp_path / "live" / f"{SYM}_every_5m_synthetic.json"
    written: list[dict[str, Any]] = []  # each version of the record, as a listener saw it appear
    last_inode: list[int] = []

    def saw(result: Any) -> None:  # runs after the minute's record was written
        inode = os.stat(path).st_ino if path.exists() else -1
        if inode != -1 and inode != (last_inode or [-1])[-1]:
            last_inode.append(inode)
            written.append(json.loads(path.read_text()))

    e.events.signal_live.subscribe(saw)
    clock = bk.ReplayClock(START, float("inf"), persistence=store)
    results = [
        r
        async for r in e.live.run(
            SYM,
            strategy="every_5m",
            exchange="synthetic",
            clock=clock,
            persistence=store,
            until=START + 720 * MINUTE_MS,
        )
    ]
    changes = sum(r.action in ("opened", "closed") for r in results)
    assert changes > 10
    assert store.durable_writes[KEY] == changes  # one fsynced write per open and per close
    # peak and fall of the open signal are bookkeeping, written with the next record or about
    # once a second, so far fewer times than they changed (once per minute or so)
    assert store.writes[KEY] - changes <= 3
    assert len(written) >= changes - 1  # the listener saw (nearly) every version of the file
    for before, after in itertools.pairwise(written):
        assert state_fields(before) != state_fields(after), "a write that changed nothing"


async def test_asking_again_for_a_control_in_force_writes_nothing(tmp_path: Path) -> None:
    e = engine()
    store = bk.FilePersistence(tmp_path)
    store.init()
    clock = bk.ReplayClock(START, float("inf"), persistence=store)
    gen = e.live.run(SYM, strategy="every_5m", exchange="synthetic", clock=clock, persistence=store)
    async for result in gen:
        if result.action == "opened":
            before = store.durable_writes[KEY]
            for _ in range(3):
                await e.live.pause(SYM, "every_5m")
            assert store.durable_writes[KEY] == before + 1
            break
    await gen.aclose()
    assert json.loads((tmp_path / f"{KEY}.json").read_text())["paused"] is True
