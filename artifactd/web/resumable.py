"""What every resumable-upload protocol does with an upload resource, written once for tus
(web/tus.py) and the IETF draft (web/ietf_uploads.py): find the request's token's own
resource, check the token's prefix, append one request's body under the resource's lock,
and commit the bytes through a PUT's verified atomic commit once the last one is in.

Every call on the resource store goes through `resources(request)`, so the store's shape
(where the bytes live, sync or async) is this module's business only.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from artifactd.errors import (
    ConflictError,
    NotFoundError,
    StorageFullError,
    StoreUnavailableError,
    UploadTooLargeError,
)
from artifactd.resumable.resources import UploadResource, UploadResources
from artifactd.store.base import ArtifactInfo, Requirement
from artifactd.store.filesystem.store import FilesystemStore
from artifactd.web.keys import SETTINGS, STORE
from artifactd.web.security import TOKEN_INFO
from artifactd.web.uploads import body_chunks, expires_at, store_stream

_COPY_SIZE = 1 << 20


def resources(request: web.Request) -> UploadResources | None:
    """The store's upload resources; None where the backend keeps none (then 501)."""
    store = request.config_dict[STORE]
    if isinstance(store, FilesystemStore):
        return UploadResources(store.state_dir)
    return None


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
    """A new resource owned by the request's token."""
    return await asyncio.to_thread(
        store.create,
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
    )


def _load_owned(
    request: web.Request, store: UploadResources, upload_id: str, protocol: str
) -> UploadResource:
    resource = store.load(upload_id)
    if resource.owner != owner(request) or resource.protocol != protocol:
        raise NotFoundError("no such upload")
    return resource


async def owned(request: web.Request, store: UploadResources, protocol: str) -> UploadResource:
    """The resource the URL names, if it belongs to the request's token and was created
    with `protocol` (else 404, as if it did not exist: its id stays a secret to other
    tokens, and the two protocols' rules for appending and completing are not mixed)."""
    return await asyncio.to_thread(
        _load_owned, request, store, request.match_info["upload_id"], protocol
    )


async def remove(store: UploadResources, resource: UploadResource) -> None:
    await asyncio.to_thread(store.remove, resource.id)


@asynccontextmanager
async def locked(store: UploadResources, resource: UploadResource) -> AsyncIterator[UploadResource]:
    """The resource, read again under its exclusive lock: one request appends at a time,
    across the processes of --workers too (flock), and another request may just have moved
    it. 409 while another request holds the lock."""
    lock = await asyncio.to_thread(store.lock, resource.id)
    if lock is None:
        raise ConflictError("another request is appending to this upload")
    try:
        yield await asyncio.to_thread(store.load, resource.id)
    finally:
        await asyncio.to_thread(os.close, lock)


async def receive(
    request: web.Request,
    store: UploadResources,
    resource: UploadResource,
    *,
    piece_sha256: bytes | None = None,
) -> bool:
    """Append the request's body at the resource's offset (the caller holds `locked`).

    The bytes go no further than the resource's length (or --max-upload-size while it is
    unknown: 413); a full disk is a 507. When the body ends early (a dropped connection),
    the bytes received are kept for the client to resume from, unless the piece declared
    its SHA-256 (`piece_sha256`): such a piece is kept only whole and matching. Returns
    whether it matched (always True without a declared digest); the state is durable
    (fsynced) whatever happens.
    """
    settings = request.config_dict[SETTINGS]
    limit = settings.max_upload_size if resource.length is None else resource.length
    start = resource.offset
    piece = hashlib.sha256()
    try:
        async for chunk in body_chunks(request, settings):
            if resource.offset + len(chunk) > limit:
                raise UploadTooLargeError(f"the upload is over {limit} bytes")
            piece.update(chunk)
            try:
                await asyncio.to_thread(store.append, resource, chunk)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise StorageFullError("no space left for the upload") from exc
                raise
    except BaseException:
        if piece_sha256 is not None:
            await asyncio.to_thread(store.truncate, resource, start)
        await asyncio.to_thread(store.sync, resource)
        raise
    matched = piece_sha256 is None or piece.digest() == piece_sha256
    if not matched:
        await asyncio.to_thread(store.truncate, resource, start)
    await asyncio.to_thread(store.sync, resource)
    return matched


def is_complete(resource: UploadResource) -> bool:
    return resource.length is not None and resource.offset == resource.length


async def complete(
    request: web.Request,
    store: UploadResources,
    resource: UploadResource,
    requirement: Requirement,
) -> tuple[ArtifactInfo, bool]:
    """The last byte is in: the bytes go through a PUT's verified atomic commit (digest,
    `requirement`'s preconditions and --immutable, policies, events, metrics), then the
    resource is removed, also when the commit refuses them (a digest mismatch, --immutable,
    a precondition: the client starts again). A full disk or an unavailable store keeps
    it: the client may try the commit again. Returns the version and whether it replaced
    another, as `store_stream` does."""
    settings = request.config_dict[SETTINGS]
    try:
        committed = await store_stream(
            request,
            resource.path,
            _file_chunks(store, resource),
            content_type=resource.content_type,
            expires_at=expires_at(settings, resource.path, resource.ttl),
            expected_sha256=resource.sha256,
            requirement=requirement,
        )
    except (StorageFullError, StoreUnavailableError):
        raise
    except BaseException:
        await remove(store, resource)
        raise
    await remove(store, resource)
    return committed


async def _file_chunks(store: UploadResources, resource: UploadResource) -> AsyncIterator[bytes]:
    file = await asyncio.to_thread(open, store.data_path(resource.id), "rb")
    try:
        while chunk := await asyncio.to_thread(file.read, _COPY_SIZE):
            yield chunk
    finally:
        file.close()
