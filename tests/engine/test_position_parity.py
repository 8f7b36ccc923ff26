"""Position management reproduces the reference: partial closes, trailing, breakeven and DCA.

The four public fixtures (``tests/fixtures/parity/position``, npm ``backtest-kit`` 19.5.0 on the
synthetic market over f30) are compared row by row in emission order: every field but ``id``,
floats to 1e-9 relative, the nested ``entries`` and ``partials`` element by element, and every
statistic to 1e-9.
"""

from __future__ import annotations

import json
import lzma
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import backtest_kit as bk
from tests.engine import position_strategies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity" / "position"


def same(got: Any, want: Any, where: str) -> None:
    """``got`` equals ``want``: floats to 1e-9 relative, lists and objects element by element."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        for key, value in want.items():
            if key != "id":
                assert key in got, f"{where}.{key} missing"
                same(got[key], value, f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool) and isinstance(got, int | float):
        assert got == want or math.isclose(got, want, rel_tol=1e-9), f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("strategy", position_strategies.STRATEGIES)
async def test_the_reference_rows_and_statistics_are_reproduced(
    strategy: str, fresh_engine: bk.Engine
) -> None:
    position_strategies.register(fresh_engine.registry)
    fresh_engine.registry.add_frame(
        "f30", start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2024, 1, 30, 23, 59, tzinfo=UTC)
    )
    run = await fresh_engine.backtest.execute("SYNUSDT", strategy=strategy, exchange="synthetic", frame="f30")
    expected = json.loads(lzma.decompress((FIXTURES / strategy / "signals.json.xz").read_bytes()))
    rows = run.signals()
    assert len(rows) == len(expected)
    for i, (got, want) in enumerate(zip(rows, expected, strict=True)):
        same(got, want, f"{strategy}[{i}]")
    stats = json.loads((FIXTURES / strategy / "stats.json").read_text())
    same(run.stats(), stats, f"{strategy}.stats")
