"""``backtest-kit control``: pause, resume, close and status of a real runner process, from a shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .process_runs import run_runner
from .runner_process import LiveRunner, wait_for
from .test_live_runner import Start, always_long, open_signal


def control(runner: LiveRunner, *args: str, token_file: Path | None = None) -> tuple[int, Any, str]:
    argv = ["control", *args, "--url", runner.url]
    if token_file is not None:
        argv += ["--token-file", str(token_file)]
    done = run_runner(argv, timeout=30)
    answer = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, answer, done.stderr


def test_pause_status_resume_and_close_through_the_cli_with_the_token(
    live_runner: Start, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t0ken\n")
    runner = live_runner(always_long(60), env={"BACKTEST_KIT_CONTROL_TOKEN_FILE": str(token_file)})
    runner.wait_ready()

    code, answer, err = control(runner, "pause", token_file=token_file)
    assert (code, answer["paused"]) == (0, True), err
    code, answer, err = control(runner, "status")  # read-only: no token needed
    assert code == 0, err
    assert answer["paused"] is True
    assert answer["symbol"] == "SYNUSDT"
    code, answer, err = control(runner, "resume", token_file=token_file)
    assert (code, answer["paused"]) == (0, False), err

    wait_for("an open signal", lambda: open_signal(runner), timeout=30)
    closed = runner.status()["signalsClosed"]
    code, answer, err = control(runner, "close", token_file=token_file)
    assert code == 0, err
    assert answer["accepted"] == "close"  # the tick may already have done it: then the count shows
    wait_for("the position to close", lambda: runner.status()["signalsClosed"] > closed, timeout=30)


def test_without_the_token_the_runner_refuses_with_401_and_exit_1(live_runner: Start, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t0ken")
    runner = live_runner(always_long(60), env={"BACKTEST_KIT_CONTROL_TOKEN_FILE": str(token_file)})
    runner.wait_ready()
    code, answer, err = control(runner, "pause")
    assert code == 1
    assert answer["status"] == 401
    assert "401" in err
    wrong = tmp_path / "wrong"
    wrong.write_text("guessed")
    assert control(runner, "stop", token_file=wrong)[0] == 1
    status = runner.status()
    assert status["paused"] is False
    assert status["phase"] == "running"


def test_bad_input_is_exit_2_before_any_request(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    cases = [
        ["control", "pause"],  # no --url
        ["control", "explode", "--url", "http://127.0.0.1:1"],
        ["control", "pause", "--url", "ftp://host"],
        ["control", "pause", "--url", "http://127.0.0.1:1", "--token-file", str(empty)],
        ["control", "pause", "--url", "http://127.0.0.1:1", "--token-file", str(tmp_path / "missing")],
        ["control", "pause", "--url", "http://127.0.0.1:1", "--reason", "why"],
    ]
    for argv in cases:
        done = run_runner(argv)  # no BACKTEST_KIT_* variables reach it
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stdout == ""


def test_an_unreachable_runner_is_exit_1(tmp_path: Path) -> None:
    done = run_runner(["control", "status", "--url", "127.0.0.1:1", "--timeout", "2"])
    assert done.returncode == 1
    assert "failed" in done.stderr
