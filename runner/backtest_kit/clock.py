"""Clocks for live mode: the wall clock, and a replay clock that runs history at N× speed.

Live mode asks a clock for "now" and sleeps on it; nothing else differs between trading for
real and replaying a past period. A replay clock anchors its virtual timeline to wall time,
and the anchor is kept in the state directory, so a restarted process continues the same
virtual timeline instead of starting the replay over.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Protocol, runtime_checkable

from .candles import MINUTE_MS
from .errors import ConfigurationError, CorruptStateError
from .persistence import PersistenceAdapter

#: At maximum speed the replay hands the event loop a turn (controls, signals, other tasks) at
#: least this often, not after every tick: a turn costs as much as an idle minute's decision.
MAX_SPEED_TURN_S = 0.001


@runtime_checkable
class Clock(Protocol):
    def now_ms(self) -> int:
        """Current (possibly virtual) epoch milliseconds."""

    async def sleep_until(self, ms: int) -> None:
        """Return once ``now_ms() >= ms``."""

    def advanced(self, when_ms: int) -> None:
        """Live mode finished the tick at ``when_ms`` (a replay at maximum speed moves on)."""


class WallClock:
    """Real time."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep_until(self, ms: int) -> None:
        delay = (ms - self.now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)

    def advanced(self, when_ms: int) -> None:
        return None


class ReplayClock:
    """Virtual time from ``start_ms`` at ``speed``× wall time (``math.inf``: as fast as possible).

    At a finite speed virtual time is ``start + (wall - anchor) * speed``, so time keeps passing
    while the process is down, as it would for real. At maximum speed virtual time only moves
    when a tick finishes, and the position is stored after every tick.
    """

    ANCHOR_KEY = "replay/anchor"

    def __init__(
        self,
        start_ms: int,
        speed: float,
        *,
        persistence: PersistenceAdapter | None = None,
        wall: WallClock | None = None,
    ) -> None:
        if not speed > 0:
            raise ConfigurationError(f"replay speed must be > 0 (or 'max'), got {speed}")
        self.start_ms = start_ms
        self.speed = speed
        self._max_speed = math.isinf(speed)
        self._turned_at = 0.0  # ``time.monotonic()`` of the last event-loop turn at maximum speed
        self.persistence = persistence
        self.wall = wall or WallClock()
        self._anchor_wall: int
        self._position = start_ms
        self._stored_at = 0.0
        #: Why the stored anchor could not be used (moved aside; the live run freezes its key).
        self.problem: str | None = None
        stored = self._read_anchor()
        if (
            stored is not None
            and stored.get("startMs") == start_ms
            and stored.get("speed") == _speed_json(speed)
        ):
            self._anchor_wall = int(stored["wallAnchorMs"])
            self._position = int(stored.get("positionMs", start_ms))
        else:
            if stored is not None:
                raise ConfigurationError(
                    f"the state directory holds a replay from {stored.get('startMs')} at speed "
                    f"{stored.get('speed')}; use the same --replay-from/--speed or a new state directory"
                )
            self._anchor_wall = self.wall.now_ms()
            self._store(durable=True)

    def _read_anchor(self) -> dict[str, Any] | None:
        """The stored anchor, or ``None``; a malformed one is moved aside and noted in ``problem``."""
        if self.persistence is None:
            return None
        try:
            stored = self.persistence.read(self.ANCHOR_KEY)
        except CorruptStateError as exc:
            self.problem = str(exc)
            return None
        if stored is None:
            return None
        fields = (stored.get("startMs"), stored.get("wallAnchorMs"), stored.get("positionMs", 0))
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in fields):
            aside = self.persistence.quarantine(self.ANCHOR_KEY, "malformed replay anchor")
            self.problem = (
                f"replay anchor malformed ({stored!r}); moved aside to {aside}, the replay starts anew"
            )
            return None
        return stored

    @property
    def max_speed(self) -> bool:
        return self._max_speed

    def _store(self, *, durable: bool) -> None:
        if self.persistence is not None:
            self.persistence.write(
                self.ANCHOR_KEY,
                {
                    "startMs": self.start_ms,
                    "speed": _speed_json(self.speed),
                    "wallAnchorMs": self._anchor_wall,
                    "positionMs": self._position,
                },
                durable=durable,
            )

    def now_ms(self) -> int:
        if self._max_speed:
            return self._position
        return self.start_ms + int((self.wall.now_ms() - self._anchor_wall) * self.speed)

    async def sleep_until(self, ms: int) -> None:
        if self._max_speed:
            self._position = max(self._position, ms)
            now = time.monotonic()
            if now - self._turned_at >= MAX_SPEED_TURN_S:
                self._turned_at = now
                await asyncio.sleep(0)
            return
        delay = (ms - self.now_ms()) / self.speed / 1000
        if delay > 0:
            await asyncio.sleep(delay)

    def advanced(self, when_ms: int) -> None:
        if self._max_speed:
            self._position = max(self._position, when_ms + MINUTE_MS)
            # Stored about once a second: after a crash the replay resumes from here and re-ticks
            # the minutes since, which changes nothing (live state records its last changed
            # minute and those ticks are deterministic); it only saves the work.
            now = time.monotonic()
            if now - self._stored_at >= 1.0:
                self._stored_at = now
                self._store(durable=False)


def _speed_json(speed: float) -> float | str:
    return "max" if math.isinf(speed) else speed
