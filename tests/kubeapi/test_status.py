"""Status subresource separation and what bumps metadata.generation."""

from __future__ import annotations

from .conftest import GROUP, VERSION, Api, widget
from .fixtures import KubeAPI
from .rawhttp import Http

WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets"
MERGE = "application/merge-patch+json"


class TestStatusSubresource:
    def test_status_is_dropped_on_create(self, api: KubeAPI) -> None:
        body = widget("w")
        body["status"] = {"phase": "Fake"}
        assert "status" not in Http(api.url).call("POST", WIDGETS, body)[1]

    def test_writes_to_the_main_resource_ignore_status(self, api: KubeAPI) -> None:
        http = Http(api.url)
        http.call("POST", WIDGETS, widget("w"))
        http.call("PATCH", f"{WIDGETS}/w/status", {"status": {"phase": "Running"}}, MERGE)
        code, obj = http.call(
            "PATCH", f"{WIDGETS}/w", {"status": {"phase": "Hacked"}, "spec": {"replicas": 2}}, MERGE
        )
        assert code == 200 and obj["status"] == {"phase": "Running"} and obj["spec"]["replicas"] == 2

    def test_writes_to_status_ignore_everything_else_and_keep_generation(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, obj = http.call("POST", WIDGETS, widget("w"))
        obj["spec"]["replicas"] = 4
        obj["metadata"]["labels"] = {"x": "y"}
        obj["status"] = {"phase": "Running"}
        code, out = http.call("PUT", f"{WIDGETS}/w/status", obj)
        assert code == 200
        assert out["status"] == {"phase": "Running"} and "replicas" not in out["spec"]
        assert "labels" not in out["metadata"] and out["metadata"]["generation"] == 1
        assert int(out["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])

    def test_status_writes_still_check_the_resource_version(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, obj = http.call("POST", WIDGETS, widget("w"))
        http.call("PATCH", f"{WIDGETS}/w", {"spec": {"replicas": 2}}, MERGE)
        obj["status"] = {"phase": "x"}
        assert http.call("PUT", f"{WIDGETS}/w/status", obj)[0] == 409

    def test_kubernetes_client_status_patch(self, api: KubeAPI, custom: Api) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", "widgets", widget("w"))
        out = custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", "widgets", "w", {"status": {"ready": True}}
        )
        assert out["status"] == {"ready": True} and out["metadata"]["generation"] == 1

    def test_without_a_status_subresource_status_is_ordinary_content(self, api: KubeAPI) -> None:
        http = Http(api.url)
        path = f"/apis/{GROUP}/{VERSION}/gadgets"
        _, obj = http.call(
            "POST",
            path,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Gadget",
                "metadata": {"name": "g"},
                "status": {"a": 1},
            },
        )
        assert obj["status"] == {"a": 1}
        _, obj = http.call("PATCH", f"{path}/g", {"status": {"a": 2}}, MERGE)
        assert obj["status"] == {"a": 2} and obj["metadata"]["generation"] == 2
        assert http.call("GET", f"{path}/g/status")[0] == 404

    def test_pod_status_is_written_through_the_status_subresource(self, core: Api) -> None:
        core.create_namespaced_pod(
            "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        )
        assert core.read_namespaced_pod("p", "default").status.phase == "Pending"
        pod = core.patch_namespaced_pod_status(
            "p", "default", {"status": {"phase": "Running", "podIP": "1.2.3.4"}}
        )
        assert pod.status.phase == "Running" and pod.metadata.generation == 1
        pod = core.patch_namespaced_pod("p", "default", {"status": {"phase": "Failed"}})
        assert pod.status.phase == "Running"
