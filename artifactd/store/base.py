"""The storage contract every backend implements (memory.py, filesystem/, s3/).

Handlers speak only this contract: artifact metadata, ranged reads by (offset, length) from
a version opened once, streamed uploads committed atomically, listings and deletes.
Errors are the domain errors of artifactd.errors; the web layer maps them to statuses.

Concurrency
- One Store serves one event loop, and every coroutine may run concurrently with every
  other. `open_now` and `ArtifactReader.read_now` run on the loop and never block.
- Several processes (workers on one root, nodes on one bucket) may share one storage, and
  each rule below holds across them, not only inside one process.
- Commits and deletes of a path take effect one at a time: `require` always judges the
  version the write replaces or removes (the filesystem holds the root's write lock, S3
  writes conditionally and judges again when another node got in first).
- A reader is pinned to the version it opened: it never returns bytes of another version,
  even after the path is replaced or deleted (S3 may raise ArtifactReplacedError instead).
  An Upload or a reader is used by one task at a time.
- Listings and `iter_artifacts` are not snapshots: each entry describes a version that
  existed during the call, and writes made meanwhile may or may not show.
- `maintenance_lock` is held by at most one process or node at a time; others do not wait.
- `record_access` may be batched: other processes see a read after the reader's process
  flushes (at least once per eviction pass), so `last_accessed` may lag that long.
- `start` comes before any other call, `close` after every other call has returned.

Failure: what a failure at each step leaves behind
- `begin_upload`, `write`: nothing visible. The caller aborts; a writer that dies leaves a
  temp file or a multipart upload, which `collect_garbage` removes (on a filesystem
  once no live writer holds its lock, on S3 a day after it started).
- `commit`: the new version is visible whole (and durable: fsynced on the filesystem) or
  not at all, and the upload is aborted on any failure. Exception: StoreUnavailableError
  after the publishing request was sent means the outcome is unknown (S3 may have applied
  it); the next `info` tells.
- `delete`, `evict`, `evict_batch`: each artifact is gone or unchanged;
  StoreUnavailableError, again, may follow a delete that was applied. Metadata left by a
  crash between the steps describes a version no longer there and is never served.
- `abort`, `close`, `health` never raise because the backend is unreachable.

Exceptions (besides ValueError for using a finished upload or closed reader):
- open, info: NotFoundError (absent or expired), IsDirectoryError, InvalidPathError (a
  link leaving the root), StoreUnavailableError; current: those but NotFoundError;
  open_file, file_info: those but IsDirectoryError.
- ArtifactReader.read: ArtifactReplacedError, StoreUnavailableError, OSError.
- list_dir, list_dir_page: NotFoundError, NotDirectoryError, InvalidPathError,
  StoreUnavailableError.
- make_dir: NotFoundError or NotDirectoryError (for the parent), InvalidPathError,
  StorageFullError (read-only root), StoreUnavailableError.
- remove_dir: InvalidPathError, StorageFullError (read-only root), StoreUnavailableError.
- begin_upload: IsDirectoryError, StorageFullError (disk full, read-only root),
  InvalidPathError, NotFoundError (internal state), StoreUnavailableError. A backend may
  leave all but the read-only root to the upload's first write to its storage (the
  filesystem does: its temp file is made then), or IsDirectoryError to the commit (S3
  does: judged once, just before the publishing request), so `write` and `commit` raise
  them too.
- Upload.write: StorageFullError, StoreUnavailableError (and those of begin_upload above).
- Upload.commit: DigestMismatchError, whatever `require` raises (PreconditionFailedError,
  ConflictError), ConflictError (a parent is a file, or the path kept changing),
  IsDirectoryError, StorageFullError, StoreUnavailableError.
- delete: NotFoundError, IsDirectoryError, InvalidPathError, whatever `require` raises,
  ConflictError (kept changing), StorageFullError (read-only root), StoreUnavailableError.
- evict, iter_artifacts, iter_expired, iter_least_recent, usage, reconcile, verify,
  collect_garbage, flush_access_times, start:
  StoreUnavailableError; the filesystem backend's constructor MetadataCorruptError.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from artifactd.errors import (
    IsDirectoryError,
    NotFoundError,
    StorageFullError,
    StoreUnavailableError,
)
from artifactd.http.digests import etag_for_digest

log = logging.getLogger("artifactd.store")

EntryType = Literal["file", "dir"]

# Called with the current version (None when absent or expired) just before a commit or
# delete takes effect, when no other write of the path can come between (or is called
# again if one did); raises (PreconditionFailedError, ConflictError, ...) to veto it.
Requirement = Callable[["ArtifactInfo | None"], None]


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """What is known about one stored version of an artifact."""

    path: str
    size: int
    content_type: str
    modified_at: float
    created_at: float
    sha256: str | None = None
    expires_at: float | None = None
    last_accessed: float | None = None
    # Backend-specific token that changes whenever the bytes change; used for the ETag
    # only while the digest is not known yet.
    version: str = ""

    @property
    def etag(self) -> str:
        """Strong ETag: from the content digest when known, else from the version token."""
        if self.sha256:
            return etag_for_digest(self.sha256)
        return f'"v-{self.version}"'

    def is_expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (
            time.time() if now is None else now
        )


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One row of a directory listing."""

    name: str
    type: EntryType
    size: int | None
    modified_at: float
    sha256: str | None = None
    expires_at: float | None = None


def listing_key(entry: DirEntry) -> str:
    """A listing's order as one string (directories first, then files, each by name; a name
    holds no '/'): where a page of a directory continues."""
    return ("d/" if entry.type == "dir" else "f/") + entry.name


@dataclass(frozen=True, slots=True)
class Usage:
    """How many live artifacts (not expired) and their bytes; expired ones not evicted yet."""

    artifacts: int
    bytes: int
    expired: int = 0


def recency(info: ArtifactInfo) -> tuple[float, str]:
    """The least-recently-used order: never accessed counts as accessed when created; ties
    go by path."""
    return (info.last_accessed or info.created_at, info.path)


@dataclass(frozen=True, slots=True)
class Verification:
    """A re-hash of stored bytes against the digest recorded when they were committed."""

    path: str
    size: int
    expected_sha256: str
    actual_sha256: str | None  # None when the bytes are gone

    @property
    def ok(self) -> bool:
        return self.expected_sha256 == self.actual_sha256


class ArtifactReader(abc.ABC):
    """An opened version of an artifact: every read returns bytes of that version only,
    even if the path is replaced or deleted while the reader is open."""

    info: ArtifactInfo
    # True when `info` was made for this open alone: no later open hands out the same
    # object (as a hot-cache entry's is), so caches keyed by it could only miss.
    info_once = False

    @abc.abstractmethod
    async def read(self, offset: int, length: int) -> bytes:
        """Return up to `length` bytes starting at `offset`."""

    def fileno(self) -> int | None:
        """A local file descriptor holding exactly these bytes (for sendfile), if any."""
        return None

    def read_now(
        self, offset: int, length: int, *, allow_fd: bool = True
    ) -> bytes | bytearray | None:
        """The bytes, if they can be had without waiting (in memory, or in the page cache);
        None means "use `read`". Never blocks the event loop."""
        return None

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the version (idempotent)."""

    async def __aenter__(self) -> ArtifactReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class Upload(abc.ABC):
    """A new version being written; invisible until `commit` returns."""

    # Set by `commit` when the path's current version already held these bytes (same digest
    # and content type) and was kept: no bytes were written again, only its expiry became
    # the upload's (build caches re-upload what they produced). Its ETag and created_at
    # stay; its `version` stays too, except on S3 when the expiry changed (a metadata-only
    # copy of the object onto itself: a new version an eviction judged on the old spares).
    kept_current: bool = False

    @abc.abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Append bytes (the digest is computed as they pass)."""

    @abc.abstractmethod
    async def commit(
        self, expected_sha256: str | None = None, *, require: Requirement | None = None
    ) -> tuple[ArtifactInfo, bool]:
        """Verify, persist and publish the version atomically.

        Returns the new info and whether an older version was replaced (the kept version's
        info, and True, when `kept_current`; `require` judges it all the same). Raises
        DigestMismatchError when `expected_sha256` differs, or whatever `require` raises
        for the current version; every failure aborts the upload and stores nothing
        (bar the unknown outcome of StoreUnavailableError, see the module docstring).
        """

    @abc.abstractmethod
    async def abort(self) -> None:
        """Throw the partial version away (idempotent, safe after commit)."""


class Store(abc.ABC):
    """An artifact store: a tree of files with metadata, addressed by safe relative paths.

    Paths given to a store are already normalised by `artifactd.paths.parse_artifact_path`;
    the store still refuses anything that would resolve outside its root.
    """

    @abc.abstractmethod
    async def open(self, path: str) -> ArtifactReader:
        """Open the current version. NotFoundError if absent or expired,
        IsDirectoryError if the path is a directory."""

    def open_now(self, path: str) -> ArtifactReader | None:
        """`open`, if it can be done without waiting (the version is in memory or already
        open); None means "use `open`", which also gives the reason for a miss. May raise
        NotFoundError when it proves the miss without waiting (nothing is there)."""
        return None

    @abc.abstractmethod
    async def info(self, path: str) -> ArtifactInfo:
        """Metadata of the current version (same errors as `open`)."""

    async def open_file(self, path: str) -> ArtifactReader:
        """`open` for callers that answer a directory at `path` as they answer a miss (a
        build cache's entry, a `.gz` sibling): NotFoundError for both, which spares a
        backend telling them apart where that costs a request more (S3: a listing)."""
        try:
            return await self.open(path)
        except IsDirectoryError:
            raise NotFoundError(path) from None

    async def file_info(self, path: str) -> ArtifactInfo:
        """`info` as `open_file` is `open`: NotFoundError for a directory too."""
        try:
            return await self.info(path)
        except IsDirectoryError:
            raise NotFoundError(path) from None

    async def current(self, path: str) -> ArtifactInfo | None:
        """What a write of `path` would replace, for a look before an upload's body: `info`,
        or None when absent or expired. A backend may answer None for a directory too, where
        telling one apart costs a request more (S3: a listing): the upload's commit then
        refuses it with IsDirectoryError."""
        try:
            return await self.info(path)
        except NotFoundError:
            return None

    @abc.abstractmethod
    async def list_dir(self, path: str) -> list[DirEntry]:
        """Entries of a directory ('' is the root), internal state excluded.
        NotFoundError if absent, NotDirectoryError if it is a file."""

    async def list_dir_page(
        self, path: str, after: str | None, limit: int
    ) -> tuple[list[DirEntry], bool]:
        """Up to `limit` entries of `list_dir`'s order whose `listing_key` sorts after
        `after`, and whether more follow. By default sliced from `list_dir`; the
        filesystem describes only the entries of the page."""
        entries = [e for e in await self.list_dir(path) if after is None or listing_key(e) > after]
        return entries[:limit], len(entries) > limit

    @abc.abstractmethod
    async def make_dir(self, path: str) -> bool:
        """Create the empty directory `path` (WebDAV's MKCOL) inside an existing directory.
        False, and nothing changed, if a file or directory is already there; NotFoundError
        if the parent is absent, NotDirectoryError if it is a file. A directory made so
        lists (and opens as IsDirectoryError) like one holding files; the filesystem makes
        a real directory (removed again with the last file deleted under it), S3 an empty
        marker object `<key>/`, the memory backend remembers the name."""

    @abc.abstractmethod
    async def remove_dir(self, path: str) -> bool:
        """Remove the directory `path` and the empty directories below it, if no file (even
        an expired one) is left under it: what a MOVE of a directory leaves behind. False,
        and nothing removed, if a file is at or under `path` (or `path` is the root); True
        if nothing is left at `path`."""

    @abc.abstractmethod
    async def begin_upload(
        self,
        path: str,
        *,
        content_type: str | None = None,
        expires_at: float | None = None,
    ) -> Upload:
        """Start writing a new version of `path` (IsDirectoryError if a directory is
        there, here or from the upload's first write to storage: see the module
        docstring); nothing is visible until the upload's `commit`."""

    @abc.abstractmethod
    async def delete(self, path: str, *, require: Requirement | None = None) -> ArtifactInfo:
        """Remove the artifact; returns what was removed. NotFoundError if absent (or
        expired), or whatever `require` raises for the current version."""

    @abc.abstractmethod
    def iter_artifacts(
        self, prefix: str = "", *, include_expired: bool = False, after: str | None = None
    ) -> AsyncIterator[ArtifactInfo]:
        """Every artifact whose path starts with `prefix` (and sorts after `after`, to
        continue a page), in path order; expired ones only when asked. The filesystem
        backend reads its metadata index (O(log N) to start, O(1) per artifact), which
        learns of files placed by hand at `reconcile`."""

    async def usage(self, prefix: str = "", now: float | None = None) -> Usage:
        """The live artifacts under `prefix` at `now` (default: the present), their bytes,
        and (for '') how many expired ones wait for eviction. By default a walk; indexed
        backends keep running totals."""
        count = size = expired = 0
        now = time.time() if now is None else now
        async for info in self.iter_artifacts(prefix, include_expired=True):
            if info.is_expired(now):
                expired += 1
            else:
                count += 1
                size += info.size
        return Usage(count, size, expired)

    async def iter_expired(self, now: float) -> AsyncIterator[ArtifactInfo]:
        """Every artifact expired at `now`, streamed (the evictor removes them as they come;
        removing one must not disturb the iteration)."""
        async for info in self.iter_artifacts(include_expired=True):
            if info.is_expired(now):
                yield info

    async def iter_least_recent(self, prefix: str, now: float) -> AsyncIterator[ArtifactInfo]:
        """The live artifacts under `prefix`, least recently accessed first (`recency`),
        streamed as `iter_expired`. By default gathered and sorted in memory; the
        filesystem backend walks an index of that order."""
        live = [
            info
            async for info in self.iter_artifacts(prefix, include_expired=True)
            if not info.is_expired(now)
        ]
        live.sort(key=recency)
        for info in live:
            yield info

    async def reconcile(self, directory: str = "") -> None:  # noqa: B027 - optional hook
        """Bring an index of the store up to date with files placed or removed under
        `directory` ('' = everywhere) by other means than this contract (by hand)."""

    @abc.abstractmethod
    async def evict(self, info: ArtifactInfo) -> bool:
        """Delete exactly the version `info` describes, expired or not; False (and nothing
        deleted) if the path now holds another version or nothing."""

    async def evict_batch(self, infos: Sequence[ArtifactInfo]) -> list[bool]:
        """`evict` for each of `infos`, in order: True for each version removed. One that
        cannot be removed now (a full or read-only disk, storage unreachable) is False and
        left as it was, and the others are still evicted. Backends may take one lock and
        one metadata transaction for the whole batch."""
        removed: list[bool] = []
        for info in infos:
            try:
                removed.append(await self.evict(info))
            except (StorageFullError, StoreUnavailableError, OSError) as exc:
                log.warning("cannot evict %s now (%s); trying again next pass", info.path, exc)
                removed.append(False)
        return removed

    @abc.abstractmethod
    def verify(self) -> AsyncIterator[Verification]:
        """Re-hash every artifact with a recorded digest, one result per artifact."""

    # -- hooks: optional, with defaults that suit a backend without the need -------------

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to whatever the backend needs; StoreUnavailableError if it can't."""

    async def health(self) -> str | None:
        """None when the backend works, else a short description of what is wrong."""
        return None

    @contextlib.asynccontextmanager
    async def maintenance_lock(self) -> AsyncIterator[bool]:
        """Yields True for the one holder (across processes) allowed to run maintenance:
        eviction and `collect_garbage`."""
        yield True

    async def collect_garbage(self) -> int:
        """Remove what dead writers and replaced versions left behind (temp files,
        multipart uploads, digest records) and compact batched state; returns how many
        leftovers were removed. Safe while uploads run: a live upload is never touched."""
        return 0

    async def record_access(self, path: str) -> None:  # noqa: B027 - optional hook
        """Note that `path` was read, for `last_accessed` (batched in memory by backends
        that persist it; never a write per read)."""

    async def flush_access_times(self) -> None:  # noqa: B027 - optional hook
        """Persist the access times noted so far; on failure they are kept for the next
        flush. Called before each eviction pass, by every process."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush access times and release resources."""
