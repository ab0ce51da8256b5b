"""Last-access times shared by every node through the bucket, without a write per read.

Each node notes reads in memory and writes them as one new, never rewritten batch object
(`.artifactd/access/batch-<ns>-<node>.json`) at most once a minute, so nodes never contend
for an object; the maintenance pass folds the batches into `merged.json` with a conditional
write and deletes the batches it folded. See docs/storage-s3.md.
"""

from __future__ import annotations

import asyncio
import logging
import time

from artifactd.errors import StoreUnavailableError
from artifactd.store.accesstimes import PendingAccesses, merge_times
from artifactd.store.s3.bucket import Bucket, ClientError, is_precondition_failed
from artifactd.store.s3.objects import Layout

log = logging.getLogger("artifactd.store.s3")

ACCESS_FLUSH_SECONDS = 60.0


class AccessLog:
    """This node's unflushed access times, and the times last read from the bucket."""

    def __init__(self, bucket: Bucket, layout: Layout, node_id: str) -> None:
        self.bucket = bucket
        self.layout = layout
        self.node_id = node_id
        self.pending = PendingAccesses()
        self._flushed_at = time.time()
        self._flusher: asyncio.Task[None] | None = None
        self._known: dict[str, float] = {}  # as last read from the bucket

    def last_accessed(self, path: str) -> float | None:
        found = self.pending.get(path)
        return found if found is not None else self._known.get(path)

    def note(self, path: str) -> None:
        """Noted in memory; flushed by this node itself at most every
        ACCESS_FLUSH_SECONDS, besides the flush before each eviction pass."""
        now = self.pending.note(path)
        flushing = self._flusher is not None and not self._flusher.done()
        if not flushing and now - self._flushed_at >= ACCESS_FLUSH_SECONDS:
            self._flusher = asyncio.create_task(self._flush_quietly(), name="access-flush")

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except (StoreUnavailableError, ClientError) as exc:
            log.warning("access times not saved yet: %s", exc)

    async def flush(self) -> None:
        """Write the batch of access times as one new object; on failure the batch is
        kept for the next flush and the error raised."""
        self._flushed_at = time.time()
        batch = self.pending.take()
        if not batch:
            return
        key = f"{self.layout.access_prefix}batch-{time.time_ns():020d}-{self.node_id}.json"
        try:
            await self.bucket.put_json(key, batch)
        except (StoreUnavailableError, ClientError):
            self.pending.put_back(batch)
            raise
        merge_times(self._known, batch)

    async def close(self) -> None:
        """Wait for a flush in flight, then flush what is left (a failure is only logged)."""
        if self._flusher is not None:
            await self._flusher
        try:
            await self.flush()
        except (StoreUnavailableError, ClientError) as exc:
            log.warning("access times not saved: %s", exc)

    async def _read(self) -> tuple[dict[str, float], str | None, list[str]]:
        """Access times from the merged object and every batch, the merged object's ETag,
        and the batch keys read."""
        keys = [
            item["Key"]
            async for page in self.bucket.list_pages(self.layout.access_prefix)
            for item in page.get("Contents", [])
        ]
        found = await asyncio.gather(*(self.bucket.get_json(key) for key in keys))
        times: dict[str, float] = {}
        merged_etag, batches = None, []
        for key, entry in zip(keys, found, strict=True):
            if entry is None:
                continue
            if key == self.layout.merged_access_key:
                merged_etag = entry[1]
            else:
                batches.append(key)
            if isinstance(entry[0], dict):
                merge_times(times, entry[0])
        return times, merged_etag, batches

    async def load(self) -> None:
        """Read every node's flushed times (before judging recency, e.g. for eviction)."""
        self._known = (await self._read())[0]

    async def compact(self, live_paths: set[str]) -> None:
        """Fold the batches into the merged object (kept to artifacts still present),
        then delete the batches that were folded in."""
        times, merged_etag, batches = await self._read()
        kept = {path: at for path, at in times.items() if path in live_paths}
        if not batches and kept == times:
            return
        condition = {"IfMatch": merged_etag} if merged_etag else {"IfNoneMatch": "*"}
        try:
            await self.bucket.put_json(self.layout.merged_access_key, kept, **condition)
        except ClientError as exc:
            if is_precondition_failed(exc):
                return  # another node compacted meanwhile
            raise
        for key in batches:
            await self.bucket.delete_quietly(key)
        self._known = kept
