"""Progress bars with an ETA on a terminal, silent otherwise (logs and pipes stay clean).

A year of minutes takes a second, a Walker over many strategies or a download of a year of
Binance klines takes minutes: a person wants to know how long to wait. One bar serves the
backtest (engine progress events), the Walker (strategies done) and ``data download`` (minutes
written); the ETA is the elapsed time scaled by what is left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Bar:
    """``[#####.....]  42.0% 123/456 ticks, ETA 3 s`` redrawn in place on ``stream``."""

    WIDTH = 30

    def __init__(
        self,
        enabled: bool,
        unit: str,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.unit = unit
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.finished = False

    def eta(self, done: int, total: int) -> str:
        """``ETA 3 s`` (elapsed time scaled by what is left), or ``done in 12 s`` at the end."""
        elapsed = self.clock() - self.started
        if done >= total:
            return f"done in {duration_text(elapsed)}"
        if done and elapsed > 0.2:
            return f"ETA {duration_text(elapsed * (total - done) / done)}"
        return "ETA …"

    def update(self, done: int, total: int, note: str = "") -> None:
        if not self.enabled or self.finished:
            return
        frac = done / total if total else 1.0
        filled = int(frac * self.WIDTH)
        eta = self.eta(done, total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        text = f"\r[{bar}] {frac * 100:5.1f}% {done:,}/{total:,} {self.unit}"
        self.stream.write(f"{text}, {eta}{'  ' + note if note else ''}\x1b[K")
        if done >= total:
            self.stream.write("\n")
            self.finished = True
        self.stream.flush()

    def interrupt(self) -> None:
        """End the bar's line (Ctrl-C), so the next message starts on its own line."""
        if self.enabled and not self.finished:
            self.stream.write("\n")
            self.stream.flush()
            self.finished = True


class BacktestProgress(Bar):
    """Listener for ``backtest_kit.listen_progress_backtest``."""

    def __init__(self, enabled: bool, **kwargs: Any) -> None:
        super().__init__(enabled, "ticks", **kwargs)

    def __call__(self, event: Any) -> None:
        self.update(int(event.processed_frames), int(event.total_frames))
