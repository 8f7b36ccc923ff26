"""SIGTERM and SIGINT: the pod is moving (or a person pressed Ctrl-C), so leave now.

Live state is written atomically on every change, so there is nothing to save and nothing to
wait for: the trader task is cancelled, the process exits with ``128 + signal`` (143 for SIGTERM,
130 for SIGINT) and the next pod resumes from the state directory. A signal never drains: closing
the open position is a decision only ``POST /stop`` makes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

log = logging.getLogger("backtest_kit_runner.termination")

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Termination:
    """Cancels ``task`` on SIGTERM/SIGINT and remembers which signal asked for it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._installed: list[int] = []

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    def install(self, task: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()
        for sig in HANDLED:
            loop.add_signal_handler(sig, self._handle, int(sig), task)
            self._installed.append(int(sig))

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def _handle(self, signum: int, task: asyncio.Task[Any]) -> None:
        if self.signum is None:
            self.signum = signum
            log.warning(
                "%s: leaving without draining (live state is durable); exit code %d",
                signal.Signals(signum).name,
                128 + signum,
            )
        task.cancel()
