"""Removing what dead writers and replaced versions left in the bucket: multipart uploads
never completed, and digest records of versions no longer current. Run by the node
holding the maintenance lease (lease.py)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from artifactd.store.s3.bucket import Bucket, ClientError
from artifactd.store.s3.objects import Layout

# Multipart uploads (and digest records) older than this are a dead writer's leftovers.
STALE_UPLOAD_AGE_SECONDS = 24 * 3600
# Digest records of replaced versions are kept this long for readers that just HEADed.
ORPHAN_DIGEST_AGE_SECONDS = 3600


async def abort_stale_multipart_uploads(
    bucket: Bucket, layout: Layout, max_age_seconds: float, live_uploads: set[str]
) -> int:
    """Abort the multipart uploads under the prefix started more than `max_age_seconds`
    ago, except those in `live_uploads` (in progress on this node) and those of upload
    resources (which live until their own expiry); returns how many."""
    cutoff = time.time() - max_age_seconds
    params: dict[str, Any] = {"Prefix": layout.prefix}
    stale: list[tuple[str, str]] = []
    while True:
        page = await bucket.request("list_multipart_uploads", **params)
        for upload in page.get("Uploads", []):
            if (
                upload["UploadId"] not in live_uploads
                and not upload["Key"].startswith(layout.uploads_prefix)
                and upload["Initiated"].timestamp() < cutoff
            ):
                stale.append((upload["Key"], upload["UploadId"]))
        if not page.get("IsTruncated"):
            break
        params["KeyMarker"] = page["NextKeyMarker"]
        params["UploadIdMarker"] = page["NextUploadIdMarker"]
    for key, upload_id in stale:
        with contextlib.suppress(ClientError):
            await bucket.request("abort_multipart_upload", Key=key, UploadId=upload_id)
    return len(stale)


async def remove_orphan_digests(
    bucket: Bucket, layout: Layout, live_tokens: set[str | None], min_age_seconds: float
) -> int:
    """Delete the digest records of uploads no current object carries, once older than
    `min_age_seconds`; returns how many."""
    cutoff = time.time() - min_age_seconds
    prefix = layout.digests_prefix
    orphans = []
    async for page in bucket.list_pages(prefix):
        for item in page.get("Contents", []):
            token = item["Key"][len(prefix) :].removesuffix(".json")
            if token not in live_tokens and item["LastModified"].timestamp() < cutoff:
                orphans.append(item["Key"])
    for key in orphans:
        await bucket.delete_quietly(key)
    return len(orphans)
