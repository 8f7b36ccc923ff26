"""Walker pods' termination messages become the status table, the winner and the report."""

from __future__ import annotations

import json
from typing import Any

from operator_samples import walker

from backtest_kit_operator.models import parse_walker_spec
from backtest_kit_operator.results import collect, summarize


def task_pod(
    index: int,
    phase: str = "Succeeded",
    value: float | None = 1.0,
    *,
    created: str = "2024-01-01T00:00:00Z",
    message: str | None = None,
    exit_code: int | None = None,
) -> dict[str, Any]:
    if message is None:
        message = json.dumps(
            {
                "label": "x",
                "strategy": "s",
                "metric": "sharpeRatio",
                "metricValue": value,
                "stats": {"totalSignals": 4, "winRate": 0.5, "sharpeRatio": value, "maxDrawdown": 2.0},
            }
        )
    terminated = {"exitCode": 0 if phase == "Succeeded" else 1, "message": message}
    if exit_code is not None:
        terminated["exitCode"] = exit_code
    return {
        "metadata": {
            "name": f"jan-job-{index}-abcde",
            "creationTimestamp": created,
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "walker-task", "state": {"terminated": terminated}}],
        },
    }


SPEC = parse_walker_spec(walker()["spec"])
COMPLETE_JOB = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}


def test_strategies_without_finished_pods_are_pending_and_progress_counts_the_rest() -> None:
    results = collect(
        [task_pod(1, value=0.3), {"metadata": {"name": "running"}, "status": {"phase": "Running"}}], SPEC
    )
    assert [r.state for r in results] == ["Pending", "Succeeded", "Pending"]
    outcome = summarize(walker(), SPEC, results, {"status": {}})
    assert outcome.status["phase"] == "Running"
    assert outcome.status["strategiesTested"] == 1
    assert outcome.status["totalStrategies"] == 3
    assert outcome.report is None


def test_the_best_strategy_and_ranks_follow_the_metric() -> None:
    pods = [task_pod(0, value=0.5), task_pod(1, value=1.5), task_pod(2, value=None)]
    outcome = summarize(walker(), SPEC, collect(pods, SPEC), COMPLETE_JOB)
    status = outcome.status
    assert status["phase"] == "Done"
    assert status["bestStrategy"] == "slow"
    assert status["bestMetric"] == 1.5
    assert [row["rank"] for row in status["results"]] == [2, 1, None]
    assert status["results"][0]["totalTrades"] == 4
    assert status["results"][0]["winRate"] == 0.5
    assert status["reportConfigMap"] == "jan-report"
    assert outcome.report is not None
    assert outcome.report["ranking"] == ["slow", "fast"]
    assert outcome.report["results"][1]["parameters"] == {"fast": 20}


def test_max_drawdown_ranks_the_lowest_value_first() -> None:
    spec = parse_walker_spec(walker(metric="maxDrawdown")["spec"])
    pods = [
        task_pod(i, message=json.dumps({"metricValue": v, "stats": {}}))
        for i, v in enumerate([9.0, 3.0, 3.0])
    ]
    outcome = summarize(walker(metric="maxDrawdown"), spec, collect(pods, spec), COMPLETE_JOB)
    assert outcome.status["bestStrategy"] == "slow"  # tie with "momentum": the earlier one wins


def test_a_failed_task_is_reported_with_its_message_and_never_wins() -> None:
    pods = [
        task_pod(0, "Failed", message="ConfigurationError: fast must be < slow"),
        task_pod(1),
        task_pod(2),
    ]
    outcome = summarize(walker(), SPEC, collect(pods, SPEC), COMPLETE_JOB)
    row = outcome.status["results"][0]
    assert row["state"] == "Failed"
    assert "fast must be < slow" in row["message"]
    assert outcome.status["strategiesFailed"] == 1
    assert outcome.status["bestStrategy"] == "slow"


def test_a_retried_index_counts_its_successful_attempt() -> None:
    pods = [
        task_pod(0, "Failed", message="boom", created="2024-01-01T00:00:00Z"),
        task_pod(0, value=2.0, created="2024-01-01T00:01:00Z"),
    ]
    (first, *_rest) = collect(pods, SPEC)
    assert first.state == "Succeeded"
    assert first.metric_value == 2.0


def test_the_metric_value_falls_back_to_the_stats_when_the_message_lacks_it() -> None:
    message = json.dumps({"label": "fast", "stats": {"sharpeRatio": 0.7}})
    (first, *_rest) = collect([task_pod(0, message=message)], SPEC)
    assert first.metric_value == 0.7


def test_a_walker_where_nothing_produced_a_value_fails() -> None:
    pods = [task_pod(i, "Failed", message="boom") for i in range(3)]
    outcome = summarize(walker(), SPEC, collect(pods, SPEC), {"status": {}})
    assert outcome.status["phase"] == "Failed"
    assert outcome.status["bestStrategy"] is None


def test_a_job_that_gave_up_finishes_the_walker_with_what_it_has() -> None:
    failed_job = {
        "status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}
    }
    outcome = summarize(walker(), SPEC, collect([task_pod(0, value=1.0)], SPEC), failed_job)
    assert outcome.status["phase"] == "Done"
    assert outcome.status["bestStrategy"] == "fast"
    assert outcome.report is not None
