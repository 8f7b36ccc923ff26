"""The Walker status reads what a real ``walker-task`` writes, not what a test imagines it writes.

The runner is started exactly as the Job's pod starts it (``python -m backtest_kit_runner
walker-task`` configured through the environment), on the synthetic exchange over a short frame;
its termination-log file becomes the termination message of a finished pod, and the operator's
status and report are built from that pod.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from operator_samples import walker

from backtest_kit.metrics import get_metric
from backtest_kit_operator.models import parse_walker_spec
from backtest_kit_operator.results import collect, summarize

FRAME = "2024-01-01T00:00:00Z..2024-01-04T00:00:00Z"
STRATEGY = {"name": "a_long_tp1_sl1", "label": "always-long"}
COMPLETE_JOB = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}


@cache
def task_output(metric: str, out_dir: Path) -> dict[str, Any]:
    """The result JSON one real walker task writes for ``metric``."""
    out = out_dir / f"termination-log-{metric}"
    env = {
        **os.environ,
        "BACKTEST_KIT_TASKS": json.dumps([{"label": STRATEGY["label"], "strategy": STRATEGY["name"]}]),
        "JOB_COMPLETION_INDEX": "0",
        "BACKTEST_KIT_SYMBOL": "SYNUSDT",
        "BACKTEST_KIT_FRAME": FRAME,
        "BACKTEST_KIT_METRIC": metric,
        "BACKTEST_KIT_OUTPUT": str(out),
    }
    done = subprocess.run(
        [sys.executable, "-m", "backtest_kit_runner", "walker-task"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("walker-task")


def finished_pod(message: str) -> dict[str, Any]:
    """A succeeded walker-task pod of completion index 0 whose termination message is ``message``."""
    return {
        "metadata": {
            "name": "real-job-0-abcde",
            "creationTimestamp": "2024-01-05T00:00:00Z",
            "annotations": {"batch.kubernetes.io/job-completion-index": "0"},
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "walker-task", "state": {"terminated": {"exitCode": 0, "message": message}}}
            ],
        },
    }


def outcome_for(metric: str, out_dir: Path) -> tuple[dict[str, Any], Any]:
    document = task_output(metric, out_dir)
    body = walker(strategies=[STRATEGY], metric=metric)
    spec = parse_walker_spec(body["spec"])
    results = collect([finished_pod(json.dumps(document))], spec)
    return document, summarize(body, spec, results, COMPLETE_JOB)


def test_the_total_trades_column_is_the_number_of_signals_the_backtest_closed(out_dir: Path) -> None:
    document, outcome = outcome_for("totalTrades", out_dir)
    signals = document["stats"]["totalSignals"]
    assert isinstance(signals, int) and signals > 0
    (row,) = outcome.status["results"]
    assert row["state"] == "Succeeded"
    assert row["totalTrades"] == signals
    assert row["metricValue"] == signals == outcome.status["bestMetric"]
    assert outcome.status["phase"] == "Done"
    assert outcome.report["lowerIsBetter"] is False


def test_every_key_statistic_column_is_filled_from_the_engines_own_statistic(out_dir: Path) -> None:
    document, outcome = outcome_for("totalTrades", out_dir)
    (row,) = outcome.status["results"]
    for column in ("winRate", "totalPnl", "sharpeRatio", "maxDrawdown"):
        assert row[column] == document["stats"][get_metric(column).stat], column


def test_a_lower_is_better_metric_is_reported_as_such(out_dir: Path) -> None:
    document, outcome = outcome_for("maxDrawdown", out_dir)
    assert outcome.report["lowerIsBetter"] is True
    assert outcome.status["results"][0]["metricValue"] == document["stats"]["maxDrawdown"]
