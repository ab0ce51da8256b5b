"""Reading one pinned version of an object: ranged GETs with read-ahead, and the switch to
the local cache copy when the version leaves the bucket mid-read.

On a versioned bucket every GET names the VersionId; on an unversioned one it carries
If-Match: <ETag>. Bytes of two versions are never mixed (docs/storage-s3.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from artifactd.errors import ArtifactReplacedError
from artifactd.store.base import ArtifactInfo, ArtifactReader
from artifactd.store.s3.bucket import Bucket, ClientError, is_missing, is_precondition_failed
from artifactd.store.s3.objects import ObjectMeta

log = logging.getLogger("artifactd.store.s3")

# Sequential reads fetch ahead, doubling from the first chunk up to this much: few GETs
# for a whole download, bounded memory per reader, and no connection held between reads
# (a slow client never pins a pooled connection).
MAX_READ_AHEAD_BYTES = 1024 * 1024

# Opens the local cache copy of a version, if there is one.
CachedOpener = Callable[[ArtifactInfo], Awaitable[ArtifactReader | None]]


class VersionGoneError(Exception):
    """A pinned GET found another version (412) or none (404)."""


async def get_pinned(bucket: Bucket, meta: ObjectMeta, **params: Any) -> dict[str, Any]:
    """GET of exactly `meta`'s version; VersionGoneError if it is not there any more."""
    try:
        return await bucket.request("get_object", Key=meta.key, **meta.pin, **params)
    except ClientError as exc:
        if is_missing(exc) or is_precondition_failed(exc):
            raise VersionGoneError(meta.key) from exc
        raise


async def _no_cache(info: ArtifactInfo) -> ArtifactReader | None:
    return None


class S3Reader(ArtifactReader):
    """Ranged GETs of one pinned version, with read-ahead for sequential reads."""

    def __init__(
        self,
        bucket: Bucket,
        meta: ObjectMeta,
        info: ArtifactInfo,
        open_cached: CachedOpener = _no_cache,
    ) -> None:
        self._bucket = bucket
        self._meta = meta
        self._open_cached = open_cached
        self.info = info
        self._buffer = b""
        self._buffer_offset = 0
        self._next_offset: int | None = None
        self._window = 0
        self._fallback: ArtifactReader | None = None
        self._closed = False

    async def read(self, offset: int, length: int) -> bytes:
        if self._closed:
            raise ValueError("read from a closed artifact")
        if self._fallback is None:
            data = await self._read_remote(offset, min(length, self.info.size - offset))
            if data is not None:
                return data
        assert self._fallback is not None
        return await self._fallback.read(offset, length)

    def read_now(
        self, offset: int, length: int, *, allow_fd: bool = True
    ) -> bytes | bytearray | None:
        """Bytes already fetched ahead, without waiting; None when a GET is needed."""
        if self._closed or self._fallback is not None:
            return None
        start, length = offset - self._buffer_offset, min(length, self.info.size - offset)
        if length <= 0 or start < 0 or start + length > len(self._buffer):
            return None
        self._next_offset = offset + length
        return self._buffer[start : start + length]

    async def _read_remote(self, offset: int, length: int) -> bytes | None:
        """Bytes from the read-ahead buffer or a new GET; None once switched to the cache."""
        if length <= 0:
            return b""
        start = offset - self._buffer_offset
        if not 0 <= start < len(self._buffer):
            if not await self._fetch(offset, length):
                return None
            start = 0
        data = self._buffer[start : start + length]
        self._next_offset = offset + len(data)
        return data

    async def _fetch(self, offset: int, length: int) -> bool:
        """GET exactly what was asked for a random read; ahead of it, doubling each time,
        for a read that continues where the last one ended. False if the version is gone
        from the store and the reader switched to the local cache copy."""
        if offset == self._next_offset:
            self._window = min(max(2 * self._window, length), MAX_READ_AHEAD_BYTES)
            length = max(length, self._window)
        else:
            self._window = length
        end = min(self.info.size, offset + length) - 1
        self._buffer, self._buffer_offset = b"", offset
        try:
            response = await get_pinned(self._bucket, self._meta, Range=f"bytes={offset}-{end}")
            self._buffer = await self._bucket.read_body(response)
        except VersionGoneError:
            self._fallback = await self._open_cached(self.info)
            if self._fallback is None:
                raise ArtifactReplacedError(
                    f"{self.info.path} was replaced while being read"
                ) from None
            log.info("%s replaced mid-read; finishing from the local cache", self.info.path)
            return False
        return True

    async def aclose(self) -> None:
        self._closed = True
        self._buffer = b""
        if self._fallback is not None:
            await self._fallback.aclose()
