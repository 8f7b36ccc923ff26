"""The ``--events`` file: every result a run yields, as one flattened JSON line each.

Each ``(id, action)`` is written once and fsynced before the run moves on. After a crash the
file is completed from the live state (``Live.run(on_restore=log.append)``): the result persisted
last may never have reached the file, because the process died between persisting and yielding
it. A line cut by a crash is ended, so it cannot glue itself to the next one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class EventLog:
    """Appends results as JSON lines, each ``(id, action)`` once, fsynced before moving on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: set[tuple[Any, Any]] = set()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash; the state completes it below
                self.seen.add((row.get("id"), row.get("action")))
        path.parent.mkdir(parents=True, exist_ok=True)
        # a line cut by a crash must not glue itself to the next one
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with open(path, "ab") as fh:
                fh.write(b"\n")
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run

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
