"""End to end: a real ``kopf run`` subprocess against the server started by ``python -m tests.kubeapi``.

This is the proof that the fake server is good enough for the operator: kopf's discovery, list/watch
streaming, JSON-patch with ``test`` on resourceVersion, merge-patched status, finalizers and event
posting all go through it, with a kubeconfig pointing at plain ``http://``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from .conftest import GROUP, VERSION, widget
from .fixtures import REPO_ROOT, TEST_CRDS
from .server import wait_until


def api_client(kubeconfig: Path) -> Any:
    return config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[Path]:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kubeapi",
            "--crds",
            str(TEST_CRDS),
            "--kubeconfig-out",
            str(kubeconfig),
            "--bookmark-period",
            "1",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        yield kubeconfig
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def kopf_operator(cli_server: Path, tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "kopf.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--standalone",
                "-m",
                "tests.kubeapi.kopf_probe",
                "--namespace",
                "default",
                "--verbose",
            ],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(cli_server)},
        )
    try:
        yield log
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_kopf_handles_create_update_and_delete_through_the_fake_server(
    cli_server: Path, kopf_operator: Path
) -> None:
    api: Any = client.CustomObjectsApi(api_client(cli_server))
    wait_until(lambda: "Starting the watch-stream for widgets" in kopf_operator.read_text(), timeout=15)
    api.create_namespaced_custom_object(GROUP, VERSION, "default", "widgets", widget("w"))

    def status() -> Any:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, "default", "widgets", "w")
        return obj if (obj.get("status") or {}).get("seen") == "BTCUSDT" else None

    obj = wait_until(status, timeout=15)
    assert obj["metadata"]["finalizers"] == ["test.backtestkit.dev/probe"]
    assert obj["status"]["created"] == {"handled": True}
    api.patch_namespaced_custom_object(
        GROUP, VERSION, "default", "widgets", "w", {"spec": {"symbol": "ETHUSDT"}}
    )
    wait_until(
        lambda: (
            api.get_namespaced_custom_object(GROUP, VERSION, "default", "widgets", "w")["status"]["seen"]
            == "ETHUSDT"
        ),
        timeout=15,
    )
    api.delete_namespaced_custom_object(GROUP, VERSION, "default", "widgets", "w")

    def deleted() -> bool:
        try:
            api.get_namespaced_custom_object(GROUP, VERSION, "default", "widgets", "w")
        except client.ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_until(deleted, timeout=15)
    assert "widget w deleted" in kopf_operator.read_text()
    core: Any = client.CoreV1Api(api_client(cli_server))
    events = wait_until(lambda: core.list_namespaced_event("default").items, timeout=10)
    assert events[0].reason == "Seen" and events[0].involved_object.name == "w"
