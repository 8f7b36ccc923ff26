"""Built-in exchange and strategies: the synthetic market, the three parity strategies and a
risk-refusing one.

They need no file to load, so the README demo, the CLI and the tests can run anywhere. The
strategies are also small worked examples of the strategy API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .context import get_candles
from .registry import Registry
from .signals import SignalDto
from .synthetic import SyntheticExchange


async def a_long_tp1_sl1(symbol: str, when: datetime, price: float) -> SignalDto:
    """Always long at market: TP +1 %, SL -1 %, one hour."""
    return SignalDto(
        position="long",
        price_take_profit=price * 1.01,
        price_stop_loss=price * 0.99,
        minute_estimated_time=60,
        note="a",
    )


class AlternatingLimit:
    """Limit orders 0.3 % away from the price, alternating long and short (a counter per run)."""

    def __init__(self) -> None:
        self.calls = 0

    def reset(self, symbol: str) -> None:
        self.calls = 0

    async def __call__(self, symbol: str, when: datetime, price: float) -> SignalDto:
        long = self.calls % 2 == 0
        self.calls += 1
        if long:
            open_ = price * 0.997
            return SignalDto(
                position="long",
                price_open=open_,
                price_take_profit=open_ * 1.01,
                price_stop_loss=open_ * 0.99,
                minute_estimated_time=60,
            )
        open_ = price * 1.003
        return SignalDto(
            position="short",
            price_open=open_,
            price_take_profit=open_ * 0.99,
            price_stop_loss=open_ * 1.01,
            minute_estimated_time=60,
        )


async def g_risk_even_hours(symbol: str, when: datetime, price: float) -> SignalDto:
    """Strategy a behind a risk profile that refuses every signal in an odd UTC hour.

    A refusal rolls the throttle back, so in an odd hour the strategy is asked every minute:
    a workload of many asks that end in a refusal.
    """
    return SignalDto(
        position="long",
        price_take_profit=price * 1.01,
        price_stop_loss=price * 0.99,
        minute_estimated_time=60,
        note="g",
    )


def even_utc_hour(payload: dict[str, Any]) -> str | None:
    """A risk validation: refuse when the signal is asked for in an odd UTC hour."""
    hour = payload["timestamp"] // 3_600_000 % 24
    return f"odd UTC hour {hour:02d}" if hour % 2 else None


def _mean(xs: list[float]) -> float:
    total = 0.0
    for x in xs:
        total += x
    return total / len(xs)


async def d_sma_cross(symbol: str, when: datetime, price: float) -> SignalDto | None:
    """5/20 SMA cross of 15m closes: long on a cross up, short on a cross down."""
    closes = [c.close for c in await get_candles(symbol, "15m", 21)]
    fast_now, slow_now = _mean(closes[16:21]), _mean(closes[1:21])
    fast_prev, slow_prev = _mean(closes[15:20]), _mean(closes[0:20])
    if fast_prev <= slow_prev and fast_now > slow_now:
        return SignalDto(
            position="long",
            price_take_profit=price * 1.015,
            price_stop_loss=price * 0.99,
            minute_estimated_time=240,
        )
    if fast_prev >= slow_prev and fast_now < slow_now:
        return SignalDto(
            position="short",
            price_take_profit=price * 0.985,
            price_stop_loss=price * 1.01,
            minute_estimated_time=240,
        )
    return None


def register_builtins(registry: Registry) -> None:
    """Register ``synthetic`` and the example strategies in ``registry`` (skipping names taken)."""
    if "synthetic" not in registry.exchanges.items:
        market = SyntheticExchange()
        registry.add_exchange(
            "synthetic", get_candles=market.get_candles, get_candle_arrays=market.candle_arrays
        )
    if "a_long_tp1_sl1" not in registry.strategies.items:
        registry.add_strategy("a_long_tp1_sl1", interval="5m", get_signal=a_long_tp1_sl1)
    if "c_limit_sched" not in registry.strategies.items:
        alternating = AlternatingLimit()
        registry.add_strategy(
            "c_limit_sched", interval="15m", get_signal=alternating, callbacks={"on_init": alternating.reset}
        )
    if "d_sma_cross" not in registry.strategies.items:
        registry.add_strategy("d_sma_cross", interval="15m", get_signal=d_sma_cross)
    if "g_risk_even_hours" not in registry.strategies.items:
        if "even_hours" not in registry.risks.items:
            registry.add_risk("even_hours", validations=[even_utc_hour])
        registry.add_strategy(
            "g_risk_even_hours", interval="5m", get_signal=g_risk_even_hours, risk="even_hours"
        )
