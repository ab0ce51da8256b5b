"""`artifactd push` above --resumable-above against real servers: through tus across a
SIGKILL and restart of the server (it resumes from HEAD's offset and says so), a plain PUT
where the server has no /uploads/, and 100 resumable uploads at once to one server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.serverproc import ServerProcess, eventually

MIB = 1024 * 1024
PIECE = 8 * MIB
pytestmark = pytest.mark.allow_blocking


def push(url: str, file: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "artifactd", "push", url, str(file), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def acknowledged_offset(root: Path) -> int:
    """The offset the upload's saved state counts (0 until a piece is in)."""
    for state in (root / ".artifactd" / "uploads").glob("*.json"):
        try:
            return int(json.loads(state.read_text())["offset"])
        except (OSError, ValueError, KeyError):
            return 0
    return 0


@pytest.mark.slow
def test_push_resumes_across_a_server_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = os.urandom(4 * PIECE + 12345)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    server = ServerProcess(root)
    port = server.port
    pushing = push(server.files_url("ci/big.bin"), source, "--resumable-above", "1M")
    try:
        # Killed once a piece is acknowledged and the next is on its way.
        eventually(lambda: acknowledged_offset(root) >= PIECE, timeout=30)
        server.kill()
        server = ServerProcess(root, "--port", str(port))
        out, err = pushing.communicate(timeout=120)
        assert pushing.returncode == 0, err
        assert hashlib.sha256(data).hexdigest() in out
        resumed = re.search(r"resumed the upload at byte (\d+)", err)
        assert resumed is not None, err
        assert int(resumed.group(1)) >= PIECE and int(resumed.group(1)) % PIECE == 0
        served = subprocess.run(
            ["curl", "-sSf", server.files_url("ci/big.bin")], capture_output=True, check=True
        )
        assert served.stdout == data
        assert list((root / ".artifactd" / "uploads").glob("*.bin")) == []
    finally:
        if pushing.poll() is None:
            pushing.kill()
            pushing.communicate()
        assert server.terminate() == 0


class PutOnlyServer:
    """A server without /uploads/ (404 there) that takes a PUT under /files/, in a thread."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.creations = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    async def _create(self, request: web.Request) -> web.Response:
        self.creations += 1
        return web.json_response({"error": "not found", "status": 404}, status=404)

    async def _put(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.match_info["path"]
        sha256 = hashlib.sha256(body).hexdigest()
        assert request.headers["X-Checksum-Sha256"] == sha256
        self.bodies[path] = body
        return web.json_response({"path": path, "size": len(body), "sha256": sha256}, status=201)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=64 * MIB)
        app.router.add_post("/uploads/", self._create)
        app.router.add_put("/files/{path:.+}", self._put)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def put_only() -> Iterator[PutOnlyServer]:
    server = PutOnlyServer()
    yield server
    server.close()


def test_push_falls_back_to_put_without_uploads(put_only: PutOnlyServer, tmp_path: Path) -> None:
    data = os.urandom(2 * MIB + 7)
    source = tmp_path / "app.bin"
    source.write_bytes(data)
    url = f"http://127.0.0.1:{put_only.port}/files/ci/app.bin"
    out, err = push(url, source, "--resumable-above", "1M").communicate(timeout=60)
    assert "stored ci/app.bin" in out, err
    assert put_only.creations == 1  # it tried /uploads/ first
    assert put_only.bodies["ci/app.bin"] == data


def test_push_below_the_threshold_is_one_put(put_only: PutOnlyServer, tmp_path: Path) -> None:
    source = tmp_path / "small.bin"
    source.write_bytes(os.urandom(1000))
    url = f"http://127.0.0.1:{put_only.port}/files/small.bin"
    out, err = push(url, source).communicate(timeout=60)
    assert "stored small.bin" in out, err
    assert put_only.creations == 0


TUS = {"Tus-Resumable": "1.0.0"}


def metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


async def tus_upload(session: aiohttp.ClientSession, base: str, path: str, data: bytes) -> None:
    """Create, then PATCH in two pieces, each with its checksum; the last one commits."""
    creation = {
        **TUS,
        "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(path=path, sha256=hashlib.sha256(data).hexdigest()),
    }
    async with session.post(f"{base}/uploads/", headers=creation) as response:
        assert response.status == 201, await response.text()
        location = base + response.headers["Location"]
    half = len(data) // 2
    for start, piece in ((0, data[:half]), (half, data[half:])):
        headers = {
            **TUS,
            "Upload-Offset": str(start),
            "Content-Type": "application/offset+octet-stream",
            "Upload-Checksum": "sha256 "
            + base64.b64encode(hashlib.sha256(piece).digest()).decode(),
        }
        async with session.patch(location, headers=headers, data=piece) as response:
            assert response.status == 204, await response.text()
            assert int(response.headers["Upload-Offset"]) == start + len(piece)
    assert "ETag" in response.headers


@pytest.mark.slow
async def test_100_concurrent_resumable_uploads(server: ServerProcess) -> None:
    blobs = {f"many/{n}.bin": os.urandom(64 * 1024 + n) for n in range(100)}
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(
            *(tus_upload(session, server.url, path, data) for path, data in blobs.items())
        )
        for path, data in blobs.items():
            async with session.get(server.files_url(path)) as response:
                assert response.status == 200
                assert await response.read() == data
    assert list((server.root / ".artifactd" / "uploads").glob("*.bin")) == []
