"""Conditions, status deltas, settings and command-line scope behave as documented."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime

import pytest

from backtest_kit_operator.__main__ import DrainWaitsAreInfo, QuietTimers, build_parser, namespaces_from
from backtest_kit_operator.conditions import Condition, merge_conditions
from backtest_kit_operator.services import status_delta
from backtest_kit_operator.settings import load_settings

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T1 = datetime(2024, 1, 2, tzinfo=UTC)


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    first = merge_conditions(None, [Condition("Ready", "True", "Ok")], generation=1, now=T0)
    same = merge_conditions(first, [Condition("Ready", "True", "StillOk", "msg")], generation=2, now=T1)
    flipped = merge_conditions(same, [Condition("Ready", "False", "Broken")], generation=2, now=T1)
    assert same[0]["lastTransitionTime"] == "2024-01-01T00:00:00Z"
    assert same[0]["reason"] == "StillOk"
    assert same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "2024-01-02T00:00:00Z"


def test_conditions_not_mentioned_again_are_kept() -> None:
    before = merge_conditions(None, [Condition("Draining", "True", "X")], generation=1, now=T0)
    after = merge_conditions(before, [Condition("Ready", "False", "Y")], generation=1, now=T1)
    assert [c["type"] for c in after] == ["Ready", "Draining"]


def test_a_status_delta_holds_only_changes_and_removes_cleared_fields() -> None:
    current = {"phase": "Running", "openSignal": {"id": "a"}, "ticks": 5, "message": "old"}
    desired = {"phase": "Running", "openSignal": None, "ticks": 6, "message": "", "podName": None}
    assert status_delta(current, desired) == {"openSignal": None, "ticks": 6, "message": None}
    assert status_delta(current, dict(current)) == {}


def test_settings_come_from_prefixed_variables() -> None:
    settings = load_settings(
        {
            "BACKTEST_KIT_OPERATOR_POLL_INTERVAL": "1.5",
            "BACKTEST_KIT_OPERATOR_RUNNER_IMAGE": "me/runner:9",
            "BACKTEST_KIT_OPERATOR_POD_LABELS": '{"a": "b"}',
        }
    )
    assert settings.poll_interval == 1.5
    assert settings.runner_image == "me/runner:9"
    assert settings.pod_labels == {"a": "b"}
    assert load_settings({}).metrics_port == 9090


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_the_namespace_scope_is_one_a_list_or_the_whole_cluster() -> None:
    assert namespaces_from(parse("-n", "a"), {}) == ["a"]
    assert namespaces_from(parse("-n", "a,b", "-n", "c"), {}) == ["a", "b", "c"]
    assert namespaces_from(parse("-A"), {"BACKTEST_KIT_OPERATOR_NAMESPACES": "x"}) == []
    assert namespaces_from(parse(), {"BACKTEST_KIT_OPERATOR_NAMESPACES": "x, y"}) == ["x", "y"]
    assert namespaces_from(parse(), {"BACKTEST_KIT_OPERATOR_NAMESPACES": "*"}) == []
    assert namespaces_from(parse(), {}) == []


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse("-n", "a", "-A")


def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_drain_retries_are_logged_as_info_and_timer_successes_are_dropped() -> None:
    waiting = record("Handler 'trader_drain' failed temporarily: drain in progress: waiting for signal x")
    assert DrainWaitsAreInfo().filter(waiting)
    assert waiting.levelno == logging.INFO
    real_error = record("Handler 'trader_drain' failed temporarily: get pod: HTTP 500")
    DrainWaitsAreInfo().filter(real_error)
    assert real_error.levelno == logging.ERROR
    assert not QuietTimers().filter(record("Timer 'trader_poll' succeeded.", logging.INFO))
    assert QuietTimers().filter(record("Handler 'trader_changed' succeeded.", logging.INFO))
