"""Running ``python -m backtest_kit_runner`` as a child process, the way a pod runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def runner_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without any BACKTEST_KIT_* leftovers, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BACKTEST_KIT_") and k != "JOB_COMPLETION_INDEX"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_runner(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backtest_kit_runner", *args],
        env=runner_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_runner(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, log: Path
) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "backtest_kit_runner", *args],
        env=runner_env(env),
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
