"""The patch flavours: JSON merge, JSON patch (RFC 6902), strategic merge and server-side apply."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import GROUP, VERSION, Api, widget
from .fixtures import KubeAPI
from .patching import json_patch, merge_patch, strategic_merge_patch
from .rawhttp import Http

WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets"
MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
SMP = "application/strategic-merge-patch+json"


@pytest.fixture
def http(api: KubeAPI) -> Http:
    h = Http(api.url)
    h.call("POST", WIDGETS, widget("w", tags=["a", "b"], labels={"x": "1"}))
    return h


class TestMergePatch:
    def test_merge_patch_merges_maps_replaces_lists_and_deletes_nulls(self, http: Http) -> None:
        code, obj = http.call(
            "PATCH", f"{WIDGETS}/w", {"spec": {"tags": ["c"], "labels": {"x": None, "y": "2"}}}, MERGE
        )
        assert code == 200
        assert obj["spec"]["tags"] == ["c"] and obj["spec"]["labels"] == {"y": "2"}
        assert obj["spec"]["symbol"] == "BTCUSDT"

    def test_merge_patch_with_a_stale_resource_version_is_409(self, http: Http) -> None:
        code, body = http.call(
            "PATCH", f"{WIDGETS}/w", {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}}, MERGE
        )
        assert code == 409 and body["reason"] == "Conflict"

    def test_patching_a_missing_object_is_404(self, http: Http) -> None:
        assert http.call("PATCH", f"{WIDGETS}/nope", {"spec": {}}, MERGE)[0] == 404

    def test_custom_objects_client_patches_with_merge_patch(self, http: Http, custom: Api) -> None:
        obj = custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", "widgets", "w", {"spec": {"replicas": 3}}
        )
        assert obj["spec"]["replicas"] == 3 and obj["metadata"]["generation"] == 2

    def test_merge_patch_function_follows_rfc7386(self) -> None:
        assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == {
            "a": {"c": 2, "e": 3},
            "d": [2],
        }


class TestJsonPatch:
    def test_add_remove_replace_move_copy_apply_in_order(self, http: Http) -> None:
        ops = [
            {"op": "add", "path": "/spec/tags/-", "value": "c"},
            {"op": "remove", "path": "/spec/tags/0"},
            {"op": "replace", "path": "/spec/symbol", "value": "ETHUSDT"},
            {"op": "copy", "from": "/spec/symbol", "path": "/spec/title"},
            {"op": "move", "from": "/spec/labels/x", "path": "/spec/labels/z"},
            {"op": "add", "path": "/metadata/labels", "value": {}},
            {"op": "add", "path": "/metadata/labels/example.com~1team", "value": "quant"},
        ]
        code, obj = http.call("PATCH", f"{WIDGETS}/w", ops, JSON)
        assert code == 200, obj
        assert obj["spec"]["tags"] == ["b", "c"] and obj["spec"]["symbol"] == "ETHUSDT"
        assert obj["spec"]["title"] == "ETHUSDT" and obj["spec"]["labels"] == {"z": "1"}
        assert obj["metadata"]["labels"] == {"example.com/team": "quant"}

    def test_a_failing_test_operation_is_422_and_changes_nothing(self, http: Http) -> None:
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
            {"op": "replace", "path": "/spec/symbol", "value": "XX"},
        ]
        code, body = http.call("PATCH", f"{WIDGETS}/w", ops, JSON)
        assert code == 422 and body["kind"] == "Status"
        assert http.call("GET", f"{WIDGETS}/w")[1]["spec"]["symbol"] == "BTCUSDT"

    def test_a_passing_test_operation_lets_the_patch_through(self, http: Http) -> None:
        rv = http.call("GET", f"{WIDGETS}/w")[1]["metadata"]["resourceVersion"]
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
        ]
        code, obj = http.call("PATCH", f"{WIDGETS}/w", ops, JSON)
        assert code == 200 and obj["metadata"]["finalizers"] == ["x/y"]

    def test_removing_a_missing_path_is_422_and_an_object_body_is_400(self, http: Http) -> None:
        assert http.call("PATCH", f"{WIDGETS}/w", [{"op": "remove", "path": "/spec/nope"}], JSON)[0] == 422
        assert http.call("PATCH", f"{WIDGETS}/w", {"spec": {}}, JSON)[0] == 400

    def test_json_patch_function_escapes_pointer_tokens(self) -> None:
        doc: dict[str, Any] = {"a": {"x/y": 1, "m~n": 2}}
        out = json_patch(
            doc, [{"op": "replace", "path": "/a/x~1y", "value": 3}, {"op": "remove", "path": "/a/m~0n"}]
        )
        assert out == {"a": {"x/y": 3}} and doc == {"a": {"x/y": 1, "m~n": 2}}


class TestStrategicMergePatch:
    def test_containers_merge_by_name_on_a_live_pod(self, core: Api) -> None:
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "p"},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "i:1", "env": [{"name": "X", "value": "1"}]},
                        {"name": "b", "image": "j:1"},
                    ]
                },
            },
        )
        pod = core.patch_namespaced_pod(
            "p", "default", {"spec": {"containers": [{"name": "b", "image": "j:2"}]}}
        )
        a, b = pod.spec.containers
        assert (a.name, a.image, a.env[0].value, b.name, b.image) == ("a", "i:1", "1", "b", "j:2")

    def test_env_and_ports_merge_by_key(self) -> None:
        target = {
            "containers": [
                {
                    "name": "a",
                    "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                    "ports": [{"containerPort": 80}],
                }
            ]
        }
        patch = {
            "containers": [
                {
                    "name": "a",
                    "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}],
                    "ports": [{"containerPort": 81}],
                }
            ]
        }
        out = strategic_merge_patch(target, patch)["containers"][0]
        assert [(e["name"], e["value"]) for e in out["env"]] == [("X", "1"), ("Y", "3"), ("Z", "4")]
        assert [p["containerPort"] for p in out["ports"]] == [80, 81]

    def test_conditions_merge_by_type_and_patch_delete_directive_removes(self) -> None:
        target = {
            "status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]},
            "metadata": {"finalizers": ["f1"]},
        }
        patch = {
            "status": {"conditions": [{"type": "B", "status": "True"}, {"type": "A", "$patch": "delete"}]},
            "metadata": {"finalizers": ["f2"]},
        }
        out = strategic_merge_patch(target, patch)
        assert out["status"]["conditions"] == [{"type": "B", "status": "True"}]
        assert out["metadata"]["finalizers"] == ["f1", "f2"]
        out = strategic_merge_patch(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}})
        assert out["metadata"]["finalizers"] == ["f2"]

    def test_strategic_merge_on_a_custom_resource_is_415(self, http: Http) -> None:
        code, body = http.call("PATCH", f"{WIDGETS}/w", {"spec": {"replicas": 2}}, SMP)
        assert code == 415 and body["reason"] == "UnsupportedMediaType"


class TestApplyPatch:
    def test_apply_creates_then_updates_and_needs_a_field_manager(self, api: KubeAPI) -> None:
        http = Http(api.url)
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ap"}, "data": {"a": "1"}}
        path = "/api/v1/namespaces/default/configmaps/ap"
        assert http.call("PATCH", path, body, "application/apply-patch+yaml")[0] == 422
        code, _ = http.call("PATCH", path, body, "application/apply-patch+yaml", fieldManager="me")
        assert code == 201 or code == 200
        body["data"] = {"a": "2"}
        code, obj = http.call("PATCH", path, body, "application/apply-patch+yaml", fieldManager="me")
        assert code == 200 and obj["data"] == {"a": "2"}
