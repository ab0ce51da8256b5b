"""push over tus 1.0.0 (protocol.md of tus/tus-resumable-upload-protocol): the file goes to
the server's `/uploads/` in pieces, and after a dropped connection, a 5xx or a restart of
the server the push resumes from the offset a HEAD gives, instead of starting over.

The retries are `client.with_retries`'s (backoff, Retry-After); an upload that got further
than ever before starts a fresh round of attempts, so a long upload survives any number of
restarts as long as each one ends within a round's backoff, and a fault that keeps it from
getting further ends it after one round.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiofiles
import aiohttp
from yarl import URL

from artifactd.client import (
    CHUNK_BYTES,
    Progress,
    RejectedError,
    RetryableError,
    RetryPolicy,
    TransferError,
    auth_headers,
    client_session,
    file_sha256,
    push,
    raise_for_status,
    with_retries,
)

TUS = {"Tus-Resumable": "1.0.0"}
PIECE_BYTES = 8 * 1024 * 1024
CHECKSUM_MISMATCH = 460  # protocol.md "Checksum": the piece was discarded
# A creation answered with these means no tus here: no /uploads/ (404), no POST there
# (405), or a backend without upload resources (501, as artifactd's S3 answers for now);
# the push is then a plain PUT.
NO_UPLOADS_STATUSES = frozenset({404, 405, 501})
# A restart takes a few seconds: more patience per round than a single PUT's default.
RESUMABLE_POLICY = RetryPolicy(attempts=8)


class NoResumableUploadsError(Exception):
    """The server has no tus uploads; the caller falls back to a plain PUT."""


def split_files_url(url: str) -> tuple[str, str] | None:
    """`https://h/pre/files/a/b.bin` → (`https://h/pre/uploads/`, `a/b.bin`); None for a
    URL that names no artifact under `/files/` or carries a query (only a PUT takes it)."""
    parts = urlsplit(url)
    at = parts.path.rfind("/files/")
    if at < 0 or parts.query or parts.path.endswith("/"):
        return None
    uploads = parts._replace(path=parts.path[:at] + "/uploads/", fragment="")
    return urlunsplit(uploads), unquote(parts.path[at + len("/files/") :])


def _metadata(**pairs: str | None) -> str:
    """protocol.md "Upload-Metadata": `key base64(value)` pairs, comma-separated."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in pairs.items()
        if value is not None
    )


class _Upload:
    """One file's way through an upload resource; `run` is one attempt of it."""

    def __init__(
        self,
        url: str,
        path: Path,
        size: int,
        sha256: str,
        *,
        ttl: str | None,
        token: str | None,
        progress: Progress,
        on_resume: Callable[[int], None],
        piece_bytes: int,
    ) -> None:
        split = split_files_url(url)
        if split is None:
            raise NoResumableUploadsError(url)
        self.uploads_url, self.artifact = split
        self.url, self.path, self.size, self.sha256 = url, path, size, sha256
        self.ttl, self.token, self.piece_bytes = ttl, token, piece_bytes
        self.progress, self.on_resume = progress, on_resume
        self.location: str | None = None
        self.offset = 0
        self.reported = 0  # bytes the progress bar has been told about
        self.furthest = 0  # the highest offset the server acknowledged
        self.moved = False  # during this round of attempts, the upload got further

    def _advance(self, offset: int) -> None:
        """Progress only ever goes forward: bytes sent again after a resume are not counted
        twice."""
        if offset > self.reported:
            self.progress(offset - self.reported)
            self.reported = offset

    async def run(self) -> dict[str, Any]:
        headers = {**TUS, **auth_headers(self.token)}
        async with client_session() as session:
            if self.location is None:
                await self._create(session, headers)
            elif not await self._resume(session, headers):
                # Gone: completed (its last answer was lost), expired or removed. If the
                # artifact is this file, it was the first; else the next attempt starts over.
                self.location = None
                with contextlib.suppress(RejectedError, TransferError):
                    return await self._document(session)
                raise RetryableError("the upload is gone; starting over", 0)
            final: aiohttp.ClientResponse | None = None
            while self.offset < self.size or final is None:
                again = self.offset >= self.size  # an empty PATCH: the commit tried again
                try:
                    final = await self._send_piece(session, headers)
                except RejectedError as exc:
                    # A server killed between its commit and the upload's removal tries the
                    # commit again, which --immutable refuses (409): if the artifact is this
                    # file, the push is done.
                    if not (again and exc.status == 409):
                        raise
                    with contextlib.suppress(RejectedError, TransferError):
                        return await self._document(session)
                    raise
            return await self._document(session)

    async def _create(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> None:
        metadata = _metadata(path=self.artifact, ttl=self.ttl, sha256=self.sha256)
        creation = {**headers, "Upload-Length": str(self.size), "Upload-Metadata": metadata}
        async with session.post(self.uploads_url, headers=creation) as response:
            if response.status in NO_UPLOADS_STATUSES:
                raise NoResumableUploadsError(f"{self.uploads_url}: {response.status}")
            await raise_for_status(response)
            if response.status != 201 or "Location" not in response.headers:
                raise RejectedError(response.status, "the upload was not created")
            # protocol.md "POST": Location may be relative to the creation URL.
            self.location = str(response.url.join(URL(response.headers["Location"])))
        self.offset = 0

    async def _resume(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> bool:
        """protocol.md "HEAD": the offset to go on from; False when the upload is gone."""
        assert self.location is not None
        async with session.head(self.location, headers=headers) as response:
            if response.status == 404:
                return False
            await raise_for_status(response)
            self.offset = int(response.headers["Upload-Offset"])
        self.on_resume(self.offset)
        self._advance(self.offset)
        return True

    async def _send_piece(
        self, session: aiohttp.ClientSession, headers: dict[str, str]
    ) -> aiohttp.ClientResponse | None:
        """PATCH the piece at the offset (the final, empty one when all bytes are in but
        the commit is still to be confirmed); returns the response once the upload is
        complete."""
        assert self.location is not None
        async with aiofiles.open(self.path, "rb") as f:
            await f.seek(self.offset)
            piece = await f.read(self.piece_bytes)
        checksum = base64.b64encode(await asyncio.to_thread(_sha256, piece)).decode()
        start = self.offset

        async def body() -> AsyncGenerator[bytes, None]:
            for at in range(0, len(piece), CHUNK_BYTES):
                yield piece[at : at + CHUNK_BYTES]
                self._advance(start + min(at + CHUNK_BYTES, len(piece)))

        patch = {
            **headers,
            "Upload-Offset": str(start),
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(piece)),
            "Upload-Checksum": f"sha256 {checksum}",
        }
        async with session.patch(self.location, data=body(), headers=patch) as response:
            if response.status == CHECKSUM_MISMATCH:
                # protocol.md "Checksum": the piece was damaged on the way and discarded.
                raise RetryableError("the piece arrived damaged; sending it again", 0)
            if response.status == 409 and await self._resume(session, headers):
                # protocol.md "PATCH": not the server's offset (a piece whose answer was
                # lost went through); HEAD said where to go on. (A 409 of the commit, e.g.
                # --immutable, removes the upload: HEAD finds nothing, and it is refused.)
                return None
            await raise_for_status(response)
            self.offset = int(response.headers["Upload-Offset"])
            if self.offset > self.furthest:  # progress only past where it ever got
                self.furthest, self.moved = self.offset, True
            return response if self.offset >= self.size else None

    async def _document(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """The committed artifact's JSON, as a PUT would have answered it."""
        split = urlsplit(self.url)
        at = split.path.rfind("/files/")
        api = split._replace(
            path=split.path[:at] + "/api/v1/artifacts/" + quote(self.artifact), fragment=""
        )
        async with session.get(urlunsplit(api), headers=auth_headers(self.token)) as response:
            await raise_for_status(response)
            document = dict(await response.json())
        if document.get("sha256") != self.sha256:
            raise TransferError(f"{self.artifact} was replaced before its upload was confirmed")
        return document


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def push_resumable(
    url: str,
    path: Path,
    size: int,
    sha256: str,
    *,
    ttl: str | None = None,
    token: str | None = None,
    progress: Progress = lambda n: None,
    on_resume: Callable[[int], None] = lambda offset: None,
    policy: RetryPolicy = RESUMABLE_POLICY,
    piece_bytes: int = PIECE_BYTES,
) -> dict[str, Any]:
    """Upload `path` (`size` bytes, `sha256`) through a tus upload resource, resuming after
    failures; NoResumableUploadsError when the server has no `/uploads/`."""
    upload = _Upload(
        url,
        path,
        size,
        sha256,
        ttl=ttl,
        token=token,
        progress=progress,
        on_resume=on_resume,
        piece_bytes=piece_bytes,
    )
    while True:
        upload.moved = False
        try:
            return await with_retries(policy, upload.run)
        except TransferError:
            if not upload.moved:  # a whole round of attempts that got no further
                raise


async def push_file(
    url: str,
    path: Path,
    *,
    resumable_above: int,
    ttl: str | None = None,
    token: str | None = None,
    progress: Progress = lambda n: None,
    on_resume: Callable[[int], None] = lambda offset: None,
) -> dict[str, Any]:
    """`artifactd push`: a file over `resumable_above` bytes through a tus upload, else (or
    where the server has no `/uploads/`) one PUT; the same JSON document either way."""
    sha256 = await file_sha256(path)
    size = (await asyncio.to_thread(path.stat)).st_size
    if size > resumable_above and size > 0:
        with contextlib.suppress(NoResumableUploadsError):
            return await push_resumable(
                url,
                path,
                size,
                sha256,
                ttl=ttl,
                token=token,
                progress=progress,
                on_resume=on_resume,
            )
    return await push(url, path, ttl=ttl, token=token, progress=progress, sha256=sha256)
