"""gzip for compressible artifacts: a precompressed `.gz` sibling when one exists, else
on-the-fly compression. Never for ranges: a 206 is always of the identity bytes."""

from __future__ import annotations

import asyncio
import functools
import zlib

from aiohttp import hdrs, web

from artifactd.http.conditional import format_http_date
from artifactd.http.negotiation import coding_accepted
from artifactd.store.base import ArtifactInfo, ArtifactReader
from artifactd.web.download import not_modified_or_failed

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


@functools.lru_cache(maxsize=256)  # asked for every download; stores hold few types
def is_compressible(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in _COMPRESSIBLE_TYPES


def accepts_gzip(accept_encoding: str | None) -> bool:
    return coding_accepted(accept_encoding, "gzip", "x-gzip")


def wants_gzip(request: web.BaseRequest, info: ArtifactInfo) -> bool:
    return (
        hdrs.RANGE not in request.headers
        and info.size >= MIN_COMPRESS_BYTES
        and is_compressible(info.content_type)
        and accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING))
    )


def gzip_etag(identity_etag: str) -> str:
    """A strong ETag for the gzip variant, distinct from the identity one (RFC 9110 §8.8.3)."""
    return identity_etag[:-1] + '-gzip"'


async def send_gzipped(
    request: web.Request, reader: ArtifactReader, *, chunk_size: int
) -> web.StreamResponse:
    """Compress while streaming: chunked, one chunk of memory, compression off the loop.

    The compressed length and digest are unknown in advance, so this response carries no
    Content-Length, Repr-Digest or X-Checksum-Sha256."""
    info = reader.info
    etag = gzip_etag(info.etag)
    validators = {
        "ETag": etag,
        "Last-Modified": format_http_date(info.modified_at),
        "Vary": "Accept-Encoding",
    }
    early = not_modified_or_failed(request, etag, info.modified_at, validators)
    if early is not None:
        return early
    response = web.StreamResponse(
        headers={
            **validators,
            "Content-Type": info.content_type,
            "Content-Encoding": "gzip",
            "Accept-Ranges": "bytes",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    if request.method != hdrs.METH_HEAD:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
        offset = 0
        while offset < info.size:
            data = await reader.read(offset, min(chunk_size, info.size - offset))
            if not data:
                break
            offset += len(data)
            compressed = await asyncio.to_thread(compressor.compress, data)
            if compressed:
                await response.write(compressed)
        await response.write(compressor.flush())
    await response.write_eof()
    return response
