"""Profit and loss of a signal, with slippage and fees, in the reference's exact float order.

A pure module: it knows prices, costs and the two percentages, nothing about time or candles.
Positions with partial closes or several entries use the functions at the end.
Parity depends on the order of every operation here (ENGINE.md sections 6 and 13).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple, Protocol


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


# --------------------------------------------------------------------------- managed positions
# Partial closes and several entries (docs/ENGINE.md section 9, POSITION.md items 8-10). The
# arithmetic follows the reference operation for operation, so sums run left to right and the
# one-entry, no-partial case keeps the plain formula above (``cost / (cost / price)``).


class EntryLike(Protocol):
    @property
    def price(self) -> float: ...

    @property
    def cost(self) -> float: ...


class PartialLike(Protocol):
    @property
    def percent(self) -> float: ...

    @property
    def current_price(self) -> float: ...

    @property
    def cost_basis_at_close(self) -> float: ...

    @property
    def entry_count_at_close(self) -> int: ...


def harmonic_entry(entries: Sequence[EntryLike]) -> float:
    """Cost-weighted harmonic mean of the entries: ``Σcost / Σ(cost/price)``, left to right."""
    cost = 0.0
    shares = 0.0
    for e in entries:
        cost += e.cost
        shares += e.cost / e.price
    return cost / shares


def _blend(eff: float, remaining: float, new: Sequence[EntryLike]) -> float:
    """The entry after adding ``new`` entries to ``remaining`` dollars held at ``eff``."""
    old = remaining / eff
    cost = 0.0
    shares = 0.0
    for e in new:
        cost += e.cost
        shares += e.cost / e.price
    denominator = old + shares
    return (remaining + cost) / denominator if denominator != 0 else eff


def entry_history(
    entries: Sequence[EntryLike], partials: Sequence[PartialLike], fallback: float
) -> tuple[list[float], float]:
    """The effective entry as of each partial close, and the effective entry now (item 9)."""
    if not partials:
        return [], harmonic_entry(entries)
    first = partials[0]
    shares = 0.0
    for e in entries[: first.entry_count_at_close]:
        shares += e.cost / e.price
    eff = first.cost_basis_at_close / shares if shares != 0 else fallback
    history = [eff]
    for before, after in pairwise(partials):
        remaining = before.cost_basis_at_close * (1 - before.percent / 100)
        eff = _blend(eff, remaining, entries[before.entry_count_at_close : after.entry_count_at_close])
        history.append(eff)
    last = partials[-1]
    remaining = last.cost_basis_at_close * (1 - last.percent / 100)
    return history, _blend(eff, remaining, entries[last.entry_count_at_close :])


def closed_dollars(
    invested: float, entries: Sequence[EntryLike], partials: Sequence[PartialLike]
) -> tuple[float, float]:
    """``(closed, remaining)`` dollars of the cost basis after the partial closes (item 8)."""
    if not partials:
        return 0.0, invested
    closed = 0.0
    remaining = invested
    for p in partials:
        closed += p.percent / 100 * p.cost_basis_at_close
        remaining = p.cost_basis_at_close * (1 - p.percent / 100)
    for e in entries[partials[-1].entry_count_at_close :]:
        remaining += e.cost
    return closed, remaining


def partial_pnl_percentage(
    is_long: bool,
    entries: Sequence[EntryLike],
    partials: Sequence[PartialLike],
    invested: float,
    close: float,
    *,
    fallback_open: float,
    slippage_percent: float,
    fee_percent: float,
    multiplier: float,
) -> float:
    """Item 10: the partial closes at their own prices and entries, the rest at ``close``."""
    s = slippage_percent / 100
    up, down = (1 + s, 1 - s) if is_long else (1 - s, 1 + s)
    history, eff_now = entry_history(entries, partials, fallback_open)
    weighted = 0.0
    fees = fee_percent
    closed = 0.0
    for p, eff in zip(partials, history, strict=True):
        dollars = p.percent / 100 * p.cost_basis_at_close
        w = dollars / invested
        closed += dollars
        o = eff * up
        c = p.current_price * down
        weighted += w * ((c - o) / o * 100 if is_long else (o - c) / o * 100)
        fees += fee_percent * w * (c / o)
    rest = (invested - closed) / invested
    if rest > 0:
        o = eff_now * up
        c = close * down
        weighted += rest * ((c - o) / o * 100 if is_long else (o - c) / o * 100)
        fees += fee_percent * rest * (c / o)
    return (weighted - fees) * multiplier
