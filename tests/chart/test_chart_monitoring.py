"""Alerts, the Grafana dashboard and the Prometheus Operator objects use the metrics of docs/CONTRACTS.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart_support import (
    ALERTS_FILE,
    DASHBOARD_FILE,
    KUBE_STATE_METRICS,
    NAMESPACE,
    contract_metrics,
    contract_series_names,
    dashboard,
    dashboard_panels,
    grafana_query_metric_names,
    one,
    promql_label_names,
    promql_metric_names,
    scenario_objects,
)
from .dashboard_queries import VARIABLES, dashboard_queries, variable_queries

RESTART_ALERT = "BacktestKitRunnerRestartLoop"
SEVERITIES = {"critical", "warning", "info"}
# Labels a runner or operator series can carry: the contract's own plus what the scrape adds.
KNOWN_LABELS = {
    "symbol", "strategy", "exchange", "reason", "side", "interval", "version", "kind", "result", "le",
    "namespace", "pod", "container", "job", "instance", "livetrader",
}  # fmt: skip


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: install the Debian package `prometheus` (apt-get install -y prometheus)"
        )
    return path


def _alerts() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def _alert(name: str) -> dict[str, Any]:
    return next(rule for rule in _alerts() if rule.get("alert") == name)


def _dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


class TestPromQLParsing:
    """The metric-name checks below are only as good as this small PromQL scanner."""

    def test_the_scanner_finds_metrics_and_skips_functions_keywords_labels_and_durations(self) -> None:
        expr = (
            'histogram_quantile(0.99, sum by (le, symbol) (rate(a_seconds_bucket{symbol=~"$symbol"}[5m])))'
            " / on (pod) group_left (x) b_total offset 1h > bool 1e3 and time() - c"
        )
        assert promql_metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}

    def test_the_scanner_reads_label_names_from_matchers_and_grouping_clauses(self) -> None:
        expr = 'sum without (pod) (x{a="1", b!~"2"}) * on (c) group_right (d) y'
        assert promql_label_names(expr) == {"a", "b", "c", "d", "pod"}

    def test_the_contract_lists_runner_and_operator_metrics(self) -> None:
        metrics = contract_metrics()
        assert metrics["backtest_kit_live_tick_duration_seconds"] == "histogram"
        assert metrics["backtest_kit_operator_drain_duration_seconds"] == "histogram"
        assert "backtest_kit_operator_drains_in_progress" in metrics
        assert len(metrics) >= 16


class TestAlertRules:
    def test_promtool_accepts_the_rules_file(self) -> None:
        result = subprocess.run(
            [_promtool(), "check", "rules", str(ALERTS_FILE)], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_each_alert_fires_on_synthetic_series_exactly_when_it_should(self, tmp_path: Path) -> None:
        rules = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
        (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules), encoding="utf-8")
        shutil.copy(Path(__file__).with_name("alert_cases.yaml"), tmp_path / "alert_cases.yaml")
        result = subprocess.run(
            [_promtool(), "test", "rules", "alert_cases.yaml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_every_alert_in_the_rules_file_has_a_unit_test_case(self) -> None:
        cases = yaml.safe_load(Path(__file__).with_name("alert_cases.yaml").read_text(encoding="utf-8"))
        tested = {check["alertname"] for case in cases["tests"] for check in case.get("alert_rule_test", [])}
        assert {rule["alert"] for rule in _alerts()} == tested

    def test_every_alert_has_a_for_duration_a_severity_a_summary_and_a_description(self) -> None:
        for rule in _alerts():
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
            assert rule["annotations"]["summary"].strip(), rule["alert"]
            assert rule["annotations"]["description"].strip(), rule["alert"]

    @pytest.mark.parametrize(
        ("alert", "metric", "fragment", "duration"),
        [
            ("BacktestKitRunnerNotTicking", "backtest_kit_last_tick_timestamp_seconds", "> 180", "5m"),
            ("BacktestKitTickErrorRatioHigh", "backtest_kit_live_tick_errors_total", "> 0.1", "10m"),
            (
                "BacktestKitTickLatencyHigh",
                "backtest_kit_live_tick_duration_seconds_bucket",
                "histogram_quantile(0.99",
                "15m",
            ),
            ("BacktestKitDrainStuck", "backtest_kit_runner_draining", "== 1", "2h"),
            ("BacktestKitOperatorDrainsStuck", "backtest_kit_operator_drains_in_progress", "> 0", "2h"),
            (RESTART_ALERT, "kube_pod_container_status_restarts_total", "increase(", "5m"),
        ],
    )
    def test_the_alerts_a_trader_needs_exist(
        self, alert: str, metric: str, fragment: str, duration: str
    ) -> None:
        rule = _alert(alert)
        assert metric in promql_metric_names(rule["expr"])
        assert fragment in rule["expr"]
        assert rule["for"] == duration

    def test_the_error_ratio_alert_divides_errors_by_ticks(self) -> None:
        expr = _alert("BacktestKitTickErrorRatioHigh")["expr"]
        assert promql_metric_names(expr) == {
            "backtest_kit_live_tick_errors_total",
            "backtest_kit_live_ticks_total",
        }
        assert expr.index("errors_total") < expr.index("/") < expr.index("ticks_total")

    def test_the_restart_alert_only_counts_runner_pods(self) -> None:
        expr = _alert(RESTART_ALERT)["expr"]
        assert 'label_app_kubernetes_io_name="backtest-kit-runner"' in expr


class TestMetricNames:
    def test_every_metric_in_the_alerts_is_a_contract_metric_or_kube_state_metrics_in_the_restart_alert(
        self,
    ) -> None:
        allowed = contract_series_names()
        for rule in _alerts():
            extra = KUBE_STATE_METRICS if rule["alert"] == RESTART_ALERT else frozenset()
            unknown = promql_metric_names(rule["expr"]) - allowed - extra
            assert unknown == set(), rule["alert"]

    def test_every_metric_in_the_dashboard_panels_is_a_contract_metric(self) -> None:
        allowed = contract_series_names()
        for title, expr in _dashboard_exprs():
            names = promql_metric_names(expr)
            assert names, title
            assert names <= allowed, (title, names - allowed)

    def test_every_metric_in_the_dashboard_variables_is_a_contract_metric(self) -> None:
        allowed = contract_series_names()
        for variable in dashboard()["templating"]["list"]:
            if variable["type"] == "query":
                query = (
                    variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
                )
                assert grafana_query_metric_names(query) <= allowed, variable["name"]

    def test_histograms_are_only_queried_through_their_bucket_sum_or_count_series(self) -> None:
        histograms = {name for name, kind in contract_metrics().items() if kind == "histogram"}
        exprs = [expr for _, expr in _dashboard_exprs()] + [rule["expr"] for rule in _alerts()]
        for expr in exprs:
            assert not promql_metric_names(expr) & histograms, expr

    def test_dashboards_and_alerts_only_use_labels_the_metrics_carry(self) -> None:
        exprs = [expr for _, expr in _dashboard_exprs()]
        exprs += [rule["expr"] for rule in _alerts() if rule["alert"] != RESTART_ALERT]
        for expr in exprs:
            assert promql_label_names(expr) <= KNOWN_LABELS, expr


class TestDashboard:
    def test_the_dashboard_has_a_datasource_variable_and_namespace_trader_symbol_strategy_variables(
        self,
    ) -> None:
        variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
        assert list(variables) == ["datasource", *VARIABLES]
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for name in VARIABLES:
            assert variables[name]["type"] == "query"
            assert variables[name]["datasource"]["uid"] == "${datasource}"
            assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*", name

    def test_the_trader_variable_lists_live_trader_names_and_each_variable_narrows_the_next(self) -> None:
        queries = {name: (selector, label) for name, selector, label in variable_queries(namespace="ns-a")}
        assert queries["namespace"][1] == "namespace"
        assert queries["trader"] == ('backtest_kit_live_ticks_total{namespace=~"ns-a"}', "livetrader")
        assert 'namespace=~"ns-a"' in queries["symbol"][0] and 'livetrader=~".*"' in queries["symbol"][0]
        assert 'symbol=~".*"' in queries["strategy"][0]

    def test_every_panel_and_target_queries_through_the_datasource_variable(self) -> None:
        for panel in dashboard_panels():
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", panel["title"]

    def test_every_runner_query_filters_by_namespace_trader_symbol_and_strategy(self) -> None:
        # The operator's own series (backtest_kit_operator_*) describe all traders at once.
        for title, expr in _dashboard_exprs():
            if "backtest_kit_operator_" in expr:
                continue
            selectors = re.findall(r"backtest_kit_\w+\{[^}]*\}", expr)
            assert selectors and len(selectors) == len(re.findall(r"backtest_kit_\w+", expr)), (title, expr)
            for selector in selectors:
                for label, name in (("namespace", "namespace"), ("livetrader", "trader")):
                    assert f'{label}=~"${name}"' in selector, (title, selector)
                assert 'symbol=~"$symbol"' in selector and 'strategy=~"$strategy"' in selector, title

    def test_the_stat_panels_show_the_position_and_both_pnls_of_each_trader(self) -> None:
        stats = {p["title"]: p for p in dashboard_panels() if p["type"] == "stat"}
        metrics = {
            title: promql_metric_names(target["expr"])
            for title, p in stats.items()
            for target in p["targets"]
        }
        assert sorted(metrics.values(), key=sorted) == [
            {"backtest_kit_open_position"},
            {"backtest_kit_realized_pnl_percent"},
            {"backtest_kit_unrealized_pnl_percent"},
        ]
        for title, panel in stats.items():
            (target,) = panel["targets"]
            assert {"namespace", "livetrader"} <= promql_label_names(target["expr"]), title
            assert "{{livetrader}}" in target["legendFormat"], title
        position = next(p for t, p in stats.items() if "backtest_kit_open_position" in metrics[t])
        (mapping,) = position["fieldConfig"]["defaults"]["mappings"]
        assert {k: v["text"] for k, v in mapping["options"].items()} == {
            "1": "long",
            "0": "flat",
            "-1": "short",
        }

    def test_the_last_tick_age_is_measured_on_the_wall_clock_so_a_replay_does_not_show_years(self) -> None:
        (age,) = [p for p in dashboard_panels() if p["title"].startswith("Last tick age")]
        (target,) = age["targets"]
        assert promql_metric_names(target["expr"]) == {"backtest_kit_last_tick_wall_timestamp_seconds"}
        assert "wall clock" in age["title"] and "replay" in age["description"]

    @pytest.mark.parametrize(
        ("title_fragment", "metric"),
        [
            ("Tick duration", "backtest_kit_live_tick_duration_seconds_bucket"),
            ("Tick rate", "backtest_kit_live_ticks_total"),
            ("Tick rate", "backtest_kit_live_tick_errors_total"),
            ("Open positions", "backtest_kit_open_position"),
            ("Signals opened", "backtest_kit_signals_opened_total"),
            ("Signals closed", "backtest_kit_signals_closed_total"),
            ("Signals cancelled", "backtest_kit_signals_cancelled_total"),
            ("Realised PnL", "backtest_kit_realized_pnl_percent"),
            ("Unrealised PnL", "backtest_kit_unrealized_pnl_percent"),
            ("Open position per trader", "backtest_kit_open_position"),
            ("Last tick age", "backtest_kit_last_tick_wall_timestamp_seconds"),
            ("Exchange request duration", "backtest_kit_exchange_request_duration_seconds_bucket"),
            ("Exchange request errors", "backtest_kit_exchange_request_errors_total"),
        ],
    )
    def test_the_dashboard_has_the_panels_a_trader_needs(self, title_fragment: str, metric: str) -> None:
        matching = [expr for title, expr in _dashboard_exprs() if title_fragment in title]
        assert matching, title_fragment
        assert any(metric in promql_metric_names(expr) for expr in matching)

    def test_tick_duration_shows_p50_p90_and_p99(self) -> None:
        exprs = [expr for title, expr in _dashboard_exprs() if title.startswith("Tick duration")]
        quantiles = {q for expr in exprs for q in re.findall(r"histogram_quantile\(([\d.]+)", expr)}
        assert quantiles == {"0.5", "0.9", "0.99"}

    def test_open_positions_are_split_by_side_and_closed_and_cancelled_signals_by_reason(self) -> None:
        by_title = dict(_dashboard_exprs())
        assert "side" in promql_label_names(by_title["Open positions by side"])
        assert "reason" in promql_label_names(by_title["Signals closed by reason"])
        assert "reason" in promql_label_names(by_title["Signals cancelled by reason"])

    def test_panel_ids_are_unique_and_panels_do_not_overlap(self) -> None:
        panels = list(dashboard_panels())
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids))
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            area = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not area & cells, panel["title"]
            cells |= area


class TestDashboardPromQL:
    def test_promtool_parses_every_dashboard_query_and_variable_selector(self, tmp_path: Path) -> None:
        exprs = [expr for _, expr in dashboard_queries()]
        exprs += [selector for _, selector, _ in variable_queries()]
        rules = {
            "groups": [
                {
                    "name": "dashboard",
                    "rules": [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)],
                }
            ]
        }
        path = tmp_path / "dashboard_rules.yaml"
        path.write_text(yaml.safe_dump(rules), encoding="utf-8")
        result = subprocess.run(
            [_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stdout + result.stderr


class TestDashboardQueriesHelper:
    def test_the_helper_returns_every_panel_query_with_variables_replaced_by_concrete_values(self) -> None:
        queries = dashboard_queries(symbol="BTCUSDT", strategy="sma_cross", rate_interval="2m")
        assert len(queries) == len(_dashboard_exprs())
        for title, expr in queries:
            assert "$" not in expr, title
        for name, selector, _ in variable_queries():
            assert "$" not in selector, name
        tick_rate = next(expr for title, expr in queries if title == "Tick rate and tick errors")
        assert 'symbol=~"BTCUSDT"' in tick_rate
        assert 'strategy=~"sma_cross"' in tick_rate
        assert "[2m]" in tick_rate

    def test_by_default_the_helper_selects_every_symbol_and_strategy_like_grafanas_all(self) -> None:
        assert all('symbol=~".*"' in expr for _, expr in dashboard_queries() if "symbol=~" in expr)


class TestMonitoringObjects:
    def test_the_dashboard_config_map_carries_the_sidecar_label_and_the_dashboard_json_unchanged(
        self,
    ) -> None:
        config_map = one(scenario_objects("all-features"), "ConfigMap")
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Trading"}
        shipped = json.loads(config_map["data"]["backtest-kit.json"])
        assert shipped == json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))

    def test_the_dashboard_label_key_and_value_are_configurable(self) -> None:
        from .chart_support import objects

        values = {
            "monitoring": {"dashboard": {"enabled": True, "labelKey": "dashboards", "labelValue": "trading"}}
        }
        config_map = one(objects(values), "ConfigMap")
        assert config_map["metadata"]["labels"]["dashboards"] == "trading"
        assert config_map["metadata"]["namespace"] == NAMESPACE

    def test_the_prometheus_rule_carries_the_rules_file_plus_the_additional_rule_labels(self) -> None:
        rule = one(scenario_objects("all-features"), "PrometheusRule")
        expected = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))["groups"]
        for group in expected:
            for alert in group["rules"]:
                alert["labels"] = {**alert["labels"], "team": "quant"}
        assert rule["spec"]["groups"] == expected
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    def test_additional_rule_labels_never_override_an_alerts_own_severity(self) -> None:
        from .chart_support import objects

        values = {
            "monitoring": {
                "assumePrometheusOperator": True,
                "prometheusRule": {"enabled": True, "additionalRuleLabels": {"severity": "info"}},
            }
        }
        rule = one(objects(values), "PrometheusRule")
        severities = {
            alert["labels"]["severity"] for group in rule["spec"]["groups"] for alert in group["rules"]
        }
        assert severities == {alert["labels"]["severity"] for alert in _alerts()}

    def test_the_prometheus_rule_is_unchanged_from_the_rules_file_without_additional_labels(self) -> None:
        rule = one(scenario_objects("cluster-peering"), "PrometheusRule")
        assert rule["spec"]["groups"] == yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))["groups"]

    def test_the_service_monitor_scrapes_the_operator_metrics_port_in_the_release_namespace(self) -> None:
        objs = scenario_objects("all-features")
        monitor = one(objs, "ServiceMonitor")
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        service = one(objs, "Service")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()

    def test_the_pod_monitor_scrapes_runner_pods_on_their_http_port_in_the_watched_namespaces(self) -> None:
        monitor = one(scenario_objects("all-features"), "PodMonitor")
        assert monitor["spec"]["selector"] == {
            "matchLabels": {"app.kubernetes.io/name": "backtest-kit-runner"}
        }
        endpoint = monitor["spec"]["podMetricsEndpoints"][0]
        assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["trading-a", "trading-b"]}
        assert one(scenario_objects("cluster-peering"), "PodMonitor")["spec"]["namespaceSelector"] == {
            "any": True
        }

    def test_the_pod_monitor_copies_the_live_trader_name_into_a_series_label(self) -> None:
        endpoint = one(scenario_objects("all-features"), "PodMonitor")["spec"]["podMetricsEndpoints"][0]
        assert {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_pod_label_backtestkit_dev_livetrader"],
            "targetLabel": "livetrader",
        } in endpoint["relabelings"]
