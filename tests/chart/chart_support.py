"""Helpers shared by the chart tests: rendering through Helm's Go library, value presets, PromQL parsing.

Everything here works offline: ``helm_python`` binds Helm's Go SDK, so no ``helm`` binary and no cluster
are involved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "backtest-kit-operator"
REPO_CRDS_DIR = REPO_ROOT / "crds"
CONTRACTS = REPO_ROOT / "docs" / "CONTRACTS.md"
ALERTS_FILE = CHART_DIR / "files" / "alerts.yaml"
DASHBOARD_FILE = CHART_DIR / "files" / "dashboard.json"
SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"

RELEASE = "btk"
NAMESPACE = "trading"
# The newest Kubernetes version kubernetes-validate ships schemas for, and the oldest the chart supports.
KUBE_VERSIONS = ("1.37.0", "1.27.0")
PROMETHEUS_OPERATOR_API = "monitoring.coreos.com/v1"

# Value presets. "all-features" switches on every optional feature at once.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "standalone": {"peering": {"enabled": False}, "networkPolicy": {"enabled": False}},
    "all-features": {
        "watch": {"namespaces": ["trading-a", "trading-b"]},
        "peering": {"enabled": True, "name": "btk-peering", "createObjects": "always"},
        "image": {"repository": "registry.example.com/btk/operator", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "runner": {
            "image": {
                "repository": "registry.example.com/btk/runner",
                "tag": "1.2.3",
                "pullPolicy": "Always",
            },
            "imagePullSecrets": [{"name": "regcred"}],
            "serviceAccount": {"annotations": {"owner": "quant"}, "additionalNamespaces": ["sandbox"]},
        },
        "serviceAccount": {"annotations": {"owner": "platform"}},
        "extraArgs": ["--poll-interval=2"],
        "extraEnv": [{"name": "BACKTEST_KIT_OPERATOR_HTTP_TIMEOUT", "value": "2"}],
        "logLevel": "debug",
        "tmpSizeLimit": "32Mi",
        "terminationGracePeriodSeconds": 60,
        "podAnnotations": {"example.com/team": "quant"},
        "podLabels": {"team": "quant"},
        "priorityClassName": "trading-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "trading", "effect": "NoSchedule"}
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["trading"]}]}
                    ]
                }
            }
        },
        "metricsService": {"annotations": {"example.com/scrape": "false"}},
        "monitoring": {
            "assumePrometheusOperator": True,
            "additionalLabels": {"release": "kube-prometheus-stack"},
            "serviceMonitor": {"enabled": True, "interval": "15s"},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "additionalRuleLabels": {"team": "quant"}},
            "dashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "labelKey": "grafana_dashboard",
                "labelValue": "1",
                "annotations": {"grafana_folder": "Trading"},
            },
        },
    },
    "own-namespace": {
        "watch": {"ownNamespaceOnly": True, "namespaces": ["ignored"]},
        "peering": {"enabled": True, "createObjects": "always"},
    },
    "cluster-peering": {
        "peering": {"enabled": True, "createObjects": "always"},
        "monitoring": {
            "assumePrometheusOperator": True,
            "serviceMonitor": {"enabled": True},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        },
    },
}


@cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def _render(values: dict[str, Any], api_versions: tuple[str, ...]) -> dict[str, str]:
    if not api_versions:
        return chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    # The public Chart.render() has no option for the cluster's API versions; the C library behind it
    # accepts them (like `helm template --api-versions`), so call it directly.
    from helm_python import _native

    opts = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True, "api_versions": list(api_versions)}
    raw = _native.call_string("helm_render", chart()._raw(), json.dumps(values), json.dumps(opts))
    rendered: dict[str, str] = json.loads(raw)
    return rendered


def render(values: dict[str, Any] | None = None, api_versions: Iterable[str] = ()) -> dict[str, str]:
    """Template path -> rendered text, as `helm template btk -n trading` would produce."""
    return _render(values or {}, tuple(api_versions))


def objects(values: dict[str, Any] | None = None, api_versions: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt excluded)."""
    out: list[dict[str, Any]] = []
    for path, text in sorted(render(values, api_versions).items()):
        if path.endswith("NOTES.txt"):
            continue
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


@cache
def scenario_objects(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(objects(SCENARIOS[name]))


def notes(values: dict[str, Any] | None = None) -> str:
    return next(text for path, text in render(values).items() if path.endswith("NOTES.txt"))


def of_kind(objs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objs, kind)
    assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}"
    return found[0]


def operator_container(objs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "operator")


def chart_crd_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((CHART_DIR / "crds").glob("*.yaml"))}


def repo_crd_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(REPO_CRDS_DIR.glob("*.yaml"))}


# --- docs/CONTRACTS.md -------------------------------------------------------------------------------

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
KUBE_STATE_METRICS = frozenset({"kube_pod_container_status_restarts_total", "kube_pod_labels"})


@cache
def contract_metrics() -> dict[str, str]:
    """Metric name -> type, for the runner table and the operator line of docs/CONTRACTS.md."""
    text = CONTRACTS.read_text(encoding="utf-8")
    metrics: dict[str, str] = {}
    for name, kind in re.findall(r"^\|\s*`(backtest_kit_\w+)`\s*\|\s*(\w+)", text, flags=re.MULTILINE):
        metrics[name] = kind
    paragraph = re.search(r"^Operator metrics.*?(?:\n\s*\n|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert paragraph, "docs/CONTRACTS.md has no 'Operator metrics' paragraph"
    operator_metrics = paragraph.group(0)
    for name, histogram in re.findall(
        r"`(backtest_kit_operator_\w+)(?:\{[^}]*\})?`(\s*\(histogram\))?", operator_metrics
    ):
        metrics[name] = "histogram" if histogram else "untyped"
    return metrics


def contract_series_names() -> frozenset[str]:
    """Series names a scrape exposes: histograms only as _bucket/_sum/_count."""
    names: set[str] = set()
    for name, kind in contract_metrics().items():
        if kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            names.add(name)
    return frozenset(names)


# --- PromQL ------------------------------------------------------------------------------------------

_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
    | {"atan2", "inf", "nan"}
)
_GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and label names excluded)."""
    text = _strip_strings(expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = re.sub(_GROUPING, " ", text)  # grouping label lists
    text = re.sub(r"(?<![\w:.])\d[\w.]*", " ", text)  # numbers and durations (1e3, 0.99, 5m)
    names: set[str] = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        token = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if token.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(token)
    return names


def promql_label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring/group_* lists."""
    text = _strip_strings(expr)
    labels: set[str] = set()
    for body in re.findall(r"\{([^}]*)\}", text):
        labels.update(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", body))
    for body in re.findall(_GROUPING, text):
        labels.update(part.strip() for part in body.split(",") if part.strip())
    return labels


def grafana_query_metric_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query (``label_values(<selector>, <label>)``)."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    return promql_metric_names(match.group(1) if match else query)


# --- the dashboard ------------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def dashboard_panels(dash: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in (dash or dashboard())["panels"]:
        yield panel
        yield from panel.get("panels", [])


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]
