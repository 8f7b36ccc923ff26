"""Deletion and control never lose a position: the faults that used to, through the real operator.

Each test drives the real kopf operator and real runner processes (the local kubelet) into one of
the situations that once cost an open position — a runner that can no longer start, a replay that
stopped at ``until`` with its signal open, a runner pod deleted by hand mid-drain, an unauthenticated
``POST /stop`` — and checks that the position survives: the LiveTrader stays ``Draining`` with the
signal, the state volume stays, and the only way out is a drain or the abandon annotation.
Everything goes through the Kubernetes API and the runner's HTTP API, so the tests run unchanged
against a real cluster.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

from test_livetrader_lifecycle import live_trader, start_trader_with_open_signal, status_of

from conftest import Cluster, OperatorProcess, wait_for

BROKEN_STRATEGY = "raise RuntimeError('this strategy module is broken')\n"


def condition(cluster: Cluster, name: str, type_: str) -> dict[str, Any]:
    for cond in status_of(cluster, name).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def events_of(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    items = cluster.core.list_namespaced_event(
        cluster.namespace, field_selector=f"involvedObject.name={name}"
    ).items
    return [(e.reason, e.message or "") for e in items]


def has_event(cluster: Cluster, name: str, reason: str) -> bool:
    return any(r == reason for r, _ in events_of(cluster, name))


def break_strategy_configmap(cluster: Cluster) -> None:
    cluster.core.patch_namespaced_config_map(
        "e2e-strategy", cluster.namespace, {"data": {"e2e_always_long.py": BROKEN_STRATEGY}}
    )


def blocked_with(cluster: Cluster, name: str, signal_id: str) -> bool:
    status = status_of(cluster, name)
    cond = condition(cluster, name, "Draining")
    return bool(
        status.get("phase") == "Draining"
        and cond.get("reason") == "OpenSignalOnVolume"
        and (status.get("openSignal") or {}).get("id") == signal_id
        and signal_id in str(status.get("message"))
    )


def abandon_and_check_the_volume_is_kept(cluster: Cluster, operator: OperatorProcess, name: str) -> None:
    cluster.annotate("livetraders", name, {"backtestkit.dev/abandon-drain": "true"})
    wait_for("the LiveTrader to be gone", lambda: cluster.get("livetraders", name) is None, operator=operator)
    time.sleep(2)  # garbage collection would have removed an owned PVC by now
    pvc = cluster.pvc(f"{name}-state")
    assert pvc is not None, "a volume holding an abandoned position must never be deleted"
    assert not pvc.metadata.owner_references, "nothing may garbage-collect it later"
    assert pvc.metadata.deletion_timestamp is None


def test_deleting_a_trader_whose_runner_can_no_longer_start_keeps_its_open_position(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-broken"
    signal_id, _ = start_trader_with_open_signal(cluster, operator, name, minutes=1440, speed=60)
    # The strategy ConfigMap breaks; the replacement runner pod (same volume) exits 2 at start.
    break_strategy_configmap(cluster)
    cluster.core.delete_namespaced_pod(f"{name}-runner", cluster.namespace)
    wait_for(
        "the new runner to refuse its configuration",
        lambda: status_of(cluster, name).get("phase") == "Failed",
        timeout=60,
        operator=operator,
    )
    cluster.delete("livetraders", name)
    wait_for(
        "Draining, blocked by the open signal the volume holds",
        lambda: blocked_with(cluster, name, signal_id),
        timeout=60,
        operator=operator,
    )
    assert "cannot start" in str(status_of(cluster, name)["message"])
    wait_for("a DeletionBlocked event", lambda: has_event(cluster, name, "DeletionBlocked"), timeout=20)
    time.sleep(3)
    assert cluster.get("livetraders", name) is not None, "the open position holds the deletion"
    assert cluster.pvc(f"{name}-state") is not None
    abandon_and_check_the_volume_is_kept(cluster, operator, name)
    wait_for(
        "a StateVolumeRetained event", lambda: has_event(cluster, name, "StateVolumeRetained"), timeout=20
    )


def test_a_replay_that_stopped_at_until_with_an_open_signal_is_not_released_by_deletion(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-until"
    body = live_trader(name, minutes=1440, speed=600)
    body["spec"]["replay"]["until"] = "2024-01-01T00:30:00Z"
    cluster.strategy_configmap()
    cluster.create("livetraders", body)
    wait_for(
        "the runner to stop at until (phase Done)",
        lambda: status_of(cluster, name).get("phase") == "Done",
        timeout=60,
        operator=operator,
    )
    cluster.delete("livetraders", name)
    wait_for(
        "Draining, blocked by the signal left open at until",
        lambda: condition(cluster, name, "Draining").get("reason") == "OpenSignalOnVolume",
        timeout=60,
        operator=operator,
    )
    status = status_of(cluster, name)
    assert status["openSignal"]["position"] == "long"
    time.sleep(3)
    assert cluster.get("livetraders", name) is not None
    assert cluster.pvc(f"{name}-state") is not None
    abandon_and_check_the_volume_is_kept(cluster, operator, name)


def test_a_runner_pod_deleted_by_hand_mid_drain_is_replaced_by_one_that_only_drains(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-redrain"
    signal_id, pod = start_trader_with_open_signal(
        cluster, operator, name, minutes=30, speed=600, reclaim="Retain"
    )
    cluster.delete("livetraders", name)
    cluster.core.delete_namespaced_pod(f"{name}-runner", cluster.namespace)
    seen: set[str] = {signal_id}

    def replacement() -> Any:
        status = status_of(cluster, name)
        if (status.get("openSignal") or {}).get("id"):
            seen.add(status["openSignal"]["id"])
        current = cluster.pod(f"{name}-runner")
        return current if current is not None and current.metadata.uid != pod.metadata.uid else None

    new = wait_for("a replacement runner pod", replacement, timeout=60, operator=operator)
    env = {e.name: e.value for e in new.spec.containers[0].env}
    assert env.get("BACKTEST_KIT_DRAIN") == "1", "a pod started during a deletion must start draining"

    def gone() -> bool:
        status = status_of(cluster, name)
        if (status.get("openSignal") or {}).get("id"):
            seen.add(status["openSignal"]["id"])
        return cluster.get("livetraders", name) is None

    wait_for("the LiveTrader to be gone", gone, timeout=120, interval=0.1, operator=operator)
    assert seen == {signal_id}, f"the replacement runner opened a new signal: {seen - {signal_id}}"


def _post(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, method="POST", headers=headers, data=b"")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def runner_url(cluster: Cluster, name: str) -> str:
    pod = cluster.pod(f"{name}-runner")
    port = (pod.metadata.annotations or {}).get("backtestkit.dev/local-port") or "8080"
    return f"http://{pod.status.pod_ip}:{port}"


def test_the_runner_refuses_to_stop_without_its_traders_token_and_the_operator_holds_it(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-token"
    start_trader_with_open_signal(cluster, operator, name, minutes=1440, speed=60)
    url = runner_url(cluster, name)
    for path in ("/stop", "/pause", "/resume", "/close"):
        assert _post(url + path) == 401
        assert _post(url + path, "guessed") == 401
    time.sleep(1.5)
    runner = json.loads(urllib.request.urlopen(url + "/status", timeout=5).read())
    assert runner["phase"] == "running" and runner["openSignal"] is not None, "nothing changed"
    assert status_of(cluster, name)["phase"] == "Running"

    secret = cluster.core.read_namespaced_secret(f"{name}-control", cluster.namespace)
    assert secret.metadata.owner_references[0].kind == "LiveTrader"
    token = base64.b64decode(secret.data["token"]).decode()
    assert len(token) >= 32
    assert _post(url + "/stop", token) == 202
    wait_for(
        "the runner to drain on the authenticated stop",
        lambda: status_of(cluster, name).get("runnerPhase") == "draining",
        timeout=20,
        operator=operator,
    )
    # The operator authenticates too: a deletion drains (it sends the token) and finishes.
    cluster.annotate("livetraders", name, {"backtestkit.dev/abandon-drain": "true"})
    cluster.delete("livetraders", name)
    wait_for("the LiveTrader to be gone", lambda: cluster.get("livetraders", name) is None, operator=operator)
