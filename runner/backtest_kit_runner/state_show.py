"""``backtest-kit state show``: what a trader's state volume holds, read-only, as one JSON document.

The operator must never release a LiveTrader (and maybe delete its volume) on the word of an exit
code: a runner that cannot start any more (its strategy ConfigMap broke, the volume is full, the
replay anchor mismatches) or that stopped at ``--until`` may still have a position open on the
volume. So the operator runs this command in a short pod that mounts the volume read-only, and
decides from what it prints. It reads the engine's live records (``<state dir>/live/*.json``)
directly and never writes, moves or repairs anything — a corrupt record is reported, not moved
aside as the engine would when it restores.

Output (stdout, and ``--output FILE``, a pod's termination message)::

    {"open": <signal or null>, "scheduled": <signal or null>, "files": [...], "corrupt": [...],
     "records": [{"file", "open", "scheduled"}, ...]}

``open``/``scheduled`` are the first open/scheduled signal found in any record (a volume holds one
trader's records). Exit codes: 0 read, 1 the state directory cannot be read, 2 bad options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = "./state"
#: A termination message holds at most 4096 bytes: the long fields are dropped past this.
MESSAGE_LIMIT = 4000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backtest-kit state show",
        description="Print the open and scheduled signals a live state directory holds (read-only).",
    )
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("BACKTEST_KIT_STATE_DIR") or DEFAULT_STATE_DIR,
        help="directory of durable live state [env BACKTEST_KIT_STATE_DIR]",
    )
    parser.add_argument(
        "--output",
        default=os.environ.get("BACKTEST_KIT_OUTPUT") or None,
        help="also write the JSON here (a pod's termination message) [env BACKTEST_KIT_OUTPUT]",
    )
    return parser


def _record(path: Path) -> dict[str, Any] | None:
    """The parsed record, or None when the file is not a JSON object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def inspect_state(state_dir: Path) -> dict[str, Any]:
    """What ``state_dir`` holds; raises ``OSError`` when it cannot be read."""
    live = state_dir / "live"
    files = sorted(p.name for p in live.iterdir()) if live.is_dir() else []
    report: dict[str, Any] = {"open": None, "scheduled": None, "files": files, "corrupt": [], "records": []}
    for name in files:
        path = live / name
        if name.startswith(".") or not name.endswith(".json") or not path.is_file():
            if ".json.corrupt-" in name:
                report["corrupt"].append(name)
            continue
        record = _record(path)
        if record is None:
            report["corrupt"].append(name)
            continue
        pending, scheduled = record.get("pending"), record.get("scheduled")
        report["records"].append({"file": name, "open": pending, "scheduled": scheduled})
        report["open"] = report["open"] or pending
        report["scheduled"] = report["scheduled"] or scheduled
    return report


def compact(report: dict[str, Any]) -> str:
    """The JSON, shortened to fit a termination message (the signals are kept whole if possible)."""
    text = json.dumps(report, separators=(",", ":"), sort_keys=True)
    if len(text) <= MESSAGE_LIMIT:
        return text
    slim = {**report, "records": len(report["records"]), "files": report["files"][:20]}
    return json.dumps(slim, separators=(",", ":"), sort_keys=True)


def main(argv: Sequence[str]) -> int:
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        report = inspect_state(Path(args.state_dir))
    except OSError as exc:
        print(f"error: cannot read state directory {args.state_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    text = compact(report)
    print(text)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0
