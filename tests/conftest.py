"""Shared fixtures: every test runs on a fresh default engine (its own registry, config, bus)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import backtest_kit as bk


@pytest.fixture(autouse=True)
def fresh_engine() -> Iterator[bk.Engine]:
    """The module-level API acts on a new engine for the test, and the previous one after it."""
    engine = bk.Engine()
    previous = bk.use_engine(engine)
    yield engine
    bk.use_engine(previous)
