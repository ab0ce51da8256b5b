"""The filesystem backend's writes: commits, deletes and evictions, each under the write lock
every process on the root shares, each ordered so that a failure at any step (a full disk
included) leaves the old state (store/base.py states the rules; store.py holds the rest).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from artifactd.errors import (
    ArtifactdError,
    ConflictError,
    IsDirectoryError,
    NotFoundError,
    StorageFullError,
)
from artifactd.http.mediatypes import guess_content_type
from artifactd.store.accesstimes import PendingAccesses
from artifactd.store.base import (
    ArtifactInfo,
    Requirement,
)
from artifactd.store.filesystem.confinement import resolve_in_batch, resolve_inside
from artifactd.store.filesystem.hotcache import GenerationCounter
from artifactd.store.filesystem.locks import WriteLock
from artifactd.store.filesystem.metadb import MetadataDB, VersionRow
from artifactd.store.filesystem.reserve import SpaceReserve
from artifactd.store.filesystem.upload import (
    READ_ONLY_MESSAGE,
    FileUpload,
    fsync_dir,
    translate_write_error,
)
from artifactd.store.uploads import check_digest

log = logging.getLogger("artifactd.store")


def version_token(st: os.stat_result) -> str:
    """What tells one version of a file from another: inode, size and modification time."""
    return f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"


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

    def _info_for(self, path: str, st: os.stat_result, fd: int | None) -> ArtifactInfo:
        raise NotImplementedError  # FilesystemStore's

    def commit_sync(
        self, upload: FileUpload, expected_sha256: str | None, require: Requirement | None
    ) -> tuple[ArtifactInfo, bool]:
        """Verify, fsync, record and rename: the version appears whole or not at all."""
        sha256 = upload.hasher.hexdigest()
        check_digest(expected_sha256, sha256)
        kept = self._keep_current_sync(upload, sha256, require)
        if kept is not None:
            return kept, True
        try:
            os.fsync(upload.fd)
        except OSError as exc:
            raise translate_write_error(exc) from exc
        st = os.fstat(upload.fd)
        target = Path(resolve_inside(self.root, upload.path))
        with self._write_lock.held():
            self._forget_stale_rows()
            current = self._current_sync(upload.path, str(target))
            if require is not None:
                require(current)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise ConflictError(f"a parent of {upload.path} is a file") from exc
            except OSError as exc:
                raise translate_write_error(exc) from exc
            resolve_inside(self.root, upload.path)  # the parents just made must not escape
            now = time.time()
            # Recorded before the rename and keyed by the new inode: a reader of the old inode
            # keeps finding the old row, a reader of the new inode finds this one. On a full
            # disk this fails first (StorageFullError), before anything changed.
            self.db.upsert(
                VersionRow(
                    upload.path,
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                    sha256,
                    upload.content_type,
                    now,
                    upload.expires_at,
                    now,
                    origin="upload",
                )
            )
            try:
                os.rename(upload.tmp_path, target)
            except OSError as exc:
                self._stale_rows.add(upload.path)  # the row just written
                self._forget_stale_rows()
                raise translate_write_error(exc) from exc
            # Published: from here on nothing may fail the commit. The old version's row
            # describes an inode no longer at the path; if it cannot go now, it goes later.
            self._bump_generation()
            fsync_dir(target.parent)
            self._stale_rows.add(upload.path)
            self._forget_stale_rows()
        return self._info_for(upload.path, st, None), current is not None

    def _keep_current_sync(
        self, upload: FileUpload, sha256: str, require: Requirement | None
    ) -> ArtifactInfo | None:
        """The current version with the upload's expiry, if it already holds the upload's
        bytes and content type: no fsync, no rename, one metadata row updated. None (and
        nothing changed) otherwise."""
        os_path = resolve_inside(self.root, upload.path)
        content_type = upload.content_type or guess_content_type(upload.path)

        def same(info: ArtifactInfo | None) -> bool:
            return info is not None and (info.sha256, info.content_type) == (sha256, content_type)

        if not same(self._current_sync(upload.path, os_path)):  # the usual case: no lock
            return None
        with self._write_lock.held():
            current = self._current_sync(upload.path, os_path)
            if not same(current):
                return None
            if require is not None:
                require(current)
            st = os.stat(os_path)
            row = self.db.find(upload.path, st.st_ino)
            if row is None or not row.matches(st.st_ino, st.st_size, st.st_mtime_ns):
                return None
            self.db.upsert(replace(row, expires_at=upload.expires_at))
            self._bump_generation()  # every process's hot cache drops the old expiry
        upload.kept_current = True
        return self._info_for(upload.path, st, None)

    async def delete(self, path: str, *, require: Requirement | None = None) -> ArtifactInfo:
        return await asyncio.to_thread(self._delete_sync, path, require)

    def _delete_sync(self, path: str, require: Requirement | None) -> ArtifactInfo:
        if self.read_only:
            raise StorageFullError(READ_ONLY_MESSAGE)
        os_path = resolve_inside(self.root, path)
        with self._write_lock.held():
            current = self._current_sync(path, os_path)
            if require is not None:
                require(current)
            if current is None:
                raise NotFoundError(path)
            try:
                self._remove_locked(path, os_path)
            except FileNotFoundError as exc:
                raise NotFoundError(path) from exc
            except OSError as exc:
                raise translate_write_error(exc) from exc
        self._accessed.forget(path)
        return current

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
        if stat.S_ISDIR(st.st_mode):
            raise IsDirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        info = self._info_for(path, st, None)
        return None if info.is_expired() else info

    def _bump_generation(self) -> None:
        """Called under the write lock after any change: every process's hot cache drops
        what it holds (see hotcache.py)."""
        if self._generation is not None:
            self._generation.bump()

    def _remove_empty_parents(self, directory: Path) -> None:
        """Under the write lock: a commit (of any process) makes its parents and renames
        into them under that lock too, so it never finds them removed in between."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent
