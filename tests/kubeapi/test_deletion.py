"""Deletion: finalizers and deletionTimestamp, preconditions, propagation policies, garbage collection."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from .conftest import GROUP, VERSION, Api, widget
from .fixtures import KubeAPI
from .rawhttp import Http
from .server import wait_until

WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets"
CMS = "/api/v1/namespaces/default/configmaps"
MERGE = "application/merge-patch+json"


def owned(name: str, owner: dict[str, Any], **meta: Any) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {"metadata": {"name": name, "ownerReferences": [ref], **meta}}


def gone(http: Http, path: str) -> bool:
    return http.call("GET", path)[0] == 404


class TestFinalizers:
    def test_delete_with_finalizers_marks_the_object_and_returns_it(self, api: KubeAPI) -> None:
        http = Http(api.url)
        body = widget("w")
        body["metadata"]["finalizers"] = ["backtestkit.dev/drain"]
        http.call("POST", WIDGETS, body)
        code, obj = http.call("DELETE", f"{WIDGETS}/w")
        assert code == 200 and obj["kind"] == "Widget"
        assert obj["metadata"]["deletionTimestamp"] and obj["metadata"]["deletionGracePeriodSeconds"] == 0
        assert http.call("GET", f"{WIDGETS}/w")[0] == 200

    def test_no_new_finalizers_while_deleting(self, api: KubeAPI) -> None:
        http = Http(api.url)
        body = widget("w")
        body["metadata"]["finalizers"] = ["a/b"]
        http.call("POST", WIDGETS, body)
        http.call("DELETE", f"{WIDGETS}/w")
        code, err = http.call("PATCH", f"{WIDGETS}/w", {"metadata": {"finalizers": ["a/b", "c/d"]}}, MERGE)
        assert (
            code == 422 and "no new finalizers can be added if the object is being deleted" in err["message"]
        )
        assert err["details"]["causes"][0]["field"] == "metadata.finalizers"

    def test_removing_the_last_finalizer_deletes_the_object(self, api: KubeAPI) -> None:
        http = Http(api.url)
        body = widget("w")
        body["metadata"]["finalizers"] = ["a/b", "c/d"]
        http.call("POST", WIDGETS, body)
        http.call("DELETE", f"{WIDGETS}/w")
        code, obj = http.call("PATCH", f"{WIDGETS}/w", {"metadata": {"finalizers": ["c/d"]}}, MERGE)
        assert code == 200 and obj["metadata"]["finalizers"] == ["c/d"]
        code, obj = http.call(
            "PATCH",
            f"{WIDGETS}/w",
            [{"op": "remove", "path": "/metadata/finalizers"}],
            "application/json-patch+json",
        )
        assert code == 200 and gone(http, f"{WIDGETS}/w")

    def test_delete_without_finalizers_is_immediate(self, api: KubeAPI) -> None:
        http = Http(api.url)
        http.call("POST", WIDGETS, widget("w"))
        code, obj = http.call("DELETE", f"{WIDGETS}/w")
        assert code == 200 and obj["metadata"]["name"] == "w" and gone(http, f"{WIDGETS}/w")
        assert http.call("DELETE", f"{WIDGETS}/w")[0] == 404

    def test_delete_preconditions_are_checked(self, api: KubeAPI) -> None:
        http = Http(api.url)
        http.call("POST", WIDGETS, widget("w"))
        code, body = http.call("DELETE", f"{WIDGETS}/w", {"preconditions": {"uid": "nope"}})
        assert code == 409 and "Precondition failed" in body["message"]

    def test_spec_generation_bumps_when_marked_for_deletion(self, api: KubeAPI) -> None:
        http = Http(api.url)
        body = widget("w")
        body["metadata"]["finalizers"] = ["a/b"]
        http.call("POST", WIDGETS, body)
        assert http.call("DELETE", f"{WIDGETS}/w")[1]["metadata"]["generation"] == 2

    def test_unbound_pods_are_deleted_at_once_and_bound_ones_gracefully(self, core: Api) -> None:
        spec = {"containers": [{"name": "c", "image": "i"}], "terminationGracePeriodSeconds": 7}
        core.create_namespaced_pod("default", {"metadata": {"name": "free"}, "spec": spec})
        core.delete_namespaced_pod("free", "default")
        with pytest.raises(client.ApiException):
            core.read_namespaced_pod("free", "default")
        core.create_namespaced_pod(
            "default", {"metadata": {"name": "bound"}, "spec": {**spec, "nodeName": "n1"}}
        )
        core.delete_namespaced_pod("bound", "default")
        pod = core.read_namespaced_pod("bound", "default")
        assert pod.metadata.deletion_timestamp is not None and pod.metadata.deletion_grace_period_seconds == 7
        core.delete_namespaced_pod("bound", "default", grace_period_seconds=0)
        with pytest.raises(client.ApiException):
            core.read_namespaced_pod("bound", "default")

    def test_binding_assigns_a_node_once(self, api: KubeAPI) -> None:
        http = Http(api.url)
        http.call(
            "POST",
            "/api/v1/namespaces/default/pods",
            {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        )
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "p"},
            "target": {"kind": "Node", "name": "n1"},
        }
        assert http.call("POST", "/api/v1/namespaces/default/pods/p/binding", binding)[0] == 201
        assert http.call("GET", "/api/v1/namespaces/default/pods/p")[1]["spec"]["nodeName"] == "n1"
        assert http.call("POST", "/api/v1/namespaces/default/pods/p/binding", binding)[0] == 409


class TestPvcProtection:
    def test_a_claim_in_use_by_a_pod_is_only_deleted_once_the_pod_is_gone(self, api: KubeAPI) -> None:
        http = Http(api.url)
        pvcs, pods = "/api/v1/namespaces/default/persistentvolumeclaims", "/api/v1/namespaces/default/pods"
        _, pvc = http.call(
            "POST",
            pvcs,
            {
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
        assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
        http.call(
            "POST",
            pods,
            {
                "metadata": {"name": "user"},
                "spec": {
                    "containers": [{"name": "c", "image": "i"}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                },
            },
        )
        assert http.call("DELETE", f"{pvcs}/data")[1]["metadata"]["deletionTimestamp"]
        time.sleep(0.3)
        assert http.call("GET", f"{pvcs}/data")[0] == 200
        http.call("DELETE", f"{pods}/user")
        wait_until(lambda: gone(http, f"{pvcs}/data"), timeout=5)


class TestGarbageCollection:
    def test_dependents_of_a_deleted_owner_are_collected(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, owner = http.call("POST", WIDGETS, widget("w"))
        http.call("POST", CMS, owned("dep", owner))
        http.call("POST", CMS, owned("keep", owner, finalizers=["hold/on"]))
        http.call("DELETE", f"{WIDGETS}/w")
        wait_until(lambda: gone(http, f"{CMS}/dep"), timeout=5)
        kept = http.call("GET", f"{CMS}/keep")[1]
        wait_until(lambda: http.call("GET", f"{CMS}/keep")[1]["metadata"].get("deletionTimestamp"), timeout=5)
        assert kept["metadata"]["finalizers"] == ["hold/on"]

    def test_a_dependent_with_a_stale_uid_is_collected(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, owner = http.call("POST", WIDGETS, widget("w"))
        owner["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
        http.call("POST", CMS, owned("dep", owner))
        wait_until(lambda: gone(http, f"{CMS}/dep"), timeout=5)

    def test_foreground_deletion_waits_for_dependents(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, owner = http.call("POST", WIDGETS, widget("w"))
        http.call("POST", CMS, owned("dep", owner, finalizers=["hold/on"]))
        _, obj = http.call("DELETE", f"{WIDGETS}/w", {"propagationPolicy": "Foreground"})
        assert "foregroundDeletion" in obj["metadata"]["finalizers"]
        wait_until(lambda: http.call("GET", f"{CMS}/dep")[1]["metadata"].get("deletionTimestamp"), timeout=5)
        assert http.call("GET", f"{WIDGETS}/w")[0] == 200
        http.call("PATCH", f"{CMS}/dep", {"metadata": {"finalizers": None}}, MERGE)
        wait_until(lambda: gone(http, f"{WIDGETS}/w"), timeout=5)

    def test_orphan_deletion_keeps_dependents_and_strips_their_owner_reference(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, owner = http.call("POST", WIDGETS, widget("w"))
        http.call("POST", CMS, owned("dep", owner))
        http.call("DELETE", f"{WIDGETS}/w", propagationPolicy="Orphan")
        dep = http.call("GET", f"{CMS}/dep")[1]
        assert "ownerReferences" not in dep["metadata"]

    def test_jobs_orphan_their_pods_by_default_like_batch_v1(self, api: KubeAPI) -> None:
        http = Http(api.url)
        job = {
            "metadata": {"name": "j"},
            "spec": {
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}
            },
        }
        _, job = http.call("POST", "/apis/batch/v1/namespaces/default/jobs", job)
        pod = owned("jp", job, spec=None)
        pod["spec"] = {"containers": [{"name": "c", "image": "i"}]}
        pod["metadata"].pop("spec")
        http.call("POST", "/api/v1/namespaces/default/pods", pod)
        http.call("DELETE", "/apis/batch/v1/namespaces/default/jobs/j")
        assert http.call("GET", "/api/v1/namespaces/default/pods/jp")[0] == 200
