"""Engine behaviour beyond parity: bad input, registration, context, risk, throttling, modes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import backtest_kit as bk
from backtest_kit.synthetic import SyntheticExchange
from tests.engine.helpers import SYM, day, registered, run_all


class TestInvalidSignals:
    async def test_an_invalid_signal_is_an_error_event_with_every_message_and_nothing_opens(self) -> None:
        calls: list[datetime] = []

        async def bad(symbol: str, when: datetime, price: float) -> dict[str, Any]:
            calls.append(when)
            # TP on the wrong side, SL too far, lifetime fractional: three rules broken at once
            return {
                "position": "long",
                "priceTakeProfit": price * 0.9,
                "priceStopLoss": price * 0.5,
                "minuteEstimatedTime": 10.5,
            }

        errors: list[BaseException] = []
        with registered() as made:
            bk.add_strategy("bad_sig", interval="5m", get_signal=bad)
            bk.add_frame("bad_f", start=day(2), end=day(2, 0, 19))
            made += [("strategies", "bad_sig"), ("frames", "bad_f")]
            unsubscribe = bk.listen_error(errors.append)
            try:
                results = await run_all(
                    bk.Backtest.run(SYM, strategy="bad_sig", exchange="synthetic", frame="bad_f")
                )
            finally:
                unsubscribe()
        assert results == []
        # 20 ticks, 5m buckets: the slot is consumed, so get_signal ran once per bucket
        assert [c.minute for c in calls] == [0, 5, 10, 15]
        assert len(errors) == 4 and all(isinstance(e, bk.SignalValidationError) for e in errors)
        msgs = errors[0].messages  # type: ignore[attr-defined]
        assert any("priceTakeProfit" in m and "above" in m for m in msgs)
        assert any("stop-loss distance" in m and "maximum" in m for m in msgs)
        assert any("whole number" in m for m in msgs)

    async def test_a_plain_dict_with_reference_keys_is_accepted(self) -> None:
        async def as_dict(symbol: str, when: datetime, price: float) -> dict[str, Any]:
            return {
                "position": "short",
                "priceTakeProfit": price * 0.99,
                "priceStopLoss": price * 1.01,
                "minuteEstimatedTime": 30,
                "note": "dict",
            }

        with registered() as made:
            bk.add_strategy("dict_sig", interval="1m", get_signal=as_dict)
            bk.add_frame("dict_f", start=day(3), end=day(3, 1))
            made += [("strategies", "dict_sig"), ("frames", "dict_f")]
            results = await run_all(
                bk.Backtest.run(SYM, strategy="dict_sig", exchange="synthetic", frame="dict_f")
            )
        assert results[0].action == "opened" and results[0].signal.position == "short"
        assert results[0].signal.note == "dict"

    async def test_a_constant_id_trades_only_once(self) -> None:
        async def same(symbol: str, when: datetime, price: float) -> bk.SignalDto:
            return bk.SignalDto(
                position="long",
                price_take_profit=price * 1.01,
                price_stop_loss=price * 0.99,
                minute_estimated_time=30,
                id="fixed",
            )

        with registered() as made:
            bk.add_strategy("same_id", interval="1m", get_signal=same)
            bk.add_frame("same_f", start=day(4), end=day(4, 6))
            made += [("strategies", "same_id"), ("frames", "same_f")]
            results = await run_all(
                bk.Backtest.run(SYM, strategy="same_id", exchange="synthetic", frame="same_f")
            )
        assert [r.action for r in results] == ["opened", "closed"]


class BrokenExchange:
    """Serves the synthetic market, damaged in one chosen way."""

    def __init__(self, damage: str) -> None:
        self.damage = damage
        self.market = SyntheticExchange()

    async def get_candles(
        self, symbol: str, interval: str, since: datetime, limit: int
    ) -> Sequence[bk.Candle]:
        candles = list(await self.market.get_candles(symbol, interval, since, limit))
        c = candles[-1]
        if self.damage == "short":
            return candles[:-1]
        if self.damage == "misaligned":
            candles[-1] = c._replace(timestamp=c.timestamp + 1000)
        if self.damage == "nan":
            candles[-1] = c._replace(close=math.nan)
        if self.damage == "inconsistent":
            candles[-1] = c._replace(high=c.low - 1)
        return candles


class TestBadExchangeData:
    @pytest.mark.parametrize("damage", ["short", "misaligned", "nan", "inconsistent"])
    async def test_unusable_candles_raise_a_typed_error_naming_symbol_interval_and_since(
        self, damage: str
    ) -> None:
        bk.set_config(get_candles_retry_count=2, get_candles_retry_delay_ms=0)
        with registered() as made:
            bk.add_exchange(f"broken_{damage}", get_candles=BrokenExchange(damage).get_candles)
            bk.add_frame("broken_f", start=day(5), end=day(5, 1))
            made += [("exchanges", f"broken_{damage}"), ("frames", "broken_f")]
            with pytest.raises(bk.CandleDataError) as info:
                await run_all(
                    bk.Backtest.run(
                        SYM, strategy="a_long_tp1_sl1", exchange=f"broken_{damage}", frame="broken_f"
                    )
                )
        text = str(info.value)
        assert "symbol=SYNUSDT" in text and "interval=1m" in text and "since=2024-01-0" in text

    async def test_an_exchange_that_keeps_failing_raises_exchange_unavailable_after_retries(self) -> None:
        attempts = 0

        async def down(symbol: str, interval: str, since: datetime, limit: int) -> Sequence[bk.Candle]:
            nonlocal attempts
            attempts += 1
            raise ConnectionResetError("peer reset")

        bk.set_config(get_candles_retry_count=3, get_candles_retry_delay_ms=0)
        with registered() as made:
            bk.add_exchange("down_x", get_candles=down)
            bk.add_frame("down_f", start=day(5), end=day(5, 1))
            made += [("exchanges", "down_x"), ("frames", "down_f")]
            with pytest.raises(bk.ExchangeUnavailableError) as info:
                await run_all(
                    bk.Backtest.run(SYM, strategy="a_long_tp1_sl1", exchange="down_x", frame="down_f")
                )
        assert attempts == 3
        assert isinstance(info.value.__cause__, ConnectionResetError)


class TestRegistration:
    def test_unknown_names_list_what_is_registered(self) -> None:
        with pytest.raises(bk.UnknownNameError, match=r"registered strategies: .*a_long_tp1_sl1"):
            asyncio.run(run_all(bk.Backtest.run(SYM, strategy="nope", exchange="synthetic", frame="x")))

    def test_a_duplicate_name_is_refused_with_the_registered_names(self) -> None:
        with pytest.raises(bk.ConfigurationError, match="already registered"):
            bk.add_exchange("synthetic", get_candles=SyntheticExchange().get_candles)

    def test_an_inverted_frame_or_unknown_interval_is_rejected_at_add_frame(self) -> None:
        with pytest.raises(bk.ConfigurationError, match="before start"):
            bk.add_frame("inv", start=day(2), end=day(1))
        with pytest.raises(bk.ConfigurationError, match="unknown interval '7m'"):
            bk.add_frame("inv", start=day(1), end=day(2), interval="7m")
        with pytest.raises(bk.ConfigurationError, match="unknown interval"):
            bk.add_strategy("inv", interval="2h", get_signal=bk.examples.a_long_tp1_sl1)

    def test_a_sync_get_signal_is_refused(self) -> None:
        def sync(symbol: str, when: datetime, price: float) -> None:
            return None

        with pytest.raises(bk.ConfigurationError, match="async"):
            bk.add_strategy("sync_s", interval="1m", get_signal=sync)  # type: ignore[arg-type]

    def test_set_config_rejects_unknown_keys_and_bad_values_and_keeps_the_previous_config(self) -> None:
        bk.set_config(percent_fee=0.2)
        with pytest.raises(bk.ConfigurationError, match="unknown config keys: nope"):
            bk.set_config(nope=1)
        with pytest.raises(bk.ConfigurationError, match="invalid config"):
            bk.set_config({"CC_PERCENT_SLIPPAGE": -1})
        assert bk.get_config().percent_fee == 0.2 and bk.get_config().percent_slippage == 0.1
        bk.set_config({"CC_PERCENT_SLIPPAGE": 0.05})
        assert bk.get_config().percent_slippage == 0.05


class TestExecutionContext:
    async def test_a_strategy_sees_only_closed_candles_and_the_simulated_date(self) -> None:
        seen: list[tuple[datetime, int, str, float, float]] = []

        async def peek(symbol: str, when: datetime, price: float) -> None:
            candles = await bk.get_candles(symbol, "1m", 3)
            hourly = await bk.get_candles(symbol, "1h", 2)
            avg = await bk.get_average_price(symbol)
            assert bk.get_date() == when
            seen.append((when, candles[-1].timestamp, bk.get_mode(), avg - price, hourly[-1].timestamp))
            return None

        with registered() as made:
            bk.add_strategy("peek", interval="15m", get_signal=peek)
            bk.add_frame("peek_f", start=day(6, 10, 7), end=day(6, 11))
            made += [("strategies", "peek"), ("frames", "peek_f")]
            await run_all(bk.Backtest.run(SYM, strategy="peek", exchange="synthetic", frame="peek_f"))
        assert [w.strftime("%H:%M") for w, *_ in seen] == ["10:07", "10:15", "10:30", "10:45", "11:00"]
        for when, last_ts, mode, diff, hour_ts in seen:
            when_ms = int(when.timestamp() * 1000)
            assert last_ts == when_ms - 60_000  # the candle opening at `when` has not closed
            assert hour_ts + 3_600_000 <= when_ms  # the current hour is not closed either
            assert mode == "backtest" and diff == 0

    def test_context_functions_outside_a_strategy_raise_a_clear_error(self) -> None:
        with pytest.raises(bk.BacktestKitError, match="execution context"):
            bk.get_date()


class TestRisk:
    async def test_a_risk_rejection_is_an_event_and_rolls_the_throttle_back(self) -> None:
        calls: list[datetime] = []
        rejections: list[Any] = []

        async def sig(symbol: str, when: datetime, price: float) -> bk.SignalDto:
            calls.append(when)
            return bk.SignalDto(
                position="long",
                price_take_profit=price * 1.01,
                price_stop_loss=price * 0.99,
                minute_estimated_time=30,
            )

        def only_on_the_hour(payload: dict[str, Any]) -> str | None:
            assert payload["activePositionCount"] == 0 and payload["currentSignal"]["position"] == "long"
            return None if payload["timestamp"] % 3_600_000 == 0 else "wait for the hour"

        with registered() as made:
            bk.add_risk("hourly", validations=[only_on_the_hour])
            bk.add_strategy("risky", interval="15m", get_signal=sig, risk="hourly")
            bk.add_frame("risky_f", start=day(7, 0, 50), end=day(7, 1, 10))
            made += [("risks", "hourly"), ("strategies", "risky"), ("frames", "risky_f")]
            unsubscribe = bk.listen_risk(rejections.append)
            try:
                results = await run_all(
                    bk.Backtest.run(SYM, strategy="risky", exchange="synthetic", frame="risky_f")
                )
            finally:
                unsubscribe()
        # rejected at 00:50..00:59 every minute (throttle rolled back), accepted at 01:00
        assert len(calls) == 11 and calls[-1].strftime("%H:%M") == "01:00"
        assert len(rejections) == 10 and rejections[0].note == "wait for the hour"
        assert results[0].action == "opened" and results[0].when == int(calls[-1].timestamp() * 1000)


class TestBacktestUtilities:
    async def test_reports_dumps_lists_and_once_listeners_work_without_any_enable_call(
        self, tmp_path: Path
    ) -> None:
        dones: list[Any] = []
        progress: list[Any] = []
        with registered() as made:
            bk.add_frame("util_f", start=day(8), end=day(8, 6))
            made.append(("frames", "util_f"))
            bk.listen_done_backtest_once(dones.append)
            unsubscribe = bk.listen_progress_backtest(progress.append)
            try:
                await run_all(
                    bk.Backtest.run(SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame="util_f")
                )
                await run_all(
                    bk.Backtest.run(SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame="util_f")
                )
            finally:
                unsubscribe()
            report = await bk.Backtest.get_report(
                SYM, "a_long_tp1_sl1", columns=["position", "pnl", "reason"]
            )
            path = await bk.Backtest.dump(SYM, "a_long_tp1_sl1", tmp_path)
        assert len(dones) == 1
        assert progress[-1].progress == 1.0
        assert report.startswith("# Backtest Report: a_long_tp1_sl1")
        assert "| Position | PNL (net) | Close Reason |" in report and "**Total signals:**" in report
        assert path.read_text().startswith("# Backtest Report") and "util_f_backtest-" in path.name
        assert {"symbol": SYM, "strategyName": "a_long_tp1_sl1", "status": "done"} in bk.Backtest.list()

    async def test_stop_ends_a_backtest_after_the_current_signal(self) -> None:
        with registered() as made:
            bk.add_frame("stop_f", start=day(9), end=day(10))
            made.append(("frames", "stop_f"))
            actions = []
            async for r in bk.Backtest.run(
                SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame="stop_f"
            ):
                actions.append(r.action)
                if r.action == "opened":
                    bk.Backtest.stop(SYM, "a_long_tp1_sl1")
        assert actions == ["opened", "closed"]

    async def test_background_runs_in_a_task_and_can_be_cancelled(self) -> None:
        with registered() as made:
            bk.add_frame("bg_f", start=day(11), end=day(12))
            made.append(("frames", "bg_f"))
            done = asyncio.Event()
            bk.listen_done_backtest_once(lambda e: done.set())
            bk.Backtest.background(SYM, strategy="d_sma_cross", exchange="synthetic", frame="bg_f")
            await asyncio.wait_for(done.wait(), 30)
        stats = await bk.Backtest.get_data(SYM, "d_sma_cross")
        assert stats["totalSignals"] > 0


class TestLimitOrders:
    async def test_a_limit_order_already_reached_opens_at_its_price_if_the_market_is_inside_the_bracket(
        self,
    ) -> None:
        async def reached(symbol: str, when: datetime, price: float) -> bk.SignalDto:
            # long limit above the market: reached at once, opens at price_open
            return bk.SignalDto(
                position="long",
                price_open=price * 1.001,
                price_take_profit=price * 1.011,
                price_stop_loss=price * 0.991,
                minute_estimated_time=30,
            )

        async def outside(symbol: str, when: datetime, price: float) -> bk.SignalDto:
            # reached, but the market is already below the stop-loss: refused
            return bk.SignalDto(
                position="long",
                price_open=price * 1.02,
                price_take_profit=price * 1.04,
                price_stop_loss=price * 1.01,
                minute_estimated_time=30,
            )

        errors: list[BaseException] = []
        with registered() as made:
            bk.add_strategy("lim_reached", interval="1h", get_signal=reached)
            bk.add_strategy("lim_outside", interval="1h", get_signal=outside)
            bk.add_frame("lim_f", start=day(12), end=day(12, 0, 30))
            made += [("strategies", "lim_reached"), ("strategies", "lim_outside"), ("frames", "lim_f")]
            got = await run_all(
                bk.Backtest.run(SYM, strategy="lim_reached", exchange="synthetic", frame="lim_f")
            )
            unsubscribe = bk.listen_error(errors.append)
            try:
                refused = await run_all(
                    bk.Backtest.run(SYM, strategy="lim_outside", exchange="synthetic", frame="lim_f")
                )
            finally:
                unsubscribe()
        opened = got[0]
        assert opened.action == "opened" and opened.signal.pending_at == opened.signal.scheduled_at
        assert opened.signal.price_open == pytest.approx(opened.current_price * 1.001)
        assert refused == [] and "current price" in str(errors[0])


async def test_the_report_shows_signal_notes_when_configured() -> None:
    with registered() as made:
        bk.add_frame("note_f", start=day(13), end=day(13, 3))
        made.append(("frames", "note_f"))
        await run_all(bk.Backtest.run(SYM, strategy="a_long_tp1_sl1", exchange="synthetic", frame="note_f"))
        plain = await bk.Backtest.get_report(SYM, "a_long_tp1_sl1")
        bk.set_config(report_show_signal_note=True)
        with_note = await bk.Backtest.get_report(SYM, "a_long_tp1_sl1")
    assert "| Note |" not in plain
    assert "| Position | Note | Open Price |" in with_note and "| LONG | a |" in with_note
