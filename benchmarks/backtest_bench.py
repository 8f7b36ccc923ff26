"""Backtest speed and memory: the 365-day frame of ``a_long_tp1_sl1`` on the synthetic market.

Target: <= 1.5 s wall and <= 150 MB peak RSS for the whole process. Each measurement runs in a
fresh interpreter (``python benchmarks/backtest_bench.py``), so start-up, imports and market
generation are included. Also reports how time scales with frame length and number of trades.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

CHILD = r"""
import asyncio, json, resource, sys, time
t0 = time.perf_counter()
import backtest_kit as bk
from backtest_kit_runner.options import BacktestOptions
strategy, frame = sys.argv[1], sys.argv[2]  # frame: START..END, read as the CLI reads it
async def main():
    n = 0
    span = BacktestOptions(symbol="SYNUSDT", strategy=strategy, frame=frame).frame
    bk.add_frame("bench", start=span.start, end=span.end, replace=True)
    async for r in bk.Backtest.run("SYNUSDT", strategy=strategy, exchange="synthetic", frame="bench"):
        n += 1
    stats = await bk.Backtest.get_data("SYNUSDT", strategy)
    return n, stats["totalSignals"]
t1 = time.perf_counter()
results, trades = asyncio.run(main())
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "run_s": t2 - t1, "results": results, "trades": trades,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(strategy: str, frame: str) -> dict[str, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, strategy, frame], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    data: dict[str, float] = json.loads(out.stdout)
    data["wall_s"] = wall
    data["rss_mb"] = max(data["rss_mb"], resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return data


def main() -> None:
    year = "2024-01-01T00:00:00Z..2024-12-30T23:59:00Z"
    runs = [measure("a_long_tp1_sl1", year) for _ in range(5)]
    walls = sorted(r["wall_s"] for r in runs)
    print(f"365-day a_long_tp1_sl1 (525,600 ticks, {int(runs[0]['trades'])} trades), whole process, 5 runs:")
    print(
        f"  wall median {walls[2]:.2f} s (min {walls[0]:.2f}, max {walls[-1]:.2f}); "
        f"peak RSS {max(r['rss_mb'] for r in runs):.0f} MB; "
        f"engine run {sorted(r['run_s'] for r in runs)[2]:.2f} s, imports {runs[0]['import_s']:.2f} s"
    )
    print("scaling with frame length (a_long_tp1_sl1, trades grow with the frame):")
    for days, end in ((30, "2024-01-30"), (91, "2024-03-31"), (182, "2024-06-30"), (365, "2024-12-30")):
        r = measure("a_long_tp1_sl1", f"2024-01-01..{end}")
        print(
            f"  {days:3d} days: {r['run_s']:.3f} s run, {int(r['trades']):5d} trades, "
            f"{r['run_s'] / max(r['trades'], 1) * 1e6:.1f} us/trade, wall {r['wall_s']:.2f} s"
        )
    print("scaling with number of trades (365 days, same ticks):")
    for strategy in ("d_sma_cross", "c_limit_sched", "a_long_tp1_sl1"):
        r = measure(strategy, year)
        print(
            f"  {strategy:15s}: {int(r['trades']):5d} trades, "
            f"run {r['run_s']:.3f} s, wall {r['wall_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
