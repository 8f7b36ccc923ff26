"""The long-lived collaborators every handler needs, created once at operator startup.

kopf hands each handler a ``memo``; keeping one :class:`Services` object in it (instead of module
globals) lets tests build their own with fakes, and gives per-object locks one home: a timer, an
update handler and an event handler may all reconcile the same object at the same moment, and the
lock makes them take turns inside this process (the API server's 409s cover other processes).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .cluster import Cluster
from .metrics import OperatorMetrics
from .runnerclient import RunnerClient
from .settings import OperatorSettings


@dataclass
class Services:
    settings: OperatorSettings
    cluster: Cluster
    runners: RunnerClient
    metrics: OperatorMetrics
    tokens: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """Control tokens by (namespace, trader, uid), read once from each trader's Secret."""
    _locks: defaultdict[tuple[str, str, str], asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    _slots: asyncio.Semaphore | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        """Bounds the passes running at once (``settings.parallel_reconciles``); taken after the
        object's lock, so a pass waiting for a slot never holds one while waiting for a lock."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.parallel_reconciles)
        return self._slots

    def lock(self, kind: str, namespace: str, name: str) -> asyncio.Lock:
        return self._locks[(kind, namespace, name)]

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self._locks.pop((kind, namespace, name), None)
        for key in [k for k in self.tokens if k[:2] == (namespace, name)]:
            del self.tokens[key]

    async def close(self) -> None:
        await self.runners.close()
        self.cluster.close()


def status_delta(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """The merge patch turning ``current`` status into ``desired`` (None removes a field).

    Only differing fields are included, so an unchanged trader causes no write (and no watch
    event) at all.
    """
    now = current or {}
    delta: dict[str, Any] = {}
    for key, value in desired.items():
        if value is None or value == "":
            if now.get(key) not in (None, ""):
                delta[key] = None
        elif now.get(key) != value:
            delta[key] = value
    return delta
