"""Artifact metadata for the filesystem backend: one SQLite database in WAL mode.

Rows are keyed by (path, inode) and carry the file's size and mtime, so a row describes one
exact version on disk: a reader that opened an old inode finds the old row, a file changed
by hand matches no row and is re-hashed. A row written by an upload (origin 'upload') is
never overwritten by such a re-hash: its digest is the one `verify` checks the bytes
against. WAL with a busy timeout makes the database safe to share between several worker
processes on one root.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from urllib.request import pathname2url

from artifactd.errors import StorageFullError
from artifactd.store.filesystem.metaqueries import IndexQueries
from artifactd.store.filesystem.schema import (
    COLUMNS,
    FOUND_UPSERT,
    PLACEHOLDERS,
    SCHEMA,
    VersionRow,
    migrate,
)

__all__ = ["MetadataCorruptError", "MetadataDB", "VersionRow"]

_RECOVERY_HINT = (
    "; move it aside and start again to begin a new one (the files under the root are kept "
    "and re-hashed, but the content types and expiry times recorded for them are lost)"
)


# How long opening waits for other processes switching a new database to WAL at once.
WAL_SWITCH_SECONDS = 30.0


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """WAL, so that readers never wait for the writer. Switching a new database needs an
    exclusive lock, and when several processes open a new root together (`serve
    --workers N`) SQLite answers "database is locked" at once instead of waiting out the
    connection's busy timeout: retry until the one switching is done."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class MetadataDB(IndexQueries):
    """Blocking access to the metadata database; callers run it in a worker thread.

    `created` tells whether the database had no metadata yet (a new root, or a database
    that went missing). With `read_only` (the storage root is on a read-only filesystem)
    an existing database is opened read-only and writes are skipped: a version found on
    disk is then hashed again by each process instead of being recorded. Without a
    database there, an in-memory one stands in.
    """

    def __init__(self, db_path: Path, *, read_only: bool = False) -> None:
        self._lock = threading.Lock()
        self.read_only = read_only and db_path.exists()
        try:
            if self.read_only:
                self._conn = _connect_read_only(db_path)
                self.created = False
            else:
                target = ":memory:" if read_only else db_path
                self._conn = sqlite3.connect(
                    target, timeout=30.0, isolation_level=None, check_same_thread=False
                )
                _switch_to_wal(self._conn)
                self._conn.execute("PRAGMA synchronous=NORMAL")
                # Rows an INSERT OR REPLACE deletes fire the delete trigger only with this on
                # (https://sqlite.org/lang_conflict.html, REPLACE): the totals depend on it.
                self._conn.execute("PRAGMA recursive_triggers=ON")
                self.created = not self._has_versions_table()
                self._conn.executescript(SCHEMA)
                migrate(self._conn)
            self.schema_version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            # Damage inside the file otherwise surfaces later, as failures of single requests.
            problems = [row[0] for row in self._conn.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            raise MetadataCorruptError(
                f"cannot open metadata database {db_path}: {exc}{_RECOVERY_HINT}"
            ) from exc
        if problems != ["ok"]:
            self._conn.close()
            raise MetadataCorruptError(
                f"metadata database {db_path} is damaged: {problems[0]}{_RECOVERY_HINT}"
            )

    def _has_versions_table(self) -> bool:
        found = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'versions'"
        ).fetchall()
        return bool(found)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def find(self, path: str, ino: int) -> VersionRow | None:
        rows = self._query(
            f"SELECT {COLUMNS} FROM versions WHERE path = ? AND ino = ?", (path, ino)
        )
        return rows[0] if rows else None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the connection for a write; a full disk raises StorageFullError (nothing
        written: SQLite rolls the statement back)."""
        with self._lock:
            try:
                yield
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                    raise StorageFullError("no space left for the metadata database") from exc
                raise

    def upsert(self, row: VersionRow) -> None:
        if self.read_only:
            return
        with self._writing():
            self._conn.execute(
                f"INSERT OR REPLACE INTO versions ({COLUMNS}) VALUES ({PLACEHOLDERS})",
                _values(row),
            )

    def record_versions(self, rows: Sequence[VersionRow]) -> None:
        """Write the rows of a batch of commits in one transaction, durable when this
        returns: the connection runs with synchronous=NORMAL (a commit survives the process,
        not a power loss), and this one transaction with FULL, so its commit fsyncs the WAL
        (https://sqlite.org/pragma.html#pragma_synchronous: "FULL ... In WAL mode ... the
        WAL file is synchronized before each transaction is committed"). One fsync for
        the whole batch, before any of its files is renamed into place."""
        if self.read_only or not rows:
            return
        with self._writing():
            self._conn.execute("PRAGMA synchronous=FULL")
            try:
                self._conn.execute("BEGIN")
                try:
                    self._conn.executemany(
                        f"INSERT OR REPLACE INTO versions ({COLUMNS}) VALUES ({PLACEHOLDERS})",
                        [_values(row) for row in rows],
                    )
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:  # a full disk may have rolled it back
                        self._conn.execute("ROLLBACK")
                    raise
            finally:
                self._conn.execute("PRAGMA synchronous=NORMAL")

    def forget_inodes(self, inodes: Sequence[int]) -> None:
        """Delete the rows of these inodes, whatever their path, in one transaction (a scan:
        rows are keyed by path first; this runs only for what a crash left behind)."""
        if self.read_only or not inodes:
            return
        with self._writing():
            for start in range(0, len(inodes), 500):
                chunk = list(inodes[start : start + 500])
                self._conn.execute(
                    f"DELETE FROM versions WHERE ino IN ({','.join('?' * len(chunk))})", chunk
                )

    def record_found_version(self, row: VersionRow) -> None:
        """Record a version found on disk (placed or changed by hand). An existing row for
        this inode wins unless it too was found on disk and describes older bytes (a file
        rewritten in place by hand)."""
        if self.read_only:
            return
        with self._writing():
            self._conn.execute(FOUND_UPSERT, _values(row))

    def record_found_versions(self, rows: Sequence[VersionRow]) -> None:
        """`record_found_version` for many rows in one transaction (all or none)."""
        if self.read_only or not rows:
            return
        with self._writing(), self._transaction():
            self._conn.executemany(FOUND_UPSERT, [_values(row) for row in rows])

    def delete_versions(self, keys: Iterable[tuple[str, int]]) -> int:
        """Forget the exact versions (path, inode) given, in one transaction; how many rows
        were there to forget (another process may have forgotten some first)."""
        batch = list(keys)
        if self.read_only or not batch:
            return 0
        with self._writing(), self._transaction():
            cursor = self._conn.executemany(
                "DELETE FROM versions WHERE path = ? AND ino = ?", batch
            )
            return cursor.rowcount  # summed over the batch

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT around the block, rolled back on any failure (the connection
        already held)."""
        self._conn.execute("BEGIN")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # a full disk may have rolled it back already
                self._conn.execute("ROLLBACK")
            raise

    def delete_other_versions(self, path: str, keep_ino: int | None) -> None:
        """Forget every version of `path` but the one with inode `keep_ino` (None: all)."""
        if self.read_only:
            return
        with self._writing():
            if keep_ino is None:
                self._conn.execute("DELETE FROM versions WHERE path = ?", (path,))
            else:
                self._conn.execute(
                    "DELETE FROM versions WHERE path = ? AND ino != ?", (path, keep_ino)
                )

    def delete_other_versions_many(self, keep: dict[str, int | None]) -> None:
        """`delete_other_versions` for every path in `keep`, in one transaction (all or
        none)."""
        if self.read_only or not keep:
            return
        with self._writing():
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "DELETE FROM versions WHERE path = ?",
                    [(path,) for path, ino in keep.items() if ino is None],
                )
                self._conn.executemany(
                    "DELETE FROM versions WHERE path = ? AND ino != ?",
                    [(path, ino) for path, ino in keep.items() if ino is not None],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # a full disk may have rolled it back already
                    self._conn.execute("ROLLBACK")
                raise

    def delete_path(self, path: str) -> None:
        self.delete_other_versions(path, None)

    def record_accesses(self, accessed: dict[str, float]) -> None:
        """Write a batch of last-access times in one transaction."""
        if not accessed:
            return
        if self.read_only:
            return
        with self._writing():
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "UPDATE versions SET last_accessed = ? WHERE path = ?",
                    [(ts, path) for path, ts in accessed.items()],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # a full disk may have rolled it back already
                    self._conn.execute("ROLLBACK")
                raise


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    """Open an existing database on a read-only filesystem.

    `mode=ro` sees what a crashed writer left in the WAL but needs the WAL index (-shm)
    to exist already; after a clean shutdown it does not, and `immutable=1` reads the
    (then fully checkpointed) database file alone.
    """
    url = "file:" + pathname2url(str(db_path))
    try:
        conn = sqlite3.connect(f"{url}?mode=ro", uri=True, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.OperationalError:
            conn.close()
            raise
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{url}?immutable=1", uri=True, check_same_thread=False)


def _values(row: VersionRow) -> tuple[object, ...]:
    return (
        row.path,
        row.ino,
        row.size,
        row.mtime_ns,
        row.sha256,
        row.content_type,
        row.created_at,
        row.expires_at,
        row.last_accessed,
        row.origin,
    )


class MetadataCorruptError(Exception):
    """The metadata database exists but cannot be read."""
