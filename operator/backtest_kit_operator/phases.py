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

Spec changes (strategy, parameters, replay, image, resources) reach a running trader only while
no signal is open: the runner is asked to drain (``POST /stop`` — it then opens nothing new and
exits 0 once flat), and the pod is replaced after it has ``Succeeded``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
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
from .manifests import SPEC_HASH_ANNOTATION

CONFIG_ERROR_EXIT = 2

RUNNER_PHASES = {"idle": "Idle", "running": "Running", "draining": "Draining", "done": "Done"}


class Action(enum.Enum):
    CREATE_POD = "create-pod"
    """Ensure the PVC, then create the runner pod (a 409 means someone else was faster: fine)."""
    DELETE_POD = "delete-pod"
    STOP_RUNNER = "stop-runner"
    """``POST /stop``: drain — open nothing new, exit 0 once no signal is open."""
    DELETE_PVC = "delete-pvc"


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


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    status: dict[str, Any]
    finished: bool = False
    """Deletion only: everything is cleaned up, the finalizer may go."""
    waiting_for: str = ""
    """Deletion only: why the finalizer stays (becomes the TemporaryError message)."""


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


def signal_summary(signal: Mapping[str, Any] | None) -> str:
    """``long@42000.5 (id)`` — what the printer column shows for the open signal."""
    if not signal:
        return ""
    position = signal.get("position", "?")
    price = signal.get("priceOpen")
    ident = signal.get("id", "")
    at = f"@{price}" if price is not None else ""
    return f"{position}{at} ({ident})" if ident else f"{position}{at}"


def _runner_fields(runner: Mapping[str, Any] | None) -> dict[str, Any]:
    """The status fields copied from the runner's ``/status`` answer."""
    if runner is None:
        return {}
    out: dict[str, Any] = {
        "runnerPhase": runner.get("phase"),
        "openSignal": runner.get("openSignal"),
        "openSignalSummary": signal_summary(runner.get("openSignal")),
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
    status.update(_runner_fields(obs.runner_status))
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


def plan_trader(obs: Observation) -> Plan:
    """The next step of a LiveTrader that is not being deleted."""
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
        return Plan((), _status(obs, "Done", conds, msg, openSignal=None, openSignalSummary=""))

    bad_config = config_error(pod)
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
        ready_ok = trader_phase in ("Idle", "Running")
        conds = [
            running,
            spec_applied,
            Condition(
                READY, "True" if ready_ok else "False", "RunnerReady" if ready_ok else trader_phase, ""
            ),
        ]
        return Plan((), _status(obs, trader_phase, conds, ""))

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


def plan_deletion(obs: Observation) -> Plan:
    """The next step of draining a LiveTrader that is being deleted (finalizer present)."""
    pod = obs.pod
    phase = pod_phase(pod)
    previous = obs.trader.get("status") or {}
    started = previous.get("drainStartedAt") or utc_timestamp(obs.now)
    cleanup_pvc = (Action.DELETE_PVC,) if obs.reclaim_delete and obs.pvc_exists else ()

    def draining(msg: str, reason: str, actions: tuple[Action, ...] = ()) -> Plan:
        signal = _open_signal(obs)
        conds = [
            Condition(DRAINING, "True", reason, msg),
            Condition(READY, "False", "Draining", msg),
        ]
        status = _status(
            obs,
            "Draining",
            conds,
            msg,
            drainStartedAt=started,
            openSignal=signal,
            openSignalSummary=signal_summary(signal),
        )
        return Plan(actions, status, waiting_for=msg)

    def finished(msg: str, reason: str, actions: tuple[Action, ...], *, flat: bool = True) -> Plan:
        conds = [Condition(DRAINING, "False", reason, msg), Condition(READY, "False", "Deleted", msg)]
        extra: dict[str, Any] = {"openSignal": None, "openSignalSummary": ""} if flat else {}
        status = _status(obs, "Done", conds, msg, drainStartedAt=started, **extra)
        return Plan(actions, status, finished=True)

    if obs.abandon_drain:
        msg = "drain abandoned by annotation backtestkit.dev/abandon-drain; an open signal may be left behind"
        actions = ((Action.DELETE_POD,) if pod is not None and not pod_terminating(pod) else ()) + cleanup_pvc
        return finished(msg, "DrainAbandoned", actions, flat=False)

    if pod is None:
        if not obs.pvc_exists:
            return finished("no runner and no state volume: nothing to drain", "NothingToDrain", ())
        # The state volume may hold an open signal: only a running runner can close it.
        return draining(
            "starting a runner to drain the state it left on its volume",
            "RunnerStarting",
            (Action.CREATE_POD,),
        )

    if pod_terminating(pod):
        return draining("waiting for the terminating runner pod to be gone", "PodTerminating")

    if phase == "Succeeded":
        return finished("runner drained and exited", "Drained", (Action.DELETE_POD, *cleanup_pvc))

    if phase == "Failed":
        return draining(
            "runner pod failed while draining; replacing it to finish the drain",
            "PodFailed",
            (Action.DELETE_POD,),
        )

    bad_config = config_error(pod)
    if bad_config is not None and pod_hash(pod) == obs.desired_hash:
        # A runner that never accepted its configuration has never opened a signal.
        return finished(
            f"runner cannot start ({bad_config}); nothing to drain",
            "NothingToDrain",
            (Action.DELETE_POD, *cleanup_pvc),
        )

    if phase != "Running" or obs.runner_status is None:
        why = obs.runner_error or f"runner pod is {phase}"
        return draining(f"waiting for the runner to drain: {why}", "WaitingForRunner")

    signal = _open_signal(obs)
    runner_phase = obs.runner_status.get("phase")
    actions = () if runner_phase in ("draining", "done") else (Action.STOP_RUNNER,)
    if signal:
        msg = f"draining: waiting for signal {signal.get('id', '')} to close"
    else:
        msg = "draining: waiting for the runner to exit"
    return draining(msg, "WaitingForSignal" if signal else "WaitingForExit", actions)
