"""The public fixtures other test folders use: ``kube_api`` (repository CRDs) and ``local_kubelet``."""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes import client

from .fixtures import REPO_CRDS, KubeAPI
from .kubelet import LocalKubelet
from .rawhttp import Http
from .server import wait_until


def test_kube_api_serves_every_crd_in_the_repository(kube_api: KubeAPI) -> None:
    http = Http(kube_api.url)
    expected = []
    for path in sorted(REPO_CRDS.glob("*.y*ml")) if REPO_CRDS.is_dir() else []:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                expected.append(doc["metadata"]["name"])
    served = {
        c["metadata"]["name"]
        for c in http.call("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")[1]["items"]
    }
    assert set(expected) == served
    assert kube_api.kubeconfig.is_file() and kube_api.url.startswith("http://127.0.0.1:")


def test_local_kubelet_runs_pods_of_kube_api(kube_api: KubeAPI, local_kubelet: LocalKubelet) -> None:
    core: Any = client.CoreV1Api(kube_api.api_client())
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "hello"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "x", "command": ["python", "-c", "print(1)"]}],
            },
        },
    )
    wait_until(lambda: core.read_namespaced_pod("hello", "default").status.phase == "Succeeded", timeout=10)
    assert local_kubelet.pod_log("default", "hello") == "1\n"


def test_default_command_stands_in_for_the_image_entrypoint(
    kube_api: KubeAPI, local_kubelet_factory: object
) -> None:
    import sys
    from collections.abc import Callable

    assert callable(local_kubelet_factory)
    make: Callable[..., LocalKubelet] = local_kubelet_factory
    kubelet = make(kube_api, default_command=[sys.executable, "-c", "import sys; print(sys.argv[1:])"])
    core: Any = client.CoreV1Api(kube_api.api_client())
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "entry"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "runner", "args": ["live", "--symbol", "X"]}],
            },
        },
    )
    wait_until(lambda: core.read_namespaced_pod("entry", "default").status.phase == "Succeeded", timeout=10)
    assert kubelet.pod_log("default", "entry") == "['live', '--symbol', 'X']\n"
