"""The filesystem backend's writes under the write lock every process on the root shares:
evictions, and what commits and deletes (commits.py, in batches) build on; each ordered so
that a failure at any step (a full disk included) leaves the old state (store/base.py states
the rules; store.py holds the rest).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import Collection, Sequence
from pathlib import Path

from artifactd.errors import (
    ArtifactdError,
    IsDirectoryError,
    StorageFullError,
)
from artifactd.store.accesstimes import PendingAccesses
from artifactd.store.base import (
    ArtifactInfo,
)
from artifactd.store.filesystem.confinement import resolve_in_batch, resolve_inside
from artifactd.store.filesystem.hotcache import GenerationCounter
from artifactd.store.filesystem.locks import WriteLock
from artifactd.store.filesystem.metadb import MetadataDB, VersionRow
from artifactd.store.filesystem.readindex import ReadIndex
from artifactd.store.filesystem.reserve import SpaceReserve
from artifactd.store.filesystem.schema import version_of
from artifactd.store.filesystem.upload import (
    translate_write_error,
)

log = logging.getLogger("artifactd.store")


def version_token(st: os.stat_result) -> str:
    """The version a stat describes (`version_of`)."""
    return version_of(st.st_ino, st.st_size, st.st_mtime_ns)


def info_from_row(
    path: str, st: os.stat_result, row: VersionRow, accessed: float | None
) -> ArtifactInfo:
    """The version `st` describes, with what its row records (`accessed`: a later access
    time known in memory)."""
    return info_from_fields(
        path,
        st,
        row.sha256,
        row.shown_content_type(),
        row.created_at,
        row.expires_at,
        accessed if accessed is not None else row.last_accessed,
    )


def info_from_fields(
    path: str,
    st: os.stat_result,
    sha256: str | None,
    content_type: str,
    created_at: float,
    expires_at: float | None,
    last_accessed: float | None,
) -> ArtifactInfo:
    """`info_from_row` from a row's fields (its content type already given or guessed), as
    the read index keeps them: no row built for a cold read."""
    # Positional, in ArtifactInfo's order: keywords cost a cold read 0.3 µs more.
    return ArtifactInfo(
        path,
        st.st_size,
        content_type,
        st.st_mtime,
        created_at,
        sha256,
        expires_at,
        last_accessed,
        version_token(st),
    )


class LockedWrites:
    """The write half of FilesystemStore (a mixin: the store's attributes are its own)."""

    root: Path
    read_only: bool
    db: MetadataDB
    _write_lock: WriteLock
    _stale_rows: set[str]
    _reserve: SpaceReserve
    _accessed: PendingAccesses
    _generation: GenerationCounter | None
    _row_generation: GenerationCounter | None
    _read_index: ReadIndex  # the loop's (loopopen.py), told of this process's own changes

    def _info_for(self, path: str, st: os.stat_result, fd: int | None) -> ArtifactInfo:
        raise NotImplementedError  # FilesystemStore's

    async def evict(self, info: ArtifactInfo) -> bool:
        return await asyncio.to_thread(self._evict_sync, info)

    def _evict_sync(self, info: ArtifactInfo) -> bool:
        if self.read_only:
            return False
        os_path = resolve_inside(self.root, info.path)
        with self._write_lock.held():
            try:
                st = os.stat(os_path)
            except (FileNotFoundError, NotADirectoryError):
                return False
            if not stat.S_ISREG(st.st_mode) or version_token(st) != info.version:
                return False
            try:
                self._remove_locked(info.path, os_path)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise translate_write_error(exc) from exc
        self._accessed.forget(info.path)
        return True

    async def evict_batch(self, infos: Sequence[ArtifactInfo]) -> list[bool]:
        return await asyncio.to_thread(self._evict_batch_sync, infos)

    def _evict_batch_sync(self, infos: Sequence[ArtifactInfo]) -> list[bool]:
        """`_evict_sync` for many under one hold of the write lock: the unlinks one by one
        (each can fail alone, leaving its artifact as it was), then every parent left empty
        removed, then the rows of all in one metadata transaction."""
        if self.read_only:
            return [False] * len(infos)
        removed = [False] * len(infos)
        with self._write_lock.held():
            self._forget_stale_rows()
            parents: set[Path] = set()
            plain: set[str] = set()  # directories resolved once for the whole batch
            for i, info in enumerate(infos):
                try:
                    os_path = resolve_in_batch(self.root, info.path, plain)
                    st = os.stat(os_path)
                    if not stat.S_ISREG(st.st_mode) or version_token(st) != info.version:
                        continue
                    os.unlink(os_path)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except (OSError, ArtifactdError) as exc:
                    log.warning("cannot evict %s now (%s); trying again next pass", info.path, exc)
                    continue
                removed[i] = True
                parents.add(Path(os_path).parent)
                self._stale_rows.add(info.path)
            if parents:
                self._bump_generation()
                self._bump_row_generation(self._stale_rows)
                for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
                    self._remove_empty_parents(parent)
                if not self._forget_stale_rows() and self._reserve.release():
                    self._forget_stale_rows()
                self._reserve.refill()
        for info, gone in zip(infos, removed, strict=True):
            if gone:
                self._accessed.forget(info.path)
        return removed

    def _remove_locked(self, path: str, os_path: str) -> None:
        """Under the write lock: unlink the file, then forget its rows. The unlink is the
        step that can fail (and then nothing changed); the rows go after it, so a removal
        frees space even on a full disk: if the database cannot take even that write, the
        space reserve is given up for it, and failing that the rows (describing a file no
        longer there, so never served) are forgotten later."""
        self._forget_stale_rows()
        os.unlink(os_path)
        self._bump_generation()
        self._bump_row_generation([path])
        self._remove_empty_parents(Path(os_path).parent)
        self._stale_rows.add(path)
        if not self._forget_stale_rows() and self._reserve.release():
            self._forget_stale_rows()
        self._reserve.refill()

    def _forget_stale_rows(self) -> bool:
        """Under the write lock: delete the rows of the paths in `_stale_rows` that do not
        describe the file now there, in one transaction. False if the database could not
        take it (a full disk); they are tried again by the next write or garbage
        collection."""
        if not self._stale_rows:
            return True
        keep: dict[str, int | None] = {}
        plain: set[str] = set()
        for path in self._stale_rows:
            try:
                keep[path] = os.stat(resolve_in_batch(self.root, path, plain)).st_ino
            except (OSError, ArtifactdError):
                keep[path] = None
        try:
            self.db.delete_other_versions_many(keep)
        except (StorageFullError, sqlite3.Error):
            return False  # after a commit or removal took effect, never its failure
        self._stale_rows.clear()
        return True

    def _current_sync(self, path: str, os_path: str) -> ArtifactInfo | None:
        """The live version at `path`, or None (absent, expired); IsDirectoryError for dirs."""
        try:
            st = os.stat(os_path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self._current_from(path, st)

    def _current_from(self, path: str, st: os.stat_result) -> ArtifactInfo | None:
        """`_current_sync` from the stat of what is at `path`."""
        if stat.S_ISDIR(st.st_mode):
            raise IsDirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        info = self._info_for(path, st, None)
        return None if info.is_expired() else info

    def _bump_generation(self) -> None:
        """Called under the write lock after any change. Read by no cache of this version
        (the hot cache trusts the row generation); still bumped for a process of an earlier
        version serving the same root, whose hot cache trusts this one."""
        if self._generation is not None:
            self._generation.bump()

    def _writes_mark(self) -> tuple[int, int]:
        """What a commit, delete, eviction or forgotten row by any process on the root
        changes: both generation counters (reconcile.py's proof that nothing was written
        while it walked)."""
        return (
            -1 if self._generation is None else self._generation.value,
            -1 if self._row_generation is None else self._row_generation.value,
        )

    def _bump_row_generation(self, paths: Collection[str] | None) -> None:
        """Called under the write lock when a recorded version's row changes while its inode
        stays (a kept upload's new expiry), or when a version goes (its inode may come back
        at the same path, as another version): every other process's read index then reads
        its rows again, this one's only those of `paths` (None: every row; see
        readindex.py). Commits of new versions need no bump."""
        if self._row_generation is not None:
            self._read_index.bump(self._row_generation, paths)

    def _remove_empty_parents(self, directory: Path) -> None:
        """Under the write lock: a commit (of any process) makes its parents and renames
        into them under that lock too, so it never finds them removed in between."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent
