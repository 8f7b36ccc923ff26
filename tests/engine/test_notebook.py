"""``bk.run_backtest``: one synchronous call to a result with typed numbers, pandas tables and a chart."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import backtest_kit as bk
from backtest_kit.notebook import MAX_CHART_CANDLES, chart_interval, resolve_frame


def test_run_backtest_returns_the_summary_the_reference_stats_and_pandas_tables(tmp_path: Path) -> None:
    result = bk.run_backtest("SYNUSDT", strategy="d_sma_cross", frame="2024-01-01..2024-01-30")
    assert result.stats["totalSignals"] == 151  # the parity fixture's count for this frame
    assert result.summary.trades == 151 and result.asks > 151 and result.signal_errors == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.summary.trades = 0  # type: ignore[misc]
    trades = result.trades
    assert isinstance(trades, pd.DataFrame) and len(trades) == 151
    assert str(trades["pendingAt"].dtype).startswith("datetime64") and "pnlPercentage" in trades
    equity = result.equity
    assert isinstance(equity, pd.Series) and equity.iloc[0] == 1000.0
    assert equity.iloc[-1] == pytest.approx(result.summary.final_equity)
    assert result.summary.buy_and_hold_return is not None and result.summary.exposure is not None
    written = result.plot(tmp_path / "chart.html")
    assert written == tmp_path / "chart.html" and 'id="backtest-chart"' in written.read_text()
    assert len(result.plot().data) == 6  # without a path: the Plotly figure, for Jupyter to show


def test_frames_are_ranges_names_or_schemas() -> None:
    engine = bk.default_engine()
    frame = resolve_frame("2024-01-01..2024-01-02", engine)
    assert (frame.end_ms - frame.start_ms) // 60_000 == 2 * 1440 - 1  # both days whole
    assert resolve_frame(frame, engine) is frame
    with pytest.raises(bk.ConfigurationError, match="not after"):
        resolve_frame("2024-01-03..2024-01-01", engine)


def test_a_long_frame_is_drawn_with_at_most_about_2000_candles() -> None:
    assert chart_interval(30 * 1440) == "30m"
    assert chart_interval(525_600) == "6h" and MAX_CHART_CANDLES >= 525_600 / 360  # a year: 1,460


async def test_inside_a_running_loop_it_refuses_and_says_what_to_await() -> None:
    with pytest.raises(RuntimeError, match=r"await bk\.default_engine\(\)\.backtest\.execute"):
        bk.run_backtest("SYNUSDT", strategy="d_sma_cross", frame="2024-01-01..2024-01-02")
    await asyncio.sleep(0)


def test_without_pandas_the_tables_say_how_to_install_it(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['pandas'] = None\n"
        "import backtest_kit as bk\n"
        "r = bk.run_backtest('SYNUSDT', strategy='a_long_tp1_sl1', frame='2024-01-01..2024-01-01')\n"
        "print(r.summary.trades)\n"
        "try:\n    r.trades\nexcept ImportError as e:\n    print(e)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    assert "pip install 'backtest-kit-operator[notebook]'" in res.stdout
