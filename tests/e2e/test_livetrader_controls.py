"""Manual control of a LiveTrader through Kubernetes: ``spec.paused`` and the close annotation.

The real operator applies ``spec.paused`` to a real runner over its HTTP API (``POST /pause`` and
``/resume``, never a new pod), the runner keeps it across a crash of its process, and a new value
of ``backtestkit.dev/close-position`` closes the open position once (reason ``closed``) and is
acknowledged in the status. Everything goes through the Kubernetes API and the runner's own HTTP
API, so the tests run unchanged against a real cluster.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from typing import Any

from test_livetrader_lifecycle import live_trader, open_signal_id, status_of
from test_livetrader_safety import events_of

from conftest import Cluster, OperatorProcess, wait_for

CLOSE_ANNOTATION = "backtestkit.dev/close-position"


def runner_status(cluster: Cluster, name: str) -> dict[str, Any]:
    url = cluster.kubelet.pod_url(cluster.namespace, f"{name}-runner")
    with urllib.request.urlopen(url + "/status", timeout=5) as answer:
        return dict(json.loads(answer.read()))


def runner_answering(cluster: Cluster, name: str) -> dict[str, Any] | None:
    try:
        status = runner_status(cluster, name)
    except (OSError, KeyError, ValueError):
        return None
    return status if status.get("phase") == "running" and status.get("ready") else None


def closed_by_hand(cluster: Cluster, name: str) -> float:
    """The runner's ``signals_closed`` counter for reason ``closed`` (a close by hand)."""
    url = cluster.kubelet.pod_url(cluster.namespace, f"{name}-runner")
    with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if "signals_closed" in line and 'reason="closed"' in line and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def set_paused(cluster: Cluster, name: str, paused: bool) -> None:
    cluster.custom.patch_namespaced_custom_object(
        "backtestkit.dev",
        "v1alpha1",
        cluster.namespace,
        "livetraders",
        name,
        {"spec": {"paused": paused}},
        _content_type="application/merge-patch+json",
    )


def reasons(cluster: Cluster, name: str) -> list[str]:
    return [reason for reason, _ in events_of(cluster, name)]


def operator_asked(operator: OperatorProcess, name: str, verb: str) -> int:
    text = operator.log_path.read_text(errors="replace")
    return text.count(f"/{name} to {verb}\n") + text.count(f"/{name} to {verb} ")


def stays(what: str, probe: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe(), what
        time.sleep(0.2)


def test_spec_paused_stops_new_signals_survives_a_runner_crash_and_resuming_opens_again(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-pause"
    cluster.strategy_configmap()
    cluster.create("livetraders", live_trader(name, minutes=3, speed=600))  # a new signal every ~0.4 s
    wait_for(
        "an opened signal", lambda: status_of(cluster, name).get("signalsOpened", 0) >= 1, operator=operator
    )
    pod = cluster.pod(f"{name}-runner")
    spec_hash = pod.metadata.annotations["backtestkit.dev/spec-hash"]

    set_paused(cluster, name, True)
    wait_for(
        "status.paused", lambda: status_of(cluster, name).get("paused") is True, timeout=15, operator=operator
    )
    flat = wait_for(
        "the last open signal to close by itself",
        lambda: (lambda s: s if s.get("openSignal") is None else None)(runner_status(cluster, name)),
        timeout=15,
    )
    opened = flat["signalsOpened"]
    stays(
        "no new signal opens while paused",
        lambda: runner_status(cluster, name)["signalsOpened"] == opened,
        3,  # 30 simulated minutes
    )
    assert status_of(cluster, name)["phase"] == "Running"
    wait_for("a Paused event", lambda: "Paused" in reasons(cluster, name), timeout=10)

    # A crash: the kubelet restarts the process in place; it comes back paused from its volume.
    assert cluster.kubelet.kill_pod_process(cluster.namespace, f"{name}-runner", signal.SIGKILL)
    wait_for(
        "the restart to be reported",
        lambda: status_of(cluster, name).get("restarts", 0) >= 1,
        timeout=30,
        operator=operator,
    )
    restarted = wait_for("the restarted runner to run", lambda: runner_answering(cluster, name), timeout=30)
    assert restarted["paused"] is True
    stays(
        "no new signal opens after the restart",
        lambda: runner_status(cluster, name)["signalsOpened"] == opened,
        2,
    )
    assert operator_asked(operator, name, "pause") == 1, "the restored pause is not sent again"
    assert status_of(cluster, name)["paused"] is True

    set_paused(cluster, name, False)
    wait_for(
        "new signals after resuming",
        lambda: runner_status(cluster, name)["signalsOpened"] > opened,
        timeout=15,
        operator=operator,
    )
    wait_for("status.paused false", lambda: status_of(cluster, name).get("paused") is False, timeout=10)
    wait_for("a Resumed event", lambda: "Resumed" in reasons(cluster, name), timeout=10)
    assert operator_asked(operator, name, "resume") == 1
    current = cluster.pod(f"{name}-runner")
    assert current.metadata.uid == pod.metadata.uid, "pausing never replaces the runner pod"
    assert current.metadata.annotations["backtestkit.dev/spec-hash"] == spec_hash


def test_the_close_annotation_closes_the_open_position_once_and_is_acknowledged(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-close"
    cluster.strategy_configmap()
    cluster.create("livetraders", live_trader(name, minutes=1440, speed=60))  # held for a day
    signal_id = wait_for(
        "an open signal", lambda: open_signal_id(cluster, name), timeout=60, operator=operator
    )
    assert status_of(cluster, name).get("signalsClosed", 0) == 0

    cluster.annotate("livetraders", name, {CLOSE_ANNOTATION: "2024-05-01T12:00:00Z"})
    ack = wait_for(
        "the close request to be acknowledged",
        lambda: status_of(cluster, name).get("closeRequest"),
        timeout=15,
        operator=operator,
    )
    assert ack["value"] == "2024-05-01T12:00:00Z"
    assert ack["outcome"] == "Requested"
    assert ack["signalId"] == signal_id
    wait_for(
        "the position to close",
        lambda: runner_status(cluster, name)["signalsClosed"] >= 1,
        timeout=15,
    )
    assert closed_by_hand(cluster, name) == 1.0, "closed with reason closed"
    wait_for(
        "the trader status to count the close",
        lambda: status_of(cluster, name).get("signalsClosed") == 1,
        timeout=10,
        operator=operator,
    )
    wait_for("a CloseRequested event", lambda: "CloseRequested" in reasons(cluster, name), timeout=10)

    # The same value again (re-applied manifest): nothing more happens.
    cluster.annotate("livetraders", name, {CLOSE_ANNOTATION: "2024-05-01T12:00:00Z"})
    stays(
        "the same value closes nothing more",
        lambda: runner_status(cluster, name)["signalsClosed"] == 1,
        3,
    )
    assert status_of(cluster, name)["closeRequest"] == ack
    assert reasons(cluster, name).count("CloseRequested") == 1
    assert operator_asked(operator, name, "close its position") == 1
