"""Fixtures of the runner tests: live runner child processes that are always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from .runner_process import LiveRunner


@pytest.fixture
def live_runner(tmp_path: Path) -> Iterator[Callable[..., LiveRunner]]:
    """Start ``python -m backtest_kit_runner live ARGS`` on a free port (or ``port``); killed at teardown."""
    started: list[LiveRunner] = []

    def start(
        args: Sequence[str],
        *,
        state: str = "state",
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> LiveRunner:
        runner = LiveRunner(tmp_path / state, tmp_path, list(args), dict(env or {}))
        if port is not None:
            runner.port = port
        started.append(runner.start())
        return runner

    yield start
    for runner in started:
        runner.kill()
