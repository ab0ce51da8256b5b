"""Uploading a new version: one PutObject for small uploads, a multipart upload for larger
ones, published by one conditional request (publish.py) so nothing is visible before it."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from dataclasses import replace
from typing import Any

from artifactd.errors import ConflictError, StoreUnavailableError
from artifactd.store.base import ArtifactInfo, Requirement
from artifactd.store.s3.bucket import Bucket, ClientError, is_missing, is_precondition_failed
from artifactd.store.s3.objects import (
    META_CREATED,
    META_EXPIRES,
    META_SHA256,
    META_TOKEN,
    Layout,
    ObjectMeta,
    Seen,
)
from artifactd.store.s3.publish import COMMIT_ATTEMPTS, ConditionalWrites, Describe, WriteTarget
from artifactd.store.uploads import UploadBase, check_digest

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_PART_BYTES = 8 * 1024 * 1024
PARTS_PER_SIZE_STEP = 1000
MAX_COPY_BYTES = 5 * 1024**3  # the largest object one CopyObject may copy


def next_part_size(part_size_bytes: int, parts_done: int) -> int:
    """S3 allows 10,000 parts: growing the part size every 1,000 parts raises the largest
    upload from 78 GiB to 430 GiB (8 MiB parts); only huge uploads buffer more."""
    return part_size_bytes * (1 + parts_done // PARTS_PER_SIZE_STEP)


class S3Upload(UploadBase):
    """Buffers one part at a time: a single PutObject for small uploads, a multipart upload
    for larger ones. Nothing is visible until the last request of `commit`."""

    def __init__(
        self,
        *,
        writes: ConditionalWrites,
        describe: Describe,
        live_uploads: set[str],
        part_size_bytes: int,
        path: str,
        content_type: str,
        expires_at: float | None,
    ) -> None:
        self._writes = writes
        self._bucket: Bucket = writes.bucket
        self._layout: Layout = writes.objects.layout
        self._describe = describe
        # Multipart uploads in progress on this node, which the clean-up leaves alone.
        self._live_uploads = live_uploads
        self._part_size_bytes = part_size_bytes
        self.path = path
        self.key = self._layout.key(path)
        self.content_type = content_type
        self.expires_at = expires_at
        self.token = secrets.token_hex(16)
        self.hasher = hashlib.sha256()
        self.size = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def _metadata(self, **extra: str) -> dict[str, str]:
        metadata = {META_TOKEN: self.token, **extra}
        if self.expires_at is not None:
            metadata[META_EXPIRES] = repr(float(self.expires_at))
        return metadata

    async def write(self, chunk: bytes) -> None:
        self._check_writable()
        self.hasher.update(chunk)
        self._buffer += chunk
        self.size += len(chunk)
        while len(self._buffer) >= (part_size := self._next_part_size()):
            part = bytes(self._buffer[:part_size])
            del self._buffer[:part_size]
            await self._upload_part(part)

    def _next_part_size(self) -> int:
        return next_part_size(self._part_size_bytes, len(self._parts))

    async def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            response = await self._bucket.request(
                "create_multipart_upload",
                Key=self.key,
                ContentType=self.content_type,
                Metadata=self._metadata(),
            )
            self._upload_id = response["UploadId"]
            self._live_uploads.add(response["UploadId"])
        number = len(self._parts) + 1
        response = await self._bucket.request(
            "upload_part", Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    async def _publish(
        self, expected_sha256: str | None, require: Requirement | None
    ) -> tuple[ArtifactInfo, bool]:
        sha256 = self.hasher.hexdigest()
        check_digest(expected_sha256, sha256)
        created_at = time.time()
        record_written = False
        seen = self._writes.objects.seen(self.key)  # a guess for the first attempt only
        creation_refused = leftovers_removed = False
        for _ in range(COMMIT_ATTEMPTS):
            meta, current, condition = await self._target(require, sha256, seen)
            seen = None
            if meta is None and creation_refused:
                # The store refused to create the key, yet still shows nothing there nor
                # under it: a directory it keeps after its last key went (SeaweedFS).
                if leftovers_removed:
                    raise ConflictError(f"the object store keeps a directory at {self.path}")
                await self._writes.remove_empty_directories(self.path)
                leftovers_removed = True
            if meta is not None and current is not None and self._holds_these_bytes(meta, sha256):
                kept = await self._keep_current(meta, current, sha256)
                if kept is None:
                    continue  # replaced meanwhile: judge the new version instead
                self.kept_current = True
                return kept, True
            if self._upload_id is not None and not record_written:
                if self._buffer or not self._parts:
                    await self._upload_part(bytes(self._buffer))
                    self._buffer.clear()
                # Written before the upload completes, so the digest is there once visible.
                record = {"path": self.path, "sha256": sha256, "created_at": created_at}
                await self._bucket.put_json(self._layout.digest_key(self.token), record)
                record_written = True
            try:
                s3_etag = (await self._send(sha256, created_at, condition)).strip('"')
            except ClientError as exc:
                if is_precondition_failed(exc) or is_missing(exc):
                    creation_refused = meta is None and is_precondition_failed(exc)
                    continue  # another writer got in between: judge its version instead
                raise
            self._writes.directories.committed(self.path)
            self._writes.objects.forget_seen(self.key)
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

    async def _target(
        self, require: Requirement | None, sha256: str, seen: Seen | None
    ) -> WriteTarget:
        """The version this attempt replaces, judged, and the condition of its write.

        What a HEAD of this node saw a moment ago (`seen`: the handler's look before the
        body, a download) stands in for the commit's own HEAD when it leads to a write,
        whose condition checks it (`guess_for_write`). The checks of "is a directory, or
        below a file" are made here, once per upload (none in begin_upload, as base.py
        allows), one round trip before the write: the narrowest window S3 allows, as no
        request checks one key and writes another."""
        if seen is not None:
            guess = await self._writes.guess_for_write(self.path, seen, require, self._describe)
            if guess is not None and not self._keeps(guess, sha256):
                return guess
        return await self._writes.current_for_write(
            self.path, require, self._describe, creating=True
        )

    def _keeps(self, target: WriteTarget, sha256: str) -> bool:
        """Whether the commit keeps the version `target` found, writing nothing new."""
        meta, current, _ = target
        return meta is not None and current is not None and self._holds_these_bytes(meta, sha256)

    def _holds_these_bytes(self, meta: ObjectMeta, sha256: str) -> bool:
        """Whether the current object already is this upload: same digest and content type,
        and small enough for one CopyObject (S3 copies at most 5 GiB in one request)."""
        return (
            meta.sha256 == sha256
            and meta.content_type == self.content_type
            and meta.size <= MAX_COPY_BYTES
        )

    async def _keep_current(
        self, meta: ObjectMeta, current: ArtifactInfo, sha256: str
    ) -> ArtifactInfo | None:
        """Keep the object that already holds these bytes, with this upload's expiry: build
        caches re-upload what they produced, and the bytes need not travel again. When the
        expiry changes, a CopyObject of the object onto itself (MetadataDirective REPLACE,
        done inside the store, conditional on its ETag) rewrites only its metadata, under
        this upload's token, so an eviction judged on the old version spares it. None when
        the object changed in between."""
        if meta.expires_at == self.expires_at:
            return current
        created_at = meta.created_at if meta.created_at is not None else current.created_at
        metadata = self._metadata(**{META_SHA256: sha256, META_CREATED: repr(created_at)})
        try:
            response = await self._bucket.request(
                "copy_object",
                Key=meta.key,
                CopySource={"Bucket": self._bucket.name, "Key": meta.key},
                CopySourceIfMatch=f'"{meta.etag}"',
                MetadataDirective="REPLACE",
                ContentType=self.content_type,
                Metadata=metadata,
            )
        except ClientError as exc:
            if is_precondition_failed(exc) or is_missing(exc):
                return None
            raise
        s3_etag = response["CopyObjectResult"]["ETag"].strip('"')
        return replace(current, expires_at=self.expires_at, version=f"{s3_etag}:{self.token}")

    async def _send(self, sha256: str, created_at: float, condition: dict[str, str]) -> str:
        """The one request that makes the version visible; returns its S3 ETag."""
        if self._upload_id is None:
            response = await self._bucket.request(
                "put_object",
                Key=self.key,
                Body=bytes(self._buffer),
                ContentType=self.content_type,
                Metadata=self._metadata(**{META_SHA256: sha256, META_CREATED: repr(created_at)}),
                **condition,
            )
        else:
            response = await self._bucket.request(
                "complete_multipart_upload",
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
                **condition,
            )
            self._live_uploads.discard(self._upload_id)
            self._upload_id = None
        etag: str = response["ETag"]
        return etag

    async def _release(self, *, committed: bool) -> None:
        upload_id, self._upload_id = self._upload_id, None
        self._buffer = bytearray()
        if upload_id is not None:
            self._live_uploads.discard(upload_id)
            # Best effort: if the store is down, the clean-up pass finishes the job later.
            with contextlib.suppress(StoreUnavailableError, ClientError):
                await self._bucket.request(
                    "abort_multipart_upload", Key=self.key, UploadId=upload_id
                )
