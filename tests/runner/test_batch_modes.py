"""``backtest`` and ``walker-task``: real synthetic-market backtests; results where the operator looks."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest

from backtest_kit.walker import metric_value
from backtest_kit_runner.batch import TERMINATION_MESSAGE_LIMIT, result_message
from backtest_kit_runner.options import WALKER_METRICS

from .process_runs import run_runner, start_runner
from .runner_process import wait_for

FRAME = "2024-01-01T00:00:00Z..2024-01-03T00:00:00Z"
TASKS = json.dumps(
    [
        {"label": "always-long", "strategy": "a_long_tp1_sl1"},
        {"label": "trend-3-12", "strategy": "sma-cross", "params": {"fast": 3, "slow": 12}},
    ]
)


class TestWalkerTask:
    def test_the_indexed_task_writes_its_result_as_compact_json(self, tmp_path: Path) -> None:
        out = tmp_path / "termination-log"
        env = {
            "BACKTEST_KIT_TASKS": TASKS,
            "JOB_COMPLETION_INDEX": "1",
            "BACKTEST_KIT_SYMBOL": "SYNUSDT",
            "BACKTEST_KIT_FRAME": FRAME,
            "BACKTEST_KIT_OUTPUT": str(out),
        }
        done = run_runner(["walker-task"], env=env)
        assert done.returncode == 0, done.stderr
        text = out.read_text(encoding="utf-8")
        assert " " not in text and len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
        result = json.loads(text)
        assert set(result) == {"label", "strategy", "metric", "metricValue", "stats"}
        assert (result["label"], result["strategy"], result["metric"]) == (
            "trend-3-12",
            "sma-cross",
            "sharpeRatio",
        )
        assert result["stats"]["totalSignals"] > 0
        assert result["metricValue"] == result["stats"]["sharpeRatio"]

    def test_bad_task_parameters_exit_2_before_backtesting(self, tmp_path: Path) -> None:
        out = tmp_path / "termination-log"
        tasks = json.dumps([{"label": "x", "strategy": "sma-cross", "params": {"fast": "quick"}}])
        env = {
            "BACKTEST_KIT_TASKS": tasks,
            "JOB_COMPLETION_INDEX": "0",
            "BACKTEST_KIT_SYMBOL": "SYNUSDT",
            "BACKTEST_KIT_FRAME": FRAME,
            "BACKTEST_KIT_OUTPUT": str(out),
        }
        done = run_runner(["walker-task"], env=env)
        assert done.returncode == 2
        assert "invalid --params for strategy 'sma-cross'" in done.stderr and "fast" in done.stderr
        assert not out.exists()

    def test_a_missing_index_exits_2_with_the_variable_named(self, tmp_path: Path) -> None:
        env = {"BACKTEST_KIT_TASKS": TASKS, "BACKTEST_KIT_SYMBOL": "SYNUSDT", "BACKTEST_KIT_FRAME": FRAME}
        done = run_runner(["walker-task", "--output", str(tmp_path / "o")], env=env)
        assert done.returncode == 2 and "JOB_COMPLETION_INDEX: required" in done.stderr


class TestBacktest:
    def test_a_backtest_writes_stats_and_its_events(self, tmp_path: Path) -> None:
        out, events = tmp_path / "result.json", tmp_path / "events.jsonl"
        args = ["backtest", "--symbol", "SYNUSDT", "--strategy", "a_long_tp1_sl1", "--frame", FRAME]
        done = run_runner([*args, "--output", str(out), "--events", str(events), "--metric", "winRate"])
        assert done.returncode == 0, done.stderr
        result = json.loads(out.read_text(encoding="utf-8"))
        assert result["metric"] == "winRate" and result["metricValue"] == result["stats"]["winRate"]
        lines = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
        closed = [e for e in lines if e["action"] == "closed"]
        assert len(closed) == result["stats"]["totalSignals"]

    def test_an_unknown_strategy_exits_2(self, tmp_path: Path) -> None:
        args = ["backtest", "--symbol", "SYNUSDT", "--strategy", "nope", "--frame", FRAME]
        done = run_runner([*args, "--output", str(tmp_path / "o")])
        assert done.returncode == 2 and "unknown strategy 'nope'" in done.stderr


class TestTheResultMessage:
    def test_a_result_too_big_for_a_termination_message_keeps_the_comparison_metrics(self) -> None:
        stats = {f"extra{i}": 1.0 / 3 for i in range(300)} | {"sharpeRatio": 0.5, "totalSignals": 9}
        text = result_message({"label": "x", "metric": "sharpeRatio", "metricValue": 0.5, "stats": stats})
        assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
        payload = json.loads(text)
        assert payload["statsTruncated"] is True
        assert payload["stats"] == {"sharpeRatio": 0.5, "totalSignals": 9}

    @pytest.mark.parametrize("raw", [None, math.nan, math.inf, True])
    def test_a_metric_that_is_not_a_finite_number_is_null(self, raw: object) -> None:
        assert metric_value({"sharpeRatio": raw}, "sharpeRatio") is None

    def test_the_runner_offers_exactly_the_engines_walker_metrics(self) -> None:
        from backtest_kit.registry import METRICS

        assert set(WALKER_METRICS) == set(METRICS)

    def test_total_trades_falls_back_to_total_signals(self) -> None:
        assert metric_value({"totalSignals": 12}, "totalTrades") == 12.0


class TestSignals:
    def test_sigterm_stops_a_long_backtest_with_exit_143(self, tmp_path: Path) -> None:
        out = tmp_path / "result.json"
        args = ["backtest", "--symbol", "SYNUSDT", "--strategy", "d_sma_cross", "--output", str(out)]
        log = tmp_path / "runner.log"
        proc = start_runner([*args, "--frame", "2024-01-01..2024-12-31", "--log-level", "DEBUG"], log=log)
        wait_for(
            "the backtest to start", lambda: "backtest SYNUSDT d_sma_cross" in log.read_text(), every=0.01
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 143
        assert not out.exists()


class TestOutput:
    def test_an_output_that_cannot_be_written_exits_2_before_backtesting(self, tmp_path: Path) -> None:
        args = ["backtest", "--symbol", "SYNUSDT", "--strategy", "a_long_tp1_sl1", "--frame", FRAME]
        done = run_runner([*args, "--output", str(tmp_path / "missing" / "result.json")])
        assert done.returncode == 2 and "cannot write there" in done.stderr
        assert "backtest SYNUSDT" not in done.stderr


class TestTheShippedExamples:
    def test_the_momentum_example_backtests_with_parameters_and_refuses_unknown_ones(
        self, tmp_path: Path
    ) -> None:
        out = tmp_path / "m.json"
        args = ["backtest", "--symbol", "SYNUSDT", "--strategy", "momentum", "--frame", FRAME]
        done = run_runner([*args, "--params", '{"lookback": 20}', "--output", str(out)])
        assert done.returncode == 0, done.stderr
        result = json.loads(out.read_text(encoding="utf-8"))
        assert result["stats"]["totalSignals"] > 0 and result["params"]["lookback"] == 20
        bad = run_runner([*args, "--params", '{"lookbak": 20}', "--output", str(out)])
        assert bad.returncode == 2 and "lookbak" in bad.stderr
