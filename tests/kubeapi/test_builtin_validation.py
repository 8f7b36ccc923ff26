"""Built-in kinds are validated like on a real cluster, so operator manifests cannot be silently wrong."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from .builtin_validation import parse_quantity
from .fixtures import KubeAPI
from .rawhttp import Http

PODS = "/api/v1/namespaces/default/pods"


def pod(**container: Any) -> dict[str, Any]:
    spec = container.pop("spec", {})
    return {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", **container}], **spec},
    }


def causes(api: KubeAPI, path: str, body: dict[str, Any]) -> dict[str, str]:
    code, status = Http(api.url).call("POST", path, body)
    assert code == 422, status
    return {c["field"]: c["message"] for c in status["details"]["causes"]}


class TestPods:
    def test_a_volume_mount_must_name_a_volume(self, api: KubeAPI) -> None:
        found = causes(api, PODS, pod(volumeMounts=[{"name": "state", "mountPath": "/data"}]))
        assert found == {"spec.containers[0].volumeMounts[0].name": 'Not found: "state"'}

    def test_container_names_and_ports_are_checked(self, api: KubeAPI) -> None:
        body = pod(name="Runner", ports=[{"name": "http-port-too-long", "containerPort": 70000}])
        found = causes(api, PODS, body)
        assert set(found) == {
            "spec.containers[0].name",
            "spec.containers[0].ports[0].containerPort",
            "spec.containers[0].ports[0].name",
        }
        assert "a lowercase RFC 1123 label" in found["spec.containers[0].name"]

    def test_resource_quantities_must_parse_and_requests_fit_limits(self, api: KubeAPI) -> None:
        found = causes(
            api, PODS, pod(resources={"requests": {"cpu": "2", "memory": "lots"}, "limits": {"cpu": "500m"}})
        )
        assert found["spec.containers[0].resources.requests[memory]"].startswith(
            'Invalid value: "lots": must match'
        )
        assert found["spec.containers[0].resources.requests"] == (
            'Invalid value: "2": must be less than or equal to cpu limit of 500m'
        )

    def test_job_templates_are_validated_too(self, api: KubeAPI) -> None:
        job = {
            "metadata": {"name": "j"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "c", "image": "i", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}
                        ],
                    }
                }
            },
        }
        found = causes(api, "/apis/batch/v1/namespaces/default/jobs", job)
        assert "spec.template.spec.containers[0].volumeMounts[0].name" in found

    def test_a_valid_runner_like_pod_is_accepted(self, api: KubeAPI) -> None:
        body = pod(
            ports=[{"name": "http", "containerPort": 8080}],
            resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            volumeMounts=[{"name": "state", "mountPath": "/var/lib/backtest-kit"}],
            spec={"volumes": [{"name": "state", "persistentVolumeClaim": {"claimName": "s"}}]},
        )
        assert Http(api.url).call("POST", PODS, body)[0] == 201


class TestStorageAndData:
    def test_a_claim_needs_access_modes_and_a_size(self, api: KubeAPI) -> None:
        found = causes(
            api, "/api/v1/namespaces/default/persistentvolumeclaims", {"metadata": {"name": "c"}, "spec": {}}
        )
        assert set(found) == {"spec.accessModes", "spec.resources[storage]"}

    def test_secret_data_must_be_base64_and_keys_valid(self, api: KubeAPI) -> None:
        http = Http(api.url)
        code, body = http.call(
            "POST",
            "/api/v1/namespaces/default/secrets",
            {"metadata": {"name": "s"}, "data": {"k": "not base64!"}},
        )
        assert code == 400 and "illegal base64 data" in body["message"]
        found = causes(
            api,
            "/api/v1/namespaces/default/configmaps",
            {"metadata": {"name": "c"}, "data": {"bad key": "v"}},
        )
        assert "a valid config key" in found["data[bad key]"]
        code, secret = http.call(
            "POST",
            "/api/v1/namespaces/default/secrets",
            {"metadata": {"name": "ok"}, "stringData": {"token": "abc"}},
        )
        assert code == 201 and secret["data"] == {"token": "YWJj"} and "stringData" not in secret

    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("500m", Decimal("0.5")),
            ("1Gi", Decimal(2**30)),
            ("2k", Decimal(2000)),
            ("1e3", Decimal(1000)),
            ("128Mi", Decimal(128 * 2**20)),
            ("abc", None),
            ("1Gb", None),
        ],
    )
    def test_quantities_parse_like_kubernetes(self, text: str, value: Decimal | None) -> None:
        assert parse_quantity(text) == value
