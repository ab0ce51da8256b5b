"""Upload resources of the filesystem store: `<root>/.artifactd/uploads/<id>.bin` holds the
bytes received so far, `<id>.json` the state (written atomically: temp file, then rename), so
both survive a restart or kill -9. The SHA-256 is not kept (hashlib state cannot be
saved): the completion streams the file through a PUT's upload, which hashes and verifies
it."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from artifactd.errors import NotFoundError

UPLOADS_DIR = "uploads"
# 24 random bytes: 192 bits, base64url (RFC 4648 §5) without padding.
_ID_BYTES = 24
_ID = re.compile(r"[A-Za-z0-9_-]{32}")
_READ_SIZE = 1 << 20


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

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


class UploadResources:
    """The upload resources under one storage root's state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / UPLOADS_DIR

    def _state(self, upload_id: str) -> Path:
        return self.dir / f"{upload_id}.json"

    def data_path(self, upload_id: str) -> Path:
        return self.dir / f"{upload_id}.bin"

    def create(
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
    ) -> UploadResource:
        self.dir.mkdir(parents=True, exist_ok=True)
        resource = UploadResource(
            id=secrets.token_urlsafe(_ID_BYTES),
            path=path,
            owner=owner,
            length=length,
            expires_at=expires_at,
            ttl=ttl,
            content_type=content_type,
            sha256=sha256,
            metadata=metadata,
        )
        try:
            self.data_path(resource.id).touch()
            self.save(resource)
        except BaseException:
            self.remove(resource.id)  # a full disk: no bytes file without its state
            raise
        return resource

    def load(self, upload_id: str) -> UploadResource:
        """The resource, or NotFoundError (unknown, malformed or expired id)."""
        if not _ID.fullmatch(upload_id):
            raise NotFoundError("no such upload")
        try:
            state = json.loads(self._state(upload_id).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NotFoundError("no such upload") from exc
        resource = UploadResource(**state)
        if resource.is_expired():
            raise NotFoundError("no such upload")
        # A crash mid-PATCH leaves bytes past the saved offset: they were never acknowledged,
        # so they go (the client resumes from the offset HEAD gives). The bytes are fsynced
        # before the state that counts them, so there are never fewer.
        try:
            size = self.data_path(upload_id).stat().st_size
        except FileNotFoundError as exc:
            raise NotFoundError("no such upload") from exc
        if size > resource.offset:
            os.truncate(self.data_path(upload_id), resource.offset)
        elif size < resource.offset:
            resource.offset = size
            self.save(resource)
        return resource

    def lock(self, upload_id: str) -> int | None:
        """An exclusive lock on the upload's bytes (a file descriptor: close it to release),
        or None while another request, in any process, holds it."""
        try:
            fd = os.open(self.data_path(upload_id), os.O_RDONLY)
        except FileNotFoundError as exc:
            raise NotFoundError("no such upload") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def save(self, resource: UploadResource) -> None:
        temp = self.dir / f".{resource.id}.json.tmp"
        temp.write_text(json.dumps(dataclasses.asdict(resource)), encoding="utf-8")
        os.replace(temp, self._state(resource.id))

    def append(self, resource: UploadResource, chunk: bytes) -> None:
        """Append `chunk` at the resource's offset (the caller saves the state)."""
        with open(self.data_path(resource.id), "r+b") as file:
            file.seek(resource.offset)
            file.write(chunk)
            file.truncate()
        resource.offset += len(chunk)

    def sync(self, resource: UploadResource) -> None:
        """Make the bytes durable, then the state that counts them."""
        with open(self.data_path(resource.id), "rb") as file:
            os.fsync(file.fileno())
        self.save(resource)

    def truncate(self, resource: UploadResource, offset: int) -> None:
        """Drop the bytes after `offset` (a piece that failed its checksum)."""
        os.truncate(self.data_path(resource.id), offset)
        resource.offset = offset

    def remove(self, upload_id: str) -> None:
        # The temp state too: a save a full disk cut short leaves it behind.
        temp = self.dir / f".{upload_id}.json.tmp"
        for path in (self._state(upload_id), self.data_path(upload_id), temp):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def remove_expired(self, now: float | None = None) -> int:
        """Remove expired resources and bytes whose state is gone; returns how many."""
        removed = 0
        if not self.dir.is_dir():
            return 0
        for entry in self.dir.iterdir():
            upload_id, _, suffix = entry.name.partition(".")
            if suffix != "json" or not _ID.fullmatch(upload_id):
                continue
            try:
                state = json.loads(entry.read_text(encoding="utf-8"))
                expired = float(state["expires_at"]) <= (time.time() if now is None else now)
            except (OSError, ValueError, KeyError, TypeError):
                expired = True
            if expired:
                self.remove(upload_id)
                removed += 1
        return removed
