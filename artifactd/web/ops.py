"""Operational endpoints: liveness."""

from __future__ import annotations

from aiohttp import web


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")
