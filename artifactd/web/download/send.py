"""Executing a download plan: one Response when the answer is ready at once, else the
headers then the body (sendfile, chunks, multipart parts, or gzip while streaming).

Memory per download is one chunk: every `write` waits for the socket to drain before the
next read, so a slow client never makes the server read ahead.
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web

from artifactd.errors import PreconditionFailedError
from artifactd.http.ranges import ByteRange
from artifactd.store.base import ArtifactReader
from artifactd.web.download.gzip import write_gzipped
from artifactd.web.download.plan import BodySource, DownloadPlan, plan_download
from artifactd.web.download.zerocopy import ZeroCopyUnavailableError, send_file_range
from artifactd.web.errors import json_error

log = logging.getLogger("artifactd.web")

# Globals, not `BodySource.X` (a slow lookup through the enum's metaclass on Python 3.11).
_NONE = BodySource.NONE
_HEADERS = BodySource.HEADERS
_INLINE = BodySource.INLINE
_SENDFILE = BodySource.SENDFILE
_MULTIPART = BodySource.MULTIPART
_GZIP = BodySource.GZIP
_FAILED = BodySource.FAILED


def respond_now(
    plan: DownloadPlan, reader: ArtifactReader, *, zero_copy: bool
) -> web.Response | None:
    """The answer when it is ready without waiting (a 304, a 416, a HEAD, a small body in
    memory or in the page cache): one Response, headers and body in a single write. None: it has to
    be sent (`send_plan`). Raises PreconditionFailedError for a 412."""
    body = plan.body
    if body is _INLINE:
        if plan.status == 416:
            content_range = plan.content_range or ""  # always set on a 416 plan
            return json_error(416, "range not satisfiable", {"Content-Range": content_range})
        if plan.ranges:
            (span,) = plan.ranges
            data = reader.read_now(span.start, span.length, allow_fd=zero_copy)
            if data is None:
                return None
        else:
            data = b""
        response = web.Response(status=plan.status, headers=plan.headers, body=data)
        if plan.content_range is not None:
            response.headers[hdrs.CONTENT_RANGE] = plan.content_range
        return response
    if body is _NONE:
        return web.Response(status=plan.status, headers=plan.headers)
    if body is _HEADERS and plan.content_type is None and plan.content_length is not None:
        # A HEAD: the GET's headers, Content-Length included (RFC 9110 §9.3.2, §8.6), which
        # a Response keeps for a HEAD when set (it would count its empty body otherwise).
        response = web.Response(status=plan.status, headers=plan.headers)
        response.headers[hdrs.CONTENT_LENGTH] = str(plan.content_length)
        if plan.content_range is not None:
            response.headers[hdrs.CONTENT_RANGE] = plan.content_range
        return response
    if body is _FAILED:
        raise PreconditionFailedError("the artifact does not match the request's conditions")
    return None


async def send_plan(
    request: web.Request,
    plan: DownloadPlan,
    reader: ArtifactReader,
    *,
    chunk_size: int,
    zero_copy: bool,
) -> web.StreamResponse:
    """Answer with `plan` for the opened artifact `reader` (the version it was made for)."""
    immediate = respond_now(plan, reader, zero_copy=zero_copy)
    if immediate is not None:
        return immediate
    response = web.StreamResponse(status=plan.status, headers=plan.headers)
    if plan.content_type is not None:
        response.headers[hdrs.CONTENT_TYPE] = plan.content_type
    if plan.content_range is not None:
        response.headers[hdrs.CONTENT_RANGE] = plan.content_range
    if plan.content_length is None:
        response.enable_chunked_encoding()  # its length is not known before it is sent
    else:
        response.content_length = plan.content_length
    await response.prepare(request)
    body = plan.body
    if body is _MULTIPART:
        for framing, part in zip(plan.framing, plan.ranges, strict=False):
            await response.write(framing)
            await _stream_span(request, response, reader, part, chunk_size)
        await response.write(plan.framing[-1])
    elif body is _GZIP:
        await write_gzipped(response, reader, reader.info.size, chunk_size)
    elif body is not _HEADERS:
        # STREAM, SENDFILE, or an INLINE span whose bytes were not at hand: the same bytes,
        # by sendfile where zero copy is allowed.
        sendfile = body is _SENDFILE or (body is _INLINE and zero_copy)
        for span in plan.ranges:
            await _send_span(request, response, reader, span, chunk_size, sendfile)
    await response.write_eof()
    return response


async def send_artifact(
    request: web.Request,
    reader: ArtifactReader,
    *,
    chunk_size: int,
    max_ranges: int,
    vary: bool = False,
    content_encoding: str | None = None,
    content_type: str | None = None,
    path: str | None = None,
    zero_copy: bool = True,
) -> web.StreamResponse:
    """Answer a GET or HEAD for an opened artifact: plan, then send (arguments as for
    `plan_download`)."""
    plan = plan_download(
        request.method,
        request.headers,
        reader.info,
        max_ranges=max_ranges,
        zero_copy=zero_copy,
        vary=vary,
        content_encoding=content_encoding,
        content_type=content_type,
        path=path,
    )
    return await send_plan(request, plan, reader, chunk_size=chunk_size, zero_copy=zero_copy)


async def _send_span(
    request: web.Request,
    response: web.StreamResponse,
    reader: ArtifactReader,
    span: ByteRange,
    chunk_size: int,
    sendfile: bool,
) -> None:
    """One span of the body: sendfile when the bytes are in a local file, else chunks."""
    file_fd = reader.fileno() if sendfile else None
    if file_fd is not None:
        try:
            sent = await send_file_range(request, response, file_fd, span.start, span.length)
        except ZeroCopyUnavailableError:
            pass
        else:
            if sent < span.length:
                _abort_short(request, reader)
            return
    await _stream_span(request, response, reader, span, chunk_size)


def _abort_short(request: web.Request, reader: ArtifactReader) -> None:
    """Truncated underneath us (only possible for files edited by hand): the promised
    Content-Length cannot be met, so cut the connection rather than hang or lie."""
    log.error("%s shrank while being sent; closing the connection", reader.info.path)
    if request.transport is not None:
        request.transport.close()


async def _stream_span(
    request: web.Request,
    response: web.StreamResponse,
    reader: ArtifactReader,
    span: ByteRange,
    chunk_size: int,
) -> None:
    """Copy one span, a chunk at a time, waiting for the socket between chunks."""
    offset, end = span.start, span.end + 1
    while offset < end:
        data = await reader.read(offset, min(chunk_size, end - offset))
        if not data:
            _abort_short(request, reader)
            return
        await response.write(data)
        offset += len(data)
