"""Clients that leave mid-request: routine for a download server, so no error, an honest
count, and nothing of the connection left for the cycle collector.

An exception's traceback kept in a reference cycle holds its frames and through them the
whole connection (~13 KiB, plus an upload's buffered bytes) until the next full garbage
collection: that made memory creep up round after round of 500 dropped slow downloads.
The server runs here on uvloop, as `artifactd serve` does, through AppRunner/TCPSite
(aiohttp's test server would cancel the handler when the client leaves, which the real
server never does).
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType

import pytest
import uvloop
from aiohttp import web
from blockbuster import BlockBuster

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.app import create_app
from artifactd.web.keys import METRICS
from tests.web.conftest import store_bytes

Client = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Counted = dict[tuple[str, str, int], int]


def leave_midway(
    settings: Settings, stored: dict[str, bytes], client: Client
) -> tuple[Counted, list[str]]:
    """Serve `stored` under `settings`, let `client` talk to the server and then reset the
    connection; returns the requests counted and the types of what the cycle collector
    found of the server's side (exceptions, frames, aiohttp's and artifactd's objects)."""

    async def scenario() -> tuple[Counted, list[str]]:
        store = await FilesystemStore.create(settings.root)
        for path, data in stored.items():
            await store_bytes(store, path, data)
        app = create_app(settings, store)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        traffic = app[METRICS].traffic
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            reader, writer = await asyncio.open_connection(*runner.addresses[0][:2])
            await client(reader, writer)
            writer.transport.abort()  # a reset, as from a killed client
            async with asyncio.timeout(10):
                while traffic.in_flight:
                    await asyncio.sleep(0.01)
            counted = dict(traffic.requests)
            await asyncio.sleep(0.05)  # aiohttp's protocol finishes after the handler returns
            gc.collect()
            found = [
                type(o).__qualname__
                for o in gc.garbage
                if isinstance(o, BaseException | FrameType)
                or type(o).__module__.startswith(("aiohttp", "artifactd"))
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            await runner.cleanup()
        return counted, found

    return uvloop.run(scenario())


@pytest.mark.parametrize("zero_copy", [True, False], ids=["zero-copy", "streaming"])
def test_a_download_dropped_midway_counts_as_the_200_it_was(
    storage_root: Path, blockbuster: BlockBuster, zero_copy: bool
) -> None:
    # sendfile of pages already cached runs on the loop by design (see web/download/zerocopy.py).
    blockbuster.functions["os.sendfile"].deactivate()

    async def download_a_little(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readexactly(12)) == b"HTTP/1.1 200"

    settings = Settings(root=storage_root, sendfile=zero_copy)
    stored = {"big.bin": os.urandom(8 * 1024 * 1024)}
    counted, leaked = leave_midway(settings, stored, download_a_little)
    assert leaked == []
    assert counted == {("GET", "/files/{tail}", 200): 1}


def test_an_upload_dropped_midway_counts_as_499_and_stores_nothing(storage_root: Path) -> None:
    temp_dir = storage_root / ".artifactd" / "tmp"

    async def upload_a_little(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"PUT /files/cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
            + os.urandom(3 * 1024 * 1024)
        )
        await writer.drain()
        async with asyncio.timeout(10):  # until the server has written some of it
            while not list(temp_dir.iterdir()):
                await asyncio.sleep(0.01)

    counted, leaked = leave_midway(Settings(root=storage_root), {}, upload_a_little)
    assert leaked == []
    assert counted == {("PUT", "/files/{tail}", 499): 1}
    assert not (storage_root / "cut.bin").exists()
    assert list(temp_dir.iterdir()) == []
