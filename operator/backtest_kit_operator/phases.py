"""What a LiveTrader should do next and how its status reads, decided from observations only.

The reconciler observes three things — the runner pod (or its absence), the runner's own
``GET /status`` answer (or why there is none), and the LiveTrader itself — and this module turns
them into a :class:`Plan`: the actions to take (create the pod, delete it, ask the runner to
drain, ...) and the status to publish. Nothing here does I/O, so every transition of the state
machine is unit-tested directly, and the handlers stay a thin shell around it.

The rules that keep "at most one runner":

* a new pod is only planned when no pod object of that name exists at all (a terminating pod
  still blocks), and the pod name is deterministic, so the API server rejects a duplicate;
* a pod is deleted only when it has ``Failed`` (eviction, node loss reported by the node
  lifecycle controller) or has ``Succeeded`` after a drain.

Spec changes (strategy, parameters, image, resources) reach a running trader only while no
signal is open: the runner is asked to drain (``POST /stop`` — it then opens nothing new and
exits 0 once flat), and the pod is replaced after it has ``Succeeded``.

Deletion is decided from the state, never from an exit code. A runner that exited (drained,
reached ``replay.until``, or cannot start at all) no longer answers, so before the finalizer goes
the state volume itself is read by a short inspection pod (``state show``, volume mounted
read-only); only a volume holding no open and no scheduled signal releases the trader. One that
still holds a position keeps the trader ``Draining`` with the signal and the reason, until a runner
drains it or someone sets the abandon annotation — and a volume holding an abandoned position is
never deleted, whatever ``reclaimPolicy`` says.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .conditions import (
    DRAINING,
    READY,
    RUNNER_RUNNING,
    SPEC_APPLIED,
    Condition,
    merge_conditions,
    utc_timestamp,
)
from .manifests import CLOSE_POSITION_ANNOTATION, SPEC_HASH_ANNOTATION

CONFIG_ERROR_EXIT = 2

RUNNER_PHASES = {"idle": "Idle", "running": "Running", "draining": "Draining", "done": "Done"}


class Action(enum.Enum):
    CREATE_POD = "create-pod"
    """Ensure the PVC, then create the runner pod (a 409 means someone else was faster: fine)."""
    DELETE_POD = "delete-pod"
    STOP_RUNNER = "stop-runner"
    """``POST /stop``: drain — open nothing new, exit 0 once no signal is open."""
    DELETE_PVC = "delete-pvc"
    RELEASE_PVC = "release-pvc"
    """Drop the PVC's owner reference: it holds an abandoned position and must outlive the trader."""
    CREATE_INSPECTION = "create-inspection"
    """Start the read-only ``state show`` pod on the state volume."""
    DELETE_INSPECTION = "delete-inspection"
    PAUSE_RUNNER = "pause-runner"
    """``POST /pause``: ``spec.paused`` is true and the runner is not paused."""
    RESUME_RUNNER = "resume-runner"
    """``POST /resume``: ``spec.paused`` is false and the runner is paused."""
    CLOSE_POSITION = "close-position"
    """``POST /close``: the close-position annotation has a value not acknowledged yet."""


@dataclass(frozen=True)
class Observation:
    """Everything the decision depends on, gathered by the reconciler."""

    trader: Mapping[str, Any]
    desired_hash: str
    pod: Mapping[str, Any] | None
    runner_status: Mapping[str, Any] | None = None
    runner_error: str | None = None
    deleting: bool = False
    abandon_drain: bool = False
    reclaim_delete: bool = False
    pvc_exists: bool = True
    now: datetime | None = None
    inspection: Mapping[str, Any] | None = None
    """What the state volume holds (``state show``), read after the current runner pod stopped."""
    inspection_pod: Mapping[str, Any] | None = None
    inspection_error: str | None = None
    """Why the inspection pod gave no usable answer (it is then replaced)."""
    image_refused: str | None = None
    """The spec names an image outside the operator's allowlist (the message says which)."""
    paused: bool = False
    """``spec.paused``: the runner should open no new signal."""
    close_request: str | None = None
    """The value of the close-position annotation (None when it is not set)."""


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    status: dict[str, Any]
    finished: bool = False
    """Deletion only: everything is cleaned up, the finalizer may go."""
    waiting_for: str = ""
    """Deletion only: why the finalizer stays (becomes the TemporaryError message)."""
    notes: tuple[tuple[str, str, str], ...] = ()
    """One-off Events (type, reason, message) besides those the status change implies."""


def pod_phase(pod: Mapping[str, Any] | None) -> str | None:
    if pod is None:
        return None
    return str((pod.get("status") or {}).get("phase") or "Pending")


def pod_terminating(pod: Mapping[str, Any] | None) -> bool:
    return bool(pod is not None and (pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_hash(pod: Mapping[str, Any] | None) -> str | None:
    if pod is None:
        return None
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(SPEC_HASH_ANNOTATION)
    return str(value) if value is not None else None


def _container_status(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == "runner":
            return dict(status)
    return dict(statuses[0]) if statuses else {}


def _container_running(pod: Mapping[str, Any] | None) -> bool:
    return "running" in (_container_status(pod).get("state") or {})


def restart_count(pod: Mapping[str, Any] | None) -> int:
    return int(_container_status(pod).get("restartCount") or 0)


def config_error(pod: Mapping[str, Any] | None) -> str | None:
    """The runner's message when it refused its configuration (exit code 2), else None."""
    status = _container_status(pod)
    for key in ("state", "lastState"):
        terminated = (status.get(key) or {}).get("terminated") or {}
        if terminated.get("exitCode") == CONFIG_ERROR_EXIT:
            message = str(terminated.get("message") or terminated.get("reason") or "").strip()
            return message or "the runner refused its configuration (exit code 2)"
    return None


def _short_price(price: float) -> str:
    """At most 2 decimals from 1 up (``123.45``, ``42000.5``), 4 significant digits below 1."""
    if price >= 1 or price <= 0:
        decimals = 2
    else:
        decimals = 3 - math.floor(math.log10(price))
    text = f"{price:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _short_age(seconds: float) -> str:
    """``45m``, ``2h``, ``3d`` (rounded down; never negative)."""
    minutes = max(0, int(seconds // 60))
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 24 * 60:
        return f"{minutes // 60}h"
    return f"{minutes // (24 * 60)}d"


def _epoch_seconds(clock: str | None, now: datetime | None) -> float:
    """The trader's clock (``lastTickAt``, simulated in a replay) in epoch seconds, else ``now``."""
    if clock:
        try:
            moment = datetime.fromisoformat(clock.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return (now or datetime.now(UTC)).timestamp()


def signal_summary(
    signal: Mapping[str, Any] | None, clock: str | None = None, now: datetime | None = None
) -> str:
    """``long@123.45 2h`` — the printer column: position, entry price and how long it has been open.

    The age is measured on the trader's own clock, ``clock`` (its ``lastTickAt``: simulated when
    replaying), or on ``now`` (default: the wall clock) when the trader has not reported one.
    """
    if not signal:
        return ""
    out = str(signal.get("position") or "?")
    price = signal.get("priceOpen")
    if isinstance(price, int | float) and not isinstance(price, bool) and math.isfinite(price):
        out += f"@{_short_price(float(price))}"
    opened_ms = signal.get("pendingAt")
    if isinstance(opened_ms, int | float) and not isinstance(opened_ms, bool) and opened_ms > 0:
        out += " " + _short_age(_epoch_seconds(clock, now) - opened_ms / 1000)
    return out


def _runner_fields(runner: Mapping[str, Any] | None, now: datetime | None = None) -> dict[str, Any]:
    """The status fields copied from the runner's ``/status`` answer."""
    if runner is None:
        return {}
    out: dict[str, Any] = {
        "runnerPhase": runner.get("phase"),
        "openSignal": runner.get("openSignal"),
        "openSignalSummary": signal_summary(runner.get("openSignal"), runner.get("lastTickAt"), now),
        "scheduledSignal": runner.get("scheduledSignal"),
        "lastTickAt": runner.get("lastTickAt"),
    }
    for key in ("ticks", "tickErrors", "signalsOpened", "signalsClosed", "signalsCancelled"):
        if isinstance(runner.get(key), int):
            out[key] = runner[key]
    for key in ("realizedPnlPercentage", "realizedPnlCost"):
        value = runner.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
    if isinstance(runner.get("paused"), bool):
        out["paused"] = runner["paused"]
    return out


def _generation(trader: Mapping[str, Any]) -> int | None:
    value = (trader.get("metadata") or {}).get("generation")
    return int(value) if value is not None else None


def _status(
    obs: Observation, phase: str, conditions: list[Condition], message: str, **fields: Any
) -> dict[str, Any]:
    previous = obs.trader.get("status") or {}
    generation = _generation(obs.trader)
    status: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        "podName": ((obs.pod or {}).get("metadata") or {}).get("name"),
        "restarts": restart_count(obs.pod),
        "appliedSpecHash": pod_hash(obs.pod),
    }
    status.update(_runner_fields(obs.runner_status, obs.now))
    status.update(fields)
    status["conditions"] = merge_conditions(
        previous.get("conditions"), conditions, generation=generation, now=obs.now
    )
    return status


def _open_signal(obs: Observation) -> Mapping[str, Any] | None:
    """The open signal as last known: from the runner now, else from the published status."""
    if obs.runner_status is not None:
        signal = obs.runner_status.get("openSignal")
        return signal if isinstance(signal, Mapping) else None
    previous = (obs.trader.get("status") or {}).get("openSignal")
    return previous if isinstance(previous, Mapping) else None


def _refused(obs: Observation) -> Plan:
    msg = str(obs.image_refused)
    conds = [
        Condition(SPEC_APPLIED, "False", "ImageNotAllowed", msg),
        Condition(READY, "False", "ImageNotAllowed", msg),
    ]
    return Plan((), _status(obs, "Failed", conds, msg))


def _ready(obs: Observation, trader_phase: str) -> Condition:
    """Ready for a runner that runs the current spec: ticking, not quarantined, ticks succeed."""
    runner = obs.runner_status or {}
    frozen = runner.get("frozen")
    if frozen:
        return Condition(READY, "False", "StateQuarantined", f"no new signal may open: {frozen}")
    previous = obs.trader.get("status") or {}
    counts = [
        runner.get("ticks"),
        runner.get("tickErrors"),
        previous.get("ticks"),
        previous.get("tickErrors"),
    ]
    numbers = [v for v in counts if isinstance(v, int)]
    if len(numbers) == len(counts):
        ticks, errors, before_ticks, before_errors = numbers
        no_progress = ticks - errors <= before_ticks - before_errors
        failing = errors > before_errors or previous_ready_reason(previous) == "TickErrors"
        if failing and no_progress and errors > 0:
            return Condition(READY, "False", "TickErrors", f"every tick fails ({errors} tick errors)")
    if trader_phase in ("Idle", "Running"):
        return Condition(READY, "True", "RunnerReady", "")
    return Condition(READY, "False", trader_phase, "")


def previous_ready_reason(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == READY:
            return str(cond.get("reason") or "")
    return None


def plan_trader(obs: Observation) -> Plan:
    """The next step of a LiveTrader that is not being deleted (manual controls included)."""
    return with_controls(obs, _plan_lifecycle(obs), pause=True)


def _plan_lifecycle(obs: Observation) -> Plan:
    if obs.image_refused:
        return _refused(obs)
    pod = obs.pod
    phase = pod_phase(pod)
    previous_phase = (obs.trader.get("status") or {}).get("phase")
    applied = pod is not None and pod_hash(pod) == obs.desired_hash
    spec_applied = Condition(SPEC_APPLIED, "True", "PodUpToDate", "the runner pod runs the current spec")

    if pod is None:
        conds = [
            Condition(RUNNER_RUNNING, "False", "PodCreating", "creating the runner pod"),
            Condition(READY, "False", "PodCreating", "creating the runner pod"),
        ]
        return Plan((Action.CREATE_POD,), _status(obs, "Pending", conds, "creating the runner pod"))

    if pod_terminating(pod):
        msg = "waiting for the previous runner pod to be gone before starting a new one"
        conds = [
            Condition(RUNNER_RUNNING, "False", "PodTerminating", msg),
            Condition(READY, "False", "PodTerminating", msg),
        ]
        return Plan((), _status(obs, "Pending", conds, msg))

    if phase == "Failed":
        reason = str((pod.get("status") or {}).get("reason") or "PodFailed")
        msg = f"runner pod failed ({reason}); replacing it, the new runner resumes from the state volume"
        conds = [
            Condition(RUNNER_RUNNING, "False", reason, msg),
            Condition(READY, "False", reason, msg),
        ]
        return Plan((Action.DELETE_POD,), _status(obs, "Pending", conds, msg))

    if phase == "Succeeded":
        if not applied:
            msg = "runner drained for a spec change; starting a runner with the new spec"
            conds = [
                Condition(RUNNER_RUNNING, "False", "Restarting", msg),
                Condition(SPEC_APPLIED, "False", "Restarting", msg),
                Condition(READY, "False", "Restarting", msg),
            ]
            return Plan((Action.DELETE_POD,), _status(obs, "Pending", conds, msg))
        msg = "the runner finished (drained or reached replay.until)"
        conds = [
            Condition(RUNNER_RUNNING, "False", "Completed", msg),
            spec_applied,
            Condition(READY, "False", "Completed", msg),
        ]
        # The last signal the runner reported stays shown: a replay that reached ``until`` leaves it
        # open on the volume (deletion reads the volume before it lets go).
        return Plan((), _status(obs, "Done", conds, msg))

    # A runner that answers has got past its configuration (an exit 2 may linger in lastState).
    bad_config = config_error(pod) if obs.runner_status is None else None
    if bad_config is not None:
        conds = [
            Condition(RUNNER_RUNNING, "False", "InvalidConfiguration", bad_config),
            Condition(READY, "False", "InvalidConfiguration", bad_config),
        ]
        actions: tuple[Action, ...] = ()
        if not applied:
            # A corrected spec replaces a runner that cannot start; it has never opened a signal.
            actions = (Action.DELETE_POD,)
        return Plan(actions, _status(obs, "Failed", conds, bad_config))

    if phase != "Running" or obs.runner_status is None:
        why = obs.runner_error or f"runner pod is {phase}"
        new_phase = (
            "Pending" if phase != "Running" or previous_phase in (None, "", "Pending") else previous_phase
        )
        conds = [
            Condition(RUNNER_RUNNING, "Unknown" if phase == "Running" else "False", "StatusUnavailable", why),
            Condition(READY, "False", "StatusUnavailable", why),
        ]
        return Plan((), _status(obs, str(new_phase), conds, why))

    runner_phase = str(obs.runner_status.get("phase") or "")
    trader_phase = RUNNER_PHASES.get(runner_phase, "Running")
    open_signal = _open_signal(obs)
    running = Condition(RUNNER_RUNNING, "True", "StatusOK", f"runner reports {runner_phase or 'unknown'}")
    if applied:
        ready = _ready(obs, trader_phase)
        conds = [running, spec_applied, ready]
        return Plan((), _status(obs, trader_phase, conds, ready.message if ready.status == "False" else ""))

    if open_signal:
        msg = f"spec changed; waiting for signal {open_signal.get('id', '')} to close before restarting"
        conds = [
            running,
            Condition(SPEC_APPLIED, "False", "WaitingForOpenSignal", msg),
            Condition(READY, "True", "RunnerReady", ""),
        ]
        return Plan((), _status(obs, trader_phase, conds, msg))

    msg = "spec changed and no signal is open; draining the runner to restart it with the new spec"
    conds = [
        running,
        Condition(SPEC_APPLIED, "False", "Restarting", msg),
        Condition(READY, "False", "Restarting", msg),
    ]
    actions = () if runner_phase in ("draining", "done") else (Action.STOP_RUNNER,)
    return Plan(actions, _status(obs, trader_phase, conds, msg))


def inspection_result(pod: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """The ``state show`` answer of a finished inspection pod: (report, None), (None, why) or
    (None, None) while it has not finished."""
    if pod is None:
        return None, None
    phase = pod_phase(pod)
    if phase not in ("Succeeded", "Failed"):
        return None, None
    terminated = (_container_status(pod).get("state") or {}).get("terminated") or {}
    message = str(terminated.get("message") or "").strip()
    if phase == "Succeeded":
        try:
            report = json.loads(message)
        except ValueError:
            report = None
        if isinstance(report, dict) and "open" in report and "scheduled" in report:
            return report, None
    reason = str((pod.get("status") or {}).get("reason") or terminated.get("reason") or phase)
    return None, f"the state inspection pod {phase.lower()} ({reason}): {message[-300:] or 'no message'}"


def _known_flat(obs: Observation) -> bool:
    """True only when something that read the state says it holds no open or scheduled signal."""
    if obs.inspection is not None:
        return not obs.inspection.get("open") and not obs.inspection.get("scheduled")
    if obs.runner_status is not None:
        return not obs.runner_status.get("openSignal") and not obs.runner_status.get("scheduledSignal")
    return False


def _why_stopped(obs: Observation) -> str:
    bad_config = config_error(obs.pod)
    if bad_config is not None:
        return f"the runner cannot start ({bad_config})"
    return "the runner has exited (drained, or reached replay.until)"


@dataclass(frozen=True)
class _Deletion:
    """The two ways a deletion pass ends: still draining, or finished (the finalizer may go)."""

    obs: Observation

    @property
    def started(self) -> str:
        return str((self.obs.trader.get("status") or {}).get("drainStartedAt") or utc_timestamp(self.obs.now))

    @property
    def clock(self) -> str | None:
        """The trader's last known clock (``lastTickAt``), for the age of the open signal."""
        source = self.obs.runner_status or self.obs.trader.get("status") or {}
        value = source.get("lastTickAt")
        return str(value) if value else None

    @property
    def drop_inspection(self) -> tuple[Action, ...]:
        return (Action.DELETE_INSPECTION,) if self.obs.inspection_pod is not None else ()

    def draining(
        self, msg: str, reason: str, actions: tuple[Action, ...] = (), signal: Mapping[str, Any] | None = None
    ) -> Plan:
        signal = signal if signal is not None else _open_signal(self.obs)
        conds = [Condition(DRAINING, "True", reason, msg), Condition(READY, "False", "Draining", msg)]
        status = _status(
            self.obs,
            "Draining",
            conds,
            msg,
            drainStartedAt=self.started,
            openSignal=signal,
            openSignalSummary=signal_summary(signal, self.clock, self.obs.now),
        )
        return Plan(actions, status, waiting_for=msg)

    def finished(self, msg: str, reason: str, actions: tuple[Action, ...], *, flat: bool = True) -> Plan:
        obs = self.obs
        notes: tuple[tuple[str, str, str], ...] = ()
        if obs.reclaim_delete and obs.pvc_exists and flat:
            actions = (*actions, Action.DELETE_PVC)
        elif obs.reclaim_delete and obs.pvc_exists:
            actions = (*actions, Action.RELEASE_PVC)
            notes = (
                (
                    "Warning",
                    "StateVolumeRetained",
                    "the state volume may hold an abandoned position: it is kept despite reclaimPolicy "
                    "Delete (delete the PVC by hand once resolved)",
                ),
            )
        conds = [Condition(DRAINING, "False", reason, msg), Condition(READY, "False", "Deleted", msg)]
        extra: dict[str, Any] = {"openSignal": None, "openSignalSummary": ""} if flat else {}
        status = _status(obs, "Done", conds, msg, drainStartedAt=self.started, **extra)
        return Plan((*actions, *self.drop_inspection), status, finished=True, notes=notes)


def plan_deletion(obs: Observation) -> Plan:
    """The next step of draining a LiveTrader that is being deleted (finalizer present).

    A close request still reaches a draining runner (closing the position finishes the drain);
    ``spec.paused`` no longer matters, a draining runner opens nothing new anyway.
    """
    return with_controls(obs, _plan_drain(obs), pause=False)


def _plan_drain(obs: Observation) -> Plan:
    pod = obs.pod
    phase = pod_phase(pod)
    d = _Deletion(obs)
    if obs.abandon_drain:
        msg = "drain abandoned by annotation backtestkit.dev/abandon-drain; an open signal may be left behind"
        actions = (Action.DELETE_POD,) if pod is not None and not pod_terminating(pod) else ()
        return d.finished(msg, "DrainAbandoned", actions, flat=_known_flat(obs))
    if pod is None:
        return _deletion_without_pod(d)
    if pod_terminating(pod):
        return d.draining("waiting for the terminating runner pod to be gone", "PodTerminating")
    if phase == "Failed":
        return d.draining(
            "runner pod failed while draining; replacing it to finish the drain",
            "PodFailed",
            (Action.DELETE_POD, *d.drop_inspection),
        )
    # A runner that answers again (its ConfigMap fixed) drains like any other, whatever lastState says.
    bad_config = config_error(pod) if obs.runner_status is None else None
    if bad_config is not None and pod_hash(pod) != obs.desired_hash:
        # A corrected spec: replace the runner that cannot start by one (in drain mode) that can.
        return d.draining(
            "runner cannot start; replacing it with one running the corrected spec",
            "Restarting",
            (Action.DELETE_POD,),
        )
    if phase == "Succeeded" or bad_config is not None:
        return _deletion_from_volume(d)
    if phase != "Running" or obs.runner_status is None:
        why = obs.runner_error or f"runner pod is {phase}"
        return d.draining(f"waiting for the runner to drain: {why}", "WaitingForRunner")
    signal = _open_signal(obs)
    runner_phase = obs.runner_status.get("phase")
    actions = () if runner_phase in ("draining", "done") else (Action.STOP_RUNNER,)
    if signal:
        msg = f"draining: waiting for signal {signal.get('id', '')} to close"
    else:
        msg = "draining: waiting for the runner to exit"
    return d.draining(msg, "WaitingForSignal" if signal else "WaitingForExit", actions)


def _deletion_without_pod(d: _Deletion) -> Plan:
    obs = d.obs
    if not obs.pvc_exists:
        return d.finished("no runner and no state volume: nothing to drain", "NothingToDrain", ())
    if obs.image_refused:
        msg = f"cannot start a runner to drain the state volume: {obs.image_refused}"
        return d.draining(msg, "ImageNotAllowed")
    # The state volume may hold an open signal: only a running runner can close it.
    return d.draining(
        "starting a runner (in drain mode) to drain the state it left on its volume",
        "RunnerStarting",
        (Action.CREATE_POD, *d.drop_inspection),
    )


def _deletion_from_volume(d: _Deletion) -> Plan:
    """The runner is not running (exited, or cannot start): decide from what its volume holds."""
    obs = d.obs
    why = _why_stopped(obs)
    if obs.inspection is None:
        if obs.inspection_error is not None:
            msg = f"{why}; re-reading the state volume: {obs.inspection_error}"
            return d.draining(msg, "InspectingState", (Action.DELETE_INSPECTION,))
        actions = (Action.CREATE_INSPECTION,) if obs.inspection_pod is None else ()
        return d.draining(f"{why}; reading its state volume before releasing it", "InspectingState", actions)
    held = obs.inspection.get("open") or obs.inspection.get("scheduled")
    if not held and _container_running(obs.pod):
        # It refused its configuration before, but runs now (a fixed ConfigMap): it may trade again.
        return d.draining(f"{why}, but it is starting again; waiting for it to answer", "WaitingForRunner")
    if not held:
        msg = f"{why}; its state volume holds no open or scheduled signal"
        return d.finished(msg, "Drained", (Action.DELETE_POD,))
    kind = "open" if obs.inspection.get("open") else "scheduled"
    ident = held.get("id", "") if isinstance(held, Mapping) else ""
    msg = (
        f"{why}, and its state volume holds {kind} signal {ident}: deletion waits until a runner drains "
        "it or the annotation backtestkit.dev/abandon-drain=true is set"
    )
    opened = obs.inspection.get("open")
    return d.draining(msg, "OpenSignalOnVolume", signal=opened if isinstance(opened, Mapping) else None)


# Manual controls ----------------------------------------------------------------------------------

#: The Event reason of an acknowledged close request that was sent to the runner.
CLOSE_REQUESTED = "CloseRequested"


def _controllable(obs: Observation) -> bool:
    """The runner answers from its restored state: its session runs (so ``paused`` and the open
    signal are read from the volume, not the defaults of a process still starting) and it ticked."""
    runner = obs.runner_status
    if runner is None or pod_phase(obs.pod) != "Running" or pod_terminating(obs.pod):
        return False
    return runner.get("phase") in ("running", "draining") and runner.get("ready", True) is not False


def _pause_action(obs: Observation) -> Action | None:
    reported = (obs.runner_status or {}).get("paused")
    if not isinstance(reported, bool) or reported == obs.paused:
        return None  # in line, or a runner without the control (no ``paused`` in its status)
    return Action.PAUSE_RUNNER if obs.paused else Action.RESUME_RUNNER


def _close_request(obs: Observation) -> tuple[Action | None, dict[str, Any] | None, tuple[str, str, str]]:
    """What a new close-position value asks for: the action (None when nothing is open), the
    acknowledgement for ``status.closeRequest`` and its Event. (None, None, ...) when not new."""
    value = (obs.close_request or "").strip()
    acknowledged = (obs.trader.get("status") or {}).get("closeRequest") or {}
    if not value or (isinstance(acknowledged, Mapping) and acknowledged.get("value") == value):
        return None, None, ("", "", "")
    runner = obs.runner_status or {}
    kind = "open" if runner.get("openSignal") else "scheduled" if runner.get("scheduledSignal") else ""
    # signalId always set: a merge patch would keep the one of an earlier acknowledgement otherwise
    ack: dict[str, Any] = {"value": value, "acknowledgedAt": utc_timestamp(obs.now), "signalId": None}
    asked = f"{CLOSE_POSITION_ANNOTATION}={value}"
    if not kind:
        ack["outcome"] = "NothingOpen"
        return None, ack, ("Normal", "NothingToClose", f"{asked}: no open or scheduled signal to close")
    held = runner.get("openSignal") if kind == "open" else runner.get("scheduledSignal")
    ident = str(held.get("id") or "") if isinstance(held, Mapping) else ""
    ack.update(outcome="Requested", signalId=ident)
    what = "closes at the next tick's price" if kind == "open" else "is cancelled at the next tick"
    return Action.CLOSE_POSITION, ack, ("Normal", CLOSE_REQUESTED, f"{asked}: {kind} signal {ident} {what}")


def with_controls(obs: Observation, plan: Plan, *, pause: bool) -> Plan:
    """``plan`` plus the manual controls the observation calls for (sent before any other action).

    ``spec.paused`` is applied whenever the runner reports another value; a close request once per
    distinct annotation value, acknowledged in ``status.closeRequest``. Both wait for a runner
    that answers from its restored state, so a restarted runner that came back paused from its
    volume is not asked again.
    """
    if not _controllable(obs):
        return plan
    actions: list[Action] = []
    toggle = _pause_action(obs) if pause else None
    if toggle is not None:
        actions.append(toggle)
    close, ack, note = _close_request(obs)
    if close is not None:
        actions.append(close)
    status, notes = dict(plan.status), plan.notes
    if ack is not None:
        status["closeRequest"] = ack
        notes = (*notes, note)
    if (obs.runner_status or {}).get("paused") is True and not status.get("message"):
        status["message"] = "paused: no new signal opens until resumed (an open one is still watched)"
    return replace(plan, actions=(*actions, *plan.actions), status=status, notes=notes)


def without_failed(obs: Observation, plan: Plan, failed: frozenset[Action]) -> Plan:
    """``plan`` after its execution: a close request the runner did not take is not acknowledged
    (the next pass sends it again)."""
    if Action.CLOSE_POSITION not in failed:
        return plan
    status = dict(plan.status)
    status["closeRequest"] = (obs.trader.get("status") or {}).get("closeRequest")
    notes = tuple(n for n in plan.notes if n[1] != CLOSE_REQUESTED)
    return replace(plan, status=status, notes=notes)
