"""The --exchange option: built-in names, Binance, CSV files, and what the runner refuses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

import backtest_kit
from backtest_kit.errors import ConfigurationError
from backtest_kit_runner.exchange_setup import ExchangeSpec, exchange_label, prepare_exchange
from backtest_kit_runner.metrics import RunnerMetrics


def write_csv(path: Path, minutes: int = 30) -> Path:
    t0 = 1_704_067_200_000
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(minutes):
        p = 100 + i * 0.01
        lines.append(f"{t0 + i * 60_000},{p},{p + 0.05},{p - 0.05},{p + 0.01},10")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def prepare(text: str, metrics: RunnerMetrics | None = None) -> str:
    prepared = prepare_exchange(
        text,
        on_request=metrics.on_exchange_request if metrics else None,
        register=backtest_kit.add_exchange,
        registered=backtest_kit.list_exchanges,
    )
    asyncio.run(prepared.aclose())
    return prepared.name


class TestParsing:
    @pytest.mark.parametrize(
        ("text", "kind", "name", "arg"),
        [
            ("synthetic", "registered", "synthetic", None),
            ("binance", "binance", "binance", None),
            (
                "binance:https://testnet.binance.vision",
                "binance",
                "binance",
                "https://testnet.binance.vision",
            ),
            ("csv:/data/SYNUSDT.csv", "csv", "csv", "/data/SYNUSDT.csv"),
        ],
    )
    def test_kinds(self, text: str, kind: str, name: str, arg: str | None) -> None:
        assert ExchangeSpec.parse(text) == ExchangeSpec(kind, name, arg)

    @pytest.mark.parametrize(
        ("text", "words"),
        [
            ("csv:", "give the candle file"),
            ("binance:ftp://x", r"http\(s\) URL"),
            ("kraken:eu", "unknown kind"),
        ],
    )
    def test_refusals(self, text: str, words: str) -> None:
        with pytest.raises(ConfigurationError, match=words):
            ExchangeSpec.parse(text)


class TestRegistration:
    def test_the_synthetic_market_is_used_as_registered(self) -> None:
        assert prepare("synthetic") == "synthetic"

    def test_an_unregistered_name_lists_the_registered_ones(self) -> None:
        with pytest.raises(ConfigurationError, match=r"unknown exchange 'kraken'; registered: .*synthetic"):
            prepare("kraken")

    def test_binance_is_registered_under_its_name(self) -> None:
        assert prepare("binance:http://127.0.0.1:9") == "binance"
        assert "binance" in backtest_kit.list_exchanges()

    def test_a_missing_csv_path_is_refused_before_any_tick(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="neither a file nor a directory"):
            prepare(f"csv:{tmp_path / 'missing.csv'}")

    def test_csv_requests_are_timed_into_the_metrics(self, tmp_path: Path) -> None:
        metrics = RunnerMetrics(symbol="SYNUSDT", strategy="s", exchange="csv", process_metrics=False)
        assert prepare(f"csv:{write_csv(tmp_path / 'SYNUSDT.csv')}", metrics) == "csv"
        schema = backtest_kit.default_engine().registry.exchanges.get("csv")
        since = datetime(2024, 1, 1, tzinfo=UTC)

        async def fetch() -> int:
            return len(await schema.get_candles("SYNUSDT", "1m", since, 5))

        assert asyncio.run(fetch()) == 5
        labels = {"symbol": "SYNUSDT", "strategy": "s", "exchange": "csv"}
        count = "backtest_kit_exchange_request_duration_seconds_count"
        assert value_with(metrics, count, labels, interval="1m") == 1


def value_with(metrics: RunnerMetrics, name: str, labels: dict[str, str], **extra: str) -> float:
    got = metrics.registry.get_sample_value(name, {**labels, **extra})
    assert got is not None
    return got


class TestExchangeOptions:
    def test_csv_takes_its_path_from_the_options_as_the_operator_sends_it(self, tmp_path: Path) -> None:
        path = write_csv(tmp_path / "SYNUSDT.csv")
        prepared = prepare_exchange(
            "csv",
            on_request=None,
            register=backtest_kit.add_exchange,
            registered=backtest_kit.list_exchanges,
            settings={"path": str(path)},
        )
        assert prepared.name == "csv"

    def test_binance_takes_url_timeout_and_retries(self) -> None:
        prepared = prepare_exchange(
            "binance",
            on_request=None,
            register=backtest_kit.add_exchange,
            registered=backtest_kit.list_exchanges,
            settings={"baseUrl": "http://127.0.0.1:9", "requestTimeout": "2.5", "maxRetries": "1"},
        )
        asyncio.run(prepared.aclose())
        assert prepared.name == "binance"

    @pytest.mark.parametrize(
        ("text", "settings", "words"),
        [
            ("synthetic", {"path": "/x"}, "not understood by exchange 'synthetic'"),
            ("binance", {"apiKey": "k"}, "accepted: baseUrl, maxRetries, maxRetryAfter, requestTimeout"),
            ("binance", {"maxRetries": "many"}, "maxRetries must be a number"),
        ],
    )
    def test_options_an_exchange_does_not_understand_are_refused(
        self, text: str, settings: dict[str, object], words: str
    ) -> None:
        with pytest.raises(ConfigurationError, match=words):
            prepare_exchange(
                text,
                on_request=None,
                register=backtest_kit.add_exchange,
                registered=backtest_kit.list_exchanges,
                settings=settings,
            )


class TestLabels:
    @pytest.mark.parametrize(
        ("text", "label"),
        [("synthetic", "synthetic"), ("binance:https://x", "binance"), ("csv", "csv"), ("csv:/d", "csv")],
    )
    def test_the_metric_label_is_the_registered_name(self, text: str, label: str) -> None:
        assert exchange_label(text) == label
