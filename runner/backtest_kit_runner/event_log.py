"""The ``--events`` file: every yielded result as one JSON line, for audits and offline analysis.

Lines are appended and flushed one by one, so a pod that is killed leaves a file whose every
complete line is a valid event; a restart appends to the same file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class EventLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("a", encoding="utf-8")

    def write(self, event: dict[str, Any]) -> None:
        self._fh.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
