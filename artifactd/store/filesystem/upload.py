"""Uploads to the filesystem backend: a temp file under `.artifactd/tmp`, hashed as it is
written, fsynced by its own thread and renamed into place by a batch of commits (writes.py).

The temp file is made by the upload's first thread hop (its first batch of bytes, or its
commit), not by `begin_upload`: a small body that arrives whole is then created, written,
hashed and flushed in one hop, and `begin_upload` needs no thread at all."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from artifactd.errors import IsDirectoryError, StorageFullError
from artifactd.store.base import ArtifactInfo, Requirement
from artifactd.store.filesystem.confinement import look_inside
from artifactd.store.filesystem.groupcommit import Ticket
from artifactd.store.filesystem.hops import in_thread
from artifactd.store.tempfiles import create_locked
from artifactd.store.uploads import UploadBase, write_all

if TYPE_CHECKING:
    from artifactd.store.filesystem.commits import Outcome, Write
    from artifactd.store.filesystem.store import FilesystemStore

# An upload's bytes are hashed and written in batches of this size (memory per upload).
UPLOAD_BATCH_BYTES = 1024 * 1024
TMP_PREFIX = "upload-"
READ_ONLY_MESSAGE = "the storage root is on a read-only filesystem"
_T = TypeVar("_T")


class FileUpload(UploadBase):
    """A temp file, locked by its writer (see tempfiles.py), hashed as it is written."""

    def __init__(
        self,
        store: FilesystemStore,
        path: str,
        content_type: str | None,
        expires_at: float | None,
    ) -> None:
        self.store = store
        self.path = path
        self.fd = -1  # no temp file yet: see `open_sync`
        self.tmp_path: str | None = None
        self.os_path: str | None = None  # where it goes, as resolved when its file was made
        self.found_nothing = False  # nothing was at its path when its file was made
        self.content_type = content_type
        self.expires_at = expires_at
        self.hasher = hashlib.sha256()
        self.size = 0
        self._pending: list[bytes] = []  # received, not yet hashed and written
        self._pending_bytes = 0
        # The thread working on the temp file, if any: a cancelled caller does not stop
        # it, so the file is closed only once it is done (its descriptor must not be
        # closed, and maybe reused by another open, while it still writes).
        self._working: asyncio.Future[Any] | None = None

    def open_sync(self) -> int:
        """The temp file's descriptor, made (and locked) on first use: IsDirectoryError if
        a directory is at the upload's path, StorageFullError if the disk is full."""
        if self.fd >= 0:
            return self.fd
        if self.tmp_path is not None:
            raise ValueError("write to a finished upload")  # made, then closed
        # One walk resolves the path and looks at what is there (look_inside).
        self.os_path, st, _ = look_inside(self.store.root, self.path)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise IsDirectoryError(self.path)
        self.found_nothing = st is None
        tmp_path = f"{self.store.tmp_dir}/{TMP_PREFIX}{secrets.token_hex(12)}.part"
        try:
            self.fd = create_locked(tmp_path)  # locked while we write: see tempfiles.py
        except OSError as exc:
            raise translate_write_error(exc) from exc
        self.tmp_path = tmp_path
        return self.fd

    def _write_sync(self, chunk: bytes) -> None:
        fd = self.open_sync()
        self.hasher.update(chunk)  # releases the GIL for large buffers
        try:
            write_all(fd, chunk)
        except OSError as exc:
            raise translate_write_error(exc) from exc

    async def write(self, chunk: bytes) -> None:
        """Gather network-sized chunks into UPLOAD_BATCH_BYTES before one thread hop hashes
        and writes them: a thread hop per 64 KiB cost more than the hashing."""
        self._check_writable()
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
        await self._in_thread(self._write_sync, batch)

    async def _in_thread(self, work: Callable[..., _T], *args: object) -> _T:
        """`work(*args)` in a worker thread, noted in `_working` until it ends."""
        return await asyncio.shield(self._in_thread_future(work, *args))

    def _in_thread_future(self, work: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        future = in_thread(work, *args)
        # Retrieved here, so a caller cancelled meanwhile leaves no "never retrieved" log.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._working = future
        return future

    async def _publish(
        self, expected_sha256: str | None, require: Requirement | None
    ) -> tuple[ArtifactInfo, bool]:
        """The last bytes written, checked and flushed, then published with whatever other
        commits arrive meanwhile (groupcommit.py), all in one thread hop of this upload's
        own."""
        batch = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        commits = self.store.commits
        ticket: Ticket[Write, Outcome] = Ticket()
        step = self._in_thread_future(self._commit_sync, batch, expected_sha256, require, ticket)
        return await commits.outcome(ticket, step)

    def _commit_sync(
        self,
        batch: bytes,
        expected_sha256: str | None,
        require: Requirement | None,
        ticket: Ticket[Write, Outcome],
    ) -> Outcome:
        fresh = self.fd < 0  # its file made by this hop: what it saw at its path is current
        if batch:
            self._write_sync(batch)
        elif fresh:
            self.open_sync()  # an empty body's file, made here too: one look at its path
        publish = self.store.prepare_commit_sync(self, expected_sha256, require, fresh=fresh)
        return self.store.commits.commit_sync(ticket, publish)

    async def _release(self, *, committed: bool) -> None:
        self._pending, self._pending_bytes = [], 0  # an abandoned batch is not kept around
        if self._working is not None and not self._working.done():
            await asyncio.wait({self._working})  # a cancelled write still running: wait
        # A kept current version (`kept_current`) leaves the temp file unused: it goes too.
        unlink = (not committed or self.kept_current) and self.tmp_path is not None
        if unlink or self.fd >= 0:  # a published one was closed by its batch: no thread hop
            await asyncio.to_thread(self._close_sync, unlink)

    def _close_sync(self, unlink: bool) -> None:
        self.close_fd()
        if unlink and self.tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp_path)

    def close_fd(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def translate_write_error(exc: OSError) -> Exception:
    """A full or read-only disk as StorageFullError; any other OSError unchanged."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError("no space left on the storage device")
    if exc.errno == errno.EROFS:  # remounted read-only while serving (e.g. after I/O errors)
        return StorageFullError(READ_ONLY_MESSAGE)
    return exc


def fsync_dir(directory: str | Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
