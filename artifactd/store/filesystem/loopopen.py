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

The row comes from the read index in memory (readindex.py) when it holds this version at
the current write generation, else from SQLite, one indexed read. It never waits: the
connection has no busy timeout (a WAL reader waits for no writer; SQLITE_BUSY, as during
recovery, falls back to the thread) and its lock is taken without blocking. What it may
cost the loop is a page-cache miss of the directory entry or of the database's index page:
a disk read, as for any first touch of the tree.

Correctness: the row is keyed by the inode this open holds, so a path replaced or deleted
by any process (a new inode, or none) is never answered from an old row; a row's own change
for the same inode (a re-PUT of identical bytes with a new expiry) bumps the generation, so
it is read afresh from SQLite.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

from artifactd.store.filesystem.metadb import VersionRow

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


def open_regular(root: str, root_dev: int, path: str) -> tuple[int, os.stat_result] | None:
    """An open descriptor of the regular file at `path` and its fstat, on the loop; None
    (nothing left open) for anything else or any failure: the worker thread's open then
    says why."""
    try:
        fd = os.open(os.path.join(root, path), _OPEN_FLAGS)
    except OSError:
        return None  # absent, a symlink, out of descriptors
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
