"""HTTP client of one runner's API (``GET /status``, ``POST /stop`` and the other manual controls),
as defined in CONTRACTS.md.

The runner is the source of truth about signals: only it knows whether a position is open. The
operator reads it over plain HTTP from the pod address (pod IP and port 8080, or the port a pod
annotation names, which the local test kubelet uses) with short timeouts; every transport
failure becomes :class:`RunnerUnreachable`, chained to its cause, so callers decide between
"wait and retry" and "report Unknown" without catching aiohttp types.

A runner is not trusted to be well behaved: one operator serves every trader, so a single runner
answering ``/status`` with hundreds of megabytes, or never finishing its answer, must not take it
down. Every answer is read up to a small limit (:class:`RunnerMisbehaving` beyond it) within the
request timeout. The ``POST`` controls carry the trader's control token (``Authorization: Bearer``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from .settings import OperatorSettings


class RunnerUnreachable(Exception):
    """The runner did not answer usefully (no address yet, refused, timed out, bad answer)."""


class RunnerMisbehaving(RunnerUnreachable):
    """The runner answered, but not as a runner does (an oversized body)."""


class RunnerUnauthorized(RunnerUnreachable):
    """The runner refused the control token (401/403): the token may have been replaced."""


DEFAULT_LIMIT = 256 * 1024
CONTROL_ENDPOINTS = frozenset({"stop", "pause", "resume", "close"})


async def _bounded_body(response: aiohttp.ClientResponse, url: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the body; a longer body is :class:`RunnerMisbehaving`."""
    if response.content_length is not None and response.content_length > limit:
        raise RunnerMisbehaving(
            f"GET {url} announced {response.content_length} bytes, more than the {limit} a status may have"
        )
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await response.content.read(limit + 1 - size)  # what has arrived, up to the limit
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    body = b"".join(parts)
    if size > limit:
        raise RunnerMisbehaving(f"GET {url} answered with more than the {limit} bytes a status may have")
    return body


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

    def __init__(self, timeout: float, *, limit: int = DEFAULT_LIMIT) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = limit
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
                body = await _bounded_body(response, url, self._limit)
                if response.status != 200:
                    text = body[:200].decode(errors="replace")
                    raise RunnerUnreachable(f"GET {url} answered {response.status}: {text}")
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

    async def stop(self, address: str, token: str | None = None) -> None:
        """``POST /stop``: ask the runner to drain (idempotent on the runner's side)."""
        await self.control(address, "stop", token)

    async def control(self, address: str, endpoint: str, token: str | None = None) -> dict[str, Any]:
        """``POST /<endpoint>`` (``stop``, ``pause``, ``resume``, ``close``); the runner's status
        after it (``{}`` when the answer is not a JSON object). Each is idempotent on its side."""
        if endpoint not in CONTROL_ENDPOINTS:
            raise ValueError(f"unknown runner control {endpoint!r}")
        url = f"http://{address}/{endpoint}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self._client().post(url, headers=headers) as response:
                if response.status >= 300:
                    body = (await response.content.read(200)).decode(errors="replace")
                    kind = RunnerUnauthorized if response.status in (401, 403) else RunnerUnreachable
                    raise kind(f"POST {url} answered {response.status}: {body}")
                raw = await _bounded_body(response, url, self._limit)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RunnerUnreachable(f"POST {url} failed: {exc.__class__.__name__}: {exc}") from exc
        try:
            document = json.loads(raw)
        except ValueError:
            return {}
        return document if isinstance(document, dict) else {}
