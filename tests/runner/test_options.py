"""Options from flags and BACKTEST_KIT_* variables: precedence, parsing, and clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import ValidationError

from backtest_kit_runner.options import (
    COMMANDS,
    DEFAULT_OUTPUT,
    DEFAULT_STATE_DIR,
    OPTIONS,
    BacktestOptions,
    Frame,
    OptionsError,
    TraderOptions,
    WalkerOptions,
    WalkerTaskOptions,
    option_help,
    parse_options,
)

LIVE = {"BACKTEST_KIT_SYMBOL": "SYNUSDT", "BACKTEST_KIT_STRATEGY": "a_long_tp1_sl1"}


def refusal(argv: list[str], env: dict[str, str]) -> str:
    with pytest.raises(OptionsError) as caught:
        parse_options(argv, env)
    return str(caught.value)


class TestWhereOptionsComeFrom:
    def test_live_is_the_default_subcommand(self) -> None:
        assert isinstance(parse_options([], LIVE), TraderOptions)
        assert isinstance(parse_options(["live"], LIVE), TraderOptions)

    def test_every_option_can_come_from_the_environment(self) -> None:
        env = {
            **LIVE,
            "BACKTEST_KIT_PARAMS": '{"fast": 5}',
            "BACKTEST_KIT_EXCHANGE": "csv:/data/candles",
            "BACKTEST_KIT_LOAD": "mypkg.strats, /etc/backtest-kit/strategies/x.py",
            "BACKTEST_KIT_STATE_DIR": "/state",
            "BACKTEST_KIT_REPLAY_FROM": "2024-01-01T00:00:00Z",
            "BACKTEST_KIT_SPEED": "600",
            "BACKTEST_KIT_UNTIL": "2024-01-02T00:00:00Z",
            "BACKTEST_KIT_EVENTS": "/state/events.jsonl",
            "BACKTEST_KIT_HTTP_PORT": "9000",
            "BACKTEST_KIT_LOG_LEVEL": "DEBUG",
        }
        o = parse_options([], env)
        assert isinstance(o, TraderOptions)
        assert o.params == {"fast": 5}
        assert o.exchange == "csv:/data/candles"
        assert o.load == ("mypkg.strats", "/etc/backtest-kit/strategies/x.py")
        assert o.state_dir == Path("/state")
        assert o.replay_from == datetime(2024, 1, 1, tzinfo=UTC)
        assert o.speed == 600 and o.until == datetime(2024, 1, 2, tzinfo=UTC)
        assert o.events == Path("/state/events.jsonl")
        assert o.http_port == 9000 and o.log_level == "DEBUG"

    def test_the_command_line_wins_over_the_environment(self) -> None:
        o = parse_options(
            ["--symbol", "BTCUSDT", "--http-port", "8081"], {**LIVE, "BACKTEST_KIT_HTTP_PORT": "9"}
        )
        assert isinstance(o, TraderOptions)
        assert o.symbol == "BTCUSDT" and o.http_port == 8081

    def test_load_repeats_on_the_command_line(self) -> None:
        o = parse_options(["--load", "a.b", "--load", "c.py"], LIVE)
        assert isinstance(o, TraderOptions) and o.load == ("a.b", "c.py")

    def test_an_empty_variable_counts_as_not_set(self) -> None:
        o = parse_options([], {**LIVE, "BACKTEST_KIT_HTTP_PORT": "", "BACKTEST_KIT_PARAMS": ""})
        assert isinstance(o, TraderOptions) and o.http_port == 8080 and o.params == {}

    def test_defaults_match_the_contract(self) -> None:
        o = parse_options([], LIVE)
        assert isinstance(o, TraderOptions)
        assert (o.exchange, o.state_dir, o.http_port, o.replay_speed) == (
            "synthetic",
            DEFAULT_STATE_DIR,
            8080,
            1.0,
        )
        b = parse_options(["backtest", "--frame", "2024-01-01..2024-01-02"], LIVE)
        assert isinstance(b, BacktestOptions) and b.output is None and b.frame_interval == "1m"
        assert not b.quiet and b.json_file is None and b.chart is None  # the report goes to stdout
        task_env = {
            **LIVE,
            "BACKTEST_KIT_TASKS": '[{"label": "a", "strategy": "a"}]',
            "JOB_COMPLETION_INDEX": "0",
        }
        t = parse_options(["walker-task", "--frame", "2024-01-01..2024-01-02"], task_env)
        assert isinstance(t, WalkerTaskOptions) and t.output == DEFAULT_OUTPUT  # the pod's termination log

    def test_max_speed_replays_as_fast_as_possible(self) -> None:
        o = parse_options(["--replay-from", "2024-01-01", "--speed", "max"], LIVE)
        assert isinstance(o, TraderOptions) and o.replay_speed == float("inf")

    def test_a_time_without_offset_is_utc(self) -> None:
        o = parse_options(["--replay-from", "2024-01-01T12:00"], LIVE)
        assert isinstance(o, TraderOptions) and o.replay_from == datetime(2024, 1, 1, 12, tzinfo=UTC)


class TestWalkerTasks:
    TASKS = (
        '[{"label": "fast", "strategy": "sma-cross", "params": {"fast": 3}}, {"label": "a", "strategy": "a"}]'
    )
    ENV: ClassVar[dict[str, str]] = {
        "BACKTEST_KIT_TASKS": TASKS,
        "BACKTEST_KIT_SYMBOL": "SYNUSDT",
        "BACKTEST_KIT_FRAME": "2024-01-01T00:00:00Z..2024-01-02T00:00:00Z",
    }

    def test_the_job_completion_index_picks_the_task(self) -> None:
        o = parse_options(["walker-task"], {**self.ENV, "JOB_COMPLETION_INDEX": "1"})
        assert isinstance(o, WalkerTaskOptions)
        assert o.task.label == "a" and o.task.params == {}

    def test_an_index_past_the_last_task_is_refused(self) -> None:
        message = refusal(["walker-task"], {**self.ENV, "JOB_COMPLETION_INDEX": "2"})
        assert "JOB_COMPLETION_INDEX 2 is out of range: there are 2 tasks" in message

    def test_a_task_with_an_unknown_field_is_refused(self) -> None:
        env = {
            **self.ENV,
            "JOB_COMPLETION_INDEX": "0",
            "BACKTEST_KIT_TASKS": '[{"label": "x", "strategy": "a", "p": 1}]',
        }
        assert "--tasks / BACKTEST_KIT_TASKS at 0.p: Extra inputs are not permitted" in refusal(
            ["walker-task"], env
        )


class TestRefusals:
    def test_missing_required_options_name_flag_and_variable(self) -> None:
        message = refusal([], {})
        assert "--symbol / BACKTEST_KIT_SYMBOL: required" in message
        assert "--strategy / BACKTEST_KIT_STRATEGY: required" in message

    def test_the_message_says_which_source_gave_the_bad_value(self) -> None:
        assert "(given by BACKTEST_KIT_HTTP_PORT)" in refusal([], {**LIVE, "BACKTEST_KIT_HTTP_PORT": "99999"})
        assert "(given by --http-port)" in refusal(["--http-port", "x"], LIVE)

    @pytest.mark.parametrize(
        ("argv", "words"),
        [
            (["--params", "{oops"], "not valid JSON"),
            (["--params", "[1]"], "must be a JSON object"),
            (["--speed", "0"], "greater than 0"),
            (["--replay-from", "2024-01-01", "--speed", "fast"], "neither a number nor 'max'"),
            (["--replay-from", "2024-01-01", "--speed", "2e6"], "at most 1e+06"),
            (["--speed", "10"], "--speed only applies to a replay"),
            (["--replay-from", "2024-02-01", "--until", "2024-01-01"], "is not after --replay-from"),
            (["--replay-from", "yesterday"], "is not an ISO-8601 time"),
            (["--symbol", "BTC USDT"], "--symbol"),
            (["--bogus"], "unrecognized arguments: --bogus"),
        ],
    )
    def test_bad_live_options(self, argv: list[str], words: str) -> None:
        assert words in refusal(argv, LIVE)

    @pytest.mark.parametrize(
        ("frame", "words"),
        [("2024-01-01", "START..END"), ("2024-01-02..2024-01-01", "is not after its start")],
    )
    def test_bad_frames(self, frame: str, words: str) -> None:
        assert words in refusal(["backtest", "--frame", frame], LIVE)

    def test_an_unknown_metric_is_refused(self) -> None:
        assert "--metric" in refusal(
            ["backtest", "--frame", "2024-01-01..2024-01-02", "--metric", "luck"], LIVE
        )


class TestTheModel:
    def test_options_are_frozen_and_refuse_unknown_fields(self) -> None:
        o = TraderOptions(symbol="S", strategy="s")
        with pytest.raises(ValidationError):
            o.symbol = "T"  # type: ignore[misc]
        with pytest.raises(ValidationError):
            TraderOptions.model_validate({"symbol": "S", "strategy": "s", "leverage": 10})

    def test_the_json_form_is_camel_case(self) -> None:
        data = TraderOptions(symbol="S", strategy="s").to_json()
        assert {"stateDir", "httpPort", "replayFrom", "logLevel"} <= set(data)


class TestTheOneTable:
    def test_every_field_of_every_command_is_spelled_once_in_the_table(self) -> None:
        for cls in COMMANDS.values():
            assert [s.field for s in cls.SPECS] == [f for f in OPTIONS if f in cls.model_fields]
            assert set(cls.model_fields) == {s.field for s in cls.SPECS}
        flags = [s.flag for s in OPTIONS.values()]
        assert len(flags) == len(set(flags)) and OPTIONS["json_file"].flag == "--json"

    def test_the_help_shows_choices_the_commands_default_and_the_variable(self) -> None:
        text = option_help(BacktestOptions, OPTIONS["log_level"])
        assert "one of: DEBUG, INFO, WARNING, ERROR (default WARNING) [env BACKTEST_KIT_LOG_LEVEL]" in text
        assert "(default INFO)" in option_help(TraderOptions, OPTIONS["log_level"])
        assert f"(default {DEFAULT_OUTPUT})" in option_help(WalkerTaskOptions, OPTIONS["output"])
        assert "(default" not in option_help(BacktestOptions, OPTIONS["output"])


class TestFramesAndCommands:
    def test_a_bare_end_date_means_its_last_minute(self) -> None:
        b = parse_options(["backtest", "--frame", "2024-01-01..2024-01-30"], LIVE)
        assert isinstance(b, BacktestOptions) and isinstance(b.frame, Frame)
        assert b.frame.start == datetime(2024, 1, 1, tzinfo=UTC)
        assert b.frame.end == datetime(2024, 1, 30, 23, 59, tzinfo=UTC)
        b = parse_options(["backtest", "--frame", "2024-01-01T00:00:00Z..2024-01-02T00:00:00Z"], LIVE)
        assert isinstance(b, BacktestOptions) and isinstance(b.frame, Frame)
        assert b.frame.end == datetime(2024, 1, 2, tzinfo=UTC)

    def test_a_frame_name_is_left_for_a_load_module_to_register(self) -> None:
        b = parse_options(["backtest", "--frame", "two_days"], LIVE)
        assert isinstance(b, BacktestOptions) and b.frame == "two_days"

    def test_quiet_is_a_switch_and_its_variable_says_true_or_false(self) -> None:
        args = ["backtest", "--frame", "2024-01-01..2024-01-02"]
        assert parse_options([*args, "--quiet"], LIVE).quiet is True  # type: ignore[attr-defined]
        assert parse_options(args, {**LIVE, "BACKTEST_KIT_QUIET": "true"}).quiet is True  # type: ignore[attr-defined]
        assert parse_options(args, {**LIVE, "BACKTEST_KIT_QUIET": "0"}).quiet is False  # type: ignore[attr-defined]
        assert "--quiet / BACKTEST_KIT_QUIET" in refusal(args, {**LIVE, "BACKTEST_KIT_QUIET": "maybe"})

    def test_a_walker_is_registered_or_inline_not_both(self) -> None:
        w = parse_options(
            ["walker", "--symbol", "S", "--strategies", "a,b", "--strategies", "c"],
            {"BACKTEST_KIT_FRAME": "2024-01-01..2024-01-02"},
        )
        assert isinstance(w, WalkerOptions) and w.strategies == ("a", "b", "c") and w.jobs == 1
        assert isinstance(parse_options(["walker", "--symbol", "S", "--walker", "mine"], {}), WalkerOptions)
        assert "missing: --strategies, --frame" in refusal(["walker", "--symbol", "S"], {})
        both = ["walker", "--symbol", "S", "--walker", "w", "--strategies", "a"]
        assert "not both" in refusal(both, {})

    @pytest.mark.parametrize(
        ("argv", "words"),
        [
            (["--frame-interval", "7m"], "unknown frame interval '7m'"),
            (["--chart", "c.gif"], "--chart / BACKTEST_KIT_CHART"),
            (["--exchange", "csv:"], "csv:<path>"),
            (["--exchange", "binance:ftp://x"], "needs an http(s) URL"),
            (["--exchange", "ccxt:"], "ccxt:<id>"),
        ],
    )
    def test_bad_backtest_options(self, argv: list[str], words: str) -> None:
        assert words in refusal(["backtest", "--frame", "2024-01-01..2024-01-02", *argv], LIVE)


def test_the_help_lists_exactly_the_strategies_that_need_no_load() -> None:
    import backtest_kit
    from backtest_kit_runner.loading import BUILTIN_MODULES
    from backtest_kit_runner.options import BUILTIN_STRATEGIES, OPTIONS, BacktestOptions, option_help

    engine = backtest_kit.Engine()
    assert set(BUILTIN_STRATEGIES) == set(engine.registry.list_strategies()) | set(BUILTIN_MODULES)
    text = option_help(BacktestOptions, OPTIONS["strategy"])
    assert "built in: " + ", ".join(BUILTIN_STRATEGIES) + " [env" in text


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from backtest_kit_runner.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"backtest-kit {version('backtest-kit-operator')}"
