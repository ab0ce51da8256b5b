"""An in-memory cache of recently opened versions, so hot reads skip the worker thread.

Small files are kept whole in memory; larger ones keep an open descriptor of the version
(a reader gets a duplicate, so the version stays pinned while it reads). An entry is
trusted while the root's row generation is unchanged — every replacement, delete,
eviction, new expiry, and commit onto a path that still has a row, by any process on the
root, bumps it; a commit of a new key changes no version an entry holds and does not
(readindex.py has the same rule) — and for at most `HOT_TTL_SECONDS`, which bounds how long
a file changed by hand (outside artifactd) can be served in its previous version.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from artifactd.store.base import ArtifactInfo
from artifactd.store.filesystem.reserve import allocate

HOT_TTL_SECONDS = 2.0
SMALL_FILE_BYTES = 64 * 1024
MAX_CACHED_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 4096
MAX_OPEN_FDS = 256
_COUNTER = struct.Struct("<Q")


def worth_keeping(last_read: float | None, now: float) -> bool:
    """Whether a version opened cold is worth a hot-cache entry (a copy of its bytes or a
    descriptor, and the eviction of another entry): only if it was read before (`last_read`,
    the previous read's time) within HOT_TTL_SECONDS, so that it is likely to be read again
    while the entry is trusted. A random key among many, read again minutes later, never
    pays for the copy; a key read every second or more often does."""
    return last_read is not None and now - last_read <= HOT_TTL_SECONDS


class GenerationCounter:
    """A 64-bit counter in a shared memory map: readable without a syscall by every process
    on the root; bumped under the store's write lock."""

    def __init__(self, path: Path, *, writable: bool) -> None:
        flags = os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY
        fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        try:
            if writable:
                # Allocated, not only sized: a store of a page first touched through the map
                # on a full disk would kill the process (SIGBUS).
                allocate(fd, _COUNTER.size)
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self._map = mmap.mmap(fd, _COUNTER.size, access=access)
        finally:
            os.close(fd)

    @property
    def value(self) -> int:
        return int(_COUNTER.unpack_from(self._map)[0])

    def bump(self) -> None:
        _COUNTER.pack_into(self._map, 0, (self.value + 1) & 0xFFFFFFFFFFFFFFFF)

    def close(self) -> None:
        self._map.close()


@dataclass
class HotEntry:
    info: ArtifactInfo
    generation: int
    filled_at: float
    data: bytes | None = None  # the whole file, for small ones
    fd: int | None = None  # an open descriptor of the version, for the rest


class HotCache:
    """Path -> HotEntry, least recently used first; safe to use from several threads."""

    def __init__(self, generation: GenerationCounter | None) -> None:
        self._generation = generation
        self._entries: OrderedDict[str, HotEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self._fds = 0

    def current_generation(self) -> int:
        return self._generation.value if self._generation is not None else 0

    def checkout(self, path: str) -> tuple[HotEntry, int | None] | None:
        """A still-valid entry and, when it keeps a descriptor, a private duplicate of it:
        taken under the lock, so no concurrent eviction closes the original first. One
        lock round for both, since this runs for every hot download."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                return None
            stale = (
                entry.generation != self.current_generation()
                or time.monotonic() - entry.filled_at > HOT_TTL_SECONDS
                or entry.info.is_expired()
            )
            if stale:
                self._drop(path)
                return None
            self._entries.move_to_end(path)
            return entry, None if entry.fd is None else os.dup(entry.fd)

    def remember(self, path: str, info: ArtifactInfo, fd: int, generation: int) -> None:
        """Keep a version just opened through `fd` (read at `generation`): small files
        whole, larger ones as a duplicate of the descriptor."""
        if info.sha256 is None:
            return  # being hashed in the background: its digest-based ETag is coming
        entry = HotEntry(info, generation, time.monotonic())
        if info.size <= SMALL_FILE_BYTES:
            data = os.pread(fd, info.size, 0)
            if len(data) != info.size:
                return  # changing underneath us: don't cache
            entry.data = data
        else:
            entry.fd = os.dup(fd)
        self.put(path, entry)

    def remember_now(self, path: str, info: ArtifactInfo, fd: int, generation: int) -> bytes | None:
        """`remember` on the event loop: a small file's bytes only if the page cache has
        them all (RWF_NOWAIT: no wait for the disk; then nothing is kept). Returns those
        bytes, or None when the caller reads through `fd`."""
        if info.size > SMALL_FILE_BYTES:
            self.remember(path, info, fd, generation)  # a duplicate descriptor: no read
            return None
        buffer = bytearray(info.size)
        try:
            got = os.preadv(fd, [buffer], 0, os.RWF_NOWAIT) if info.size else 0
        except OSError:  # EAGAIN (not cached), EOPNOTSUPP (filesystem without NOWAIT)
            return None
        if got != info.size:
            return None
        data = bytes(buffer)
        self.put(path, HotEntry(info, generation, time.monotonic(), data=data))
        return data

    def put(self, path: str, entry: HotEntry) -> None:
        with self._lock:
            self._drop(path)
            self._entries[path] = entry
            self._bytes += len(entry.data or b"")
            self._fds += entry.fd is not None
            while self._entries and (
                self._bytes > MAX_CACHED_BYTES
                or self._fds > MAX_OPEN_FDS
                or len(self._entries) > MAX_ENTRIES
            ):
                self._drop(next(iter(self._entries)))

    def invalidate(self, path: str) -> None:
        with self._lock:
            self._drop(path)

    def clear(self) -> None:
        with self._lock:
            for path in list(self._entries):
                self._drop(path)

    def _drop(self, path: str) -> None:
        entry = self._entries.pop(path, None)
        if entry is None:
            return
        self._bytes -= len(entry.data or b"")
        if entry.fd is not None:
            self._fds -= 1
            os.close(entry.fd)
