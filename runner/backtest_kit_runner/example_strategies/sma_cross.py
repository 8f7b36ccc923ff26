"""``sma-cross``: a moving-average crossover whose windows, bracket and lifetime are parameters.

It exists to show the parametrised strategy convention of :mod:`backtest_kit_runner.loading`
(``STRATEGY``, ``Params``, ``register``) with a strategy worth running: a LiveTrader can set
``params: {"fast": 5, "slow": 20}`` and a typo such as ``"fats"`` is refused before any tick.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backtest_kit import SignalDto, add_strategy, get_candles

STRATEGY = "sma-cross"


class Params(BaseModel):
    """Parameters of ``sma-cross`` (percentages are distances from the entry price)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fast: int = Field(5, ge=2, le=200)
    slow: int = Field(20, ge=3, le=500)
    candle_interval: Literal["1m", "3m", "5m", "15m", "30m", "1h"] = "15m"
    take_profit_percent: float = Field(1.5, gt=0.5, le=50)
    stop_loss_percent: float = Field(1.0, gt=0.5, le=20)
    minutes: int = Field(240, ge=1, le=1440)
    allow_short: bool = True

    @model_validator(mode="after")
    def _windows(self) -> Params:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        return self


def _mean(values: list[float]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def register(params: Params) -> None:
    """Register ``sma-cross`` with these parameters (replacing an earlier registration)."""
    p = params
    need = p.slow + 1

    async def get_signal(symbol: str, when: datetime, price: float) -> SignalDto | None:
        closes = [c.close for c in await get_candles(symbol, p.candle_interval, need)]
        fast_now, slow_now = _mean(closes[-p.fast :]), _mean(closes[-p.slow :])
        fast_prev, slow_prev = _mean(closes[-p.fast - 1 : -1]), _mean(closes[-p.slow - 1 : -1])
        tp, sl = p.take_profit_percent / 100, p.stop_loss_percent / 100
        if fast_prev <= slow_prev and fast_now > slow_now:
            return SignalDto(
                position="long",
                price_take_profit=price * (1 + tp),
                price_stop_loss=price * (1 - sl),
                minute_estimated_time=p.minutes,
                note=STRATEGY,
            )
        if p.allow_short and fast_prev >= slow_prev and fast_now < slow_now:
            return SignalDto(
                position="short",
                price_take_profit=price * (1 - tp),
                price_stop_loss=price * (1 + sl),
                minute_estimated_time=p.minutes,
                note=STRATEGY,
            )
        return None

    add_strategy(STRATEGY, interval=p.candle_interval, get_signal=get_signal, note=STRATEGY, replace=True)
