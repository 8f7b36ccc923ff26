"""Loading strategies from modules and files, with parameters checked by each strategy's model."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

import backtest_kit
from backtest_kit_runner.loading import StrategyLoadError, load_module, load_modules, resolve_strategy


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def resolve(name: str, params: dict[str, object], *specs: str) -> object:
    return resolve_strategy(name, params, load_modules(specs), registered=backtest_kit.list_strategies)


PLAIN = """
    from backtest_kit import add_strategy

    async def get_signal(symbol, when, price):
        return None

    add_strategy("{name}", interval="5m", get_signal=get_signal)
"""

PARAMETRISED = """
    from pydantic import BaseModel, ConfigDict, Field
    from backtest_kit import add_strategy

    STRATEGY = "{name}"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        threshold: float = Field(gt=0)
        window: int = 10

    seen = []

    def register(params):
        seen.append(params)

        async def get_signal(symbol, when, price):
            return None

        add_strategy(STRATEGY, interval="1m", get_signal=get_signal, replace=True)
"""


class TestBuiltInStrategies:
    @pytest.mark.parametrize("name", ["a_long_tp1_sl1", "c_limit_sched", "d_sma_cross"])
    def test_the_engine_examples_resolve_without_parameters(self, name: str) -> None:
        chosen = resolve(name, {})
        assert chosen.name == name and chosen.params == {}  # type: ignore[attr-defined]

    def test_an_engine_example_refuses_parameters(self) -> None:
        with pytest.raises(StrategyLoadError, match="takes no parameters, but --params gave fast"):
            resolve("a_long_tp1_sl1", {"fast": 3})

    def test_the_parametrised_example_validates_and_registers_its_parameters(self) -> None:
        chosen = resolve("sma-cross", {"fast": 3, "slow": 12})
        assert chosen.params["fast"] == 3 and chosen.params["slow"] == 12  # type: ignore[attr-defined]
        assert "sma-cross" in backtest_kit.list_strategies()

    @pytest.mark.parametrize(
        ("params", "words"),
        [
            ({"fats": 3}, "fats: Extra inputs are not permitted"),
            ({"fast": 30, "slow": 20}, "must be shorter"),
        ],
    )
    def test_the_parametrised_example_refuses_bad_parameters(
        self, params: dict[str, object], words: str
    ) -> None:
        with pytest.raises(StrategyLoadError, match="invalid --params for strategy 'sma-cross'") as caught:
            resolve("sma-cross", params)
        assert words in str(caught.value)

    def test_an_unknown_name_lists_what_is_available(self) -> None:
        with pytest.raises(StrategyLoadError) as caught:
            resolve("a_long_tp2", {})
        message = str(caught.value)
        assert "unknown strategy 'a_long_tp2'" in message
        assert "a_long_tp1_sl1" in message and "sma-cross" in message and "--load" in message


class TestUserStrategyFiles:
    def test_a_plain_file_registers_its_strategy_on_import(self, tmp_path: Path) -> None:
        name = unique("plain")
        path = write(tmp_path / "plain.py", PLAIN.format(name=name))
        assert resolve(name, {}, str(path)).name == name  # type: ignore[attr-defined]

    def test_a_parametrised_file_gets_its_validated_params(self, tmp_path: Path) -> None:
        name = unique("param")
        path = write(tmp_path / "param_file.py", PARAMETRISED.format(name=name))
        chosen = resolve(name, {"threshold": 0.5}, str(path))
        assert chosen.params == {"threshold": 0.5, "window": 10}  # type: ignore[attr-defined]
        module = load_module(str(path))
        assert [p.threshold for p in module.seen] == [0.5]

    def test_nothing_is_registered_when_parameters_are_bad(self, tmp_path: Path) -> None:
        name = unique("param")
        path = write(tmp_path / "param_bad.py", PARAMETRISED.format(name=name))
        with pytest.raises(StrategyLoadError, match="threshold: Input should be greater than 0"):
            resolve(name, {"threshold": -1}, str(path))
        assert name not in backtest_kit.list_strategies()

    def test_a_missing_file_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(StrategyLoadError, match="no such file"):
            load_module(str(tmp_path / "nope.py"))

    def test_a_syntax_error_gives_the_line(self, tmp_path: Path) -> None:
        path = write(tmp_path / "broken.py", "x = 1\ndef f(:\n")
        with pytest.raises(StrategyLoadError, match="syntax error at line 2"):
            load_module(str(path))

    def test_an_import_time_failure_is_reported_with_its_cause(self, tmp_path: Path) -> None:
        path = write(tmp_path / "raises.py", "raise RuntimeError('no API key')\n")
        with pytest.raises(StrategyLoadError, match="RuntimeError: no API key"):
            load_module(str(path))

    def test_a_duplicate_registration_is_a_configuration_error(self, tmp_path: Path) -> None:
        path = write(tmp_path / "dup.py", PLAIN.format(name="a_long_tp1_sl1"))
        with pytest.raises(StrategyLoadError, match="already registered"):
            load_module(str(path))

    def test_register_without_params_model_is_refused(self, tmp_path: Path) -> None:
        path = write(tmp_path / "half.py", "STRATEGY = 'half'\ndef register(params):\n    pass\n")
        with pytest.raises(StrategyLoadError, match="Params is not a pydantic model"):
            resolve("half", {}, str(path))


class TestModulePaths:
    def test_a_dotted_module_path_is_imported(self) -> None:
        module = load_module("backtest_kit_runner.example_strategies.sma_cross")
        assert module.STRATEGY == "sma-cross"

    def test_a_missing_module_is_named(self) -> None:
        with pytest.raises(StrategyLoadError, match="no module named 'no_such_pkg'"):
            load_module("no_such_pkg.strategies")

    def test_a_value_that_is_neither_path_nor_module_is_refused(self) -> None:
        with pytest.raises(StrategyLoadError, match=r"neither a \.py file nor a dotted module path"):
            load_module("my strategies")
