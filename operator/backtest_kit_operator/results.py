"""Walker results: from the Job's pods (termination messages) to the status table and the report.

Each ``walker-task`` pod writes ``{"label", "strategy", "metric", "metricValue", "stats"}`` to its
termination message; the completion index annotation says which strategy it ran. A grid's pod runs
a share of the members and writes ``{"results": [...]}``, one row per member, matched by label. This module
reads those pods, keeps the best attempt per index (a success beats a failure, the newest attempt
beats older ones), and builds the Walker status (progress, per-strategy table, best strategy) and
the full JSON report. Pure functions only: the reconciler lists pods and writes the outcome.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backtest_kit.metrics import Metric, best_index, get_metric, metric_value, rank_order, usable

from .conditions import JOB_COMPLETE, READY, Condition, merge_conditions, utc_timestamp
from .manifests import COMPLETION_INDEX_ANNOTATION, report_configmap_name, walker_job_name
from .models import WalkerSpec

#: The key statistics of the per-strategy status table. Each column is a Walker metric and is read
#: from the statistic the engine's definition names: ``totalTrades`` is the run's ``totalSignals``.
KEY_STATS: tuple[Metric, ...] = tuple(
    get_metric(name) for name in ("totalTrades", "winRate", "totalPnl", "sharpeRatio", "maxDrawdown")
)
#: Columns that count things (integers in the CRD schema).
COUNT_COLUMNS = frozenset({"totalTrades"})


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one strategy (one Job index)."""

    index: int
    label: str
    strategy: str
    state: str  # Pending | Succeeded | Failed
    metric_value: float | None = None
    stats: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""


def _completion_index(pod: Mapping[str, Any]) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
    if raw is None:
        raw = (meta.get("labels") or {}).get(COMPLETION_INDEX_ANNOTATION)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


def parse_message(message: str) -> dict[str, Any] | None:
    """The task's result JSON from a termination message, or None if it is not one."""
    try:
        document = json.loads(message)
    except (TypeError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def task_from_pod(pod: Mapping[str, Any], spec: WalkerSpec) -> TaskResult | None:
    """What one finished pod says about its (first) entry; None for running pods or foreign indices."""
    found = results_from_pod(pod, spec)
    return found[0] if found else None


def results_from_pod(pod: Mapping[str, Any], spec: WalkerSpec) -> list[TaskResult]:
    """What one finished pod says about each entry of its share (one without a grid); ``[]`` for
    running pods or foreign indices."""
    index = _completion_index(pod)
    shares = spec.shares()
    if index is None or not 0 <= index < len(shares):
        return []
    entries = spec.entries
    phase = (pod.get("status") or {}).get("phase")
    terminated = _terminated(pod)
    if phase not in ("Succeeded", "Failed") and terminated is None:
        return []
    message = str((terminated or {}).get("message") or "")
    document = parse_message(message)
    exit_code = (terminated or {}).get("exitCode")
    ok = phase == "Succeeded" or exit_code == 0
    share = shares[index]
    if ok and document is not None and spec.task_shards is not None:
        return _share_results(document, share, spec)
    if ok and document is not None:
        (i,) = share
        return [_succeeded(i, entries[i].label, entries[i].name, document, spec)]
    why = message.strip() or str((terminated or {}).get("reason") or "task failed")
    if ok:
        why = f"task finished without a result JSON in its termination message: {why[:200]}"
    return [TaskResult(i, entries[i].label, entries[i].name, "Failed", message=why[:1000]) for i in share]


def _succeeded(
    index: int, label: str, strategy: str, document: Mapping[str, Any], spec: WalkerSpec
) -> TaskResult:
    stats = document.get("stats") if isinstance(document.get("stats"), dict) else {}
    value = usable(document.get("metricValue"))
    if value is None and document.get("metric") in (None, spec.metric):
        value = metric_value(stats, spec.metric)
    return TaskResult(index, label, strategy, "Succeeded", value, dict(stats or {}))


def _share_results(document: Mapping[str, Any], share: Sequence[int], spec: WalkerSpec) -> list[TaskResult]:
    """A share's ``{"results": [...]}``, matched to its entries by label (a missing one failed)."""
    found = document.get("results")
    rows: list[Any] = found if isinstance(found, list) else []
    by_label = {str(r.get("label")): r for r in rows if isinstance(r, dict)}
    entries = spec.entries
    out = []
    for i in share:
        entry = entries[i]
        row = by_label.get(entry.label)
        if row is None:
            out.append(
                TaskResult(i, entry.label, entry.name, "Failed", message="no result in the share's message")
            )
        elif row.get("error"):
            out.append(TaskResult(i, entry.label, entry.name, "Failed", message=str(row["error"])[:1000]))
        else:
            out.append(_succeeded(i, entry.label, entry.name, row, spec))
    return out


def _newer(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def collect(pods: Sequence[Mapping[str, Any]], spec: WalkerSpec) -> list[TaskResult]:
    """One result per strategy in spec order; Pending where no pod has finished yet."""
    best: dict[int, tuple[TaskResult, str]] = {}
    for pod in pods:
        when = _newer(pod)
        for result in results_from_pod(pod, spec):
            seen = best.get(result.index)
            if seen is None:
                best[result.index] = (result, when)
                continue
            old, old_when = seen
            if (old.state != "Succeeded" and result.state == "Succeeded") or (
                old.state == result.state and when >= old_when
            ):
                best[result.index] = (result, when)
    out = []
    for i, entry in enumerate(spec.entries):
        found = best.get(i)
        out.append(found[0] if found else TaskResult(i, entry.label, entry.name, "Pending"))
    return out


def job_failed(job: Mapping[str, Any] | None) -> str | None:
    """The Job's failure message if it has given up (condition Failed=True)."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return str(cond.get("message") or cond.get("reason") or "the Job failed")
    return None


def job_complete(job: Mapping[str, Any] | None) -> bool:
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Complete" and cond.get("status") == "True":
            return True
    return False


def _cell(column: Metric, stats: Mapping[str, Any]) -> float | int | None:
    """One key-statistic cell of the status table: a finite number (an integer for counts) or None."""
    value = usable(stats.get(column.stat))
    if value is None or column.name not in COUNT_COLUMNS:
        return value
    return int(value)


@dataclass(frozen=True)
class WalkerOutcome:
    status: dict[str, Any]
    report: dict[str, Any] | None
    """The full report, once every strategy has a final result (else None)."""


def summarize(
    walker: Mapping[str, Any],
    spec: WalkerSpec,
    results: Sequence[TaskResult],
    job: Mapping[str, Any] | None,
    *,
    now: datetime | None = None,
) -> WalkerOutcome:
    """The Walker status (and, when finished, the report) from the per-strategy results."""
    meta = walker.get("metadata") or {}
    name = str(meta.get("name"))
    previous = walker.get("status") or {}
    generation = meta.get("generation")
    values = [r.metric_value if r.state == "Succeeded" else None for r in results]
    order = rank_order(spec.metric, values)
    ranks = {idx: pos + 1 for pos, idx in enumerate(order) if usable(values[idx]) is not None}
    winner = best_index(spec.metric, values)
    tested = sum(1 for r in results if r.state != "Pending")
    failed = sum(1 for r in results if r.state == "Failed")
    total = len(results)
    job_failure = job_failed(job)
    finished = tested == total or job_failure is not None or job_complete(job)

    table = []
    for r in results:
        row: dict[str, Any] = {
            "label": r.label,
            "strategy": r.strategy,
            "state": r.state,
            "rank": ranks.get(r.index),
            "metricValue": r.metric_value,
        }
        for column in KEY_STATS:
            row[column.name] = _cell(column, r.stats)
        if r.message:
            row["message"] = r.message
        table.append(row)

    if not finished:
        phase = "Running" if job is not None else "Pending"
        message = f"{tested}/{total} strategies tested"
    elif winner is None:
        phase = "Failed"
        message = job_failure or f"no strategy produced a usable {spec.metric}"
    else:
        phase = "Done"
        message = f"best {spec.metric}: {results[winner].label}"
        if failed:
            message += f" ({failed} of {total} strategies failed)"
    best_label = results[winner].label if winner is not None else None
    best_value = values[winner] if winner is not None else None
    complete = Condition(
        JOB_COMPLETE,
        "True" if finished else "False",
        "AllStrategiesTested" if finished else "Testing",
        message,
    )
    ready = Condition(READY, "True" if phase == "Done" else "False", phase, message)
    status: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        "metric": spec.metric,
        "jobName": walker_job_name(name),
        "totalStrategies": total,
        "strategiesTested": tested,
        "strategiesFailed": failed,
        "bestStrategy": best_label,
        "bestMetric": best_value,
        "results": table,
        "startedAt": previous.get("startedAt") or utc_timestamp(now),
        "completedAt": previous.get("completedAt") or (utc_timestamp(now) if finished else None),
        "conditions": merge_conditions(
            previous.get("conditions"),
            [complete, ready],
            generation=int(generation) if generation is not None else None,
            now=now,
        ),
    }
    if finished:
        status["reportConfigMap"] = report_configmap_name(name)
    report = None
    if finished:
        report = {
            "walker": name,
            "namespace": meta.get("namespace"),
            "symbol": spec.symbol,
            "exchange": spec.exchange.name,
            "frame": spec.frame.model_dump(mode="json", by_alias=True),
            "metric": spec.metric,
            "lowerIsBetter": not get_metric(spec.metric).higher_is_better,
            "bestStrategy": best_label,
            "bestMetric": best_value,
            "ranking": [results[i].label for i in order if i in ranks],
            "results": [
                {
                    "label": r.label,
                    "strategy": r.strategy,
                    "parameters": dict(spec.entries[r.index].parameters),
                    "state": r.state,
                    "rank": ranks.get(r.index),
                    "metricValue": r.metric_value,
                    "stats": dict(r.stats),
                    "message": r.message,
                }
                for r in results
            ],
            "completedAt": status["completedAt"],
        }
    return WalkerOutcome(status, report)
