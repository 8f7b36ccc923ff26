"""Manual controls of a LiveTrader: ``spec.paused`` and the close-position annotation, planned
from observations (pause/resume/close actions, ``status.paused``, ``status.closeRequest``, Events)
and carried out over the runner's HTTP API, never by replacing the pod."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from operator_samples import SETTINGS, SIGNAL, pod, runner_status, trader
from prometheus_client import CollectorRegistry

from backtest_kit_operator import traders
from backtest_kit_operator.cluster import Cluster
from backtest_kit_operator.events import status_events
from backtest_kit_operator.manifests import runner_spec_hash
from backtest_kit_operator.metrics import OperatorMetrics
from backtest_kit_operator.models import parse_trader_spec
from backtest_kit_operator.phases import Action, Observation, plan_deletion, plan_trader
from backtest_kit_operator.runnerclient import RunnerClient, RunnerUnauthorized
from backtest_kit_operator.services import Services

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def runner(paused: bool = False, signal: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {**runner_status("running", signal), "paused": paused, "ready": True, **extra}


def observe(**kw: Any) -> Observation:
    base: dict[str, Any] = {"trader": trader(), "desired_hash": "h1", "pod": pod(), "now": NOW}
    base.update(kw)
    return Observation(**base)


def with_status(**status: Any) -> dict[str, Any]:
    body = trader()
    body["status"] = status
    return body


def test_paused_is_not_part_of_the_pod_spec_hash_so_toggling_it_never_restarts_the_runner() -> None:
    plain = runner_spec_hash(parse_trader_spec(trader()["spec"]), SETTINGS)
    assert runner_spec_hash(parse_trader_spec(trader(paused=True)["spec"]), SETTINGS) == plain
    assert runner_spec_hash(parse_trader_spec(trader(paused=False)["spec"]), SETTINGS) == plain
    assert parse_trader_spec(trader()["spec"]).paused is False


def test_spec_paused_pauses_a_running_runner_and_false_resumes_a_paused_one() -> None:
    assert plan_trader(observe(paused=True, runner_status=runner(False))).actions == (Action.PAUSE_RUNNER,)
    assert plan_trader(observe(paused=False, runner_status=runner(True))).actions == (Action.RESUME_RUNNER,)
    assert plan_trader(observe(paused=True, runner_status=runner(True))).actions == ()
    assert plan_trader(observe(paused=False, runner_status=runner(False))).actions == ()


def test_the_status_shows_what_the_runner_reports_and_says_why_nothing_opens() -> None:
    plan = plan_trader(observe(paused=True, runner_status=runner(True)))
    assert plan.status["paused"] is True
    assert plan.status["phase"] == "Running"
    assert plan.status["message"].startswith("paused")
    assert plan_trader(observe(runner_status=runner(False))).status["paused"] is False


def test_a_runner_still_restoring_its_state_is_not_asked_so_a_restored_pause_is_not_sent_again() -> None:
    starting = {**runner(False), "phase": "idle", "ready": False}
    assert plan_trader(observe(paused=True, runner_status=starting)).actions == ()
    not_ticked = {**runner(False), "ready": False}
    assert plan_trader(observe(paused=True, runner_status=not_ticked)).actions == ()
    old_runner = runner_status("running")  # no ``paused`` in its status: it has no such control
    assert plan_trader(observe(paused=True, runner_status=old_runner)).actions == ()


def test_an_unreachable_runner_gets_no_control_and_keeps_the_published_paused() -> None:
    plan = plan_trader(observe(trader=with_status(paused=True), paused=False, runner_error="refused"))
    assert plan.actions == ()
    assert "paused" not in plan.status


def test_a_spec_change_rollout_still_applies_the_pause_first() -> None:
    plan = plan_trader(observe(desired_hash="h2", paused=True, runner_status=runner(False)))
    assert plan.actions == (Action.PAUSE_RUNNER, Action.STOP_RUNNER)


def test_a_new_close_value_closes_the_open_signal_once_and_is_acknowledged() -> None:
    plan = plan_trader(observe(close_request="t1", runner_status=runner(signal=SIGNAL)))
    assert plan.actions == (Action.CLOSE_POSITION,)
    ack = plan.status["closeRequest"]
    assert ack == {
        "value": "t1",
        "acknowledgedAt": "2024-05-01T12:00:00Z",
        "outcome": "Requested",
        "signalId": "sig-1",
    }
    assert [(n[1], "sig-1" in n[2]) for n in plan.notes] == [("CloseRequested", True)]
    again = plan_trader(
        observe(trader=with_status(closeRequest=ack), close_request="t1", runner_status=runner(signal=SIGNAL))
    )
    assert again.actions == ()
    assert "closeRequest" not in again.status
    assert again.notes == ()
    newer = plan_trader(
        observe(trader=with_status(closeRequest=ack), close_request="t2", runner_status=runner(signal=SIGNAL))
    )
    assert newer.actions == (Action.CLOSE_POSITION,)


def test_a_close_while_flat_is_acknowledged_without_asking_the_runner() -> None:
    plan = plan_trader(observe(close_request="t1", runner_status=runner()))
    assert plan.actions == ()
    assert plan.status["closeRequest"]["outcome"] == "NothingOpen"
    assert plan.status["closeRequest"]["signalId"] is None
    assert plan.notes[0][1] == "NothingToClose"


def test_a_close_waits_for_a_runner_that_answers() -> None:
    for obs in (
        observe(close_request="t1", runner_error="refused"),
        observe(close_request="t1", pod=pod("Pending", ip=None)),
        observe(close_request="t1", runner_status={**runner(signal=SIGNAL), "phase": "idle"}),
    ):
        plan = plan_trader(obs)
        assert Action.CLOSE_POSITION not in plan.actions
        assert "closeRequest" not in plan.status


def test_a_draining_deletion_still_sends_a_close_but_no_pause() -> None:
    plan = plan_deletion(
        observe(deleting=True, paused=True, close_request="t1", runner_status=runner(signal=SIGNAL))
    )
    assert plan.actions == (Action.CLOSE_POSITION, Action.STOP_RUNNER)
    assert plan.status["phase"] == "Draining"


def test_paused_and_resumed_are_events_but_a_first_unpaused_report_is_not() -> None:
    assert [e[1] for e in status_events({"paused": False}, {"paused": True})] == ["Paused"]
    assert [e[1] for e in status_events({}, {"paused": True})] == ["Paused"]
    assert [e[1] for e in status_events({"paused": True}, {"paused": False})] == ["Resumed"]
    assert status_events({}, {"paused": False}) == []
    assert status_events({"paused": True}, {"paused": True}) == []


# the reconciler: what reaches the runner -------------------------------------------------------


class Runners:
    def __init__(self, status: dict[str, Any], refuse: bool = False) -> None:
        self._status = status
        self.refuse = refuse
        self.calls: list[str] = []

    async def status(self, address: str) -> dict[str, Any]:
        return self._status

    async def stop(self, address: str, token: str | None = None) -> None:
        self.calls.append("stop")

    async def control(self, address: str, endpoint: str, token: str | None = None) -> dict[str, Any]:
        if self.refuse:
            raise RunnerUnauthorized("POST /close answered 401")
        self.calls.append(endpoint)
        return {}


class NoCluster:
    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return pod(spec_hash=HASH)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None


HASH = runner_spec_hash(parse_trader_spec(trader()["spec"]), SETTINGS)


def services(runners: Runners) -> Services:
    return Services(
        settings=SETTINGS,
        cluster=cast(Cluster, NoCluster()),
        runners=cast(RunnerClient, runners),
        metrics=OperatorMetrics(CollectorRegistry()),
    )


def annotated(value: str, **spec: Any) -> dict[str, Any]:
    body = trader(**spec)
    body["metadata"]["annotations"] = {"backtestkit.dev/close-position": value}
    return body


async def test_the_reconciler_pauses_and_closes_over_http() -> None:
    runners = Runners(runner(False, SIGNAL))
    plan = await traders.reconcile(services(runners), annotated(" 2024-05-01T12:00 ", paused=True))
    assert runners.calls == ["pause", "close"]
    assert plan.status["closeRequest"]["value"] == "2024-05-01T12:00"


async def test_a_close_the_runner_refused_is_not_acknowledged_and_is_sent_again() -> None:
    runners = Runners(runner(False, SIGNAL), refuse=True)
    plan = await traders.reconcile(services(runners), annotated("t1"))
    assert runners.calls == []
    assert plan.status.get("closeRequest") is None
    assert all(n[1] != "CloseRequested" for n in plan.notes)
    runners.refuse = False
    plan = await traders.reconcile(services(runners), annotated("t1"))
    assert runners.calls == ["close"]
    assert plan.status["closeRequest"]["outcome"] == "Requested"


async def test_the_client_posts_each_control_with_the_token_and_returns_the_runners_status() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    seen: list[tuple[str, str | None]] = []

    async def control(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"paused": request.path == "/pause"}, status=202)

    app = web.Application()
    app.add_routes([web.post(f"/{name}", control) for name in ("pause", "resume", "close")])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = RunnerClient(timeout=2)
    try:
        address = f"127.0.0.1:{server.port}"
        assert await client.control(address, "pause", "tok") == {"paused": True}
        assert await client.control(address, "resume", "tok") == {"paused": False}
        assert await client.control(address, "close") == {"paused": False}
    finally:
        await client.close()
        await server.close()
    assert seen == [("/pause", "Bearer tok"), ("/resume", "Bearer tok"), ("/close", None)]
