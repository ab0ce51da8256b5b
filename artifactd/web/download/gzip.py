"""The compression choice for a download, and gzip while streaming.

gzip for compressible artifacts: a precompressed `.gz` sibling made from the current
version when there is one, else on-the-fly compression where the connection can carry it.
Never for ranges: a 206 is always of the identity bytes.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy

from artifactd.http.conditional import format_http_date
from artifactd.http.disposition import content_disposition
from artifactd.http.negotiation import coding_accepted
from artifactd.store.base import ArtifactInfo, ArtifactReader
from artifactd.web.download.plan import BodySource, DownloadPlan, plan_preconditions

MIN_COMPRESS_BYTES = 1024
GZIP_LEVEL = 6
_COMPRESSIBLE_TYPES = {
    "application/json",
    "application/x-ndjson",
    "application/xml",
    "application/javascript",
    "application/yaml",
    "application/toml",
    "application/x-sh",
    "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Variant:
    """Which representation of a path a download sends. (Not an Enum: its members'
    attributes are read on every download, and plain slots read fastest.)"""

    name: str
    vary: bool  # answers carry `Vary: Accept-Encoding` (the path has a gzip variant)
    gzip: bool  # the gzip variant: a `.gz` sibling, or compressed on the fly


IDENTITY = Variant("identity", vary=False, gzip=False)  # not compressible: the only one
IDENTITY_VARY = Variant("identity-vary", vary=True, gzip=False)  # gzip not wanted
GZIP = Variant("gzip", vary=True, gzip=True)


@functools.lru_cache(maxsize=256)  # asked for every download; stores hold few types
def is_compressible(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in _COMPRESSIBLE_TYPES


def accepts_gzip(accept_encoding: str | None) -> bool:
    return coding_accepted(accept_encoding, "gzip", "x-gzip")


def choose_variant(headers: Mapping[str, str], info: ArtifactInfo) -> Variant:
    """The variant a GET or HEAD with these request headers gets: gzip for a compressible
    artifact worth compressing, asked for without a Range, by a client accepting it."""
    if not is_compressible(info.content_type):
        return IDENTITY
    if (
        hdrs.RANGE not in headers
        and info.size >= MIN_COMPRESS_BYTES
        and accepts_gzip(headers.get(hdrs.ACCEPT_ENCODING))
    ):
        return GZIP
    return IDENTITY_VARY


class GzipSource(enum.Enum):
    """Where the bytes of a gzip answer come from."""

    SIBLING = "sibling"  # the precompressed `<name>.gz`, sent as stored
    ON_THE_FLY = "on-the-fly"  # compressed while streamed, chunked
    IDENTITY = "identity"  # no gzip after all: the identity body, with Vary


def gzip_source(
    http_version: tuple[int, int], identity: ArtifactInfo, sibling: ArtifactInfo | None
) -> GzipSource:
    """How to answer a request that chose the gzip variant of `identity`, given its `.gz`
    `sibling` if one is stored.

    A sibling stands for the artifact only while it was made from the current version:
    not older than it (`gzip -k` keeps the source's time; an artifact replaced after its
    sibling was made would otherwise be served stale, with digests of the old bytes).
    Compressing on the fly needs chunked framing (the length is unknown in advance),
    which HTTP/1.0 lacks: such a client gets the identity body with its length instead.
    """
    if sibling is not None and sibling.modified_at >= identity.modified_at:
        return GzipSource.SIBLING
    if http_version >= (1, 1):
        return GzipSource.ON_THE_FLY
    return GzipSource.IDENTITY


def gzip_etag(identity_etag: str) -> str:
    """A strong ETag for the gzip variant, distinct from the identity one (RFC 9110 §8.8.3)."""
    return identity_etag[:-1] + '-gzip"'


def plan_gzip_stream(method: str, headers: Mapping[str, str], info: ArtifactInfo) -> DownloadPlan:
    """The plan for compressing `info`'s bytes while streaming them (no `.gz` sibling).

    The compressed length and digest are unknown in advance, so the answer carries no
    Content-Length, Repr-Digest or X-Checksum-Sha256."""
    etag = gzip_etag(info.etag)
    validators = CIMultiDict(
        {
            "ETag": etag,
            "Last-Modified": format_http_date(info.modified_at),
            "Vary": "Accept-Encoding",
        }
    )
    early = plan_preconditions(
        method, headers, etag, info.modified_at, CIMultiDictProxy(validators)
    )
    if early is not None:
        return early
    validators["Content-Type"] = info.content_type
    validators["Content-Encoding"] = "gzip"
    validators["Accept-Ranges"] = "bytes"
    disposition = content_disposition(info.path)
    if disposition is not None:
        validators["Content-Disposition"] = disposition
    source = BodySource.HEADERS if method == hdrs.METH_HEAD else BodySource.GZIP
    return DownloadPlan(200, source, CIMultiDictProxy(validators))


async def write_gzipped(
    response: web.StreamResponse, reader: ArtifactReader, size: int, chunk_size: int
) -> None:
    """Compress the reader's `size` bytes into the prepared (chunked) `response`: one chunk
    of memory, compression off the loop."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
    offset = 0
    while offset < size:
        data = await reader.read(offset, min(chunk_size, size - offset))
        if not data:
            break
        offset += len(data)
        compressed = await asyncio.to_thread(compressor.compress, data)
        if compressed:
            await response.write(compressed)
    await response.write(compressor.flush())
