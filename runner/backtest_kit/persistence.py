"""Durable live state: a small adapter protocol and the default atomic-file implementation.

Live mode writes a key's whole state (open and scheduled signal, whipsaw guard, throttle
bucket, last yielded result) as one record before it yields the change, so a crash at any
instant leaves either the old record or the new one, never a mix. A record that cannot be
parsed is moved aside, never deleted (docs/ENGINE.md "deliberately differ" 7).

One writer: a state directory is locked (``flock`` on ``.lock``) by the first process that opens
it, for that process's lifetime; a second process is refused at once with the holder's pid, host
and start time. Each lock holder gets the next *epoch*, and every record carries the epoch of its
writer: a writer never replaces a record written under a newer epoch, so even a writer that lost
its lock (a partitioned node on shared storage) cannot overwrite what its successor wrote.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import CorruptStateError, PersistenceError


class StateLockedError(PersistenceError):
    """Another process holds the state directory; ``holder`` says which (pid, host, since)."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


class StaleWriterError(PersistenceError):
    """A record on disk was written by a newer lock holder: this writer must stop writing."""


#: Lock files held by this process, by resolved directory: (open file, epoch).
_HELD: dict[Path, tuple[Any, int]] = {}

_KEY = re.compile(r"^[A-Za-z0-9_.:\-/]+$")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


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

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` (e.g. ``live/``), sorted."""

    def quarantine(self, key: str, reason: str) -> str | None:
        """Move the value of ``key`` aside (never delete it); the name it was moved to."""

    def quarantined(self, key: str) -> list[str]:
        """Names of values moved aside for ``key`` that nobody has resolved yet."""


class FilePersistence:
    """One JSON file per key under ``root``: temp file, fsync, rename, fsync of the directory.

    It counts what it wrote, per key (``writes``; ``durable_writes`` for the fsynced ones), and
    the time spent in ``write`` (``write_seconds``; ``durable_seconds``): how often live mode
    writes is part of its contract (one durable write per state change, none on a minute where
    nothing changed), and tests and benchmarks read it here rather than guessing from the disk.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.epoch = 0  # set by init(): this process's lock epoch on the directory
        self.writes: Counter[str] = Counter()
        self.durable_writes: Counter[str] = Counter()
        self.write_seconds = 0.0
        self.durable_seconds = 0.0
        #: Called before each durable record is put in place (after its own data is durable): what
        #: must be durable before the record is, e.g. ``EventLog.sync`` for the lines written so far.
        self.before_durable: list[Callable[[], None]] = []

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
        self._lock()
        for stale in self.root.rglob(".tmp-*"):
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 120:
                    stale.unlink()

    def _lock(self) -> None:
        """Hold ``.lock`` for the life of this process (idempotent); refuse if someone else does."""
        root = self.root.resolve()
        held = _HELD.get(root)
        if held is not None:
            self.epoch = held[1]
            return
        path = root / ".lock"
        try:
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until the process ends
        except OSError as exc:
            raise PersistenceError(f"cannot lock state directory {root}: {exc.strerror}") from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = _lock_info(fh.read())
            fh.close()
            raise StateLockedError(
                f"state directory {root} is in use by process {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')} since {holder.get('since', '?')}; one trader per state directory",
                holder,
            ) from None
        fh.seek(0)
        epoch = int(_lock_info(fh.read()).get("epoch") or 0) + 1
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "epoch": epoch,
        }
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info))
        fh.flush()
        os.fsync(fh.fileno())
        _HELD[root] = (fh, epoch)
        self.epoch = epoch

    def has(self, key: str) -> bool:
        return self._path(key).exists()

    def read(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PersistenceError(f"cannot read state {path}: {exc.strerror}") from exc
        try:
            value = json.loads(raw.decode("utf-8"))  # not UTF-8 is a ValueError too
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        except ValueError as exc:
            aside = self.quarantine(key, str(exc))
            raise CorruptStateError(
                f"state {path} is corrupt ({exc}); moved aside to {aside}. No new signal opens for "
                f"this key until you inspect it and delete or restore {aside}."
            ) from exc
        return value

    def keys(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(
            f"{prefix.rstrip('/')}/{p.stem}" for p in folder.glob("*.json") if not p.name.startswith(".")
        )

    def quarantine(self, key: str, reason: str) -> str | None:
        path = self._path(key)
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time() * 1000)}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CorruptStateError(
                f"state {path} is unusable ({reason}) and could not be moved aside: {exc.strerror}"
            ) from exc
        _fsync_dir(path.parent)
        return aside.name

    def write(self, key: str, value: dict[str, Any], *, durable: bool = True) -> None:
        started = time.perf_counter()
        try:
            self._write(key, value, durable=durable)
        finally:
            spent = time.perf_counter() - started
            self.write_seconds += spent
            if durable:
                self.durable_seconds += spent
        self.writes[key] += 1
        if durable:
            self.durable_writes[key] += 1

    def _write(self, key: str, value: dict[str, Any], *, durable: bool) -> None:
        path = self._path(key)
        if self.epoch:
            self._check_epoch(path)
            value = {**value, "writerEpoch": self.epoch}
        data = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
        tmp = path.with_name(f".tmp-{os.urandom(6).hex()}-{path.name}")
        try:
            try:
                fd = os.open(tmp, _CREATE, 0o644)
            except FileNotFoundError:  # the key's folder does not exist yet
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, _CREATE, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if durable:
                for barrier in self.before_durable:
                    barrier()
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

    def _check_epoch(self, path: Path) -> None:
        """Refuse to replace a record a newer lock holder wrote."""
        try:
            on_disk = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, ValueError):
            return  # absent or unreadable: nothing newer to protect (an unreadable one is read first)
        theirs = on_disk.get("writerEpoch") if isinstance(on_disk, dict) else None
        if isinstance(theirs, int) and theirs > self.epoch:
            raise StaleWriterError(
                f"state {path} was written by a newer writer (epoch {theirs}, this process has "
                f"{self.epoch}); this process no longer owns the state directory and writes nothing more"
            )

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


def _lock_info(text: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


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
        self.aside: dict[str, dict[str, Any]] = {}

    def init(self) -> None:
        return None

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.values if k.startswith(prefix))

    def quarantine(self, key: str, reason: str) -> str | None:
        value = self.values.pop(key, None)
        if value is None:
            return None
        name = f"{key}.corrupt-{len(self.aside)}"
        self.aside[name] = value
        return name

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
        return sorted(name for name in self.aside if name.startswith(f"{key}.corrupt-"))
