"""The live runner end to end: a real child process replaying the synthetic market, driven over HTTP
and OS signals the way the kubelet and the operator drive it."""

from __future__ import annotations

import json
import signal
import socket
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..exchanges.fake_binance import FakeBinance, Status
from .binance_feed import serve_fake_binance
from .process_runs import run_runner
from .runner_process import REPLAY, LiveRunner, events, http, read_json, wait_for

Start = Callable[..., LiveRunner]
STATE_FILE = "live/SYNUSDT_a_long_tp1_sl1_synthetic.json"
RECORD_FILE = "live/SYNUSDT_a_long_tp1_sl1_synthetic.json"
STATUS_KEYS = {
    "phase",
    "symbol",
    "strategy",
    "exchange",
    "openSignal",
    "scheduledSignal",
    "lastTickAt",
    "ticks",
    "tickErrors",
    "signalsOpened",
    "signalsClosed",
    "signalsCancelled",
    "realizedPnlPercentage",
    "realizedPnlCost",
    "config",
}
SIGNAL_KEYS = {"id", "position", "priceOpen", "priceTakeProfit", "priceStopLoss", "pendingAt"}


def always_long(speed: int, *extra: str) -> list[str]:
    return [*REPLAY, "--strategy", "a_long_tp1_sl1", "--speed", str(speed), *extra]


def open_signal(runner: LiveRunner) -> dict[str, object] | None:
    signal_ = runner.status()["openSignal"]
    return signal_ if isinstance(signal_, dict) else None


class TestAReplayRunsToItsEnd:
    def test_until_ends_the_run_with_exit_0_and_every_result_in_the_events_file(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        log = tmp_path / "events.jsonl"
        runner = live_runner(always_long(6000, "--until", "2024-01-01T03:00:00Z", "--events", str(log)))
        assert runner.wait_exit(60) == 0, runner.log()
        results = events(log)
        actions = {e["action"] for e in results}
        assert {"opened", "closed"} <= actions and actions <= {"opened", "closed", "cancelled"}
        until_ms = 1_704_078_000_000  # nothing at or after --until
        assert all((e["closeTimestamp"] or e["pendingAt"]) < until_ms for e in results)
        totals = read_json(runner.state_dir / RECORD_FILE)["totals"]  # in the engine's own record
        assert totals["signalsOpened"] == sum(e["action"] == "opened" for e in results)
        assert totals["signalsClosed"] == sum(e["action"] == "closed" for e in results)

    def test_status_follows_the_contract_while_running(self, live_runner: Start) -> None:
        runner = live_runner(always_long(1200))
        runner.wait_ready()
        opened = wait_for("an open signal", lambda: open_signal(runner))
        status = runner.status()
        assert set(status) >= STATUS_KEYS
        assert status["phase"] == "running"
        assert (status["symbol"], status["strategy"], status["exchange"]) == (
            "SYNUSDT",
            "a_long_tp1_sl1",
            "synthetic",
        )
        assert set(opened) >= SIGNAL_KEYS
        assert str(status["lastTickAt"]).startswith("2024-01-01T") and status["ticks"] > 0
        assert status["config"]["replayFrom"] == "2024-01-01T00:00:00Z" and status["config"]["speed"] == 1200

    def test_metrics_count_ticks_and_signals(self, live_runner: Start) -> None:
        runner = live_runner(always_long(6000))
        runner.wait_ready()
        wait_for("a closed signal", lambda: runner.status()["signalsClosed"] > 0)
        ticks = runner.metric("backtest_kit_live_ticks_total")
        assert ticks is not None and ticks > 0
        assert runner.metric("backtest_kit_signals_opened_total") or 0 >= 1
        assert (runner.metric("backtest_kit_live_tick_duration_seconds_count") or 0) > 0
        assert (runner.metric("backtest_kit_last_tick_timestamp_seconds") or 0) >= 1_704_067_200


class TestStopDrains:
    def test_stop_lets_the_open_signal_close_opens_nothing_new_and_exits_0(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        log = tmp_path / "events.jsonl"
        runner = live_runner(always_long(1200, "--events", str(log)))
        runner.wait_ready()
        opened = wait_for("an open signal", lambda: open_signal(runner))
        code, body = runner.post("/stop", b'{"reason": "LiveTrader deleted"}')
        assert code == 202 and body["phase"] == "draining"
        opened_at_stop = body["signalsOpened"]
        assert runner.post("/stop")[0] == 202  # idempotent
        assert runner.status()["stopReason"] == "LiveTrader deleted"
        assert runner.metric("backtest_kit_runner_draining") == 1
        assert runner.get("/readyz")[0] == 200
        assert runner.wait_exit(60) == 0, runner.log()
        results = events(log)
        assert sum(e["action"] == "opened" for e in results) == opened_at_stop
        assert results[-1]["action"] == "closed"
        assert any(e["id"] == opened["id"] for e in results if e["action"] == "closed")
        assert read_json(runner.state_dir / STATE_FILE)["pending"] is None


class TestOsSignalsLeaveWithoutDraining:
    def test_sigterm_exits_143_at_once_and_the_next_pod_resumes_the_open_signal(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        log = tmp_path / "events.jsonl"
        args = always_long(300, "--events", str(log))
        first = live_runner(args)
        first.wait_ready()
        opened = wait_for("an open signal", lambda: open_signal(first))
        started = time.monotonic()
        first.signal(signal.SIGTERM)
        assert first.wait_exit(10) == 143, first.log()
        assert time.monotonic() - started < 3
        state = read_json(first.state_dir / STATE_FILE)
        closed_ids = {e["id"] for e in events(log) if e["action"] == "closed"}
        assert (state["pending"] or {}).get("id") == opened["id"] or opened["id"] in closed_ids

        second = live_runner(args)
        second.wait_ready()

        def resumed() -> bool:
            current = open_signal(second)
            later_closed = {e["id"] for e in events(log) if e["action"] == "closed"}
            return (current is not None and current["id"] == opened["id"]) or opened["id"] in later_closed

        wait_for("the same signal after the restart", resumed)
        assert second.status()["phase"] == "running"
        opens = [e["id"] for e in events(log) if e["action"] == "opened"]
        assert opens.count(str(opened["id"])) == 1  # never opened twice

    def test_sigint_exits_130(self, live_runner: Start) -> None:
        runner = live_runner(always_long(600))
        runner.wait_ready()
        runner.signal(signal.SIGINT)
        assert runner.wait_exit(10) == 130, runner.log()


HANGING_STRATEGY = """
    import time
    from backtest_kit import add_strategy, set_config

    set_config(max_signal_generation_seconds=2)  # the liveness window follows the budgets

    async def get_signal(symbol, when, price):
        time.sleep(120)  # blocks the loop: no timeout can end this tick

    add_strategy("hangs", interval="1m", get_signal=get_signal)
"""


class TestProbes:
    def test_healthz_fails_when_ticks_stop_while_status_still_answers(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        module = tmp_path / "hangs.py"
        module.write_text(textwrap.dedent(HANGING_STRATEGY), encoding="utf-8")
        runner = live_runner([*REPLAY, "--strategy", "hangs", "--load", str(module), "--speed", "6000"])
        wait_for("the API", runner.answering)
        assert runner.get("/readyz")[0] == 503  # the first tick never finishes
        wait_for("/healthz 503", lambda: runner.get("/healthz")[0] == 503, timeout=15, every=0.25)
        assert runner.status()["phase"] == "running"
        runner.signal(signal.SIGTERM)
        assert runner.wait_exit(10) == 143


class TestConfigurationErrorsStopBeforeAnyTick:
    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--strategy", "nope"], "unknown strategy 'nope'"),
            (["--strategy", "sma-cross", "--params", '{"fast": 50, "slow": 20}'], "must be shorter"),
            (["--strategy", "a_long_tp1_sl1", "--params", '{"x": 1}'], "takes no parameters"),
            (["--strategy", "a_long_tp1_sl1", "--exchange", "kraken"], "unknown exchange 'kraken'"),
            (["--strategy", "a_long_tp1_sl1", "--load", "/nowhere/x.py"], "no such file"),
            (["--strategy", "a_long_tp1_sl1", "--speed", "-3"], "--speed"),
            (
                ["--strategy", "a_long_tp1_sl1", "--events", "/proc/events.jsonl"],
                "--events /proc/events.jsonl",
            ),
        ],
    )
    def test_exit_2_with_the_reason_and_nothing_written(
        self, live_runner: Start, args: list[str], words: str
    ) -> None:
        runner = live_runner([*REPLAY, *args])
        assert runner.wait_exit(30) == 2
        assert words in runner.log()
        assert not (runner.state_dir / "live").exists()

    def test_an_unwritable_state_dir_is_a_configuration_error(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory", encoding="utf-8")
        runner = live_runner(always_long(600), state="file/state")
        assert runner.wait_exit(30) == 2
        assert "state directory" in runner.log()

    def test_a_state_dir_holding_another_replay_is_refused(self, live_runner: Start) -> None:
        first = live_runner(always_long(6000, "--until", "2024-01-01T00:10:00Z"))
        assert first.wait_exit(30) == 0, first.log()
        other = live_runner(
            [
                "--symbol",
                "SYNUSDT",
                "--strategy",
                "a_long_tp1_sl1",
                "--replay-from",
                "2024-02-01",
                "--speed",
                "60",
            ]
        )
        assert other.wait_exit(30) == 2
        assert "holds a replay from" in other.log()

    def test_the_api_port_is_not_opened_when_the_configuration_is_bad(self, live_runner: Start) -> None:
        runner = live_runner([*REPLAY, "--strategy", "nope"])
        assert runner.wait_exit(30) == 2
        with pytest.raises(OSError):
            http("GET", runner.url + "/healthz", timeout=1)


class TestTheHttpPort:
    def test_a_port_in_use_is_a_configuration_error(self, live_runner: Start) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            runner = live_runner(always_long(600), port=port)
            assert runner.wait_exit(30) == 2
        assert f"cannot serve the HTTP API on 127.0.0.1:{port}" in runner.log()


def write_synthetic_csv(path: Path, hours: int) -> Path:
    """The synthetic market's 1m candles around 2024-01-01 as a CSV file the csv exchange reads."""
    from backtest_kit.synthetic import market

    arr = market()
    first = (1_704_067_200_000 - 3_600_000 - int(arr.ts[0])) // 60_000
    rows = ["timestamp,open,high,low,close,volume"]
    for i in range(first, first + (hours + 1) * 60):
        c = arr.candle(i)
        rows.append(f"{c.timestamp},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


class TestACsvExchange:
    def test_candles_from_a_file_are_traded_and_each_request_is_timed(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        csv = write_synthetic_csv(tmp_path / "SYNUSDT.csv", hours=6)
        runner = live_runner(
            [
                *REPLAY,
                "--strategy",
                "a_long_tp1_sl1",
                "--speed",
                "3000",
                "--exchange",
                "csv",
                "--exchange-options",
                f'{{"path": "{csv}"}}',
            ]
        )
        runner.wait_ready()
        wait_for("an opened signal", lambda: runner.status()["signalsOpened"] > 0)
        status = runner.status()
        assert status["exchange"] == "csv" and status["tickErrors"] == 0
        timed = runner.metric(
            "backtest_kit_exchange_request_duration_seconds_count", exchange="csv", interval="1m"
        )
        assert timed is not None and timed >= status["ticks"]
        assert runner.metric("backtest_kit_exchange_request_errors_total", exchange="csv") == 0
        runner.signal(signal.SIGTERM)
        assert runner.wait_exit(10) == 143


@pytest.fixture
def binance_feed() -> Iterator[FakeBinance]:
    """The exchange engineer's Binance stand-in on 127.0.0.1, served from a thread of its own."""
    with serve_fake_binance() as fake:
        yield fake


class TestABinanceFeed:
    def test_requests_and_failed_attempts_reach_the_exchange_metrics(
        self, live_runner: Start, binance_feed: FakeBinance
    ) -> None:
        binance_feed.queue(Status(500, {"code": -1000, "msg": "internal"}))  # the first request fails once
        runner = live_runner(
            [
                "--symbol",
                "BTCUSDT",
                "--strategy",
                "a_long_tp1_sl1",
                "--replay-from",
                "2024-01-01T00:00:00Z",
                "--speed",
                "3000",
                "--exchange",
                f"binance:{binance_feed.url}",
            ]
        )
        runner.wait_ready()
        wait_for("an opened signal", lambda: runner.status()["signalsOpened"] > 0)
        labels = {"exchange": "binance", "interval": "1m", "symbol": "BTCUSDT"}
        requests = runner.metric("backtest_kit_exchange_request_duration_seconds_count", **labels)
        assert requests is not None and requests >= 2
        assert runner.metric("backtest_kit_exchange_request_errors_total", exchange="binance") == 1
        assert runner.status()["tickErrors"] == 0  # the retry inside the adapter hid the failure
        runner.signal(signal.SIGTERM)
        assert runner.wait_exit(10) == 143


class TestDrainModeStateShowAndTheControlToken:
    def test_a_runner_started_in_drain_mode_exits_0_without_opening_a_signal(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        log = tmp_path / "events.jsonl"
        runner = live_runner(always_long(6000, "--events", str(log)), env={"BACKTEST_KIT_DRAIN": "1"})
        assert runner.wait_exit(60) == 0, runner.log()
        assert [e for e in events(log) if e["action"] == "opened"] == []

    def test_state_show_reports_the_signal_a_replay_left_open_at_until_without_touching_the_volume(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        runner = live_runner(always_long(6000, "--until", "2024-01-01T00:20:00Z"))
        assert runner.wait_exit(60) == 0, runner.log()
        state = runner.state_dir
        before = {p: p.stat().st_mtime_ns for p in state.rglob("*") if p.is_file()}
        out = tmp_path / "termination-log"
        shown = run_runner(["state", "show", "--state-dir", str(state), "--output", str(out)])
        assert shown.returncode == 0, shown.stderr
        report = json.loads(shown.stdout)
        assert report == json.loads(out.read_text())
        record = read_json(state / STATE_FILE)
        assert record["pending"] is not None, "the strategy opens at once and holds past 20 minutes"
        assert report["open"]["id"] == record["pending"]["id"]
        assert report["files"] == [Path(STATE_FILE).name]
        assert {p: p.stat().st_mtime_ns for p in state.rglob("*") if p.is_file()} == before

    def test_state_show_reports_a_corrupt_record_instead_of_moving_it_aside(self, tmp_path: Path) -> None:
        live = tmp_path / "state" / "live"
        live.mkdir(parents=True)
        (live / "SYNUSDT_x_synthetic.json").write_text("{not json")
        shown = run_runner(["state", "show", "--state-dir", str(tmp_path / "state")])
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["corrupt"] == ["SYNUSDT_x_synthetic.json"]
        assert (live / "SYNUSDT_x_synthetic.json").read_text() == "{not json"

    def test_with_a_control_token_file_stop_needs_the_bearer_token(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        token_file = tmp_path / "token"
        token_file.write_text("t0ken\n")
        runner = live_runner(always_long(60), env={"BACKTEST_KIT_CONTROL_TOKEN_FILE": str(token_file)})
        runner.wait_ready()
        status, _ = runner.post("/stop")
        assert status == 401
        assert runner.status()["phase"] != "draining"
        request = urllib.request.Request(
            runner.url + "/stop", method="POST", headers={"Authorization": "Bearer t0ken"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 202
        assert runner.status()["phase"] in ("draining", "done")

    def test_pause_resume_and_close_reach_the_engine_with_the_token(
        self, live_runner: Start, tmp_path: Path
    ) -> None:
        token_file = tmp_path / "token"
        token_file.write_text("t0ken")
        runner = live_runner(always_long(60), env={"BACKTEST_KIT_CONTROL_TOKEN_FILE": str(token_file)})
        runner.wait_ready()

        def post(path: str) -> dict[str, Any]:
            request = urllib.request.Request(
                runner.url + path, method="POST", headers={"Authorization": "Bearer t0ken"}
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 202
                return dict(json.loads(answer.read()))

        assert post("/pause")["paused"] is True
        assert post("/resume")["paused"] is False
        wait_for("an open signal", lambda: open_signal(runner), timeout=30)
        assert post("/close")["accepted"] == "close"
        wait_for(
            "the position to be closed", lambda: True if open_signal(runner) is None else None, timeout=30
        )
