"""One readable line per thing a trader cares about in live mode: opened, closed, scheduled, cancelled.

A person watching ``backtest-kit live`` in a terminal wants ``OPENED long SYNUSDT @ 122.58 tp 124.42
sl 121.36`` and ``CLOSED take_profit +0.60 % after 37 min``, not a JSON object per tick; programs
that want the JSON ask for it with ``--json-lines``. The runner logs the same lines at INFO, so a
pod's log reads the same as the terminal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _price(v: float) -> str:
    return f"{v:.2f}" if abs(v) >= 1 else f"{v:.6g}"


def result_line(result: Any) -> str | None:
    """The line for a live result, or None for one that is not news (idle, active)."""
    action = getattr(result, "action", None)
    s = getattr(result, "signal", None)
    if s is None:
        return None
    tag = f"(id {s.id[:4]})"
    if action == "opened":
        return (
            f"{_when(result.when)} OPENED {s.position} {s.symbol} @ {_price(s.price_open)} "
            f"tp {_price(s.price_take_profit)} sl {_price(s.price_stop_loss)} {tag}"
        )
    if action == "scheduled":
        return (
            f"{_when(result.when)} SCHEDULED {s.position} {s.symbol} limit {_price(s.price_open)} "
            f"tp {_price(s.price_take_profit)} sl {_price(s.price_stop_loss)} {tag}"
        )
    if action == "closed":
        minutes = round((result.close_timestamp - s.pending_at) / 60_000)
        return (
            f"{_when(result.close_timestamp)} CLOSED {result.close_reason} "
            f"{result.pnl.pnl_percentage:+.2f} % after {minutes} min @ {_price(result.pnl.price_close)} {tag}"
        )
    if action == "cancelled":
        return f"{_when(result.close_timestamp)} CANCELLED {result.cancel_reason} {s.symbol} {tag}"
    return None
