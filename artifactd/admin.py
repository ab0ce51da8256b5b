"""What the management commands do, as library functions over a store (no click here)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from artifactd.errors import InvalidPathError
from artifactd.paths import is_internal, parse_artifact_path
from artifactd.store.base import ArtifactInfo, Store, Verification
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


async def list_artifacts(store: Store, prefix: str) -> list[ArtifactInfo]:
    return [info async for info in store.iter_artifacts(prefix)]


@dataclass(frozen=True, slots=True)
class Usage:
    artifacts: int
    bytes: int


async def disk_usage(store: Store) -> Usage:
    count = total = 0
    async for info in store.iter_artifacts():
        count += 1
        total += info.size
    return Usage(count, total)


class Progress(AbstractContextManager[Any], Protocol):
    def update(self, n_steps: int) -> None: ...


async def verify_store(store: Store, progress: Callable[[int], Progress]) -> list[Verification]:
    """Re-hash every artifact; returns those whose bytes no longer match their digest."""
    failures = []
    total = 0
    async for _ in store.iter_artifacts(include_expired=True):
        total += 1
    with progress(total) as bar:
        async for result in store.verify():
            if not result.ok:
                failures.append(result)
            bar.update(1)
    return failures
