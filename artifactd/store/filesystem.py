"""The local filesystem backend: `<root>/<path>` holds the bytes, `<root>/.artifactd/` the rest.

Files copied into the root by hand are served like uploaded ones; their digest is computed
in a worker thread on first use. Every blocking call runs off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from artifactd.errors import (
    ConflictError,
    DigestMismatchError,
    IsDirectoryError,
    NotDirectoryError,
    NotFoundError,
    StorageFullError,
)
from artifactd.http.mediatypes import guess_content_type
from artifactd.paths import INTERNAL_DIR
from artifactd.store.base import (
    ArtifactInfo,
    ArtifactReader,
    DirEntry,
    Requirement,
    Store,
    Upload,
    Verification,
)
from artifactd.store.hotcache import SMALL_FILE_BYTES, GenerationCounter, HotCache, HotEntry
from artifactd.store.metadb import MetadataDB, VersionRow
from artifactd.store.readers import FileReader, MemoryReader
from artifactd.store.safety import resolve_inside
from artifactd.store.tempfiles import create_locked, remove_abandoned

# Files up to this size are hashed before their first response, so even hand-placed files get
# digest-based ETags at once; larger ones are hashed in the background meanwhile.
INLINE_HASH_LIMIT_BYTES = 64 * 1024 * 1024
HASH_BLOCK_BYTES = 1024 * 1024
FOUND_DIGESTS_KEPT = 4096
# An upload's bytes are hashed and written in batches of this size (memory per upload).
UPLOAD_BATCH_BYTES = 1024 * 1024
TMP_PREFIX = "upload-"
READ_ONLY_MESSAGE = "the storage root is on a read-only filesystem"

log = logging.getLogger("artifactd.store")


def hash_fd(fd: int, size: int) -> str:
    """SHA-256 of the first `size` bytes of an open file, read with pread (no shared offset)."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        block = os.pread(fd, min(HASH_BLOCK_BYTES, size - offset), offset)
        if not block:
            break
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def _version_token(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"


class FilesystemStore(Store):
    """Artifacts as plain files under a root directory, metadata in SQLite beside them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.state_dir = self.root / INTERNAL_DIR
        self.tmp_dir = self.state_dir / "tmp"
        # On a read-only filesystem the store still serves what it holds: every write is
        # refused with StorageFullError (507) and no maintenance runs.
        self.read_only = _on_read_only_filesystem(self.root)
        served_before = self.state_dir.is_dir()
        if not self.read_only:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(exist_ok=True)
        self.db = MetadataDB(self.state_dir / "metadata.db", read_only=self.read_only)
        if self.db.created and served_before:
            log.warning(
                "metadata database %s was missing or empty: started a new one; files under "
                "the root are still served and their digests computed again, but content "
                "types and expiry times recorded for earlier uploads are lost",
                self.state_dir / "metadata.db",
            )
        # Commits and deletes of every process on this root are serialised by an flock on
        # this file (plus a thread lock, since flock does not exclude threads sharing an fd).
        self._write_lock_fd = (
            -1
            if self.read_only
            else os.open(self.state_dir / "write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        )
        self._write_thread_lock = threading.Lock()
        self._accessed: dict[str, float] = {}
        self._hashing: set[tuple[str, int, int]] = set()
        self._found_digests: dict[tuple[str, int, int, int], str] = {}  # oldest first
        self._hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artifactd-hash")
        generation_file = self.state_dir / "generation"
        self._generation = (
            GenerationCounter(generation_file, writable=not self.read_only)
            if not self.read_only or generation_file.exists()
            else None
        )
        self.hot = HotCache(self._generation)

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
        """From the hot cache: no worker thread, and no syscall for small files."""
        checked_out = self.hot.checkout(path)
        if checked_out is None:
            return None
        entry, fd = checked_out
        if fd is not None:
            return FileReader(fd, entry.info)
        return None if entry.data is None else MemoryReader(entry.data, entry.info)

    async def info(self, path: str) -> ArtifactInfo:
        async with await self.open(path) as reader:
            return replace(
                reader.info, last_accessed=self._accessed.get(path, reader.info.last_accessed)
            )

    def _open_sync(self, path: str) -> FileReader:
        generation = self.hot.current_generation()  # before opening: a racing commit shows
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
        self._remember_hot(path, info, fd, generation)
        return FileReader(fd, info)

    def _remember_hot(self, path: str, info: ArtifactInfo, fd: int, generation: int) -> None:
        if info.sha256 is None:
            return  # being hashed in the background: its digest-based ETag is coming
        entry = HotEntry(info, generation, time.monotonic())
        if info.size <= SMALL_FILE_BYTES:
            data = os.pread(fd, info.size, 0)
            if len(data) != info.size:
                return  # changing underneath us: don't cache
            entry.data = data
        else:
            entry.fd = os.dup(fd)
        self.hot.put(path, entry)

    def _info_for(self, path: str, st: os.stat_result, fd: int | None) -> ArtifactInfo:
        """Metadata for the exact version described by `st`, hashing unknown versions."""
        row = self.db.find(path, st.st_ino)
        if row is None or not row.matches(st.st_ino, st.st_size, st.st_mtime_ns):
            row = self._describe_unknown(path, st, fd)
        return ArtifactInfo(
            path=path,
            size=st.st_size,
            content_type=row.content_type or guess_content_type(path),
            modified_at=st.st_mtime,
            created_at=row.created_at,
            sha256=row.sha256,
            expires_at=row.expires_at,
            last_accessed=self._accessed.get(path, row.last_accessed),
            version=_version_token(st),
        )

    def _describe_unknown(self, path: str, st: os.stat_result, fd: int | None) -> VersionRow:
        """A file placed or changed by hand: hash it now if small, in the background if not.

        Digests are remembered per exact version, so a version whose row cannot be updated
        (an uploaded artifact changed in place, kept for `verify`) is hashed only once."""
        version_key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        sha256 = self._found_digests.get(version_key)
        if sha256 is None and fd is not None and st.st_size <= INLINE_HASH_LIMIT_BYTES:
            sha256 = hash_fd(fd, st.st_size)
            self._remember_digest(version_key, sha256)
        row = VersionRow(
            path=path,
            ino=st.st_ino,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            sha256=sha256,
            content_type=None,
            created_at=st.st_mtime,
            expires_at=None,
            last_accessed=None,
        )
        if sha256 is not None:
            self.db.record_found_version(row)
        else:
            self._hash_in_background(path, st)
        return row

    def _remember_digest(self, version_key: tuple[str, int, int, int], sha256: str) -> None:
        self._found_digests[version_key] = sha256
        while len(self._found_digests) > FOUND_DIGESTS_KEPT:
            self._found_digests.pop(next(iter(self._found_digests)))

    def _hash_in_background(self, path: str, st: os.stat_result) -> None:
        key = (path, st.st_ino, st.st_mtime_ns)
        if key in self._hashing:
            return
        self._hashing.add(key)
        self._hash_pool.submit(self._hash_and_record, path, st, key)

    def _hash_and_record(self, path: str, st: os.stat_result, key: tuple[str, int, int]) -> None:
        try:
            os_path = resolve_inside(self.root, path)
            fd = os.open(os_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                now = os.fstat(fd)
                if (now.st_ino, now.st_size, now.st_mtime_ns) != (
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                ):
                    return  # changed again meanwhile; the next reader starts over
                sha256 = hash_fd(fd, st.st_size)
            finally:
                os.close(fd)
            self._remember_digest((path, st.st_ino, st.st_size, st.st_mtime_ns), sha256)
            self.db.record_found_version(
                VersionRow(
                    path,
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                    sha256,
                    None,
                    st.st_mtime,
                    None,
                    None,
                )
            )
            self.hot.invalidate(path)  # the digest-based ETag is known now
        except Exception:
            pass
        finally:
            self._hashing.discard(key)

    async def list_dir(self, path: str) -> list[DirEntry]:
        return await asyncio.to_thread(self._list_dir_sync, path)

    def _list_dir_sync(self, path: str) -> list[DirEntry]:
        os_path = resolve_inside(self.root, path)
        rows = {row.path: row for row in self.db.rows_under(path)}
        prefix = f"{path}/" if path else ""
        now = time.time()
        entries: list[DirEntry] = []
        try:
            scan = os.scandir(os_path)
        except FileNotFoundError as exc:
            raise NotFoundError(path) from exc
        except NotADirectoryError as exc:
            raise NotDirectoryError(path) from exc
        with scan:
            for item in scan:
                if not path and item.name == INTERNAL_DIR:
                    continue
                entry = self._dir_entry(prefix + item.name, item, rows, now)
                if entry is not None:
                    entries.append(entry)
        entries.sort(key=lambda e: (e.type != "dir", e.name))
        return entries

    def _dir_entry(
        self, child: str, item: os.DirEntry[str], rows: dict[str, VersionRow], now: float
    ) -> DirEntry | None:
        try:
            if item.is_symlink():
                resolve_inside(self.root, child)  # hide links that leave the root
            st = item.stat()
        except (OSError, ValueError, Exception):  # broken or escaping link
            return None
        if stat.S_ISDIR(st.st_mode):
            return DirEntry(item.name, "dir", None, st.st_mtime)
        if not stat.S_ISREG(st.st_mode):
            return None
        row = rows.get(child)
        if row is not None and row.matches(st.st_ino, st.st_size, st.st_mtime_ns):
            if row.expires_at is not None and row.expires_at <= now:
                return None
            return DirEntry(item.name, "file", st.st_size, st.st_mtime, row.sha256, row.expires_at)
        return DirEntry(item.name, "file", st.st_size, st.st_mtime)

    async def iter_artifacts(
        self, prefix: str = "", *, include_expired: bool = False
    ) -> AsyncIterator[ArtifactInfo]:
        for info in await asyncio.to_thread(self._all_artifacts_sync, prefix, include_expired):
            yield info

    def _all_artifacts_sync(self, prefix: str, include_expired: bool) -> list[ArtifactInfo]:
        found: list[ArtifactInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            if not rel_dir:
                dirnames[:] = [d for d in dirnames if d != INTERNAL_DIR]
            dirnames.sort()
            for name in sorted(filenames):
                path = f"{rel_dir}/{name}" if rel_dir else name
                if not path.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                info = self._info_for(path, st, None)
                if include_expired or not info.is_expired():
                    found.append(info)
        found.sort(key=lambda i: i.path)
        return found

    # -- writing ---------------------------------------------------------------------------

    async def begin_upload(
        self, path: str, *, content_type: str | None = None, expires_at: float | None = None
    ) -> Upload:
        return await asyncio.to_thread(self._begin_upload_sync, path, content_type, expires_at)

    def _begin_upload_sync(
        self, path: str, content_type: str | None, expires_at: float | None
    ) -> FileUpload:
        if self.read_only:
            raise StorageFullError(READ_ONLY_MESSAGE)
        target = resolve_inside(self.root, path)
        if os.path.isdir(target):
            raise IsDirectoryError(path)
        tmp_path = self.tmp_dir / f"{TMP_PREFIX}{secrets.token_hex(12)}.part"
        try:
            fd = create_locked(tmp_path)  # locked while we write: see tempfiles.py
        except OSError as exc:
            raise _translate_write_error(exc) from exc
        return FileUpload(self, path, fd, tmp_path, content_type, expires_at)

    async def delete(self, path: str, *, require: Requirement | None = None) -> ArtifactInfo:
        return await asyncio.to_thread(self._delete_sync, path, require)

    def _delete_sync(self, path: str, require: Requirement | None) -> ArtifactInfo:
        if self.read_only:
            raise StorageFullError(READ_ONLY_MESSAGE)
        os_path = resolve_inside(self.root, path)
        with self._write_lock():
            current = self._current_sync(path, os_path)
            if require is not None:
                require(current)
            if current is None:
                raise NotFoundError(path)
            try:
                os.unlink(os_path)
            except FileNotFoundError as exc:
                raise NotFoundError(path) from exc
            self.db.delete_path(path)
            self._bump_generation()
        self._accessed.pop(path, None)
        self._remove_empty_parents(Path(os_path).parent)
        return current

    async def verify(self) -> AsyncIterator[Verification]:
        rows = await asyncio.to_thread(lambda: list(self.db.iter_all()))
        latest: dict[str, VersionRow] = {}
        for row in rows:  # several rows per path only around a commit: take the newest
            if row.sha256 and (
                row.path not in latest or row.created_at > latest[row.path].created_at
            ):
                latest[row.path] = row
        for path in sorted(latest):
            yield await asyncio.to_thread(self._verify_sync, latest[path])

    def _verify_sync(self, row: VersionRow) -> Verification:
        """Hash the file now on disk against the digest recorded for it, whatever its mtime
        says: bytes changed in place are exactly what verify exists to catch."""
        assert row.sha256 is not None
        try:
            fd = os.open(
                resolve_inside(self.root, row.path), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
            )
        except (FileNotFoundError, NotADirectoryError, NotFoundError):
            return Verification(row.path, row.size, row.sha256, None)
        try:
            size = os.fstat(fd).st_size
            return Verification(row.path, size, row.sha256, hash_fd(fd, size))
        finally:
            os.close(fd)

    async def evict(self, info: ArtifactInfo) -> bool:
        return await asyncio.to_thread(self._evict_sync, info)

    def _evict_sync(self, info: ArtifactInfo) -> bool:
        if self.read_only:
            return False
        os_path = resolve_inside(self.root, info.path)
        with self._write_lock():
            try:
                st = os.stat(os_path)
            except (FileNotFoundError, NotADirectoryError):
                return False
            if not stat.S_ISREG(st.st_mode) or _version_token(st) != info.version:
                return False
            os.unlink(os_path)
            self.db.delete_path(info.path)
            self._bump_generation()
        self._accessed.pop(info.path, None)
        self._remove_empty_parents(Path(os_path).parent)
        return True

    @contextlib.asynccontextmanager
    async def maintenance_lock(self) -> AsyncIterator[bool]:
        if self.read_only:
            yield False  # nothing can be evicted or cleaned up
            return
        fd = await asyncio.to_thread(
            os.open, self.state_dir / "maintenance.lock", os.O_RDWR | os.O_CREAT, 0o644
        )
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing drops the lock

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

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        with self._write_thread_lock:
            fcntl.flock(self._write_lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._write_lock_fd, fcntl.LOCK_UN)

    def _remove_empty_parents(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def commit_sync(
        self, upload: FileUpload, expected_sha256: str | None, require: Requirement | None
    ) -> tuple[ArtifactInfo, bool]:
        """Verify, fsync, record and rename: the version appears whole or not at all."""
        sha256 = upload.hasher.hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != sha256:
            raise DigestMismatchError(f"expected sha256 {expected_sha256}, received {sha256}")
        try:
            os.fsync(upload.fd)
        except OSError as exc:
            raise _translate_write_error(exc) from exc
        st = os.fstat(upload.fd)
        target = Path(resolve_inside(self.root, upload.path))
        with self._write_lock():
            current = self._current_sync(upload.path, str(target))
            if require is not None:
                require(current)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise ConflictError(f"a parent of {upload.path} is a file") from exc
            resolve_inside(self.root, upload.path)  # the parents just made must not escape
            now = time.time()
            # Recorded before the rename and keyed by the new inode: a reader of the old inode
            # keeps finding the old row, a reader of the new inode finds this one.
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
            os.rename(upload.tmp_path, target)
            _fsync_dir(target.parent)
            self.db.delete_other_versions(upload.path, st.st_ino)
            self._bump_generation()
        return self._info_for(upload.path, st, None), current is not None

    # -- housekeeping ----------------------------------------------------------------------

    async def record_access(self, path: str) -> None:
        self._accessed[path] = time.time()

    async def flush(self) -> None:
        batch, self._accessed = self._accessed, {}
        await asyncio.to_thread(self.db.record_accesses, batch)

    async def remove_stale_uploads(self) -> int:
        return await asyncio.to_thread(self._remove_stale_uploads_sync)

    def _remove_stale_uploads_sync(self) -> int:
        """Temp files of uploads whose writer died (see tempfiles.py)."""
        if self.read_only:
            return 0
        return remove_abandoned(self.tmp_dir, TMP_PREFIX)

    def _bump_generation(self) -> None:
        """Called under the write lock after any change: every process's hot cache drops
        what it holds (see hotcache.py)."""
        if self._generation is not None:
            self._generation.bump()

    async def close(self) -> None:
        await self.flush()
        self._hash_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        self.hot.clear()
        if self._generation is not None:
            self._generation.close()
        self.db.close()
        if self._write_lock_fd >= 0:
            os.close(self._write_lock_fd)


class FileUpload(Upload):
    """A temp file under `.artifactd/tmp`, hashed as it is written, renamed on commit."""

    def __init__(
        self,
        store: FilesystemStore,
        path: str,
        fd: int,
        tmp_path: Path,
        content_type: str | None,
        expires_at: float | None,
    ) -> None:
        self.store = store
        self.path = path
        self.fd = fd
        self.tmp_path = tmp_path
        self.content_type = content_type
        self.expires_at = expires_at
        self.hasher = hashlib.sha256()
        self.size = 0
        self._done = False
        self._pending: list[bytes] = []  # received, not yet hashed and written
        self._pending_bytes = 0

    def _write_sync(self, chunk: bytes) -> None:
        self.hasher.update(chunk)  # releases the GIL for large buffers
        view = memoryview(chunk)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError as exc:
            raise _translate_write_error(exc) from exc

    async def write(self, chunk: bytes) -> None:
        """Gather network-sized chunks into UPLOAD_BATCH_BYTES before one thread hop hashes
        and writes them: a thread hop per 64 KiB cost more than the hashing."""
        if self._done:
            raise ValueError("write to a finished upload")
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        self.size += len(chunk)
        if self._pending_bytes >= UPLOAD_BATCH_BYTES:
            await self._write_pending()

    async def _write_pending(self) -> None:
        if not self._pending:
            return
        batch = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        await asyncio.to_thread(self._write_sync, batch)

    async def commit(
        self, expected_sha256: str | None = None, *, require: Requirement | None = None
    ) -> tuple[ArtifactInfo, bool]:
        if self._done:
            raise ValueError("commit of a finished upload")
        try:
            await self._write_pending()
            result = await asyncio.to_thread(self.store.commit_sync, self, expected_sha256, require)
        except BaseException:
            await self.abort()
            raise
        await self._finish(unlink=False)
        return result

    async def abort(self) -> None:
        await self._finish(unlink=True)

    async def _finish(self, *, unlink: bool) -> None:
        if self._done:
            return
        self._done = True
        self._pending, self._pending_bytes = [], 0  # an abandoned batch is not kept around
        await asyncio.to_thread(self._close_sync, unlink)

    def _close_sync(self, unlink: bool) -> None:
        os.close(self.fd)
        if unlink:
            self.tmp_path.unlink(missing_ok=True)


def _on_read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except FileNotFoundError:
        return False  # a root still to be created


def _translate_write_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError("no space left on the storage device")
    if exc.errno == errno.EROFS:  # remounted read-only while serving (e.g. after I/O errors)
        return StorageFullError(READ_ONLY_MESSAGE)
    return exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
