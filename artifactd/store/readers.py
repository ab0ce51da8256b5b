"""Artifact readers shared by several backends: bytes held in memory, and an open file
descriptor (the filesystem backend, and the S3 backend's local cache)."""

from __future__ import annotations

import asyncio
import os

from artifactd.store.base import ArtifactInfo, ArtifactReader


class MemoryReader(ArtifactReader):
    """Holds a reference to the immutable bytes of the version it opened."""

    def __init__(self, data: bytes, info: ArtifactInfo) -> None:
        self._data = data
        self.info = info

    async def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]

    def read_now(
        self, offset: int, length: int, *, allow_fd: bool = True
    ) -> bytes | bytearray | None:
        return self._data[offset : offset + length]

    async def aclose(self) -> None:
        self._data = b""


class FileReader(ArtifactReader):
    """Reads one opened inode; a replaced or deleted path does not affect it. The reader
    owns the descriptor and closes it."""

    def __init__(self, fd: int, info: ArtifactInfo, *, info_once: bool = False) -> None:
        self._fd: int | None = fd
        self.info = info
        self.info_once = info_once

    def fileno(self) -> int | None:
        return self._fd

    def read_now(
        self, offset: int, length: int, *, allow_fd: bool = True
    ) -> bytes | bytearray | None:
        """preadv2 with RWF_NOWAIT fails rather than wait for the disk, so this is safe on
        the event loop: the page cache either has all the bytes or we use `read`."""
        if self._fd is None or not allow_fd:
            return None
        buffer = bytearray(length)
        try:
            got = os.preadv(self._fd, [buffer], offset, os.RWF_NOWAIT)
        except OSError:  # EAGAIN (not cached), EOPNOTSUPP (filesystem without NOWAIT)
            return None
        return buffer if got == length else None  # no copy: a response body takes it as is

    async def read(self, offset: int, length: int) -> bytes:
        if self._fd is None:
            raise ValueError("read from a closed artifact")
        return await asyncio.get_running_loop().run_in_executor(
            None, os.pread, self._fd, length, offset
        )

    async def aclose(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
