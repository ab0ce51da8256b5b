"""Nx's self-hosted remote cache API, the `/nx` sub-application
(`NX_SELF_HOSTED_REMOTE_CACHE_SERVER=URL/nx`, Nx 20.8 and later).

Nx's OpenAPI specification for a self-hosted cache ("Nx custom remote cache
specification", nx.dev/docs/guides/tasks--caching/self-hosted-caching):
- `PUT /v1/cache/{hash}`: a tar archive as `application/octet-stream` with a required
  `Content-Length`; 202 stored, 400 without a valid Content-Length, 401/403 with a
  `text/plain` message for the Nx CLI user, 409 "Cannot override an existing record".
- `GET /v1/cache/{hash}`: 200 with the archive, 404 when there is none, 401/403 as above.
- Security: `Authorization: Bearer <token>`.

Entries are ordinary artifacts `nx/<hash>`, written by the same verified atomic upload as
PUT /files/, once: a second PUT of a hash is a 409 whatever its bytes.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from artifactd.errors import (
    ConflictError,
    InvalidValueError,
    IsDirectoryError,
)
from artifactd.http.digests import expected_sha256
from artifactd.store.base import ArtifactInfo
from artifactd.web import buildcache
from artifactd.web.errors import ERROR_RENDERER, with_app_shape
from artifactd.web.expect import expect_handler_checking
from artifactd.web.keys import SETTINGS, STORE
from artifactd.web.uploads import (
    body_chunks,
    check_declared_length,
    expires_at_for,
    store_stream,
)

MEDIA_TYPE = "application/octet-stream"


def create_nx_app() -> web.Application:
    app = web.Application()
    app[ERROR_RENDERER] = render_error
    app.router.add_get("/v1/cache/{hash}", get_entry)  # and HEAD
    app.router.add_put("/v1/cache/{hash}", put_entry, expect_handler=with_app_shape(expect_entry))
    return app


async def _entry_writable(request: web.Request) -> None:
    """An authorised upload of a hash already stored gets its 409 instead of `100
    Continue`, so the archive is never sent; then the declared length is judged."""
    path = buildcache.nx_path(request.match_info["hash"])
    with contextlib.suppress(IsDirectoryError):
        write_once(await request.config_dict[STORE].current(path))
    check_declared_length(request, request.config_dict[SETTINGS])


# `Expect: 100-continue`: the access policy's refusals, then those of `_entry_writable`.
expect_entry = expect_handler_checking(_entry_writable)


def render_error(status: int, reason: str) -> tuple[bytes, str]:
    """The specification's error bodies are text/plain messages shown to the Nx user."""
    return f"artifactd: {reason}\n".encode(), "text/plain; charset=utf-8"


def write_once(current: ArtifactInfo | None) -> None:
    """The commit's requirement: no entry under the hash yet (checked under the store's
    write lock, so of two racing uploads one gets the 409)."""
    if current is not None:
        raise ConflictError(f"{current.path} exists: cache entries are never overwritten")


async def get_entry(request: web.Request) -> web.StreamResponse:
    path = buildcache.nx_path(request.match_info["hash"])
    return await buildcache.send_entry(request, "nx", path, MEDIA_TYPE)


async def put_entry(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    path = buildcache.nx_path(request.match_info["hash"])
    if request.content_length is None:
        raise InvalidValueError("Content-Length is required")
    # 409 and 413 before reading the body, as with Expect; `write_once` decides again at
    # the commit.
    await _entry_writable(request)
    info, _ = await store_stream(
        request,
        path,
        body_chunks(request, settings),
        content_type=MEDIA_TYPE,
        expires_at=expires_at_for(request, settings, path),
        expected_sha256=expected_sha256(request.headers),
        requirement=write_once,
    )
    buildcache.count(request, "nx", "write", size=info.size)
    return web.Response(status=202)
