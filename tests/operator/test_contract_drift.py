"""Every YAML copy of a contract is what the generator writes from its one Python definition.

The Walker metrics and their direction live in ``backtest_kit.metrics``, the intervals in
``backtest_kit.candles``, the RBAC rules in ``backtest_kit_operator.rbac``. The CRDs, the chart's
CRD copies and both RBAC manifests are generated from them; these tests fail as soon as one of
those files is edited by hand or a definition changes without regenerating
(``python -m backtest_kit_operator.generate``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from backtest_kit.candles import FRAME_INTERVALS
from backtest_kit.metrics import METRIC_NAMES, get_metric
from backtest_kit_operator import generate
from backtest_kit_operator.models import SpecError, parse_walker_spec
from backtest_kit_operator.results import KEY_STATS

ROOT = Path(__file__).resolve().parents[2]


def walker_schema(root: Path = ROOT) -> dict[str, Any]:
    crd = yaml.safe_load((root / "crds" / "walkers.backtestkit.dev.yaml").read_text(encoding="utf-8"))
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_no_generated_file_differs_from_what_the_generator_writes() -> None:
    assert generate.differing(ROOT) == []
    assert generate.main(["--check", "--root", str(ROOT)]) == 0


def test_the_check_mode_names_a_hand_edited_crd_and_writing_repairs_it(tmp_path: Path) -> None:
    for part in ("crds", "charts", "operator/backtest_kit_operator"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    crd = tmp_path / "crds" / "walkers.backtestkit.dev.yaml"
    crd.write_text(
        re.sub(r"^ *- totalTrades\n", "", crd.read_text(encoding="utf-8"), flags=re.M), encoding="utf-8"
    )
    (tmp_path / generate.CHART_CRDS_DIR / "stale.yaml").write_text("{}\n", encoding="utf-8")
    assert set(generate.differing(tmp_path)) == {
        Path("crds/walkers.backtestkit.dev.yaml"),
        generate.CHART_CRDS_DIR / "stale.yaml",
    }
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.differing(tmp_path) == []
    assert (tmp_path / "crds" / "walkers.backtestkit.dev.yaml").read_bytes() == (
        ROOT / "crds" / "walkers.backtestkit.dev.yaml"
    ).read_bytes()
    assert not (tmp_path / generate.CHART_CRDS_DIR / "stale.yaml").exists()


def test_regenerating_changes_nothing_but_the_enum_lines() -> None:
    text = (ROOT / "crds" / "walkers.backtestkit.dev.yaml").read_text(encoding="utf-8")
    shuffled = text.replace("- sharpeRatio\n", "- bogus\n", 1).replace("- 12h\n", "", 1)
    shuffled = shuffled.replace("higher is better except maxDrawdown.", "'anything'")
    assert shuffled != text
    assert generate.render_crd(shuffled, "walkers.backtestkit.dev.yaml") == text


def test_the_crd_enums_are_the_engines_metrics_and_frame_intervals_in_duration_order() -> None:
    spec = walker_schema()["properties"]["spec"]["properties"]
    assert spec["metric"]["enum"] == list(METRIC_NAMES)
    assert spec["metric"]["default"] in METRIC_NAMES
    assert spec["frame"]["properties"]["interval"]["enum"] == sorted(FRAME_INTERVALS, key=FRAME_INTERVALS.get)
    assert spec["metric"]["description"] == "Ranking metric; higher is better except maxDrawdown."


def test_the_spec_model_accepts_exactly_the_engines_metrics_and_frame_intervals() -> None:
    base = {
        "symbol": "BTCUSDT",
        "exchange": {"name": "synthetic"},
        "frame": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"},
        "strategies": [{"name": "sma-cross"}],
    }
    for name in METRIC_NAMES:
        assert parse_walker_spec({**base, "metric": name}).metric == name
    for interval in FRAME_INTERVALS:
        frame = {**base["frame"], "interval": interval}
        assert parse_walker_spec({**base, "frame": frame}).frame.interval == interval
    with pytest.raises(SpecError, match=r"spec\.metric: unknown metric 'luck'"):
        parse_walker_spec({**base, "metric": "luck"})
    with pytest.raises(SpecError, match=r"spec\.frame\.interval: unknown frame interval '1w'"):
        parse_walker_spec({**base, "frame": {**base["frame"], "interval": "1w"}})


def test_the_status_table_columns_are_metrics_and_the_crd_declares_each_of_them() -> None:
    row = walker_schema()["properties"]["status"]["properties"]["results"]["items"]["properties"]
    for column in KEY_STATS:
        assert get_metric(column.name) == column
        assert column.name in row
    assert row["totalTrades"]["type"] == "integer"
    assert get_metric("totalTrades").stat == "totalSignals"
