"""LiveTrader reconciliation: observe the pod and the runner, plan, act.

The kopf handlers call :func:`reconcile` for every reason (create, update, resume, the periodic
timer, and each retry of the deletion finalizer). It reads the current state from the API server
and the runner, lets :mod:`.phases` decide, performs the planned actions, and returns the plan
whose status the handler publishes. Because each pass starts from what exists now, an operator
restarted at any point (mid-creation, mid-rollout, mid-drain) simply continues.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .manifests import (
    ABANDON_DRAIN_ANNOTATION,
    build_pvc,
    build_runner_pod,
    runner_pod_name,
    runner_spec_hash,
    state_pvc_name,
)
from .models import LiveTraderSpec, parse_trader_spec
from .phases import Action, Observation, Plan, plan_deletion, plan_trader, pod_phase, pod_terminating
from .runnerclient import RunnerUnreachable, runner_address
from .services import Services

log = logging.getLogger(__name__)

KIND = "LiveTrader"
PLURAL = "livetraders"
DRAIN_WAIT_MARK = "drain in progress: "
"""Prefix of the TemporaryError a waiting drain raises (``__main__`` logs those retries at INFO)."""


def abandon_requested(trader: Mapping[str, Any]) -> bool:
    annotations = (trader.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ABANDON_DRAIN_ANNOTATION, "")).strip().lower() == "true"


async def observe(
    svc: Services, trader: Mapping[str, Any], spec: LiveTraderSpec, *, deleting: bool
) -> Observation:
    meta = trader["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    pod = await svc.cluster.get_pod(namespace, runner_pod_name(name))
    runner_status: dict[str, Any] | None = None
    runner_error: str | None = None
    if pod is not None and pod_phase(pod) == "Running" and not pod_terminating(pod):
        address = runner_address(pod, svc.settings)
        if address is None:
            runner_error = "the runner pod has no address yet"
        else:
            try:
                runner_status = await svc.runners.status(address)
            except RunnerUnreachable as exc:
                runner_error = str(exc)
    pvc_exists = True
    if deleting and (pod is None or spec.storage.reclaim_policy == "Delete"):
        pvc_exists = await svc.cluster.get_pvc(namespace, state_pvc_name(name)) is not None
    return Observation(
        trader=trader,
        desired_hash=runner_spec_hash(spec, svc.settings),
        pod=pod,
        runner_status=runner_status,
        runner_error=runner_error,
        deleting=deleting,
        abandon_drain=abandon_requested(trader),
        reclaim_delete=spec.storage.reclaim_policy == "Delete",
        pvc_exists=pvc_exists,
        now=datetime.now(UTC),
    )


async def execute(svc: Services, trader: Mapping[str, Any], obs: Observation, plan: Plan) -> None:
    """Perform the plan's actions in order; cluster errors propagate to the handler."""
    meta = trader["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    for action in plan.actions:
        if action is Action.CREATE_POD:
            if await svc.cluster.create_pvc(build_pvc(trader)):
                log.info("created PVC %s/%s", namespace, state_pvc_name(name))
            if await svc.cluster.create_pod(build_runner_pod(trader, svc.settings)):
                log.info("created runner pod %s/%s", namespace, runner_pod_name(name))
            else:
                log.info("runner pod %s/%s already exists; not creating a second one", namespace, name)
        elif action is Action.DELETE_POD and obs.pod is not None:
            uid = (obs.pod.get("metadata") or {}).get("uid")
            await svc.cluster.delete_pod(namespace, runner_pod_name(name), uid=uid)
            log.info("deleting runner pod %s/%s (%s)", namespace, runner_pod_name(name), pod_phase(obs.pod))
        elif action is Action.STOP_RUNNER and obs.pod is not None:
            address = runner_address(obs.pod, svc.settings)
            if address is None:
                continue
            try:
                await svc.runners.stop(address)
                log.info("asked runner %s/%s to drain", namespace, name)
            except RunnerUnreachable as exc:
                log.warning("could not ask runner %s/%s to drain (retrying later): %s", namespace, name, exc)
        elif action is Action.DELETE_PVC:
            await svc.cluster.delete_pvc(namespace, state_pvc_name(name))
            log.info("deleted PVC %s/%s (reclaimPolicy Delete)", namespace, state_pvc_name(name))


async def reconcile(svc: Services, trader: Mapping[str, Any], *, deleting: bool = False) -> Plan:
    """One full pass for ``trader``; raises ``SpecError`` for an unusable spec.

    Serialized per object inside this process; across processes the deterministic pod name and
    the uid precondition on deletes keep concurrent passes harmless.
    """
    spec = parse_trader_spec(trader.get("spec") or {})
    meta = trader["metadata"]
    async with svc.lock(KIND, meta["namespace"], meta["name"]):
        obs = await observe(svc, trader, spec, deleting=deleting)
        plan = plan_deletion(obs) if deleting else plan_trader(obs)
        await execute(svc, trader, obs, plan)
        return plan


def drain_seconds(status: Mapping[str, Any]) -> float | None:
    """Seconds since ``status.drainStartedAt`` (None if unknown)."""
    raw = status.get("drainStartedAt")
    if not raw:
        return None
    try:
        started = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (datetime.now(UTC) - started).total_seconds()
