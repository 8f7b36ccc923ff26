"""Runner footprint and per-tick overhead: RSS after 1,000 replayed ticks, and what the runner adds
to each tick (metrics, tally, heartbeat, status) while its HTTP API is being polled.

Targets: RSS <= 80 MB after 1,000 ticks; runner overhead p99 <= 2 ms per tick.

    python benchmarks/runner_bench.py [--ticks 1000]

Part 1 starts real ``python -m backtest_kit_runner live`` processes replaying at maximum speed,
polls ``/status`` until 1,000 ticks are done and reads the process's RSS from /proc, once with the
built-in synthetic exchange (the engine keeps its whole year of candles in memory) and once with a
small CSV file (the runner's own footprint). Part 2 runs the same replay in this process twice,
bare engine and with the runner wired in and its API polled every 25 ms, and times every tick and
every runner event handler.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

import backtest_kit
from backtest_kit.candles import to_ms
from backtest_kit.clock import ReplayClock
from backtest_kit.persistence import FilePersistence
from backtest_kit.synthetic import market
from backtest_kit_runner.http_api import ApiServer
from backtest_kit_runner.live_trader import LiveTrader
from backtest_kit_runner.options import TraderOptions

START = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOL = "SYNUSDT"
STRATEGY = "a_long_tp1_sl1"
RSS_TARGET_MB = 80.0
OVERHEAD_TARGET_MS = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return dict(json.loads(r.read()))


def write_csv(path: Path, minutes: int) -> None:
    """SYNUSDT 1m candles from one hour before the replay start, enough for ``minutes`` ticks."""
    arr = market()
    first = int((to_ms(START) - 60 * 60_000 - int(arr.ts[0])) // 60_000)
    rows = ["timestamp,open,high,low,close,volume"]
    for i in range(first, first + minutes + 120):
        c = arr.candle(i)
        rows.append(f"{c.timestamp},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def rss_after_ticks(exchange: str, ticks: int, workdir: Path) -> dict[str, float]:
    """Start a runner process, wait for ``ticks`` ticks, read its RSS, SIGTERM it."""
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="state-", dir=workdir))
    argv = [sys.executable, "-m", "backtest_kit_runner", "live", "--symbol", SYMBOL, "--strategy", STRATEGY]
    argv += ["--exchange", exchange, "--replay-from", START.isoformat(), "--speed", "max"]
    argv += ["--state-dir", str(state), "--http-port", str(port), "--http-host", "127.0.0.1"]
    argv += ["--log-level", "WARNING"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKTEST_KIT_")}
    log = state.with_suffix(".log")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    started = time.monotonic()
    try:
        done = 0
        while done < ticks:
            if proc.poll() is not None:
                raise RuntimeError(f"runner exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                status = get_json(f"http://127.0.0.1:{port}/status")
            except OSError:
                status = {}
            done = int(status.get("ticks", 0))
            if status.get("tickErrors"):
                raise RuntimeError(f"ticks fail with exchange {exchange}: {log.read_text()[-2000:]}")
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        rss = proc_kb(proc.pid, "VmRSS") / 1024
        peak = proc_kb(proc.pid, "VmHWM") / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
    return {"ticks": done, "rss_mb": rss, "peak_mb": peak, "seconds": elapsed, "exit": code}


async def replay_in_process(ticks: int, workdir: Path, *, with_runner: bool) -> dict[str, list[float]]:
    """One replay of ``ticks`` minutes; tick durations, runner handler times, API latencies (ms)."""
    state = Path(tempfile.mkdtemp(prefix="inproc-", dir=workdir))
    until = START + timedelta(minutes=ticks)
    tick_ms: list[float] = []
    handler_ms: list[float] = []
    api_ms: list[float] = []
    offs: list[Callable[[], None]] = []

    def on_perf(event: Any) -> None:
        if event.metric == "live_tick" and not event.backtest:
            tick_ms.append(event.duration_s * 1000)

    offs.append(backtest_kit.listen_performance(on_perf))
    server: ApiServer | None = None
    poller: asyncio.Task[None] | None = None
    persistence = FilePersistence(state)
    if with_runner:
        options = TraderOptions(
            symbol=SYMBOL,
            strategy=STRATEGY,
            state_dir=state,
            replay_from=START,
            speed=float("inf"),
            until=until,
        )
        trader = LiveTrader(options)
        trader.prepare()
        persistence = trader.persistence or persistence

        def timed(fn: Callable[[Any], None]) -> Callable[[Any], None]:
            def run(event: Any) -> None:
                t0 = time.perf_counter()
                fn(event)
                handler_ms.append((time.perf_counter() - t0) * 1000)

            return run

        offs.append(backtest_kit.listen_signal_live(timed(trader.on_tick_result)))
        offs.append(backtest_kit.listen_performance(timed(trader.on_performance)))
        offs.append(backtest_kit.listen_error(trader.on_error))
        server = ApiServer(trader, host="127.0.0.1", port=0)
        await server.start()

        async def poll() -> None:
            async with aiohttp.ClientSession() as http:
                while True:
                    for path in ("/status", "/metrics", "/healthz"):
                        t0 = time.perf_counter()
                        async with http.get(f"http://127.0.0.1:{server.port}{path}") as r:
                            await r.read()
                        api_ms.append((time.perf_counter() - t0) * 1000)
                    await asyncio.sleep(0.025)

        poller = asyncio.create_task(poll())
    clock = ReplayClock(to_ms(START), float("inf"), persistence=persistence)
    try:
        async for _ in backtest_kit.Live.run(
            SYMBOL,
            strategy=STRATEGY,
            exchange="synthetic",
            clock=clock,
            persistence=persistence,
            until=to_ms(until),
        ):
            pass
    finally:
        if poller is not None:
            poller.cancel()
        if server is not None:
            await server.close()
        for off in offs:
            off()
    # handler times come in pairs per tick at most; sum them per tick is not needed for a p99 bound
    return {"tick": tick_ms, "handler": handler_ms, "api": api_ms}


def per_tick_overhead(handler_ms: list[float], ticks: int) -> float:
    """Upper bound of the runner's work per tick: p99 handler time x handlers per tick."""
    per_tick = len(handler_ms) / max(1, ticks)
    return pct(handler_ms, 0.99) * per_tick


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1000)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        workdir = Path(tmp)
        csv = workdir / "SYNUSDT.csv"
        write_csv(csv, args.ticks)
        print(f"runner process, {args.ticks} replayed ticks at maximum speed (SIGTERM after):")
        for label, exchange in (("synthetic", "synthetic"), ("csv (small file)", f"csv:{csv}")):
            r = rss_after_ticks(exchange, args.ticks, workdir)
            verdict = "ok" if r["rss_mb"] <= RSS_TARGET_MB else "OVER"
            if label.startswith("csv"):
                ok &= r["rss_mb"] <= RSS_TARGET_MB
            print(
                f"  {label:17s} RSS {r['rss_mb']:6.1f} MB (peak {r['peak_mb']:6.1f} MB, "
                f"target <= {RSS_TARGET_MB:.0f}: {verdict}); {r['ticks']:.0f} ticks in {r['seconds']:.2f} s; "
                f"exit {r['exit']:.0f}"
            )

        bare = asyncio.run(replay_in_process(args.ticks, workdir, with_runner=False))
        wired = asyncio.run(replay_in_process(args.ticks, workdir, with_runner=True))
        overhead = per_tick_overhead(wired["handler"], len(wired["tick"]))
        ok &= overhead <= OVERHEAD_TARGET_MS
        print(f"in-process replay of {args.ticks} ticks (ms):")
        for name, values in (("engine tick, bare", bare["tick"]), ("engine tick + runner", wired["tick"])):
            print(
                f"  {name:22s} p50 {statistics.median(values):7.3f}  p99 {pct(values, 0.99):7.3f}  "
                f"max {max(values):7.3f}  (n={len(values)})"
            )
        h = wired["handler"]
        print(
            f"  {'runner handler':22s} p50 {statistics.median(h):7.3f}  p99 {pct(h, 0.99):7.3f}  "
            f"max {max(h):7.3f}  (n={len(h)}, {len(h) / max(1, len(wired['tick'])):.2f} per tick)"
        )
        a = wired["api"]
        if a:
            print(
                f"  {'HTTP request (polled)':22s} p50 {statistics.median(a):7.3f}  p99 {pct(a, 0.99):7.3f}  "
                f"max {max(a):7.3f}  (n={len(a)})"
            )
        print(
            f"runner overhead per tick p99 {overhead:.3f} ms (target <= {OVERHEAD_TARGET_MS:.0f} ms: "
            f"{'ok' if overhead <= OVERHEAD_TARGET_MS else 'OVER'}); "
            f"tick p99 difference {pct(wired['tick'], 0.99) - pct(bare['tick'], 0.99):+.3f} ms"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
