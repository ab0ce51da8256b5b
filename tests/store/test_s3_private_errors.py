"""A failing object store is "storage unavailable" to clients, `/healthz` included; its
endpoint, bucket, prefix and upload ids go to the log with the request id (SPEC,
"Security and limits")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from pathlib import Path

import pytest

from artifactd.settings import Settings
from artifactd.web.app import create_app
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    open_s3_store,
    s3_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.web.conftest import Client, ClientFactory

PREFIX = f"prefix-{uuid.uuid4().hex[:8]}/"


class Relay:
    """A TCP relay in front of the object store, so a test can make it unreachable after
    the app started (its startup needs the store)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        """Stop listening and drop every connection: the store is unreachable."""
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()


REQUESTS = [
    ("GET", "/healthz"),
    ("GET", "/files/a/b.txt"),
    ("HEAD", "/files/a/b.txt"),
    ("PUT", "/files/a/b.txt"),
    ("DELETE", "/files/a/b.txt"),
    ("GET", "/files/a/"),
    ("GET", "/api/v1/artifacts"),
    ("GET", "/api/v1/artifacts/a/b.txt"),
    ("GET", "/api/v1/stats"),
]


async def check_private(
    client: Client, caplog: pytest.LogCaptureFixture, secrets: list[str]
) -> None:
    caplog.set_level(logging.WARNING, logger="artifactd")
    for method, path in REQUESTS:
        answer = await client.request(method, path, data=b"x" if method == "PUT" else None)
        body = await answer.text()
        assert answer.status == 503, (method, path, answer.status, body)
        if method != "HEAD":
            assert json.loads(body) == {"error": "storage unavailable", "status": 503}
        assert int(answer.headers["Retry-After"]) > 0
        shown = body + "".join(answer.headers.values())
        for secret in secrets:
            assert secret not in shown, (method, path, secret, body)
        rid = answer.headers["X-Request-Id"]
        assert any(rid in r.getMessage() for r in caplog.records), (method, path)


async def test_an_unreachable_endpoint_is_not_shown(
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    seaweed: Seaweed,
    s3_bucket: str,
    aiohttp_client: ClientFactory,
) -> None:
    relay = Relay(seaweed.s3_port)
    port = await relay.start()
    store = await open_s3_store(
        seaweed, s3_bucket, endpoint_url=f"http://127.0.0.1:{port}", prefix=PREFIX, max_attempts=1
    )
    client = await aiohttp_client(create_app(Settings(root=tmp_path), store))
    relay.cut()
    await check_private(client, caplog, [str(port), s3_bucket, PREFIX.rstrip("/")])
    assert any(str(port) in r.getMessage() for r in caplog.records)  # the log has it
