"""Writes under `/files/...`: PUT (streamed, verified, atomic), POST multipart, DELETE."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import hdrs, web
from multidict import CIMultiDict

from artifactd.documents import artifact_document
from artifactd.durations import parse_duration
from artifactd.errors import (
    ConflictError,
    DigestMismatchError,
    IncompleteUploadError,
    InvalidDigestError,
    InvalidPathError,
    InvalidValueError,
    NotFoundError,
    PreconditionFailedError,
    UploadTooLargeError,
)
from artifactd.events import EventLog
from artifactd.http.conditional import Precondition, evaluate_preconditions
from artifactd.http.digests import expected_sha256
from artifactd.paths import is_internal, join_path, parse_artifact_path
from artifactd.policies import SERVER_WIDE
from artifactd.settings import Settings
from artifactd.store.base import ArtifactInfo, Requirement, Upload
from artifactd.web.files import directory_url, file_url, requested_path
from artifactd.web.keys import EVENTS, METRICS, SETTINGS, STORE
from artifactd.web.listing import wants_json
from artifactd.web.multipart import FormReader, form_boundary

# Files one form may bring: each holds an open upload (a temp file) until the form ends.
MAX_FORM_FILES = 256
# Bazel's content-addressed store: a file named by the SHA-256 of its bytes.
CAS_SEGMENT = "cas"
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# Client types that say nothing about the content: the name is a better guide.
_GENERIC_TYPES = {"", "application/octet-stream", "application/x-www-form-urlencoded"}


def expires_at_for(request: web.Request, settings: Settings, path: str) -> float | None:
    """Retention from X-Artifact-TTL, else ?ttl=, else the path's policy or --default-ttl;
    at most the policy's max_ttl (Settings.ttl_for)."""
    return expires_at(settings, path, requested_ttl(request))


def requested_ttl(request: web.Request) -> str | None:
    """The TTL a write asks for, as written: X-Artifact-TTL, else ?ttl=."""
    # `request.query` parses the query string into a new MultiDict: only when there is one.
    ttl = request.headers.get("X-Artifact-TTL")
    return ttl or (request.query.get("ttl") if request.query_string else None)


def expires_at(settings: Settings, path: str, requested: str | None) -> float | None:
    """When an upload to `path` that asked for the TTL `requested` (text) expires."""
    ttl = settings.ttl_for(path, SERVER_WIDE if requested is None else parse_duration(requested))
    return None if ttl is None else time.time() + ttl


# The preconditions a write is judged by (RFC 9110 §13.1), kept by name so that a write
# finished by a later request (a resumable upload) is judged by the request that began it.
CONDITION_HEADERS = (hdrs.IF_MATCH, hdrs.IF_NONE_MATCH, hdrs.IF_UNMODIFIED_SINCE)


def write_conditions(request: web.BaseRequest) -> dict[str, str]:
    """The request's If-Match / If-None-Match / If-Unmodified-Since, as sent."""
    return {name: request.headers[name] for name in CONDITION_HEADERS if name in request.headers}


def write_requirement(request: web.Request, settings: Settings) -> Requirement:
    """If-Match / If-None-Match / --immutable, checked against the version a write replaces
    while the store holds its write lock (so two racing writers cannot both pass)."""
    return requirement_for(settings, request.method, write_conditions(request))


def requirement_for(settings: Settings, method: str, conditions: Mapping[str, str]) -> Requirement:
    """`write_requirement` for a `method` with the `conditions` of `write_conditions`."""
    if_match = conditions.get(hdrs.IF_MATCH)
    if_none_match = conditions.get(hdrs.IF_NONE_MATCH)
    if_unmodified_since = conditions.get(hdrs.IF_UNMODIFIED_SINCE)

    def require(current: ArtifactInfo | None) -> None:
        outcome = evaluate_preconditions(
            method,
            if_match=if_match,
            if_none_match=if_none_match,
            if_modified_since=None,
            if_unmodified_since=if_unmodified_since,
            etag=current.etag if current else None,
            last_modified=current.modified_at if current else None,
        )
        if outcome is not Precondition.PROCEED:
            raise PreconditionFailedError("the stored version does not match the conditions")
        if current is not None and method != hdrs.METH_DELETE:
            check_mutable(settings, current.path)

    return require


def may_refuse(conditions: Mapping[str, str], settings: Settings, path: str) -> bool:
    """Whether the requirement made of `conditions` (`write_conditions`) can refuse a write
    of `path` at all: without conditional headers, where overwriting is allowed, it passes
    whatever is there, so looking the current version up before the body (a thread hop and
    a metadata lookup) buys nothing."""
    return bool(conditions) or settings.immutable_at(path)


def check_mutable(settings: Settings, path: str) -> None:
    """409 for overwriting `path` where --immutable or its policy forbids it."""
    if settings.immutable_at(path):
        policy = settings.policy_for(path)
        where = "the server" if policy is None or policy.immutable is SERVER_WIDE else policy.prefix
        raise ConflictError(f"{path} exists and {where} is immutable")


def check_declared_length(request: web.BaseRequest, settings: Settings) -> None:
    """413 before reading anything when Content-Length already says it is too large."""
    length = request.content_length
    if length is not None and length > settings.max_upload_size:
        raise UploadTooLargeError(
            f"{length} bytes is over the limit of {settings.max_upload_size} bytes"
        )


def content_address(path: str) -> str | None:
    """The SHA-256 a path names, lowercase: its last segment when that is 64 hex digits
    under a `cas/` segment (Bazel's remote cache, `<base>/cas/<sha256>`); else None."""
    *parents, name = path.split("/")
    if CAS_SEGMENT in parents and _SHA256_HEX.fullmatch(name):
        return name.lower()
    return None


def expected_digest(path: str, declared: str | None) -> str | None:
    """The SHA-256 an upload to `path` must hash to: the one the client declared, and a
    content address's own name (InvalidDigestError when the two disagree)."""
    named = content_address(path)
    if named is None:
        return declared
    if declared is not None and declared != named:
        raise InvalidDigestError(f"the declared digest is not {path.rsplit('/', 1)[-1]}")
    return named


async def body_chunks(request: web.Request, settings: Settings) -> AsyncIterator[bytes]:
    """The request body in chunks; an idle client times out, an oversized body is refused.
    What has already arrived is taken without a timer (a small body is usually all there
    by the time its handler runs)."""
    content = request.content
    received = 0
    while True:
        chunk = content.read_nowait()  # what is buffered; b"" if nothing (or at the end)
        if not chunk:
            if content.at_eof():
                break
            try:
                async with asyncio.timeout(settings.body_timeout):
                    chunk = await content.readany()
            except TimeoutError as exc:
                message = f"no body data for {settings.body_timeout:g}s"
                raise IncompleteUploadError(message) from exc
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
    config = request.config_dict  # a new ChainMapProxy at each call: taken once
    upload = await config[STORE].begin_upload(
        path, content_type=stored_type(content_type), expires_at=expires_at
    )
    try:
        async for chunk in chunks:
            await upload.write(chunk)
        info, replaced = await upload.commit(expected_sha256, require=requirement)
    except BaseException as exc:
        if isinstance(exc, DigestMismatchError):
            config[METRICS].checksum_failures.inc()
        await upload.abort()
        raise
    if upload.kept_current:
        return info, replaced  # the bytes were already there: no new version, no event
    return publish_to(config[EVENTS], info, replaced), replaced


async def publish(request: web.Request, info: ArtifactInfo, replaced: bool) -> ArtifactInfo:
    """Tell event listeners about a version just committed."""
    return publish_to(request.config_dict[EVENTS], info, replaced)


def publish_to(events: EventLog, info: ArtifactInfo, replaced: bool) -> ArtifactInfo:
    """`publish` on the application's event log."""
    events.publish("replaced" if replaced else "created", artifact_document(info))
    return info


@dataclass(frozen=True)
class WriteTarget:
    """What a PUT or a form POST asks for, checked before any of its body is read."""

    path: str  # the file (PUT) or the directory (POST)
    expires_at: float | None
    requirement: Requirement
    expected_sha256: str | None = None  # PUT only
    boundary: bytes = b""  # POST only


async def put_target(request: web.Request) -> WriteTarget:
    """A PUT's path, length, digest, TTL and preconditions (400, 409, 412, 413)."""
    path, _ = requested_path(request)  # a file URL: routes.FilesResource sees to that
    return await file_target(request, path)


async def file_target(request: web.Request, path: str) -> WriteTarget:
    """`put_target` for a file `path` the request names some other way."""
    config = request.config_dict  # a new ChainMapProxy at each call: taken once
    settings = config[SETTINGS]
    check_declared_length(request, settings)
    expected = expected_digest(path, expected_sha256(request.headers))
    expires_at = expires_at_for(request, settings, path)
    conditions = write_conditions(request)
    requirement = requirement_for(settings, request.method, conditions)
    if may_refuse(conditions, settings, path):
        # Fail fast; judged again at the commit.
        requirement(await config[STORE].current(path))
    return WriteTarget(path, expires_at, requirement, expected_sha256=expected)


async def form_target(request: web.Request) -> WriteTarget:
    """A form POST's directory, boundary, length and TTL (400, 413)."""
    settings = request.config_dict[SETTINGS]
    dir_path, _ = requested_path(request)  # a directory URL: routes.FilesResource
    boundary = form_boundary(request.headers.get(hdrs.CONTENT_TYPE, ""))
    check_declared_length(request, settings)
    # Its files' policy (prefixes end in '/'); post_files works out each part's retention.
    expires_at = expires_at_for(request, settings, f"{dir_path}/" if dir_path else "")
    requirement = write_requirement(request, settings)
    return WriteTarget(dir_path, expires_at, requirement, boundary=boundary)


async def put_file(request: web.Request) -> web.Response:
    """PUT: stream the body into a new version, verify it, publish it atomically."""
    target = await put_target(request)
    info, replaced = await store_stream(
        request,
        target.path,
        body_chunks(request, request.config_dict[SETTINGS]),
        content_type=request.headers.get(hdrs.CONTENT_TYPE),
        expires_at=target.expires_at,
        expected_sha256=target.expected_sha256,
        requirement=target.requirement,
    )
    return put_answer(info, replaced)


# `web.json_response`'s type, given with a body encoded once: json_response encodes text
# and then parses its own content type again, twice the cost of the rest of the answer.
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def put_answer(info: ArtifactInfo, replaced: bool) -> web.Response:
    """What a PUT answers once its version is committed (a resumable upload's last request
    answers the same)."""
    document = artifact_document(info)
    return web.Response(
        body=json.dumps(document).encode(),
        status=200 if replaced else 201,
        headers=CIMultiDict(
            (
                (hdrs.CONTENT_TYPE, JSON_CONTENT_TYPE),
                ("ETag", document["etag"]),
                ("Location", file_url(info.path)),
            )
        ),
    )


async def _current_or_none(request: web.Request, path: str) -> ArtifactInfo | None:
    try:
        return await request.config_dict[STORE].info(path)
    except NotFoundError:
        return None


async def delete_file(request: web.Request) -> web.Response:
    path, _ = requested_path(request)  # a file URL: routes.FilesResource sees to that
    settings = request.config_dict[SETTINGS]
    info = await request.config_dict[STORE].delete(
        path, require=write_requirement(request, settings)
    )
    request.config_dict[EVENTS].publish("deleted", artifact_document(info))
    return web.Response(status=204)


async def post_files(request: web.Request) -> web.StreamResponse:
    """POST multipart/form-data to a directory: store each file part under it.

    All or nothing: every file part is written to its own upload first, and they are
    committed only once the form's close delimiter has arrived, so a form cut short or
    malformed (400) leaves every path as it was.
    """
    target = await form_target(request)
    dir_path, requirement = target.path, target.requirement
    ttl_text = requested_ttl(request)  # or the form's own `ttl` field, below
    conditions = write_conditions(request)
    form = FormReader(body_chunks(request, request.config_dict[SETTINGS]), target.boundary)
    staged: list[Upload] = []
    paths: list[str] = []
    try:
        while (part := await form.next_part()) is not None:
            if not part.filename:
                if part.name == "ttl":  # the browse page's "keep for" field, sent before files
                    field_text = (await part.text()).strip()
                    if field_text:
                        parse_duration(field_text)  # a bad one is a 400 even after the files
                        ttl_text = field_text
                continue  # other fields (and empty file inputs) are skipped
            if len(staged) >= MAX_FORM_FILES:
                raise InvalidValueError(f"a form may hold at most {MAX_FORM_FILES} files")
            path = _part_path(dir_path, part.filename)
            if may_refuse(conditions, request.config_dict[SETTINGS], path):
                # Fail fast; judged again at the commit.
                requirement(await request.config_dict[STORE].current(path))
            upload = await request.config_dict[STORE].begin_upload(
                path,
                content_type=stored_type(part.content_type),
                expires_at=expires_at(request.config_dict[SETTINGS], path, ttl_text),
            )
            staged.append(upload)
            paths.append(path)
            async for chunk in part.chunks():
                await upload.write(chunk)
        if not staged:
            raise InvalidValueError("the form contained no file")
        for path in paths:
            # A directory there (409) refuses the form before any part is stored: a store
            # may find it only when the part's commit makes its temp file.
            await _current_or_none(request, path)
        stored = [
            artifact_document(await publish(request, *await upload.commit(require=requirement)))
            for upload in staged
        ]
    finally:
        for upload in staged:
            await upload.abort()  # a no-op for those committed
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
