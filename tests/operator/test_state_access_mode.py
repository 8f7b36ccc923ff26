"""Runner state PVCs are ReadWriteOnce unless the operator is set to ReadWriteOncePod."""

from __future__ import annotations

import pytest
from operator_samples import trader
from pydantic import ValidationError

from backtest_kit_operator.manifests import build_pvc
from backtest_kit_operator.settings import load_settings


class TestTheStateVolumeAccessMode:
    def test_the_default_is_read_write_once(self) -> None:
        assert build_pvc(trader())["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert load_settings({}).state_access_mode == "ReadWriteOnce"

    def test_read_write_once_pod_comes_from_the_setting_and_nothing_else_changes(self) -> None:
        settings = load_settings({"BACKTEST_KIT_OPERATOR_STATE_ACCESS_MODE": "ReadWriteOncePod"})
        pod_only = build_pvc(trader(), access_mode=settings.state_access_mode)
        default = build_pvc(trader())
        assert pod_only["spec"]["accessModes"] == ["ReadWriteOncePod"]
        assert {**pod_only["spec"], "accessModes": None} == {**default["spec"], "accessModes": None}
        assert pod_only["metadata"] == default["metadata"]

    def test_any_other_mode_is_refused(self) -> None:
        with pytest.raises(ValidationError):
            load_settings({"BACKTEST_KIT_OPERATOR_STATE_ACCESS_MODE": "ReadWriteMany"})

    @pytest.mark.parametrize(
        ("value", "expected"), [(None, "ReadWriteOnce"), ("ReadWriteOncePod", "ReadWriteOncePod")]
    )
    def test_the_chart_value_reaches_the_operator_environment(self, value: str | None, expected: str) -> None:
        from tests.chart.chart_support import objects, operator_container

        values = {"operatorSettings": {"stateAccessMode": value}} if value else {}
        env = {e["name"]: e.get("value") for e in operator_container(objects(values))["env"]}
        assert env["BACKTEST_KIT_OPERATOR_STATE_ACCESS_MODE"] == expected
