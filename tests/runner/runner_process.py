"""A live runner child process and plain-HTTP access to its API, for end-to-end tests."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .process_runs import free_port, start_runner

T = TypeVar("T")

REPLAY = ["--symbol", "SYNUSDT", "--replay-from", "2024-01-01T00:00:00Z"]


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
            ctype = r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        raw, status, ctype = err.read(), err.code, err.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20, every: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got is not None and got is not False:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class LiveRunner:
    """``python -m backtest_kit_runner live ...`` on a free loopback port."""

    state_dir: Path
    log_dir: Path
    args: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"runner-{self.port}.log"

    def start(self) -> LiveRunner:
        argv = ["live", *self.args, "--state-dir", str(self.state_dir)]
        argv += ["--http-port", str(self.port), "--http-host", "127.0.0.1"]
        self.process = start_runner(argv, env=self.env, log=self.log_path)
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        return http("GET", self.url + path)

    def post(self, path: str, body: bytes | None = None) -> tuple[int, Any]:
        return http("POST", self.url + path, body)

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200, body
        return dict(body)

    def answering(self) -> bool:
        try:
            return self.get("/healthz")[0] in (200, 503)
        except OSError:
            assert self.process is not None and self.process.poll() is None, self.log()
            return False

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for("the API", self.answering, timeout)
        wait_for("/readyz 200", lambda: self.get("/readyz")[0] == 200, timeout)

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"runner did not exit within {timeout}s:\n{self.log()}") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def metric(self, name: str, **labels: str) -> float | None:
        code, text = self.get("/metrics")
        assert code == 200
        for line in str(text).splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
