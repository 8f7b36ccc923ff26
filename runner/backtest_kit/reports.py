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
from .summary import DEFAULT_STAKE, FrameInfo, Summary, summarize


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
    #: The frame's range and first/last price, when the caller knows them (buy-and-hold, exposure).
    frame_info: FrameInfo | None = None
    stake: float = DEFAULT_STAKE
    #: Keep at most this many ended results (the oldest go first); ``None`` keeps all (backtests).
    max_rows: int | None = None
    #: Counts changes, so statistics asked for twice without one in between are computed once.
    version: int = 0
    _memo: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False, compare=False)

    def add(self, result: AnyResult) -> None:
        """Keep ``result`` if it ends a signal (closed or cancelled); ignore the rest."""
        if isinstance(result, ClosedResult):
            self.closed.append(result)
        elif isinstance(result, CancelledResult):
            self.cancelled.append(result)
        else:
            return
        self.version += 1
        self.ended.append(result)
        self.last_when = result.when
        cap = self.max_rows
        if cap is not None and len(self.ended) > 2 * cap:
            # trim in batches, so a long-running trader's memory stays bounded at O(1) per result
            self.ended = self.ended[-cap:]
            self.closed = self.closed[-cap:]
            self.cancelled = self.cancelled[-cap:]

    def _memoized(self, name: str, key: Any, compute: Callable[[], Any]) -> Any:
        held = self._memo.get(name)
        if held is not None and held[0] == key:
            return held[1]
        value = compute()
        self._memo[name] = (key, value)
        return value

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._memoized(
            "stats", self.version, lambda: compute_stats([trade_of(r) for r in self.closed])
        )
        return dict(stats)  # the caller's to change

    def summary(self) -> Summary:
        """The numbers a trader reads first (see :mod:`.summary`)."""
        summary: Summary = self._memoized(
            "summary",
            (self.version, self.frame_info, self.stake),
            lambda: summarize(
                self.closed, frame=self.frame_info, stake=self.stake, cancelled=len(self.cancelled)
            ),
        )
        return summary

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
            summary=self.summary(),
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
    "entries": "DCA Entries",
    "partials": "Partial Closes",
    "trailing": "Trailing SL / TP",
}
#: Shown when some trade of the report managed its position (entries, partials, trailing).
POSITION_COLUMNS = ("entries", "partials", "trailing")
DEFAULT_COLUMNS = tuple(k for k in COLUMNS if k != "note" and k not in POSITION_COLUMNS)


def default_columns(closed: Sequence[ClosedResult]) -> tuple[str, ...]:
    managed = any(
        r.signal.managed
        or r.signal.trailing_price_stop_loss is not None
        or r.signal.trailing_price_take_profit
        for r in closed
    )
    return (*DEFAULT_COLUMNS, *POSITION_COLUMNS) if managed else DEFAULT_COLUMNS


def _partials_text(r: ClosedResult) -> str:
    """``N/A``, or e.g. ``3 (↑2: 75%, ↓1: 30%)``: how many partial closes, of which kind, how much."""
    partials = r.signal.partials
    if not partials:
        return "N/A"
    up = [p for p in partials if p.type == "profit"]
    down = [p for p in partials if p.type == "loss"]
    parts = [f"↑{len(up)}" if up else "", f"↓{len(down)}" if down else ""]
    return f"{len(partials)} ({', '.join(x for x in parts if x)}; {r.signal.partial_executed:.0f}% closed)"


def _entries_text(r: ClosedResult) -> str:
    entries = r.signal.all_entries
    if len(entries) == 1:
        return "1"
    return f"{len(entries)} ({', '.join(f'{e.cost:g}@{price_text(e.price)[:-4]}' for e in entries)})"


def _trailing_text(r: ClosedResult) -> str:
    s = r.signal
    sl, tp = s.trailing_price_stop_loss, s.trailing_price_take_profit
    if sl is None and tp is None:
        return "N/A"
    return f"{price_text(sl) if sl is not None else '-'} / {price_text(tp) if tp is not None else '-'}"


_CELLS: dict[str, Callable[[ClosedResult], str]] = {
    "id": lambda r: r.signal.id[:8],
    "symbol": lambda r: r.signal.symbol,
    "position": lambda r: r.signal.position.upper(),
    "note": lambda r: _capped(r.signal.note).replace("|", "\\|"),
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
    "entries": _entries_text,
    "partials": _partials_text,
    "trailing": _trailing_text,
}


def _cell(r: ClosedResult, key: str) -> str:
    return _CELLS[key](r)


#: A report cell longer than this is cut (the JSON output keeps the whole text).
MAX_CELL = 32


def _capped(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _na(reason: str) -> str:
    return f"N/A ({reason})"


def _money(v: float) -> str:
    return f"{v:,.2f} USD"


def _summary_lines(s: Summary) -> list[str]:
    """The summary table: money and risk first, then counts."""

    def pct(name: str, v: float | None, signed: bool = True) -> str:
        return _na(s.missing.get(name, "not computed")) if v is None else _pct(v, signed)

    pf = _na(s.missing.get("profit_factor", "")) if s.profit_factor is None else f"{s.profit_factor:.2f}"
    rate = pct("win_rate", s.win_rate, signed=False)
    exposure = pct("exposure", s.exposure, signed=False)
    reasons = ", ".join(f"{k} {v}" for k, v in s.exit_reasons.items()) or "none"
    cancelled = f" (and {s.cancelled} cancelled)" if s.cancelled else ""
    rows = [
        ("Final equity", f"{_money(s.final_equity)} from {_money(s.stake)}"),
        ("Return (compounded)", _pct(s.compounded_return)),
        ("Buy and hold (same frame)", pct("buy_and_hold_return", s.buy_and_hold_return)),
        ("Max drawdown (equity)", _pct(s.max_drawdown, signed=False)),
        ("Profit factor", pf),
        ("Win rate", f"{rate} ({s.wins} W / {s.losses} L)"),
        ("Exposure (time in a position)", exposure),
        ("Trades", f"{s.trades}{cancelled}"),
        ("Best / worst trade", f"{pct('best_trade', s.best_trade)} / {pct('worst_trade', s.worst_trade)}"),
        ("Exit reasons", reasons),
        ("Fixed-size PNL (each trade's own cost)", f"{s.fixed_size_pnl:+,.2f} USD"),
    ]
    lines = [
        "## Summary",
        "",
        f"A stake of {_money(s.stake)}, all of it in every trade, one trade after another.",
        "",
        "| | |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return lines


def _reason(key: str, stats: dict[str, Any]) -> str:
    """Why the reference statistic ``key`` is missing (the rules of :func:`compute_stats`)."""
    n = int(stats.get("totalSignals") or 0)
    if n == 0:
        return "no trades"
    if n < 10 and key in _NEEDS_TEN:
        return "needs ≥ 10 trades"
    return _REASONS.get(key, "not defined for these trades")


_NEEDS_TEN = frozenset(
    {
        "stdDev",
        "sharpeRatio",
        "annualizedSharpeRatio",
        "certaintyRatio",
        "sortinoRatio",
        "expectancy",
        "expectedYearlyReturns",
        "calmarRatio",
        "recoveryFactor",
        "trend",
        "trendStrength",
        "trendConfidence",
        "medianStepSize",
        "buyerPressure",
        "sellerPressure",
    }
)
_REASONS = {
    "sharpeRatio": "no variation in PNL",
    "annualizedSharpeRatio": "needs ≥ 14 days traded, ≤ 1 trade a day, and a Sharpe ratio",
    "expectedYearlyReturns": "needs ≥ 14 days traded and ≤ 1 trade a day; shown only within ±100 %",
    "calmarRatio": "needs expected yearly returns and a drawdown",
    "recoveryFactor": "no drawdown",
    "certaintyRatio": "no losing trades",
    "sortinoRatio": "no losing trades",
    "avgWinDuration": "no winning trades",
    "avgLossDuration": "no losing trades",
    "avgConsecutiveWinPnl": "no winning trades",
    "avgConsecutiveLossPnl": "no losing trades",
}


def _stat_lines(stats: dict[str, Any], cancelled: int) -> list[str]:
    """The reference's statistics, each missing one with its reason."""

    def pct(key: str, signed: bool = True) -> str:
        v = stats[key]
        return _na(_reason(key, stats)) if v is None else _pct(v, signed)

    def num(key: str, digits: int = 3) -> str:
        v = stats[key]
        return _na(_reason(key, stats)) if v is None else _num(v, digits)

    w, lo = stats["winCount"], stats["lossCount"]
    trend = stats["trend"]
    profile = (
        f"{trend} ({pct('trendStrength')}/day, R² {num('trendConfidence')}); "
        f"median step {pct('medianStepSize', signed=False)}; "
        f"buyer/seller pressure {num('buyerPressure')}/{num('sellerPressure')}"
        if trend
        else _na(_reason("trend", stats))
    )
    return [
        "## Statistics (per trade, as the reference computes them)",
        "",
        f"**Total signals:** {stats['totalSignals']}"
        + (f" (and {cancelled} cancelled)" if cancelled else ""),
        f"**Win rate:** {pct('winRate', signed=False)} ({w} W / {lo} L)",
        f"**Average PNL:** {pct('avgPnl')} (higher is better)",
        f"**Sum of per-trade PNL %:** {pct('totalPnl')} (a plain sum, not a return; see the summary)",
        f"**Median PNL:** {pct('medianPnl')}",
        f"**Standard deviation:** {pct('stdDev', signed=False)} (lower is better)",
        f"**Sharpe ratio (per trade):** {num('sharpeRatio')} (higher is better)",
        f"**Annualized Sharpe ratio:** {num('annualizedSharpeRatio')} (higher is better)",
        f"**Sortino ratio:** {num('sortinoRatio')} (higher is better)",
        f"**Certainty ratio:** {num('certaintyRatio')} (avg win / |avg loss|, higher is better)",
        f"**Expectancy:** {pct('expectancy')} per trade",
        f"**Expected yearly returns:** {pct('expectedYearlyReturns')}",
        f"**Max drawdown (equity):** {pct('maxDrawdown', signed=False)} (lower is better)",
        f"**Calmar ratio:** {num('calmarRatio')}",
        f"**Recovery factor:** {num('recoveryFactor')}",
        f"**Average duration:** {num('avgDuration', 1)} min "
        f"(wins {num('avgWinDuration', 1)}, losses {num('avgLossDuration', 1)})",
        f"**Average peak / fall PNL:** {pct('avgPeakPnl')} / {pct('avgFallPnl')}",
        f"**Average consecutive win / loss PNL:** {pct('avgConsecutiveWinPnl')} / "
        f"{pct('avgConsecutiveLossPnl')}",
        f"**Price trend:** {profile}",
        "",
    ]


def _table_lines(closed: Sequence[ClosedResult], cols: Sequence[str], max_rows: int) -> list[str]:
    rows = list(reversed(closed))[:max_rows]
    lines = [
        "## Trades (newest first)",
        "",
        "| " + " | ".join(COLUMNS[c] for c in cols) + " |",
        "| " + " | ".join("---" for _ in cols) + " |",
    ]
    lines.extend("| " + " | ".join(_cell(r, c) for c in cols) + " |" for r in rows)
    if len(closed) > max_rows:
        lines += [
            "",
            f"*Showing the newest {max_rows} of {len(closed)} closed signals; the statistics cover all.*",
        ]
    return [*lines, ""]


def render_markdown(
    title: str,
    closed: Sequence[ClosedResult],
    stats: dict[str, Any],
    *,
    columns: Sequence[str] | None = None,
    max_rows: int = 250,
    cancelled: int = 0,
    summary: Summary | None = None,
) -> str:
    """The report: the summary, the table of closed signals (newest first, capped), the statistics."""
    cols = list(columns or default_columns(closed))
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown report columns {unknown}; known: {', '.join(COLUMNS)}")
    lines = [f"# {title}", ""]
    if not closed:
        lines.append("No signals closed yet." + (f" ({cancelled} cancelled.)" if cancelled else ""))
        return "\n".join(lines) + "\n"
    summary = summary or summarize(closed, cancelled=cancelled)
    lines += [*_summary_lines(summary), ""]
    lines += _table_lines(closed, cols, max_rows)
    lines += _stat_lines(stats, cancelled)
    return "\n".join(lines)
