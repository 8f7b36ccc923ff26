"""Candles from CSV or Parquet files, for backtests and replays that must not touch the network.

Backtests need the same candles every run and must not depend on an exchange being reachable;
files give that. Each symbol's 1m candles are read once into numpy arrays (sorted, validated,
duplicates refused), 1m requests are served by slicing, and longer intervals by aggregating the
1m candles of each interval bucket, so a file holds one interval and serves all of them with the
same numbers every time. A request the data cannot answer fully (outside the file, a missing
minute) fails with :class:`CandleDataError` rather than returning something shorter.

Layouts: a directory with one file per symbol (``<dir>/<SYMBOL>.csv`` or ``<dir>/<SYMBOL>.parquet``),
a download cache (``<dir>/<SYMBOL>/1m/<YYYY-MM>.parquet``, one file per month, as ``backtest-kit
data download`` writes it), or one file, either with a ``symbol`` column or holding only the
symbol its name says. Columns: ``timestamp,open,high,low,close,volume`` (more are ignored;
``open_time`` is accepted for ``timestamp``, and a file without a header is read as Binance's
kline export: ``open_time,open,high,low,close,volume,close_time,...``); ``timestamp`` is the
candle's open time as epoch milliseconds, epoch microseconds (Binance's exports since 2025) or
ISO-8601 with a timezone (Parquet may also use a timestamp type; one without a timezone is read
as UTC). Parquet needs the optional ``pyarrow``.
"""

from __future__ import annotations

import asyncio
import csv
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from backtest_kit.candles import MINUTE_MS, Candle, CandleArrays, FloatArray, IntArray, iso
from backtest_kit.errors import CandleDataError, ConfigurationError, UnknownNameError

from ._common import CandleRequest, check_request

__all__ = ["SUFFIXES", "CandleFileError", "CandleFileExchange"]

#: File name endings the exchange reads, by format.
SUFFIXES: Final = {".csv": "csv", ".parquet": "parquet"}

_COLUMNS: Final = ("timestamp", "open", "high", "low", "close", "volume")
#: Other spellings of a column (Binance's kline export calls the open time ``open_time``).
_ALIASES: Final = {"open_time": "timestamp", "open time": "timestamp", "opentime": "timestamp"}
#: Binance's kline export, when the file has no header.
BINANCE_EXPORT_COLUMNS: Final = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]
#: Open times at or above this are epoch microseconds (as milliseconds they would be past 5138).
_MICROS_FROM: Final = 100_000_000_000_000
#: The download cache keeps each symbol's minutes under ``<SYMBOL>/1m/``.
CACHE_INTERVAL_DIR: Final = "1m"
_PRICE_COLUMNS: Final = ("open", "high", "low", "close")
#: Epoch milliseconds below this (1973-03-03) are almost surely epoch seconds.
_SECONDS_SUSPECT: Final = 100_000_000_000
_LAST_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class CandleFileError(CandleDataError):
    """A candle file cannot be used; ``path`` is the file, the message says which row and why."""

    def __init__(self, message: str, *, path: Path, symbol: str, interval: str, since_ms: int) -> None:
        super().__init__(f"{path.name}: {message}", symbol=symbol, interval=interval, since_ms=since_ms)
        self.path = path


class _FileProblem(Exception):
    """Raised while reading; turned into a :class:`CandleFileError` with the caller's context."""

    def __init__(
        self, path: Path, message: str, *, symbol: str | None = None, ts_ms: int | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.symbol = symbol
        self.ts_ms = ts_ms


@dataclass(frozen=True, slots=True)
class _Table:
    """Columns as read, in file order; ``where(i)`` names row ``i`` for error messages."""

    path: Path
    ts: IntArray
    values: dict[str, FloatArray]
    symbols: list[str] | None
    where: Callable[[int], str]


class CandleFileExchange:
    """Serves candles from 1m CSV/Parquet files; see the module docstring for the layouts.

    ``await exchange.get_candles(symbol, interval, since, limit)`` is the adapter,
    ``exchange.get_candle_arrays(symbol, interval, since_ms, limit)`` the same as numpy columns
    (the engine's fast path), ``exchange.candle_arrays(symbol)`` all of a symbol's 1m candles.
    """

    def __init__(self, path_or_dir: str | os.PathLike[str]) -> None:
        path = Path(path_or_dir)
        if path.is_dir():
            self._dir: Path | None = path
            self._file: Path | None = None
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise ConfigurationError(
                    f"candle file {path.name} is neither {' nor '.join(SUFFIXES)}; cannot read it"
                )
            self._dir, self._file = None, path
        else:
            raise ConfigurationError(
                f"candle path {os.fspath(path_or_dir)!r} is neither a file nor a directory"
            )
        self.path = path
        self._arrays: dict[str, CandleArrays] = {}
        self._sources: dict[str, Path] = {}
        self._file_loaded = False
        self._load_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({os.fspath(self.path)!r})"

    # -- public ----------------------------------------------------------------------------------

    def symbols(self) -> list[str]:
        """The symbols this exchange can serve, sorted."""
        if self._dir is not None:
            cached = {p.name for p in self._dir.iterdir() if (p / CACHE_INTERVAL_DIR).is_dir()}
            return sorted({p.stem for p in self._symbol_files()} | cached)
        self._load_single_file()
        return sorted(self._arrays)

    def candle_arrays(self, symbol: str) -> CandleArrays:
        """``(ts, open, high, low, close, volume)`` of ``symbol``'s 1m candles, sorted, read-only.

        Loads the symbol on first use; raises :class:`UnknownNameError` for a symbol without data
        and :class:`CandleFileError` when its file cannot be used.
        """
        try:
            return self._get_arrays(symbol)
        except _FileProblem as problem:
            raise CandleFileError(
                problem.message,
                path=problem.path,
                symbol=problem.symbol or symbol,
                interval="1m",
                since_ms=problem.ts_ms or 0,
            ) from None

    async def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> list[Candle]:
        """Exactly ``limit`` candles of ``interval``, the first opening at ``since`` (aware UTC)."""
        req = check_request(symbol, interval, since, limit)
        try:
            arrays = self._arrays.get(symbol)
            if arrays is None:  # first use: read the file off the event loop, one load at a time
                async with self._load_lock:
                    arrays = await asyncio.to_thread(self._get_arrays, symbol)
        except _FileProblem as problem:
            raise _in_context(problem, req) from None
        return _serve(req, arrays, self._sources[symbol].name).to_candles()

    def get_candle_arrays(self, symbol: str, interval: str, since_ms: int, limit: int) -> CandleArrays:
        """What :meth:`get_candles` serves, as read-only columns; ``since_ms`` in epoch milliseconds.

        The engine's columnar fast path: ``add_exchange(..., get_candle_arrays=this)``. Loads the
        symbol synchronously on first use.
        """
        req = check_request(symbol, interval, since_ms, limit)
        try:
            arrays = self._get_arrays(symbol)
        except _FileProblem as problem:
            raise _in_context(problem, req) from None
        return _serve(req, arrays, self._sources[symbol].name)

    # -- loading ---------------------------------------------------------------------------------

    def _symbol_files(self) -> list[Path]:
        assert self._dir is not None
        return [p for p in self._dir.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file()]

    def _cache_files(self, symbol: str) -> list[Path] | None:
        """The month files of ``symbol`` in the download-cache layout, or None when there is none."""
        assert self._dir is not None
        folder = self._dir / symbol / CACHE_INTERVAL_DIR
        if _unsafe_name(symbol) or not folder.is_dir():
            return None
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())

    def _get_arrays(self, symbol: str) -> CandleArrays:
        cached = self._arrays.get(symbol)
        if cached is not None:
            return cached
        if self._file is not None:
            self._load_single_file()
            if symbol not in self._arrays:
                raise UnknownNameError("symbol", symbol, self._arrays)
            return self._arrays[symbol]
        months = self._cache_files(symbol)
        if months:
            table = _read_many(months)
            arrays = _build(table, np.arange(len(table.ts)), symbol)
            self._sources[symbol] = months[0].parent.parent  # messages name the symbol's folder
            self._arrays[symbol] = arrays
            return arrays
        candidates = [] if _unsafe_name(symbol) else [p for p in self._symbol_files() if p.stem == symbol]
        if not candidates:
            raise UnknownNameError("symbol", symbol, self.symbols())
        if len(candidates) > 1:
            names = ", ".join(sorted(p.name for p in candidates))
            raise ConfigurationError(f"symbol {symbol} has more than one candle file ({names}); keep one")
        table = _read(candidates[0])
        if table.symbols is not None:
            others = sorted(set(table.symbols) - {symbol})
            if others:
                raise _FileProblem(table.path, f"has rows for other symbols ({', '.join(others[:5])})")
        arrays = _build(table, np.arange(len(table.ts)), symbol)
        self._sources[symbol] = table.path
        self._arrays[symbol] = arrays
        return arrays

    def _load_single_file(self) -> None:
        if self._file_loaded:
            return
        assert self._file is not None
        table = _read(self._file)
        loaded: dict[str, CandleArrays] = {}
        if table.symbols is None:
            loaded[self._file.stem] = _build(table, np.arange(len(table.ts)), self._file.stem)
        else:
            names = np.asarray(table.symbols, dtype=object)
            for name in sorted(set(table.symbols)):
                if not name:
                    row = table.symbols.index(name)
                    raise _FileProblem(table.path, f"{table.where(row)} has an empty symbol")
                loaded[name] = _build(table, np.flatnonzero(names == name), name)
        self._sources.update(dict.fromkeys(loaded, self._file))
        self._arrays.update(loaded)
        self._file_loaded = True


def _in_context(problem: _FileProblem, req: CandleRequest) -> CandleFileError:
    return CandleFileError(
        problem.message, path=problem.path, symbol=req.symbol, interval=req.interval, since_ms=req.since_ms
    )


def _unsafe_name(symbol: str) -> bool:
    return not symbol or symbol.startswith(".") or any(ch in symbol for ch in "/\\\0")


# -- reading -----------------------------------------------------------------------------------------


def _read(path: Path) -> _Table:
    if SUFFIXES[path.suffix.lower()] == "parquet":
        table = _read_parquet(path)
    else:
        table = _read_csv(path)
    return _Table(table.path, _to_millis(table.ts), table.values, table.symbols, table.where)


def _to_millis(ts: IntArray) -> IntArray:
    """Epoch microseconds (every open time that large) become milliseconds; others are kept."""
    if ts.size and int(ts.min()) >= _MICROS_FROM and not (ts % 1000).any():
        return ts // 1000
    return ts


def _read_many(paths: Sequence[Path]) -> _Table:
    """The month files of one symbol as one table; ``where`` names the file and row."""
    tables = [_read(p) for p in paths]
    offsets = np.cumsum([0, *(len(t.ts) for t in tables)])
    # ``where`` keeps only the names: the month tables themselves are freed once joined
    places = [(t.path.name, t.where) for t in tables]

    def where(i: int) -> str:
        k = int(np.searchsorted(offsets, i, side="right")) - 1
        name, row = places[k]
        return f"{name} {row(i - int(offsets[k]))}"

    ts = np.concatenate([t.ts for t in tables]) if tables else np.empty(0, dtype=np.int64)
    values = {name: np.concatenate([t.values[name] for t in tables]) for name in _COLUMNS[1:]}
    del tables
    return _Table(paths[0].parent, ts, values, None, where)


def _read_csv(path: Path) -> _Table:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise _FileProblem(path, "is empty; expected a header " + ",".join(_COLUMNS))
            rows = [row for row in reader if len(row) > 1 or (row and row[0].strip())]
            headerless = bool(header) and _is_number(header[0])
            if headerless:  # Binance's kline export: no header, the columns in its order
                rows.insert(0, header)
                header = BINANCE_EXPORT_COLUMNS[: len(header)]
            names = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
            index = _column_index(path, names)
    except OSError as exc:
        raise _FileProblem(path, f"cannot be read: {exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _FileProblem(path, f"is not a readable CSV file: {exc}") from exc

    def where(i: int) -> str:
        return f"line {i + 1 if headerless else i + 2}"

    width = max(index.values()) + 1
    short = next((i for i, row in enumerate(rows) if len(row) < width), None)
    if short is not None:
        raise _FileProblem(path, f"{where(short)} has {len(rows[short])} fields, the header has {len(names)}")
    columns: list[tuple[str, ...]] = list(zip(*rows, strict=False)) if rows else [()] * width
    ts = _parse_timestamps(path, columns[index["timestamp"]], where)
    values = {name: _parse_floats(path, name, columns[index[name]], where) for name in _COLUMNS[1:]}
    symbols = [cell.strip() for cell in columns[index["symbol"]]] if "symbol" in index else None
    return _Table(path, ts, values, symbols, where)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _column_index(path: Path, names: Sequence[str]) -> dict[str, int]:
    missing = [c for c in _COLUMNS if c not in names]
    if missing:
        raise _FileProblem(
            path, f"lacks column(s) {', '.join(missing)}; expected a header {','.join(_COLUMNS)}"
        )
    dupes = sorted({n for n in names if n in (*_COLUMNS, "symbol") and names.count(n) > 1})
    if dupes:
        raise _FileProblem(path, f"has the column(s) {', '.join(dupes)} more than once")
    return {name: names.index(name) for name in (*_COLUMNS, "symbol") if name in names}


def _parse_floats(path: Path, name: str, cells: Sequence[str], where: Callable[[int], str]) -> FloatArray:
    try:
        return np.asarray(cells, dtype=np.float64).reshape(len(cells))
    except ValueError:
        pass
    for i, cell in enumerate(cells):
        try:
            float(cell)
        except ValueError:
            raise _FileProblem(path, f"{where(i)} has {name} {cell.strip()!r}, not a number") from None
    raise _FileProblem(path, f"column {name} cannot be read as numbers")  # pragma: no cover


def _parse_timestamps(path: Path, cells: Sequence[str], where: Callable[[int], str]) -> IntArray:
    try:  # fast path: every cell is epoch milliseconds
        return np.asarray(cells, dtype=np.int64).reshape(len(cells))
    except (ValueError, OverflowError):
        pass
    out = np.empty(len(cells), dtype=np.int64)
    for i, cell in enumerate(cells):
        out[i] = _parse_timestamp(path, cell.strip(), where(i))
    return out


def _parse_timestamp(path: Path, cell: str, at: str) -> int:
    if cell.lstrip("-").isdigit():
        return int(cell)
    try:  # epoch milliseconds written as a float by some exporters: 1704067200000.0
        number = float(cell)
    except ValueError:
        pass
    else:
        if number.is_integer() and abs(number) < 2**53:
            return int(number)
        raise _FileProblem(path, f"{at} has timestamp {cell!r}, not whole epoch milliseconds")
    try:
        when = datetime.fromisoformat(cell)
    except ValueError:
        raise _FileProblem(
            path, f"{at} has timestamp {cell!r}: neither epoch milliseconds nor ISO-8601"
        ) from None
    if when.tzinfo is None:
        raise _FileProblem(path, f"{at} has timestamp {cell!r} without a timezone; write it with Z or +00:00")
    return round(when.timestamp() * 1000)


def _read_parquet(path: Path) -> _Table:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigurationError(
            f"reading {path.name} needs pyarrow, which is not installed; "
            "install it with: pip install 'backtest-kit-operator[parquet]' (or pip install pyarrow)"
        ) from exc
    try:
        table: Any = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise _FileProblem(path, f"is not a readable Parquet file: {exc}") from exc
    names = [_ALIASES.get(str(n).strip().lower(), str(n).strip().lower()) for n in table.column_names]
    index = _column_index(path, names)

    def where(i: int) -> str:
        return f"row {i}"

    def column(name: str) -> Any:
        return table.column(index[name]).combine_chunks()

    ts = _parquet_timestamps(path, column("timestamp"), where)
    values = {name: _parquet_floats(path, name, column(name), where) for name in _COLUMNS[1:]}
    symbols: list[str] | None = None
    if "symbol" in index:
        symbols = ["" if v is None else str(v).strip() for v in column("symbol").to_pylist()]
    return _Table(path, ts, values, symbols, where)


def _parquet_timestamps(path: Path, ts_col: Any, where: Callable[[int], str]) -> IntArray:
    """Open times from a Parquet column of timestamps, integers (epoch ms) or strings."""
    import pyarrow as pa

    if pa.types.is_timestamp(ts_col.type):  # sub-millisecond parts are cut; the 1m grid check follows
        ts_col = ts_col.cast(pa.timestamp("ms", tz=ts_col.type.tz), safe=False).cast(pa.int64())
    if pa.types.is_integer(ts_col.type):
        if ts_col.null_count:
            raise _FileProblem(path, f"{where(_first_null(ts_col))} has no timestamp")
        return np.asarray(ts_col.to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_string(ts_col.type) or pa.types.is_large_string(ts_col.type):
        cells = ["" if v is None else str(v).strip() for v in ts_col.to_pylist()]
        return _parse_timestamps(path, cells, where)
    raise _FileProblem(
        path,
        f"has a timestamp column of type {ts_col.type}; expected int64 epoch ms, timestamp or string",
    )


def _parquet_floats(path: Path, name: str, col: Any, where: Callable[[int], str]) -> FloatArray:
    """A price or volume column of a Parquet file as float64 (any numeric type, no nulls)."""
    import pyarrow as pa

    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type)):
        raise _FileProblem(path, f"has a {name} column of type {col.type}; expected numbers")
    if col.null_count:
        raise _FileProblem(path, f"{where(_first_null(col))} has no {name}")
    try:
        floats = col.cast(pa.float64(), safe=False)
    except pa.ArrowException as exc:
        raise _FileProblem(path, f"column {name} cannot be read as numbers: {exc}") from exc
    return np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)


def _first_null(col: Any) -> int:
    return int(np.flatnonzero(np.asarray(col.is_null().to_numpy(zero_copy_only=False)))[0])


# -- validation and serving ------------------------------------------------------------------------------


def _first(mask: np.ndarray[Any, np.dtype[np.bool_]]) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _build(table: _Table, rows: IntArray, symbol: str) -> CandleArrays:
    """Validate ``rows`` of ``table`` (one symbol) and return them sorted, as read-only arrays."""
    path, where = table.path, table.where

    def bad_row(mask: np.ndarray[Any, np.dtype[np.bool_]]) -> int | None:
        hit = _first(mask)
        return None if hit is None else int(rows[hit])

    def problem(row: int, why: str) -> _FileProblem:
        ts_ms = int(table.ts[row])
        return _FileProblem(path, f"{where(row)} ({iso(ts_ms)}) {why}", symbol=symbol, ts_ms=ts_ms)

    whole = len(rows) == len(table.ts) and (not len(rows) or (rows[0] == 0 and rows[-1] == len(rows) - 1))
    # all rows, in order (one symbol per file): views, not copies, of a year of candles
    ts = table.ts if whole else table.ts[rows]
    cols = {name: table.values[name] if whole else table.values[name][rows] for name in _COLUMNS[1:]}
    _check_open_times(table, ts, symbol, bad_row)
    found = next(_value_problems(table, ts, cols, bad_row), None)
    if found is not None:
        raise problem(*found)

    if len(ts) < 2 or bool((ts[1:] > ts[:-1]).all()):  # already in order and unique: keep as is
        arrays = CandleArrays(ts, *(np.ascontiguousarray(cols[name]) for name in _COLUMNS[1:]))
        for col in arrays:
            col.flags.writeable = False
        return arrays
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    dupe = _first(ts[1:] == ts[:-1])
    if dupe is not None:
        first, second = sorted((int(rows[order[dupe]]), int(rows[order[dupe + 1]])))
        raise _FileProblem(
            path, f"{where(first)} and {where(second)} both open at {iso(int(ts[dupe]))}", symbol=symbol
        )
    arrays = CandleArrays(ts, *(np.ascontiguousarray(cols[name][order]) for name in _COLUMNS[1:]))
    for col in arrays:
        col.flags.writeable = False
    return arrays


#: Maps a mask over the selected rows to the file row of its first hit (None: no hit).
RowFinder = Callable[[np.ndarray[Any, np.dtype[np.bool_]]], int | None]


def _check_open_times(table: _Table, ts: IntArray, symbol: str, bad_row: RowFinder) -> None:
    """Refuse open times outside what a datetime can show, or ones that look like epoch seconds."""
    if (row := bad_row((ts < 0) | (ts > _LAST_MS))) is not None:
        raise _FileProblem(
            table.path,
            f"{table.where(row)} has timestamp {int(table.ts[row])}, outside 1970..9999 in epoch "
            "milliseconds (micro- or nanoseconds?)",
            symbol=symbol,
        )
    if ts.size and 0 < ts.max() < _SECONDS_SUSPECT:
        raise _FileProblem(
            table.path,
            f"has timestamps up to {int(ts.max())}, which look like epoch seconds; write epoch milliseconds",
            symbol=symbol,
        )


def _value_problems(
    table: _Table, ts: IntArray, cols: dict[str, FloatArray], bad_row: RowFinder
) -> Iterator[tuple[int, str]]:
    """Unusable rows and why, rule by rule (each over all rows before the next); the first is reported."""
    values = table.values
    for name in _COLUMNS[1:]:
        if (row := bad_row(~np.isfinite(cols[name]))) is not None:
            yield row, f"has a non-finite {name}: {values[name][row]}"
    for name in _PRICE_COLUMNS:
        if (row := bad_row(cols[name] <= 0)) is not None:
            yield row, f"has a non-positive {name}: {values[name][row]}"
    if (row := bad_row(cols["volume"] < 0)) is not None:
        yield row, f"has a negative volume: {values['volume'][row]}"
    o, h, lo, c = cols["open"], cols["high"], cols["low"], cols["close"]
    if (row := bad_row(h < lo)) is not None:
        yield row, f"has high {values['high'][row]} below low {values['low'][row]}"
    if (row := bad_row((o > h) | (o < lo) | (c > h) | (c < lo))) is not None:
        yield row, "has open/close outside its high/low range"
    if (row := bad_row(ts % MINUTE_MS != 0)) is not None:
        yield row, "is not on the 1m grid (open times are whole minutes)"


def _serve(req: CandleRequest, arrays: CandleArrays, source: str) -> CandleArrays:
    """The ``req.limit`` candles of ``req.interval`` from ``req.since_ms``, or a CandleDataError."""
    if req.limit == 0:
        return arrays.slice(0, 0)
    per = req.step_ms // MINUTE_MS
    minutes = req.limit * per
    first, last = req.since_ms, req.since_ms + (minutes - 1) * MINUTE_MS

    def fail(message: str) -> CandleDataError:
        return CandleDataError(message, symbol=req.symbol, interval=req.interval, since_ms=req.since_ms)

    ts = arrays.ts
    if len(ts) == 0:
        raise fail(f"{source} has no candles")
    if first < ts[0] or last > ts[-1]:
        raise fail(
            f"requested 1m candles {iso(first)}..{iso(last)}, but {source} covers "
            f"{iso(int(ts[0]))}..{iso(int(ts[-1]))}"
        )
    lo = int(np.searchsorted(ts, first, side="left"))
    hi = int(np.searchsorted(ts, last, side="right"))
    if hi - lo != minutes:
        expected = first + np.arange(minutes, dtype=np.int64) * MINUTE_MS
        window = ts[lo:hi]
        n = min(len(window), minutes)
        miss_at = _first(window[:n] != expected[:n])
        missing = int(expected[miss_at if miss_at is not None else n])
        if per == 1:
            raise fail(f"{source} has a gap: no 1m candle opens at {iso(missing)}")
        bucket = first + (missing - first) // req.step_ms * req.step_ms
        raise fail(
            f"the {req.interval} candle opening at {iso(bucket)} is incomplete in {source}: "
            f"no 1m candle opens at {iso(missing)}"
        )
    if per == 1:
        return arrays.slice(lo, hi)
    shape = (req.limit, per)
    opens = arrays.open[lo:hi].reshape(shape)[:, 0]
    highs = arrays.high[lo:hi].reshape(shape).max(axis=1)
    lows = arrays.low[lo:hi].reshape(shape).min(axis=1)
    closes = arrays.close[lo:hi].reshape(shape)[:, -1]
    volumes = _row_sums(arrays.volume[lo:hi].reshape(shape))
    starts = ts[lo:hi:per]
    out = CandleArrays(starts, opens, highs, lows, closes, volumes)
    for col in out:
        col.flags.writeable = False
    return out


def _row_sums(block: FloatArray) -> FloatArray:
    """Sum each row left to right, so a bucket's volume does not depend on numpy's summation order."""
    out = block[:, 0].copy()
    for k in range(1, block.shape[1]):
        out += block[:, k]
    return out
