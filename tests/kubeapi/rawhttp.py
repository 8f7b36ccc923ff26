"""Raw HTTP helpers for tests that need to see exact status codes, headers and bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests


class Http:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", **params: Any
    ) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        resp = requests.request(
            method,
            self.base + path,
            data=data,
            params=params or None,
            headers={"Content-Type": content_type},
            timeout=10,
        )
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text

    def stream(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Watch events as they arrive (each line is read as soon as it is flushed)."""
        with requests.get(
            self.base + path, params={"watch": "true", **params}, stream=True, timeout=10
        ) as resp:
            for line in resp.iter_lines(chunk_size=1):
                if line:
                    yield json.loads(line)
