"""The ``backtest-kit`` command line, run as a user would run it (a child process)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from backtest_kit.synthetic import T0_MS, window
from backtest_kit_runner.options import COMMANDS, EXCHANGE_KINDS

from .process_runs import runner_env

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
DAY_MINUTES = 1440


def cli(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backtest_kit_runner", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=runner_env(env),
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
    assert 'id="backtest-chart"' in chart and '"type":"candlestick"' in chart and "drawdown" in chart
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


def test_a_png_chart_needs_kaleido_and_a_jpg_is_refused_before_the_run(tmp_path: Path) -> None:
    import importlib.util

    common = ["backtest", "--symbol", "SYNUSDT", "--strategy", "a_long_tp1_sl1", "--exchange", "synthetic"]
    common += ["--frame", "2024-01-01..2024-01-03", "--quiet", "--report", str(tmp_path / "r.md")]
    jpg = cli(*common, "--chart", str(tmp_path / "c.jpg"))
    assert jpg.returncode == 2 and ".html, .png, .svg" in jpg.stderr
    png = cli(*common, "--chart", str(tmp_path / "c.png"))
    if importlib.util.find_spec("kaleido") is None:
        assert png.returncode == 2 and "need kaleido" in png.stderr and "pip install kaleido" in png.stderr
        assert not (tmp_path / "r.md").exists()  # refused before the run: nothing written
    else:
        assert png.returncode == 0, png.stderr
        assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_progress_bar_draws_on_a_terminal_and_stays_silent_otherwise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from backtest_kit.events import ProgressEvent
    from backtest_kit_runner.progress import BacktestProgress

    now = [0.0]
    bar = BacktestProgress(True, clock=lambda: now[0])
    now[0] = 2.0
    bar(ProgressEvent("SYNUSDT", "s", "synthetic", "f", 200, 50))
    now[0] = 8.0
    bar(ProgressEvent("SYNUSDT", "s", "synthetic", "f", 200, 200))
    BacktestProgress(False)(ProgressEvent("SYNUSDT", "s", "synthetic", "f", 200, 100))
    err = capsys.readouterr().err
    assert " 25.0% 50/200 ticks, ETA 6 s" in err  # 2 s for a quarter: 6 s for the rest
    assert "100.0% 200/200 ticks, done in 8 s" in err and err.endswith("\n")
    assert "100/200" not in err


def synthetic_csv(path: Path, first_day: int, last_day: int) -> Path:
    """The synthetic market's 1m candles of days ``first_day`` to ``last_day`` (from 2023-12-20)."""
    arr = window(first_day * DAY_MINUTES, last_day * DAY_MINUTES)
    lines = ["timestamp,open,high,low,close,volume"]
    for row in zip(arr.ts.tolist(), arr.open, arr.high, arr.low, arr.close, arr.volume, strict=True):
        lines.append(",".join([str(row[0]), *(repr(float(x)) for x in row[1:])]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_backtest_on_a_csv_file_gives_the_signals_of_the_synthetic_market(tmp_path: Path) -> None:
    assert T0_MS == 1_703_030_400_000  # day 12 below is 2024-01-01
    candles = synthetic_csv(tmp_path / "SYNUSDT.csv", 11, 15)
    common = ["backtest", "--symbol", "SYNUSDT", "--strategy", "a_long_tp1_sl1"]
    common += ["--frame", "2024-01-01..2024-01-02", "--quiet"]
    by_csv = cli(*common, "--exchange", f"csv:{candles}", "--json", str(tmp_path / "csv.json"))
    assert by_csv.returncode == 0, by_csv.stderr
    by_synthetic = cli(*common, "--exchange", "synthetic", "--json", str(tmp_path / "syn.json"))
    assert by_synthetic.returncode == 0, by_synthetic.stderr

    def comparable(name: str) -> list[dict[str, object]]:
        rows = json.loads((tmp_path / name).read_text())["signals"]
        return [{k: v for k, v in r.items() if k != "id"} for r in rows]

    assert comparable("csv.json") and comparable("csv.json") == comparable("syn.json")


def test_every_command_lists_the_same_exchange_kinds_in_its_help() -> None:
    for command in COMMANDS:
        res = cli(command, "--help")
        assert res.returncode == 0, res.stderr
        text = " ".join(res.stdout.split())  # argparse wraps lines
        for kind in EXCHANGE_KINDS:
            assert kind in text, f"{command} --help does not list {kind}"


def test_a_bad_option_exits_2_naming_the_flag_and_the_variable_before_any_work(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    res = cli(
        "backtest", "--symbol", "SYNUSDT", "--strategy", "a_long_tp1_sl1", "--frame",
        "2024-01-01..2024-01-02", "--metric", "luck", "--events", str(events),
    )  # fmt: skip
    assert res.returncode == 2
    assert "--metric / BACKTEST_KIT_METRIC" in res.stderr and "(given by --metric)" in res.stderr
    assert not events.exists()
    res = cli("walker", "--symbol", "SYNUSDT", "--strategies", "a_long_tp1_sl1", "--frame", "2024-01-01")
    assert res.returncode == 2 and "--frame / BACKTEST_KIT_FRAME" in res.stderr and "START..END" in res.stderr
    res = cli("live", "--symbol", "SYNUSDT", "--strategy", "a", "--exchange", "ftp:somewhere")
    assert res.returncode == 2 and "--exchange / BACKTEST_KIT_EXCHANGE" in res.stderr
    assert "unknown kind 'ftp'" in res.stderr


def test_the_shared_options_can_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "BACKTEST_KIT_SYMBOL": "SYNUSDT",
        "BACKTEST_KIT_STRATEGY": "a_long_tp1_sl1",
        "BACKTEST_KIT_EXCHANGE": "synthetic",
        "BACKTEST_KIT_FRAME": "2024-01-01..2024-01-01",
        "BACKTEST_KIT_JSON": str(tmp_path / "o.json"),
        "BACKTEST_KIT_OUTPUT": str(tmp_path / "result.json"),
        "BACKTEST_KIT_QUIET": "1",
    }
    res = cli("backtest", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    stats = json.loads((tmp_path / "o.json").read_text())["stats"]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["stats"] == stats and stats["totalSignals"] > 0
    assert result["frame"]["end"] - result["frame"]["start"] == (DAY_MINUTES - 1) * 60_000  # 23:59 inclusive
    flag_wins = cli("backtest", "--symbol", "BTCUSDT", env={**env, "BACKTEST_KIT_QUIET": "0"})
    assert flag_wins.returncode == 1 and "symbol=BTCUSDT" in flag_wins.stderr


def test_run_is_an_alias_and_no_command_means_live() -> None:
    for argv in (["run", "backtest", "--symbol", "S"], ["backtest", "--symbol", "S"]):
        res = cli(*argv)
        assert res.returncode == 2 and "invalid options for 'backtest'" in res.stderr
    for argv in (["run", "--symbol", "S"], ["--symbol", "S"], ["run", "live", "--symbol", "S"]):
        res = cli(*argv)
        assert res.returncode == 2 and "invalid options for 'live'" in res.stderr


def test_the_walker_compares_inline_strategies_on_a_csv_exchange(tmp_path: Path) -> None:
    candles = synthetic_csv(tmp_path / "SYNUSDT.csv", 11, 15)
    out = tmp_path / "walk.json"
    res = cli(
        "walker", "--symbol", "SYNUSDT", "--strategies", "a_long_tp1_sl1,sma-cross",
        "--exchange", f"csv:{candles}", "--frame", "2024-01-01..2024-01-02", "--metric", "totalPnl",
        "--json", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["totalStrategies"] == 2 and data["metric"] == "totalPnl"
    assert res.stdout.startswith("#")


def test_a_ccxt_exchange_is_built_through_the_adapter_and_an_unknown_id_exits_2() -> None:
    res = cli(
        "backtest", "--symbol", "BTC/USDT", "--strategy", "a_long_tp1_sl1",
        "--exchange", "ccxt:no_such_exchange", "--frame", "2024-01-01..2024-01-01",
    )  # fmt: skip
    assert res.returncode == 2
    assert "ccxt has no exchange 'no_such_exchange'" in res.stderr or "pip install ccxt" in res.stderr
