"""Statistics of a run: a pure function of its closed signals (ENGINE.md section 7).

Computed over every closed signal (not the newest 250 as the reference does). Sums run in the
reference's order (newest first) and the equity curve chronologically, so results match it
bit for bit; every non-finite number becomes ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

DAY_MS = 86_400_000


class Trade(NamedTuple):
    """What statistics need of one closed signal."""

    pnl: float
    pending_at: int
    close_timestamp: int
    peak_pnl: float
    fall_pnl: float
    close_price: float = math.nan


STAT_FIELDS = (
    "statsSignalCount",
    "totalSignals",
    "winCount",
    "lossCount",
    "winRate",
    "avgPnl",
    "totalPnl",
    "stdDev",
    "sharpeRatio",
    "annualizedSharpeRatio",
    "certaintyRatio",
    "expectedYearlyReturns",
    "avgPeakPnl",
    "avgFallPnl",
    "sortinoRatio",
    "calmarRatio",
    "recoveryFactor",
    "expectancy",
    "avgDuration",
    "medianPnl",
    "avgConsecutiveWinPnl",
    "avgConsecutiveLossPnl",
    "avgWinDuration",
    "avgLossDuration",
    "maxDrawdown",
    "medianStepSize",
    "buyerPressure",
    "sellerPressure",
    "buyerStrength",
    "sellerStrength",
    "pressureImbalance",
    "trend",
    "trendStrength",
    "trendConfidence",
)


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
    same name; the reference keeps it internal.
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
    win_rate = win / (win + loss) * 100 if win + loss else 0.0
    std: float | None = None
    sharpe: float | None = None
    if n >= 10:
        acc = 0.0
        for p in pnls:
            acc += (p - avg) ** 2
        std = math.sqrt(acc / (n - 1))
        if std > 1e-9:
            sharpe = avg / std
    first_pending = min(t.pending_at for t in valid)
    last_close = max(t.close_timestamp for t in valid)
    span_days = (last_close - first_pending) / DAY_MS
    trades_per_year: float | None = None
    if n >= 10 and span_days >= 14:
        tpy = n / span_days * 365
        if tpy <= 365:
            trades_per_year = tpy
    annual_sharpe = sharpe * math.sqrt(trades_per_year) if sharpe is not None and trades_per_year else None

    # equity curve, chronological (stable sort by close time)
    chrono = sorted(valid, key=lambda t: t.close_timestamp)
    equity, peak, max_dd, blown = 1.0, 1.0, 0.0, False
    for t in chrono:
        if t.fall_pnl < 0:
            trough = equity * (1 + t.fall_pnl / 100)
            if trough <= 0:
                blown, max_dd = True, 100.0
                break
            dd = (peak - trough) / peak * 100
            if dd > max_dd:
                max_dd = dd
        equity *= 1 + t.pnl / 100
        if equity <= 0:
            blown, max_dd = True, 100.0
            break
        if equity > peak:
            peak = equity
        else:
            dd = (peak - equity) / peak * 100
            if dd > max_dd:
                max_dd = dd
    eyr: float | None = None
    if trades_per_year is not None and not blown:
        x = (equity ** (trades_per_year / n) - 1) * 100
        eyr = None if abs(x) > 100 else x
    avg_win = _mean(wins)
    avg_loss = _mean(losses)
    certainty = None
    expectancy = None
    sortino = None
    if n >= 10:
        if avg_win is not None and avg_loss is not None and avg_loss < -1e-9:
            certainty = avg_win / abs(avg_loss)
        expectancy = (win / n) * (avg_win or 0.0) + (loss / n) * (avg_loss or 0.0)
        if loss:
            acc = 0.0
            for p in pnls:
                if p < 0:
                    acc += p * p
            dd_dev = math.sqrt(acc / n)
            if dd_dev > 1e-9:
                sortino = avg / dd_dev
    calmar = _clamp(eyr / max_dd, 1000) if eyr is not None and max_dd > 0 else None
    recovery = _clamp((equity - 1) * 100 / max_dd, 1000) if n >= 10 and not blown and max_dd > 0 else None
    srt = sorted(pnls)
    median = srt[n // 2] if n % 2 else (srt[n // 2 - 1] + srt[n // 2]) / 2

    def minutes(t: Trade) -> float:
        return (t.close_timestamp - t.pending_at) / 60_000

    win_streaks: list[float] = []
    loss_streaks: list[float] = []
    cur_kind, cur_sum = 0, 0.0
    for t in sorted(valid, key=lambda t: t.close_timestamp):
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

    out.update(
        winCount=win,
        lossCount=loss,
        winRate=win_rate,
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
        calmarRatio=calmar,
        recoveryFactor=recovery,
        expectancy=expectancy,
        avgDuration=_mean([minutes(t) for t in newest]),
        medianPnl=median,
        avgConsecutiveWinPnl=_mean(win_streaks),
        avgConsecutiveLossPnl=_mean(loss_streaks),
        avgWinDuration=_mean([minutes(t) for t in newest if t.pnl > 0]),
        avgLossDuration=_mean([minutes(t) for t in newest if t.pnl < 0]),
        maxDrawdown=max_dd,
    )
    if n >= 10:
        out.update(price_profile(chrono))
    return {k: (_safe(v) if isinstance(v, float) else v) for k, v in out.items()}


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
