"""Operational endpoints: liveness."""

from __future__ import annotations

from aiohttp import web

from artifactd.web.errors import RETRY_AFTER_SECONDS, json_error
from artifactd.web.keys import STORE


async def healthz(request: web.Request) -> web.Response:
    """200 `ok` while serving; 503 (JSON, Retry-After) while the storage backend fails."""
    problem = await request.app[STORE].health()
    if problem is not None:
        return json_error(503, f"degraded: {problem}", {"Retry-After": str(RETRY_AFTER_SECONDS)})
    return web.Response(text="ok")
