"""What every resumable-upload protocol does with an upload resource, written once for tus
(web/tus.py) and the IETF draft (web/ietf_uploads.py): find the request's token's own
resource, check the token's prefix, append one request's body under the resource's lock,
and commit the bytes through a PUT's verified atomic commit once the last one is in.

The resource store is the backend's own (artifactd/resumable, one per store from
`resources_for`): on the filesystem, in memory and on S3 alike.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from artifactd.errors import (
    NotFoundError,
    StorageFullError,
    StoreUnavailableError,
    UploadTooLargeError,
)
from artifactd.resumable.base import Appending, UploadResource, UploadResources
from artifactd.resumable.factory import resources_for
from artifactd.store.base import ArtifactInfo, Requirement
from artifactd.web.keys import SETTINGS, STORE
from artifactd.web.security import TOKEN_INFO
from artifactd.web.uploads import body_chunks, expires_at, store_stream

# While a body streams in, its bytes and the offset counting them are made durable every
# this many bytes, so a crash (kill -9) mid-request loses at most this much of it.
SYNC_EVERY = 8 << 20


def resources(request: web.Request) -> UploadResources:
    """The upload resources beside the app's store (every backend keeps them)."""
    return resources_for(request.config_dict[STORE])


def owner(request: web.Request) -> str | None:
    """The name of the token a resource created by this request belongs to."""
    info = request.get(TOKEN_INFO)
    return None if info is None else info.name


def outside_prefix(request: web.Request, path: str) -> str | None:
    """Why the request's token may not write `path` (its prefix), or None when it may.
    The auth middleware cannot see a resource's target path, so the protocols ask here on
    creation and on every append."""
    info = request.get(TOKEN_INFO)
    if info is not None and info.prefix is not None and not info.covers(path):
        return f"token {info.name!r} is limited to {info.prefix}/"
    return None


async def create(
    request: web.Request,
    store: UploadResources,
    path: str,
    *,
    length: int | None,
    expires_at: float,
    ttl: str | None = None,
    content_type: str | None = None,
    sha256: str | None = None,
    metadata: str | None = None,
    protocol: str = "tus",
    preconditions: dict[str, str] | None = None,
) -> UploadResource:
    """A new resource owned by the request's token, within its cap on open uploads
    (TooManyUploadsError: 429)."""
    return await store.create(
        path,
        owner=owner(request),
        length=length,
        expires_at=expires_at,
        ttl=ttl,
        content_type=content_type,
        sha256=sha256,
        metadata=metadata,
        protocol=protocol,
        preconditions=preconditions,
        open_cap=request.config_dict[SETTINGS].max_open_uploads,
    )


def _check_owned(request: web.Request, resource: UploadResource, protocol: str) -> UploadResource:
    if resource.owner != owner(request) or resource.protocol != protocol:
        raise NotFoundError("no such upload")
    return resource


async def owned(request: web.Request, store: UploadResources, protocol: str) -> UploadResource:
    """The resource the URL names, if it belongs to the request's token and was created
    with `protocol` (else 404, as if it did not exist: its id stays a secret to other
    tokens, and the two protocols' rules for appending and completing are not mixed)."""
    resource = await store.load(request.match_info["upload_id"])
    return _check_owned(request, resource, protocol)


async def remove(store: UploadResources, resource: UploadResource) -> None:
    await store.remove(resource.id)


@asynccontextmanager
async def locked(
    request: web.Request, store: UploadResources, resource: UploadResource
) -> AsyncIterator[Appending]:
    """The resource, held for this request's appends and read again under the hold: one
    request appends at a time, across the processes of --workers and the nodes sharing a
    bucket too, and another request may just have moved it. 409 while another request
    holds it."""
    async with store.appending(resource.id) as appending:
        _check_owned(request, appending.resource, resource.protocol)
        yield appending


async def receive(
    request: web.Request, appending: Appending, *, piece_sha256: bytes | None = None
) -> bool:
    """Append the request's body at the resource's offset (the caller holds `locked`).

    The bytes go no further than the resource's length (or --max-upload-size while it is
    unknown: 413); a full disk is a 507. When the body ends early (a dropped connection),
    the bytes received are kept for the client to resume from, unless the piece declared
    its SHA-256 (`piece_sha256`): such a piece is kept only whole and matching. Returns
    whether it matched (always True without a declared digest); the state is checkpointed
    (durable) whatever happens, unless the store itself fails, and every SYNC_EVERY bytes on
    the way.
    """
    settings = request.config_dict[SETTINGS]
    resource = appending.resource
    limit = settings.max_upload_size if resource.length is None else resource.length
    synced = resource.offset
    piece = hashlib.sha256()
    try:
        async for chunk in body_chunks(request, settings):
            if resource.offset + len(chunk) > limit:
                raise UploadTooLargeError(f"the upload is over {limit} bytes")
            piece.update(chunk)
            await appending.append(chunk)
            if piece_sha256 is None and resource.offset - synced >= SYNC_EVERY:
                await appending.checkpoint()
                synced = resource.offset
    except BaseException:
        # (Nothing to keep if a DELETE removed the upload meanwhile: the checkpoint does
        # not bring a removed upload back, and the original error is the one to answer.)
        with contextlib.suppress(NotFoundError):
            if piece_sha256 is not None:
                await appending.rollback()
            await appending.checkpoint()
        raise
    matched = piece_sha256 is None or piece.digest() == piece_sha256
    if not matched:
        await appending.rollback()
    await appending.checkpoint()
    return matched


def is_complete(resource: UploadResource) -> bool:
    return resource.length is not None and resource.offset == resource.length


async def complete(
    request: web.Request,
    store: UploadResources,
    appending: Appending,
    requirement: Requirement,
    *,
    keep_record: bool = False,
) -> tuple[ArtifactInfo, bool]:
    """The last byte is in: the bytes go through a PUT's verified atomic commit (digest,
    `requirement`'s preconditions and --immutable, policies, events, metrics), then the
    resource is removed (or, with `keep_record`, kept without its bytes as a completed
    upload), also when the commit refuses them (a digest mismatch, --immutable, a
    precondition: the client starts again). A full disk or an unavailable store keeps it
    as it was: the client may try the commit again; one cancelled meanwhile (DELETE) stays
    gone. Returns the version and whether it replaced another, as `store_stream` does."""
    settings = request.config_dict[SETTINGS]
    resource = appending.resource
    try:
        committed = await store_stream(
            request,
            resource.path,
            appending.chunks(),
            content_type=resource.content_type,
            expires_at=expires_at(settings, resource.path, resource.ttl),
            expected_sha256=resource.sha256,
            requirement=requirement,
        )
    except (StorageFullError, StoreUnavailableError, NotFoundError):
        raise  # kept for a retry, or already gone (a DELETE meanwhile)
    except BaseException:
        await _finish(store, appending, keep_record)
        raise
    await _finish(store, appending, keep_record)
    return committed


async def _finish(store: UploadResources, appending: Appending, keep_record: bool) -> None:
    if keep_record:
        await appending.mark_complete()
    else:
        await remove(store, appending.resource)
