"""The S3 backend: artifacts and their metadata in a bucket of any S3-compatible store.

Layout under an optional key prefix P:
  P<path>                             the artifact's bytes; user metadata carries the upload
                                      token, created/expires times and (single-request
                                      uploads) the SHA-256
  P.artifactd/digests/<token>.json    the SHA-256 of a multipart upload, written before the
                                      upload completes (S3 fixes metadata when a multipart
                                      upload starts, before the digest is known)
  P.artifactd/access/*.json           batched last-access times, one object per flush
  P.artifactd/maintenance.lease       the maintenance lease
Objects put in the bucket by other tools are served too (ETag from the S3 ETag, no digest).

Consistency, in the terms of the storage contract:
- Commits and deletes are conditional writes (If-Match on the ETag `require` was checked
  against, or If-None-Match: *), retried with a fresh check when another node got there
  first, so `require` always judged the version actually replaced.
- Readers are pinned to the version they opened. On a versioned bucket every ranged GET
  names the VersionId, so a reader survives overwrites and deletes as the contract asks.
  On an unversioned bucket each GET carries If-Match: <ETag>; when the object was replaced
  or deleted meanwhile (412/404) the reader switches to the local cache copy of its digest
  if there is one, else raises ArtifactReplacedError (the server then cuts the connection):
  bytes of two versions are never mixed.
- Metadata is never cached for `open`/`info`: each does one HEAD (plus one small GET the
  first time a node meets a multipart upload), so a node sees another node's writes at
  once. Listings cache what HEAD said per (key, ETag, Last-Modified, size).
- Eviction deletes with If-Match on the ETag after comparing the upload token; a store that
  ignores If-Match on DELETE leaves a window of one round trip in which a newer version
  could be deleted instead. Two uploads of identical bytes have the same ETag, so within
  that same window a re-upload of the same bytes can be evicted.
- On a versioned bucket deletes leave noncurrent versions behind: give the bucket a
  lifecycle rule expiring noncurrent versions (and aborting incomplete multipart uploads).
- Conditional writes (If-None-Match: * and If-Match on PutObject, CompleteMultipartUpload
  and DeleteObject) are required for exclusive maintenance and race-free commits; AWS S3,
  MinIO, Ceph RGW and SeaweedFS honour them. A store that silently ignored them would let
  two nodes run maintenance at once and let a commit replace a version `require` never saw.
- Last-access times are kept in memory and written by each node as one batch object at
  most once a minute (never a write per read); the maintenance pass folds them together.

Errors: an unreachable or failing store (connection refused, timeouts, 5xx, missing bucket)
raises StoreUnavailableError after the configured attempts; nothing else is retried here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import botocore.session  # type: ignore[import-untyped]
from aiobotocore.session import AioSession, get_session  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from artifactd.errors import (
    ArtifactReplacedError,
    ConflictError,
    DigestMismatchError,
    InvalidPathError,
    IsDirectoryError,
    NotDirectoryError,
    NotFoundError,
    StoreUnavailableError,
)
from artifactd.http.mediatypes import guess_content_type
from artifactd.paths import INTERNAL_DIR, is_internal, parse_artifact_path
from artifactd.store.base import (
    ArtifactInfo,
    ArtifactReader,
    DirEntry,
    EntryType,
    Requirement,
    Store,
    Upload,
    Verification,
)
from artifactd.store.diskcache import DiskCache
from artifactd.store.filesystem import FileReader

log = logging.getLogger("artifactd.store.s3")

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_PART_BYTES = 8 * 1024 * 1024
PARTS_PER_SIZE_STEP = 1000
# Sequential reads fetch ahead, doubling from the first chunk up to this much: few GETs
# for a whole download, bounded memory per reader, and no connection held between reads
# (a slow client never pins a pooled connection).
MAX_READ_AHEAD_BYTES = 1024 * 1024
STREAM_BLOCK_BYTES = 1024 * 1024
# Multipart uploads (and digest records) older than this are a dead writer's leftovers.
STALE_UPLOAD_AGE_SECONDS = 24 * 3600
# Digest records of replaced versions are kept this long for readers that just HEADed.
ORPHAN_DIGEST_AGE_SECONDS = 3600
LEASE_SECONDS = 120.0
ACCESS_FLUSH_SECONDS = 60.0
COMMIT_ATTEMPTS = 8  # conditional commits/deletes retried this often under contention
HEAD_CONCURRENCY = 16
LISTED_METADATA_KEPT = 100_000
DIGESTS_KEPT = 100_000
OPEN_COUNTS_KEPT = 10_000
CONCURRENT_CACHE_FILLS = 2

META_TOKEN = "artifactd-token"
META_SHA256 = "artifactd-sha256"
META_CREATED = "artifactd-created"
META_EXPIRES = "artifactd-expires"
_GENERIC_TYPES = {"", "binary/octet-stream", "application/octet-stream"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# Failures that mean "the store cannot be reached", as opposed to an answer from it.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    BotoConnectionError,
    HTTPClientError,
    aiohttp.ClientError,
    TimeoutError,
    OSError,
)


class _VersionGoneError(Exception):
    """A pinned GET found another version (412) or none (404)."""


@dataclass(frozen=True, slots=True)
class _ObjectMeta:
    """What the bucket says about the object at one key."""

    key: str
    etag: str  # without quotes
    size: int
    last_modified: float
    content_type: str | None
    version_id: str | None  # set on versioned buckets
    token: str | None  # set for artifacts uploaded by artifactd
    sha256: str | None
    created_at: float | None
    expires_at: float | None

    @property
    def version(self) -> str:
        """Changes whenever the bytes change, and with every upload even of equal bytes."""
        return f"{self.etag}:{self.token}" if self.token else self.etag

    @property
    def pin(self) -> dict[str, str]:
        """GET parameters that return this version or fail."""
        if self.version_id:
            return {"VersionId": self.version_id}
        return {"IfMatch": f'"{self.etag}"'}

    def is_expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or time.time())


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
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.internal_prefix = f"{self.prefix}{INTERNAL_DIR}/"
        self.part_size_bytes = part_size_bytes
        self.stale_upload_age_seconds = stale_upload_age_seconds
        self.lease_seconds = lease_seconds
        self.cache_dir = cache_dir
        self.cache_max_size = cache_max_size
        self.cache_fill_after_opens = max(1, cache_fill_after_opens)
        self.node_id = secrets.token_hex(8)
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region or "us-east-1",
            "config": Config(
                connect_timeout=connect_timeout_seconds,
                read_timeout=read_timeout_seconds,
                retries={"max_attempts": max_attempts, "mode": "standard"},
                max_pool_connections=max_connections,
                # Path-style works with every S3-compatible store; AWS resolves both.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                # Trailing checksums are not understood by every S3-compatible store.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        self._client: Any = None
        self._client_context: Any = None
        self._cache: DiskCache | None = None
        self._listed: OrderedDict[tuple[str, str, int, int], _ObjectMeta] = OrderedDict()
        self._digests: OrderedDict[str, tuple[str, float] | None] = OrderedDict()
        self._accessed: dict[str, float] = {}  # not flushed yet
        self._flushed_at = time.time()
        self._flusher: asyncio.Task[None] | None = None
        self._access_times: dict[str, float] = {}  # as last read from the bucket
        self._open_counts: OrderedDict[str, int] = OrderedDict()
        self._fills: dict[str, asyncio.Task[None]] = {}
        self._fill_slots = asyncio.Semaphore(CONCURRENT_CACHE_FILLS)
        self._live_uploads: set[str] = set()
        self._conditional_delete = True

    @classmethod
    async def create(cls, *, check_bucket: bool = True, **kwargs: Any) -> S3Store:
        """A started store; with `check_bucket`, StoreUnavailableError unless the bucket
        answers (a wrong endpoint or bucket name fails at startup, not on first use)."""
        store = cls(**kwargs)
        await store.start(check_bucket=check_bucket)
        return store

    async def health(self) -> str | None:
        try:
            await self._request("head_bucket")
        except StoreUnavailableError as exc:
            return f"object store unreachable: {exc}"
        except ClientError as exc:
            return f"bucket {self.bucket!r} is not usable: {_code(exc)}"
        return None

    async def start(self, *, check_bucket: bool = True) -> None:
        session = get_session()
        # botocore reads its JSON models and config files synchronously on first use: do
        # that in a thread, so creating the client below finds them loaded.
        await asyncio.to_thread(_preload_botocore, session, self._client_args)
        self._client_context = session.create_client("s3", **self._client_args)
        self._client = await self._client_context.__aenter__()
        if self.cache_dir is not None:
            self._cache = await DiskCache.create(self.cache_dir, self.cache_max_size)
        if check_bucket:
            try:
                await self._request("head_bucket")
            except ClientError as exc:
                await self._close_client()
                raise StoreUnavailableError(
                    f"bucket {self.bucket!r} is not usable: {_code(exc)}"
                ) from exc
            except BaseException:
                await self._close_client()
                raise

    # -- requests --------------------------------------------------------------------------

    async def _request(self, operation: str, **params: Any) -> dict[str, Any]:
        """One S3 call on this bucket; unreachable or failing stores become
        StoreUnavailableError, other answers stay ClientError for the caller to judge."""
        try:
            response: dict[str, Any] = await getattr(self._client, operation)(
                Bucket=self.bucket, **params
            )
        except ClientError as exc:
            if (_status(exc) >= 500 and _code(exc) != "NotImplemented") or _code(
                exc
            ) == "NoSuchBucket":
                raise StoreUnavailableError(f"object store {operation}: {_code(exc)}") from exc
            raise
        except _UNREACHABLE as exc:
            raise StoreUnavailableError(f"object store unreachable: {exc}") from exc
        return response

    async def _read_body(self, response: dict[str, Any]) -> bytes:
        try:
            async with response["Body"] as body:
                data: bytes = await body.read()
        except _UNREACHABLE as exc:
            raise StoreUnavailableError(f"object store read failed: {exc}") from exc
        return data

    async def _iter_body(self, response: dict[str, Any]) -> AsyncIterator[bytes]:
        try:
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(STREAM_BLOCK_BYTES):
                    yield chunk
        except _UNREACHABLE as exc:
            raise StoreUnavailableError(f"object store read failed: {exc}") from exc

    async def _get_pinned(self, meta: _ObjectMeta, **params: Any) -> dict[str, Any]:
        """GET of exactly `meta`'s version; _VersionGoneError if it is not there any more."""
        try:
            return await self._request("get_object", Key=meta.key, **meta.pin, **params)
        except ClientError as exc:
            if _is_missing(exc) or _is_precondition_failed(exc):
                raise _VersionGoneError(meta.key) from exc
            raise

    async def _get_json(self, key: str) -> tuple[Any, str] | None:
        """A small JSON state object and its ETag, or None if absent or unreadable."""
        try:
            response = await self._request("get_object", Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        try:
            return json.loads(await self._read_body(response)), response["ETag"]
        except ValueError:
            log.warning("ignoring malformed state object %s", key)
            return None

    async def _put_json(self, key: str, value: Any, **condition: str) -> str:
        body = json.dumps(value, separators=(",", ":")).encode()
        response = await self._request(
            "put_object", Key=key, Body=body, ContentType="application/json", **condition
        )
        etag: str = response["ETag"]
        return etag

    async def _list_pages(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every ListObjectsV2 page for `prefix`."""
        params: dict[str, Any] = {"Prefix": prefix}
        if delimiter:
            params["Delimiter"] = delimiter
        while True:
            page = await self._request("list_objects_v2", **params)
            yield page
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    # -- keys and metadata -----------------------------------------------------------------

    def _key(self, path: str) -> str:
        if is_internal(path):
            raise NotFoundError(path)  # internal state is never reachable as an artifact
        return self.prefix + path

    def _path_of(self, key: str) -> str | None:
        """The artifact path for a bucket key, or None for internal state and for keys that
        are not safe artifact paths (e.g. `a//b` or `../x` put there by other tools)."""
        if not key.startswith(self.prefix):
            return None
        path = key[len(self.prefix) :]
        if not path or path.endswith("/") or is_internal(path):
            return None
        try:
            valid = parse_artifact_path(quote(path, safe="/")) == path
        except InvalidPathError:
            return None
        return path if valid else None

    async def _head(self, key: str) -> _ObjectMeta | None:
        """The current object at `key` (expired or not), or None."""
        try:
            head = await self._request("head_object", Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return await self._meta_from_head(key, head)

    async def _meta_from_head(self, key: str, head: dict[str, Any]) -> _ObjectMeta:
        metadata: dict[str, str] = head.get("Metadata") or {}
        token = metadata.get(META_TOKEN)
        sha256 = _valid_sha256(metadata.get(META_SHA256))
        created_at = _float_or_none(metadata.get(META_CREATED))
        if token and sha256 is None:  # a multipart upload: the digest is in a record
            record = await self._digest_record(token)
            if record is not None:
                sha256, created_at = record
        version_id = head.get("VersionId")
        return _ObjectMeta(
            key=key,
            etag=head["ETag"].strip('"'),
            size=head["ContentLength"],
            last_modified=head["LastModified"].timestamp(),
            content_type=head.get("ContentType"),
            version_id=version_id if version_id and version_id != "null" else None,
            token=token,
            sha256=sha256,
            created_at=created_at,
            expires_at=_float_or_none(metadata.get(META_EXPIRES)),
        )

    def _digest_key(self, token: str) -> str:
        return f"{self.internal_prefix}digests/{token}.json"

    async def _digest_record(self, token: str) -> tuple[str, float] | None:
        """(sha256, created_at) of a multipart upload; immutable, so cached for good."""
        if token in self._digests:
            return self._digests[token]
        found = await self._get_json(self._digest_key(token))
        record = None
        if found is not None and isinstance(found[0], dict):
            sha256 = _valid_sha256(found[0].get("sha256"))
            created_at = _float_or_none(str(found[0].get("created_at")))
            if sha256 is not None and created_at is not None:
                record = (sha256, created_at)
        _remember(self._digests, token, record, DIGESTS_KEPT)
        return record

    def _info(self, path: str, meta: _ObjectMeta) -> ArtifactInfo:
        created_at = meta.created_at if meta.created_at is not None else meta.last_modified
        content_type = meta.content_type or ""
        if not meta.token and content_type in _GENERIC_TYPES:
            content_type = guess_content_type(path)  # placed by another tool, untyped
        return ArtifactInfo(
            path=path,
            size=meta.size,
            content_type=content_type or guess_content_type(path),
            modified_at=created_at,
            created_at=created_at,
            sha256=meta.sha256,
            expires_at=meta.expires_at,
            last_accessed=self._accessed.get(path, self._access_times.get(path)),
            version=meta.version,
        )

    async def _describe_listed(self, contents: list[dict[str, Any]]) -> list[_ObjectMeta | None]:
        """Metadata for listed objects: from the cache when this exact version was seen,
        else by HEAD (a few at a time). None for objects gone meanwhile."""
        slots = asyncio.Semaphore(HEAD_CONCURRENCY)

        async def describe(item: dict[str, Any]) -> _ObjectMeta | None:
            cache_key = (
                item["Key"],
                item["ETag"].strip('"'),
                int(item["LastModified"].timestamp()),
                item["Size"],
            )
            cached = self._listed.get(cache_key)
            if cached is not None:
                self._listed.move_to_end(cache_key)
                return cached
            async with slots:
                meta = await self._head(item["Key"])
            if meta is not None:
                seen = (meta.key, meta.etag, int(meta.last_modified), meta.size)
                _remember(self._listed, seen, meta, LISTED_METADATA_KEPT)
            return meta

        return list(await asyncio.gather(*(describe(item) for item in contents)))

    async def _iter_objects(self, prefix: str = "") -> AsyncIterator[tuple[str, _ObjectMeta]]:
        """Every artifact object whose path starts with `prefix`, expired ones included, in
        path order (S3 lists keys in UTF-8 byte order, which is code point order)."""
        async for page in self._list_pages(self.prefix + prefix):
            listed = [
                (path, item)
                for item in page.get("Contents", [])
                if (path := self._path_of(item["Key"])) is not None and path.startswith(prefix)
            ]
            metas = await self._describe_listed([item for _, item in listed])
            for (path, _), meta in zip(listed, metas, strict=True):
                if meta is not None:
                    yield path, meta

    async def _is_dir(self, path: str) -> bool:
        """Whether any key lies under `path/` (S3 has no directories, only prefixes)."""
        if not path:
            return True
        page = await self._request("list_objects_v2", Prefix=f"{self._key(path)}/", MaxKeys=1)
        return bool(page.get("KeyCount") or page.get("Contents"))

    # -- reading ---------------------------------------------------------------------------

    async def _live(self, path: str) -> _ObjectMeta:
        """The current, unexpired object at `path`; NotFoundError or IsDirectoryError."""
        if not path:
            raise IsDirectoryError(path)
        meta = await self._head(self._key(path))
        if meta is None or meta.is_expired():
            if meta is None and await self._is_dir(path):
                raise IsDirectoryError(path)
            raise NotFoundError(path)
        return meta

    async def open(self, path: str) -> ArtifactReader:
        meta = await self._live(path)
        info = self._info(path, meta)
        if self._cache is not None and info.sha256 is not None:
            cached = await self._cached_reader(info)
            if cached is not None:
                return cached
            self._note_open(meta, info.sha256)
        return S3Reader(self, meta, info)

    async def info(self, path: str) -> ArtifactInfo:
        return self._info(path, await self._live(path))

    async def entry_type(self, path: str) -> EntryType | None:
        if not path:
            return "dir"
        meta = await self._head(self._key(path))
        if meta is not None and not meta.is_expired():
            return "file"
        return "dir" if await self._is_dir(path) else None

    async def list_dir(self, path: str) -> list[DirEntry]:
        dir_prefix = f"{self._key(path)}/" if path else self.prefix
        dirs: list[DirEntry] = []
        files: list[tuple[str, dict[str, Any]]] = []
        anything = False
        async for page in self._list_pages(dir_prefix, delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                anything = True
                if self._path_of(common["Prefix"].rstrip("/")) is not None:
                    name = common["Prefix"][len(dir_prefix) :].rstrip("/")
                    # S3 keeps no times for prefixes; the epoch stands for "unknown".
                    dirs.append(DirEntry(name, "dir", None, 0.0))
            for item in page.get("Contents", []):
                anything = True
                if self._path_of(item["Key"]) is not None:
                    files.append((item["Key"][len(dir_prefix) :], item))
        if path and not anything:
            if await self._head(self._key(path)) is not None:
                raise NotDirectoryError(path)
            raise NotFoundError(path)
        now = time.time()
        entries: list[DirEntry] = []
        metas = await self._describe_listed([item for _, item in files])
        for (name, _), meta in zip(files, metas, strict=True):
            if meta is None or meta.is_expired(now):
                continue
            modified_at = meta.created_at if meta.created_at is not None else meta.last_modified
            entries.append(
                DirEntry(name, "file", meta.size, modified_at, meta.sha256, meta.expires_at)
            )
        return sorted(dirs, key=lambda e: e.name) + sorted(entries, key=lambda e: e.name)

    async def iter_artifacts(
        self, prefix: str = "", *, include_expired: bool = False
    ) -> AsyncIterator[ArtifactInfo]:
        await self._load_access_times()
        now = time.time()
        async for path, meta in self._iter_objects(prefix):
            if include_expired or not meta.is_expired(now):
                yield self._info(path, meta)

    # -- the local cache -------------------------------------------------------------------

    async def _cached_reader(self, info: ArtifactInfo) -> ArtifactReader | None:
        if self._cache is None or info.sha256 is None:
            return None
        fd = await self._cache.open(info.sha256)
        return None if fd is None else FileReader(fd, info)

    def _note_open(self, meta: _ObjectMeta, sha256: str) -> None:
        """Count opens of an uncached version; the n-th schedules a background fill."""
        assert self._cache is not None
        if sha256 in self._fills or not self._cache.accepts(meta.size):
            return
        opens = self._open_counts.pop(sha256, 0) + 1
        if opens < self.cache_fill_after_opens:
            _remember(self._open_counts, sha256, opens, OPEN_COUNTS_KEPT)
            return
        task = asyncio.create_task(self._fill_cache(meta, sha256), name=f"cache-fill-{sha256}")
        self._fills[sha256] = task
        task.add_done_callback(lambda _: self._fills.pop(sha256, None))

    async def _fill_cache(self, meta: _ObjectMeta, sha256: str) -> None:
        assert self._cache is not None
        try:
            async with self._fill_slots:
                if await self._cache.contains(sha256):
                    return
                response = await self._get_pinned(meta)
                await self._cache.fill(sha256, self._iter_body(response))
        except (_VersionGoneError, StoreUnavailableError, ClientError, OSError) as exc:
            log.info("cache fill of %s skipped: %r", meta.key, exc)

    async def drain_cache_fills(self) -> None:
        """Wait for the background cache fills started so far."""
        await asyncio.gather(*list(self._fills.values()), return_exceptions=True)

    async def trim_cache(self) -> None:
        """Trim the local cache to its size bound, least recently used first.

        Each fill trims too; remove_stale_uploads calls this as well, but it runs only on the
        node holding the maintenance lease, so every node also needs the fills' trimming."""
        if self._cache is not None:
            await self._cache.trim()

    # -- writing ---------------------------------------------------------------------------

    async def begin_upload(
        self, path: str, *, content_type: str | None = None, expires_at: float | None = None
    ) -> Upload:
        key = self._key(path)
        if not path or await self._is_dir(path):
            raise IsDirectoryError(path)
        return S3Upload(self, path, key, content_type or guess_content_type(path), expires_at)

    async def _check_no_file_parent(self, path: str) -> None:
        segments = path.split("/")
        parents = ["/".join(segments[:i]) for i in range(1, len(segments))]
        found = await asyncio.gather(*(self._head(self._key(p)) for p in parents))
        if any(meta is not None for meta in found):
            raise ConflictError(f"a parent of {path} is a file")

    async def _current_for_write(
        self, path: str, require: Requirement | None
    ) -> tuple[_ObjectMeta | None, ArtifactInfo | None, dict[str, str]]:
        """The object now at `path`, its info unless expired (after `require` accepted it),
        and the write condition that holds only while it stays there."""
        meta = await self._head(self._key(path))
        if meta is None and await self._is_dir(path):
            raise IsDirectoryError(path)
        current = None if meta is None or meta.is_expired() else self._info(path, meta)
        if require is not None:
            require(current)
        condition = {"IfMatch": f'"{meta.etag}"'} if meta else {"IfNoneMatch": "*"}
        return meta, current, condition

    async def delete(self, path: str, *, require: Requirement | None = None) -> ArtifactInfo:
        for _ in range(COMMIT_ATTEMPTS):
            meta, current, _ = await self._current_for_write(path, require)
            if meta is None or current is None:
                raise NotFoundError(path)
            if await self._delete_version(meta):
                self._accessed.pop(path, None)
                return current
        raise ConflictError(f"{path} kept changing; try again")

    async def _delete_version(self, meta: _ObjectMeta) -> bool:
        """Delete the object if it still is `meta`'s version; False if it changed."""
        condition = {"IfMatch": f'"{meta.etag}"'} if self._conditional_delete else {}
        try:
            await self._request("delete_object", Key=meta.key, **condition)
        except ClientError as exc:
            if _is_precondition_failed(exc) or _is_missing(exc):
                return False
            if _code(exc) != "NotImplemented" or not condition:
                raise
            log.warning("this S3 store refuses conditional deletes; deleting after a HEAD")
            self._conditional_delete = False
            await self._request("delete_object", Key=meta.key)
        return True

    async def evict(self, info: ArtifactInfo) -> bool:
        meta = await self._head(self._key(info.path))
        if meta is None or meta.version != info.version:
            return False
        if not await self._delete_version(meta):
            return False
        self._accessed.pop(info.path, None)
        return True

    async def verify(self) -> AsyncIterator[Verification]:
        objects = [(path, meta) async for path, meta in self._iter_objects()]
        for path, meta in objects:
            if meta.sha256 is None:
                continue
            try:
                actual = await self._hash_object(meta)
            except _VersionGoneError:
                continue  # replaced or deleted meanwhile: nothing left to check
            yield Verification(path, meta.size, meta.sha256, actual)

    async def _hash_object(self, meta: _ObjectMeta) -> str:
        hasher = hashlib.sha256()
        async for chunk in self._iter_body(await self._get_pinned(meta)):
            await asyncio.to_thread(hasher.update, chunk)
        return hasher.hexdigest()

    # -- maintenance -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def maintenance_lock(self) -> AsyncIterator[bool]:
        """A lease object, created with If-None-Match: * (one creator wins). It expires
        `lease_seconds` after its last write, judged by the store's own clock (the Date
        and Last-Modified it reports), and is renewed meanwhile with If-Match on its ETag,
        so a node that died holding it blocks maintenance for at most that long."""
        acquiring = asyncio.ensure_future(self._acquire_lease())
        try:
            etag = await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            # Cancelled (shutdown) while the PUT was in flight: it may have won the lease
            # all the same, which would then block every node until it expired.
            with contextlib.suppress(Exception):
                won = await acquiring
                if won is not None:
                    await self._release_lease(won)
            raise
        if etag is None:
            yield False
            return
        lease = _Lease(etag)
        renewer = asyncio.create_task(self._renew_lease(lease), name="artifactd-lease")
        try:
            yield True
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._release_lease(lease.etag)

    async def _release_lease(self, etag: str) -> None:
        with contextlib.suppress(StoreUnavailableError, ClientError):
            await self._request("delete_object", Key=self._lease_key, IfMatch=etag)

    @property
    def _lease_key(self) -> str:
        return f"{self.internal_prefix}maintenance.lease"

    def _lease_body(self) -> dict[str, Any]:
        return {"owner": self.node_id, "written_ns": time.time_ns()}  # unique per write

    async def _acquire_lease(self) -> str | None:
        try:
            return await self._put_json(self._lease_key, self._lease_body(), IfNoneMatch="*")
        except ClientError as exc:
            if not _is_precondition_failed(exc):
                raise
        try:
            head = await self._request("head_object", Key=self._lease_key)
        except ClientError as exc:
            if _is_missing(exc):
                return None  # released just now; the next pass will take it
            raise
        date = head["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
        server_now = parsedate_to_datetime(date) if date else datetime.now(UTC)
        if (server_now - head["LastModified"]).total_seconds() < self.lease_seconds:
            return None
        log.warning("taking over the maintenance lease of a node that stopped renewing it")
        try:
            return await self._put_json(self._lease_key, self._lease_body(), IfMatch=head["ETag"])
        except ClientError as exc:
            if _is_precondition_failed(exc) or _is_missing(exc):
                return None
            raise

    async def _renew_lease(self, lease: _Lease) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                lease.etag = await self._put_json(
                    self._lease_key, self._lease_body(), IfMatch=lease.etag
                )
            except ClientError:
                log.error("lost the maintenance lease; another node may run maintenance too")
                return
            except StoreUnavailableError as exc:
                log.warning("could not renew the maintenance lease: %s", exc)

    async def remove_stale_uploads(self) -> int:
        """Abort multipart uploads under the prefix started more than
        `stale_upload_age_seconds` ago (one day by default) that are not in progress here,
        delete digest records of versions no longer current, compact the access-time log and
        trim the local cache. Returns the number of uploads and records removed."""
        removed = await self._abort_stale_multipart_uploads()
        live = {path: meta async for path, meta in self._iter_objects()}
        removed += await self._remove_orphan_digests({m.token for m in live.values()})
        await self._compact_access_log(set(live))
        await self.trim_cache()
        return removed

    async def _abort_stale_multipart_uploads(self) -> int:
        cutoff = time.time() - self.stale_upload_age_seconds
        params: dict[str, Any] = {"Prefix": self.prefix}
        stale: list[tuple[str, str]] = []
        while True:
            page = await self._request("list_multipart_uploads", **params)
            for upload in page.get("Uploads", []):
                if (
                    upload["UploadId"] not in self._live_uploads
                    and upload["Initiated"].timestamp() < cutoff
                ):
                    stale.append((upload["Key"], upload["UploadId"]))
            if not page.get("IsTruncated"):
                break
            params["KeyMarker"] = page["NextKeyMarker"]
            params["UploadIdMarker"] = page["NextUploadIdMarker"]
        for key, upload_id in stale:
            with contextlib.suppress(ClientError):
                await self._request("abort_multipart_upload", Key=key, UploadId=upload_id)
        return len(stale)

    async def _remove_orphan_digests(self, live_tokens: set[str | None]) -> int:
        cutoff = time.time() - max(ORPHAN_DIGEST_AGE_SECONDS, self.stale_upload_age_seconds)
        prefix = f"{self.internal_prefix}digests/"
        orphans = []
        async for page in self._list_pages(prefix):
            for item in page.get("Contents", []):
                token = item["Key"][len(prefix) :].removesuffix(".json")
                if token not in live_tokens and item["LastModified"].timestamp() < cutoff:
                    orphans.append(item["Key"])
        for key in orphans:
            with contextlib.suppress(ClientError):
                await self._request("delete_object", Key=key)
        return len(orphans)

    # -- access times ----------------------------------------------------------------------

    @property
    def _access_prefix(self) -> str:
        return f"{self.internal_prefix}access/"

    async def record_access(self, path: str) -> None:
        """Noted in memory; flushed at most every ACCESS_FLUSH_SECONDS by this node itself,
        since the evictor flushes only on the node holding the maintenance lease."""
        now = time.time()
        self._accessed[path] = now
        flushing = self._flusher is not None and not self._flusher.done()
        if not flushing and now - self._flushed_at >= ACCESS_FLUSH_SECONDS:
            self._flusher = asyncio.create_task(self._flush_quietly(), name="access-flush")

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except (StoreUnavailableError, ClientError) as exc:
            log.warning("access times not saved yet: %s", exc)

    async def flush(self) -> None:
        """Write the batch of access times as one new, never rewritten object: nodes never
        contend for it, and the maintenance pass folds the batches together."""
        self._flushed_at = time.time()
        batch, self._accessed = self._accessed, {}
        if not batch:
            return
        key = f"{self._access_prefix}batch-{time.time_ns():020d}-{self.node_id}.json"
        try:
            await self._put_json(key, batch)
        except (StoreUnavailableError, ClientError):
            for path, at in batch.items():  # keep them for the next flush
                self._accessed[path] = max(at, self._accessed.get(path, at))
            raise
        _merge_times(self._access_times, batch)

    async def _read_access_log(self) -> tuple[dict[str, float], str | None, list[str]]:
        """Access times from the merged object and every batch, the merged object's ETag,
        and the batch keys read."""
        keys = [
            item["Key"]
            async for page in self._list_pages(self._access_prefix)
            for item in page.get("Contents", [])
        ]
        found = await asyncio.gather(*(self._get_json(key) for key in keys))
        times: dict[str, float] = {}
        merged_etag, batches = None, []
        for key, entry in zip(keys, found, strict=True):
            if entry is None:
                continue
            if key == self._merged_access_key:
                merged_etag = entry[1]
            else:
                batches.append(key)
            if isinstance(entry[0], dict):
                _merge_times(times, entry[0])
        return times, merged_etag, batches

    @property
    def _merged_access_key(self) -> str:
        return f"{self._access_prefix}merged.json"

    async def _load_access_times(self) -> None:
        self._access_times = (await self._read_access_log())[0]

    async def _compact_access_log(self, live_paths: set[str]) -> None:
        """Fold the batches into the merged object (kept to artifacts still present),
        then delete the batches that were folded in."""
        times, merged_etag, batches = await self._read_access_log()
        kept = {path: at for path, at in times.items() if path in live_paths}
        if not batches and kept == times:
            return
        condition = {"IfMatch": merged_etag} if merged_etag else {"IfNoneMatch": "*"}
        try:
            await self._put_json(self._merged_access_key, kept, **condition)
        except ClientError as exc:
            if _is_precondition_failed(exc):
                return  # another node compacted meanwhile
            raise
        for key in batches:
            with contextlib.suppress(ClientError):
                await self._request("delete_object", Key=key)
        self._access_times = kept

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flusher
        try:
            await self.flush()
        except (StoreUnavailableError, ClientError) as exc:
            log.warning("access times not saved: %s", exc)
        for task in list(self._fills.values()):
            task.cancel()
        await asyncio.gather(*list(self._fills.values()), return_exceptions=True)
        await self._close_client()

    async def _close_client(self) -> None:
        if self._client_context is not None:
            context, self._client_context = self._client_context, None
            await context.__aexit__(None, None, None)


@dataclass
class _Lease:
    etag: str


class S3Reader(ArtifactReader):
    """Ranged GETs of one pinned version, with read-ahead for sequential reads."""

    def __init__(self, store: S3Store, meta: _ObjectMeta, info: ArtifactInfo) -> None:
        self._store = store
        self._meta = meta
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
            response = await self._store._get_pinned(self._meta, Range=f"bytes={offset}-{end}")
            self._buffer = await self._store._read_body(response)
        except _VersionGoneError:
            self._fallback = await self._store._cached_reader(self.info)
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


class S3Upload(Upload):
    """Buffers one part at a time: a single PutObject for small uploads, a multipart upload
    for larger ones. Nothing is visible until the last request of `commit`."""

    def __init__(
        self,
        store: S3Store,
        path: str,
        key: str,
        content_type: str,
        expires_at: float | None,
    ) -> None:
        self.store = store
        self.path = path
        self.key = key
        self.content_type = content_type
        self.expires_at = expires_at
        self.token = secrets.token_hex(16)
        self.hasher = hashlib.sha256()
        self.size = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False

    def _metadata(self, **extra: str) -> dict[str, str]:
        metadata = {META_TOKEN: self.token, **extra}
        if self.expires_at is not None:
            metadata[META_EXPIRES] = repr(float(self.expires_at))
        return metadata

    async def write(self, chunk: bytes) -> None:
        if self._done:
            raise ValueError("write to a finished upload")
        self.hasher.update(chunk)
        self._buffer += chunk
        self.size += len(chunk)
        while len(self._buffer) >= (part_size := self._next_part_size()):
            part = bytes(self._buffer[:part_size])
            del self._buffer[:part_size]
            await self._upload_part(part)

    def _next_part_size(self) -> int:
        """S3 allows 10,000 parts: growing the part size every 1,000 parts raises the
        largest upload from 78 GiB to 430 GiB (8 MiB parts); only huge uploads buffer more."""
        return self.store.part_size_bytes * (1 + len(self._parts) // PARTS_PER_SIZE_STEP)

    async def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            response = await self.store._request(
                "create_multipart_upload",
                Key=self.key,
                ContentType=self.content_type,
                Metadata=self._metadata(),
            )
            self._upload_id = response["UploadId"]
            self.store._live_uploads.add(response["UploadId"])
        number = len(self._parts) + 1
        response = await self.store._request(
            "upload_part", Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    async def commit(
        self, expected_sha256: str | None = None, *, require: Requirement | None = None
    ) -> tuple[ArtifactInfo, bool]:
        if self._done:
            raise ValueError("commit of a finished upload")
        try:
            result = await self._commit(expected_sha256, require)
        except BaseException:
            await self.abort()
            raise
        await self._finish()
        return result

    async def _commit(
        self, expected_sha256: str | None, require: Requirement | None
    ) -> tuple[ArtifactInfo, bool]:
        sha256 = self.hasher.hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != sha256:
            raise DigestMismatchError(f"expected sha256 {expected_sha256}, received {sha256}")
        store = self.store
        await store._check_no_file_parent(self.path)
        created_at = time.time()
        if self._upload_id is not None:
            if self._buffer or not self._parts:
                await self._upload_part(bytes(self._buffer))
                self._buffer.clear()
            # Written before the upload completes, so the digest is there once it is visible.
            record = {"path": self.path, "sha256": sha256, "created_at": created_at}
            await store._put_json(store._digest_key(self.token), record)
        for _ in range(COMMIT_ATTEMPTS):
            _, current, condition = await store._current_for_write(self.path, require)
            try:
                s3_etag = (await self._publish(sha256, created_at, condition)).strip('"')
            except ClientError as exc:
                if _is_precondition_failed(exc) or _is_missing(exc):
                    continue  # another writer got in between: judge its version instead
                raise
            info = ArtifactInfo(
                path=self.path,
                size=self.size,
                content_type=self.content_type,
                modified_at=created_at,
                created_at=created_at,
                sha256=sha256,
                expires_at=self.expires_at,
                last_accessed=None,
                version=f"{s3_etag}:{self.token}",
            )
            return info, current is not None
        raise ConflictError(f"{self.path} kept changing during the upload; try again")

    async def _publish(self, sha256: str, created_at: float, condition: dict[str, str]) -> str:
        """The one request that makes the version visible; returns its S3 ETag."""
        if self._upload_id is None:
            response = await self.store._request(
                "put_object",
                Key=self.key,
                Body=bytes(self._buffer),
                ContentType=self.content_type,
                Metadata=self._metadata(**{META_SHA256: sha256, META_CREATED: repr(created_at)}),
                **condition,
            )
        else:
            response = await self.store._request(
                "complete_multipart_upload",
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
                **condition,
            )
            self.store._live_uploads.discard(self._upload_id)
            self._upload_id = None
        etag: str = response["ETag"]
        return etag

    async def abort(self) -> None:
        if self._done:
            return
        upload_id = self._upload_id
        await self._finish()
        if upload_id is not None:
            self.store._live_uploads.discard(upload_id)
            # Best effort: if the store is down, remove_stale_uploads finishes the job later.
            with contextlib.suppress(StoreUnavailableError, ClientError):
                await self.store._request(
                    "abort_multipart_upload", Key=self.key, UploadId=upload_id
                )

    async def _finish(self) -> None:
        self._done = True
        self._buffer = bytearray()
        self._upload_id = None


def _preload_botocore(session: AioSession, client_args: dict[str, Any]) -> None:
    """Load botocore's config files and S3 models into `session` (blocking file reads) by
    building a throwaway synchronous client that shares the session's model loader."""
    session.get_scoped_config()
    loader_session = botocore.session.Session()
    loader_session.register_component("data_loader", session.get_component("data_loader"))
    loader_session.create_client(
        "s3", aws_access_key_id="preload", aws_secret_access_key="preload", **client_args
    )


def _normalise_prefix(prefix: str) -> str:
    """'' or 'a/b/': a key prefix that ends with '/' and holds only safe segments."""
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    if parse_artifact_path(quote(prefix, safe="/")) != prefix:
        raise InvalidPathError(f"invalid S3 key prefix {prefix!r}")
    return prefix + "/"


def _status(exc: ClientError) -> int:
    status: int = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status


def _code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code


def _is_missing(exc: ClientError) -> bool:
    return _status(exc) == 404 or _code(exc) in ("NoSuchKey", "NotFound", "404")


def _is_precondition_failed(exc: ClientError) -> bool:
    # 409 ConditionalRequestConflict: AWS's answer to two conditional writes racing.
    return _status(exc) in (409, 412) or _code(exc) in (
        "PreconditionFailed",
        "ConditionalRequestConflict",
    )


def _valid_sha256(value: object) -> str | None:
    return value if isinstance(value, str) and _SHA256_HEX.fullmatch(value) else None


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _merge_times(into: dict[str, float], more: dict[str, Any]) -> None:
    for path, at in more.items():
        if isinstance(path, str) and isinstance(at, int | float):
            into[path] = max(float(at), into.get(path, 0.0))


_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: OrderedDict[_K, _V], key: _K, value: _V, kept: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > kept:
        cache.popitem(last=False)
