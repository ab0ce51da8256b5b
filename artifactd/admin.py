"""What the management commands do, as library functions over a store (no click here)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from artifactd.errors import InvalidPathError
from artifactd.paths import is_internal, parse_artifact_path
from artifactd.store.base import ArtifactInfo, Store, Usage, Verification
from artifactd.store.filesystem import FilesystemStore

IMPORT_CHUNK_BYTES = 1024 * 1024


def checked_path(raw: str) -> str:
    """An artifact path typed by a person: same rules as in URLs, but taken literally
    (a '%' is a '%', not the start of an escape)."""
    path = parse_artifact_path(quote(raw, safe="/"))
    if not path or is_internal(path):
        raise InvalidPathError(f"{raw!r} is not a valid artifact path")
    return path


def init_root(root: Path) -> Path:
    """Create the storage root (or check an existing one) and its internal state."""
    store = FilesystemStore(root)
    try:
        return store.root
    finally:
        asyncio.run(store.close())


async def import_file(
    store: Store,
    local_file: Path,
    path: str,
    *,
    ttl_seconds: float | None,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[ArtifactInfo, bool]:
    """Copy a local file into the store as a new version of `path`, atomically."""
    expires_at = None if ttl_seconds is None else time.time() + ttl_seconds
    upload = await store.begin_upload(path, expires_at=expires_at)
    try:
        fd = await asyncio.to_thread(os.open, local_file, os.O_RDONLY)
        try:
            while chunk := await asyncio.to_thread(os.read, fd, IMPORT_CHUNK_BYTES):
                await upload.write(chunk)
                progress(len(chunk))
        finally:
            os.close(fd)
        return await upload.commit()
    except BaseException:
        await upload.abort()
        raise


async def iter_listed(store: Store, prefix: str) -> AsyncIterator[ArtifactInfo]:
    """The artifacts under `prefix`, in path order, streamed from the store's index (brought
    up to date with the tree first: files placed by hand are listed too)."""
    await store.reconcile()
    async for info in store.iter_artifacts(prefix):
        yield info


async def list_artifacts(store: Store, prefix: str) -> list[ArtifactInfo]:
    return [info async for info in iter_listed(store, prefix)]


async def disk_usage(store: Store) -> Usage:
    """Live artifacts and their bytes: the store's running totals, after reconciling."""
    await store.reconcile()
    return await store.usage()


class Progress(AbstractContextManager[Any], Protocol):
    def update(self, n_steps: int) -> None: ...


async def verify_store(store: Store, progress: Callable[[int], Progress]) -> list[Verification]:
    """Re-hash every artifact; returns those whose bytes no longer match their digest."""
    await store.reconcile()
    usage = await store.usage()
    failures = []
    with progress(usage.artifacts + usage.expired) as bar:
        async for result in store.verify():
            if not result.ok:
                failures.append(result)
            bar.update(1)
    return failures
