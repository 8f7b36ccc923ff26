"""A real Prometheus scrapes a replaying runner; the contract's queries work on what it stored."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .process_runs import free_port
from .runner_process import REPLAY, LiveRunner, http, wait_for

TICK_P99 = "histogram_quantile(0.99, sum by (le) (rate(backtest_kit_live_tick_duration_seconds_bucket[15s])))"


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("the prometheus binary is missing in CI (install the Debian package 'prometheus')")
        pytest.skip("prometheus binary not installed (Debian package 'prometheus'); CI runs this test")
    return found


class Prometheus:
    def __init__(
        self, binary: str, workdir: Path, *target_ports: int, labels: dict[int, dict[str, str]] | None = None
    ) -> None:
        """Scrape ``target_ports`` every second; ``labels`` adds target labels by port (the way the
        chart's PodMonitor adds ``namespace`` and ``livetrader``)."""
        self.port = free_port()
        targets = [
            {"targets": [f"127.0.0.1:{port}"], "labels": (labels or {}).get(port, {})}
            for port in target_ports
        ]
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "runner",
                            "static_configs": targets,
                        }
                    ],
                }
            ),
            encoding="utf-8",
        )
        self.log = workdir / "prometheus.log"
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text(encoding="utf-8")
        try:
            return http("GET", self.url + "/-/ready")[0] == 200
        except OSError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        code, body = http("GET", self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert code == 200 and body["status"] == "success", body
        return list(body["data"]["result"])

    def number(self, expr: str) -> float | None:
        """The single value of ``expr`` when it is a finite number, else None."""
        result = self.query(expr)
        if len(result) != 1:
            return None
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def scraped_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveRunner, Prometheus]]:
    """One runner replaying at 3000x (a tick every ~20 ms) and one Prometheus for the whole module."""
    binary = prometheus_binary()
    workdir = tmp_path_factory.mktemp("scrape")
    args = [*REPLAY, "--strategy", "a_long_tp1_sl1", "--speed", "3000"]
    runner = LiveRunner(workdir / "state", workdir, args).start()
    prom: Prometheus | None = None
    try:
        runner.wait_ready()
        prom = Prometheus(binary, workdir, runner.port)
        wait_for("Prometheus to be ready", prom.ready, timeout=30, every=0.2)
        yield runner, prom
    finally:
        if prom is not None:
            prom.stop()
        runner.kill()


class TestPrometheusScrapesTheRunner:
    def test_the_target_is_up_and_carries_the_contract_labels(
        self, scraped_runner: tuple[LiveRunner, Prometheus]
    ) -> None:
        _, prom = scraped_runner
        wait_for("up == 1", lambda: prom.number('up{job="runner"}') == 1, timeout=20, every=0.5)
        info = prom.query("backtest_kit_runner_info")
        assert info and info[0]["metric"]["version"]
        ticks = prom.query("backtest_kit_live_ticks_total")
        labels = ticks[0]["metric"]
        assert {
            "symbol": "SYNUSDT",
            "strategy": "a_long_tp1_sl1",
            "exchange": "synthetic",
        }.items() <= labels.items()

    def test_the_live_tick_p99_is_a_number(self, scraped_runner: tuple[LiveRunner, Prometheus]) -> None:
        _, prom = scraped_runner
        p99 = wait_for("a tick p99", lambda: prom.number(TICK_P99), timeout=30, every=0.5)
        assert 0 < p99 < 30

    def test_signals_opened_and_closed_are_counted(
        self, scraped_runner: tuple[LiveRunner, Prometheus]
    ) -> None:
        runner, prom = scraped_runner
        wait_for(
            "a closed signal in Prometheus",
            lambda: (prom.number("sum(backtest_kit_signals_closed_total)") or 0) >= 1,
            timeout=30,
            every=0.5,
        )
        opened = prom.number("sum(backtest_kit_signals_opened_total)")
        assert opened is not None and opened >= 1
        reasons = {r["metric"]["reason"] for r in prom.query("backtest_kit_signals_closed_total > 0")}
        assert reasons <= {"take_profit", "stop_loss", "time_expired"} and reasons
        assert runner.status()["signalsOpened"] >= opened
