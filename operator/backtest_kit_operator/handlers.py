"""kopf handlers: the thin shell between kopf's events and the reconcilers.

Each handler translates: spec problems become ``kopf.PermanentError`` (retrying cannot help),
API and runner trouble becomes ``kopf.TemporaryError`` (kopf retries later without blocking a
worker), and the reconciler's status goes into kopf's ``patch`` so it is written together with
kopf's own bookkeeping. The logic itself lives in :mod:`.traders`, :mod:`.walkers` and
:mod:`.phases`.

Importing this module registers the handlers; ``__main__`` imports it after the settings are final.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from . import traders, walkers
from .cluster import Cluster, ClusterUnavailable, Forbidden, ManifestRejected
from .conditions import READY, Condition, merge_conditions
from .events import status_events
from .manifests import FINALIZER, GROUP, NAME_LABEL, VERSION, WALKER_LABEL, WALKER_TASK_APP
from .metrics import OperatorMetrics
from .models import SpecError
from .phases import Plan
from .runnerclient import RunnerClient
from .services import Services, status_delta
from .settings import OperatorSettings, load_settings

SETTINGS: OperatorSettings = load_settings()
KOPF_PREFIX = GROUP

log = logging.getLogger(__name__)


def services(memo: Any) -> Services:
    return cast(Services, memo.services)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf bookkeeping under our own names, no cluster-wide scanning, our shared services."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    # Least privilege: no list/watch of CRDs and namespaces; namespaces are named explicitly.
    settings.scanning.disabled = True
    # Lifecycle Events are posted explicitly (kopf.event, see post_events); kopf's own log lines
    # become Events from WARNING up, so a failing handler is visible in ``kubectl describe`` too.
    settings.posting.enabled = True
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.batching.error_delays = (1, 2, 5, 10, 20)
    # An object's kopf worker (its task, queue and last body) exits this soon after its last watch
    # event instead of 5 s: at a thousand traders the idle workers are a good part of the memory.
    settings.queueing.idle_timeout = 1.0
    metrics = OperatorMetrics()
    metrics.serve(SETTINGS.metrics_port)
    memo.services = Services(
        settings=SETTINGS,
        cluster=Cluster.from_environment(),
        runners=RunnerClient(SETTINGS.http_timeout, limit=SETTINGS.status_limit_bytes),
        metrics=metrics,
    )


@kopf.on.cleanup()
async def shut_down(memo: kopf.Memo, **_: Any) -> None:
    svc = getattr(memo, "services", None)
    if svc is not None:
        await services(memo).close()


#: Seconds between two attempts at a call the cluster refused with 403 (an administrator must act).
FORBIDDEN_RETRY_S = 30.0


def post_events(body: kopf.Body, before: dict[str, Any], after: dict[str, Any], notes: Any = ()) -> None:
    """Post the Events that the status change (and the plan's notes) deserve, on the object."""
    for kind, reason, message in [*status_events(before, after), *notes]:
        kopf.event(body, type=kind, reason=reason, message=message[:1000])


def _publish(plan: Plan, body: kopf.Body, patch: kopf.Patch) -> None:
    current = dict(body.get("status") or {})
    delta = status_delta(current, plan.status)
    if delta:
        patch.setdefault("status", {}).update(delta)
    post_events(body, current, {**current, **plan.status}, plan.notes)


def _forbidden_status(body: kopf.Body, exc: Exception, patch: kopf.Patch) -> None:
    """A 403 is shown, not retried silently: phase Failed, Ready=False/Forbidden, an Event."""
    current = dict(body.get("status") or {})
    message = f"the cluster refused a call the operator needs: {exc}"
    generation = body.meta.get("generation")
    wanted = {
        "phase": "Failed",
        "message": message,
        "observedGeneration": generation,
        "conditions": merge_conditions(
            current.get("conditions"),
            [Condition(READY, "False", "Forbidden", message)],
            generation=generation,
        ),
    }
    delta = status_delta(current, wanted)
    if delta:
        patch.setdefault("status", {}).update(delta)
    post_events(body, current, {**current, **wanted})


def _invalid_spec_status(
    body: kopf.Body, exc: Exception, patch: kopf.Patch, *, condition: bool = False
) -> None:
    """Phase Failed with the reason; ``condition`` also sets Ready=False, reason InvalidSpec."""
    current = dict(body.get("status") or {})
    generation = body.meta.get("generation")
    wanted: dict[str, Any] = {
        "phase": "Failed",
        "message": f"invalid spec: {exc}",
        "observedGeneration": generation,
    }
    if condition:
        wanted["conditions"] = merge_conditions(
            current.get("conditions"),
            [Condition(READY, "False", "InvalidSpec", wanted["message"][:1000])],
            generation=generation,
        )
    delta = status_delta(current, wanted)
    if delta:
        patch.setdefault("status", {}).update(delta)


# LiveTrader -------------------------------------------------------------------------------------


async def _reconcile_trader(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, *, quiet: bool) -> None:
    svc = services(memo)
    with svc.metrics.reconciliation(traders.KIND):
        try:
            plan = await traders.reconcile(svc, body)
        except SpecError as exc:
            _invalid_spec_status(body, exc, patch)
            if quiet:
                return
            raise kopf.PermanentError(f"invalid LiveTrader spec: {exc}") from exc
        except ManifestRejected as exc:
            _invalid_spec_status(body, exc, patch)
            raise kopf.PermanentError(str(exc)) from exc
        except Forbidden as exc:
            _forbidden_status(body, exc, patch)
            if quiet:
                return
            raise kopf.TemporaryError(str(exc), delay=FORBIDDEN_RETRY_S) from exc
        except ClusterUnavailable as exc:
            raise kopf.TemporaryError(str(exc), delay=SETTINGS.poll_interval) from exc
        _publish(plan, body, patch)


@kopf.on.resume(GROUP, VERSION, traders.PLURAL)
@kopf.on.create(GROUP, VERSION, traders.PLURAL)
@kopf.on.update(GROUP, VERSION, traders.PLURAL, field="spec")
async def trader_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Create/update/resume: bring the PVC and the runner pod in line with the spec at once."""
    await _reconcile_trader(body, patch, memo, quiet=False)


@kopf.timer(
    GROUP, VERSION, traders.PLURAL, interval=SETTINGS.poll_interval, initial_delay=SETTINGS.poll_interval
)
async def trader_poll(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Every poll interval: read the runner's /status into the LiveTrader status, heal the pod."""
    await _reconcile_trader(body, patch, memo, quiet=True)


@kopf.on.delete(GROUP, VERSION, traders.PLURAL)
async def trader_drain(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Finalizer: drain the runner (``POST /stop``), wait until it has exited, then clean up.

    Each pass either finishes or raises ``TemporaryError`` so kopf calls again later; the state of
    the drain is entirely in the cluster (pod phase, runner status), so an operator restarted in
    the middle resumes it. The annotation ``backtestkit.dev/abandon-drain: "true"`` skips the wait.
    """
    svc = services(memo)
    key = f"{body.meta.namespace}/{body.meta.name}"
    with svc.metrics.reconciliation(traders.KIND):
        try:
            plan = await traders.reconcile(svc, body, deleting=True)
        except SpecError as exc:
            # Without a readable spec there is no runner we could have started: release.
            log.warning("LiveTrader %s has an invalid spec (%s); removing the finalizer", key, exc)
            svc.metrics.drain_finished(key, None)
            return
        except Forbidden as exc:
            svc.metrics.drain_started(key)
            _forbidden_status(body, exc, patch)
            raise kopf.TemporaryError(str(exc), delay=FORBIDDEN_RETRY_S) from exc
        except (ClusterUnavailable, ManifestRejected) as exc:
            svc.metrics.drain_started(key)
            raise kopf.TemporaryError(str(exc), delay=SETTINGS.drain_retry_delay) from exc
        _publish(plan, body, patch)
        if not plan.finished:
            svc.metrics.drain_started(key)
            raise kopf.TemporaryError(
                traders.DRAIN_WAIT_MARK + plan.waiting_for, delay=SETTINGS.drain_retry_delay
            )
        svc.metrics.drain_finished(key, traders.drain_seconds(plan.status))
        svc.forget(traders.KIND, body.meta.namespace or "", body.meta.name or "")
        log.info("LiveTrader %s drained: %s", key, plan.status.get("message"))


# Walker -----------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, walkers.PLURAL)
@kopf.on.create(GROUP, VERSION, walkers.PLURAL)
async def walker_started(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Create the Indexed Job (once) and publish the initial (or, on resume, current) status."""
    svc = services(memo)
    with svc.metrics.reconciliation(walkers.KIND):
        try:
            await walkers.start(svc, body)
            await walkers.sync(svc, body)
        except SpecError as exc:
            _invalid_spec_status(body, exc, patch, condition=True)
            raise kopf.PermanentError(f"invalid Walker spec: {exc}") from exc
        except (ManifestRejected, walkers.ForeignJob) as exc:
            _invalid_spec_status(body, exc, patch)
            raise kopf.PermanentError(str(exc)) from exc
        except Forbidden as exc:
            _forbidden_status(body, exc, patch)
            raise kopf.TemporaryError(str(exc), delay=FORBIDDEN_RETRY_S) from exc
        except ClusterUnavailable as exc:
            raise kopf.TemporaryError(str(exc), delay=5) from exc


async def _walker_event(namespace: str | None, labels: Any, memo: kopf.Memo) -> None:
    name = (labels or {}).get(WALKER_LABEL)
    if not name or not namespace:
        return
    svc = services(memo)
    with svc.metrics.reconciliation(walkers.KIND):
        try:
            await walkers.sync_by_name(svc, namespace, str(name))
        except SpecError:
            return  # the Walker's own handler reports it
        except ClusterUnavailable as exc:
            log.warning(
                "Walker %s/%s: status not updated (will retry on the next event): %s", namespace, name, exc
            )


@kopf.on.event("", "v1", "pods", labels={NAME_LABEL: WALKER_TASK_APP, WALKER_LABEL: kopf.PRESENT})
async def walker_pod_event(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    """A walker-task pod changed: refresh its Walker's progress and ranking."""
    await _walker_event(namespace, labels, memo)


@kopf.on.event("batch", "v1", "jobs", labels={NAME_LABEL: WALKER_TASK_APP, WALKER_LABEL: kopf.PRESENT})
async def walker_job_event(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    """The Walker's Job changed (e.g. completed or gave up): refresh the Walker."""
    await _walker_event(namespace, labels, memo)
