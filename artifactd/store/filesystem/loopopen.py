"""Opening a recorded version on the event loop: no worker thread for a cache's cold reads.

A cache's reads are random keys, so most miss the hot cache (hotcache.py) and used to take a
worker thread for the open, the fstat and the metadata lookup. A version the metadata
database records exactly — its path and inode, with that size and mtime and a digest, the
identity `FilesystemStore._info_for` checks too — needs no thread: `open` (O_NONBLOCK,
O_NOFOLLOW) and `fstat` of one file take microseconds, and the row is one indexed SQLite read
through this module's own read-only connection. Anything else returns None and takes the
worker thread, which gives the reason or hashes and records the version: absent, a
directory, a FIFO, a symlink at the last component, a version changed or placed by hand
(no matching row), one not hashed yet, another device, a busy database.

`LoopOpener` does it for the store: the row comes from the read index in memory
(readindex.py) when it holds this version at the current row generation, else from SQLite,
one indexed read; a key read again soon after its previous read (`worth_keeping`) goes into
the hot cache (hotcache.py). It never waits: the
connection has no busy timeout (a WAL reader waits for no writer; SQLITE_BUSY, as during
recovery, falls back to the thread) and its lock is taken without blocking. What it may
cost the loop is a page-cache miss of the directory entry or of the database's index page:
a disk read, as for any first touch of the tree.

Correctness: the row is keyed by the inode this open holds, so a path replaced or deleted
by any process (a new inode, or none) is never answered from an old row; a row's own change
for the same inode (a re-PUT of identical bytes with a new expiry) bumps the row generation,
so it is read afresh from SQLite.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

from artifactd.errors import NotFoundError
from artifactd.store.accesstimes import PendingAccesses
from artifactd.store.base import ArtifactInfo, ArtifactReader
from artifactd.store.filesystem.confinement import plain_join
from artifactd.store.filesystem.hotcache import GenerationCounter, HotCache, worth_keeping
from artifactd.store.filesystem.metadb import VersionRow
from artifactd.store.filesystem.readindex import ReadIndex
from artifactd.store.filesystem.writes import info_from_fields, info_from_row
from artifactd.store.readers import FileReader, MemoryReader

_FIND = (
    "SELECT path, ino, size, mtime_ns, sha256, content_type, created_at, expires_at, "
    "last_accessed, origin FROM versions WHERE path = ? AND ino = ?"
)
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW


class LoopLookup:
    """Reads of the metadata database from the event loop, never waiting for a lock."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one statement at a time on the connection
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # Opened on first use, after the store made the database and switched it to WAL.
            conn = sqlite3.connect(
                self._db_path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only=1")
            self._conn = conn
        return self._conn

    def find(self, path: str, ino: int) -> VersionRow | None:
        """The row of (path, inode), or None: absent, or the database busy or failing."""
        if self._closed or not self._lock.acquire(blocking=False):
            return None
        try:
            # fetchall: the statement is reset at once, so no read transaction stays open
            # to hold back a checkpoint.
            rows = self._connection().execute(_FIND, (path, ino)).fetchall()
        except sqlite3.Error:
            return None
        finally:
            self._lock.release()
        return VersionRow(*rows[0]) if rows else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def open_regular(root_fd: int, root_dev: int, path: str) -> tuple[int, os.stat_result] | None:
    """An open descriptor of the regular file at `path` (relative to the root's open
    descriptor: openat, no walk of the root's own components, 0.7 µs less per open) and
    its fstat, on the loop; None (nothing left open) for anything else or any failure: the
    worker thread's open then says why. FileNotFoundError or NotADirectoryError when no
    file is there (`LoopOpener.open` judges whether that proves a miss)."""
    try:
        fd = os.open(path, _OPEN_FLAGS, dir_fd=root_fd)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError:
        return None  # a symlink (ELOOP), out of descriptors
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    # Another device: the inode number would not name the recorded version.
    if not stat.S_ISREG(st.st_mode) or st.st_dev != root_dev:
        os.close(fd)
        return None
    return fd, st


class LoopOpener:
    """The filesystem store's opens on the loop: the file, its row (read index, else SQLite),
    and the hot cache for a key read again. Owns the read index, its loading thread and the
    loop's SQLite connection."""

    def __init__(
        self,
        root: Path,
        db_path: Path,
        hot: HotCache,
        rows: GenerationCounter | None,
        accessed: PendingAccesses,
        *,
        load: bool,
    ) -> None:
        self._root_str = str(root)  # real already (resolve_inside's premise)
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._root_dev = os.fstat(self._root_fd).st_dev
        self._hot = hot
        self._rows = rows
        self._accessed = accessed
        self.lookup = LoopLookup(db_path)
        # What cold reads need of each recorded version, loaded in one query meanwhile.
        self.index = ReadIndex()
        self._stop = threading.Event()
        self.loader: threading.Thread | None = None
        if load:
            generation = self.row_generation()  # before reading: a racing change shows
            self.loader = threading.Thread(
                target=self.index.load,
                args=(db_path, generation, self._stop),
                name="artifactd-index",
                daemon=True,
            )
            self.loader.start()

    def row_generation(self) -> int:
        """The root's row generation (see readindex.py), read before the open and the row
        it validates: a change racing them shows as a newer generation."""
        return self._rows.value if self._rows is not None else 0

    def open(self, path: str, *, use_index: bool, judge_absent: bool) -> ArtifactReader | None:
        """The version at `path` opened on the loop, if the metadata database records it
        exactly (from the read index when it holds it at this row generation, else SQLite).
        With `judge_absent`, NotFoundError when the open proves nothing is there (see
        `_proven_absent`); without, None then, as for anything else it may not decide."""
        generation = self._hot.current_generation()  # before opening, as the thread does
        rows = self.row_generation()
        try:
            opened = open_regular(self._root_fd, self._root_dev, path)
        except (FileNotFoundError, NotADirectoryError):
            if judge_absent and self._proven_absent(path):
                raise NotFoundError(path) from None
            return None
        if opened is None:
            return None
        fd, st = opened
        ino, size, mtime_ns = st.st_ino, st.st_size, st.st_mtime_ns
        accessed = self._accessed.get(path)
        found = self.index.find(path, ino, size, mtime_ns, rows) if use_index else None
        if found is not None:
            sha256, content_type, created_at, expires_at = found
            info = info_from_fields(
                path, st, sha256, content_type, created_at, expires_at, accessed
            )
        else:
            row = self.lookup.find(path, ino)
            if row is None or row.sha256 is None or not row.matches(ino, size, mtime_ns):
                os.close(fd)
                return None  # unrecorded, unhashed or busy: the thread's open
            self.index.note(row, rows)
            info = info_from_row(path, st, row, accessed)
        now = time.time()
        if info.is_expired(now):
            os.close(fd)
            return None  # the thread's open answers NotFoundError
        # Only a read worth keeping is counted and judged (about 0.7 µs): a key read once,
        # or long ago, could not take an entry anyway.
        if not worth_keeping(accessed, now) or not self._hot.admits(path):
            return FileReader(fd, info, info_once=True)  # `info` is kept nowhere
        data = self._hot.remember_now(path, info, fd, generation)
        if data is None:
            return FileReader(fd, info)
        os.close(fd)
        return MemoryReader(data, info)

    def _proven_absent(self, path: str) -> bool:
        """After the open failed with ENOENT or ENOTDIR: whether the thread's open would
        answer NotFoundError too. It would unless a link lies on the way (the openat
        followed it; the thread's `resolve_inside` may refuse it as leaving the root), so
        the path's components are looked at without following any (`plain_join`: an lstat
        each, up to the first absent one, about 1 µs apiece). A file placed by hand is never
        missed: ENOENT says that no file was there when the open looked."""
        return plain_join(self._root_str, path) is not None

    def note(self, st: os.stat_result, info: ArtifactInfo, generation: int) -> None:
        """What the worker thread's open learnt of a version, for the next cold read."""
        if info.sha256 is not None:
            row = VersionRow(
                info.path,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                info.sha256,
                info.content_type,
                info.created_at,
                info.expires_at,
                None,
            )
            self.index.note(row, generation)

    def close(self) -> None:
        """Blocking (the loader is joined)."""
        self._stop.set()
        if self.loader is not None:
            self.loader.join()
        self.lookup.close()
        self.index.clear()
        root_fd, self._root_fd = self._root_fd, -1  # a late open fails (EBADF), never
        os.close(root_fd)  # resolves against whatever reuses the number
