"""The four strategies behind the position-management parity fixtures, on a given engine.

Each opens alternating long/short market signals and then manages the position from its
per-candle callbacks: ``p_partial_tp`` takes profit in three partial closes and cuts a loss once,
``q_trailing`` trails its stop behind the price (one first move loosens it) and pulls its
take-profit in after an hour, ``r_breakeven`` moves its stop to the entry, ``s_dca`` averages down
twice and tries one average-buy in profit that the engine must refuse. Like the reference
strategies, each callback reasons on the row it was handed, not on what it commits meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import backtest_kit as bk
from backtest_kit.signals import SignalRow

GetSignal = Callable[[str, datetime, float], Awaitable[dict[str, Any]]]


def favourable_move(signal: SignalRow, price: float) -> float:
    """Percent the price moved in the position's favour, from the effective entry."""
    po = signal.open_eff
    return (price - po) / po * 100 if signal.position == "long" else (po - price) / po * 100


def adverse_move_from_first_entry(signal: SignalRow, price: float) -> float:
    o = signal.price_open
    return (o - price) / o * 100 if signal.position == "long" else (price - o) / o * 100


def partial_count(signal: SignalRow, kind: str) -> int:
    return sum(1 for p in signal.partials if p.type == kind)


def shift_putting_stop_behind(signal: SignalRow, price: float, trail: float) -> float:
    """The ``percent_shift`` that puts the stop ``trail`` percent behind ``price``."""
    po = signal.open_eff
    original = abs((po - signal.price_stop_loss) / po) * 100
    if signal.position == "long":
        wanted = (po - price * (1 - trail / 100)) / po * 100
    else:
        wanted = (price * (1 + trail / 100) - po) / po * 100
    return wanted - original


def alternating(tp: float, sl: float, minutes: int) -> GetSignal:
    """Market signals, long first, then short, and so on (one counter per registration)."""
    calls = 0

    async def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any]:
        nonlocal calls
        long = calls % 2 == 0
        calls += 1
        return {
            "position": "long" if long else "short",
            "priceTakeProfit": price * (1 + tp / 100 if long else 1 - tp / 100),
            "priceStopLoss": price * (1 - sl / 100 if long else 1 + sl / 100),
            "minuteEstimatedTime": minutes,
        }

    return get_signal


async def _p_ping(symbol: str, signal: SignalRow, price: float, when: datetime) -> None:
    move = favourable_move(signal, price)
    taken = partial_count(signal, "profit")
    if (taken == 0 and move >= 0.5) or (taken == 1 and move >= 1.0):
        await bk.commit_partial_profit(symbol, 50)
    elif taken == 2 and move >= 1.3:
        await bk.commit_partial_profit(symbol, 100)


async def _p_loss(symbol: str, signal: SignalRow, loss_percent: float, price: float, when: datetime) -> None:
    if loss_percent >= 60 and partial_count(signal, "loss") == 0:
        await bk.commit_partial_loss(symbol, 30)


async def _q_ping(symbol: str, signal: SignalRow, price: float, when: datetime) -> None:
    move = favourable_move(signal, price)
    if move >= 0.4:
        await bk.commit_trailing_stop(symbol, shift_putting_stop_behind(signal, price, 0.6), price)
    elif move <= -0.8 and signal.trailing_price_stop_loss is None:
        await bk.commit_trailing_stop(symbol, 0.5, price)
    when_ms = int(when.timestamp() * 1000)
    if when_ms - signal.pending_at >= 60 * 60_000 and signal.trailing_price_take_profit is None:
        await bk.commit_trailing_take(symbol, -1.0, price)


async def _r_breakeven(symbol: str, signal: SignalRow, price: float, when: datetime) -> None:
    await bk.commit_breakeven(symbol)


async def _r_ping(symbol: str, signal: SignalRow, price: float, when: datetime) -> None:
    if signal.trailing_price_stop_loss is not None:
        return
    move = favourable_move(signal, price)
    if 0.3 <= move < 0.6 or move >= 0.9:
        await bk.commit_breakeven(symbol)


async def _s_ping(symbol: str, signal: SignalRow, price: float, when: datetime) -> None:
    adverse = adverse_move_from_first_entry(signal, price)
    if signal.total_entries == 1 and adverse >= 0.5:
        await bk.commit_average_buy(symbol)
    elif signal.total_entries == 2 and adverse >= 1.0:
        await bk.commit_average_buy(symbol, cost=200)
    elif signal.total_entries == 1 and adverse <= -0.3:
        await bk.commit_average_buy(symbol)  # in profit: refused (not beyond every entry)


def register(registry: bk.Registry) -> None:
    registry.add_strategy(
        "p_partial_tp",
        interval="5m",
        get_signal=alternating(1.5, 1, 120),
        callbacks={"on_active_ping": _p_ping, "on_partial_loss": _p_loss},
    )
    registry.add_strategy(
        "q_trailing", interval="5m", get_signal=alternating(2, 1, 120), callbacks={"on_active_ping": _q_ping}
    )
    registry.add_strategy(
        "r_breakeven",
        interval="5m",
        get_signal=alternating(1.5, 1, 120),
        callbacks={"on_breakeven": _r_breakeven, "on_active_ping": _r_ping},
    )
    registry.add_strategy(
        "s_dca", interval="15m", get_signal=alternating(1, 2.5, 240), callbacks={"on_active_ping": _s_ping}
    )


STRATEGIES = ("p_partial_tp", "q_trailing", "r_breakeven", "s_dca")
