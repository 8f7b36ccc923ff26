"""Object storage with one global resourceVersion counter, a bounded event history and watch fan-out.

Everything here runs on the server's event loop thread, so no locking is needed.  The history is
what lets a watch resume "from resourceVersion N"; once an event falls out of the window, resuming
before it answers 410 like a compacted etcd.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


@dataclass
class WatchEvent:
    rv: int
    key: Key
    type: str  # ADDED / MODIFIED / DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


@dataclass(eq=False)
class Watcher:
    key: Key
    namespace: str | None
    matches: Callable[[dict[str, Any]], bool]
    queue: asyncio.Queue[WatchEvent] = field(default_factory=asyncio.Queue)


def obj_key(obj: dict[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta["name"])


class Store:
    def __init__(self, history_size: int = 1000) -> None:
        self.rv = 1
        self.compacted = 0  # highest resourceVersion no longer replayable
        self.history: deque[WatchEvent] = deque()
        self.history_size = history_size
        self.objects: dict[Key, dict[ObjKey, dict[str, Any]]] = {}
        self.by_uid: dict[str, tuple[Key, ObjKey]] = {}
        self.watchers: set[Watcher] = set()
        self.listeners: list[Callable[[WatchEvent], None]] = []

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def bucket(self, key: Key) -> dict[ObjKey, dict[str, Any]]:
        return self.objects.setdefault(key, {})

    def get(self, key: Key, namespace: str, name: str) -> dict[str, Any] | None:
        return self.bucket(key).get((namespace, name))

    def items(self, key: Key, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        for (ns, _), obj in sorted(self.bucket(key).items()):
            if namespace is None or ns == namespace:
                yield obj

    def all_objects(self) -> Iterator[tuple[Key, dict[str, Any]]]:
        for key, bucket in list(self.objects.items()):
            for obj in list(bucket.values()):
                yield key, obj

    def by_uid_lookup(self, uid: str) -> tuple[Key, dict[str, Any]] | None:
        where = self.by_uid.get(uid)
        if where is None:
            return None
        obj = self.bucket(where[0]).get(where[1])
        return (where[0], obj) if obj is not None else None

    def _emit(self, event: WatchEvent) -> None:
        self.history.append(event)
        while len(self.history) > self.history_size:
            self.compacted = self.history.popleft().rv
        for watcher in list(self.watchers):
            if watcher.key == event.key:
                watcher.queue.put_nowait(event)
        for listener in list(self.listeners):
            listener(event)

    def put(self, key: Key, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """Store ``obj`` (ADDED if ``old`` is None else MODIFIED) under a fresh resourceVersion."""
        rv = self.next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        ok = obj_key(obj)
        self.bucket(key)[ok] = obj
        self.by_uid[obj["metadata"]["uid"]] = (key, ok)
        self._emit(WatchEvent(rv, key, "ADDED" if old is None else "MODIFIED", copy.deepcopy(obj), old))
        return obj

    def remove(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        rv = self.next_rv()
        ok = obj_key(obj)
        old = self.bucket(key).pop(ok)
        self.by_uid.pop(old["metadata"]["uid"], None)
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(rv)
        self._emit(WatchEvent(rv, key, "DELETED", copy.deepcopy(final), old))
        return final

    def compact(self) -> None:
        """Forget all history (simulates etcd compaction); watches from older versions now get 410."""
        if self.history:
            self.compacted = self.history[-1].rv
        self.history.clear()
