"""A minimal asyncio Kubernetes client (aiohttp) for the local kubelet and Job controller.

They talk to the API server over HTTP like real node components, so they work against the fake
server and, given a kubeconfig, against a real cluster.  Supported kubeconfig credentials: bearer
token / tokenFile, client certificate (file or data), CA (file or data) and
``insecure-skip-tls-verify``; exec/auth-provider plugins are not.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

log = logging.getLogger(__name__)


class KubeError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{status}: {message}")


def _data_file(data: str, suffix: str) -> str:
    fd, name = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64decode(data))
    return name


class KubeClient:
    def __init__(self, kubeconfig: Path | str) -> None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next((u.get("user") or {} for u in cfg.get("users") or [] if u["name"] == ctx.get("user")), {})
        self.server = cluster["server"].rstrip("/")
        self.namespace = ctx.get("namespace", "default")
        self.headers: dict[str, str] = {}
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.ssl: ssl.SSLContext | bool = False
        if self.server.startswith("https"):
            ctx_ssl = ssl.create_default_context()
            ca = cluster.get("certificate-authority")
            if cluster.get("certificate-authority-data"):
                ca = _data_file(cluster["certificate-authority-data"], ".crt")
            if ca:
                ctx_ssl.load_verify_locations(ca)
            if cluster.get("insecure-skip-tls-verify"):
                ctx_ssl.check_hostname = False
                ctx_ssl.verify_mode = ssl.CERT_NONE
            cert, key = user.get("client-certificate"), user.get("client-key")
            if user.get("client-certificate-data"):
                cert = _data_file(user["client-certificate-data"], ".crt")
            if user.get("client-key-data"):
                key = _data_file(user["client-key-data"], ".key")
            if cert:
                ctx_ssl.load_cert_chain(cert, key)
            self.ssl = ctx_ssl
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method, self.server + path, params=params, data=data, headers=headers, ssl=self.ssl
        ) as resp:
            text = await resp.text()
            try:
                payload: Any = json.loads(text) if text else None
            except ValueError:
                payload = text
            if resp.status >= 400:
                raise KubeError(resp.status, payload)
            return payload

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, params=params or None)

    async def merge_patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(
            self.server + path, params={**params, "watch": "true"}, ssl=self.ssl, timeout=timeout
        ) as resp:
            if resp.status >= 400:
                raise KubeError(resp.status, await resp.text())
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)


def uid_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["uid"])


# Complexity kept: list, watch, resync and reconnect are one loop, as in client-go's informer.
async def informer(  # noqa: C901
    client: KubeClient,
    path: str,
    params: dict[str, str],
    on_event: Callable[[str, dict[str, Any]], None],
    synced: asyncio.Event | None = None,
    watch_timeout: int = 300,
) -> None:
    """List then watch ``path`` forever, relisting on 410 or errors; calls ``on_event(type, obj)``.

    On a relist, objects that vanished meanwhile are reported as DELETED, so callers can keep a cache.
    """
    known: dict[str, dict[str, Any]] = {}
    while True:
        try:
            listing = await client.get(path, **params)
            rv = listing["metadata"]["resourceVersion"]
            present = {uid_of(o): o for o in listing.get("items") or []}
            for uid, old in list(known.items()):
                if uid not in present:
                    known.pop(uid)
                    on_event("DELETED", old)
            for uid, obj in present.items():
                on_event("MODIFIED" if uid in known else "ADDED", obj)
                known[uid] = obj
            if synced is not None:
                synced.set()
            expired = False
            while not expired:
                watch_params = {
                    **params,
                    "resourceVersion": rv,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(watch_timeout),
                }
                async for event in client.watch(path, watch_params):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        expired = True
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        known.pop(uid_of(obj), None)
                    else:
                        known[uid_of(obj)] = obj
                    on_event(str(kind), obj)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("informer on %s restarting after %r", path, exc)
            await asyncio.sleep(0.3)
