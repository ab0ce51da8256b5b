"""Digests of files placed or changed by hand (not uploaded through artifactd).

Small ones are hashed before their first response, so even hand-placed files get
digest-based ETags at once; larger ones are served at once with a version-token ETag and
hashed in one background thread meanwhile. Digests are remembered per exact version
(path, inode, size, mtime), so a version whose row cannot be updated is hashed only once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from artifactd.errors import ArtifactdError, NotFoundError, StorageFullError
from artifactd.store.base import Verification
from artifactd.store.filesystem.confinement import resolve_inside
from artifactd.store.filesystem.locks import WriteLock
from artifactd.store.filesystem.metadb import MetadataDB, VersionRow

INLINE_HASH_LIMIT_BYTES = 64 * 1024 * 1024
HASH_BLOCK_BYTES = 1024 * 1024
FOUND_DIGESTS_KEPT = 4096

VersionKey = tuple[str, int, int, int]  # path, inode, size, mtime_ns


def hash_fd(fd: int, size: int) -> str:
    """SHA-256 of the first `size` bytes of an open file, read with pread (no shared offset)."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        block = os.pread(fd, min(HASH_BLOCK_BYTES, size - offset), offset)
        if not block:
            break
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


class DigestFinder:
    """Finds and records the digest of versions the metadata database does not describe.

    Blocking; called from worker threads. `on_hashed(path)` is told when a background
    hash lands (the hot cache then drops the entry holding the version-token ETag)."""

    def __init__(
        self,
        root: Path,
        db: MetadataDB,
        on_hashed: Callable[[str], None],
        lock: WriteLock | None = None,
    ) -> None:
        self.root = root
        self.db = db
        self.lock = lock
        self.on_hashed = on_hashed
        self._found: dict[VersionKey, str] = {}  # oldest first
        self._hashing: set[tuple[str, int, int]] = set()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artifactd-hash")

    def describe_unknown(self, path: str, st: os.stat_result, fd: int | None) -> VersionRow:
        """A row for a file placed or changed by hand: hashed now if small (and open),
        in the background if not (then its digest is None for now)."""
        version_key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        sha256 = self._found.get(version_key)
        if sha256 is None and fd is not None and st.st_size <= INLINE_HASH_LIMIT_BYTES:
            sha256 = hash_fd(fd, st.st_size)
            self._remember(version_key, sha256)
        row = found_row(path, st, sha256)
        if sha256 is not None:
            # A cache: on a full disk the digest stays in memory (`_found`) only.
            with contextlib.suppress(StorageFullError):
                self._record(row)
        else:
            self._hash_in_background(path, st)
        return row

    def _record(self, row: VersionRow) -> None:
        """Record the row only while its inode is still the file at its path, judged under
        the write lock: a reader that opened a file just before its eviction (or delete)
        must not bring back the row the eviction removed, describing bytes no longer there."""
        if self.lock is None:
            self.db.record_found_version(row)
            return
        with self.lock.held():
            try:
                current = os.stat(resolve_inside(self.root, row.path)).st_ino
            except (OSError, ArtifactdError):
                return
            if current == row.ino:
                self.db.record_found_version(row)

    def _remember(self, version_key: VersionKey, sha256: str) -> None:
        self._found[version_key] = sha256
        while len(self._found) > FOUND_DIGESTS_KEPT:
            self._found.pop(next(iter(self._found)))

    def _hash_in_background(self, path: str, st: os.stat_result) -> None:
        key = (path, st.st_ino, st.st_mtime_ns)
        if key in self._hashing:
            return
        self._hashing.add(key)
        self.pool.submit(self._hash_and_record, path, st, key)

    def _hash_and_record(self, path: str, st: os.stat_result, key: tuple[str, int, int]) -> None:
        try:
            os_path = resolve_inside(self.root, path)
            fd = os.open(os_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                now = os.fstat(fd)
                if (now.st_ino, now.st_size, now.st_mtime_ns) != (
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                ):
                    return  # changed again meanwhile; the next reader starts over
                sha256 = hash_fd(fd, st.st_size)
            finally:
                os.close(fd)
            self._remember((path, st.st_ino, st.st_size, st.st_mtime_ns), sha256)
            self._record(found_row(path, st, sha256))
            self.on_hashed(path)  # the digest-based ETag is known now
        except Exception:
            pass  # gone, unreadable or the store closing: the next reader starts over
        finally:
            self._hashing.discard(key)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def verify_version(root: Path, row: VersionRow) -> Verification:
    """Hash the file now on disk against the digest recorded for it, whatever its mtime
    says: bytes changed in place are exactly what verify exists to catch."""
    assert row.sha256 is not None
    try:
        fd = os.open(resolve_inside(root, row.path), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError, NotFoundError):
        return Verification(row.path, row.size, row.sha256, None)
    try:
        size = os.fstat(fd).st_size
        return Verification(row.path, size, row.sha256, hash_fd(fd, size))
    finally:
        os.close(fd)


def found_row(path: str, st: os.stat_result, sha256: str | None = None) -> VersionRow:
    """A row for a version found on disk (placed or changed by hand): created when last
    modified, never expiring, its digest computed on first read when not given."""
    return VersionRow(
        path=path,
        ino=st.st_ino,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=sha256,
        content_type=None,
        created_at=st.st_mtime,
        expires_at=None,
        last_accessed=None,
    )
