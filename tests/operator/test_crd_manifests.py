"""The CRDs declare what the issue and CONTRACTS.md promise, and the samples are valid specs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from backtest_kit_operator.models import parse_trader_spec, parse_walker_spec

CRDS = Path(__file__).resolve().parents[2] / "crds"


def crd(plural: str) -> dict[str, Any]:
    return dict(yaml.safe_load((CRDS / f"{plural}.backtestkit.dev.yaml").read_text()))


def version(plural: str) -> dict[str, Any]:
    (only,) = crd(plural)["spec"]["versions"]
    return dict(only)


def test_both_kinds_are_namespaced_v1alpha1_with_their_short_names() -> None:
    traders, walkers = crd("livetraders"), crd("walkers")
    assert traders["spec"]["group"] == walkers["spec"]["group"] == "backtestkit.dev"
    assert traders["spec"]["names"]["shortNames"] == ["lt", "ltr"]
    assert walkers["spec"]["names"]["shortNames"] == ["wk"]
    assert traders["spec"]["scope"] == walkers["spec"]["scope"] == "Namespaced"
    assert version("livetraders")["name"] == "v1alpha1"
    assert version("livetraders")["subresources"] == {"status": {}}
    assert version("walkers")["subresources"] == {"status": {}}


def test_live_trader_printer_columns_show_symbol_strategy_exchange_phase_signal_pnl_age() -> None:
    names = [c["name"] for c in version("livetraders")["additionalPrinterColumns"]]
    assert names == ["Symbol", "Strategy", "Exchange", "Phase", "Signal", "PnL%", "Age"]


def test_the_phase_enum_and_condition_shape_follow_the_issue() -> None:
    status = version("livetraders")["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Pending", "Idle", "Running", "Draining", "Done", "Failed"]
    condition = status["conditions"]["items"]["properties"]
    assert {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"} <= set(
        condition
    )


def walk(schema: dict[str, Any], inside_rule: bool = False) -> Iterator[tuple[dict[str, Any], bool]]:
    ruled = inside_rule or bool(schema.get("x-kubernetes-validations"))
    yield schema, ruled
    for child in (schema.get("properties") or {}).values():
        yield from walk(child, ruled)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from walk(schema[key], ruled)


@pytest.mark.parametrize("plural", ["livetraders", "walkers"])
def test_strings_and_maps_under_cel_rules_are_bounded_so_the_rule_cost_estimate_fits(plural: str) -> None:
    spec = version(plural)["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for node, ruled in walk(spec):
        if not ruled:
            continue
        if node.get("type") == "string" and node.get("format") != "date-time":
            assert "maxLength" in node or "enum" in node, node
        if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node, node


def test_the_immutable_fields_are_guarded_by_transition_rules() -> None:
    spec = version("livetraders")["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for field in ("symbol", "exchange", "storage", "replay"):
        rules = [r["rule"] for r in spec[field]["x-kubernetes-validations"]]
        assert "self == oldSelf" in rules, field
    for field in ("strategy", "runner"):
        assert "self == oldSelf" not in [r["rule"] for r in spec[field].get("x-kubernetes-validations", [])]


#: The LiveTrader and Walker samples (the others are what they need, e.g. a strategy ConfigMap).
CUSTOM_SAMPLES = sorted(
    p
    for p in (CRDS / "samples").glob("*.yaml")
    if str(yaml.safe_load(p.read_text()).get("apiVersion", "")).startswith("backtestkit.dev/")
)


@pytest.mark.parametrize("sample", CUSTOM_SAMPLES, ids=lambda p: p.name)
def test_every_sample_is_a_valid_spec(sample: Path) -> None:
    body = yaml.safe_load(sample.read_text())
    parse = parse_trader_spec if body["kind"] == "LiveTrader" else parse_walker_spec
    parse(body["spec"])


def undescribed(schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """The path of every property below ``schema`` (nested objects and list items too) without a
    description, which ``kubectl explain`` would show empty."""
    for name, child in (schema.get("properties") or {}).items():
        where = f"{path}.{name}"
        if not str(child.get("description") or "").strip():
            yield where
        yield from undescribed(child, where)
    if isinstance(schema.get("items"), dict):
        yield from undescribed(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from undescribed(schema["additionalProperties"], f"{path}{{}}")


def test_the_description_walk_finds_a_nested_property_without_one() -> None:
    schema = {"properties": {"a": {"description": "x", "items": {"properties": {"b": {"type": "string"}}}}}}
    assert list(undescribed(schema)) == [".a[].b"]


@pytest.mark.parametrize("plural", ["livetraders", "walkers"])
def test_kubectl_explain_has_a_description_for_every_field(plural: str) -> None:
    root = version(plural)["schema"]["openAPIV3Schema"]
    assert root.get("description")
    missing = list(undescribed(root))
    assert missing == [], f"{plural}: fields without a description: {missing}"
    assert {"spec", "status"} <= set(root["properties"])
