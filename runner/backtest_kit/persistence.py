"""Durable live state: a small adapter protocol and the default atomic-file implementation.

Live mode writes a key's whole state (open and scheduled signal, whipsaw guard, throttle
bucket, last yielded result) as one record before it yields the change, so a crash at any
instant leaves either the old record or the new one, never a mix. A record that cannot be
parsed is moved aside, never deleted (ENGINE.md "deliberately differ" 7).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import CorruptStateError, PersistenceError

_KEY = re.compile(r"^[A-Za-z0-9_.:\-/]+$")


@runtime_checkable
class PersistenceAdapter(Protocol):
    """Where live state lives. Keys are ``/``-separated names; values are JSON objects."""

    def init(self) -> None:
        """Prepare storage; raise ``PersistenceError`` if it cannot be written."""

    def has(self, key: str) -> bool: ...

    def read(self, key: str) -> dict[str, Any] | None:
        """The value, ``None`` if absent; ``CorruptStateError`` if unreadable (moved aside)."""

    def write(self, key: str, value: dict[str, Any], *, durable: bool = True) -> None:
        """Replace the value atomically (``durable``: survive power loss, not only a crash)."""

    def delete(self, key: str) -> None: ...

    def quarantined(self, key: str) -> list[str]:
        """Names of values moved aside for ``key`` that nobody has resolved yet."""


class FilePersistence:
    """One JSON file per key under ``root``: temp file, fsync, rename, fsync of the directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise PersistenceError(f"invalid state key {key!r}")
        return self.root / f"{key}.json"

    def init(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PersistenceError(f"cannot create state directory {self.root}: {exc.strerror}") from exc
        probe = self.root / f".probe-{os.getpid()}"
        try:
            with open(probe, "w", encoding="utf-8") as fh:
                fh.write("ok")
                fh.flush()
                os.fsync(fh.fileno())
            probe.unlink()
        except OSError as exc:
            with contextlib.suppress(OSError):
                probe.unlink()
            reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror
            raise PersistenceError(
                f"state directory {self.root} is not writable ({reason}); nothing was changed in it"
            ) from exc
        for stale in self.root.rglob(".tmp-*"):
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 120:
                    stale.unlink()

    def has(self, key: str) -> bool:
        return self._path(key).exists()

    def read(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PersistenceError(f"cannot read state {path}: {exc.strerror}") from exc
        try:
            value = json.loads(text)
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        except ValueError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time() * 1000)}")
            try:
                os.replace(path, aside)
            except OSError as move_exc:
                raise CorruptStateError(
                    f"state {path} is corrupt ({exc}) and could not be moved aside: {move_exc.strerror}"
                ) from exc
            raise CorruptStateError(
                f"state {path} is corrupt ({exc}); moved aside to {aside.name}. No new signal opens for "
                f"this key until you inspect it and delete or restore {aside.name}."
            ) from exc
        return value

    def write(self, key: str, value: dict[str, Any], *, durable: bool = True) -> None:
        path = self._path(key)
        data = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
        tmp = path.with_name(f".tmp-{os.urandom(6).hex()}-{path.name}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if durable:
                _fsync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror
            raise PersistenceError(
                f"cannot write state {path}: {reason}; the previous state is kept unchanged"
            ) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise PersistenceError(f"cannot delete state {path}: {exc.strerror}") from exc
        _fsync_dir(path.parent)

    def quarantined(self, key: str) -> list[str]:
        path = self._path(key)
        if not path.parent.exists():
            return []
        return sorted(p.name for p in path.parent.glob(f"{path.name}.corrupt-*"))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class MemoryPersistence:
    """Keeps state in a dict: for tests and for runs that need no durability."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    def init(self) -> None:
        return None

    def has(self, key: str) -> bool:
        return key in self.values

    def read(self, key: str) -> dict[str, Any] | None:
        value = self.values.get(key)
        return None if value is None else json.loads(json.dumps(value))

    def write(self, key: str, value: dict[str, Any], *, durable: bool = True) -> None:
        self.values[key] = json.loads(json.dumps(value, allow_nan=False))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def quarantined(self, key: str) -> list[str]:
        return []
