"""The client library against misbehaving servers: retries, verification, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from artifactd import client

FAST = client.RetryPolicy(attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.05)


async def serve(app: web.Application) -> TestServer:
    server = TestServer(app)
    await server.start_server()
    return server


async def test_pull_rejects_bytes_that_do_not_match_the_digest(tmp_path: Path) -> None:
    async def lying(request: web.Request) -> web.Response:
        return web.Response(body=b"tampered", headers={"X-Checksum-Sha256": "0" * 64})

    app = web.Application()
    app.router.add_get("/files/x", lying)
    server = await serve(app)
    try:
        with pytest.raises(client.VerificationError):
            await client.pull(str(server.make_url("/files/x")), tmp_path / "x", policy=FAST)
        assert not (tmp_path / "x").exists()
        assert not (tmp_path / "x.part").exists()
    finally:
        await server.close()


async def test_transient_failures_are_retried(tmp_path: Path) -> None:
    calls = []

    async def flaky(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) < 3:
            return web.json_response(
                {"error": "busy", "status": 503}, status=503, headers={"Retry-After": "0"}
            )
        return web.Response(body=b"finally")

    app = web.Application()
    app.router.add_get("/files/x", flaky)
    server = await serve(app)
    try:
        await client.pull(str(server.make_url("/files/x")), tmp_path / "x", policy=FAST)
        assert (tmp_path / "x").read_bytes() == b"finally"
        assert len(calls) == 3
    finally:
        await server.close()


async def test_unreachable_server_gives_transfer_error(tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"x")
    with pytest.raises(client.TransferError):
        await client.push("http://127.0.0.1:9/files/x", local, policy=FAST)


async def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    calls = []

    async def forbidden(request: web.Request) -> web.Response:
        calls.append(1)
        return web.json_response({"error": "forbidden", "status": 403}, status=403)

    app = web.Application()
    app.router.add_put("/files/x", forbidden)
    server = await serve(app)
    local = tmp_path / "f"
    local.write_bytes(b"x")
    try:
        with pytest.raises(client.RejectedError) as info:
            await client.push(str(server.make_url("/files/x")), local, policy=FAST)
        assert info.value.status == 403
        assert calls == [1]
    finally:
        await server.close()


def test_backoff_honours_retry_after_and_grows() -> None:
    policy = client.RetryPolicy(base_delay_seconds=1, max_delay_seconds=10)
    assert policy.delay(0, 7) == 7
    assert policy.delay(0, 100) == 10
    assert all(0 <= policy.delay(n, None) <= min(10, 2**n) for n in range(8))
