"""File exchange: candles from CSV and Parquet files written in tmp_path."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backtest_kit.candles import Candle
from backtest_kit.errors import CandleDataError, ConfigurationError, UnknownNameError
from backtest_kit_runner.exchanges import CandleFileError, CandleFileExchange

START = datetime(2024, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
MINUTE = 60_000
HEADER = "timestamp,open,high,low,close,volume"


def minute_candles(n: int, start_ms: int = START_MS, seed: float = 0.0) -> list[Candle]:
    """A deterministic 1m market: each candle's values depend on its index."""
    out = []
    for i in range(n):
        o = 100 + seed + (i % 17) * 0.5
        c = o + (1 if i % 2 else -1) * 0.25
        out.append(Candle(start_ms + i * MINUTE, o, max(o, c) + 0.5, min(o, c) - 0.5, c, 1.0 + i % 5))
    return out


def csv_text(candles: Sequence[Candle], ts: Callable[[int], str] = str, symbol: str | None = None) -> str:
    lines = [HEADER + (",symbol" if symbol else "")]
    for c in candles:
        fields = [ts(c.timestamp), *(repr(x) for x in c[1:])]
        lines.append(",".join(fields + ([symbol] if symbol else [])))
    return "\n".join(lines) + "\n"


def iso_z(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def write_parquet(
    path: Path, candles: Sequence[Candle], *, symbols: list[str] | None = None, ts_type: str = "int"
) -> None:
    ts: pa.Array
    millis = [c.timestamp for c in candles]
    if ts_type == "int":
        ts = pa.array(millis, type=pa.int64())
    elif ts_type == "timestamp":
        ts = (
            pa.array(millis, type=pa.int64())
            .cast(pa.timestamp("ms", tz="UTC"))
            .cast(pa.timestamp("us", tz="UTC"))
        )
    elif ts_type == "nanoseconds":
        ts = (
            pa.array(millis, type=pa.int64())
            .cast(pa.timestamp("ms", tz="UTC"))
            .cast(pa.timestamp("ns", tz="UTC"))
        )
    elif ts_type == "naive":
        ts = pa.array(millis, type=pa.int64()).cast(pa.timestamp("ms"))
    else:
        ts = pa.array([iso_z(m) for m in millis])
    columns = {"timestamp": ts}
    for k, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        columns[name] = pa.array([c[k] for c in candles], type=pa.float64())
    if symbols is not None:
        columns["symbol"] = pa.array(symbols)
    pq.write_table(pa.table(columns), path)


async def fetch(
    exchange: CandleFileExchange, interval: str, since: datetime, limit: int, symbol: str = "BTCUSDT"
) -> list[Candle]:
    return await exchange.get_candles(symbol, interval, since, limit)


class TestServingOneMinute:
    async def test_1m_candles_from_a_csv_with_epoch_ms_are_served_as_written(self, tmp_path: Path) -> None:
        written = minute_candles(30)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(written))
        candles = await fetch(CandleFileExchange(tmp_path), "1m", START + timedelta(minutes=5), 10)
        assert candles == written[5:15]
        assert all(type(c) is Candle and type(c.timestamp) is int and type(c.open) is float for c in candles)

    async def test_epoch_milliseconds_written_as_floats_are_read(self, tmp_path: Path) -> None:
        written = minute_candles(3)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(written, ts=lambda ms: f"{ms}.0"))
        assert await fetch(CandleFileExchange(tmp_path), "1m", START, 3) == written

    async def test_iso_8601_timestamps_with_a_timezone_are_read(self, tmp_path: Path) -> None:
        written = minute_candles(10)
        path = tmp_path / "BTCUSDT.csv"
        path.write_text(csv_text(written, ts=lambda ms: iso_z(ms).replace("Z", "+00:00")))
        assert await fetch(CandleFileExchange(path), "1m", START, 10) == written

    async def test_rows_in_any_order_are_sorted_once_read(self, tmp_path: Path) -> None:
        written = minute_candles(10)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(list(reversed(written))))
        assert await fetch(CandleFileExchange(tmp_path), "1m", START, 10) == written

    async def test_extra_columns_and_column_order_do_not_matter(self, tmp_path: Path) -> None:
        written = minute_candles(3)
        lines = ["Volume,trades,Close,Low,High,Open,Timestamp"]
        lines += [f"{c.volume},7,{c.close},{c.low},{c.high},{c.open},{c.timestamp}" for c in written]
        (tmp_path / "BTCUSDT.csv").write_text("\n".join(lines) + "\n")
        assert await fetch(CandleFileExchange(tmp_path), "1m", START, 3) == written

    async def test_a_limit_of_zero_returns_nothing(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(3)))
        assert await fetch(CandleFileExchange(tmp_path), "1m", START, 0) == []


class TestAggregation:
    async def test_higher_intervals_aggregate_each_bucket_of_1m_candles(self, tmp_path: Path) -> None:
        written = minute_candles(60)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(written))
        candles = await fetch(CandleFileExchange(tmp_path), "15m", START, 4)
        for k, candle in enumerate(candles):
            bucket = written[k * 15 : (k + 1) * 15]
            assert candle.timestamp == START_MS + k * 15 * MINUTE
            assert candle.open == bucket[0].open
            assert candle.high == max(c.high for c in bucket)
            assert candle.low == min(c.low for c in bucket)
            assert candle.close == bucket[-1].close
            assert candle.volume == sum(c.volume for c in bucket)

    @pytest.mark.parametrize(
        ("interval", "minutes"), [("3m", 3), ("5m", 5), ("30m", 30), ("1h", 60), ("2h", 120)]
    )
    async def test_every_interval_opens_on_its_own_grid(
        self, interval: str, minutes: int, tmp_path: Path
    ) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(240)))
        candles = await fetch(CandleFileExchange(tmp_path), interval, START, 240 // minutes)
        assert [c.timestamp for c in candles] == [
            START_MS + k * minutes * MINUTE for k in range(240 // minutes)
        ]

    async def test_daily_candles_are_utc_days(self, tmp_path: Path) -> None:
        written = minute_candles(3 * 1440, start_ms=START_MS - 1440 * MINUTE)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(written))
        candles = await fetch(CandleFileExchange(tmp_path), "1d", START - timedelta(days=1), 3)
        assert [c.timestamp for c in candles] == [START_MS + (d - 1) * 86_400_000 for d in range(3)]
        assert candles[1].open == written[1440].open and candles[1].close == written[2879].close

    async def test_an_incomplete_bucket_is_a_candle_data_error_naming_the_bucket(
        self, tmp_path: Path
    ) -> None:
        written = minute_candles(60)
        del written[37]
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(written))
        with pytest.raises(CandleDataError) as caught:
            await fetch(CandleFileExchange(tmp_path), "15m", START, 4)
        text = str(caught.value)
        assert "15m candle opening at 2024-01-01T00:30:00.000Z is incomplete" in text
        assert "00:37:00" in text
        assert "symbol=BTCUSDT, interval=15m, since=2024-01-01T00:00:00Z" in text

    async def test_buckets_around_a_gap_are_still_served(self, tmp_path: Path) -> None:
        written = minute_candles(60)
        del written[37]
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(written))
        exchange = CandleFileExchange(tmp_path)
        assert len(await fetch(exchange, "15m", START, 2)) == 2
        assert len(await fetch(exchange, "15m", START + timedelta(minutes=45), 1)) == 1

    async def test_a_since_off_the_interval_grid_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(60)))
        with pytest.raises(ConfigurationError, match="not on the 15m grid"):
            await fetch(CandleFileExchange(tmp_path), "15m", START + timedelta(minutes=1), 2)


class TestRequestsTheDataCannotAnswer:
    async def test_a_request_before_the_data_names_what_the_file_covers(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(30)))
        with pytest.raises(CandleDataError) as caught:
            await fetch(CandleFileExchange(tmp_path), "1m", START - timedelta(minutes=1), 5)
        text = str(caught.value)
        assert "covers 2024-01-01T00:00:00.000Z..2024-01-01T00:29:00.000Z" in text
        assert "symbol=BTCUSDT, interval=1m, since=2023-12-31T23:59:00Z" in text

    async def test_a_request_running_past_the_end_of_the_data_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(30)))
        exchange = CandleFileExchange(tmp_path)
        assert len(await fetch(exchange, "1m", START + timedelta(minutes=20), 10)) == 10
        with pytest.raises(CandleDataError, match="covers"):
            await fetch(exchange, "1m", START + timedelta(minutes=20), 11)
        with pytest.raises(CandleDataError, match="covers"):
            await fetch(exchange, "5m", START + timedelta(minutes=25), 2)

    async def test_a_missing_minute_is_a_gap(self, tmp_path: Path) -> None:
        written = minute_candles(30)
        del written[12]
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(written))
        with pytest.raises(CandleDataError, match=r"gap: no 1m candle opens at 2024-01-01T00:12:00.000Z"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 20)

    async def test_a_file_without_rows_serves_nothing(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(HEADER + "\n")
        with pytest.raises(CandleDataError, match="no candles"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1)

    async def test_an_unknown_symbol_lists_the_symbols_there_are(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(3)))
        write_parquet(tmp_path / "ETHUSDT.parquet", minute_candles(3))
        with pytest.raises(UnknownNameError, match="BTCUSDT, ETHUSDT"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1, symbol="XRPUSDT")

    @pytest.mark.parametrize("symbol", ["../BTCUSDT", ".hidden", "a/b"])
    async def test_a_symbol_that_is_a_path_is_never_opened(self, symbol: str, tmp_path: Path) -> None:
        (tmp_path / "data").mkdir()
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(3)))
        with pytest.raises(UnknownNameError):
            await fetch(CandleFileExchange(tmp_path / "data"), "1m", START, 1, symbol=symbol)


class TestLayouts:
    async def test_a_directory_serves_each_symbol_from_its_own_csv_or_parquet_file(
        self, tmp_path: Path
    ) -> None:
        btc, eth = minute_candles(10), minute_candles(10, seed=1000)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(btc))
        write_parquet(tmp_path / "ETHUSDT.parquet", eth)
        (tmp_path / "notes.txt").write_text("not candles")
        exchange = CandleFileExchange(tmp_path)
        assert exchange.symbols() == ["BTCUSDT", "ETHUSDT"]
        assert await fetch(exchange, "1m", START, 10, "BTCUSDT") == btc
        assert await fetch(exchange, "1m", START, 10, "ETHUSDT") == eth

    async def test_one_file_with_a_symbol_column_serves_every_symbol_in_it(self, tmp_path: Path) -> None:
        btc, eth = minute_candles(10), minute_candles(10, seed=1000)
        path = tmp_path / "market.csv"
        path.write_text(csv_text(btc, symbol="BTCUSDT") + csv_text(eth, symbol="ETHUSDT").split("\n", 1)[1])
        exchange = CandleFileExchange(path)
        assert exchange.symbols() == ["BTCUSDT", "ETHUSDT"]
        assert await fetch(exchange, "5m", START, 2, "ETHUSDT") == await fetch(
            CandleFileExchange(_single(tmp_path, "ETHUSDT", eth)), "5m", START, 2, "ETHUSDT"
        )
        with pytest.raises(UnknownNameError, match="registered symbols: BTCUSDT, ETHUSDT"):
            await fetch(exchange, "1m", START, 1, "market")

    async def test_one_parquet_file_with_a_symbol_column_serves_every_symbol_in_it(
        self, tmp_path: Path
    ) -> None:
        btc, eth = minute_candles(10), minute_candles(10, seed=1000)
        path = tmp_path / "market.parquet"
        write_parquet(path, [*btc, *eth], symbols=["BTCUSDT"] * 10 + ["ETHUSDT"] * 10)
        exchange = CandleFileExchange(path)
        assert await fetch(exchange, "1m", START, 10, "ETHUSDT") == eth
        assert await fetch(exchange, "1m", START, 10, "BTCUSDT") == btc

    async def test_one_file_without_a_symbol_column_holds_the_symbol_its_name_says(
        self, tmp_path: Path
    ) -> None:
        written = minute_candles(5)
        exchange = CandleFileExchange(_single(tmp_path, "SOLUSDT", written))
        assert exchange.symbols() == ["SOLUSDT"]
        assert await fetch(exchange, "1m", START, 5, "SOLUSDT") == written

    async def test_a_symbol_file_with_rows_for_another_symbol_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(3), symbol="ETHUSDT"))
        with pytest.raises(CandleFileError, match="rows for other symbols"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1)

    async def test_two_files_for_one_symbol_are_refused_as_ambiguous(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(3)))
        write_parquet(tmp_path / "BTCUSDT.parquet", minute_candles(3))
        with pytest.raises(ConfigurationError, match="more than one candle file"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1)

    def test_a_path_that_does_not_exist_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="neither a file nor a directory"):
            CandleFileExchange(tmp_path / "nope")

    def test_a_file_of_another_format_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.json").write_text("[]")
        with pytest.raises(ConfigurationError, match=r"neither \.csv nor \.parquet"):
            CandleFileExchange(tmp_path / "BTCUSDT.json")


def _single(tmp_path: Path, symbol: str, candles: Sequence[Candle]) -> Path:
    folder = tmp_path / f"single-{symbol}"
    folder.mkdir(exist_ok=True)
    path = folder / f"{symbol}.csv"
    path.write_text(csv_text(candles))
    return path


class TestParquet:
    @pytest.mark.parametrize("ts_type", ["int", "timestamp", "naive", "iso", "nanoseconds"])
    async def test_timestamps_as_epoch_ms_timestamp_type_or_iso_strings_are_read(
        self, ts_type: str, tmp_path: Path
    ) -> None:
        written = minute_candles(10)
        write_parquet(tmp_path / "BTCUSDT.parquet", written, ts_type=ts_type)
        assert await fetch(CandleFileExchange(tmp_path), "1m", START, 10) == written

    async def test_a_null_price_is_refused_naming_the_row(self, tmp_path: Path) -> None:
        table = pa.table(
            {
                "timestamp": pa.array([START_MS, START_MS + MINUTE], type=pa.int64()),
                "open": [1.0, None],
                "high": [1.0, 1.0],
                "low": [1.0, 1.0],
                "close": [1.0, 1.0],
                "volume": [1.0, 1.0],
            }
        )
        pq.write_table(table, tmp_path / "BTCUSDT.parquet")
        with pytest.raises(CandleFileError, match="row 1 has no open"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 2)

    async def test_a_file_that_is_not_parquet_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.parquet").write_text("definitely not parquet")
        with pytest.raises(CandleFileError, match="not a readable Parquet file"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1)

    async def test_without_pyarrow_parquet_files_fail_with_an_install_hint(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_parquet(tmp_path / "BTCUSDT.parquet", minute_candles(3))
        monkeypatch.setitem(sys.modules, "pyarrow", None)
        monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
        with pytest.raises(ConfigurationError, match=r"needs pyarrow.*pip install"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1)

    async def test_without_pyarrow_csv_files_still_work(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "pyarrow", None)
        monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(3)))
        assert len(await fetch(CandleFileExchange(tmp_path), "1m", START, 3)) == 3


class TestBadFiles:
    @pytest.mark.parametrize(
        ("row", "reason"),
        [
            ("{ts},nan,101,99,100,1", "line 4 (2024-01-01T00:02:00.000Z) has a non-finite open"),
            ("{ts},100,inf,99,100,1", "has a non-finite high"),
            ("{ts},100,101,-99,100,1", "has a non-positive low"),
            ("{ts},100,101,99,100,-1", "has a negative volume"),
            ("{ts},100,98,99,98.5,1", "has high 98.0 below low 99.0"),
            ("{ts},100,101,99,102,1", "open/close outside its high/low range"),
            ("{ts},100,101,99,abc,1", "line 4 has close 'abc', not a number"),
            ("{ts},100,101,99,,1", "line 4 has close '', not a number"),
            ("{ts},100,101", "line 4 has 3 fields"),
            ("2024-01-01T00:02:00,100,101,99,100,1", "without a timezone"),
            ("yesterday,100,101,99,100,1", "neither epoch milliseconds nor ISO-8601"),
            ("{ts_off},100,101,99,100,1", "is not on the 1m grid"),
            ("{ts_ns},100,101,99,100,1", "outside 1970..9999 in epoch milliseconds"),
            ("{ts}.5,100,101,99,100,1", "not whole epoch milliseconds"),
        ],
    )
    async def test_a_bad_row_is_refused_naming_file_line_and_reason(
        self, row: str, reason: str, tmp_path: Path
    ) -> None:
        good = csv_text(minute_candles(2)).rstrip("\n").split("\n")
        ts = START_MS + 2 * MINUTE
        bad = row.format(ts=ts, ts_off=ts + 1, ts_ns=ts * 1_000_000)
        (tmp_path / "BTCUSDT.csv").write_text("\n".join([*good, bad]) + "\n")
        with pytest.raises(CandleFileError) as caught:
            await fetch(CandleFileExchange(tmp_path), "5m", START, 1)
        text = str(caught.value)
        assert text.startswith("BTCUSDT.csv: ")
        assert reason in text
        assert "symbol=BTCUSDT, interval=5m, since=2024-01-01T00:00:00Z" in text
        assert isinstance(caught.value, CandleDataError)

    async def test_two_rows_for_the_same_minute_are_refused_naming_both_lines(self, tmp_path: Path) -> None:
        written = minute_candles(5)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text([*written, written[1]]))
        with pytest.raises(CandleFileError, match=r"line 3 and line 7 both open at 2024-01-01T00:01:00.000Z"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1)

    async def test_a_missing_column_is_named(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text("timestamp,open,high,low,close\n1,2,3,4,5\n")
        with pytest.raises(CandleFileError, match=r"lacks column\(s\) volume"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1)

    async def test_an_empty_file_asks_for_the_header(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text("")
        with pytest.raises(CandleFileError, match="is empty; expected a header timestamp,open"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1)

    async def test_epoch_seconds_are_recognised_and_refused(self, tmp_path: Path) -> None:
        written = [c._replace(timestamp=c.timestamp // 1000) for c in minute_candles(3)]
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(written))
        with pytest.raises(CandleFileError, match="look like epoch seconds"):
            await fetch(CandleFileExchange(tmp_path), "1m", START, 1)

    async def test_a_bad_file_is_reported_by_candle_arrays_too(self, tmp_path: Path) -> None:
        (tmp_path / "BTCUSDT.csv").write_text(
            csv_text(minute_candles(2)) + f"{START_MS + 2 * MINUTE},1,1,1,nan,1\n"
        )
        with pytest.raises(CandleFileError, match="non-finite close") as caught:
            CandleFileExchange(tmp_path).candle_arrays("BTCUSDT")
        assert caught.value.symbol == "BTCUSDT" and caught.value.path.name == "BTCUSDT.csv"
        assert caught.value.since_ms == START_MS + 2 * MINUTE  # the bad row's open time


class TestCandleArrays:
    def test_candle_arrays_are_the_1m_columns_sorted_and_read_only(self, tmp_path: Path) -> None:
        written = minute_candles(20)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(list(reversed(written))))
        ts, o, h, lo, c, v = CandleFileExchange(tmp_path).candle_arrays("BTCUSDT")
        assert ts.dtype == np.int64 and o.dtype == np.float64
        assert ts.tolist() == [x.timestamp for x in written]
        assert c.tolist() == [x.close for x in written]
        for col in (ts, o, h, lo, c, v):
            assert not col.flags.writeable

    async def test_files_are_read_once(self, tmp_path: Path) -> None:
        path = tmp_path / "BTCUSDT.csv"
        path.write_text(csv_text(minute_candles(20)))
        exchange = CandleFileExchange(tmp_path)
        first = exchange.candle_arrays("BTCUSDT")
        path.unlink()
        assert exchange.candle_arrays("BTCUSDT") is first
        assert len(await fetch(exchange, "5m", START, 4)) == 4

    async def test_concurrent_first_requests_read_the_file_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from backtest_kit_runner.exchanges import files

        reads: list[Path] = []
        real_read = files._read

        def counting_read(path: Path) -> object:
            reads.append(path)
            return real_read(path)

        monkeypatch.setattr(files, "_read", counting_read)
        (tmp_path / "BTCUSDT.csv").write_text(csv_text(minute_candles(60)))
        exchange = CandleFileExchange(tmp_path)
        results = await asyncio.gather(*(fetch(exchange, "5m", START, 12) for _ in range(5)))
        assert all(r == results[0] for r in results)
        assert len(reads) == 1

    async def test_two_hundred_thousand_minutes_load_and_aggregate_in_one_go(self, tmp_path: Path) -> None:
        n = 200_000
        ts = START_MS + np.arange(n, dtype=np.int64) * MINUTE
        price = 100 + np.sin(np.arange(n) / 500)
        lines = [HEADER] + [
            f"{t},{p},{p + 1},{p - 1},{p},1" for t, p in zip(ts.tolist(), price.tolist(), strict=True)
        ]
        (tmp_path / "BTCUSDT.csv").write_text("\n".join(lines))
        exchange = CandleFileExchange(tmp_path)
        assert len(exchange.candle_arrays("BTCUSDT")) == n
        candles = await fetch(exchange, "1h", START, n // 60)
        assert len(candles) == n // 60 and candles[-1].volume == 60.0


class TestBinanceExports:
    """Binance's kline CSV export, with or without its header, in milliseconds or microseconds."""

    EXPORT_HEADER = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
        "taker_buy_volume,taker_buy_quote_volume,ignore"
    )

    @staticmethod
    def export_rows(candles: Sequence[Candle], unit: int) -> list[str]:
        return [
            f"{c.timestamp * unit},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r},"
            f"{(c.timestamp + MINUTE - 1) * unit},1.5,3,0.5,0.7,0"
            for c in candles
        ]

    @pytest.mark.parametrize("unit", [1, 1000], ids=["milliseconds", "microseconds"])
    @pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
    async def test_an_export_reads_as_the_same_candles(self, tmp_path: Path, unit: int, header: bool) -> None:
        candles = minute_candles(30)
        rows = self.export_rows(candles, unit)
        (tmp_path / "BTCUSDT.csv").write_text(
            "\n".join(([self.EXPORT_HEADER] if header else []) + rows) + "\n"
        )
        got = await CandleFileExchange(tmp_path).get_candles("BTCUSDT", "1m", START, 30)
        assert got == candles

    async def test_a_bad_row_of_a_headerless_export_is_named_by_its_line(self, tmp_path: Path) -> None:
        rows = self.export_rows(minute_candles(5), 1)
        fields = rows[3].split(",")
        fields[1] = "x"  # the open of the fourth line
        rows[3] = ",".join(fields)
        (tmp_path / "BTCUSDT.csv").write_text("\n".join(rows) + "\n")
        with pytest.raises(CandleFileError, match="line 4 has open 'x'"):
            await CandleFileExchange(tmp_path).get_candles("BTCUSDT", "1m", START, 5)

    async def test_a_download_cache_directory_serves_its_month_files_as_one_market(
        self, tmp_path: Path
    ) -> None:
        candles = minute_candles(120, start_ms=START_MS - 60 * MINUTE)  # 23:00 of Dec 31 .. 00:59 Jan 1
        folder = tmp_path / "BTCUSDT" / "1m"
        folder.mkdir(parents=True)
        for name, part in (("2023-12.parquet", candles[:60]), ("2024-01.parquet", candles[60:])):
            columns = dict(
                zip(
                    ("timestamp", "open", "high", "low", "close", "volume"),
                    zip(*part, strict=True),
                    strict=True,
                )
            )
            pq.write_table(pa.table({k: list(v) for k, v in columns.items()}), folder / name)
        exchange = CandleFileExchange(tmp_path)
        assert exchange.symbols() == ["BTCUSDT"]
        got = await exchange.get_candles("BTCUSDT", "1h", START - timedelta(hours=1), 2)
        assert [c.timestamp for c in got] == [START_MS - 60 * MINUTE, START_MS]
        assert got[1].close == candles[-1].close and got[0].open == candles[0].open
