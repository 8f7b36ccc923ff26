"""HTTP client of one runner's API (``GET /status``, ``POST /stop``), as defined in CONTRACTS.md.

The runner is the source of truth about signals: only it knows whether a position is open. The
operator reads it over plain HTTP from the pod address (pod IP and port 8080, or the port a pod
annotation names, which the local test kubelet uses) with short timeouts; every transport
failure becomes :class:`RunnerUnreachable`, chained to its cause, so callers decide between
"wait and retry" and "report Unknown" without catching aiohttp types.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from .settings import OperatorSettings


class RunnerUnreachable(Exception):
    """The runner did not answer usefully (no address yet, refused, timed out, bad answer)."""


def runner_address(pod: Mapping[str, Any], settings: OperatorSettings) -> str | None:
    """``podIP:port`` of the runner in ``pod`` (port from the override annotation if present)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    port = str(annotations.get(settings.pod_port_annotation) or settings.runner_port)
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    return f"{host}:{port}"


class RunnerClient:
    """One shared aiohttp session for all runners (created lazily, closed on operator cleanup)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=64, force_close=True)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def status(self, address: str) -> dict[str, Any]:
        """The runner's ``GET /status`` document."""
        url = f"http://{address}/status"
        try:
            async with self._client().get(url) as response:
                body = await response.text()
                if response.status != 200:
                    raise RunnerUnreachable(f"GET {url} answered {response.status}: {body[:200]}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RunnerUnreachable(f"GET {url} failed: {exc.__class__.__name__}: {exc}") from exc
        try:
            document = json.loads(body)
        except json.JSONDecodeError as exc:
            raise RunnerUnreachable(f"GET {url} answered with invalid JSON") from exc
        if not isinstance(document, dict):
            raise RunnerUnreachable(
                f"GET {url} answered with a JSON {type(document).__name__}, not an object"
            )
        return document

    async def stop(self, address: str) -> None:
        """``POST /stop``: ask the runner to drain (idempotent on the runner's side)."""
        url = f"http://{address}/stop"
        try:
            async with self._client().post(url) as response:
                if response.status >= 300:
                    body = await response.text()
                    raise RunnerUnreachable(f"POST {url} answered {response.status}: {body[:200]}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RunnerUnreachable(f"POST {url} failed: {exc.__class__.__name__}: {exc}") from exc
