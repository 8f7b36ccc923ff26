"""``e2e-always-long``: opens a long signal on the first tick it is asked, held for ``minutes``.

The end-to-end tests need a signal that opens at once and stays open for a predictable simulated
time (so a crash, a restart and the start of a drain all happen while it is open), then closes
by itself (so a drain finishes). The LiveTrader loads this file from a ConfigMap, the same way a
user's strategy would reach a runner pod.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backtest_kit import add_strategy
from backtest_kit.signals import SignalDto

STRATEGY = "e2e-always-long"


class Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    minutes: int = Field(240, ge=1, le=1440)
    distance_percent: float = Field(10.0, gt=0.5, le=20)
    open_before_minute: int = Field(60, ge=1, le=60)
    """Open only while the simulated minute of the hour is below this (60: always), which leaves
    flat gaps for tests that need a moment without an open signal."""


def register(params: Params) -> None:
    distance = params.distance_percent / 100

    async def get_signal(symbol: str, when: datetime, price: float) -> SignalDto | None:
        if when.minute >= params.open_before_minute:
            return None
        return SignalDto(
            position="long",
            price_take_profit=price * (1 + distance),
            price_stop_loss=price * (1 - distance),
            minute_estimated_time=params.minutes,
            note=STRATEGY,
        )

    add_strategy(STRATEGY, interval="1m", get_signal=get_signal, note=STRATEGY, replace=True)
