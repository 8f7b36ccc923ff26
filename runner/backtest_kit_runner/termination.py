"""SIGTERM and SIGINT: the pod is moving (or a person pressed Ctrl-C), so leave now.

Live state is written atomically on every change, so there is nothing to save and nothing to
wait for: the trader task is cancelled, the process exits with ``128 + signal`` (143 for SIGTERM,
130 for SIGINT) and the next pod resumes from the state directory. A signal never drains: closing
the open position is a decision only ``POST /stop`` makes.

The signals are not handled on the event loop: a strategy may block that loop for seconds (a long
computation in ``get_signal``), and a handler queued on it would wait as long. Instead the
interpreter's C-level handler writes the signal number into a pipe (``signal.set_wakeup_fd``) the
moment the signal arrives, whatever the loop or the main thread is doing, and a watcher thread
reading that pipe acts on it: it asks the loop to cancel the trader task (the normal way out: the
HTTP server and the exchange session are closed) and, if the loop has not finished within
:data:`GRACE_S` because it is still blocked, ends the process with the same exit code at once.
That is as safe as a SIGKILL, which the crash tests show loses nothing: every state change is
durable before it is reported, and the writer lock goes with the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any

log = logging.getLogger("backtest_kit_runner.termination")

HANDLED = (signal.SIGTERM, signal.SIGINT)
#: How long the loop gets to wind down after a signal before the process ends without it.
GRACE_S = 1.0


class Termination:
    """Cancels the trader task on SIGTERM/SIGINT and remembers which signal asked for it.

    ``install()`` on the main thread (where the loop runs), ``cancel_on_signal(task)`` once the
    task exists, ``uninstall()`` when the run is over (the previous handlers come back).
    """

    def __init__(self, *, grace_s: float = GRACE_S) -> None:
        self.signum: int | None = None
        self.grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._done = threading.Event()
        self._pipe: tuple[int, int] | None = None
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        self._pipe = (read_end, write_end)
        for sig in HANDLED:
            self._previous[int(sig)] = signal.signal(sig, _noted)
        self._previous_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read_end,), name="termination", daemon=True).start()

    def cancel_on_signal(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        if self.signum is not None:
            task.cancel()

    def uninstall(self) -> None:
        if self._pipe is None:
            return
        self._done.set()
        signal.set_wakeup_fd(self._previous_wakeup)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        try:
            os.write(self._pipe[1], b"\0")  # wakes the watcher, which closes the read end
        except OSError:
            pass  # the watcher has handled a signal and closed it already
        os.close(self._pipe[1])
        self._pipe = None

    def _watch(self, read_end: int) -> None:
        signum = 0
        while signum not in HANDLED and not self._done.is_set():
            signum = os.read(read_end, 1)[0]
        if signum in HANDLED and not self._done.is_set():
            self._leave(signum)
        os.close(read_end)

    def _leave(self, signum: int) -> None:
        self.signum = signum
        code = 128 + signum
        log.warning(
            "%s: leaving without draining (live state is durable); exit code %d",
            signal.Signals(signum).name,
            code,
        )
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cancel)
            except RuntimeError:  # the loop closed in between
                pass
        if self._done.wait(self.grace_s):
            return
        log.error("the trader loop did not finish within %.1f s (blocked?): exit %d now", self.grace_s, code)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _noted(signum: int, frame: object) -> None:
    """The Python-level handler: nothing to do, the watcher thread acts on the wakeup byte."""
