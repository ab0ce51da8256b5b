"""One S3 bucket as artifactd talks to it: the client, and which failures mean "the store is
unavailable" (retried later by the caller's caller) versus an answer to judge.

An unreachable or failing store (connection refused, timeouts, 5xx, missing bucket) raises
StoreUnavailableError after the configured attempts; nothing else is retried here. Every
other S3 answer stays a botocore ClientError, classified with `is_missing` and
`is_precondition_failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import botocore.session  # type: ignore[import-untyped]
from aiobotocore.session import AioSession, get_session  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from artifactd.errors import StoreUnavailableError

log = logging.getLogger("artifactd.store.s3")

STREAM_BLOCK_BYTES = 1024 * 1024

# Failures that mean "the store cannot be reached", as opposed to an answer from it.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    BotoConnectionError,
    HTTPClientError,
    aiohttp.ClientError,
    TimeoutError,
    OSError,
)

__all__ = ["Bucket", "ClientError", "code", "is_missing", "is_precondition_failed"]


class Bucket:
    """An aiobotocore S3 client bound to one bucket; `open` before use, `close` after.

    Credentials come from the standard AWS environment variables and config files.
    """

    def __init__(
        self,
        name: str,
        *,
        endpoint_url: str | None,
        region: str | None,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        max_attempts: int,
        max_connections: int,
    ) -> None:
        self.name = name
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region or "us-east-1",
            "config": Config(
                connect_timeout=connect_timeout_seconds,
                read_timeout=read_timeout_seconds,
                retries={"max_attempts": max_attempts, "mode": "standard"},
                max_pool_connections=max_connections,
                # Path-style works with every S3-compatible store; AWS resolves both.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                # Trailing checksums are not understood by every S3-compatible store.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        self.client: Any = None
        self._client_context: Any = None

    async def open(self) -> None:
        session = get_session()
        # botocore reads its JSON models and config files synchronously on first use: do
        # that in a thread, so creating the client below finds them loaded.
        await asyncio.to_thread(_preload_botocore, session, self._client_args)
        self._client_context = session.create_client("s3", **self._client_args)
        self.client = await self._client_context.__aenter__()

    async def close(self) -> None:
        if self._client_context is not None:
            context, self._client_context = self._client_context, None
            await context.__aexit__(None, None, None)

    async def request(self, operation: str, **params: Any) -> dict[str, Any]:
        """One S3 call on this bucket; unreachable or failing stores become
        StoreUnavailableError, other answers stay ClientError for the caller to judge."""
        try:
            response: dict[str, Any] = await getattr(self.client, operation)(
                Bucket=self.name, **params
            )
        except ClientError as exc:
            if (status(exc) >= 500 and code(exc) != "NotImplemented") or code(
                exc
            ) == "NoSuchBucket":
                raise StoreUnavailableError(f"object store {operation}: {code(exc)}") from exc
            raise
        except _UNREACHABLE as exc:
            raise StoreUnavailableError(f"object store unreachable: {exc}") from exc
        return response

    async def read_body(self, response: dict[str, Any]) -> bytes:
        try:
            async with response["Body"] as body:
                data: bytes = await body.read()
        except _UNREACHABLE as exc:
            raise StoreUnavailableError(f"object store read failed: {exc}") from exc
        return data

    async def iter_body(self, response: dict[str, Any]) -> AsyncIterator[bytes]:
        try:
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(STREAM_BLOCK_BYTES):
                    yield chunk
        except _UNREACHABLE as exc:
            raise StoreUnavailableError(f"object store read failed: {exc}") from exc

    async def get_json(self, key: str) -> tuple[Any, str] | None:
        """A small JSON state object and its ETag, or None if absent or unreadable."""
        try:
            response = await self.request("get_object", Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        try:
            return json.loads(await self.read_body(response)), response["ETag"]
        except ValueError:
            log.warning("ignoring malformed state object %s", key)
            return None

    async def put_json(self, key: str, value: Any, **condition: str) -> str:
        """Write a small JSON state object (under `condition`, if given); returns its ETag."""
        body = json.dumps(value, separators=(",", ":")).encode()
        response = await self.request(
            "put_object", Key=key, Body=body, ContentType="application/json", **condition
        )
        etag: str = response["ETag"]
        return etag

    async def delete_quietly(self, key: str, **condition: str) -> None:
        """Delete a state object, ignoring any answer (it may be gone already)."""
        with contextlib.suppress(ClientError):
            await self.request("delete_object", Key=key, **condition)

    async def list_pages(
        self, prefix: str, *, delimiter: str | None = None, start_after: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every ListObjectsV2 page for `prefix`, from the first key after `start_after`.

        StartAfter goes with the first request only: the continuation token carries the
        position from then on (ListObjectsV2: "StartAfter ... Amazon S3 starts listing after
        this specified key"; a ContinuationToken says where the previous page ended)."""
        params: dict[str, Any] = {"Prefix": prefix}
        if delimiter:
            params["Delimiter"] = delimiter
        if start_after:
            params["StartAfter"] = start_after
        while True:
            page = await self.request("list_objects_v2", **params)
            yield page
            if not page.get("IsTruncated"):
                return
            params.pop("StartAfter", None)
            params["ContinuationToken"] = page["NextContinuationToken"]


def status(exc: ClientError) -> int:
    found: int = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return found


def code(exc: ClientError) -> str:
    found: str = exc.response.get("Error", {}).get("Code", "")
    return found


def is_missing(exc: ClientError) -> bool:
    return status(exc) == 404 or code(exc) in ("NoSuchKey", "NotFound", "404")


def is_precondition_failed(exc: ClientError) -> bool:
    # 409 ConditionalRequestConflict: AWS's answer to two conditional writes racing.
    return status(exc) in (409, 412) or code(exc) in (
        "PreconditionFailed",
        "ConditionalRequestConflict",
    )


def _preload_botocore(session: AioSession, client_args: dict[str, Any]) -> None:
    """Load botocore's config files and S3 models into `session` (blocking file reads) by
    building a throwaway synchronous client that shares the session's model loader."""
    session.get_scoped_config()
    loader_session = botocore.session.Session()
    loader_session.register_component("data_loader", session.get_component("data_loader"))
    loader_session.create_client(
        "s3", aws_access_key_id="preload", aws_secret_access_key="preload", **client_args
    )
