"""The metrics recorder: contract names and labels, fed with real engine events."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from backtest_kit.config import EngineConfig
from backtest_kit.signals import ActiveResult, OpenedResult
from backtest_kit_runner.metrics import RunnerMetrics

from . import events as ev

LABELS = {"symbol": ev.SYMBOL, "strategy": ev.STRATEGY, "exchange": ev.EXCHANGE}

#: docs/CONTRACTS.md, "Metrics": family name (as the parser reports it) -> type, extra labels.
CONTRACT = {
    "backtest_kit_live_tick_duration_seconds": ("histogram", set()),
    "backtest_kit_live_ticks": ("counter", set()),
    "backtest_kit_live_tick_errors": ("counter", set()),
    "backtest_kit_signals_opened": ("counter", set()),
    "backtest_kit_signals_closed": ("counter", {"reason"}),
    "backtest_kit_signals_cancelled": ("counter", {"reason"}),
    "backtest_kit_open_position": ("gauge", {"side"}),
    "backtest_kit_realized_pnl_percent": ("gauge", set()),
    "backtest_kit_unrealized_pnl_percent": ("gauge", set()),
    "backtest_kit_last_tick_timestamp_seconds": ("gauge", set()),
    "backtest_kit_last_tick_wall_timestamp_seconds": ("gauge", set()),
    "backtest_kit_exchange_request_duration_seconds": ("histogram", {"interval"}),
    "backtest_kit_exchange_request_errors": ("counter", set()),
    "backtest_kit_runner_draining": ("gauge", set()),
    "backtest_kit_state_frozen": ("gauge", set()),
    "backtest_kit_runner_info": ("gauge", {"version"}),  # an Info is a gauge of 1 in the text format
}


def recorder() -> RunnerMetrics:
    return RunnerMetrics(symbol=ev.SYMBOL, strategy=ev.STRATEGY, exchange=ev.EXCHANGE)


def samples(m: RunnerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m: RunnerMetrics, name: str, **extra: str) -> float:
    return samples(m)[(name, frozenset({**LABELS, **extra}.items()))]


class TestTheExpositionMatchesTheContract:
    def test_every_contract_metric_is_exported_with_its_type_and_labels(self) -> None:
        m = recorder()
        m.on_exchange_request("1m", 0.01, None)
        m.record_tick_result(ev.cancelled())
        families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
        for name, (kind, extra) in CONTRACT.items():
            assert name in families, name
            family = families[name]
            assert family.type == kind, name
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                label_names = set(s.labels) - {"le"}
                assert label_names >= set(LABELS) | extra, (name, s.labels)
                assert {k: s.labels[k] for k in LABELS} == LABELS

    def test_no_other_backtest_kit_family_is_exported(self) -> None:
        names = {f.name for f in text_string_to_metric_families(recorder().render().decode())}
        ours = {n.removesuffix("_created") for n in names if n.startswith("backtest_kit_")}
        assert ours <= set(CONTRACT)

    def test_the_registry_is_isolated_from_the_global_one(self) -> None:
        a, b = recorder(), recorder()  # a second recorder would collide in a shared registry
        assert a.registry is not b.registry and a.registry is not REGISTRY
        assert REGISTRY.get_sample_value("backtest_kit_live_ticks_total", LABELS) is None

    def test_process_and_version_information_is_exported(self) -> None:
        m = recorder()
        assert samples(m)[("process_resident_memory_bytes", frozenset())] > 0
        info = [k for k in samples(m) if k[0] == "backtest_kit_runner_info"]
        assert len(info) == 1 and dict(info[0][1])["version"]


class TestTickResults:
    def test_tick_results_alone_do_not_count_ticks(self) -> None:
        m = recorder()
        m.record_tick_result(ev.idle())
        assert value(m, "backtest_kit_live_ticks_total") == 0

    def test_opening_counts_a_signal_and_flags_the_side(self) -> None:
        m = recorder()
        m.record_tick_result(ev.opened("short"))
        assert value(m, "backtest_kit_signals_opened_total") == 1
        assert value(m, "backtest_kit_open_position", side="short") == 1
        assert value(m, "backtest_kit_open_position", side="long") == 0

    def test_a_position_restored_from_state_is_flagged_by_its_first_active_tick(self) -> None:
        m = recorder()
        m.record_tick_result(ev.active("long"))
        assert value(m, "backtest_kit_open_position", side="long") == 1
        assert value(m, "backtest_kit_signals_opened_total") == 0

    def test_closing_counts_by_reason_and_clears_the_position(self) -> None:
        m = recorder()
        m.record_tick_result(ev.opened("long"))
        m.record_tick_result(ev.closed("stop_loss", -1.2))
        assert value(m, "backtest_kit_signals_closed_total", reason="stop_loss") == 1
        assert value(m, "backtest_kit_signals_closed_total", reason="take_profit") == 0
        assert value(m, "backtest_kit_open_position", side="long") == 0

    def test_cancellations_count_by_reason(self) -> None:
        m = recorder()
        m.record_tick_result(ev.scheduled())
        m.record_tick_result(ev.cancelled("price_reject"))
        assert value(m, "backtest_kit_signals_cancelled_total", reason="price_reject") == 1

    def test_a_frozen_state_is_1_until_it_is_cleared(self) -> None:
        m = recorder()
        assert value(m, "backtest_kit_state_frozen") == 0
        m.set_frozen(True)
        assert value(m, "backtest_kit_state_frozen") == 1
        m.set_frozen(False)
        assert value(m, "backtest_kit_state_frozen") == 0

    def test_realized_pnl_is_whatever_the_tally_says(self) -> None:
        m = recorder()
        m.set_realized_pnl_percent(-0.75)
        assert value(m, "backtest_kit_realized_pnl_percent") == -0.75


def at_price(kind: type[ActiveResult] | type[OpenedResult], position: str, price: float) -> ActiveResult:
    return kind(**ev.base(ev.T0 + 60_000, price=price), signal=ev.row(position))  # type: ignore[return-value]


class TestUnrealizedPnl:
    """Entry 100 (the events' signal), default engine costs: slippage 0.1 %, fee 0.1 % per side."""

    def test_an_open_long_shows_what_it_would_close_with_at_the_tick_price_after_costs(self) -> None:
        m = recorder()
        m.record_tick_result(at_price(ActiveResult, "long", 101.0))
        entry, exit_ = 100.0 * 1.001, 101.0 * 0.999
        expected = (exit_ - entry) / entry * 100 - 0.1 * (1 + exit_ / entry)
        assert value(m, "backtest_kit_unrealized_pnl_percent") == pytest.approx(expected)
        assert 0.59 < expected < 0.60

    def test_an_open_short_gains_when_the_price_falls(self) -> None:
        m = recorder()
        m.record_tick_result(at_price(OpenedResult, "short", 99.0))
        entry, exit_ = 100.0 * 0.999, 99.0 * 1.001
        expected = (entry - exit_) / entry * 100 - 0.1 * (1 + exit_ / entry)
        assert value(m, "backtest_kit_unrealized_pnl_percent") == pytest.approx(expected)

    def test_the_engine_configuration_supplies_fee_and_slippage(self) -> None:
        free = EngineConfig(percent_fee=0, percent_slippage=0)
        m = RunnerMetrics(symbol=ev.SYMBOL, strategy=ev.STRATEGY, exchange=ev.EXCHANGE, config=lambda: free)
        m.record_tick_result(at_price(ActiveResult, "long", 98.0))
        assert value(m, "backtest_kit_unrealized_pnl_percent") == pytest.approx(-2.0)

    def test_it_is_zero_while_flat_and_again_once_the_position_closed(self) -> None:
        m = recorder()
        assert value(m, "backtest_kit_unrealized_pnl_percent") == 0
        m.record_tick_result(at_price(ActiveResult, "long", 103.0))
        assert value(m, "backtest_kit_unrealized_pnl_percent") > 2
        m.record_tick_result(ev.closed("take_profit", 2.6))
        assert value(m, "backtest_kit_unrealized_pnl_percent") == 0
        m.record_tick_result(at_price(ActiveResult, "long", 103.0))
        m.record_tick_result(ev.idle())
        assert value(m, "backtest_kit_unrealized_pnl_percent") == 0

    def test_a_scheduled_signal_is_not_a_position(self) -> None:
        m = recorder()
        m.record_tick_result(ev.scheduled())
        assert value(m, "backtest_kit_unrealized_pnl_percent") == 0


class TestTimingsAndErrors:
    def test_each_live_tick_timing_counts_one_tick_and_sets_the_clock_time(self) -> None:
        m = recorder()
        m.record_performance(ev.live_tick(0.001))
        m.record_performance(ev.live_tick(0.001, when=ev.T0 + 60_000))
        assert value(m, "backtest_kit_live_ticks_total") == 2
        assert value(m, "backtest_kit_last_tick_timestamp_seconds") == (ev.T0 + 60_000) / 1000

    def test_a_replayed_tick_also_records_the_wall_clock_time_it_completed_at(self) -> None:
        wall = iter([1_780_000_000.5, 1_780_000_001.25])
        m = RunnerMetrics(
            symbol=ev.SYMBOL, strategy=ev.STRATEGY, exchange=ev.EXCHANGE, wall_clock=lambda: next(wall)
        )
        m.record_performance(ev.live_tick(0.001))  # the simulated clock says 2024-01-01
        m.record_performance(ev.live_tick(0.001, when=ev.T0 + 60_000))
        assert value(m, "backtest_kit_last_tick_timestamp_seconds") == (ev.T0 + 60_000) / 1000
        assert value(m, "backtest_kit_last_tick_wall_timestamp_seconds") == 1_780_000_001.25
        m.record_performance(ev.live_tick(5.0, metric="backtest_total"))
        assert value(m, "backtest_kit_last_tick_wall_timestamp_seconds") == 1_780_000_001.25

    def test_live_tick_performance_events_fill_the_histogram(self) -> None:
        m = recorder()
        for d in (0.0004, 0.002, 0.003):
            m.record_performance(ev.live_tick(d))
        m.record_performance(ev.live_tick(5.0, metric="backtest_total"))
        assert value(m, "backtest_kit_live_tick_duration_seconds_count") == 3
        assert value(m, "backtest_kit_live_tick_duration_seconds_bucket", le="0.0005") == 1
        assert value(m, "backtest_kit_live_tick_duration_seconds_bucket", le="0.0025") == 2

    def test_tick_errors_are_counted(self) -> None:
        m = recorder()
        m.record_tick_errors(2)
        m.record_tick_errors(0)
        assert value(m, "backtest_kit_live_tick_errors_total") == 2

    def test_exchange_requests_are_timed_by_interval_and_failures_counted(self) -> None:
        m = recorder()
        m.on_exchange_request("1m", 0.02, None)
        m.on_exchange_request("15m", 0.3, TimeoutError("slow"))
        assert value(m, "backtest_kit_exchange_request_duration_seconds_count", interval="1m") == 1
        assert value(m, "backtest_kit_exchange_request_duration_seconds_count", interval="15m") == 1
        assert value(m, "backtest_kit_exchange_request_errors_total") == 1

    def test_draining_is_a_zero_one_gauge(self) -> None:
        m = recorder()
        assert value(m, "backtest_kit_runner_draining") == 0
        m.set_draining(True)
        assert value(m, "backtest_kit_runner_draining") == 1
