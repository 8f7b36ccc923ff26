"""Live-mode overhead, replay speed and Walker timing.

* live tick overhead: the ``live_tick`` durations of a max-speed replay with durable file state
  (the synthetic exchange serves from memory, so no exchange I/O is included); target p99 <= 2 ms;
* a 30-day replay at maximum speed through the CLI, whole process;
* Walker over the three parity strategies on the 365-day frame, sequential and with ``--jobs 2``.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, to_ms
from backtest_kit_runner.options import parse_time


async def tick_overhead(state: Path, days: int = 7) -> list[float]:
    durations: list[float] = []
    unsubscribe = bk.listen_performance(
        lambda e: durations.append(e.duration_s) if e.metric == "live_tick" else None
    )
    start = to_ms(parse_time("2024-02-01T00:00:00Z"))
    persist = bk.FilePersistence(state)
    clock = bk.ReplayClock(start, float("inf"), persistence=persist)
    try:
        async for _ in bk.Live.run(
            "SYNUSDT",
            strategy="a_long_tp1_sl1",
            exchange="synthetic",
            clock=clock,
            persistence=persist,
            until=start + days * 1440 * MINUTE_MS,
        ):
            pass
    finally:
        unsubscribe()
    return durations


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = asyncio.run(tick_overhead(Path(tmp) / "state"))
        print(
            f"live tick overhead over {len(d)} ticks (file state, fsync on every change): "
            f"p50 {pct(d, 0.5) * 1e3:.3f} ms, p90 {pct(d, 0.9) * 1e3:.3f} ms, "
            f"p99 {pct(d, 0.99) * 1e3:.3f} ms, "
            f"max {max(d) * 1e3:.3f} ms, mean {statistics.fmean(d) * 1e3:.3f} ms"
        )
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "backtest_kit_runner",
                "live",
                "--http-port",
                "0",
                "--http-host",
                "127.0.0.1",
                "--symbol",
                "SYNUSDT",
                "--strategy",
                "a_long_tp1_sl1",
                "--exchange",
                "synthetic",
                "--state-dir",
                str(Path(tmp) / "replay"),
                "--replay-from",
                "2024-01-01T00:00:00Z",
                "--speed",
                "max",
                "--until",
                "2024-01-31T00:00:00Z",
                "--events",
                str(Path(tmp) / "events.jsonl"),
                "--quiet",
            ],
            check=True,
        )
        wall = time.perf_counter() - t
        lines = (Path(tmp) / "events.jsonl").read_text().count("\n")
        print(
            f"30-day replay at max speed (43,200 ticks, {lines} events), whole process: {wall:.2f} s "
            f"({43_200 / wall:,.0f} ticks/s)"
        )
        for jobs in (1, 2):
            t = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "backtest_kit_runner",
                    "walker",
                    "--symbol",
                    "SYNUSDT",
                    "--strategies",
                    "a_long_tp1_sl1,c_limit_sched,d_sma_cross",
                    "--exchange",
                    "synthetic",
                    "--frame",
                    "2024-01-01..2024-12-30",
                    "--metric",
                    "sharpeRatio",
                    "--jobs",
                    str(jobs),
                    "--quiet",
                    "--json",
                    str(Path(tmp) / f"walk{jobs}.json"),
                ],
                check=True,
            )
            print(f"Walker, 3 parity strategies, 365 days, --jobs {jobs}: {time.perf_counter() - t:.2f} s")
        import json

        def ranking(path: Path) -> list[tuple[str, object]]:
            data = json.loads(path.read_text())
            return [(r["strategyName"], r["stats"]) for r in data["strategyResults"]]

        same = ranking(Path(tmp) / "walk1.json") == ranking(Path(tmp) / "walk2.json")
        print(f"--jobs 2 statistics identical to sequential: {same}")


if __name__ == "__main__":
    main()
