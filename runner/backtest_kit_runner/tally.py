"""The runner's tally of what its trader did: signals opened, closed, cancelled and realized PnL.

The engine's live status knows the signal in flight but not the history, and Prometheus counters
restart at zero with the process; ``/status`` and the operator's LiveTrader status need totals that
survive a pod moving to another node. So the tally is kept here and, when given a path, replaced
atomically next to the engine's state after every signal that changes it (a few times an hour).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("backtest_kit_runner.tally")

COUNTED_ACTIONS = frozenset({"opened", "closed", "cancelled"})


class PnlLike(Protocol):
    @property
    def pnl_percentage(self) -> float: ...

    @property
    def pnl_cost(self) -> float: ...


class ResultLike(Protocol):
    @property
    def action(self) -> str: ...


@dataclass
class Totals:
    signals_opened: int = 0
    signals_closed: int = 0
    signals_cancelled: int = 0
    realized_pnl_percentage: float = 0.0
    realized_pnl_cost: float = 0.0


class SignalTally:
    """Counts and PnL totals fed with tick results; optionally durable at ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.totals = Totals()
        if path is not None:
            self._restore(path)

    def record(self, result: ResultLike) -> bool:
        """Count one tick result; True when it changed the totals."""
        action = result.action
        if action not in COUNTED_ACTIONS:
            return False
        t = self.totals
        if action == "opened":
            t.signals_opened += 1
        elif action == "cancelled":
            t.signals_cancelled += 1
        else:
            t.signals_closed += 1
            pnl: PnlLike | None = getattr(result, "pnl", None)
            if pnl is not None:
                t.realized_pnl_percentage += float(pnl.pnl_percentage)
                t.realized_pnl_cost += float(pnl.pnl_cost)
        if self.path is not None:
            self._save(self.path)
        return True

    def to_json(self) -> dict[str, Any]:
        t = self.totals
        return {
            "signalsOpened": t.signals_opened,
            "signalsClosed": t.signals_closed,
            "signalsCancelled": t.signals_cancelled,
            "realizedPnlPercentage": t.realized_pnl_percentage,
            "realizedPnlCost": t.realized_pnl_cost,
        }

    def _restore(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            self.totals = Totals(**json.loads(text))
        except (ValueError, TypeError) as exc:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            os.replace(path, aside)
            log.error("runner tally %s is unreadable (%s); moved to %s, counting from zero", path, exc, aside)

    def _save(self, path: Path) -> None:
        """Temp file and rename: a killed process never leaves a half-written tally.

        Deliberately without fsync (it would cost a millisecond or more inside the tick that
        closed the signal): the tally is a report, not trading state, and only a power loss
        within seconds of a signal could lose its last update; the engine's state is fsynced.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(self.totals), fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
