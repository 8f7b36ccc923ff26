"""The ``backtest-kit`` command line, run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backtest_kit.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_backtest_writes_json_report_and_chart_that_match_the_reference(tmp_path: Path) -> None:
    res = cli(
        "backtest",
        "--symbol",
        "SYNUSDT",
        "--strategy",
        "d_sma_cross",
        "--exchange",
        "synthetic",
        "--frame",
        "2024-01-01..2024-01-30",
        "--json",
        str(tmp_path / "o.json"),
        "--report",
        str(tmp_path / "r.md"),
        "--chart",
        str(tmp_path / "c.html"),
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("# Backtest Report: d_sma_cross")
    out = json.loads((tmp_path / "o.json").read_text())
    expected = json.loads((FIXTURES / "d_sma_cross__f30" / "signals.json").read_text())
    assert [{k: r[k] for k in expected[0]} for r in out["signals"]] == expected
    assert all(len(r["id"]) == 36 for r in out["signals"])
    assert out["stats"]["totalSignals"] == 151
    assert (tmp_path / "r.md").read_text() == res.stdout
    chart = (tmp_path / "c.html").read_text()
    assert "<svg" in chart and "<polyline" in chart and "drawdown" in chart
    assert res.stderr == ""  # no progress bar when stderr is not a terminal


def test_load_registers_a_users_strategy_and_frame_from_a_file(tmp_path: Path) -> None:
    user = tmp_path / "mine.py"
    user.write_text(
        "from datetime import datetime, UTC\n"
        "import backtest_kit as bk\n"
        "async def flip(symbol, when, price):\n"
        "    return bk.SignalDto(position='short', price_take_profit=price*0.99,\n"
        "                        price_stop_loss=price*1.01, minute_estimated_time=45, note='mine')\n"
        "bk.add_strategy('mine', interval='30m', get_signal=flip)\n"
        "bk.add_frame('two_days', start=datetime(2024, 3, 1, tzinfo=UTC),\n"
        "             end=datetime(2024, 3, 2, tzinfo=UTC))\n"
    )
    res = cli(
        "backtest",
        "--symbol",
        "SYNUSDT",
        "--strategy",
        "mine",
        "--exchange",
        "synthetic",
        "--frame",
        "two_days",
        "--load",
        str(user),
        "--json",
        str(tmp_path / "o.json"),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "o.json").read_text())["signals"]
    assert rows and {r["position"] for r in rows} == {"short"} and {r["note"] for r in rows} == {"mine"}
    assert res.stdout == ""


def test_bad_input_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    res = cli(
        "backtest",
        "--symbol",
        "SYNUSDT",
        "--strategy",
        "nope",
        "--exchange",
        "synthetic",
        "--frame",
        "2024-01-01..2024-01-02",
    )
    assert res.returncode == 2 and "unknown strategy 'nope'" in res.stderr and "a_long_tp1_sl1" in res.stderr
    res = cli(
        "backtest",
        "--symbol",
        "SYNUSDT",
        "--strategy",
        "a_long_tp1_sl1",
        "--exchange",
        "synthetic",
        "--frame",
        "2024-01-05..2024-01-02",
    )
    assert res.returncode == 2 and "end is before start" in res.stderr
    res = cli(
        "backtest",
        "--symbol",
        "SYNUSDT",
        "--strategy",
        "a_long_tp1_sl1",
        "--exchange",
        "synthetic",
        "--frame",
        "2024-01-01..2024-01-02",
        "--load",
        str(tmp_path / "missing.py"),
    )
    assert res.returncode == 2 and "no such file" in res.stderr


def test_data_the_market_does_not_have_exits_1_naming_the_request() -> None:
    res = cli(
        "backtest",
        "--symbol",
        "SYNUSDT",
        "--strategy",
        "a_long_tp1_sl1",
        "--exchange",
        "synthetic",
        "--frame",
        "2026-01-01..2026-01-02",
    )
    assert res.returncode != 0
    res = cli(
        "backtest",
        "--symbol",
        "BTCUSDT",
        "--strategy",
        "a_long_tp1_sl1",
        "--exchange",
        "synthetic",
        "--frame",
        "2024-01-01..2024-01-02",
    )
    assert res.returncode == 1 and "symbol=BTCUSDT" in res.stderr and "interval=1m" in res.stderr


def test_the_chart_can_be_a_png(tmp_path: Path) -> None:
    res = cli(
        "backtest",
        "--symbol",
        "SYNUSDT",
        "--strategy",
        "a_long_tp1_sl1",
        "--exchange",
        "synthetic",
        "--frame",
        "2024-01-01..2024-01-03",
        "--chart",
        str(tmp_path / "c.png"),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_progress_bar_draws_on_a_terminal_and_stays_silent_otherwise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from backtest_kit.cli import _Progress
    from backtest_kit.events import ProgressEvent

    _Progress(True)(ProgressEvent("SYNUSDT", "s", "synthetic", "f", 200, 50))
    _Progress(True)(ProgressEvent("SYNUSDT", "s", "synthetic", "f", 200, 200))
    _Progress(False)(ProgressEvent("SYNUSDT", "s", "synthetic", "f", 200, 100))
    err = capsys.readouterr().err
    assert " 25.0% 50/200 ticks" in err and "100.0% 200/200 ticks\n" in err
    assert "100/200" not in err
