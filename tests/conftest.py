"""Shared fixtures: every test starts from the default engine configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import backtest_kit as bk


@pytest.fixture(autouse=True)
def default_config() -> Iterator[None]:
    bk.reset_config()
    yield
    bk.reset_config()
