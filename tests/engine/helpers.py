"""Small helpers for engine tests: throwaway registrations that are removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import backtest_kit as bk

SYM = "SYNUSDT"


def day(d: int, h: int = 0, m: int = 0) -> datetime:
    return datetime(2024, 1, d, h, m, tzinfo=UTC)


@contextmanager
def registered() -> Iterator[list[tuple[str, str]]]:
    """Yields a list to append ``(table, name)`` to; those registrations are dropped on exit.

    Each test already runs on a fresh engine; this also keeps several runs inside one test apart.
    """
    made: list[tuple[str, str]] = []
    try:
        yield made
    finally:
        for table, name in made:
            getattr(bk.default_engine().registry, table).items.pop(name, None)


async def run_all(gen: Any) -> list[Any]:
    return [r async for r in gen]
