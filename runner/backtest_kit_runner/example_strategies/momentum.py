"""``momentum``: follow the move of the last ``lookback`` minutes when it is large enough.

A second parametrised example (see :mod:`.sma_cross` for the convention), different enough in
kind that a Walker comparing it with ``sma-cross`` compares ideas, not just parameters.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backtest_kit import SignalDto, add_strategy, get_candles

STRATEGY = "momentum"


class Params(BaseModel):
    """Parameters of ``momentum``; the threshold and bracket are percentages of the price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lookback: int = Field(30, ge=2, le=1000)
    threshold_percent: float = Field(0.3, gt=0, le=20)
    take_profit_percent: float = Field(1.0, gt=0.5, le=50)
    stop_loss_percent: float = Field(0.8, gt=0.5, le=20)
    minutes: int = Field(120, ge=1, le=1440)


def register(params: Params) -> None:
    """Register ``momentum`` with these parameters (replacing an earlier registration)."""
    p = params

    async def get_signal(symbol: str, when: datetime, price: float) -> SignalDto | None:
        candles = await get_candles(symbol, "1m", p.lookback)
        move = (candles[-1].close - candles[0].open) / candles[0].open * 100
        if abs(move) < p.threshold_percent:
            return None
        tp, sl = p.take_profit_percent / 100, p.stop_loss_percent / 100
        long = move > 0
        return SignalDto(
            position="long" if long else "short",
            price_take_profit=price * (1 + tp if long else 1 - tp),
            price_stop_loss=price * (1 - sl if long else 1 + sl),
            minute_estimated_time=p.minutes,
            note=STRATEGY,
        )

    add_strategy(STRATEGY, interval="5m", get_signal=get_signal, note=STRATEGY, replace=True)
