"""The download decision: from a request's method and headers and an artifact's metadata,
one plan (status, headers, byte ranges, where the body comes from) that every way of
sending executes. Pure: no I/O, no aiohttp.

RFC 9110 in its order: preconditions (§13.2.2), then If-Range (§13.1.5) and Range (§14).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from multidict import CIMultiDict, CIMultiDictProxy, istr

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
from artifactd.http.digests import (
    DEFAULT_DIGESTS,
    DigestFields,
    etag_and_repr_digest,
    legacy_digest_header,
    wanted_digests,
)
from artifactd.http.disposition import content_disposition
from artifactd.http.ranges import ByteRange, RangeKind, evaluate_range
from artifactd.store.base import ArtifactInfo

# Bodies up to this size that can be read without waiting go out in one Response.
INLINE_READ_BYTES = 256 * 1024

GET = "GET"
HEAD = "HEAD"
IF_MATCH = istr("If-Match")
IF_NONE_MATCH = istr("If-None-Match")
IF_MODIFIED_SINCE = istr("If-Modified-Since")
IF_UNMODIFIED_SINCE = istr("If-Unmodified-Since")
IF_RANGE = istr("If-Range")
RANGE = istr("Range")
CONTENT_TYPE = istr("Content-Type")
WANT_DIGEST = istr("Want-Digest")
WANT_REPR_DIGEST = istr("Want-Repr-Digest")

# A GET with none of these is a 200 with the whole body and the usual digest fields: no
# preconditions, ranges or digest wishes to evaluate, so its plan is worked out once per
# version (see `_plain_get`).
_CONDITIONS_RANGE_AND_WANTS = (
    IF_MATCH,
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_UNMODIFIED_SINCE,
    RANGE,
    WANT_DIGEST,
    WANT_REPR_DIGEST,
)
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


class BodySource(enum.Enum):
    """Where the body comes from: the one thing that differs between ways of sending."""

    NONE = "none"  # a 304: validators only, no body and no length (RFC 9110 §15.4.5)
    HEADERS = "headers"  # a HEAD: the GET's headers and length, no bytes
    INLINE = "inline"  # one small span (or a 416's JSON) in one Response, if its bytes
    #                    can be had without waiting; else sent as SENDFILE/STREAM would
    STREAM = "stream"  # one span, read and written a chunk at a time
    SENDFILE = "sendfile"  # one span by sendfile from the reader's local file, else STREAM
    MULTIPART = "multipart"  # multipart/byteranges (§14.6), part by part
    GZIP = "gzip"  # compressed while streamed: chunked, no Content-Length
    FAILED = "failed"  # a 412: no answer of its own, the errors middleware's JSON


# Module-level names for enum members: on Python 3.11 `BodySource.INLINE` is a class
# attribute lookup through the enum's metaclass, many times slower than a global's.
_FULL = RangeKind.FULL
_UNSATISFIABLE = RangeKind.UNSATISFIABLE
_NONE = BodySource.NONE
_HEADERS = BodySource.HEADERS
_INLINE = BodySource.INLINE
_STREAM = BodySource.STREAM
_SENDFILE = BodySource.SENDFILE
_MULTIPART = BodySource.MULTIPART
_FAILED = BodySource.FAILED


class DownloadPlan(NamedTuple):
    """One answer, decided. Immutable: a NamedTuple, because one is made for every request
    with preconditions or a Range and a frozen dataclass is much slower to build (each
    field goes through `object.__setattr__`). `headers` is shared between answers
    (read-only: responses copy it); the per-answer parts are kept apart so a cached plan
    stays cheap."""

    status: int
    body: BodySource
    headers: CIMultiDictProxy[str]
    ranges: tuple[ByteRange, ...] = ()  # the body's spans, in order (none when empty)
    content_length: int | None = None  # None: no Content-Length (a 304, chunked, a 412)
    content_range: str | None = None  # a 206 of one range, a 416
    content_type: str | None = None  # replaces the artifact's type (multipart/byteranges)
    framing: tuple[bytes, ...] = ()  # multipart: each part's header, then the close

    @property
    def at_once(self) -> bool:
        """Whether the answer is ready at once, one Response without waiting (the hot
        path's question): a 304, an inline body (or a 416's JSON), or a HEAD's headers
        (but a multipart one's, whose length counts its framing)."""
        body = self.body
        return (
            body is _NONE
            or body is _INLINE
            or (body is _HEADERS and self.content_type is None and self.content_length is not None)
        )

    def response_headers(self) -> CIMultiDict[str]:
        """Every header the plan puts on its answer (for tests and the curious; the
        executor sets the per-answer ones itself)."""
        headers = CIMultiDict(self.headers)
        if self.content_type is not None:
            headers[CONTENT_TYPE] = self.content_type
        if self.content_range is not None:
            headers["Content-Range"] = self.content_range
        if self.content_length is not None:
            headers["Content-Length"] = str(self.content_length)
        return headers


@dataclass(frozen=True, slots=True)
class Representation:
    """The headers every answer about one version repeats, worked out once per version
    and variant (hot artifacts are served again and again). Read-only: responses copy."""

    etag: str
    not_modified_headers: CIMultiDictProxy[str]  # what a 304 repeats (RFC 9110 §15.4.5)
    headers: CIMultiDictProxy[str]  # validators, Accept-Ranges, digests, Vary, Content-Encoding
    body_headers: CIMultiDictProxy[str]  # the same with the body's Content-Type


def _representation_fields(
    info: ArtifactInfo,
    media_type: str,
    vary: bool,
    content_encoding: str | None,
    digests: DigestFields,
    path: str | None,
) -> tuple[str, list[tuple[str, str]], int]:
    """The ETag and every header about one version and variant, in order: the first
    `validators` of them are what a 304 repeats, the last is the body's Content-Type (the
    arguments are `_build_representation`'s). A list of pairs, so that an answer needing
    one set of headers builds one multidict."""
    sha256 = info.sha256
    if sha256 and digests.repr:
        etag, repr_digest = etag_and_repr_digest(sha256)  # the hex checked once
    else:
        etag, repr_digest = info.etag, None
    fields = [("ETag", etag), ("Last-Modified", format_http_date(info.modified_at))]
    if vary:
        fields.append(("Vary", "Accept-Encoding"))
    validators = len(fields)
    fields.append(("Accept-Ranges", "bytes"))
    if sha256:
        if repr_digest is not None:
            fields.append(("Repr-Digest", repr_digest))
        if digests.legacy:
            fields.append(("Digest", legacy_digest_header(sha256)))
        fields.append(("X-Checksum-Sha256", sha256))
    if content_encoding:
        fields.append(("Content-Encoding", content_encoding))
    disposition = content_disposition(info.path if path is None else path)
    if disposition is not None:
        fields.append(("Content-Disposition", disposition))
    fields.append((CONTENT_TYPE, media_type))
    return etag, fields, validators


def _build_representation(
    info: ArtifactInfo,
    media_type: str,
    vary: bool,
    content_encoding: str | None,
    digests: DigestFields = DEFAULT_DIGESTS,
    path: str | None = None,
) -> Representation:
    """`vary` adds `Vary: Accept-Encoding` (the path has a compressed variant); a
    `content_encoding` describes a precompressed sibling sent in place of the artifact;
    `digests` says which digest fields the client gets (`wanted_digests`); `path` (default
    `info.path`) is the artifact's, whose name a Content-Disposition may give (RFC 6266)."""
    etag, fields, validators = _representation_fields(
        info, media_type, vary, content_encoding, digests, path
    )
    return Representation(
        etag,
        CIMultiDictProxy(CIMultiDict(fields[:validators])),
        CIMultiDictProxy(CIMultiDict(fields[:-1])),
        CIMultiDictProxy(CIMultiDict(fields)),
    )


# Cached for the answers with preconditions, ranges or digest wishes; a plain GET's plan has
# its own cache (`_plain_get`), which builds its representation uncached: one cache lookup
# and one eviction per new version instead of two, and a stream of random keys read once
# (a cache's usual reads) no longer pushes the conditional answers' entries out.
representation = functools.lru_cache(maxsize=1024)(_build_representation)


def _has_any(headers: Mapping[str, str], names: tuple[str, ...]) -> bool:
    """Whether any of `names` is present (case-insensitively, as header names are)."""
    for name in names:  # noqa: SIM110 - a plain loop is cheaper than any() with a generator
        if name in headers:
            return True
    return False


def plan_download(
    method: str,
    headers: Mapping[str, str],
    info: ArtifactInfo,
    *,
    max_ranges: int,
    zero_copy: bool,
    vary: bool = False,
    content_encoding: str | None = None,
    content_type: str | None = None,
    path: str | None = None,
    new_boundary: Callable[[], str] = make_boundary,
    now: float | None = None,
    remember: bool = True,
) -> DownloadPlan:
    """The answer to a GET or HEAD of the artifact `info` describes, given the request's
    `headers` (case-insensitive), the coding already chosen and the settings.

    `vary` adds `Vary: Accept-Encoding` (the path has a compressed variant);
    `content_encoding`/`content_type`/`path` describe a precompressed sibling sent in place
    of the artifact at `path` (its own ETag and digest then describe the encoded bytes, as
    RFC 9530 says; its name is the artifact's).
    `zero_copy` lets large spans go out by sendfile; `new_boundary` names multipart parts;
    `now` is the clock an If-Range date is judged by (default: the current time).
    `remember=False` says no later call will present this `info` object again (an
    `ArtifactReader.info_once`'s): what is worked out per version is then not cached, since
    the caches could only miss, and each miss evicts an entry (about 3 µs per cold read).
    """
    media_type = content_type or info.content_type
    if method == GET and not _has_any(headers, _CONDITIONS_RANGE_AND_WANTS):
        plain = _plain_get if remember else _plain_get_plan
        return plain(info, media_type, vary, content_encoding, zero_copy, path)
    digests = DEFAULT_DIGESTS
    if WANT_DIGEST in headers or WANT_REPR_DIGEST in headers:
        digests = wanted_digests(headers.get(WANT_DIGEST), headers.get(WANT_REPR_DIGEST))
    build = representation if remember else _build_representation
    rep = build(info, media_type, vary, content_encoding, digests, path)
    early = plan_preconditions(
        method, headers, rep.etag, info.modified_at, rep.not_modified_headers
    )
    if early is not None:
        return early
    # §13.1.5: a failed If-Range means "send me the whole thing"; a date only matches a
    # strong Last-Modified (§8.8.2.2), one whose second is over.
    range_header = headers.get(RANGE)
    if range_header is not None and not if_range_matches(
        headers.get(IF_RANGE), etag=rep.etag, last_modified=info.modified_at, now=now
    ):
        range_header = None
    size = info.size
    decision = evaluate_range(range_header, size, max_ranges)
    kind = decision.kind
    if kind is _UNSATISFIABLE:
        # §15.5.17: the answer says how long the representation is; its JSON is inline.
        return DownloadPlan(416, _INLINE, _NO_HEADERS, (), None, f"bytes */{size}")
    head = method == HEAD
    if kind is _FULL:
        return _whole(rep.body_headers, size, head, zero_copy)
    ranges = decision.ranges
    if len(ranges) == 1:
        only = ranges[0]
        length = only.length
        source = _HEADERS if head else _span_source(length, zero_copy)
        return DownloadPlan(206, source, rep.body_headers, ranges, length, only.content_range(size))
    boundary = new_boundary()
    framing = (
        *(part_header(boundary, media_type, part, size) for part in decision.ranges),
        closing_delimiter(boundary),
    )
    return DownloadPlan(
        206,
        _HEADERS if head else _MULTIPART,
        rep.headers,
        decision.ranges,
        multipart_content_length(boundary, media_type, decision.ranges, size),
        content_type=multipart_content_type(boundary),
        framing=framing,
    )


def plan_preconditions(
    method: str,
    headers: Mapping[str, str],
    etag: str,
    last_modified: float,
    not_modified_headers: CIMultiDictProxy[str],
) -> DownloadPlan | None:
    """§13.2.2: evaluate the preconditions in the RFC's order. A 304 plan (repeating
    `not_modified_headers`, §15.4.5), a 412 plan, or None to go on."""
    if_match = headers.get(IF_MATCH)
    if_none_match = headers.get(IF_NONE_MATCH)
    if_modified_since = headers.get(IF_MODIFIED_SINCE)
    if_unmodified_since = headers.get(IF_UNMODIFIED_SINCE)
    if if_match is if_none_match is if_modified_since is if_unmodified_since is None:
        return None  # the usual download: no preconditions at all
    outcome = evaluate_preconditions(
        method,
        if_match=if_match,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
        if_unmodified_since=if_unmodified_since,
        etag=etag,
        last_modified=last_modified,
    )
    if outcome is Precondition.NOT_MODIFIED:
        return DownloadPlan(304, _NONE, not_modified_headers)
    if outcome is Precondition.FAILED:
        return DownloadPlan(412, _FAILED, _NO_HEADERS)
    return None


def _plain_get_plan(
    info: ArtifactInfo,
    media_type: str,
    vary: bool,
    content_encoding: str | None,
    zero_copy: bool,
    path: str | None,
) -> DownloadPlan:
    """The plan of a GET without preconditions or Range: the same for every such request
    of one version and variant, so worked out once (the usual download). Only its body's
    headers are built: one multidict, not a whole `Representation`'s four (a cache's
    random keys make a new plan for nearly every read)."""
    _, fields, _ = _representation_fields(
        info, media_type, vary, content_encoding, DEFAULT_DIGESTS, path
    )
    return _whole(CIMultiDictProxy(CIMultiDict(fields)), info.size, False, zero_copy)


# As many plans as the filesystem store's hot cache holds versions (hotcache.MAX_ENTRIES):
# a hit on a kept version finds the plan made when it was kept. Fewer (1,024 before) and
# most hits under many keys built their plan again. A plan is about 1 KiB.
PLAIN_GET_PLANS = 4096
_plain_get = functools.lru_cache(maxsize=PLAIN_GET_PLANS)(_plain_get_plan)


def _whole(
    body_headers: CIMultiDictProxy[str], size: int, head: bool, zero_copy: bool
) -> DownloadPlan:
    """200 with the whole representation (an empty one has no span to send)."""
    spans = (ByteRange(0, size - 1),) if size else ()
    source = _HEADERS if head else _span_source(size, zero_copy)
    return DownloadPlan(200, source, body_headers, spans, size)


def _span_source(length: int, zero_copy: bool) -> BodySource:
    if length <= INLINE_READ_BYTES:
        return _INLINE
    return _SENDFILE if zero_copy else _STREAM
