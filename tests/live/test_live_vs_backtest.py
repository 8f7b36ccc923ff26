"""Live replay and backtest agree on the parity market, except for the documented rule differences.

The differences (README, "Live and backtest"): backtest evaluates candle ``t`` at ``t`` (its VWAP
includes that candle), live sees the same candle one tick later; so a stop-loss or take-profit
closes one minute later in live, at the same price; an expiry closes at the same minute in both,
at a VWAP one candle apart; and a hit on the last minute before expiry becomes an expiry in live.
"""

from __future__ import annotations

from datetime import datetime

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, to_ms
from tests.engine.helpers import SYM, day, registered, run_all


async def spaced(symbol: str, when: datetime, price: float) -> bk.SignalDto | None:
    """A long every third hour on the hour, so trades never overlap and pair up one to one."""
    if when.hour % 3 or when.minute:
        return None
    return bk.SignalDto(
        position="long",
        price_take_profit=price * 1.008,
        price_stop_loss=price * 0.992,
        minute_estimated_time=60,
    )


async def test_live_replay_matches_backtest_trade_for_trade_up_to_the_documented_differences() -> None:
    with registered() as made:
        bk.add_strategy("spaced", interval="1h", get_signal=spaced)
        bk.add_frame("spaced_f", start=day(2), end=day(5, 23, 59))
        made += [("strategies", "spaced"), ("frames", "spaced_f")]
        backtest = [
            r
            for r in await run_all(
                bk.Backtest.run(SYM, strategy="spaced", exchange="synthetic", frame="spaced_f")
            )
            if r.action == "closed"
        ]
        clock = bk.ReplayClock(to_ms(day(2)), float("inf"))
        live = [
            r
            for r in await run_all(
                bk.Live.run(
                    SYM,
                    strategy="spaced",
                    exchange="synthetic",
                    clock=clock,
                    persistence=bk.MemoryPersistence(),
                    until=to_ms(day(6)),
                )
            )
            if r.action == "closed"
        ]
    assert len(backtest) == len(live) == 32  # every third hour of four days
    reasons: dict[str, int] = {}
    for b, lv in zip(backtest, live, strict=True):
        bs, ls = b.signal, lv.signal
        for field in ("scheduled_at", "pending_at", "price_open", "price_take_profit", "price_stop_loss"):
            assert getattr(bs, field) == getattr(ls, field)
        expiry = bs.pending_at + 60 * MINUTE_MS
        key = f"{b.close_reason}->{lv.close_reason}"
        reasons[key] = reasons.get(key, 0) + 1
        if b.close_reason in ("take_profit", "stop_loss") and b.close_timestamp + MINUTE_MS < expiry:
            assert lv.close_reason == b.close_reason
            assert lv.close_timestamp == b.close_timestamp + MINUTE_MS
            assert lv.pnl.price_close == b.pnl.price_close and lv.pnl.pnl_percentage == b.pnl.pnl_percentage
        else:
            assert lv.close_reason == "time_expired", (b.flat(), lv.flat())
            assert lv.close_timestamp == expiry
            assert b.close_timestamp == expiry or b.close_timestamp + MINUTE_MS == expiry
    assert reasons.get("time_expired->time_expired", 0) > 0, reasons
    assert reasons.get("take_profit->take_profit", 0) + reasons.get("stop_loss->stop_loss", 0) > 0
