"""A managed-position strategy for the live crash tests: partial closes, DCA and a trailing stop.

Everything it decides follows from the time, the price and the position row it is handed (no
counters in memory), so a process killed and restarted at any moment must reproduce exactly the
results of an uninterrupted run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import backtest_kit as bk
from backtest_kit.signals import SignalRow


async def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any]:
    long = (when.minute // 5) % 2 == 0
    return {
        "position": "long" if long else "short",
        "priceTakeProfit": price * (1.012 if long else 0.988),
        "priceStopLoss": price * (0.988 if long else 1.012),
        "minuteEstimatedTime": 120,
    }


def _move(signal: SignalRow, price: float) -> float:
    po = signal.open_eff
    return (price - po) / po * 100 if signal.position == "long" else (po - price) / po * 100


async def on_active_ping(symbol: str, signal: SignalRow, price: float, when: datetime) -> None:
    move = _move(signal, price)
    profits = sum(1 for p in signal.partials if p.type == "profit")
    if profits == 0 and move >= 0.4:
        await bk.commit_partial_profit(symbol, 50)
    elif profits == 1 and move >= 0.7:
        await bk.commit_trailing_stop(symbol, -0.8, price)
    elif signal.total_entries == 1 and move <= -0.5:
        await bk.commit_average_buy(symbol, cost=50)


bk.add_strategy(
    "managed_mix", interval="5m", get_signal=get_signal, callbacks={"on_active_ping": on_active_ping}
)
