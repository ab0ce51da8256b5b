"""The client reads Retry-After as ASCII digits only: anything else leaves the backoff to
decide, never an exception (`²` passed `str.isdigit`, then `float()` raised)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from artifactd import client

FAST = client.RetryPolicy(attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.05)


@pytest.mark.parametrize("retry_after", ["\u00b2", "\u0663", "soon", "-1", "1.5", ""])
async def test_a_malformed_retry_after_is_retried_with_backoff(
    tmp_path: Path, retry_after: str
) -> None:
    calls: list[int] = []

    async def busy_once(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) == 1:
            return web.json_response(
                {"error": "busy", "status": 503}, status=503, headers={"Retry-After": retry_after}
            )
        return web.Response(body=b"done")

    app = web.Application()
    app.router.add_get("/files/x", busy_once)
    server = TestServer(app)
    await server.start_server()
    try:
        await client.pull(str(server.make_url("/files/x")), tmp_path / "x", policy=FAST)
    finally:
        await server.close()
    assert (tmp_path / "x").read_bytes() == b"done"
    assert len(calls) == 2
