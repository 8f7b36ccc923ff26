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
        self.metrics = RunnerMetrics(symbol=ev.SYMBOL, strategy=ev.STRATEGY, exchange=ev.EXCHANGE)

    def status(self) -> Mapping[str, Any]:
        return {"phase": "draining" if self.stop_requests else "running", "openSignal": None}

    def liveness(self) -> Probe:
        return self.alive

    def readiness(self) -> Probe:
        return self.ready

    async def request_stop(self, reason: str | None) -> None:
        self.stop_requests.append(reason)

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
    async def test_nothing_accepts_a_write_except_stop(self, api: Api, path: str) -> None:
        control, url, http = api
        for method in ("POST", "PUT", "PATCH"):
            async with http.request(method, url + path, json={"position": "long"}) as r:
                assert r.status == 404
        assert control.stop_requests == []
