"""A LiveTrader's life through the real operator, a real runner and the local kubelet.

Create → PVC and pod → the runner replays the synthetic market → a signal opens → status Running
with the signal → the runner process is killed → it restarts and restores the same signal → the
LiveTrader is deleted → Draining → the signal closes → the runner exits 0 → the finalizer goes.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import kubernetes
import pytest

from conftest import Cluster, OperatorProcess, PodRecorder, wait_for

RUNNER_SELECTOR = "app.kubernetes.io/name=backtest-kit-runner"


def live_trader(
    name: str, *, minutes: int = 240, speed: float = 600, reclaim: str = "Delete"
) -> dict[str, Any]:
    return {
        "apiVersion": "backtestkit.dev/v1alpha1",
        "kind": "LiveTrader",
        "metadata": {"name": name},
        "spec": {
            "symbol": "SYNUSDT",
            "strategy": {
                "name": "e2e-always-long",
                "parameters": {"minutes": minutes},
                "module": {"configMap": {"name": "e2e-strategy", "key": "e2e_always_long.py"}},
            },
            "exchange": {"name": "synthetic"},
            "replay": {"from": "2024-01-01T00:00:00Z", "speed": speed},
            "storage": {"size": "64Mi", "reclaimPolicy": reclaim},
        },
    }


def status_of(cluster: Cluster, name: str) -> dict[str, Any]:
    body = cluster.get("livetraders", name)
    return dict((body or {}).get("status") or {})


def open_signal_id(cluster: Cluster, name: str, phase: str = "Running") -> str | None:
    status = status_of(cluster, name)
    signal_ = status.get("openSignal") or {}
    if status.get("phase") == phase and signal_.get("id"):
        return str(signal_["id"])
    return None


def start_trader_with_open_signal(
    cluster: Cluster, operator: OperatorProcess, name: str, **kw: Any
) -> tuple[str, Any]:
    cluster.strategy_configmap()
    cluster.create("livetraders", live_trader(name, **kw))
    pvc = wait_for("the state PVC", lambda: cluster.pvc(f"{name}-state"), timeout=30, operator=operator)
    assert pvc.spec.access_modes == ["ReadWriteOnce"]
    pod = wait_for("the runner pod", lambda: cluster.pod(f"{name}-runner"), timeout=30, operator=operator)
    assert pod.metadata.owner_references[0].kind == "LiveTrader"
    signal_id = wait_for(
        "status Running with an open signal",
        lambda: open_signal_id(cluster, name),
        timeout=90,
        operator=operator,
    )
    return str(signal_id), pod


def assert_drained(recorder: PodRecorder, pod_name: str) -> None:
    finals = [s for s in recorder.seen if s["name"] == pod_name and s["phase"] == "Succeeded"]
    assert finals, f"the runner pod never reached Succeeded; saw {recorder.phases()}"
    assert finals[0]["exitCode"] == 0


def test_a_live_trader_opens_a_signal_survives_a_crash_and_drains_before_it_is_deleted(
    cluster: Cluster, operator: OperatorProcess, pod_recorder: Any
) -> None:
    name = "btc-life"
    recorder = pod_recorder(RUNNER_SELECTOR)
    signal_id, pod = start_trader_with_open_signal(cluster, operator, name)
    status = status_of(cluster, name)
    assert status["openSignal"]["position"] == "long"
    assert status["openSignalSummary"].startswith("long")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"

    # A crash: the kubelet restarts the runner in place, which restores the signal from its PVC.
    assert cluster.kubelet.kill_pod_process(cluster.namespace, f"{name}-runner", signal.SIGKILL)
    wait_for(
        "the restart to be reported",
        lambda: status_of(cluster, name).get("restarts", 0) >= 1,
        timeout=60,
        operator=operator,
    )
    restored = wait_for(
        "the restarted runner to report its signal",
        lambda: open_signal_id(cluster, name) if status_of(cluster, name).get("restarts", 0) >= 1 else None,
        timeout=60,
        operator=operator,
    )
    assert restored == signal_id
    assert cluster.pod(f"{name}-runner").metadata.uid == pod.metadata.uid  # still the one runner

    # Deletion drains: Draining with the open signal, then the runner exits 0, then the object goes.
    cluster.delete("livetraders", name)
    draining = wait_for(
        "phase Draining with the open signal",
        lambda: open_signal_id(cluster, name, phase="Draining"),
        timeout=30,
        operator=operator,
    )
    assert draining == signal_id
    wait_for(
        "the LiveTrader to be gone",
        lambda: cluster.get("livetraders", name) is None,
        timeout=120,
        operator=operator,
    )
    assert_drained(recorder, f"{name}-runner")
    wait_for("the runner pod to be gone", lambda: cluster.pod(f"{name}-runner") is None, timeout=30)
    wait_for(
        "the PVC (reclaimPolicy Delete) to be gone", lambda: cluster.pvc(f"{name}-state") is None, timeout=30
    )


def test_an_operator_restarted_mid_drain_finishes_the_drain(
    cluster: Cluster, operator: OperatorProcess, pod_recorder: Any
) -> None:
    name = "btc-restart"
    recorder = pod_recorder(RUNNER_SELECTOR)
    signal_id, _pod = start_trader_with_open_signal(cluster, operator, name, reclaim="Retain")
    cluster.delete("livetraders", name)
    draining = wait_for(
        "Draining", lambda: open_signal_id(cluster, name, phase="Draining"), operator=operator
    )
    assert draining == signal_id

    operator.stop(signal.SIGKILL)
    time.sleep(2)
    body = cluster.get("livetraders", name)
    assert body is not None, "the finalizer must hold the LiveTrader while no operator drains it"
    assert "backtestkit.dev/drain" in body["metadata"]["finalizers"]

    operator.start()
    wait_for(
        "the LiveTrader to be gone",
        lambda: cluster.get("livetraders", name) is None,
        timeout=120,
        operator=operator,
    )
    assert_drained(recorder, f"{name}-runner")
    time.sleep(1)
    assert cluster.pvc(f"{name}-state") is not None, "reclaimPolicy Retain keeps the state volume"


def test_the_abandon_drain_annotation_releases_a_trader_with_an_open_signal(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-abandon"
    start_trader_with_open_signal(cluster, operator, name, minutes=1440, speed=60)
    cluster.delete("livetraders", name)
    wait_for("Draining", lambda: open_signal_id(cluster, name, phase="Draining"), operator=operator)
    time.sleep(2)
    assert cluster.get("livetraders", name) is not None, "an open signal holds the deletion"
    cluster.annotate("livetraders", name, {"backtestkit.dev/abandon-drain": "true"})
    wait_for(
        "the LiveTrader to be gone",
        lambda: cluster.get("livetraders", name) is None,
        timeout=30,
        operator=operator,
    )
    wait_for("the runner pod to be gone", lambda: cluster.pod(f"{name}-runner") is None, timeout=60)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"symbol": "btcusdt"}, "spec.symbol"),
        ({"exchange": {"name": "kraken"}}, "spec.exchange.name"),
        ({"storage": {"reclaimPolicy": "Recycle"}}, "spec.storage.reclaimPolicy"),
        (
            {"replay": {"from": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"}},
            "replay.until must be after",
        ),
    ],
)
def test_an_invalid_live_trader_is_rejected_with_the_schema_message(
    cluster: Cluster, change: dict[str, Any], message: str
) -> None:
    body = live_trader("invalid")
    body["spec"].update(change)
    with pytest.raises(kubernetes.client.ApiException) as err:
        cluster.create("livetraders", body)
    assert err.value.status == 422
    assert message in (err.value.body or "")


def test_the_symbol_of_a_live_trader_cannot_change(cluster: Cluster) -> None:
    cluster.create("livetraders", live_trader("immutable"))
    with pytest.raises(kubernetes.client.ApiException) as err:
        cluster.custom.patch_namespaced_custom_object(
            "backtestkit.dev",
            "v1alpha1",
            cluster.namespace,
            "livetraders",
            "immutable",
            {"spec": {"symbol": "BTCUSDT"}},
            _content_type="application/merge-patch+json",
        )
    assert err.value.status == 422
    assert "symbol is immutable" in (err.value.body or "")


def test_a_parameter_change_replaces_the_runner_only_between_signals(
    cluster: Cluster, operator: OperatorProcess, pod_recorder: Any
) -> None:
    name = "btc-rollout"
    recorder = pod_recorder(RUNNER_SELECTOR)
    body = live_trader(name, minutes=20)
    body["spec"]["strategy"]["parameters"]["open_before_minute"] = 30
    cluster.strategy_configmap()
    cluster.create("livetraders", body)
    wait_for("an open signal", lambda: open_signal_id(cluster, name), timeout=90, operator=operator)
    old = cluster.pod(f"{name}-runner")
    old_hash = old.metadata.annotations["backtestkit.dev/spec-hash"]

    cluster.custom.patch_namespaced_custom_object(
        "backtestkit.dev",
        "v1alpha1",
        cluster.namespace,
        "livetraders",
        name,
        {
            "spec": {
                "strategy": {"parameters": {"minutes": 20, "open_before_minute": 30, "distance_percent": 12}}
            }
        },
        _content_type="application/merge-patch+json",
    )

    def replaced() -> Any:
        pod = cluster.pod(f"{name}-runner")
        if pod is None or pod.metadata.uid == old.metadata.uid:
            return None
        return pod if pod.metadata.annotations["backtestkit.dev/spec-hash"] != old_hash else None

    new = wait_for("a runner pod with the new spec", replaced, timeout=120, operator=operator)
    wait_for(
        "SpecApplied=True for generation 2",
        lambda: any(
            c["type"] == "SpecApplied" and c["status"] == "True" and c.get("observedGeneration") == 2
            for c in status_of(cluster, name).get("conditions", [])
        ),
        timeout=60,
        operator=operator,
    )
    assert_drained(recorder, f"{name}-runner")  # the old runner drained (flat) and exited 0
    events = [(s["type"], s["uid"]) for s in recorder.seen]
    old_gone = events.index(("DELETED", old.metadata.uid))
    new_seen = next(i for i, (_, uid) in enumerate(events) if uid == new.metadata.uid)
    assert old_gone < new_seen, "the new runner pod appeared before the old one was gone"


@pytest.mark.parametrize(
    "replay",
    [{"from": "2024-01-01T00:00:00Z", "speed": 60}, None],
    ids=["speed changed", "replay removed"],
)
def test_the_replay_of_a_live_trader_cannot_change_because_its_anchor_lives_in_the_state_volume(
    cluster: Cluster, replay: dict[str, Any] | None
) -> None:
    cluster.create("livetraders", live_trader("replayed"))
    with pytest.raises(kubernetes.client.ApiException) as err:
        cluster.custom.patch_namespaced_custom_object(
            "backtestkit.dev",
            "v1alpha1",
            cluster.namespace,
            "livetraders",
            "replayed",
            {"spec": {"replay": replay}},
            _content_type="application/merge-patch+json",
        )
    assert err.value.status == 422
    assert "replay is immutable" in (err.value.body or "")
