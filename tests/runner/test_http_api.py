"""The HTTP API served over loopback by a real aiohttp server, in front of a small trader control."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from backtest_kit_runner.heartbeat import Probe
from backtest_kit_runner.http_api import ApiServer
from backtest_kit_runner.metrics import RunnerMetrics

from . import events as ev


class Control:
    """A trader control that only remembers what the API asked of it."""

    def __init__(self) -> None:
        self.alive = Probe(True, "ticking")
        self.ready = Probe(False, "restoring")
        self.stop_requests: list[str | None] = []
        self.controls: list[str] = []
        self.metrics = RunnerMetrics(symbol=ev.SYMBOL, strategy=ev.STRATEGY, exchange=ev.EXCHANGE)

    def status(self) -> Mapping[str, Any]:
        return {"phase": "draining" if self.stop_requests else "running", "openSignal": None}

    def liveness(self) -> Probe:
        return self.alive

    def readiness(self) -> Probe:
        return self.ready

    async def request_stop(self, reason: str | None) -> None:
        self.stop_requests.append(reason)

    async def pause(self) -> None:
        self.controls.append("pause")

    async def resume(self) -> None:
        self.controls.append("resume")

    async def close_pending(self) -> None:
        self.controls.append("close")

    def render_metrics(self) -> tuple[bytes, str]:
        return self.metrics.render(), self.metrics.content_type


@pytest.fixture
async def api() -> AsyncIterator[tuple[Control, str, aiohttp.ClientSession]]:
    control = Control()
    server = ApiServer(control, host="127.0.0.1", port=0)
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield control, f"http://127.0.0.1:{server.port}", session
    await server.close()


Api = tuple[Control, str, aiohttp.ClientSession]
TOKEN = "a-long-random-control-token"


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[Control, str, aiohttp.ClientSession]]:
    """The API with a control token, as the operator runs it in a pod."""
    control = Control()
    server = ApiServer(control, host="127.0.0.1", port=0, token=TOKEN)
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield control, f"http://127.0.0.1:{server.port}", session
    await server.close()


class TestProbes:
    async def test_healthz_is_200_while_the_loop_ticks_and_503_when_it_stalls(self, api: Api) -> None:
        control, url, http = api
        async with http.get(url + "/healthz") as r:
            assert r.status == 200 and (await r.json())["ok"] is True
        control.alive = Probe(False, "no tick for 130s")
        async with http.get(url + "/healthz") as r:
            assert r.status == 503
            assert await r.json() == {"ok": False, "detail": "no tick for 130s"}

    async def test_readyz_is_503_until_the_first_tick_and_then_200(self, api: Api) -> None:
        control, url, http = api
        async with http.get(url + "/readyz") as r:
            assert r.status == 503
        control.ready = Probe(True, "1 ticks")
        async with http.get(url + "/readyz") as r:
            assert r.status == 200


class TestStatusAndMetrics:
    async def test_status_is_the_controls_json(self, api: Api) -> None:
        _, url, http = api
        async with http.get(url + "/status") as r:
            assert r.status == 200 and r.content_type == "application/json"
            assert await r.json() == {"phase": "running", "openSignal": None}

    async def test_metrics_are_the_prometheus_text_format(self, api: Api) -> None:
        _, url, http = api
        async with http.get(url + "/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "backtest_kit_live_ticks_total" in await r.text()


class TestStop:
    @pytest.mark.parametrize("body", [b"", b"{}", b'{"reason": "LiveTrader deleted"}'])
    async def test_stop_accepts_an_empty_body_or_a_reason_and_answers_202(
        self, api: Api, body: bytes
    ) -> None:
        control, url, http = api
        async with http.post(url + "/stop", data=body) as r:
            assert r.status == 202
            assert (await r.json())["phase"] == "draining"
        assert len(control.stop_requests) == 1

    async def test_stop_is_idempotent(self, api: Api) -> None:
        control, url, http = api
        for _ in range(3):
            async with http.post(url + "/stop") as r:
                assert r.status == 202
        assert control.stop_requests == [None, None, None]

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            (b"not json", "JSON object"),
            (b"[1, 2]", "JSON object"),
            (b'{"open": true}', "unknown field"),
            (b'{"reason": 5}', "reason must be a string"),
        ],
    )
    async def test_a_bad_body_is_a_400_and_does_not_stop(self, api: Api, body: bytes, words: str) -> None:
        control, url, http = api
        async with http.post(url + "/stop", data=body) as r:
            assert r.status == 400
            payload = await r.json()
            assert payload["status"] == 400 and words in payload["error"]
        assert control.stop_requests == []

    async def test_an_oversized_body_is_refused(self, api: Api) -> None:
        control, url, http = api
        async with http.post(url + "/stop", data=b"{" + b" " * 10_000 + b"}") as r:
            assert r.status == 413
            assert (await r.json())["status"] == 413
        assert control.stop_requests == []


class TestErrorsAreJson:
    async def test_an_unknown_path_is_a_json_404(self, api: Api) -> None:
        _, url, http = api
        async with http.get(url + "/signals/open") as r:
            assert r.status == 404
            assert await r.json() == {"error": "no such endpoint: /signals/open", "status": 404}

    @pytest.mark.parametrize(
        ("method", "path"), [("GET", "/stop"), ("POST", "/status"), ("DELETE", "/healthz")]
    )
    async def test_a_wrong_method_is_a_json_405_with_allow(self, api: Api, method: str, path: str) -> None:
        _, url, http = api
        async with http.request(method, url + path) as r:
            assert r.status == 405
            assert (await r.json())["status"] == 405
            assert r.headers["Allow"]

    @pytest.mark.parametrize("path", ["/open", "/signal", "/signals", "/params", "/strategy"])
    async def test_nothing_accepts_a_write_except_the_controls(self, api: Api, path: str) -> None:
        control, url, http = api
        for method in ("POST", "PUT", "PATCH"):
            async with http.request(method, url + path, json={"position": "long"}) as r:
                assert r.status == 404
        assert control.stop_requests == []


class TestControlToken:
    @pytest.mark.parametrize("path", ["/stop", "/pause", "/resume", "/close"])
    @pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic " + TOKEN, TOKEN])
    async def test_a_mutating_request_without_the_token_is_a_401_and_changes_nothing(
        self, guarded: Api, path: str, header: str | None
    ) -> None:
        control, url, http = guarded
        headers = {"Authorization": header} if header else {}
        async with http.post(url + path, headers=headers) as r:
            assert r.status == 401
            assert "control token" in (await r.json())["error"]
        assert control.stop_requests == [] and control.controls == []

    async def test_with_the_token_stop_pause_resume_and_close_reach_the_trader(self, guarded: Api) -> None:
        control, url, http = guarded
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/pause", "/resume", "/close", "/stop"):
            async with http.post(url + path, headers=headers) as r:
                assert r.status == 202
        assert control.controls == ["pause", "resume", "close"]
        assert control.stop_requests == [None]

    async def test_reading_needs_no_token(self, guarded: Api) -> None:
        _, url, http = guarded
        for path in ("/status", "/healthz", "/metrics"):
            async with http.get(url + path) as r:
                assert r.status in (200, 503)

    async def test_without_a_token_mutations_are_served_to_loopback_only(self) -> None:
        from backtest_kit_runner.http_api import _loopback

        assert _loopback("127.0.0.1") and _loopback("::1")
        assert not _loopback("10.0.0.8") and not _loopback(None) and not _loopback("garbage")

    async def test_a_pod_address_without_a_token_is_refused(self) -> None:
        control = Control()
        addresses = [a for a in _local_addresses() if not a.startswith("127.")]
        if not addresses:
            pytest.skip("this machine has no non-loopback address")
        server = ApiServer(control, host=addresses[0], port=0)
        await server.start()
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"http://{addresses[0]}:{server.port}/stop") as r,
            ):
                assert r.status == 403
        finally:
            await server.close()
        assert control.stop_requests == []


def _local_addresses() -> list[str]:
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("10.255.255.255", 1))
            return [str(sock.getsockname()[0])]
    except OSError:
        return []
