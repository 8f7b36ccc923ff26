"""What happened in each run, collected from events, and its markdown rendering.

A ``ReportStore`` subscribes to a signal subject and keeps the closed and cancelled results per
``symbol:strategy``; statistics are computed from them on demand (``stats.compute_stats``), and
``render_markdown`` turns both into the report. Computing and rendering stay separate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .candles import iso
from .config import get_config
from .events import Subject
from .signals import CancelledResult, ClosedResult
from .stats import Trade, compute_stats


@dataclass
class RunRecord:
    closed: list[ClosedResult] = field(default_factory=list)
    cancelled: list[CancelledResult] = field(default_factory=list)
    ended: list[ClosedResult | CancelledResult] = field(default_factory=list)  # emission order
    exchange_name: str = ""
    frame_name: str = ""
    last_when: int = 0


class ReportStore:
    """Closed/cancelled results per ``symbol:strategy``, fed by a signal subject."""

    def __init__(self, subject: Subject[Any]) -> None:
        self.records: dict[tuple[str, str], RunRecord] = {}
        subject.subscribe(self._on_result)

    def _on_result(self, result: Any) -> None:
        action = getattr(result, "action", None)
        if action not in ("closed", "cancelled"):
            return
        rec = self.records.setdefault((result.symbol, result.strategy_name), RunRecord())
        rec.exchange_name, rec.frame_name, rec.last_when = (
            result.exchange_name,
            result.frame_name,
            result.when,
        )
        rec.ended.append(result)
        if action == "closed":
            rec.closed.append(result)
        else:
            rec.cancelled.append(result)

    def reset(self, symbol: str, strategy: str) -> None:
        self.records[(symbol, strategy)] = RunRecord()

    def record(self, symbol: str, strategy: str) -> RunRecord:
        return self.records.get((symbol, strategy)) or RunRecord()

    def stats(self, symbol: str, strategy: str) -> dict[str, Any]:
        rec = self.record(symbol, strategy)
        return compute_stats([trade_of(r) for r in rec.closed])

    def report(
        self, symbol: str, strategy: str, *, title: str, columns: Sequence[str] | None, max_rows: int
    ) -> str:
        rec = self.record(symbol, strategy)
        if columns is None and get_config().report_show_signal_note:
            columns = ("id", "symbol", "position", "note", *DEFAULT_COLUMNS[3:])
        return render_markdown(
            title,
            rec.closed,
            self.stats(symbol, strategy),
            columns=columns,
            max_rows=max_rows,
            cancelled=len(rec.cancelled),
        )

    def dump(self, symbol: str, strategy: str, report: str, folder: Path, mode: str) -> Path:
        """Write ``report`` as ``<SYM>_<strategy>_<exchange>[_<frame>]_<mode>-<ms>.md`` in ``folder``."""
        rec = self.record(symbol, strategy)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = rec.last_when or int(time.time() // 60 * 60_000)
        parts = [symbol, strategy, rec.exchange_name, *([rec.frame_name] if rec.frame_name else [])]
        target = folder / f"{'_'.join(parts)}_{mode}-{stamp}.md"
        target.write_text(report, encoding="utf-8")
        return target


def trade_of(r: ClosedResult) -> Trade:
    s = r.signal
    return Trade(
        r.pnl.pnl_percentage, s.pending_at, r.close_timestamp, s.peak_pnl, s.fall_pnl, r.pnl.price_close
    )


# --------------------------------------------------------------------------- rendering


def price_text(v: float | None) -> str:
    """``"<v> USD"`` with 2 decimals for prices ≥ 1 and up to 8 below (ENGINE.md item 45)."""
    if v is None or not math.isfinite(v):
        return "N/A"
    scale = 2 if v == 0 else max(2, min(8, 2 - 2 * math.floor(math.log10(abs(v)))))
    return f"{v:.{scale}f} USD"


def _pct(v: float | None, signed: bool = True) -> str:
    if v is None:
        return "N/A"
    return f"{v:+.2f}%" if signed else f"{v:.2f}%"


def _num(v: float | None, digits: int = 3) -> str:
    return "N/A" if v is None else f"{v:.{digits}f}"


COLUMNS: dict[str, str] = {
    "id": "Signal ID",
    "symbol": "Symbol",
    "position": "Position",
    "note": "Note",
    "open": "Open Price",
    "close": "Close Price",
    "tp": "Take Profit",
    "sl": "Stop Loss",
    "pnl": "PNL (net)",
    "pnl_usd": "PNL (USD)",
    "reason": "Close Reason",
    "duration": "Duration (min)",
    "opened": "Open Time",
    "closed": "Close Time",
    "peak": "Peak PNL",
    "dd": "Max DD PNL",
}
DEFAULT_COLUMNS = tuple(k for k in COLUMNS if k != "note")


def _cell(r: ClosedResult, key: str) -> str:
    s = r.signal
    match key:
        case "id":
            return s.id
        case "symbol":
            return s.symbol
        case "position":
            return s.position.upper()
        case "note":
            return s.note.replace("|", "\\|")
        case "open":
            return price_text(r.pnl.price_open)
        case "close":
            return price_text(r.pnl.price_close)
        case "tp":
            return price_text(s.price_take_profit)
        case "sl":
            return price_text(s.price_stop_loss)
        case "pnl":
            return _pct(r.pnl.pnl_percentage)
        case "pnl_usd":
            return f"{r.pnl.pnl_cost:+.2f}"
        case "reason":
            return r.close_reason
        case "duration":
            return str(round((r.close_timestamp - s.pending_at) / 60_000))
        case "opened":
            return iso(s.pending_at)
        case "closed":
            return iso(r.close_timestamp)
        case "peak":
            return _pct(s.peak_pnl)
        case "dd":
            return _pct(s.fall_pnl)
    raise KeyError(key)


def render_markdown(
    title: str,
    closed: Sequence[ClosedResult],
    stats: dict[str, Any],
    *,
    columns: Sequence[str] | None = None,
    max_rows: int = 250,
    cancelled: int = 0,
) -> str:
    """The report: a table of closed signals (newest first, capped) and the summary."""
    cols = list(columns or DEFAULT_COLUMNS)
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown report columns {unknown}; known: {', '.join(COLUMNS)}")
    lines = [f"# {title}", ""]
    if not closed:
        lines.append("No signals closed yet.")
        return "\n".join(lines) + "\n"
    rows = list(reversed(closed))[:max_rows]
    lines.append("| " + " | ".join(COLUMNS[c] for c in cols) + " |")
    lines.append("| " + " | ".join("---" for _ in cols) + " |")
    lines.extend("| " + " | ".join(_cell(r, c) for c in cols) + " |" for r in rows)
    if len(closed) > max_rows:
        lines.append("")
        lines.append(
            f"*Showing the newest {max_rows} of {len(closed)} closed signals; the statistics cover all.*"
        )
    w, lo = stats["winCount"], stats["lossCount"]
    lines += [
        "",
        f"**Total signals:** {stats['totalSignals']}"
        + (f" (and {cancelled} cancelled)" if cancelled else ""),
        f"**Win rate:** {_pct(stats['winRate'], signed=False)} ({w} W / {lo} L)",
        f"**Average PNL:** {_pct(stats['avgPnl'])} (higher is better)",
        f"**Total PNL:** {_pct(stats['totalPnl'])} (higher is better)",
        f"**Median PNL:** {_pct(stats['medianPnl'])}",
        f"**Standard deviation:** {_pct(stats['stdDev'], signed=False)} (lower is better)",
        f"**Sharpe ratio (per trade):** {_num(stats['sharpeRatio'])} (higher is better)",
        f"**Annualized Sharpe ratio:** {_num(stats['annualizedSharpeRatio'])} (higher is better)",
        f"**Sortino ratio:** {_num(stats['sortinoRatio'])} (higher is better)",
        f"**Certainty ratio:** {_num(stats['certaintyRatio'])} (avg win / |avg loss|, higher is better)",
        f"**Expectancy:** {_pct(stats['expectancy'])} per trade",
        f"**Expected yearly returns:** {_pct(stats['expectedYearlyReturns'])}",
        f"**Max drawdown (equity):** {_pct(stats['maxDrawdown'], signed=False)} (lower is better)",
        f"**Calmar ratio:** {_num(stats['calmarRatio'])}",
        f"**Recovery factor:** {_num(stats['recoveryFactor'])}",
        f"**Average duration:** {_num(stats['avgDuration'], 1)} min "
        f"(wins {_num(stats['avgWinDuration'], 1)}, losses {_num(stats['avgLossDuration'], 1)})",
        f"**Average peak / fall PNL:** {_pct(stats['avgPeakPnl'])} / {_pct(stats['avgFallPnl'])}",
        f"**Average consecutive win / loss PNL:** {_pct(stats['avgConsecutiveWinPnl'])} / "
        f"{_pct(stats['avgConsecutiveLossPnl'])}",
        f"**Price trend:** {stats['trend'] or 'N/A'} ({_pct(stats['trendStrength'])}/day, "
        f"R² {_num(stats['trendConfidence'])}); median step {_pct(stats['medianStepSize'], signed=False)}; "
        f"buyer/seller pressure {_num(stats['buyerPressure'])}/{_num(stats['sellerPressure'])}",
        "",
    ]
    return "\n".join(lines)
