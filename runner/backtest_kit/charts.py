"""The equity curve and drawdown of a run, computed from its closed signals.

People would rather look at a curve than read a table. This module only computes (a pure
function of the trades, so the chart, the notebook helper and tests share one definition);
drawing is :mod:`.chart_html`'s, which needs the optional plotly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .stats import Trade


class EquityPoint(NamedTuple):
    timestamp: int
    equity: float  # compounded, starting at 1.0
    drawdown: float  # percent below the running peak


def equity_curve(trades: Sequence[Trade]) -> list[EquityPoint]:
    """Compounded equity after each trade, in close order, with the drawdown from the peak."""
    points: list[EquityPoint] = []
    equity = peak = 1.0
    for t in sorted(trades, key=lambda t: t.close_timestamp):
        equity *= 1 + t.pnl / 100
        peak = max(peak, equity)
        points.append(
            EquityPoint(t.close_timestamp, equity, (peak - equity) / peak * 100 if peak > 0 else 100.0)
        )
    return points
