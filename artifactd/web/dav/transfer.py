"""COPY and MOVE through the store contract, so every backend has them: the source is read
from one pinned version and committed at the destination like an upload (verified against
the source's digest, and a content-address destination's name, atomic, with its content
type and expiry time), then, for MOVE, the
source is deleted if it still holds that version. A collection is copied file by file
(empty directories below it are not), and a moved one's directories removed once empty;
two paths change, so a failure midway can leave both.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web

from artifactd.documents import artifact_document
from artifactd.errors import ConflictError, PreconditionFailedError
from artifactd.settings import Settings
from artifactd.store.base import ArtifactInfo, ArtifactReader, Requirement
from artifactd.web.keys import EVENTS, SETTINGS, STORE
from artifactd.web.uploads import check_mutable, expected_digest, store_stream


def destination_requirement(settings: Settings, *, may_overwrite: bool) -> Requirement:
    """Overwrite: F refuses an existing destination (412, §10.6); --immutable refuses
    replacing one (409), as for PUT."""

    def require(current: ArtifactInfo | None) -> None:
        if current is None:
            return
        if not may_overwrite:
            raise PreconditionFailedError(f"{current.path} exists and Overwrite is F")
        check_mutable(settings, current.path)

    return require


async def _chunks(reader: ArtifactReader, chunk_size: int) -> AsyncIterator[bytes]:
    offset, size = 0, reader.info.size
    while offset < size:
        chunk = await reader.read(offset, min(chunk_size, size - offset))
        if not chunk:
            raise ConflictError(f"{reader.info.path} ended early while being copied")
        offset += len(chunk)
        yield chunk


async def copy_file(
    request: web.Request, source: str, destination: str, requirement: Requirement
) -> tuple[ArtifactInfo, bool]:
    """The source's current version committed at `destination`; returns the source's info
    and whether the destination held a version before."""
    settings = request.app[SETTINGS]
    async with await request.app[STORE].open(source) as reader:
        info = reader.info
        _, replaced = await store_stream(
            request,
            destination,
            _chunks(reader, settings.chunk_size),
            content_type=info.content_type,
            expires_at=copy_expires_at(settings, destination, info.expires_at),
            # A content address (`cas/<64 hex>`) takes only bytes hashing to its name.
            expected_sha256=expected_digest(destination, info.sha256),
            requirement=requirement,
        )
    return info, replaced


def copy_expires_at(settings: Settings, destination: str, expires_at: float | None) -> float | None:
    """A copy keeps its source's expiry time, but no later than the destination's policy's
    max_ttl allows from now."""
    cap = settings.ttl_for(destination, None)  # what "never" becomes there
    if cap is None:
        return expires_at
    latest = time.time() + cap
    return latest if expires_at is None else min(expires_at, latest)


async def move_file(
    request: web.Request, source: str, destination: str, requirement: Requirement
) -> bool:
    """copy_file, then the source deleted if it still holds the version copied."""
    copied, replaced = await copy_file(request, source, destination, requirement)

    def unchanged(current: ArtifactInfo | None) -> None:
        if current is None or current.version != copied.version:
            raise ConflictError(f"{source} changed during the MOVE; {destination} has a copy")

    removed = await request.app[STORE].delete(source, require=unchanged)
    request.app[EVENTS].publish("deleted", artifact_document(removed))
    return replaced


async def transfer_tree(
    request: web.Request,
    source: str,
    destination: str,
    requirement: Requirement,
    *,
    move: bool,
    members: bool = True,
) -> None:
    """A collection: the destination directory made (its parent must exist), then every
    file under the source copied or moved beneath it (none when not `members`: COPY with
    Depth 0)."""
    store = request.app[STORE]
    await store.make_dir(destination)
    if not members:
        return
    await store.reconcile(source)  # files placed there by hand move too
    found = [info.path async for info in store.iter_artifacts(f"{source}/" if source else "")]
    for path in found:
        target = destination + path[len(source) :]
        if move:
            await move_file(request, path, target, requirement)
        else:
            await copy_file(request, path, target, requirement)
    if move:
        await store.remove_dir(source)  # and its empty directories (a file arriving stays)


async def remove_tree(request: web.Request, path: str) -> None:
    """Every file under the directory `path` deleted (Overwrite: T over a collection)."""
    store = request.app[STORE]
    await store.reconcile(path)
    found = [info async for info in store.iter_artifacts(f"{path}/")]
    for info in found:
        removed = await store.delete(info.path)
        request.app[EVENTS].publish("deleted", artifact_document(removed))
    await store.remove_dir(path)
