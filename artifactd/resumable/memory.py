"""Upload resources of the memory store: state and bytes in dicts, for one process (as the
memory store itself). A checkpoint is a copy of the state and the length that counts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

from artifactd.errors import ConflictError, NotFoundError
from artifactd.resumable.base import Appending, UploadResource, UploadResources, is_upload_id

_READ_SIZE = 1 << 20


class MemoryResources(UploadResources):
    """Resources in memory; a lock per resource keeps one appender at a time."""

    def __init__(self) -> None:
        self._states: dict[str, UploadResource] = {}
        self._bytes: dict[str, bytearray] = {}
        self._held: set[str] = set()

    async def add(self, resource: UploadResource) -> None:
        self._states[resource.id] = dataclasses.replace(resource)
        self._bytes[resource.id] = bytearray()

    async def open_count(self, owner: str | None) -> int:
        now = time.time()
        return sum(
            1
            for state in self._states.values()
            if state.owner == owner and not state.complete and not state.is_expired(now)
        )

    async def load(self, upload_id: str) -> UploadResource:
        state = self._states.get(upload_id) if is_upload_id(upload_id) else None
        if state is None or state.is_expired():
            raise NotFoundError("no such upload")
        return dataclasses.replace(state)  # a copy: the caller's changes are not saved

    @contextlib.asynccontextmanager
    async def appending(self, upload_id: str) -> AsyncIterator[Appending]:
        resource = await self.load(upload_id)
        if upload_id in self._held:
            raise ConflictError("another request is appending to this upload")
        self._held.add(upload_id)
        try:
            data = self._bytes[upload_id]
            del data[resource.offset :]  # appended but never checkpointed
            yield _MemoryAppending(self, resource, data)
        finally:
            self._held.discard(upload_id)

    def save(self, resource: UploadResource) -> None:
        if resource.id not in self._states:
            raise NotFoundError("no such upload")  # removed meanwhile
        self._states[resource.id] = dataclasses.replace(resource)

    def ids(self) -> set[str]:
        return set(self._states)

    async def remove(self, upload_id: str) -> None:
        self._states.pop(upload_id, None)
        self._bytes.pop(upload_id, None)

    async def remove_expired(self, now: float | None = None) -> int:
        expired = [i for i, state in self._states.items() if state.is_expired(now)]
        for upload_id in expired:
            await self.remove(upload_id)
        return len(expired)


class _MemoryAppending(Appending):
    def __init__(
        self, resources: MemoryResources, resource: UploadResource, data: bytearray
    ) -> None:
        self._resources = resources
        self.resource = resource
        self._data = data
        self._checkpointed = resource.offset

    async def append(self, chunk: bytes) -> None:
        self._data += chunk
        self.resource.offset += len(chunk)

    async def checkpoint(self) -> None:
        self._resources.save(self.resource)
        self._checkpointed = self.resource.offset

    async def rollback(self) -> None:
        del self._data[self._checkpointed :]
        self.resource.offset = self._checkpointed

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.resource.id not in self._resources.ids():
            raise NotFoundError("the upload was removed meanwhile")  # a DELETE wins
        for start in range(0, self._checkpointed, _READ_SIZE):
            yield bytes(self._data[start : min(start + _READ_SIZE, self._checkpointed)])
            await asyncio.sleep(0)

    async def mark_complete(self) -> None:
        self.resource.complete = True
        await self.checkpoint()
        self._data.clear()
