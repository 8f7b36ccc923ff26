"""The ``--events`` file: every result a run yields, as one flattened JSON line each.

Each ``(id, action)`` is written once and fsynced before the run moves on. After a crash the
file is completed from the live state (``Live.run(on_restore=log.append)``): the result persisted
last may never have reached the file, because the process died between persisting and yielding
it. A line cut by a crash is ended, so it cannot glue itself to the next one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class EventLog:
    """Appends results as JSON lines, each ``(id, action)`` once, fsynced before moving on."""

    def __init__(self, path: Path) -> None:
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
        self.seen.add(key)
        self._fh.write(json.dumps(row, allow_nan=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()
