"""Operational endpoints: liveness."""

from __future__ import annotations

from aiohttp import web

from artifactd.web.errors import storage_unavailable
from artifactd.web.keys import STORE


async def healthz(request: web.Request) -> web.Response:
    """200 `ok` while serving; 503 (JSON, Retry-After) while the storage backend fails. The
    endpoint is public: what failed goes to the log, not to the client."""
    problem = await request.app[STORE].health()
    if problem is not None:
        return storage_unavailable(request, problem)
    return web.Response(text="ok")
