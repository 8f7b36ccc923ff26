"""Live-mode overhead, replay speed and Walker timing.

* live tick overhead: the ``live_tick`` durations of a max-speed replay with durable file state
  (the synthetic exchange serves from memory, so no exchange I/O is included), over all ticks and
  with the time spent in record writes taken out (targets: p99 <= 2 ms over all ticks, <= 1 ms
  without the writes); the durable write's own cost, in the run and in isolation; how many
  writes the run made per state change;
* a 30-day replay at maximum speed through the CLI, whole process; with ``--baseline DIR`` (the
  ``runner`` directory of another checkout, e.g. one made with ``git worktree add``) the same
  replay of that tree runs alternately with this one, ``--rounds`` times each, and the medians
  and their ratio are printed;
* Walker over the three parity strategies on the 365-day frame, sequential and with ``--jobs 2``
  (``--no-walker`` skips it).

The writes are timed by a subclass of the real file store, so the figures of an older tree that
has no write counters of its own come out the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, to_ms
from backtest_kit_runner.options import parse_time

STRATEGY = "a_long_tp1_sl1"
CHANGES = ("scheduled", "opened", "closed", "cancelled")


class TimedStore(bk.FilePersistence):
    """The real file store, timing and counting each write (durable or not) for the benchmark."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.spent = 0.0  # seconds in write() since the last tick took its share
        self.durable_s: list[float] = []
        self.counts: collections.Counter[bool] = collections.Counter()

    def write(self, key: str, value: dict[str, Any], *, durable: bool = True) -> None:
        started = time.perf_counter()
        super().write(key, value, durable=durable)
        spent = time.perf_counter() - started
        self.spent += spent
        self.counts[durable] += 1
        if durable:
            self.durable_s.append(spent)


async def tick_overhead(state: Path, days: int = 7) -> tuple[list[float], list[float], TimedStore, int]:
    """Per tick: the whole duration and the duration without record writes; the store; changes."""
    durations: list[float] = []
    without_writes: list[float] = []
    changes = 0
    store = TimedStore(state)
    store.init()

    def on_tick(e: Any) -> None:
        if e.metric == "live_tick":
            durations.append(e.duration_s)
            without_writes.append(e.duration_s - store.spent)
            store.spent = 0.0

    def on_result(r: Any) -> None:
        nonlocal changes
        changes += r.action in CHANGES

    unsubscribe = [bk.listen_performance(on_tick), bk.listen_signal_live(on_result)]
    start = to_ms(parse_time("2024-02-01T00:00:00Z"))
    # the replay position has a store of its own: its writes happen between ticks
    anchor = bk.FilePersistence(state)
    anchor.init()
    clock = bk.ReplayClock(start, float("inf"), persistence=anchor)
    try:
        async for _ in bk.Live.run(
            "SYNUSDT",
            strategy=STRATEGY,
            exchange="synthetic",
            clock=clock,
            persistence=store,
            until=start + days * 1440 * MINUTE_MS,
        ):
            pass
    finally:
        for off in unsubscribe:
            off()
    return durations, without_writes, store, changes


def isolated_durable_writes(state: Path, record: dict[str, Any], n: int = 200) -> list[float]:
    """The same record written durably ``n`` times on its own: what one state change costs."""
    store = bk.FilePersistence(state)
    store.init()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        store.write("live/bench", record, durable=True)
        out.append(time.perf_counter() - started)
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(xs: list[float]) -> str:
    parts = [f"p{round(q * 100)} {pct(xs, q) * 1e3:.3f} ms" for q in (0.5, 0.9, 0.99)]
    return ", ".join([*parts, f"max {max(xs) * 1e3:.3f} ms", f"mean {statistics.fmean(xs) * 1e3:.3f} ms"])


def replay_30_days(tmp: Path, runner_dir: Path | None) -> tuple[float, int, float]:
    """The CLI replaying 30 days at maximum speed (of ``runner_dir``'s tree if given): wall seconds,
    events, and the process's CPU seconds (user + system; what is left of the wall time waited,
    mostly for fsync)."""
    shutil.rmtree(tmp / "replay", ignore_errors=True)
    (tmp / "events.jsonl").unlink(missing_ok=True)
    env = dict(os.environ)
    if runner_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(runner_dir), env.get("PYTHONPATH")]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
            STRATEGY,
            "--exchange",
            "synthetic",
            "--state-dir",
            str(tmp / "replay"),
            "--replay-from",
            "2024-01-01T00:00:00Z",
            "--speed",
            "max",
            "--until",
            "2024-01-31T00:00:00Z",
            "--events",
            str(tmp / "events.jsonl"),
            "--quiet",
        ],
        check=True,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, (tmp / "events.jsonl").read_text().count("\n"), cpu


def print_tick_overhead(tmp: Path) -> None:
    d, bare, store, changes = asyncio.run(tick_overhead(tmp / "state"))
    print(f"live tick overhead over {len(d)} ticks (file state, fsync on every change): {ms(d)}")
    print(f"  the same ticks without their record writes: {ms(bare)}")
    if store.durable_s:
        print(f"  one durable write in the run ({len(store.durable_s)} writes): {ms(store.durable_s)}")
    record = json.loads(next((tmp / "state" / "live").glob("*.json")).read_text())
    alone = isolated_durable_writes(tmp / "alone", record)
    print(f"  one durable write of that record in isolation ({len(alone)} writes): {ms(alone)}")
    print(
        f"  writes: {store.counts[True]} durable for {changes} state changes "
        f"({store.counts[True] / max(changes, 1):.2f} per change), {store.counts[False]} bookkeeping "
        f"(not fsynced); at least {len(d) - store.counts[True] - store.counts[False]} minutes wrote nothing"
    )


def print_replay(tmp: Path, baseline: Path | None, rounds: int) -> None:
    if baseline is None:
        wall, lines, cpu = replay_30_days(tmp, None)
        print(
            f"30-day replay at max speed (43,200 ticks, {lines} events), whole process: {wall:.2f} s "
            f"({43_200 / wall:,.0f} ticks/s), CPU {cpu:.2f} s"
        )
        return
    times: dict[str, list[float]] = {"baseline": [], "this tree": []}
    cpus: dict[str, list[float]] = {"baseline": [], "this tree": []}
    events: dict[str, int] = {}
    for _ in range(rounds):  # alternating, so both see the same load
        for name, tree in (("baseline", baseline), ("this tree", None)):
            wall, lines, cpu = replay_30_days(tmp, tree)
            times[name].append(wall)
            cpus[name].append(cpu)
            events[name] = lines
    for name, walls in times.items():
        print(
            f"30-day replay at max speed, {name} ({events[name]} events), whole process: median "
            f"{statistics.median(walls):.2f} s of {', '.join(f'{w:.2f}' for w in walls)}; CPU median "
            f"{statistics.median(cpus[name]):.2f} s"
        )
    ratio = statistics.median(times["baseline"]) / statistics.median(times["this tree"])
    cpu_ratio = statistics.median(cpus["baseline"]) / statistics.median(cpus["this tree"])
    print(f"  this tree is {ratio:.1f}x as fast as the baseline ({cpu_ratio:.1f}x less CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="the runner directory of a tree to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="replays of each tree (with --baseline)")
    parser.add_argument("--no-walker", action="store_true", help="skip the Walker timings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        print_tick_overhead(tmp)
        print_replay(tmp, args.baseline, args.rounds)
        if args.no_walker:
            return
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

        def ranking(path: Path) -> list[tuple[str, object]]:
            data = json.loads(path.read_text())
            return [(r["strategyName"], r["stats"]) for r in data["strategyResults"]]

        same = ranking(Path(tmp) / "walk1.json") == ranking(Path(tmp) / "walk2.json")
        print(f"--jobs 2 statistics identical to sequential: {same}")


if __name__ == "__main__":
    main()
