"""Client side for pipelines: push, pull (resumable, verified) and wait, with retries.

Failures are classified so the CLI can choose exit codes: `RejectedError` (the server said
no: 4xx other than 408/429), `TransferError` (network or server trouble that outlasted the
retries), and `VerificationError` (the bytes received do not match the server's digest).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiofiles
import aiohttp

from artifactd.durations import parse_decimal
from artifactd.errors import ArtifactdError, InvalidValueError

CHUNK_BYTES = 256 * 1024
RETRYABLE_STATUSES = {408, 429, 500, 502, 503, 504}
T = TypeVar("T")
Progress = Callable[[int], None]  # called with the number of bytes just moved


class ClientError(ArtifactdError):
    """Base of client failures."""


class RejectedError(ClientError):
    """The server refused the request (a 4xx that retrying cannot fix)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"server answered {status}: {reason}")
        self.status = status


class TransferError(ClientError):
    """The transfer kept failing after every retry."""


class VerificationError(ClientError):
    """The downloaded bytes do not match the digest the server announced."""


class RetryableError(Exception):
    """A failure another attempt may not have (a dropped connection, a 5xx, a 408/429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After wins."""
        if retry_after is not None:
            return min(retry_after, self.max_delay_seconds)
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2**attempt)
        return random.uniform(0, ceiling)


async def with_retries(policy: RetryPolicy, operation: Callable[[], Awaitable[T]]) -> T:
    last: Exception | None = None
    for attempt in range(policy.attempts):
        try:
            return await operation()
        except (
            TimeoutError,
            RetryableError,
            aiohttp.ClientConnectionError,
            aiohttp.ClientPayloadError,
        ) as exc:
            last = exc
            if attempt + 1 < policy.attempts:
                retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
                await asyncio.sleep(policy.delay(attempt, retry_after))
    raise TransferError(f"giving up after {policy.attempts} attempts: {last}")


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def raise_for_status(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    try:
        reason = (await response.json(content_type=None))["error"]
    except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
        reason = response.reason or "error"
    if response.status in RETRYABLE_STATUSES:
        retry_after = response.headers.get("Retry-After", "")
        raise RetryableError(f"server answered {response.status}: {reason}", _seconds(retry_after))
    raise RejectedError(response.status, str(reason))


def _seconds(retry_after: str) -> float | None:
    """Retry-After in seconds; None for an HTTP-date or anything malformed (then the
    backoff alone decides)."""
    try:
        return float(parse_decimal(retry_after, name="Retry-After", maximum=2**63 - 1))
    except InvalidValueError:
        return None


def client_session() -> aiohttp.ClientSession:
    # No read timeout overall (artifacts can be huge), but a stalled socket is a failure.
    timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=120)
    return aiohttp.ClientSession(timeout=timeout, auto_decompress=False)


async def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(1024 * 1024):
            await asyncio.to_thread(digest.update, chunk)
    return digest.hexdigest()


async def push(
    url: str,
    path: Path,
    *,
    ttl: str | None = None,
    token: str | None = None,
    progress: Progress = lambda n: None,
    policy: RetryPolicy = RetryPolicy(),
    sha256: str | None = None,
) -> dict[str, Any]:
    """Upload `path` to `url` with its SHA-256 (computed here unless given), so the server
    stores it only if intact."""
    if sha256 is None:
        sha256 = await file_sha256(path)
    headers = {"X-Checksum-Sha256": sha256, **auth_headers(token)}
    if ttl is not None:
        headers["X-Artifact-TTL"] = ttl
    size = (await asyncio.to_thread(path.stat)).st_size
    headers["Content-Length"] = str(size)

    async def attempt() -> dict[str, Any]:
        # The file is opened here, not in the body generator: the server may answer before
        # reading the whole body, and the file must be closed then too.
        async with aiofiles.open(path, "rb") as f:

            async def body() -> AsyncGenerator[bytes, None]:
                while chunk := await f.read(CHUNK_BYTES):
                    progress(len(chunk))
                    yield chunk

            async with (
                client_session() as session,
                session.put(url, data=body(), headers=headers) as r,
            ):
                await raise_for_status(r)
                return dict(await r.json())

    return await with_retries(policy, attempt)


def _expected_sha256(response: aiohttp.ClientResponse) -> str | None:
    hex_digest = response.headers.get("X-Checksum-Sha256")
    if hex_digest:
        return hex_digest.lower()
    repr_digest = response.headers.get("Repr-Digest", "")
    for item in repr_digest.split(","):
        key, _, value = item.strip().partition("=")
        if key.strip() == "sha-256" and value.startswith(":") and value.endswith(":"):
            with contextlib.suppress(ValueError):
                return base64.b64decode(value[1:-1]).hex()
    return None


async def pull(
    url: str,
    target: Path,
    *,
    token: str | None = None,
    progress: Progress = lambda n: None,
    on_total: Progress = lambda n: None,
    policy: RetryPolicy = RetryPolicy(),
) -> Path:
    """Download to `target`, resuming `<target>.part` with If-Range, verifying the digest.

    The partial file's ETag is kept beside it (`.part.etag`): a resume asks for the rest
    only if the artifact is still that version, otherwise it starts over."""
    partial = target.with_name(target.name + ".part")
    etag_file = target.with_name(target.name + ".part.etag")

    def resume_point() -> tuple[int, str | None]:
        offset = partial.stat().st_size if partial.exists() else 0
        saved = etag_file.read_text().strip() if etag_file.exists() else ""
        return offset, saved or None

    def start_over() -> None:
        partial.unlink(missing_ok=True)
        etag_file.unlink(missing_ok=True)

    async def attempt() -> str | None:
        offset, saved_etag = await asyncio.to_thread(resume_point)
        headers = auth_headers(token)
        if offset and saved_etag:
            headers.update({"Range": f"bytes={offset}-", "If-Range": saved_etag})
        async with client_session() as session, session.get(url, headers=headers) as response:
            if response.status == 416:
                # Nothing after `offset`: complete if the size is exactly that, else stale.
                total = response.headers.get("Content-Range", "").rpartition("/")[2]
                if total == str(offset):
                    async with session.head(url, headers=auth_headers(token)) as head:
                        await raise_for_status(head)
                        return _expected_sha256(head)
                await asyncio.to_thread(start_over)
                raise RetryableError("partial file does not fit the artifact; starting over", 0)
            await raise_for_status(response)
            resuming = response.status == 206
            if response.content_length is not None:
                on_total(response.content_length + (offset if resuming else 0))
            if resuming:
                progress(offset)
            await asyncio.to_thread(etag_file.write_text, response.headers.get("ETag", ""))
            async with aiofiles.open(partial, "ab" if resuming else "wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    await out.write(chunk)
                    progress(len(chunk))
            return _expected_sha256(response)

    expected = await with_retries(policy, attempt)
    if expected is not None:
        actual = await file_sha256(partial)
        if actual != expected:
            await asyncio.to_thread(start_over)
            raise VerificationError(f"expected sha256 {expected}, received {actual}")
    await asyncio.to_thread(os.replace, partial, target)
    await asyncio.to_thread(etag_file.unlink, True)
    return target


async def wait_for(
    url: str,
    *,
    timeout_seconds: float,
    token: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> bool:
    """True once `url` exists, False when `timeout_seconds` pass first.

    Uses the server's `?wait=N` so no polling traffic is needed while it holds the request;
    network errors are retried with backoff until the deadline."""
    deadline = time.monotonic() + timeout_seconds
    attempt = 0
    separator = "&" if "?" in url else "?"
    async with client_session() as session:
        while (remaining := deadline - time.monotonic()) > 0:
            hold = max(1, min(int(remaining), 300))
            try:
                async with session.head(
                    f"{url}{separator}wait={hold}", headers=auth_headers(token)
                ) as response:
                    if response.status < 300:
                        return True
                    if response.status != 404:
                        await raise_for_status(response)
                attempt = 0
            except (TimeoutError, RetryableError, aiohttp.ClientConnectionError) as exc:
                retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
                delay = policy.delay(attempt, retry_after)
                attempt += 1
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
    return False
