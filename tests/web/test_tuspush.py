"""The resumable push (artifactd.tuspush) against the real app with faults injected: a 503
mid-upload resumes from HEAD's offset without starting over, and a lost answer to the last
PATCH (the artifact committed) is recognised rather than uploaded again."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import hdrs, web
from aiohttp.test_utils import TestServer

from artifactd import client, tuspush
from artifactd.resumable.factory import resources_for
from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.app import create_app
from tests.web.conftest import store_bytes

FAST = client.RetryPolicy(attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.05)
PIECE = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def test_faults_resume_from_the_servers_offset(
    fs_store: FilesystemStore, storage_root: Path, tmp_path: Path
) -> None:
    data = os.urandom(5 * PIECE - 100)
    source = tmp_path / "big.bin"
    await asyncio.to_thread(source.write_bytes, data)
    seen: list[str] = []

    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(request.method)
        if request.method == hdrs.METH_PATCH:
            patches = seen.count(hdrs.METH_PATCH)
            if patches == 3:  # refused before the body is read
                return web.json_response({"error": "busy"}, status=503)
            if request.headers["Upload-Offset"] == str(4 * PIECE):
                await handler(request)  # the artifact is committed, its answer lost
                return web.json_response({"error": "lost"}, status=502)
        return await handler(request)

    app = create_app(Settings(root=storage_root), fs_store)
    app.middlewares.append(faults)
    server = TestServer(app)
    await server.start_server()
    resumed: list[int] = []
    moved: list[int] = []
    try:
        sha256 = hashlib.sha256(data).hexdigest()
        document = await tuspush.push_resumable(
            str(server.make_url("/files/ci/big.bin")),
            source,
            len(data),
            sha256,
            progress=moved.append,
            on_resume=resumed.append,
            policy=FAST,
            piece_bytes=PIECE,
        )
        assert document["sha256"] == sha256 and document["path"] == "ci/big.bin"
        assert resumed == [2 * PIECE]  # after the 503; the lost answer finds the artifact
        assert seen.count(hdrs.METH_POST) == 1  # never started over
        assert sum(moved) == len(data)  # the progress bar counts no byte twice
        assert await asyncio.to_thread((storage_root / "ci" / "big.bin").read_bytes) == data
    finally:
        await server.close()


async def test_a_commit_done_before_a_kill_is_recognised_under_immutable(
    fs_store: FilesystemStore, storage_root: Path, tmp_path: Path
) -> None:
    """Killed after its commit but before the upload was removed, the server finds the
    upload complete and commits again on the empty PATCH: 409 under --immutable, yet the
    artifact is the file, so the push succeeds."""
    data = os.urandom(3 * PIECE)
    source = tmp_path / "big.bin"
    await asyncio.to_thread(source.write_bytes, data)
    await store_bytes(fs_store, "ci/big.bin", data)
    resources = resources_for(fs_store)
    resource = await resources.create("ci/big.bin", owner=None, length=len(data), expires_at=1e10)
    async with resources.appending(resource.id) as appending:
        await appending.append(data)
        await appending.checkpoint()
    upload_id = resource.id
    server = TestServer(create_app(Settings(root=storage_root, immutable=True), fs_store))
    await server.start_server()
    try:
        sha256 = hashlib.sha256(data).hexdigest()
        upload = tuspush._Upload(
            str(server.make_url("/files/ci/big.bin")),
            source,
            len(data),
            sha256,
            ttl=None,
            token=None,
            progress=lambda n: None,
            on_resume=lambda offset: None,
            piece_bytes=PIECE,
        )
        upload.location = str(server.make_url(f"/uploads/{upload_id}"))
        document = await upload.run()
        assert document["sha256"] == sha256
    finally:
        await server.close()


async def test_a_refused_commit_is_refused_not_retried(
    fs_store: FilesystemStore, storage_root: Path, tmp_path: Path
) -> None:
    """--immutable and another version stored: the last PATCH's 409 is the push's answer
    (exit 1 in the CLI), after one upload, not a retry from scratch."""
    data = os.urandom(2 * PIECE + 1)
    source = tmp_path / "big.bin"
    await asyncio.to_thread(source.write_bytes, data)
    await store_bytes(fs_store, "ci/big.bin", b"another version")
    creations: list[int] = []

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == hdrs.METH_POST:
            creations.append(1)
        return await handler(request)

    app = create_app(Settings(root=storage_root, immutable=True), fs_store)
    app.middlewares.append(count)
    server = TestServer(app)
    await server.start_server()
    try:
        with pytest.raises(client.RejectedError) as refused:
            await tuspush.push_resumable(
                str(server.make_url("/files/ci/big.bin")),
                source,
                len(data),
                hashlib.sha256(data).hexdigest(),
                policy=FAST,
                piece_bytes=PIECE,
            )
        assert refused.value.status == 409
        assert creations == [1]
    finally:
        await server.close()
