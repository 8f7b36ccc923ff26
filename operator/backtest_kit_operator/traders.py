"""LiveTrader reconciliation: observe the pod and the runner, plan, act.

The kopf handlers call :func:`reconcile` for every reason (create, update, resume, the periodic
timer, and each retry of the deletion finalizer). It reads the current state from the API server
and the runner, lets :mod:`.phases` decide, performs the planned actions, and returns the plan
whose status the handler publishes. Because each pass starts from what exists now, an operator
restarted at any point (mid-creation, mid-rollout, mid-drain) simply continues.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .manifests import (
    ABANDON_DRAIN_ANNOTATION,
    CLOSE_POSITION_ANNOTATION,
    INSPECTED_RUNNER_ANNOTATION,
    build_control_secret,
    build_inspection_pod,
    build_pvc,
    build_runner_pod,
    control_secret_name,
    inspection_pod_name,
    runner_pod_name,
    runner_spec_hash,
    secret_token,
    state_pvc_name,
)
from .models import LiveTraderSpec, parse_trader_spec
from .phases import (
    Action,
    Observation,
    Plan,
    inspection_result,
    plan_deletion,
    plan_trader,
    pod_phase,
    pod_terminating,
    without_failed,
)
from .runnerclient import RunnerUnauthorized, RunnerUnreachable, runner_address
from .services import Services

log = logging.getLogger(__name__)

KIND = "LiveTrader"
PLURAL = "livetraders"
DRAIN_WAIT_MARK = "drain in progress: "
"""Prefix of the TemporaryError a waiting drain raises (``__main__`` logs those retries at INFO)."""


def abandon_requested(trader: Mapping[str, Any]) -> bool:
    annotations = (trader.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ABANDON_DRAIN_ANNOTATION, "")).strip().lower() == "true"


def close_request(trader: Mapping[str, Any]) -> str | None:
    """The close-position annotation's value (None when unset or blank)."""
    annotations = (trader.get("metadata") or {}).get("annotations") or {}
    value = str(annotations.get(CLOSE_POSITION_ANNOTATION) or "").strip()
    return value or None


def refused_image(spec: LiveTraderSpec, svc: Services) -> str | None:
    """Why the spec's runner image may not run, or None (the operator's allowlist)."""
    image = spec.runner.image
    if image is None or svc.settings.image_allowed(image):
        return None
    allowed = ", ".join(svc.settings.allowed_images or (svc.settings.runner_image,))
    return f"image {image} is not allowed by the operator (allowed: {allowed})"


async def _runner_status(
    svc: Services, pod: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, str | None]:
    if pod is None or pod_phase(pod) != "Running" or pod_terminating(pod):
        return None, None
    address = runner_address(pod, svc.settings)
    if address is None:
        return None, "the runner pod has no address yet"
    try:
        return await svc.runners.status(address), None
    except RunnerUnreachable as exc:
        return None, str(exc)


async def _inspection(
    svc: Services, namespace: str, name: str, pod: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """The inspection pod, its answer (when it inspected the current runner pod) and its error."""
    inspect_pod = await svc.cluster.get_pod(namespace, inspection_pod_name(name))
    if inspect_pod is None or pod_terminating(inspect_pod):
        return inspect_pod, None, None
    inspected = ((inspect_pod.get("metadata") or {}).get("annotations") or {}).get(
        INSPECTED_RUNNER_ANNOTATION
    )
    current = str(((pod or {}).get("metadata") or {}).get("uid") or "")
    if inspected != current:
        return inspect_pod, None, "it inspected an earlier runner pod"
    report, error = inspection_result(inspect_pod)
    return inspect_pod, report, error


async def observe(
    svc: Services, trader: Mapping[str, Any], spec: LiveTraderSpec, *, deleting: bool
) -> Observation:
    meta = trader["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    pod = await svc.cluster.get_pod(namespace, runner_pod_name(name))
    runner_status, runner_error = await _runner_status(svc, pod)
    pvc_exists = True
    if deleting and (pod is None or spec.storage.reclaim_policy == "Delete"):
        pvc_exists = await svc.cluster.get_pvc(namespace, state_pvc_name(name)) is not None
    inspect_pod, inspection, inspection_error = (None, None, None)
    if deleting:
        inspect_pod, inspection, inspection_error = await _inspection(svc, namespace, name, pod)
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
        inspection=inspection,
        inspection_pod=inspect_pod,
        inspection_error=inspection_error,
        image_refused=refused_image(spec, svc),
        paused=spec.paused,
        close_request=close_request(trader),
    )


async def control_token(svc: Services, trader: Mapping[str, Any], *, create: bool) -> str | None:
    """The trader's control token from its Secret (created with a fresh random token if asked)."""
    meta = trader["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    key = (namespace, name, str(meta.get("uid") or ""))
    cached = svc.tokens.get(key)
    if cached:
        return cached
    secret = await svc.cluster.get_secret(namespace, control_secret_name(name))
    token = secret_token(secret) if secret is not None else None
    if secret is None and create:
        fresh = secrets.token_urlsafe(32)
        if await svc.cluster.create_secret(build_control_secret(trader, fresh)):
            token = fresh  # what was just stored: no need to read it back
        else:  # created meanwhile by another pass or replica: theirs is the token
            secret = await svc.cluster.get_secret(namespace, control_secret_name(name))
            token = secret_token(secret) if secret is not None else None
    if token:
        svc.tokens[key] = token
    return token


#: The runner's HTTP control behind each action, and what the log says it asked for.
RUNNER_CONTROLS = {
    Action.STOP_RUNNER: ("stop", "drain"),
    Action.PAUSE_RUNNER: ("pause", "pause"),
    Action.RESUME_RUNNER: ("resume", "resume"),
    Action.CLOSE_POSITION: ("close", "close its position"),
}


async def _control_runner(
    svc: Services, trader: Mapping[str, Any], pod: Mapping[str, Any], action: Action
) -> bool:
    """Send ``action``'s ``POST`` to the runner; False when it did not take it (retried next pass)."""
    meta = trader["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    endpoint, verb = RUNNER_CONTROLS[action]
    address = runner_address(pod, svc.settings)
    if address is None:
        return False
    try:
        token = await control_token(svc, trader, create=False)
        if action is Action.STOP_RUNNER:
            await svc.runners.stop(address, token)
        else:
            await svc.runners.control(address, endpoint, token)
        log.info("asked runner %s/%s to %s", namespace, name, verb)
        return True
    except RunnerUnauthorized as exc:
        svc.tokens.pop((namespace, name, str(meta.get("uid") or "")), None)
        log.warning("runner %s/%s refused the control token (re-reading it): %s", namespace, name, exc)
    except RunnerUnreachable as exc:
        log.warning("could not ask runner %s/%s to %s (retrying later): %s", namespace, name, verb, exc)
    return False


async def _create_runner(svc: Services, trader: Mapping[str, Any], *, drain: bool) -> None:
    meta = trader["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if await svc.cluster.create_pvc(build_pvc(trader, access_mode=svc.settings.state_access_mode)):
        log.info("created PVC %s/%s", namespace, state_pvc_name(name))
    await control_token(svc, trader, create=True)  # the pod mounts it: it must exist first
    if await svc.cluster.create_pod(build_runner_pod(trader, svc.settings, drain=drain)):
        log.info(
            "created runner pod %s/%s%s", namespace, runner_pod_name(name), " (drain mode)" if drain else ""
        )
    else:
        log.info("runner pod %s/%s already exists; not creating a second one", namespace, name)


async def execute(
    svc: Services, trader: Mapping[str, Any], obs: Observation, plan: Plan
) -> frozenset[Action]:
    """Perform the plan's actions in order; returns the runner controls the runner did not take.

    Cluster errors propagate to the handler."""
    meta = trader["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    failed: set[Action] = set()
    for action in plan.actions:
        if action in RUNNER_CONTROLS:
            if obs.pod is None or not await _control_runner(svc, trader, obs.pod, action):
                failed.add(action)
        elif action is Action.CREATE_POD:
            await _create_runner(svc, trader, drain=obs.deleting)
        elif action is Action.DELETE_POD and obs.pod is not None:
            uid = (obs.pod.get("metadata") or {}).get("uid")
            await svc.cluster.delete_pod(namespace, runner_pod_name(name), uid=uid)
            log.info("deleting runner pod %s/%s (%s)", namespace, runner_pod_name(name), pod_phase(obs.pod))
        elif action is Action.CREATE_INSPECTION:
            if await svc.cluster.create_pod(build_inspection_pod(trader, svc.settings, runner_pod=obs.pod)):
                log.info(
                    "reading the state volume of %s/%s (pod %s)", namespace, name, inspection_pod_name(name)
                )
        elif action is Action.DELETE_INSPECTION and obs.inspection_pod is not None:
            uid = (obs.inspection_pod.get("metadata") or {}).get("uid")
            await svc.cluster.delete_pod(namespace, inspection_pod_name(name), uid=uid)
        elif action is Action.DELETE_PVC:
            await svc.cluster.delete_pvc(namespace, state_pvc_name(name))
            log.info("deleted PVC %s/%s (reclaimPolicy Delete)", namespace, state_pvc_name(name))
        elif action is Action.RELEASE_PVC:
            await svc.cluster.release_pvc(namespace, state_pvc_name(name))
            log.warning("kept PVC %s/%s: it may hold an abandoned position", namespace, state_pvc_name(name))
    return frozenset(failed)


async def reconcile(svc: Services, trader: Mapping[str, Any], *, deleting: bool = False) -> Plan:
    """One full pass for ``trader``; raises ``SpecError`` for an unusable spec.

    Serialized per object inside this process; across processes the deterministic pod name and
    the uid precondition on deletes keep concurrent passes harmless.
    """
    spec = parse_trader_spec(trader.get("spec") or {})
    meta = trader["metadata"]
    async with svc.lock(KIND, meta["namespace"], meta["name"]), svc.slots:
        obs = await observe(svc, trader, spec, deleting=deleting)
        plan = plan_deletion(obs) if deleting else plan_trader(obs)
        failed = await execute(svc, trader, obs, plan)
        return without_failed(obs, plan, failed)


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
