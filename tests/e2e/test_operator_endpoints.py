"""The running operator answers its liveness probe and exposes the contract's metrics."""

from __future__ import annotations

import urllib.request

from conftest import Cluster, OperatorProcess, wait_for


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def test_the_operator_is_live_and_serves_its_metrics(cluster: Cluster, operator: OperatorProcess) -> None:
    wait_for(
        "the liveness endpoint", lambda: fetch(operator.liveness_url)[0] == 200, timeout=30, operator=operator
    )
    text = wait_for(
        "the metrics endpoint", lambda: fetch(operator.metrics_url)[1], timeout=30, operator=operator
    )
    for name in (
        "backtest_kit_operator_reconciliations_total",
        "backtest_kit_operator_drains_in_progress",
        "backtest_kit_operator_drain_duration_seconds",
    ):
        assert f"# TYPE {name}" in text
