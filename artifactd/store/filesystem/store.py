"""The local filesystem backend: `<root>/<path>` holds the bytes, `<root>/.artifactd/` the rest.

Files copied into the root by hand are served like uploaded ones; their digest is computed
in a worker thread on first use (digests.py). Every blocking call runs off the event loop.
Commits and deletes of every process on one root are serialised by an flock, and each bumps
a shared generation counter that invalidates every process's hot cache (hotcache.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from artifactd.errors import (
    IsDirectoryError,
    NotDirectoryError,
    NotFoundError,
    StorageFullError,
)
from artifactd.paths import INTERNAL_DIR
from artifactd.store.accesstimes import PendingAccesses
from artifactd.store.base import (
    ArtifactInfo,
    ArtifactReader,
    DirEntry,
    Store,
    Upload,
)
from artifactd.store.filesystem.commits import BatchedWrites
from artifactd.store.filesystem.confinement import resolve_inside
from artifactd.store.filesystem.digests import DigestFinder
from artifactd.store.filesystem.groupcommit import GroupCommit
from artifactd.store.filesystem.hotcache import GenerationCounter, HotCache
from artifactd.store.filesystem.indexed import IndexedReads
from artifactd.store.filesystem.listing import list_directory, list_directory_page
from artifactd.store.filesystem.locks import WriteLock, maintenance_lock
from artifactd.store.filesystem.loopopen import LoopOpener
from artifactd.store.filesystem.metadb import MetadataDB, VersionRow
from artifactd.store.filesystem.reserve import SpaceReserve
from artifactd.store.filesystem.upload import (
    READ_ONLY_MESSAGE,
    TMP_PREFIX,
    FileUpload,
    fsync_dir,
    translate_write_error,
)
from artifactd.store.filesystem.writes import info_from_row
from artifactd.store.readers import FileReader, MemoryReader
from artifactd.store.tempfiles import remove_abandoned

log = logging.getLogger("artifactd.store")


class FilesystemStore(BatchedWrites, IndexedReads, Store):
    """Artifacts as plain files under a root directory, metadata in SQLite beside them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.state_dir = self.root / INTERNAL_DIR
        self.tmp_dir = self.state_dir / "tmp"
        # On a read-only filesystem the store still serves what it holds: every write is
        # refused with StorageFullError (507) and no maintenance runs.
        self.read_only = _on_read_only_filesystem(self.root)
        if not self.read_only:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        # Commits, deletes and evictions of every process on this root take turns.
        self._write_lock = WriteLock(None if self.read_only else self.state_dir / "write.lock")
        self.db = self._open_metadata()
        # Paths with rows that could not be deleted yet (see _forget_stale_rows).
        self._stale_rows: set[str] = set()
        self._reserve = SpaceReserve(self.state_dir / "reserve")
        self._accessed = PendingAccesses()
        generation_file = self.state_dir / "generation"
        self._generation = (
            GenerationCounter(generation_file, writable=not self.read_only)
            if not self.read_only or generation_file.exists()
            else None
        )
        # Bumped only when a recorded version's row changes or goes while a file may keep its
        # inode (readindex.py): the read index's rule, coarse only where it must be.
        row_generation_file = self.state_dir / "row-generation"
        self._row_generation = (
            GenerationCounter(row_generation_file, writable=not self.read_only)
            if not self.read_only or row_generation_file.exists()
            else None
        )
        # The hot cache trusts the row generation too: every change that can make an entry
        # wrong bumps it (a replacement, a delete, an eviction, a new expiry, a commit onto
        # a path that still has a row), and a cache's steady PUTs of new keys do not.
        self.hot = HotCache(self._row_generation)
        self.loop_open = LoopOpener(
            self.root,
            self.state_dir / "metadata.db",
            self.hot,
            self._row_generation,
            self._accessed,
            load=not self.db.read_only,
        )
        self._read_index = self.loop_open.index
        self.digests = DigestFinder(
            self.root, self.db, self.hot.invalidate, None if self.read_only else self._write_lock
        )
        # Commits and deletes of this process that arrive together are made durable
        # together (groupcommit.py, writes.py).
        self.commits = GroupCommit(self._write_batch_sync)

    def _open_metadata(self) -> MetadataDB:
        """Open (or start) the metadata database, under the write lock: processes opening
        a new root together (`serve --workers N`) then see it either absent, with nothing
        else there, or complete. The temp directory, made last, tells that the root was
        served before, so a database missing beside it was lost (and only then warned of)."""
        db_path = self.state_dir / "metadata.db"
        if self.read_only:
            return MetadataDB(db_path, read_only=True)
        with self._write_lock.held():
            served_before = self.tmp_dir.is_dir()
            db = MetadataDB(db_path)
            self.tmp_dir.mkdir(exist_ok=True)
            SpaceReserve(self.state_dir / "reserve").refill()
        if db.created and served_before:
            log.warning(
                "metadata database %s was missing or empty: started a new one; files under "
                "the root are still served and their digests computed again, but content "
                "types and expiry times recorded for earlier uploads are lost",
                db_path,
            )
        return db

    @classmethod
    async def create(cls, root: Path) -> FilesystemStore:
        return await asyncio.to_thread(cls, root)

    # -- reading ---------------------------------------------------------------------------

    async def open(self, path: str) -> ArtifactReader:
        reader = self.open_now(path)
        if reader is not None:
            return reader
        return await asyncio.to_thread(self._open_sync, path)

    def open_now(self, path: str) -> ArtifactReader | None:
        """From the hot cache (no syscall for small files), else a recorded version opened
        on the loop (loopopen.py): no worker thread either way. A miss the loop's open
        proves raises NotFoundError here: no thread hop for an absent key either."""
        return self._open_hot(path) or self._open_recorded_now(
            path, use_index=True, judge_absent=True
        )

    def _open_hot(self, path: str) -> ArtifactReader | None:
        checked_out = self.hot.checkout(path)
        if checked_out is None:
            return None
        entry, fd = checked_out
        if fd is not None:
            return FileReader(fd, entry.info)
        return None if entry.data is None else MemoryReader(entry.data, entry.info)

    def _open_recorded_now(
        self, path: str, *, use_index: bool, judge_absent: bool
    ) -> ArtifactReader | None:
        if self.db.read_only:
            return None  # rows may be missing there (not recorded): the thread hashes
        return self.loop_open.open(path, use_index=use_index, judge_absent=judge_absent)

    async def info(self, path: str) -> ArtifactInfo:
        # Not from the read index, which does not keep last access times.
        reader = self._open_hot(path) or self._open_recorded_now(
            path, use_index=False, judge_absent=True
        )
        if reader is None:
            reader = await asyncio.to_thread(self._open_sync, path)
        async with reader:
            accessed = self._accessed.get(path)
            return replace(
                reader.info,
                last_accessed=accessed if accessed is not None else reader.info.last_accessed,
            )

    def _open_sync(self, path: str) -> FileReader:
        generation = self.hot.current_generation()  # before opening: a racing commit shows
        row_generation = self.loop_open.row_generation()
        os_path = resolve_inside(self.root, path)
        try:
            # O_NONBLOCK: opening a FIFO dropped into the root must not hang a thread.
            fd = os.open(os_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFoundError(path) from exc
        except IsADirectoryError as exc:
            raise IsDirectoryError(path) from exc
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsDirectoryError(path)
            if not stat.S_ISREG(st.st_mode):
                raise NotFoundError(path)
            info = self._info_for(path, st, fd)
            if info.is_expired():
                raise NotFoundError(path)
        except BaseException:
            os.close(fd)
            raise
        if self.hot.admits(path):  # the loop's rule: a full cache keeps keys read more
            self.hot.remember(path, info, fd, generation)
        self.loop_open.note(st, info, row_generation)
        return FileReader(fd, info)

    def _info_for(self, path: str, st: os.stat_result, fd: int | None) -> ArtifactInfo:
        """Metadata for the exact version described by `st`, hashing unknown versions."""
        row = self.db.find(path, st.st_ino)
        if (
            row is None
            or not row.matches(st.st_ino, st.st_size, st.st_mtime_ns)
            or row.sha256 is None  # found by the reconciliation walk, which hashes nothing
        ):
            row = self.digests.describe_unknown(path, st, fd)
        return self._info_from_row(path, st, row)

    def _info_from_row(self, path: str, st: os.stat_result, row: VersionRow) -> ArtifactInfo:
        """What the version `st` is, as its metadata row tells (and this process's later
        access time, if any)."""
        return info_from_row(path, st, row, self._accessed.get(path))

    async def list_dir(self, path: str) -> list[DirEntry]:
        return await asyncio.to_thread(list_directory, self.root, self.db, path)

    async def list_dir_page(
        self, path: str, after: str | None, limit: int
    ) -> tuple[list[DirEntry], bool]:
        return await asyncio.to_thread(list_directory_page, self.root, self.db, path, after, limit)

    async def make_dir(self, path: str) -> bool:
        return await asyncio.to_thread(self._make_dir_sync, path)

    def _make_dir_sync(self, path: str) -> bool:
        """A real directory (mkdir is atomic: no lock needed). Like a parent made by a
        commit, it is removed again when the last file deleted under it leaves it empty."""
        if self.read_only:
            raise StorageFullError(READ_ONLY_MESSAGE)
        if not path:
            return False
        target = Path(resolve_inside(self.root, path))
        parent = path.rpartition("/")[0]
        try:
            target.mkdir()
        except FileExistsError:
            return False
        except FileNotFoundError as exc:
            raise NotFoundError(parent) from exc
        except NotADirectoryError as exc:
            raise NotDirectoryError(parent) from exc
        except OSError as exc:
            raise translate_write_error(exc) from exc
        fsync_dir(target.parent)
        return True

    async def remove_dir(self, path: str) -> bool:
        return await asyncio.to_thread(self._remove_dir_sync, path)

    def _remove_dir_sync(self, path: str) -> bool:
        if self.read_only:
            raise StorageFullError(READ_ONLY_MESSAGE)
        if not path:
            return False
        top = resolve_inside(self.root, path)
        if not os.path.lexists(top):
            return True
        if os.path.islink(top) or not os.path.isdir(top):
            return False
        empty_dirs: list[str] = []
        for dirpath, dirnames, filenames in os.walk(top, topdown=False):
            if filenames or any(os.path.islink(os.path.join(dirpath, d)) for d in dirnames):
                return False
            empty_dirs.append(dirpath)
        for directory in empty_dirs:  # deepest first
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                continue
            except OSError:  # a file arrived meanwhile: it stays, and so does its directory
                return False
        return True

    # -- writing ---------------------------------------------------------------------------

    async def begin_upload(
        self, path: str, *, content_type: str | None = None, expires_at: float | None = None
    ) -> Upload:
        """No thread hop: the temp file, and the check that no directory is at `path`, come
        with the upload's first write to disk (`FileUpload.open_sync`), so IsDirectoryError
        and a full disk's StorageFullError come from `write` or `commit`."""
        if self.read_only:
            raise StorageFullError(READ_ONLY_MESSAGE)
        return FileUpload(self, path, content_type, expires_at)

    # -- verification and housekeeping -----------------------------------------------------

    @contextlib.asynccontextmanager
    async def maintenance_lock(self) -> AsyncIterator[bool]:
        if self.read_only:
            yield False  # nothing can be evicted or cleaned up
            return
        async with maintenance_lock(self.state_dir / "maintenance.lock") as held:
            yield held

    async def record_access(self, path: str) -> None:
        self._accessed.note(path)

    async def flush_access_times(self) -> None:
        batch = self._accessed.take()
        try:
            await asyncio.to_thread(self.db.record_accesses, batch)
        except StorageFullError:
            self._accessed.put_back(batch)
            log.warning("disk full: access times are kept in memory until the next flush")

    async def collect_garbage(self) -> int:
        return await asyncio.to_thread(self._collect_garbage_sync)

    def _collect_garbage_sync(self) -> int:
        """Temp files of uploads whose writer died (see tempfiles.py); rows a removal on a
        full disk could not delete; the space reserve, taken back."""
        if self.read_only:
            return 0
        with self._write_lock.held():
            self._forget_stale_rows()
            self._reserve.refill()
        return remove_abandoned(self.tmp_dir, TMP_PREFIX, self._forget_never_published)

    def _forget_never_published(self, inodes: list[int]) -> None:
        """The rows of temp files a dead writer left: a crash between a batch's metadata
        transaction and its renames (commits.py) leaves rows describing them, which would
        otherwise look like missing or corrupt artifacts to `verify`."""
        with self._write_lock.held():
            self.db.forget_inodes(inodes)
            self._bump_row_generation(None)  # rows found by inode: their paths unknown

    async def close(self) -> None:
        await self.flush_access_times()
        self.digests.close()
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        self.loop_open.close()
        self.hot.clear()
        if self._generation is not None:
            self._generation.close()
        if self._row_generation is not None:
            self._row_generation.close()
        self.db.close()
        self._write_lock.close()


def _on_read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except FileNotFoundError:
        return False  # a root still to be created
