"""Where artifactd keeps things in the bucket, and what an object's metadata says.

Layout under an optional key prefix P (see docs/storage-s3.md):
  P<path>                             the artifact's bytes; user metadata carries the upload
                                      token, created/expires times and (single-request
                                      uploads) the SHA-256
  P.artifactd/digests/<token>.json    the SHA-256 of a multipart upload
  P.artifactd/access/*.json           batched last-access times (accesslog.py)
  P.artifactd/maintenance.lease       the maintenance lease (lease.py)
  P.artifactd/uploads/<id>.*          upload resources (artifactd/resumable/s3.py)
Objects put in the bucket by other tools are served too (ETag from the S3 ETag, no digest).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from artifactd.errors import InvalidPathError, NotFoundError
from artifactd.http.mediatypes import guess_content_type
from artifactd.paths import INTERNAL_DIR, is_internal, parse_artifact_path
from artifactd.store.base import ArtifactInfo
from artifactd.store.s3.bucket import Bucket, ClientError, is_missing

META_TOKEN = "artifactd-token"
META_SHA256 = "artifactd-sha256"
META_CREATED = "artifactd-created"
META_EXPIRES = "artifactd-expires"
HEAD_CONCURRENCY = 16
SEEN_TRUSTED_SECONDS = 2.0
SEEN_KEPT = 1024
LISTED_METADATA_KEPT = 100_000
DIGESTS_KEPT = 100_000
_GENERIC_TYPES = {"", "binary/octet-stream", "application/octet-stream"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ObjectMeta:
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

    @property
    def modified_at(self) -> float:
        return self.created_at if self.created_at is not None else self.last_modified

    def is_expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (
            time.time() if now is None else now
        )

    def info(self, path: str, last_accessed: float | None) -> ArtifactInfo:
        content_type = self.content_type or ""
        if not self.token and content_type in _GENERIC_TYPES:
            content_type = guess_content_type(path)  # placed by another tool, untyped
        return ArtifactInfo(
            path=path,
            size=self.size,
            content_type=content_type or guess_content_type(path),
            modified_at=self.modified_at,
            created_at=self.modified_at,
            sha256=self.sha256,
            expires_at=self.expires_at,
            last_accessed=last_accessed,
            version=self.version,
        )


@dataclass(frozen=True, slots=True)
class Seen:
    """What a HEAD of one key found a moment ago (`meta` None: nothing was there)."""

    meta: ObjectMeta | None


class Layout:
    """Maps artifact paths to keys and back, and names the internal state objects."""

    def __init__(self, prefix: str) -> None:
        self.prefix = normalise_prefix(prefix)
        self.internal_prefix = f"{self.prefix}{INTERNAL_DIR}/"
        self.digests_prefix = f"{self.internal_prefix}digests/"
        self.access_prefix = f"{self.internal_prefix}access/"
        self.merged_access_key = f"{self.access_prefix}merged.json"
        self.lease_key = f"{self.internal_prefix}maintenance.lease"
        # Upload resources (artifactd/resumable/s3.py): their bytes, state, tails, locks.
        self.uploads_prefix = f"{self.internal_prefix}uploads/"

    def key(self, path: str) -> str:
        if is_internal(path):
            raise NotFoundError(path)  # internal state is never reachable as an artifact
        return self.prefix + path

    def path_of(self, key: str) -> str | None:
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

    def digest_key(self, token: str) -> str:
        return f"{self.digests_prefix}{token}.json"


class Objects:
    """Reads artifact objects' metadata: HEADs, digest records, listings.

    Metadata is never cached for a single path (each call is one HEAD, so a node sees
    another node's writes at once); listings reuse what HEAD said per (key, ETag,
    Last-Modified, size), and digest records, being immutable, are cached for good. What
    the last HEAD of a key found is kept for SEEN_TRUSTED_SECONDS, for one use only: the
    guess a commit may make instead of its own HEAD (`seen`, publish.py says why that is
    safe).
    """

    def __init__(self, bucket: Bucket, layout: Layout) -> None:
        self.bucket = bucket
        self.layout = layout
        self._listed: OrderedDict[tuple[str, str, int, int], ObjectMeta] = OrderedDict()
        self._digests: OrderedDict[str, tuple[str, float] | None] = OrderedDict()
        self._seen: OrderedDict[str, tuple[float, ObjectMeta | None]] = OrderedDict()
        self.clock: Callable[[], float] = time.monotonic

    async def head(self, key: str) -> ObjectMeta | None:
        """The current object at `key` (expired or not), or None."""
        try:
            head = await self.bucket.request("head_object", Key=key)
        except ClientError as exc:
            if is_missing(exc):
                remember(self._seen, key, (self.clock(), None), SEEN_KEPT)
                return None
            raise
        meta = await self._meta_from_head(key, head)
        remember(self._seen, key, (self.clock(), meta), SEEN_KEPT)
        return meta

    def seen(self, key: str) -> Seen | None:
        """What a HEAD of `key` found less than SEEN_TRUSTED_SECONDS ago, if one did."""
        found = self._seen.get(key)
        if found is None or found[0] <= self.clock() - SEEN_TRUSTED_SECONDS:
            return None
        return Seen(found[1])

    def forget_seen(self, key: str) -> None:
        """This node just changed the object at `key`: what a HEAD found is out of date."""
        self._seen.pop(key, None)

    async def _meta_from_head(self, key: str, head: dict[str, Any]) -> ObjectMeta:
        metadata: dict[str, str] = head.get("Metadata") or {}
        token = metadata.get(META_TOKEN)
        sha256 = valid_sha256(metadata.get(META_SHA256))
        created_at = float_or_none(metadata.get(META_CREATED))
        if token and sha256 is None:  # a multipart upload: the digest is in a record
            record = await self._digest_record(token)
            if record is not None:
                sha256, created_at = record
        version_id = head.get("VersionId")
        return ObjectMeta(
            key=key,
            etag=head["ETag"].strip('"'),
            size=head["ContentLength"],
            last_modified=head["LastModified"].timestamp(),
            content_type=head.get("ContentType"),
            version_id=version_id if version_id and version_id != "null" else None,
            token=token,
            sha256=sha256,
            created_at=created_at,
            expires_at=float_or_none(metadata.get(META_EXPIRES)),
        )

    async def _digest_record(self, token: str) -> tuple[str, float] | None:
        """(sha256, created_at) of a multipart upload; immutable, so cached for good."""
        if token in self._digests:
            return self._digests[token]
        found = await self.bucket.get_json(self.layout.digest_key(token))
        record = None
        if found is not None and isinstance(found[0], dict):
            sha256 = valid_sha256(found[0].get("sha256"))
            created_at = float_or_none(str(found[0].get("created_at")))
            if sha256 is not None and created_at is not None:
                record = (sha256, created_at)
        remember(self._digests, token, record, DIGESTS_KEPT)
        return record

    async def describe_listed(self, contents: list[dict[str, Any]]) -> list[ObjectMeta | None]:
        """Metadata for listed objects: from the cache when this exact version was seen,
        else by HEAD (a few at a time). None for objects gone meanwhile."""
        slots = asyncio.Semaphore(HEAD_CONCURRENCY)

        async def describe(item: dict[str, Any]) -> ObjectMeta | None:
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
                meta = await self.head(item["Key"])
            if meta is not None:
                seen = (meta.key, meta.etag, int(meta.last_modified), meta.size)
                remember(self._listed, seen, meta, LISTED_METADATA_KEPT)
            return meta

        return list(await asyncio.gather(*(describe(item) for item in contents)))

    async def iterate(
        self, prefix: str = "", *, after: str | None = None
    ) -> AsyncIterator[tuple[str, ObjectMeta]]:
        """Every artifact object whose path starts with `prefix` (and sorts after `after`),
        expired ones included, in path order (S3 lists keys in UTF-8 byte order, which is
        code point order). The listing itself starts after `after`: a page of the API
        deep in a large bucket lists and describes only what follows its cursor."""
        start_after = None if after is None else self.layout.prefix + after
        pages = self.bucket.list_pages(self.layout.prefix + prefix, start_after=start_after)
        async for page in pages:
            listed = [
                (path, item)
                for item in page.get("Contents", [])
                if (path := self.layout.path_of(item["Key"])) is not None
                and path.startswith(prefix)
            ]
            metas = await self.describe_listed([item for _, item in listed])
            for (path, _), meta in zip(listed, metas, strict=True):
                if meta is not None:
                    yield path, meta

    async def is_dir(self, path: str) -> bool:
        """Whether any key lies under `path/` (S3 has no directories, only prefixes)."""
        if not path:
            return True
        page = await self.bucket.request(
            "list_objects_v2", Prefix=f"{self.layout.key(path)}/", MaxKeys=1
        )
        return bool(page.get("KeyCount") or page.get("Contents"))


def normalise_prefix(prefix: str) -> str:
    """'' or 'a/b/': a key prefix that ends with '/' and holds only safe segments."""
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    if parse_artifact_path(quote(prefix, safe="/")) != prefix:
        raise InvalidPathError(f"invalid S3 key prefix {prefix!r}")
    return prefix + "/"


def valid_sha256(value: object) -> str | None:
    return value if isinstance(value, str) and _SHA256_HEX.fullmatch(value) else None


def float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_K = TypeVar("_K")
_V = TypeVar("_V")


def remember(cache: OrderedDict[_K, _V], key: _K, value: _V, kept: int) -> None:
    """Put `key` in a bounded cache as its newest entry, dropping the oldest beyond `kept`."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > kept:
        cache.popitem(last=False)
