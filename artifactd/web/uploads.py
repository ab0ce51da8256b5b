"""Writes under `/files/...`: PUT (streamed, verified, atomic), POST multipart, DELETE."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

from aiohttp import BodyPartReader, HttpVersion11, hdrs, web

from artifactd.documents import artifact_document
from artifactd.durations import parse_duration
from artifactd.errors import (
    ConflictError,
    DigestMismatchError,
    IncompleteUploadError,
    InvalidPathError,
    InvalidValueError,
    NotFoundError,
    PreconditionFailedError,
    UploadTooLargeError,
)
from artifactd.http.conditional import Precondition, evaluate_preconditions
from artifactd.http.digests import expected_sha256
from artifactd.paths import is_internal, join_path, parse_artifact_path
from artifactd.settings import Settings
from artifactd.store.base import ArtifactInfo, Requirement
from artifactd.web.errors import error_for_domain, json_error
from artifactd.web.files import directory_url, file_url, requested_path
from artifactd.web.keys import EVENTS, METRICS, SETTINGS, STORE
from artifactd.web.listing import wants_json
from artifactd.web.middlewares import framing_error
from artifactd.web.security import check_upload_allowed

# Client types that say nothing about the content: the name is a better guide.
_GENERIC_TYPES = {"", "application/octet-stream", "application/x-www-form-urlencoded"}


def expires_at_for(request: web.Request, settings: Settings) -> float | None:
    """Retention from X-Artifact-TTL, else ?ttl=, else --default-ttl."""
    raw = request.headers.get("X-Artifact-TTL") or request.query.get("ttl")
    ttl = settings.default_ttl if raw is None else parse_duration(raw)
    return None if ttl is None else time.time() + ttl


def write_requirement(request: web.Request, settings: Settings) -> Requirement:
    """If-Match / If-None-Match / --immutable, checked against the version a write replaces
    while the store holds its write lock (so two racing writers cannot both pass)."""
    if_match = request.headers.get(hdrs.IF_MATCH)
    if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
    if_unmodified_since = request.headers.get(hdrs.IF_UNMODIFIED_SINCE)

    def require(current: ArtifactInfo | None) -> None:
        outcome = evaluate_preconditions(
            request.method,
            if_match=if_match,
            if_none_match=if_none_match,
            if_modified_since=None,
            if_unmodified_since=if_unmodified_since,
            etag=current.etag if current else None,
            last_modified=current.modified_at if current else None,
        )
        if outcome is not Precondition.PROCEED:
            raise PreconditionFailedError("the stored version does not match the conditions")
        if settings.immutable and current is not None and request.method != hdrs.METH_DELETE:
            raise ConflictError(f"{current.path} exists and the server is immutable")

    return require


def check_declared_length(request: web.BaseRequest, settings: Settings) -> None:
    """413 before reading anything when Content-Length already says it is too large."""
    length = request.content_length
    if length is not None and length > settings.max_upload_size:
        raise UploadTooLargeError(
            f"{length} bytes is over the limit of {settings.max_upload_size} bytes"
        )


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue`: refuse oversized bodies before the client sends them.

    aiohttp runs this before the middlewares, so failures are answered here directly,
    starting with authorisation: a client that may not write never gets 100 Continue.
    """
    refused = framing_error(request) or await check_upload_allowed(request)
    if refused is not None:
        return refused
    try:
        check_declared_length(request, request.config_dict[SETTINGS])
    except UploadTooLargeError as exc:
        return error_for_domain(exc)
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return json_error(417, "expectation failed")
    if request.version >= HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim response is not part of the body count
    return None


async def body_chunks(request: web.Request, settings: Settings) -> AsyncIterator[bytes]:
    """The request body in chunks; an idle client times out, an oversized body is refused."""
    received = 0
    while True:
        try:
            async with asyncio.timeout(settings.body_timeout):
                chunk = await request.content.readany()
        except TimeoutError as exc:
            raise IncompleteUploadError(f"no body data for {settings.body_timeout:g}s") from exc
        if not chunk:
            break
        received += len(chunk)
        if received > settings.max_upload_size:
            raise UploadTooLargeError(f"body is over {settings.max_upload_size} bytes")
        yield chunk
    if request.content_length is not None and received != request.content_length:
        raise IncompleteUploadError(f"received {received} of {request.content_length} bytes")


def stored_type(content_type: str | None) -> str | None:
    """The type to record: the client's, unless it says nothing (then the name decides)."""
    value = (content_type or "").strip()
    return None if value.lower() in _GENERIC_TYPES else value


async def store_stream(
    request: web.Request,
    path: str,
    chunks: AsyncIterator[bytes],
    *,
    content_type: str | None,
    expires_at: float | None,
    expected_sha256: str | None,
    requirement: Requirement,
) -> tuple[ArtifactInfo, bool]:
    """Write one new version from `chunks` and publish it, or leave nothing behind."""
    upload = await request.config_dict[STORE].begin_upload(
        path, content_type=stored_type(content_type), expires_at=expires_at
    )
    try:
        async for chunk in chunks:
            await upload.write(chunk)
        info, replaced = await upload.commit(expected_sha256, require=requirement)
    except BaseException as exc:
        if isinstance(exc, DigestMismatchError):
            request.config_dict[METRICS].checksum_failures.inc()
        await upload.abort()
        raise
    request.config_dict[EVENTS].publish(
        "replaced" if replaced else "created", artifact_document(info)
    )
    return info, replaced


async def put_file(request: web.Request) -> web.Response:
    """PUT: stream the body into a new version, verify it, publish it atomically."""
    settings = request.app[SETTINGS]
    path, is_dir_request = requested_path(request)
    if is_dir_request or not path:
        raise InvalidPathError("PUT needs a file path, not a directory")
    check_declared_length(request, settings)
    expected = expected_sha256(request.headers)
    expires_at = expires_at_for(request, settings)
    requirement = write_requirement(request, settings)
    requirement_now = await _current_or_none(request, path)
    requirement(requirement_now)  # fail fast, before reading the body; re-checked at commit

    info, replaced = await store_stream(
        request,
        path,
        body_chunks(request, settings),
        content_type=request.headers.get(hdrs.CONTENT_TYPE),
        expires_at=expires_at,
        expected_sha256=expected,
        requirement=requirement,
    )
    return web.json_response(
        artifact_document(info),
        status=200 if replaced else 201,
        headers={"ETag": info.etag, "Location": file_url(info.path)},
    )


async def _current_or_none(request: web.Request, path: str) -> ArtifactInfo | None:
    try:
        return await request.app[STORE].info(path)
    except NotFoundError:
        return None


async def delete_file(request: web.Request) -> web.Response:
    path, is_dir_request = requested_path(request)
    if is_dir_request or not path:
        raise InvalidPathError("DELETE needs a file path, not a directory")
    settings = request.app[SETTINGS]
    info = await request.app[STORE].delete(path, require=write_requirement(request, settings))
    request.app[EVENTS].publish("deleted", artifact_document(info))
    return web.Response(status=204)


async def post_files(request: web.Request) -> web.StreamResponse:
    """POST multipart/form-data to a directory: store each file part under it."""
    settings = request.app[SETTINGS]
    dir_path, is_dir_request = requested_path(request)
    if not is_dir_request:
        raise InvalidPathError("POST uploads go to a directory URL ending in '/'")
    if not request.content_type.startswith("multipart/form-data"):
        raise InvalidValueError("POST needs a multipart/form-data body")
    check_declared_length(request, settings)
    expires_at = expires_at_for(request, settings)
    requirement = write_requirement(request, settings)
    stored: list[dict[str, object]] = []
    reader = await request.multipart()
    budget = [settings.max_upload_size]  # bytes the rest of the form may still bring

    async def part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
        while chunk := await part.read_chunk(settings.chunk_size):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise UploadTooLargeError(f"body is over {settings.max_upload_size} bytes")
            yield chunk

    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue  # a nested multipart: not something a form sends
        if not part.filename:
            if part.name == "ttl":  # the browse page's "keep for" field, sent before files
                ttl_text = (await part.text()).strip()
                if ttl_text:
                    ttl = parse_duration(ttl_text)
                    expires_at = None if ttl is None else time.time() + ttl
            continue
        info, _ = await store_stream(
            request,
            _part_path(dir_path, part.filename),
            part_chunks(part),
            content_type=part.headers.get(hdrs.CONTENT_TYPE),
            expires_at=expires_at,
            expected_sha256=None,
            requirement=requirement,
        )
        stored.append(artifact_document(info))
    if not stored:
        raise InvalidValueError("the form contained no file")
    if not wants_json(request):
        # A browser's form post: back to the listing, which now shows the files.
        raise web.HTTPSeeOther(directory_url(dir_path))
    return web.json_response({"stored": stored}, status=201)


def _part_path(dir_path: str, filename: str) -> str:
    """Where a form part goes: its base name (browsers may send a full local path)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    path = parse_artifact_path(quote(join_path(dir_path, name), safe="/"))
    if not name or is_internal(path):
        raise InvalidPathError(f"unusable file name {filename!r}")
    return path
