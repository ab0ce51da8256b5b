"""What maintenance reads from the metadata database: keyset pages over its indexes (path
order, least recent access, expiry), lookups of many paths, and the running totals; never a
whole table at once. A mixin of MetadataDB (its connection and lock)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from artifactd.store.filesystem.schema import COLUMNS, LRU_KEY, VersionRow

# Bound on the parameters of one `IN (...)` query.
LOOKUP_CHUNK = 500

# A key that orders rows after another in a keyset page: (order value, path, inode).
PageKey = tuple[float, str, int]


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


class IndexQueries:
    """Reads in bounded pages; blocking, as MetadataDB."""

    _conn: sqlite3.Connection
    _lock: threading.Lock
    schema_version: int

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[VersionRow]:
        with self._lock:
            rows = self._conn.execute(sql, tuple(params)).fetchall()
        return [VersionRow(*row) for row in rows]

    def iter_all(self) -> Iterator[VersionRow]:
        """Every row in path order, read in keyset pages (never all at once)."""
        after: str | None = None
        while page := self.page("", after, LOOKUP_CHUNK):
            yield from page
            after = page[-1].path
            # The last path's other versions (rare: around a commit) may straddle the page.
            yield from (row for row in self.rows_for_paths([after]) if row not in page)

    def page(
        self, prefix: str, after: str | None, limit: int, *, live_at: float | None = None
    ) -> list[VersionRow]:
        """Up to `limit` rows whose path starts with `prefix` and sorts after `after`, in
        path order: one range of the primary key, O(log N + limit). With `live_at`, rows
        expired by then are left out."""
        # One lower bound only: given two, SQLite may seek by the looser one and scan from
        # the prefix's start to the cursor, O(N) a page.
        if after is not None and after >= prefix:
            sql = f"SELECT {COLUMNS} FROM versions WHERE path > ?"
            params: list[object] = [after]
        else:
            sql = f"SELECT {COLUMNS} FROM versions WHERE path >= ?"
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
        sql = f"SELECT {COLUMNS} FROM versions WHERE (expires_at IS NULL OR expires_at > ?)"
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
        sql = f"SELECT {COLUMNS} FROM versions WHERE expires_at IS NOT NULL AND expires_at <= ?"
        params: list[object] = [now]
        if after is not None:
            sql += " AND expires_at >= ? AND (expires_at > ? OR (path, ino) > (?, ?))"
            params.extend((after[0], *after))
        return self._query(sql + " ORDER BY expires_at, path, ino LIMIT ?", [*params, limit])

    def rows_for_paths(self, paths: Sequence[str]) -> list[VersionRow]:
        """The rows of the given paths (any number: looked up in chunks)."""
        sql = f"SELECT {COLUMNS} FROM versions WHERE path IN ({{}})"
        return [VersionRow(*row) for row in self._in_chunks(sql, paths)]

    def identities_for_paths(self, paths: Sequence[str]) -> list[tuple[str, int, int, int]]:
        """(path, inode, size, mtime_ns) of the rows of the given paths: what tells a
        recorded version from a file changed or placed by hand, without the rest of each
        row (a reconciliation's walk asks for every file's)."""
        sql = "SELECT path, ino, size, mtime_ns FROM versions WHERE path IN ({})"
        return self._in_chunks(sql, paths)

    def paths_with_rows(self, paths: Sequence[str]) -> set[str]:
        """Those of `paths` some version has a row for (each a lookup of the primary key's
        prefix)."""
        sql = "SELECT DISTINCT path FROM versions WHERE path IN ({})"
        return {path for (path,) in self._in_chunks(sql, paths)}

    def _in_chunks(self, sql: str, values: Sequence[str]) -> list[Any]:
        """The rows of `sql`, whose `{}` is an `IN (...)` list of `values`: one query per
        LOOKUP_CHUNK of them (any number of values)."""
        found: list[Any] = []
        for start in range(0, len(values), LOOKUP_CHUNK):
            chunk = values[start : start + LOOKUP_CHUNK]
            with self._lock:
                found += self._conn.execute(sql.format(",".join("?" * len(chunk))), chunk)
        return found

    def row_count(self) -> int:
        """Every row, expired ones included: the running total (O(1))."""
        with self._lock:
            if self.schema_version >= 1:
                (rows,) = self._conn.execute("SELECT rows FROM totals WHERE id = 0").fetchone()
            else:
                (rows,) = self._conn.execute("SELECT count(*) FROM versions").fetchone()
        return int(rows)

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
