"""``live`` prints one readable line per open/close (JSON lines only on request) and logs them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from .runner_process import REPLAY, LiveRunner

Start = Callable[..., LiveRunner]
ARGS = [*REPLAY, "--strategy", "a_long_tp1_sl1", "--speed", "max", "--until", "2024-01-01T03:00:00Z"]
OPENED = re.compile(
    r"^2024-01-01 \d\d:\d\d OPENED long SYNUSDT @ \d+\.\d\d tp \d+\.\d\d sl \d+\.\d\d \(id [0-9a-f]{4}\)$"
)
CLOSED = re.compile(
    r"^2024-01-01 \d\d:\d\d CLOSED (take_profit|stop_loss|time_expired) [+-]\d+\.\d\d % after \d+ min "
    r"@ \d+\.\d\d \(id [0-9a-f]{4}\)$"
)


def stdout_lines(log: str) -> list[str]:
    """The runner's stdout lines (its log shares the file; log lines carry a level)."""
    return [line for line in log.splitlines() if " INFO " not in line and " WARNING " not in line and line]


def test_live_prints_a_readable_line_per_open_and_close_and_logs_them_at_info(
    live_runner: Start, tmp_path: Path
) -> None:
    runner = live_runner([*ARGS, "--events", str(tmp_path / "events.jsonl")])
    assert runner.wait_exit(60) == 0, runner.log()
    log = runner.log()
    printed = stdout_lines(log)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    opened = [line for line in printed if " OPENED " in line]
    closed = [line for line in printed if " CLOSED " in line]
    assert len(opened) == sum(e["action"] == "opened" for e in events) > 0
    assert len(closed) == sum(e["action"] == "closed" for e in events) > 0
    assert all(OPENED.match(line) for line in opened), opened[:3]
    assert all(CLOSED.match(line) for line in closed), closed[:3]
    assert not [line for line in printed if line.startswith("{")]
    logged = [line for line in log.splitlines() if " INFO backtest_kit_runner.live: " in line]
    assert sum(" OPENED " in line for line in logged) == len(opened)


def test_json_lines_print_each_result_as_json_instead(live_runner: Start) -> None:
    runner = live_runner([*ARGS, "--json-lines"])
    assert runner.wait_exit(60) == 0, runner.log()
    rows = [json.loads(line) for line in stdout_lines(runner.log()) if line.startswith("{")]
    assert {"opened", "closed"} <= {r["action"] for r in rows}
    assert not [line for line in stdout_lines(runner.log()) if " OPENED " in line and "INFO" not in line]
