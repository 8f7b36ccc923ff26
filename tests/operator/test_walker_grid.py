"""A Walker's ``spec.grid``: members from the engine's grid rules, shares of the Job, a status per member."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_samples import SETTINGS, walker

from backtest_kit_operator.manifests import build_walker_job
from backtest_kit_operator.models import SpecError, parse_walker_spec
from backtest_kit_operator.results import collect, summarize

GRID = {"fast": {"values": [3, 5, 8, 10]}, "slow": {"from": 20, "to": 50, "step": 10}}
BASE = [{"name": "sma-cross", "parameters": {"minutes": 120}}]


def grid_walker(**changes: Any) -> dict[str, Any]:
    return walker(strategies=BASE, grid=GRID, parallelism=2, **changes)


def share_pod(index: int, rows: list[dict[str, Any]] | None, *, failed: str | None = None) -> dict[str, Any]:
    message = failed if failed is not None else json.dumps({"results": rows})
    return {
        "metadata": {
            "name": f"jan-job-{index}-x",
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {
            "phase": "Failed" if failed is not None else "Succeeded",
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 1 if failed else 0, "message": message}}}
            ],
        },
    }


def test_a_grid_expands_to_named_members_with_the_fixed_parameters_under_them() -> None:
    spec = parse_walker_spec(grid_walker()["spec"])
    entries = spec.entries
    assert len(entries) == 16
    assert (
        entries[0].label == "sma-cross[fast=3,slow=20]" and entries[-1].label == "sma-cross[fast=10,slow=50]"
    )
    assert entries[1].parameters == {"minutes": 120, "fast": 3, "slow": 30}
    assert spec.task_shards == 2 and spec.shares()[1] == [1, 3, 5, 7, 9, 11, 13, 15]


def test_a_big_grid_gets_enough_indices_that_each_shares_results_fit_a_termination_message() -> None:
    spec = parse_walker_spec(
        walker(strategies=BASE, grid={"fast": "3..10", "slow": "20..55:5"}, parallelism=2)["spec"]
    )
    assert len(spec.entries) == 64 and spec.task_shards == 8
    assert max(len(share) for share in spec.shares()) == 8


def test_the_job_has_one_index_per_share_and_hands_every_member_to_the_tasks() -> None:
    job = build_walker_job(grid_walker(), SETTINGS)
    assert job["spec"]["completions"] == 2 and job["spec"]["parallelism"] == 2
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    tasks = json.loads(env["BACKTEST_KIT_TASKS"])
    assert env["BACKTEST_KIT_SHARDS"] == "2" and len(tasks) == 16
    assert tasks[5] == {
        "label": "sma-cross[fast=5,slow=30]",
        "strategy": "sma-cross",
        "params": {"fast": 5, "minutes": 120, "slow": 30},
    }
    plain = build_walker_job(walker(), SETTINGS)
    names = {e["name"] for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "BACKTEST_KIT_SHARDS" not in names and plain["spec"]["completions"] == 3


def test_the_status_ranks_every_member_and_a_failed_share_fails_only_its_members() -> None:
    body = grid_walker()
    spec = parse_walker_spec(body["spec"])
    entries = spec.entries
    rows = [
        {
            "label": entries[i].label,
            "metricValue": float(i),
            "stats": {"totalSignals": i, "sharpeRatio": float(i)},
        }
        for i in spec.shares()[0]
    ]
    rows[1] = {"label": rows[1]["label"], "metricValue": None, "stats": {}, "error": "CandleDataError: gap"}
    results = collect([share_pod(0, rows), share_pod(1, None, failed="Traceback...\nboom")], spec)
    assert [r.state for r in results[:4]] == ["Succeeded", "Failed", "Failed", "Failed"]
    assert results[2].message == "CandleDataError: gap" and "boom" in results[1].message
    outcome = summarize(body, spec, results, {"status": {}})
    status = outcome.status
    assert status["phase"] == "Done" and status["totalStrategies"] == 16 and status["strategiesFailed"] == 9
    assert status["bestStrategy"] == entries[14].label and status["results"][14]["rank"] == 1
    assert outcome.report is not None and outcome.report["results"][14]["parameters"]["fast"] == 10


@pytest.mark.parametrize(
    ("spec_changes", "expected"),
    [
        ({"grid": {"fast": {"values": [3, [4]]}}}, "spec.grid: axis 'fast': [4] is not a number"),
        ({"grid": {"a": "1..30", "b": "1..30"}}, "a Walker runs at most 512"),
        ({"grid": {"fast": [3], "2bad": [1]}}, "axis '2bad': the name must be a parameter name"),
        ({"strategies": [*BASE, {"name": "momentum"}]}, "a grid varies one strategy"),
    ],
)
def test_a_grid_the_operator_cannot_run_is_a_spec_error_naming_the_axis(
    spec_changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_walker_spec({**grid_walker()["spec"], **spec_changes})
    assert expected in str(caught.value)
