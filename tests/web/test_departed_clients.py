"""Clients that leave mid-request: routine for a download server, so no error, an honest
count, and nothing of the connection left for the cycle collector.

An exception's traceback kept in a reference cycle holds its frames and through them the
whole connection (~13 KiB, plus an upload's buffered bytes) until the next full garbage
collection: that made memory creep up round after round of 500 dropped slow downloads.
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
from aiohttp import web
from blockbuster import BlockBuster

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.app import create_app
from artifactd.web.keys import METRICS
from tests.web.conftest import store_bytes

Client = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def leave_midway(
    app: web.Application, client: Client
) -> tuple[dict[object, int], list[object]]:
    """Serve `app` as `artifactd serve` does, let `client` talk to it and abort; returns the
    requests counted and what of the failure the cycle collector found.

    (aiohttp's test server would cancel the handler when the client leaves, which the real
    server never does; asyncio's selector transport, used here where the server runs
    uvloop, leaves a cycle of connection objects after any request, so only exceptions and
    frames count.)"""
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
        leaked = [o for o in gc.garbage if isinstance(o, BaseException | FrameType)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        await runner.cleanup()
    return counted, leaked


@pytest.mark.parametrize("zero_copy", [True, False], ids=["zero-copy", "streaming"])
async def test_a_download_dropped_midway_counts_as_the_200_it_was(
    fs_store: FilesystemStore, storage_root: Path, blockbuster: BlockBuster, zero_copy: bool
) -> None:
    # sendfile of pages already cached runs on the loop by design (see web/zerocopy.py).
    blockbuster.functions["os.sendfile"].deactivate()
    await store_bytes(fs_store, "big.bin", os.urandom(8 * 1024 * 1024))
    app = create_app(Settings(root=storage_root, sendfile=zero_copy), fs_store)

    async def download_a_little(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readexactly(12)) == b"HTTP/1.1 200"

    counted, leaked = await leave_midway(app, download_a_little)
    assert leaked == []
    assert counted == {("GET", "/files/{tail}", 200): 1}


async def test_an_upload_dropped_midway_counts_as_499_and_stores_nothing(
    fs_store: FilesystemStore, storage_root: Path
) -> None:
    app = create_app(Settings(root=storage_root), fs_store)

    async def upload_a_little(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"PUT /files/cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
            + os.urandom(3 * 1024 * 1024)
        )
        await writer.drain()
        async with asyncio.timeout(10):  # until the server has written some of it
            while not list((storage_root / ".artifactd" / "tmp").iterdir()):
                await asyncio.sleep(0.01)

    counted, leaked = await leave_midway(app, upload_a_little)
    assert leaked == []
    assert counted == {("PUT", "/files/{tail}", 499): 1}
    assert await fs_store.entry_type("cut.bin") is None
    assert list((storage_root / ".artifactd" / "tmp").iterdir()) == []
