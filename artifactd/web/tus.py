"""tus 1.0.0 at `/uploads/` (https://tus.io/protocols/resumable-upload, protocol.md of
tus/tus-resumable-upload-protocol): core, creation, creation-with-upload,
creation-defer-length, expiration, checksum (sha256) and termination.

An upload resource collects the bytes over as many PATCH requests as the client needs; once
the last byte is in, they go through the same verified atomic commit as a PUT
(`uploads.store_stream`: expected digest, --immutable, policies, events), then the resource
is removed. Resources live beside the filesystem store's state (artifactd/resumable); the
other backends answer 501 for now.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from email.utils import formatdate

from aiohttp import hdrs, web

from artifactd.errors import (
    ConflictError,
    InvalidDigestError,
    InvalidValueError,
    NotFoundError,
    StorageFullError,
    StoreUnavailableError,
    UploadTooLargeError,
)
from artifactd.paths import is_internal, parse_artifact_path
from artifactd.resumable.owners import create_within_cap
from artifactd.resumable.resources import UploadResource, UploadResources
from artifactd.store.filesystem.store import FilesystemStore
from artifactd.store.filesystem.upload import translate_write_error
from artifactd.web import uploads
from artifactd.web.errors import json_error
from artifactd.web.files import file_url
from artifactd.web.keys import SETTINGS, STORE
from artifactd.web.security import TOKEN_INFO
from artifactd.web.uploads import (
    body_chunks,
    expected_digest,
    expires_at,
    store_stream,
    write_requirement,
)

UPLOADS_PREFIX = "/uploads/"
TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination"
)
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
# protocol.md "Checksum": 460 Checksum Mismatch is tus's own status code.
CHECKSUM_MISMATCH = 460
_COPY_SIZE = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS = re.compile(r"[0-9]{1,19}")


def _tus_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # protocol.md "Tus-Resumable": in every response except to OPTIONS.
    headers = {"Tus-Resumable": TUS_VERSION}
    headers.update(extra or {})
    return headers


def _error(status: int, reason: str, extra: Mapping[str, str] | None = None) -> web.Response:
    response = json_error(status, reason)
    response.headers.update(_tus_headers(extra))
    return response


def _resources(request: web.Request) -> UploadResources | None:
    store = request.config_dict[STORE]
    if isinstance(store, FilesystemStore):
        return UploadResources(store.state_dir)
    return None


def _owner(request: web.Request) -> str | None:
    info = request.get(TOKEN_INFO)
    return None if info is None else info.name


def _refused(request: web.Request) -> web.Response | None:
    """412 without `Tus-Resumable: 1.0.0` (protocol.md "Tus-Resumable"), 501 where the
    store keeps no upload resources."""
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        return _error(412, "Tus-Resumable: 1.0.0 required", {"Tus-Version": TUS_VERSION})
    if _resources(request) is None:
        return _error(501, "resumable uploads need the filesystem backend")
    return None


def _outside_prefix(request: web.Request, path: str) -> web.Response | None:
    info = request.get(TOKEN_INFO)
    if info is not None and info.prefix is not None and not info.covers(path):
        return _error(403, f"token {info.name!r} is limited to {info.prefix}/")
    return None


def _expires_header(resource: UploadResource) -> dict[str, str]:
    # protocol.md "Expiration": Upload-Expires in RFC 9110's HTTP-date format.
    return {"Upload-Expires": formatdate(resource.expires_at, usegmt=True)}


def parse_metadata(value: str) -> dict[str, str]:
    """protocol.md "Upload-Metadata": comma-separated `key base64value` pairs (the value
    may be absent); keys unique, values decoded as UTF-8 here."""
    pairs: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, encoded = item.partition(" ")
        if not key or " " in key or key in pairs:
            raise InvalidValueError(f"malformed Upload-Metadata pair {key!r}")
        try:
            pairs[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidValueError(f"Upload-Metadata {key!r} is not base64 UTF-8") from exc
    return pairs


def _length(value: str, name: str) -> int:
    if not _DIGITS.fullmatch(value.strip()):
        raise InvalidValueError(f"{name} must be a non-negative integer")
    return int(value.strip())


def _piece_checksum(header: str | None) -> bytes | None:
    """protocol.md "Checksum": `Upload-Checksum: <algorithm> <base64>`; only sha256 is
    supported (400 for another)."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise InvalidValueError(f"unsupported checksum algorithm {algorithm!r}")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error as exc:
        raise InvalidValueError("Upload-Checksum is not base64") from exc
    if len(digest) != hashlib.sha256().digest_size:
        raise InvalidValueError("Upload-Checksum is not a SHA-256")
    return digest


async def options(request: web.Request) -> web.Response:
    """protocol.md "OPTIONS": the server's versions, extensions and limits (204)."""
    settings = request.config_dict[SETTINGS]
    return web.Response(
        status=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(settings.max_upload_size),
            "Tus-Checksum-Algorithm": "sha256",
        },
    )


async def create(request: web.Request) -> web.StreamResponse:
    """protocol.md "Creation": POST with Upload-Length (or Upload-Defer-Length: 1) and
    Upload-Metadata (`path` required) → 201 with Location; with a body, "Creation With
    Upload" appends it at once."""
    refused = _refused(request)
    if refused is not None:
        return refused
    settings = request.config_dict[SETTINGS]
    length_header = request.headers.get("Upload-Length")
    defer = request.headers.get("Upload-Defer-Length")
    if length_header is not None:
        length: int | None = _length(length_header, "Upload-Length")
    elif defer is not None and defer.strip() == "1":
        length = None
    else:
        raise InvalidValueError("Upload-Length or Upload-Defer-Length: 1 is required")
    if length is not None and length > settings.max_upload_size:
        raise UploadTooLargeError(
            f"{length} bytes is over the limit of {settings.max_upload_size} bytes"
        )
    metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
    if "path" not in metadata:
        raise InvalidValueError("Upload-Metadata must name the artifact's `path`")
    path = parse_artifact_path(metadata["path"].lstrip("/"))
    if not path or is_internal(path):
        raise InvalidValueError(f"unusable artifact path {metadata['path']!r}")
    outside = _outside_prefix(request, path)
    if outside is not None:
        return outside
    ttl = metadata.get("ttl") or None
    expires_at(settings, path, ttl)  # a bad TTL is a 400 now, not at completion
    declared = metadata.get("sha256") or None
    if declared is not None and not _SHA256_HEX.fullmatch(declared):
        raise InvalidDigestError("the `sha256` metadata must be 64 hex digits")
    expected = expected_digest(path, declared.lower() if declared else None)
    resources = _resources(request)
    assert resources is not None  # _refused
    owner = _owner(request)
    try:
        resource = await asyncio.to_thread(
            create_within_cap,
            resources,
            owner,
            settings.max_open_uploads,
            functools.partial(
                resources.create,
                path,
                owner=owner,
                length=length,
                expires_at=time.time() + settings.upload_expiry,
                ttl=ttl,
                content_type=metadata.get("content_type") or None,
                sha256=expected,
                metadata=request.headers.get("Upload-Metadata"),
            ),
        )
    except OSError as exc:  # a full disk: 507, as for a PUT
        raise translate_write_error(exc) from exc
    location = f"{UPLOADS_PREFIX}{resource.id}"
    headers = _tus_headers({"Location": location, **_expires_header(resource)})
    if request.can_read_body and request.content_length != 0:
        # protocol.md "Creation With Upload": the body is the first piece.
        response = await _append(request, resources, resource)
        if response.status != 204:
            return response
        headers["Upload-Offset"] = response.headers["Upload-Offset"]
        headers.update(_completed_headers(response))
    elif length == 0:
        # protocol.md "POST": an empty upload is complete once created.
        headers.update(await _complete(request, resources, resource))
    return web.Response(status=201, headers=headers)


def _completed_headers(response: web.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in ("ETag",) if name in response.headers}


def _owned(request: web.Request, resources: UploadResources) -> UploadResource:
    """The resource the URL names, if it belongs to the request's token (else 404, as if
    it did not exist: its id stays a secret to other tokens)."""
    resource = resources.load(request.match_info["upload_id"])
    if resource.owner != _owner(request):
        raise NotFoundError("no such upload")
    return resource


async def _owned_resource(
    request: web.Request,
) -> tuple[UploadResources, UploadResource] | web.Response:
    """What every request on one upload starts with: the 412/501 of `_refused`, then the
    resource the URL names if the request's token owns it (404 otherwise, from `_owned`)."""
    refused = _refused(request)
    if refused is not None:
        return refused
    resources = _resources(request)
    assert resources is not None  # `_refused` answered 501 otherwise
    return resources, await asyncio.to_thread(_owned, request, resources)


async def head(request: web.Request) -> web.StreamResponse:
    """protocol.md "HEAD": Upload-Offset, Upload-Length (or Upload-Defer-Length) and
    Cache-Control: no-store."""
    found = await _owned_resource(request)
    if isinstance(found, web.Response):
        return found
    _, resource = found
    headers = _tus_headers({"Upload-Offset": str(resource.offset), "Cache-Control": "no-store"})
    if resource.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(resource.length)
    if resource.metadata is not None:
        # protocol.md "Upload-Metadata": HEAD repeats it as the client sent it.
        headers["Upload-Metadata"] = resource.metadata
    headers.update(_expires_header(resource))
    return web.Response(status=200, headers=headers)


async def patch(request: web.Request) -> web.StreamResponse:
    """protocol.md "PATCH": append at Upload-Offset (409 when it is not the resource's),
    then 204 with the new offset; the last byte commits the artifact."""
    found = await _owned_resource(request)
    if isinstance(found, web.Response):
        return found
    resources, resource = found
    outside = _outside_prefix(request, resource.path)
    if outside is not None:
        return outside
    return await _append(request, resources, resource)


async def _append(
    request: web.Request, resources: UploadResources, resource: UploadResource
) -> web.Response:
    if request.content_type != OFFSET_OCTET_STREAM:
        return _error(415, f"Content-Type must be {OFFSET_OCTET_STREAM}")
    # One request appends at a time, across the processes of --workers too (flock); the
    # state is read again under the lock, as another request may just have moved it.
    lock = await asyncio.to_thread(resources.lock, resource.id)
    if lock is None:
        raise ConflictError("another request is appending to this upload")
    try:
        resource = await asyncio.to_thread(resources.load, resource.id)
        return await _append_locked(request, resources, resource)
    finally:
        await asyncio.to_thread(os.close, lock)


async def _append_locked(
    request: web.Request, resources: UploadResources, resource: UploadResource
) -> web.Response:
    settings = request.config_dict[SETTINGS]
    if request.method == hdrs.METH_PATCH:
        offset_header = request.headers.get("Upload-Offset")
        if offset_header is None:
            raise InvalidValueError("Upload-Offset is required")
        if _length(offset_header, "Upload-Offset") != resource.offset:
            return _error(409, f"the upload's offset is {resource.offset}")
    if resource.length is None and "Upload-Length" in request.headers:
        # protocol.md "Upload-Defer-Length": the length is set once, on a later PATCH.
        length = _length(request.headers["Upload-Length"], "Upload-Length")
        if length < resource.offset or length > settings.max_upload_size:
            raise UploadTooLargeError(f"Upload-Length {length} is not usable")
        resource.length = length
    checksum = _piece_checksum(request.headers.get("Upload-Checksum"))
    return await _receive(request, resources, resource, checksum)


async def _receive(
    request: web.Request,
    resources: UploadResources,
    resource: UploadResource,
    checksum: bytes | None,
) -> web.Response:
    settings = request.config_dict[SETTINGS]
    limit = settings.max_upload_size if resource.length is None else resource.length
    start = resource.offset
    piece = hashlib.sha256()
    try:
        async for chunk in body_chunks(request, settings):
            if resource.offset + len(chunk) > limit:
                raise UploadTooLargeError(f"the upload is over {limit} bytes")
            piece.update(chunk)
            try:
                await asyncio.to_thread(resources.append, resource, chunk)
            except OSError as exc:
                raise translate_write_error(exc) from exc
    except BaseException:
        # protocol.md "PATCH": the bytes received are kept unless a checksum covers them.
        # On a full disk even the state may not be writable: the one saved last stands
        # (the acknowledged offset; the bytes after it go at the next load).
        with contextlib.suppress(OSError):
            if checksum is not None:
                await asyncio.to_thread(resources.truncate, resource, start)
            await asyncio.to_thread(resources.sync, resource)
        raise
    if checksum is not None and piece.digest() != checksum:
        # protocol.md "Checksum": 460, and the piece is discarded (the offset unchanged).
        await asyncio.to_thread(resources.truncate, resource, start)
        await _sync(resources, resource)
        return _error(CHECKSUM_MISMATCH, "checksum mismatch")
    await _sync(resources, resource)
    headers = _tus_headers({"Upload-Offset": str(resource.offset), **_expires_header(resource)})
    if resource.length is not None and resource.offset == resource.length:
        headers.update(await _complete(request, resources, resource))
    return web.Response(status=204, headers=headers)


async def _sync(resources: UploadResources, resource: UploadResource) -> None:
    """The bytes, then the state counting them, made durable; a full disk is a 507 and
    leaves the state saved last."""
    try:
        await asyncio.to_thread(resources.sync, resource)
    except OSError as exc:
        raise translate_write_error(exc) from exc


async def _complete(
    request: web.Request, resources: UploadResources, resource: UploadResource
) -> dict[str, str]:
    """The last byte is in: the bytes go through a PUT's verified atomic commit, then the
    resource is removed, also when the commit refuses them (a digest mismatch, --immutable,
    a precondition: the client starts again). A full disk or an unavailable store keeps
    it: an empty PATCH at the final offset tries the commit again."""
    settings = request.config_dict[SETTINGS]
    try:
        info, _ = await store_stream(
            request,
            resource.path,
            _file_chunks(resources, resource),
            content_type=resource.content_type,
            expires_at=expires_at(settings, resource.path, resource.ttl),
            expected_sha256=resource.sha256,
            requirement=write_requirement(request, settings),
        )
    except (StorageFullError, StoreUnavailableError):
        raise
    except BaseException:
        await asyncio.to_thread(resources.remove, resource.id)
        raise
    await asyncio.to_thread(resources.remove, resource.id)
    return {"ETag": info.etag, "Content-Location": file_url(info.path)}


async def _file_chunks(
    resources: UploadResources, resource: UploadResource
) -> AsyncIterator[bytes]:
    file = await asyncio.to_thread(open, resources.data_path(resource.id), "rb")
    try:
        while chunk := await asyncio.to_thread(file.read, _COPY_SIZE):
            yield chunk
    finally:
        file.close()


async def delete(request: web.Request) -> web.StreamResponse:
    """protocol.md "Termination": DELETE → 204, the resource and its bytes are gone."""
    found = await _owned_resource(request)
    if isinstance(found, web.Response):
        return found
    resources, resource = found
    await asyncio.to_thread(resources.remove, resource.id)
    return web.Response(status=204, headers=_tus_headers())


def add_routes(app: web.Application) -> None:
    app.router.add_route(hdrs.METH_OPTIONS, UPLOADS_PREFIX, options)
    # With Expect: 100-continue, the access policy and the declared length are judged
    # before the body is sent, as for a PUT.
    expect = uploads.declared_length_expect_handler
    app.router.add_route(hdrs.METH_POST, UPLOADS_PREFIX, create, expect_handler=expect)
    resource = app.router.add_resource(UPLOADS_PREFIX + "{upload_id}")
    resource.add_route(hdrs.METH_HEAD, head)
    resource.add_route(hdrs.METH_PATCH, patch, expect_handler=expect)
    resource.add_route(hdrs.METH_DELETE, delete)
