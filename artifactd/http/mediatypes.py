"""Content-Type guessing from artifact names, for files stored without an explicit type."""

from __future__ import annotations

import functools
import mimetypes

DEFAULT_CONTENT_TYPE = "application/octet-stream"

# mimetypes reports compression as an *encoding* (".tar.gz" -> x-tar + gzip). An artifact
# server must not send Content-Encoding for stored archives, so the compressed wrapper is
# the type the client receives.
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}

_db = mimetypes.MimeTypes()  # built once at import, not per request
# Common in CI output and missing from many systems' tables.
for _type, _extension in (
    ("text/plain", ".log"),
    ("text/markdown", ".md"),
    ("application/json", ".json"),
    ("application/x-ndjson", ".ndjson"),
    ("application/yaml", ".yaml"),
    ("application/yaml", ".yml"),
    ("application/toml", ".toml"),
    ("application/vnd.debian.binary-package", ".deb"),
    ("application/java-archive", ".jar"),
    ("application/wasm", ".wasm"),
):
    _db.add_type(_type, _extension, strict=False)


def guess_content_type(path: str) -> str:
    """The media type a client should receive for `path`."""
    name = path.rpartition("/")[2]
    dot = name.find(".")
    if dot < 0 and ":" not in name:
        # No extension and nothing mimetypes could read as a URL scheme (`data:`): what it
        # would answer, without asking it (content-hash cache keys are such names).
        return DEFAULT_CONTENT_TYPE
    if dot <= 0 or ":" in name:  # no extension, a leading dot, or what reads as a URL scheme
        return _guess_for_name.__wrapped__(name)
    # Otherwise the guess depends only on the extensions, after the first dot: every
    # "<stem>.tar.gz" shares one cached answer.
    return _guess_for_name("x" + name[dot:])


@functools.lru_cache(maxsize=512)
def _guess_for_name(name: str) -> str:
    media_type, encoding = _db.guess_type(name, strict=False)
    if encoding is not None:
        return _ENCODING_TYPES.get(encoding, DEFAULT_CONTENT_TYPE)
    return media_type or DEFAULT_CONTENT_TYPE
