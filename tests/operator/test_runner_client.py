"""The runner client reads /status, sends /stop, and turns every failure into RunnerUnreachable."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from backtest_kit_operator.runnerclient import (
    RunnerClient,
    RunnerMisbehaving,
    RunnerUnauthorized,
    RunnerUnreachable,
    runner_address,
)
from backtest_kit_operator.settings import OperatorSettings


async def serve(routes: list[web.RouteDef]) -> TestServer:
    app = web.Application()
    app.add_routes(routes)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def test_the_address_is_pod_ip_and_runner_port_unless_an_annotation_names_the_port() -> None:
    settings = OperatorSettings()
    pod: dict[str, Any] = {"metadata": {}, "status": {"podIP": "10.1.2.3"}}
    assert runner_address(pod, settings) == "10.1.2.3:8080"
    pod["metadata"]["annotations"] = {"backtestkit.dev/local-port": "41234"}
    assert runner_address(pod, settings) == "10.1.2.3:41234"
    assert runner_address({"metadata": {}, "status": {"podIP": "fd00::1"}}, settings) == "[fd00::1]:8080"
    assert runner_address({"metadata": {}, "status": {}}, settings) is None


async def test_status_and_stop_talk_to_the_runner_api() -> None:
    stops: list[str] = []

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"phase": "running", "openSignal": None})

    async def stop(_: web.Request) -> web.Response:
        stops.append("stop")
        return web.json_response({"phase": "draining"}, status=202)

    server = await serve([web.get("/status", status), web.post("/stop", stop)])
    client = RunnerClient(timeout=2)
    try:
        address = f"127.0.0.1:{server.port}"
        assert (await client.status(address))["phase"] == "running"
        await client.stop(address)
        assert stops == ["stop"]
    finally:
        await client.close()
        await server.close()


async def test_a_refused_connection_is_unreachable_and_chained_to_its_cause() -> None:
    server = await serve([])
    port = server.port
    await server.close()
    client = RunnerClient(timeout=1)
    try:
        with pytest.raises(RunnerUnreachable) as err:
            await client.status(f"127.0.0.1:{port}")
        assert err.value.__cause__ is not None
    finally:
        await client.close()


async def test_an_error_status_or_a_non_object_answer_is_unreachable() -> None:
    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def listing(_: web.Request) -> web.Response:
        return web.json_response([1, 2])

    server = await serve([web.get("/status", listing), web.post("/stop", broken)])
    client = RunnerClient(timeout=2)
    try:
        with pytest.raises(RunnerUnreachable, match="not an object"):
            await client.status(f"127.0.0.1:{server.port}")
        with pytest.raises(RunnerUnreachable, match="500"):
            await client.stop(f"127.0.0.1:{server.port}")
    finally:
        await client.close()
        await server.close()


async def test_an_oversized_status_is_misbehaving_and_read_only_up_to_the_limit() -> None:
    sent: list[int] = []

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b" " * 65536
        try:
            for _ in range(1024):  # 64 MiB, unannounced: the client must stop reading early
                await response.write(chunk)
                sent.append(len(chunk))
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def announced(_: web.Request) -> web.Response:
        return web.Response(body=b"{" + b" " * 300_000 + b"}", content_type="application/json")

    server = await serve([web.get("/status", huge), web.get("/announced/status", announced)])
    client = RunnerClient(timeout=5, limit=256 * 1024)
    try:
        with pytest.raises(RunnerMisbehaving, match="more than"):
            await client.status(f"127.0.0.1:{server.port}")
        with pytest.raises(RunnerMisbehaving, match="announced"):
            await client.status(f"127.0.0.1:{server.port}/announced")
    finally:
        await client.close()
        await server.close()
    assert sum(sent) < 64 * 1024 * 1024


async def test_a_runner_that_never_finishes_its_answer_times_out() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"{")
        await asyncio.sleep(10)
        return response

    server = await serve([web.get("/status", slow)])
    client = RunnerClient(timeout=0.5)
    try:
        with pytest.raises(RunnerUnreachable, match="Timeout"):
            await client.status(f"127.0.0.1:{server.port}")
    finally:
        await client.close()
        await server.close()


async def test_stop_sends_the_bearer_token_and_a_refusal_is_unauthorized() -> None:
    seen: list[str | None] = []

    async def stop(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"error": "no"}, status=401)

    server = await serve([web.post("/stop", stop)])
    client = RunnerClient(timeout=2)
    try:
        with pytest.raises(RunnerUnauthorized):
            await client.stop(f"127.0.0.1:{server.port}", "tok")
    finally:
        await client.close()
        await server.close()
    assert seen == ["Bearer tok"]
