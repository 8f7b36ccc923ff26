"""Every dashboard panel shows data and every alert rule runs on a real Prometheus scraping real runners.

Two runners replaying at 3000x are scraped every second by one Prometheus: ``a_long_tp1_sl1`` reads
candles over HTTP from the fake Binance of tests/exchanges (which answers a request with 500 now and
then, so the exchange request and error panels have something to show; the adapter's retry keeps the
ticks healthy) and opens and closes a market signal every few simulated minutes; ``c_limit_sched``
trades the built-in synthetic market (no requests) with limit orders that mostly time out, so the
run also counts cancellations. Once enough samples are stored, each query of ``files/dashboard.json``
is sent over the run window the way Grafana sends it, and each expression of ``files/alerts.yaml``
is evaluated once.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from ..exchanges.fake_binance import FakeBinance, Status
from ..runner.binance_feed import serve_fake_binance
from ..runner.runner_process import REPLAY, LiveRunner, http, wait_for
from ..runner.test_prometheus_scrape import Prometheus, prometheus_binary
from .chart_support import ALERTS_FILE, KUBE_STATE_METRICS, promql_metric_names
from .dashboard_queries import dashboard_queries, variable_queries

FAST_TRADER = "a_long_tp1_sl1"  # at market, TP/SL 1 %: opens and closes within minutes of market time
CANCELLING_TRADER = "c_limit_sched"  # limit orders 0.3 % away: most time out (reason "timeout")
SPEED = "3000"  # one simulated minute every 20 ms
#: Exchange requests the fake Binance fails with a 500 (the adapter retries each one, so ticks succeed).
FAILED_REQUESTS = range(20, 100_000, 150)
RATE_INTERVAL = "15s"  # what Grafana's $__rate_interval is for a short range at a 1 s scrape interval
MIN_SCRAPES = 15  # per target before the queries are sent
MIN_CLOSED = 3  # closed signals of the fast trader before the queries are sent
DATA_TIMEOUT_S = 40.0

OPERATOR_METRIC_PREFIX = "backtest_kit_operator_"
#: Dashboard targets that read only the operator's own metrics (port 9090 of the operator pod, see
#: docs/CONTRACTS.md). The operator runs only against a Kubernetes API, so a scrape of runners cannot
#: have them; tests/e2e/test_operator_endpoints.py checks that the real operator exports them. Here
#: they must parse and execute, and they must be the only targets without data.
OPERATOR_TARGETS = {
    ("Runners draining", "backtest_kit_operator_drains_in_progress"),
    ("Operator reconciliations", "backtest_kit_operator_reconciliations_total"),
    ("Operator drain duration p50 / p99", "backtest_kit_operator_drain_duration_seconds_bucket"),
}
#: Alerts whose input no runner exports, so they can only be checked to parse and execute.
ALERTS_WITHOUT_RUNNER_INPUT = {
    "BacktestKitOperatorDrainsStuck": "reads the operator's backtest_kit_operator_drains_in_progress",
    "BacktestKitRunnerRestartLoop": "reads kube-state-metrics series, which exist only in a cluster",
}
#: Alerts that must be silent while runners tick without errors.
MUST_NOT_FIRE = ("BacktestKitRunnerNotTicking", "BacktestKitTickErrorRatioHigh")
#: The target labels the chart's PodMonitor adds to a runner's series (namespace, LiveTrader name).
TARGET_LABELS = {
    FAST_TRADER: {"namespace": "trading-a", "livetrader": "fast"},
    CANCELLING_TRADER: {"namespace": "trading-b", "livetrader": "cancelling"},
}


@dataclass(frozen=True)
class ScrapedRun:
    prometheus: Prometheus
    traders: dict[str, LiveRunner]
    start: float  # epoch seconds: Prometheus ready
    end: float  # epoch seconds: enough samples stored

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """The decoded JSON answer of a Prometheus HTTP API call, success or not."""
        code, body = http("GET", f"{self.prometheus.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert isinstance(body, dict), (code, body)
        return body

    def query_range(self, expr: str) -> dict[str, Any]:
        return self.api(
            "query_range", query=expr, start=f"{self.start:.3f}", end=f"{self.end:.3f}", step="1s"
        )

    def instant(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def stored_names(self) -> set[str]:
        body = self.api("label/__name__/values")
        assert body["status"] == "success", body
        return set(body["data"])


def _finite_points(body: dict[str, Any]) -> int:
    """How many finite values a query_range answer holds (NaN draws nothing in Grafana)."""
    return sum(
        1 for series in body["data"]["result"] for _, value in series["values"] if math.isfinite(float(value))
    )


def _number(prom: Prometheus, expr: str) -> float:
    return prom.number(expr) or 0.0


def _stored_so_far(prom: Prometheus) -> dict[str, float]:
    """What the wait for data looks at; each value must reach its entry in ``ENOUGH``."""
    return {
        "runners up": _number(prom, 'count(up{job="runner"} == 1)'),
        "scrapes of the least scraped runner": _number(prom, 'min(count_over_time(up{job="runner"}[1m]))'),
        "closed signals": _number(
            prom, f'sum(backtest_kit_signals_closed_total{{strategy="{FAST_TRADER}"}})'
        ),
        "failed exchange requests": _number(prom, "sum(backtest_kit_exchange_request_errors_total)"),
        # increase() needs two samples of the cancelled series, which appears with the first cancellation
        "samples of a cancellation": _number(
            prom, "max(count_over_time(backtest_kit_signals_cancelled_total[1m]))"
        ),
    }


ENOUGH = {
    "runners up": 2,
    "scrapes of the least scraped runner": MIN_SCRAPES,
    "closed signals": MIN_CLOSED,
    "failed exchange requests": 2,
    "samples of a cancellation": 2,
}


def _wait_for_enough_samples(prom: Prometheus) -> None:
    seen: dict[str, float] = {}

    def enough() -> bool:
        seen.update(_stored_so_far(prom))
        return all(seen[what] >= least for what, least in ENOUGH.items())

    try:
        wait_for("enough samples", enough, timeout=DATA_TIMEOUT_S, every=0.5)
    except AssertionError as err:
        raise AssertionError(f"{err}: wanted {ENOUGH}, Prometheus had {seen}") from None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScrapedRun]:
    binary = prometheus_binary()
    workdir = tmp_path_factory.mktemp("dashboard-data")
    failing = FakeBinance(at={n: Status(500, {"code": -1000, "msg": "internal"}) for n in FAILED_REQUESTS})
    with serve_fake_binance(failing) as binance:
        replay = ["--replay-from", REPLAY[REPLAY.index("--replay-from") + 1], "--speed", SPEED]
        traders = {
            FAST_TRADER: LiveRunner(
                workdir / FAST_TRADER,
                workdir,
                [
                    "--symbol",
                    "BTCUSDT",
                    *replay,
                    "--strategy",
                    FAST_TRADER,
                    "--exchange",
                    f"binance:{binance.url}",
                ],
            ),
            CANCELLING_TRADER: LiveRunner(
                workdir / CANCELLING_TRADER,
                workdir,
                [*REPLAY, "--speed", SPEED, "--strategy", CANCELLING_TRADER],
            ),
        }
        prom: Prometheus | None = None
        try:
            for trader in traders.values():
                trader.start()
            for trader in traders.values():
                trader.wait_ready()
            labels = {t.port: TARGET_LABELS[name] for name, t in traders.items()}
            prom = Prometheus(binary, workdir, *(t.port for t in traders.values()), labels=labels)
            wait_for("Prometheus to be ready", prom.ready, timeout=20, every=0.2)
            start = time.time()
            _wait_for_enough_samples(prom)
            yield ScrapedRun(prom, traders, start, time.time())
        finally:
            if prom is not None:
                prom.stop()
            for trader in traders.values():
                trader.kill()


def _operator_only(expr: str) -> bool:
    return all(name.startswith(OPERATOR_METRIC_PREFIX) for name in promql_metric_names(expr))


def _runner_targets(**variables: str) -> list[tuple[str, str]]:
    queries = dashboard_queries(**variables, rate_interval=RATE_INTERVAL)
    return [(title, expr) for title, expr in queries if not _operator_only(expr)]


def _operator_targets() -> list[tuple[str, str]]:
    return [
        (title, expr)
        for title, expr in dashboard_queries(rate_interval=RATE_INTERVAL)
        if _operator_only(expr)
    ]


def _panel(title: str) -> list[str]:
    return [expr for panel, expr in _runner_targets() if panel == title]


def _alert_rules() -> dict[str, str]:
    loaded = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
    return {rule["alert"]: rule["expr"] for group in loaded["groups"] for rule in group["rules"]}


class TestEveryDashboardPanelShowsData:
    def test_every_runner_query_returns_finite_values_over_the_run(self, run: ScrapedRun) -> None:
        failures = []
        for title, expr in _runner_targets():
            body = run.query_range(expr)
            if body["status"] != "success":
                failures.append(f"{title}: {body.get('error')}\n    {expr}")
            elif _finite_points(body) == 0:
                failures.append(f"{title}: no data ({len(body['data']['result'])} series)\n    {expr}")
        assert not failures, "\n".join(failures)

    def test_only_the_operator_panels_lack_data_and_they_still_execute(self, run: ScrapedRun) -> None:
        operator = _operator_targets()
        found = {(title, name) for title, expr in operator for name in promql_metric_names(expr)}
        assert found == OPERATOR_TARGETS
        for title, expr in operator:
            body = run.query_range(expr)
            assert body["status"] == "success", (title, expr, body)

    def test_the_dashboard_reads_only_series_the_runners_exported_or_the_operators(
        self, run: ScrapedRun
    ) -> None:
        used = {name for _, expr in dashboard_queries() for name in promql_metric_names(expr)}
        unknown = {n for n in used - run.stored_names() if not n.startswith(OPERATOR_METRIC_PREFIX)}
        assert not unknown, f"the dashboard reads series no runner exported: {sorted(unknown)}"

    def test_the_strategy_variable_narrows_every_runner_panel_to_one_trader(self, run: ScrapedRun) -> None:
        for title, expr in _runner_targets(strategy=FAST_TRADER):
            body = run.query_range(expr)
            assert body["status"] == "success", (title, body)
            strategies = {s["metric"].get("strategy") for s in body["data"]["result"]}
            assert strategies <= {FAST_TRADER}, (title, expr, strategies)

    @pytest.mark.parametrize(("variable", "label"), [("namespace", "namespace"), ("trader", "livetrader")])
    def test_the_namespace_and_trader_variables_narrow_every_runner_panel_to_one_trader(
        self, run: ScrapedRun, variable: str, label: str
    ) -> None:
        wanted = TARGET_LABELS[FAST_TRADER][label]
        with_data = set()
        for title, expr in _runner_targets(**{variable: wanted}):
            body = run.query_range(expr)
            assert body["status"] == "success", (title, body)
            seen = {s["metric"].get(label) for s in body["data"]["result"]}
            strategies = {s["metric"].get("strategy") for s in body["data"]["result"]}
            assert seen <= {wanted} and strategies <= {FAST_TRADER}, (title, expr, seen, strategies)
            if _finite_points(body):
                with_data.add(title)
        # every panel but the cancellations one: the fast trader trades at market and never cancels
        titles = {title for title, _ in _runner_targets()}
        assert with_data == titles - {"Signals cancelled by reason"}, titles - with_data

    def test_each_variable_offers_the_values_the_runners_series_carry(self, run: ScrapedRun) -> None:
        offered = {}
        for name, selector, label in variable_queries(namespace="trading-a"):
            body = run.api(f"label/{label}/values", **{"match[]": selector})
            assert body["status"] == "success", (name, body)
            offered[name] = set(body["data"])
        assert offered["namespace"] == {"trading-a", "trading-b"}
        assert offered["trader"] == {"fast"}  # narrowed by the namespace chosen
        assert offered["symbol"] == {"BTCUSDT"}
        assert offered["strategy"] == {FAST_TRADER}

    def test_the_last_tick_age_of_a_replaying_runner_is_seconds_not_the_distance_to_its_replay(
        self, run: ScrapedRun
    ) -> None:
        (expr,) = [expr for title, expr in _runner_targets() if title.startswith("Last tick age")]
        series = run.query_range(expr)["data"]["result"]
        assert {s["metric"]["strategy"] for s in series} == {FAST_TRADER, CANCELLING_TRADER}
        worst = max(float(v) for s in series for _, v in s["values"])
        assert 0 <= worst < 30, worst
        # what the panel used to show: the distance between now and the replayed clock, years
        assert _number(run.prometheus, "min(time() - backtest_kit_last_tick_timestamp_seconds)") > 86_400

    def test_the_position_and_unrealised_pnl_panels_follow_the_open_signals(self, run: ScrapedRun) -> None:
        fast = {"trader": TARGET_LABELS[FAST_TRADER]["livetrader"]}
        by_title = {title: expr for title, expr in _runner_targets(**fast)}
        positions = run.query_range(by_title["Open position per trader"])["data"]["result"]
        values = {float(v) for s in positions for _, v in s["values"]}
        assert values <= {0.0, 1.0, -1.0} and 1.0 in values, values  # the fast trader goes long
        unrealised = run.query_range(by_title["Unrealised PnL per trader"])["data"]["result"]
        moves = {float(v) for s in unrealised for _, v in s["values"]}
        assert any(v != 0 for v in moves), moves  # it moves while a signal is open
        assert all(abs(v) < 5 for v in moves), moves  # TP/SL 1 %: an open position never strays far

    def test_the_signal_panels_count_what_the_runners_report(self, run: ScrapedRun) -> None:
        prom = run.prometheus
        opened = _number(prom, f'sum(backtest_kit_signals_opened_total{{strategy="{FAST_TRADER}"}})')
        assert opened >= MIN_CLOSED
        assert run.traders[FAST_TRADER].status()["signalsOpened"] >= opened
        cancelled = prom.query("backtest_kit_signals_cancelled_total > 0")
        assert {s["metric"]["strategy"] for s in cancelled} == {CANCELLING_TRADER}
        assert {s["metric"]["reason"] for s in cancelled} <= {"timeout", "price_reject"}

    def test_the_exchange_panels_show_the_binance_requests_and_the_failed_ones(self, run: ScrapedRun) -> None:
        for expr in _panel("Exchange request duration p50 / p99"):
            series = run.query_range(expr)["data"]["result"]
            assert {s["metric"]["interval"] for s in series if s["metric"]["strategy"] == FAST_TRADER}, expr
        (errors,) = _panel("Exchange request errors")
        series = run.query_range(errors)["data"]["result"]
        peak = {s["metric"]["exchange"]: max(float(v) for _, v in s["values"]) for s in series}
        assert peak["binance"] > 0 and peak.get("synthetic", 0) == 0, peak


class TestTheAlertRulesOnHealthyRunners:
    def test_every_alert_expression_parses_and_executes(self, run: ScrapedRun) -> None:
        rules = _alert_rules()
        assert set(MUST_NOT_FIRE) | set(ALERTS_WITHOUT_RUNNER_INPUT) <= set(rules)
        failures = {
            name: body for name, expr in rules.items() if (body := run.instant(expr))["status"] != "success"
        }
        assert not failures, failures

    def test_the_not_ticking_and_tick_error_alerts_do_not_fire(self, run: ScrapedRun) -> None:
        rules = _alert_rules()
        for name in MUST_NOT_FIRE:
            body = run.instant(rules[name])
            assert body["status"] == "success" and body["data"]["result"] == [], (name, body)

    def test_the_quiet_alerts_have_their_input(self, run: ScrapedRun) -> None:
        prom = run.prometheus
        # the replayed clock is in 2024: only "the tick timestamp still moves" keeps NotTicking quiet
        assert _number(prom, "min(time() - backtest_kit_last_tick_timestamp_seconds)") > 180
        assert _number(prom, "min(changes(backtest_kit_last_tick_timestamp_seconds[3m]))") > 0
        # the error ratio divides by a real tick rate, and the adapter retried every failed request
        assert _number(prom, "min(rate(backtest_kit_live_ticks_total[10m]))") > 0
        assert _number(prom, "sum(backtest_kit_live_tick_errors_total)") == 0

    def test_the_alerts_read_only_series_the_runners_exported_except_the_listed_ones(
        self, run: ScrapedRun
    ) -> None:
        stored = run.stored_names()
        missing = {
            name: sorted(promql_metric_names(expr) - stored)
            for name, expr in _alert_rules().items()
            if promql_metric_names(expr) - stored
        }
        assert set(missing) == set(ALERTS_WITHOUT_RUNNER_INPUT), missing
        for names in missing.values():
            assert all(n.startswith(OPERATOR_METRIC_PREFIX) or n in KUBE_STATE_METRICS for n in names)
