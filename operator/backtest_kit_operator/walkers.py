"""Walker reconciliation: start the Indexed Job once, then fold finished pods into the status.

Creation makes the Job (idempotently: an existing Job must be owned by this Walker). Every later
change — a task pod finishing, the Job completing or failing, an operator restart — triggers
:func:`sync`, which recomputes the whole status from the pods that exist (nothing is counted
incrementally, so duplicate or missed events cannot skew progress) and, once every strategy has a
result, writes the report ConfigMap. The Walker has no finalizer: deleting it lets the garbage
collector remove the Job, its pods and the report through their owner references.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from .events import status_events
from .manifests import (
    NAME_LABEL,
    WALKER_LABEL,
    WALKER_TASK_APP,
    build_report_configmap,
    build_walker_job,
    report_configmap_name,
    walker_job_name,
)
from .models import SpecError, parse_walker_spec
from .services import Services, status_delta

log = logging.getLogger(__name__)

KIND = "Walker"
PLURAL = "walkers"
TERMINAL = ("Done", "Failed")


class ForeignJob(Exception):
    """A Job with the Walker's Job name exists but another object owns it."""


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


async def start(svc: Services, walker: Mapping[str, Any]) -> None:
    """Create the Walker's Job unless it exists; raises ``SpecError`` or :class:`ForeignJob`."""
    meta = walker["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if (walker.get("status") or {}).get("phase") in TERMINAL:
        return  # finished: its Job may be gone (ttlSecondsAfterFinished); never walk twice
    image = parse_walker_spec(walker.get("spec") or {}).runner.image
    if image is not None and not svc.settings.image_allowed(image):
        allowed = ", ".join(svc.settings.allowed_images or (svc.settings.runner_image,))
        raise SpecError(f"image {image} is not allowed by the operator (allowed: {allowed})")
    job = build_walker_job(walker, svc.settings)
    if await svc.cluster.create_job(job):
        log.info(
            "created Job %s/%s with %d tasks", namespace, walker_job_name(name), job["spec"]["completions"]
        )
        return
    existing = await svc.cluster.get_job(namespace, walker_job_name(name))
    if existing is not None and not _owned_by(existing, meta["uid"]):
        raise ForeignJob(f"Job {namespace}/{walker_job_name(name)} exists and is not owned by this Walker")


async def sync(svc: Services, walker: Mapping[str, Any]) -> dict[str, Any]:
    """Recompute and write the Walker status (and the report when finished); returns the status."""
    meta = walker["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    from .results import collect, summarize  # ranks with the engine's rule: loads the engine

    spec = parse_walker_spec(walker.get("spec") or {})
    async with svc.lock(KIND, namespace, name):
        current = dict(walker.get("status") or {})
        finished = current.get("phase") in TERMINAL and current.get("reportConfigMap")
        if finished and await svc.cluster.get_configmap(namespace, report_configmap_name(name)) is not None:
            return current
        job = await svc.cluster.get_job(namespace, walker_job_name(name))
        selector = f"{NAME_LABEL}={WALKER_TASK_APP},{WALKER_LABEL}={name}"
        pods = await svc.cluster.list_pods(namespace, selector)
        if job is not None:
            job_uid = (job.get("metadata") or {}).get("uid")
            pods = [p for p in pods if not job_uid or _owned_by(p, job_uid) or not _has_owner(p)]
        results = collect(pods, spec)
        outcome = summarize(walker, spec, results, job, now=datetime.now(UTC))
        if outcome.report is not None:
            await svc.cluster.apply_configmap(build_report_configmap(walker, outcome.report))
        delta = status_delta(current, outcome.status)
        if delta:
            await svc.cluster.patch_custom_status(PLURAL, namespace, name, delta)
            for kind, reason, message in status_events(current, {**current, **outcome.status}):
                kopf.event(cast(kopf.Body, walker), type=kind, reason=reason, message=message[:1000])
            if "phase" in delta:
                log.info(
                    "Walker %s/%s is %s: %s",
                    namespace,
                    name,
                    outcome.status["phase"],
                    outcome.status.get("message"),
                )
        return outcome.status


async def sync_by_name(svc: Services, namespace: str, name: str) -> None:
    """:func:`sync` for a Walker known only by name (from a pod or Job event); gone → nothing."""
    walker = await svc.cluster.get_custom(PLURAL, namespace, name)
    if walker is None or (walker.get("metadata") or {}).get("deletionTimestamp"):
        return
    await sync(svc, walker)


def _has_owner(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("ownerReferences"))
