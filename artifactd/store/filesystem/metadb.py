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
from dataclasses import dataclass
from pathlib import Path
from urllib.request import pathname2url

from artifactd.errors import StorageFullError

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    path          TEXT    NOT NULL,
    ino           INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    sha256        TEXT,
    content_type  TEXT,
    created_at    REAL    NOT NULL,
    expires_at    REAL,
    last_accessed REAL,
    origin        TEXT    NOT NULL DEFAULT 'found',
    PRIMARY KEY (path, ino)
);
CREATE INDEX IF NOT EXISTS versions_expires ON versions (expires_at)
    WHERE expires_at IS NOT NULL;
"""

# Schema versions (PRAGMA user_version): 0 is the table above alone; 1 adds what maintenance
# reads instead of walking the tree: the least-recently-used order as an index, and running
# totals kept by triggers, so every writer (whatever its transaction) keeps them right.
SCHEMA_VERSION = 1
MIGRATIONS = {
    1: """
CREATE INDEX IF NOT EXISTS versions_lru
    ON versions (coalesce(last_accessed, created_at), path, ino);
CREATE INDEX IF NOT EXISTS versions_expiry ON versions (expires_at, path, ino)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS totals (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    rows  INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR REPLACE INTO totals (id, rows, bytes)
    SELECT 0, count(*), coalesce(sum(size), 0) FROM versions;
CREATE TRIGGER IF NOT EXISTS versions_total_insert AFTER INSERT ON versions BEGIN
    UPDATE totals SET rows = rows + 1, bytes = bytes + new.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS versions_total_delete AFTER DELETE ON versions BEGIN
    UPDATE totals SET rows = rows - 1, bytes = bytes - old.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS versions_total_update AFTER UPDATE OF size ON versions BEGIN
    UPDATE totals SET bytes = bytes - old.size + new.size WHERE id = 0;
END;
""",
}

# The ordering key of least-recently-used eviction: never read counts as read when created.
LRU_KEY = "coalesce(last_accessed, created_at)"
# Bound on the parameters of one `IN (...)` query.
LOOKUP_CHUNK = 500

# A key that orders rows after another in a keyset page: (order value, path, inode).
PageKey = tuple[float, str, int]


@dataclass(frozen=True, slots=True)
class VersionRow:
    path: str
    ino: int
    size: int
    mtime_ns: int
    sha256: str | None
    content_type: str | None
    created_at: float
    expires_at: float | None
    last_accessed: float | None
    origin: str = "found"  # 'upload': digest computed while receiving; 'found': hashed from disk

    def matches(self, ino: int, size: int, mtime_ns: int) -> bool:
        return (self.ino, self.size, self.mtime_ns) == (ino, size, mtime_ns)


_COLUMNS = (
    "path, ino, size, mtime_ns, sha256, content_type, created_at, expires_at, last_accessed, origin"
)
_PLACEHOLDERS = "?,?,?,?,?,?,?,?,?,?"

# A version found on disk: an existing row for its inode wins unless it too was found on
# disk and describes other bytes (a file rewritten in place by hand), or lacks the digest
# (recorded by the reconciliation walk, which hashes nothing).
_FOUND_UPSERT = (
    f"INSERT INTO versions ({_COLUMNS}) VALUES ({_PLACEHOLDERS}) "
    "ON CONFLICT (path, ino) DO UPDATE SET size = excluded.size, "
    "mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, "
    "created_at = excluded.created_at "
    "WHERE versions.origin = 'found' AND "
    "(versions.size != excluded.size OR versions.mtime_ns != excluded.mtime_ns "
    "OR (versions.sha256 IS NULL AND excluded.sha256 IS NOT NULL))"
)


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


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to SCHEMA_VERSION, one transaction per step (all or nothing)."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for version in range(current + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """A migration script split into statements (executescript would commit on its own)."""
    statements: list[str] = []
    pending = ""
    for line in script.strip().splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return statements


def prefix_end(prefix: str) -> str | None:
    """The least string after every string starting with `prefix` (None: no bound), so that
    a prefix is one index range: `prefix <= path < prefix_end(prefix)`. SQLite compares
    TEXT as UTF-8 bytes, which orders as code points do (Python's order)."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if 0xD800 <= last <= 0xDFFF:  # surrogates cannot be stored: skip them
            last = 0xE000
        if last <= 0x10FFFF:
            return "".join(chars) + chr(last)
    return None


class MetadataDB:
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

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[VersionRow]:
        with self._lock:
            rows = self._conn.execute(sql, tuple(params)).fetchall()
        return [VersionRow(*row) for row in rows]

    def find(self, path: str, ino: int) -> VersionRow | None:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM versions WHERE path = ? AND ino = ?", (path, ino)
        )
        return rows[0] if rows else None

    def iter_all(self) -> Iterator[VersionRow]:
        """Every row in path order, read in keyset pages (never all at once)."""
        after: str | None = None
        while page := self.page("", after, LOOKUP_CHUNK):
            yield from page
            after = page[-1].path
            # The last path's other versions (rare: around a commit) may straddle the page.
            yield from (row for row in self.rows_for_paths([after]) if row not in page)

    # -- what maintenance reads: keyset pages over indexes, never a whole table ------------

    def page(
        self, prefix: str, after: str | None, limit: int, *, live_at: float | None = None
    ) -> list[VersionRow]:
        """Up to `limit` rows whose path starts with `prefix` and sorts after `after`, in
        path order: one range of the primary key, O(log N + limit). With `live_at`, rows
        expired by then are left out."""
        # One lower bound only: given two, SQLite may seek by the looser one and scan from
        # the prefix's start to the cursor, O(N) a page.
        if after is not None and after >= prefix:
            sql = f"SELECT {_COLUMNS} FROM versions WHERE path > ?"
            params: list[object] = [after]
        else:
            sql = f"SELECT {_COLUMNS} FROM versions WHERE path >= ?"
            params = [prefix]
        end = prefix_end(prefix)
        if end is not None:
            sql += " AND path < ?"
            params.append(end)
        if live_at is not None:
            sql += " AND (expires_at IS NULL OR expires_at > ?)"
            params.append(live_at)
        return self._query(sql + " ORDER BY path, ino LIMIT ?", [*params, limit])

    def least_recent(
        self, after: PageKey | None, limit: int, *, live_at: float, prefix: str = ""
    ) -> list[VersionRow]:
        """Up to `limit` live rows, least recently accessed first (never accessed: by
        creation), after the key `after`: a walk of the versions_lru index. With a prefix,
        rows outside it are skipped as the index is walked."""
        sql = f"SELECT {_COLUMNS} FROM versions WHERE (expires_at IS NULL OR expires_at > ?)"
        params: list[object] = [live_at]
        if prefix:
            # `+path`: not a term for an index, so the LRU index drives (read in its order,
            # the prefix filtered); by the path index each page sorted the whole prefix.
            sql += " AND +path >= ?"
            params.append(prefix)
            end = prefix_end(prefix)
            if end is not None:
                sql += " AND +path < ?"
                params.append(end)
        if after is not None:
            # `key >= ?` first: a seek into the index (a row-value comparison alone scans it).
            sql += f" AND {LRU_KEY} >= ? AND ({LRU_KEY} > ? OR (path, ino) > (?, ?))"
            params.extend((after[0], *after))
        return self._query(sql + f" ORDER BY {LRU_KEY}, path, ino LIMIT ?", [*params, limit])

    def expired(self, now: float, after: PageKey | None, limit: int) -> list[VersionRow]:
        """Up to `limit` rows expired at `now`, soonest expired first, after the key
        `after`: a range of the versions_expires index."""
        sql = f"SELECT {_COLUMNS} FROM versions WHERE expires_at IS NOT NULL AND expires_at <= ?"
        params: list[object] = [now]
        if after is not None:
            sql += " AND expires_at >= ? AND (expires_at > ? OR (path, ino) > (?, ?))"
            params.extend((after[0], *after))
        return self._query(sql + " ORDER BY expires_at, path, ino LIMIT ?", [*params, limit])

    def rows_for_paths(self, paths: Sequence[str]) -> list[VersionRow]:
        """The rows of the given paths (any number: looked up in chunks)."""
        found: list[VersionRow] = []
        for start in range(0, len(paths), LOOKUP_CHUNK):
            chunk = paths[start : start + LOOKUP_CHUNK]
            found += self._query(
                f"SELECT {_COLUMNS} FROM versions WHERE path IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        return found

    def totals(self, now: float) -> tuple[int, int, int]:
        """(live rows, their bytes, expired rows) at `now`: the running totals less the
        expired rows, counted over the versions_expires index (O(log N + expired))."""
        with self._lock:
            if self.schema_version >= 1:
                rows, size = self._conn.execute(
                    "SELECT rows, bytes FROM totals WHERE id = 0"
                ).fetchone()
            else:  # an old database on a read-only filesystem: no totals to read
                rows, size = self._conn.execute(
                    "SELECT count(*), coalesce(sum(size), 0) FROM versions"
                ).fetchone()
            expired, expired_bytes = self._conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM versions "
                "WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            ).fetchone()
        return int(rows) - int(expired), int(size) - int(expired_bytes), int(expired)

    def usage_under(self, prefix: str, now: float) -> tuple[int, int]:
        """(live rows, their bytes) whose path starts with `prefix`: one index range."""
        if not prefix:
            return self.totals(now)[:2]
        sql = "SELECT count(*), coalesce(sum(size), 0) FROM versions WHERE path >= ?"
        params: list[object] = [prefix]
        end = prefix_end(prefix)
        if end is not None:
            sql += " AND path < ?"
            params.append(end)
        sql += " AND (expires_at IS NULL OR expires_at > ?)"
        with self._lock:
            count, size = self._conn.execute(sql, (*params, now)).fetchone()
        return int(count), int(size)

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
                f"INSERT OR REPLACE INTO versions ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",
                _values(row),
            )

    def record_found_version(self, row: VersionRow) -> None:
        """Record a version found on disk (placed or changed by hand). An existing row for
        this inode wins unless it too was found on disk and describes older bytes (a file
        rewritten in place by hand)."""
        if self.read_only:
            return
        with self._writing():
            self._conn.execute(_FOUND_UPSERT, _values(row))

    def record_found_versions(self, rows: Sequence[VersionRow]) -> None:
        """`record_found_version` for many rows in one transaction (all or none)."""
        if self.read_only or not rows:
            return
        with self._writing(), self._transaction():
            self._conn.executemany(_FOUND_UPSERT, [_values(row) for row in rows])

    def delete_versions(self, keys: Iterable[tuple[str, int]]) -> None:
        """Forget the exact versions (path, inode) given, in one transaction."""
        batch = list(keys)
        if self.read_only or not batch:
            return
        with self._writing(), self._transaction():
            self._conn.executemany("DELETE FROM versions WHERE path = ? AND ino = ?", batch)

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
