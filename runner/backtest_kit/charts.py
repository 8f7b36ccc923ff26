"""The equity curve and drawdown of a run, computed from closed signals, drawn as SVG/HTML or PNG.

People would rather look at a curve than read a table. Computing (``equity_curve``) is a pure
function; drawing is separate and needs no third-party package for HTML (PNG uses matplotlib,
an optional extra).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .candles import iso
from .stats import Trade


class EquityPoint(NamedTuple):
    timestamp: int
    equity: float  # compounded, starting at 1.0
    drawdown: float  # percent below the running peak


def equity_curve(trades: Sequence[Trade]) -> list[EquityPoint]:
    """Compounded equity after each trade, in close order, with the drawdown from the peak."""
    points: list[EquityPoint] = []
    equity = peak = 1.0
    for t in sorted(trades, key=lambda t: t.close_timestamp):
        equity *= 1 + t.pnl / 100
        peak = max(peak, equity)
        points.append(
            EquityPoint(t.close_timestamp, equity, (peak - equity) / peak * 100 if peak > 0 else 100.0)
        )
    return points


def _polyline(xs: Sequence[float], ys: Sequence[float], color: str) -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>'


def render_svg(points: Sequence[EquityPoint], title: str, width: int = 960, height: int = 480) -> str:
    pad, gap = 50, 30
    top_h = (height - 2 * pad - gap) * 2 // 3
    dd_h = height - 2 * pad - gap - top_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<text x="{pad}" y="25" font-size="16">{html.escape(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{pad}" y="{height // 2}">No signals closed.</text></svg>')
        return "\n".join(parts)
    t0, t1 = points[0].timestamp, points[-1].timestamp
    span = max(t1 - t0, 1)
    xs = [pad + (p.timestamp - t0) / span * (width - 2 * pad) for p in points]
    eq = [1.0, *[p.equity for p in points]]
    lo, hi = min(eq), max(eq)
    rng = max(hi - lo, 1e-9)
    ys = [pad + (hi - p.equity) / rng * top_h for p in points]
    dd_max = max(max(p.drawdown for p in points), 1e-9)
    dd_top = pad + top_h + gap
    dys = [dd_top + p.drawdown / dd_max * dd_h for p in points]
    parts += [
        f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{top_h}" fill="none" stroke="#ccc"/>',
        f'<rect x="{pad}" y="{dd_top}" width="{width - 2 * pad}" height="{dd_h}" fill="none" stroke="#ccc"/>',
        _polyline(xs, ys, "#1f77b4"),
        _polyline(xs, dys, "#d62728"),
        f'<text x="5" y="{pad + 10}">{hi:.3f}</text>',
        f'<text x="5" y="{pad + top_h}">{lo:.3f}</text>',
        f'<text x="{pad + 5}" y="{pad + 15}">equity (x start)</text>',
        f'<text x="{pad + 5}" y="{dd_top + 15}">drawdown, max {dd_max:.2f}%</text>',
        f'<text x="{pad}" y="{height - 15}">{iso(t0)}</text>',
        f'<text x="{width - pad}" y="{height - 15}" text-anchor="end">{iso(t1)}</text>',
        "</svg>",
    ]
    return "\n".join(parts)


def write_chart(path: Path, points: Sequence[EquityPoint], title: str) -> None:
    """``.html``/``.svg`` as inline SVG; ``.png`` through matplotlib (optional dependency)."""
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        body = render_svg(points, title)
        path.write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body>{body}</body></html>\n",
            encoding="utf-8",
        )
    elif suffix == ".svg":
        path.write_text(render_svg(points, title), encoding="utf-8")
    elif suffix == ".png":
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise RuntimeError(
                "PNG charts need matplotlib: pip install 'backtest-kit-operator[chart]' (or use .html)"
            ) from exc
        from datetime import UTC, datetime

        fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=[2, 1])
        times = [datetime.fromtimestamp(p.timestamp / 1000, tz=UTC) for p in points]
        ax1.plot(times, [p.equity for p in points], color="#1f77b4")
        ax1.set_title(title)
        ax1.set_ylabel("equity (x start)")
        ax2.fill_between(times, [-p.drawdown for p in points], color="#d62728", alpha=0.5)
        ax2.set_ylabel("drawdown %")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
    else:
        raise ValueError(f"unsupported chart format {suffix!r}; use .html, .svg or .png")
