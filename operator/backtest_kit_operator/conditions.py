"""Status conditions following the Kubernetes API conventions.

Each condition has ``type``, ``status`` ("True"/"False"/"Unknown"), a CamelCase ``reason``, a
human ``message``, ``observedGeneration`` and ``lastTransitionTime``. The transition time only
moves when ``status`` changes, so it tells how long a trader has been (not) ready; rebuilding the
list on every reconciliation must therefore start from the previous list, which is what
:func:`merge_conditions` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
RUNNER_RUNNING = "RunnerRunning"
SPEC_APPLIED = "SpecApplied"
DRAINING = "Draining"
JOB_COMPLETE = "Complete"


@dataclass(frozen=True)
class Condition:
    """One condition as the reconciler wants it now (without a transition time)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def utc_timestamp(now: datetime | None = None) -> str:
    """RFC 3339 UTC with second precision, as Kubernetes writes ``metav1.Time``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    wanted: Iterable[Condition],
    *,
    generation: int | None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The new condition list: ``wanted`` in order, keeping each transition time whose status held.

    Conditions present before but not wanted now are kept unchanged after the wanted ones, so a
    condition set by one code path (e.g. Draining) is not silently lost by another.
    """
    old = {str(c.get("type")): dict(c) for c in previous or () if c.get("type")}
    stamp = utc_timestamp(now)
    merged: list[dict[str, Any]] = []
    seen: set[str] = set()
    for cond in wanted:
        seen.add(cond.type)
        before = old.get(cond.type)
        transition = (
            before.get("lastTransitionTime") if before and before.get("status") == cond.status else None
        )
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": transition or stamp,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)
    merged.extend(c for t, c in old.items() if t not in seen)
    return merged
