"""Real engine tick results and performance events, built the way the engine builds them."""

from __future__ import annotations

from typing import Any

from backtest_kit.events import PerformanceEvent
from backtest_kit.pnl import Pnl
from backtest_kit.signals import (
    ActiveResult,
    CancelledResult,
    ClosedResult,
    IdleResult,
    OpenedResult,
    ScheduledResult,
    SignalRow,
)

SYMBOL = "SYNUSDT"
STRATEGY = "a_long_tp1_sl1"
EXCHANGE = "synthetic"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def base(when: int = T0, price: float = 100.0) -> dict[str, Any]:
    return {
        "symbol": SYMBOL,
        "strategy_name": STRATEGY,
        "exchange_name": EXCHANGE,
        "current_price": price,
        "backtest": False,
        "when": when,
    }


def row(position: str = "long", *, pending_at: int = T0, signal_id: str = "sig-1") -> SignalRow:
    long = position == "long"
    return SignalRow(
        id=signal_id,
        symbol=SYMBOL,
        strategy_name=STRATEGY,
        exchange_name=EXCHANGE,
        position=position,
        price_open=100.0,
        price_take_profit=101.0 if long else 99.0,
        price_stop_loss=99.0 if long else 101.0,
        minute_estimated_time=60,
        scheduled_at=T0,
        pending_at=pending_at,
    )


def idle(when: int = T0) -> IdleResult:
    return IdleResult(**base(when))


def scheduled(position: str = "long") -> ScheduledResult:
    return ScheduledResult(**base(), signal=row(position, pending_at=0))


def opened(position: str = "long", when: int = T0) -> OpenedResult:
    return OpenedResult(**base(when), signal=row(position))


def active(position: str = "long", when: int = T0 + 60_000) -> ActiveResult:
    return ActiveResult(**base(when), signal=row(position))


def closed(
    reason: str = "take_profit", pnl_percentage: float = 0.8, when: int = T0 + 600_000
) -> ClosedResult:
    pnl = Pnl(pnl_percentage, 100.0, 101.0, pnl_percentage, 100.0)
    return ClosedResult(
        **base(when),
        signal=row(),
        close_reason=reason,
        close_timestamp=when,
        pnl=pnl,
    )


def cancelled(reason: str = "timeout") -> CancelledResult:
    return CancelledResult(
        **base(T0 + 7_200_000),
        signal=row(pending_at=0),
        cancel_reason=reason,
        close_timestamp=T0 + 7_200_000,
    )


def live_tick(duration_s: float, metric: str = "live_tick", when: int = T0) -> PerformanceEvent:
    return PerformanceEvent(metric, duration_s, SYMBOL, STRATEGY, EXCHANGE, when, False)
