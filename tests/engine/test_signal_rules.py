"""The quick yes for common signals never accepts a signal the full rule check refuses."""

from __future__ import annotations

import math
import random

from backtest_kit.config import EngineConfig
from backtest_kit.signals import MAX_PRICE, SignalDto, _plainly_valid, signal_problems

CONFIGS = (
    EngineConfig(),
    EngineConfig(enable_long_signal=False),
    EngineConfig(enable_short_signal=False),
    EngineConfig(max_signal_lifetime_minutes=math.inf),
    EngineConfig(min_takeprofit_distance_percent=2.0, max_stoploss_distance_percent=1.5),
)


def around(rng: random.Random, price: float, cfg: EngineConfig) -> float | int:
    """A level near a rule's edge (a distance limit, the price itself), or an odd value."""
    edges = (
        cfg.min_takeprofit_distance_percent,
        cfg.min_stoploss_distance_percent,
        cfg.max_stoploss_distance_percent,
        0.0,
    )
    roll = rng.random()
    if roll < 0.05:
        return rng.choice([math.nan, math.inf, -1.0, 0.0, MAX_PRICE * 2, int(price)])
    pct = rng.choice(edges) * (1 + rng.uniform(-1e-9, 1e-9)) if roll < 0.5 else rng.uniform(0, 25)
    return price * (1 + rng.choice((-1, 1)) * pct / 100)


def test_every_signal_the_quick_yes_accepts_passes_every_rule() -> None:
    rng = random.Random(20261201)
    accepted = 0
    for _ in range(100_000):
        cfg = rng.choice(CONFIGS)
        price = rng.choice([rng.uniform(0.0001, 5e4), 100.0, MAX_PRICE, 1e-9])
        life = rng.choice([None, 60, 60.0, 60.5, 0, -5, cfg.max_signal_lifetime_minutes, 1e9, math.inf, True])
        position = rng.choice(["long", "short", "long", "short", "sideways"])
        tp, sl = around(rng, price, cfg), around(rng, price, cfg)
        if rng.random() < 0.5 and isinstance(tp, float) and isinstance(sl, float):
            # the sides a signal of this position needs, so that many reach the distance rules
            up, down = max(tp, sl), min(tp, sl)
            tp, sl = (up, down) if position == "long" else (down, up)
        dto = SignalDto.model_construct(
            position=position,
            price_take_profit=tp,
            price_stop_loss=sl,
            price_open=None if rng.random() < 0.9 else price,
            minute_estimated_time=life,
            cost=None if rng.random() < 0.9 else rng.choice([100.0, -1.0, math.nan]),
            multiplier=None if rng.random() < 0.9 else rng.choice([2.0, 0.0, 5000.0]),
        )
        if _plainly_valid(dto, price, cfg):
            accepted += 1
            assert signal_problems(dto, current_price=price, config=cfg) == [], dto
    assert accepted > 1_000  # the quick yes is exercised, not just bypassed
