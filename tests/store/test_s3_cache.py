"""The local disk cache in front of the S3 backend, on its own (no object store needed)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from artifactd.store.diskcache import DiskCache


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_fd(fd: int, size: int) -> bytes:
    try:
        return await asyncio.to_thread(os.pread, fd, size, 0)
    finally:
        os.close(fd)


async def test_filled_bytes_are_served_by_their_digest(tmp_path: Path) -> None:
    cache = await DiskCache.create(tmp_path, None)
    assert await cache.open(sha(b"hello world")) is None
    assert await cache.fill(sha(b"hello world"), chunks(b"hello ", b"world"))
    fd = await cache.open(sha(b"hello world"))
    assert fd is not None
    assert await read_fd(fd, 100) == b"hello world"


async def test_bytes_that_do_not_match_the_digest_are_not_cached(tmp_path: Path) -> None:
    cache = await DiskCache.create(tmp_path, None)
    assert not await cache.fill(sha(b"expected"), chunks(b"something else"))
    assert await cache.open(sha(b"expected")) is None
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_trim_removes_least_recently_used_until_under_the_bound(tmp_path: Path) -> None:
    cache = await DiskCache.create(tmp_path, 2500)
    blobs = [bytes([i]) * 600 for i in range(4)]  # 2400 bytes: fits
    for age, blob in enumerate(blobs):
        await cache.fill(sha(blob), chunks(blob))
        path = cache.path_for(sha(blob))
        os.utime(path, (1000 + age, 1000 + age))  # oldest first
    fd = await cache.open(sha(blobs[0]))  # a hit makes the oldest the newest
    assert fd is not None
    newcomer = b"n" * 600
    await cache.fill(sha(newcomer), chunks(newcomer))  # 3000 bytes: one must go
    assert not cache.path_for(sha(blobs[1])).exists()
    assert cache.path_for(sha(blobs[0])).exists()
    assert cache.path_for(sha(newcomer)).exists()
    assert await read_fd(fd, 600) == blobs[0]


async def test_open_fd_keeps_serving_a_trimmed_file(tmp_path: Path) -> None:
    cache = await DiskCache.create(tmp_path, 1000)
    old = b"o" * 250
    await cache.fill(sha(old), chunks(old))
    fd = await cache.open(sha(old))
    assert fd is not None
    os.utime(cache.path_for(sha(old)), (1, 1))
    for i in range(4):
        await cache.fill(sha(bytes([i]) * 250), chunks(bytes([i]) * 250))
    assert not cache.path_for(sha(old)).exists()
    assert await read_fd(fd, 250) == old


async def test_abandoned_temp_files_are_removed_and_large_objects_refused(tmp_path: Path) -> None:
    cache = await DiskCache.create(tmp_path, 4000)
    (tmp_path / "tmp" / "fill-crashed").write_bytes(b"partial")
    await cache.trim()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert cache.accepts(1000)
    assert not cache.accepts(1001)  # one artifact may take at most a quarter
