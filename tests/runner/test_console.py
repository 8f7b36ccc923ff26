"""The ``backtest-kit`` console command reaches both the engine's subcommands and the runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backtest_kit_runner.console import main


def test_run_is_the_runner_process_and_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "live", "--symbol", "SYNUSDT"]) == 2
    assert "--strategy" in capsys.readouterr().err


def test_the_engine_subcommands_pass_through(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    code = main(
        [
            "backtest",
            "--symbol",
            "SYNUSDT",
            "--strategy",
            "a_long_tp1_sl1",
            "--exchange",
            "synthetic",
            "--frame",
            "2024-01-01..2024-01-02",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert json.loads(out.read_text())["stats"]["totalSignals"] > 0


def test_help_lists_run_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "backtest" in text and "walker" in text and "run " in text
