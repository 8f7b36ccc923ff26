"""Behaviour the real API server has and the operator must survive: QoS classes fixed at creation,
the etcd object size limit, the request body limit; and the request log the RBAC audit reads."""

from __future__ import annotations

from typing import Any

import pytest

from . import audit
from .fixtures import KubeAPI
from .qos import qos_class
from .rawhttp import Http

PODS = "/api/v1/namespaces/default/pods"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
MERGE = "application/merge-patch+json"


def pod(name: str, resources: dict[str, Any] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "x"}
    if resources is not None:
        container["resources"] = resources
    return {"metadata": {"name": name}, "spec": {"containers": [container]}}


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        (None, "BestEffort"),
        ({"requests": {"cpu": "50m", "memory": "128Mi"}}, "Burstable"),
        ({"requests": {"cpu": "50m"}, "limits": {"memory": "512Mi"}}, "Burstable"),
        ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
        ({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
        (
            {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "Burstable",
        ),
    ],
)
def test_the_qos_class_follows_the_resources_as_the_real_server_computes_it(
    resources: dict[str, Any] | None, qos: str
) -> None:
    assert qos_class(pod("p", resources)["spec"]) == qos


def test_a_new_pod_gets_its_qos_class_and_a_status_update_may_not_change_it(api: KubeAPI) -> None:
    http = Http(api.url)
    code, created = http.call("POST", PODS, pod("p", {"requests": {"cpu": "50m", "memory": "64Mi"}}))
    assert code == 201 and created["status"]["qosClass"] == "Burstable"
    code, body = http.call("PATCH", f"{PODS}/p/status", {"status": {"qosClass": "BestEffort"}}, MERGE)
    assert code == 422
    assert "status.qosClass" in body["message"] and "field is immutable" in body["message"]
    code, _ = http.call("PATCH", f"{PODS}/p/status", {"status": {"phase": "Running"}}, MERGE)
    assert code == 200


def test_an_object_larger_than_etcd_accepts_is_a_500_and_a_huge_body_a_413(api: KubeAPI) -> None:
    http = Http(api.url)
    big = {"metadata": {"name": "big"}, "data": {"k": "x" * (2 * 1024 * 1024)}}
    code, body = http.call("POST", CONFIGMAPS, big)
    assert code == 500 and body["message"] == "etcdserver: request is too large"
    assert http.call("GET", f"{CONFIGMAPS}/big")[0] == 404
    huge = {"metadata": {"name": "huge"}, "data": {"k": "x" * (4 * 1024 * 1024)}}
    assert http.call("POST", CONFIGMAPS, huge)[0] == 413


def test_the_request_log_lists_what_was_called_by_whom(api: KubeAPI) -> None:
    http = Http(api.url)
    http.call("DELETE", "/_test/requests")
    http.call("GET", f"{CONFIGMAPS}/missing")
    code, log = http.call("GET", "/_test/requests")
    assert code == 200
    assert [(r["method"], r["path"]) for r in log["items"]] == [("GET", f"{CONFIGMAPS}/missing")]


@pytest.mark.parametrize(
    ("method", "path", "query", "needed"),
    [
        ("GET", "/api/v1/namespaces/ns/pods/p", {}, ("", "pods", "get")),
        ("GET", "/api/v1/namespaces/ns/pods", {}, ("", "pods", "list")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("", "pods", "watch")),
        ("POST", "/api/v1/namespaces/ns/events", {}, ("", "events", "create")),
        (
            "PATCH",
            "/apis/backtestkit.dev/v1alpha1/namespaces/ns/livetraders/x/status",
            {},
            ("backtestkit.dev", "livetraders/status", "patch"),
        ),
        ("DELETE", "/apis/batch/v1/namespaces/ns/jobs/j", {}, ("batch", "jobs", "delete")),
        ("GET", "/apis", {}, None),
        ("GET", "/api/v1", {}, None),
    ],
)
def test_each_request_maps_to_the_permission_the_authorizer_checks(
    method: str, path: str, query: dict[str, str], needed: tuple[str, str, str] | None
) -> None:
    assert audit.permission(method, path, query) == needed
