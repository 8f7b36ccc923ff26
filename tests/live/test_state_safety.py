"""The state directory has one writer and is never misread: locks, epochs, identities, versions,
and every kind of malformed file moved aside with the key frozen (never a crash loop).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, to_ms
from backtest_kit.live import parse_record, state_key
from backtest_kit.persistence import StaleWriterError
from tests.engine.helpers import day

SYM = "SYNUSDT"
START = to_ms(day(2))
RUNNER = [sys.executable, "-m", "backtest_kit_runner", "live", "--http-port", "0", "--http-host", "127.0.0.1"]


def live_args(
    state: Path, strategy: str = "a_long_tp1_sl1", until: str = "2024-01-09T00:00:00Z"
) -> list[str]:
    return [
        *RUNNER,
        "--symbol",
        SYM,
        "--strategy",
        strategy,
        "--state-dir",
        str(state),
        "--replay-from",
        "2024-01-02T00:00:00Z",
        "--speed",
        "max",
        "--until",
        until,
        "--quiet",
        "--log-level",
        "WARNING",
    ]


def test_a_second_process_on_the_same_state_directory_exits_2_naming_the_holder(tmp_path: Path) -> None:
    first = subprocess.Popen(live_args(tmp_path, until="2024-03-01T00:00:00Z"), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / ".lock").exists() or not (tmp_path / ".lock").read_text():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        second = subprocess.run(live_args(tmp_path), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"in use by process {first.pid}" in second.stderr and "since" in second.stderr
        assert first.poll() is None  # the holder trades on, untouched
    finally:
        first.kill()
        first.wait()
    # once the holder is gone the directory is free again, and the next holder has a newer epoch
    holder = json.loads((tmp_path / ".lock").read_text())
    third = subprocess.run(live_args(tmp_path, until="2024-01-02T01:00:00Z"), capture_output=True, timeout=60)
    assert third.returncode == 0, third.stderr
    assert json.loads((tmp_path / ".lock").read_text())["epoch"] == holder["epoch"] + 1


def test_a_writer_never_replaces_a_record_written_under_a_newer_epoch(tmp_path: Path) -> None:
    store = bk.FilePersistence(tmp_path)
    store.init()
    store.write("live/x", {"version": 1})
    newer = json.loads((tmp_path / "live" / "x.json").read_text())
    newer["writerEpoch"] = store.epoch + 1  # what a successor holding the lock wrote
    (tmp_path / "live" / "x.json").write_text(json.dumps(newer))
    with pytest.raises(StaleWriterError, match="newer writer"):
        store.write("live/x", {"version": 1, "pending": None})
    assert json.loads((tmp_path / "live" / "x.json").read_text()) == newer


def test_another_traders_open_signal_in_the_directory_is_refused_and_left_untouched(tmp_path: Path) -> None:
    first = subprocess.run(live_args(tmp_path, until="2024-01-02T00:30:00Z"), capture_output=True, timeout=60)
    assert first.returncode == 0, first.stderr
    record = tmp_path / f"{state_key(SYM, 'a_long_tp1_sl1', 'synthetic')}.json"
    assert json.loads(record.read_text())["pending"] is not None  # ended at --until with a position open
    before = record.read_bytes()
    other = subprocess.run(
        live_args(tmp_path, strategy="d_sma_cross"), capture_output=True, text=True, timeout=60
    )
    assert other.returncode == 2
    assert "open or scheduled signal of another trader" in other.stderr
    assert record.read_bytes() == before


def test_a_record_from_a_newer_engine_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / f"{state_key(SYM, 'a_long_tp1_sl1', 'synthetic')}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 99, "symbol": SYM, "pending": {"whatever": "new"}}))
    before = path.read_bytes()
    run = subprocess.run(live_args(tmp_path), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "newer version" in run.stderr
    assert path.read_bytes() == before


VALID: dict[str, Any] = {
    "version": 1,
    "symbol": SYM,
    "strategyName": "a_long_tp1_sl1",
    "exchangeName": "synthetic",
    "pending": None,
    "scheduled": None,
    "lastPendingId": None,
    "lastBucket": None,
    "lastResult": None,
    "lastTickMs": None,
}
ROW = {
    "id": "r1",
    "symbol": SYM,
    "strategyName": "a_long_tp1_sl1",
    "exchangeName": "synthetic",
    "position": "long",
    "priceOpen": 120.0,
    "priceTakeProfit": 121.2,
    "priceStopLoss": 118.8,
    "minuteEstimatedTime": 60,
    "scheduledAt": START,
    "pendingAt": START,
}
MALFORMED: dict[str, bytes] = {
    "not UTF-8": b'{"version": 1, "note": "\xff\xfe"}',
    "a list, not an object": b"[1, 2, 3]",
    "pending of the wrong type": json.dumps({**VALID, "pending": "open"}).encode(),
    "a pending row with a wrong field type": json.dumps(
        {**VALID, "pending": {**ROW, "priceOpen": "cheap"}}
    ).encode(),
    "a pending row with a NaN stop": json.dumps(
        {**VALID, "pending": {**ROW, "priceStopLoss": float("nan")}}
    ).encode(),
    "a pending row with an absurd cost": json.dumps({**VALID, "pending": {**ROW, "cost": 1e300}}).encode(),
    "lastTickMs as text": json.dumps({**VALID, "lastTickMs": "yesterday"}).encode(),
    "lastResult as a number": json.dumps({**VALID, "lastResult": 7}).encode(),
    "totals out of range": json.dumps({**VALID, "totals": {"signalsOpened": -3}}).encode(),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
async def test_a_malformed_record_is_moved_aside_and_freezes_the_key_without_crashing(
    kind: str, tmp_path: Path, fresh_engine: bk.Engine
) -> None:
    path = tmp_path / f"{state_key(SYM, 'a_long_tp1_sl1', 'synthetic')}.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(MALFORMED[kind])
    errors: list[BaseException] = []
    fresh_engine.events.error.subscribe(errors.append)
    store = bk.FilePersistence(tmp_path)
    results = [
        r
        async for r in fresh_engine.live.run(
            SYM,
            strategy="a_long_tp1_sl1",
            exchange="synthetic",
            clock=bk.ReplayClock(START, float("inf")),
            persistence=store,
            until=START + 30 * MINUTE_MS,
        )
    ]
    assert results == []  # the key is frozen: no new signal
    assert fresh_engine.live.get_status(SYM, "a_long_tp1_sl1")["frozen"]
    assert any(isinstance(e, bk.CorruptStateError) for e in errors)
    aside = list(path.parent.glob(f"{path.name}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == MALFORMED[kind]


def test_a_well_formed_record_parses_with_its_totals() -> None:
    parsed = parse_record(
        {**VALID, "pending": ROW, "totals": {"signalsOpened": 3, "realizedPnlPercentage": 1.5}}
    )
    assert parsed.state.pending is not None and parsed.totals.opened == 3


async def test_a_malformed_replay_anchor_is_moved_aside_and_freezes_the_key_without_crashing(
    tmp_path: Path, fresh_engine: bk.Engine
) -> None:
    anchor = tmp_path / "replay" / "anchor.json"
    anchor.parent.mkdir(parents=True)
    anchor.write_text(json.dumps({"startMs": START, "speed": "max", "wallAnchorMs": "soon"}))
    store = bk.FilePersistence(tmp_path)
    store.init()
    clock = bk.ReplayClock(START, float("inf"), persistence=store)
    assert clock.problem is not None and "moved aside" in clock.problem
    results = [
        r
        async for r in fresh_engine.live.run(
            SYM,
            strategy="a_long_tp1_sl1",
            exchange="synthetic",
            clock=clock,
            persistence=store,
            until=START + 20 * MINUTE_MS,
        )
    ]
    assert results == [] and fresh_engine.live.get_status(SYM, "a_long_tp1_sl1")["frozen"]
    assert len(list(anchor.parent.glob("anchor.json.corrupt-*"))) == 1


def test_an_events_file_with_a_line_that_is_not_a_result_is_moved_aside_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"id": "a", "action": "opened"}\n{"id": "a", "act\n[1, 2]\n')
    log = bk.EventLog(path)
    try:
        assert log.problem is not None and "line 3" in log.problem
        log.append({"id": "a", "action": "opened"})  # a new file: written again
    finally:
        log.close()
    assert json.loads(path.read_text())["id"] == "a"
    assert len(list(tmp_path.glob("events.jsonl.corrupt-*"))) == 1
    # a line merely cut by a crash is skipped, the rest is kept
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b'{"id": "b", "action": "opened"}\n{"id": "b", "act\n')
    again = bk.EventLog(cut)
    again.append({"id": "b", "action": "opened"})
    again.close()
    assert again.problem is None and cut.read_text().count('"opened"') == 1


def test_a_durable_record_replaces_the_old_one_only_after_its_barriers_and_never_if_one_fails(
    tmp_path: Path,
) -> None:
    store = bk.FilePersistence(tmp_path)
    store.init()
    store.write("live/k", {"n": 1})
    seen: list[Any] = []
    store.before_durable.append(lambda: seen.append((store.read("live/k") or {})["n"]))
    store.write("live/k", {"n": 2})
    store.write("live/k", {"n": 3}, durable=False)  # bookkeeping waits for nothing
    assert seen == [1] and (store.read("live/k") or {})["n"] == 3

    def failing() -> None:
        raise OSError(5, "Input/output error")

    store.before_durable.append(failing)
    with pytest.raises(bk.PersistenceError, match="previous state is kept"):
        store.write("live/k", {"n": 4})
    assert (store.read("live/k") or {})["n"] == 3 and not list(tmp_path.rglob(".tmp-*"))


def test_an_events_file_synced_behind_holds_every_line_once_when_sync_returns(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = bk.EventLog(path, sync_behind=True)
    try:
        for i in range(200):
            log.append({"id": i, "action": "opened"})
            log.append({"id": i, "action": "opened"})
        log.sync()
        assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == list(range(200))
    finally:
        log.close()


def test_a_record_naming_another_trader_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / f"{state_key(SYM, 'a_long_tp1_sl1', 'synthetic')}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**VALID, "symbol": "BTCUSDT", "pending": {**ROW, "symbol": "BTCUSDT"}}))
    before = path.read_bytes()
    run = subprocess.run(live_args(tmp_path), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "belongs to BTCUSDT:a_long_tp1_sl1:synthetic" in run.stderr
    assert path.read_bytes() == before
