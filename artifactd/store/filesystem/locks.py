"""The locks every process on one storage root shares: the write lock serialising commits,
deletes and evictions, and the maintenance lock one process at a time holds.

Both are flocks on files under `.artifactd/`: the kernel drops them when their holder
dies, so a crash never leaves the root locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path


class WriteLock:
    """An flock on `path`, plus a thread lock, since flock does not exclude threads
    sharing one descriptor. Without a path (a read-only root) nothing may be written."""

    def __init__(self, path: Path | None) -> None:
        self._fd = -1 if path is None else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        # Reentrant: recording a version found on disk takes the lock, and is also reached
        # from inside a commit that holds it already (judging the current version).
        self._thread_lock = threading.RLock()
        self._depth = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Blocking: run it in a worker thread."""
        with self._thread_lock:
            self._depth += 1
            if self._depth == 1:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)


@contextlib.asynccontextmanager
async def maintenance_lock(path: Path) -> AsyncIterator[bool]:
    """Yields True for the one process holding the flock on `path`, False for the others
    (who do not wait for it)."""
    fd = await asyncio.to_thread(os.open, path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing drops the lock
