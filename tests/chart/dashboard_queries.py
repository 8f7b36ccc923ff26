"""Every PromQL query of the Grafana dashboard, ready to send to a Prometheus.

For the end-to-end test (a real Prometheus scraping a real replaying runner) that checks each panel
returns data::

    from .dashboard_queries import dashboard_queries   # from a test module in tests/chart/

    for title, expr in dashboard_queries(symbol="BTCUSDT", rate_interval="1m"):
        assert prometheus.query(expr), title

Grafana's variables are substituted the way Grafana would: ``$symbol``/``$strategy`` default to ``.*``
(the dashboard's "All" value, matched with ``=~``), ``$__rate_interval`` to ``rate_interval``.
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


def dashboard_queries(
    *,
    symbol: str = ".*",
    strategy: str = ".*",
    rate_interval: str = "1m",
    dashboard_file: Path = DASHBOARD_FILE,
) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every target of every panel, variables substituted.

    ``symbol`` and ``strategy`` are regular expressions (the dashboard matches them with ``=~``).
    Panels with several targets yield one tuple per target, in panel order.
    """
    variables = {
        "symbol": symbol,
        "strategy": strategy,
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__range": rate_interval,
    }
    dash = json.loads(dashboard_file.read_text(encoding="utf-8"))
    queries: list[tuple[str, str]] = []
    for panel in _panels(dash["panels"]):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                queries.append((panel["title"], substitute(expr, variables)))
    return queries
