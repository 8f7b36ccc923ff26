"""The columnar fast path of the file adapter serves and refuses what its get_candles does."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from backtest_kit.candles import Candle, CandleArrays
from backtest_kit.errors import CandleDataError, ConfigurationError
from backtest_kit_runner.exchanges import CandleFileExchange

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
