"""Fixtures for the fake API server's own tests: a server with the test CRDs and client helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from .fixtures import (  # noqa: F401  (re-exported fixtures)
    TEST_CRDS,
    KubeAPI,
    kube_api,
    kube_api_factory,
    local_kubelet,
    local_kubelet_factory,
)
from .kubelet import LocalKubelet

GROUP, VERSION = "test.backtestkit.dev", "v1"

# The client's models are strictly typed, while tests pass plain dicts (accepted at runtime) and read
# Optional attributes freely; API objects are therefore handed to tests as Any.
Api = Any


@pytest.fixture
def api(kube_api_factory: Callable[..., KubeAPI]) -> KubeAPI:  # noqa: F811
    """A server with the test CRDs, quick bookmarks and a small history window."""
    return kube_api_factory([TEST_CRDS], bookmark_period=0.3, history_size=200)


@pytest.fixture
def k8s(api: KubeAPI) -> Api:
    return api.api_client()


@pytest.fixture
def core(k8s: Api) -> Api:
    return client.CoreV1Api(k8s)


@pytest.fixture
def custom(k8s: Api) -> Api:
    return client.CustomObjectsApi(k8s)


@pytest.fixture
def kubelet(api: KubeAPI, local_kubelet_factory: Callable[..., LocalKubelet]) -> LocalKubelet:  # noqa: F811
    return local_kubelet_factory(api)


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"symbol": "BTCUSDT", **spec},
    }
