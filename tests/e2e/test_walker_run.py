"""A Walker through the real operator: an Indexed Job of walker-task runners, ranked in its status."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from test_livetrader_safety import events_of

from backtest_kit.walker import best_index
from conftest import Cluster, OperatorProcess, wait_for


def walker(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "backtestkit.dev/v1alpha1",
        "kind": "Walker",
        "metadata": {"name": name},
        "spec": {
            "symbol": "SYNUSDT",
            "exchange": {"name": "synthetic"},
            "frame": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T12:00:00Z", "interval": "1m"},
            "strategies": [
                {
                    "name": "sma-cross",
                    "label": "fast",
                    "parameters": {"fast": 3, "slow": 8, "candle_interval": "1m"},
                },
                {"name": "sma-cross", "label": "medium", "parameters": {"fast": 5, "slow": 20}},
                {"name": "sma-cross", "label": "slow", "parameters": {"fast": 10, "slow": 40}},
            ],
            "metric": "totalPnl",
            "parallelism": 2,
        },
    }


def test_a_walker_runs_one_task_per_strategy_and_ranks_them_in_its_status(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-walk"
    cluster.create("walkers", walker(name))
    job = wait_for("the Job", lambda: _job(cluster, f"{name}-job"), timeout=30, operator=operator)
    assert job.spec.completion_mode == "Indexed"
    assert job.spec.completions == 3
    assert job.spec.parallelism == 2

    def finished() -> dict[str, Any] | None:
        status = (cluster.get("walkers", name) or {}).get("status") or {}
        return status if status.get("phase") in ("Done", "Failed") else None

    status = wait_for("the Walker to finish", finished, timeout=240, interval=0.5, operator=operator)
    assert status["phase"] == "Done", status.get("message")
    assert status["strategiesTested"] == status["totalStrategies"] == 3
    rows = status["results"]
    assert [r["label"] for r in rows] == ["fast", "medium", "slow"]
    assert all(r["state"] == "Succeeded" for r in rows), rows
    winner = best_index("totalPnl", [r["metricValue"] for r in rows])
    assert winner is not None
    assert status["bestStrategy"] == rows[winner]["label"]
    assert status["bestMetric"] == rows[winner]["metricValue"]

    report_cm = cluster.core.read_namespaced_config_map(f"{name}-report", cluster.namespace)
    report = json.loads(report_cm.data["report.json"])
    assert report["bestStrategy"] == status["bestStrategy"]
    assert len(report["results"]) == 3
    assert report_cm.metadata.owner_references[0].kind == "Walker"

    cluster.delete("walkers", name)
    wait_for(
        "the Walker's Job to be garbage-collected", lambda: _job(cluster, f"{name}-job") is None, timeout=60
    )


def test_an_invalid_walker_is_rejected_with_the_schema_message(cluster: Cluster) -> None:
    body = walker("bad-walk")
    body["spec"]["frame"] = {"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"}
    body["spec"]["parallelism"] = 99
    with pytest.raises(kubernetes.client.ApiException) as err:
        cluster.create("walkers", body)
    assert err.value.status == 422
    text = err.value.body or ""
    assert "spec.parallelism" in text
    assert "frame.end must be after frame.start" in text


def _job(cluster: Cluster, name: str) -> Any:
    try:
        return cluster.batch.read_namespaced_job(name, cluster.namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_failed_walker_task_reports_its_real_error_in_the_walker_status(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-walk-err"
    body = walker(name)
    body["spec"]["frame"]["end"] = "2024-01-01T02:00:00Z"
    body["spec"]["strategies"] = [
        {"name": "a_long_tp1_sl1", "label": "good"},
        {"name": "no-such-strategy", "label": "bad"},
    ]
    cluster.create("walkers", body)

    def finished() -> dict[str, Any] | None:
        status = (cluster.get("walkers", name) or {}).get("status") or {}
        rows = status.get("results") or []
        return status if len(rows) == 2 and all(r["state"] != "Pending" for r in rows) else None

    status = wait_for("both tasks to finish", finished, timeout=120, interval=0.5, operator=operator)
    good, bad = status["results"]
    assert good["state"] == "Succeeded"
    assert bad["state"] == "Failed"
    # The task's own words (its log tail), not just the container's "Error" reason.
    assert "no-such-strategy" in bad["message"], bad
    wait_for(
        "a phase Event on the Walker",
        lambda: any(reason.startswith("Phase") for reason, _ in events_of(cluster, name)),
        timeout=20,
    )


def grid_walker(name: str) -> dict[str, Any]:
    body = walker(name)
    body["spec"]["frame"]["end"] = "2024-01-02T00:00:00Z"
    body["spec"]["strategies"] = [{"name": "sma-cross", "parameters": {"minutes": 120}}]
    body["spec"]["grid"] = {"fast": {"values": [3, 5]}, "slow": {"from": 12, "to": 20, "step": 8}}
    return body


def test_a_grid_walker_runs_its_members_as_shares_of_the_job_and_ranks_them_all(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "grid-walk"
    cluster.create("walkers", grid_walker(name))
    job = wait_for("the Job", lambda: _job(cluster, f"{name}-job"), timeout=30, operator=operator)
    assert job.spec.completions == 2  # four members, two per index (parallelism 2)
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["BACKTEST_KIT_SHARDS"] == "2" and len(json.loads(env["BACKTEST_KIT_TASKS"])) == 4

    def finished() -> dict[str, Any] | None:
        status = (cluster.get("walkers", name) or {}).get("status") or {}
        return status if status.get("phase") in ("Done", "Failed") else None

    status = wait_for("the grid Walker to finish", finished, timeout=240, interval=0.5, operator=operator)
    assert status["phase"] == "Done", status.get("message")
    rows = status["results"]
    assert [r["label"] for r in rows] == [
        "sma-cross[fast=3,slow=12]",
        "sma-cross[fast=3,slow=20]",
        "sma-cross[fast=5,slow=12]",
        "sma-cross[fast=5,slow=20]",
    ]
    assert all(r["state"] == "Succeeded" for r in rows), rows
    assert status["totalStrategies"] == status["strategiesTested"] == 4
    assert sorted(r["rank"] for r in rows) == [1, 2, 3, 4]
    winner = best_index("totalPnl", [r["metricValue"] for r in rows])
    assert winner is not None and status["bestStrategy"] == rows[winner]["label"]
    report = json.loads(
        cluster.core.read_namespaced_config_map(f"{name}-report", cluster.namespace).data["report.json"]
    )
    assert report["results"][1]["parameters"] == {"fast": 3, "slow": 20, "minutes": 120}


def test_a_grid_walker_with_a_bad_axis_or_two_strategies_is_refused_by_the_schema(cluster: Cluster) -> None:
    body = grid_walker("bad-grid")
    body["spec"]["grid"]["slow"] = {"from": 50, "to": 20, "step": 0}
    body["spec"]["grid"]["fast"] = {"values": [3], "from": 1, "to": 2}
    with pytest.raises(kubernetes.client.ApiException) as err:
        cluster.create("walkers", body)
    assert err.value.status == 422
    text = err.value.body or ""
    assert "step must be greater than 0" in text and "must not be below its from" in text
    assert "either values or a range" in text
    two = grid_walker("bad-grid-two")
    two["spec"]["strategies"].append({"name": "momentum"})
    with pytest.raises(kubernetes.client.ApiException) as err:
        cluster.create("walkers", two)
    assert "a grid varies one strategy" in (err.value.body or "")


def test_a_grid_the_schema_passes_but_the_operator_cannot_expand_fails_with_an_invalid_spec_condition(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "odd-grid"
    body = grid_walker(name)
    body["spec"]["grid"] = {"fast": {"values": [3, {"deep": 1}]}, "slow": {"from": 1, "to": 600}}
    cluster.create("walkers", body)

    def failed() -> dict[str, Any] | None:
        status = (cluster.get("walkers", name) or {}).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for("the Walker to be refused", failed, timeout=30, interval=0.3, operator=operator)
    assert (
        "axis 'fast'" in status["message"] and "is not a number, a string or a boolean" in status["message"]
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert _job(cluster, f"{name}-job") is None
