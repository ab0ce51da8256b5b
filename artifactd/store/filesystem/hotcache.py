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
# The frequency sketch: 4-bit-like counters (saturating at 15) in one byte array, two per
# key, all halved after SKETCH_SAMPLE counted reads so that old reads fade.
SKETCH_WIDTH = 1 << 16
SKETCH_SAMPLE = 10 * MAX_ENTRIES
_SATURATED = 15
_HALVE = bytes(b >> 1 for b in range(256))


def worth_keeping(last_read: float | None, now: float) -> bool:
    """Whether a version opened cold is worth a hot-cache entry (a copy of its bytes or a
    descriptor, and the eviction of another entry): only if it was read before (`last_read`,
    the previous read's time) within HOT_TTL_SECONDS, so that it is likely to be read again
    while the entry is trusted. A random key among many, read again minutes later, never
    pays for the copy; a key read every second or more often does."""
    return last_read is not None and now - last_read <= HOT_TTL_SECONDS


class FrequencySketch:
    """About how often each key was read lately, in fixed memory (64 KiB): the frequency
    sketch of TinyLFU (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache
    Admission Policy", arXiv:1512.00727): a count-min sketch, each key counted in two cells
    of one array with the smaller as its estimate (collisions only ever overestimate), aged
    by the paper's freshness mechanism, the reset: after a sample of SKETCH_SAMPLE counted
    reads every cell is halved, so the counts describe the last few samples' reads."""

    def __init__(self) -> None:
        self._cells = bytearray(SKETCH_WIDTH)
        self._mask = SKETCH_WIDTH - 1
        self._added = 0

    def add(self, key: str) -> int:
        """Count one read of `key`; its estimate, this read included."""
        h = hash(key)  # a str caches its hash: the hot cache's lookup already made it
        cells, mask = self._cells, self._mask
        a, b = h & mask, (h >> 24) & mask
        low = min(cells[a], cells[b])
        if low < _SATURATED:
            # Conservative update: only the cells at the minimum grow, which keeps a
            # collision's overestimate small.
            if cells[a] == low:
                cells[a] = low + 1
            if cells[b] == low:
                cells[b] = low + 1
            low += 1
        self._added += 1
        if self._added >= SKETCH_SAMPLE:
            self._cells = bytearray(self._cells.translate(_HALVE))
            self._added //= 2
        return low

    def estimate(self, key: str) -> int:
        h = hash(key)
        cells, mask = self._cells, self._mask
        return min(cells[h & mask], cells[(h >> 24) & mask])


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
        self._reads = FrequencySketch()

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
            stale = (  # inline, not `_is_stale`: this runs for every hot download
                entry.generation != self.current_generation()
                or time.monotonic() - entry.filled_at > HOT_TTL_SECONDS
                or entry.info.is_expired()
            )
            if stale:
                self._drop(path)
                return None
            self._entries.move_to_end(path)
            return entry, None if entry.fd is None else os.dup(entry.fd)

    def admits(self, path: str) -> bool:
        """Count a read of `path` that missed the cache, and say whether it should take an
        entry (the caller copies it then): yes while the cache has room or its least
        recently used entry is stale (dropped now: it can serve nobody), else only if `path`
        was read more often lately than that entry (TinyLFU's admission rule). Under a
        uniform stream of many keys the two counts are alike, so a read of a key seen as
        often as the entry it would push out no longer copies it and evicts another that
        may well be read next (the churn of a plain LRU); a key read again and again beats
        the least recently used entry within a read or two."""
        with self._lock:
            count = self._reads.add(path)
            entries = self._entries
            if len(entries) < MAX_ENTRIES or path in entries:
                return True
            victim = next(iter(entries))
            if self._is_stale(entries[victim]):
                self._drop(victim)
                return True
            return count > self._reads.estimate(victim)

    def _is_stale(self, entry: HotEntry) -> bool:
        return (
            entry.generation != self.current_generation()
            or time.monotonic() - entry.filled_at > HOT_TTL_SECONDS
        )

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
