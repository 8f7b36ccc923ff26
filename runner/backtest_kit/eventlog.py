"""The ``--events`` file: every result a run yields, as one flattened JSON line each.

Each ``(id, action)`` is written once. By default each line is fsynced before the run moves on.
With ``sync_behind`` a thread fsyncs the lines while the run goes on, and :meth:`EventLog.sync`
waits until every line written is durable: a live trader calls it before each durable record is
put in place (``FilePersistence.before_durable``), so a line is durable before any record that
follows it, and the line of the record's own result is completed from that record after a crash.
After a crash the file is completed from the live state (``Live.run(on_restore=log.append)``):
the result persisted last may never have reached the file, because the process died between
persisting and yielding it. A line cut by a crash is ended, so it cannot glue itself to the next one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any


class EventLog:
    """Appends results as JSON lines, each ``(id, action)`` once, fsynced before moving on (or, with
    ``sync_behind``, by a thread, before :meth:`sync` returns)."""

    def __init__(self, path: Path, *, sync_behind: bool = False) -> None:
        self.path = path
        self.seen: set[tuple[Any, Any]] = set()
        #: Why an existing file was moved aside (a JSON line that is not a result object).
        self.problem: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            self._read_existing(path)
        # a line cut by a crash must not glue itself to the next one
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with open(path, "ab") as fh:
                fh.write(b"\n")
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        self._behind: _SyncBehind | None = _SyncBehind(self._fh.fileno()) if sync_behind else None

    def _read_existing(self, path: Path) -> None:
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except ValueError:
                continue  # a line cut by a crash (the state completes what it lost)
            if not isinstance(row, dict):
                aside = path.with_name(f"{path.name}.corrupt-{int(time.time() * 1000)}")
                os.replace(path, aside)
                self.seen.clear()
                self.problem = (
                    f"events file {path} line {number} is not a result; the file was moved aside to "
                    f"{aside.name} and a new one started"
                )
                return
            self.seen.add((row.get("id"), row.get("action")))

    def append(self, row: dict[str, Any] | None) -> None:
        if not row:
            return
        key = (row.get("id"), row.get("action"))
        if key in self.seen:
            return
        behind = self._behind
        if behind is not None:
            behind.check()  # a line that could not be made durable stops the run, as without a thread
        self.seen.add(key)
        self._fh.write(json.dumps(row, allow_nan=False) + "\n")
        self._fh.flush()
        if behind is None:
            os.fsync(self._fh.fileno())
        else:
            behind.request()

    def sync(self) -> None:
        """Return once every line written is durable (raises the ``OSError`` of a failed fsync)."""
        if self._behind is not None:
            self._behind.wait()

    def close(self) -> None:
        try:
            if self._behind is not None:
                self._behind.stop()
        finally:
            self._fh.close()


class _SyncBehind:
    """A thread that fsyncs ``fd`` whenever lines were written since its last fsync."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._wanted = self._done = 0  # lines written; lines known durable
        self._error: OSError | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="events-fsync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._cond:
            self._wanted += 1
            self._cond.notify_all()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def wait(self) -> None:
        with self._cond:
            while self._done < self._wanted and self._error is None:
                self._cond.wait()
        self.check()

    def stop(self) -> None:
        self.wait()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._done >= self._wanted and not self._stopping:
                    self._cond.wait()
                if self._done >= self._wanted:
                    return
                target = self._wanted
            try:
                os.fsync(self._fd)
            except OSError as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._done = target
                self._cond.notify_all()
