"""Backtest speed and memory, whole process, side by side with the plain-loop limit.

The question is how close ``backtest-kit backtest`` comes to what the work costs: a plain Python +
numpy loop that computes the same trades of strategy ``a_long_tp1_sl1`` over the same 365-day
frame (the peer script ``limit_a.py numpy``, with its data from ``gen_data.py``; pass its path
with ``--limit``). Both run as fresh processes, alternately, several times; the figures are
medians and the ratios are taken run by run, so a machine whose speed drifts still compares
like with like. Peak RSS is each child's own (``wait4``).

    .venv/bin/python benchmarks/backtest_bench.py --limit PEER_DIR/limit_a.py [--runs 5]

Sections: (1) the year of strategy a with ``--json`` against the limit; (2) ``import
backtest_kit``; (3) strategies that call the engine (``d_sma_cross``: ``get_candles`` every
15 minutes; ``g_risk_even_hours``: 204,012 asks, most refused by its risk profile) against the
same limit; (4) how time and memory grow with the frame (30, 91, 182, 365 days) and with a
two-year Parquet file read through ``--exchange csv:``. Without ``--limit`` the peer is skipped
and only our own figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

YEAR = "2024-01-01T00:00:00Z..2024-12-30T23:59:00Z"
BIN = Path(sys.executable).parent


def run_child(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one fresh process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        out.seek(0)
        return wall, usage.ru_maxrss / 1024, out.read().decode()


def backtest_argv(strategy: str, frame: str, json_path: Path, exchange: str = "synthetic") -> list[str]:
    return [
        str(BIN / "backtest-kit"),
        "backtest",
        "--symbol",
        "SYNUSDT",
        "--strategy",
        strategy,
        "--exchange",
        exchange,
        "--frame",
        frame,
        "--json",
        str(json_path),
    ]


def trades_in(json_path: Path) -> int:
    return int(json.loads(json_path.read_text())["stats"]["totalSignals"])


def side_by_side(ours: list[str], peer: list[str] | None, runs: int) -> dict[str, float]:
    walls, rss, peer_walls, peer_rss, ratios = [], [], [], [], []
    run_child(ours)  # warm the page cache and the bytecode cache
    if peer:
        run_child(peer)
    for _ in range(runs):
        w, r, _ = run_child(ours)
        walls.append(w)
        rss.append(r)
        if peer:
            pw, pr, _ = run_child(peer)
            peer_walls.append(pw)
            peer_rss.append(pr)
            ratios.append(w / pw)
    out = {"wall": statistics.median(walls), "rss": max(rss)}
    if peer:
        out.update(
            peer_wall=statistics.median(peer_walls), peer_rss=max(peer_rss), ratio=statistics.median(ratios)
        )
    return out


def import_time(runs: int) -> float:
    code = "import time; t = time.perf_counter(); import backtest_kit; print(time.perf_counter() - t)"
    return statistics.median(float(run_child([sys.executable, "-c", code])[2]) for _ in range(runs))


def write_two_years(folder: Path) -> str:
    """Two years of 1m candles as monthly Parquet files (the synthetic market, then itself again
    shifted by its own length: prices stay realistic, the timestamps run on)."""
    import numpy as np

    from backtest_kit.candles import CandleArrays, iso
    from backtest_kit.synthetic import N_CANDLES, T0_MS, market
    from backtest_kit_runner.data import month_path, months, write_month

    one = market()
    span = N_CANDLES * 60_000
    arrays = CandleArrays(
        np.concatenate((one.ts, one.ts + span)),
        *(np.concatenate((col, col)) for col in (one.open, one.high, one.low, one.close, one.volume)),
    )
    end_ms = int(arrays.ts[-1])
    for first, last in months(int(arrays.ts[0]), end_ms):  # the download cache's layout
        a, b = (int(i) for i in np.searchsorted(arrays.ts, (first, last), side="left"))
        write_month(month_path(folder, "two-years", "SYNUSDT", first), arrays.slice(a, b + 1))
    return f"{iso(T0_MS + 60 * 60_000)}..{iso(end_ms - 24 * 3_600_000)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=Path, help="the peer's limit_a.py (its data/ beside it)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-scaling", action="store_true")
    args = parser.parse_args()
    peer = [sys.executable, str(args.limit), "numpy"] if args.limit and args.limit.exists() else None
    if args.limit and peer is None:
        print(f"(no peer at {args.limit}: our figures only)")
    tmp = Path(tempfile.mkdtemp(prefix="bk-bench-"))
    out = tmp / "out.json"

    r = side_by_side(backtest_argv("a_long_tp1_sl1", YEAR, out), peer, args.runs)
    print(
        f"1. strategy a, 365 days, `backtest --json`, whole process, {args.runs} alternating runs (medians):"
    )
    print(f"   backtest-kit {r['wall']:.2f} s, peak RSS {r['rss']:.0f} MiB, {trades_in(out)} trades")
    if peer:
        print(f"   limit_a.py numpy {r['peer_wall']:.2f} s, peak RSS {r['peer_rss']:.0f} MiB")
        print(f"   ratio backtest-kit / limit: {r['ratio']:.2f} (target 2.0), RSS target 120 MiB")
    limit_wall = r.get("peer_wall")

    print(f"2. import backtest_kit: {import_time(args.runs):.3f} s median (target 0.15 s)")

    print("3. strategies that call the engine, 365 days, whole process:")
    for strategy in ("d_sma_cross", "g_risk_even_hours"):
        s = side_by_side(backtest_argv(strategy, YEAR, out), peer, max(3, args.runs // 2))
        line = f"   {strategy:18s} {s['wall']:.2f} s, {s['rss']:.0f} MiB, {trades_in(out)} trades"
        if peer:
            line += f"; / limit of a: {s['ratio']:.2f} (target 3.0)"
        print(line)

    if args.no_scaling:
        return
    print("4. growth with the frame (strategy a, whole process, median of 3):")
    for days, end in ((30, "2024-01-30"), (91, "2024-03-31"), (182, "2024-06-30"), (365, "2024-12-30")):
        s = side_by_side(backtest_argv("a_long_tp1_sl1", f"2024-01-01..{end}", out), None, 3)
        n = trades_in(out)
        print(f"   {days:3d} days: {s['wall']:.2f} s, {s['rss']:.0f} MiB, {n:5d} trades")
    print("   two-year Parquet file through --exchange csv: (the synthetic year twice):")
    frame = write_two_years(tmp / "cache")
    s = side_by_side(
        backtest_argv("a_long_tp1_sl1", frame, out, exchange=f"csv:{tmp / 'cache' / 'two-years'}"), None, 3
    )
    print(f"   {frame}: {s['wall']:.2f} s, {s['rss']:.0f} MiB, {trades_in(out)} trades")
    if limit_wall:
        print(f"   (limit of the 365-day a in this run: {limit_wall:.2f} s)")


if __name__ == "__main__":
    main()
