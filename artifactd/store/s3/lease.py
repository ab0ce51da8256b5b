"""The maintenance lease: at most one node at a time runs eviction and clean-up.

The lease is one object, created with If-None-Match: * (one creator wins). It expires
`lease_seconds` after its last write, judged by the store's own clock (the Date and
Last-Modified it reports), and is renewed meanwhile with If-Match on its ETag, so a node
that died holding it blocks maintenance for at most that long. See docs/storage-s3.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from artifactd.errors import StoreUnavailableError
from artifactd.store.s3.bucket import Bucket, ClientError, is_missing, is_precondition_failed

log = logging.getLogger("artifactd.store.s3")

LEASE_SECONDS = 120.0


@dataclass
class _Held:
    etag: str


class MaintenanceLease:
    """The lease object at `key`, as this node (`node_id`) takes, renews and releases it.

    `name` says what it guards in log lines (an upload resource's append lock is one too)."""

    def __init__(
        self,
        bucket: Bucket,
        key: str,
        node_id: str,
        lease_seconds: float,
        name: str = "the maintenance lease",
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.node_id = node_id
        self.lease_seconds = lease_seconds
        self.name = name

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[bool]:
        """Yields True while this node holds the lease (renewed in the background), False
        if another node holds it; released on the way out."""
        acquiring = asyncio.ensure_future(self.acquire())
        try:
            etag = await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            # Cancelled (shutdown) while the PUT was in flight: it may have won the lease
            # all the same, which would then block every node until it expired.
            with contextlib.suppress(Exception):
                won = await acquiring
                if won is not None:
                    await self._release(won)
            raise
        if etag is None:
            yield False
            return
        held = _Held(etag)
        renewer = asyncio.create_task(self._renew(held), name="artifactd-lease")
        try:
            yield True
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._release(held.etag)

    async def _release(self, etag: str) -> None:
        with contextlib.suppress(StoreUnavailableError, ClientError):
            await self.bucket.request("delete_object", Key=self.key, IfMatch=etag)

    def _body(self) -> dict[str, Any]:
        return {"owner": self.node_id, "written_ns": time.time_ns()}  # unique per write

    async def acquire(self) -> str | None:
        """Take the lease if it is free or expired, without renewing it: its ETag, or None
        if another node holds it."""
        try:
            return await self.bucket.put_json(self.key, self._body(), IfNoneMatch="*")
        except ClientError as exc:
            if not is_precondition_failed(exc):
                raise
        try:
            head = await self.bucket.request("head_object", Key=self.key)
        except ClientError as exc:
            if is_missing(exc):
                return None  # released just now; the next pass will take it
            raise
        date = head["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
        server_now = parsedate_to_datetime(date) if date else datetime.now(UTC)
        if (server_now - head["LastModified"]).total_seconds() < self.lease_seconds:
            return None
        log.warning("taking over %s from a node that stopped renewing it", self.name)
        try:
            return await self.bucket.put_json(self.key, self._body(), IfMatch=head["ETag"])
        except ClientError as exc:
            if is_precondition_failed(exc) or is_missing(exc):
                return None
            raise

    async def _renew(self, held: _Held) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                held.etag = await self.bucket.put_json(self.key, self._body(), IfMatch=held.etag)
            except ClientError:
                log.error("lost %s; another node may hold it too", self.name)
                return
            except StoreUnavailableError as exc:
                log.warning("could not renew %s: %s", self.name, exc)
