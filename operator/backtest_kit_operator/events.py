"""Kubernetes Events a status change implies: what ``kubectl describe`` shows of a lifecycle.

A status only says how things are now; an operator that is silent between two states leaves
nobody able to tell when a signal opened, when a drain began, or why a deletion is stuck. This
module compares the status before and after one reconciliation and names the Events to post
(phase changes, signal opened/closed, paused/resumed, drain started/finished, blocked deletion,
refused image, quarantined state, permission refused). It is pure, so every rule is unit-tested; the handlers
post what it returns with kopf, on the LiveTrader or Walker itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Event = tuple[str, str, str]
"""(type ``Normal``/``Warning``, CamelCase reason, message)."""

#: Condition reasons that are worth a Warning the moment they appear.
WARNING_REASONS = frozenset(
    {
        "StateQuarantined",
        "TickErrors",
        "ImageNotAllowed",
        "InvalidConfiguration",
        "OpenSignalOnVolume",
        "Forbidden",
        "RunnerMisbehaving",
    }
)
BLOCKED_REASON = "OpenSignalOnVolume"


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in status.get("conditions") or () if isinstance(c, Mapping)}


def _signal_id(status: Mapping[str, Any]) -> str | None:
    signal = status.get("openSignal")
    if isinstance(signal, Mapping) and signal.get("id"):
        return str(signal["id"])
    return None


def _signal_events(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Event]:
    old, new = _signal_id(before), _signal_id(after)
    if old == new or "openSignal" not in after:
        return []
    out: list[Event] = []
    if old is not None and after.get("phase") not in ("Done",):
        out.append(("Normal", "SignalClosed", f"signal {old} is no longer open"))
    if new is not None:
        summary = after.get("openSignalSummary") or new
        out.append(("Normal", "SignalOpened", f"signal opened: {summary}"))
    return out


def _pause_events(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Event]:
    """``Paused``/``Resumed`` when the runner's reported ``paused`` changes (a first ``false`` is none)."""
    old, new = before.get("paused"), after.get("paused")
    if new is True and old is not True:
        return [("Normal", "Paused", "the runner opens no new signal until resumed (spec.paused)")]
    if new is False and old is True:
        return [("Normal", "Resumed", "the runner may open new signals again")]
    return []


def _condition_events(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Event]:
    old, new = _conditions(before), _conditions(after)
    out: list[Event] = []
    for kind, cond in new.items():
        prior = old.get(kind) or {}
        reason = str(cond.get("reason") or "")
        changed = (prior.get("status"), prior.get("reason")) != (cond.get("status"), reason)
        if not changed:
            continue
        message = str(cond.get("message") or "")
        if kind == "Draining" and cond.get("status") == "True" and prior.get("status") != "True":
            out.append(("Normal", "DrainStarted", message or "draining the runner"))
        elif kind == "Draining" and cond.get("status") == "False" and prior.get("status") == "True":
            out.append(("Normal", "DrainFinished", message or "drain finished"))
        if reason == BLOCKED_REASON and kind == "Draining":
            out.append(("Warning", "DeletionBlocked", message))
        elif reason in WARNING_REASONS and kind == "Ready" and cond.get("status") != "True":
            out.append(("Warning", reason, message))
    return out


def status_events(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Event]:
    """The Events that moving from status ``before`` to ``after`` deserves, in order."""
    out: list[Event] = []
    old_phase, new_phase = before.get("phase"), after.get("phase")
    if new_phase and new_phase != old_phase:
        kind = "Warning" if new_phase == "Failed" else "Normal"
        message = str(after.get("message") or "")
        out.append(
            (
                kind,
                f"Phase{new_phase}",
                f"{old_phase or 'New'} -> {new_phase}" + (f": {message}" if message else ""),
            )
        )
    out.extend(_signal_events(before, after))
    out.extend(_pause_events(before, after))
    out.extend(_condition_events(before, after))
    seen: set[tuple[str, str]] = set()
    unique: list[Event] = []
    for event in out:
        if (event[1], event[2]) not in seen:
            seen.add((event[1], event[2]))
            unique.append(event)
    return unique
