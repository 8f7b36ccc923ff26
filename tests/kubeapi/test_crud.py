"""Create/read/update/delete semantics: metadata, status codes, Status bodies, concurrency, lists."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from .conftest import GROUP, VERSION, Api, widget
from .fixtures import KubeAPI
from .rawhttp import Http

WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets"


class TestCreate:
    def test_create_returns_201_with_uid_timestamp_resource_version_and_generation(
        self, api: KubeAPI
    ) -> None:
        code, body = Http(api.url).call(
            "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "a"}, "data": {"k": "v"}}
        )
        assert code == 201
        meta = body["metadata"]
        assert len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z")
        assert meta["generation"] == 1 and meta["resourceVersion"].isdigit()
        assert body["kind"] == "ConfigMap" and body["apiVersion"] == "v1"

    def test_generate_name_gets_a_random_five_character_suffix(self, core: Api) -> None:
        cm = core.create_namespaced_config_map("default", {"metadata": {"generateName": "cfg-"}})
        assert cm.metadata.name.startswith("cfg-") and len(cm.metadata.name) == len("cfg-") + 5

    def test_namespace_comes_from_the_url_and_must_exist(self, api: KubeAPI) -> None:
        http = Http(api.url)
        code, body = http.call("POST", "/api/v1/namespaces/missing/configmaps", {"metadata": {"name": "a"}})
        assert code == 404 and body["message"] == 'namespaces "missing" not found'
        assert body["details"] == {"name": "missing", "kind": "namespaces"}
        code, body = http.call(
            "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "a", "namespace": "other"}}
        )
        assert code == 400

    def test_second_create_is_409_already_exists_with_a_status_body(self, api: KubeAPI) -> None:
        http = Http(api.url)
        assert http.call("POST", WIDGETS, widget("w"))[0] == 201
        code, body = http.call("POST", WIDGETS, widget("w"))
        assert code == 409
        assert body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "code": 409,
            "reason": "AlreadyExists",
            "message": f'widgets.{GROUP} "w" already exists',
            "details": {"name": "w", "group": GROUP, "kind": "widgets"},
        }

    def test_missing_name_and_invalid_names_are_422(self, api: KubeAPI) -> None:
        http = Http(api.url)
        code, body = http.call("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {}})
        assert code == 422 and "name or generateName is required" in body["message"]
        code, body = http.call(
            "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "Bad_Name"}}
        )
        assert code == 422 and body["details"]["causes"][0]["field"] == "metadata.name"

    def test_creating_in_default_namespace_works_out_of_the_box(self, core: Api) -> None:
        names = {n.metadata.name for n in core.list_namespace().items}
        assert {"default", "kube-system"} <= names
        assert core.read_namespace("default").status.phase == "Active"


class TestReadUpdate:
    def test_get_missing_object_is_404_not_found(self, api: KubeAPI) -> None:
        code, body = Http(api.url).call("GET", f"{WIDGETS}/nope")
        assert code == 404 and body["reason"] == "NotFound"
        assert body["message"] == f'widgets.{GROUP} "nope" not found'

    def test_resource_versions_are_global_and_increase(self, core: Api) -> None:
        a = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
        b = core.create_namespaced_secret("default", {"metadata": {"name": "b"}})
        a2 = core.patch_namespaced_config_map("a", "default", {"data": {"x": "1"}})
        rvs = [
            int(a.metadata.resource_version),
            int(b.metadata.resource_version),
            int(a2.metadata.resource_version),
        ]
        assert rvs == sorted(rvs) and len(set(rvs)) == 3

    def test_update_with_a_stale_resource_version_is_409_conflict(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, obj = http.call("POST", WIDGETS, widget("w"))
        obj["spec"]["replicas"] = 2
        assert http.call("PUT", f"{WIDGETS}/w", obj)[0] == 200
        obj["spec"]["replicas"] = 3
        code, body = http.call("PUT", f"{WIDGETS}/w", obj)
        assert code == 409 and body["reason"] == "Conflict"
        assert (
            "the object has been modified; please apply your changes to the latest version" in body["message"]
        )

    def test_custom_resource_update_requires_a_resource_version(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, obj = http.call("POST", WIDGETS, widget("w"))
        del obj["metadata"]["resourceVersion"]
        code, body = http.call("PUT", f"{WIDGETS}/w", obj)
        assert code == 422 and "must be specified for an update" in body["message"]

    def test_generation_bumps_only_when_the_spec_or_data_changes(self, core: Api) -> None:
        cm = core.create_namespaced_config_map("default", {"metadata": {"name": "g"}, "data": {"a": "1"}})
        cm = core.patch_namespaced_config_map("g", "default", {"metadata": {"labels": {"x": "y"}}})
        assert cm.metadata.generation == 1
        cm = core.patch_namespaced_config_map("g", "default", {"data": {"a": "2"}})
        assert cm.metadata.generation == 2

    def test_a_no_op_update_keeps_the_resource_version(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, obj = http.call("POST", WIDGETS, widget("w"))
        _, same = http.call("PUT", f"{WIDGETS}/w", obj)
        assert same["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]

    def test_name_in_body_must_match_url(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, obj = http.call("POST", WIDGETS, widget("w"))
        obj["metadata"]["name"] = "other"
        assert http.call("PUT", f"{WIDGETS}/w", obj)[0] == 400

    def test_unsupported_method_is_405(self, api: KubeAPI) -> None:
        code, body = Http(api.url).call("PUT", WIDGETS, widget("w"))
        assert code == 405 and body["reason"] == "MethodNotAllowed"


class TestBuiltinRules:
    @pytest.mark.parametrize(
        ("labels", "bad"),
        [
            ({"app": "a b"}, "a valid label must be an empty string"),
            ({"x" * 64: "v"}, "name part must consist"),
            ({"app": "v" * 64}, "must be no more than 63 characters"),
            ({"a/b/c": "v"}, "name part must consist"),
        ],
    )
    def test_label_keys_and_values_are_validated(
        self, api: KubeAPI, labels: dict[str, str], bad: str
    ) -> None:
        code, body = Http(api.url).call(
            "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "l", "labels": labels}}
        )
        assert code == 422 and bad in body["message"], body
        assert body["details"]["causes"][0]["field"] == "metadata.labels"

    def test_qualified_label_keys_are_accepted(self, core: Api) -> None:
        labels = {"app.kubernetes.io/name": "backtest-kit-runner", "backtestkit.dev/livetrader": "eth-1"}
        assert core.create_namespaced_config_map("default", {"metadata": {"name": "l", "labels": labels}})

    def test_pod_spec_is_immutable_except_images(self, core: Api) -> None:
        core.create_namespaced_pod(
            "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}
        )
        assert core.patch_namespaced_pod(
            "p", "default", {"spec": {"containers": [{"name": "c", "image": "i:2"}]}}
        )
        with pytest.raises(client.ApiException) as err:
            core.patch_namespaced_pod(
                "p", "default", {"spec": {"containers": [{"name": "c", "args": ["x"]}]}}
            )
        assert err.value.status == 422 and "pod updates may not change fields" in str(err.value.body)

    def test_job_template_is_immutable(self, k8s: Api) -> None:
        batch: Api = client.BatchV1Api(k8s)
        batch.create_namespaced_job(
            "default",
            {
                "metadata": {"name": "j"},
                "spec": {
                    "template": {
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}
                    }
                },
            },
        )
        with pytest.raises(client.ApiException) as err:
            batch.patch_namespaced_job(
                "j", "default", {"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}}
            )
        assert err.value.status == 422 and "field is immutable" in str(err.value.body)

    def test_immutable_config_maps_reject_data_changes(self, core: Api) -> None:
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "i"}, "data": {"a": "1"}, "immutable": True}
        )
        with pytest.raises(client.ApiException) as err:
            core.patch_namespaced_config_map("i", "default", {"data": {"a": "2"}})
        assert err.value.status == 422

    def test_every_namespace_gets_a_default_service_account_that_pods_need(self, core: Api) -> None:
        core.create_namespace({"metadata": {"name": "fresh"}})
        assert core.read_namespaced_service_account("default", "fresh").metadata.name == "default"
        pod = {
            "metadata": {"name": "p"},
            "spec": {"serviceAccountName": "robot", "containers": [{"name": "c", "image": "i"}]},
        }
        with pytest.raises(client.ApiException) as err:
            core.create_namespaced_pod("fresh", pod)
        message = json.loads(str(err.value.body))["message"]
        assert err.value.status == 403 and message.endswith('serviceaccount "robot" not found')
        core.create_namespaced_service_account("fresh", {"metadata": {"name": "robot"}})
        assert core.create_namespaced_pod("fresh", pod).spec.service_account_name == "robot"

    def test_the_default_namespace_cannot_be_deleted(self, core: Api) -> None:
        with pytest.raises(client.ApiException) as err:
            core.delete_namespace("default")
        assert err.value.status == 403


class TestList:
    @pytest.fixture
    def labelled(self, core: Api) -> None:
        for name, labels in (("a", {"app": "x", "tier": "web"}), ("b", {"app": "y"}), ("c", {"tier": "db"})):
            core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})
        core.create_namespace({"metadata": {"name": "other"}})
        core.create_namespaced_config_map("other", {"metadata": {"name": "d", "labels": {"app": "x"}}})

    @pytest.mark.parametrize(
        ("selector", "expected"),
        [
            ("app=x", ["a"]),
            ("app==x", ["a"]),
            ("app!=x", ["b", "c"]),
            ("app in (x,y)", ["a", "b"]),
            ("app notin (x)", ["b", "c"]),
            ("tier", ["a", "c"]),
            ("!tier", ["b"]),
            ("app=x,tier=web", ["a"]),
        ],
    )
    def test_label_selectors_filter_like_the_real_server(
        self, core: Api, labelled: None, selector: str, expected: list[str]
    ) -> None:
        items = core.list_namespaced_config_map("default", label_selector=selector).items
        assert [i.metadata.name for i in items if i.metadata.name != "kube-root-ca.crt"] == expected

    def test_list_has_kind_list_and_a_resource_version(self, api: KubeAPI, labelled: None) -> None:
        code, body = Http(api.url).call("GET", "/api/v1/namespaces/default/configmaps")
        assert (
            code == 200 and body["kind"] == "ConfigMapList" and body["metadata"]["resourceVersion"].isdigit()
        )

    def test_cluster_wide_list_spans_namespaces(self, core: Api, labelled: None) -> None:
        items = core.list_config_map_for_all_namespaces(label_selector="app=x").items
        assert sorted((i.metadata.namespace, i.metadata.name) for i in items) == [
            ("default", "a"),
            ("other", "d"),
        ]

    def test_field_selectors_on_name_and_namespace(self, core: Api, labelled: None) -> None:
        items = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=other").items
        assert [i.metadata.name for i in items] == ["d"]
        items = core.list_namespaced_config_map("default", field_selector="metadata.name!=a").items
        assert [i.metadata.name for i in items] == ["b", "c"]

    def test_unsupported_field_selector_is_400(self, api: KubeAPI) -> None:
        code, body = Http(api.url).call("GET", "/api/v1/configmaps", fieldSelector="data.x=1")
        assert code == 400 and "field label not supported" in body["message"]

    def test_pod_status_phase_field_selector(self, core: Api) -> None:
        core.create_namespaced_pod(
            "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        )
        assert [
            p.metadata.name
            for p in core.list_pod_for_all_namespaces(field_selector="status.phase=Pending").items
        ] == ["p"]
        assert core.list_pod_for_all_namespaces(field_selector="status.phase=Running").items == []

    def test_limit_and_continue_page_through_results(self, api: KubeAPI, labelled: None) -> None:
        http = Http(api.url)
        _, first = http.call("GET", "/api/v1/namespaces/default/configmaps", limit=2)
        assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
        assert first["metadata"]["remainingItemCount"] == 1
        _, second = http.call(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            limit=2,
            **{"continue": first["metadata"]["continue"]},
        )
        assert [i["metadata"]["name"] for i in second["items"]] == ["c"] and "continue" not in second[
            "metadata"
        ]

    def test_cluster_wide_custom_resource_list(self, api: KubeAPI, custom: Api, core: Api) -> None:
        core.create_namespace({"metadata": {"name": "n2"}})
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", "widgets", widget("w1"))
        custom.create_namespaced_custom_object(GROUP, VERSION, "n2", "widgets", widget("w2"))
        items = custom.list_cluster_custom_object(GROUP, VERSION, "widgets")["items"]
        assert sorted(i["metadata"]["name"] for i in items) == ["w1", "w2"]
        assert all(i["kind"] == "Widget" for i in items)


class TestNamespaces:
    def test_deleting_a_namespace_removes_its_content_then_itself(self, core: Api) -> None:
        from .server import wait_until

        core.create_namespace({"metadata": {"name": "tmp"}})
        core.create_namespaced_config_map("tmp", {"metadata": {"name": "x"}})
        ns = core.delete_namespace("tmp")
        assert core.read_namespace("tmp").status.phase == "Terminating" or ns is not None
        wait_until(lambda: "tmp" not in {n.metadata.name for n in core.list_namespace().items}, timeout=5)
        with pytest.raises(client.ApiException) as err:
            core.read_namespaced_config_map("x", "tmp")
        assert err.value.status == 404
