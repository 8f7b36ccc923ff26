"""The spec models accept what the CRD accepts and explain what they refuse."""

from __future__ import annotations

import pytest
from operator_samples import TRADER, WALKER

from backtest_kit_operator.models import SpecError, parse_trader_spec, parse_walker_spec


def test_a_full_trader_spec_parses_with_defaults_filled_in() -> None:
    spec = parse_trader_spec(
        {"symbol": "ETHUSDT", "strategy": {"name": "x"}, "exchange": {"name": "binance"}}
    )
    assert spec.storage.size == "1Gi"
    assert spec.storage.reclaim_policy == "Retain"
    assert spec.runner.image is None
    assert spec.replay is None


def test_replay_keeps_its_from_field_despite_the_python_keyword() -> None:
    spec = parse_trader_spec(TRADER["spec"])
    assert spec.replay is not None
    assert spec.replay.from_.year == 2024
    assert spec.replay.speed == 60


def test_every_problem_of_a_trader_spec_is_named_with_its_field() -> None:
    with pytest.raises(SpecError) as err:
        parse_trader_spec(
            {
                "symbol": "btc",
                "strategy": {"name": "x"},
                "exchange": {"name": "csv"},
                "replay": {"from": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"},
                "surprise": 1,
            }
        )
    text = str(err.value)
    assert "spec.symbol" in text
    assert "csv needs options.path" in text
    assert "replay.until must be after replay.from" in text
    assert "spec.surprise" in text


def test_a_strategy_module_needs_exactly_one_source() -> None:
    base = {"symbol": "BTCUSDT", "exchange": {"name": "synthetic"}}
    with pytest.raises(SpecError, match="exactly one"):
        parse_trader_spec({**base, "strategy": {"name": "x", "module": {}}})
    with pytest.raises(SpecError, match="exactly one"):
        parse_trader_spec(
            {
                **base,
                "strategy": {
                    "name": "x",
                    "module": {"python": "a.b", "configMap": {"name": "c", "key": "k.py"}},
                },
            }
        )


def test_walker_labels_default_to_the_strategy_name_and_must_be_unique() -> None:
    spec = parse_walker_spec(WALKER["spec"])
    assert [s.effective_label for s in spec.strategies] == ["fast", "slow", "momentum"]
    twice = dict(WALKER["spec"], strategies=[{"name": "a"}, {"name": "a"}])
    with pytest.raises(SpecError, match="used twice"):
        parse_walker_spec(twice)


def test_a_walker_frame_must_end_after_it_starts_and_parallelism_stays_in_range() -> None:
    backwards = dict(WALKER["spec"], frame={"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"})
    with pytest.raises(SpecError, match=r"frame\.end must be after frame\.start"):
        parse_walker_spec(backwards)
    with pytest.raises(SpecError, match="parallelism"):
        parse_walker_spec(dict(WALKER["spec"], parallelism=65))
    with pytest.raises(SpecError, match="metric"):
        parse_walker_spec(dict(WALKER["spec"], metric="luck"))
