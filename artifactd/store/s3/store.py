"""The S3 backend: artifacts and their metadata in a bucket of any S3-compatible store.

This module puts the pieces together behind the storage contract; the consistency design
(conditional publishes, pinned readers, the lease, the access-time log, the cache fill)
is written up in docs/storage-s3.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from artifactd.errors import (
    ConflictError,
    IsDirectoryError,
    NotDirectoryError,
    NotFoundError,
    StoreUnavailableError,
)
from artifactd.http.mediatypes import guess_content_type
from artifactd.paths import is_internal
from artifactd.store.base import (
    ArtifactInfo,
    ArtifactReader,
    DirEntry,
    Requirement,
    Store,
    Upload,
    Verification,
)
from artifactd.store.diskcache import DiskCache
from artifactd.store.s3.accesslog import AccessLog
from artifactd.store.s3.bucket import Bucket, ClientError, code
from artifactd.store.s3.cachefill import CacheFiller
from artifactd.store.s3.cleanup import (
    ORPHAN_DIGEST_AGE_SECONDS,
    STALE_UPLOAD_AGE_SECONDS,
    abort_stale_multipart_uploads,
    remove_orphan_digests,
)
from artifactd.store.s3.lease import LEASE_SECONDS, MaintenanceLease
from artifactd.store.s3.objects import Layout, ObjectMeta, Objects
from artifactd.store.s3.publish import COMMIT_ATTEMPTS, ConditionalWrites
from artifactd.store.s3.reader import S3Reader, VersionGoneError, get_pinned
from artifactd.store.s3.upload import DEFAULT_PART_BYTES, MIN_PART_BYTES, S3Upload


class S3Store(Store):
    """Artifacts in an S3 bucket under `prefix`, optionally cached on local disk.

    Build with `await S3Store.create(...)` (or construct, then `await start()`); credentials
    come from the standard AWS environment variables and config files.
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        prefix: str = "",
        region: str | None = None,
        cache_dir: Path | None = None,
        cache_max_size: int | None = None,
        cache_fill_after_opens: int = 2,
        part_size_bytes: int = DEFAULT_PART_BYTES,
        connect_timeout_seconds: float = 3.0,
        read_timeout_seconds: float = 30.0,
        max_attempts: int = 3,
        max_connections: int = 64,
        stale_upload_age_seconds: float = STALE_UPLOAD_AGE_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        if part_size_bytes < MIN_PART_BYTES:
            raise ValueError(f"part size must be at least {MIN_PART_BYTES} bytes")
        self.bucket = Bucket(
            bucket,
            endpoint_url=endpoint_url,
            region=region,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            max_attempts=max_attempts,
            max_connections=max_connections,
        )
        self.layout = Layout(prefix)
        self.objects = Objects(self.bucket, self.layout)
        self.writes = ConditionalWrites(self.objects)
        self.part_size_bytes = part_size_bytes
        self.stale_upload_age_seconds = stale_upload_age_seconds
        self.cache_dir = cache_dir
        self.cache_max_size = cache_max_size
        self.cache_fill_after_opens = cache_fill_after_opens
        self.node_id = secrets.token_hex(8)
        self.lease = MaintenanceLease(
            self.bucket, self.layout.lease_key, self.node_id, lease_seconds
        )
        self.access_log = AccessLog(self.bucket, self.layout, self.node_id)
        self.cache: CacheFiller | None = None
        self._live_uploads: set[str] = set()

    @classmethod
    async def create(cls, *, check_bucket: bool = True, **kwargs: Any) -> S3Store:
        """A started store; with `check_bucket`, StoreUnavailableError unless the bucket
        answers (a wrong endpoint or bucket name fails at startup, not on first use)."""
        store = cls(**kwargs)
        await store.start(check_bucket=check_bucket)
        return store

    async def health(self) -> str | None:
        try:
            await self.bucket.request("head_bucket")
        except StoreUnavailableError as exc:
            return f"object store unreachable: {exc}"
        except ClientError as exc:
            return f"bucket {self.bucket.name!r} is not usable: {code(exc)}"
        return None

    async def start(self, *, check_bucket: bool = True) -> None:
        await self.bucket.open()
        if self.cache_dir is not None:
            disk = await DiskCache.create(self.cache_dir, self.cache_max_size)
            self.cache = CacheFiller(self.bucket, disk, self.cache_fill_after_opens)
        if check_bucket:
            try:
                await self.bucket.request("head_bucket")
            except ClientError as exc:
                await self.bucket.close()
                raise StoreUnavailableError(
                    f"bucket {self.bucket.name!r} is not usable: {code(exc)}"
                ) from exc
            except BaseException:
                await self.bucket.close()
                raise

    def _info(self, path: str, meta: ObjectMeta) -> ArtifactInfo:
        return meta.info(path, self.access_log.last_accessed(path))

    # -- reading ---------------------------------------------------------------------------

    async def _live(self, path: str, *, tell_directory: bool = True) -> ObjectMeta:
        """The current, unexpired object at `path`; NotFoundError, or IsDirectoryError when
        `tell_directory` (which costs a listing per miss)."""
        if not path:
            raise IsDirectoryError(path) if tell_directory else NotFoundError(path)
        meta = await self.objects.head(self.layout.key(path))
        if meta is None or meta.is_expired():
            if meta is None and tell_directory and await self.objects.is_dir(path):
                raise IsDirectoryError(path)
            raise NotFoundError(path)
        return meta

    async def open(self, path: str) -> ArtifactReader:
        return await self._open(path, await self._live(path))

    async def open_file(self, path: str) -> ArtifactReader:
        """One HEAD per miss: no listing to tell a directory apart."""
        return await self._open(path, await self._live(path, tell_directory=False))

    async def _open(self, path: str, meta: ObjectMeta) -> ArtifactReader:
        info = self._info(path, meta)
        if self.cache is None:
            return S3Reader(self.bucket, meta, info)
        if info.sha256 is not None:
            cached = await self.cache.cached_reader(info)
            if cached is not None:
                return cached
            self.cache.note_open(meta, info.sha256)
        return S3Reader(self.bucket, meta, info, self.cache.cached_reader)

    async def info(self, path: str) -> ArtifactInfo:
        return self._info(path, await self._live(path))

    async def file_info(self, path: str) -> ArtifactInfo:
        return self._info(path, await self._live(path, tell_directory=False))

    async def current(self, path: str) -> ArtifactInfo | None:
        """One HEAD: whether a directory is at `path` is left to the upload's commit, which
        judges it anyway (a listing saved per conditional PUT), and the HEAD stands in for
        the commit's own (`Objects.seen`)."""
        if not path or is_internal(path):
            return None
        meta = await self.objects.head(self.layout.key(path))
        return None if meta is None or meta.is_expired() else self._info(path, meta)

    async def list_dir(self, path: str) -> list[DirEntry]:
        dir_prefix = f"{self.layout.key(path)}/" if path else self.layout.prefix
        dirs: list[DirEntry] = []
        files: list[tuple[str, dict[str, Any]]] = []
        anything = False
        async for page in self.bucket.list_pages(dir_prefix, delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                anything = True
                if self.layout.path_of(common["Prefix"].rstrip("/")) is not None:
                    name = common["Prefix"][len(dir_prefix) :].rstrip("/")
                    # S3 keeps no times for prefixes; the epoch stands for "unknown".
                    dirs.append(DirEntry(name, "dir", None, 0.0))
            for item in page.get("Contents", []):
                anything = True
                if self.layout.path_of(item["Key"]) is not None:
                    files.append((item["Key"][len(dir_prefix) :], item))
        if path and not anything:
            if await self.objects.head(self.layout.key(path)) is not None:
                raise NotDirectoryError(path)
            raise NotFoundError(path)
        now = time.time()
        entries: list[DirEntry] = []
        metas = await self.objects.describe_listed([item for _, item in files])
        for (name, _), meta in zip(files, metas, strict=True):
            if meta is None or meta.is_expired(now):
                continue
            entries.append(
                DirEntry(name, "file", meta.size, meta.modified_at, meta.sha256, meta.expires_at)
            )
        return sorted(dirs, key=lambda e: e.name) + sorted(entries, key=lambda e: e.name)

    async def make_dir(self, path: str) -> bool:
        """S3 has prefixes, not directories: an empty marker object `<key>/` (as S3 consoles
        make for folders) makes the prefix exist until removed by hand; `path_of` never
        takes such a key for an artifact."""
        key = self.layout.key(path)
        if not path or await self.objects.is_dir(path) or await self.objects.head(key) is not None:
            return False
        parent = path.rpartition("/")[0]
        if parent and not await self.objects.is_dir(parent):
            if await self.objects.head(self.layout.key(parent)) is not None:
                raise NotDirectoryError(parent)
            raise NotFoundError(parent)
        await self.bucket.request("put_object", Key=f"{key}/", Body=b"")
        return True

    async def remove_dir(self, path: str) -> bool:
        """The directories under `path` and `path` itself removed (their marker objects,
        or the empty directories SeaweedFS keeps), if no other key lies there."""
        if not path or await self.objects.head(self.layout.key(path)) is not None:
            return False
        async for page in self.bucket.list_pages(f"{self.layout.key(path)}/"):
            if any(not item["Key"].endswith("/") for item in page.get("Contents", [])):
                return False
        self.writes.directories.removed(f"{path}/")  # the marker's path: `path` is gone too
        return await self.writes.remove_empty_directories(path)

    async def iter_artifacts(
        self, prefix: str = "", *, include_expired: bool = False, after: str | None = None
    ) -> AsyncIterator[ArtifactInfo]:
        await self.access_log.load()
        now = time.time()
        async for path, meta in self.objects.iterate(prefix, after=after):
            if include_expired or not meta.is_expired(now):
                yield self._info(path, meta)

    async def drain_cache_fills(self) -> None:
        """Wait for the background cache fills started so far."""
        if self.cache is not None:
            await self.cache.drain()

    async def trim_cache(self) -> None:
        """Trim the local cache to its size bound, least recently used first.

        Each fill trims too; collect_garbage calls this as well, but it runs only on the
        node holding the maintenance lease, so every node also needs the fills' trimming."""
        if self.cache is not None:
            await self.cache.disk.trim()

    # -- writing ---------------------------------------------------------------------------

    async def begin_upload(
        self, path: str, *, content_type: str | None = None, expires_at: float | None = None
    ) -> Upload:
        self.layout.key(path)  # NotFoundError for internal state, before any request
        if not path:
            raise IsDirectoryError(path)
        # No request here: whether a directory is at `path` is judged once, by the commit.
        return S3Upload(
            writes=self.writes,
            describe=self._info,
            live_uploads=self._live_uploads,
            part_size_bytes=self.part_size_bytes,
            path=path,
            content_type=content_type or guess_content_type(path),
            expires_at=expires_at,
        )

    async def delete(self, path: str, *, require: Requirement | None = None) -> ArtifactInfo:
        for _ in range(COMMIT_ATTEMPTS):
            meta, current, _ = await self.writes.current_for_write(
                path, require, self._info, creating=False
            )
            if meta is None or current is None:
                raise NotFoundError(path)
            if await self.writes.delete_version(meta):
                self.writes.directories.removed(path)
                self.objects.forget_seen(meta.key)
                self.access_log.pending.forget(path)
                return current
        raise ConflictError(f"{path} kept changing; try again")

    async def evict(self, info: ArtifactInfo) -> bool:
        meta = await self.objects.head(self.layout.key(info.path))
        if meta is None or meta.version != info.version:
            return False
        if not await self.writes.delete_version(meta):
            return False
        self.writes.directories.removed(info.path)
        self.objects.forget_seen(meta.key)
        self.access_log.pending.forget(info.path)
        return True

    async def verify(self) -> AsyncIterator[Verification]:
        objects = [(path, meta) async for path, meta in self.objects.iterate()]
        for path, meta in objects:
            if meta.sha256 is None:
                continue
            try:
                actual = await self._hash_object(meta)
            except VersionGoneError:
                continue  # replaced or deleted meanwhile: nothing left to check
            yield Verification(path, meta.size, meta.sha256, actual)

    async def _hash_object(self, meta: ObjectMeta) -> str:
        hasher = hashlib.sha256()
        async for chunk in self.bucket.iter_body(await get_pinned(self.bucket, meta)):
            await asyncio.to_thread(hasher.update, chunk)
        return hasher.hexdigest()

    # -- maintenance -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def maintenance_lock(self) -> AsyncIterator[bool]:
        async with self.lease.hold() as held:
            yield held

    async def collect_garbage(self) -> int:
        """Abort multipart uploads under the prefix started more than
        `stale_upload_age_seconds` ago (one day by default) that are not in progress here,
        delete digest records of versions no longer current, compact the access-time log and
        trim the local cache. Returns the number of uploads and records removed."""
        removed = await abort_stale_multipart_uploads(
            self.bucket, self.layout, self.stale_upload_age_seconds, self._live_uploads
        )
        live = {path: meta async for path, meta in self.objects.iterate()}
        removed += await remove_orphan_digests(
            self.bucket,
            self.layout,
            {m.token for m in live.values()},
            max(ORPHAN_DIGEST_AGE_SECONDS, self.stale_upload_age_seconds),
        )
        await self.access_log.compact(set(live))
        await self.trim_cache()
        return removed

    # -- access times ----------------------------------------------------------------------

    async def record_access(self, path: str) -> None:
        self.access_log.note(path)

    async def flush_access_times(self) -> None:
        await self.access_log.flush()

    async def close(self) -> None:
        await self.access_log.close()
        if self.cache is not None:
            await self.cache.cancel()
        await self.bucket.close()
