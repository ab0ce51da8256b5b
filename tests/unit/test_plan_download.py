"""plan_download as a table: RFC 9110's preconditions (§13.1, in §13.2.2's order), If-Range
(§13.1.5) and ranges (§14) decide the status, the spans, the headers and the body source."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace

import pytest
from multidict import CIMultiDict

from artifactd.http.ranges import ByteRange
from artifactd.store.base import ArtifactInfo
from artifactd.web.download import plan as plan_module
from artifactd.web.download.plan import (
    INLINE_READ_BYTES,
    BodySource,
    DownloadPlan,
    plan_download,
    representation,
)

SHA = "ab" * 32
ETAG = '"' + SHA[:32] + '"'
MODIFIED_AT = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 §5.6.7's example)
LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER = "Sat, 05 Nov 1994 08:49:37 GMT"
LATER = "Mon, 07 Nov 1994 08:49:37 GMT"

SMALL = ArtifactInfo("a.bin", 10000, "application/octet-stream", MODIFIED_AT, 0.0, sha256=SHA)
LARGE = ArtifactInfo(
    "b.bin", 4 * INLINE_READ_BYTES, "application/octet-stream", MODIFIED_AT, 0.0, sha256=SHA
)
EMPTY = ArtifactInfo("e.bin", 0, "text/plain", MODIFIED_AT, 0.0, sha256=SHA)
# Changed 0.7 s into the second LAST_MODIFIED names: while that second lasts, another
# version may have had the same Last-Modified (RFC 9110 §8.8.2.2: a weak validator).
CHANGED_LATE = ArtifactInfo(
    "a.bin", 10000, "application/octet-stream", MODIFIED_AT + 0.7, 0.0, sha256=SHA
)


@dataclass(frozen=True)
class Case:
    headers: dict[str, str]
    status: int
    body: BodySource
    ranges: tuple[tuple[int, int], ...] = ()
    method: str = "GET"
    info: ArtifactInfo = SMALL
    zero_copy: bool = True
    max_ranges: int = 16
    content_range: str | None = None
    content_length: int | None = field(default=None)
    now: float | None = None  # the server's clock (None: the real one)


WHOLE = ((0, 9999),)

CASES: dict[str, Case] = {
    # No conditions, no Range: the whole body, by the body source its size asks for.
    "plain GET of a small file is inline": Case(
        {}, 200, BodySource.INLINE, WHOLE, content_length=10000
    ),
    "plain GET of a large file goes by sendfile": Case(
        {}, 200, BodySource.SENDFILE, ((0, LARGE.size - 1),), info=LARGE
    ),
    "plain GET of a large file without zero copy is streamed": Case(
        {}, 200, BodySource.STREAM, ((0, LARGE.size - 1),), info=LARGE, zero_copy=False
    ),
    "plain GET of an empty file is inline with no span": Case(
        {}, 200, BodySource.INLINE, (), info=EMPTY, content_length=0
    ),
    "HEAD sends the GET's headers and no bytes": Case(
        {}, 200, BodySource.HEADERS, WHOLE, method="HEAD", content_length=10000
    ),
    # §14.1.2's examples for a 10000-byte representation.
    "first 500 bytes": Case(
        {"Range": "bytes=0-499"},
        206,
        BodySource.INLINE,
        ((0, 499),),
        content_range="bytes 0-499/10000",
        content_length=500,
    ),
    "second 500 bytes": Case(
        {"Range": "bytes=500-999"},
        206,
        BodySource.INLINE,
        ((500, 999),),
        content_range="bytes 500-999/10000",
    ),
    "final 500 bytes as a suffix": Case(
        {"Range": "bytes=-500"},
        206,
        BodySource.INLINE,
        ((9500, 9999),),
        content_range="bytes 9500-9999/10000",
    ),
    "final 500 bytes open-ended": Case(
        {"Range": "bytes=9500-"},
        206,
        BodySource.INLINE,
        ((9500, 9999),),
        content_range="bytes 9500-9999/10000",
    ),
    "first and last bytes are multipart": Case(
        {"Range": "bytes=0-0,-1"}, 206, BodySource.MULTIPART, ((0, 0), (9999, 9999))
    ),
    "adjacent ranges stay apart": Case(
        {"Range": "bytes=500-600,601-999"}, 206, BodySource.MULTIPART, ((500, 600), (601, 999))
    ),
    "overlapping ranges are merged into one part": Case(
        {"Range": "bytes=500-700,601-999"},
        206,
        BodySource.INLINE,
        ((500, 999),),
        content_range="bytes 500-999/10000",
    ),
    "a large range goes by sendfile": Case(
        {"Range": "bytes=0-299999"},
        206,
        BodySource.SENDFILE,
        ((0, 299999),),
        info=LARGE,
        content_range=f"bytes 0-299999/{LARGE.size}",
    ),
    "a large range without zero copy is streamed": Case(
        {"Range": "bytes=0-299999"},
        206,
        BodySource.STREAM,
        ((0, 299999),),
        info=LARGE,
        zero_copy=False,
        content_range=f"bytes 0-299999/{LARGE.size}",
    ),
    "HEAD with a Range sends the 206's headers": Case(
        {"Range": "bytes=0-9"},
        206,
        BodySource.HEADERS,
        ((0, 9),),
        method="HEAD",
        content_range="bytes 0-9/10000",
        content_length=10,
    ),
    "HEAD with ranges sends the multipart headers": Case(
        {"Range": "bytes=0-0,-1"}, 206, BodySource.HEADERS, ((0, 0), (9999, 9999)), method="HEAD"
    ),
    # §14.2: a Range the server ignores gives the whole body.
    "an invalid range is ignored": Case({"Range": "bytes=5-1"}, 200, BodySource.INLINE, WHOLE),
    "another unit is ignored": Case({"Range": "items=0-5"}, 200, BodySource.INLINE, WHOLE),
    "more ranges than allowed are ignored": Case(
        {"Range": "bytes=0-1,3-4,6-7"}, 200, BodySource.INLINE, WHOLE, max_ranges=2
    ),
    # §15.5.17: 416 with the representation's length; its JSON answer is ready at once.
    "a range past the end is unsatisfiable": Case(
        {"Range": "bytes=10000-"}, 416, BodySource.INLINE, content_range="bytes */10000"
    ),
    "HEAD of a range past the end is unsatisfiable": Case(
        {"Range": "bytes=20000-"},
        416,
        BodySource.INLINE,
        method="HEAD",
        content_range="bytes */10000",
    ),
    "a suffix of an empty file gives the whole (empty) body": Case(
        {"Range": "bytes=-5"}, 200, BodySource.INLINE, (), info=EMPTY, content_length=0
    ),
    "an int-range of an empty file is unsatisfiable": Case(
        {"Range": "bytes=0-"}, 416, BodySource.INLINE, info=EMPTY, content_range="bytes */0"
    ),
    # §13.1.1 If-Match (strong comparison), step 1.
    "If-Match with the current tag proceeds": Case(
        {"If-Match": ETAG}, 200, BodySource.INLINE, WHOLE
    ),
    "If-Match * proceeds": Case({"If-Match": "*"}, 200, BodySource.INLINE, WHOLE),
    "If-Match with another tag fails": Case({"If-Match": '"other"'}, 412, BodySource.FAILED),
    "If-Match with the weak form of the tag fails": Case(
        {"If-Match": "W/" + ETAG}, 412, BodySource.FAILED
    ),
    # §13.1.4 If-Unmodified-Since, step 2: only without If-Match.
    "If-Unmodified-Since before the change fails": Case(
        {"If-Unmodified-Since": EARLIER}, 412, BodySource.FAILED
    ),
    "If-Unmodified-Since at the change proceeds": Case(
        {"If-Unmodified-Since": LAST_MODIFIED}, 200, BodySource.INLINE, WHOLE
    ),
    "If-Unmodified-Since is ignored with a matching If-Match": Case(
        {"If-Match": ETAG, "If-Unmodified-Since": EARLIER}, 200, BodySource.INLINE, WHOLE
    ),
    "If-Unmodified-Since with a bad date is ignored": Case(
        {"If-Unmodified-Since": "yesterday"}, 200, BodySource.INLINE, WHOLE
    ),
    # §13.1.2 If-None-Match (weak comparison), step 3.
    "If-None-Match with the current tag is not modified": Case(
        {"If-None-Match": ETAG}, 304, BodySource.NONE
    ),
    "If-None-Match with the weak form matches too": Case(
        {"If-None-Match": "W/" + ETAG}, 304, BodySource.NONE
    ),
    "If-None-Match * is not modified": Case({"If-None-Match": "*"}, 304, BodySource.NONE),
    "If-None-Match on HEAD is not modified": Case(
        {"If-None-Match": ETAG}, 304, BodySource.NONE, method="HEAD"
    ),
    "If-None-Match with another tag proceeds": Case(
        {"If-None-Match": '"other"'}, 200, BodySource.INLINE, WHOLE
    ),
    "If-Match is evaluated before If-None-Match": Case(
        {"If-Match": '"other"', "If-None-Match": ETAG}, 412, BodySource.FAILED
    ),
    # §13.1.3 If-Modified-Since, step 4: only without If-None-Match.
    "If-Modified-Since at the change is not modified": Case(
        {"If-Modified-Since": LAST_MODIFIED}, 304, BodySource.NONE
    ),
    "If-Modified-Since in the future is not modified": Case(
        {"If-Modified-Since": LATER}, 304, BodySource.NONE
    ),
    "If-Modified-Since before the change proceeds": Case(
        {"If-Modified-Since": EARLIER}, 200, BodySource.INLINE, WHOLE
    ),
    "If-Modified-Since is ignored with If-None-Match": Case(
        {"If-Modified-Since": LATER, "If-None-Match": '"other"'}, 200, BodySource.INLINE, WHOLE
    ),
    # §13.2.2: preconditions come before Range.
    "a 304 wins over a Range": Case(
        {"If-None-Match": ETAG, "Range": "bytes=0-9"}, 304, BodySource.NONE
    ),
    "a 412 wins over an unsatisfiable Range": Case(
        {"If-Match": '"other"', "Range": "bytes=20000-"}, 412, BodySource.FAILED
    ),
    # §13.1.5 If-Range.
    "If-Range with the current tag honours the Range": Case(
        {"Range": "bytes=0-3", "If-Range": ETAG},
        206,
        BodySource.INLINE,
        ((0, 3),),
        content_range="bytes 0-3/10000",
    ),
    "If-Range with another tag sends the whole body": Case(
        {"Range": "bytes=0-3", "If-Range": '"stale"'}, 200, BodySource.INLINE, WHOLE
    ),
    "If-Range with a weak tag sends the whole body": Case(
        {"Range": "bytes=0-3", "If-Range": "W/" + ETAG}, 200, BodySource.INLINE, WHOLE
    ),
    "If-Range with the exact date honours the Range": Case(
        {"Range": "bytes=0-3", "If-Range": LAST_MODIFIED},
        206,
        BodySource.INLINE,
        ((0, 3),),
        content_range="bytes 0-3/10000",
    ),
    # §8.8.2.2: a date is only a strong validator once its second is over, so a version
    # changed within the second the date names may not be the one the client has.
    "If-Range with the date of a version changed within the same second sends the whole body": (
        Case(
            {"Range": "bytes=0-3", "If-Range": LAST_MODIFIED},
            200,
            BodySource.INLINE,
            WHOLE,
            info=CHANGED_LATE,
            now=MODIFIED_AT + 0.9,
        )
    ),
    "If-Range with the date of a version from the future sends the whole body": Case(
        {"Range": "bytes=0-3", "If-Range": LAST_MODIFIED},
        200,
        BodySource.INLINE,
        WHOLE,
        now=MODIFIED_AT - 60,
    ),
    "If-Range with a date a second after it was weak honours the Range": Case(
        {"Range": "bytes=0-3", "If-Range": LAST_MODIFIED},
        206,
        BodySource.INLINE,
        ((0, 3),),
        info=CHANGED_LATE,
        now=MODIFIED_AT + 1.0,
        content_range="bytes 0-3/10000",
    ),
    "If-Range with the current tag honours the Range even within the second": Case(
        {"Range": "bytes=0-3", "If-Range": ETAG},
        206,
        BodySource.INLINE,
        ((0, 3),),
        info=CHANGED_LATE,
        now=MODIFIED_AT + 0.9,
        content_range="bytes 0-3/10000",
    ),
    "If-Range with another date sends the whole body": Case(
        {"Range": "bytes=0-3", "If-Range": LATER}, 200, BodySource.INLINE, WHOLE
    ),
    "If-Range without a Range changes nothing": Case(
        {"If-Range": '"stale"'}, 200, BodySource.INLINE, WHOLE
    ),
    "a mismatched If-Range also voids an unsatisfiable Range": Case(
        {"Range": "bytes=20000-", "If-Range": '"stale"'}, 200, BodySource.INLINE, WHOLE
    ),
}


def plan(case: Case, **kwargs: object) -> DownloadPlan:
    return plan_download(
        case.method,
        CIMultiDict(case.headers),
        case.info,
        max_ranges=case.max_ranges,
        zero_copy=case.zero_copy,
        new_boundary=lambda: "BOUNDARY",
        now=case.now,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    planned = plan(case)
    assert (planned.status, planned.body) == (case.status, case.body)
    assert planned.ranges == tuple(ByteRange(a, b) for a, b in case.ranges)
    assert planned.content_range == case.content_range
    if case.content_length is not None:
        assert planned.content_length == case.content_length
    headers = planned.response_headers()
    if case.status in (200, 206) and case.body is not BodySource.MULTIPART:
        if "," not in case.headers.get("Range", ""):
            assert headers["Content-Type"] == case.info.content_type
        assert headers["ETag"] == ETAG
        assert headers["Accept-Ranges"] == "bytes"
        assert headers["X-Checksum-Sha256"] == SHA
    if case.status == 304:
        # §15.4.5: the validators a 200 would carry, and no body or length.
        assert dict(headers) == {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
        assert planned.content_length is None
    if case.status in (412, 416):
        assert set(headers) <= {"Content-Range"}


def test_multipart_plan_frames_each_part_and_counts_every_byte() -> None:
    planned = plan(Case({"Range": "bytes=0-0,-1"}, 206, BodySource.MULTIPART))
    assert planned.content_type == "multipart/byteranges; boundary=BOUNDARY"
    assert "Content-Type" not in planned.headers
    assert planned.framing == (
        b"\r\n--BOUNDARY\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Range: bytes 0-0/10000\r\n\r\n",
        b"\r\n--BOUNDARY\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Range: bytes 9999-9999/10000\r\n\r\n",
        b"\r\n--BOUNDARY--\r\n",
    )
    assert planned.content_length == sum(map(len, planned.framing)) + 2


def test_a_precompressed_sibling_keeps_the_artifacts_type_and_says_its_coding() -> None:
    planned = plan(
        Case({}, 200, BodySource.INLINE), vary=True, content_encoding="gzip", content_type="text/x"
    )
    headers = planned.response_headers()
    assert headers["Content-Type"] == "text/x"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Vary"] == "Accept-Encoding"


def test_vary_is_repeated_by_a_304() -> None:
    planned = plan(Case({"If-None-Match": ETAG}, 304, BodySource.NONE), vary=True)
    assert planned.headers["Vary"] == "Accept-Encoding"


def test_the_plain_get_plan_is_worked_out_once_per_version() -> None:
    first = plan(Case({}, 200, BodySource.INLINE))
    assert plan(Case({"Accept": "*/*"}, 200, BodySource.INLINE)) is first
    newer = ArtifactInfo("a.bin", 10000, "application/octet-stream", MODIFIED_AT + 1, 0.0, SHA)
    assert plan(Case({}, 200, BodySource.INLINE, info=newer)) is not first


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_only_304s_inline_plans_and_single_part_heads_are_answered_at_once(case: Case) -> None:
    planned = plan(case)
    single_part_head = (
        planned.body is BodySource.HEADERS
        and planned.content_type is None
        and planned.content_length is not None
    )
    assert planned.at_once is (
        planned.body in (BodySource.NONE, BodySource.INLINE) or single_part_head
    )
    if case.method == "HEAD" and planned.status in (200, 206) and planned.content_type is None:
        assert planned.at_once  # headers only: ready at once


LEGACY_DIGEST = "SHA-256=" + base64.b64encode(bytes.fromhex(SHA)).decode()


@pytest.mark.parametrize(
    "case",
    [
        Case({"Want-Digest": "SHA-256"}, 200, BodySource.INLINE, WHOLE),
        Case({"Want-Digest": "sha-512, sha-256;q=0.5"}, 200, BodySource.INLINE, WHOLE),
        Case({"Want-Digest": "SHA-256"}, 200, BodySource.HEADERS, WHOLE, method="HEAD"),
        # RFC 3230's Digest is of the whole instance, also on a 206 (so that a client
        # fetching ranges over several connections sees a replaced file).
        Case(
            {"Want-Digest": "SHA-256", "Range": "bytes=0-3"},
            206,
            BodySource.INLINE,
            ((0, 3),),
            content_range="bytes 0-3/10000",
        ),
        Case({"Want-Digest": "SHA-256", "Range": "bytes=0-0,-1"}, 206, BodySource.MULTIPART),
    ],
    ids=["plain", "weighted", "HEAD", "range", "ranges"],
)
def test_want_digest_sha256_adds_an_rfc_3230_digest(case: Case) -> None:
    planned = plan(case)
    assert (planned.status, planned.body) == (case.status, case.body)
    headers = planned.response_headers()
    assert headers["Digest"] == LEGACY_DIGEST
    assert headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(SHA)).decode()}:"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Want-Digest": "SHA-256;q=0"}, {"Want-Digest": "MD5"}, {"Range": "bytes=0-3"}],
)
def test_no_rfc_3230_digest_unless_asked_for(headers: dict[str, str]) -> None:
    planned = plan(Case(headers, 200, BodySource.INLINE))
    assert "Digest" not in planned.response_headers()
    assert "Repr-Digest" in planned.response_headers()


def test_want_repr_digest_refusing_sha256_gets_no_repr_digest() -> None:
    refused = plan(Case({"Want-Repr-Digest": "sha-256=0"}, 200, BodySource.INLINE))
    assert "Repr-Digest" not in refused.response_headers()
    others = plan(Case({"Want-Repr-Digest": "sha-512=9"}, 200, BodySource.INLINE))
    assert "Repr-Digest" in others.response_headers()  # all we have, sent unasked (§4)


def test_a_name_a_url_cannot_carry_gets_content_disposition_in_every_answer() -> None:
    spaced = ArtifactInfo("dir/a b.bin", 10000, "application/octet-stream", MODIFIED_AT, 0.0, SHA)
    expected = "attachment; filename=\"a b.bin\"; filename*=UTF-8''a%20b.bin"
    for headers in ({}, {"Range": "bytes=0-3"}, {"Want-Digest": "SHA-256"}):
        planned = plan(Case(headers, 200, BodySource.INLINE, info=spaced))
        assert planned.response_headers()["Content-Disposition"] == expected
    head = plan(Case({}, 200, BodySource.HEADERS, method="HEAD", info=spaced))
    assert head.response_headers()["Content-Disposition"] == expected
    assert "Content-Disposition" not in plan(Case({}, 200, BodySource.INLINE)).headers


def test_a_precompressed_sibling_is_named_after_the_artifact() -> None:
    sibling = ArtifactInfo("a b.txt.gz", 900, "application/gzip", MODIFIED_AT, 0.0, SHA)
    planned = plan(
        Case({}, 200, BodySource.INLINE, info=sibling),
        vary=True,
        content_encoding="gzip",
        content_type="text/plain",
        path="a b.txt",
    )
    assert planned.headers["Content-Disposition"].endswith("filename*=UTF-8''a%20b.txt")


def test_plain_gets_of_new_versions_leave_the_conditional_answers_cache_alone() -> None:
    """A cache's reads are mostly plain GETs of random keys, each read once: their plans
    are cached on their own, so they neither pay a second cache's lookup nor push out the
    representations that conditional and range requests of hot versions reuse."""
    hot = ArtifactInfo("hot.bin", 10, "text/plain", MODIFIED_AT, 0.0, sha256=SHA)
    plan_download("GET", {"Range": "bytes=0-1"}, hot, max_ranges=16, zero_copy=True)
    before = representation.cache_info()
    for i in range(2000):
        key = ArtifactInfo(f"k/{i}.bin", 10, "text/plain", MODIFIED_AT, 0.0, sha256=SHA)
        assert plan_download("GET", {}, key, max_ranges=16, zero_copy=True).status == 200
    assert representation.cache_info().currsize == before.currsize
    plan_download("GET", {"Range": "bytes=0-1"}, hot, max_ranges=16, zero_copy=True)
    assert representation.cache_info().hits == before.hits + 1


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_plan_not_remembered_is_the_same_plan_and_caches_nothing(case: Case) -> None:
    """`remember=False` (an info no later request presents again) changes what is cached,
    never the answer: the same status, spans and headers, in the same order."""
    fresh = ArtifactInfo(  # equal to the case's info, but not the same object
        case.info.path,
        case.info.size,
        case.info.content_type,
        case.info.modified_at,
        case.info.created_at,
        case.info.sha256,
    )
    before = (plan_module._plain_get.cache_info(), representation.cache_info())
    once = plan(replace(case, info=fresh), remember=False)
    assert (plan_module._plain_get.cache_info(), representation.cache_info()) == before
    remembered = plan(case)
    assert once._replace(headers=remembered.headers) == remembered
    assert list(once.headers.items()) == list(remembered.headers.items())
