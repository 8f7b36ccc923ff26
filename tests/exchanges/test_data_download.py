"""``backtest-kit data download`` against the local fake Binance: a real subprocess, a real cache.

The download must be incremental (only missing minutes fetched), resumable (a SIGKILL keeps what
was written, a rerun completes it with no duplicate or missing minute, equal to an uninterrupted
download), validated (a bad candle stops it, naming the minute) and readable by a backtest.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from backtest_kit.candles import MINUTE_MS

from ..runner.process_runs import runner_env
from .fake_binance import FakeBinance, Slow, expected_candle

START = 1_706_572_800_000  # 2024-01-30T00:00Z
DAYS = 4  # 2024-01-30 .. 2024-02-02: two month files
END = START + DAYS * 1440 * MINUTE_MS - MINUTE_MS


async def download(
    binance: FakeBinance, cache: Path, *extra: str, start: str = "2024-01-30"
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *command(binance, cache, *extra, start=start),
        env=runner_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def command(binance: FakeBinance, cache: Path, *extra: str, start: str = "2024-01-30") -> list[str]:
    return [
        sys.executable,
        "-m",
        "backtest_kit_runner",
        "data",
        "download",
        "--exchange",
        f"binance:{binance.url}",
        "--symbol",
        "BTCUSDT",
        "--interval",
        "1m",
        "--from",
        start,
        "--to",
        "2024-02-02",
        "--cache",
        str(cache),
        *extra,
    ]


def cached(cache: Path) -> dict[str, np.ndarray]:
    """Every month file's columns concatenated (in file order), as numpy arrays."""
    files = sorted((cache / "binance" / "BTCUSDT" / "1m").glob("*.parquet"))
    tables = [pq.read_table(f).to_pydict() for f in files]
    return {
        k: np.asarray([v for t in tables for v in t[k]])
        for k in ("timestamp", "open", "high", "low", "close", "volume")
    }


async def test_a_download_fills_month_files_with_every_minute_of_the_exchange(
    tmp_path: Path, binance: FakeBinance
) -> None:
    code, out = await download(binance, tmp_path)
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "binance" / "BTCUSDT" / "1m").iterdir()) == [
        "2024-01.parquet",
        "2024-02.parquet",
    ]
    data = cached(tmp_path)
    assert np.array_equal(data["timestamp"], np.arange(START, END + MINUTE_MS, MINUTE_MS))
    for i in (0, 1439, 2880, len(data["timestamp"]) - 1):
        ts = int(data["timestamp"][i])
        assert (
            ts,
            *(float(data[k][i]) for k in ("open", "high", "low", "close", "volume")),
        ) == expected_candle(ts, MINUTE_MS)
    assert "fetched 5,760 minutes, 0 were cached" in out and f"--exchange csv:{tmp_path / 'binance'}" in out


async def test_a_second_download_fetches_only_the_missing_minutes(
    tmp_path: Path, binance: FakeBinance
) -> None:
    code, out = await download(binance, tmp_path, start="2024-01-31")
    assert code == 0, out
    before = len(binance.requests)
    code, out = await download(binance, tmp_path)  # one more day in front
    assert code == 0, out
    assert "fetched 1,440 minutes, 4,320 were cached" in out
    asked = binance.start_times[before:]
    assert asked and min(asked) == START and max(asked) < START + 1440 * MINUTE_MS
    code, out = await download(binance, tmp_path)
    assert code == 0 and "fetched 0 minutes, 5,760 were cached" in out


async def test_a_killed_download_resumes_without_duplicate_or_missing_minutes(
    tmp_path: Path, binance: FakeBinance
) -> None:
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    code, out = await download(binance, whole)
    assert code == 0, out

    binance.queue(*[Slow(0.4)] * 12)  # every page of the next download is slow: time to kill it
    proc = await asyncio.create_subprocess_exec(
        *command(binance, resumed), env=runner_env(), stdout=asyncio.subprocess.DEVNULL
    )
    month = resumed / "binance" / "BTCUSDT" / "1m" / "2024-01.parquet"
    for _ in range(300):
        if month.exists():
            break
        await asyncio.sleep(0.02)
    assert month.exists(), "the first day was never written"
    os.kill(proc.pid, signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    partial = cached(resumed)["timestamp"]
    assert 0 < len(partial) < DAYS * 1440 and len(partial) % 1440 == 0  # whole days, nothing torn

    binance.script.clear()
    before = len(binance.requests)
    code, out = await download(binance, resumed)
    assert code == 0, out
    assert min(binance.start_times[before:]) == START + len(partial) * MINUTE_MS  # nothing refetched
    got, want = cached(resumed), cached(whole)
    assert np.array_equal(got["timestamp"], np.arange(START, END + MINUTE_MS, MINUTE_MS))
    for key, column in want.items():
        assert np.array_equal(got[key], column), key
    assert sorted(p.name for p in month.parent.iterdir()) == ["2024-01.parquet", "2024-02.parquet"]


async def test_a_bad_candle_stops_the_download_keeping_the_days_before_it(
    tmp_path: Path, binance: FakeBinance
) -> None:
    bad = START + 2 * 1440 * MINUTE_MS + 17 * MINUTE_MS
    binance.overrides[bad] = [bad, "100", "99", "101", "100", "1", bad + MINUTE_MS - 1, "0", 1, "0", "0", "0"]
    code, out = await download(binance, tmp_path)
    assert code == 1
    assert "high 99.0 below low 101.0" in out and "run again to resume" in out
    assert len(cached(tmp_path)["timestamp"]) == 2 * 1440


async def test_backtests_read_the_cache_offline(tmp_path: Path, binance: FakeBinance) -> None:
    code, out = await download(binance, tmp_path, start="2024-01-29")
    assert code == 0, out
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backtest_kit_runner",
        "backtest",
        "--symbol",
        "BTCUSDT",
        "--strategy",
        "a_long_tp1_sl1",
        "--exchange",
        f"csv:{tmp_path / 'binance'}",
        "--frame",
        "2024-01-30..2024-02-01",
        env=runner_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    report, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert report.decode().startswith("# Backtest Report: a_long_tp1_sl1") and "| Trades |" in report.decode()


async def test_bad_arguments_exit_2_before_any_request(tmp_path: Path, binance: FakeBinance) -> None:
    code, out = await download(binance, tmp_path, "--interval", "5m")
    assert code == 2 and "the cache stores 1m candles" in out
    assert binance.requests == []
