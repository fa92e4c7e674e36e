"""Locks that keep two runs on one store or cache from doing the same work at once, on one machine.

Training and evaluation cells use Prefect's own mechanism for this: a cache policy with SERIALIZABLE
isolation takes a lock on the cell's cache key before it looks the key up, so a second run asking for a
cell that the first is training waits, then finds the first's result and reuses it. Prefect's lock
managers are a file with an expiry (whose holder, killed, blocks everyone until the expiry) or memory (one
process); `FileLockManager` implements the same protocol with the kernel's file locks (`flock`), which
the kernel releases the moment the holding process dies, however it dies. A lock per cell, not per store,
so that runs asking for different cells never wait for each other.

Extraction takes one lock per store (`store_lock`) around planning and extracting: a second run waits, then
plans against what the first wrote, and extracts nothing twice.

File locks hold between processes of one machine (Dask workers included). Runs on several machines that
share an object-storage cache can train the same cell at once; each writes its model under the same key and
its result file whole, so nothing is corrupted, only work repeated (docs/design.md).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect.locking.protocol import LockManager

POLL_SECONDS = 0.2
LOCKS_ROOT = Path(tempfile.gettempdir()) / "genreflow-locks"


@dataclass
class _Held:
    holder: str
    descriptor: int


class FileLockManager(LockManager):
    """Prefect's `LockManager` protocol on `flock`: one lock file per key under `directory`.

    Held locks are kept per process (not in the instance), so the manager pickles to another process as
    just its directory. `hold_timeout` is not needed: a lock lasts until it is released or its process ends.
    """

    _held: dict[Path, _Held] = {}
    _guard = threading.Lock()

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileLockManager) and other.directory == self.directory

    def __hash__(self) -> int:
        return hash(self.directory)

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        """Wait for the lock on `key` (at most `acquire_timeout` seconds); True once `holder` has it."""
        if self.is_lock_holder(key, holder):
            return True
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not _try_lock(descriptor):
            if deadline is not None and time.monotonic() >= deadline:
                os.close(descriptor)
                return False
            time.sleep(POLL_SECONDS)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{holder} pid {os.getpid()}\n".encode())  # for a person looking at the file
        with self._guard:
            self._held[path] = _Held(holder, descriptor)
        return True

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        return await asyncio.to_thread(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        """Release `holder`'s lock on `key`; releasing a lock one does not hold is an error, as in Prefect."""
        path = self._path(key)
        with self._guard:
            held = self._held.get(path)
            if held is None or held.holder != holder:
                raise ValueError(f"{holder} does not hold the lock on {key}")
            del self._held[path]
        fcntl.flock(held.descriptor, fcntl.LOCK_UN)
        os.close(held.descriptor)

    def is_locked(self, key: str) -> bool:
        """Whether anyone, in this process or another, holds the lock on `key` now."""
        path = self._path(key)
        if path in self._held:
            return True
        try:
            descriptor = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            if not _try_lock(descriptor):
                return True
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            return False
        finally:
            os.close(descriptor)

    def is_lock_holder(self, key: str, holder: str) -> bool:
        held = self._held.get(self._path(key))
        return held is not None and held.holder == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until nobody holds the lock on `key`; False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.wait_for_lock, key, timeout)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.lock"


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def location_hash(location: str) -> str:
    """A short name for a store or cache location, for lock files."""
    return hashlib.sha256(location.encode()).hexdigest()[:16]


def cache_lock_manager(cache: str) -> FileLockManager:
    """The lock manager of the cells cached at `cache` (a local folder or a URL), shared by this machine."""
    return FileLockManager(LOCKS_ROOT / f"cache-{location_hash(cache)}")


@contextmanager
def store_lock(store: str) -> Iterator[None]:
    """Hold the store's extraction lock for the block: one extraction into `store` at a time on this machine."""
    manager, key, holder = (
        FileLockManager(LOCKS_ROOT),
        f"store-{location_hash(store)}",
        f"extract-{os.getpid()}-{threading.get_ident()}",
    )
    manager.acquire_lock(key, holder)
    try:
        yield
    finally:
        manager.release_lock(key, holder)
