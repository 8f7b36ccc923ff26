"""Every PromQL query of the Grafana dashboard, ready to send to a Prometheus.

For the end-to-end test (a real Prometheus scraping a real replaying runner) that checks each panel
returns data::

    from .dashboard_queries import dashboard_queries   # from a test module in tests/chart/

    for title, expr in dashboard_queries(symbol="BTCUSDT", rate_interval="1m"):
        assert prometheus.query(expr), title

Grafana's variables are substituted the way Grafana would: ``$namespace``, ``$trader`` (the
LiveTrader name, label ``livetrader``), ``$symbol`` and ``$strategy`` default to ``.*`` (the
dashboard's "All" value, matched with ``=~``, which also matches a series without that label),
``$__rate_interval`` to ``rate_interval``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DASHBOARD_FILE = (
    Path(__file__).resolve().parents[2] / "charts" / "backtest-kit-operator" / "files" / "dashboard.json"
)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace ``$name`` and ``${name}`` (longest names first, so ``$__rate_interval`` beats ``$__rate``)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = re.sub(
            r"\$\{" + re.escape(name) + r"\}|\$" + re.escape(name) + r"(?![\w])", variables[name], expr
        )
    return expr


#: The dashboard's own template variables, in the order they narrow each other.
VARIABLES = ("namespace", "trader", "symbol", "strategy")


def variable_values(
    *,
    namespace: str = ".*",
    trader: str = ".*",
    symbol: str = ".*",
    strategy: str = ".*",
    rate_interval: str = "1m",
) -> dict[str, str]:
    """Every variable a dashboard query may use, with the value Grafana would send."""
    return {
        "namespace": namespace,
        "trader": trader,
        "symbol": symbol,
        "strategy": strategy,
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__range": rate_interval,
    }


def dashboard_queries(
    *,
    namespace: str = ".*",
    trader: str = ".*",
    symbol: str = ".*",
    strategy: str = ".*",
    rate_interval: str = "1m",
    dashboard_file: Path = DASHBOARD_FILE,
) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every target of every panel, variables substituted.

    ``namespace``, ``trader``, ``symbol`` and ``strategy`` are regular expressions (the dashboard
    matches them with ``=~``). Panels with several targets yield one tuple per target, in panel order.
    """
    variables = variable_values(
        namespace=namespace, trader=trader, symbol=symbol, strategy=strategy, rate_interval=rate_interval
    )
    dash = json.loads(dashboard_file.read_text(encoding="utf-8"))
    queries: list[tuple[str, str]] = []
    for panel in _panels(dash["panels"]):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                queries.append((panel["title"], substitute(expr, variables)))
    return queries


def variable_queries(*, dashboard_file: Path = DASHBOARD_FILE, **values: str) -> list[tuple[str, str, str]]:
    """``(variable, series selector, label)`` of every ``label_values(selector, label)`` variable,
    the other variables in the selector substituted (``values`` as for :func:`variable_values`)."""
    dash = json.loads(dashboard_file.read_text(encoding="utf-8"))
    out = []
    for variable in dash["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
        if match is None:
            raise ValueError(f"variable {variable['name']}: not a label_values() query: {query}")
        out.append((variable["name"], substitute(match.group(1), variable_values(**values)), match.group(2)))
    return out
