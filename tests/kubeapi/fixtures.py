"""Pytest fixtures exposing the fake API server and the local kubelet to any test folder.

Use from another folder with ``pytest_plugins = ["tests.kubeapi.fixtures"]`` in a conftest, or
import the fixtures by name.  ``kube_api`` serves the repository's ``crds/`` directory; the
server's own tests use ``kube_api_factory`` with the CRDs in ``tests/kubeapi/fixtures/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .kubelet import LocalKubelet
from .server import KubeAPIServer

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_CRDS = REPO_ROOT / "crds"
TEST_CRDS = Path(__file__).resolve().parent / "fixtures"


@dataclass
class KubeAPI:
    """A running fake API server: ``url``, ``kubeconfig`` (a file path) and the ``server`` itself."""

    server: KubeAPIServer
    url: str
    kubeconfig: Path

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` configured for this server."""
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def compact(self) -> None:
        self.server.compact()


def start_kube_api(
    tmp_path: Path, crd_dirs: list[Path] | None = None, **options: Any
) -> tuple[KubeAPI, Callable[[], None]]:
    server = KubeAPIServer(crd_dirs if crd_dirs is not None else [REPO_CRDS], **options).start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    return KubeAPI(server, server.url, kubeconfig), server.stop


@pytest.fixture
def kube_api_factory(tmp_path: Path) -> Iterator[Callable[..., KubeAPI]]:
    """``kube_api_factory(crd_dirs=None, **server_options)`` starts servers stopped at teardown."""
    stops: list[Callable[[], None]] = []

    def make(crd_dirs: list[Path] | None = None, **options: Any) -> KubeAPI:
        api, stop = start_kube_api(tmp_path / f"server{len(stops)}", crd_dirs, **options)
        stops.append(stop)
        return api

    yield make
    for stop in reversed(stops):
        stop()


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[KubeAPI]:
    """A fresh fake API server serving the repository's ``crds/`` (plus the built-in kinds)."""
    api, stop = start_kube_api(tmp_path / "kube-api")
    try:
        yield api
    finally:
        stop()


@pytest.fixture
def local_kubelet_factory(tmp_path: Path) -> Iterator[Callable[..., LocalKubelet]]:
    """``local_kubelet_factory(kube_api, **LocalKubelet options)``; stopped (processes killed) at teardown."""
    kubelets: list[LocalKubelet] = []

    def make(api: KubeAPI, **options: Any) -> LocalKubelet:
        options.setdefault("root", tmp_path / f"kubelet{len(kubelets)}")
        kubelet = LocalKubelet(api.kubeconfig, **options).start()
        kubelets.append(kubelet)
        return kubelet

    yield make
    for kubelet in reversed(kubelets):
        kubelet.stop()


@pytest.fixture
def local_kubelet(kube_api: KubeAPI, local_kubelet_factory: Callable[..., LocalKubelet]) -> LocalKubelet:
    """A local kubelet (with the Job controller) running the pods of ``kube_api``."""
    return local_kubelet_factory(kube_api)
