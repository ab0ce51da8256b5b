"""Upload resources of the filesystem store: `<root>/.artifactd/uploads/<id>.bin` holds the
bytes received so far, `<id>.json` the state (written atomically: temp file, then rename), so
both survive a restart or kill -9. One appender at a time holds an flock on the bytes, across
the processes of --workers. The file work runs in threads, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from artifactd.errors import ConflictError, NotFoundError
from artifactd.resumable.base import Appending, UploadResource, UploadResources, is_upload_id
from artifactd.resumable.owners import OWNERS_DIR, marker_name, owner_key, parse_marker
from artifactd.store.filesystem.upload import translate_write_error

UPLOADS_DIR = "uploads"
_READ_SIZE = 1 << 20


class FilesystemResources(UploadResources):
    """The upload resources under one storage root's state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / UPLOADS_DIR

    def _state(self, upload_id: str) -> Path:
        return self.dir / f"{upload_id}.json"

    def data_path(self, upload_id: str) -> Path:
        return self.dir / f"{upload_id}.bin"

    async def add(self, resource: UploadResource) -> None:
        await asyncio.to_thread(self._create, resource)

    def _create(self, resource: UploadResource) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.data_path(resource.id).touch()
            self.save(resource)
            marker = self._owner_dir(resource.owner) / marker_name(resource)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._remove(resource.id)  # a full disk: no bytes file without its state
            raise translate_write_error(exc) from exc

    def _owner_dir(self, owner: str | None) -> Path:
        return self.dir.parent / OWNERS_DIR / owner_key(owner)

    @contextlib.asynccontextmanager
    async def owner_held(self, owner: str | None) -> AsyncIterator[None]:
        """This process's lock, then an flock on the owner's marker folder (the processes
        of --workers), held for one count and one creation: milliseconds."""
        async with super().owner_held(owner):
            fd = await asyncio.to_thread(self._lock_owner, owner)
            try:
                yield
            finally:
                os.close(fd)

    def _lock_owner(self, owner: str | None) -> int:
        folder = self._owner_dir(owner)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise translate_write_error(exc) from exc
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    async def open_count(self, owner: str | None) -> int:
        return await asyncio.to_thread(self._open_count, self._owner_dir(owner), time.time())

    def _open_count(self, folder: Path, now: float) -> int:
        """Markers of open resources (still unexpired, their bytes still there: a completed
        or removed upload has none); the others are removed as they are found."""
        count = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                marker = parse_marker(entry.name)
                if marker is None:
                    continue
                upload_id, expiry = marker
                if expiry > now and self.data_path(upload_id).exists():
                    count += 1
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        return count

    async def load(self, upload_id: str) -> UploadResource:
        return await asyncio.to_thread(self._load, upload_id)

    def _load(self, upload_id: str) -> UploadResource:
        if not is_upload_id(upload_id):
            raise NotFoundError("no such upload")
        try:
            state = json.loads(self._state(upload_id).read_text(encoding="utf-8"))
            resource = UploadResource.from_state(state)
        except (OSError, ValueError) as exc:
            raise NotFoundError("no such upload") from exc
        if resource.is_expired():
            raise NotFoundError("no such upload")
        return resource

    def _repaired(self, upload_id: str) -> UploadResource:
        """The resource, its bytes cut to the saved offset (called under the lock).

        A crash mid-PATCH leaves bytes past the saved offset: they were never acknowledged,
        so they go (the client resumes from the offset HEAD gives). The bytes are fsynced
        before the state that counts them, so there are never fewer."""
        resource = self._load(upload_id)
        if resource.complete:
            return resource  # its bytes are gone: the artifact has them
        try:
            size = self.data_path(upload_id).stat().st_size
        except FileNotFoundError as exc:
            raise NotFoundError("no such upload") from exc
        if size > resource.offset:
            os.truncate(self.data_path(upload_id), resource.offset)
        elif size < resource.offset:
            resource.offset = size
            self.save(resource)
        return resource

    def _lock(self, upload_id: str) -> int:
        """An exclusive lock on the upload's bytes, across processes (a file descriptor:
        close it to release); ConflictError while another request holds it."""
        if not is_upload_id(upload_id):
            raise NotFoundError("no such upload")
        try:
            fd = os.open(self.data_path(upload_id), os.O_RDWR)
        except FileNotFoundError as exc:
            raise NotFoundError("no such upload") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise ConflictError("another request is appending to this upload") from exc
        return fd

    @contextlib.asynccontextmanager
    async def appending(self, upload_id: str) -> AsyncIterator[Appending]:
        fd = await asyncio.to_thread(self._lock, upload_id)
        try:
            resource = await asyncio.to_thread(self._repaired, upload_id)
            file = os.fdopen(fd, "r+b", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        try:
            yield _FileAppending(self, resource, file)
        finally:
            await asyncio.to_thread(file.close)

    def save(self, resource: UploadResource) -> None:
        temp = self.dir / f".{resource.id}.json.tmp"
        temp.write_text(json.dumps(dataclasses.asdict(resource)), encoding="utf-8")
        os.replace(temp, self._state(resource.id))

    async def remove(self, upload_id: str) -> None:
        await asyncio.to_thread(self._remove, upload_id)

    def _remove(self, upload_id: str) -> None:
        # The temp state too: a save a full disk cut short leaves it behind.
        temp = self.dir / f".{upload_id}.json.tmp"
        for path in (self._state(upload_id), self.data_path(upload_id), temp):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def remove_expired(self, now: float | None = None) -> int:
        return await asyncio.to_thread(self._remove_expired, now)

    def _remove_expired(self, now: float | None) -> int:
        removed = 0
        if not self.dir.is_dir():
            return 0
        for entry in self.dir.iterdir():
            upload_id, _, suffix = entry.name.partition(".")
            if suffix != "json" or not is_upload_id(upload_id):
                continue
            try:
                state = json.loads(entry.read_text(encoding="utf-8"))
                expired = float(state["expires_at"]) <= (time.time() if now is None else now)
            except (OSError, ValueError, KeyError, TypeError):
                expired = True
            if expired:
                try:
                    self._remove(upload_id)
                except OSError:  # a read-only root: the next pass tries again
                    continue
                removed += 1
        owners = self.dir.parent / OWNERS_DIR
        if owners.is_dir():  # markers of finished uploads, of owners that stopped creating
            for folder in owners.iterdir():
                self._open_count(folder, time.time() if now is None else now)
        return removed


class _FileAppending(Appending):
    """Appends to the `.bin` file held open (and flock'ed) for one request."""

    def __init__(
        self, resources: FilesystemResources, resource: UploadResource, file: BinaryIO
    ) -> None:
        self._resources = resources
        self.resource = resource
        self._file = file
        self._checkpointed = resource.offset

    async def append(self, chunk: bytes) -> None:
        await asyncio.to_thread(self._append, chunk)

    def _append(self, chunk: bytes) -> None:
        view, written = memoryview(chunk), 0
        try:
            while written < len(chunk):  # a nearly full disk may take a part only
                written += os.pwrite(
                    self._file.fileno(), view[written:], self.resource.offset + written
                )
        except OSError as exc:
            # Bytes written past the offset are not counted: the next holder cuts them.
            raise translate_write_error(exc) from exc
        self.resource.offset += len(chunk)

    async def checkpoint(self) -> None:
        await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> None:
        if os.fstat(self._file.fileno()).st_nlink == 0:
            # Removed meanwhile (DELETE, expiry): saving the state would bring it back.
            raise NotFoundError("the upload was removed meanwhile")
        try:
            os.fsync(self._file.fileno())
            self._resources.save(self.resource)
        except OSError as exc:
            raise translate_write_error(exc) from exc
        self._checkpointed = self.resource.offset

    async def rollback(self) -> None:
        await asyncio.to_thread(os.truncate, self._file.fileno(), self._checkpointed)
        self.resource.offset = self._checkpointed

    async def chunks(self) -> AsyncIterator[bytes]:
        if os.fstat(self._file.fileno()).st_nlink == 0:
            raise NotFoundError("the upload was removed meanwhile")  # a DELETE wins
        position = 0
        while position < self._checkpointed:
            size = min(_READ_SIZE, self._checkpointed - position)
            chunk = await asyncio.to_thread(os.pread, self._file.fileno(), size, position)
            if not chunk:
                return
            position += len(chunk)
            yield chunk

    async def mark_complete(self) -> None:
        await asyncio.to_thread(self._mark_complete)

    def _mark_complete(self) -> None:
        self.resource.complete = True
        self._checkpoint()
        self._resources.data_path(self.resource.id).unlink(missing_ok=True)
