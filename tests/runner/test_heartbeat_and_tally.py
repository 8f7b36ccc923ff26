"""Liveness/readiness in wall time, and the durable tally of signals and realized PnL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backtest_kit_runner.heartbeat import MIN_WINDOW_S, Heartbeat
from backtest_kit_runner.tally import SignalTally

from . import events as ev


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestLiveness:
    def test_alive_while_ticks_come_within_two_periods(self) -> None:
        clock = ManualClock()
        hb = Heartbeat(60.0, clock=clock)
        hb.beat()
        clock.now += 119.0
        assert hb.liveness().ok
        clock.now += 2.0
        probe = hb.liveness()
        assert not probe.ok and "no tick for 121.000s" in probe.detail

    def test_before_the_first_tick_the_window_counts_from_start(self) -> None:
        clock = ManualClock()
        hb = Heartbeat(60.0, clock=clock)
        clock.now += 100.0
        assert hb.liveness().ok
        clock.now += 30.0
        assert not hb.liveness().ok

    def test_a_fast_replay_still_gets_the_minimum_window(self) -> None:
        clock = ManualClock()
        hb = Heartbeat(0.01, clock=clock)
        hb.beat()
        clock.now += MIN_WINDOW_S - 0.5
        assert hb.liveness().ok and hb.window_s == MIN_WINDOW_S

    def test_a_period_must_be_positive(self) -> None:
        with pytest.raises(ValueError):
            Heartbeat(0)


class TestReadiness:
    def test_ready_only_after_the_first_tick(self) -> None:
        hb = Heartbeat(60.0)
        assert not hb.readiness().ok
        hb.beat()
        assert hb.readiness().ok


class TestTally:
    def test_counts_and_pnl_follow_the_results(self) -> None:
        tally = SignalTally()
        for result in (ev.idle(), ev.opened(), ev.active(), ev.closed("take_profit", 0.8), ev.cancelled()):
            tally.record(result)
        tally.record(ev.closed("stop_loss", -1.2))
        assert tally.to_json() == {
            "signalsOpened": 1,
            "signalsClosed": 2,
            "signalsCancelled": 1,
            "realizedPnlPercentage": pytest.approx(-0.4),
            "realizedPnlCost": pytest.approx(-0.4),
        }

    def test_idle_and_active_ticks_do_not_touch_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "tally.json"
        tally = SignalTally(path)
        assert not tally.record(ev.idle()) and not tally.record(ev.active())
        assert not path.exists()

    def test_totals_survive_a_restart(self, tmp_path: Path) -> None:
        path = tmp_path / "runner" / "tally.json"
        first = SignalTally(path)
        first.record(ev.opened())
        first.record(ev.closed("take_profit", 0.8))
        second = SignalTally(path)
        assert second.to_json() == first.to_json()
        assert [p.name for p in path.parent.iterdir()] == ["tally.json"]  # no temp files left

    def test_an_unreadable_file_is_moved_aside_not_deleted(self, tmp_path: Path) -> None:
        path = tmp_path / "tally.json"
        path.write_text("{not json", encoding="utf-8")
        tally = SignalTally(path)
        assert tally.to_json()["signalsOpened"] == 0
        aside = [p for p in tmp_path.iterdir() if p.name.startswith("tally.json.corrupt-")]
        assert len(aside) == 1 and aside[0].read_text(encoding="utf-8") == "{not json"
        tally.record(ev.opened())
        assert json.loads(path.read_text(encoding="utf-8"))["signals_opened"] == 1
