"""The zero-copy send loop against a socket that always takes everything it is given."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from artifactd.web.download import zerocopy


class KeepingUpTransport:
    """What `send_file_range` asks of aiohttp's transport, for a peer that keeps up."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None


async def test_a_peer_that_keeps_up_does_not_hold_the_loop_for_the_whole_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a fast client sendfile never finds the socket full, so nothing in the loop
    would wait; the sender must still step aside every YIELD_EVERY_BYTES, or one fast
    download stalls every other connection until its last byte."""
    size = 64 * 1024 * 1024
    body = tmp_path / "body.bin"
    with open(body, "wb") as out:
        out.truncate(size)
    calls: list[int] = []

    def sendfile_taking_all(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        calls.append(count)
        return count

    monkeypatch.setattr(os, "sendfile", sendfile_taking_all)  # what zerocopy calls
    monkeypatch.setattr(zerocopy, "_probably_cached", lambda fd, offset, count: True)
    writer = SimpleNamespace(send_headers=lambda: None, buffer_size=0, output_size=0, length=size)
    left, right = socket.socketpair()
    request = SimpleNamespace(transport=KeepingUpTransport(left))
    response = SimpleNamespace(_payload_writer=writer)
    fd = os.open(body, os.O_RDONLY)
    ticks = 0
    try:
        sending = asyncio.ensure_future(
            zerocopy.send_file_range(request, response, fd, 0, size)  # type: ignore[arg-type]
        )
        while not sending.done():
            ticks += 1
            await asyncio.sleep(0)
        sent = await sending
    finally:
        os.close(fd)
        left.close()
        right.close()
    assert sent == size == sum(calls) == writer.buffer_size
    assert max(calls) == zerocopy.SENDFILE_STEP_BYTES
    assert ticks >= size // zerocopy.YIELD_EVERY_BYTES
