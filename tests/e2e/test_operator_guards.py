"""The operator stays truthful and bounded: quarantine, tick failures, refused images and calls, and a
runner that answers ``/status`` with a huge body — each shown on its own LiveTrader (status and
Events) while every other trader keeps being managed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
from test_livetrader_lifecycle import live_trader, start_trader_with_open_signal, status_of
from test_livetrader_safety import condition, events_of, has_event

from conftest import Cluster, OperatorProcess, free_port, rss_peak_kib, wait_for

#: A "runner" that answers every GET with an endless 300 MiB JSON-looking body, never announced.
HUGE_STATUS_SERVER = textwrap.dedent(
    """
    import http.server, sys

    class Huge(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            chunk = b'{"pad": "' + b"x" * (1 << 20)
            try:
                for _ in range(300):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Huge).serve_forever()
    """
)


@pytest.fixture
def huge_status_runner() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", HUGE_STATUS_SERVER, str(port)])
    time.sleep(0.5)
    yield port
    proc.terminate()
    proc.wait(5)


def point_operator_at(cluster: Cluster, pod_name: str, port: int) -> None:
    """Re-route the operator's runner address to ``port`` (the pod annotation it reads)."""
    cluster.core.patch_namespaced_pod(
        pod_name, cluster.namespace, {"metadata": {"annotations": {"backtestkit.dev/local-port": str(port)}}}
    )


def test_a_runner_answering_a_huge_status_degrades_only_its_own_trader(
    cluster: Cluster, operator: OperatorProcess, huge_status_runner: int
) -> None:
    cluster.create("livetraders", live_trader("good", minutes=1440, speed=60))
    start_trader_with_open_signal(cluster, operator, "bad", minutes=1440, speed=60)
    wait_for(
        "the good trader Running", lambda: status_of(cluster, "good").get("phase") == "Running", timeout=30
    )
    assert operator.proc is not None
    before = rss_peak_kib(operator.proc.pid)
    point_operator_at(cluster, "bad-runner", huge_status_runner)
    wait_for(
        "the bad trader to be marked misbehaving",
        lambda: "more than" in str(condition(cluster, "bad", "RunnerRunning").get("message")),
        timeout=30,
        operator=operator,
    )
    assert condition(cluster, "bad", "Ready")["status"] == "False"
    ticks = status_of(cluster, "good")["ticks"]
    wait_for(
        "the good trader to keep being polled",
        lambda: status_of(cluster, "good").get("ticks", 0) > ticks + 2,
        timeout=30,
        operator=operator,
    )
    time.sleep(5)  # several more polls of the huge body
    peak = rss_peak_kib(operator.proc.pid)
    print(f"operator peak RSS: {before / 1024:.0f} MiB before, {peak / 1024:.0f} MiB after the huge runner")
    assert peak - before < 64 * 1024, f"operator RSS grew by {(peak - before) / 1024:.0f} MiB"
    assert condition(cluster, "good", "RunnerRunning")["status"] == "True"
    assert condition(cluster, "bad", "RunnerRunning")["status"] == "Unknown"


def test_a_quarantined_state_makes_the_trader_not_ready_with_the_reason_and_an_event(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-frozen"
    start_trader_with_open_signal(cluster, operator, name, minutes=1440, speed=60)
    wait_for("a SignalOpened event", lambda: has_event(cluster, name, "SignalOpened"), timeout=20)
    assert has_event(cluster, name, "PhaseRunning")
    pvc = cluster.pvc(f"{name}-state")
    (record,) = (cluster.kubelet.pvc_dir(cluster.namespace, f"{name}-state", pvc.metadata.uid) / "live").glob(
        "*.json"
    )
    record.write_text("{truncated")
    assert cluster.kubelet.kill_pod_process(cluster.namespace, f"{name}-runner", signal.SIGKILL)
    wait_for(
        "Ready=False, StateQuarantined",
        lambda: condition(cluster, name, "Ready").get("reason") == "StateQuarantined",
        timeout=60,
        operator=operator,
    )
    assert "moved aside" in condition(cluster, name, "Ready")["message"]
    wait_for("a StateQuarantined event", lambda: has_event(cluster, name, "StateQuarantined"), timeout=20)


def test_an_image_outside_the_allowlist_is_refused_with_a_reason_and_no_pod(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    body = live_trader("btc-evil")
    body["spec"]["runner"] = {"image": "evil.example/miner:1"}
    cluster.strategy_configmap()
    cluster.create("livetraders", body)
    wait_for(
        "phase Failed, ImageNotAllowed",
        lambda: condition(cluster, "btc-evil", "Ready").get("reason") == "ImageNotAllowed",
        timeout=30,
        operator=operator,
    )
    assert status_of(cluster, "btc-evil")["phase"] == "Failed"
    assert "evil.example/miner:1" in status_of(cluster, "btc-evil")["message"]
    assert cluster.pod("btc-evil-runner") is None
    wait_for(
        "an ImageNotAllowed event", lambda: has_event(cluster, "btc-evil", "ImageNotAllowed"), timeout=20
    )


def test_a_pod_creation_refused_with_403_is_a_visible_condition_not_a_silent_retry(
    cluster: Cluster, operator_factory: Callable[..., OperatorProcess]
) -> None:
    # Admission refuses a pod naming a service account that does not exist (403 Forbidden).
    operator = operator_factory(env={"BACKTEST_KIT_OPERATOR_RUNNER_SERVICE_ACCOUNT": "no-such-account"})
    cluster.strategy_configmap()
    cluster.create("livetraders", live_trader("btc-403"))
    wait_for(
        "phase Failed with reason Forbidden",
        lambda: condition(cluster, "btc-403", "Ready").get("reason") == "Forbidden",
        timeout=30,
        operator=operator,
    )
    status: dict[str, Any] = status_of(cluster, "btc-403")
    assert status["phase"] == "Failed" and "forbidden" in status["message"].lower()
    wait_for("a Forbidden event", lambda: has_event(cluster, "btc-403", "Forbidden"), timeout=20)
    assert next(m for r, m in events_of(cluster, "btc-403") if r == "Forbidden")


def test_a_trader_larger_than_etcd_stores_is_refused_by_the_api_server_as_on_a_real_one(
    cluster: Cluster,
) -> None:
    body = live_trader("btc-huge")
    body["spec"]["strategy"]["parameters"] = {"blob": "x" * (2 * 1024 * 1024)}
    with pytest.raises(kubernetes.client.ApiException) as err:
        cluster.create("livetraders", body)
    assert err.value.status == 500
    assert "request is too large" in (err.value.body or "")
    assert cluster.get("livetraders", "btc-huge") is None


def test_a_trader_whose_every_tick_fails_is_not_ready_and_says_so(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    name = "btc-down"
    body = live_trader(name, speed=600)
    # An exchange nobody answers: every tick fails (the runner itself keeps running).
    body["spec"]["exchange"] = {
        "name": "binance",
        "options": {"baseUrl": "http://127.0.0.1:9", "maxRetries": "0", "requestTimeout": "1"},
    }
    cluster.strategy_configmap()
    cluster.create("livetraders", body)
    wait_for(
        "Ready=False, TickErrors",
        lambda: condition(cluster, name, "Ready").get("reason") == "TickErrors",
        timeout=40,
        operator=operator,
    )
    assert status_of(cluster, name)["tickErrors"] >= 1
    assert condition(cluster, name, "RunnerRunning")["status"] == "True"
    wait_for("a TickErrors event", lambda: has_event(cluster, name, "TickErrors"), timeout=20)
