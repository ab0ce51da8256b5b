"""The storage contract every backend implements.

Handlers speak only this contract: artifact metadata, ranged reads by (offset, length) from
a version opened once, streamed uploads committed atomically, listings and deletes.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from artifactd.http.digests import etag_for_digest

EntryType = Literal["file", "dir"]

# Called with the current version (None when absent) while a commit or delete holds the
# store's write lock; raises (PreconditionFailedError, ConflictError, ...) to veto it.
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
        return self.expires_at is not None and self.expires_at <= (now or time.time())


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One row of a directory listing."""

    name: str
    type: EntryType
    size: int | None
    modified_at: float
    sha256: str | None = None
    expires_at: float | None = None


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

    @abc.abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Append bytes (the digest is computed as they pass)."""

    @abc.abstractmethod
    async def commit(
        self, expected_sha256: str | None = None, *, require: Requirement | None = None
    ) -> tuple[ArtifactInfo, bool]:
        """Verify, persist and publish the version atomically.

        Returns the new info and whether an older version was replaced. Raises
        DigestMismatchError when `expected_sha256` differs, or whatever `require` raises
        for the current version; in every failure nothing is stored.
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
        open); None means "use `open`", which also gives the reason for a miss."""
        return None

    @abc.abstractmethod
    async def info(self, path: str) -> ArtifactInfo:
        """Metadata of the current version (same errors as `open`)."""

    @abc.abstractmethod
    async def list_dir(self, path: str) -> list[DirEntry]:
        """Entries of a directory ('' is the root), internal state excluded.
        NotFoundError if absent, NotDirectoryError if it is a file."""

    @abc.abstractmethod
    async def begin_upload(
        self,
        path: str,
        *,
        content_type: str | None = None,
        expires_at: float | None = None,
    ) -> Upload:
        """Start writing a new version of `path`."""

    @abc.abstractmethod
    async def delete(self, path: str, *, require: Requirement | None = None) -> ArtifactInfo:
        """Remove the artifact; returns what was removed. NotFoundError if absent (or
        expired), or whatever `require` raises for the current version."""

    @abc.abstractmethod
    def iter_artifacts(
        self, prefix: str = "", *, include_expired: bool = False
    ) -> AsyncIterator[ArtifactInfo]:
        """Every artifact whose path starts with `prefix`, in path order; expired ones
        only when asked (the evictor needs them)."""

    @abc.abstractmethod
    async def evict(self, info: ArtifactInfo) -> bool:
        """Delete exactly the version `info` describes, expired or not; False (and nothing
        deleted) if the path now holds another version or nothing."""

    @abc.abstractmethod
    def verify(self) -> AsyncIterator[Verification]:
        """Re-hash every artifact with a recorded digest, one result per artifact."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to whatever the backend needs; raises StoreUnavailableError if it can't."""

    async def health(self) -> str | None:
        """None when the backend works, else a short description of what is wrong."""
        return None

    @contextlib.asynccontextmanager
    async def maintenance_lock(self) -> AsyncIterator[bool]:
        """Yields True for the one holder (across processes) allowed to run maintenance."""
        yield True

    async def remove_stale_uploads(self) -> int:
        """Delete leftovers of uploads whose writer is gone; returns how many."""
        return 0

    async def record_access(self, path: str) -> None:  # noqa: B027 - optional hook
        """Note that `path` was read (batched by backends that persist it)."""

    async def flush(self) -> None:  # noqa: B027 - optional hook
        """Persist batched state such as access times."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush pending state and release resources."""
