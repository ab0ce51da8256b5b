"""Framing of multipart/byteranges bodies (RFC 9110 §14.6), as bytes with exact lengths.

Every part header starts with CRLF, so the body opens with CRLF "--boundary": an empty
preamble (RFC 2046 §5.1.1), as Apache sends it. The caller writes part bytes in between.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from artifactd.http.ranges import ByteRange


def make_boundary() -> str:
    """A fresh random boundary: 32 hex digits, valid in RFC 2046 and never in quotes."""
    return secrets.token_hex(16)


def multipart_content_type(boundary: str) -> str:
    return f"multipart/byteranges; boundary={boundary}"


def part_header(boundary: str, content_type: str, byte_range: ByteRange, size: int) -> bytes:
    """The delimiter and headers preceding one part's bytes (§14.6)."""
    return (
        f"\r\n--{boundary}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Range: {byte_range.content_range(size)}\r\n"
        "\r\n"
    ).encode("utf-8", "surrogateescape")


def closing_delimiter(boundary: str) -> bytes:
    """The close-delimiter that ends the body (RFC 2046 §5.1.1)."""
    return f"\r\n--{boundary}--\r\n".encode("ascii")


def multipart_content_length(
    boundary: str, content_type: str, ranges: Iterable[ByteRange], size: int
) -> int:
    """The exact length of the whole multipart body, for Content-Length."""
    total = len(closing_delimiter(boundary))
    for byte_range in ranges:
        total += len(part_header(boundary, content_type, byte_range, size)) + byte_range.length
    return total
