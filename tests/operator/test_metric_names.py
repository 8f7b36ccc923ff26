"""The Walker metric names are written in three places; they must stay one list."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import yaml

from backtest_kit.registry import METRICS
from backtest_kit_operator.models import WalkerMetric

CRD = Path(__file__).resolve().parents[2] / "crds" / "walkers.backtestkit.dev.yaml"


def test_the_operator_model_and_the_crd_enum_name_exactly_the_engines_metrics() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert list(get_args(WalkerMetric)) == list(METRICS)
    assert spec["properties"]["metric"]["enum"] == list(METRICS)
