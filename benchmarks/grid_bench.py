"""Grid speed: the 16-pair SMA grid over 365 days, whole process, ``--jobs 2``, against vectorbt.

The workload is the shipped ``sma-cross`` example (15m SMA cross, TP 1.5 %, SL 1 %, 240 minutes)
with ``fast`` in 3,5,8,10 and ``slow`` in 20,30,40,50 on the synthetic market, frame
2024-01-01T00:00Z..2024-12-30T23:59Z: ``backtest-kit walker --grid ... --jobs 2`` in a fresh
process, start-up and imports included. The peer is vectorbt's broadcast of the same 16 pairs
(``sma_vbt.py grid`` of the peer benchmark folder, run with its own Python); the two alternate,
run by run, and the medians and their ratio are printed. Without the peer (no ``--peer-python``
or ``--peer-script``, or a path that does not exist) only this project is measured. Also: the
64-pair grid (fast 3..10, slow 20..55:5), and with ``--profile`` where one member's time goes::

    python benchmarks/grid_bench.py --peer-python VENV/bin/python --peer-script BENCH/sma_vbt.py
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FRAME = "2024-01-01T00:00Z..2024-12-30T23:59Z"
GRID16 = "fast=3,5,8,10 slow=20..50:10"
GRID64 = "fast=3..10 slow=20..55:5"


def ours(grid: str, jobs: int) -> dict[str, Any]:
    """One whole-process grid walk: its wall time, the member count, the best, each member's metric."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "walk.json"
        cmd = [sys.executable, "-m", "backtest_kit_runner", "walker", "--symbol", "SYNUSDT"]
        cmd += ["--strategies", "sma-cross", "--grid", grid, "--frame", FRAME, "--jobs", str(jobs)]
        cmd += ["--metric", "sharpeRatio", "--quiet", "--json", str(out)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        data = json.loads(out.read_text(encoding="utf-8"))
    results = data["strategyResults"]
    trades = [r["stats"]["totalSignals"] for r in results]
    metrics = {r["strategyName"]: r["metricValue"] for r in results}
    return {
        "wall_s": wall,
        "members": len(results),
        "best": data["bestStrategy"],
        "trades": trades,
        "metrics": metrics,
    }


def peer(python: Path, script: Path) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), str(script), "grid"], check=True, capture_output=True, text=True, cwd=script.parent
    )
    wall = time.perf_counter() - start
    line = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "members": line["pairs"], "best": line["top5"][0], "trades": line["trades"]}


def profile_member() -> str:
    """cProfile of one member's backtest (fast=5, slow=20) in this process, after a warm-up run."""
    import asyncio

    import backtest_kit as bk
    from backtest_kit_runner.example_strategies import sma_cross
    from backtest_kit_runner.options import parse_time

    start, end = (parse_time(t) for t in FRAME.split(".."))
    bk.add_frame("bench-year", start=start, end=end, replace=True)
    sma_cross.register(sma_cross.Params(fast=5, slow=20))

    async def once() -> int:
        run = await bk.default_engine().backtest.execute(
            "SYNUSDT", strategy=sma_cross.STRATEGY, exchange="synthetic", frame="bench-year"
        )
        return int(run.stats()["totalSignals"])

    asyncio.run(once())
    started = time.perf_counter()
    asyncio.run(once())
    plain = time.perf_counter() - started
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(once())
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
    body = "\n".join(line for line in text.getvalue().splitlines() if line.strip())
    return f"one member, warm process: {plain:.3f} s unprofiled\n{body}"


def median(runs: list[dict[str, Any]]) -> float:
    return statistics.median(r["wall_s"] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", type=Path, help="the Python of a venv with vectorbt")
    parser.add_argument("--peer-script", type=Path, help="sma_vbt.py of the peer benchmark folder")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (alternating)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also profile one member")
    args = parser.parse_args()

    have_peer = bool(args.peer_python and args.peer_script)
    if have_peer and not (args.peer_python.exists() and args.peer_script.exists()):
        print(f"peer skipped: {args.peer_python} or {args.peer_script} does not exist")
        have_peer = False
    elif not have_peer:
        print("peer skipped: give --peer-python and --peer-script to compare with vectorbt")
    mine: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for _ in range(args.runs):
        mine.append(ours(GRID16, args.jobs))
        if have_peer:
            theirs.append(peer(args.peer_python, args.peer_script))
    print(f"16-pair SMA grid, 365 days, whole process, {args.runs} alternating runs each (medians):")
    walls = ", ".join(f"{r['wall_s']:.2f}" for r in mine)
    print(
        f"  backtest-kit walker --grid --jobs {args.jobs}: {median(mine):6.2f} s  (runs {walls}; "
        f"{mine[0]['members']} members, best {mine[0]['best']}, trades {min(mine[0]['trades'])}.."
        f"{max(mine[0]['trades'])})"
    )
    if have_peer:
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in theirs)
        print(
            f"  vectorbt sma_vbt.py grid (broadcast):  {median(theirs):6.2f} s  (runs {walls}; "
            f"{theirs[0]['members']} columns, best {theirs[0]['best']}, trades "
            f"{min(theirs[0]['trades'])}..{max(theirs[0]['trades'])})"
        )
        print(f"  ratio backtest-kit / vectorbt: {median(mine) / median(theirs):.2f}")
    wide = [ours(GRID64, args.jobs) for _ in range(max(1, args.runs - 1))]
    per = median(wide) / wide[0]["members"]
    print(
        f"64-pair grid ({GRID64}), --jobs {args.jobs}: {median(wide):.2f} s median "
        f"({per:.3f} s per member; best {wide[0]['best']})"
    )
    if args.profile:
        print(profile_member())


if __name__ == "__main__":
    main()
