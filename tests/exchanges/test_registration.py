"""Handing adapters to the engine: ``register`` and the columnar fast path agree with get_candles."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from backtest_kit.candles import Candle, CandleArrays
from backtest_kit.errors import CandleDataError, ConfigurationError
from backtest_kit_runner.exchanges import BinanceKlinesExchange, CandleFileExchange, register

START = datetime(2024, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
MINUTE = 60_000


def write_minutes(path: Path, n: int) -> list[Candle]:
    candles = [
        Candle(START_MS + i * MINUTE, 100 + i % 9, 101 + i % 9, 99 + i % 9, 100.5 + i % 9, 1 + i % 4)
        for i in range(n)
    ]
    lines = ["timestamp,open,high,low,close,volume"] + [",".join(map(str, c)) for c in candles]
    path.write_text("\n".join(lines) + "\n")
    return candles


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The engine's exchange table, emptied for the test and restored afterwards."""
    from backtest_kit import registry as engine_registry

    items: dict[str, object] = {}
    monkeypatch.setattr(engine_registry.registry.exchanges, "items", items)
    return items


class TestColumnarFastPath:
    @pytest.mark.parametrize(("interval", "limit"), [("1m", 30), ("5m", 6), ("15m", 2)])
    async def test_get_candle_arrays_serves_what_get_candles_serves(
        self, interval: str, limit: int, tmp_path: Path
    ) -> None:
        write_minutes(tmp_path / "BTCUSDT.csv", 30)
        exchange = CandleFileExchange(tmp_path)
        arrays = exchange.get_candle_arrays("BTCUSDT", interval, START_MS, limit)
        assert isinstance(arrays, CandleArrays)
        assert arrays.to_candles() == await exchange.get_candles("BTCUSDT", interval, START, limit)
        assert all(not col.flags.writeable for col in arrays)
        assert arrays.ts.dtype == np.int64

    def test_get_candle_arrays_refuses_what_get_candles_refuses(self, tmp_path: Path) -> None:
        write_minutes(tmp_path / "BTCUSDT.csv", 30)
        exchange = CandleFileExchange(tmp_path)
        with pytest.raises(ConfigurationError, match="not on the 5m grid"):
            exchange.get_candle_arrays("BTCUSDT", "5m", START_MS + MINUTE, 2)
        with pytest.raises(CandleDataError, match="covers") as caught:
            exchange.get_candle_arrays("BTCUSDT", "5m", START_MS, 7)
        assert "symbol=BTCUSDT, interval=5m, since=2024-01-01T00:00:00Z" in str(caught.value)

    def test_a_limit_of_zero_gives_empty_columns(self, tmp_path: Path) -> None:
        write_minutes(tmp_path / "BTCUSDT.csv", 3)
        assert len(CandleFileExchange(tmp_path).get_candle_arrays("BTCUSDT", "1h", START_MS, 0)) == 0


class TestRegister:
    async def test_a_file_exchange_is_registered_with_its_columnar_fast_path(
        self, tmp_path: Path, isolated_registry: dict[str, object]
    ) -> None:
        write_minutes(tmp_path / "BTCUSDT.csv", 10)
        exchange = CandleFileExchange(tmp_path)
        register("files", exchange)
        schema = isolated_registry["files"]
        assert schema.get_candles == exchange.get_candles  # type: ignore[attr-defined]
        assert schema.get_candle_arrays == exchange.get_candle_arrays  # type: ignore[attr-defined]
        assert len(await schema.get_candles("BTCUSDT", "1m", START, 10)) == 10  # type: ignore[attr-defined]

    async def test_the_binance_adapter_is_registered_without_one(
        self, isolated_registry: dict[str, object]
    ) -> None:
        exchange = BinanceKlinesExchange()
        register("binance", exchange)
        schema = isolated_registry["binance"]
        assert schema.get_candles == exchange.get_candles  # type: ignore[attr-defined]
        assert schema.get_candle_arrays is None  # type: ignore[attr-defined]

    def test_a_taken_name_is_refused_unless_replacing(
        self, tmp_path: Path, isolated_registry: dict[str, object]
    ) -> None:
        write_minutes(tmp_path / "BTCUSDT.csv", 3)
        register("files", CandleFileExchange(tmp_path))
        with pytest.raises(ConfigurationError, match="already registered"):
            register("files", CandleFileExchange(tmp_path))
        register("files", CandleFileExchange(tmp_path), replace=True)
