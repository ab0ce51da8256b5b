"""Conditional writes: how a commit or delete replaces exactly the version `require` judged.

The version now at the path is read (HEAD), judged by `require`, and the write that
replaces or removes it carries If-Match on its ETag (If-None-Match: * when there is none).
When another node got there first the write fails with 412 and the caller starts over
with a fresh HEAD, at most COMMIT_ATTEMPTS times (docs/storage-s3.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from artifactd.errors import ConflictError, IsDirectoryError
from artifactd.store.base import ArtifactInfo, Requirement
from artifactd.store.s3.bucket import ClientError, code, is_missing, is_precondition_failed
from artifactd.store.s3.objects import ObjectMeta, Objects

log = logging.getLogger("artifactd.store.s3")

COMMIT_ATTEMPTS = 8  # conditional commits/deletes retried this often under contention

# What `current_for_write` found: the object (expired or not), its info unless expired
# (after `require` accepted it), and the write condition that holds only while it stays.
WriteTarget = tuple[ObjectMeta | None, ArtifactInfo | None, dict[str, str]]
# Turns an object into the ArtifactInfo `require` judges.
Describe = Callable[[str, ObjectMeta], ArtifactInfo]


class ConditionalWrites:
    """The checks and conditional requests that commits (upload.py) and deletes share."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.bucket = objects.bucket
        self._conditional_delete = True

    async def check_no_file_parent(self, path: str) -> None:
        """ConflictError if an artifact sits where a parent directory of `path` would be."""
        layout = self.objects.layout
        segments = path.split("/")
        parents = ["/".join(segments[:i]) for i in range(1, len(segments))]
        found = await asyncio.gather(*(self.objects.head(layout.key(p)) for p in parents))
        if any(meta is not None for meta in found):
            raise ConflictError(f"a parent of {path} is a file")

    async def current_for_write(
        self, path: str, require: Requirement | None, describe: Describe
    ) -> WriteTarget:
        """The object now at `path`, its info unless expired (after `require` accepted it),
        and the write condition that holds only while it stays there."""
        meta = await self.objects.head(self.objects.layout.key(path))
        if meta is None and await self.objects.is_dir(path):
            raise IsDirectoryError(path)
        current = None if meta is None or meta.is_expired() else describe(path, meta)
        if require is not None:
            require(current)
        condition = {"IfMatch": f'"{meta.etag}"'} if meta else {"IfNoneMatch": "*"}
        return meta, current, condition

    async def delete_version(self, meta: ObjectMeta) -> bool:
        """Delete the object if it still is `meta`'s version; False if it changed.

        A store that refuses conditional deletes (NotImplemented) gets plain ones from then
        on: the HEAD just before is the only check left (docs/storage-s3.md)."""
        condition = {"IfMatch": f'"{meta.etag}"'} if self._conditional_delete else {}
        try:
            await self.bucket.request("delete_object", Key=meta.key, **condition)
        except ClientError as exc:
            if is_precondition_failed(exc) or is_missing(exc):
                return False
            if code(exc) != "NotImplemented" or not condition:
                raise
            log.warning("this S3 store refuses conditional deletes; deleting after a HEAD")
            self._conditional_delete = False
            await self.bucket.request("delete_object", Key=meta.key)
        return True
