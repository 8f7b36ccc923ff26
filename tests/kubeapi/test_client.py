"""The kubelet's own client: list+watch that survives stream ends and 410s by relisting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from .client import KubeClient, informer
from .fixtures import KubeAPI
from .rawhttp import Http

CMS = "/api/v1/namespaces/default/configmaps"


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_informer_relists_after_an_expired_resource_version(
    kube_api_factory: Callable[..., KubeAPI],
) -> None:
    api = kube_api_factory([], bookmark_period=30)
    http = Http(api.url)
    client = KubeClient(api.kubeconfig)
    seen: list[tuple[str, str]] = []

    def record(kind: str, obj: dict[str, Any]) -> None:
        seen.append((kind, obj["metadata"]["name"]))

    synced = asyncio.Event()
    task = asyncio.create_task(informer(client, CMS, {}, record, synced, watch_timeout=1))
    try:
        await asyncio.wait_for(synced.wait(), 5)
        await asyncio.to_thread(http.call, "POST", CMS, {"metadata": {"name": "a"}})
        await until(lambda: ("ADDED", "a") in seen)
        # history moves on without configmap events, then is compacted: resuming from "a" is 410
        await asyncio.to_thread(
            http.call, "POST", "/api/v1/namespaces/default/secrets", {"metadata": {"name": "s"}}
        )
        await asyncio.to_thread(api.compact)
        await until(lambda: ("MODIFIED", "a") in seen)  # the relist re-reports what it knows
        await asyncio.to_thread(http.call, "POST", CMS, {"metadata": {"name": "b"}})
        await until(lambda: ("ADDED", "b") in seen)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()
