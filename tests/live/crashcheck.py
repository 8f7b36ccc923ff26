"""Kill a replaying live process at random moments, restart it, and check what survived.

Used by the crash test (at least 20 kills in CI) and by ``benchmarks/crash_soak.py`` (200).
The checks use only the events file, the state directory and the market: no signal id opened
twice, every opened signal closed exactly once or still open in the state at the end, and no
close outside the price range of its candles. The killed run must also produce exactly the
results of an uninterrupted run (ids aside): the replay at maximum speed is deterministic.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPLAY_FROM = "2024-01-01T00:00:00Z"
MINUTE = 60_000


def live_command(state: Path, events: Path, until: str, strategy: str, load: str | None = None) -> list[str]:
    return [
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
        strategy,
        "--exchange",
        "synthetic",
        "--state-dir",
        str(state),
        "--replay-from",
        REPLAY_FROM,
        "--speed",
        "max",
        "--until",
        until,
        "--events",
        str(events),
        "--quiet",
        "--log-level",
        "WARNING",
        *(["--load", load] if load else []),
    ]


@dataclass
class CrashRun:
    kills: int
    restarts: int
    events: list[dict[str, Any]]
    state: dict[str, Any] | None


def run_with_kills(
    workdir: Path,
    *,
    kills: int,
    until: str,
    strategy: str = "a_long_tp1_sl1",
    seed: int = 7,
    max_delay: float = 0.8,
    load: str | None = None,
) -> CrashRun:
    """Start, SIGKILL after a random delay, restart; ``kills`` times; then run to ``until``."""
    rng = random.Random(seed)
    state, events = workdir / "state", workdir / "events.jsonl"
    cmd = live_command(state, events, until, strategy, load)
    done_kills = restarts = 0
    while True:
        # stderr goes to a file: a pipe nobody reads while waiting would block a chatty process
        with open(workdir / "stderr.log", "w+b") as errors:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors)
            restarts += 1
            if done_kills < kills:
                if _kill_at_random_moment(proc, events, rng, max_delay):
                    done_kills += 1
                    continue
            else:
                proc.wait(timeout=600)
            errors.seek(0)
            err = errors.read().decode(errors="replace")
        if proc.returncode != 0:
            raise AssertionError(f"live process exited {proc.returncode}: {err}")
        # done: every kill made, or it reached --until before we killed it
        break
    return CrashRun(done_kills, restarts, read_events(events), read_state(state, strategy))


def _kill_at_random_moment(
    proc: subprocess.Popen[bytes], events: Path, rng: random.Random, max_delay: float
) -> bool:
    """SIGKILL ``proc`` after a random delay, or sooner once the events file has grown by a random
    few lines (so a fast replay is still killed in the middle of its run); False if it ended first."""
    deadline = time.monotonic() + rng.uniform(0.25, max_delay)
    grown = _lines(events) + rng.randint(1, 8)
    while time.monotonic() < deadline and _lines(events) < grown:
        if proc.poll() is not None:
            return False
        time.sleep(rng.uniform(0, 0.01))
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run_clean(
    workdir: Path, *, until: str, strategy: str = "a_long_tp1_sl1", load: str | None = None
) -> CrashRun:
    state, events = workdir / "state", workdir / "events.jsonl"
    cmd = live_command(state, events, until, strategy, load)
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return CrashRun(0, 1, read_events(events), read_state(state, strategy))


def read_events(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))  # a torn line would fail here: it must not exist
    return rows


def read_state(state: Path, strategy: str) -> dict[str, Any] | None:
    path = state / "live" / f"SYNUSDT_{strategy}_synthetic.json"
    return json.loads(path.read_text()) if path.exists() else None


def check_invariants(run: CrashRun) -> dict[str, int]:
    """Assert the crash-safety invariants; returns counts for the report."""
    from backtest_kit.synthetic import T0_MS, market

    m = market()
    opened: dict[str, dict[str, Any]] = {}
    closed: dict[str, dict[str, Any]] = {}
    for row in run.events:
        sid, action = row["id"], row["action"]
        if action == "opened":
            assert sid not in opened, f"signal {sid} opened twice"
            opened[sid] = row
        elif action in ("closed", "cancelled"):
            assert sid not in closed, f"signal {sid} closed twice"
            closed[sid] = row
    still_open = (run.state or {}).get("pending")
    open_id = still_open["id"] if still_open else None
    for sid in opened:
        assert sid in closed or sid == open_id, (
            f"signal {sid} opened, never closed, and not open in the state"
        )
    for sid, row in closed.items():
        if row["action"] != "closed":
            continue
        assert sid in opened, f"signal {sid} closed without having been opened"
        lo_i = (row["pendingAt"] - 5 * MINUTE - T0_MS) // MINUTE
        hi_i = (row["closeTimestamp"] - T0_MS) // MINUTE
        low = float(m.low[lo_i:hi_i].min())
        high = float(m.high[lo_i:hi_i].max())
        price = row["pnlPriceClose"]
        assert low <= price <= high, f"signal {sid} closed at {price} outside [{low}, {high}]"
    for row in closed.values():
        check_managed_row(row)
    return {"opened": len(opened), "closed": len(closed), "open_at_end": int(open_id is not None)}


def check_managed_row(row: dict[str, Any]) -> None:
    """A closed row's entries and partial closes happened once each, in time, inside its life."""
    entries, partials = row.get("entries") or [], row.get("partials") or []
    stamps = [e["timestamp"] for e in entries[1:]] + [p["timestamp"] for p in partials]
    assert len(stamps) == len(set(stamps)) or len({(p["timestamp"], p["type"]) for p in partials}) == len(
        partials
    ), f"signal {row['id']}: an entry or partial close was applied twice"
    for stamp in stamps:
        assert row["pendingAt"] <= stamp < row["closeTimestamp"], (
            f"signal {row['id']}: commit outside its life"
        )
    assert row.get("totalEntries", 1) == max(1, len(entries)), f"signal {row['id']}: entry count"
    assert row.get("totalPartials", 0) == len(partials), f"signal {row['id']}: partial count"
    assert 0 <= row.get("partialExecuted", 0) <= 100 + 1e-9


def without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "id"} for r in rows]


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--until", default="2024-01-20T00:00:00Z")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "clean").mkdir()
        (base / "killed").mkdir()
        t = time.perf_counter()
        clean = run_clean(base / "clean", until=args.until)
        clean_s = time.perf_counter() - t
        t = time.perf_counter()
        killed = run_with_kills(base / "killed", kills=args.kills, until=args.until, max_delay=1.5)
        killed_s = time.perf_counter() - t
        counts = check_invariants(killed)
        same = without_ids(killed.events) == without_ids(clean.events)
        print(
            f"kills={killed.kills} restarts={killed.restarts} events={len(killed.events)} {counts} "
            f"identical_to_uninterrupted={same} clean_run={clean_s:.1f}s killed_run={killed_s:.1f}s"
        )
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
