"""The local disk cache in front of the bucket: which versions are read from it, and the
background fills that put a version there once it has been opened often enough.

The cache is content-addressed (diskcache.py): a hit serves exactly the bytes of the
digest the HEAD reported, whatever version of the object carries it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from artifactd.errors import StoreUnavailableError
from artifactd.store.base import ArtifactInfo, ArtifactReader
from artifactd.store.diskcache import DiskCache
from artifactd.store.readers import FileReader
from artifactd.store.s3.bucket import Bucket, ClientError
from artifactd.store.s3.objects import ObjectMeta, remember
from artifactd.store.s3.reader import VersionGoneError, get_pinned

log = logging.getLogger("artifactd.store.s3")

OPEN_COUNTS_KEPT = 10_000
CONCURRENT_CACHE_FILLS = 2


class CacheFiller:
    """Serves cached versions and fills the cache with the ones opened `fill_after_opens`
    times, at most CONCURRENT_CACHE_FILLS at a time."""

    def __init__(self, bucket: Bucket, cache: DiskCache, fill_after_opens: int) -> None:
        self.bucket = bucket
        self.disk = cache
        self.fill_after_opens = max(1, fill_after_opens)
        self._open_counts: OrderedDict[str, int] = OrderedDict()
        self._fills: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(CONCURRENT_CACHE_FILLS)

    async def cached_reader(self, info: ArtifactInfo) -> ArtifactReader | None:
        """A reader of the cached bytes of `info`'s digest, or None."""
        if info.sha256 is None:
            return None
        fd = await self.disk.open(info.sha256)
        return None if fd is None else FileReader(fd, info)

    def note_open(self, meta: ObjectMeta, sha256: str) -> None:
        """Count opens of an uncached version; the n-th schedules a background fill."""
        if sha256 in self._fills or not self.disk.accepts(meta.size):
            return
        opens = self._open_counts.pop(sha256, 0) + 1
        if opens < self.fill_after_opens:
            remember(self._open_counts, sha256, opens, OPEN_COUNTS_KEPT)
            return
        task = asyncio.create_task(self._fill(meta, sha256), name=f"cache-fill-{sha256}")
        self._fills[sha256] = task
        task.add_done_callback(lambda _: self._fills.pop(sha256, None))

    async def _fill(self, meta: ObjectMeta, sha256: str) -> None:
        try:
            async with self._slots:
                if await self.disk.contains(sha256):
                    return
                response = await get_pinned(self.bucket, meta)
                await self.disk.fill(sha256, self.bucket.iter_body(response))
        except (VersionGoneError, StoreUnavailableError, ClientError, OSError) as exc:
            log.info("cache fill of %s skipped: %r", meta.key, exc)

    async def drain(self) -> None:
        """Wait for the background fills started so far."""
        await asyncio.gather(*list(self._fills.values()), return_exceptions=True)

    async def cancel(self) -> None:
        """Stop the fills in flight (each removes its temp file)."""
        for task in list(self._fills.values()):
            task.cancel()
        await asyncio.gather(*list(self._fills.values()), return_exceptions=True)
