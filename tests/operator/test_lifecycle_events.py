"""The Events a LiveTrader's status changes deserve: phases, signals, drains, blocked deletions."""

from __future__ import annotations

from typing import Any

from backtest_kit_operator.events import status_events


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


SIGNAL = {"id": "sig-1", "position": "long"}


def reasons(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [reason for _, reason, _ in status_events(before, after)]


def test_a_phase_change_is_one_event_and_failed_is_a_warning() -> None:
    assert reasons({"phase": "Pending"}, {"phase": "Running"}) == ["PhaseRunning"]
    ((kind, reason, message),) = status_events({"phase": "Pending"}, {"phase": "Failed", "message": "bad"})
    assert (kind, reason) == ("Warning", "PhaseFailed") and message.endswith(": bad")


def test_nothing_changed_posts_nothing() -> None:
    status = {"phase": "Running", "openSignal": SIGNAL, "conditions": [cond("Ready", "True", "RunnerReady")]}
    assert status_events(status, dict(status)) == []


def test_a_signal_opening_and_closing_are_events() -> None:
    assert reasons({"phase": "Running", "openSignal": None}, {"phase": "Running", "openSignal": SIGNAL}) == [
        "SignalOpened"
    ]
    assert reasons({"phase": "Running", "openSignal": SIGNAL}, {"phase": "Running", "openSignal": None}) == [
        "SignalClosed"
    ]


def test_drain_start_finish_and_a_blocked_deletion_are_events() -> None:
    running = {"phase": "Running", "conditions": []}
    draining = {"phase": "Draining", "conditions": [cond("Draining", "True", "WaitingForSignal", "w")]}
    assert reasons(running, draining) == ["PhaseDraining", "DrainStarted"]
    blocked = {
        "phase": "Draining",
        "conditions": [cond("Draining", "True", "OpenSignalOnVolume", "holds sig-1")],
    }
    assert status_events(draining, blocked) == [("Warning", "DeletionBlocked", "holds sig-1")]
    done = {"phase": "Done", "conditions": [cond("Draining", "False", "Drained", "flat")]}
    assert reasons(blocked, done) == ["PhaseDone", "DrainFinished"]


def test_a_quarantined_state_and_a_refused_image_are_warnings() -> None:
    ok = {"phase": "Running", "conditions": [cond("Ready", "True", "RunnerReady")]}
    frozen = {"phase": "Running", "conditions": [cond("Ready", "False", "StateQuarantined", "moved aside")]}
    assert status_events(ok, frozen) == [("Warning", "StateQuarantined", "moved aside")]
    refused = {"phase": "Failed", "conditions": [cond("Ready", "False", "ImageNotAllowed", "evil:1")]}
    assert reasons({}, refused) == ["PhaseFailed", "ImageNotAllowed"]
