"""Liveness/readiness in wall time."""

from __future__ import annotations

import pytest

from backtest_kit_runner.heartbeat import MIN_WINDOW_S, Heartbeat


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
