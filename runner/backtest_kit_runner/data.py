"""``backtest-kit data download``: a local Parquet cache of an exchange's 1m candles.

Backtesting on real data should not hit the exchange on every run, nor start over after a
dropped connection. This command fills a cache on disk that backtests then read offline
(``--exchange csv:<cache>/<exchange>``):

* **layout** ``<cache>/<exchange>/<SYMBOL>/1m/<YYYY-MM>.parquet``: one file per UTC month, columns
  ``timestamp`` (int64 epoch ms, the open time), ``open``, ``high``, ``low``, ``close``, ``volume``
  (float64), sorted, one row per minute. Only 1m candles are stored; a backtest aggregates the
  longer intervals from them.
* **incremental**: the minutes already in the cache are not fetched again; only missing runs are.
* **resumable**: candles are fetched a day at a time and the month file is rewritten after each
  day, atomically (temporary file, fsync, rename), so a killed download keeps every day it wrote
  and a rerun continues from there.
* **validated**: every page goes through the engine's candle validation (count, alignment,
  finite positive prices, high ≥ low, price anomalies), exactly as a backtest would check it.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import backtest_kit
from backtest_kit.candles import MINUTE_MS, CandleArrays, from_ms, iso, to_ms
from backtest_kit.errors import BacktestKitError, ConfigurationError

from .exchange_setup import exchange_label, prepare_exchange
from .options import EXCHANGE_KINDS, parse_time
from .progress import Bar

#: Minutes fetched (and written) per step: a killed download loses at most this much work.
CHUNK_MINUTES = 1440
COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


def default_cache_dir() -> Path:
    """``$BACKTEST_KIT_CACHE``, else ``$XDG_CACHE_HOME/backtest-kit``, else ``~/.cache/backtest-kit``."""
    explicit = os.environ.get("BACKTEST_KIT_CACHE", "").strip()
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "backtest-kit"


def month_path(cache: Path, exchange: str, symbol: str, month_start_ms: int) -> Path:
    when = from_ms(month_start_ms)
    return cache / exchange / symbol / "1m" / f"{when:%Y-%m}.parquet"


def months(start_ms: int, end_ms: int) -> Iterator[tuple[int, int]]:
    """``(first, last)`` minute of every UTC month that ``start_ms..end_ms`` touches, clipped to it."""
    when = from_ms(start_ms)
    year, month = when.year, when.month
    while True:
        first = to_ms(datetime(year, month, 1, tzinfo=UTC))
        days = calendar.monthrange(year, month)[1]
        last = first + days * 1440 * MINUTE_MS - MINUTE_MS
        if first > end_ms:
            return
        yield max(first, start_ms), min(last, end_ms)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def read_month(path: Path) -> CandleArrays:
    """A month file's columns (empty when the file does not exist yet)."""
    if not path.exists():
        empty = np.empty(0)
        return CandleArrays(np.empty(0, dtype=np.int64), empty, empty, empty, empty, empty)
    import pyarrow.parquet as pq

    table: Any = pq.read_table(path)
    cols = [np.asarray(table.column(name).to_numpy()) for name in COLUMNS]
    return CandleArrays(cols[0].astype(np.int64), *(c.astype(np.float64) for c in cols[1:]))


def write_month(path: Path, arrays: CandleArrays) -> None:
    """Write ``arrays`` (sorted, unique) to ``path`` atomically: a reader sees the old or the new file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "timestamp": pa.array(arrays.ts, type=pa.int64()),
            **{name: pa.array(getattr(arrays, name), type=pa.float64()) for name in COLUMNS[1:]},
        }
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def merge(old: CandleArrays, new: CandleArrays) -> CandleArrays:
    """``old`` with ``new``'s minutes added (a minute in both keeps ``new``'s candle), sorted."""
    keep = ~np.isin(old.ts, new.ts)
    ts = np.concatenate([old.ts[keep], new.ts])
    order = np.argsort(ts, kind="stable")
    cols = [np.concatenate([getattr(old, name)[keep], getattr(new, name)])[order] for name in COLUMNS[1:]]
    return CandleArrays(ts[order], *cols)


def missing_runs(have: np.ndarray[Any, Any], first: int, last: int) -> list[tuple[int, int]]:
    """Runs ``(start_ms, minutes)`` of the minutes ``first..last`` not in ``have``."""
    wanted = np.arange(first, last + MINUTE_MS, MINUTE_MS, dtype=np.int64)
    missing = wanted[~np.isin(wanted, have)]
    if not missing.size:
        return []
    breaks = np.flatnonzero(np.diff(missing) != MINUTE_MS) + 1
    return [(int(run[0]), len(run)) for run in np.split(missing, breaks)]


@dataclass(frozen=True)
class DownloadPlan:
    cache: Path
    exchange: str  # the --exchange text
    label: str  # its directory under the cache
    symbol: str
    start_ms: int
    end_ms: int  # the last minute, inclusive


async def download(plan: DownloadPlan, *, progress: Bar | None = None) -> tuple[int, int]:
    """Fill the cache for ``plan``; returns ``(minutes fetched, minutes already cached)``."""
    prepared = prepare_exchange(
        plan.exchange,
        on_request=None,
        register=backtest_kit.add_exchange,
        registered=backtest_kit.list_exchanges,
    )
    engine = backtest_kit.default_engine()

    async def fetch(symbol: str, since_ms: int, limit: int) -> CandleArrays:
        return await engine.fetch_candles(prepared.name, symbol, "1m", since_ms, limit)

    try:
        return await _fill(plan, fetch, progress)
    finally:
        await prepared.aclose()


Fetch = Callable[[str, int, int], Awaitable[CandleArrays]]


async def _fill(plan: DownloadPlan, fetch: Fetch, progress: Bar | None) -> tuple[int, int]:
    work: list[tuple[Path, int, int, list[tuple[int, int]]]] = []
    cached = 0
    for first, last in months(plan.start_ms, plan.end_ms):
        path = month_path(plan.cache, plan.label, plan.symbol, first)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed download
            stale.unlink(missing_ok=True)
        have = read_month(path).ts
        runs = missing_runs(have, first, last)
        cached += (last - first) // MINUTE_MS + 1 - sum(n for _, n in runs)
        if runs:
            work.append((path, first, last, runs))
    total = sum(n for *_, runs in work for _, n in runs)
    done = 0
    if progress is not None:
        progress.update(0, total)
    for path, _first, _last, runs in work:
        arrays = read_month(path)
        for start, minutes in runs:
            for offset in range(0, minutes, CHUNK_MINUTES):
                n = min(CHUNK_MINUTES, minutes - offset)
                page = await fetch(plan.symbol, start + offset * MINUTE_MS, n)
                arrays = merge(arrays, page)
                write_month(path, arrays)
                done += n
                if progress is not None:
                    progress.update(done, total, f"{path.parent.parent.name} {path.stem}")
    return total, cached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backtest-kit data",
        description="Local candle data for backtests that do not touch the network.",
    )
    sub = parser.add_subparsers(dest="action", metavar="{download}", required=True)
    cmd = sub.add_parser(
        "download",
        help="fill the Parquet cache with an exchange's 1m candles (incremental, resumable)",
        description=(
            "Fetch the 1m candles of SYMBOL from FROM to TO (both inclusive) into "
            "<cache>/<exchange>/<SYMBOL>/1m/<YYYY-MM>.parquet. Minutes already cached are not fetched "
            "again; a killed download keeps what it wrote. Backtest on the cache with "
            "--exchange csv:<cache>/<exchange>."
        ),
    )
    cmd.add_argument(
        "--exchange",
        default="binance",
        help=f"where candles come from; one of: {', '.join(EXCHANGE_KINDS)} (default binance)",
    )
    cmd.add_argument("--symbol", required=True, help="market symbol, e.g. BTCUSDT")
    cmd.add_argument(
        "--interval", default="1m", help="candle interval; the cache keeps 1m (default 1m, the only choice)"
    )
    cmd.add_argument(
        "--from", dest="start", required=True, metavar="ISO", help="first minute (a date: 00:00)"
    )
    cmd.add_argument("--to", dest="end", required=True, metavar="ISO", help="last minute (a date: its 23:59)")
    cmd.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="cache directory (default $BACKTEST_KIT_CACHE, else $XDG_CACHE_HOME/backtest-kit, "
        "else ~/.cache/backtest-kit)",
    )
    cmd.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    return parser


def _plan(args: argparse.Namespace) -> DownloadPlan:
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise ConfigurationError(
            "the Parquet cache needs pyarrow, which is not installed: "
            "pip install 'backtest-kit-operator[parquet]' (or pip install pyarrow)"
        )
    if args.interval != "1m":
        raise ConfigurationError(
            f"--interval {args.interval}: the cache stores 1m candles; backtests aggregate longer "
            "intervals from them"
        )
    try:
        start, end = parse_time(args.start), parse_time(args.end, end=True)
    except ValueError as exc:
        raise ConfigurationError(f"--from/--to: {exc}") from None
    now_ms = int(datetime.now(UTC).timestamp() * 1000) // MINUTE_MS * MINUTE_MS
    start_ms = to_ms(start) // MINUTE_MS * MINUTE_MS
    end_ms = min(to_ms(end) // MINUTE_MS * MINUTE_MS, now_ms - MINUTE_MS)  # closed candles only
    if end_ms < start_ms:
        raise ConfigurationError(f"--to {args.end} is not after --from {args.start} (or is in the future)")
    return DownloadPlan(
        cache=args.cache or default_cache_dir(),
        exchange=args.exchange,
        label=exchange_label(args.exchange).split(":", 1)[0],
        symbol=args.symbol,
        start_ms=start_ms,
        end_ms=end_ms,
    )


def main(argv: Sequence[str]) -> int:
    """``backtest-kit data ...``; returns the exit code (0 done, 1 failed, 2 bad input, 130 Ctrl-C)."""
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    try:
        plan = _plan(args)
        bar = Bar(sys.stderr.isatty() and not args.quiet, "minutes")
        fetched, cached = asyncio.run(download(plan, progress=bar))
    except ConfigurationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except BacktestKitError as exc:
        sys.stderr.write(f"error: {exc}\n(what was downloaded so far is kept; run again to resume)\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted; what was downloaded so far is kept, run again to resume\n")
        return 130
    if not args.quiet:
        where = plan.cache / plan.label
        print(
            f"{plan.symbol} {iso(plan.start_ms)}..{iso(plan.end_ms)}: fetched {fetched:,} minutes, "
            f"{cached:,} were cached; backtest with --exchange csv:{where}"
        )
    return 0
