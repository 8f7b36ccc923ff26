"""Liveness and readiness of the trader loop, measured in wall time.

Kubernetes restarts a pod whose liveness probe fails, so "alive" must mean exactly "the tick loop
still turns": a tick ended (result, error or timing event), or made progress (an exchange request
attempt finished, successful or not), within the window. The window is two *wall* tick periods
(replays tick much faster than once a minute), never less than the longest silence a healthy tick
may keep (``silence_s``: the strategy timeout, one request attempt with its backoff, a rate-limit
wait; see "Budgets" in the README), and never less than a floor that keeps a garbage-collection
pause or a slow scrape from looking like a hang. So a tick waiting on a slow or failing exchange
stays alive however long the outage lasts, while a loop that stopped turning is reported dead.
Ready means state was restored and the first tick finished.

The probes are read from the HTTP thread while the trader's loop writes: each field is one float
or int assignment, which is atomic in CPython, so no lock is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: Never call a loop dead sooner than this (seconds of wall time).
MIN_WINDOW_S = 5.0


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str


class Heartbeat:
    """Remembers when the loop last ticked; answers the liveness and readiness probes."""

    def __init__(
        self,
        tick_period_s: float,
        *,
        min_window_s: float = MIN_WINDOW_S,
        silence_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tick_period_s <= 0:
            raise ValueError("tick period must be positive")
        self.tick_period_s = tick_period_s
        self.window_s = max(2 * tick_period_s, min_window_s, silence_s)
        self._clock = clock
        self._started = clock()
        self._last: float | None = None
        self._progress: float | None = None
        self.ticks = 0

    def beat(self) -> None:
        """The loop completed (or failed) one tick."""
        self._last = self._clock()
        self.ticks += 1

    def progress(self) -> None:
        """The running tick made progress (an exchange request attempt finished): still turning."""
        self._progress = self._clock()

    @property
    def first_tick_done(self) -> bool:
        return self._last is not None

    def liveness(self) -> Probe:
        now = self._clock()
        since = now - (self._started if self._last is None else self._last)
        what = "start" if self._last is None else "last tick"
        if self._progress is not None and now - self._progress < since:
            since, what = now - self._progress, "tick progress"
        if since <= self.window_s:
            return Probe(True, f"{since:.3f}s since {what} (window {self.window_s:.3f}s)")
        return Probe(False, f"no tick for {since:.3f}s since {what} (window {self.window_s:.3f}s)")

    def readiness(self) -> Probe:
        if self._last is None:
            return Probe(False, "restoring state / first tick not done yet")
        return Probe(True, f"{self.ticks} ticks")
