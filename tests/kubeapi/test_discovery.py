"""Discovery: clients find the built-in kinds, the CRDs loaded at start-up and CRDs created later."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from .conftest import GROUP, Api
from .fixtures import KubeAPI
from .rawhttp import Http


def _resources(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in body["resources"]}


class TestDiscoveryDocuments:
    def test_version_and_core_group_are_served(self, api: KubeAPI) -> None:
        http = Http(api.url)
        assert http.call("GET", "/version")[1]["major"] == "1"
        assert http.call("GET", "/api")[1]["versions"] == ["v1"]

    def test_core_v1_lists_builtin_resources_with_verbs_kinds_and_subresources(self, api: KubeAPI) -> None:
        code, body = Http(api.url).call("GET", "/api/v1")
        assert code == 200 and body["kind"] == "APIResourceList" and body["groupVersion"] == "v1"
        res = _resources(body)
        for name in (
            "namespaces",
            "pods",
            "persistentvolumeclaims",
            "configmaps",
            "secrets",
            "services",
            "serviceaccounts",
            "events",
            "pods/status",
            "pods/log",
        ):
            assert name in res, name
        assert res["pods"]["namespaced"] is True and res["pods"]["kind"] == "Pod"
        assert "watch" in res["pods"]["verbs"] and "po" in res["pods"]["shortNames"]
        assert res["namespaces"]["namespaced"] is False

    def test_apis_lists_builtin_groups_and_crd_groups(self, api: KubeAPI) -> None:
        body = Http(api.url).call("GET", "/apis")[1]
        names = {g["name"] for g in body["groups"]}
        assert {"batch", "coordination.k8s.io", "apiextensions.k8s.io", "events.k8s.io", GROUP} <= names

    def test_crd_group_version_shows_short_names_and_status_subresource(self, api: KubeAPI) -> None:
        body = Http(api.url).call("GET", f"/apis/{GROUP}/v1")[1]
        res = _resources(body)
        assert res["widgets"]["kind"] == "Widget" and res["widgets"]["shortNames"] == ["wd"]
        assert "widgets/status" in res and "gadgets/status" not in res
        assert res["gadgets"]["namespaced"] is False
        group = Http(api.url).call("GET", f"/apis/{GROUP}")[1]
        assert group["preferredVersion"]["groupVersion"] == f"{GROUP}/v1"

    def test_unknown_group_is_404(self, api: KubeAPI) -> None:
        assert Http(api.url).call("GET", "/apis/nope.example.com/v1")[0] == 404

    def test_official_client_reads_discovery(self, k8s: Api) -> None:
        names = [r.name for r in client.BatchV1Api(k8s).get_api_resources().resources]
        assert "jobs" in names and "jobs/status" in names


class TestRuntimeCrds:
    def test_a_crd_posted_at_runtime_is_served_and_removed_with_its_instances(self, api: KubeAPI) -> None:
        http = Http(api.url)
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "things", "singular": "thing", "kind": "Thing", "shortNames": ["th"]},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {"type": "object", "properties": {"n": {"type": "integer"}}}
                                },
                            }
                        },
                    }
                ],
            },
        }
        code, created = http.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        assert code == 201
        assert {c["type"] for c in created["status"]["conditions"]} == {"NamesAccepted", "Established"}
        assert "things" in _resources(http.call("GET", "/apis/example.com/v1")[1])
        code, _ = http.call(
            "POST",
            "/apis/example.com/v1/namespaces/default/things",
            {
                "apiVersion": "example.com/v1",
                "kind": "Thing",
                "metadata": {"name": "t"},
                "spec": {"n": 1, "x": 2},
            },
        )
        assert code == 201
        assert http.call("GET", "/apis/example.com/v1/namespaces/default/things/t")[1]["spec"] == {"n": 1}
        assert (
            http.call("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/things.example.com")[
                0
            ]
            == 200
        )
        from .server import wait_until

        wait_until(lambda: http.call("GET", "/apis/example.com/v1")[0] == 404, timeout=5)

    def test_crd_name_must_be_plural_dot_group(self, api: KubeAPI) -> None:
        crd = {
            "metadata": {"name": "wrong"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "things", "kind": "Thing"},
                "versions": [{"name": "v1", "served": True, "storage": True}],
            },
        }
        code, body = Http(api.url).call(
            "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
        )
        assert code == 422 and 'must be spec.names.plural+"."+spec.group' in body["message"]
