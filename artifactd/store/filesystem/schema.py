"""The metadata database's schema: the versions table, its row, and the migrations that
bring an older database up to SCHEMA_VERSION (each step one transaction)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from artifactd.http.mediatypes import guess_content_type

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

    def shown_content_type(self) -> str:
        """The type a read of this version gives: the recorded one, else guessed from the
        path (a file placed by hand, an upload without one)."""
        return self.content_type or guess_content_type(self.path)


def version_of(ino: int, size: int, mtime_ns: int) -> str:
    """What tells one version of a file from another: inode, size and modification time
    (`ArtifactInfo.version`; the same whether read from a stat or from a row)."""
    return f"{ino:x}-{size:x}-{mtime_ns:x}"


COLUMNS = (
    "path, ino, size, mtime_ns, sha256, content_type, created_at, expires_at, last_accessed, origin"
)
PLACEHOLDERS = "?,?,?,?,?,?,?,?,?,?"

# A version found on disk: an existing row for its inode wins unless it too was found on
# disk and describes other bytes (a file rewritten in place by hand), or lacks the digest
# (recorded by the reconciliation walk, which hashes nothing).
FOUND_UPSERT = (
    f"INSERT INTO versions ({COLUMNS}) VALUES ({PLACEHOLDERS}) "
    "ON CONFLICT (path, ino) DO UPDATE SET size = excluded.size, "
    "mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, "
    "created_at = excluded.created_at "
    "WHERE versions.origin = 'found' AND "
    "(versions.size != excluded.size OR versions.mtime_ns != excluded.mtime_ns "
    "OR (versions.sha256 IS NULL AND excluded.sha256 IS NOT NULL))"
)


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
