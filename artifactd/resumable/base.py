"""The upload-resource contract every backend's resource store implements (filesystem.py,
memory.py, s3.py; factory.py picks one for a store).

An upload resource collects one artifact's bytes over many requests. Its state (the
UploadResource below) and the bytes acknowledged so far survive a restart of the process
(and, on S3, are seen by every node sharing the bucket). The SHA-256 is not kept (hashlib
state cannot be saved): the completion streams `chunks()` through a PUT's upload, which
hashes and verifies them.

Concurrency
- One request appends at a time, across processes and nodes: `appending` raises
  ConflictError while another holder has the resource, and reloads the state under the
  lock, as another request may just have moved it.
- `load` never changes anything: it may run while another request appends, and tells the
  offset of the last checkpoint.

Failure
- Bytes appended but not checkpointed are not acknowledged: after a crash the resource is
  back at its last checkpoint (`Appending.checkpoint` makes the bytes durable, then the
  state that counts them).
- `remove` and `remove_expired` leave nothing behind, or what a later `remove_expired`
  removes.

The cap on open uploads per owner (`create` with `open_cap`): creations of one owner run
one at a time (`owner_held`: in this process, and across processes where the backend can
lock), each counting the owner's open resources (`open_count`, from markers: owners.py)
before adding its own. On S3 the hold is per node, so nodes creating for one owner at the
same instant may pass the cap by one each.

Exceptions: NotFoundError (unknown, malformed or expired id; a resource removed while in
use), ConflictError (`appending` while another holds it), TooManyUploadsError (`create`
over `open_cap`), StorageFullError, StoreUnavailableError.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from artifactd.errors import TooManyUploadsError

# 24 random bytes: 192 bits, base64url (RFC 4648 §5) without padding.
_ID_BYTES = 24
_ID = re.compile(r"[A-Za-z0-9_-]{32}")


def new_upload_id() -> str:
    return secrets.token_urlsafe(_ID_BYTES)


def is_upload_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


@dataclass
class UploadResource:
    """One upload in progress: where it goes, how far it got, whose it is."""

    id: str
    path: str  # the target artifact path
    owner: str | None  # the creating token's name; None when no token was presented
    length: int | None  # None while deferred (tus creation-defer-length)
    expires_at: float
    offset: int = 0
    ttl: str | None = None  # the artifact's TTL, as written
    content_type: str | None = None
    sha256: str | None = None  # the digest the artifact must have, lowercase hex
    metadata: str | None = None  # the client's Upload-Metadata, as sent (HEAD repeats it)
    # Which protocol created it ("tus" or "ietf"): each speaks to its own resources only.
    protocol: str = "tus"
    # The creating request's If-Match / If-None-Match / If-Unmodified-Since, judged again
    # at completion (the request that completes the upload need not be the one that made it).
    preconditions: dict[str, str] | None = None
    # IETF draft: completed (its artifact committed or refused), kept without its bytes
    # until it expires so that HEAD still tells the client so.
    complete: bool = False

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> UploadResource:
        """The resource a saved state describes (ValueError if it describes none)."""
        try:
            fields = {name: state[name] for name in cls.__dataclass_fields__ if name in state}
            resource = cls(**fields)
        except TypeError as exc:
            raise ValueError("malformed upload state") from exc
        if not isinstance(resource.offset, int) or not isinstance(resource.expires_at, int | float):
            raise ValueError("malformed upload state")
        return resource


class Appending(abc.ABC):
    """One request's exclusive hold on a resource: appends, checkpoints, completion.

    `resource` is the state as loaded under the lock; `append` moves its offset, and
    `checkpoint` saves it (with any other field the caller changed, such as a deferred
    length)."""

    resource: UploadResource

    @abc.abstractmethod
    async def append(self, chunk: bytes) -> None:
        """Add `chunk` at the offset (not acknowledged until `checkpoint`)."""

    @abc.abstractmethod
    async def checkpoint(self) -> None:
        """Make the bytes appended so far durable, then the state that counts them."""

    @abc.abstractmethod
    async def rollback(self) -> None:
        """Forget what was appended since the last checkpoint (a piece that failed its
        checksum): the offset is the checkpoint's again."""

    @abc.abstractmethod
    def chunks(self) -> AsyncIterator[bytes]:
        """The checkpointed bytes, in order (for the completion's commit); NotFoundError
        if the resource was removed meanwhile (a DELETE wins over the completion)."""

    @abc.abstractmethod
    async def mark_complete(self) -> None:
        """Keep the resource as a record of a completed upload (`complete`), without its
        bytes, until it expires."""


class UploadResources(abc.ABC):
    """The upload resources of one store."""

    async def create(
        self,
        path: str,
        *,
        owner: str | None,
        length: int | None,
        expires_at: float,
        ttl: str | None = None,
        content_type: str | None = None,
        sha256: str | None = None,
        metadata: str | None = None,
        protocol: str = "tus",
        preconditions: dict[str, str] | None = None,
        open_cap: int | None = None,
    ) -> UploadResource:
        """A new resource at offset 0 with a new unguessable id, saved before it is
        returned; TooManyUploadsError when `open_cap` of the owner's are open already."""
        resource = UploadResource(
            id=new_upload_id(),
            path=path,
            owner=owner,
            length=length,
            expires_at=expires_at,
            ttl=ttl,
            content_type=content_type,
            sha256=sha256,
            metadata=metadata,
            protocol=protocol,
            preconditions=preconditions,
        )
        if open_cap is None:
            await self.add(resource)
            return resource
        async with self.owner_held(owner):
            if await self.open_count(owner) >= open_cap:
                raise TooManyUploadsError(
                    f"{open_cap} uploads are open already; finish or delete one, or wait for"
                    " one to expire"
                )
            await self.add(resource)
        return resource

    _owner_locks: dict[str | None, asyncio.Lock] | None = None

    def owner_held(self, owner: str | None) -> contextlib.AbstractAsyncContextManager[None]:
        """One creation of `owner` at a time, so two cannot both take the last place under
        the cap: within this process here; backends that can lock across processes too."""
        if self._owner_locks is None:
            self._owner_locks = {}
        return self._owner_locks.setdefault(owner, asyncio.Lock())

    @abc.abstractmethod
    async def open_count(self, owner: str | None) -> int:
        """How many of the owner's resources are open: neither completed, removed nor
        expired (what the cap counts)."""

    @abc.abstractmethod
    async def add(self, resource: UploadResource) -> None:
        """Save a new resource (its id unused), with no bytes yet, and its owner's marker."""

    @abc.abstractmethod
    async def load(self, upload_id: str) -> UploadResource:
        """The resource as last checkpointed, or NotFoundError (unknown, malformed or
        expired id)."""

    @abc.abstractmethod
    def appending(self, upload_id: str) -> contextlib.AbstractAsyncContextManager[Appending]:
        """Hold the resource for one request's appends (ConflictError while another
        holds it, NotFoundError as `load`); released on the way out."""

    @abc.abstractmethod
    async def remove(self, upload_id: str) -> None:
        """The resource and its bytes gone (nothing happens for an unknown id)."""

    @abc.abstractmethod
    async def remove_expired(self, now: float | None = None) -> int:
        """Remove expired resources and what a crash left without a state; returns how
        many resources went."""
