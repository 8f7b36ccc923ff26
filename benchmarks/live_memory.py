"""Bounded memory in live mode: RSS growth from 10k to 100k trades of one long replay.

A strategy asking for a signal every minute with the tightest take-profit and stop-loss the
engine allows and a one-minute lifetime trades about every other minute, so a replay of the
synthetic market at maximum speed (in-process, ``MemoryPersistence`` unless ``--file-state``)
makes ~100k trades in a few hundred simulated days. The engine keeps ``live_history_rows``
closed results in memory; the totals live in the trader's record. The resident set size is
sampled at 10k trades and at the end; target: growth below 10 MB. Prints one JSON line.

    python benchmarks/live_memory.py [--trades 100000] [--history-rows 1000] [--file-state]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, to_ms
from backtest_kit_runner.options import parse_time

STRATEGY = "memory_bench_churn"
START = "2020-01-01T00:00:00Z"
WARMUP_TRADES = 10_000


def rss_mb() -> float:
    """Current resident set size (Linux ``/proc``; the peak elsewhere), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def churn(symbol: str, when: datetime, price: float) -> bk.SignalDto:
    """Long at market, TP/SL at the engine's minimum distances (+costs), gone after a minute."""
    return bk.SignalDto(
        position="long",
        price_take_profit=price * 1.008,
        price_stop_loss=price * 0.992,
        minute_estimated_time=1,
    )


def persistence(file_state: bool, tmp: str) -> Any:
    store: Any = bk.FilePersistence(Path(tmp) / "state") if file_state else bk.MemoryPersistence()
    store.init()
    return store


async def replay(trades: int, file_state: bool, tmp: str) -> dict[str, Any]:
    bk.add_strategy(STRATEGY, interval="1m", get_signal=churn)
    store = persistence(file_state, tmp)
    start = to_ms(parse_time(START))
    clock = bk.ReplayClock(start, float("inf"), persistence=store)
    closed = 0
    at_warmup: float | None = None
    started = time.perf_counter()
    async for result in bk.Live.run(
        "SYNUSDT", strategy=STRATEGY, exchange="synthetic", clock=clock, persistence=store
    ):
        if result.action != "closed":
            continue
        closed += 1
        if closed == WARMUP_TRADES:
            gc.collect()
            at_warmup = rss_mb()
        if closed >= trades:
            break
    wall = time.perf_counter() - started
    gc.collect()
    at_end = rss_mb()
    assert at_warmup is not None, "fewer trades than the warm-up"
    status = bk.Live.get_status("SYNUSDT", STRATEGY)
    simulated_days = (clock.now_ms() - start) / (1440 * MINUTE_MS)
    return {
        "benchmark": "live_memory",
        "trades": closed,
        "totalClosed": status.get("signalsClosed"),
        "simulatedDays": round(simulated_days, 1),
        "historyRows": bk.get_config().live_history_rows,
        "persistence": "file" if file_state else "memory",
        "rssAt10kMb": round(at_warmup, 2),
        "rssAtEndMb": round(at_end, 2),
        "rssGrowthMb": round(at_end - at_warmup, 2),
        "targetMb": 10,
        "ok": at_end - at_warmup < 10,
        "wallSeconds": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--history-rows", type=int, default=None)
    parser.add_argument("--file-state", action="store_true", help="a temporary FilePersistence")
    args = parser.parse_args(argv)
    if args.trades <= WARMUP_TRADES:
        parser.error(f"--trades must be above {WARMUP_TRADES}")
    if args.history_rows is not None:
        bk.set_config(live_history_rows=args.history_rows)
    with tempfile.TemporaryDirectory() as tmp:
        report = asyncio.run(replay(args.trades, args.file_state, tmp))
    sys.stdout.write(json.dumps(report) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
