"""Statistics of a run: a pure function of its closed signals (ENGINE.md section 7).

Computed over every closed signal (not the newest 250 as the reference does). Sums run in the
reference's order (newest first) and the equity curve chronologically, so results match it
bit for bit; every non-finite number becomes ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from .metrics import STAT_FIELDS

DAY_MS = 86_400_000


class Trade(NamedTuple):
    """What statistics need of one closed signal."""

    pnl: float
    pending_at: int
    close_timestamp: int
    peak_pnl: float
    fall_pnl: float
    close_price: float = math.nan


def _safe(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return x


def _mean(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    total = 0.0
    for x in xs:
        total += x
    return total / len(xs)


def _clamp(x: float, bound: float) -> float:
    return max(-bound, min(bound, x))


def compute_stats(trades_in_order: Sequence[Trade]) -> dict[str, Any]:
    """Statistics of closed trades given in emission order (oldest first).

    ``maxDrawdown`` (equity drawdown, %) is an addition of ours for the Walker metric of the
    same name; the reference keeps it internal. Sums run in a fixed order (newest trade first,
    as the reference lists them): parity depends on it.
    """
    valid = [t for t in trades_in_order if t.pending_at > 0 and t.close_timestamp > 0]
    n = len(valid)
    out: dict[str, Any] = dict.fromkeys(STAT_FIELDS)
    out["statsSignalCount"] = n
    out["totalSignals"] = n
    if n == 0:
        out["winCount"] = 0
        out["lossCount"] = 0
        return out
    newest = list(reversed(valid))
    pnls = [t.pnl for t in newest]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    win, loss = len(wins), len(losses)
    total = 0.0
    for p in pnls:
        total += p
    avg = total / n
    std, sharpe = _spread(pnls, avg)
    trades_per_year = _trades_per_year(valid)
    annual_sharpe = sharpe * math.sqrt(trades_per_year) if sharpe is not None and trades_per_year else None
    chrono = sorted(valid, key=lambda t: t.close_timestamp)  # stable: ties keep emission order
    equity, max_dd, blown = _equity_curve(chrono)
    eyr: float | None = None
    if trades_per_year is not None and not blown:
        x = (equity ** (trades_per_year / n) - 1) * 100
        eyr = None if abs(x) > 100 else x
    avg_win = _mean(wins)
    avg_loss = _mean(losses)
    certainty = expectancy = sortino = None
    if n >= 10:
        if avg_win is not None and avg_loss is not None and avg_loss < -1e-9:
            certainty = avg_win / abs(avg_loss)
        expectancy = (win / n) * (avg_win or 0.0) + (loss / n) * (avg_loss or 0.0)
        sortino = _sortino(pnls, avg) if loss else None
    win_streaks, loss_streaks = _streaks(chrono)
    out.update(
        winCount=win,
        lossCount=loss,
        winRate=win / (win + loss) * 100 if win + loss else 0.0,
        avgPnl=avg,
        totalPnl=total,
        stdDev=std,
        sharpeRatio=sharpe,
        annualizedSharpeRatio=annual_sharpe,
        certaintyRatio=certainty,
        expectedYearlyReturns=eyr,
        avgPeakPnl=_mean([t.peak_pnl for t in newest]),
        avgFallPnl=_mean([t.fall_pnl for t in newest]),
        sortinoRatio=sortino,
        calmarRatio=_clamp(eyr / max_dd, 1000) if eyr is not None and max_dd > 0 else None,
        recoveryFactor=(
            _clamp((equity - 1) * 100 / max_dd, 1000) if n >= 10 and not blown and max_dd > 0 else None
        ),
        expectancy=expectancy,
        avgDuration=_mean([_minutes(t) for t in newest]),
        medianPnl=_median(pnls),
        avgConsecutiveWinPnl=_mean(win_streaks),
        avgConsecutiveLossPnl=_mean(loss_streaks),
        avgWinDuration=_mean([_minutes(t) for t in newest if t.pnl > 0]),
        avgLossDuration=_mean([_minutes(t) for t in newest if t.pnl < 0]),
        maxDrawdown=max_dd,
    )
    if n >= 10:
        out.update(price_profile(chrono))
    return {k: (_safe(v) if isinstance(v, float) else v) for k, v in out.items()}


def _minutes(t: Trade) -> float:
    return (t.close_timestamp - t.pending_at) / 60_000


def _median(values: Sequence[float]) -> float:
    srt = sorted(values)
    n = len(srt)
    return srt[n // 2] if n % 2 else (srt[n // 2 - 1] + srt[n // 2]) / 2


def _spread(pnls: Sequence[float], avg: float) -> tuple[float | None, float | None]:
    """Sample standard deviation and Sharpe ratio (10 trades at least; Sharpe needs std > 1e-9)."""
    n = len(pnls)
    if n < 10:
        return None, None
    acc = 0.0
    for p in pnls:
        acc += (p - avg) ** 2
    std = math.sqrt(acc / (n - 1))
    return std, (avg / std if std > 1e-9 else None)


def _sortino(pnls: Sequence[float], avg: float) -> float | None:
    """Mean over the downside deviation (losses only, divided by all trades)."""
    acc = 0.0
    for p in pnls:
        if p < 0:
            acc += p * p
    dd_dev = math.sqrt(acc / len(pnls))
    return avg / dd_dev if dd_dev > 1e-9 else None


def _trades_per_year(valid: Sequence[Trade]) -> float | None:
    """Trades a year over the span traded: 10 trades and 14 days at least, at most one a day."""
    n = len(valid)
    span_days = (max(t.close_timestamp for t in valid) - min(t.pending_at for t in valid)) / DAY_MS
    if n < 10 or span_days < 14:
        return None
    tpy = n / span_days * 365
    return tpy if tpy <= 365 else None


def _equity_curve(chrono: Sequence[Trade]) -> tuple[float, float, bool]:
    """Compounded equity, the largest drawdown from a peak (%), and whether equity reached zero.

    A trade's worst moment (``fall_pnl``) counts as a trough before its close is applied.
    """
    equity, peak, max_dd = 1.0, 1.0, 0.0
    for t in chrono:
        if t.fall_pnl < 0:
            trough = equity * (1 + t.fall_pnl / 100)
            if trough <= 0:
                return equity, 100.0, True
            max_dd = max(max_dd, (peak - trough) / peak * 100)
        equity *= 1 + t.pnl / 100
        if equity <= 0:
            return equity, 100.0, True
        if equity > peak:
            peak = equity
        else:
            max_dd = max(max_dd, (peak - equity) / peak * 100)
    return equity, max_dd, False


def _streaks(chrono: Sequence[Trade]) -> tuple[list[float], list[float]]:
    """Summed PnL of each run of consecutive wins and of losses; a flat trade ends a run."""
    win_streaks: list[float] = []
    loss_streaks: list[float] = []
    cur_kind, cur_sum = 0, 0.0
    for t in chrono:
        kind = 1 if t.pnl > 0 else (-1 if t.pnl < 0 else 0)
        if kind != cur_kind and cur_kind:
            (win_streaks if cur_kind > 0 else loss_streaks).append(cur_sum)
            cur_sum = 0.0
        cur_kind = kind
        if kind:
            cur_sum += t.pnl
        else:
            cur_sum = 0.0
    if cur_kind:
        (win_streaks if cur_kind > 0 else loss_streaks).append(cur_sum)
    return win_streaks, loss_streaks


def price_profile(chrono: Sequence[Trade]) -> dict[str, Any]:
    """How the close prices moved from trade to trade (trades in close order, at least 10).

    Step sizes are relative changes between consecutive close prices; pressure counts up and
    down steps, strength weighs them by size; the trend is an OLS fit of ln(close) on days.
    """
    closes = [t.close_price for t in chrono]
    if any(not math.isfinite(c) or c <= 0 for c in closes):
        return {}
    steps = [(closes[i] - closes[i - 1]) / closes[i - 1] for i in range(1, len(closes))]
    sizes = sorted(abs(x) for x in steps)
    m = len(sizes)
    median_step = (sizes[m // 2 - 1] + sizes[m // 2]) / 2 * 100 if m % 2 == 0 else sizes[m // 2] * 100
    up = sum(1 for x in steps if x > 0)
    down = sum(1 for x in steps if x < 0)
    up_size = 0.0
    down_size = 0.0
    for x in steps:
        if x > 0:
            up_size += x
        elif x < 0:
            down_size -= x
    buyer_p = up / (up + down) if up + down else 0.5
    buyer_s = up_size / (up_size + down_size) if up_size + down_size else 0.5
    t0 = chrono[0].close_timestamp
    xs = [(t.close_timestamp - t0) / DAY_MS for t in chrono]
    ys = [math.log(c) for c in closes]
    mx = sum(xs) / len(xs)
    my = sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    sst = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or sst <= 0:
        slope, r2 = 0.0, 0.0
    else:
        slope = sxy / sxx
        intercept = my - slope * mx
        ssr = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
        r2 = 1 - ssr / sst
    strength = slope * 100
    if r2 < 0.30:
        trend = "sideways"
    elif abs(strength) < 0.25 * median_step:
        trend = "neutral"
    else:
        trend = "bullish" if strength > 0 else "bearish"
    return {
        "medianStepSize": median_step,
        "buyerPressure": buyer_p,
        "sellerPressure": 1 - buyer_p if up + down else 0.5,
        "buyerStrength": buyer_s,
        "sellerStrength": 1 - buyer_s if up_size + down_size else 0.5,
        "pressureImbalance": buyer_s - (1 - buyer_s),
        "trend": trend,
        "trendStrength": strength,
        "trendConfidence": r2,
    }
