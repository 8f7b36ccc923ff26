"""The numbers a trader reads first, as a pure function of a run's closed trades.

The reference's statistics (:mod:`.stats`) are per-trade averages and ratios kept bit-identical
to the reference; what a person asks first is different: what would my money have become, how
does that compare with simply holding the market, how deep did it fall, how often was I in the
market. :func:`summarize` answers that from the closed signals (and, for buy-and-hold and
exposure, the frame's first and last price and its time range). Every number that cannot be
computed is ``None`` together with the reason (:attr:`Summary.missing`), so a report never shows
a bare "N/A".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .signals import ClosedResult

#: The stake a report states its money figures on (USD).
DEFAULT_STAKE = 1000.0


@dataclass(frozen=True)
class FrameInfo:
    """What the summary needs of the frame: its time range and the market's first and last price."""

    start_ms: int
    end_ms: int
    first_price: float | None = None
    last_price: float | None = None


@dataclass(frozen=True)
class Summary:
    """A run at a glance. Percentages are percent; money is in the stake's currency (USD).

    ``compounded_return`` reinvests the whole equity in every trade, one trade after another;
    ``sum_of_trade_pnl`` is the plain sum of per-trade percentages (what older reports called
    "Total PNL"); ``fixed_size_pnl`` is the money made when each trade invests its own ``cost``.
    """

    stake: float
    trades: int
    cancelled: int
    final_equity: float
    compounded_return: float
    sum_of_trade_pnl: float
    fixed_size_pnl: float
    buy_and_hold_return: float | None
    max_drawdown: float
    profit_factor: float | None
    win_rate: float | None
    wins: int
    losses: int
    exposure: float | None
    best_trade: float | None
    worst_trade: float | None
    exit_reasons: dict[str, int]
    #: Why a ``None`` above is ``None``, by field name.
    missing: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """camelCase JSON (the ``summary`` key of the CLI's ``--json``)."""
        return {
            "stake": self.stake,
            "trades": self.trades,
            "cancelled": self.cancelled,
            "finalEquity": self.final_equity,
            "compoundedReturn": self.compounded_return,
            "sumOfTradePnl": self.sum_of_trade_pnl,
            "fixedSizePnl": self.fixed_size_pnl,
            "buyAndHoldReturn": self.buy_and_hold_return,
            "maxDrawdown": self.max_drawdown,
            "profitFactor": self.profit_factor,
            "winRate": self.win_rate,
            "wins": self.wins,
            "losses": self.losses,
            "exposure": self.exposure,
            "bestTrade": self.best_trade,
            "worstTrade": self.worst_trade,
            "exitReasons": dict(self.exit_reasons),
            "missing": dict(self.missing),
        }


def _compounded(closed: Sequence[ClosedResult]) -> tuple[float, float]:
    """Equity multiple after every trade (close order) and the largest fall from a peak (%)."""
    equity = peak = 1.0
    max_dd = 0.0
    for r in closed:
        equity = max(equity * (1 + r.pnl.pnl_percentage / 100), 0.0)
        peak = max(peak, equity)
        max_dd = max(max_dd, (peak - equity) / peak * 100)
    return equity, max_dd


def _profit_factor(pnls: Sequence[float], missing: dict[str, str]) -> float | None:
    gains = math.fsum(p for p in pnls if p > 0)
    losses = -math.fsum(p for p in pnls if p < 0)
    if not pnls:
        missing["profit_factor"] = "no trades"
    elif losses <= 0:
        missing["profit_factor"] = "no losing trades"
    else:
        return gains / losses
    return None


def _exposure(
    closed: Sequence[ClosedResult], frame: FrameInfo | None, missing: dict[str, str]
) -> float | None:
    """Percent of the frame's time with a position open (overlapping positions counted once)."""
    if frame is None:
        missing["exposure"] = "frame not given"
        return None
    span = frame.end_ms - frame.start_ms
    if span <= 0:
        missing["exposure"] = "empty frame"
        return None
    spans = sorted((r.signal.pending_at, r.close_timestamp) for r in closed)
    covered, reach = 0, frame.start_ms
    for start, end in spans:
        start, end = max(start, reach), min(end, frame.end_ms)
        if end > start:
            covered += end - start
            reach = end
    return covered / span * 100


def _buy_and_hold(frame: FrameInfo | None, missing: dict[str, str]) -> float | None:
    if frame is None or frame.first_price is None or frame.last_price is None:
        missing["buy_and_hold_return"] = "frame prices not given"
        return None
    if frame.first_price <= 0:
        missing["buy_and_hold_return"] = "first price is not positive"
        return None
    return (frame.last_price / frame.first_price - 1) * 100


def summarize(
    closed: Sequence[ClosedResult],
    *,
    frame: FrameInfo | None = None,
    stake: float = DEFAULT_STAKE,
    cancelled: int = 0,
) -> Summary:
    """The summary of ``closed`` (any order: sorted by close time here)."""
    ordered = sorted(closed, key=lambda r: r.close_timestamp)
    pnls = [r.pnl.pnl_percentage for r in ordered]
    missing: dict[str, str] = {}
    equity, max_dd = _compounded(ordered)
    wins = sum(1 for p in pnls if p > 0)
    losses = sum(1 for p in pnls if p < 0)
    if not pnls:
        for name in ("win_rate", "best_trade", "worst_trade"):
            missing[name] = "no trades"
    return Summary(
        stake=stake,
        trades=len(ordered),
        cancelled=cancelled,
        final_equity=stake * equity,
        compounded_return=(equity - 1) * 100,
        sum_of_trade_pnl=math.fsum(pnls),
        fixed_size_pnl=math.fsum(r.pnl.pnl_cost for r in ordered),
        buy_and_hold_return=_buy_and_hold(frame, missing),
        max_drawdown=max_dd,
        profit_factor=_profit_factor(pnls, missing),
        win_rate=wins / len(pnls) * 100 if pnls else None,
        wins=wins,
        losses=losses,
        exposure=_exposure(ordered, frame, missing),
        best_trade=max(pnls) if pnls else None,
        worst_trade=min(pnls) if pnls else None,
        exit_reasons=dict(Counter(r.close_reason for r in ordered).most_common()),
        missing=missing,
    )
