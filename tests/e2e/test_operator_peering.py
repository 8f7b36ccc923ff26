"""One active operator: two operators joined in kopf peering never run a second runner for a trader,
and never bring back the runner of a trader the other one drained and released."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from test_livetrader_lifecycle import RUNNER_SELECTOR, start_trader_with_open_signal

from conftest import Cluster, OperatorProcess, wait_for


def test_two_peered_operators_never_run_two_runners_or_revive_a_drained_trader(
    cluster: Cluster, operator_factory: Callable[..., OperatorProcess], pod_recorder: Any
) -> None:
    cluster.custom.create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        cluster.namespace,
        "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "e2e"}},
    )
    older = operator_factory(args=["--peering", "e2e"])
    time.sleep(1.2)  # the default priority is the start second: the newer operator leads
    newer = operator_factory(args=["--peering", "e2e"])
    name = "btc-peer"
    recorder = pod_recorder(RUNNER_SELECTOR)
    start_trader_with_open_signal(cluster, newer, name, minutes=20, speed=600)
    cluster.delete("livetraders", name)
    wait_for(
        "the LiveTrader to be gone",
        lambda: cluster.get("livetraders", name) is None,
        timeout=90,
        operator=newer,
    )
    time.sleep(4)  # a second, unaware operator would re-create the runner of the released trader now
    assert cluster.pod(f"{name}-runner") is None, "a runner pod was re-created for a deleted trader"
    runners = [s for s in recorder.seen if s["name"] == f"{name}-runner"]
    assert len({s["uid"] for s in runners}) == 1, f"more than one runner pod existed: {runners}"
    assert "Pausing operations in favour of" in older.log_tail(400)
