"""The LiveTrader state machine: which action and which status follow from each observation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from operator_samples import SIGNAL, pod, runner_status, trader

from backtest_kit.candles import iso
from backtest_kit.signals import SignalRow
from backtest_kit_operator.phases import Action, Observation, plan_deletion, plan_trader, signal_summary

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def observe(**kw: object) -> Observation:
    base: dict[str, object] = {"trader": trader(), "desired_hash": "h1", "pod": None, "now": NOW}
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return dict(next(c for c in status["conditions"] if c["type"] == type_))


def test_without_a_pod_the_plan_creates_one_and_reports_pending() -> None:
    plan = plan_trader(observe())
    assert plan.actions == (Action.CREATE_POD,)
    assert plan.status["phase"] == "Pending"
    assert plan.status["observedGeneration"] == 3


def test_a_terminating_pod_blocks_a_new_one_until_it_is_gone() -> None:
    plan = plan_trader(observe(pod=pod(deleting=True)))
    assert plan.actions == ()
    assert plan.status["phase"] == "Pending"
    assert "previous runner pod" in plan.status["message"]


def test_a_failed_pod_is_deleted_so_that_a_new_one_resumes_from_the_volume() -> None:
    plan = plan_trader(observe(pod=pod("Failed", reason="Evicted")))
    assert plan.actions == (Action.DELETE_POD,)
    assert "Evicted" in plan.status["message"]


def test_a_running_runner_reports_its_phase_signal_counts_and_pnl() -> None:
    plan = plan_trader(observe(pod=pod(), runner_status=runner_status("running", SIGNAL)))
    status = plan.status
    assert plan.actions == ()
    assert status["phase"] == "Running"
    assert status["openSignal"] == SIGNAL
    assert status["openSignalSummary"] == "long@42000.5 1h"  # opened 00:00, the runner's clock at 01:00
    assert status["signalsOpened"] == 2
    assert status["realizedPnlPercentage"] == 1.25
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "RunnerRunning")["status"] == "True"
    assert condition(status, "SpecApplied")["status"] == "True"


def test_an_idle_runner_makes_an_idle_trader() -> None:
    plan = plan_trader(observe(pod=pod(), runner_status=runner_status("idle")))
    assert plan.status["phase"] == "Idle"
    assert plan.status["openSignal"] is None


def test_an_unreachable_runner_keeps_the_last_phase_and_marks_the_runner_unknown() -> None:
    body = trader()
    body["status"] = {"phase": "Running"}
    plan = plan_trader(observe(trader=body, pod=pod(), runner_error="connection refused"))
    assert plan.status["phase"] == "Running"
    assert condition(plan.status, "RunnerRunning")["status"] == "Unknown"
    assert condition(plan.status, "Ready")["status"] == "False"


def test_a_pending_pod_makes_a_pending_trader() -> None:
    plan = plan_trader(observe(pod=pod("Pending", ip=None)))
    assert plan.status["phase"] == "Pending"
    assert plan.actions == ()


def test_a_spec_change_waits_while_a_signal_is_open() -> None:
    plan = plan_trader(observe(desired_hash="h2", pod=pod(), runner_status=runner_status("running", SIGNAL)))
    assert plan.actions == ()
    applied = condition(plan.status, "SpecApplied")
    assert applied["status"] == "False"
    assert applied["reason"] == "WaitingForOpenSignal"


def test_a_spec_change_without_an_open_signal_drains_the_runner_first() -> None:
    plan = plan_trader(observe(desired_hash="h2", pod=pod(), runner_status=runner_status("running")))
    assert plan.actions == (Action.STOP_RUNNER,)
    assert condition(plan.status, "SpecApplied")["reason"] == "Restarting"


def test_a_draining_runner_is_not_asked_to_stop_twice() -> None:
    plan = plan_trader(observe(desired_hash="h2", pod=pod(), runner_status=runner_status("draining")))
    assert plan.actions == ()


def test_a_runner_drained_for_a_spec_change_is_replaced() -> None:
    plan = plan_trader(observe(desired_hash="h2", pod=pod("Succeeded")))
    assert plan.actions == (Action.DELETE_POD,)
    assert plan.status["phase"] == "Pending"


def test_a_runner_that_finished_with_the_current_spec_makes_the_trader_done() -> None:
    plan = plan_trader(observe(pod=pod("Succeeded")))
    assert plan.actions == ()
    assert plan.status["phase"] == "Done"


def test_a_runner_refusing_its_configuration_makes_the_trader_failed_with_its_message() -> None:
    crashed = pod(
        container={"restartCount": 3, "lastState": {"terminated": {"exitCode": 2, "message": "bad fast"}}}
    )
    plan = plan_trader(observe(pod=crashed))
    assert plan.status["phase"] == "Failed"
    assert plan.status["message"] == "bad fast"
    assert plan.status["restarts"] == 3
    assert plan.actions == ()


def test_a_corrected_spec_replaces_a_runner_that_refused_its_configuration() -> None:
    crashed = pod(container={"lastState": {"terminated": {"exitCode": 2}}})
    plan = plan_trader(observe(desired_hash="h2", pod=crashed))
    assert plan.actions == (Action.DELETE_POD,)


def test_condition_transition_times_survive_while_their_status_holds() -> None:
    first = plan_trader(observe(pod=pod(), runner_status=runner_status()))
    body = trader()
    body["status"] = first.status
    later = plan_trader(
        observe(trader=body, pod=pod(), runner_status=runner_status(), now=datetime(2024, 5, 2, tzinfo=UTC))
    )
    assert condition(later.status, "Ready")["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_deletion_asks_a_running_runner_to_drain_and_reports_the_open_signal() -> None:
    plan = plan_deletion(observe(deleting=True, pod=pod(), runner_status=runner_status("running", SIGNAL)))
    assert plan.actions == (Action.STOP_RUNNER,)
    assert not plan.finished
    assert plan.status["phase"] == "Draining"
    assert plan.status["openSignal"] == SIGNAL
    assert plan.status["drainStartedAt"] == "2024-05-01T12:00:00Z"
    assert "sig-1" in plan.waiting_for
    assert condition(plan.status, "Draining")["status"] == "True"


def test_deletion_keeps_the_drain_start_time_across_passes() -> None:
    body = trader()
    body["status"] = {"drainStartedAt": "2024-04-30T00:00:00Z"}
    plan = plan_deletion(
        observe(trader=body, deleting=True, pod=pod(), runner_status=runner_status("draining"))
    )
    assert plan.status["drainStartedAt"] == "2024-04-30T00:00:00Z"
    assert plan.actions == ()


def test_deletion_waits_for_an_unreachable_runner_showing_the_last_known_signal() -> None:
    body = trader()
    body["status"] = {"openSignal": SIGNAL}
    plan = plan_deletion(observe(trader=body, deleting=True, pod=pod(), runner_error="timeout"))
    assert not plan.finished
    assert plan.status["openSignal"] == SIGNAL


FLAT = {"open": None, "scheduled": None, "files": ["SYNUSDT_x_synthetic.json"]}
HOLDING = {"open": SIGNAL, "scheduled": None, "files": ["SYNUSDT_x_synthetic.json"]}


def test_deletion_of_an_exited_runner_first_reads_its_volume_instead_of_trusting_the_exit() -> None:
    plan = plan_deletion(observe(deleting=True, pod=pod("Succeeded"), reclaim_delete=True))
    assert not plan.finished
    assert plan.actions == (Action.CREATE_INSPECTION,)
    assert condition(plan.status, "Draining")["reason"] == "InspectingState"


def test_deletion_finishes_when_the_volume_of_an_exited_runner_is_flat_and_removes_a_deletable_volume() -> (
    None
):
    plan = plan_deletion(
        observe(
            deleting=True, pod=pod("Succeeded"), reclaim_delete=True, inspection=FLAT, inspection_pod=pod()
        )
    )
    assert plan.finished
    assert plan.actions == (Action.DELETE_POD, Action.DELETE_PVC, Action.DELETE_INSPECTION)


def test_deletion_keeps_a_retained_volume() -> None:
    plan = plan_deletion(observe(deleting=True, pod=pod("Succeeded"), reclaim_delete=False, inspection=FLAT))
    assert plan.finished
    assert plan.actions == (Action.DELETE_POD,)


def test_a_volume_still_holding_a_signal_after_until_blocks_the_deletion_with_the_signal() -> None:
    plan = plan_deletion(
        observe(deleting=True, pod=pod("Succeeded"), reclaim_delete=True, inspection=HOLDING)
    )
    assert not plan.finished
    assert Action.DELETE_PVC not in plan.actions and Action.DELETE_POD not in plan.actions
    assert plan.status["openSignal"] == SIGNAL
    assert condition(plan.status, "Draining")["reason"] == "OpenSignalOnVolume"


def test_deletion_restarts_a_missing_runner_when_its_volume_may_hold_an_open_signal() -> None:
    plan = plan_deletion(observe(deleting=True, pod=None, pvc_exists=True))
    assert plan.actions == (Action.CREATE_POD,)
    assert not plan.finished


def test_deletion_without_pod_or_volume_has_nothing_to_drain() -> None:
    plan = plan_deletion(observe(deleting=True, pod=None, pvc_exists=False))
    assert plan.finished
    assert plan.actions == ()


def test_deletion_replaces_a_failed_pod_to_finish_the_drain() -> None:
    plan = plan_deletion(observe(deleting=True, pod=pod("Failed")))
    assert plan.actions == (Action.DELETE_POD,)
    assert not plan.finished


def test_the_abandon_annotation_skips_the_wait_but_never_deletes_a_volume_holding_the_position() -> None:
    plan = plan_deletion(
        observe(
            deleting=True,
            abandon_drain=True,
            pod=pod(),
            runner_status=runner_status("running", SIGNAL),
            reclaim_delete=True,
        )
    )
    assert plan.finished
    assert plan.actions == (Action.DELETE_POD, Action.RELEASE_PVC)
    assert condition(plan.status, "Draining")["reason"] == "DrainAbandoned"
    assert [note[1] for note in plan.notes] == ["StateVolumeRetained"]


def test_an_abandoned_trader_known_to_be_flat_still_deletes_a_deletable_volume() -> None:
    plan = plan_deletion(
        observe(deleting=True, abandon_drain=True, pod=pod("Succeeded"), inspection=FLAT, reclaim_delete=True)
    )
    assert plan.actions == (Action.DELETE_POD, Action.DELETE_PVC)


def test_deletion_of_a_runner_that_cannot_start_waits_for_its_volume_holding_a_signal() -> None:
    crashed = pod(container={"lastState": {"terminated": {"exitCode": 2, "message": "bad module"}}})
    plan = plan_deletion(observe(deleting=True, pod=crashed, reclaim_delete=True))
    assert plan.actions == (Action.CREATE_INSPECTION,)
    plan = plan_deletion(observe(deleting=True, pod=crashed, reclaim_delete=True, inspection=HOLDING))
    assert not plan.finished and plan.actions == ()
    assert "cannot start (bad module)" in plan.status["message"]
    assert SIGNAL["id"] in plan.status["message"]


def test_deletion_of_a_runner_that_cannot_start_finishes_once_its_volume_is_known_flat() -> None:
    crashed = pod(container={"lastState": {"terminated": {"exitCode": 2}}})
    plan = plan_deletion(observe(deleting=True, pod=crashed, inspection=FLAT))
    assert plan.finished


def test_a_failed_inspection_is_replaced() -> None:
    plan = plan_deletion(
        observe(
            deleting=True, pod=pod("Succeeded"), inspection_pod=pod("Failed"), inspection_error="OOMKilled"
        )
    )
    assert plan.actions == (Action.DELETE_INSPECTION,)
    assert not plan.finished


def test_a_quarantined_runner_is_not_ready_and_says_why() -> None:
    status = {**runner_status("running", None), "frozen": "state moved aside (x.json.corrupt-1)"}
    plan = plan_trader(observe(pod=pod(), runner_status=status))
    ready = condition(plan.status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "StateQuarantined")
    assert "moved aside" in ready["message"]


def test_a_runner_whose_every_tick_fails_is_not_ready() -> None:
    before = {**trader(), "status": {"phase": "Running", "ticks": 10, "tickErrors": 0}}
    failing = {**runner_status("running", None), "ticks": 14, "tickErrors": 4}
    plan = plan_trader(observe(trader=before, pod=pod(), runner_status=failing))
    assert condition(plan.status, "Ready")["reason"] == "TickErrors"
    healthy = {**runner_status("running", None), "ticks": 14, "tickErrors": 1}
    plan = plan_trader(observe(trader=before, pod=pod(), runner_status=healthy))
    assert condition(plan.status, "Ready")["status"] == "True"


def test_a_refused_image_fails_the_trader_without_creating_a_pod() -> None:
    plan = plan_trader(observe(pod=None, image_refused="image evil:1 is not allowed"))
    assert plan.actions == ()
    assert plan.status["phase"] == "Failed"
    assert condition(plan.status, "Ready")["reason"] == "ImageNotAllowed"


def test_a_runner_that_answers_again_after_refusing_its_configuration_is_drained_not_inspected() -> None:
    recovered = pod(container={"lastState": {"terminated": {"exitCode": 2, "message": "bad module"}}})
    plan = plan_deletion(
        observe(
            deleting=True, pod=recovered, runner_status=runner_status("running", SIGNAL), inspection=HOLDING
        )
    )
    assert plan.actions == (Action.STOP_RUNNER,)
    assert not plan.finished
    plan = plan_trader(observe(pod=recovered, runner_status=runner_status("running", SIGNAL)))
    assert plan.status["phase"] == "Running"


OPENED_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def engine_signal(position: str = "long", price: float = 123.456, pending_at: int = OPENED_MS) -> Any:
    """An open signal exactly as the runner's ``GET /status`` serves it (the engine's own JSON)."""
    return SignalRow(
        id="0f3c9a1e-5b7d-4c2a-9e8f-1a2b3c4d5e6f",
        symbol="SYNUSDT",
        strategy_name="sma-cross",
        exchange_name="synthetic",
        position=position,
        price_open=price,
        price_take_profit=price * 1.02,
        price_stop_loss=price * 0.99,
        minute_estimated_time=1440,
        scheduled_at=OPENED_MS,
        pending_at=pending_at,
    ).to_json()


class TestSignalSummary:
    def test_it_shows_position_entry_price_with_two_decimals_and_the_age_on_the_traders_clock(self) -> None:
        clock = iso(OPENED_MS + 2 * 3_600_000 + 59 * 60_000)  # the runner's lastTickAt, e.g. ...02:59:00.000Z
        assert signal_summary(engine_signal(), clock) == "long@123.46 2h"

    def test_the_age_reads_minutes_hours_then_days(self) -> None:
        for elapsed_ms, age in (
            (0, "0m"),
            (45 * 60_000, "45m"),
            (60 * 60_000, "1h"),
            (3 * 86_400_000 + 5, "3d"),
        ):
            assert signal_summary(engine_signal("short"), iso(OPENED_MS + elapsed_ms)).endswith(f" {age}"), (
                age
            )

    def test_a_replay_measures_the_age_on_its_simulated_clock_not_on_the_wall_clock(self) -> None:
        wall = datetime(2026, 6, 1, tzinfo=UTC)
        replay_clock = iso(OPENED_MS + 30 * 60_000)
        assert signal_summary(engine_signal(), replay_clock, wall) == "long@123.46 30m"

    def test_without_a_clock_from_the_trader_the_age_is_measured_on_now(self) -> None:
        now = datetime(2024, 1, 2, 6, 0, tzinfo=UTC)
        assert signal_summary(engine_signal(price=42000.5), None, now) == "long@42000.5 1d"

    def test_prices_from_one_up_have_at_most_two_decimals_and_small_prices_keep_four_digits(self) -> None:
        clock = iso(OPENED_MS)
        assert signal_summary(engine_signal(price=42000.0), clock) == "long@42000 0m"
        assert signal_summary(engine_signal(price=1.005), clock).startswith("long@1 ")
        assert signal_summary(engine_signal(price=0.00012345), clock).startswith("long@0.0001234")
        assert signal_summary(engine_signal(price=0.5), clock).startswith("long@0.5 ")

    def test_a_signal_not_yet_active_has_no_age_and_no_signal_shows_nothing(self) -> None:
        assert signal_summary(engine_signal(pending_at=0), iso(OPENED_MS)) == "long@123.46"
        assert signal_summary(None, iso(OPENED_MS)) == ""

    def test_a_clock_before_the_opening_never_shows_a_negative_age(self) -> None:
        assert signal_summary(engine_signal(), iso(OPENED_MS - 120_000)) == "long@123.46 0m"

    def test_the_column_stays_narrow(self) -> None:
        longest = signal_summary(engine_signal("short", price=123456.789), iso(OPENED_MS + 400 * 86_400_000))
        assert longest == "short@123456.79 400d"
        assert len(longest) <= 24

    def test_a_draining_trader_ages_its_signal_on_the_last_clock_it_published(self) -> None:
        body = trader()
        body["status"] = {"phase": "Draining", "lastTickAt": iso(OPENED_MS + 5 * 3_600_000)}
        body["metadata"]["deletionTimestamp"] = "2024-05-01T11:00:00Z"
        plan = plan_deletion(
            observe(
                trader=body, pod=pod("Succeeded"), inspection={"open": engine_signal(), "scheduled": None}
            )
        )
        assert plan.status["openSignalSummary"] == "long@123.46 5h"


def test_a_runner_that_refused_its_configuration_but_runs_again_is_not_released_on_a_flat_volume() -> None:
    restarting = pod(
        container={"state": {"running": {}}, "lastState": {"terminated": {"exitCode": 2, "message": "bad"}}}
    )
    plan = plan_deletion(observe(deleting=True, pod=restarting, inspection=FLAT))
    assert not plan.finished
    assert condition(plan.status, "Draining")["reason"] == "WaitingForRunner"
