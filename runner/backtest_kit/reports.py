"""What one run produced, and its markdown rendering.

A :class:`RunRecord` belongs to one run: the run appends each closed or cancelled result to it
as it happens, and statistics are computed from it on demand (``stats.compute_stats``), so two
runs of the same ``symbol:strategy`` never share or overwrite each other's results.
``render_markdown`` turns a record into the report; computing and rendering stay separate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .candles import iso
from .signals import AnyResult, CancelledResult, ClosedResult
from .stats import Trade, compute_stats


@dataclass
class RunRecord:
    """The closed and cancelled results of one run, in emission order."""

    symbol: str = ""
    strategy_name: str = ""
    exchange_name: str = ""
    frame_name: str = ""
    closed: list[ClosedResult] = field(default_factory=list)
    cancelled: list[CancelledResult] = field(default_factory=list)
    ended: list[ClosedResult | CancelledResult] = field(default_factory=list)  # emission order
    last_when: int = 0

    def add(self, result: AnyResult) -> None:
        """Keep ``result`` if it ends a signal (closed or cancelled); ignore the rest."""
        if isinstance(result, ClosedResult):
            self.closed.append(result)
        elif isinstance(result, CancelledResult):
            self.cancelled.append(result)
        else:
            return
        self.ended.append(result)
        self.last_when = result.when

    def stats(self) -> dict[str, Any]:
        return compute_stats([trade_of(r) for r in self.closed])

    def signals(self) -> list[dict[str, Any]]:
        """The flattened rows (the parity ``signals.json`` shape, with ``id``), in emission order."""
        return [r.flat() for r in self.ended]

    def report(
        self, *, title: str, columns: Sequence[str] | None, max_rows: int, show_note: bool = False
    ) -> str:
        if columns is None and show_note:
            columns = ("id", "symbol", "position", "note", *DEFAULT_COLUMNS[3:])
        return render_markdown(
            title,
            self.closed,
            self.stats(),
            columns=columns,
            max_rows=max_rows,
            cancelled=len(self.cancelled),
        )

    def dump(self, report: str, folder: Path, mode: str) -> Path:
        """Write ``report`` as ``<SYM>_<strategy>_<exchange>[_<frame>]_<mode>-<ms>.md`` in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        stamp = self.last_when or int(time.time() // 60 * 60_000)
        parts = [
            self.symbol,
            self.strategy_name,
            self.exchange_name,
            *([self.frame_name] if self.frame_name else []),
        ]
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


_CELLS: dict[str, Callable[[ClosedResult], str]] = {
    "id": lambda r: r.signal.id,
    "symbol": lambda r: r.signal.symbol,
    "position": lambda r: r.signal.position.upper(),
    "note": lambda r: r.signal.note.replace("|", "\\|"),
    "open": lambda r: price_text(r.pnl.price_open),
    "close": lambda r: price_text(r.pnl.price_close),
    "tp": lambda r: price_text(r.signal.price_take_profit),
    "sl": lambda r: price_text(r.signal.price_stop_loss),
    "pnl": lambda r: _pct(r.pnl.pnl_percentage),
    "pnl_usd": lambda r: f"{r.pnl.pnl_cost:+.2f}",
    "reason": lambda r: r.close_reason,
    "duration": lambda r: str(round((r.close_timestamp - r.signal.pending_at) / 60_000)),
    "opened": lambda r: iso(r.signal.pending_at),
    "closed": lambda r: iso(r.close_timestamp),
    "peak": lambda r: _pct(r.signal.peak_pnl),
    "dd": lambda r: _pct(r.signal.fall_pnl),
}


def _cell(r: ClosedResult, key: str) -> str:
    return _CELLS[key](r)


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
