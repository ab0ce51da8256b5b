"""The WebDAV request headers: Depth (§10.2), Overwrite (§10.6) and Destination (§10.3).

`destination_path` is also what the access policy checks a token's prefix against, so a
MOVE or COPY can write only where a PUT could.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from aiohttp import web

from artifactd.errors import InvalidValueError, NotFoundError
from artifactd.paths import is_internal, parse_artifact_path
from artifactd.web.files import FILES_PREFIX

Depth = Literal["0", "1", "infinity"]
DEPTHS: tuple[Depth, ...] = ("0", "1", "infinity")
DESTINATION = "Destination"


def depth(request: web.BaseRequest, *, default: Depth) -> Depth:
    """The Depth header; `default` when absent (infinity for PROPFIND, §9.1)."""
    raw = request.headers.get("Depth")
    if raw is None:
        return default
    value = raw.strip().lower()
    for allowed in DEPTHS:
        if value == allowed:
            return allowed
    raise InvalidValueError(f"Depth must be 0, 1 or infinity, not {raw!r}")


def overwrite(request: web.BaseRequest) -> bool:
    """The Overwrite header: T (the default) or F."""
    raw = request.headers.get("Overwrite", "T").strip().upper()
    if raw not in ("T", "F"):
        raise InvalidValueError("Overwrite must be T or F")
    return raw == "T"


def destination_path(request: web.BaseRequest) -> str:
    """The artifact path the Destination header names: an absolute URL on this host or an
    absolute path, under `/files/`. 400 without one; anywhere else is another server's
    business: 502 (§9.8.5, §9.9.4)."""
    raw = request.headers.get(DESTINATION)
    if raw is None or not raw.strip():
        raise InvalidValueError("MOVE and COPY need a Destination header")
    parts = urlsplit(raw.strip())
    elsewhere = parts.scheme.lower() not in ("http", "https") or (
        parts.netloc.lower() != request.host.lower()
    )
    if (parts.scheme or parts.netloc) and elsewhere:
        raise web.HTTPBadGateway(reason="Destination is not on this server")
    if not parts.path.startswith(FILES_PREFIX):
        raise web.HTTPBadGateway(reason="Destination is outside /files/")
    path = parse_artifact_path(parts.path[len(FILES_PREFIX) :])
    if is_internal(path):
        raise NotFoundError(path)
    return path
