"""A strict, streaming reader of `multipart/form-data` bodies (RFC 7578 over RFC 2046 §5.1).

It reads the request body through the same chunk iterator as a PUT (so the same idle timeout
and size limit apply) and never buffers more than a chunk and a part header line. Anything
RFC 2046 or RFC 7578 does not allow is a MalformedFormError (400): a missing or invalid
boundary, a body ending before the close delimiter, malformed part headers, nested
multiparts. A part's bytes are complete only once the delimiter after them has arrived: the
iterator of a part's body stops there, and raises if the body ends first.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator

from aiohttp import hdrs
from aiohttp.helpers import parse_mimetype
from aiohttp.multipart import (
    BadContentDispositionHeader,
    content_disposition_filename,
    parse_content_disposition,
)
from multidict import CIMultiDict

from artifactd.errors import InvalidValueError

# RFC 2046 §5.1.1: 1 to 70 of these, not ending with a space.
MAX_BOUNDARY_LENGTH = 70
_BCHARS = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")
# aiohttp's own limits for a request's header lines and count.
MAX_HEADER_LINE = 8190
MAX_PART_HEADERS = 32
# A form field artifactd reads as text (the `ttl` of the browse page's form).
MAX_FIELD_BYTES = 1024
_TEXT_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
# RFC 9110 §5.6.2 token characters, for header names.
_TCHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_LWSP = b" \t"


class MalformedFormError(InvalidValueError):
    """A body that is not well-formed multipart/form-data."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed multipart/form-data body: {reason}")


def form_boundary(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data` Content-Type, checked against RFC 2046."""
    mimetype = parse_mimetype(content_type)
    if (mimetype.type, mimetype.subtype) != ("multipart", "form-data"):
        raise InvalidValueError("POST needs a multipart/form-data body")
    boundaries = mimetype.parameters.getall("boundary", [])
    if len(boundaries) != 1:
        raise MalformedFormError("Content-Type needs exactly one boundary parameter")
    boundary = boundaries[0].encode("utf-8", "surrogateescape")
    if not 1 <= len(boundary) <= MAX_BOUNDARY_LENGTH:
        raise MalformedFormError(f"the boundary must be 1 to {MAX_BOUNDARY_LENGTH} characters")
    if not set(boundary) <= _BCHARS or boundary.endswith(b" "):
        raise MalformedFormError("the boundary has characters RFC 2046 does not allow")
    return boundary


class FormPart:
    """One part: its headers, and its body read once from the form."""

    def __init__(self, form: FormReader, headers: CIMultiDict[str]) -> None:
        self._form = form
        self.headers = headers
        disposition = headers.get(hdrs.CONTENT_DISPOSITION)
        if disposition is None:
            raise MalformedFormError("a part without Content-Disposition")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BadContentDispositionHeader)
            kind, params = parse_content_disposition(disposition)
        if kind != "form-data":
            raise MalformedFormError("a part whose Content-Disposition is not form-data")
        self.name = params.get("name")
        self.filename = content_disposition_filename(params, "filename")
        self.content_type = headers.get(hdrs.CONTENT_TYPE)
        if self.content_type is not None:
            mimetype = parse_mimetype(self.content_type)
            if mimetype.type == "multipart":
                raise MalformedFormError("a nested multipart part")
            self.charset = mimetype.parameters.get("charset")
        else:
            self.charset = None

    def chunks(self) -> AsyncIterator[bytes]:
        """The part's body; it ends only at the delimiter after it."""
        return self._form.part_body()

    async def text(self) -> str:
        """A short text field, decoded strictly as UTF-8 (RFC 7578 §5.1)."""
        if self.charset is not None and self.charset.lower() not in _TEXT_CHARSETS:
            raise MalformedFormError(f"field {self.name!r} has an unsupported charset")
        data = bytearray()
        async for chunk in self.chunks():
            data += chunk
            if len(data) > MAX_FIELD_BYTES:
                raise MalformedFormError(f"field {self.name!r} is over {MAX_FIELD_BYTES} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedFormError(f"field {self.name!r} is not UTF-8") from None


class FormReader:
    """The parts of one form, in order: `while (part := await form.next_part()) is not None`.

    A part's body left unread is skipped by the next `next_part`. `next_part` returns None
    only after the close delimiter, once the rest of the body (the epilogue) was read.
    """

    def __init__(self, chunks: AsyncIterator[bytes], boundary: bytes) -> None:
        self._chunks = chunks
        self._delimiter = b"\r\n--" + boundary
        # The first delimiter may open the body with no CRLF before it (RFC 2046 §5.1.1):
        # pretend there was one, so every delimiter looks the same.
        self._buffer = bytearray(b"\r\n")
        self._started = False
        self._in_body = False
        self._closed = False

    async def next_part(self) -> FormPart | None:
        if self._closed:
            return None
        if self._in_body or not self._started:  # the preamble, or a part nobody read
            self._in_body = True
            async for _ in self.part_body():
                pass
        self._started = True
        if await self._after_delimiter():
            self._closed = True
            while await self._fill():  # the epilogue: read (for the length check), ignored
                self._buffer.clear()
            return None
        part = FormPart(self, await self._read_headers())
        self._in_body = True
        return part

    async def part_body(self) -> AsyncIterator[bytes]:
        """Bytes up to the next delimiter, which is consumed; raises if the body ends first."""
        if not self._in_body:
            return
        delimiter, buffer = self._delimiter, self._buffer
        keep = len(delimiter) - 1  # a delimiter's start may be at the end of the buffer
        while True:
            found = buffer.find(delimiter)
            if found >= 0:
                data = bytes(buffer[:found])
                del buffer[: found + len(delimiter)]
                self._in_body = False
                if data:
                    yield data
                return
            if len(buffer) > keep:
                data = bytes(buffer[:-keep])
                del buffer[:-keep]
                yield data
            if not await self._fill():
                where = "before the first boundary" if not self._started else "inside a part"
                raise MalformedFormError(f"the body ended {where}, with no closing boundary")

    async def _after_delimiter(self) -> bool:
        """After a delimiter: True for the close delimiter (`--`), False when a part follows
        (optional transport padding, then CRLF)."""
        while len(self._buffer) < 2 and await self._fill():
            pass
        if self._buffer.startswith(b"--"):
            return True
        padding = await self._read_line()
        if padding.strip(_LWSP):
            raise MalformedFormError("a boundary delimiter followed by other text")
        return False

    async def _read_headers(self) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        while line := await self._read_line():
            if len(headers) >= MAX_PART_HEADERS:
                raise MalformedFormError(f"a part with over {MAX_PART_HEADERS} headers")
            if line[:1] in (b" ", b"\t"):
                raise MalformedFormError("a folded part header line")
            name, colon, value = line.partition(b":")
            if not colon or not name or not set(name) <= _TCHARS:
                raise MalformedFormError("a part header line that is not `Name: value`")
            value = value.strip(_LWSP)
            if any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in value):
                raise MalformedFormError("a control character in a part header")
            try:
                headers.add(name.decode("ascii"), value.decode("utf-8"))
            except UnicodeDecodeError:
                raise MalformedFormError("a part header that is not UTF-8") from None
        return headers

    def _read_line_ready(self) -> int | None:
        found = self._buffer.find(b"\r\n")
        if found > MAX_HEADER_LINE or (found < 0 and len(self._buffer) > MAX_HEADER_LINE):
            raise MalformedFormError(f"a part header line over {MAX_HEADER_LINE} bytes")
        return None if found < 0 else found

    async def _fill_line(self) -> bool:
        """Read until the buffer holds a whole line; False if the body ended first."""
        while self._read_line_ready() is None:
            if not await self._fill():
                return False
        return True

    async def _read_line(self) -> bytes:
        if not await self._fill_line():
            raise MalformedFormError("the body ended inside the part headers")
        end = self._buffer.index(b"\r\n")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    async def _fill(self) -> bool:
        """One more chunk into the buffer; False at the end of the body."""
        chunk = await anext(self._chunks, b"")
        self._buffer += chunk
        return bool(chunk)
