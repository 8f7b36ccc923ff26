"""The trader's summary: a pure function of closed trades, checked on trades made by hand."""

from __future__ import annotations

import math

import pytest

from backtest_kit.pnl import Pnl
from backtest_kit.reports import render_markdown, trade_of
from backtest_kit.signals import ClosedResult, SignalRow
from backtest_kit.stats import compute_stats
from backtest_kit.summary import FrameInfo, summarize

MIN = 60_000
T0 = 1_704_067_200_000  # 2024-01-01


def trade(
    i: int, pnl: float, *, start: int, minutes: int, reason: str = "take_profit", cost: float = 100.0
) -> ClosedResult:
    row = SignalRow(
        id=f"{i:08d}-0000-0000-0000-000000000000",
        symbol="SYNUSDT",
        strategy_name="s",
        exchange_name="synthetic",
        position="long",
        price_open=100.0,
        price_take_profit=102.0,
        price_stop_loss=99.0,
        minute_estimated_time=240,
        scheduled_at=T0 + start * MIN,
        pending_at=T0 + start * MIN,
        cost=cost,
    )
    close = T0 + (start + minutes) * MIN
    return ClosedResult(
        symbol="SYNUSDT",
        strategy_name="s",
        exchange_name="synthetic",
        current_price=100.0,
        backtest=True,
        when=close,
        signal=row,
        close_reason=reason,  # type: ignore[arg-type]
        close_timestamp=close,
        pnl=Pnl(pnl, 100.0, 100.0 * (1 + pnl / 100), cost * pnl / 100, 0.0),
    )


def test_the_headline_is_the_compounded_return_on_the_stake_not_the_sum_of_percentages() -> None:
    trades = [trade(0, 10.0, start=0, minutes=60), trade(1, -10.0, start=120, minutes=60, reason="stop_loss")]
    s = summarize(trades, stake=1000.0)
    assert s.final_equity == pytest.approx(990.0)  # 1000 * 1.1 * 0.9
    assert s.compounded_return == pytest.approx(-1.0)
    assert s.sum_of_trade_pnl == pytest.approx(0.0)
    assert s.fixed_size_pnl == pytest.approx(0.0)  # +10 USD then -10 USD on 100 USD each
    assert s.max_drawdown == pytest.approx(10.0)
    assert s.profit_factor == pytest.approx(1.0)
    assert s.win_rate == 50.0 and (s.wins, s.losses) == (1, 1)
    assert (s.best_trade, s.worst_trade) == (10.0, -10.0)
    assert s.exit_reasons == {"take_profit": 1, "stop_loss": 1}


def test_buy_and_hold_and_exposure_come_from_the_frame() -> None:
    trades = [trade(0, 1.0, start=0, minutes=30), trade(1, 1.0, start=60, minutes=30)]
    frame = FrameInfo(T0, T0 + 240 * MIN, first_price=100.0, last_price=125.0)
    s = summarize(trades, frame=frame)
    assert s.buy_and_hold_return == pytest.approx(25.0)
    assert s.exposure == pytest.approx(25.0)  # 60 of 240 minutes in a position
    assert summarize(trades).exposure is None and summarize(trades).missing["exposure"] == "frame not given"


def test_every_missing_number_says_why() -> None:
    empty = summarize([])
    assert empty.win_rate is None and empty.missing["win_rate"] == "no trades"
    assert empty.profit_factor is None and empty.missing["profit_factor"] == "no trades"
    assert empty.final_equity == 1000.0 and empty.max_drawdown == 0.0
    winners = summarize([trade(0, 1.0, start=0, minutes=5)])
    assert winners.profit_factor is None and winners.missing["profit_factor"] == "no losing trades"


def test_the_report_puts_the_summary_first_and_explains_each_n_a() -> None:
    trades = [trade(i, 0.5 if i % 2 else -0.25, start=i * 60, minutes=30) for i in range(4)]
    stats = compute_stats([trade_of(t) for t in trades])
    report = render_markdown("Backtest Report: s", trades, stats, summary=summarize(trades))
    assert report.startswith("# Backtest Report: s\n\n## Summary\n")
    assert report.index("## Summary") < report.index("## Trades") < report.index("## Statistics")
    assert "| Return (compounded) | +0.50% |" in report
    assert "**Sum of per-trade PNL %:** +0.50% (a plain sum, not a return" in report
    assert "**Sharpe ratio (per trade):** N/A (needs ≥ 10 trades)" in report
    assert "| Buy and hold (same frame) | N/A (frame prices not given) |" in report
    assert not [line for line in report.splitlines() if "N/A" in line and "N/A (" not in line]
    widest = max(
        len(cell) for line in report.splitlines() if line.startswith("| ") for cell in line.split("|")
    )
    assert widest <= 40  # cells are capped (ids shortened, notes cut)


def test_the_reference_statistics_are_unchanged_by_the_summary() -> None:
    trades = [trade(i, math.sin(i) * 2, start=i * 90, minutes=45) for i in range(30)]
    before = compute_stats([trade_of(t) for t in trades])
    summarize(trades)
    assert compute_stats([trade_of(t) for t in trades]) == before
