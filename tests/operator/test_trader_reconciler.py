"""One reconciliation pass performs exactly the planned calls, in order, with the safety details."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf
import pytest
from operator_samples import SETTINGS, SIGNAL, pod, runner_status, trader
from prometheus_client import CollectorRegistry

from backtest_kit_operator import traders
from backtest_kit_operator.cluster import Cluster
from backtest_kit_operator.manifests import build_control_secret, runner_spec_hash, secret_token
from backtest_kit_operator.metrics import OperatorMetrics
from backtest_kit_operator.models import SpecError, parse_trader_spec
from backtest_kit_operator.runnerclient import RunnerClient, RunnerUnreachable
from backtest_kit_operator.services import Services


class FakeCluster:
    def __init__(self, pod_: dict[str, Any] | None = None, pvc: bool = True) -> None:
        self.pod = pod_
        self.inspection: dict[str, Any] | None = None
        self.pvc = pvc
        self.secrets: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.secret_reads = 0

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.inspection if name.endswith("-inspect") else self.pod

    async def create_pvc(self, body: dict[str, Any]) -> bool:
        self.calls.append(("create_pvc", body["metadata"]["name"]))
        return True

    async def create_pod(self, body: dict[str, Any]) -> bool:
        self.calls.append(("create_pod", body["metadata"]["name"]))
        return self.pod is None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.secret_reads += 1
        return self.secrets.get(name)

    async def create_secret(self, body: dict[str, Any]) -> bool:
        self.calls.append(("create_secret", body["metadata"]["name"]))
        if body["metadata"]["name"] in self.secrets:
            return False  # the API server's 409 AlreadyExists
        self.secrets[body["metadata"]["name"]] = body
        return True

    async def delete_pod(self, namespace: str, name: str, *, uid: str | None = None) -> bool:
        self.calls.append(("delete_pod", uid))
        return True

    async def get_pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name}} if self.pvc else None

    async def delete_pvc(self, namespace: str, name: str) -> bool:
        self.calls.append(("delete_pvc", name))
        return True


class FakeRunners:
    def __init__(self, status: dict[str, Any] | None) -> None:
        self._status = status
        self.calls: list[tuple[str, str]] = []
        self.tokens: list[str | None] = []

    async def status(self, address: str) -> dict[str, Any]:
        self.calls.append(("status", address))
        if self._status is None:
            raise RunnerUnreachable("connection refused")
        return self._status

    async def stop(self, address: str, token: str | None = None) -> None:
        self.calls.append(("stop", address))
        self.tokens.append(token)


def services(cluster: FakeCluster, runners: FakeRunners) -> Services:
    return Services(
        settings=SETTINGS,
        cluster=cast(Cluster, cluster),
        runners=cast(RunnerClient, runners),
        metrics=OperatorMetrics(CollectorRegistry()),
    )


HASH = runner_spec_hash(parse_trader_spec(trader()["spec"]), SETTINGS)


async def test_a_new_trader_gets_its_pvc_before_its_pod() -> None:
    cluster = FakeCluster()
    plan = await traders.reconcile(services(cluster, FakeRunners(None)), trader())
    assert cluster.calls == [
        ("create_pvc", "btc-state"),
        ("create_secret", "btc-control"),
        ("create_pod", "btc-runner"),
    ]
    assert plan.status["phase"] == "Pending"


async def test_a_running_trader_is_polled_at_its_pod_address_and_nothing_is_written() -> None:
    cluster = FakeCluster(pod(spec_hash=HASH))
    runners = FakeRunners(runner_status("running", SIGNAL))
    plan = await traders.reconcile(services(cluster, runners), trader())
    assert runners.calls == [("status", "10.0.0.7:8080")]
    assert cluster.calls == []
    assert plan.status["openSignal"] == SIGNAL


async def test_a_failed_pod_is_deleted_with_a_uid_precondition() -> None:
    cluster = FakeCluster(pod("Failed", spec_hash=HASH, uid="old-uid"))
    await traders.reconcile(services(cluster, FakeRunners(None)), trader())
    assert cluster.calls == [("delete_pod", "old-uid")]


async def test_a_drain_pass_asks_the_runner_to_stop_and_a_finished_one_cleans_up() -> None:
    cluster = FakeCluster(pod(spec_hash=HASH))
    runners = FakeRunners(runner_status("running", SIGNAL))
    first = await traders.reconcile(services(cluster, runners), trader(), deleting=True)
    assert ("stop", "10.0.0.7:8080") in runners.calls
    assert not first.finished
    cluster.pod = pod("Succeeded", spec_hash=HASH, uid="p1")
    inspecting = await traders.reconcile(services(cluster, runners), trader(), deleting=True)
    assert not inspecting.finished
    assert cluster.calls == [("create_pod", "btc-inspect")]
    cluster.inspection = pod(
        "Succeeded",
        uid="i1",
        annotations={"backtestkit.dev/inspected-runner": "p1"},
        container={"state": {"terminated": {"exitCode": 0, "message": '{"open":null,"scheduled":null}'}}},
    )
    last = await traders.reconcile(services(cluster, runners), trader(), deleting=True)
    assert last.finished
    assert cluster.calls[1:] == [("delete_pod", "p1"), ("delete_pvc", "btc-state"), ("delete_pod", "i1")]


async def test_a_new_traders_control_token_is_created_and_not_read_back() -> None:
    cluster = FakeCluster()
    svc = services(cluster, FakeRunners(None))
    await traders.reconcile(svc, trader())
    assert cluster.secret_reads == 1  # the look-up that found none; no read after the create
    assert list(svc.tokens.values()) == [secret_token(cluster.secrets["btc-control"])]


async def test_a_trader_whose_control_secret_exists_keeps_the_token_it_holds() -> None:
    cluster = FakeCluster()
    cluster.secrets["btc-control"] = build_control_secret(trader(), "s3cret")
    svc = services(cluster, FakeRunners(None))
    await traders.reconcile(svc, trader())
    assert list(svc.tokens.values()) == ["s3cret"]
    assert secret_token(cluster.secrets["btc-control"]) == "s3cret"


async def test_the_stop_request_carries_the_traders_control_token() -> None:
    cluster = FakeCluster(pod(spec_hash=HASH))
    cluster.secrets["btc-control"] = build_control_secret(trader(), "s3cret")
    runners = FakeRunners(runner_status("running", SIGNAL))
    await traders.reconcile(services(cluster, runners), trader(), deleting=True)
    assert runners.tokens == ["s3cret"]


async def test_an_unusable_spec_is_a_spec_error_before_any_call() -> None:
    cluster = FakeCluster()
    with pytest.raises(SpecError):
        await traders.reconcile(services(cluster, FakeRunners(None)), trader(symbol="x"))
    assert cluster.calls == []


def test_the_drain_duration_is_measured_from_the_recorded_start() -> None:
    assert traders.drain_seconds({}) is None
    seconds = traders.drain_seconds({"drainStartedAt": "2000-01-01T00:00:00Z"})
    assert seconds is not None and seconds > 0


def test_reconciliations_are_counted_by_outcome() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    with metrics.reconciliation("LiveTrader"):
        pass
    with pytest.raises(kopf.TemporaryError), metrics.reconciliation("LiveTrader"):
        raise kopf.TemporaryError("later")
    with pytest.raises(kopf.PermanentError), metrics.reconciliation("Walker"):
        raise kopf.PermanentError("never")
    sample = metrics.registry.get_sample_value
    assert (
        sample("backtest_kit_operator_reconciliations_total", {"kind": "LiveTrader", "result": "success"})
        == 1
    )
    assert (
        sample("backtest_kit_operator_reconciliations_total", {"kind": "LiveTrader", "result": "retry"}) == 1
    )
    assert (
        sample("backtest_kit_operator_reconciliations_total", {"kind": "Walker", "result": "permanent"}) == 1
    )


def test_drains_in_progress_and_their_duration_are_exposed() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.drain_started("ns/a")
    metrics.drain_started("ns/a")
    metrics.drain_started("ns/b")
    assert metrics.registry.get_sample_value("backtest_kit_operator_drains_in_progress") == 2
    metrics.drain_finished("ns/a", 12.0)
    assert metrics.registry.get_sample_value("backtest_kit_operator_drains_in_progress") == 1
    assert metrics.registry.get_sample_value("backtest_kit_operator_drain_duration_seconds_count") == 1


class SlowRunners(FakeRunners):
    """Answers after a pause and remembers how many status requests were in flight at once."""

    def __init__(self, status: dict[str, Any] | None) -> None:
        super().__init__(status)
        self.in_flight = 0
        self.most_in_flight = 0

    async def status(self, address: str) -> dict[str, Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return await super().status(address)
        finally:
            self.in_flight -= 1


async def test_no_more_passes_than_parallel_reconciles_run_at_once() -> None:
    runners = SlowRunners(runner_status("running", None))
    svc = services(FakeCluster(pod(spec_hash=HASH)), runners)
    svc.settings = SETTINGS.model_copy(update={"parallel_reconciles": 3})
    bodies = [trader() for _ in range(12)]
    for i, body in enumerate(bodies):
        body["metadata"]["name"] = f"t{i}"  # twelve traders: twelve locks, three slots
    plans = await asyncio.gather(*(traders.reconcile(svc, body) for body in bodies))
    assert runners.most_in_flight == 3
    assert [p.status["phase"] for p in plans] == ["Running"] * 12


def test_the_chart_value_of_parallel_reconciles_reaches_the_operator_environment() -> None:
    from tests.chart.chart_support import objects, operator_container

    for values, expected in (({}, "16"), ({"operatorSettings": {"parallelReconciles": 4}}, "4")):
        env = {e["name"]: e.get("value") for e in operator_container(objects(values))["env"]}
        assert env["BACKTEST_KIT_OPERATOR_PARALLEL_RECONCILES"] == expected
