"""What the filesystem backend reads from its metadata index instead of walking the tree:
artifacts in path order (API pages, `ls`), usage (running totals), the eviction order
(expired, least recently used) and verification, each in keyset pages of PAGE rows fetched
in a worker thread, so memory stays flat and the event loop is held for one page's
bookkeeping at most. The index learns of files placed by hand at `reconcile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from pathlib import Path

from artifactd.errors import ArtifactdError, StorageFullError
from artifactd.store.accesstimes import PendingAccesses
from artifactd.store.base import ArtifactInfo, Usage, Verification
from artifactd.store.filesystem.confinement import stat_inside
from artifactd.store.filesystem.digests import verify_version
from artifactd.store.filesystem.locks import WriteLock
from artifactd.store.filesystem.metadb import MetadataDB, VersionRow
from artifactd.store.filesystem.metaqueries import PageKey
from artifactd.store.filesystem.reconcile import reconcile
from artifactd.store.filesystem.schema import version_of

log = logging.getLogger("artifactd.store")

PAGE = 256  # rows per index read
# A whole-root reconciliation runs at most this share of the time (its walk stats every
# file): at 1,000,000 files a walk of ~20 s runs at most every ~200 s.
RECONCILE_DUTY = 0.1


def info_from_row(row: VersionRow, pending: float | None = None) -> ArtifactInfo:
    """The version a row describes, without touching the disk."""
    return ArtifactInfo(
        path=row.path,
        size=row.size,
        content_type=row.shown_content_type(),
        modified_at=row.mtime_ns / 1e9,
        created_at=row.created_at,
        sha256=row.sha256,
        expires_at=row.expires_at,
        last_accessed=pending if pending is not None else row.last_accessed,
        version=version_of(row.ino, row.size, row.mtime_ns),
    )


class IndexedReads:
    """The index half of FilesystemStore (a mixin: the store's attributes are its own)."""

    root: Path
    db: MetadataDB
    read_only: bool
    _write_lock: WriteLock
    _accessed: PendingAccesses
    state_dir: Path

    def _info_for(self, path: str, st: os.stat_result, fd: int | None) -> ArtifactInfo:
        raise NotImplementedError  # FilesystemStore's

    def _bump_row_generation(self, paths: Collection[str] | None) -> None:
        raise NotImplementedError  # LockedWrites'

    def _writes_mark(self) -> tuple[int, int]:
        raise NotImplementedError  # LockedWrites'

    async def iter_artifacts(
        self, prefix: str = "", *, include_expired: bool = False, after: str | None = None
    ) -> AsyncIterator[ArtifactInfo]:
        while True:
            infos, after = await asyncio.to_thread(
                self._artifacts_page, prefix, after, None if include_expired else time.time()
            )
            for info in infos:
                yield info
            if after is None:
                return

    def _artifacts_page(
        self, prefix: str, after: str | None, live_at: float | None
    ) -> tuple[list[ArtifactInfo], str | None]:
        """One page in path order, each path stated: the file there now is the truth (a
        row of a file removed by hand is skipped, one changed by hand is described
        anew). Returns the page and where the next starts (None: the end)."""
        rows = self.db.page(prefix, after, PAGE, live_at=live_at)
        if not rows:
            return [], None
        last = rows[-1].path
        by_path: dict[str, list[VersionRow]] = {}
        for row in rows:
            by_path.setdefault(row.path, []).append(row)
        infos: list[ArtifactInfo] = []
        plain: set[str] = set()
        for path, versions in by_path.items():
            try:
                st = stat_inside(self.root, path, plain)
            except (OSError, ArtifactdError):
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            current = [r for r in versions if r.matches(st.st_ino, st.st_size, st.st_mtime_ns)]
            # A row found by the walk and never read has no digest yet: listed without one
            # (as a large file being hashed is), so a listing never queues a hash per file.
            info = (
                info_from_row(current[0], self._accessed.get(path))
                if current
                else self._info_for(path, st, None)
            )
            if live_at is None or not info.is_expired(live_at):
                infos.append(info)
        return infos, last

    async def usage(self, prefix: str = "", now: float | None = None) -> Usage:
        now = time.time() if now is None else now
        if not prefix:
            count, size, expired = await asyncio.to_thread(self.db.totals, now)
            return Usage(count, size, expired)
        count, size = await asyncio.to_thread(self.db.usage_under, prefix, now)
        return Usage(count, size)

    async def iter_expired(self, now: float) -> AsyncIterator[ArtifactInfo]:
        async for row in self._pages(lambda key: self.db.expired(now, key, PAGE), _expiry_key):
            yield info_from_row(row)

    async def iter_least_recent(self, prefix: str, now: float) -> AsyncIterator[ArtifactInfo]:
        def page(key: PageKey | None) -> list[VersionRow]:
            return self.db.least_recent(key, PAGE, live_at=now, prefix=prefix)

        async for row in self._pages(page, _recency_key):
            yield info_from_row(row, self._accessed.get(row.path))

    @staticmethod
    async def _pages(
        read: Callable[[PageKey | None], list[VersionRow]],
        key_of: Callable[[VersionRow], PageKey],
    ) -> AsyncIterator[VersionRow]:
        """Rows page by page, each page read in a worker thread, the next one starting
        after the last key: rows removed meanwhile (evicted) never shift it."""
        key: PageKey | None = None
        while rows := await asyncio.to_thread(read, key):
            for row in rows:
                yield row
            key = key_of(rows[-1])

    async def reconcile(self, directory: str = "") -> None:
        """A whole-root walk is paced across every process on the root (servers and CLI
        commands alike): after one that took T seconds, the next runs T / RECONCILE_DUTY
        after it started at the earliest (at once for small trees)."""
        if self.read_only:
            return
        pacing = self.state_dir / "reconciled"
        if not directory and time.time() < await asyncio.to_thread(_read_pacing, pacing):
            return
        started = time.time()
        try:
            report = await asyncio.to_thread(
                reconcile,
                self.root,
                self.db,
                self._write_lock,
                directory,
                self._bump_row_generation,
                self._writes_mark,
            )
        except StorageFullError:
            # What was found stays unindexed until a pass finds room: eviction still frees
            # space by what the index holds, and files are served either way.
            log.warning("disk full: files placed or removed by hand are indexed later")
            return
        if not directory:
            elapsed = time.time() - started
            await asyncio.to_thread(_write_pacing, pacing, started + elapsed / RECONCILE_DUTY)
        if report.recorded or report.forgotten:
            log.info(
                "index reconciled with %d files under /%s: %d found by hand, %d rows forgotten",
                report.files,
                directory,
                report.recorded,
                report.forgotten,
            )

    async def verify(self) -> AsyncIterator[Verification]:
        """Every path's newest row with a digest, in path order, re-hashed in a thread."""
        newest = _newest_with_digest(self.db.iter_all())
        while batch := await asyncio.to_thread(lambda: list(itertools.islice(newest, PAGE))):
            for row in batch:
                yield await asyncio.to_thread(verify_version, self.root, row)


def _read_pacing(path: Path) -> float:
    """When the next whole-root reconciliation may start (0: now)."""
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return 0.0


def _write_pacing(path: Path, not_before: float) -> None:
    """Advisory (a lost write only means an early walk): replaced whole, never fsynced."""
    with contextlib.suppress(OSError):
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(repr(not_before))
        os.replace(tmp, path)


def _newest_with_digest(rows: Iterator[VersionRow]) -> Iterator[VersionRow]:
    """Per path (rows come in path order), its newest row with a digest: several rows per
    path exist only around a commit."""
    for _, group in itertools.groupby(rows, key=lambda row: row.path):
        hashed = [row for row in group if row.sha256 is not None]
        if hashed:
            yield max(hashed, key=lambda row: row.created_at)


def _recency_key(row: VersionRow) -> PageKey:
    accessed = row.last_accessed if row.last_accessed is not None else row.created_at
    return (accessed, row.path, row.ino)


def _expiry_key(row: VersionRow) -> PageKey:
    assert row.expires_at is not None
    return (row.expires_at, row.path, row.ino)
