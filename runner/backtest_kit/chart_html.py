"""The trading chart: candles, entries and exits, equity, drawdown and volume, drawn with Plotly.

A trader checks a backtest by looking at where it traded on the price, not only at the equity
line, so the chart puts both on one zoomable time axis: candlesticks (resampled by the caller to
a size a browser draws quickly), each entry and exit marked and coloured by the trade's result
with TP/SL/reason on hover, then volume, equity on the stated stake, and the drawdown. The HTML
embeds plotly.js, so the file opens offline. PNG and SVG go through Plotly's static export, which
needs the optional ``kaleido`` package; :func:`check_chart_path` refuses a format that cannot be
written before any work is done. Computing stays in :mod:`.charts` and :mod:`.summary`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .candles import CandleArrays
from .charts import EquityPoint
from .errors import ConfigurationError
from .signals import ClosedResult

#: What ``write_chart`` can write, by suffix; the static formats need kaleido.
HTML_SUFFIXES = (".html", ".htm")
STATIC_SUFFIXES = (".png", ".svg")
#: The ``id`` of the plot's element in the HTML (tests look for it).
DIV_ID = "backtest-chart"
WIN, LOSS = "#26a69a", "#ef5350"


def _require_plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as exc:
        raise ConfigurationError(
            "charts need plotly, which is not installed: pip install 'backtest-kit-operator[chart]' "
            "(or pip install plotly)"
        ) from exc
    return go


def check_chart_path(path: Path) -> None:
    """Refuse, before a run, a chart file that could not be written (format or missing package)."""
    suffix = path.suffix.lower()
    if suffix not in (*HTML_SUFFIXES, *STATIC_SUFFIXES):
        raise ConfigurationError(
            f"chart {path.name}: {suffix or 'no suffix'} is not a chart format; "
            f"use .html (interactive) or {', '.join(STATIC_SUFFIXES)} (needs kaleido)"
        )
    if importlib.util.find_spec("plotly") is None:
        _require_plotly()
    if suffix in STATIC_SUFFIXES and importlib.util.find_spec("kaleido") is None:
        raise ConfigurationError(
            f"chart {path.name}: {suffix} images need kaleido, which is not installed: "
            "pip install kaleido (or write the chart as .html)"
        )


def _times(ms: Sequence[int] | Any) -> list[datetime]:
    return [datetime.fromtimestamp(int(t) / 1000, tz=UTC) for t in ms]


def _hover(r: ClosedResult) -> str:
    s = r.signal
    return (
        f"{s.position} {s.id[:8]}<br>open {r.pnl.price_open:.6g} → close {r.pnl.price_close:.6g}"
        f"<br>TP {s.price_take_profit:.6g} · SL {s.price_stop_loss:.6g}"
        f"<br>{r.close_reason}: {r.pnl.pnl_percentage:+.2f} %"
    )


def _markers(
    go: Any, name: str, xs: Sequence[int], ys: Sequence[float], text: Sequence[str], marker: Any
) -> Any:
    """One trace of markers at (time, price) with a hover text each."""
    return go.Scatter(
        name=name,
        x=_times(xs),
        y=list(ys),
        mode="markers",
        marker=marker,
        hovertext=list(text),
        hoverinfo="text+x",
    )


def _trade_traces(go: Any, closed: Sequence[ClosedResult]) -> list[Any]:
    colors = [WIN if r.pnl.pnl_percentage > 0 else LOSS for r in closed]
    hover = [_hover(r) for r in closed]
    entry_symbols = ["triangle-up" if r.signal.position == "long" else "triangle-down" for r in closed]
    line = {"width": 1, "color": "#333"}
    entries = _markers(
        go,
        "entries",
        [r.signal.pending_at for r in closed],
        [r.pnl.price_open for r in closed],
        hover,
        {"symbol": entry_symbols, "size": 10, "color": colors, "line": line},
    )
    exits = _markers(
        go,
        "exits",
        [r.close_timestamp for r in closed],
        [r.pnl.price_close for r in closed],
        hover,
        {"symbol": "x", "size": 8, "color": colors, "line": line},
    )
    return [entries, exits, *_position_traces(go, closed)]


def _position_traces(go: Any, closed: Sequence[ClosedResult]) -> list[Any]:
    """Partial exits and added entries (DCA) of managed positions, when there are any."""
    partials = [
        (p.timestamp, p.current_price, f"{r.signal.id[:8]} partial {p.type} {p.percent:g} %")
        for r in closed
        for p in r.signal.partials
    ]
    added = [
        (e.timestamp, e.price, f"{r.signal.id[:8]} added {e.cost:g} USD")
        for r in closed
        for e in r.signal.all_entries[1:]
    ]
    traces = []
    for name, points, marker in (
        ("partial exits", partials, {"symbol": "diamond", "size": 8, "color": "#ff9800"}),
        ("added entries", added, {"symbol": "triangle-right", "size": 9, "color": "#2196f3"}),
    ):
        if points:
            xs, ys, text = zip(*points, strict=True)
            traces.append(_markers(go, name, xs, ys, text, marker))
    return traces


def build_figure(
    candles: CandleArrays,
    closed: Sequence[ClosedResult],
    equity: Sequence[EquityPoint],
    *,
    title: str,
    stake: float = 1000.0,
    start_ms: int | None = None,
) -> Any:
    """The Plotly figure: price with trades, volume, equity on ``stake``, drawdown (one x axis)."""
    go = _require_plotly()
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        row_heights=[0.55, 0.12, 0.18, 0.15],
        subplot_titles=("price and trades", "volume", f"equity (stake {stake:,.0f} USD)", "drawdown %"),
    )
    x = _times(candles.ts)
    fig.add_trace(
        go.Candlestick(
            name="price",
            x=x,
            open=candles.open,
            high=candles.high,
            low=candles.low,
            close=candles.close,
            increasing_line_color=WIN,
            decreasing_line_color=LOSS,
        ),
        row=1,
        col=1,
    )
    for trace in _trade_traces(go, closed):
        fig.add_trace(trace, row=1, col=1)
    fig.add_trace(go.Bar(name="volume", x=x, y=candles.volume, marker_color="#90a4ae"), row=2, col=1)
    first = start_ms if start_ms is not None else (int(candles.ts[0]) if len(candles) else None)
    eq_ms = ([first] if first is not None else []) + [p.timestamp for p in equity]
    eq_values = ([stake] if first is not None else []) + [p.equity * stake for p in equity]
    dd_values = ([0.0] if first is not None else []) + [-p.drawdown for p in equity]
    fig.add_trace(
        go.Scatter(name="equity", x=_times(eq_ms), y=eq_values, mode="lines", line={"color": "#1f77b4"}),
        row=3,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            name="drawdown", x=_times(eq_ms), y=dd_values, mode="lines", fill="tozeroy", line={"color": LOSS}
        ),
        row=4,
        col=1,
    )
    fig.update_layout(
        title=title,
        height=900,
        dragmode="zoom",
        hovermode="closest",
        showlegend=True,
        xaxis_rangeslider_visible=False,
        margin={"l": 60, "r": 20, "t": 70, "b": 40},
    )
    return fig


def write_chart(path: Path, figure: Any) -> None:
    """Write ``figure`` as standalone HTML (plotly.js embedded) or, with kaleido, PNG/SVG."""
    check_chart_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in HTML_SUFFIXES:
        html = figure.to_html(
            include_plotlyjs=True,
            full_html=True,
            div_id=DIV_ID,
            config={"scrollZoom": True, "displaylogo": False},
        )
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(path)
    else:
        figure.write_image(str(path), width=1400, height=900)
