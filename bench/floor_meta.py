"""The metadata floor's rows (`python -m bench.baseline_floor --metadata`, server
`aiohttp-floor-meta`): the least a server can do to make one row per PUT durable in SQLite
before the PUT's rename, as the SPEC asks of artifactd (an artifact's sha-256, content type
and expiry durable before its 201).

One database in WAL mode with `synchronous=FULL` (https://sqlite.org/pragma.html#pragma_synchronous:
"In WAL mode when synchronous is FULL, the WAL file is synchronized after each transaction
commit"), one connection, one table keyed by path. Rows are group-committed as the floor's
directory fsyncs are (bench/fsync_ceiling.py's DirSyncer): a PUT adds its row and waits; the
first waiter to find no commit running writes every row queued so far in one transaction
(one INSERT, executemany, then COMMIT: one WAL fsync), while the rows arriving meanwhile
queue for the next. Nothing else: no read before the write, no cleanup of replaced rows, no
lock shared with other processes.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

# Where the database goes under the floor's root (left out of the files it serves).
META_DIR = ".floor-meta"
CREATE = (
    "CREATE TABLE IF NOT EXISTS versions (path TEXT PRIMARY KEY, ino INTEGER, size INTEGER, "
    "mtime_ns INTEGER, sha256 TEXT, content_type TEXT, created_at REAL, expires_at REAL)"
)
INSERT = "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
Row = tuple[str, int, int, int, str, str, float, float | None]


class RowLog:
    """Rows made durable in shared transactions; `record` runs in the PUT's worker thread."""

    def __init__(self, root: Path) -> None:
        directory = root / META_DIR
        directory.mkdir(exist_ok=True)
        self._conn = sqlite3.connect(
            directory / "metadata.db", isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(CREATE)
        self._cond = threading.Condition()
        self._queued: list[Row] = []
        self._added = 0  # rows added so far
        self._durable = 0  # rows covered by a finished commit
        self._busy = False
        self.commits = 0  # transactions committed (for the tests: fewer than rows)

    def record(self, row: Row) -> None:
        """Add `row`; returns once a committed transaction holds it."""
        with self._cond:
            self._queued.append(row)
            self._added += 1
            ticket = self._added
            while self._durable < ticket:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                rows, self._queued = self._queued, []
                covered = self._added
                self._cond.release()
                try:
                    self._commit(rows)
                except BaseException:
                    self._cond.acquire()  # released by the `with` as this raises
                    self._queued[:0] = rows  # not durable: they go with the next commit
                    self._busy = False
                    self._cond.notify_all()
                    raise
                self._cond.acquire()
                self._busy = False
                self._durable = max(self._durable, covered)
                self._cond.notify_all()

    def _commit(self, rows: list[Row]) -> None:
        self._conn.execute("BEGIN")
        try:
            self._conn.executemany(INSERT, rows)
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self.commits += 1

    def close(self) -> None:
        self._conn.close()
