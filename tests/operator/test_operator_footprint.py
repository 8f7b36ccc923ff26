"""What the operator process loads: an operator serving only LiveTraders never imports the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def loaded_after(code: str) -> set[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "operator"), str(REPO / "runner")])
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return {name.split(".")[0] for name in out.split()}


def test_registering_the_handlers_loads_neither_the_engine_nor_numpy() -> None:
    loaded = loaded_after("import backtest_kit_operator.handlers")
    assert "backtest_kit" not in loaded
    assert "numpy" not in loaded


def test_parsing_a_walker_spec_loads_the_engine_rules_it_needs() -> None:
    code = (
        "from backtest_kit_operator.models import parse_walker_spec\n"
        "spec = parse_walker_spec({'symbol': 'BTCUSDT', 'exchange': {'name': 'synthetic'},"
        " 'frame': {'start': '2024-01-01T00:00:00Z', 'end': '2024-01-02T00:00:00Z'},"
        " 'strategies': [{'name': 'sma-cross'}]})\n"
        "from backtest_kit.metrics import DEFAULT_METRIC\n"
        "assert spec.metric == DEFAULT_METRIC, spec.metric"
    )
    assert "backtest_kit" in loaded_after(code)
