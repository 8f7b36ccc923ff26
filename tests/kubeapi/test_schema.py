"""Custom resource schemas: validation messages, pruning, defaulting and CEL rules, as the real server."""

from __future__ import annotations

from typing import Any

import pytest

from . import cel
from .conftest import GROUP, VERSION, widget
from .fixtures import KubeAPI
from .rawhttp import Http

WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets"
MERGE = "application/merge-patch+json"


@pytest.fixture
def http(api: KubeAPI) -> Http:
    return Http(api.url)


def rejected(http: Http, **spec: Any) -> dict[str, Any]:
    code, body = http.call("POST", WIDGETS, widget("w", **spec))
    assert code == 422, body
    assert body["reason"] == "Invalid" and body["details"]["kind"] == "Widget"
    result: dict[str, Any] = body
    return result


class TestValidation:
    def test_pattern_violation_reads_like_the_real_server(self, http: Http) -> None:
        body = rejected(http, symbol="btc")
        assert body["message"] == (
            f'Widget.{GROUP} "w" is invalid: spec.symbol: Invalid value: "btc": '
            "spec.symbol in body should match '^[A-Z0-9]{2,20}$'"
        )
        assert body["details"]["causes"] == [
            {
                "reason": "FieldValueInvalid",
                "field": "spec.symbol",
                "message": "Invalid value: \"btc\": spec.symbol in body should match '^[A-Z0-9]{2,20}$'",
            }
        ]

    def test_every_violation_is_reported(self, http: Http) -> None:
        body = rejected(
            http,
            symbol="x",
            mode="turbo",
            replicas=9,
            title="",
            tags=[],
            start="yesterday",
            port=1.5,
            speed="fast",
        )
        fields = {c["field"]: c for c in body["details"]["causes"]}
        assert set(fields) == {
            "spec.symbol",
            "spec.mode",
            "spec.replicas",
            "spec.title",
            "spec.tags",
            "spec.start",
            "spec.port",
            "spec.speed",
            "<nil>",
        }
        assert "some validation rules were not checked" in fields["<nil>"]["message"]
        assert body["message"].startswith(f'Widget.{GROUP} "w" is invalid: [')
        assert fields["spec.mode"]["reason"] == "FieldValueNotSupported"
        assert (
            fields["spec.mode"]["message"] == 'Unsupported value: "turbo": supported values: "live", "paper"'
        )
        assert fields["spec.replicas"]["message"].endswith("should be less than or equal to 5")
        assert fields["spec.title"]["message"].endswith("should be at least 1 chars long")
        assert fields["spec.tags"]["message"].endswith("should have at least 1 items")
        assert "must be of type date-time" in fields["spec.start"]["message"]
        assert fields["spec.speed"]["message"] == (
            'Invalid value: "string": spec.speed in body must be of type number: "string"'
        )

    def test_required_fields(self, http: Http) -> None:
        code, body = http.call(
            "POST",
            WIDGETS,
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}},
        )
        assert code == 422
        assert body["details"]["causes"] == [
            {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.symbol"}
        ]

    def test_exclusive_minimum_max_length_and_max_items(self, http: Http) -> None:
        body = rejected(http, speed=0, title="x" * 11, tags=["a", "b", "c", "d"])
        messages = {c["field"]: c["message"] for c in body["details"]["causes"]}
        assert messages["spec.speed"] == "Invalid value: 0: spec.speed in body should be greater than 0"
        assert messages["spec.title"] == "Too long: may not be more than 10 bytes"
        assert messages["spec.tags"] == "Too many: 4: must have at most 3 items"

    def test_int_or_string_nullable_and_date_time_accept_valid_values(self, http: Http) -> None:
        code, obj = http.call(
            "POST",
            WIDGETS,
            widget(
                "w",
                port="http",
                note=None,
                start="2024-01-01T00:00:00Z",
                end="2024-01-02T00:00:00Z",
                speed=2.5,
            ),
        )
        assert code == 201, obj
        assert obj["spec"]["note"] is None and obj["spec"]["port"] == "http"

    def test_validation_applies_to_updates_and_patches(self, http: Http) -> None:
        http.call("POST", WIDGETS, widget("w"))
        code, body = http.call("PATCH", f"{WIDGETS}/w", {"spec": {"replicas": 0}}, MERGE)
        assert code == 422 and "should be greater than or equal to 1" in body["message"]


class TestPruningAndDefaulting:
    def test_unknown_fields_are_pruned_except_where_preserved(self, http: Http) -> None:
        spec = {
            "junk": 1,
            "params": {"anything": {"deep": [1, 2]}},
            "labels": {"a": "b"},
            "settings": {"retries": 1, "extra": True},
        }
        code, obj = http.call("POST", WIDGETS, {**widget("w", **spec), "top": "level"})
        assert code == 201
        assert "top" not in obj and "junk" not in obj["spec"]
        assert obj["spec"]["params"] == {"anything": {"deep": [1, 2]}}
        assert obj["spec"]["labels"] == {"a": "b"} and "extra" not in obj["spec"]["settings"]

    def test_defaults_apply_at_every_level_including_array_items(self, http: Http) -> None:
        code, obj = http.call("POST", WIDGETS, widget("w", legs=[{"size": 1}, {"side": "short"}]))
        assert code == 201
        spec = obj["spec"]
        assert spec["mode"] == "paper" and spec["speed"] == 1
        assert spec["settings"] == {"retries": 3, "backoff": {"seconds": 5}}
        assert spec["legs"] == [{"size": 1, "side": "long"}, {"side": "short"}]

    def test_a_null_on_a_non_nullable_field_is_dropped_then_defaulted(self, http: Http) -> None:
        code, obj = http.call("POST", WIDGETS, widget("w", mode=None))
        assert code == 201 and obj["spec"]["mode"] == "paper"

    def test_metadata_is_never_pruned(self, http: Http) -> None:
        body = widget("w")
        body["metadata"]["labels"] = {"a": "b"}
        assert http.call("POST", WIDGETS, body)[1]["metadata"]["labels"] == {"a": "b"}


class TestCelRules:
    def test_cross_field_rule_with_a_message(self, http: Http) -> None:
        body = rejected(http, start="2024-01-02T00:00:00Z", end="2024-01-01T00:00:00Z")
        assert body["details"]["causes"] == [
            {
                "reason": "FieldValueInvalid",
                "field": "spec",
                "message": 'Invalid value: "object": end must be after start',
            }
        ]

    def test_root_rule_can_read_the_object_name(self, http: Http) -> None:
        code, body = http.call("POST", WIDGETS, widget("a-much-too-long-widget-name"))
        assert code == 422
        assert body["details"]["causes"] == [
            {
                "reason": "FieldValueInvalid",
                "field": "<nil>",
                "message": 'Invalid value: "object": metadata.name must be at most 20 characters',
            }
        ]

    def test_macro_rule(self, http: Http) -> None:
        body = rejected(http, tags=["short", "much-too-long"])
        assert "tags are at most 8 characters" in body["message"]

    def test_transition_rule_makes_a_field_immutable(self, http: Http) -> None:
        assert http.call("POST", WIDGETS, widget("w", exchange="binance"))[0] == 201
        code, body = http.call("PATCH", f"{WIDGETS}/w", {"spec": {"exchange": "kraken"}}, MERGE)
        assert code == 422
        assert body["details"]["causes"][0] == {
            "reason": "FieldValueInvalid",
            "field": "spec.exchange",
            "message": 'Invalid value: "kraken": exchange is immutable',
        }
        assert http.call("PATCH", f"{WIDGETS}/w", {"spec": {"replicas": 2}}, MERGE)[0] == 200

    @pytest.mark.parametrize(
        ("rule", "self_value", "expected"),
        [
            ("self.a > self.b", {"a": 2, "b": 1}, True),
            ("self.a + 1 == 3 && !(self.b in [1, 2])", {"a": 2, "b": 5}, True),
            ("has(self.x) ? self.x.size() > 2 : true", {"x": "abc"}, True),
            ("has(self.x)", {}, False),
            ("self.name.startsWith('bt') && self.name.matches('^[a-z]+$')", {"name": "btc"}, True),
            (
                "self.items.exists(i, i.k == 'a') && self.items.all(i, i.v >= 0)",
                {"items": [{"k": "a", "v": 1}, {"k": "b", "v": 0}]},
                True,
            ),
            ("size(self.m) == 2 && 'x' in self.m", {"m": {"x": 1, "y": 2}}, True),
            ("self.items.map(i, i * 2).filter(i, i > 2) == [4, 6]", {"items": [1, 2, 3]}, True),
            (
                "duration('1h30m') > duration('90s') && timestamp('2024-01-01T00:00:00Z') < "
                "timestamp('2024-06-01T00:00:00Z')",
                {},
                True,
            ),
            ("7 / 2 == 3 && 7 % 2 == 1 && double(7) / 2.0 == 3.5", {}, True),
        ],
    )
    def test_evaluator_handles_common_rule_shapes(self, rule: str, self_value: Any, expected: bool) -> None:
        assert cel.evaluate(rule, self_value) is expected

    def test_unsupported_rules_are_reported_as_such(self) -> None:
        with pytest.raises(cel.Unsupported):
            cel.evaluate("self.quantity(x)", {})
        with pytest.raises(cel.EvalError):
            cel.evaluate("self.missing == 1", {})
