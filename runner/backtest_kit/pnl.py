"""Profit and loss of a signal, with slippage and fees, in the reference's exact float order.

A pure module: it knows prices, costs and the two percentages, nothing about time or candles.
Parity depends on the order of every operation here (ENGINE.md sections 6 and 13).
"""

from __future__ import annotations

from typing import NamedTuple


class Pnl(NamedTuple):
    """The result of closing a signal; prices are unadjusted, the percentage is net."""

    pnl_percentage: float
    price_open: float
    price_close: float
    pnl_cost: float
    pnl_entries: float

    def to_json(self) -> dict[str, float]:
        return {
            "pnlPercentage": self.pnl_percentage,
            "priceOpen": self.price_open,
            "priceClose": self.price_close,
            "pnlCost": self.pnl_cost,
            "pnlEntries": self.pnl_entries,
        }


def pnl_percentage(
    is_long: bool,
    open_eff: float,
    close: float,
    *,
    slippage_percent: float,
    fee_percent: float,
    multiplier: float,
) -> float:
    s = slippage_percent / 100
    if is_long:
        o = open_eff * (1 + s)
        c = close * (1 - s)
        raw = (c - o) / o * 100
    else:
        o = open_eff * (1 - s)
        c = close * (1 + s)
        raw = (o - c) / o * 100
    fee = fee_percent * (1 + c / o)
    return (raw - fee) * multiplier


def close_pnl(
    is_long: bool,
    open_eff: float,
    close: float,
    cost: float,
    *,
    slippage_percent: float,
    fee_percent: float,
    multiplier: float,
) -> Pnl:
    pct = pnl_percentage(
        is_long,
        open_eff,
        close,
        slippage_percent=slippage_percent,
        fee_percent=fee_percent,
        multiplier=multiplier,
    )
    return Pnl(pct, open_eff, close, pct / 100 * cost, cost)
