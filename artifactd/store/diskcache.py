"""A size-bounded local disk cache of artifact bytes, content-addressed and trimmed LRU.

Files are named by their SHA-256 and hashed while they are filled, so a cached file holds
exactly the bytes of every version with that digest: a hit can never serve another version.
Fills go to a temp file (locked while written) and are renamed into place whole; several
processes may share one cache directory. Every blocking call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path

from artifactd.store.tempfiles import create_locked, remove_abandoned
from artifactd.store.uploads import write_all

log = logging.getLogger("artifactd.store.diskcache")

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
TMP_PREFIX = "fill-"
# Written to disk in blocks of about this size, so a fill makes few trips to a thread.
WRITE_BLOCK_BYTES = 1024 * 1024
# One artifact may take at most this share of the cache, so one big download cannot flush
# every other hot artifact out.
MAX_OBJECT_SHARE = 4


@dataclass(frozen=True, slots=True)
class TrimReport:
    removed_files: int = 0
    removed_bytes: int = 0
    kept_bytes: int = 0


class DiskCache:
    """Cached artifact bytes under `root/objects/<aa>/<sha256>`, temp files under `root/tmp`.

    Recency is the file's mtime, touched on every hit, so the order survives restarts and
    is shared by every process using the directory.
    """

    def __init__(self, root: Path, max_size_bytes: int | None) -> None:
        self.root = root
        self.max_size_bytes = max_size_bytes
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(exist_ok=True)

    @classmethod
    async def create(cls, root: Path, max_size_bytes: int | None) -> DiskCache:
        return await asyncio.to_thread(cls, root, max_size_bytes)

    def accepts(self, size: int) -> bool:
        """Whether an artifact of `size` bytes is worth caching at all."""
        return self.max_size_bytes is None or size <= self.max_size_bytes // MAX_OBJECT_SHARE

    def path_for(self, sha256: str) -> Path:
        if not _SHA256_HEX.fullmatch(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.objects_dir / sha256[:2] / sha256

    async def open(self, sha256: str) -> int | None:
        """A read-only fd on the cached bytes for `sha256` (the caller closes it), or None.

        The fd pins the bytes: trimming may unlink the file, but reads through it go on."""
        return await asyncio.to_thread(self._open_sync, self.path_for(sha256))

    @staticmethod
    def _open_sync(path: Path) -> int | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):
            os.utime(fd)  # a hit makes it the most recently used
        return fd

    async def contains(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path_for(sha256).is_file)

    async def fill(self, sha256: str, chunks: AsyncIterable[bytes]) -> bool:
        """Store the bytes `chunks` yields under `sha256` if they hash to it; True if stored.

        Then trims the cache, so it exceeds its bound by at most the fills in flight."""
        target = self.path_for(sha256)
        tmp_path = self.tmp_dir / f"{TMP_PREFIX}{secrets.token_hex(12)}"
        fd = await asyncio.to_thread(create_locked, tmp_path)
        hasher = hashlib.sha256()
        stored = False
        try:
            block = bytearray()
            async for chunk in chunks:
                block += chunk
                if len(block) >= WRITE_BLOCK_BYTES:
                    await asyncio.to_thread(_hash_and_write, fd, hasher, bytes(block))
                    block.clear()
            await asyncio.to_thread(_hash_and_write, fd, hasher, bytes(block))
            if hasher.hexdigest() != sha256:
                log.warning("cache fill for %s got other bytes; not cached", sha256)
                return False
            await asyncio.to_thread(_publish, fd, tmp_path, target)
            stored = True
        finally:
            await asyncio.to_thread(_discard, fd, None if stored else tmp_path)
        await self.trim()
        return True

    async def trim(self) -> TrimReport:
        """Delete least recently used files until the cache fits its bound, and temp files
        whose filler died."""
        return await asyncio.to_thread(self._trim_sync)

    def _trim_sync(self) -> TrimReport:
        remove_abandoned(self.tmp_dir, TMP_PREFIX)
        files: list[tuple[float, int, str]] = []
        for subdir in os.scandir(self.objects_dir):
            if not subdir.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(subdir.path):
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat(follow_symlinks=False)
                    files.append((st.st_mtime, st.st_size, entry.path))
        total = sum(size for _, size, _ in files)
        if self.max_size_bytes is None or total <= self.max_size_bytes:
            return TrimReport(kept_bytes=total)
        removed_files = removed_bytes = 0
        for _, size, path in sorted(files):  # oldest first
            if total <= self.max_size_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed_files += 1
                removed_bytes += size
            total -= size
        return TrimReport(removed_files, removed_bytes, total)


def _hash_and_write(fd: int, hasher: hashlib._Hash, data: bytes) -> None:
    hasher.update(data)
    write_all(fd, data)


def _publish(fd: int, tmp_path: Path, target: Path) -> None:
    """fsync before the rename, so a crash cannot leave a named file with missing bytes."""
    os.fsync(fd)
    target.parent.mkdir(exist_ok=True)
    os.rename(tmp_path, target)


def _discard(fd: int, unlink: Path | None) -> None:
    os.close(fd)
    if unlink is not None:
        unlink.unlink(missing_ok=True)
