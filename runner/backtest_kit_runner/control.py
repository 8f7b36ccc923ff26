"""``backtest-kit control``: the manual controls of a running live runner, from a shell.

``backtest-kit control {pause,resume,close,stop,status} --url http://HOST:PORT [--token-file FILE]``
sends one request to the runner's HTTP API (``POST /pause``, ``/resume``, ``/close``, ``/stop``;
``GET /status``) and prints its JSON answer on stdout. The mutating requests carry the bearer
token read from ``--token-file`` (in a runner pod: ``BACKTEST_KIT_CONTROL_TOKEN_FILE``, the
Secret the operator mounts, so ``kubectl exec`` needs no option besides ``--url``).

This is its own small parser, not the run-option table of :mod:`.options`: the command runs no
strategy and shares none of those options. On a LiveTrader, ``spec.paused`` wins: the operator
resumes a runner paused by hand while the spec says ``paused: false`` (use the spec there).

Exit codes: 0 the runner took the request, 1 it refused it (401, 403, ...) or could not be
reached, 2 bad input (an unknown command, a bad URL, an unreadable or empty token file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: command -> (method, path) on the runner's HTTP API.
COMMANDS: dict[str, tuple[str, str]] = {
    "pause": ("POST", "/pause"),
    "resume": ("POST", "/resume"),
    "close": ("POST", "/close"),
    "stop": ("POST", "/stop"),
    "status": ("GET", "/status"),
}
URL_ENV = "BACKTEST_KIT_CONTROL_URL"
TOKEN_FILE_ENV = "BACKTEST_KIT_CONTROL_TOKEN_FILE"
DEFAULT_TIMEOUT_S = 10.0
#: Largest answer read from the runner (a status is a few kilobytes).
MAX_ANSWER_BYTES = 1024 * 1024

EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """Something on the command line cannot be used (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backtest-kit control",
        description=(
            "Pause, resume, close the position of, drain (stop) or read the status of a running "
            "live runner over its HTTP API; prints the runner's JSON answer. "
            "Exit codes: 0 done, 1 the runner refused or is unreachable, 2 bad input."
        ),
    )
    parser.add_argument(
        "command",
        choices=tuple(COMMANDS),
        help="pause: no new signal; resume: new signals again; close: close the open position at "
        "the next tick's price (or cancel the scheduled signal); stop: drain, the runner exits 0 once "
        "flat; status: the runner's status",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or None,
        help=f"the runner's HTTP API, e.g. http://127.0.0.1:8080 [env {URL_ENV}]",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=os.environ.get(TOKEN_FILE_ENV) or None,
        metavar="FILE",
        help=f"file holding the runner's control token (its --control-token-file) [env {TOKEN_FILE_ENV}]",
    )
    parser.add_argument("--reason", help="stop only: why (shown in the runner's status as stopReason)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up after this long (default {DEFAULT_TIMEOUT_S:g})",
    )
    return parser


def base_url(raw: str | None) -> str:
    """``http://host:port`` from ``--url`` (a bare ``host:port`` is taken as http)."""
    if not raw or not raw.strip():
        raise BadInput(f"--url is required (or {URL_ENV})")
    text = raw.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"--url {raw!r} is not an http(s) URL with a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise BadInput(f"--url {raw!r}: {exc}") from None
    return text


def read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"--token-file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not token:
        raise BadInput(f"--token-file {path} is empty")
    return token


def _request(args: argparse.Namespace) -> urllib.request.Request:
    method, path = COMMANDS[args.command]
    if args.reason is not None and args.command != "stop":
        raise BadInput("--reason is for stop only")
    if args.timeout <= 0:
        raise BadInput("--timeout must be positive")
    url = base_url(args.url) + path
    token = read_token(args.token_file)
    headers = {"Accept": "application/json"}
    body: bytes | None = None
    if method == "POST":
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps({"reason": args.reason}).encode() if args.reason is not None else b""
        if args.reason is not None:
            headers["Content-Type"] = "application/json"
    return urllib.request.Request(url, data=body, method=method, headers=headers)


def _answer(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"body": raw[:2000].decode(errors="replace")}


def send(request: urllib.request.Request, timeout: float) -> tuple[int, Any]:
    """(HTTP status, parsed answer); raises ``OSError`` when the runner cannot be reached."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), _answer(response.read(MAX_ANSWER_BYTES))
    except urllib.error.HTTPError as exc:
        return int(exc.code), _answer(exc.read(MAX_ANSWER_BYTES))


def main(argv: Sequence[str]) -> int:
    """``backtest-kit control ...``; returns the exit code."""
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or an argparse error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    try:
        request = _request(args)
    except BadInput as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    try:
        status, answer = send(request, args.timeout)
    except (OSError, urllib.error.URLError) as exc:
        sys.stderr.write(f"error: {request.get_method()} {request.full_url} failed: {exc}\n")
        return EXIT_REFUSED
    print(json.dumps(answer, indent=2, sort_keys=True))
    if status >= 300:
        detail = answer.get("error") if isinstance(answer, dict) else None
        sys.stderr.write(
            f"error: the runner answered {status} to {request.get_method()} {request.full_url}"
            + (f": {detail}" if detail else "")
            + "\n"
        )
        return EXIT_REFUSED
    return EXIT_OK
