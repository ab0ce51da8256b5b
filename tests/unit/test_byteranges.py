"""multipart/byteranges framing (RFC 9110 §14.6): exact lengths, parseable bodies."""

from __future__ import annotations

import email.parser
import email.policy
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd.http.byteranges import (
    closing_delimiter,
    make_boundary,
    multipart_content_length,
    multipart_content_type,
    part_header,
)
from artifactd.http.ranges import ByteRange, RangeKind, evaluate_range

CONTENT_TYPE = "application/octet-stream"


def assemble(data: bytes, boundary: str, content_type: str, ranges: list[ByteRange]) -> bytes:
    body = b""
    for r in ranges:
        body += part_header(boundary, content_type, r, len(data)) + data[r.start : r.end + 1]
    return body + closing_delimiter(boundary)


def split_parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """A small strict parser: CRLF--boundary delimiters, headers, blank line, bytes."""
    delimiter = b"\r\n--" + boundary.encode()
    assert body.startswith(delimiter)
    assert body.endswith(delimiter + b"--\r\n")
    chunks = body[len(delimiter) : -len(delimiter + b"--\r\n")].split(delimiter)
    parts = []
    for chunk in chunks:
        head, _, payload = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((headers, payload))
    return parts


def test_boundaries_are_random_and_made_of_safe_characters() -> None:
    boundaries = {make_boundary() for _ in range(100)}
    assert len(boundaries) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", b) for b in boundaries)


def test_the_content_type_names_the_boundary() -> None:
    assert multipart_content_type("abc") == "multipart/byteranges; boundary=abc"


def test_a_part_header_starts_with_crlf_and_carries_type_and_range() -> None:
    header = part_header("B", "text/plain", ByteRange(0, 99), 1000)
    assert header == (
        b"\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-99/1000\r\n\r\n"
    )


def test_the_closing_delimiter_ends_with_two_dashes() -> None:
    assert closing_delimiter("B") == b"\r\n--B--\r\n"


@pytest.mark.parametrize(
    "header",
    ["bytes=0-0,-1", "bytes= 0-999, 4500-5499, -1000", "bytes=500-600,601-999"],
)
def test_rfc_9110_multipart_examples_parse_back_with_the_email_package(header: str) -> None:
    data = bytes(range(256)) * 40
    size = len(data)
    decision = evaluate_range(header, size)
    assert decision.kind is RangeKind.PARTIAL
    boundary = make_boundary()
    body = assemble(data, boundary, CONTENT_TYPE, list(decision.ranges))
    assert multipart_content_length(boundary, CONTENT_TYPE, decision.ranges, size) == len(body)

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {multipart_content_type(boundary)}\r\n\r\n".encode() + body
    )
    assert message.is_multipart()
    parts = list(message.iter_parts())
    assert len(parts) == len(decision.ranges)
    for part, r in zip(parts, decision.ranges, strict=True):
        assert part["Content-Type"] == CONTENT_TYPE
        assert part["Content-Range"] == r.content_range(size)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        assert payload == data[r.start : r.end + 1]


@given(
    data=st.binary(min_size=1, max_size=500),
    specs=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 600)), min_size=2, max_size=8),
    content_type=st.sampled_from(["text/plain; charset=utf-8", CONTENT_TYPE, "image/png"]),
)
def test_any_multipart_body_has_the_computed_length_and_parses_back(
    data: bytes, specs: list[tuple[int, int]], content_type: str
) -> None:
    header = "bytes=" + ",".join(f"{min(a, b)}-{max(a, b)}" for a, b in specs)
    decision = evaluate_range(header, len(data))
    if decision.kind is not RangeKind.PARTIAL:
        return
    boundary = make_boundary()
    body = assemble(data, boundary, content_type, list(decision.ranges))
    assert multipart_content_length(boundary, content_type, decision.ranges, len(data)) == len(body)
    parts = split_parts(body, boundary)
    assert len(parts) == len(decision.ranges)
    for (headers, payload), r in zip(parts, decision.ranges, strict=True):
        assert headers == {
            "Content-Type": content_type,
            "Content-Range": r.content_range(len(data)),
        }
        assert payload == data[r.start : r.end + 1]
