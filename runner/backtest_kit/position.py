"""Managing an open position: partial closes, trailing stop and take, breakeven, average-buy (DCA).

A strategy manages its open position from the callbacks the engine runs for every candle (live:
every tick) of that position (``on_active_ping``, ``on_partial_profit``, ``on_partial_loss``,
``on_breakeven``), by calling the ``commit_*`` functions here. They find the position through
the execution context, so a strategy never holds engine objects; each returns ``True`` when the
position changed and ``False`` when the commit was refused (a refusal never raises).

While the callbacks of one candle run, the position is held by a :class:`PositionDesk`: every
accepted commit replaces its (frozen) row and is queued for the strategy-commit event; the
lifecycle reads the row back when the callbacks are done. The rules are those of the reference
(docs/ENGINE.md section 9, POSITION.md items 6-23), including which price each commit uses:
partial closes, breakeven and DCA use ``get_average_price`` at the context time (in a backtest
callback the five candles *before* the current one), trailing moves the price the caller passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import EngineConfig
from .context import NoContextError, current, get_average_price
from .pnl import closed_dollars
from .signals import Entry, Partial, SignalRow

FULL_PARTIAL_CLOSE = "full_partial_close"


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _price_ok(price: object) -> bool:
    return _finite(price) and float(price) > 0  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Commit:
    """One accepted commit: what it did, at which price, and the row it produced."""

    action: str  # partial-profit | partial-loss | trailing-stop | trailing-take | breakeven | average-buy
    price: float
    row: SignalRow
    extra: dict[str, float] = field(default_factory=dict)


class PositionDesk:
    """The open position while callbacks run: its current row and the commits accepted so far."""

    def __init__(self, row: SignalRow, config: EngineConfig, when_ms: int) -> None:
        self.row = row
        self.config = config
        self.when_ms = when_ms
        self.commits: list[Commit] = []
        self.closed = False  # partial closes took everything: the position closes on the next candle

    def _accept(self, action: str, price: float, row: SignalRow, **extra: float) -> bool:
        self.row = row
        self.commits.append(Commit(action, price, row, extra))
        return True

    def take_commits(self) -> list[Commit]:
        taken, self.commits = self.commits, []
        return taken

    # ------------------------------------------------------------------ partial closes (items 6-11)
    def partial(self, kind: Literal["profit", "loss"], percent: float, price: float) -> bool:
        row = self.row
        if self.closed or not _finite(percent) or not 0 < percent <= 100 or not _price_ok(price):
            return False
        if not self._partial_side_ok(row, kind, price):
            return False
        entries = row.all_entries
        invested = row.invested
        closed, remaining = closed_dollars(invested, entries, row.partials)
        if closed / invested * 100 / 100 * invested + percent / 100 * remaining > invested * (1 + 1e-9):
            return False
        record = Partial(
            type=kind,
            percent=percent,
            current_price=price,
            cost_basis_at_close=remaining,
            entry_count_at_close=len(entries),
            timestamp=self.when_ms,
        )
        new = row.model_copy(update={"entries": entries, "partials": (*row.partials, record)})
        if closed_dollars(invested, entries, new.partials)[1] <= invested * 1e-9:
            new = new.model_copy(update={"close_note": FULL_PARTIAL_CLOSE})
            self.closed = True
        return self._accept(f"partial-{kind}", price, new, percentToClose=percent)

    def _partial_side_ok(self, row: SignalRow, kind: str, price: float) -> bool:
        long = row.is_long
        po = row.open_eff
        if kind == "profit":
            if not self.config.enable_pppl_everywhere and not (price > po if long else price < po):
                return False
            tp = row.take_profit_eff
            return price < tp if long else price > tp
        if not self.config.enable_pppl_everywhere and not (price < po if long else price > po):
            return False
        sl = row.stop_loss_eff
        return price > sl if long else price < sl

    # ------------------------------------------------------------------ trailing (items 13-16)
    def trailing_stop(self, shift: float, price: float) -> bool:
        row = self.row
        if self.closed or not _shift_ok(shift) or not _price_ok(price):
            return False
        long = row.is_long
        po = row.open_eff
        dist = abs(po - row.price_stop_loss) / po * 100 + shift
        new_sl = po * (1 - dist / 100) if long else po * (1 + dist / 100)
        if (price < new_sl) if long else (price > new_sl):
            return False  # the price is already beyond the new stop
        tp = row.take_profit_eff
        if (new_sl >= tp) if long else (new_sl <= tp):
            return False
        now = row.trailing_price_stop_loss
        tighter = now is None or (new_sl > now if long else new_sl < now)
        if not tighter and not self.config.enable_trailing_everywhere:
            return False  # after the first move, only tighter
        update = row.model_copy(update={"trailing_price_stop_loss": new_sl})
        return self._accept("trailing-stop", price, update, percentShift=shift)

    def trailing_take(self, shift: float, price: float) -> bool:
        row = self.row
        if self.closed or not _shift_ok(shift) or not _price_ok(price):
            return False
        long = row.is_long
        po = row.open_eff
        dist = abs(row.price_take_profit - po) / po * 100 + shift
        new_tp = po * (1 + dist / 100) if long else po * (1 - dist / 100)
        if (price > new_tp) if long else (price < new_tp):
            return False
        sl = row.stop_loss_eff
        if (new_tp <= sl) if long else (new_tp >= sl):
            return False
        now = row.trailing_price_take_profit
        closer = now is None or (new_tp < now if long else new_tp > now)
        if not closer and not self.config.enable_trailing_everywhere:
            return False  # after the first move, only closer to the entry
        update = row.model_copy(update={"trailing_price_take_profit": new_tp})
        return self._accept("trailing-take", price, update, percentShift=shift)

    def stop_shift_for(self, target: float) -> float:
        """The ``percent_shift`` that puts the stop at ``target`` (from the original stop)."""
        row = self.row
        po = row.open_eff
        dist = (1 - target / po) * 100 if row.is_long else (target / po - 1) * 100
        return dist - abs(po - row.price_stop_loss) / po * 100

    def take_shift_for(self, target: float) -> float:
        """The ``percent_shift`` that puts the take-profit at ``target`` (from the original one)."""
        row = self.row
        po = row.open_eff
        dist = (target / po - 1) * 100 if row.is_long else (1 - target / po) * 100
        return dist - abs(row.price_take_profit - po) / po * 100

    # ------------------------------------------------------------------ breakeven (items 17-21)
    def breakeven_threshold(self) -> float:
        cfg = self.config
        return (cfg.percent_slippage + cfg.percent_fee) * 2 + cfg.breakeven_threshold

    def breakeven_reached(self, row: SignalRow, price: float) -> bool:
        thr = self.breakeven_threshold()
        po = row.open_eff
        return price >= po * (1 + thr / 100) if row.is_long else price <= po * (1 - thr / 100)

    def breakeven(self, price: float) -> bool:
        row = self.row
        if self.closed or not _price_ok(price):
            return False
        long = row.is_long
        be = row.open_eff
        if (be >= row.take_profit_eff) if long else (be <= row.take_profit_eff):
            return False
        tsl = row.trailing_price_stop_loss
        if tsl is not None and (tsl > be if long else tsl < be):
            return True  # the stop is already in profit: nothing to do
        if not self.breakeven_reached(row, price):
            return False
        behind = row.price_stop_loss if tsl is None else tsl  # the stop must be on the loss side
        if not (behind < be if long else behind > be):
            return False
        if (price < be) if long else (price > be):
            return False
        return self._accept("breakeven", price, row.model_copy(update={"trailing_price_stop_loss": be}))

    # ------------------------------------------------------------------ average-buy (items 22-23)
    def average_buy(self, cost: float, price: float) -> bool:
        row = self.row
        if self.closed or not _price_ok(cost) or not _price_ok(price):
            return False
        entries = row.all_entries
        if not self.config.enable_dca_everywhere:
            beyond = (
                price < min(e.price for e in entries)
                if row.is_long
                else price > max(e.price for e in entries)
            )
            if not beyond:
                return False
        added = Entry(price=price, cost=cost, timestamp=self.when_ms)
        return self._accept(
            "average-buy", price, row.model_copy(update={"entries": (*entries, added)}), cost=cost
        )


def _shift_ok(shift: object) -> bool:
    return _finite(shift) and -100 <= float(shift) <= 100 and shift != 0  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the strategy's API


def _desk(fn: str, symbol: str) -> PositionDesk | None:
    ctx = current.get()
    if ctx is None:
        raise NoContextError(f"{fn} requires an execution context")
    desk = ctx.desk
    if not isinstance(desk, PositionDesk) or ctx.symbol != symbol or desk.closed:
        return None
    return desk


async def commit_partial_profit(symbol: str, percent: float) -> bool:
    """Close ``percent`` of the remaining cost basis in profit, at ``get_average_price``."""
    desk = _desk("commit_partial_profit", symbol)
    return desk is not None and desk.partial("profit", percent, await get_average_price(symbol))


async def commit_partial_loss(symbol: str, percent: float) -> bool:
    """Close ``percent`` of the remaining cost basis at a loss, at ``get_average_price``."""
    desk = _desk("commit_partial_loss", symbol)
    return desk is not None and desk.partial("loss", percent, await get_average_price(symbol))


async def commit_partial_profit_cost(symbol: str, dollars: float) -> bool:
    """:func:`commit_partial_profit` of ``dollars`` of the remaining cost basis."""
    desk = _desk("commit_partial_profit_cost", symbol)
    if desk is None or not _finite(dollars):
        return False
    percent = dollars / desk.row.remaining_cost_basis * 100
    return desk.partial("profit", percent, await get_average_price(symbol))


async def commit_partial_loss_cost(symbol: str, dollars: float) -> bool:
    """:func:`commit_partial_loss` of ``dollars`` of the remaining cost basis."""
    desk = _desk("commit_partial_loss_cost", symbol)
    if desk is None or not _finite(dollars):
        return False
    percent = dollars / desk.row.remaining_cost_basis * 100
    return desk.partial("loss", percent, await get_average_price(symbol))


async def commit_trailing_stop(symbol: str, percent_shift: float, current_price: float) -> bool:
    """Move the stop to the original stop's distance plus ``percent_shift`` (negative: tighter)."""
    desk = _desk("commit_trailing_stop", symbol)
    return desk is not None and desk.trailing_stop(percent_shift, current_price)


async def commit_trailing_take(symbol: str, percent_shift: float, current_price: float) -> bool:
    """Move the take-profit to the original distance plus ``percent_shift`` (negative: closer)."""
    desk = _desk("commit_trailing_take", symbol)
    return desk is not None and desk.trailing_take(percent_shift, current_price)


async def commit_trailing_stop_cost(symbol: str, new_stop_loss_price: float) -> bool:
    """Move the stop to ``new_stop_loss_price`` (as a shift from the original stop)."""
    desk = _desk("commit_trailing_stop_cost", symbol)
    if desk is None or not _price_ok(new_stop_loss_price):
        return False
    return desk.trailing_stop(desk.stop_shift_for(new_stop_loss_price), await get_average_price(symbol))


async def commit_trailing_take_cost(symbol: str, new_take_profit_price: float) -> bool:
    """Move the take-profit to ``new_take_profit_price`` (as a shift from the original one)."""
    desk = _desk("commit_trailing_take_cost", symbol)
    if desk is None or not _price_ok(new_take_profit_price):
        return False
    return desk.trailing_take(desk.take_shift_for(new_take_profit_price), await get_average_price(symbol))


async def commit_breakeven(symbol: str) -> bool:
    """Move the stop to the effective entry once the price is far enough in profit."""
    desk = _desk("commit_breakeven", symbol)
    return desk is not None and desk.breakeven(await get_average_price(symbol))


async def commit_average_buy(symbol: str, cost: float | None = None) -> bool:
    """Add an entry of ``cost`` dollars (default ``position_entry_cost``) at ``get_average_price``."""
    desk = _desk("commit_average_buy", symbol)
    if desk is None:
        return False
    amount = desk.config.position_entry_cost if cost is None else cost
    return desk.average_buy(amount, await get_average_price(symbol))


async def get_pending_signal(symbol: str) -> SignalRow | None:
    """The open position being managed (as the engine holds it now), or ``None``."""
    desk = _desk("get_pending_signal", symbol)
    return None if desk is None else desk.row


async def get_position_effective_price(symbol: str) -> float | None:
    desk = _desk("get_position_effective_price", symbol)
    return None if desk is None else desk.row.open_eff


async def get_total_percent_closed(symbol: str) -> float | None:
    desk = _desk("get_total_percent_closed", symbol)
    return None if desk is None else desk.row.partial_executed


async def get_total_cost_closed(symbol: str) -> float | None:
    desk = _desk("get_total_cost_closed", symbol)
    if desk is None:
        return None
    row = desk.row
    return closed_dollars(row.invested, row.all_entries, row.partials)[0]


def commit_at(desk: PositionDesk, action: str, price: float, value: float | None = None) -> bool:
    """A commit with an explicit price (the context-explicit ``Backtest.commit_*`` variants)."""
    row = desk.row
    match action:
        case "partial-profit" | "partial-loss":
            kind: Literal["profit", "loss"] = "profit" if action == "partial-profit" else "loss"
            return value is not None and desk.partial(kind, value, price)
        case "trailing-stop":
            return value is not None and desk.trailing_stop(value, price)
        case "trailing-take":
            return value is not None and desk.trailing_take(value, price)
        case "breakeven":
            return desk.breakeven(price)
        case "average-buy":
            return desk.average_buy(desk.config.position_entry_cost if value is None else value, price)
    raise ValueError(f"unknown commit {action!r} for signal {row.id}")


def commit_json(commit: Commit, **meta: Any) -> dict[str, Any]:
    """The strategy-commit event of one commit (camelCase, as the reference's listener gets it)."""
    row = commit.row
    return {
        "action": commit.action,
        **meta,
        "currentPrice": commit.price,
        "signal": row.to_json(),
        "totalEntries": row.total_entries,
        "totalPartials": row.total_partials,
        "priceOpen": row.open_eff,
        "priceTakeProfit": row.take_profit_eff,
        "priceStopLoss": row.stop_loss_eff,
        "originalPriceOpen": row.price_open,
        "originalPriceTakeProfit": row.price_take_profit,
        "originalPriceStopLoss": row.price_stop_loss,
        **commit.extra,
    }
