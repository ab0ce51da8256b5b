"""Sending one opened artifact: preconditions, ranges, then the bytes in bounded chunks.

Memory per download is one chunk: every `write` waits for the socket to drain before the
next read, so a slow client never makes the server read ahead.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import LooseHeaders
from multidict import CIMultiDict, CIMultiDictProxy

from artifactd.errors import PreconditionFailedError
from artifactd.http.byteranges import (
    closing_delimiter,
    make_boundary,
    multipart_content_length,
    multipart_content_type,
    part_header,
)
from artifactd.http.conditional import (
    Precondition,
    evaluate_preconditions,
    format_http_date,
    if_range_matches,
)
from artifactd.http.digests import repr_digest_header
from artifactd.http.ranges import ByteRange, RangeDecision, RangeKind, evaluate_range
from artifactd.store.base import ArtifactInfo, ArtifactReader
from artifactd.web.errors import json_error
from artifactd.web.zerocopy import ZeroCopyUnavailableError, send_file_range

# Bodies up to this size that can be read without waiting go out in one Response.
INLINE_READ_BYTES = 256 * 1024

# A GET with none of these is answered 200 with the whole body, without evaluating
# preconditions or ranges (4 % of a 4 KiB download, measured).
_CONDITIONS_AND_RANGE = (
    hdrs.IF_MATCH,
    hdrs.IF_NONE_MATCH,
    hdrs.IF_MODIFIED_SINCE,
    hdrs.IF_UNMODIFIED_SINCE,
    hdrs.RANGE,
)
_WHOLE = RangeDecision(RangeKind.FULL)

log = logging.getLogger("artifactd.web")


def _has_any(headers: CIMultiDictProxy[str], names: tuple[str, ...]) -> bool:
    """Whether any of `names` is present (case-insensitively, as header names are)."""
    for name in names:  # noqa: SIM110 - a plain loop is cheaper than any() with a generator
        if name in headers:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Representation:
    """The headers every answer about one version repeats, worked out once per version
    and variant (hot artifacts are served again and again). Read-only: responses copy."""

    etag: str
    not_modified_headers: CIMultiDictProxy[str]  # what a 304 repeats (RFC 9110 §15.4.5)
    headers: CIMultiDictProxy[str]  # validators, Accept-Ranges, digests, Vary, Content-Encoding
    body_headers: CIMultiDictProxy[str]  # the same with the body's Content-Type


@functools.lru_cache(maxsize=1024)
def representation(
    info: ArtifactInfo, media_type: str, vary: bool, content_encoding: str | None
) -> Representation:
    """`vary` adds `Vary: Accept-Encoding` (the path has a compressed variant); a
    `content_encoding` describes a precompressed sibling sent in place of the artifact."""
    etag = info.etag
    validators = CIMultiDict({"ETag": etag, "Last-Modified": format_http_date(info.modified_at)})
    if vary:
        validators["Vary"] = "Accept-Encoding"
    headers = validators.copy()
    headers["Accept-Ranges"] = "bytes"
    if info.sha256:
        headers["Repr-Digest"] = repr_digest_header(info.sha256)
        headers["X-Checksum-Sha256"] = info.sha256
    if content_encoding:
        headers["Content-Encoding"] = content_encoding
    body_headers = headers.copy()
    body_headers[hdrs.CONTENT_TYPE] = media_type
    return Representation(
        etag,
        CIMultiDictProxy(validators),
        CIMultiDictProxy(headers),
        CIMultiDictProxy(body_headers),
    )


def not_modified_or_failed(
    request: web.BaseRequest, etag: str, last_modified: float, not_modified_headers: LooseHeaders
) -> web.Response | None:
    """RFC 9110 §13.2.2: evaluate the preconditions in the RFC's order.

    Returns a 304 (with `not_modified_headers`) to send, raises PreconditionFailedError for
    412, None to go on."""
    headers = request.headers
    if_match = headers.get(hdrs.IF_MATCH)
    if_none_match = headers.get(hdrs.IF_NONE_MATCH)
    if_modified_since = headers.get(hdrs.IF_MODIFIED_SINCE)
    if_unmodified_since = headers.get(hdrs.IF_UNMODIFIED_SINCE)
    if if_match is if_none_match is if_modified_since is if_unmodified_since is None:
        return None  # the usual download: no preconditions at all
    outcome = evaluate_preconditions(
        request.method,
        if_match=if_match,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
        if_unmodified_since=if_unmodified_since,
        etag=etag,
        last_modified=last_modified,
    )
    if outcome is Precondition.NOT_MODIFIED:
        return web.Response(status=304, headers=not_modified_headers)
    if outcome is Precondition.FAILED:
        raise PreconditionFailedError("the artifact does not match the request's conditions")
    return None


def immediate_answer(
    request: web.BaseRequest,
    reader: ArtifactReader,
    *,
    max_ranges: int,
    vary: bool = False,
    content_encoding: str | None = None,
    content_type: str | None = None,
    zero_copy: bool = True,
) -> web.Response | None:
    """The answer to a GET or HEAD of an opened artifact when it is ready without waiting:
    a 304, a 416, or a small body (in memory or in the page cache) in one Response, headers
    and body in a single write. None: the body has to be streamed (`send_artifact`).
    Raises PreconditionFailedError for a 412. Arguments as for `send_artifact`."""
    info = reader.info
    rep = representation(info, content_type or info.content_type, vary, content_encoding)
    if request.method == hdrs.METH_GET and not _has_any(request.headers, _CONDITIONS_AND_RANGE):
        decision = _WHOLE  # the usual download: no preconditions, no Range to evaluate
    else:
        early = not_modified_or_failed(
            request, rep.etag, info.modified_at, rep.not_modified_headers
        )
        if early is not None:
            return early
        decision = _range_decision(request, rep, info, max_ranges)
        if decision.kind is RangeKind.UNSATISFIABLE:
            headers = CIMultiDict(rep.headers)
            headers["Content-Range"] = f"bytes */{info.size}"
            return json_error(416, "range not satisfiable", headers)
        if request.method == hdrs.METH_HEAD or len(decision.ranges) > 1:
            return None
    if decision.kind is RangeKind.FULL:
        body = _inline_body(reader, 0, info.size, zero_copy)
        return None if body is None else web.Response(headers=rep.body_headers, body=body)
    (only,) = decision.ranges
    body = _inline_body(reader, only.start, only.length, zero_copy)
    if body is None:
        return None
    partial = web.Response(status=206, headers=rep.body_headers, body=body)
    partial.headers[hdrs.CONTENT_RANGE] = only.content_range(info.size)
    return partial


def _range_decision(
    request: web.BaseRequest, rep: Representation, info: ArtifactInfo, max_ranges: int
) -> RangeDecision:
    # RFC 9110 §13.1.5: a failed If-Range means "send me the whole thing".
    range_header = request.headers.get(hdrs.RANGE)
    if range_header is not None and not if_range_matches(
        request.headers.get(hdrs.IF_RANGE), etag=rep.etag, last_modified=info.modified_at
    ):
        range_header = None
    return evaluate_range(range_header, info.size, max_ranges)


async def send_artifact(
    request: web.Request,
    reader: ArtifactReader,
    *,
    chunk_size: int,
    max_ranges: int,
    vary: bool = False,
    content_encoding: str | None = None,
    content_type: str | None = None,
    zero_copy: bool = True,
) -> web.StreamResponse:
    """Answer a GET or HEAD for an opened artifact.

    `vary` adds `Vary: Accept-Encoding` (the path has a compressed variant);
    `content_encoding`/`content_type` describe a precompressed sibling sent in place of the
    artifact (its own ETag and digest then describe the encoded bytes, as RFC 9530 says).
    `zero_copy` lets whole files and single ranges of local files go out with sendfile.
    """
    immediate = immediate_answer(
        request,
        reader,
        max_ranges=max_ranges,
        vary=vary,
        content_encoding=content_encoding,
        content_type=content_type,
        zero_copy=zero_copy,
    )
    if immediate is not None:
        return immediate

    info = reader.info
    media_type = content_type or info.content_type
    rep = representation(info, media_type, vary, content_encoding)
    decision = _range_decision(request, rep, info, max_ranges)
    send_body = request.method != hdrs.METH_HEAD
    multipart = len(decision.ranges) > 1
    response = web.StreamResponse(headers=rep.headers if multipart else rep.body_headers)
    if decision.kind is RangeKind.FULL:
        response.content_length = info.size
        await response.prepare(request)
        if send_body and info.size:
            whole = ByteRange(0, info.size - 1)
            await _send_range(request, response, reader, whole, chunk_size, zero_copy)
    elif len(decision.ranges) == 1:
        (only,) = decision.ranges
        response.set_status(206)
        response.headers[hdrs.CONTENT_RANGE] = only.content_range(info.size)
        response.content_length = only.length
        await response.prepare(request)
        if send_body:
            await _send_range(request, response, reader, only, chunk_size, zero_copy)
    else:
        boundary = make_boundary()
        response.set_status(206)
        response.headers[hdrs.CONTENT_TYPE] = multipart_content_type(boundary)
        response.content_length = multipart_content_length(
            boundary, media_type, decision.ranges, info.size
        )
        await response.prepare(request)
        if send_body:
            for part in decision.ranges:
                await response.write(part_header(boundary, media_type, part, info.size))
                await _stream_range(request, response, reader, part, chunk_size)
            await response.write(closing_delimiter(boundary))
    await response.write_eof()
    return response


def _inline_body(
    reader: ArtifactReader, offset: int, length: int, zero_copy: bool
) -> bytes | bytearray | None:
    """The bytes of a small span if they can be had without waiting, else None."""
    if length > INLINE_READ_BYTES:
        return None
    if length == 0:
        return b""
    return reader.read_now(offset, length, allow_fd=zero_copy)


async def _send_range(
    request: web.Request,
    response: web.StreamResponse,
    reader: ArtifactReader,
    byte_range: ByteRange,
    chunk_size: int,
    zero_copy: bool,
) -> None:
    """The body of a response: sendfile when the bytes are in a local file, else chunks."""
    file_fd = reader.fileno() if zero_copy else None
    if file_fd is not None:
        try:
            sent = await send_file_range(
                request, response, file_fd, byte_range.start, byte_range.length
            )
        except ZeroCopyUnavailableError:
            pass
        else:
            if sent < byte_range.length:
                _abort_short(request, reader)
            return
    await _stream_range(request, response, reader, byte_range, chunk_size)


def _abort_short(request: web.Request, reader: ArtifactReader) -> None:
    """Truncated underneath us (only possible for files edited by hand): the promised
    Content-Length cannot be met, so cut the connection rather than hang or lie."""
    log.error("%s shrank while being sent; closing the connection", reader.info.path)
    if request.transport is not None:
        request.transport.close()


async def _stream_range(
    request: web.Request,
    response: web.StreamResponse,
    reader: ArtifactReader,
    byte_range: ByteRange,
    chunk_size: int,
) -> None:
    """Copy one range, a chunk at a time, waiting for the socket between chunks."""
    offset, end = byte_range.start, byte_range.end + 1
    while offset < end:
        data = await reader.read(offset, min(chunk_size, end - offset))
        if not data:
            _abort_short(request, reader)
            return
        await response.write(data)
        offset += len(data)
