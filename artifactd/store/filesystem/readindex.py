"""What a read needs of each recorded version, in memory: cold reads without an SQLite lookup.

One packed entry per path (inode, size, mtime, creation and expiry times, content type,
epoch, digest: 82 bytes; about 220 bytes per artifact in all with the path and the
dict's slot, measured with tracemalloc at 100,000), loaded from the metadata database in one
query in the background when the store opens, and kept by every read that learns a row. At
most MAX_ENTRIES (about 44 MB): past it the oldest entries make room, and the paths left out
are looked up in SQLite (loopopen.py), as are all paths until the load is done.

An entry is a hint, never the truth: it is used only for the inode, size and mtime the
open file has (so a version replaced, deleted or changed by hand by any process is never
answered from it), and only while the root's row generation (a counter in
`.artifactd/row-generation`, shared by every process like the hot cache's write generation,
hotcache.py) is the one it was read at, or one this process's own change carried it to
(below). Commits of new versions leave it alone: a new inode, or a row
for this one no entry can hold. It is bumped, under the write lock and after the database
changed, by the two changes an entry could miss: a row rewritten for the same inode (a
re-upload of identical bytes with a new expiry), and a version going (a delete, an
eviction, a replacement, a row of a file removed by hand forgotten), since its inode number
may come back at the same path as another version of the same size and, within one tick of
the filesystem's clock, the same mtime. A cache's steady stream of new keys then keeps the
index valid. `last_accessed` is not kept (the store's `info` reads it afresh).

A bump by this process's own store (`ReadIndex.bump`, under the write lock: a delete, an
eviction, a replacement, a row forgotten by reconciliation) names the paths whose rows
changed: their entries go and the others stay good at the new generation, since no other
process can have changed a row meanwhile (each bumps under the same lock, and the index
was current at the generation the bump started from). Before, each such change sent every
entry back to SQLite once: a cache that deletes or evicts as it serves paid an SQLite
read (about 20 µs on the loop) for the next read of every key. Every other process sees
the generation move and retires all its entries, as before.
"""

from __future__ import annotations

import math
import sqlite3
import struct
import threading
from collections.abc import Collection
from pathlib import Path

from artifactd.store.filesystem.hotcache import GenerationCounter
from artifactd.store.filesystem.metadb import VersionRow

# What `ReadIndex.find` gives: sha256 (hex), content type, created_at, expires_at.
Indexed = tuple[str, str, float, float | None]

MAX_ENTRIES = 200_000
# inode, size, mtime_ns, created_at, expires_at (NaN: none), content type id, epoch (this
# index's own count of the generations that retired every entry), sha256 (raw)
_ENTRY = struct.Struct("<QqqddHQ32s")
_LOAD = (
    "SELECT path, ino, size, mtime_ns, sha256, content_type, created_at, expires_at "
    "FROM versions WHERE sha256 IS NOT NULL LIMIT ?"
)


class ReadIndex:
    """path -> packed entry; safe to use from several threads (loads run in one)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._entries: dict[str, bytes] = {}
        self._types: list[str] = []
        self._type_ids: dict[str, int] = {}
        self._lock = threading.Lock()  # for the content-type table, the bound and the state
        # The row generation the entries of the current epoch are good at (None: no entry
        # yet), and that epoch: one tuple, read at once by `find` without the lock.
        self._state: tuple[int | None, int] = (None, 0)

    def __len__(self) -> int:
        return len(self._entries)

    def find(
        self, path: str, ino: int, size: int, mtime_ns: int, generation: int
    ) -> Indexed | None:
        """What the row of this exact version records, if known at `generation`: its
        digest, the content type a read gives, its creation and expiry times (a tuple,
        not a row: a cold read builds its ArtifactInfo from them, `info_from_fields`)."""
        current, epoch = self._state
        if generation != current:
            return None
        packed = self._entries.get(path)
        if packed is None:
            return None
        e_ino, e_size, e_mtime, created, expires, type_id, e_epoch, digest = _ENTRY.unpack(packed)
        if e_ino != ino or e_size != size or e_mtime != mtime_ns or e_epoch != epoch:
            return None
        return (
            digest.hex(),
            self._types[type_id],
            created,
            None if expires != expires else expires,  # NaN (none) is not equal to itself
        )

    def note(self, row: VersionRow, generation: int) -> None:
        """Keep `row` (read at `generation`) as the entry of its path: a newer generation
        than the index's retires every entry (another process changed rows it cannot
        name); an older one means the row may predate a change, and it is not kept."""
        if row.sha256 is None or len(row.sha256) != 64:
            return
        try:
            digest = bytes.fromhex(row.sha256)
        except ValueError:
            return
        # The type a read gives, guessed now when the row has none: not at every read.
        content_type = row.shown_content_type()
        with self._lock:
            current, epoch = self._state
            if generation != current:
                if current is not None and generation < current:
                    return
                epoch += 1
                self._state = (generation, epoch)
            type_id = self._type_ids.get(content_type)
            if type_id is None:
                if len(self._types) >= 0xFFFF:
                    return  # an absurd number of distinct types: the rest go to SQLite
                type_id = len(self._types)
                self._types.append(content_type)
                self._type_ids[content_type] = type_id
            entries = self._entries
            if row.path not in entries:
                while len(entries) >= self._max:
                    del entries[next(iter(entries))]  # the oldest first
            entries[row.path] = _ENTRY.pack(
                row.ino,
                row.size,
                row.mtime_ns,
                row.created_at,
                math.nan if row.expires_at is None else row.expires_at,
                type_id,
                epoch,
                digest,
            )

    def load(self, db_path: Path, generation: int, stop: threading.Event) -> None:
        """Fill from the metadata database (rows read at `generation`), streamed through a
        connection of its own, read-only: no lock any request waits for, no list of every
        row. Blocking (a background thread); ends early when `stop` is set."""
        if not db_path.exists():
            return
        try:
            conn = sqlite3.connect(db_path, timeout=5.0, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            conn.execute("PRAGMA query_only=1")
            cursor = conn.execute(_LOAD, (self._max,))
            while not stop.is_set() and (rows := cursor.fetchmany(1000)):
                for path, ino, size, mtime_ns, sha256, content_type, created, expires in rows:
                    row = VersionRow(
                        path, ino, size, mtime_ns, sha256, content_type, created, expires, None
                    )
                    self.note(row, generation)
        except sqlite3.Error:
            return  # what was read is kept; the rest is looked up in SQLite
        finally:
            conn.close()

    def bump(self, counter: GenerationCounter, paths: Collection[str] | None) -> None:
        """Bump the root's row generation for a change of this process's store to the rows
        of `paths` (None: rows it cannot name), under the store's write lock. The entries
        of `paths` go; the others stay good at the new generation if the index was current
        at the old one. Under the index's lock, so that a row read before the change is
        not noted after it (`note` refuses its older generation)."""
        with self._lock:
            before = counter.value
            for path in paths or ():
                self._entries.pop(path, None)
            counter.bump()
            current, epoch = self._state
            if paths is not None and current == before:
                self._state = (counter.value, epoch)

    def forget(self, path: str) -> None:
        with self._lock:
            self._entries.pop(path, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
