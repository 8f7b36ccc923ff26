"""Budgets that fit the liveness window, and an API that a blocking strategy cannot stall.

Real runner processes: one against the local fake Binance server while it is down for longer than
the liveness window, one whose strategy blocks the event loop for seconds on every call.
"""

from __future__ import annotations

import asyncio
import json
import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from ..exchanges.fake_binance import FakeBinance
from .binance_feed import serve_fake_binance
from .runner_process import LiveRunner, http, wait_for

Start = Callable[..., LiveRunner]

#: Scaled-down budgets: a 2 s strategy timeout and 0.2 s between the engine's fetch attempts.
SMALL_BUDGETS = """
    from backtest_kit import set_config

    set_config(max_signal_generation_seconds=2, get_candles_retry_delay_ms=200)
"""
#: ... and half a second per request, one retry, no rate-limit wait over a second.
SMALL_EXCHANGE = json.dumps({"requestTimeout": 0.5, "maxRetries": 1, "maxRetryAfter": 1})

BLOCKING_STRATEGY = """
    import time
    from backtest_kit import add_strategy

    async def get_signal(symbol, when, price):
        time.sleep(3)  # holds the event loop: no await, no timeout can end it early

    add_strategy("blocks", interval="1m", get_signal=get_signal)
"""


class OutageBinance(FakeBinance):
    """The fake Binance server, which stalls past any request timeout and then fails while down."""

    down_until: float = 0.0
    failed: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() < self.down_until:
            self.failed += 1
            await asyncio.sleep(1.0)
            return web.json_response({"code": -1000, "msg": "down"}, status=503)
        return await super().handle(request)


@pytest.fixture
def outage_feed() -> Iterator[OutageBinance]:
    with serve_fake_binance(OutageBinance()) as fake:
        assert isinstance(fake, OutageBinance)
        yield fake


def probe_for(runner: LiveRunner, seconds: float, path: str = "/healthz") -> list[tuple[int, float]]:
    """``(status, latency s)`` of ``GET path`` every 50 ms for ``seconds``."""
    out: list[tuple[int, float]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        code, _ = http("GET", runner.url + path, timeout=5)
        out.append((code, time.monotonic() - started))
        time.sleep(0.05)
    return out


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class TestAnExchangeOutageLongerThanTheLivenessWindow:
    def test_keeps_healthz_at_200_throughout_and_trading_resumes_after_it(
        self, live_runner: Start, outage_feed: OutageBinance, tmp_path: Path
    ) -> None:
        budgets = tmp_path / "budgets.py"
        budgets.write_text(textwrap.dedent(SMALL_BUDGETS), encoding="utf-8")
        runner = live_runner(
            [
                "--symbol",
                "BTCUSDT",
                "--strategy",
                "a_long_tp1_sl1",
                "--replay-from",
                "2024-01-01T00:00:00Z",
                "--speed",
                "600",
                "--exchange",
                f"binance:{outage_feed.url}",
                "--exchange-options",
                SMALL_EXCHANGE,
                "--load",
                str(budgets),
            ]
        )
        runner.wait_ready()
        window = float(runner.get("/healthz")[1]["detail"].rsplit("window ", 1)[1].rstrip("s)"))
        assert window <= 5.0  # the scaled-down liveness window
        outage = window + 4.0
        outage_feed.down_until = time.monotonic() + outage
        during = probe_for(runner, outage + 1.0)
        assert outage_feed.failed > 0
        assert [code for code, _ in during if code != 200] == []
        before = runner.status()
        assert before["tickErrors"] > 0  # the outage failed ticks, and each was retried
        wait_for("ticks again", lambda: runner.status()["ticks"] > before["ticks"] + 5, timeout=20)
        after = runner.status()
        assert after["tickErrors"] == before["tickErrors"]  # the exchange answers again
        assert after["lastTickAt"] > before["lastTickAt"]
        assert runner.get("/healthz")[0] == 200
        runner.signal(signal.SIGTERM)
        assert runner.wait_exit(10) == 143


class TestAStrategyThatBlocksTheEventLoop:
    def test_does_not_stall_the_probes_status_or_metrics_and_sigterm_still_exits_at_once(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        module = tmp_path / "blocks.py"
        module.write_text(textwrap.dedent(BLOCKING_STRATEGY), encoding="utf-8")
        runner = live_runner(
            [
                "--symbol",
                "SYNUSDT",
                "--replay-from",
                "2024-01-01T00:00:00Z",
                "--speed",
                "600",
                "--strategy",
                "blocks",
                "--load",
                str(module),
            ]
        )
        wait_for("the API", runner.answering)
        time.sleep(0.5)  # the first get_signal is blocking the loop now (and every one after it)
        results: dict[str, list[tuple[int, float]]] = {}
        others = [
            threading.Thread(target=lambda p=p: results.__setitem__(p, probe_for(runner, 4.0, p)))
            for p in ("/status", "/metrics")
        ]
        for thread in others:
            thread.start()
        results["/healthz"] = probe_for(runner, 4.0)
        for thread in others:
            thread.join()
        for path, samples in results.items():
            assert len(samples) > 30, path
            assert {code for code, _ in samples} == {200}, path
            assert p99([latency for _, latency in samples]) < 0.1, (path, sorted(s for _, s in samples)[-5:])
        time.sleep(1.0)
        started = time.monotonic()
        runner.signal(signal.SIGTERM)
        assert runner.wait_exit(10) == 143
        assert time.monotonic() - started < 2.0
        assert "leaving without draining" in runner.log()


class TestTheBudgets:
    def test_a_tick_that_keeps_reporting_exchange_attempts_stays_alive_past_the_window(self) -> None:
        from backtest_kit_runner.heartbeat import Heartbeat

        now = [0.0]
        beat = Heartbeat(0.01, silence_s=3.0, clock=lambda: now[0])
        beat.beat()
        for _ in range(10):  # 20 s of one tick's attempts, each within the window of the last
            now[0] += 2.0
            beat.progress()
            assert beat.liveness().ok
        now[0] += beat.window_s + 0.1
        assert not beat.liveness().ok

    def test_the_live_budget_fits_the_wall_clock_liveness_window_with_margin(self) -> None:
        from backtest_kit_runner.exchange_setup import RUNNER_MAX_RETRY_AFTER_S, binance_silence_s
        from backtest_kit_runner.exchanges.binance import BinanceKlinesExchange
        from backtest_kit_runner.live_trader import SILENCE_MARGIN, live_config, longest_silence_s

        silence = longest_silence_s(
            live_config(), binance_silence_s(BinanceKlinesExchange(max_retry_after=RUNNER_MAX_RETRY_AFTER_S))
        )
        assert SILENCE_MARGIN * silence <= 2 * 61.0  # inside the two-tick-period window of a wall clock
