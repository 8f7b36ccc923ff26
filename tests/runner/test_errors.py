"""What a person sees when things go wrong, run as a user runs it (a child process).

A strategy error is said once with the user's file:line and then counted; a run where every ask
failed exits 1 and writes nothing; a malformed signal is summarised by field name; a data
problem is one line (the traceback only with --debug); Ctrl-C stops a backtest at once with
exit 130 and no result files; a backtest writes nowhere it was not told to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .process_runs import runner_env

BACKTEST = ["backtest", "--symbol", "SYNUSDT", "--exchange", "synthetic"]


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backtest_kit_runner", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=runner_env(env),
        check=False,
    )


def strategy_file(tmp_path: Path, body: str, name: str = "mine") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(
        "import backtest_kit as bk\n"
        "\n"
        "async def get_signal(symbol, when, price):\n"
        f"{body}"
        "\n"
        f"bk.add_strategy({name!r}, interval='5m', get_signal=get_signal)\n",
        encoding="utf-8",
    )
    return path


def test_a_strategy_that_always_raises_is_reported_once_with_its_line_and_exits_1(tmp_path: Path) -> None:
    mine = strategy_file(tmp_path, "    ratio = 1 / 0\n    return None\n")
    res = cli(
        *BACKTEST,
        "--strategy",
        "mine",
        "--load",
        str(mine),
        "--frame",
        "2024-01-01..2024-01-10",
        "--json",
        str(tmp_path / "out.json"),
        "--report",
        str(tmp_path / "r.md"),
    )
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert lines[0] == "error: strategy 'mine' get_signal raised ZeroDivisionError: division by zero"
    assert lines[1] == f"  at {mine}:4 in get_signal"
    assert "(raised 2,879 more times)" in lines[2]  # 10 days of 5m buckets: 2,880 asks
    assert "failed on every one of its 2,880 asks" in res.stderr
    assert "Traceback" not in res.stderr and len(lines) == 4
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "r.md").exists()
    assert res.stdout == ""


def test_a_strategy_that_sometimes_raises_still_reports_and_counts(tmp_path: Path) -> None:
    body = (
        "    if when.minute % 10 == 5:\n"
        "        raise ValueError(f'odd bucket at {when:%H:%M}'[:10])\n"
        "    return bk.SignalDto(position='long', price_take_profit=price * 1.01,\n"
        "                        price_stop_loss=price * 0.99, minute_estimated_time=30)\n"
    )
    mine = strategy_file(tmp_path, body)
    res = cli(*BACKTEST, "--strategy", "mine", "--load", str(mine), "--frame", "2024-01-01..2024-01-02")
    assert res.returncode == 0, res.stderr
    first = res.stderr.splitlines()[0]
    assert first == "error: strategy 'mine' get_signal raised ValueError: odd bucket"
    assert f"  at {mine}:5 in get_signal" in res.stderr and "more times)" in res.stderr
    assert res.stdout.startswith("# Backtest Report: mine")


def test_a_signal_dict_with_wrong_keys_is_summarised_to_the_field_names(tmp_path: Path) -> None:
    mine = strategy_file(
        tmp_path, "    return {'position': 'long', 'takeProfit': price * 1.01, 'stopLoss': price}\n"
    )
    res = cli(*BACKTEST, "--strategy", "mine", "--load", str(mine), "--frame", "2024-01-01..2024-01-01")
    assert res.returncode == 1
    first = res.stderr.splitlines()[0]
    assert first == (
        "error: strategy 'mine' get_signal returned an invalid signal: "
        "missing priceTakeProfit, priceStopLoss; unknown takeProfit, stopLoss"
    )
    assert "pydantic" not in res.stderr and "input_value" not in res.stderr


def test_a_strategy_that_never_signals_says_so_with_its_ask_count(tmp_path: Path) -> None:
    mine = strategy_file(tmp_path, "    return None\n")
    res = cli(*BACKTEST, "--strategy", "mine", "--load", str(mine), "--frame", "2024-01-01..2024-01-01")
    assert res.returncode == 0
    assert (
        res.stderr == "note: 'mine' returned no signal in 288 asks of get_signal (every call returned None)\n"
    )
    assert "No signals closed yet." in res.stdout


def test_data_path_errors_are_one_actionable_line_and_the_traceback_needs_debug(tmp_path: Path) -> None:
    missing = cli(
        *BACKTEST[:-2],
        "--exchange",
        f"csv:{tmp_path / 'nope'}",
        "--strategy",
        "a_long_tp1_sl1",
        "--frame",
        "2024-01-01..2024-01-02",
    )
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "is neither a file nor a directory" in missing.stderr
    gap = tmp_path / "SYNUSDT.csv"
    gap.write_text("timestamp,open,high,low,close,volume\n1704067200000,1,1,1,1,1\n1704067320000,1,1,1,1,1\n")
    args = [
        *BACKTEST[:-2],
        "--exchange",
        f"csv:{gap}",
        "--strategy",
        "a_long_tp1_sl1",
        "--frame",
        "2024-01-01..2024-01-02",
    ]
    plain = cli(*args)
    assert plain.returncode == 1 and plain.stderr.startswith("error: ") and plain.stderr.count("\n") == 1
    assert "symbol=SYNUSDT" in plain.stderr and "Traceback" not in plain.stderr
    debug = cli(*args, "--debug")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_ctrl_c_stops_a_backtest_within_a_second_and_writes_nothing(tmp_path: Path) -> None:
    mine = strategy_file(tmp_path, "    return None\n").read_text().replace("interval='5m'", "interval='1m'")
    (tmp_path / "slow.py").write_text(mine, encoding="utf-8")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backtest_kit_runner",
            *BACKTEST,
            "--strategy",
            "mine",
            "--load",
            str(tmp_path / "slow.py"),
            "--frame",
            "2024-01-01..2024-12-31",
            "--json",
            str(tmp_path / "o.json"),
            "--report",
            str(tmp_path / "r.md"),
            "--output",
            str(tmp_path / "result.json"),
        ],
        env=runner_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)  # loaded and well into the 525,600 asks
    assert proc.poll() is None, proc.communicate()
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 1.0
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.py", "slow.py"]


def test_a_backtest_writes_only_where_it_is_told(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    log = Path("/dev/termination-log")
    before = log.stat().st_mtime_ns if log.exists() else None
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "TMPDIR": str(home)}
    for command in (["backtest"], ["run", "backtest"]):
        res = cli(
            *command,
            *BACKTEST[1:],
            "--strategy",
            "a_long_tp1_sl1",
            "--frame",
            "2024-01-01..2024-01-02",
            "--json",
            "o.json",
            cwd=work,
            env=env,
        )
        assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in work.iterdir()) == ["o.json"]
    assert json.loads((work / "o.json").read_text())["stats"]["totalSignals"] > 0
    assert list(home.iterdir()) == []
    assert (log.stat().st_mtime_ns if log.exists() else None) == before
    assert not os.path.exists(work / "dump")
